//! The real smart-card path end to end: the real agent, OpenSC's PKCS #11 module, a private
//! pcscd with the vpcd virtual reader, and an emulated OpenPGP card that is inserted and
//! removed as a person would (`tests/pcsc/`, see its README). Nothing is faked between the
//! agent and the card's APDUs.
//!
//! Covered: the reader in `pkcs11.slots`; `inserted` / `removed` slot events (OpenSC has its
//! own `C_WaitForSlotEvent`, so the agent waits on it) with the tokens' labels; the precise
//! error for a token that left; signatures with the card's key, verified by openssl against the
//! certificate on the card, before and after the card was pulled and put back (the card forgets
//! a verified PIN when it loses power, so the signature after re-insertion shows the agent
//! logged in again by itself). All of it with OpenSC in a module host (the default) and in the
//! agent's own process. The card pulled and put back while nobody listened for events is
//! `opensc_card_put_back_while_nobody_listened_still_signs` (it failed until the agent asked
//! C_GetSlotInfo before retrying: OpenSC notices a swapped card only there).
//!
//! The card is provisioned once, before any agent runs: an RSA-2048 authentication key (ID 03,
//! on the token "OpenPGP card (User PIN)") made by the card, and a certificate for it stored
//! as the card's cardholder certificate, which OpenSC shows as ID 03 on the same token (the
//! agent signs only with a key that has a certificate of the same CKA_ID on its token; the
//! signature key, ID 01, is on the other token, where OpenSC 0.23 stores no certificate:
//! C_CreateObject there is CKR_FUNCTION_NOT_SUPPORTED).
//!
//! Needs root and the Debian packages of `tests/pcsc/README.md`; fails (does not skip) where
//! they are missing. Every wait is bounded and ends as soon as what it waits for happens.

use keyport_e2e::pcsc::{PcscStack, OPENSC, READER, SIG_TOKEN, USER_PIN, USER_TOKEN};
use keyport_e2e::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Generous: OpenSC sees a card about 0.5 s after pcscd does, a removal in 0.3 s.
const EVENT_LIMIT: Duration = Duration::from_secs(20);

/// The card's key and certificate: the authentication key, ID 03, on the first token.
const CERT_ID: &str = "03";

fn start_agent(token: &Token, stack: &PcscStack, extra: &[&str]) -> Agent {
    let mut args = BASE_ARGS.to_vec();
    args.extend_from_slice(&["--no-tray", "--module", OPENSC]);
    args.extend_from_slice(extra);
    let env = stack.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Agent::start_raw(token, &args, &env)
}

/// `extra` with `"module": OPENSC`.
fn opensc(extra: Value) -> Value {
    let mut p = json!({"module": OPENSC});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

fn sign_params(slot: u64, digest: &[u8]) -> Value {
    opensc(
        json!({"slot_id": slot, "cert_id": CERT_ID, "pin": USER_PIN, "data": b64(digest),
                  "algorithm_reference": "sha256"}),
    )
}

/// Sign `text`'s SHA-256 on `slot` and check the signature with openssl against `cert`.
async fn sign_and_verify(c: &mut Client, agent: &Agent, slot: u64, cert: &[u8], text: &str) {
    let digest = sha("sha256", text.as_bytes());
    let sig = match c.call("pkcs11.signData", sign_params(slot, &digest)).await {
        Ok(sig) => sig,
        Err(e) => panic!("signData ({text}) failed: {e}\nagent log:\n{}", agent.log()),
    };
    let sig = unb64(sig.as_str().expect("signData returns a base64 string"));
    assert_eq!(sig.len(), 256, "an RSA-2048 signature");
    assert!(
        openssl_verify(cert, "sha256", &digest, &sig),
        "openssl verifies the signature made {text} with the certificate on the card"
    );
}

/// Wait for `kind` events ("inserted" / "removed") for every token label in `labels`, each
/// within [`EVENT_LIMIT`]; returns label → slot id. Any other event meanwhile (the other kind,
/// another token, the same one twice) fails the test.
async fn expect_events(
    c: &mut Client,
    agent: &Agent,
    stack: &PcscStack,
    subscription: u64,
    kind: &str,
    labels: &[&str],
    since: Instant,
) -> BTreeMap<String, u64> {
    let mut seen = BTreeMap::new();
    while seen.len() < labels.len() {
        let Some(n) = c.notification_within(EVENT_LIMIT).await else {
            panic!(
                "no {kind} event within {EVENT_LIMIT:?} (have {seen:?}, want {labels:?})\n\
                 agent log:\n{}\n{}",
                agent.log(),
                stack.logs()
            );
        };
        assert_eq!(n["jsonrpc"], "2.0", "{n}");
        assert_eq!(n["method"], "pkcs11.slotEvent", "{n}");
        assert!(n.get("id").is_none(), "a notification has no id: {n}");
        assert_eq!(n["params"]["subscription"], subscription, "{n}");
        let e = &n["params"]["result"];
        assert_eq!(e["event"], kind, "expected only {kind} events: {n}");
        assert_eq!(e["module"], OPENSC, "{n}");
        let label = e["token_label"]
            .as_str()
            .unwrap_or_else(|| panic!("a {kind} event names the token: {n}"));
        assert!(labels.contains(&label), "an event for another token: {n}");
        let slot = e["slot_id"].as_u64().expect("slot_id");
        assert!(
            seen.insert(label.to_string(), slot).is_none(),
            "the same {kind} event twice: {n}"
        );
    }
    eprintln!(
        "{kind} events for {seen:?} {:?} after the card went {}",
        since.elapsed(),
        if kind == "inserted" { "in" } else { "out" }
    );
    seen
}

/// The slots of the vpcd reader, as `pkcs11.slots` lists them.
async fn reader_slots(c: &mut Client) -> Vec<Value> {
    let slots = c.ok("pkcs11.slots", opensc(json!({}))).await;
    slots
        .as_array()
        .expect("slots is an array")
        .iter()
        .filter(|s| s["description"].as_str().unwrap_or("").contains(READER))
        .cloned()
        .collect()
}

async fn tokens_present(c: &mut Client) -> Vec<u64> {
    c.ok("pkcs11.slotsWithTokenPresent", opensc(json!({})))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["slot_id"].as_u64().unwrap())
        .collect()
}

/// The slot of the OpenSC token labelled `label`.
async fn slot_of(c: &mut Client, label: &str) -> u64 {
    for slot in tokens_present(c).await {
        let info = c.ok("pkcs11.token", opensc(json!({"slot_id": slot}))).await;
        if info["label"] == label {
            return slot;
        }
    }
    panic!("no OpenSC token labelled {label}");
}

fn isolation_config(stack: &PcscStack, isolation: bool) -> String {
    let config = stack.tmp.path().join(format!("keyport-{isolation}.toml"));
    std::fs::write(&config, format!("module_isolation = {isolation}\n")).unwrap();
    config.to_str().unwrap().to_string()
}

/// The card (provisioned, out of the reader) as a page sees it through an agent that runs
/// OpenSC in a module host (`isolation`) or in its own process: reader, events, errors for
/// the token that left, signatures before and after re-insertion. Leaves the card out.
async fn card_through_the_agent(stack: &PcscStack, token: &Token, cert: &[u8], isolation: bool) {
    let config = isolation_config(stack, isolation);
    let agent = start_agent(token, stack, &["--config", &config]);
    let mut c = agent.trusted().await;

    // The reader is there, empty.
    let slots = reader_slots(&mut c).await;
    assert!(
        !slots.is_empty(),
        "no {READER} slot in {}\nagent log:\n{}",
        c.ok("pkcs11.slots", opensc(json!({}))).await,
        agent.log()
    );
    for s in &slots {
        assert_eq!(
            s["flags"].as_u64().unwrap() & 1,
            0,
            "no card, no CKF_TOKEN_PRESENT: {s}"
        );
    }
    assert_eq!(tokens_present(&mut c).await, Vec::<u64>::new());

    let sub = c
        .ok("pkcs11.subscribeSlotEvents", opensc(json!({})))
        .await
        .as_u64()
        .expect("a subscription id");

    // In: both of the card's tokens arrive, with their labels.
    let t = Instant::now();
    stack.insert_openpgp();
    let inserted = expect_events(
        &mut c,
        &agent,
        stack,
        sub,
        "inserted",
        &[USER_TOKEN, SIG_TOKEN],
        t,
    )
    .await;
    let slot = inserted[USER_TOKEN];
    let slots = reader_slots(&mut c).await;
    for (label, id) in &inserted {
        let s = slots
            .iter()
            .find(|s| s["slot_id"] == *id)
            .unwrap_or_else(|| panic!("{label}'s slot {id} is not a {READER} slot: {slots:?}"));
        assert_eq!(s["flags"].as_u64().unwrap() & 1, 1, "{s}");
    }
    let mut present = tokens_present(&mut c).await;
    present.sort();
    let mut expected: Vec<u64> = inserted.values().copied().collect();
    expected.sort();
    assert_eq!(present, expected);
    let info = c.ok("pkcs11.token", opensc(json!({"slot_id": slot}))).await;
    assert_eq!(info["label"], USER_TOKEN, "{info}");
    assert_eq!(info["slot_id"], slot, "{info}");
    let certs = c
        .ok("pkcs11.certificates", opensc(json!({"slot_id": slot})))
        .await;
    assert!(
        certs
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == CERT_ID && e["base64"] == b64(cert)),
        "the certificate written to the card, as ID {CERT_ID}: {certs}"
    );
    sign_and_verify(&mut c, &agent, slot, cert, "first").await;

    // Out: both tokens leave; asking about the one that left says so precisely.
    let t = Instant::now();
    stack.remove_card();
    let removed = expect_events(
        &mut c,
        &agent,
        stack,
        sub,
        "removed",
        &[USER_TOKEN, SIG_TOKEN],
        t,
    )
    .await;
    assert_eq!(removed, inserted, "the same slots leave");
    assert_eq!(tokens_present(&mut c).await, Vec::<u64>::new());
    c.err(
        "pkcs11.token",
        opensc(json!({"slot_id": slot})),
        "TOKEN_NOT_PRESENT",
    )
    .await;
    c.err(
        "pkcs11.certificates",
        opensc(json!({"slot_id": slot})),
        "TOKEN_NOT_PRESENT",
    )
    .await;
    c.err(
        "pkcs11.signData",
        sign_params(slot, &sha("sha256", b"absent")),
        "TOKEN_NOT_PRESENT",
    )
    .await;

    // In again (same card, same keys): the agent logs in again by itself.
    let t = Instant::now();
    stack.insert_openpgp();
    let again = expect_events(
        &mut c,
        &agent,
        stack,
        sub,
        "inserted",
        &[USER_TOKEN, SIG_TOKEN],
        t,
    )
    .await;
    assert_eq!(again, inserted, "the card comes back in the same slots");
    sign_and_verify(&mut c, &agent, slot, cert, "after re-insertion").await;
    sign_and_verify(&mut c, &agent, slot, cert, "once more").await;

    assert!(
        c.ok("pkcs11.unsubscribeSlotEvents", json!({"subscription": sub}))
            .await
            == true
    );
    drop(c);
    let (status, log) = agent.stop();
    assert!(status.success(), "agent exit: {status}\n{log}");
    stack.remove_card();
}

/// A page subscribed to slot events, with OpenSC in a module host (the default) and in the
/// agent's own process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opensc_on_a_real_pcsc_stack_reports_card_events_and_signs_across_reinsertion() {
    let started = Instant::now();
    let stack = PcscStack::start();
    // The card gets its key and certificate before any agent runs, then leaves the reader.
    stack.insert_openpgp();
    let cert = stack.provision_openpgp();
    stack.remove_card();
    let token = Token::provision();
    for isolation in [true, false] {
        card_through_the_agent(&stack, &token, &cert, isolation).await;
    }
    eprintln!("took {:?}", started.elapsed());
}

/// Nobody listening for events: the agent signs, the card is pulled and put back behind its
/// back, and the next signature must still work: the agent meets OpenSC's dead sessions and
/// login itself, and no stale-handle error reaches the page.
///
/// Ignored until the agent is fixed: with OpenSC 0.23 the page gets TOKEN_NOT_PRESENT, request
/// after request, although the card is in the reader and `pkcs11.token` for the same slot
/// succeeds; it recovers only once something makes the agent call `C_GetSlotList` or
/// `C_GetSlotInfo` (a `pkcs11.slots` request, or a slot-event subscription). OpenSC notices a
/// card that was swapped only there (its `card_detect`, at most once a second per slot);
/// `C_GetTokenInfo`, which the agent's stale-handle check calls, still succeeds on the old
/// card state, and the retry's `C_Login` fails with CKR_DEVICE_REMOVED again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opensc_card_put_back_while_nobody_listened_still_signs() {
    let stack = PcscStack::start();
    stack.insert_openpgp();
    let cert = stack.provision_openpgp();
    let token = Token::provision();
    for isolation in [true, false] {
        let config = isolation_config(&stack, isolation);
        let agent = start_agent(&token, &stack, &["--config", &config]);
        let mut c = agent.trusted().await;
        let slot = slot_of(&mut c, USER_TOKEN).await;
        sign_and_verify(&mut c, &agent, slot, &cert, "before").await;
        stack.remove_card();
        stack.insert_openpgp();
        sign_and_verify(
            &mut c,
            &agent,
            slot,
            &cert,
            "after an unobserved re-insertion",
        )
        .await;
        assert_eq!(c.buffered_notifications(), 0, "nobody subscribed");
        drop(c);
        let (status, log) = agent.stop();
        assert!(status.success(), "agent exit: {status}\n{log}");
    }
}
