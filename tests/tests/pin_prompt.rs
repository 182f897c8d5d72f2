//! The agent's own PIN prompt and its pinentry consent dialog, end to end: the real agent and a
//! real SoftHSM token, with the scripted stand-in for pinentry (`src/bin/fake-pinentry.rs`) as
//! the person. Signatures are checked with openssl.
//!
//! The agent gives a pinentry only the environment a pinentry needs, so the stand-in is started
//! through a small shell script that sets its own variables (which also shows that nothing else
//! of the agent's environment gets through). The agent is told it has a display (`DISPLAY`):
//! the stand-in is a "graphical" pinentry and never opens it.

use keyport_e2e::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

const FAKE: &str = env!("CARGO_BIN_EXE_fake-pinentry");

/// The stand-in pinentry for one agent: a script of answers, and what it recorded.
struct Person {
    dir: tempfile::TempDir,
}

impl Person {
    fn new(answers: &[&str]) -> Person {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("script"), answers.join("\n") + "\n").unwrap();
        let program = dir.path().join("pinentry");
        std::fs::write(
            &program,
            format!(
                "#!/bin/sh\nFAKE_PINENTRY_SCRIPT='{}' FAKE_PINENTRY_LOG='{}' exec '{FAKE}'\n",
                dir.path().join("script").display(),
                dir.path().join("log").display(),
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        Person { dir }
    }

    fn program(&self) -> PathBuf {
        self.dir.path().join("pinentry")
    }

    /// One record per dialog shown, in order.
    fn dialogs(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn raw_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

/// The argument of the first `verb` command in a dialog's record.
fn arg(dialog: &Value, verb: &str) -> Option<String> {
    dialog["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c[0] == verb)
        .map(|c| c[1].as_str().unwrap().to_string())
}

fn start(token: &Token, person: &Person, extra: &[&str]) -> Agent {
    let mut args = BASE_ARGS.to_vec();
    args.push("--no-tray");
    let program = person.program();
    args.extend_from_slice(&["--pinentry", program.to_str().unwrap()]);
    args.extend_from_slice(extra);
    Agent::start_raw(token, &args, &[("DISPLAY", ":99")])
}

fn no_pin(slot: u64, id: &str, digest: &[u8]) -> Value {
    json!({"slot_id": slot, "cert_id": id, "data": b64(digest), "algorithm_reference": "sha256"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_asks_for_the_pin_in_a_dialog_that_names_the_site_and_the_certificate() {
    let token = Token::provision();
    // A wrong PIN first: the dialog opens again, saying so; then the right one.
    let person = Person::new(&["pin kpWrong0000", &format!("pin {PIN}")]);
    let agent = start(&token, &person, &[]);
    assert!(
        agent
            .wait_for_log("PIN prompt:", Duration::from_secs(5))
            .await,
        "the start line names the PIN prompt: {}",
        agent.log()
    );
    let mut c = agent.client(Some(ALLOWED)).await;
    let slot = c.slot_of("keyport-demo").await;
    let info = c.ok("keyport.version", json!({})).await;
    assert!(
        info["features"]
            .as_array()
            .unwrap()
            .contains(&json!("pin_prompt")),
        "{info}"
    );

    let digest = sha("sha256", b"typed into the agent's dialog");
    let sig = c.ok("pkcs11.signData", no_pin(slot, "02", &digest)).await;
    assert!(
        token.verifies("ec-p256", "sha256", &digest, &sig),
        "openssl verifies the signature made with the PIN typed into the agent's prompt"
    );

    let dialogs = person.dialogs();
    assert_eq!(dialogs.len(), 2, "one dialog per try: {dialogs:?}");
    for d in &dialogs {
        let desc = arg(d, "SETDESC").expect("a description");
        assert!(desc.contains(ALLOWED), "names the site: {desc}");
        assert!(
            desc.contains("Keyport Demo P-256"),
            "names the certificate's subject: {desc}"
        );
        assert!(
            desc.to_lowercase().contains("issued by"),
            "and its issuer: {desc}"
        );
        assert!(desc.contains("ECDSA"), "and the algorithm: {desc}");
        assert!(
            d["commands"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c[0] == "GETPIN"),
            "{d}"
        );
    }
    assert_eq!(
        arg(&dialogs[0], "SETERROR"),
        None,
        "no error on the first try"
    );
    let error = arg(&dialogs[1], "SETERROR").expect("the second dialog says why it is back");
    assert!(error.contains("Wrong PIN"), "{error}");
    // The stand-in itself runs with only what a pinentry needs (and what its script set).
    for name in dialogs[0]["env"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        assert!(
            !["SOFTHSM2_CONF", "RUST_LOG", "XDG_STATE_HOME"].contains(&name),
            "the agent passed {name} to pinentry"
        );
    }

    let log = agent.log();
    assert!(!log.contains(PIN), "the PIN is in no log line");
    assert!(!log.contains("kpWrong0000"), "nor the wrong one");
    assert!(
        !person.raw_log().contains(PIN),
        "the dialog text never carries the PIN"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_denies_and_nothing_is_signed() {
    let token = Token::provision();
    let person = Person::new(&["cancel", "close", &format!("pin {PIN}")]);
    let agent = start(&token, &person, &[]);
    let mut c = agent.client(Some(ALLOWED)).await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"refused");

    c.err(
        "pkcs11.signData",
        no_pin(slot, "02", &digest),
        "CONSENT_DENIED",
    )
    .await;
    c.err(
        "pkcs11.signData",
        no_pin(slot, "02", &digest),
        "CONSENT_DENIED",
    )
    .await;
    assert_eq!(person.dialogs().len(), 2);
    assert!(
        !agent.log().contains("signature made"),
        "a cancelled dialog signs nothing"
    );
    // The agent is fine: the next request signs.
    let sig = c.ok("pkcs11.signData", no_pin(slot, "01", &digest)).await;
    assert!(token.verifies("rsa-2048", "sha256", &digest, &sig));
}

/// A dialog nobody answers: the page gets CONSENT_TIMEOUT after the consent timeout, and the
/// pinentry is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_at_the_keyboard_is_a_timeout() {
    let token = Token::provision();
    let person = Person::new(&["hang"]);
    let agent = start(&token, &person, &["--consent-timeout", "2"]);
    let mut c = agent.client(Some(ALLOWED)).await;
    let slot = c.slot_of("keyport-demo").await;
    let started = std::time::Instant::now();
    c.err(
        "pkcs11.signData",
        no_pin(slot, "02", &sha("sha256", b"x")),
        "CONSENT_TIMEOUT",
    )
    .await;
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let pid = person.dialogs()[0]["pid"].as_u64().unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the pinentry that hung was killed and reaped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_pinentry_the_page_must_send_the_pin() {
    let token = Token::provision();
    let agent = Agent::start_raw(
        &token,
        &[
            &BASE_ARGS[..],
            &["--no-tray", "--pinentry", "/nonexistent/pinentry"],
        ]
        .concat(),
        &[("DISPLAY", ":99")],
    );
    assert!(
        agent
            .wait_for_log("not an executable program", Duration::from_secs(5))
            .await,
        "{}",
        agent.log()
    );
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    let info = c.ok("keyport.version", json!({})).await;
    assert!(
        !info["features"]
            .as_array()
            .unwrap()
            .contains(&json!("pin_prompt")),
        "{info}"
    );
    let digest = sha("sha256", b"no prompt");
    let e = c
        .err(
            "pkcs11.signData",
            no_pin(slot, "02", &digest),
            "PIN_ENTRY_UNAVAILABLE",
        )
        .await;
    assert_eq!(e["code"], 1305);
    // The page can still send it.
    let mut with_pin = no_pin(slot, "02", &digest);
    with_pin["pin"] = json!(PIN);
    let sig = c.ok("pkcs11.signData", with_pin).await;
    assert!(token.verifies("ec-p256", "sha256", &digest, &sig));
}

/// A graphical pinentry without a display cannot show itself: no PIN prompt, and the log says
/// why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graphical_pinentry_without_a_display_is_not_used() {
    let token = Token::provision();
    let person = Person::new(&[&format!("pin {PIN}")]);
    let program = person.program();
    let agent = Agent::start_raw(
        &token,
        &[
            &BASE_ARGS[..],
            &["--no-tray", "--pinentry", program.to_str().unwrap()],
        ]
        .concat(),
        &[],
    );
    assert!(
        agent
            .wait_for_log("cannot show itself here", Duration::from_secs(5))
            .await,
        "{}",
        agent.log()
    );
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    c.err(
        "pkcs11.signData",
        no_pin(slot, "02", &sha("sha256", b"x")),
        "PIN_ENTRY_UNAVAILABLE",
    )
    .await;
    assert!(person.dialogs().is_empty());
}

/// `--consent pinentry`: the page sends the PIN, pinentry's confirmation dialog asks Allow /
/// Always allow this site / Deny.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_through_pinentrys_confirmation_dialog() {
    let token = Token::provision();
    let person = Person::new(&["cancel", "ok", "notok"]);
    let agent = start(&token, &person, &["--consent", "pinentry"]);
    assert!(
        agent
            .wait_for_log("consent prompts:", Duration::from_secs(5))
            .await,
        "{}",
        agent.log()
    );
    let mut c = agent.client(Some(ALLOWED)).await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"confirm");
    let mut p = no_pin(slot, "02", &digest);
    p["pin"] = json!(PIN);

    c.err("pkcs11.signData", p.clone(), "CONSENT_DENIED").await;
    let sig = c.ok("pkcs11.signData", p.clone()).await;
    assert!(token.verifies("ec-p256", "sha256", &digest, &sig));
    // "Always allow this site": signs, and the site is remembered.
    let sig = c.ok("pkcs11.signData", p.clone()).await;
    assert!(token.verifies("ec-p256", "sha256", &digest, &sig));
    let dialogs = person.dialogs();
    assert_eq!(dialogs.len(), 3);
    for d in &dialogs {
        assert!(
            d["commands"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c[0] == "CONFIRM"),
            "{d}"
        );
        assert!(arg(d, "SETDESC").unwrap().contains(ALLOWED));
    }
    // Remembered: no dialog for the next one (the script has no answer left).
    let sig = c.ok("pkcs11.signData", p).await;
    assert!(token.verifies("ec-p256", "sha256", &digest, &sig));
    assert_eq!(
        person.dialogs().len(),
        3,
        "a remembered site is not asked again"
    );
    assert!(!agent.log().contains(PIN));
}

/// `auto` with a session bus: notifications first; a request the notification server cannot
/// ask (one without buttons, or none at all) is asked through pinentry instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_that_cannot_ask_fall_back_to_pinentry() {
    use keyport_e2e::desktop::{FakeNotifications, PrivateBus};
    const NOTIFY: &str = env!("CARGO_BIN_EXE_fake-notifications");
    let token = Token::provision();
    let bus = PrivateBus::start();
    let person = Person::new(&["ok", "ok"]);
    let program = person.program();
    let args = [
        &BASE_ARGS[..],
        &["--no-tray", "--pinentry", program.to_str().unwrap()],
    ]
    .concat();
    let env = [
        ("DISPLAY", ":99"),
        ("DBUS_SESSION_BUS_ADDRESS", bus.address.as_str()),
    ];
    let mut p = no_pin(0, "02", &sha("sha256", b"fallback"));
    p["pin"] = json!(PIN);

    // A notification server without buttons: it is asked for its capabilities, never shown the
    // prompt; pinentry asks.
    let notify = FakeNotifications::start(NOTIFY, &bus, token.dir.path(), "allow", Some("body"));
    let agent = Agent::start_raw(&token, &args, &env);
    assert!(
        agent
            .wait_for_log("desktop notifications, else", Duration::from_secs(5))
            .await,
        "{}",
        agent.log()
    );
    let mut c = agent.client(Some(ALLOWED)).await;
    p["slot_id"] = json!(c.slot_of("keyport-demo").await);
    let sig = c.ok("pkcs11.signData", p.clone()).await;
    assert!(token.verifies("ec-p256", "sha256", &sha("sha256", b"fallback"), &sig));
    assert!(notify.events("notify").is_empty());
    assert_eq!(person.dialogs().len(), 1);
    drop(c);
    agent.stop();
    drop(notify);

    // No notification server on the bus at all.
    let agent = Agent::start_raw(&token, &args, &env);
    let mut c = agent.client(Some(ALLOWED)).await;
    let sig = c.ok("pkcs11.signData", p).await;
    assert!(token.verifies("ec-p256", "sha256", &sha("sha256", b"fallback"), &sig));
    let dialogs = person.dialogs();
    assert_eq!(dialogs.len(), 2);
    assert!(dialogs.iter().all(|d| d["commands"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c[0] == "CONFIRM")));
}
