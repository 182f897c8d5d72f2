//! Cryptoki's errors as [`AgentError`]s: the one place a PKCS #11 return value becomes a wire
//! reason. Details are logged here and never sent.

use crate::error::AgentError;
use keyport_protocol::ErrorReason;

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
            out.message = format!(
                "{} ({}).",
                reason.message().trim_end_matches('.'),
                describe(&err)
            );
        }
        out
    }
}

/// A cryptoki error as PKCS #11 names it, e.g. `C_Login returned CKR_PIN_INCORRECT`.
pub(super) fn describe(err: &cryptoki::error::Error) -> String {
    match err {
        cryptoki::error::Error::Pkcs11(rv, f) => {
            format!("C_{f:?} returned CKR_{}", upper_snake(&format!("{rv:?}")))
        }
        other => other.to_string(),
    }
}

/// `DeviceError` → `DEVICE_ERROR`.
fn upper_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Whether an error means the token is gone or its sessions are dead, so cached state must go.
pub(super) fn invalidates_token_state(err: &cryptoki::error::Error) -> bool {
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

/// Whether an error means the handles Keyport kept are stale (the token was removed, perhaps
/// put back): the request is worth one retry on fresh state.
pub(super) fn is_stale_handle(err: &cryptoki::error::Error) -> bool {
    use cryptoki::error::{Error, RvError as Rv};
    matches!(
        err,
        Error::Pkcs11(
            Rv::DeviceRemoved
                | Rv::SessionHandleInvalid
                | Rv::SessionClosed
                | Rv::ObjectHandleInvalid
                | Rv::KeyHandleInvalid
                | Rv::TokenNotPresent,
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
    fn errors_are_described_with_pkcs11_names() {
        let e = Error::Pkcs11(RvError::DeviceError, Function::Initialize);
        assert_eq!(describe(&e), "C_Initialize returned CKR_DEVICE_ERROR");
        let e = Error::Pkcs11(RvError::UserAlreadyLoggedIn, Function::Login);
        assert_eq!(describe(&e), "C_Login returned CKR_USER_ALREADY_LOGGED_IN");
    }

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
}
