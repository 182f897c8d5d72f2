//! JSON-RPC 2.0 framing: one text message in, at most one reply out.
//!
//! The methods live in a jsonrpsee [`Methods`] table (registered in `methods/`). The envelope is
//! parsed here, not by jsonrpsee's server, so that every request the specification says to
//! answer is answered, and nothing else runs:
//! * an `id` that is a string (at most [`MAX_ID_BYTES`]), a number (negative and fractional ones
//!   too, echoed exactly as sent) or `null` is answered with that id;
//! * an `id` that is a bool, an object, an array, or too long to echo gets -32600 with `id: null`;
//! * a notification (no `id`) is never executed: no method of ours makes sense without an answer;
//! * every entry of a batch counts against the connection's in-flight bound on its own (an entry
//!   over the bound gets BUSY), so a batch cannot queue more work than single requests could.
//!
//! A request holds its in-flight permit until its answer is made *and* every token call it
//! started has returned ([`crate::state::request_share`]): a call stuck in a module keeps counting against
//! its connection after the page got REQUEST_TIMEOUT, so one connection cannot pin more
//! blocking threads than its share.

use crate::consent::Caller;
use crate::error::AgentError;
use crate::state::{InFlight, IN_FLIGHT};
use jsonrpsee::types::{ErrorCode, ErrorObjectOwned, Id};
use jsonrpsee::{ConnectionId, Extensions, MethodCallback, MethodResponse, Methods};
use keyport_protocol::ErrorReason;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Longest string `id` that is echoed (bytes of its JSON text, quotes included).
pub const MAX_ID_BYTES: usize = 256;
/// Longest numeric `id` (characters): longer numbers are not ids anyone means.
const MAX_NUMBER_ID_CHARS: usize = 40;

/// JSON-RPC's code for a request larger than the agent accepts (jsonrpsee's, kept for clients).
pub const OVERSIZE_CODE: i32 = -32007;

/// What a connection hands every request it dispatches.
#[derive(Clone)]
pub struct ConnContext {
    pub caller: Caller,
    pub id: usize,
    /// Requests running at once on this connection.
    pub in_flight: Arc<Semaphore>,
    /// Requests running at once from this connection's origin, over all its connections
    /// (shared with them; a token call still running after its connection closed keeps its
    /// place, so reconnecting frees none).
    pub origin_in_flight: Arc<Semaphore>,
    /// Sends the connection a notification outside any request (slot events). None: nowhere
    /// to send (in-process tests).
    pub notifier: Option<crate::events::Notifier>,
}

/// The method table and the framing limits.
pub struct Rpc {
    methods: Methods,
    max_response_bytes: usize,
    max_batch: usize,
}

/// A member of the request object that may be absent, or present (even as `null`).
#[derive(Default)]
enum Member<'a> {
    #[default]
    Absent,
    Present(&'a RawValue),
}

impl<'de: 'a, 'a> Deserialize<'de> for Member<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&RawValue>::deserialize(d).map(Member::Present)
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    jsonrpc: Member<'a>,
    #[serde(default, borrow)]
    id: Member<'a>,
    #[serde(default, borrow)]
    method: Member<'a>,
    #[serde(default, borrow)]
    params: Member<'a>,
}

/// The id a reply carries: `null`, or the request's id exactly as sent.
#[derive(Clone, Copy)]
enum ReplyId<'a> {
    Null,
    Raw(&'a str),
}

impl ReplyId<'_> {
    fn text(&self) -> &str {
        match self {
            ReplyId::Null => "null",
            ReplyId::Raw(s) => s,
        }
    }
}

/// The id of a request: `Ok(None)` for a notification, `Err` for an id JSON-RPC does not allow.
fn reply_id<'a>(id: &Member<'a>) -> Result<Option<ReplyId<'a>>, &'static str> {
    let Member::Present(raw) = id else {
        return Ok(None);
    };
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'n') => Ok(Some(ReplyId::Null)),
        Some(b'"') if text.len() <= MAX_ID_BYTES => Ok(Some(ReplyId::Raw(text))),
        Some(b'"') => Err("The request's id is too long: use at most 254 characters."),
        // A number every JSON parser can read back (1e999 is not one).
        Some(b'-' | b'0'..=b'9')
            if text.len() <= MAX_NUMBER_ID_CHARS
                && serde_json::from_str::<serde_json::Number>(text).is_ok() =>
        {
            Ok(Some(ReplyId::Raw(text)))
        }
        Some(b'-' | b'0'..=b'9') => Err("The request's id is not a number JSON parsers read."),
        _ => Err("The request's id must be a string, a number or null."),
    }
}

fn error_object(code: ErrorCode, message: &str) -> ErrorObjectOwned {
    ErrorObjectOwned::owned::<()>(code.code(), message.to_string(), None)
}

fn error_reply(id: ReplyId<'_>, error: &ErrorObjectOwned) -> String {
    let error = serde_json::to_string(error).unwrap_or_else(|_| {
        r#"{"code":-32603,"message":"Internal error: the error could not be encoded."}"#.into()
    });
    format!(r#"{{"jsonrpc":"2.0","id":{},"error":{error}}}"#, id.text())
}

/// The answer to a message over the size limit.
pub fn oversize_reply(limit: usize) -> String {
    error_reply(
        ReplyId::Null,
        &ErrorObjectOwned::owned::<()>(
            OVERSIZE_CODE,
            format!("Request is too big: the limit is {limit} bytes."),
            None,
        ),
    )
}

/// The answer to a binary frame: JSON-RPC travels in text frames.
pub fn binary_reply() -> String {
    error_reply(
        ReplyId::Null,
        &error_object(
            ErrorCode::InvalidRequest,
            "Invalid request: send JSON-RPC in WebSocket text frames, not binary ones.",
        ),
    )
}

/// jsonrpsee's reply with our id in place of the `null` the method was called with.
fn with_id(response: &str, id: ReplyId<'_>) -> String {
    const PREFIX: &str = r#"{"jsonrpc":"2.0","id":null"#;
    match response.strip_prefix(PREFIX) {
        Some(rest) => format!(r#"{{"jsonrpc":"2.0","id":{}{rest}"#, id.text()),
        // Not the shape jsonrpsee writes today: rebuild it (slower, same result).
        None => {
            let mut v: serde_json::Value = serde_json::from_str(response).unwrap_or_default();
            let id: serde_json::Value =
                serde_json::from_str(id.text()).unwrap_or(serde_json::Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("id".into(), id);
            }
            v.to_string()
        }
    }
}

impl Rpc {
    pub fn new(methods: impl Into<Methods>, max_response_bytes: usize, max_batch: usize) -> Self {
        Rpc {
            methods: methods.into(),
            max_response_bytes,
            max_batch: max_batch.max(1),
        }
    }

    /// Answer one text message (`None`: nothing to send, e.g. a notification).
    pub async fn handle(&self, text: &str, conn: &ConnContext) -> Option<String> {
        let Ok(raw) = serde_json::from_str::<&RawValue>(text) else {
            return Some(error_reply(
                ReplyId::Null,
                &error_object(
                    ErrorCode::ParseError,
                    "Parse error: the message is not JSON.",
                ),
            ));
        };
        match raw.get().as_bytes().first() {
            Some(b'[') => self.batch(raw.get(), conn).await,
            _ => self.single(raw.get(), conn).await,
        }
    }

    async fn batch(&self, text: &str, conn: &ConnContext) -> Option<String> {
        let invalid = |why: &str| {
            Some(error_reply(
                ReplyId::Null,
                &error_object(ErrorCode::InvalidRequest, why),
            ))
        };
        let Ok(entries) = serde_json::from_str::<Vec<&RawValue>>(text) else {
            return invalid("Invalid request: a batch must be an array of request objects.");
        };
        if entries.is_empty() {
            return invalid("Invalid request: an empty batch.");
        }
        if entries.len() > self.max_batch {
            return invalid(&format!(
                "Invalid request: a batch of {} requests; the limit is {}.",
                entries.len(),
                self.max_batch
            ));
        }
        let replies = futures_util::future::join_all(
            entries.iter().map(|entry| self.single(entry.get(), conn)),
        )
        .await;
        let replies: Vec<String> = replies.into_iter().flatten().collect();
        (!replies.is_empty()).then(|| format!("[{}]", replies.join(",")))
    }

    async fn single(&self, text: &str, conn: &ConnContext) -> Option<String> {
        let invalid = |id: ReplyId<'_>, why: &str| {
            Some(error_reply(
                id,
                &error_object(ErrorCode::InvalidRequest, why),
            ))
        };
        if !text.starts_with('{') {
            return invalid(ReplyId::Null, "Invalid request: expected a request object.");
        }
        let Ok(env) = serde_json::from_str::<Envelope<'_>>(text) else {
            return invalid(
                ReplyId::Null,
                "Invalid request: a member has the wrong type or appears twice.",
            );
        };
        let id = match reply_id(&env.id) {
            Ok(id) => id,
            Err(why) => return invalid(ReplyId::Null, &format!("Invalid request: {why}")),
        };
        let version_ok = matches!(env.jsonrpc, Member::Present(v) if v.get() == r#""2.0""#);
        let method = match env.method {
            Member::Present(m) => serde_json::from_str::<String>(m.get()).ok(),
            Member::Absent => None,
        };
        // A notification is never executed (and never answered), whatever it holds.
        let id = id?;
        if !version_ok {
            return invalid(id, "Invalid request: \"jsonrpc\" must be \"2.0\".");
        }
        let Some(method) = method else {
            return invalid(id, "Invalid request: \"method\" must be a string.");
        };
        let params = match env.params {
            Member::Present(p) => Some(p.get()),
            Member::Absent => None,
        };
        tracing::trace!(conn = conn.id, method = %crate::logging::quote(&method, 64), "request");
        let Ok(connection) = conn.in_flight.clone().try_acquire_owned() else {
            return Some(error_reply(id, &AgentError::new(ErrorReason::Busy).into()));
        };
        let Ok(origin) = conn.origin_in_flight.clone().try_acquire_owned() else {
            let busy = AgentError::with_message(
                ErrorReason::Busy,
                "Too many requests are in flight from this site (over all its connections).",
            );
            return Some(error_reply(id, &busy.into()));
        };
        let places = InFlight::new([connection, origin]);
        let response = IN_FLIGHT
            .scope(Arc::new(places), self.call(&method, params, conn))
            .await;
        Some(with_id(response.as_json().get(), id))
    }

    async fn call(&self, method: &str, params: Option<&str>, conn: &ConnContext) -> MethodResponse {
        let params = jsonrpsee::types::Params::new(params).into_owned();
        let mut ext = Extensions::new();
        ext.insert(conn.caller.clone());
        ext.insert(ConnectionId(conn.id));
        if let Some(n) = &conn.notifier {
            ext.insert(n.clone());
        }
        match self.methods.method(method) {
            Some(MethodCallback::Async(cb)) => {
                cb(
                    Id::Null,
                    params,
                    ConnectionId(conn.id),
                    self.max_response_bytes,
                    ext,
                )
                .await
            }
            Some(MethodCallback::Sync(cb)) => cb(Id::Null, params, self.max_response_bytes, ext),
            _ => MethodResponse::error(
                Id::Null,
                error_object(ErrorCode::MethodNotFound, &self.not_found(method)),
            ),
        }
    }

    /// Why `method` is unknown, without repeating what the page sent (it could be anything,
    /// a PIN included): a known name it resembles, or the list.
    fn not_found(&self, method: &str) -> String {
        let mut names: Vec<&str> = self.methods.method_names().collect();
        names.sort_unstable();
        match names.iter().find(|n| n.eq_ignore_ascii_case(method)) {
            Some(near) => {
                format!("Method not found: did you mean {near}? Names are case-sensitive.")
            }
            None => format!(
                "Method not found. The agent's methods: {}.",
                names.join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonrpsee::RpcModule;
    use serde_json::{json, Value};

    fn rpc() -> Rpc {
        let mut m = RpcModule::new(());
        m.register_async_method("echo", |params, _, _| async move {
            let v: Value = params.parse().unwrap_or(Value::Null);
            jsonrpsee::core::RpcResult::Ok(v)
        })
        .unwrap();
        m.register_async_method("held", |_, _, _| async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            jsonrpsee::core::RpcResult::Ok(1)
        })
        .unwrap();
        Rpc::new(m, 1 << 20, 8)
    }

    fn conn(in_flight: usize) -> ConnContext {
        ConnContext {
            caller: Caller::Local { trusted: false },
            id: 1,
            in_flight: Arc::new(Semaphore::new(in_flight)),
            origin_in_flight: Arc::new(Semaphore::new(64)),
            notifier: None,
        }
    }

    async fn answer(text: &str) -> Option<Value> {
        rpc()
            .handle(text, &conn(4))
            .await
            .map(|r| serde_json::from_str(&r).expect("the reply is JSON"))
    }

    #[tokio::test]
    async fn every_valid_id_is_echoed_exactly() {
        for id in [
            "1",
            "-1",
            "1.5",
            "1e3",
            "18446744073709551616",
            "\"abc\"",
            "\"\\u00e9\"",
            "null",
        ] {
            let text = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"echo","params":[7]}}"#);
            let reply = rpc().handle(&text, &conn(4)).await.unwrap();
            assert!(
                reply.starts_with(&format!(r#"{{"jsonrpc":"2.0","id":{id},"#)),
                "{id}: {reply}"
            );
            let v: Value = serde_json::from_str(&reply).unwrap();
            assert_eq!(v["result"], json!([7]), "{reply}");
        }
    }

    #[tokio::test]
    async fn ids_json_rpc_does_not_allow_get_invalid_request_with_a_null_id() {
        let long = format!("\"{}\"", "x".repeat(MAX_ID_BYTES));
        for id in [
            "true",
            "false",
            "{}",
            "[1]",
            "{\"a\":1}",
            long.as_str(),
            "6666E66666",
        ] {
            let v = answer(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"echo"}}"#))
                .await
                .unwrap_or_else(|| panic!("no answer for id {id}"));
            assert_eq!(v["error"]["code"], -32600, "{id}: {v}");
            assert_eq!(v["id"], Value::Null, "{id}: {v}");
        }
    }

    #[tokio::test]
    async fn notifications_are_neither_run_nor_answered() {
        assert!(answer(r#"{"jsonrpc":"2.0","method":"echo"}"#)
            .await
            .is_none());
        assert!(answer(r#"{"jsonrpc":"1.0","method":7}"#).await.is_none());
        assert!(answer(r#"[{"jsonrpc":"2.0","method":"echo"}]"#)
            .await
            .is_none());
    }

    #[tokio::test]
    async fn malformed_envelopes_get_the_json_rpc_codes() {
        for (text, code, id) in [
            ("{not json", -32700, Value::Null),
            ("\"str\"", -32600, Value::Null),
            ("[]", -32600, Value::Null),
            ("[1]", -32600, Value::Null),
            (r#"{"jsonrpc":"2.0","id":3,"method":7}"#, -32600, json!(3)),
            (
                r#"{"jsonrpc":"1.0","id":3,"method":"echo"}"#,
                -32600,
                json!(3),
            ),
            (r#"{"id":3,"method":"echo"}"#, -32600, json!(3)),
            (
                r#"{"jsonrpc":"2.0","id":3,"id":4,"method":"echo"}"#,
                -32600,
                Value::Null,
            ),
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"nope"}"#,
                -32601,
                json!(3),
            ),
        ] {
            let v = answer(text).await.unwrap();
            let v = if text == "[1]" { v[0].clone() } else { v };
            assert_eq!(v["error"]["code"], code, "{text}: {v}");
            assert_eq!(v["id"], id, "{text}: {v}");
        }
        let v = answer(r#"{"jsonrpc":"2.0","id":3,"method":"ECHO"}"#)
            .await
            .unwrap();
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("did you mean echo?"),
            "{v}"
        );
        let v = answer(r#"{"jsonrpc":"2.0","id":3,"method":"secret-1234"}"#)
            .await
            .unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(!msg.contains("secret") && msg.contains("echo, held"), "{v}");
    }

    #[tokio::test]
    async fn batch_entries_each_count_against_the_in_flight_bound() {
        let c = conn(2);
        let batch: Vec<Value> = (1..=5)
            .map(|id| json!({"jsonrpc": "2.0", "id": id, "method": "held"}))
            .collect();
        let reply = rpc()
            .handle(&Value::Array(batch).to_string(), &c)
            .await
            .unwrap();
        let v: Value = serde_json::from_str(&reply).unwrap();
        let items = v.as_array().unwrap();
        assert_eq!(items.len(), 5);
        let ok = items.iter().filter(|r| r["result"] == 1).count();
        let busy = items
            .iter()
            .filter(|r| r["error"]["data"]["reason"] == "BUSY")
            .count();
        assert_eq!((ok, busy), (2, 3), "{v}");
        // Over the batch limit: refused whole.
        let big: Vec<Value> = (1..=9)
            .map(|id| json!({"jsonrpc": "2.0", "id": id, "method": "echo"}))
            .collect();
        let v = answer(&Value::Array(big).to_string()).await.unwrap();
        assert_eq!(v["error"]["code"], -32600, "{v}");
    }
}
