//! The tray on a freedesktop.org desktop: the shared tray shell ([`crate::desktop::tray`]) once
//! this desktop's checks pass. tray-icon and tao would panic without a display or without the
//! AppIndicator library, so those are checked first; GDK's GL probe is turned off ([`super::gl`],
//! decided in `main` before any thread started).

use super::DESKTOP;
use crate::desktop::tray::TrayShell;
use crate::desktop::PromptConfig;

/// Start the tray shell on this thread, which must be the main thread, before any other thread
/// starts. `Err(why)`: no tray can run here.
pub fn start(prompts: PromptConfig) -> Result<TrayShell, String> {
    if let Some(why) = no_display() {
        return Err(why);
    }
    // Decided in `main` before any thread started (the logging thread is one); said now.
    super::gl::log_decision();
    if let Some(why) = no_appindicator() {
        return Err(why);
    }
    TrayShell::start(prompts, DESKTOP)
}

/// Why tao cannot start here (`None`: it may).
fn no_display() -> Option<String> {
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
        if !set("DISPLAY") && !set("WAYLAND_DISPLAY") {
            return Some("no display (neither DISPLAY nor WAYLAND_DISPLAY is set)".into());
        }
    }
    None
}

/// Why tray-icon cannot show an icon here (`None`: it may): it loads AppIndicator at run time
/// and panics if it cannot.
pub fn no_appindicator() -> Option<String> {
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        let names = [
            "libayatana-appindicator3.so.1",
            "libappindicator3.so.1",
            "libayatana-appindicator3.so",
            "libappindicator3.so",
        ];
        // SAFETY: these are the libraries tray-icon itself loads; loading runs their
        // initialisers, which is what tray-icon would do a moment later.
        if !names
            .iter()
            .any(|n| unsafe { libloading::Library::new(n) }.is_ok())
        {
            return Some(
                "the AppIndicator library is missing (install libayatana-appindicator3-1)".into(),
            );
        }
    }
    None
}
