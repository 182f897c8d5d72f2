//! signData and verifySignedData against SoftHSM, every signature checked by openssl.

use keyport_e2e::*;
use serde_json::{json, Value};

const KEYS: [(&str, &str); 4] = [
    ("01", "rsa-2048"),
    ("02", "ec-p256"),
    ("03", "ec-p384"),
    ("04", "ec-p521"),
];
const ALGS: [&str; 4] = ["sha1", "sha256", "sha384", "sha512"];

fn sign_params(slot: u64, id: &str, alg: &str, digest: &[u8]) -> Value {
    json!({"slot_id": slot, "cert_id": id, "pin": PIN, "data": b64(digest), "algorithm_reference": alg})
}

#[tokio::test]
async fn every_algorithm_with_every_key_type_verifies_with_openssl() {
    let token = &Token::provision();
    let agent = Agent::start(token, &[]);
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    for (id, name) in KEYS {
        let cert = token.cert_der(name);
        for alg in ALGS {
            let digest = sha(alg, format!("document for {name} with {alg}").as_bytes());
            let sig = c
                .ok("pkcs11.signData", sign_params(slot, id, alg, &digest))
                .await;
            let sig = unb64(sig.as_str().expect("base64 string"));
            match name {
                "rsa-2048" => assert_eq!(sig.len(), 256),
                "ec-p256" => assert_eq!(sig.len(), 64, "raw r||s"),
                "ec-p384" => assert_eq!(sig.len(), 96, "raw r||s"),
                _ => assert_eq!(sig.len(), 132, "raw r||s"),
            }
            assert!(
                openssl_verify(&cert, alg, &digest, &sig),
                "openssl rejects the {name}/{alg} signature"
            );

            // The independent verifier can fail: a flipped bit, or another digest, is rejected.
            let mut bad = sig.clone();
            bad[10] ^= 1;
            assert!(
                !openssl_verify(&cert, alg, &digest, &bad),
                "openssl accepted a corrupted signature"
            );

            // verifySignedData agrees (with no public key object on the token).
            let mut p = sign_params(slot, id, alg, &digest);
            p["signature"] = json!(b64(&sig));
            assert_eq!(
                c.ok("pkcs11.verifySignedData", p.clone()).await,
                json!(true),
                "{name}/{alg}"
            );
            p["signature"] = json!(b64(&bad));
            assert_eq!(
                c.ok("pkcs11.verifySignedData", p.clone()).await,
                json!(false),
                "{name}/{alg} corrupted"
            );
            let other = sha(alg, b"another document");
            p["signature"] = json!(b64(&sig));
            p["data"] = json!(b64(&other));
            assert_eq!(
                c.ok("pkcs11.verifySignedData", p).await,
                json!(false),
                "{name}/{alg} other digest"
            );
        }
    }
}

#[tokio::test]
async fn signing_errors() {
    let token = &Token::provision();
    let agent = Agent::start(token, &[]);
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    let empty = c.slot_of("keyport-empty").await;
    let digest = sha("sha256", b"x");
    let p = |over: Value| {
        let mut p = sign_params(slot, "01", "sha256", &digest);
        for (k, v) in over.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };

    let e = c
        .err(
            "pkcs11.signData",
            p(json!({"pin": "9999"})),
            "PIN_INCORRECT",
        )
        .await;
    assert!(!e.to_string().contains("9999"), "the PIN is echoed: {e}");
    c.err("pkcs11.signData", p(json!({"pin": ""})), "PIN_LEN_RANGE")
        .await;
    c.err("pkcs11.signData", p(json!({"pin": "12"})), "PIN_LEN_RANGE")
        .await;
    c.err(
        "pkcs11.signData",
        p(json!({"cert_id": "09"})),
        "KEY_NOT_FOUND",
    )
    .await;
    c.err(
        "pkcs11.signData",
        p(json!({"cert_id": "7F"})),
        "CERTIFICATE_NOT_FOUND",
    )
    .await;
    c.err(
        "pkcs11.signData",
        p(json!({"slot_id": empty})),
        "CERTIFICATE_NOT_FOUND",
    )
    .await;
    c.err(
        "pkcs11.signData",
        p(json!({"slot_id": 987654321})),
        "SLOT_NOT_FOUND",
    )
    .await;
    c.err(
        "pkcs11.signData",
        p(json!({"algorithm_reference": "md5"})),
        "INVALID_PARAMS",
    )
    .await;
    c.err(
        "pkcs11.signData",
        p(json!({"algorithm_reference": "sha512"})),
        "INVALID_PARAMS",
    )
    .await;
    c.err(
        "pkcs11.signData",
        p(json!({"data": "not base64!"})),
        "INVALID_PARAMS",
    )
    .await;
    c.err(
        "pkcs11.signData",
        p(json!({"module": "/tmp/libevil.so"})),
        "MODULE_NOT_ALLOWED",
    )
    .await;
    c.err(
        "pkcs11.verifySignedData",
        p(json!({"signature": "%%"})),
        "INVALID_PARAMS",
    )
    .await;
    c.err(
        "pkcs11.verifySignedData",
        p(json!({"signature": "AAAA", "cert_id": "7F"})),
        "CERTIFICATE_NOT_FOUND",
    )
    .await;

    // After all that, the right PIN still signs (the wrong ones left no bad state behind).
    let sig = c.ok("pkcs11.signData", p(json!({}))).await;
    assert!(token.verifies("rsa-2048", "sha256", &digest, &sig));
    // And a wrong PIN right after a good one is still refused (the cached login is not a bypass).
    c.err(
        "pkcs11.signData",
        p(json!({"pin": "4321"})),
        "PIN_INCORRECT",
    )
    .await;
    c.ok("pkcs11.signData", p(json!({}))).await;
}

#[tokio::test]
async fn an_allowed_origin_or_local_client_never_signs_without_consent() {
    let token = &Token::provision();
    let agent = Agent::start(token, &[]);
    let mut allowed = agent.client(Some(ALLOWED)).await;
    let slot = allowed.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"x");
    allowed
        .err(
            "pkcs11.signData",
            sign_params(slot, "02", "sha256", &digest),
            "CONSENT_UNAVAILABLE",
        )
        .await;
    // Read-only methods need no consent.
    allowed
        .ok("pkcs11.certificates", json!({"slot_id": slot}))
        .await;
    let mut local = agent.client(None).await;
    local
        .err(
            "pkcs11.signData",
            sign_params(slot, "02", "sha256", &digest),
            "CONSENT_UNAVAILABLE",
        )
        .await;
    let (_, log) = agent.stop();
    assert!(!log.contains(PIN), "the PIN appears in the log");
}

#[tokio::test]
async fn per_request_login_mode_signs_too() {
    let token = &Token::provision();
    let agent = Agent::start(token, &["--no-login-cache"]);
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    for _ in 0..3 {
        let digest = sha("sha384", b"y");
        let sig = c
            .ok(
                "pkcs11.signData",
                sign_params(slot, "03", "sha384", &digest),
            )
            .await;
        assert!(token.verifies("ec-p384", "sha384", &digest, &sig));
    }
    c.err("pkcs11.signData", json!({"slot_id": slot, "cert_id": "03", "pin": "0000", "data": b64(&sha("sha384", b"y")), "algorithm_reference": "sha384"}), "PIN_INCORRECT").await;
}

#[tokio::test]
async fn an_idle_token_is_logged_out_and_the_next_signature_logs_in_again() {
    let token = &Token::provision();
    let agent = Agent::start(token, &["--idle-logout", "1"]);
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"idle");
    c.ok(
        "pkcs11.signData",
        sign_params(slot, "02", "sha256", &digest),
    )
    .await;
    assert!(
        agent
            .wait_for_log(
                "logged out after idle timeout",
                std::time::Duration::from_secs(20)
            )
            .await,
        "no idle logout within 20 s"
    );
    // After the idle logout the cached PIN is gone: a wrong PIN is judged by the token...
    let mut wrong = sign_params(slot, "02", "sha256", &digest);
    wrong["pin"] = json!("0000");
    c.err("pkcs11.signData", wrong, "PIN_INCORRECT").await;
    // ...and the right one signs again.
    let sig = c
        .ok(
            "pkcs11.signData",
            sign_params(slot, "02", "sha256", &digest),
        )
        .await;
    assert!(token.verifies("ec-p256", "sha256", &digest, &sig));
    agent.stop();
}
