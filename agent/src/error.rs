//! One error type for the whole agent, mapped to wire codes in one place.
//!
//! Every failure a method can return is an [`AgentError`]: a stable [`ErrorReason`] (which fixes
//! the JSON-RPC code), a message a person can act on, and the PIN state where the token reports
//! it. Cryptoki errors become `AgentError`s only in the backend (`backend/pkcs11/error.rs`):
//! their details are logged there and never sent (they name no secret, but they help nobody on
//! a page).

use jsonrpsee::types::ErrorObjectOwned;
use keyport_protocol::{ErrorData, ErrorReason, PinState};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct AgentError {
    pub reason: ErrorReason,
    pub message: String,
    pub pin_state: Option<PinState>,
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;

impl AgentError {
    /// An error with the reason's default message.
    pub fn new(reason: ErrorReason) -> Self {
        AgentError {
            reason,
            message: reason.message().to_string(),
            pin_state: None,
        }
    }

    /// An error with a more specific message. The message must never contain a PIN.
    pub fn with_message(reason: ErrorReason, message: impl Into<String>) -> Self {
        AgentError {
            reason,
            message: message.into(),
            pin_state: None,
        }
    }

    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::with_message(ErrorReason::InvalidParams, message)
    }

    pub fn with_pin_state(mut self, state: PinState) -> Self {
        self.pin_state = Some(state);
        if state != PinState::Ok {
            let note = match state {
                PinState::CountLow => " Few tries remain.",
                PinState::FinalTry => " One more wrong PIN locks the token.",
                PinState::Locked => " The token is now locked.",
                PinState::Ok => "",
            };
            if !self.message.ends_with(note) {
                self.message.push_str(note);
            }
        }
        self
    }
}

impl From<ErrorReason> for AgentError {
    fn from(reason: ErrorReason) -> Self {
        AgentError::new(reason)
    }
}

impl From<AgentError> for ErrorObjectOwned {
    fn from(err: AgentError) -> Self {
        let data = ErrorData {
            reason: err.reason,
            pin_state: err.pin_state,
        };
        ErrorObjectOwned::owned(err.reason.code(), err.message, Some(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_object_carries_code_reason_and_pin_state() {
        let err = AgentError::new(ErrorReason::PinIncorrect).with_pin_state(PinState::FinalTry);
        let obj: ErrorObjectOwned = err.into();
        assert_eq!(obj.code(), 1301);
        assert!(obj.message().contains("One more wrong PIN"));
        let data: serde_json::Value = serde_json::from_str(obj.data().unwrap().get()).unwrap();
        assert_eq!(
            data,
            serde_json::json!({"reason": "PIN_INCORRECT", "pin_state": "final_try"})
        );
    }
}
