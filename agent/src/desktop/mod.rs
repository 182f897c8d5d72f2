//! The desktop side, behind one small seam: a [`Shell`] is everything [`crate::app`] needs from
//! the desktop (the consent UI, where the person's state lives, a tray or none, and the loop the
//! main thread runs). [`pick`] chooses one for the configuration and the machine.
//!
//! The two shells are the same on every platform; what differs is the [`Desktop`] they are
//! made with (how to ask, where the state lives, how to show a folder), [`native`]'s:
//! * [`freedesktop`]: Linux and the BSDs. Consent as a desktop notification
//!   ([`freedesktop::notify`]) or pinentry, XDG paths, `xdg-open`. macOS uses it too (its own
//!   desktop is not written yet): only pinentry (pinentry-mac) can ask there, `open` shows a
//!   folder.
//! * [`windows`]: consent, the PIN and the PIN-pad notice as native Win32 dialogs,
//!   `%LOCALAPPDATA%\Keyport`, `explorer.exe`.
//!
//! The shells:
//! * `tray` (the `tray` feature): a tao event loop and a tray-icon icon, the same code on
//!   Linux and Windows; a desktop checks first what would make the toolkit panic
//!   (`freedesktop/tray.rs`).
//! * [`headless`]: no tray; consent as the configuration and the desktop allow. The only shell
//!   of a `--no-default-features` build.
//! * [`tray_model`]: what a tray shows and what its menu does, toolkit-free and unit-tested;
//!   [`icon`]: its icon's pixels. The tray shell draws these.
//!
//! Which platform gets which consent UI is in docs/DESKTOP.md.

pub mod freedesktop;
pub mod headless;
pub mod icon;
pub mod pinentry;
#[cfg(feature = "tray")]
pub mod tray;
pub mod tray_model;
pub mod windows;

use crate::config::{Config, ConsentMode};
use crate::consent::{ConsentUi, PinUi};
use crate::state::Agent;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

/// What a shell is told once the server listens.
pub struct Running {
    pub agent: Arc<Agent>,
    /// Where the agent listens (`ws://127.0.0.1:PORT`).
    pub url: String,
    /// The folder of the state file, which also holds the log in tray mode (none: not shown).
    pub folder: Option<PathBuf>,
    /// Starts the clean shutdown (the tray's Quit); the shell's loop ends once it is done.
    pub quit: Box<dyn Fn() + Send + Sync>,
}

/// The prompts a shell offers, and a sentence for the log.
pub struct ConsentUiChoice {
    /// None: no prompt can be shown; only trusted origins sign (CONSENT_UNAVAILABLE).
    pub ui: Option<Arc<dyn ConsentUi>>,
    /// The agent's own PIN prompt. None: a request without a PIN signs only on a PIN-pad
    /// reader (PIN_ENTRY_UNAVAILABLE otherwise).
    pub pin: Option<Arc<dyn PinUi>>,
    pub note: String,
}

/// How the agent may ask the person, from the configuration.
#[derive(Debug, Clone, Default)]
pub struct PromptConfig {
    pub consent: ConsentMode,
    /// The pinentry program (None: `pinentry` on PATH).
    pub pinentry: Option<PathBuf>,
}

impl PromptConfig {
    pub fn of(config: &Config) -> PromptConfig {
        PromptConfig {
            consent: config.consent,
            pinentry: config.pinentry.clone(),
        }
    }
}

/// Everything the agent needs from a desktop. A shell is made and run on the main thread
/// (GTK and macOS want their toolkit there).
pub trait Shell {
    /// The consent prompt, as the configuration and this desktop allow.
    fn consent_ui(&self) -> ConsentUiChoice;

    /// Where the person's state lives when no `state_file` is configured.
    fn default_state_file(&self) -> Option<PathBuf>;

    /// Whether the person sees the agent as a tray icon rather than in a terminal: its log then
    /// also goes to `keyport.log` in the state folder, which the tray's menu opens.
    fn has_tray(&self) -> bool;

    /// What the server thread calls once the server has stopped, so that [`Shell::run`] returns.
    fn on_server_stopped(&self) -> Box<dyn FnOnce() + Send>;

    /// Run on the main thread until the server has stopped (at once if there is nothing to
    /// show). `running` yields what the server started, or closes if it could not start.
    fn run(self: Box<Self>, running: Receiver<Running>);
}

/// What differs from one desktop to another, for the shells that are the same on all of them
/// (the tray, headless).
#[derive(Clone, Copy)]
pub struct Desktop {
    /// The prompts, for the configuration and what this machine offers.
    pub consent_ui: fn(&PromptConfig) -> ConsentUiChoice,
    /// Where the person's state lives when no `state_file` is configured.
    pub default_state_file: fn() -> Option<PathBuf>,
    /// Show a folder to the person (the tray's "Open settings and log folder").
    pub open_folder: fn(&Path) -> std::io::Result<()>,
}

/// This platform's desktop: Windows' own on Windows, else freedesktop.org's.
pub fn native() -> Desktop {
    #[cfg(windows)]
    let desktop = windows::DESKTOP;
    #[cfg(not(windows))]
    let desktop = freedesktop::DESKTOP;
    desktop
}

/// The shell for this configuration and machine. Call it on the main thread before any other
/// thread starts: the tray shell starts its toolkit here, and on Linux first sets a variable in
/// the process environment for it (see `freedesktop/gl.rs`). Says once in the log when it picks
/// no tray, and why.
pub fn pick(config: &Config) -> Box<dyn Shell> {
    let headless = |why: &str| -> Box<dyn Shell> {
        tracing::info!("running headless, without a tray icon: {why}");
        Box::new(headless::Headless::new(PromptConfig::of(config), native()))
    };
    if !config.tray {
        return headless("started with --no-tray");
    }
    #[cfg(feature = "tray")]
    {
        #[cfg(windows)]
        let tray = tray::TrayShell::start(PromptConfig::of(config), windows::DESKTOP);
        #[cfg(not(windows))]
        let tray = freedesktop::tray::start(PromptConfig::of(config));
        match tray {
            Ok(shell) => Box::new(shell),
            Err(why) => headless(&why),
        }
    }
    #[cfg(not(feature = "tray"))]
    headless("this build has no tray (built without the `tray` feature)")
}

/// pinentry, as the agent's consent dialog and PIN prompt.
pub struct PinentryPrompts {
    pub consent: Arc<dyn ConsentUi>,
    pub pin: Arc<dyn PinUi>,
    /// It can show itself here: graphical with a display (or on macOS/Windows), a terminal one
    /// only when the agent runs in a terminal.
    pub usable: bool,
    /// Its program, for the log.
    pub program: String,
}

/// The configured pinentry (`configured`, else `pinentry` on PATH), if installed.
pub fn pinentry_prompts(configured: Option<&std::path::Path>) -> Option<PinentryPrompts> {
    let Some(found) = pinentry::Pinentry::find(configured) else {
        if let Some(path) = configured {
            tracing::warn!(
                "the configured pinentry {} is not an executable program",
                path.display()
            );
        }
        return None;
    };
    let found = Arc::new(found);
    Some(PinentryPrompts {
        usable: found.usable(),
        program: found.program().display().to_string(),
        consent: found.clone(),
        pin: found,
    })
}

/// What must happen before the process starts any thread (`main` calls it first): on a
/// freedesktop build with the tray, keep GTK from probing GL visuals (it would load a GL driver
/// of tens of MB that nothing uses; see `freedesktop::gl`). Setting the environment is only
/// sound while the process has one thread.
pub fn before_any_thread() {
    #[cfg(all(feature = "tray", unix, not(target_os = "macos")))]
    freedesktop::gl::disable_probe();
}
