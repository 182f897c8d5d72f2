//! One error type for the whole agent, mapped to wire codes in one place.
//!
//! Every failure a method can return is an [`AgentError`]: a stable [`ErrorReason`] (which fixes
//! the JSON-RPC code), a message a person can act on, and the PIN state where the token reports
//! it. Cryptoki errors become `AgentError`s only in [`From<cryptoki::error::Error>`]; their
//! details are logged there and never sent (they name no secret, but they help nobody on a page).

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

impl From<cryptoki::error::Error> for AgentError {
    fn from(err: cryptoki::error::Error) -> Self {
        use cryptoki::error::{Error, RvError as Rv};
        let reason = match &err {
            Error::LibraryLoading(_) | Error::MissingSymbol(_) => ErrorReason::ModuleLoadFailed,
            Error::Pkcs11(rv, _) => match rv {
                Rv::SlotIdInvalid => ErrorReason::SlotNotFound,
                Rv::TokenNotPresent | Rv::TokenNotRecognized | Rv::DeviceRemoved => {
                    ErrorReason::TokenNotPresent
                }
                Rv::PinIncorrect | Rv::PinInvalid => ErrorReason::PinIncorrect,
                Rv::PinLocked => ErrorReason::PinLocked,
                Rv::PinLenRange => ErrorReason::PinLenRange,
                Rv::MechanismInvalid
                | Rv::MechanismParamInvalid
                | Rv::KeyTypeInconsistent
                | Rv::KeyFunctionNotPermitted
                | Rv::FunctionNotSupported
                | Rv::CurveNotSupported
                | Rv::DataLenRange => ErrorReason::UnsupportedAlgorithm,
                _ => ErrorReason::DeviceError,
            },
            _ => ErrorReason::DeviceError,
        };
        // What a page can cause at will (a made-up slot, a wrong PIN) is not worth a warning.
        match reason {
            ErrorReason::PinIncorrect | ErrorReason::PinLocked | ErrorReason::PinLenRange => {
                tracing::info!(error = %err, "token refused the PIN")
            }
            ErrorReason::SlotNotFound
            | ErrorReason::TokenNotPresent
            | ErrorReason::UnsupportedAlgorithm => {
                tracing::debug!(error = %err, "PKCS #11 call failed")
            }
            _ => tracing::warn!(error = %err, "PKCS #11 call failed"),
        }
        let mut out = AgentError::new(reason);
        if reason == ErrorReason::DeviceError {
            if let Error::Pkcs11(rv, f) = &err {
                out.message = format!("{} ({f}: {rv})", reason.message().trim_end_matches('.'));
            }
        }
        out
    }
}

/// Whether an error means the token is gone or its sessions are dead, so cached state must go.
pub fn invalidates_token_state(err: &cryptoki::error::Error) -> bool {
    use cryptoki::error::{Error, RvError as Rv};
    matches!(
        err,
        Error::Pkcs11(
            Rv::TokenNotPresent
                | Rv::DeviceRemoved
                | Rv::SessionHandleInvalid
                | Rv::SessionClosed
                | Rv::DeviceError
                | Rv::CryptokiNotInitialized,
            _
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;
    use cryptoki::error::{Error, RvError};

    #[test]
    fn cryptoki_errors_map_to_reasons() {
        let cases = [
            (RvError::PinIncorrect, ErrorReason::PinIncorrect),
            (RvError::PinLocked, ErrorReason::PinLocked),
            (RvError::PinLenRange, ErrorReason::PinLenRange),
            (RvError::SlotIdInvalid, ErrorReason::SlotNotFound),
            (RvError::TokenNotPresent, ErrorReason::TokenNotPresent),
            (RvError::MechanismInvalid, ErrorReason::UnsupportedAlgorithm),
            (RvError::GeneralError, ErrorReason::DeviceError),
        ];
        for (rv, reason) in cases {
            let err: AgentError = Error::Pkcs11(rv, Function::Login).into();
            assert_eq!(err.reason, reason, "{rv:?}");
        }
    }

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
