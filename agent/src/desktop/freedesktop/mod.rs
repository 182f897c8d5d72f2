//! The freedesktop.org desktop (Linux, the BSDs): consent as a notification with buttons
//! ([`notify`]), the XDG state folder, `xdg-open` ([`DESKTOP`]), and the checks before the tray
//! shell starts (`tray.rs`, with the `tray` feature; `gl.rs` keeps GTK from loading a GL driver
//! it will not use).
//!
//! macOS uses this desktop too until it has its own: there the notification cannot ask
//! ([`choose_consent`]: pinentry-mac does), the state file goes to the per-user application data
//! folder, and `open` shows a folder. Windows has its own ([`crate::desktop::windows`]).

#[cfg(feature = "tray")]
pub mod gl;
pub mod notify;
#[cfg(feature = "tray")]
pub mod tray;

use super::{ConsentUiChoice, Desktop, PromptConfig};
use crate::config::ConsentMode;
use crate::consent::{ConsentRequest, ConsentUi, Decision};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// This desktop's conventions, for the shared shells.
pub const DESKTOP: Desktop = Desktop {
    consent_ui,
    default_state_file,
    open_folder,
};

/// Which consent UI, decided from the mode and what the machine offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentChoice {
    /// A desktop notification with buttons ([`notify::NotifyConsent`]); when the notification
    /// server cannot ask (none answers, or it shows no buttons) and `fallback` is set, that
    /// request asks through pinentry instead.
    Notifications { fallback: bool },
    /// pinentry's confirmation dialog.
    Pinentry,
    /// No prompt can be shown; the reason, for the log.
    Unavailable(&'static str),
}

/// What the machine offers for consent.
#[derive(Debug, Clone, Copy)]
pub struct ConsentEnv {
    /// freedesktop.org notifications can carry buttons here (Linux, the BSDs).
    pub freedesktop: bool,
    /// A session bus is configured (`DBUS_SESSION_BUS_ADDRESS` set and not empty).
    pub session_bus: bool,
    /// A pinentry program is installed and can show itself here: a graphical one with a
    /// display (or on macOS/Windows), a terminal one only when the agent runs in a terminal.
    pub pinentry: bool,
}

/// `none`: never; `notify`: notifications always (no bus then fails each request,
/// CONSENT_UNAVAILABLE); `pinentry`: pinentry always (not installed: the same); `auto`:
/// notifications on a freedesktop platform with a session bus, falling back to pinentry per
/// request, else pinentry where it can show itself, else none.
pub fn choose_consent(mode: ConsentMode, env: ConsentEnv) -> ConsentChoice {
    match mode {
        ConsentMode::None => ConsentChoice::Unavailable(
            "consent prompts disabled (--consent none): only trusted origins can sign",
        ),
        ConsentMode::Notify => ConsentChoice::Notifications { fallback: false },
        ConsentMode::Pinentry => ConsentChoice::Pinentry,
        ConsentMode::Auto if env.freedesktop && env.session_bus => ConsentChoice::Notifications {
            fallback: env.pinentry,
        },
        ConsentMode::Auto if env.pinentry => ConsentChoice::Pinentry,
        ConsentMode::Auto if env.freedesktop => ConsentChoice::Unavailable(
            "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS unset) and no pinentry that can \
             show itself here: no consent prompt can be shown, only trusted origins can sign",
        ),
        ConsentMode::Auto => ConsentChoice::Unavailable(
            "this platform's notifications have no buttons and no pinentry is installed: no \
             consent prompt can be shown, only trusted origins can sign",
        ),
    }
}

/// Whether the agent asks for PINs itself (pinentry): wherever pinentry can show itself, unless
/// prompts are off (`--consent none`: the agent shows nothing at all).
pub fn choose_pin_prompt(mode: ConsentMode, env: ConsentEnv) -> bool {
    mode != ConsentMode::None && env.pinentry
}

impl ConsentEnv {
    /// This machine, with `pinentry` (if one was found) usable or not.
    pub fn here(pinentry: Option<&super::PinentryPrompts>) -> ConsentEnv {
        ConsentEnv {
            freedesktop: cfg!(all(unix, not(target_os = "macos"))),
            session_bus: std::env::var_os("DBUS_SESSION_BUS_ADDRESS")
                .is_some_and(|v| !v.is_empty()),
            pinentry: pinentry.is_some_and(|p| p.usable),
        }
    }
}

/// The prompts for `prompts` on this machine.
pub fn consent_ui(prompts: &PromptConfig) -> ConsentUiChoice {
    let pinentry = super::pinentry_prompts(prompts.pinentry.as_deref());
    let env = ConsentEnv::here(pinentry.as_ref());
    let pin = match &pinentry {
        Some(p) if choose_pin_prompt(prompts.consent, env) => Some(p.pin.clone()),
        _ => None,
    };
    let pin_note = match (&pin, &pinentry) {
        (Some(_), Some(p)) => format!("; PIN prompt: {}", p.program),
        (None, Some(p)) if prompts.consent != ConsentMode::None => {
            format!("; no PIN prompt ({} cannot show itself here)", p.program)
        }
        (None, None) if prompts.consent != ConsentMode::None => {
            "; no PIN prompt (no pinentry program found)".to_string()
        }
        _ => String::new(),
    };
    let (ui, note): (Option<Arc<dyn ConsentUi>>, String) =
        match (choose_consent(prompts.consent, env), pinentry) {
            (ConsentChoice::Notifications { fallback: true }, Some(p)) => (
                Some(Arc::new(Fallback {
                    first: Arc::new(notify::NotifyConsent::new()),
                    then: p.consent,
                })),
                format!("consent prompts: desktop notifications, else {}", p.program),
            ),
            (ConsentChoice::Notifications { .. }, _) => (
                Some(Arc::new(notify::NotifyConsent::new())),
                "consent prompts: desktop notifications".into(),
            ),
            (ConsentChoice::Pinentry, Some(p)) => {
                (Some(p.consent), format!("consent prompts: {}", p.program))
            }
            (ConsentChoice::Pinentry, None) => (
                None,
                "consent through pinentry, but no pinentry program was found: only trusted \
                 origins can sign"
                    .into(),
            ),
            (ConsentChoice::Unavailable(why), _) => (None, why.into()),
        };
    ConsentUiChoice {
        ui,
        pin,
        note: note + &pin_note,
    }
}

/// Ask with `first`; a request that `first` cannot ask at all (no notification server, or one
/// without buttons) asks with `then`.
struct Fallback {
    first: Arc<dyn ConsentUi>,
    then: Arc<dyn ConsentUi>,
}

#[async_trait::async_trait]
impl ConsentUi for Fallback {
    async fn ask(
        &self,
        request: &ConsentRequest,
        timeout: Duration,
    ) -> Result<Option<Decision>, String> {
        match self.first.ask(request, timeout).await {
            Err(why) => {
                tracing::debug!(reason = %why, "notifications cannot ask: asking with pinentry");
                self.then.ask(request, timeout).await
            }
            answer => answer,
        }
    }

    async fn pin_pad_notice(&self, request: &ConsentRequest) -> Option<Box<dyn Send>> {
        self.first.pin_pad_notice(request).await
    }
}

/// Where the person's state lives when no `state_file` is configured:
/// `$XDG_STATE_HOME/keyport/state.json`, else `~/.local/state/keyport/state.json`.
pub fn default_state_file() -> Option<PathBuf> {
    // `$XDG_STATE_HOME` (if absolute) or `~/.local/state` on Linux; the per-user application
    // data folder where the platform has no state folder (macOS, Windows).
    let base = dirs::state_dir().or_else(dirs::data_local_dir)?;
    Some(base.join("keyport").join("state.json"))
}

/// Show a folder to the person with the desktop's file manager. (By hand rather than with the
/// `opener` crate: the file manager must not inherit the tray's `GDK_GL`.)
pub fn open_folder(path: &Path) -> std::io::Result<()> {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::fs::create_dir_all(path)?;
    let mut command = std::process::Command::new(opener);
    command
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // The file manager is not ours: it gets the person's GL setting, not the tray's.
    #[cfg(feature = "tray")]
    if gl::disabled_by_us() {
        command.env_remove(gl::VAR);
    }
    let mut child = command.spawn()?;
    // Reap it without blocking the UI thread.
    std::thread::spawn(move || child.wait());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(freedesktop: bool, session_bus: bool, pinentry: bool) -> ConsentEnv {
        ConsentEnv {
            freedesktop,
            session_bus,
            pinentry,
        }
    }

    #[test]
    fn auto_asks_only_where_a_prompt_can_carry_an_answer() {
        use ConsentChoice::*;
        let auto = |fd, bus, pe| choose_consent(ConsentMode::Auto, env(fd, bus, pe));
        assert_eq!(auto(true, true, false), Notifications { fallback: false });
        assert_eq!(auto(true, true, true), Notifications { fallback: true });
        assert_eq!(auto(true, false, true), Pinentry);
        assert_eq!(auto(false, true, true), Pinentry, "macOS/Windows: pinentry");
        assert_eq!(auto(false, false, true), Pinentry);
        assert!(
            matches!(auto(true, false, false), Unavailable(w) if w.contains("no D-Bus session bus"))
        );
        assert!(matches!(auto(false, true, false), Unavailable(w) if w.contains("no buttons")));
        assert!(matches!(auto(false, false, false), Unavailable(w) if w.contains("no buttons")));
    }

    #[test]
    fn notify_pinentry_and_none_do_what_they_say_anywhere() {
        for (fd, bus, pe) in [
            (true, true, true),
            (true, false, false),
            (false, true, true),
            (false, false, false),
        ] {
            let e = env(fd, bus, pe);
            assert_eq!(
                choose_consent(ConsentMode::Notify, e),
                ConsentChoice::Notifications { fallback: false }
            );
            assert_eq!(
                choose_consent(ConsentMode::Pinentry, e),
                ConsentChoice::Pinentry
            );
            assert!(matches!(
                choose_consent(ConsentMode::None, e),
                ConsentChoice::Unavailable(w) if w.contains("--consent none")
            ));
            assert!(!choose_pin_prompt(ConsentMode::None, e));
            assert_eq!(choose_pin_prompt(ConsentMode::Auto, e), pe);
            assert_eq!(choose_pin_prompt(ConsentMode::Notify, e), pe);
        }
    }
}
