//! The error table: every error the agent (or the client, for the 2000s: `AGENT_UNAVAILABLE`,
//! `LOCAL_NETWORK_BLOCKED`, …, `NATIVE_HOST_UNAVAILABLE`) reports.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

macro_rules! reasons {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $code:expr, $msg:expr, $help:expr; )+) => {
        /// Stable symbolic name of an error, sent as `error.data.reason`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS, schemars::JsonSchema)]
        pub enum ErrorReason {
            $( $(#[$doc])* #[serde(rename = $name)] $variant, )+
        }

        impl ErrorReason {
            /// Every reason, in table order.
            pub const ALL: &'static [ErrorReason] = &[ $( ErrorReason::$variant, )+ ];

            /// The symbolic name, e.g. `PIN_INCORRECT`.
            pub const fn as_str(self) -> &'static str {
                match self { $( ErrorReason::$variant => $name, )+ }
            }

            /// The JSON-RPC `error.code` sent with this reason.
            pub const fn code(self) -> i32 {
                match self { $( ErrorReason::$variant => $code, )+ }
            }

            /// The default `error.message`: a sentence a person can act on.
            pub const fn message(self) -> &'static str {
                match self { $( ErrorReason::$variant => $msg, )+ }
            }

            /// When it happens and what to do (for the documentation).
            pub const fn help(self) -> &'static str {
                match self { $( ErrorReason::$variant => $help, )+ }
            }
        }
    };
}

reasons! {
    /// The request is not valid JSON.
    ParseError = "PARSE_ERROR", -32700, "The request is not valid JSON.",
        "The client sent bytes that are not JSON. Fix the client.";
    /// Valid JSON but not a JSON-RPC 2.0 request.
    InvalidRequest = "INVALID_REQUEST", -32600, "The request is not a valid JSON-RPC 2.0 request.",
        "Missing `jsonrpc: \"2.0\"`, `method` or a valid `id`. Fix the client.";
    /// No such method.
    MethodNotFound = "METHOD_NOT_FOUND", -32601, "The agent has no such method.",
        "The method name is misspelt, or the agent is older than the client. Update the agent.";
    /// A param is missing, has the wrong type, or has a bad value.
    InvalidParams = "INVALID_PARAMS", -32602, "The request's params are invalid.",
        "The message names the field. Params are a by-name object with snake_case names.";
    /// The message is larger than the agent accepts.
    MessageTooLarge = "MESSAGE_TOO_LARGE", -32007, "The request is larger than the agent accepts.",
        "Send a digest, not the document: `data` is a hash of at most 64 bytes.";
    /// The PKCS #11 library is not on the agent's allowlist.
    ModuleNotAllowed = "MODULE_NOT_ALLOWED", 1001, "This PKCS #11 library is not on the agent's allowlist.",
        "Only libraries the person or administrator listed with --module (or `modules` in the config) can be used. Add it there, or send no `module` to use the default.";
    /// The allowed library could not be loaded or initialised.
    ModuleLoadFailed = "MODULE_LOAD_FAILED", 1002, "The PKCS #11 library could not be loaded.",
        "The file is missing or is not a PKCS #11 library for this platform. Install the token's middleware or fix the path in the agent's configuration.";
    /// The library's process crashed (Keyport runs each library in a process of its own).
    ModuleCrashed = "MODULE_CRASHED", 1003, "The PKCS #11 library crashed.",
        "The token's library crashed while serving this request; the agent and other libraries are unaffected, and the library is restarted at the next request (after a pause if it keeps crashing at start). The message names the library. Retry; if it persists, update or reinstall the token's middleware.";
    /// No slot with this id.
    SlotNotFound = "SLOT_NOT_FOUND", 1101, "No slot with this id.",
        "Slot ids can change when readers or tokens come and go: list them again with pkcs11.slots.";
    /// The slot has no token in it.
    TokenNotPresent = "TOKEN_NOT_PRESENT", 1102, "There is no token in this slot.",
        "Insert the card or token, then retry.";
    /// No certificate with this id on the token.
    CertificateNotFound = "CERTIFICATE_NOT_FOUND", 1201, "No certificate with this id on the token.",
        "Use an `id` returned by pkcs11.certificates for the same slot.";
    /// No private key with the certificate's CKA_ID.
    KeyNotFound = "KEY_NOT_FOUND", 1202, "The token has no private key for this certificate.",
        "The certificate's CKA_ID matches no private key on the token: this certificate cannot sign.";
    /// Wrong PIN.
    PinIncorrect = "PIN_INCORRECT", 1301, "The PIN is incorrect.",
        "Ask the person for the PIN again. `data.pin_state` says when few tries remain.";
    /// The PIN is locked.
    PinLocked = "PIN_LOCKED", 1302, "The PIN is locked.",
        "Too many wrong PINs. The token must be unlocked with its PUK or SO PIN by its issuer's tool.";
    /// PIN too short or too long for the token.
    PinLenRange = "PIN_LEN_RANGE", 1303, "The PIN has the wrong length for this token.",
        "See min_pin_length and max_pin_length in pkcs11.token.";
    /// The person cancelled PIN entry on the reader's keypad.
    PinEntryCancelled = "PIN_ENTRY_CANCELLED", 1304, "PIN entry was cancelled on the reader.",
        "The person pressed Cancel on the PIN-pad reader (or it gave up waiting). Nothing was signed; retry when they are ready.";
    /// No PIN came with the request and the agent has no way to ask for one.
    PinEntryUnavailable = "PIN_ENTRY_UNAVAILABLE", 1305, "The agent cannot ask for the PIN here.",
        "The request had no `pin`, the token has no PIN pad, and the agent has no PIN prompt (no pinentry program, or no display for it). Send the PIN with the request, or install pinentry (e.g. pinentry-gnome3) and point the agent's `pinentry` setting at it.";
    /// Digest algorithm or key type not supported.
    UnsupportedAlgorithm = "UNSUPPORTED_ALGORITHM", 1401, "This algorithm or key type is not supported.",
        "algorithm_reference is one of sha1, sha256, sha384, sha512; keys are RSA or EC P-256/P-384/P-521.";
    /// The person refused the signature.
    ConsentDenied = "CONSENT_DENIED", 1501, "The person at the computer refused this signature.",
        "Nothing was signed. Tell the person what the signature is for and let them retry.";
    /// No way to ask the person.
    ConsentUnavailable = "CONSENT_UNAVAILABLE", 1502, "The agent cannot ask the person for consent.",
        "No consent prompt can be shown (no notification server, no usable pinentry: a machine without a desktop session) and this site is not pre-approved. The message says why, and the --trust-origin that would let this page sign without asking. Nothing was signed.";
    /// Nobody answered the prompt in time.
    ConsentTimeout = "CONSENT_TIMEOUT", 1503, "Nobody answered the consent prompt in time.",
        "Nothing was signed. Retry when the person is at the computer.";
    /// Signing is paused in the tray.
    SigningPaused = "SIGNING_PAUSED", 1504, "Signing is paused in the Keyport agent.",
        "The person paused signing from the tray menu. Ask them to resume it.";
    /// Too many signatures are already waiting for consent.
    ConsentBusy = "CONSENT_BUSY", 1505, "Too many signatures are already waiting for the person's answer.",
        "Wait for the pending prompts to be answered, then retry.";
    /// The token or library failed.
    DeviceError = "DEVICE_ERROR", 1601, "The token or its library reported an error.",
        "The token may have been removed or the library failed. Re-insert the token and retry.";
    /// The request took longer than the agent allows.
    RequestTimeout = "REQUEST_TIMEOUT", 1602, "The request took too long and was abandoned.",
        "The token did not answer in time. Retry; if it persists, re-insert the token.";
    /// Too many requests in flight on this connection.
    Busy = "BUSY", 1603, "Too many requests are in flight on this connection.",
        "Wait for earlier requests to finish before sending more.";
    TokenBusy = "TOKEN_BUSY", 1604, "The token is busy with another request.",
        "Someone is typing the PIN on the reader's keypad, or another site's signatures hold the token. Nothing was done; retry in a moment.";
    /// A bug in the agent.
    Internal = "INTERNAL", 1900, "The agent hit an internal error.",
        "Please report it with the agent's log.";
    /// Client side only: the agent is not running, not reachable, or refused the connection.
    AgentUnavailable = "AGENT_UNAVAILABLE", 2001, "The Keyport agent is not running or refused the connection.",
        "Start or install the Keyport agent; if it runs, check that this site's origin is allowed in its configuration.";
    /// Client side only: the browser blocks this page from reaching the agent on this computer.
    LocalNetworkBlocked = "LOCAL_NETWORK_BLOCKED", 2002, "The browser does not let this site connect to the Keyport agent on this computer.",
        "The browser asks the person before a site may reach programs on this computer (Chrome: \"Access other apps and services on this device\"). Allow it for this site in the browser's site settings (the icon left of the address), then reload. Administrators can allow it by policy (Chrome/Edge: LocalNetworkAccessAllowedForUrls). See docs/BROWSERS.md.";
    /// Client side only: the agent is older than the page needs.
    AgentOutdated = "AGENT_OUTDATED", 2003, "The Keyport agent is older than this site needs.",
        "Update the Keyport agent. The message says which version runs and which the site needs.";
    /// Client side only: the page asked for the extension door and no Keyport extension answered.
    ExtensionUnavailable = "EXTENSION_UNAVAILABLE", 2004, "The Keyport browser extension is not installed or not enabled.",
        "The page chose `transport: \"extension\"` and no Keyport extension answered its hello in this tab. Install the Keyport extension from the browser's store (or ask the administrator to force-install it), enable it, then reload. With `transport: \"auto\"` the client falls back to the WebSocket instead.";
    /// Client side only: the extension is there, but the browser cannot start Keyport's native-messaging host.
    NativeHostUnavailable = "NATIVE_HOST_UNAVAILABLE", 2005, "The Keyport extension is installed but the Keyport agent's browser connector is missing.",
        "The browser found no native-messaging host `org.keyport.agent` for the extension (its manifest is not installed for this browser, or points to a missing program, or does not list the extension). Install or reinstall the Keyport agent; `keyport doctor` says which manifest is missing.";
}

impl ErrorReason {
    /// The reason with this JSON-RPC code, if any.
    pub fn from_code(code: i32) -> Option<ErrorReason> {
        Self::ALL.iter().copied().find(|r| r.code() == code)
    }
}

impl std::fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_names_match_serde() {
        let mut codes: Vec<i32> = ErrorReason::ALL.iter().map(|r| r.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), ErrorReason::ALL.len());
        for r in ErrorReason::ALL {
            let json = serde_json::to_value(r).unwrap();
            assert_eq!(json, serde_json::Value::String(r.as_str().to_string()));
            assert_eq!(ErrorReason::from_code(r.code()), Some(*r));
        }
        assert_eq!(ErrorReason::PinLenRange.as_str(), "PIN_LEN_RANGE");
    }
}
