//! Safe by default: handshake refusals, the module allowlist, bounded and malformed input.

use keyport_e2e::*;
use serde_json::json;
use std::process::Command;

#[tokio::test]
async fn handshakes_from_unknown_origins_or_hosts_are_refused_with_403() {
    let token = &Token::provision();
    let agent = Agent::start(token, &[]);
    for origin in [
        "https://evil.example",
        "null",
        "http://allowed.example",
        "https://allowed.example.evil.example",
    ] {
        let err = Client::connect(&agent.url, Some(origin))
            .await
            .err()
            .unwrap_or_else(|| panic!("{origin} connected"));
        assert_eq!(handshake_status(&err), Some(403), "{origin}: {err}");
    }
    // DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example:PORT.
    let host = format!("evil.example:{}", agent.port);
    let err = Client::connect_with(&agent.url, Some(TRUSTED), Some(&host))
        .await
        .expect_err("connected");
    assert_eq!(handshake_status(&err), Some(403));
    // The allowed ones connect, by every loopback name.
    for url in [agent.url.clone(), format!("ws://localhost:{}", agent.port)] {
        let mut c = Client::connect(&url, Some(ALLOWED))
            .await
            .expect("allowed origin");
        c.ok("pkcs11.info", json!({})).await;
    }
}

#[tokio::test]
async fn clients_without_origin_follow_the_no_origin_policy() {
    let token = &Token::provision();
    let deny = Agent::start(token, &["--no-origin", "deny"]);
    let err = Client::connect(&deny.url, None)
        .await
        .expect_err("connected without Origin");
    assert_eq!(handshake_status(&err), Some(403));

    let trust = Agent::start(token, &["--no-origin", "trust"]);
    let mut c = trust.client(None).await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"local tool");
    let sig = c
        .ok("pkcs11.signData", json!({"slot_id": slot, "cert_id": "02", "pin": PIN, "data": b64(&digest), "algorithm_reference": "sha256"}))
        .await;
    assert!(token.verifies("ec-p256", "sha256", &digest, &sig));
}

/// A shared library whose constructor writes a marker file when anything loads it.
fn canary_library(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let marker = dir.join("loaded.marker");
    let src = dir.join("canary.c");
    std::fs::write(
        &src,
        format!(
            "#include <stdio.h>\n__attribute__((constructor)) static void hit(void) {{ FILE *f = fopen(\"{}\", \"w\"); if (f) fclose(f); }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let lib = dir.join("libcanary.so");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .expect("cc");
    assert!(status.success());
    (lib, marker)
}

#[tokio::test]
async fn a_library_outside_the_allowlist_is_never_loaded() {
    let token = &Token::provision();
    let dir = tempfile::tempdir().unwrap();
    let (lib, marker) = canary_library(dir.path());
    let lib = lib.to_str().unwrap();

    let agent = Agent::start(token, &[]);
    let mut c = agent.trusted().await;
    for method in [
        "pkcs11.info",
        "pkcs11.slots",
        "pkcs11.slotsWithTokenPresent",
    ] {
        c.err(method, json!({"module": lib}), "MODULE_NOT_ALLOWED")
            .await;
    }
    c.err(
        "pkcs11.token",
        json!({"slot_id": 1, "module": lib}),
        "MODULE_NOT_ALLOWED",
    )
    .await;
    c.err(
        "pkcs11.signData",
        json!({"slot_id": 1, "cert_id": "01", "pin": PIN, "data": b64(&[0; 32]), "algorithm_reference": "sha256", "module": lib}),
        "MODULE_NOT_ALLOWED",
    )
    .await;
    assert!(
        !marker.exists(),
        "the agent loaded a library that is not on its allowlist"
    );

    // Control: the same library, allowlisted, is loaded (so the marker can appear) and refused
    // as not being a PKCS #11 module.
    let agent = Agent::start(token, &["--module", lib]);
    let mut c = agent.trusted().await;
    c.err("pkcs11.info", json!({"module": lib}), "MODULE_LOAD_FAILED")
        .await;
    assert!(
        marker.exists(),
        "control failed: the allowlisted canary was not loaded"
    );
}

#[tokio::test]
async fn oversize_and_malformed_messages_get_errors_and_the_agent_keeps_serving() {
    let token = &Token::provision();
    let mut agent = Agent::start(token, &[]);
    let mut c = agent.trusted().await;

    // 600 KiB: over the 256 KiB default, under four times it.
    let big = "A".repeat(600 * 1024);
    c.send_text(
        json!({"jsonrpc": "2.0", "id": 1, "method": "pkcs11.info", "params": {"module": big}})
            .to_string(),
    )
    .await;
    let resp = c.recv().await.expect("an error, not a dropped connection");
    assert_eq!(resp["error"]["code"], -32007, "{resp}");
    // The same connection still works.
    c.ok("pkcs11.info", json!({})).await;
    // Over four times the limit the agent does not read it: that connection is closed.
    let mut huge = agent.trusted().await;
    huge.try_send_text("A".repeat(2 * 1024 * 1024)).await;
    assert_eq!(
        huge.recv_within(std::time::Duration::from_secs(20)).await,
        Ok(None),
        "a 2 MiB message did not close its connection"
    );

    for (text, code) in [
        ("{not json", -32700),
        ("\"just a string\"", -32600),
        ("{\"jsonrpc\": \"2.0\", \"method\": 7, \"id\": 1}", -32600),
        (
            "{\"jsonrpc\": \"1.0\", \"method\": \"pkcs11.info\", \"id\": 1}",
            -32600,
        ),
        ("[]", -32600),
    ] {
        c.send_text(text.to_string()).await;
        let resp = c.recv().await.expect("answer");
        assert_eq!(resp["error"]["code"], code, "{text}: {resp}");
    }
    // A batch is answered as a batch.
    c.send_text(
        json!([
            {"jsonrpc": "2.0", "id": 10, "method": "pkcs11.info"},
            {"jsonrpc": "2.0", "id": 11, "method": "pkcs11.token", "params": {"slot_id": 987654321}}
        ])
        .to_string(),
    )
    .await;
    let resp = c.recv().await.unwrap();
    let items = resp.as_array().expect("batch answer");
    assert_eq!(items.len(), 2);
    let by_id = |id| items.iter().find(|r| r["id"] == id).unwrap();
    assert!(by_id(10).get("result").is_some());
    assert_eq!(by_id(11)["error"]["data"]["reason"], "SLOT_NOT_FOUND");

    // Other clients were never affected, and the agent is alive.
    let mut other = agent.trusted().await;
    other.ok("pkcs11.slots", json!({})).await;
    assert!(agent.is_running());
}

#[tokio::test]
async fn shutdown_is_clean_and_logs_no_secret() {
    // PINs that cannot appear in a log line by chance (timestamps, slot ids).
    let (good, bad) = ("Zq-good-PIN-4418", "Zq-bad-PIN-9071");
    let token = Token::provision_with_pin(good);
    let agent = Agent::start(&token, &[]);
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"z");
    c.err("pkcs11.signData", json!({"slot_id": slot, "cert_id": "01", "pin": bad, "data": b64(&digest), "algorithm_reference": "sha256"}), "PIN_INCORRECT").await;
    // The last signature leaves the token logged in: shutdown must log it out.
    c.ok("pkcs11.signData", json!({"slot_id": slot, "cert_id": "01", "pin": good, "data": b64(&digest), "algorithm_reference": "sha256"})).await;
    let (status, log) = agent.stop();
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(log.contains("logged out"), "no logout at shutdown:\n{log}");
    assert!(log.contains("finalised"), "module not finalised:\n{log}");
    assert!(
        log.contains("token refused the PIN"),
        "the wrong PIN was not logged as an event:\n{log}"
    );
    for secret in [good, bad] {
        assert!(!log.contains(secret), "PIN {secret} in the log:\n{log}");
    }
}

/// An internationalised origin in the configuration matches what browsers send: its punycode
/// serialisation (before, `--allow-origin https://bücher.example` refused the very page it named).
#[tokio::test]
async fn an_internationalised_origin_is_matched_as_browsers_send_it() {
    let token = Token::provision();
    let agent = Agent::start(
        &token,
        &[
            "--trust-origin",
            "https://bücher.example",
            "--allow-origin",
            "https://ÉCOLE.example:8443/",
        ],
    );
    let mut c = agent.client(Some("https://xn--bcher-kva.example")).await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"idn");
    let sig = c
        .ok("pkcs11.signData", json!({"slot_id": slot, "cert_id": "02", "pin": PIN, "data": b64(&digest), "algorithm_reference": "sha256"}))
        .await;
    assert!(token.verifies("ec-p256", "sha256", &digest, &sig));
    agent
        .client(Some("https://xn--cole-9oa.example:8443"))
        .await
        .ok("pkcs11.info", json!({}))
        .await;
    // The Unicode spelling is not what a browser sends: refused like any other.
    let err = Client::connect(&agent.url, Some("https://bücher.example"))
        .await
        .expect_err("a raw Unicode Origin header connected");
    assert_eq!(handshake_status(&err), Some(403));
}
