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
//! # Security, in short
//! A certificate's subject and issuer come from the token, and the token may be hostile: the
//! dialog texts are cleaned and capped by [`crate::consent::text`], and every line sent is
//! percent-escaped and capped by the Assuan client, so no text can fake a line of the dialog or
//! start an Assuan command. The PIN is read into wiped memory and moves, without a copy, into a
//! [`Pin`](keyport_protocol::Pin); neither it nor any line the pinentry sent is logged or put in
//! an error. A "no" never becomes "always allow" ([`confirm_decision`], [`offers_always`]).
//!
//! # Files
//! * `mod.rs`: [`Pinentry`] and the other public types, the methods the agent calls, and the
//!   [`ConsentUi`] and [`PinUi`] impls.
//! * `program.rs`: which program (configured, or the platform's usual one), whether it draws in
//!   a terminal, whether it can show itself here.
//! * `session.rs`: the child process: its environment, one dialog at a time, the hard deadline,
//!   the kill.
//! * `dialog.rs`: what each dialog says and sends, and what its answers mean (why a "no" never
//!   becomes "always allow").
//! * `assuan.rs`: the protocol client (and why it is our own): escaping and capping lines,
//!   reading answers into wiped memory, GnuPG's error codes.

use crate::consent::{ConsentRequest, ConsentUi, Decision, PinUi};
use dialog::{consent_conversation, pin_conversation};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod assuan;
mod dialog;
mod program;
mod session;

pub use assuan::{gpg_err, MAX_DATA, MAX_LINE};
pub use dialog::{
    confirm_decision, getpin_error, label_allow, label_always, label_deny, offers_always,
    pin_dialog, pin_dialog_in, title,
};
pub use session::{GRACE, PINENTRY_ENV, PINENTRY_ENV_PREFIXES};

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
            |conn, _| Box::pin(pin_conversation(conn, self.kind, dialog, timeout)),
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
    /// one only for a web origin and a pinentry known to report it faithfully: see "Answers" in
    /// `dialog.rs`). `Ok(None)`: no answer in time.
    pub async fn confirm(
        &self,
        request: &ConsentRequest,
        timeout: Duration,
    ) -> Result<Option<Decision>, String> {
        let decision = session::one_dialog(self, timeout, None, "no answer in time", |conn, _| {
            Box::pin(consent_conversation(conn, self.kind, request, timeout))
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
