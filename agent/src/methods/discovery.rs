//! `keyport.version` and `rpc.discover`: what this agent is and what it speaks.

use super::register;
use crate::state::Agent;
use jsonrpsee::RpcModule;
use keyport_protocol::{method, openrpc, Discover, Version, VersionResult, PROTOCOL_VERSION};

pub(super) fn register_all(m: &mut RpcModule<Agent>) {
    register::<Version, _, _>(m, |_, state, _| async move {
        Ok(VersionResult {
            agent: env!("CARGO_PKG_VERSION").to_string(),
            protocol: PROTOCOL_VERSION.to_string(),
            methods: method::ALL.iter().map(|m| m.to_string()).collect(),
            features: state.features.clone(),
        })
    });
    register::<Discover, _, _>(m, |_, _, _| async move {
        Ok(openrpc::document(env!("CARGO_PKG_VERSION")))
    });
}

#[cfg(test)]
mod tests {
    use super::super::rpc_module;
    use super::super::tests::{call, state};
    use crate::backend::fake::FakeBackend;
    use serde_json::json;
    use std::sync::Arc;

    #[tokio::test]
    async fn version_and_discovery_describe_this_agent() {
        let m = rpc_module(state(Arc::new(FakeBackend::default())));
        let v = call(&m, "keyport.version", json!({})).await.unwrap();
        assert_eq!(v["agent"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["protocol"], keyport_protocol::PROTOCOL_VERSION);
        assert!(v["methods"]
            .as_array()
            .unwrap()
            .contains(&json!("pkcs11.signData")));
        // Absent params are fine; surplus ones are not.
        assert!(call(&m, "keyport.version", json!(null)).await.is_ok());
        let err = call(&m, "keyport.version", json!({"x": 1}))
            .await
            .unwrap_err();
        assert_eq!(err["data"]["reason"], "INVALID_PARAMS");
        let doc = call(&m, "rpc.discover", json!({})).await.unwrap();
        assert_eq!(doc["openrpc"], keyport_protocol::openrpc::OPENRPC_VERSION);
        assert_eq!(doc["info"]["version"], keyport_protocol::PROTOCOL_VERSION);
        assert_eq!(doc["info"]["x-agent-version"], env!("CARGO_PKG_VERSION"));
    }
}
