//! Regression tests for what an attack on the release agent found (issue 8): each test
//! reproduces a finding against the real binary and a real SoftHSM token, and failed on the
//! agent before the fix.

use keyport_e2e::fault::FaultModule;
use keyport_e2e::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WRONG: &str = "kpWrongPin0000";

fn sign_params(slot: u64, id: &str, pin: &str, module: &str, digest: &[u8]) -> Value {
    json!({"slot_id": slot, "cert_id": id, "pin": pin, "data": b64(digest),
           "algorithm_reference": "sha256", "module": module})
}

/// Right-PIN signers through `right`, wrong-PIN signers through `wrong`, and a client holding
/// sessions open with `pkcs11.certificates`, all at once. A wrong PIN must never sign; every
/// right-PIN signature must verify (openssl).
async fn contest(token: &Token, agent: &Agent, right: &str, wrong: &str, rounds: usize) {
    let slot = agent.trusted().await.slot_of("keyport-demo").await;
    let cert = token.cert_der("ec-p256");
    let mut tasks = Vec::new();
    for n in 0..2 {
        let mut c = agent.trusted().await;
        let (cert, module) = (cert.clone(), right.to_string());
        tasks.push(tokio::spawn(async move {
            for round in 0..rounds {
                let digest = sha("sha256", format!("right {n} {round}").as_bytes());
                let params = sign_params(slot, "02", PIN, &module, &digest);
                match c.call("pkcs11.signData", params).await {
                    Ok(sig) => assert!(
                        openssl_verify(&cert, "sha256", &digest, &unb64(sig.as_str().unwrap())),
                        "right PIN, round {round}: a signature that does not verify"
                    ),
                    Err(e) => panic!("right PIN, round {round}: {e}"),
                }
            }
        }));
    }
    for n in 0..2 {
        let mut c = agent.trusted().await;
        let module = wrong.to_string();
        tasks.push(tokio::spawn(async move {
            for round in 0..rounds {
                let digest = sha("sha256", format!("wrong {n} {round}").as_bytes());
                let params = sign_params(slot, "02", WRONG, &module, &digest);
                match c.call("pkcs11.signData", params).await {
                    Ok(sig) => panic!("the wrong PIN signed (round {round}): {sig}"),
                    Err(e) => {
                        assert_eq!(e["data"]["reason"], "PIN_INCORRECT", "round {round}: {e}")
                    }
                }
            }
        }));
    }
    let mut holder = agent.trusted().await;
    let module = right.to_string();
    let hold = tokio::spawn(async move {
        loop {
            holder
                .ok(
                    "pkcs11.certificates",
                    json!({"slot_id": slot, "module": module}),
                )
                .await;
        }
    });
    for t in tasks {
        t.await.unwrap();
    }
    hold.abort();
}

/// Finding 1a: the allowlist names one library twice (a path and a symlink to it). Before, each
/// path had its own login lock and a wrong PIN signed when its login met the other path's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_pin_never_signs_through_a_second_path_to_the_same_library() {
    let token = Token::provision();
    let dir = tempfile::tempdir().unwrap();
    let alias = dir.path().join("libsofthsm2-alias.so");
    std::os::unix::fs::symlink(MODULE, &alias).unwrap();
    let alias = alias.to_str().unwrap();
    let agent = Agent::start(&token, &["--module", alias]);
    contest(&token, &agent, MODULE, alias, 40).await;
    // Both paths are one module: one load, and the wrong PIN was never cached for either.
    let log = agent.log();
    assert_eq!(log.matches("PKCS #11 module loaded").count(), 1, "{log}");
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    for module in [MODULE, alias] {
        c.err(
            "pkcs11.signData",
            sign_params(slot, "02", WRONG, module, &[7; 32]),
            "PIN_INCORRECT",
        )
        .await;
    }
}

/// Finding 1b: `C_Logout` fails while another session is open. Before, the next `C_Login`
/// answered CKR_USER_ALREADY_LOGGED_IN, taken as success: the wrong PIN signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_pin_never_signs_when_the_module_fails_to_log_out() {
    let token = Token::provision();
    let module = FaultModule::new();
    module.set("logout=device_error");
    let agent = Agent::start(&token, &["--module", module.path_str()]);
    contest(&token, &agent, module.path_str(), module.path_str(), 25).await;
    assert!(
        module
            .calls()
            .iter()
            .any(|l| l == "C_Logout rv=0x30 (injected)"),
        "the fault never happened: {:?}",
        module.calls()
    );
}

/// Finding 2: every made-up slot id used to leave ~285 bytes of state behind, for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn made_up_slot_ids_leave_no_state_behind() {
    let token = Token::provision();
    let agent = Agent::start(&token, &[]);
    let pid = agent.pid();
    async fn flood(agent: &Agent, from: u64, count: u64) {
        let mut tasks = Vec::new();
        for k in 0..4u64 {
            let mut c = agent.trusted().await;
            tasks.push(tokio::spawn(async move {
                let mut n = from + k;
                while n < from + count {
                    let slot = 1_000_000_000 + n;
                    let (method, params) = match n % 3 {
                        0 => ("pkcs11.certificates", json!({"slot_id": slot})),
                        1 => (
                            "pkcs11.signData",
                            json!({"slot_id": slot, "cert_id": "01", "pin": PIN,
                                   "data": b64(&[1; 32]), "algorithm_reference": "sha256"}),
                        ),
                        _ => (
                            "pkcs11.verifySignedData",
                            json!({"slot_id": slot, "cert_id": "01", "data": b64(&[1; 32]),
                                   "algorithm_reference": "sha256", "signature": "AAAA"}),
                        ),
                    };
                    c.err(method, params, "SLOT_NOT_FOUND").await;
                    n += 4;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    flood(&agent, 0, 4_000).await;
    let before = rss_kib(pid);
    tokio::time::timeout(Duration::from_secs(120), flood(&agent, 4_000, 40_000))
        .await
        .expect("40,000 requests answered within 2 minutes");
    let after = rss_kib(pid);
    eprintln!("RSS before {before} KiB, after 40,000 made-up slot ids {after} KiB");
    // Before the fix: ~11,000 KiB more (285 bytes an id).
    assert!(
        after < before + 4_096,
        "RSS grew from {before} to {after} KiB"
    );
}

/// Finding 3 (the size of what is echoed): an id of 100 KB was echoed in every answer.
#[tokio::test]
async fn every_request_with_an_id_is_answered_and_huge_ids_are_not_echoed() {
    let token = Token::provision();
    let agent = Agent::start(&token, &[]);
    let mut c = agent.trusted().await;
    let huge = format!("\"{}\"", "i".repeat(100_000));
    for (id, echoed) in [
        ("-7", json!(-7)),
        ("1.5", json!(1.5)),
        ("\"abc\"", json!("abc")),
        ("true", Value::Null),
        ("{\"a\": 1}", Value::Null),
        ("[1, 2]", Value::Null),
        (huge.as_str(), Value::Null),
    ] {
        c.send_text(format!(
            r#"{{"jsonrpc": "2.0", "id": {id}, "method": "pkcs11.info"}}"#
        ))
        .await;
        let r = c
            .recv_within(Duration::from_secs(10))
            .await
            .unwrap_or_else(|_| panic!("no answer for id {:.20}", id))
            .expect("connection open");
        assert_eq!(r["id"], echoed, "id {:.20}: {r}", id);
        if echoed.is_null() {
            assert_eq!(r["error"]["code"], -32600, "{r}");
        } else {
            assert!(r["result"].is_object(), "{r}");
        }
    }
}

/// Finding 3: a client that sends requests and never reads the answers made the agent hold
/// them all (1.7 GB in 4 s). Now its connection is closed past a bound and memory stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answers_is_disconnected() {
    let token = Token::provision();
    let mut agent = Agent::start(&token, &[]);
    let pid = agent.pid();
    let slot = agent.trusted().await.slot_of("keyport-demo").await;
    let before = rss_kib(pid);
    let mut c = agent.trusted().await;
    let id = "x".repeat(200);
    let request = json!({"jsonrpc": "2.0", "id": id, "method": "pkcs11.certificates",
                         "params": {"slot_id": slot, "parse_certs": true}})
    .to_string();
    let mut peak = before;
    let sending = tokio::time::timeout(Duration::from_secs(90), async {
        for n in 0.. {
            if !c.try_send_text(request.clone()).await {
                return n;
            }
            if n % 200 == 0 {
                peak = peak.max(rss_kib(pid));
            }
        }
        unreachable!()
    })
    .await;
    let sent = sending.expect("the agent kept reading requests whose answers nobody read");
    eprintln!("closed after {sent} requests; RSS {before} KiB, peak {peak} KiB");
    assert!(
        peak < before + 64 * 1024,
        "RSS grew from {before} to {peak} KiB"
    );
    assert!(agent.is_running());
    agent.trusted().await.ok("pkcs11.info", json!({})).await;
    let (_, log) = agent.stop();
    assert!(!log.contains("panicked"), "{log}");
}

/// Finding 4: the `module` a page sends was logged in full, at every request.
#[tokio::test]
async fn what_a_page_sends_is_logged_cut_short_and_the_log_file_is_capped() {
    let token = Token::provision();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keyport.log");
    let agent = Agent::start(&token, &["--log-file", file.to_str().unwrap()]);
    let mut c = agent.trusted().await;
    let module = format!("/{}", "m".repeat(200_000));
    for _ in 0..400 {
        c.err(
            "pkcs11.info",
            json!({"module": module}),
            "MODULE_NOT_ALLOWED",
        )
        .await;
    }
    let (_, log) = agent.stop();
    let on_disk = std::fs::metadata(&file).unwrap().len();
    eprintln!("stderr {} bytes, file {on_disk} bytes", log.len());
    // Before: 400 × 200 KB = 80 MB.
    assert!(log.len() < 512 * 1024, "stderr got {} bytes", log.len());
    assert!(on_disk < 512 * 1024, "the log file has {on_disk} bytes");
    assert!(
        log.contains("(200001 bytes)"),
        "not cut with its length:\n{log:.2000}"
    );
}

/// Finding 5: with stderr gone (EPIPE), logging panicked inside the request: no answer came,
/// although the token had signed.
#[tokio::test]
async fn a_broken_stderr_never_loses_an_answer() {
    let token = Token::provision();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(keyport_bin());
    cmd.args([
        "--listen",
        &listen,
        "--module",
        MODULE,
        "--trust-origin",
        TRUSTED,
        "--no-tray",
    ]);
    Agent::hermetic(&token, &mut cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Whoever read the log went away: every write to stderr now fails with EPIPE.
    drop(child.stderr.take());
    let url = format!("ws://{listen}");
    let mut c = connect_when_up(&url, Some(TRUSTED)).await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"stderr is gone");
    for (pin, slot) in [(PIN, slot), (WRONG, slot), (PIN, 999_999)] {
        c.send_text(
            json!({"jsonrpc": "2.0", "id": 1, "method": "pkcs11.signData",
                   "params": {"slot_id": slot, "cert_id": "02", "pin": pin,
                              "data": b64(&digest), "algorithm_reference": "sha256"}})
            .to_string(),
        )
        .await;
        let r = c
            .recv_within(Duration::from_secs(15))
            .await
            .expect("an answer")
            .expect("the connection stays open");
        if pin == PIN && slot != 999_999 {
            assert!(
                token.verifies("ec-p256", "sha256", &digest, &r["result"]),
                "{r}"
            );
        } else {
            assert!(r["error"]["data"]["reason"].is_string(), "{r}");
        }
    }
    assert!(child.try_wait().unwrap().is_none(), "the agent died");
    let _ = child.kill();
    let _ = child.wait();
}

/// Connect, retrying while the agent starts (for agents whose ready line cannot be read).
async fn connect_when_up(url: &str, origin: Option<&str>) -> Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Client::connect(url, origin).await {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("the agent never listened: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Finding 10: the ready line's `println!` panicked when stdout was closed or full.
#[tokio::test]
async fn the_agent_starts_with_a_closed_or_full_stdout() {
    let token = Token::provision();
    for full in [false, true] {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(keyport_bin());
        cmd.args(["--listen", &listen, "--module", MODULE, "--no-tray"]);
        Agent::hermetic(&token, &mut cmd);
        let stdout = if full {
            Stdio::from(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            )
        } else {
            Stdio::piped()
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let url = format!("ws://{listen}");
        connect_when_up(&url, None).await;
        // The ready line comes right after the listener: give a failing agent time to die.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            child.try_wait().unwrap().is_none(),
            "full={full}: the agent died"
        );
        let mut c = Client::connect(&url, None).await.expect("still listening");
        c.ok("pkcs11.info", json!({})).await;
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Finding 6: one origin could hold every WebSocket connection.
#[tokio::test]
async fn one_origin_cannot_take_every_connection() {
    let token = Token::provision();
    let agent = Agent::start(&token, &[]);
    let mut mine = Vec::new();
    for _ in 0..16 {
        mine.push(agent.client(Some(ALLOWED)).await);
    }
    let err = Client::connect(&agent.url, Some(ALLOWED))
        .await
        .expect_err("a 17th connection from one origin");
    assert_eq!(handshake_status(&err), Some(429), "{err}");
    // Others still get in, and the 16 still work.
    agent.trusted().await.ok("pkcs11.info", json!({})).await;
    mine[15].ok("pkcs11.info", json!({})).await;
    drop(mine.pop());
    // A place freed is a place again (the close is seen by the agent shortly after).
    let deadline = Instant::now() + Duration::from_secs(10);
    while Client::connect(&agent.url, Some(ALLOWED)).await.is_err() {
        assert!(Instant::now() < deadline, "the freed place never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Finding 6: plain-HTTP keep-alive connections never timed out and idle sockets were never
/// closed.
#[tokio::test]
async fn plain_http_and_idle_sockets_are_closed() {
    let token = Token::provision();
    // The default handshake timeout (10 s).
    let agent = Agent::start(&token, &[]);
    let addr = format!("127.0.0.1:{}", agent.port);

    // A GET that asks for keep-alive is answered, then its socket is closed.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: keep-alive\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .expect("the agent closed the plain-HTTP connection");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 404"));

    // Sockets that say nothing are closed after the handshake timeout...
    let idle: Vec<std::net::TcpStream> = (0..40)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    // ...and meanwhile WebSockets open as usual.
    agent.trusted().await.ok("pkcs11.info", json!({})).await;
    let started = Instant::now();
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(_) => {}
            Err(e) => panic!("an idle socket stayed open: {e}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(15));
}

/// Finding 6: at the open-file limit, `accept` failed at once, again and again: 100% CPU.
#[tokio::test]
async fn accept_backs_off_when_out_of_file_descriptors() {
    let token = Token::provision();
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nofile=40:40").arg(keyport_bin()).args([
        "--listen",
        "127.0.0.1:0",
        "--module",
        MODULE,
        "--trust-origin",
        TRUSTED,
        "--no-tray",
    ]);
    let agent = Agent::start_command(&token, cmd, &[]);
    let pid = agent.pid();
    let addr = format!("127.0.0.1:{}", agent.port);
    // More sockets than the agent has descriptors: the rest wait in the listen backlog.
    let held: Vec<std::net::TcpStream> = (0..80)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ticks = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks(pid) - ticks;
    eprintln!("CPU over 2 s at the descriptor limit: {used} ticks");
    // Spinning takes a whole core: ~200 ticks in 2 s.
    assert!(used < 40, "{used} ticks of CPU in 2 s");
    assert!(agent.log().contains("accept failed"), "{}", agent.log());
    drop(held);
    // Once descriptors are free again the agent serves.
    let mut c = connect_when_up(&agent.url, Some(TRUSTED)).await;
    c.ok("pkcs11.info", json!({})).await;
}

/// Finding 6: a peer that answers no ping is closed (it used to stay forever).
#[tokio::test]
async fn a_peer_that_answers_no_ping_is_closed() {
    let token = Token::provision();
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "ping_interval_secs = 1\n");
    let agent = Agent::start(&token, &["--config", &config]);
    let mut c = agent.trusted().await;
    c.ok("pkcs11.info", json!({})).await;
    // Not reading means not answering pings (the client answers them as it reads).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        c.recv_within(Duration::from_secs(10)).await,
        Ok(None),
        "the silent peer was not disconnected"
    );
    assert!(
        agent.log().contains("no answer to pings"),
        "{}",
        agent.log()
    );
}

/// Finding 7: one connection with hung token calls held every blocking thread (its in-flight
/// bound equalled the pool); another client's `pkcs11.info` then timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_token_calls_of_one_connection_cannot_starve_the_others() {
    let token = Token::provision();
    let module = FaultModule::new();
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        "request_timeout_secs = 1\nmodule_isolation = false\n",
    );
    let agent = Agent::start(
        &token,
        &["--module", module.path_str(), "--config", &config],
    );
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    module.set("sign=hang");
    for id in 1..=16 {
        c.send_text(
            json!({"jsonrpc": "2.0", "id": id, "method": "pkcs11.signData",
                   "params": sign_params(slot, "02", PIN, module.path_str(), &[3; 32])})
            .to_string(),
        )
        .await;
    }
    let mut reasons = Vec::new();
    for _ in 1..=16 {
        let r = c.recv().await.expect("an answer");
        reasons.push(r["error"]["data"]["reason"].as_str().unwrap().to_string());
    }
    // The hung one times out; those queued behind it for the token are told TOKEN_BUSY and
    // give their threads back (issue 19); none is left unanswered.
    assert!(
        reasons
            .iter()
            .all(|r| r == "BUSY" || r == "REQUEST_TIMEOUT" || r == "TOKEN_BUSY"),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r == "REQUEST_TIMEOUT"),
        "{reasons:?}"
    );
    // Nobody else waits for the stuck call.
    let mut other = agent.trusted().await;
    let started = Instant::now();
    other.ok("pkcs11.info", json!({})).await;
    other.ok("pkcs11.slots", json!({})).await;
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// Finding 8: an Origin header that is not ASCII (a look-alike `е`) was taken for no Origin at
/// all, and under `--no-origin trust` it signed without a prompt.
#[tokio::test]
async fn an_unreadable_origin_header_is_refused() {
    let token = Token::provision();
    let agent = Agent::start(&token, &["--no-origin", "trust"]);
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = agent.url.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        "Origin",
        http_value("https://\u{435}vil.example".as_bytes()),
    );
    let err = tokio_tungstenite::connect_async(req)
        .await
        .expect_err("an unreadable Origin connected");
    assert_eq!(handshake_status(&err), Some(403), "{err}");
    // Control: no Origin at all is a local program, trusted here.
    agent.client(None).await.ok("pkcs11.info", json!({})).await;
}

fn http_value(bytes: &[u8]) -> tokio_tungstenite::tungstenite::http::HeaderValue {
    tokio_tungstenite::tungstenite::http::HeaderValue::from_bytes(bytes).unwrap()
}

/// Finding 9: copies of PINs stayed in the agent's memory after their connections closed,
/// even of a PIN whose request was refused before it reached the token.
#[tokio::test]
async fn no_pin_stays_in_memory_after_its_connection_closes() {
    let (good, wrong, refused, malformed) = (
        "kpMemGood8372x",
        "kpMemWrong5519x",
        "kpMemRefused2291x",
        "kpMemBroken7730x",
    );
    let token = Token::provision_with_pin(good);
    let agent = Agent::start(&token, &[]);
    let pid = agent.pid();
    {
        let mut c = agent.trusted().await;
        let slot = c.slot_of("keyport-demo").await;
        let d = sha("sha256", b"memory");
        c.ok("pkcs11.signData", sign_params(slot, "02", good, MODULE, &d))
            .await;
        c.err(
            "pkcs11.signData",
            sign_params(slot, "02", wrong, MODULE, &d),
            "PIN_INCORRECT",
        )
        .await;
        let mut bad = sign_params(slot, "02", malformed, MODULE, &d);
        bad["data"] = json!("!!");
        c.err("pkcs11.signData", bad, "INVALID_PARAMS").await;
        // No prompt can be shown here: refused before the token.
        let mut page = agent.client(Some(ALLOWED)).await;
        page.err(
            "pkcs11.signData",
            sign_params(slot, "02", refused, MODULE, &d),
            "CONSENT_UNAVAILABLE",
        )
        .await;
    }
    // The connections are closed; give the agent a moment to tear them down.
    // The agent and its module hosts (a PIN crosses into the host inside a sign request).
    let mut pids = vec![pid];
    pids.extend(child_pids(pid));
    assert!(pids.len() >= 2, "no module host to scan: {pids:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let found = loop {
        let found: Vec<(&str, Vec<String>)> = [good, wrong, refused, malformed]
            .into_iter()
            .map(|p| {
                let regions = pids
                    .iter()
                    .flat_map(|pid| memory_regions_containing(*pid, p.as_bytes()))
                    .collect::<Vec<_>>();
                (p, regions)
            })
            .filter(|(_, regions)| !regions.is_empty())
            .collect();
        if found.is_empty() || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Control: the scan does see the agent's memory.
    assert!(
        memory_contains(pid, TRUSTED.as_bytes()),
        "the memory scan found nothing at all"
    );
    assert!(
        found.is_empty(),
        "PINs still in the agent's memory: {found:#?}"
    );
}

/// The processes whose parent is `pid` (the agent's module hosts).
fn child_pids(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                let rest = &stat[stat.rfind(')').unwrap() + 2..];
                rest.split_whitespace().nth(1) == Some(pid.to_string().as_str())
            })
        })
        .collect()
}

/// Finding 10: a PIN of a length the token cannot accept still logged the token out (dropping
/// everyone's login) before it was refused.
#[tokio::test]
async fn a_pin_of_impossible_length_leaves_the_login_alone() {
    let token = Token::provision();
    let module = FaultModule::new();
    module.set("");
    let agent = Agent::start(&token, &["--module", module.path_str()]);
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    let m = module.path_str();
    c.ok("pkcs11.signData", sign_params(slot, "02", PIN, m, &[1; 32]))
        .await;
    let count = |what: &str| {
        module
            .calls()
            .iter()
            .filter(|l| l.starts_with(what))
            .count()
    };
    let (logouts, logins) = (count("C_Logout"), count("C_Login"));
    c.err(
        "pkcs11.signData",
        sign_params(slot, "02", &"9".repeat(300), m, &[1; 32]),
        "PIN_LEN_RANGE",
    )
    .await;
    c.ok("pkcs11.signData", sign_params(slot, "02", PIN, m, &[2; 32]))
        .await;
    assert_eq!(count("C_Logout"), logouts, "{:?}", module.calls());
    assert_eq!(
        count("C_Login"),
        logins,
        "logged in again: {:?}",
        module.calls()
    );
}

/// Finding 10: `RUST_LOG=jsonrpsee-server=trace` (the library's own target name) was not capped:
/// raw requests, PINs in them, reached the log.
#[tokio::test]
async fn trace_logging_never_shows_a_pin() {
    let secret = "kpTraceSecret4417";
    let token = Token::provision_with_pin(secret);
    let agent = Agent::start_raw(
        &token,
        &[
            "--listen",
            "127.0.0.1:0",
            "--module",
            MODULE,
            "--trust-origin",
            TRUSTED,
            "--no-tray",
        ],
        &[(
            "RUST_LOG",
            "trace,jsonrpsee-server=trace,jsonrpsee_server=trace",
        )],
    );
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    c.ok(
        "pkcs11.signData",
        sign_params(slot, "02", secret, MODULE, &[5; 32]),
    )
    .await;
    c.err(
        "pkcs11.signData",
        json!({"slot_id": slot, "cert_id": "02", "pin": secret, "data": "!!",
               "algorithm_reference": "sha256"}),
        "INVALID_PARAMS",
    )
    .await;
    let (_, log) = agent.stop();
    assert!(
        log.contains("TRACE keyport"),
        "not at trace level:\n{log:.3000}"
    );
    assert!(
        !log.contains("log lines dropped"),
        "lines were dropped, the check would be void"
    );
    assert!(!log.contains(secret), "the PIN is in the trace log");
}
