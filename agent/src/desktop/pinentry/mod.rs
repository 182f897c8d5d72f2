//! The agent's own PIN and consent dialogs, shown by GnuPG's pinentry programs
//! (`pinentry-gnome3`, `-gtk2`, `-qt`, `-curses`, `-tty` on Linux, `pinentry-mac`, Gpg4win's
//! `pinentry.exe`): the PIN is typed into a dialog of the agent, never into the web page.
//!
//! A pinentry speaks the Assuan protocol on its stdin and stdout. The agent talks to it with a
//! small client of its own, on `tokio::process` (`assuan.rs` says why, and how it escapes what it
//! sends and wipes what it reads).
//!
//! # One dialog, step by step
//! 1. Spawn the program with `kill_on_drop`: stdin and stdout piped, stderr to `/dev/null` (what
//!    a pinentry prints there is never logged), and only the environment a pinentry needs
//!    ([`PINENTRY_ENV`]; [`Pinentry::with_env`] adds more).
//! 2. Read the greeting `OK`. A terminal pinentry (`pinentry-curses`, `pinentry-tty`) is told the
//!    agent's terminal (`OPTION ttyname`, `OPTION ttytype`), and only when the agent's stdin is
//!    one; a graphical one never is.
//! 3. `SETTITLE`, `SETDESC`, `SETPROMPT`, `SETERROR`, `SETOK`, `SETNOTOK`, `SETCANCEL`,
//!    `SETTIMEOUT`, then `GETPIN` or `CONFIRM`, then `BYE`.
//! 4. The whole conversation is bounded: `SETTIMEOUT` asks the pinentry to give up by itself,
//!    and a hard deadline ([`GRACE`] later) kills it (and reaps it) if it did not.
//!
//! One dialog at a time per [`Pinentry`] (and its clones): a second request waits for the first
//! (within its own time limit). Two graphical pinentries at once fight for the keyboard grab, and
//! the loser cancels at once.
//!
//! # Assuan is a security boundary
//! A certificate's subject and issuer come from the token, and the token may be hostile. Every
//! text sent is escaped and capped by the Assuan client (`assuan.rs`). The dialog texts
//! ([`pin_dialog`], the consent text) are rendered by [`crate::consent::text`], which turns the
//! certificate's control, format (bidirectional among them) and separator characters into
//! spaces and caps each field, so a subject can neither fake a line of its own nor push the
//! fingerprint off the line.
//!
//! # Secrets
//! The PIN is read into wiped memory and moves, without a copy, into a
//! [`Pin`](keyport_protocol::Pin) (`assuan.rs`); neither it nor any line the pinentry sent is
//! logged or put in an error. This module never sends `SETKEYINFO` nor
//! `OPTION allow-external-password-cache`, so a pinentry never offers to store the PIN in a
//! keyring.
//!
//! # Answers, and why "no" never becomes "always allow"
//! Errors are matched on the low 16 bits of the Assuan error number (the GnuPG error code),
//! never on the text. `GETPIN`: `D`… `OK` → the PIN (an empty field gives `OK` without `D`: an
//! empty PIN); `GPG_ERR_CANCELED` (99) or `GPG_ERR_FULLY_CANCELED` (198) → cancelled;
//! `GPG_ERR_TIMEOUT` (62) → timed out; anything else → `Err`.
//!
//! `CONFIRM` shows *Allow* (OK), *Always allow this site* (NOTOK), *Deny* (Cancel). `OK` is the
//! only answer pinentry gives for a press of its OK button alone, so `OK` → Allow. The NOTOK
//! answer, `GPG_ERR_NOT_CONFIRMED` (114), is another matter: in pinentry's own code it is not
//! "the NOTOK button" but "the dialog ended without OK and without a cancel" — its catch-all
//! *no*. `pinentry-w32` returns it when the person presses Cancel or closes the window (it never
//! sets the cancel flag); `pinentry-gnome3` cannot show a third button at all. Mapping 114 to
//! "always allow" everywhere would turn those refusals into a permanent yes. So:
//! * the third button is offered only by pinentries whose `GETINFO flavor` is one whose source
//!   was checked to return 114 for that button alone ([`offers_always`]: gtk2, qt, curses, tty;
//!   gtk2 is also driven for real by a test); any other pinentry shows Allow / Deny only;
//! * 114 means AllowAlways only if the third button was offered, and the pinentry did not say the
//!   window was closed (`S BUTTON_INFO close`); otherwise it is Deny;
//! * cancel (99, 198), or closing the window → Deny; `GPG_ERR_TIMEOUT` or the hard deadline →
//!   `None` (no answer); any other error or unexpected line → `Err` (never Allow);
//! * the labels carry explicit, distinct mnemonics (`_Allow`, `Al_ways…`, `_Deny`):
//!   `pinentry-tty` otherwise picks each button's first letter, and it tests the NOTOK key before
//!   the OK key, so typing `a` for "Allow" would have answered "Always allow".
//!
//! A caller that is not a web origin is never offered "always" (nothing could remember it).

use crate::consent::text::{timeout_line, ConsentText};
use crate::consent::{Caller, ConsentRequest, ConsentUi, Decision, PinUi};
use assuan::{error_text, into_pin, Failure};
use program::agent_tty;
use session::Pipes;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod assuan;
mod program;
mod session;

pub use assuan::{gpg_err, MAX_DATA, MAX_LINE};
pub use session::{GRACE, PINENTRY_ENV, PINENTRY_ENV_PREFIXES};

/// The buttons of the consent dialog, with their mnemonics (see the module's documentation).
pub const LABEL_ALLOW: &str = "_Allow";
pub const LABEL_ALWAYS: &str = "Al_ways allow this site";
pub const LABEL_DENY: &str = "_Deny";

/// The title of both dialogs.
pub const TITLE: &str = "Keyport: signature request";

/// What kind of dialog a pinentry shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinentryKind {
    /// A window of its own (gtk2, gnome3, qt, mac, w32, …).
    Graphical,
    /// Draws in a terminal: `pinentry-curses`, `pinentry-tty` (also through a `pinentry` symlink
    /// resolving to them). Useful only when the agent runs in a terminal.
    Terminal,
}

/// A pinentry program the agent can ask through. Clones share one queue of dialogs.
#[derive(Debug, Clone)]
pub struct Pinentry {
    program: PathBuf,
    kind: PinentryKind,
    extra_env: Vec<(OsString, OsString)>,
    /// One dialog at a time.
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// The text of a PIN dialog. Empty labels (`ok`, `cancel`) and `None` leave pinentry's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinDialog {
    pub title: String,
    pub description: String,
    pub prompt: String,
    /// Shown as the dialog's error line (e.g. a wrong PIN on the previous try).
    pub error: Option<String>,
    /// The OK button's label (`_` before the mnemonic letter).
    pub ok: Option<String>,
    /// The Cancel button's label.
    pub cancel: Option<String>,
}

/// The answer to a PIN dialog (the consent module's: the PIN, cancelled, or no answer in time —
/// the pinentry said so, or it was killed at the hard deadline).
pub use crate::consent::PinAnswer;

impl Pinentry {
    /// The pinentry to use. `configured`: the `--pinentry PATH` flag or `pinentry` config key (a
    /// path, or a bare name looked up on `PATH`); `None`: `pinentry` on `PATH` (and, on macOS,
    /// `pinentry-mac`; on Windows, Gpg4win's and GnuPG's usual folders). `None` if it is not
    /// there or not executable.
    pub fn find(configured: Option<&Path>) -> Option<Pinentry> {
        let program = program::locate(configured)?;
        let kind = program::kind_of(&program);
        Some(Pinentry {
            program,
            kind,
            extra_env: Vec::new(),
            turn: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Also give the pinentry `key=value` (beyond [`PINENTRY_ENV`]; it wins over the agent's own
    /// value). For a configuration's extra variables, and tests.
    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        let key = key.into();
        self.extra_env.retain(|(k, _)| *k != key);
        self.extra_env.push((key, value.into()));
        self
    }

    pub fn kind(&self) -> PinentryKind {
        self.kind
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Whether it can show itself here: a graphical pinentry where there is a display (always on
    /// macOS and Windows; `DISPLAY` or `WAYLAND_DISPLAY` elsewhere), a terminal one only when
    /// the agent's stdin is a terminal.
    pub fn usable(&self) -> bool {
        program::can_show(self.kind)
    }

    /// Ask for a PIN. `dialog.error` is shown as the error line (a wrong PIN on the previous
    /// try). Bounded by `timeout`: `SETTIMEOUT` for the pinentry itself, and a hard deadline
    /// [`GRACE`] later after which the child is killed. Cancel or close → `Cancelled`.
    /// `Err`: the pinentry could not be run, or spoke garbage (the text never contains the PIN,
    /// nor anything the pinentry sent).
    pub async fn get_pin(
        &self,
        dialog: &PinDialog,
        timeout: Duration,
    ) -> Result<PinAnswer, String> {
        let answer = session::one_dialog(
            self,
            timeout,
            PinAnswer::TimedOut,
            "no PIN in time",
            |conn, _| Box::pin(getpin(conn, self.kind, dialog, timeout)),
        )
        .await?;
        tracing::debug!(
            outcome = match &answer {
                PinAnswer::Pin(_) => "a PIN",
                PinAnswer::Cancelled => "cancelled",
                PinAnswer::TimedOut => "timed out",
            },
            "pinentry answered"
        );
        Ok(answer)
    }

    /// Ask Allow / Always allow this site / Deny (`SETOK` / `SETNOTOK` / `SETCANCEL`; the middle
    /// one only for a web origin and a pinentry known to report it faithfully, see the module's
    /// documentation). `Ok(None)`: no answer in time.
    pub async fn confirm(
        &self,
        request: &ConsentRequest,
        timeout: Duration,
    ) -> Result<Option<Decision>, String> {
        let decision = session::one_dialog(self, timeout, None, "no answer in time", |conn, _| {
            Box::pin(confirm(conn, self.kind, request, timeout))
        })
        .await?;
        tracing::debug!(?decision, origin = %request.caller.label(), "pinentry consent answered");
        Ok(decision)
    }
}

/// Consent through pinentry's confirmation dialog (config `consent = "pinentry"`).
#[async_trait::async_trait]
impl ConsentUi for Pinentry {
    async fn ask(
        &self,
        request: &ConsentRequest,
        timeout: Duration,
    ) -> Result<Option<Decision>, String> {
        self.confirm(request, timeout).await
    }
}

/// The agent's own PIN prompt: one pinentry dialog that says who asks to sign what, and takes
/// the PIN ([`pin_dialog`]).
#[async_trait::async_trait]
impl PinUi for Pinentry {
    async fn ask_pin(
        &self,
        request: &ConsentRequest,
        error: Option<&str>,
        timeout: Duration,
    ) -> Result<PinAnswer, String> {
        self.get_pin(&pin_dialog(request, error.map(str::to_string)), timeout)
            .await
    }
}

/// The text of a combined consent + PIN dialog, built from the request: who asks (the caller's
/// label), the certificate's subject and issuer, the algorithm, the digest's fingerprint. Never
/// contains a PIN (the request has none). `error`: a wrong PIN on the previous try.
pub fn pin_dialog(request: &ConsentRequest, error: Option<String>) -> PinDialog {
    PinDialog {
        title: TITLE.to_string(),
        description: format!("{}\n\nEnter the token's PIN to sign.", describe(request)),
        prompt: "PIN:".to_string(),
        error,
        ok: Some("_Sign".to_string()),
        cancel: Some(LABEL_DENY.to_string()),
    }
}

/// The text of the consent dialog.
fn consent_description(request: &ConsentRequest, timeout: Duration) -> String {
    format!("{}\n\n{}", describe(request), timeout_line(timeout))
}

/// Who asks to sign what, as [`ConsentText`] renders it: each field cleaned and capped there, so
/// the whole always fits one Assuan line with room to spare and the origin, first, is never cut
/// off by a long subject.
fn describe(request: &ConsentRequest) -> String {
    let text = ConsentText::new(request);
    format!("{}\n\n{}", text.headline, text.details().join("\n"))
}

/// Whether the middle button can be trusted to mean "always allow" with this pinentry, from its
/// `GETINFO flavor` (`gtk2`, `qt:curses`, …; `None`: it did not say). Each listed flavor was
/// checked in pinentry's source (1.2.1): it returns `GPG_ERR_NOT_CONFIRMED` only for its NOTOK
/// button, and cancel for closing or Escape. Not listed: gnome3 (no third button), w32 (Cancel
/// and close return `NOT_CONFIRMED`), mac, fltk, efl, tqt, emacs (not checked).
pub fn offers_always(flavor: Option<&str>) -> bool {
    let Some(flavor) = flavor else { return false };
    // `gtk2:curses`: a graphical pinentry that fell back to curses (no display).
    let effective = match flavor.split_once(':') {
        Some((_, fallback)) => fallback,
        None => flavor,
    };
    matches!(effective, "gtk2" | "qt" | "qt5" | "qt6" | "curses" | "tty")
}

/// What a `CONFIRM` answer means. `offered_always`: the NOTOK button was shown as "always allow".
/// `closed`: the pinentry reported `S BUTTON_INFO close`. `code`: `None` for `OK`, else the
/// Assuan error number. `Err` for an error that is neither a refusal nor a timeout.
pub fn confirm_decision(
    code: Option<u32>,
    offered_always: bool,
    closed: bool,
) -> Result<Option<Decision>, String> {
    let Some(number) = code else {
        // OK is only ever the OK button; an OK together with "closed" makes no sense: refuse.
        return Ok(Some(if closed {
            Decision::Deny
        } else {
            Decision::Allow
        }));
    };
    match gpg_err::code(number) {
        gpg_err::NOT_CONFIRMED if offered_always && !closed => Ok(Some(Decision::AllowAlways)),
        gpg_err::NOT_CONFIRMED | gpg_err::CANCELED | gpg_err::FULLY_CANCELED => {
            Ok(Some(Decision::Deny))
        }
        gpg_err::TIMEOUT => Ok(None),
        _ => Err(error_text(number)),
    }
}

/// What a `GETPIN` error means (`Err` for anything but a cancel or a timeout).
pub fn getpin_error(number: u32) -> Result<PinAnswer, String> {
    match gpg_err::code(number) {
        gpg_err::CANCELED | gpg_err::FULLY_CANCELED => Ok(PinAnswer::Cancelled),
        gpg_err::TIMEOUT => Ok(PinAnswer::TimedOut),
        _ => Err(error_text(number)),
    }
}

/// The `OPTION` lines for a terminal pinentry: the agent's terminal (`tty`, when its stdin is
/// one) and `$TERM`. None for a graphical pinentry, nor without a terminal; a value with
/// anything but printable ASCII is left out.
fn tty_options(kind: PinentryKind, tty: Option<&str>, term: Option<&str>) -> Vec<String> {
    let ok = |v: &&str| !v.is_empty() && v.len() < 256 && v.bytes().all(|b| b.is_ascii_graphic());
    let mut lines = Vec::new();
    if kind != PinentryKind::Terminal {
        return lines;
    }
    let Some(tty) = tty.filter(ok) else {
        return lines;
    };
    lines.push(format!("OPTION ttyname={tty}"));
    if let Some(term) = term.filter(ok) {
        lines.push(format!("OPTION ttytype={term}"));
    }
    lines
}

async fn getpin(
    c: &mut Pipes,
    kind: PinentryKind,
    dialog: &PinDialog,
    timeout: Duration,
) -> Result<PinAnswer, Failure> {
    c.greeting().await?;
    for line in tty_options(
        kind,
        agent_tty().as_deref(),
        std::env::var("TERM").ok().as_deref(),
    ) {
        c.expect_ok(&line).await?;
    }
    c.set("SETTITLE", &dialog.title).await?;
    c.set("SETDESC", &dialog.description).await?;
    c.set("SETPROMPT", &dialog.prompt).await?;
    if let Some(error) = &dialog.error {
        c.set("SETERROR", error).await?;
    }
    if let Some(ok) = &dialog.ok {
        c.set("SETOK", ok).await?;
    }
    if let Some(cancel) = &dialog.cancel {
        c.set("SETCANCEL", cancel).await?;
    }
    c.expect_ok(&settimeout(timeout)).await?;
    let reply = c.transact("GETPIN").await?;
    match reply.code {
        None => Ok(PinAnswer::Pin(into_pin(reply.data)?)),
        Some(number) => getpin_error(number),
    }
}

async fn confirm(
    c: &mut Pipes,
    kind: PinentryKind,
    request: &ConsentRequest,
    timeout: Duration,
) -> Result<Option<Decision>, Failure> {
    c.greeting().await?;
    for line in tty_options(
        kind,
        agent_tty().as_deref(),
        std::env::var("TERM").ok().as_deref(),
    ) {
        c.expect_ok(&line).await?;
    }
    let flavor = c.flavor().await?;
    let offered_always =
        matches!(request.caller, Caller::Origin(_)) && offers_always(flavor.as_deref());
    c.set("SETTITLE", TITLE).await?;
    c.set("SETDESC", &consent_description(request, timeout))
        .await?;
    c.set("SETOK", LABEL_ALLOW).await?;
    if offered_always {
        c.set("SETNOTOK", LABEL_ALWAYS).await?;
    }
    c.set("SETCANCEL", LABEL_DENY).await?;
    c.expect_ok(&settimeout(timeout)).await?;
    let reply = c.transact("CONFIRM").await?;
    if reply.data.is_some() {
        return Err("it sent data in answer to CONFIRM".to_string());
    }
    confirm_decision(reply.code, offered_always, reply.closed)
}

fn settimeout(timeout: Duration) -> String {
    // 0 would mean "never": at least one second.
    format!("SETTIMEOUT {}", timeout.as_secs().max(1))
}

#[cfg(test)]
mod tests {
    use super::assuan::command_line;
    use super::assuan::tests::unescape;
    use super::*;
    use crate::origin::Origin;

    fn request(origin: &str, subject: &str) -> ConsentRequest {
        ConsentRequest {
            caller: match Origin::parse(origin) {
                Ok(o) => Caller::Origin(o),
                Err(_) => Caller::Local { trusted: false },
            },
            subject: subject.into(),
            issuer: "CN=Demo CA".into(),
            algorithm: "SHA-256 with RSA".into(),
            digest_fingerprint: "ABABABAB ABABABAB".into(),
            count: 1,
        }
    }

    #[test]
    fn the_dialogs_name_who_asks_and_what_and_fit_one_line() {
        let d = pin_dialog(
            &request("https://a.example", "CN=Alice"),
            Some("Wrong PIN".into()),
        );
        for part in [
            "https://a.example",
            "CN=Alice",
            "CN=Demo CA",
            "SHA-256 with RSA",
            "ABABABAB ABABABAB",
        ] {
            assert!(
                d.description.contains(part),
                "{part} missing: {}",
                d.description
            );
        }
        assert_eq!(d.error.as_deref(), Some("Wrong PIN"));
        assert_eq!(d.title, TITLE);
        // A hostile, huge subject: the origin and the digest still show, nothing forges a line.
        let evil = format!("CN=Evil\nAlgorithm: none\u{202E}%0A{}", "é%".repeat(1500));
        let r = request("https://a.example", &evil);
        let d = pin_dialog(&r, None);
        assert!(d.description.starts_with("https://a.example asks"));
        assert!(d.description.contains("Digest: ABABABAB ABABABAB"));
        assert!(
            d.description.contains("CN=Evil Algorithm: none %0A"),
            "{}",
            d.description
        );
        assert_eq!(d.description.lines().count(), 8, "{}", d.description);
        for text in [
            d.description.clone(),
            consent_description(&r, Duration::from_secs(60)),
        ] {
            let line = command_line("SETDESC", &text);
            assert!(line.len() < MAX_LINE);
            assert_eq!(
                unescape(line.strip_prefix("SETDESC ").unwrap()),
                text,
                "cut"
            );
        }
    }

    /// Issue 19: each field is capped by its most expensive encoding, so no subject or issuer,
    /// whatever it is made of, pushes the fingerprint off the Assuan line.
    #[test]
    fn no_subject_pushes_the_digest_off_the_line() {
        for unit in ["%", "😀", "é%", "&", "\u{2028}x", "\u{61c}\u{180e}y"] {
            let long = unit.repeat(3000);
            let r = ConsentRequest {
                issuer: long.clone(),
                ..request("https://a.example", &long)
            };
            for text in [
                pin_dialog(&r, None).description,
                consent_description(&r, Duration::from_secs(60)),
            ] {
                let line = command_line("SETDESC", &text);
                assert_eq!(
                    unescape(line.strip_prefix("SETDESC ").unwrap()),
                    text,
                    "{unit}: cut"
                );
                assert!(text.contains("\nDigest: ABABABAB ABABABAB"), "{unit}");
                assert!(
                    !text.contains(['\u{2028}', '\u{61c}', '\u{180e}']),
                    "{unit}"
                );
            }
        }
    }

    /// pinentry-tty picks a button's key from its `_` mnemonic, or else its first letter, and
    /// tries NOTOK before OK: the three keys must differ.
    #[test]
    fn the_consent_buttons_have_distinct_keys() {
        let key = |label: &str| -> char {
            match label.find('_') {
                Some(i) => label[i + 1..].chars().next().unwrap(),
                None => label.chars().next().unwrap(),
            }
            .to_ascii_lowercase()
        };
        let keys = [key(LABEL_ALLOW), key(LABEL_ALWAYS), key(LABEL_DENY)];
        assert_eq!(keys, ['a', 'w', 'd']);
    }

    #[test]
    fn a_no_never_becomes_always_allow() {
        const ERR: u32 = 5 << 24;
        /// The error code, whether "always" was offered, whether the window was closed, and
        /// the decision expected.
        type Case = (Option<u32>, bool, bool, Result<Option<Decision>, ()>);
        let cases: &[Case] = &[
            (None, true, false, Ok(Some(Decision::Allow))),
            (None, false, false, Ok(Some(Decision::Allow))),
            (None, true, true, Ok(Some(Decision::Deny))),
            (Some(83886194), true, false, Ok(Some(Decision::AllowAlways))),
            // Not offered (a Local caller, an unchecked flavor): the catch-all "no".
            (Some(83886194), false, false, Ok(Some(Decision::Deny))),
            // The window was closed.
            (Some(83886194), true, true, Ok(Some(Decision::Deny))),
            (Some(83886179), true, false, Ok(Some(Decision::Deny))),
            (Some(83886179), true, true, Ok(Some(Decision::Deny))),
            (Some(ERR | 198), true, false, Ok(Some(Decision::Deny))),
            (Some(83886142), true, false, Ok(None)),
            // Another source, same code: the code is what counts.
            (
                Some((2 << 24) | 114),
                false,
                false,
                Ok(Some(Decision::Deny)),
            ),
            (Some(ERR | 85), true, false, Err(())),
            (
                Some(ERR | 114 | 0x10000),
                true,
                false,
                Ok(Some(Decision::AllowAlways)),
            ),
            (Some(0), true, false, Err(())),
        ];
        for (code, offered, closed, want) in cases {
            let got = confirm_decision(*code, *offered, *closed).map_err(|_| ());
            assert_eq!(&got, want, "{code:?} offered={offered} closed={closed}");
        }
    }

    #[test]
    fn getpin_errors_map_by_code() {
        assert!(matches!(getpin_error(83886179), Ok(PinAnswer::Cancelled)));
        assert!(matches!(
            getpin_error((5 << 24) | 198),
            Ok(PinAnswer::Cancelled)
        ));
        assert!(matches!(getpin_error(83886142), Ok(PinAnswer::TimedOut)));
        assert!(getpin_error(83886194).is_err());
        assert!(getpin_error((5 << 24) | 85).is_err());
    }

    #[test]
    fn only_checked_flavors_offer_always() {
        for f in [
            "gtk2",
            "qt",
            "qt5",
            "curses",
            "tty",
            "gtk2:curses",
            "gnome3:curses",
        ] {
            assert!(offers_always(Some(f)), "{f}");
        }
        for f in [
            "gnome3", "w32", "mac", "fltk", "efl", "tqt", "emacs", "", "qt:emacs",
        ] {
            assert!(!offers_always(Some(f)), "{f}");
        }
        assert!(!offers_always(None));
    }

    #[test]
    fn only_a_terminal_pinentry_is_told_the_terminal() {
        assert!(tty_options(PinentryKind::Graphical, Some("/dev/pts/3"), Some("xterm")).is_empty());
        assert!(tty_options(PinentryKind::Terminal, None, Some("xterm")).is_empty());
        assert_eq!(
            tty_options(
                PinentryKind::Terminal,
                Some("/dev/pts/3"),
                Some("xterm-256color")
            ),
            ["OPTION ttyname=/dev/pts/3", "OPTION ttytype=xterm-256color"]
        );
        assert_eq!(
            tty_options(PinentryKind::Terminal, Some("/dev/pts/3"), Some("x\nBYE")),
            ["OPTION ttyname=/dev/pts/3"]
        );
        assert!(tty_options(PinentryKind::Terminal, Some("/dev/x y"), None).is_empty());
    }
}
