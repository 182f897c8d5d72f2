//! The agent with its tray under Xvfb, and headless without a display.

use keyport_e2e::desktop::{
    published_icon, wait_for_icon, wait_for_text, FakeNotifications, PrivateBus, TrayHost, Xvfb,
};
use keyport_e2e::*;
use serde_json::json;
use std::time::{Duration, Instant};

const FAKE: &str = env!("CARGO_BIN_EXE_fake-notifications");

fn args(token: &Token, extra: &[&'static str]) -> Vec<String> {
    let mut a: Vec<String> = BASE_ARGS
        .iter()
        .chain(&["--state-file"])
        .map(|s| s.to_string())
        .collect();
    a.push(
        token
            .dir
            .path()
            .join("person/state.json")
            .display()
            .to_string(),
    );
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn start(token: &Token, extra: &[&'static str], env: &[(&str, &str)]) -> Agent {
    let a = args(token, extra);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    Agent::start_raw(token, &a, env)
}

async fn signs(agent: &Agent, origin: &str, token: &Token) {
    let mut c = agent.client(Some(origin)).await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"with a tray");
    let sig = c
        .ok(
            "pkcs11.signData",
            json!({"slot_id": slot, "cert_id": "02", "pin": PIN, "data": b64(&digest),
                   "algorithm_reference": "sha256"}),
        )
        .await;
    assert!(token.verifies("ec-p256", "sha256", &digest, &sig));
}

#[tokio::test]
async fn with_its_tray_under_xvfb_the_agent_serves_asks_and_stops_cleanly() {
    let token = &Token::provision();
    let x = Xvfb::start();
    let bus = PrivateBus::start();
    let fake = FakeNotifications::start(FAKE, &bus, token.dir.path(), "allow", None);
    let mut agent = start(
        token,
        &[],
        &[
            ("DISPLAY", &x.display),
            ("DBUS_SESSION_BUS_ADDRESS", &bus.address),
        ],
    );
    signs(&agent, TRUSTED, token).await;
    signs(&agent, ALLOWED, token).await;
    assert_eq!(fake.events("notify").len(), 1);
    assert!(agent.is_running());
    // GTK started without probing GL: no GL driver (and no libLLVM, 44 MB under Mesa) mapped.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", agent.pid())).unwrap();
    for driver in ["libLLVM", "_dri.so", "libGLX_mesa"] {
        assert!(!maps.contains(driver), "{driver} is loaded:\n{maps}");
    }
    let (status, log) = agent.stop();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("tray icon shown"), "{log}");
    assert!(!log.contains("headless"), "{log}");
    assert!(log.contains("stopped"), "no clean shutdown: {log}");
    // The tray's person has no terminal: the log is also in the state folder.
    let file = std::fs::read_to_string(token.dir.path().join("person/keyport.log")).unwrap();
    assert!(file.contains("tray icon shown"), "{file}");
    assert!(!file.contains(PIN), "the PIN is in the log file:\n{file}");
}

/// The icon differs while a request waits for the person, and comes back when it is settled.
// Multi-threaded: the request must go on while the test waits for the icon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tray_icon_shows_a_request_waiting_for_consent() {
    let token = &Token::provision();
    let x = Xvfb::start();
    let bus = PrivateBus::start();
    let fake = FakeNotifications::start(FAKE, &bus, token.dir.path(), "never", None);
    let tmp = token.dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let agent = start(
        token,
        // Long enough that a loaded machine still sees the prompt up.
        &["--consent-timeout", "10"],
        &[
            ("DISPLAY", &x.display),
            ("DBUS_SESSION_BUS_ADDRESS", &bus.address),
            ("TMPDIR", tmp.to_str().unwrap()),
        ],
    );
    let log = token.dir.path().join("person/keyport.log");
    let text = wait_for_text(&log, "tray icon shown", Duration::from_secs(10));
    assert!(text.contains("tray icon shown"), "{text}");
    let icons = tmp.join(format!("keyport-tray-{}", agent.child.id()));
    let (n_idle, idle) = published_icon(&icons).expect("the tray published no icon");

    let mut c = agent.client(Some(ALLOWED)).await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"the icon tells");
    let params = json!({"slot_id": slot, "cert_id": "02", "pin": PIN, "data": b64(&digest),
                        "algorithm_reference": "sha256"});
    let asking = tokio::spawn(async move { c.call("pkcs11.signData", params).await });
    assert_eq!(fake.wait_for("notify", 1).len(), 1);
    let (n_waiting, waiting) =
        wait_for_icon(&icons, n_idle, Duration::from_secs(5)).expect("the icon did not change");
    assert_ne!(waiting, idle, "the waiting icon looks like the idle one");

    // Nobody answers: the request is refused and the icon is the idle one again.
    let err = asking.await.unwrap().expect_err("signed without an answer");
    assert_eq!(err["data"]["reason"], "CONSENT_TIMEOUT", "{err}");
    let (_, after) = wait_for_icon(&icons, n_waiting, Duration::from_secs(20))
        .expect("the icon stayed on 'waiting'");
    assert_eq!(after, idle);
    let (status, log) = agent.stop();
    assert!(status.success(), "{log}");
}

#[tokio::test]
async fn without_a_display_the_agent_runs_headless_and_says_so_once() {
    let token = &Token::provision();
    // The harness removes DISPLAY and WAYLAND_DISPLAY.
    let agent = start(token, &[], &[]);
    signs(&agent, TRUSTED, token).await;
    let (status, log) = agent.stop();
    assert!(status.success());
    assert_eq!(log.matches("running headless").count(), 1, "{log}");
    assert!(log.contains("no display"), "{log}");
    assert!(!log.contains("tray icon shown"));
    assert!(!token.dir.path().join("person/keyport.log").exists());
}

#[tokio::test]
async fn no_tray_means_headless_even_with_a_display() {
    let token = &Token::provision();
    let x = Xvfb::start();
    let agent = start(token, &["--no-tray"], &[("DISPLAY", &x.display)]);
    signs(&agent, TRUSTED, token).await;
    let (status, log) = agent.stop();
    assert!(status.success());
    assert_eq!(log.matches("running headless").count(), 1, "{log}");
    assert!(log.contains("--no-tray"), "{log}");
    assert!(!log.contains("tray icon shown"));
}

#[tokio::test]
async fn a_display_that_cannot_be_opened_falls_back_to_headless() {
    let token = &Token::provision();
    // A display nobody serves: the toolkit cannot start; the agent must not crash.
    let agent = start(token, &[], &[("DISPLAY", ":4242")]);
    signs(&agent, TRUSTED, token).await;
    let (status, log) = agent.stop();
    assert!(status.success(), "{log}");
    assert_eq!(log.matches("running headless").count(), 1, "{log}");
}

/// The real menu, clicked in a real tray host: Pause signing refuses at once, Quit shuts down
/// cleanly (exit 0, connections closed, module finalised) with no signal sent.
#[tokio::test]
async fn the_tray_menu_pauses_signing_and_quits_cleanly() {
    let token = &Token::provision();
    let x = Xvfb::start();
    let bus = PrivateBus::start();
    let host = TrayHost::start(&x, &bus);
    let mut agent = start(
        token,
        &[],
        &[
            ("DISPLAY", &x.display),
            ("DBUS_SESSION_BUS_ADDRESS", &bus.address),
        ],
    );
    let log = token.dir.path().join("person/keyport.log");
    let text = wait_for_text(&log, "tray icon shown", Duration::from_secs(10));
    assert!(text.contains("tray icon shown"), "{text}");
    // Let the host embed the icon.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(agent.is_running());
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"paused?");
    let params = json!({"slot_id": slot, "cert_id": "02", "pin": PIN, "data": b64(&digest),
                        "algorithm_reference": "sha256"});
    c.ok("pkcs11.signData", params.clone()).await;

    // "Pause signing" is the first item that can be chosen. (A slow machine may not have the
    // menu up in time: try again, at most three times, after closing whatever is open.)
    // A retry clicks the toggle again, so it first makes sure the last click did not land late.
    let mut text = String::new();
    for _ in 0..3 {
        if std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("signing paused from the tray")
        {
            break;
        }
        host.click_icon();
        tokio::time::sleep(Duration::from_millis(800)).await;
        host.xdotool(&["key", "Down", "Return"]);
        text = wait_for_text(&log, "signing paused from the tray", Duration::from_secs(8));
        if text.contains("signing paused from the tray") {
            break;
        }
        host.xdotool(&["key", "Escape"]);
    }
    let text = std::fs::read_to_string(&log).unwrap_or(text);
    assert!(text.contains("signing paused from the tray"), "{text}");
    assert!(!text.contains("signing resumed from the tray"), "{text}");
    let err = c
        .err("pkcs11.signData", params.clone(), "SIGNING_PAUSED")
        .await;
    assert!(err["message"].as_str().unwrap().len() > 10, "{err}");

    // "Quit Keyport" is the last item.
    let mut status = None;
    for _ in 0..3 {
        host.click_icon();
        tokio::time::sleep(Duration::from_millis(800)).await;
        host.xdotool(&["key", "Up", "Return"]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while status.is_none() && Instant::now() < deadline {
            status = agent.child.try_wait().unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        if status.is_some() {
            break;
        }
        host.xdotool(&["key", "Escape"]);
    }
    let status = status.expect("Quit did not stop the agent");
    assert!(status.success(), "{status:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    for line in ["quit from the tray", "PKCS #11 module finalised", "stopped"] {
        assert!(text.contains(line), "{line:?} missing: {text}");
    }
    // The connection was closed by the shutdown.
    assert!(c.recv().await.is_none());
    assert!(!text.contains(PIN));
}
