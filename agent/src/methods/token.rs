//! `pkcs11.info`, `pkcs11.slots`, `pkcs11.slotsWithTokenPresent`, `pkcs11.token`.

use super::{parse, MethodResult};
use crate::state::Agent;
use jsonrpsee::RpcModule;
use keyport_protocol::{method, InfoResult, ModuleParams, SlotsResult, TokenInfo, TokenParams};

pub(super) fn register(m: &mut RpcModule<Agent>) {
    m.register_async_method(method::INFO, |params, state, _| async move {
        let p: ModuleParams = parse(&params)?;
        let module = state.module(p.module.as_deref())?;
        let r: InfoResult = state.blocking(move |b| b.info(&module)).await?;
        MethodResult::Ok(r)
    })
    .expect("unique method name");

    for (name, present) in [
        (method::SLOTS, false),
        (method::SLOTS_WITH_TOKEN_PRESENT, true),
    ] {
        m.register_async_method(name, move |params, state, _| async move {
            let p: ModuleParams = parse(&params)?;
            let module = state.module(p.module.as_deref())?;
            let r: SlotsResult = state.blocking(move |b| b.slots(&module, present)).await?;
            MethodResult::Ok(r)
        })
        .expect("unique method name");
    }

    m.register_async_method(method::TOKEN, |params, state, _| async move {
        let p: TokenParams = parse(&params)?;
        let module = state.module(p.module.as_deref())?;
        let r: TokenInfo = state.blocking(move |b| b.token(&module, p.slot_id)).await?;
        MethodResult::Ok(r)
    })
    .expect("unique method name");
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
