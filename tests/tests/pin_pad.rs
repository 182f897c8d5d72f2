//! PIN-pad readers end to end: the real agent, a real SoftHSM token behind the fault module,
//! which reports CKF_PROTECTED_AUTHENTICATION_PATH and, on a `C_Login` with a NULL PIN, "types"
//! the PIN it was given in its control file (a simulated keypad) or cancels. Signatures are
//! checked with openssl.

use keyport_e2e::fault::FaultModule;
use keyport_e2e::*;
use serde_json::{json, Value};

/// "Typed on the reader": distinctive, so a leak into a log cannot match by chance.
const KEYPAD_PIN: &str = "kpKeypad4417";

fn no_pin(slot: u64, id: &str, module: &str, digest: &[u8]) -> Value {
    json!({"slot_id": slot, "cert_id": id, "data": b64(digest),
           "algorithm_reference": "sha256", "module": module})
}

fn keypad_logins(module: &FaultModule) -> Vec<String> {
    module
        .calls()
        .into_iter()
        .filter(|l| l.starts_with("C_Login") && l.contains("pinpad"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_pad_reader_signs_without_a_pin_from_the_page() {
    let token = Token::provision_with_pin(KEYPAD_PIN);
    let module = FaultModule::new();
    module.set(&format!("protected_auth_path=1\npinpad_pin={KEYPAD_PIN}"));
    let agent = Agent::start(&token, &["--module", module.path_str()]);
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;

    let info = c
        .ok(
            "pkcs11.token",
            json!({"slot_id": slot, "module": module.path_str()}),
        )
        .await;
    assert_eq!(info["protected_authentication_path"], true, "{info}");
    assert_ne!(info["flags"].as_u64().unwrap() & 0x100, 0);

    for (id, name, text) in [
        ("02", "ec-p256", &b"first"[..]),
        ("01", "rsa-2048", b"second"),
    ] {
        let digest = sha("sha256", text);
        let sig = c
            .ok(
                "pkcs11.signData",
                no_pin(slot, id, module.path_str(), &digest),
            )
            .await;
        assert!(
            token.verifies(name, "sha256", &digest, &sig),
            "openssl verifies the {name} signature made with the keypad's PIN"
        );
    }
    // Each signature asked the reader again: the keypad entry is the yes to one signature.
    assert_eq!(keypad_logins(&module).len(), 2, "{:?}", module.calls());
    assert!(
        !agent.log().contains(KEYPAD_PIN),
        "the PIN is in no log line of the agent or its module host"
    );
    assert!(!module.calls().join("\n").contains(KEYPAD_PIN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_on_the_keypad_and_a_wrong_pin_are_typed_errors() {
    let token = Token::provision_with_pin(KEYPAD_PIN);
    let module = FaultModule::new();
    let agent = Agent::start(&token, &["--module", module.path_str()]);
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"cancelled");

    module.set("protected_auth_path=1\npinpad=cancel");
    let err = c
        .err(
            "pkcs11.signData",
            no_pin(slot, "02", module.path_str(), &digest),
            "PIN_ENTRY_CANCELLED",
        )
        .await;
    assert_eq!(err["code"], 1304);

    module.set("protected_auth_path=1\npinpad_pin=kpNotThePin99");
    let err = c
        .err(
            "pkcs11.signData",
            no_pin(slot, "02", module.path_str(), &digest),
            "PIN_INCORRECT",
        )
        .await;
    assert!(err["data"]["pin_state"].is_string(), "{err}");

    // The person gets it right: the same agent signs.
    module.set(&format!("protected_auth_path=1\npinpad_pin={KEYPAD_PIN}"));
    let sig = c
        .ok(
            "pkcs11.signData",
            no_pin(slot, "02", module.path_str(), &digest),
        )
        .await;
    assert!(token.verifies("ec-p256", "sha256", &digest, &sig));
}

/// A page that sent the right PIN leaves the token logged in (the login cache); a request
/// without a PIN must still go to the keypad, never ride on that login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keypad_request_never_rides_on_an_earlier_login() {
    let token = Token::provision_with_pin(KEYPAD_PIN);
    let module = FaultModule::new();
    module.set("protected_auth_path=1\npinpad=cancel");
    let agent = Agent::start(&token, &["--module", module.path_str()]);
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"logged in");

    let mut with_pin = no_pin(slot, "02", module.path_str(), &digest);
    with_pin["pin"] = json!(KEYPAD_PIN);
    let sig = c.ok("pkcs11.signData", with_pin).await;
    assert!(token.verifies("ec-p256", "sha256", &digest, &sig));

    c.err(
        "pkcs11.signData",
        no_pin(slot, "02", module.path_str(), &digest),
        "PIN_ENTRY_CANCELLED",
    )
    .await;
    // And after the keypad request the page's PIN still signs (it logs in again).
    let mut with_pin = no_pin(slot, "02", module.path_str(), &digest);
    with_pin["pin"] = json!(KEYPAD_PIN);
    let sig = c.ok("pkcs11.signData", with_pin).await;
    assert!(token.verifies("ec-p256", "sha256", &digest, &sig));
}

/// The reader's wait has its own bound: a keypad nobody touches ends in REQUEST_TIMEOUT after
/// `--pin-pad-timeout`, the host is replaced, and the next signature works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keypad_nobody_touches_times_out_and_the_agent_recovers() {
    let token = Token::provision_with_pin(KEYPAD_PIN);
    let module = FaultModule::new();
    module.set(&format!(
        "protected_auth_path=1\npinpad_pin={KEYPAD_PIN}\npinpad_delay_ms=600000"
    ));
    let conf = token.dir.path().join("keyport.toml");
    std::fs::write(&conf, "request_timeout_secs = 2\n").unwrap();
    let agent = Agent::start(
        &token,
        &[
            "--module",
            module.path_str(),
            "--pin-pad-timeout",
            "2",
            "--config",
            conf.to_str().unwrap(),
        ],
    );
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"nobody there");
    let started = std::time::Instant::now();
    c.err(
        "pkcs11.signData",
        no_pin(slot, "02", module.path_str(), &digest),
        "REQUEST_TIMEOUT",
    )
    .await;
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(3),
        "the keypad got request_timeout + pin_pad_timeout, not just request_timeout: {waited:?}"
    );
    module.set(&format!("protected_auth_path=1\npinpad_pin={KEYPAD_PIN}"));
    let sig = c
        .ok(
            "pkcs11.signData",
            no_pin(slot, "02", module.path_str(), &digest),
        )
        .await;
    assert!(token.verifies("ec-p256", "sha256", &digest, &sig));
}

/// Without a PIN, a token without a PIN pad needs the agent's own prompt; with none, the page
/// is told so (and may send the PIN instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pin_no_pin_pad_no_prompt_is_pin_entry_unavailable() {
    let token = Token::provision();
    let agent = Agent::start(&token, &["--pinentry", "/nonexistent/pinentry"]);
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    let info = c.ok("pkcs11.token", json!({"slot_id": slot})).await;
    assert_eq!(info["protected_authentication_path"], false);
    let digest = sha("sha256", b"no way to ask");
    let mut params = json!({"slot_id": slot, "cert_id": "02", "data": b64(&digest),
                            "algorithm_reference": "sha256"});
    let err = c
        .err("pkcs11.signData", params.clone(), "PIN_ENTRY_UNAVAILABLE")
        .await;
    assert_eq!(err["code"], 1305);
    params["pin"] = json!(PIN);
    let sig = c.ok("pkcs11.signData", params).await;
    assert!(token.verifies("ec-p256", "sha256", &digest, &sig));
}
