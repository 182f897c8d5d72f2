//! The first message of a port: the extension's hello, and the host's answer to it.
//!
//! The extension writes `{"keyport":"hello","version":1,"origin":"<origin>"}` with the page's
//! origin as the browser reported it (`port.sender.origin`), never as the page claims it. The
//! host answers `{"keyport":"ready","agent":"<url>"}` once the agent took the connection, or
//! `{"keyport":"error","reason":"...","message":"..."}` and exits.

use crate::logging::quote;
use crate::origin::{Origin, OriginError};
use keyport_protocol::ErrorReason;
use serde::Deserialize;

/// The hello's version this host speaks.
pub const VERSION: u64 = 1;

/// A hello the host accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The page's origin, normalised as browsers send it in `Origin`.
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("the first message is not a Keyport hello ({0})")]
    NotAHello(String),
    #[error("hello version {0} is not one this host speaks (it speaks {VERSION}): update Keyport or the extension")]
    Version(u64),
    #[error("the page's origin {} is not a web origin the agent can allow (https://host[:port] or http://host[:port])", quote(&.0 .0, 120))]
    Origin(OriginError),
}

impl HelloError {
    /// The reason the host's answer names: a page whose origin cannot be allowed meets what it
    /// would meet at the WebSocket door, AGENT_UNAVAILABLE; anything else is the extension's
    /// mistake.
    pub fn reason(&self) -> ErrorReason {
        match self {
            HelloError::Origin(_) => ErrorReason::AgentUnavailable,
            HelloError::NotAHello(_) | HelloError::Version(_) => ErrorReason::InvalidRequest,
        }
    }
}

#[derive(Deserialize)]
struct Wire {
    keyport: String,
    version: u64,
    origin: String,
}

/// Read a hello. Members beyond the three are ignored (a later extension may add some).
pub fn parse(bytes: &[u8]) -> Result<Hello, HelloError> {
    let wire: Wire = serde_json::from_slice(bytes).map_err(|e| {
        HelloError::NotAHello(match e.classify() {
            // serde's text names the member and may quote a value: cut short.
            serde_json::error::Category::Data => quote(&e.to_string(), 160),
            _ => "not JSON".to_string(),
        })
    })?;
    if wire.keyport != "hello" {
        return Err(HelloError::NotAHello(format!(
            "\"keyport\" is {:?}, not \"hello\"",
            quote(&wire.keyport, 40)
        )));
    }
    if wire.version != VERSION {
        return Err(HelloError::Version(wire.version));
    }
    let origin = Origin::parse(&wire.origin).map_err(HelloError::Origin)?;
    Ok(Hello { origin })
}

/// A JSON string (always encodable).
fn string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The answer once the agent took the connection (members in the documented order).
pub fn ready(agent_url: &str) -> Vec<u8> {
    format!(r#"{{"keyport":"ready","agent":{}}}"#, string(agent_url)).into_bytes()
}

/// The answer when the host cannot serve this port; it exits after sending it.
pub fn error(reason: ErrorReason, message: &str) -> Vec<u8> {
    format!(
        r#"{{"keyport":"error","reason":{},"message":{}}}"#,
        string(reason.as_str()),
        string(message)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn hello(v: Value) -> Result<Hello, HelloError> {
        parse(v.to_string().as_bytes())
    }

    #[test]
    fn a_hello_gives_the_normalised_origin() {
        let h =
            hello(json!({"keyport": "hello", "version": 1, "origin": "https://App.Example:443"}))
                .unwrap();
        assert_eq!(h.origin.as_str(), "https://app.example");
        // Extra members are ignored.
        let h = hello(
            json!({"keyport": "hello", "version": 1, "origin": "http://127.0.0.1:8080",
                             "tab": 7}),
        )
        .unwrap();
        assert_eq!(h.origin.as_str(), "http://127.0.0.1:8080");
    }

    #[test]
    fn what_is_not_a_hello_is_refused_with_a_reason() {
        for bad in [
            json!({"jsonrpc": "2.0", "id": 1, "method": "pkcs11.info"}),
            json!({"keyport": "hello", "origin": "https://a.example"}),
            json!({"keyport": "hello", "version": "1", "origin": "https://a.example"}),
            json!({"keyport": "ready", "version": 1, "origin": "https://a.example"}),
            json!([1, 2]),
        ] {
            let e = hello(bad.clone()).unwrap_err();
            assert!(matches!(e, HelloError::NotAHello(_)), "{bad}: {e:?}");
            assert_eq!(e.reason(), ErrorReason::InvalidRequest);
        }
        assert!(matches!(
            parse(b"\xff\xfe not json"),
            Err(HelloError::NotAHello(_))
        ));
        let e = hello(json!({"keyport": "hello", "version": 2, "origin": "https://a.example"}))
            .unwrap_err();
        assert_eq!(e, HelloError::Version(2));
    }

    #[test]
    fn an_origin_that_is_not_a_web_origin_is_refused() {
        for origin in [
            "null",
            "file://",
            "chrome-extension://abcdefghijklmnopabcdefghijklmnop",
            "moz-extension://0b5e3e4c-1111-2222-3333-444455556666",
            "https://a.example/path",
            "",
            "*",
        ] {
            let e = hello(json!({"keyport": "hello", "version": 1, "origin": origin})).unwrap_err();
            assert!(matches!(e, HelloError::Origin(_)), "{origin}: {e:?}");
            assert_eq!(e.reason(), ErrorReason::AgentUnavailable);
            assert!(e.to_string().contains("not a web origin"), "{e}");
        }
    }

    #[test]
    fn the_answers_are_the_documented_json() {
        assert_eq!(
            ready("ws://127.0.0.1:10443/"),
            br#"{"keyport":"ready","agent":"ws://127.0.0.1:10443/"}"#
        );
        let r: Value = serde_json::from_slice(&ready("ws://127.0.0.1:10443/")).unwrap();
        assert_eq!(
            r,
            json!({"keyport": "ready", "agent": "ws://127.0.0.1:10443/"})
        );
        let e: Value =
            serde_json::from_slice(&error(ErrorReason::AgentUnavailable, "not \"running\"\n"))
                .unwrap();
        assert_eq!(
            e,
            json!({"keyport": "error", "reason": "AGENT_UNAVAILABLE", "message": "not \"running\"\n"})
        );
    }
}
