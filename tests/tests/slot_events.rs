//! Slot events and recovery end to end: the real agent, a real SoftHSM token behind the fault
//! module, which "pulls the card" (`hide_tokens=1` and a new `token_epoch`: every session of
//! the token is closed, its login lost) and "puts it back" (`hide_tokens=0`), with or without a
//! `C_WaitForSlotEvent` of its own (`slot_events=1`; SoftHSM has none, so without it the agent
//! polls). Signatures after re-insertion are checked with openssl.
//!
//! Every wait for an event is bounded and ends as soon as the event arrives; no sleep is used
//! to synchronise. Only the checks that something does *not* happen wait a fixed time.

use keyport_e2e::fault::FaultModule;
use keyport_e2e::*;
use serde_json::{json, Value};
use std::time::Duration;

/// Long enough for a polling watcher (500 ms) or a waiting one to notice, on a busy machine.
const EVENT_LIMIT: Duration = Duration::from_secs(10);

struct Setup {
    token: Token,
    module: FaultModule,
    agent: Agent,
}

fn setup(conf: &str, extra: &[&str]) -> Setup {
    let token = Token::provision();
    let module = FaultModule::new();
    module.set(conf);
    let mut args = vec!["--module", module.path_str()];
    args.extend_from_slice(extra);
    let agent = Agent::start(&token, &args);
    Setup {
        token,
        module,
        agent,
    }
}

impl Setup {
    fn pull(&self, conf: &str, epoch: u64) {
        self.module
            .set(&format!("{conf}\nhide_tokens=1\ntoken_epoch={epoch}"));
    }

    fn put_back(&self, conf: &str, epoch: u64) {
        self.module
            .set(&format!("{conf}\nhide_tokens=0\ntoken_epoch={epoch}"));
    }

    fn params(&self, extra: Value) -> Value {
        let mut p = json!({"module": self.module.path_str()});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    }
}

async fn subscribe(c: &mut Client, s: &Setup) -> u64 {
    c.ok("pkcs11.subscribeSlotEvents", s.params(json!({})))
        .await
        .as_u64()
        .expect("a subscription id")
}

/// The next slot event for `subscription` (at most [`EVENT_LIMIT`]).
async fn next_event(s: &Setup, c: &mut Client, subscription: u64) -> Value {
    let Some(n) = c.notification_within(EVENT_LIMIT).await else {
        panic!(
            "no slot event within {EVENT_LIMIT:?}\nagent log:\n{}\nmodule calls (last 40):\n{}",
            s.agent.log(),
            s.module
                .calls()
                .iter()
                .rev()
                .take(40)
                .rev()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    };
    assert_eq!(n["jsonrpc"], "2.0", "{n}");
    assert_eq!(n["method"], "pkcs11.slotEvent", "{n}");
    assert!(n.get("id").is_none(), "a notification has no id: {n}");
    assert_eq!(n["params"]["subscription"], subscription, "{n}");
    n["params"]["result"].clone()
}

/// Events until one for `slot` arrives; that one.
async fn event_for(s: &Setup, c: &mut Client, subscription: u64, slot: u64) -> Value {
    loop {
        let e = next_event(s, c, subscription).await;
        if e["slot_id"] == slot {
            return e;
        }
    }
}

fn sign_params(s: &Setup, slot: u64, digest: &[u8]) -> Value {
    s.params(
        json!({"slot_id": slot, "cert_id": "02", "data": b64(digest),
                    "algorithm_reference": "sha256", "pin": PIN}),
    )
}

fn logins(module: &FaultModule) -> usize {
    module
        .calls()
        .iter()
        .filter(|l| l.starts_with("C_Login") && l.ends_with("rv=0x0"))
        .count()
}

/// Removal and insertion arrive as events, with the token's label; after re-insertion the next
/// signature logs in again and signs. Both with the module's own `C_WaitForSlotEvent` and,
/// without it, by polling.
async fn events_then_recovery(conf: &str) {
    let s = setup(conf, &[]);
    let mut c = s.agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    let version = c.ok("keyport.version", json!({})).await;
    assert!(
        version["features"]
            .as_array()
            .unwrap()
            .contains(&json!("slot_events")),
        "{version}"
    );

    // Signed once: the token is logged in, its sessions pooled, its key handle cached.
    let digest = sha("sha256", b"before");
    let sig = c
        .ok("pkcs11.signData", sign_params(&s, slot, &digest))
        .await;
    assert!(s.token.verifies("ec-p256", "sha256", &digest, &sig));
    assert_eq!(logins(&s.module), 1);

    let sub = subscribe(&mut c, &s).await;
    s.pull(conf, 1);
    let removed = event_for(&s, &mut c, sub, slot).await;
    assert_eq!(removed["event"], "removed", "{removed}");
    assert_eq!(removed["token_label"], "keyport-demo", "{removed}");
    assert_eq!(removed["module"], s.module.path_str(), "{removed}");
    c.err(
        "pkcs11.signData",
        sign_params(&s, slot, &digest),
        "TOKEN_NOT_PRESENT",
    )
    .await;

    s.put_back(conf, 1);
    let inserted = event_for(&s, &mut c, sub, slot).await;
    assert_eq!(inserted["event"], "inserted", "{inserted}");
    assert_eq!(inserted["token_label"], "keyport-demo", "{inserted}");

    let digest = sha("sha256", b"after");
    let sig = c
        .ok("pkcs11.signData", sign_params(&s, slot, &digest))
        .await;
    assert!(
        s.token.verifies("ec-p256", "sha256", &digest, &sig),
        "openssl verifies the signature made after re-insertion"
    );
    assert_eq!(logins(&s.module), 2, "a fresh login after re-insertion");
    assert!(
        c.ok("pkcs11.unsubscribeSlotEvents", json!({"subscription": sub}))
            .await
            == true
    );
    assert!(
        c.ok("pkcs11.unsubscribeSlotEvents", json!({"subscription": sub}))
            .await
            == false,
        "a second unsubscribe finds nothing"
    );
    assert!(!s.agent.log().contains(PIN));
    drop(c);
    let (_, log) = s.agent.stop();
    assert!(
        !log.contains("Failed to close session"),
        "dead sessions are dropped quietly: {log}"
    );
    assert!(
        !log.contains("not finalised"),
        "a module that was watched is still finalised at shutdown: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_recovery_with_the_modules_own_wait() {
    events_then_recovery("slot_events=1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_recovery_by_polling() {
    events_then_recovery("").await;
}

/// With the module's own wait, the agent uses it: C_WaitForSlotEvent is called and reports the
/// events (not only the slot list).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_with_c_wait_for_slot_event_is_waited_on_not_polled() {
    let s = setup("slot_events=1", &[]);
    let mut c = s.agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    let sub = subscribe(&mut c, &s).await;
    // Pull once the module's wait has begun (its first, non-blocking call is logged).
    let deadline = std::time::Instant::now() + EVENT_LIMIT;
    while !s
        .module
        .calls()
        .iter()
        .any(|l| l.starts_with("C_WaitForSlotEvent dont_block"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            s.module.calls()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.pull("slot_events=1", 1);
    event_for(&s, &mut c, sub, slot).await;
    let waits: Vec<String> = s
        .module
        .calls()
        .into_iter()
        .filter(|l| l.starts_with("C_WaitForSlotEvent slot="))
        .collect();
    assert!(!waits.is_empty(), "{:?}", s.module.calls());
    assert!(
        !s.agent.log().contains("polling it every"),
        "the agent did not fall back to polling: {}",
        s.agent.log()
    );
}

/// No card pulled with a subscriber listening: the first request after re-insertion meets the
/// stale sessions and handles itself, and still signs (one retry on fresh state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_put_back_while_nobody_listened_still_signs() {
    for isolation in ["true", "false"] {
        let token = Token::provision();
        let module = FaultModule::new();
        module.set("");
        let config = module.dir.path().join("keyport.toml");
        std::fs::write(&config, format!("module_isolation = {isolation}\n")).unwrap();
        let agent = Agent::start(
            &token,
            &[
                "--module",
                module.path_str(),
                "--config",
                config.to_str().unwrap(),
            ],
        );
        let mut c = agent.trusted().await;
        let slot = c.slot_of("keyport-demo").await;
        let p = |digest: &[u8]| {
            json!({"slot_id": slot, "cert_id": "02", "data": b64(digest),
                   "algorithm_reference": "sha256", "pin": PIN, "module": module.path_str()})
        };
        let digest = sha("sha256", b"one");
        c.ok("pkcs11.signData", p(&digest)).await;
        c.ok(
            "pkcs11.certificates",
            json!({"slot_id": slot, "module": module.path_str()}),
        )
        .await;
        // Pulled and put back between two requests: every session and handle is stale.
        module.set("token_epoch=1");
        for text in [&b"two"[..], b"three"] {
            let digest = sha("sha256", text);
            let sig = c.ok("pkcs11.signData", p(&digest)).await;
            assert!(token.verifies("ec-p256", "sha256", &digest, &sig));
        }
        let certs = c
            .ok(
                "pkcs11.certificates",
                json!({"slot_id": slot, "module": module.path_str()}),
            )
            .await;
        assert_eq!(certs.as_array().unwrap().len(), 5, "isolation={isolation}");
        assert_eq!(
            logins(&module),
            2,
            "isolation={isolation}: {:?}",
            module.calls()
        );
        assert!(
            module.calls().iter().any(|l| l.starts_with("card epoch 1")),
            "{:?}",
            module.calls()
        );
    }
}

/// A signature waiting on the token when the card is pulled gets TOKEN_NOT_PRESENT, not a hang
/// and not a stale-handle DEVICE_ERROR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_when_the_card_is_pulled_gets_token_not_present() {
    let s = setup("", &[]);
    let mut c = s.agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"in flight");
    c.ok("pkcs11.signData", sign_params(&s, slot, &digest))
        .await;
    s.module.set("sign_delay_ms=1500");
    let mut other = s.agent.trusted().await;
    let sign = tokio::spawn({
        let p = sign_params(&s, slot, &digest);
        async move {
            let started = std::time::Instant::now();
            let e = other.call("pkcs11.signData", p).await.unwrap_err();
            (e, started.elapsed())
        }
    });
    // Pull the card once the signature is inside C_Sign (the module logs nothing before it
    // returns, so wait for the agent to be in it: the delayed call has begun when no C_Sign
    // line has appeared yet and the request is still running).
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.pull("sign_delay_ms=1500", 1);
    let (e, took) = sign.await.unwrap();
    assert_eq!(e["data"]["reason"], "TOKEN_NOT_PRESENT", "{e}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// After unsubscribing, no event reaches the connection, while a connection still subscribed
/// gets it (so the event was published); and a polling agent with no subscriber left stops
/// making token calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_after_unsubscribe_and_no_polling_without_subscribers() {
    let s = setup("", &[]);
    let mut a = s.agent.trusted().await;
    let mut b = s.agent.trusted().await;
    let slot = a.slot_of("keyport-demo").await;
    let sub_a = subscribe(&mut a, &s).await;
    let sub_b = subscribe(&mut b, &s).await;
    s.pull("", 1);
    event_for(&s, &mut a, sub_a, slot).await;
    event_for(&s, &mut b, sub_b, slot).await;
    // The other token's removal came in the same batch: an answer comes after it, then take it.
    a.ok("keyport.version", json!({})).await;
    while a.buffered_notifications() > 0 {
        next_event(&s, &mut a, sub_a).await;
    }
    assert!(
        a.ok(
            "pkcs11.unsubscribeSlotEvents",
            json!({"subscription": sub_a})
        )
        .await
            == true
    );
    // Someone else's subscription cannot be ended from here.
    assert!(
        a.ok(
            "pkcs11.unsubscribeSlotEvents",
            json!({"subscription": sub_b})
        )
        .await
            == false
    );

    s.put_back("", 1);
    event_for(&s, &mut b, sub_b, slot).await;
    // `a` asked to stop before the event: a request answered now comes before anything that
    // was queued for it, so an event sent to `a` would be buffered by this call.
    a.ok("keyport.version", json!({})).await;
    assert_eq!(a.buffered_notifications(), 0);
    assert!(a
        .notification_within(Duration::from_millis(200))
        .await
        .is_none());

    // The last subscriber leaves (its connection closes): the watcher stops at its next turn.
    drop(b);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = s.module.calls().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        s.module.calls().len(),
        settled,
        "token calls went on with no subscriber: {:?}",
        &s.module.calls()[settled..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_bounded_and_cycles_leave_nothing_behind() {
    let s = setup("", &[]);
    let mut c = s.agent.trusted().await;
    // The bound.
    let mut subs = Vec::new();
    for _ in 0..8 {
        subs.push(subscribe(&mut c, &s).await);
    }
    let e = c
        .err("pkcs11.subscribeSlotEvents", s.params(json!({})), "BUSY")
        .await;
    assert!(e["message"].as_str().unwrap().contains("at most 8"), "{e}");
    for sub in &subs {
        c.ok("pkcs11.unsubscribeSlotEvents", json!({"subscription": sub}))
            .await;
    }
    // Bad params are typed errors.
    c.err(
        "pkcs11.subscribeSlotEvents",
        json!({"module": "/tmp/evil.so"}),
        "MODULE_NOT_ALLOWED",
    )
    .await;
    c.err(
        "pkcs11.unsubscribeSlotEvents",
        json!({"subscription": "x"}),
        "INVALID_PARAMS",
    )
    .await;

    // Warm up, then 1,000 cycles.
    for _ in 0..50 {
        let sub = subscribe(&mut c, &s).await;
        c.ok("pkcs11.unsubscribeSlotEvents", json!({"subscription": sub}))
            .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = s.agent.pid();
    let (rss, threads) = (rss_kib(pid), thread_count(pid));
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let sub = subscribe(&mut c, &s).await;
        seen.insert(sub);
        c.ok("pkcs11.unsubscribeSlotEvents", json!({"subscription": sub}))
            .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss2, threads2) = (rss_kib(pid), thread_count(pid));
    assert!(
        rss2 < rss + 2048,
        "RSS grew from {rss} KiB to {rss2} KiB over 1,000 cycles"
    );
    assert!(
        threads2 <= threads + 2,
        "threads grew from {threads} to {threads2}"
    );
    // Still serving, and no id came twice (ids are random, not a count: attacks_text.rs).
    let sub = subscribe(&mut c, &s).await;
    assert_eq!(seen.len(), 1000);
    assert!(!seen.contains(&sub), "{sub}");
}

fn thread_count(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}
