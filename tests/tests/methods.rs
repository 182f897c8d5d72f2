//! Every read-only method against the real agent and a SoftHSM token.

use keyport_e2e::*;
use keyport_protocol as p;
use serde_json::json;

/// Every method through its protocol type: params built and answers read with the types of
/// `keyport-protocol`, so a field renamed on one side only fails here.
#[tokio::test]
async fn every_method_answers_with_its_protocol_types() {
    let token = &Token::provision();
    let agent = Agent::start(token, &[]);
    let mut c = agent.trusted().await;
    let none = p::ModuleParams::default();
    let info = c.call_typed::<p::Info>(&none).await.unwrap();
    assert_eq!(info.manufacturer_id, "SoftHSM");
    let all = c.call_typed::<p::Slots>(&none).await.unwrap();
    let present = c
        .call_typed::<p::SlotsWithTokenPresent>(&none)
        .await
        .unwrap();
    assert!(present.len() <= all.len() && !present.is_empty());
    let slot = c.slot_of("keyport-demo").await;
    let t = c
        .call_typed::<p::Token>(&p::TokenParams {
            slot_id: slot,
            module: None,
        })
        .await
        .unwrap();
    assert_eq!(
        (t.label.as_str(), t.pin_state),
        ("keyport-demo", p::PinState::Ok)
    );
    let certs = c
        .call_typed::<p::Certificates>(&p::CertificatesParams {
            filter: None,
            slot_id: slot,
            parse_certs: Some(true),
            module: None,
        })
        .await
        .unwrap();
    let p256 = certs
        .iter()
        .find(|e| {
            e.parsed
                .as_ref()
                .is_some_and(|p| p.curve.as_deref() == Some("P-256"))
        })
        .expect("the P-256 certificate");
    let digest = sha("sha256", b"typed");
    let sig = c
        .call_typed::<p::SignData>(&p::SignDataParams {
            signature_scheme: None,
            signature_format: None,
            slot_id: slot,
            cert_id: p256.id.clone(),
            pin: Some(p::Pin::new(PIN)),
            data: b64(&digest),
            algorithm_reference: p::AlgorithmReference::Sha256,
            module: None,
        })
        .await
        .unwrap();
    assert!(openssl_verify(
        &unb64(&p256.base64),
        "sha256",
        &digest,
        &unb64(&sig)
    ));
    let valid = c
        .call_typed::<p::VerifySignedData>(&p::VerifySignedDataParams {
            signature_scheme: None,
            signature_format: None,
            slot_id: slot,
            cert_id: p256.id.clone(),
            pin: None,
            data: b64(&digest),
            algorithm_reference: p::AlgorithmReference::Sha256,
            signature: sig,
            module: None,
        })
        .await
        .unwrap();
    assert!(valid);
}

#[tokio::test]
async fn info_slots_and_token() {
    let token = &Token::provision();
    let agent = Agent::start(token, &[]);
    let mut c = agent.trusted().await;

    let info = c.ok("pkcs11.info", json!({})).await;
    assert_eq!(info["manufacturer_id"], "SoftHSM");
    assert!(
        info["cryptoki_version"].as_str().unwrap().starts_with("2."),
        "{info}"
    );
    assert_eq!(info["library_description"], "Implementation of PKCS11");
    assert!(info["library_version"].as_str().unwrap().contains('.'));
    // The same with the module named explicitly.
    assert_eq!(c.ok("pkcs11.info", json!({"module": MODULE})).await, info);

    let all = c.ok("pkcs11.slots", json!({})).await;
    let present = c.ok("pkcs11.slotsWithTokenPresent", json!({})).await;
    // SoftHSM: the two tokens plus one free slot, all with a token present.
    assert_eq!(all.as_array().unwrap().len(), 3, "{all}");
    assert_eq!(present.as_array().unwrap().len(), 3, "{present}");
    for s in all.as_array().unwrap() {
        assert_eq!(
            s["flags"].as_u64().unwrap() & 1,
            1,
            "CKF_TOKEN_PRESENT: {s}"
        );
        for k in [
            "slot_id",
            "description",
            "hardware_version",
            "firmware_version",
        ] {
            assert!(!s[k].is_null(), "{k} missing in {s}");
        }
    }

    let slot = c.slot_of("keyport-demo").await;
    let t = c.ok("pkcs11.token", json!({"slot_id": slot})).await;
    assert_eq!(t["slot_id"], slot);
    assert_eq!(t["label"], "keyport-demo");
    assert_eq!(t["manufacturer_id"], "SoftHSM project");
    assert_eq!(t["model"], "SoftHSM v2");
    assert_eq!(t["pin_state"], "ok");
    assert_eq!(t["min_pin_length"], 4);
    assert_eq!(t["max_pin_length"], 255);
    let flags = t["flags"].as_u64().unwrap();
    assert_ne!(flags & 0x4, 0, "CKF_LOGIN_REQUIRED");
    assert_ne!(flags & 0x400, 0, "CKF_TOKEN_INITIALIZED");
    assert!(!t["serial_number"].as_str().unwrap().is_empty());
    for k in [
        "max_session_count",
        "session_count",
        "max_rw_session_count",
        "rw_session_count",
        "total_public_memory",
        "free_public_memory",
        "total_private_memory",
        "free_private_memory",
        "hardware_version",
        "firmware_version",
    ] {
        assert!(t.get(k).is_some(), "{k} missing in {t}");
    }
}

#[tokio::test]
async fn certificates_are_the_exact_der_with_parsed_fields() {
    let token = &Token::provision();
    let agent = Agent::start(token, &[]);
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;

    let plain = c.ok("pkcs11.certificates", json!({"slot_id": slot})).await;
    let mut ids: Vec<&str> = plain
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["01", "02", "03", "04", "09"]);
    assert!(plain
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e.get("parsed").is_none()));

    let parsed = c
        .ok(
            "pkcs11.certificates",
            json!({"slot_id": slot, "parse_certs": true}),
        )
        .await;
    for (id, file, alg, size, curve) in [
        ("01", "rsa-2048", "RSA", 2048, None),
        ("02", "ec-p256", "EC", 256, Some("P-256")),
        ("03", "ec-p384", "EC", 384, Some("P-384")),
    ] {
        let e = parsed
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .unwrap();
        let der = token.cert_der(file);
        assert_eq!(
            unb64(e["base64"].as_str().unwrap()),
            der,
            "certificate {id} is not the DER on the token"
        );
        let p = &e["parsed"];
        assert_eq!(p["public_key_algorithm"], alg);
        assert_eq!(p["public_key_size"], size);
        assert_eq!(p["curve"], json!(curve));
        assert!(
            p["subject"].as_str().unwrap().contains("Keyport Demo"),
            "{p}"
        );
        assert_eq!(p["subject"], p["issuer"], "self-signed");
        assert!(p["common_name"]
            .as_str()
            .unwrap()
            .starts_with("Keyport Demo"));
        assert_eq!(
            p["serial_number"],
            serial_hex(1000 + id.parse::<u32>().unwrap())
        );
        assert!(
            p["key_usage"]
                .as_array()
                .unwrap()
                .contains(&json!("digitalSignature")),
            "{p}"
        );
        assert_eq!(
            p["sha256_fingerprint"],
            hex::encode_upper(sha("sha256", &der))
        );
        assert!(p["not_before"].as_str().unwrap() < p["not_after"].as_str().unwrap());
        // Cross-check subject and dates with openssl.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.der"), &der).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["x509", "-inform", "DER", "-noout", "-serial", "-in"])
            .arg(dir.path().join("c.der"))
            .output()
            .unwrap();
        let serial = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            serial.trim(),
            format!("serial={}", p["serial_number"].as_str().unwrap())
        );
    }

    // The empty token has no certificates.
    let empty = c.slot_of("keyport-empty").await;
    assert_eq!(
        c.ok("pkcs11.certificates", json!({"slot_id": empty})).await,
        json!([])
    );
}

/// A serial number as the minimal DER integer bytes in hex: 1001 = "03E9".
fn serial_hex(n: u32) -> String {
    let hex = format!("{n:X}");
    if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex
    }
}

#[tokio::test]
async fn read_errors() {
    let token = &Token::provision();
    let agent = Agent::start(token, &[]);
    let mut c = agent.trusted().await;
    c.err(
        "pkcs11.token",
        json!({"slot_id": 987654321}),
        "SLOT_NOT_FOUND",
    )
    .await;
    c.err(
        "pkcs11.certificates",
        json!({"slot_id": 987654321}),
        "SLOT_NOT_FOUND",
    )
    .await;
    c.err("pkcs11.token", json!({}), "INVALID_PARAMS").await;
    c.err("pkcs11.token", json!({"slotId": 1}), "INVALID_PARAMS")
        .await;
    c.err("pkcs11.token", json!({"slot_id": -1}), "INVALID_PARAMS")
        .await;
    c.err(
        "pkcs11.info",
        json!({"module": "/tmp/not-allowed.so"}),
        "MODULE_NOT_ALLOWED",
    )
    .await;
    c.err(
        "pkcs11.slots",
        json!({"module": "relative.so"}),
        "MODULE_NOT_ALLOWED",
    )
    .await;
    let e = c.call("pkcs11.nope", json!({})).await.unwrap_err();
    assert_eq!(e["code"], -32601);
    // Positional params are refused with a hint.
    let e = c.err("pkcs11.token", json!([1]), "INVALID_PARAMS").await;
    assert!(e["message"].as_str().unwrap().contains("named fields"));
}

#[tokio::test]
async fn an_allowed_module_that_cannot_load_is_module_load_failed() {
    let token = &Token::provision();
    let agent = Agent::start(token, &["--module", "/nonexistent/libpkcs11.so"]);
    let mut c = agent.trusted().await;
    // The first --module is the default; the missing one is second and named explicitly.
    c.ok("pkcs11.info", json!({})).await;
    c.err(
        "pkcs11.info",
        json!({"module": "/nonexistent/libpkcs11.so"}),
        "MODULE_LOAD_FAILED",
    )
    .await;
    // The agent keeps serving.
    c.ok("pkcs11.slots", json!({})).await;
}

/// SoftHSM always offers one blank slot: a token that is there but not initialised. It is named
/// for what it is (`token_initialized: false`), holds no certificates (an empty list, not
/// TOKEN_NOT_PRESENT), cannot sign (CERTIFICATE_NOT_FOUND saying why), and `keyport doctor`
/// calls it an uninitialised token rather than `"" in slot N`.
#[tokio::test]
async fn a_blank_token_is_reported_as_uninitialised() {
    let token = &Token::provision();
    let agent = Agent::start(token, &[]);
    let mut c = agent.trusted().await;
    let demo = c.slot_of("keyport-demo").await;
    let t = c.ok("pkcs11.token", json!({"slot_id": demo})).await;
    assert_eq!(t["token_initialized"], true, "{t}");

    let present = c.ok("pkcs11.slotsWithTokenPresent", json!({})).await;
    let mut blank = Vec::new();
    for s in present.as_array().unwrap() {
        let slot = s["slot_id"].as_u64().unwrap();
        let t = c.ok("pkcs11.token", json!({"slot_id": slot})).await;
        if t["token_initialized"] == false {
            blank.push(slot);
        }
    }
    assert_eq!(blank.len(), 1, "SoftHSM's free slot: {present}");
    let blank = blank[0];

    let certs = c.ok("pkcs11.certificates", json!({"slot_id": blank})).await;
    assert_eq!(certs, json!([]), "a blank token holds no certificates");
    let demo_certs = c.ok("pkcs11.certificates", json!({"slot_id": demo})).await;
    let cert_id = demo_certs[0]["id"].as_str().unwrap().to_string();
    let e = c
        .err(
            "pkcs11.signData",
            json!({"slot_id": blank, "cert_id": cert_id, "pin": PIN,
                   "data": b64(&sha("sha256", b"x")), "algorithm_reference": "sha256"}),
            "CERTIFICATE_NOT_FOUND",
        )
        .await;
    assert!(
        e["message"].as_str().unwrap().contains("not initialised"),
        "{e}"
    );
    agent.stop();

    let (code, out, err) = run(token, &["doctor", "--module", MODULE, "--no-tray"]);
    let slot_line = format!("an uninitialised token in slot {blank}");
    assert!(out.contains(&slot_line), "{code} {out} {err}");
    assert!(!out.contains("\"\" in slot"), "{out}");
    assert!(out.contains("\"keyport-demo\" in slot"), "{out}");
}
