//! The Windows desktop: consent, the PIN and the PIN-pad notice as native Win32 dialogs, the
//! state under `%LOCALAPPDATA%\Keyport`, folders shown with `explorer.exe` (`DESKTOP`, for the
//! shared tray and headless shells).
//!
//! # Why plain Win32 windows, not TaskDialogIndirect
//! TaskDialog is comctl32 version 6 only, which a process gets only through an activation
//! context (a manifest embedded in the exe, or one made at run time), and it cannot hold a
//! password field, so the PIN dialog would be a plain window anyway. One plain window class
//! (`dialog.rs`) serves all three dialogs with the same code under Windows and Wine, needs no
//! manifest, and its controls are ordinary child windows that a test reads back and presses
//! (`GetDlgItem`, `WM_GETTEXT`, `BM_CLICK`). With a comctl32 v6 manifest the same controls are
//! drawn in the visual style; without one, classic.
//!
//! # Files
//! * `spec.rs`: what each dialog says (rendered by [`crate::consent::text`], so certificate text
//!   is cleaned and capped as in every prompt), its buttons, and what its ending means. Every
//!   platform compiles it, and its tests run on Linux.
//! * `layout.rs`: where each control goes, from measured text. Every platform, tested on Linux.
//! * `window.rs` (Windows): building a dialog's window: its class, font, measured controls,
//!   place on the screen.
//! * `dialog.rs` (Windows): one dialog window on its own thread, its message loop, its keyboard
//!   (mnemonics need Alt; the yes buttons wait [`spec::INPUT_GUARD`]), the PIN's reading and
//!   wiping, and taking a dialog back.
//! * `prompts.rs` (Windows): `WindowsDialogs`, the agent's [`crate::consent::ConsentUi`] and
//!   [`crate::consent::PinUi`] over those dialogs.

pub mod layout;
pub mod spec;

#[cfg(windows)]
mod dialog;
#[cfg(windows)]
mod prompts;
#[cfg(all(test, windows))]
mod tests;
#[cfg(windows)]
mod window;

#[cfg(windows)]
pub use prompts::WindowsDialogs;

use super::{ConsentUiChoice, PinentryPrompts};
use crate::config::ConsentMode;
use crate::consent::{ConsentUi, PinUi};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// This desktop's conventions, for the shared shells.
#[cfg(windows)]
pub const DESKTOP: super::Desktop = super::Desktop {
    consent_ui,
    default_state_file,
    open_folder,
};

/// The prompts for `prompts` on Windows ([`assemble`]).
#[cfg(windows)]
pub fn consent_ui(prompts: &super::PromptConfig) -> ConsentUiChoice {
    assemble(
        prompts.consent,
        || {
            let dialogs = Arc::new(WindowsDialogs::new());
            (dialogs.clone(), dialogs)
        },
        || super::pinentry_prompts(prompts.pinentry.as_deref()),
    )
}

/// The prompts for `mode`: `auto` and `notify` ask with the Windows dialogs (the desktop's own
/// prompt: consent, PIN, PIN-pad notice); `pinentry` with the configured pinentry (Gpg4win's),
/// as on Linux: its confirmation dialog if one is installed, its PIN window if it can show
/// itself; `none` shows nothing at all, and only trusted origins sign.
pub fn assemble(
    mode: ConsentMode,
    dialogs: impl FnOnce() -> (Arc<dyn ConsentUi>, Arc<dyn PinUi>),
    pinentry: impl FnOnce() -> Option<PinentryPrompts>,
) -> ConsentUiChoice {
    match mode {
        ConsentMode::None => ConsentUiChoice {
            ui: None,
            pin: None,
            note: "consent prompts disabled (--consent none): only trusted origins can sign".into(),
        },
        ConsentMode::Auto | ConsentMode::Notify => {
            let (ui, pin) = dialogs();
            ConsentUiChoice {
                ui: Some(ui),
                pin: Some(pin),
                note: "consent prompts and PIN prompt: Windows dialogs".into(),
            }
        }
        ConsentMode::Pinentry => match pinentry() {
            Some(p) => {
                let note = match p.usable {
                    true => format!("consent prompts: {0}; PIN prompt: {0}", p.program),
                    false => format!(
                        "consent prompts: {0}; no PIN prompt ({0} cannot show itself here)",
                        p.program
                    ),
                };
                ConsentUiChoice {
                    ui: Some(p.consent),
                    pin: p.usable.then_some(p.pin),
                    note,
                }
            }
            None => ConsentUiChoice {
                ui: None,
                pin: None,
                note: "consent through pinentry, but no pinentry program was found: only \
                       trusted origins can sign; no PIN prompt"
                    .into(),
            },
        },
    }
}

/// Where the person's state lives when no `state_file` is configured:
/// `%LOCALAPPDATA%\Keyport\state.json`.
pub fn default_state_file() -> Option<PathBuf> {
    Some(dirs::data_local_dir()?.join("Keyport").join("state.json"))
}

/// Show a folder in Explorer (created first if it is not there yet).
pub fn open_folder(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    let mut child = std::process::Command::new("explorer.exe")
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Reap it without blocking the UI thread (explorer.exe exits 1 even when it opened it).
    std::thread::spawn(move || child.wait());
    Ok(())
}

#[cfg(test)]
mod modes {
    use super::*;
    use crate::consent::{ConsentRequest, Decision, PinAnswer};
    use std::time::Duration;

    /// A prompt that never shows anything; only its identity matters here.
    struct Nobody;

    #[async_trait::async_trait]
    impl ConsentUi for Nobody {
        async fn ask(&self, _: &ConsentRequest, _: Duration) -> Result<Option<Decision>, String> {
            Err("nobody".into())
        }
    }

    #[async_trait::async_trait]
    impl PinUi for Nobody {
        async fn ask_pin(
            &self,
            _: &ConsentRequest,
            _: Option<&str>,
            _: Duration,
        ) -> Result<PinAnswer, String> {
            Err("nobody".into())
        }
    }

    fn dialogs() -> (Arc<dyn ConsentUi>, Arc<dyn PinUi>) {
        (Arc::new(Nobody), Arc::new(Nobody))
    }

    fn pinentry(usable: bool) -> Option<PinentryPrompts> {
        Some(PinentryPrompts {
            consent: Arc::new(Nobody),
            pin: Arc::new(Nobody),
            usable,
            program: "C:\\Program Files\\Gpg4win\\bin\\pinentry.exe".into(),
        })
    }

    #[test]
    fn auto_and_notify_ask_with_the_dialogs_none_with_nothing() {
        for mode in [ConsentMode::Auto, ConsentMode::Notify] {
            let c = assemble(mode, dialogs, || panic!("pinentry is not looked for"));
            assert!(c.ui.is_some() && c.pin.is_some());
            assert_eq!(c.note, "consent prompts and PIN prompt: Windows dialogs");
        }
        let c = assemble(
            ConsentMode::None,
            || panic!("no dialog"),
            || panic!("no pinentry"),
        );
        assert!(c.ui.is_none() && c.pin.is_none());
        assert!(c.note.contains("--consent none"), "{}", c.note);
    }

    #[test]
    fn pinentry_asks_with_pinentry_where_there_is_one() {
        let c = assemble(
            ConsentMode::Pinentry,
            || panic!("no dialog"),
            || pinentry(true),
        );
        assert!(c.ui.is_some() && c.pin.is_some());
        assert!(
            c.note.contains("PIN prompt: C:\\Program Files"),
            "{}",
            c.note
        );
        let c = assemble(
            ConsentMode::Pinentry,
            || panic!("no dialog"),
            || pinentry(false),
        );
        assert!(c.ui.is_some() && c.pin.is_none());
        assert!(c.note.contains("no PIN prompt"), "{}", c.note);
        let c = assemble(ConsentMode::Pinentry, || panic!("no dialog"), || None);
        assert!(c.ui.is_none() && c.pin.is_none());
        assert!(
            c.note.contains("no pinentry program was found"),
            "{}",
            c.note
        );
    }
}
