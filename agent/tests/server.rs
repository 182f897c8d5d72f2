//! In-process tests of the server (guard, limits, time bounds) with the fake backend and a real
//! WebSocket: the middle tier between unit tests and the end-to-end tests against SoftHSM.

use futures_util::{SinkExt, StreamExt};
use keyport::backend::fake::FakeBackend;
use keyport::config::Config;
use keyport::testing::Rng;
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
        trust_origins: vec![TRUSTED.parse().unwrap()],
        ..Config::default()
    }
}

async fn start(cfg: &Config, backend: Arc<FakeBackend>) -> keyport::server::Running {
    let agent = keyport::state::Agent::new(cfg, backend, None);
    keyport::server::start(cfg, agent, Vec::new())
        .await
        .unwrap()
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
    let backend = Arc::new(FakeBackend::default());
    backend.sign_gate.shut();
    let cfg = Config {
        max_in_flight_per_connection: 2,
        ..config()
    };
    let running = start(&cfg, backend.clone()).await;
    let mut ws = connect(&running.url()).await;
    for id in 1..=5 {
        ws.send(Message::text(sign(id))).await.unwrap();
    }
    // The first two are held at the token: the other three are refused without waiting.
    let mut busy = Vec::new();
    for _ in 0..3 {
        let r = recv(&mut ws).await;
        assert_eq!(r["error"]["data"]["reason"], "BUSY", "{r}");
        busy.push(r["id"].as_u64().unwrap());
    }
    busy.sort();
    assert_eq!(busy, [3, 4, 5]);
    backend.sign_gate.open();
    let mut signed = Vec::new();
    for _ in 0..2 {
        let r = recv(&mut ws).await;
        assert!(r["result"].is_string(), "{r}");
        signed.push(r["id"].as_u64().unwrap());
    }
    signed.sort();
    assert_eq!(signed, [1, 2]);
    assert_eq!(backend.sign_calls(), 2);
    // Once the two finished, the connection accepts work again.
    ws.send(Message::text(sign(6))).await.unwrap();
    assert!(recv(&mut ws).await["result"].is_string());
    running.shutdown().await;
}

#[tokio::test]
async fn a_token_call_over_the_time_limit_is_abandoned_with_request_timeout() {
    let backend = Arc::new(FakeBackend::default());
    backend.sign_gate.shut();
    let cfg = Config {
        request_timeout: Duration::from_millis(300),
        ..config()
    };
    let running = start(&cfg, backend.clone()).await;
    let mut ws = connect(&running.url()).await;
    let started = std::time::Instant::now();
    ws.send(Message::text(sign(1))).await.unwrap();
    // The token call stays stuck; the answer comes from the time limit.
    let r = recv(&mut ws).await;
    assert_eq!(r["error"]["data"]["reason"], "REQUEST_TIMEOUT", "{r}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(5));
    // Other requests are still served while the stuck call waits in the background.
    ws.send(Message::text(
        json!({"jsonrpc": "2.0", "id": 2, "method": "pkcs11.info"}).to_string(),
    ))
    .await
    .unwrap();
    assert!(recv(&mut ws).await["result"].is_object());
    backend.sign_gate.open();
    running.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_limit_are_refused() {
    let cfg = Config {
        max_connections: 2,
        ..config()
    };
    let running = start(&cfg, Arc::new(FakeBackend::default())).await;
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

/// Random base64 of `len` bytes.
fn b64(rng: &mut Rng, len: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(rng.bytes(len))
}

const FUZZ_PIN: &str = "kpFuzzPin9317";
const WRONG_PIN: &str = "kpWrongPin5521";

fn random_value(rng: &mut Rng, field: &str) -> Value {
    let odd = [
        json!(null),
        json!(true),
        json!(-1),
        json!(1.5),
        json!(1e300),
        json!([]),
        json!({}),
        json!(""),
    ];
    if rng.chance(5) {
        return rng.pick(&odd);
    }
    match field {
        "slot_id" => rng.pick(&[json!(1), json!(2), json!(99), json!(u64::MAX), json!("1")]),
        "cert_id" => rng.pick(&[
            json!("01"),
            json!("02"),
            json!("03"),
            json!("01"),
            json!("02"),
            json!("03"),
            json!("7F"),
            json!("0g"),
            json!("01 "),
            json!("A".repeat(200)),
        ]),
        "pin" => rng.pick(&[
            json!(FUZZ_PIN),
            json!(FUZZ_PIN),
            json!(WRONG_PIN),
            json!("12"),
            json!("x".repeat(300)),
            json!(93178),
        ]),
        "data" | "signature" => {
            let len = rng.pick(&[20, 32, 48, 64, 0, 7, 256]);
            if rng.chance(10) {
                json!("!!not base64")
            } else {
                json!(b64(rng, len))
            }
        }
        "algorithm_reference" => rng.pick(&[
            json!("sha1"),
            json!("sha256"),
            json!("sha384"),
            json!("sha512"),
            json!("SHA256"),
            json!("md5"),
        ]),
        "module" => rng.pick(&[
            json!("/fake/module.so"),
            json!("/tmp/evil.so"),
            json!("relative.so"),
            json!("/fake/../fake/module.so"),
        ]),
        "parse_certs" => rng.pick(&[json!(true), json!(false), json!("yes")]),
        "signature_scheme" => rng.pick(&[json!("pkcs1"), json!("pss"), json!("PSS"), json!(1)]),
        "signature_format" => rng.pick(&[json!("raw"), json!("der"), json!("ber"), json!(null)]),
        "filter" => rng.pick(&[
            json!({}),
            json!({"key_usage": "nonRepudiation"}),
            json!({"key_usage": "digitalSignature", "has_private_key": true}),
            json!({"key_usage": "sign"}),
            json!({"valid_at": "2026-11-27T12:00:00Z"}),
            json!({"valid_at": "yesterday"}),
            json!({"has_private_key": "yes"}),
            json!({"surplus": 1}),
            json!([1]),
        ]),
        "data_list" => {
            let n = rng.pick(&[1usize, 2, 5, 0, 300]);
            json!((0..n)
                .map(|_| if rng.chance(90) {
                    b64(rng, 32)
                } else {
                    "!!".to_string()
                })
                .collect::<Vec<_>>())
        }
        _ => json!("surplus"),
    }
}

fn random_request(rng: &mut Rng, id: u64) -> Value {
    const SIGN: &[&str] = &[
        "slot_id",
        "cert_id",
        "pin",
        "data",
        "algorithm_reference",
        "signature_scheme",
        "signature_format",
    ];
    const BATCH: &[&str] = &[
        "slot_id",
        "cert_id",
        "pin",
        "data_list",
        "algorithm_reference",
        "signature_scheme",
        "signature_format",
    ];
    const VERIFY: &[&str] = &[
        "slot_id",
        "cert_id",
        "data",
        "algorithm_reference",
        "signature",
        "signature_scheme",
        "signature_format",
    ];
    let (method, own): (&str, &[&str]) = rng.pick(&[
        ("pkcs11.info", &[][..]),
        ("pkcs11.slots", &[][..]),
        ("pkcs11.slotsWithTokenPresent", &[][..]),
        ("pkcs11.token", &["slot_id"][..]),
        (
            "pkcs11.certificates",
            &["slot_id", "parse_certs", "filter"][..],
        ),
        ("pkcs11.signDataBatch", BATCH),
        ("pkcs11.signData", SIGN),
        ("pkcs11.signData", SIGN),
        ("pkcs11.verifySignedData", VERIFY),
        ("pkcs11.verifySignedData", VERIFY),
        ("pkcs11.nope", &["slot_id"][..]),
        ("pkcs11.signdata", SIGN),
    ]);
    let params = match rng.below(20) {
        0 => json!([1, "01"]),
        1 => json!("params"),
        2 => Value::Null,
        _ => {
            let mut p = serde_json::Map::new();
            // Mostly the method's own fields; sometimes one missing, a module, or a field that
            // does not belong (a misspelling, another method's).
            for f in own {
                // Optional fields half the time, the others nearly always.
                let keep = match *f {
                    "signature_scheme" | "signature_format" | "filter" => rng.chance(50),
                    _ => rng.chance(95),
                };
                if keep {
                    // A batch's `data` is a list.
                    let (name, value) = match *f {
                        "data_list" => ("data", random_value(rng, f)),
                        _ => (*f, random_value(rng, f)),
                    };
                    p.insert(name.to_string(), value);
                }
            }
            // Mostly a digest of the right length, so that requests get past validation.
            let len = match p.get("algorithm_reference").and_then(Value::as_str) {
                Some("sha1") => 20,
                Some("sha256") => 32,
                Some("sha384") => 48,
                Some("sha512") => 64,
                _ => 0,
            };
            if len > 0 && p.get("data").is_some_and(Value::is_string) && rng.chance(80) {
                p.insert("data".into(), json!(b64(rng, len)));
            }
            if rng.chance(10) {
                p.insert("module".into(), random_value(rng, "module"));
            }
            if rng.chance(4) {
                let f = rng.pick(&["slotId", "pin", "signature", "parse_certs", "surplus"]);
                p.insert(f.into(), random_value(rng, f));
            }
            Value::Object(p)
        }
    };
    let mut req = json!({"jsonrpc": "2.0", "id": id, "method": method});
    if !params.is_null() {
        req["params"] = params;
    }
    req
}

/// Checks one response object; returns its outcome ("ok" or the reason / code).
fn check_response(r: &Value, sent: &str) -> String {
    assert_eq!(r["jsonrpc"], "2.0", "{r}\nfor {sent}");
    match (r.get("result"), r.get("error")) {
        (Some(_), None) => "ok".into(),
        (None, Some(e)) => {
            let code = e["code"]
                .as_i64()
                .unwrap_or_else(|| panic!("{r}\nfor {sent}"));
            let message = e["message"].as_str().unwrap_or_default();
            assert!(!message.is_empty(), "{r}\nfor {sent}");
            for secret in [FUZZ_PIN, WRONG_PIN, "93178"] {
                assert!(!message.contains(secret), "PIN echoed: {r}\nfor {sent}");
            }
            match e["data"]["reason"].as_str() {
                Some(reason) => {
                    let known = keyport_protocol::ErrorReason::from_code(code as i32)
                        .unwrap_or_else(|| panic!("undocumented code: {r}\nfor {sent}"));
                    assert_eq!(known.as_str(), reason, "{r}\nfor {sent}");
                    assert_ne!(reason, "INTERNAL", "{r}\nfor {sent}");
                    reason.into()
                }
                // The JSON-RPC layer's own errors carry no reason (docs/PROTOCOL.md).
                None => {
                    assert!(
                        [-32700, -32600, -32601, -32007].contains(&code),
                        "an error without a reason: {r}\nfor {sent}"
                    );
                    code.to_string()
                }
            }
        }
        _ => panic!("neither result nor error: {r}\nfor {sent}"),
    }
}

/// Thousands of random, mostly wrong requests (wrong types, missing and surplus fields, bad
/// base64, unknown methods, batches, broken JSON): each gets a result or a documented, typed
/// error that echoes no PIN, never INTERNAL, never silence; and the agent serves normally after.
#[tokio::test]
async fn random_requests_get_typed_answers_and_leave_no_bad_state() {
    let backend = Arc::new(FakeBackend {
        pin: FUZZ_PIN.into(),
        certificates: vec![
            keyport::backend::CertificateObject {
                id: vec![0x01],
                der: include_bytes!("data/rsa-2048.der").to_vec(),
            },
            keyport::backend::CertificateObject {
                id: vec![0x02],
                der: include_bytes!("data/ec-p256.der").to_vec(),
            },
            keyport::backend::CertificateObject {
                id: vec![0x03],
                der: b"not a certificate".to_vec(),
            },
        ],
        ..FakeBackend::default()
    });
    let running = start(&config(), backend.clone()).await;
    let mut ws = connect(&running.url()).await;
    let mut rng = Rng(0x4b65_7970_6f72_7446);
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for id in 1..=3000u64 {
        match rng.below(25) {
            // Broken JSON: a request cut short, or not JSON at all.
            0 => {
                let text = random_request(&mut rng, id).to_string();
                let cut = &text[..rng.below(text.len())];
                let sent = if rng.chance(50) { cut } else { "{]" };
                ws.send(Message::text(sent)).await.unwrap();
                let r = recv(&mut ws).await;
                *seen.entry(check_response(&r, sent)).or_default() += 1;
            }
            // A batch of one to three.
            1 => {
                let n = 1 + rng.below(3);
                let batch: Vec<Value> = (0..n)
                    .map(|k| random_request(&mut rng, id * 10 + k as u64))
                    .collect();
                let sent = Value::Array(batch).to_string();
                ws.send(Message::text(sent.clone())).await.unwrap();
                let r = recv(&mut ws).await;
                let answers = r.as_array().unwrap_or_else(|| panic!("{r}\nfor {sent}"));
                assert_eq!(answers.len(), n, "{r}\nfor {sent}");
                for a in answers {
                    *seen.entry(check_response(a, &sent)).or_default() += 1;
                }
            }
            _ => {
                let req = random_request(&mut rng, id);
                let sent = req.to_string();
                ws.send(Message::text(sent.clone())).await.unwrap();
                let r = recv(&mut ws).await;
                assert_eq!(r["id"], json!(id), "{r}\nfor {sent}");
                *seen.entry(check_response(&r, &sent)).or_default() += 1;
            }
        }
    }
    eprintln!("outcomes: {seen:?}");
    // The inputs reached every layer: parsing, the allowlist, the token, the PIN, the verifier.
    for outcome in [
        "ok",
        "-32700",
        "-32601",
        "INVALID_PARAMS",
        "MODULE_NOT_ALLOWED",
        "SLOT_NOT_FOUND",
        "TOKEN_NOT_PRESENT",
        "CERTIFICATE_NOT_FOUND",
        "PIN_INCORRECT",
        "UNSUPPORTED_ALGORITHM",
    ] {
        assert!(seen.contains_key(outcome), "never saw {outcome}: {seen:?}");
    }
    assert!(backend.sign_calls() > 0, "{seen:?}");
    // No bad state left behind: the same connection still signs and answers.
    ws.send(Message::text(
        sign(1).replace("\"1234\"", &format!("{FUZZ_PIN:?}")),
    ))
    .await
    .unwrap();
    let r = recv(&mut ws).await;
    assert!(r["result"].is_string(), "{r}");
    running.shutdown().await;
}
