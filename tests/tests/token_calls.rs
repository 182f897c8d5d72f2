//! What a request costs the token, counted by the library itself: the fault module in front of
//! SoftHSM logs every PKCS #11 call it is given (`log_all=1`). On a card each call is one or more
//! APDUs, milliseconds each; reading certificates off a card is the slow step people notice.
//! Every signature is checked by openssl.

use keyport_e2e::counts::call_names;
use keyport_e2e::fault::FaultModule;
use keyport_e2e::*;
use serde_json::{json, Value};

const KEYS: [(&str, &str); 4] = [
    ("01", "rsa-2048"),
    ("02", "ec-p256"),
    ("03", "ec-p384"),
    ("04", "ec-p521"),
];

/// An agent whose only library is a logging fault module serving `token`, with module hosts
/// (the default) or in process.
fn agent_on(token: &Token, fm: &FaultModule, in_process: bool) -> (Agent, tempfile::TempDir) {
    fm.set("log_all=1");
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &format!("module_isolation = {}\n", !in_process));
    let agent = Agent::start_raw(
        token,
        &[
            "--listen",
            "127.0.0.1:0",
            "--module",
            fm.path_str(),
            "--trust-origin",
            TRUSTED,
            "--no-tray",
            "--config",
            &config,
        ],
        &[],
    );
    (agent, dir)
}

/// The PKCS #11 calls `request` makes (the fault module's log before and after it).
async fn calls_of<F: std::future::Future<Output = Value>>(
    fm: &FaultModule,
    request: F,
) -> (Vec<String>, Value) {
    let before = fm.calls().len();
    let answer = request.await;
    (call_names(&fm.calls()[before..]), answer)
}

fn sign_params(slot: u64, id: &str, digest: &[u8]) -> Value {
    json!({"slot_id": slot, "cert_id": id, "pin": PIN, "data": b64(digest),
           "algorithm_reference": "sha256"})
}

/// A signature on a logged-in token with a known key is C_SignInit and one C_Sign: its length
/// comes from the key's certificate (no length query), and the certificate check costs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_signature_is_two_token_calls() {
    let token = Token::provision();
    for in_process in [false, true] {
        let fm = FaultModule::for_store(&token.conf());
        let (agent, _dir) = agent_on(&token, &fm, in_process);
        let mut c = agent.trusted().await;
        let slot = c.slot_of("keyport-demo").await;
        for (id, name) in KEYS {
            let digest = sha("sha256", format!("warm {name}").as_bytes());
            // The first logs in and finds the key.
            c.ok("pkcs11.signData", sign_params(slot, id, &digest))
                .await;
            let (calls, sig) =
                calls_of(&fm, c.ok("pkcs11.signData", sign_params(slot, id, &digest))).await;
            assert_eq!(
                calls,
                ["C_SignInit", "C_Sign"],
                "{name}, in process: {in_process}"
            );
            assert!(token.verifies(name, "sha256", &digest, &sig), "{name}");
        }
    }
}

/// A library that answers CKR_BUFFER_TOO_SMALL to the buffer sized from the key (without saying
/// the length it needs) still signs: the length is asked for, and the signature made into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_longer_than_expected_still_signs() {
    let token = Token::provision();
    let fm = FaultModule::for_store(&token.conf());
    let (agent, _dir) = agent_on(&token, &fm, false);
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    fm.set("log_all=1\nsign_too_small=1");
    for (id, name) in KEYS {
        let digest = sha("sha256", format!("too small {name}").as_bytes());
        c.ok("pkcs11.signData", sign_params(slot, id, &digest))
            .await;
        let (calls, sig) =
            calls_of(&fm, c.ok("pkcs11.signData", sign_params(slot, id, &digest))).await;
        assert_eq!(
            calls,
            ["C_SignInit", "C_Sign", "C_Sign", "C_Sign"],
            "{name}"
        );
        assert!(token.verifies(name, "sha256", &digest, &sig), "{name}");
    }
}

/// The certificates are read once per token: listing them again costs one C_GetSessionInfo
/// (the token is still the one read), and a card pulled and put back is read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_read_once_per_token() {
    let token = Token::provision();
    let fm = FaultModule::for_store(&token.conf());
    let (agent, _dir) = agent_on(&token, &fm, false);
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    let params = json!({"slot_id": slot});
    let (first_calls, first) = calls_of(&fm, c.ok("pkcs11.certificates", params.clone())).await;
    assert!(first_calls.contains(&"C_FindObjectsInit".to_string()));
    assert_eq!(first.as_array().unwrap().len(), 5, "{first}");
    let (calls, again) = calls_of(&fm, c.ok("pkcs11.certificates", params.clone())).await;
    assert_eq!(calls, ["C_GetSessionInfo"]);
    assert_eq!(again, first);
    // A signature's certificate check costs nothing either (the list read it).
    let digest = sha("sha256", b"after the list");
    c.ok("pkcs11.signData", sign_params(slot, "02", &digest))
        .await;
    let (calls, _) = calls_of(
        &fm,
        c.ok("pkcs11.signData", sign_params(slot, "02", &digest)),
    )
    .await;
    assert_eq!(calls, ["C_SignInit", "C_Sign"]);

    // Pulled and put back: every session closed, so the list is read again.
    fm.set("log_all=1\ntoken_epoch=1");
    let (calls, back) = calls_of(&fm, c.ok("pkcs11.certificates", params.clone())).await;
    assert!(
        calls.contains(&"C_FindObjectsInit".to_string()),
        "{calls:?}"
    );
    assert_eq!(back, first);
    // And signing after it logs in again, with the same key and certificate.
    let (calls, sig) = calls_of(
        &fm,
        c.ok("pkcs11.signData", sign_params(slot, "02", &digest)),
    )
    .await;
    assert!(calls.contains(&"C_Login".to_string()), "{calls:?}");
    assert!(token.verifies("ec-p256", "sha256", &digest, &sig));
}

/// slotsWithTokenPresent: one C_GetSlotList (not a count first), and the slot information of
/// each slot listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_with_a_token_are_one_list_and_their_information() {
    let token = Token::provision();
    let fm = FaultModule::for_store(&token.conf());
    let (agent, _dir) = agent_on(&token, &fm, false);
    let mut c = agent.trusted().await;
    c.ok("pkcs11.info", json!({})).await;
    let (calls, slots) = calls_of(&fm, c.ok("pkcs11.slotsWithTokenPresent", json!({}))).await;
    let n = slots.as_array().unwrap().len();
    assert!(n >= 2, "{slots}");
    let mut expected = vec!["C_GetSlotInfo".to_string(); n + 1];
    expected[0] = "C_GetSlotList".to_string();
    assert_eq!(calls, expected);
}
