//! JSON-RPC methods, one file per group, all registered by [`rpc_module`].
//!
//! Handlers parse by-name params into `keyport_protocol` types, check the module allowlist, and run
//! backend calls on blocking threads with a time limit ([`Agent::blocking`]). They return [`AgentError`]s, which become
//! JSON-RPC error objects in one place (`error.rs`).

mod certificates;
mod discovery;
mod events;
mod signing;
mod token;

use crate::consent::Caller;
use crate::error::{AgentError, Result};
use crate::state::Agent;
use jsonrpsee::types::{ErrorObjectOwned, Params};
use jsonrpsee::{Extensions, RpcModule};
use keyport_protocol::Method;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Parse by-name params; absent params are an empty object.
pub(crate) fn parse<T: DeserializeOwned>(params: &Params<'_>) -> Result<T> {
    let raw = params.as_str().unwrap_or("{}");
    if raw.trim_start().starts_with('[') {
        return Err(AgentError::invalid_params(
            "Params must be an object with named fields (e.g. {\"slot_id\": 1}), not an array.",
        ));
    }
    let de = &mut serde_json::Deserializer::from_str(raw);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        AgentError::invalid_params(format!(
            "Invalid params: {}.",
            describe(&field, &e.into_inner())
        ))
    })
}

/// A serde error as a sentence that names the field but never the value sent (it may be a PIN).
fn describe(field: &str, err: &serde_json::Error) -> String {
    let msg = err.to_string();
    let msg = msg.split(" at line ").next().unwrap_or(&msg);
    if msg.starts_with("missing field") {
        return msg.to_string();
    }
    if msg.starts_with("unknown field") {
        return unknown_field(msg);
    }
    let kind = msg
        .split([':', '`'])
        .next()
        .unwrap_or("invalid value")
        .trim();
    let expected = msg
        .split_once(", expected ")
        .map(|(_, e)| e)
        .unwrap_or("a valid value");
    match field {
        "" | "." => format!("{kind}, expected {expected}"),
        f => format!("`{f}`: {kind}, expected {expected}"),
    }
}

/// serde's "unknown field `X`, expected one of `a`, `b`" without `X` (a page could put
/// anything there), with the known field it most likely meant.
fn unknown_field(msg: &str) -> String {
    let sent = msg.split('`').nth(1).unwrap_or_default();
    let expected: Vec<&str> = msg
        .split_once("expected")
        .map(|(_, e)| e.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    let simple = |s: &str| s.replace('_', "").to_ascii_lowercase();
    match expected.iter().find(|e| simple(e) == simple(sent)) {
        Some(near) => format!("unknown field: did you mean `{near}`? Names are snake_case"),
        None if expected.is_empty() => "unknown field: this method takes no params".into(),
        None => format!(
            "unknown field; the fields are {}",
            expected
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub(crate) fn caller(ext: &Extensions) -> Caller {
    ext.get::<Caller>()
        .cloned()
        .unwrap_or(Caller::Local { trusted: false })
}

pub(crate) type MethodResult<T> = std::result::Result<T, ErrorObjectOwned>;

/// Register the handler of method `M`: it gets `M::Params` (parsed by name, with errors that
/// name the field), the agent and what it takes from the request's extensions (`from_ext`),
/// and answers `M::Result` or an [`AgentError`].
fn register_using<M, X, G, F, Fut>(module: &mut RpcModule<Agent>, from_ext: G, handler: F)
where
    M: Method,
    X: Send + 'static,
    G: Fn(&Extensions) -> X + Clone + Send + Sync + 'static,
    F: Fn(M::Params, Arc<Agent>, X) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<M::Result>> + Send + 'static,
{
    module
        .register_async_method(M::NAME, move |params, state, ext| {
            let (handler, x) = (handler.clone(), from_ext(&ext));
            async move {
                let p: M::Params = parse(&params)?;
                MethodResult::Ok(handler(p, state, x).await?)
            }
        })
        .expect("unique method name");
}

/// [`register_using`] for a handler that takes the caller.
pub(crate) fn register<M, F, Fut>(module: &mut RpcModule<Agent>, handler: F)
where
    M: Method,
    F: Fn(M::Params, Arc<Agent>, Caller) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<M::Result>> + Send + 'static,
{
    register_using::<M, _, _, _, _>(module, caller, handler)
}

/// [`register_using`] for a handler that needs the connection's [`crate::events::Notifier`]
/// (None: called outside a connection, e.g. in process by a test).
pub(crate) fn register_with_notifier<M, F, Fut>(module: &mut RpcModule<Agent>, handler: F)
where
    M: Method,
    F: Fn(M::Params, Arc<Agent>, Option<crate::events::Notifier>) -> Fut
        + Clone
        + Send
        + Sync
        + 'static,
    Fut: std::future::Future<Output = Result<M::Result>> + Send + 'static,
{
    register_using::<M, _, _, _, _>(
        module,
        |ext: &Extensions| ext.get::<crate::events::Notifier>().cloned(),
        handler,
    )
}

/// Every method of the wire contract.
pub fn rpc_module(state: Arc<Agent>) -> RpcModule<Agent> {
    let mut module = RpcModule::from_arc(state);
    token::register_all(&mut module);
    certificates::register_all(&mut module);
    signing::register_all(&mut module);
    discovery::register_all(&mut module);
    events::register_all(&mut module);
    module
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backend::fake::FakeBackend;
    use serde_json::{json, Value};

    pub fn state(backend: Arc<FakeBackend>) -> Arc<Agent> {
        let config = crate::config::Config {
            modules: vec!["/usr/lib/softhsm/libsofthsm2.so".to_string()],
            consent_timeout: std::time::Duration::from_secs(1),
            request_timeout: std::time::Duration::from_secs(5),
            ..Default::default()
        };
        Agent::new(&config, backend, None)
    }

    /// Call a method in process; returns the result or the error object as JSON.
    pub async fn call(
        module: &RpcModule<Agent>,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        let req =
            json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let (resp, _) = module.raw_json_request(&req, 1).await.unwrap();
        let v: Value = serde_json::from_str(resp.get()).unwrap();
        match v.get("error") {
            Some(e) => Err(e.clone()),
            None => Ok(v["result"].clone()),
        }
    }

    #[tokio::test]
    async fn module_outside_the_allowlist_is_refused() {
        let m = rpc_module(state(Arc::new(FakeBackend::default())));
        let err = call(&m, "pkcs11.info", json!({"module": "/tmp/evil.so"}))
            .await
            .unwrap_err();
        assert_eq!(err["code"], 1001);
        assert_eq!(err["data"]["reason"], "MODULE_NOT_ALLOWED");
        assert!(call(
            &m,
            "pkcs11.info",
            json!({"module": "/usr/lib/softhsm/libsofthsm2.so"})
        )
        .await
        .is_ok());
        assert!(call(&m, "pkcs11.info", json!({})).await.is_ok());
    }

    #[tokio::test]
    async fn positional_and_misspelt_params_are_invalid() {
        let m = rpc_module(state(Arc::new(FakeBackend::default())));
        let err = call(&m, "pkcs11.token", json!([1])).await.unwrap_err();
        assert_eq!(err["code"], -32602);
        assert_eq!(err["data"]["reason"], "INVALID_PARAMS");
        let err = call(&m, "pkcs11.token", json!({"slotId": 1}))
            .await
            .unwrap_err();
        let msg = err["message"].as_str().unwrap();
        assert!(msg.contains("did you mean `slot_id`"), "{err}");
        assert!(
            !msg.contains("slotId"),
            "the page's own text is not repeated: {err}"
        );
        let err = call(&m, "pkcs11.token", json!({"slot_id": 1, "secret-1234": 1}))
            .await
            .unwrap_err();
        let msg = err["message"].as_str().unwrap();
        assert!(
            !msg.contains("secret") && msg.contains("`slot_id`, `module`"),
            "{err}"
        );
        let err = call(&m, "pkcs11.token", json!({"slot_id": "one"}))
            .await
            .unwrap_err();
        assert_eq!(err["data"]["reason"], "INVALID_PARAMS");
        let msg = err["message"].as_str().unwrap();
        assert!(msg.contains("`slot_id`") && !msg.contains("one"), "{msg}");
        let err = call(&m, "pkcs11.token", json!({})).await.unwrap_err();
        assert!(
            err["message"]
                .as_str()
                .unwrap()
                .contains("missing field `slot_id`"),
            "{err}"
        );
    }
}
