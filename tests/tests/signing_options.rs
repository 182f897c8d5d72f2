//! Signing beyond PKCS #1 v1.5 and raw ECDSA, end to end on SoftHSM with openssl as the
//! verifier: RSA-PSS, DER-encoded ECDSA, and batches signed after one consent prompt (asked
//! through the scripted notification server) and one login.

use keyport_e2e::desktop::{FakeNotifications, PrivateBus};
use keyport_e2e::fault::FaultModule;
use keyport_e2e::*;
use serde_json::{json, Value};

const NOTIFY: &str = env!("CARGO_BIN_EXE_fake-notifications");
const HASHES: [&str; 4] = ["sha1", "sha256", "sha384", "sha512"];
/// (cert id, provisioning name) of the EC keys.
const EC_KEYS: [(&str, &str); 3] = [("02", "ec-p256"), ("03", "ec-p384"), ("04", "ec-p521")];

fn params(slot: u64, id: &str, alg: &str, digest: &[u8], extra: Value) -> Value {
    let mut p = json!({"slot_id": slot, "cert_id": id, "pin": PIN, "data": b64(digest),
                       "algorithm_reference": alg});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_pss_and_der_ecdsa_verify_with_openssl_for_every_key_and_hash() {
    let token = Token::provision();
    let agent = Agent::start(&token, &[]);
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    let rsa = token.cert_der("rsa-2048");
    for alg in HASHES {
        let digest = sha(alg, format!("pss {alg}").as_bytes());
        let sig = c
            .ok(
                "pkcs11.signData",
                params(slot, "01", alg, &digest, json!({"signature_scheme": "pss"})),
            )
            .await;
        let sig = unb64(sig.as_str().unwrap());
        assert!(
            openssl_verify_as(&rsa, alg, &digest, &sig, Encoding::Pss),
            "openssl verifies RSA-PSS with {alg}"
        );
        assert!(
            !openssl_verify_as(&rsa, alg, &digest, &sig, Encoding::Plain),
            "and it is not PKCS #1 v1.5"
        );
        // The agent's own verify knows the scheme too.
        let mut v = params(slot, "01", alg, &digest, json!({"signature_scheme": "pss"}));
        v["signature"] = json!(b64(&sig));
        assert_eq!(c.ok("pkcs11.verifySignedData", v.clone()).await, true);
        v["signature_scheme"] = json!("pkcs1");
        assert_eq!(c.ok("pkcs11.verifySignedData", v).await, false);

        for (id, name) in EC_KEYS {
            let der = c
                .ok(
                    "pkcs11.signData",
                    params(slot, id, alg, &digest, json!({"signature_format": "der"})),
                )
                .await;
            let der = unb64(der.as_str().unwrap());
            assert_eq!(der[0], 0x30, "a DER SEQUENCE");
            assert!(
                openssl_verify_as(&token.cert_der(name), alg, &digest, &der, Encoding::Der),
                "openssl verifies the DER {name} signature as it is, with {alg}"
            );
            let mut v = params(slot, id, alg, &digest, json!({"signature_format": "der"}));
            v["signature"] = json!(b64(&der));
            assert_eq!(c.ok("pkcs11.verifySignedData", v).await, true);
            // Raw stays the default.
            let raw = c
                .ok("pkcs11.signData", params(slot, id, alg, &digest, json!({})))
                .await;
            assert!(token.verifies(name, alg, &digest, &raw));
        }
    }
    // An RSA signature is the same whatever the format.
    let digest = sha("sha256", b"rsa der");
    let sig = c
        .ok(
            "pkcs11.signData",
            params(
                slot,
                "01",
                "sha256",
                &digest,
                json!({"signature_format": "der"}),
            ),
        )
        .await;
    assert!(token.verifies("rsa-2048", "sha256", &digest, &sig));
    // PSS needs an RSA key.
    let e = c
        .err(
            "pkcs11.signData",
            params(
                slot,
                "02",
                "sha256",
                &digest,
                json!({"signature_scheme": "pss"}),
            ),
            "UNSUPPORTED_ALGORITHM",
        )
        .await;
    assert!(e["message"].as_str().unwrap().contains("RSA-PSS"), "{e}");
    c.err(
        "pkcs11.signData",
        params(
            slot,
            "01",
            "sha256",
            &digest,
            json!({"signature_scheme": "pkcs2"}),
        ),
        "INVALID_PARAMS",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_the_pss_mechanism_refuses_before_any_login() {
    let token = Token::provision();
    let module = FaultModule::new();
    module.set("no_pss=1");
    let agent = Agent::start(&token, &["--module", module.path_str()]);
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"no pss");
    let mut p = params(
        slot,
        "01",
        "sha256",
        &digest,
        json!({"signature_scheme": "pss"}),
    );
    p["module"] = json!(module.path_str());
    let e = c.err("pkcs11.signData", p, "UNSUPPORTED_ALGORITHM").await;
    assert!(
        e["message"].as_str().unwrap().contains("CKM_RSA_PKCS_PSS"),
        "{e}"
    );
    assert!(
        !module.calls().iter().any(|l| l.starts_with("C_Login")),
        "no PIN try spent: {:?}",
        module.calls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_100_after_one_prompt_and_one_login() {
    let token = Token::provision();
    let bus = PrivateBus::start();
    let module = FaultModule::new();
    module.set("");
    let notify = FakeNotifications::start(NOTIFY, &bus, token.dir.path(), "allow", None);
    let agent = Agent::start_raw(
        &token,
        &[
            &BASE_ARGS[..],
            &["--no-tray", "--module", module.path_str()],
        ]
        .concat(),
        &[("DBUS_SESSION_BUS_ADDRESS", bus.address.as_str())],
    );
    let mut c = agent.client(Some(ALLOWED)).await;
    let slot = c.slot_of("keyport-demo").await;
    let digests: Vec<Vec<u8>> = (0..100)
        .map(|i| sha("sha256", format!("document {i}").as_bytes()))
        .collect();
    let batch = |id: &str, extra: Value| {
        let mut p = json!({"slot_id": slot, "cert_id": id, "pin": PIN, "algorithm_reference": "sha256",
                           "module": module.path_str(),
                           "data": digests.iter().map(|d| b64(d)).collect::<Vec<_>>()});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    let sigs = c.ok("pkcs11.signDataBatch", batch("02", json!({}))).await;
    let sigs = sigs.as_array().unwrap();
    assert_eq!(sigs.len(), 100);
    for (d, s) in digests.iter().zip(sigs) {
        assert!(
            token.verifies("ec-p256", "sha256", d, s),
            "in order, each verifies"
        );
    }
    // Exactly one prompt, which says how many and shows the set's fingerprint.
    let shown = notify.events("notify");
    assert_eq!(shown.len(), 1, "{shown:?}");
    let body = shown[0]["body"].as_str().unwrap();
    assert!(body.contains("asks for 100 signatures"), "{body}");
    assert!(body.contains("Fingerprint of the set:"), "{body}");
    let logins = || {
        module
            .calls()
            .iter()
            .filter(|l| l.starts_with("C_Login"))
            .count()
    };
    assert_eq!(logins(), 1, "one login for the batch");
    let signs = |m: &FaultModule| {
        m.calls()
            .iter()
            .filter(|l| l.starts_with("C_Sign") && l.ends_with("rv=0x0"))
            .count()
    };
    let signed = signs(&module);

    // One bad digest: INVALID_PARAMS naming it, no prompt, nothing signed.
    let mut bad = batch("02", json!({}));
    bad["data"][37] = json!(b64(&[0u8; 20]));
    let e = c.err("pkcs11.signDataBatch", bad, "INVALID_PARAMS").await;
    assert!(e["message"].as_str().unwrap().contains("`data[37]`"), "{e}");
    let mut bad = batch("02", json!({}));
    bad["data"][5] = json!("not base64!");
    let e = c.err("pkcs11.signDataBatch", bad, "INVALID_PARAMS").await;
    assert!(e["message"].as_str().unwrap().contains("`data[5]`"), "{e}");
    assert_eq!(signs(&module), signed, "nothing signed");
    assert_eq!(
        notify.events("notify").len(),
        1,
        "no prompt for a bad batch"
    );
    for n in [0usize, 257] {
        let mut p = batch("02", json!({}));
        p["data"] = json!(vec![b64(&digests[0]); n]);
        let e = c.err("pkcs11.signDataBatch", p, "INVALID_PARAMS").await;
        assert!(e["message"].as_str().unwrap().contains("1 to 256"), "{e}");
    }

    // The options apply to every signature of a batch.
    let sigs = c
        .ok(
            "pkcs11.signDataBatch",
            batch("01", json!({"signature_scheme": "pss"})),
        )
        .await;
    let rsa = token.cert_der("rsa-2048");
    for (d, s) in digests.iter().zip(sigs.as_array().unwrap()).step_by(9) {
        assert!(openssl_verify_as(
            &rsa,
            "sha256",
            d,
            &unb64(s.as_str().unwrap()),
            Encoding::Pss
        ));
    }
    let sigs = c
        .ok(
            "pkcs11.signDataBatch",
            batch("03", json!({"signature_format": "der"})),
        )
        .await;
    let p384 = token.cert_der("ec-p384");
    for (d, s) in digests.iter().zip(sigs.as_array().unwrap()).step_by(9) {
        assert!(openssl_verify_as(
            &p384,
            "sha256",
            d,
            &unb64(s.as_str().unwrap()),
            Encoding::Der
        ));
    }
    assert_eq!(notify.events("notify").len(), 3, "one prompt per batch");
    assert!(!agent.log().contains(PIN));
}
