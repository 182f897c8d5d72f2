//! Consent end to end: the real agent asks through a real D-Bus notification server
//! (`fake-notifications`, scripted per test) on a private session bus; signatures from allowed
//! requests are checked by openssl.

use keyport_e2e::desktop::{FakeNotifications, PrivateBus};
use keyport_e2e::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const FAKE: &str = env!("CARGO_BIN_EXE_fake-notifications");
/// Another allowed site.
const OTHER: &str = "https://other.example";
/// A PIN that cannot hide in a hex fingerprint.
const SECRET_PIN: &str = "kp-secret-pin-4711";

fn sign_params(slot: u64, digest: &[u8]) -> Value {
    json!({"slot_id": slot, "cert_id": "01", "pin": SECRET_PIN, "data": b64(digest),
           "algorithm_reference": "sha256"})
}

/// The agent on `bus` (or with no bus), remembering sites in `state`.
fn agent(token: &Token, bus: Option<&PrivateBus>, state: &Path, extra: &[&str]) -> Agent {
    let state = state.to_str().unwrap();
    let mut args = BASE_ARGS.to_vec();
    args.extend(["--allow-origin", OTHER, "--no-tray", "--state-file", state]);
    args.extend_from_slice(extra);
    match bus {
        Some(b) => Agent::start_raw(token, &args, &[("DBUS_SESSION_BUS_ADDRESS", &b.address)]),
        None => Agent::start_raw(token, &args, &[]),
    }
}

struct Setup {
    token: Token,
    bus: PrivateBus,
    state: PathBuf,
}

fn setup() -> Setup {
    let token = Token::provision_with_pin(SECRET_PIN);
    let state = token.dir.path().join("person/state.json");
    Setup {
        token,
        bus: PrivateBus::start(),
        state,
    }
}

impl Setup {
    fn fake(&self, script: &str) -> FakeNotifications {
        FakeNotifications::start(FAKE, &self.bus, self.token.dir.path(), script, None)
    }

    fn agent(&self, extra: &[&str]) -> Agent {
        agent(&self.token, Some(&self.bus), &self.state, extra)
    }
}

fn signatures_made(log: &str) -> usize {
    log.matches("signature made").count()
}

#[tokio::test]
async fn allow_signs_and_the_prompt_says_who_asks_and_what_but_never_the_pin() {
    let s = setup();
    let fake = s.fake("allow");
    let agent = s.agent(&[]);
    let mut c = agent.client(Some(ALLOWED)).await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"contract to sign");
    let sig = c.ok("pkcs11.signData", sign_params(slot, &digest)).await;
    let sig = unb64(sig.as_str().unwrap());
    assert!(
        openssl_verify(&s.token.cert_der("rsa-2048"), "sha256", &digest, &sig),
        "openssl rejects the signature made after Allow"
    );

    let notes = fake.events("notify");
    assert_eq!(notes.len(), 1, "{notes:?}");
    let n = &notes[0];
    assert_eq!(n["app_name"], "Keyport");
    let summary = n["summary"].as_str().unwrap();
    let body = n["body"].as_str().unwrap();
    assert!(summary.contains(ALLOWED), "{summary}");
    let fingerprint = hex::encode_upper(&digest[..4]);
    for part in [
        ALLOWED,
        "CN=Keyport Demo RSA-2048",
        "Issued by:",
        "SHA-256 with RSA",
        fingerprint.as_str(),
    ] {
        assert!(body.contains(part), "{part:?} not in the prompt: {body}");
    }
    assert_eq!(
        n["actions"],
        json!([
            "allow",
            "Allow",
            "always",
            "Always allow this site",
            "deny",
            "Deny"
        ])
    );
    // Answered: nothing to withdraw.
    assert!(fake.events("close").is_empty());

    let (status, log) = agent.stop();
    assert!(status.success());
    assert_eq!(signatures_made(&log), 1);
    let everything = std::fs::read_to_string(&fake.record).unwrap();
    assert!(
        !everything.contains(SECRET_PIN),
        "the PIN reached the notification server"
    );
    assert!(!log.contains(SECRET_PIN), "the PIN appears in the log");
}

#[tokio::test]
async fn deny_dismiss_or_a_click_on_the_body_signs_nothing() {
    let s = setup();
    let fake = s.fake("deny,dismiss,default");
    let agent = s.agent(&[]);
    let mut c = agent.client(Some(ALLOWED)).await;
    let slot = c.slot_of("keyport-demo").await;
    for i in 0..3 {
        let digest = sha("sha256", format!("document {i}").as_bytes());
        c.err(
            "pkcs11.signData",
            sign_params(slot, &digest),
            "CONSENT_DENIED",
        )
        .await;
        assert_eq!(fake.events("notify").len(), i + 1);
    }
    let (_, log) = agent.stop();
    assert_eq!(signatures_made(&log), 0, "{log}");
    assert!(!log.contains(SECRET_PIN));
}

#[tokio::test]
async fn always_allow_is_remembered_across_restarts_per_site_and_revocable() {
    let s = setup();
    let fake = s.fake("always,allow,deny");
    let digest = sha("sha256", b"again and again");
    let cert = s.token.cert_der("rsa-2048");
    {
        let agent = s.agent(&[]);
        let mut c = agent.client(Some(ALLOWED)).await;
        let slot = c.slot_of("keyport-demo").await;
        // 1st: the person answers "Always allow this site".
        let sig = c.ok("pkcs11.signData", sign_params(slot, &digest)).await;
        assert!(openssl_verify(
            &cert,
            "sha256",
            &digest,
            &unb64(sig.as_str().unwrap())
        ));
        assert_eq!(fake.events("notify").len(), 1);
        // 2nd: no prompt.
        let sig = c.ok("pkcs11.signData", sign_params(slot, &digest)).await;
        assert!(openssl_verify(
            &cert,
            "sha256",
            &digest,
            &unb64(sig.as_str().unwrap())
        ));
        assert_eq!(fake.events("notify").len(), 1, "asked again after Always");
        // Another site is still asked (script: allow).
        let mut other = agent.client(Some(OTHER)).await;
        other
            .ok("pkcs11.signData", sign_params(slot, &digest))
            .await;
        let notes = fake.events("notify");
        assert_eq!(notes.len(), 2);
        assert!(notes[1]["body"].as_str().unwrap().contains(OTHER));
        agent.stop();
    }
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&s.state).unwrap()).unwrap();
    assert_eq!(
        saved["always_allow"],
        json!([ALLOWED]),
        "only the site the person chose"
    );
    {
        // Remembered across a restart.
        let agent = s.agent(&[]);
        let mut c = agent.client(Some(ALLOWED)).await;
        let slot = c.slot_of("keyport-demo").await;
        c.ok("pkcs11.signData", sign_params(slot, &digest)).await;
        assert_eq!(fake.events("notify").len(), 2);
        agent.stop();
    }
    // The person revokes it (the tray's "Revoke" writes the same file; see tray_model's tests).
    std::fs::write(&s.state, r#"{"always_allow": []}"#).unwrap();
    let agent = s.agent(&[]);
    let mut c = agent.client(Some(ALLOWED)).await;
    let slot = c.slot_of("keyport-demo").await;
    c.err(
        "pkcs11.signData",
        sign_params(slot, &digest),
        "CONSENT_DENIED",
    )
    .await;
    let notes = fake.events("notify");
    assert_eq!(notes.len(), 3, "a revoked site must be asked again");
    assert!(notes[2]["body"].as_str().unwrap().contains(ALLOWED));
}

#[tokio::test]
async fn no_answer_times_out_withdraws_the_prompt_and_signs_nothing() {
    let s = setup();
    let fake = s.fake("never");
    let agent = s.agent(&["--consent-timeout", "2"]);
    let mut c = agent.client(Some(ALLOWED)).await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"nobody is there");
    let started = Instant::now();
    c.err(
        "pkcs11.signData",
        sign_params(slot, &digest),
        "CONSENT_TIMEOUT",
    )
    .await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(20),
        "answered after {waited:?}"
    );
    let notes = fake.events("notify");
    assert_eq!(notes.len(), 1);
    assert!(notes[0]["body"].as_str().unwrap().contains("2 s"));
    let closes = fake.wait_for("close", 1);
    assert_eq!(closes.len(), 1, "the prompt was not withdrawn");
    assert_eq!(closes[0]["id"], notes[0]["id"]);
    let (_, log) = agent.stop();
    assert_eq!(signatures_made(&log), 0);
}

#[tokio::test]
async fn no_way_to_ask_is_consent_unavailable() {
    let s = setup();
    let digest = sha("sha256", b"x");

    // A bus, but no notification server on it: each refusal says why and what would make it
    // work (a trusted origin); the log says it once, however many requests are refused.
    let agent = s.agent(&[]);
    let mut c = agent.client(Some(ALLOWED)).await;
    let slot = c.slot_of("keyport-demo").await;
    for _ in 0..3 {
        let e = c
            .err(
                "pkcs11.signData",
                sign_params(slot, &digest),
                "CONSENT_UNAVAILABLE",
            )
            .await;
        let message = e["message"].as_str().unwrap();
        assert!(message.contains("cannot ask the person for consent"), "{e}");
        assert!(message.contains("no notification server"), "{e}");
        assert!(
            message.contains(&format!("--trust-origin {ALLOWED}")),
            "{e}"
        );
    }
    let (_, log) = agent.stop();
    assert!(log.contains("no notification server"), "{log}");
    assert_eq!(log.matches("refusing to sign").count(), 1, "{log}");
    assert!(log.contains(&format!("--trust-origin {ALLOWED}")), "{log}");

    // A server that cannot show buttons: it is not even sent the prompt.
    let fake = FakeNotifications::start(FAKE, &s.bus, s.token.dir.path(), "allow", Some("body"));
    let agent = s.agent(&[]);
    let mut c = agent.client(Some(ALLOWED)).await;
    c.err(
        "pkcs11.signData",
        sign_params(slot, &digest),
        "CONSENT_UNAVAILABLE",
    )
    .await;
    assert_eq!(fake.events("get_capabilities").len(), 1);
    assert!(fake.events("notify").is_empty());
    agent.stop();

    // No session bus at all (auto: no prompt), and a dead bus with --consent notify.
    for (bus, extra) in [
        (None, vec![]),
        (
            Some("unix:path=/nonexistent/keyport-bus"),
            vec!["--consent", "notify"],
        ),
    ] {
        let state = s.state.to_str().unwrap();
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--module",
            MODULE,
            "--allow-origin",
            ALLOWED,
            "--no-tray",
            "--state-file",
            state,
        ];
        args.extend(extra);
        let env: Vec<(&str, &str)> = bus
            .map(|b| vec![("DBUS_SESSION_BUS_ADDRESS", b)])
            .unwrap_or_default();
        let agent = Agent::start_raw(&s.token, &args, &env);
        let mut c = agent.client(Some(ALLOWED)).await;
        let e = c
            .err(
                "pkcs11.signData",
                sign_params(slot, &digest),
                "CONSENT_UNAVAILABLE",
            )
            .await;
        let message = e["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("--trust-origin {ALLOWED}")),
            "{e}"
        );
        if bus.is_none() {
            assert!(message.contains("no D-Bus session bus"), "{e}");
        }
        let (_, log) = agent.stop();
        assert_eq!(signatures_made(&log), 0);
        assert_eq!(log.matches("refusing to sign").count(), 1, "{log}");
    }
}

#[tokio::test]
async fn a_trusted_origin_signs_without_any_prompt_and_an_allowed_one_never_without() {
    let s = setup();
    // Were the trusted origin asked, the answer would be Deny.
    let fake = s.fake("deny,allow");
    let agent = s.agent(&[]);
    let mut trusted = agent.client(Some(TRUSTED)).await;
    let slot = trusted.slot_of("keyport-demo").await;
    let cert = s.token.cert_der("rsa-2048");
    for i in 0..3 {
        let digest = sha("sha256", format!("trusted {i}").as_bytes());
        let sig = trusted
            .ok("pkcs11.signData", sign_params(slot, &digest))
            .await;
        assert!(openssl_verify(
            &cert,
            "sha256",
            &digest,
            &unb64(sig.as_str().unwrap())
        ));
    }
    assert!(
        fake.records().is_empty(),
        "the trusted origin caused a prompt"
    );

    // The allowed origin: one prompt per signature, whatever came before.
    let mut allowed = agent.client(Some(ALLOWED)).await;
    let digest = sha("sha256", b"allowed");
    allowed
        .err(
            "pkcs11.signData",
            sign_params(slot, &digest),
            "CONSENT_DENIED",
        )
        .await;
    for n in 2..4 {
        allowed
            .ok("pkcs11.signData", sign_params(slot, &digest))
            .await;
        assert_eq!(fake.events("notify").len(), n);
    }
    let (_, log) = agent.stop();
    assert_eq!(signatures_made(&log), 5);
}

/// The reason of the next refusal among `calls`, in the order the answers arrive.
async fn next_refusal(calls: &mut tokio::task::JoinSet<Result<Value, Value>>) -> String {
    let answer = calls.join_next().await.expect("an answer").unwrap();
    let err = answer.expect_err("a flood request signed");
    err["data"]["reason"].as_str().unwrap().to_string()
}

// Multi-threaded: the spawned requests must make progress while the test waits on the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_page_neither_piles_up_prompts_nor_starves_other_sites() {
    let s = setup();
    let fake = s.fake("never");
    let agent = s.agent(&["--consent-timeout", "5"]);
    let slot = agent
        .client(Some(ALLOWED))
        .await
        .slot_of("keyport-demo")
        .await;
    let digest = sha("sha256", b"flood");
    let ask = |mut c: Client| {
        let p = sign_params(slot, &digest);
        tokio::spawn(async move { c.call("pkcs11.signData", p).await })
    };
    // Connect first, then send all five at once: the flood must land while the first two
    // prompts are up, however slowly the connections come up.
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(agent.client(Some(ALLOWED)).await);
    }
    // Answers are collected as they come: the refusals at once, the prompted ones at the timeout.
    let mut flood = tokio::task::JoinSet::new();
    for mut c in clients {
        let p = sign_params(slot, &digest);
        flood.spawn(async move { c.call("pkcs11.signData", p).await });
    }
    let mut reasons = Vec::new();
    // Two prompts at most per site (the default bound); the rest are refused at once. Once the
    // three refusals are back, the agent has settled all five requests, so the record is final:
    // no window to wait out for a third prompt.
    for _ in 0..3 {
        reasons.push(next_refusal(&mut flood).await);
    }
    assert_eq!(reasons, ["CONSENT_BUSY"; 3], "refused only after a timeout");
    assert_eq!(fake.wait_for("notify", 2).len(), 2);
    assert_eq!(fake.events("notify").len(), 2, "prompts piled up");
    // Another site is not starved: it gets its own prompt while the flood waits.
    let other = ask(agent.client(Some(OTHER)).await);
    let notes = fake.wait_for("notify", 3);
    assert_eq!(notes.len(), 3);
    assert!(notes[2]["body"].as_str().unwrap().contains(OTHER));

    for _ in 0..2 {
        reasons.push(next_refusal(&mut flood).await);
    }
    assert_eq!(
        reasons,
        [
            "CONSENT_BUSY",
            "CONSENT_BUSY",
            "CONSENT_BUSY",
            "CONSENT_TIMEOUT",
            "CONSENT_TIMEOUT"
        ]
    );
    let err = other.await.unwrap().expect_err("signed without an answer");
    assert_eq!(err["data"]["reason"], "CONSENT_TIMEOUT");
    // Every prompt that timed out was withdrawn.
    assert_eq!(fake.wait_for("close", 3).len(), 3);
    let (_, log) = agent.stop();
    assert_eq!(signatures_made(&log), 0);
}

#[tokio::test]
async fn a_page_that_goes_away_takes_its_prompt_with_it() {
    let s = setup();
    let fake = s.fake("never");
    let agent = s.agent(&["--consent-timeout", "30"]);
    let mut c = agent.client(Some(ALLOWED)).await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"closing the tab");
    c.send_text(
        json!({"jsonrpc": "2.0", "id": 99, "method": "pkcs11.signData",
               "params": sign_params(slot, &digest)})
        .to_string(),
    )
    .await;
    assert_eq!(fake.wait_for("notify", 1).len(), 1);
    drop(c);
    let closes = fake.wait_for("close", 1);
    assert_eq!(closes.len(), 1, "the prompt outlived its page");
    let (_, log) = agent.stop();
    assert_eq!(signatures_made(&log), 0);
}
