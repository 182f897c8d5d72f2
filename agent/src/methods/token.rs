//! `pkcs11.info`, `pkcs11.slots`, `pkcs11.slotsWithTokenPresent`, `pkcs11.token`.

use super::register;
use crate::state::Agent;
use jsonrpsee::RpcModule;
use keyport_protocol::{Info, Slots, SlotsWithTokenPresent, Token};

pub(super) fn register_all(m: &mut RpcModule<Agent>) {
    register::<Info, _, _>(m, |p, state, _| async move {
        let module = state.module(p.module.as_deref())?;
        let quick = state.quick(|b| b.info_quick(&module));
        state.call(quick, move |b| b.info(&module)).await
    });
    register::<Slots, _, _>(m, |p, state, _| async move {
        let module = state.module(p.module.as_deref())?;
        let m = module.clone();
        let quick = state.quick(|b| b.slots_quick(&module, false));
        let slots = state.call(quick, move |b| b.slots(&m, false)).await?;
        if slots.is_empty() {
            explain_no_slot(module.path());
        }
        Ok(slots)
    });
    register::<SlotsWithTokenPresent, _, _>(m, |p, state, _| async move {
        let module = state.module(p.module.as_deref())?;
        let quick = state.quick(|b| b.slots_quick(&module, true));
        state.call(quick, move |b| b.slots(&module, true)).await
    });
    register::<Token, _, _>(m, |p, state, _| async move {
        let module = state.module(p.module.as_deref())?;
        let quick = state.quick(|b| b.token_quick(&module, p.slot_id));
        state
            .call(quick, move |b| b.token(&module, p.slot_id))
            .await
    });
}

/// Say once per library why it lists no slot (usually: no card reader, or pcscd not running).
fn explain_no_slot(module: &str) {
    static TOLD: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut told = TOLD.lock().unwrap_or_else(|e| e.into_inner());
    if !told.iter().any(|m| m == module) && told.len() < 64 {
        told.push(module.to_string());
        tracing::warn!(module, "{}", crate::backend::pcsc::no_slot_hint());
    }
}

#[cfg(test)]
mod tests {
    use super::super::rpc_module;
    use super::super::tests::{call, state};
    use crate::backend::fake::FakeBackend;
    use serde_json::json;
    use std::sync::Arc;

    #[tokio::test]
    async fn slots_and_token_errors() {
        let m = rpc_module(state(Arc::new(FakeBackend::default())));
        let all = call(&m, "pkcs11.slots", json!({})).await.unwrap();
        assert_eq!(all.as_array().unwrap().len(), 2);
        let present = call(&m, "pkcs11.slotsWithTokenPresent", json!(null))
            .await
            .unwrap();
        assert_eq!(present[0]["slot_id"], 1);
        assert_eq!(present.as_array().unwrap().len(), 1);
        let token = call(&m, "pkcs11.token", json!({"slot_id": 1}))
            .await
            .unwrap();
        assert_eq!(token["pin_state"], "ok");
        let err = call(&m, "pkcs11.token", json!({"slot_id": 2}))
            .await
            .unwrap_err();
        assert_eq!(err["data"]["reason"], "TOKEN_NOT_PRESENT");
        let err = call(&m, "pkcs11.token", json!({"slot_id": 99}))
            .await
            .unwrap_err();
        assert_eq!(err["data"]["reason"], "SLOT_NOT_FOUND");
        assert_eq!(err["code"], 1101);
    }
}
