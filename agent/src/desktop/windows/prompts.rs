//! The Windows dialogs as the agent's [`ConsentUi`] and [`PinUi`]: each request opens its own
//! [`Dialog`] (a window on a thread of its own) and awaits its ending; dropping the request's
//! future takes the dialog back.

use super::dialog::Dialog;
use super::spec;
use crate::consent::{ConsentRequest, ConsentUi, Decision, PinAnswer, PinUi};
use std::time::Duration;

/// How long past its own time limit the agent waits for a dialog before taking it back (the
/// dialog's timer should end it first).
const GRACE: Duration = Duration::from_secs(1);

/// Consent, the PIN and the PIN-pad notice as native Windows dialogs.
#[derive(Debug, Default)]
pub struct WindowsDialogs {
    _private: (),
}

impl WindowsDialogs {
    pub fn new() -> WindowsDialogs {
        WindowsDialogs { _private: () }
    }
}

#[async_trait::async_trait]
impl ConsentUi for WindowsDialogs {
    async fn ask(
        &self,
        request: &ConsentRequest,
        timeout: Duration,
    ) -> Result<Option<Decision>, String> {
        let offered_always = spec::offers_always(request);
        let mut dialog = Dialog::open(spec::consent(request, timeout))?;
        tracing::debug!(origin = %request.caller.label(), "consent dialog shown");
        let ended = dialog.answer(timeout + GRACE).await?;
        let decision = spec::decision(ended.ending, offered_always);
        tracing::debug!(?decision, ending = ?ended.ending, "consent dialog answered");
        Ok(decision)
    }

    async fn pin_pad_notice(&self, request: &ConsentRequest) -> Option<Box<dyn Send>> {
        match Dialog::open(spec::notice(request)) {
            Ok(dialog) => Some(Box::new(dialog)),
            Err(why) => {
                tracing::debug!(reason = %why, "no PIN-pad notice");
                None
            }
        }
    }
}

#[async_trait::async_trait]
impl PinUi for WindowsDialogs {
    async fn ask_pin(
        &self,
        request: &ConsentRequest,
        error: Option<&str>,
        timeout: Duration,
    ) -> Result<PinAnswer, String> {
        let mut dialog = Dialog::open(spec::pin(request, error, timeout))?;
        let ended = dialog.answer(timeout + GRACE).await?;
        let answer = match (spec::pin_submitted(ended.ending), ended.pin) {
            (Some(true), Some(pin)) => PinAnswer::Pin(pin),
            (Some(true), None) => return Err("the PIN dialog ended without its PIN".into()),
            (Some(false), _) => PinAnswer::Cancelled,
            (None, _) => PinAnswer::TimedOut,
        };
        tracing::debug!(
            outcome = match &answer {
                PinAnswer::Pin(_) => "a PIN",
                PinAnswer::Cancelled => "cancelled",
                PinAnswer::TimedOut => "timed out",
            },
            "PIN dialog answered"
        );
        Ok(answer)
    }
}
