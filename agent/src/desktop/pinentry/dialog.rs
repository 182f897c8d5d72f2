//! The two dialogs: what each says, the conversation that shows it, and what its answers mean.
//!
//! # What is sent
//! The commands, in order, are listed in the folder's documentation (`mod.rs`, "One dialog, step
//! by step"). Never `SETKEYINFO` nor `OPTION allow-external-password-cache`, so a pinentry never
//! offers to store the PIN in a keyring.
//!
//! The dialog texts ([`pin_dialog`], the consent text) are rendered by [`crate::consent::text`],
//! which turns the certificate's control, format (bidirectional among them) and separator
//! characters into spaces and caps each field, so a subject can neither fake a line of its own
//! nor push the fingerprint off the line; the Assuan client then escapes and caps each line.
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

use super::assuan::{error_text, gpg_err, into_pin, Failure};
use super::program::agent_tty;
use super::session::Pipes;
use super::{PinAnswer, PinDialog, PinentryKind};
use crate::consent::text::{timeout_line, ConsentText};
use crate::consent::{Caller, ConsentRequest, Decision};
use crate::i18n::{self, Catalog};
use std::time::Duration;

/// The buttons of the consent dialog, in the person's language, with distinct mnemonics (see
/// "Answers" in `dialog.rs`; every catalogue's are checked distinct).
pub fn label_allow() -> String {
    i18n::text("button-allow", &[])
}
pub fn label_always() -> String {
    i18n::text("button-always", &[])
}
pub fn label_deny() -> String {
    i18n::text("button-deny", &[])
}

/// The title of both dialogs.
pub fn title() -> String {
    i18n::text("title-signature-request", &[])
}

/// The text of a combined consent + PIN dialog, built from the request: who asks (the caller's
/// label), the certificate's subject and issuer, the algorithm, the digest's fingerprint. Never
/// contains a PIN (the request has none). `error`: a wrong PIN on the previous try.
pub fn pin_dialog(request: &ConsentRequest, error: Option<String>) -> PinDialog {
    pin_dialog_in(i18n::current(), request, error)
}

/// [`pin_dialog`] in `catalog`'s language.
pub fn pin_dialog_in(
    catalog: &Catalog,
    request: &ConsentRequest,
    error: Option<String>,
) -> PinDialog {
    let text = ConsentText::in_language(catalog, request);
    PinDialog {
        title: catalog.text("title-signature-request", &[]),
        description: format!(
            "{}\n\n{}\n\n{}",
            text.headline,
            text.details().join("\n"),
            catalog.text("pin-instruction", &[])
        ),
        prompt: catalog.text("pin-label", &[]),
        error,
        ok: Some(catalog.text("button-sign", &[])),
        cancel: Some(catalog.text("button-deny", &[])),
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

/// The PIN dialog: greet, tell a terminal pinentry its terminal, send `dialog`'s texts and the
/// time limit, then `GETPIN`. A cancel or the pinentry's own timeout is an answer
/// ([`getpin_error`]); the PIN moves out of the reply without a copy.
pub(super) async fn pin_conversation(
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

/// The consent dialog: as [`pin_conversation`], with the middle button only for a web origin and a flavor
/// that reports it faithfully ([`offers_always`]), then `CONFIRM` ([`confirm_decision`]).
pub(super) async fn consent_conversation(
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
    c.set("SETTITLE", &title()).await?;
    c.set("SETDESC", &consent_description(request, timeout))
        .await?;
    c.set("SETOK", &label_allow()).await?;
    if offered_always {
        c.set("SETNOTOK", &label_always()).await?;
    }
    c.set("SETCANCEL", &label_deny()).await?;
    c.expect_ok(&settimeout(timeout)).await?;
    let reply = c.transact("CONFIRM").await?;
    if reply.data.is_some() {
        return Err("it sent data in answer to CONFIRM".to_string());
    }
    confirm_decision(reply.code, offered_always, reply.closed)
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

/// The `SETTIMEOUT` line for `timeout`, in whole seconds.
fn settimeout(timeout: Duration) -> String {
    // 0 would mean "never": at least one second.
    format!("SETTIMEOUT {}", timeout.as_secs().max(1))
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

#[cfg(test)]
mod tests {
    use super::super::assuan::command_line;
    use super::super::assuan::tests::unescape;
    use super::super::MAX_LINE;
    use super::*;

    #[test]
    fn the_dialogs_name_who_asks_and_what_and_fit_one_line() {
        let d = pin_dialog(
            &ConsentRequest::sample("https://a.example", "CN=Alice"),
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
        assert_eq!(d.title, title());
        // A hostile, huge subject: the origin and the digest still show, nothing forges a line.
        let evil = format!("CN=Evil\nAlgorithm: none\u{202E}%0A{}", "é%".repeat(1500));
        let r = ConsentRequest::sample("https://a.example", &evil);
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
                ..ConsentRequest::sample("https://a.example", &long)
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
        let keys = [
            key(&label_allow()),
            key(&label_always()),
            key(&label_deny()),
        ];
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
