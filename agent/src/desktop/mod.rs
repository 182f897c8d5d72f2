//! The desktop side: the consent prompt ([`notify::NotifyConsent`]), the tray's state and
//! actions ([`tray_model`], toolkit-free and unit-tested) and the thin toolkit layer ([`tray`]).
//! Which platform gets which consent UI is in docs/DESKTOP.md.

pub mod notify;
#[cfg(feature = "tray")]
pub mod tray;
#[cfg(not(feature = "tray"))]
#[path = "tray_absent.rs"]
pub mod tray;
pub mod tray_model;

use crate::config::{Config, ConsentMode};
use crate::consent::ConsentUi;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The consent UI for this configuration and environment, and a sentence for the log.
/// `auto`: desktop notifications when a D-Bus session bus is configured
/// (`DBUS_SESSION_BUS_ADDRESS`), none otherwise (every prompt → CONSENT_UNAVAILABLE).
pub fn consent_ui(config: &Config) -> (Option<Arc<dyn ConsentUi>>, String) {
    let notify = || Some(Arc::new(notify::NotifyConsent::new()) as Arc<dyn ConsentUi>);
    let bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty());
    match config.consent {
        ConsentMode::None => (
            None,
            "consent prompts disabled (--consent none): only trusted origins can sign".into(),
        ),
        ConsentMode::Notify => (notify(), "consent prompts: desktop notifications".into()),
        ConsentMode::Auto if cfg!(all(unix, not(target_os = "macos"))) && bus => {
            (notify(), "consent prompts: desktop notifications".into())
        }
        ConsentMode::Auto if cfg!(all(unix, not(target_os = "macos"))) => (
            None,
            "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS unset): no consent prompt can be \
             shown, only trusted origins can sign"
                .into(),
        ),
        ConsentMode::Auto => (
            None,
            "this platform's notifications have no buttons: no consent prompt can be shown, \
             only trusted origins can sign"
                .into(),
        ),
    }
}

/// Where the person's state lives when no `state_file` is configured:
/// `$XDG_STATE_HOME/keyport/state.json`, else `~/.local/state/keyport/state.json`.
pub fn default_state_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        })?;
    Some(base.join("keyport").join("state.json"))
}

/// Show a folder to the person with the desktop's file manager.
pub fn open_folder(path: &Path) -> std::io::Result<()> {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    std::fs::create_dir_all(path)?;
    let mut child = std::process::Command::new(opener)
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Reap it without blocking the UI thread.
    std::thread::spawn(move || child.wait());
    Ok(())
}
