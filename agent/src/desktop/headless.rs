//! The shell with nothing to show: no tray, no loop. Consent is what the configuration and the
//! [`Desktop`] allow (desktop notifications need no tray: they speak D-Bus directly; the Windows
//! dialogs are windows of their own). Used with `--no-tray`, without a display or AppIndicator,
//! when the toolkit cannot start, and always in a build without the `tray` feature.

use super::{ConsentUiChoice, Desktop, PromptConfig, Running, Shell};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;

pub struct Headless {
    prompts: PromptConfig,
    desktop: Desktop,
}

impl Headless {
    pub fn new(prompts: PromptConfig, desktop: Desktop) -> Headless {
        Headless { prompts, desktop }
    }
}

impl Shell for Headless {
    fn consent_ui(&self) -> ConsentUiChoice {
        (self.desktop.consent_ui)(&self.prompts)
    }

    fn default_state_file(&self) -> Option<PathBuf> {
        (self.desktop.default_state_file)()
    }

    fn has_tray(&self) -> bool {
        false
    }

    fn on_server_stopped(&self) -> Box<dyn FnOnce() + Send> {
        Box::new(|| {})
    }

    /// Nothing to run: the caller waits for the server.
    fn run(self: Box<Self>, _running: Receiver<Running>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConsentMode;
    use crate::desktop::freedesktop::DESKTOP;

    fn prompts(consent: ConsentMode) -> PromptConfig {
        PromptConfig {
            consent,
            pinentry: None,
        }
    }

    #[test]
    fn headless_has_no_tray_and_returns_at_once() {
        let shell: Box<dyn Shell> = Box::new(Headless::new(prompts(ConsentMode::None), DESKTOP));
        assert!(!shell.has_tray());
        shell.on_server_stopped()();
        // The server has not even started (the sender is alive): run must not wait for it.
        let (_tx, rx) = std::sync::mpsc::channel();
        shell.run(rx);
    }

    #[test]
    fn headless_consent_follows_the_configuration() {
        let none = Headless::new(prompts(ConsentMode::None), DESKTOP).consent_ui();
        assert!(none.ui.is_none());
        assert!(none.pin.is_none());
        assert!(none.note.contains("--consent none"), "{}", none.note);
        // `notify` asks through notifications whatever the environment says (no bus: each
        // request gets CONSENT_UNAVAILABLE, from the prompt itself).
        let notify = Headless::new(prompts(ConsentMode::Notify), DESKTOP).consent_ui();
        assert!(notify.ui.is_some(), "{}", notify.note);
    }
}
