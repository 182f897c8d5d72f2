//! Regression tests for issue 19's findings 1 to 5: what one page could do to a library, and
//! so to every other site, through the module host. Each test reproduces a finding against the
//! real binary, a real SoftHSM token and (where a fault is needed) the fault module, and
//! failed on the agent before the fix. Time limits are shortened by the agent's config file so
//! that a failure shows in seconds, not minutes.

use futures_util::future::join_all;
use keyport_e2e::fault::FaultModule;
use keyport_e2e::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The agent's call time limit in these tests (`request_timeout_secs`).
const LIMIT_SECS: u64 = 5;

fn sign_params(slot: u64, module: &str, digest: &[u8]) -> Value {
    json!({"slot_id": slot, "cert_id": "02", "pin": PIN, "data": b64(digest),
           "algorithm_reference": "sha256", "module": module})
}

/// An agent on `token` with `module` allowed too (beside SoftHSM, the default), and a call
/// time limit of [`LIMIT_SECS`].
fn agent_with(token: &Token, module: Option<&str>) -> Agent {
    let config = config_file(
        token.dir.path(),
        &format!("request_timeout_secs = {LIMIT_SECS}\n"),
    );
    let mut args = vec!["--config", &config];
    if let Some(m) = module {
        args.extend(["--module", m]);
    }
    Agent::start(token, &args)
}

/// How many module hosts the agent started so far (its log says so once per start).
fn host_starts(agent: &Agent) -> usize {
    agent.log().matches("module host started").count()
}

/// Finding 1 (HIGH): an allowed page that mixes `pkcs11.certificates` (large replies: the
/// token holds 21 certificates) with `verifySignedData` whose `cert_id` is 200 KB of hex froze
/// the agent ⇄ host channel within seconds: every site then got REQUEST_TIMEOUT, and the
/// host was killed again and again. Now the id is refused at once, and the channel never
/// stalls (the soak test in `agent/tests/host_channel.rs` drives the channel itself far
/// harder).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_mixing_large_ids_and_certificate_lists_cannot_freeze_the_library() {
    let token = Token::provision();
    // 16 more certificates: the list's reply is several times a pipe buffer at once.
    let cert = token.dir.path().join("certs").join("ec-p256.der");
    for n in 0..16 {
        let status = std::process::Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", token.conf())
            .args([
                "--module",
                MODULE,
                "--token-label",
                "keyport-demo",
                "--login",
            ])
            .args(["--pin", PIN, "--write-object"])
            .arg(&cert)
            .args(["--type", "cert", "--id", &format!("{:02x}", 0x40 + n)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let agent = agent_with(&token, None);
    let slot = agent.trusted().await.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"finding 1");
    let huge_id = "ab".repeat(100_000);
    let until = Instant::now() + Duration::from_secs(12);
    let mut tasks = Vec::new();
    for n in 0..8 {
        let mut c = agent.client(Some(ALLOWED)).await;
        let (huge_id, digest) = (huge_id.clone(), digest.clone());
        tasks.push(tokio::spawn(async move {
            let mut calls = 0;
            while Instant::now() < until {
                // Eight requests in flight on each connection, answers read as they come.
                for k in 0..8 {
                    let request = if (n + k) % 2 == 0 {
                        json!({"jsonrpc": "2.0", "id": k, "method": "pkcs11.certificates",
                               "params": {"slot_id": slot}})
                    } else {
                        json!({"jsonrpc": "2.0", "id": k, "method": "pkcs11.verifySignedData",
                               "params": {"slot_id": slot, "cert_id": huge_id,
                                          "data": b64(&digest), "algorithm_reference": "sha256",
                                          "signature": b64(&[1u8; 64])}})
                    };
                    c.send_text(request.to_string()).await;
                }
                for _ in 0..8 {
                    let answer = c
                        .recv_within(Duration::from_secs(LIMIT_SECS + 5))
                        .await
                        .ok()
                        .flatten()
                        .expect("an answer within the time limit");
                    if let Some(certs) = answer["result"].as_array() {
                        assert_eq!(certs.len(), 21, "{answer}");
                    } else {
                        // An id of 100,000 bytes names no certificate: refused at once.
                        assert_eq!(
                            answer["error"]["data"]["reason"], "INVALID_PARAMS",
                            "{answer}"
                        );
                    }
                    calls += 1;
                }
            }
            calls
        }));
    }
    let calls: usize = join_all(tasks).await.into_iter().map(Result::unwrap).sum();
    assert!(calls > 40, "only {calls} calls in 12 s");
    assert_eq!(
        host_starts(&agent),
        1,
        "the host was restarted: {}",
        agent.log()
    );
}

/// Finding 2 (MEDIUM): a PIN-pad login holds the token while the person types (here 8 s, past
/// the 5 s call limit). Another page's `pkcs11.certificates` waited for it, timed out, and the
/// timeout killed the host: the person at the keypad got MODULE_CRASHED. Now reads of public
/// objects go on during the keypad wait, a signer that only waited gets TOKEN_BUSY in time, and
/// the keypad signature completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keypad_wait_is_not_cut_short_by_other_pages() {
    const KEYPAD_PIN: &str = "kpKeypad5528";
    let token = Token::provision_with_pin(KEYPAD_PIN);
    let module = FaultModule::new();
    module.set(&format!(
        "protected_auth_path=1\npinpad_pin={KEYPAD_PIN}\npinpad_delay_ms=8000"
    ));
    let m = module.path_str().to_string();
    let agent = agent_with(&token, Some(&m));
    let mut typist = agent.trusted().await;
    let slot = demo_slot(&mut typist, &m).await;
    let digest = sha("sha256", b"typed on the keypad");
    let keypad = {
        let (m, digest) = (m.clone(), digest.clone());
        tokio::spawn(async move {
            let params = json!({"slot_id": slot, "cert_id": "02", "data": b64(&digest),
                                "algorithm_reference": "sha256", "module": m});
            typist.call("pkcs11.signData", params).await
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Another site lists certificates while the person types: answered, and at once.
    let mut other = agent.client(Some(ALLOWED)).await;
    let started = Instant::now();
    let certs = other
        .ok("pkcs11.certificates", json!({"slot_id": slot, "module": m}))
        .await;
    assert_eq!(certs.as_array().unwrap().len(), 5, "{certs}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // A signer with a PIN must wait for the keypad: it is told TOKEN_BUSY before its limit.
    let mut signer = agent.trusted().await;
    let started = Instant::now();
    let e = signer
        .call(
            "pkcs11.signData",
            sign_params(slot, &m, &sha("sha256", b"x")),
        )
        .await
        .expect_err("the token is held by the keypad login");
    assert_eq!(e["data"]["reason"], "TOKEN_BUSY", "{e}");
    assert!(started.elapsed() < Duration::from_secs(LIMIT_SECS), "{e}");

    let sig = keypad.await.unwrap().expect("the keypad signature");
    assert!(token.verifies("ec-p256", "sha256", &digest, &sig));
    assert_eq!(host_starts(&agent), 1, "{}", agent.log());
}

/// Finding 2, second part: with a `C_Sign` hung in the library and 13 signers queued behind
/// it, another client's `pkcs11.info` found no free thread in the host and waited until the
/// host was killed. Now it is answered at once (the hung call still gets its host replaced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_signature_and_its_queue_leave_room_for_other_calls() {
    let (_store, faulty) = faulty_library();
    let token = Token::provision();
    let m = faulty.path_str().to_string();
    let agent = agent_with(&token, Some(&m));
    let slot = demo_slot(&mut agent.trusted().await, &m).await;
    faulty.set("sign=hang");
    let mut signers = Vec::new();
    for n in 0..14 {
        let mut c = agent.trusted().await;
        let m = m.clone();
        signers.push(tokio::spawn(async move {
            let digest = sha("sha256", format!("queued {n}").as_bytes());
            let _ = c
                .call("pkcs11.signData", sign_params(slot, &m, &digest))
                .await;
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut other = agent.client(Some(ALLOWED)).await;
    let started = Instant::now();
    other.ok("pkcs11.info", json!({"module": m})).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "pkcs11.info took {:?} behind a hung signature",
        started.elapsed()
    );
    faulty.set("");
    join_all(signers).await;
}

/// Finding 3 (MEDIUM): a library that crashes on a request was restarted without limit: one
/// page made 428 host restarts in 40 s. Now crashes on requests back off like crashes at
/// start, and the error says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_that_crashes_on_requests_is_not_restarted_in_a_loop() {
    let (_store, faulty) = faulty_library();
    let token = Token::provision();
    let m = faulty.path_str().to_string();
    let agent = agent_with(&token, Some(&m));
    let mut c = agent.client(Some(ALLOWED)).await;
    let slots = c.ok("pkcs11.slots", json!({"module": m})).await;
    let slot = slots[0]["slot_id"].as_u64().unwrap();
    faulty.set("token_info=segv");
    let until = Instant::now() + Duration::from_secs(8);
    let mut last = Value::Null;
    let mut requests = 0;
    while Instant::now() < until {
        last = c
            .call("pkcs11.token", json!({"slot_id": slot, "module": m}))
            .await
            .expect_err("the library crashes on C_GetTokenInfo");
        assert_eq!(last["data"]["reason"], "MODULE_CRASHED", "{last}");
        requests += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let starts = host_starts(&agent);
    assert!(requests > 50, "{requests}");
    // 1, then 5 at once, then after 1, 2 and 4 s: at most 9 in 8 s (there were hundreds).
    assert!(starts <= 9, "{starts} host starts for {requests} requests");
    let message = last["message"].as_str().unwrap();
    assert!(message.contains("next try is in"), "{last}");
    // The healthy library is untouched.
    c.ok("pkcs11.info", json!({})).await;
}

/// Finding 4 (MEDIUM): a batch on a slow token (150 ms a signature) hit the call limit after
/// as many signatures as fitted in it, and its host was killed. The limit is per signature now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_batch_on_a_slow_token_finishes() {
    let (store, faulty) = faulty_library();
    let token = Token::provision();
    let m = faulty.path_str().to_string();
    let agent = agent_with(&token, Some(&m));
    let mut c = agent.trusted().await;
    let slot = demo_slot(&mut c, &m).await;
    faulty.set("sign_delay_ms=150");
    // 60 signatures: 9 s, well past the 5 s limit.
    let digests: Vec<Vec<u8>> = (0..60)
        .map(|n| sha("sha256", format!("batch {n}").as_bytes()))
        .collect();
    let params = json!({"slot_id": slot, "cert_id": "02", "pin": PIN, "module": m,
        "algorithm_reference": "sha256", "data": digests.iter().map(|d| b64(d)).collect::<Vec<_>>()});
    let sigs = c
        .call("pkcs11.signDataBatch", params)
        .await
        .unwrap_or_else(|e| panic!("the batch failed: {e}"));
    let sigs = sigs.as_array().unwrap();
    assert_eq!(sigs.len(), digests.len());
    for (d, s) in digests.iter().zip(sigs) {
        assert!(store.verifies("ec-p256", "sha256", d, s));
    }
    assert_eq!(host_starts(&agent), 1, "{}", agent.log());
}

/// Finding 5 (MEDIUM): a trusted page opened and closed 12 connections in under a second,
/// each with 16 batches of 256 signatures: the host went on signing for ~25 s after the page
/// left, and another site's `pkcs11.info` timed out meanwhile. Now one origin has a bounded
/// number of requests in flight over all its connections (BUSY past it), work whose
/// connection is gone is dropped unrun, and the host is idle soon after the page leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_of_closed_connections_is_dropped_and_bounded_per_origin() {
    let token = Token::provision();
    let agent = Agent::start(&token, &[]);
    let slot = agent.trusted().await.slot_of("keyport-demo").await;
    let batch: Vec<String> = (0..256u32)
        .map(|n| b64(&sha("sha256", &n.to_be_bytes())))
        .collect();
    let mut busy = 0;
    for _ in 0..12 {
        let mut c = agent.trusted().await;
        for n in 0..16 {
            let request = json!({"jsonrpc": "2.0", "id": n, "method": "pkcs11.signDataBatch",
                "params": {"slot_id": slot, "cert_id": "01", "pin": PIN, "data": batch,
                           "algorithm_reference": "sha256"}});
            c.send_text(request.to_string()).await;
        }
        // Read what is answered at once (BUSY), then leave with the rest in flight.
        while let Ok(Some(msg)) = c.recv_within(Duration::from_millis(40)).await {
            if msg["error"]["data"]["reason"] == "BUSY" {
                busy += 1;
            }
        }
        drop(c);
    }
    // More than one origin's share was refused at once.
    assert!(
        busy >= 12 * 16 - 64,
        "only {busy} of 192 batches were refused"
    );
    let host = host_of(agent.pid(), "libsofthsm2.so").expect("the host runs");
    // Another site is answered while the rest of the work drains.
    let mut other = agent.client(Some(ALLOWED)).await;
    let started = Instant::now();
    other.ok("pkcs11.info", json!({})).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Whatever was in flight is done within a few seconds: then the host idles.
    let drained = eventually(Duration::from_secs(15), || {
        let before = cpu_ticks(host);
        std::thread::sleep(Duration::from_millis(500));
        cpu_ticks(host) - before <= 2
    })
    .await;
    assert!(
        drained,
        "the host still signs for connections that are gone"
    );
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
}

/// The agent's async thread never waits for a module host to start (review of issue 26's
/// quick path: asking whether a host was up took the lock a starting host holds, so one page's
/// first call to a slow library froze every other connection for the library's whole start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_starts_slowly_holds_up_no_other_request() {
    let (_store, faulty) = faulty_library();
    let token = Token::provision();
    let m = faulty.path_str().to_string();
    let agent = agent_with(&token, Some(&m));
    faulty.set("initialize_delay_ms=4000");
    let mut first = agent.trusted().await;
    let mut second = agent.trusted().await;
    let mut other = agent.trusted().await;
    let info = |id: u32| json!({"jsonrpc": "2.0", "id": id, "method": "pkcs11.info", "params": {"module": m}});
    // The first call starts the host (4 s in C_Initialize); the second asks for it meanwhile.
    first.send_text(info(1).to_string()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.send_text(info(2).to_string()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    other.ok("keyport.version", json!({})).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "keyport.version took {:?} while a host started",
        started.elapsed()
    );
    // Both calls are answered once the host is up, by the one host.
    for c in [&mut first, &mut second] {
        let reply = c
            .recv_within(Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply["result"]["manufacturer_id"], "SoftHSM", "{reply}");
    }
    assert_eq!(host_starts(&agent), 1, "{}", agent.log());
}
