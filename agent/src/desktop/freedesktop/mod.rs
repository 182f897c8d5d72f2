//! The freedesktop.org desktop (Linux, the BSDs): consent as a notification with buttons
//! ([`notify`]), the XDG state folder, `xdg-open`, and the tray shell (`tray.rs`, with the `tray`
//! feature; `gl.rs` keeps GTK from loading a GL driver it will not use).
//!
//! These are the only desktop conventions written so far, so the headless shell uses them on
//! every platform: elsewhere the notification cannot ask ([`choose_consent`]), and the state
//! file goes to the XDG default under `$HOME`.

#[cfg(feature = "tray")]
pub mod gl;
pub mod notify;
#[cfg(feature = "tray")]
pub mod tray;

use super::ConsentUiChoice;
use crate::config::ConsentMode;
use crate::consent::ConsentUi;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which consent UI, decided from the mode and what the machine offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentChoice {
    /// A desktop notification with buttons ([`notify::NotifyConsent`]).
    Notifications,
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
}

impl ConsentEnv {
    pub fn here() -> ConsentEnv {
        ConsentEnv {
            freedesktop: cfg!(all(unix, not(target_os = "macos"))),
            session_bus: std::env::var_os("DBUS_SESSION_BUS_ADDRESS")
                .is_some_and(|v| !v.is_empty()),
        }
    }
}

/// `none`: never; `notify`: always (no bus then fails each request, CONSENT_UNAVAILABLE);
/// `auto`: notifications on a freedesktop platform with a session bus, none otherwise.
pub fn choose_consent(mode: ConsentMode, env: ConsentEnv) -> ConsentChoice {
    match mode {
        ConsentMode::None => ConsentChoice::Unavailable(
            "consent prompts disabled (--consent none): only trusted origins can sign",
        ),
        ConsentMode::Notify => ConsentChoice::Notifications,
        ConsentMode::Auto if env.freedesktop && env.session_bus => ConsentChoice::Notifications,
        ConsentMode::Auto if env.freedesktop => ConsentChoice::Unavailable(
            "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS unset): no consent prompt can be \
             shown, only trusted origins can sign",
        ),
        ConsentMode::Auto => ConsentChoice::Unavailable(
            "this platform's notifications have no buttons: no consent prompt can be shown, \
             only trusted origins can sign",
        ),
    }
}

/// The consent UI for `mode` on this machine.
pub fn consent_ui(mode: ConsentMode) -> ConsentUiChoice {
    match choose_consent(mode, ConsentEnv::here()) {
        ConsentChoice::Notifications => ConsentUiChoice {
            ui: Some(Arc::new(notify::NotifyConsent::new()) as Arc<dyn ConsentUi>),
            note: "consent prompts: desktop notifications".into(),
        },
        ConsentChoice::Unavailable(why) => ConsentUiChoice {
            ui: None,
            note: why.into(),
        },
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
    } else if cfg!(windows) {
        "explorer"
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

    fn env(freedesktop: bool, session_bus: bool) -> ConsentEnv {
        ConsentEnv {
            freedesktop,
            session_bus,
        }
    }

    #[test]
    fn auto_asks_only_where_a_notification_can_carry_buttons() {
        use ConsentChoice::*;
        let auto = |fd, bus| choose_consent(ConsentMode::Auto, env(fd, bus));
        assert_eq!(auto(true, true), Notifications);
        assert!(matches!(auto(true, false), Unavailable(w) if w.contains("no D-Bus session bus")));
        assert!(matches!(auto(false, true), Unavailable(w) if w.contains("no buttons")));
        assert!(matches!(auto(false, false), Unavailable(w) if w.contains("no buttons")));
    }

    #[test]
    fn notify_and_none_do_what_they_say_anywhere() {
        for (fd, bus) in [(true, true), (true, false), (false, true), (false, false)] {
            assert_eq!(
                choose_consent(ConsentMode::Notify, env(fd, bus)),
                ConsentChoice::Notifications
            );
            assert!(matches!(
                choose_consent(ConsentMode::None, env(fd, bus)),
                ConsentChoice::Unavailable(w) if w.contains("--consent none")
            ));
        }
    }
}
