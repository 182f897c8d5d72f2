//! A raw WebSocket text frame through the whole request path: JSON-RPC framing (ids, batches,
//! notifications, the in-flight bound), dispatch, param parsing and the handlers, with the fake
//! backend behind them. Every answer must be JSON, echo no PIN, and carry no INTERNAL error.
#![no_main]

use keyport::backend::fake::FakeBackend;
use keyport::backend::CertificateObject;
use keyport::config::Config;
use keyport::consent::Caller;
use keyport::methods::rpc_module;
use keyport::state::Agent;
use keyport::server::rpc::{ConnContext, Rpc};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const PIN: &str = "kpFuzzPin9317";

struct World {
    runtime: tokio::runtime::Runtime,
    rpc: Rpc,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let backend = Arc::new(FakeBackend {
            pin: PIN.into(),
            certificates: vec![
                CertificateObject {
                    id: vec![0x01],
                    der: include_bytes!("../../agent/tests/data/rsa-2048.der").to_vec(),
                },
                CertificateObject {
                    id: vec![0x02],
                    der: include_bytes!("../../agent/tests/data/ec-p256.der").to_vec(),
                },
            ],
            ..FakeBackend::default()
        });
        let config = Config {
            modules: vec!["/fake/module.so".to_string()],
            consent_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            ..Config::default()
        };
        let state = Agent::new(&config, backend, None);
        World {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap(),
            rpc: Rpc::new(rpc_module(state), 1 << 20, 16),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let w = world();
    let conn = ConnContext {
        caller: Caller::Local { trusted: true },
        id: 1,
        in_flight: Arc::new(tokio::sync::Semaphore::new(4)),
        origin_in_flight: Arc::new(tokio::sync::Semaphore::new(8)),
        // Notifications (slot events) go nowhere; subscriptions are bounded per connection.
        notifier: Some(keyport::events::Notifier::new(1, |_| true)),
    };
    let Some(reply) = w.runtime.block_on(w.rpc.handle(text, &conn)) else {
        return;
    };
    let v: serde_json::Value = serde_json::from_str(&reply).expect("every answer is JSON");
    let answers = match &v {
        serde_json::Value::Array(items) => items.clone(),
        one => vec![one.clone()],
    };
    for a in answers {
        assert_eq!(a["jsonrpc"], "2.0", "{reply}");
        if let Some(e) = a.get("error") {
            assert_ne!(e["data"]["reason"], "INTERNAL", "{reply}");
            assert!(!e.to_string().contains(PIN), "PIN echoed: {reply}");
        } else {
            assert!(a.get("result").is_some(), "{reply}");
        }
    }
});
