//! In-process tests of the server (guard, limits, time bounds) with the fake backend and a real
//! WebSocket: the middle tier between unit tests and the end-to-end tests against SoftHSM.

use futures_util::{SinkExt, StreamExt};
use keyport::backend::fake::FakeBackend;
use keyport::config::Config;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const TRUSTED: &str = "https://trusted.example";

fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        modules: vec!["/fake/module.so".into()],
        trust_origins: vec![TRUSTED.into()],
        ..Config::default()
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Ws {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("Origin", TRUSTED.parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

fn sign(id: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "pkcs11.signData", "params": {
        "slot_id": 1, "cert_id": "01", "pin": "1234",
        "data": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=", "algorithm_reference": "sha256"}})
    .to_string()
}

async fn recv(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn requests_over_the_in_flight_bound_get_busy_at_once() {
    let backend = Arc::new(FakeBackend {
        sign_delay: Duration::from_millis(300),
        ..FakeBackend::default()
    });
    let cfg = Config {
        max_in_flight_per_connection: 2,
        ..config()
    };
    let running = keyport::server::start(&cfg, backend.clone(), None, Vec::new())
        .await
        .unwrap();
    let mut ws = connect(&running.url()).await;
    for id in 1..=5 {
        ws.send(Message::text(sign(id))).await.unwrap();
    }
    let mut busy = 0;
    let mut signed = 0;
    for _ in 0..5 {
        let r = recv(&mut ws).await;
        match r["error"]["data"]["reason"].as_str() {
            Some("BUSY") => busy += 1,
            None => {
                assert!(r["result"].is_string(), "{r}");
                signed += 1
            }
            Some(other) => panic!("unexpected {other}: {r}"),
        }
    }
    assert_eq!((signed, busy), (2, 3));
    assert_eq!(backend.sign_calls(), 2);
    // Once the two finished, the connection accepts work again.
    ws.send(Message::text(sign(6))).await.unwrap();
    assert!(recv(&mut ws).await["result"].is_string());
    running.shutdown().await;
}

#[tokio::test]
async fn a_token_call_over_the_time_limit_is_abandoned_with_request_timeout() {
    let backend = Arc::new(FakeBackend {
        sign_delay: Duration::from_millis(1500),
        ..FakeBackend::default()
    });
    let cfg = Config {
        request_timeout: Duration::from_millis(300),
        ..config()
    };
    let running = keyport::server::start(&cfg, backend, None, Vec::new())
        .await
        .unwrap();
    let mut ws = connect(&running.url()).await;
    let started = std::time::Instant::now();
    ws.send(Message::text(sign(1))).await.unwrap();
    let r = recv(&mut ws).await;
    assert_eq!(r["error"]["data"]["reason"], "REQUEST_TIMEOUT", "{r}");
    assert!(started.elapsed() < Duration::from_millis(1200));
    // Other requests are still served while the stuck call finishes in the background.
    ws.send(Message::text(
        json!({"jsonrpc": "2.0", "id": 2, "method": "pkcs11.info"}).to_string(),
    ))
    .await
    .unwrap();
    assert!(recv(&mut ws).await["result"].is_object());
    running.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_limit_are_refused() {
    let cfg = Config {
        max_connections: 2,
        ..config()
    };
    let running = keyport::server::start(&cfg, Arc::new(FakeBackend::default()), None, Vec::new())
        .await
        .unwrap();
    let _a = connect(&running.url()).await;
    let _b = connect(&running.url()).await;
    let mut req = running.url().into_client_request().unwrap();
    req.headers_mut().insert("Origin", TRUSTED.parse().unwrap());
    let err = tokio_tungstenite::connect_async(req)
        .await
        .expect_err("third connection accepted");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status().as_u16(), 429)
        }
        other => panic!("unexpected {other}"),
    }
    running.shutdown().await;
}
