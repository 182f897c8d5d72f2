//! The extension door end to end: the real `keyport` binary started as a browser starts a
//! native-messaging host (`keyport chrome-extension://ID/`), spoken to in the browsers' framing
//! on its stdin and stdout, relaying to a real agent on SoftHSM. The host finds the agent
//! through the person's configuration file, as an installed one does.

use keyport_e2e::desktop::{FakeNotifications, PrivateBus};
use keyport_e2e::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FAKE: &str = env!("CARGO_BIN_EXE_fake-notifications");
/// How Chrome starts the host (the extension's origin; the id is the pinned one).
const CALLER: &str = "chrome-extension://mchpggbacmbihpiigmfcmknhfdhpojoo/";
/// A PIN that cannot hide in a hex fingerprint or a port.
const SECRET_PIN: &str = "kp-host-pin-5821";

/// A `keyport` native-messaging host, as a browser runs it; killed on drop.
struct Host {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Frames read from its stdout (`None`: stdout ended or broke mid-frame).
    frames: Receiver<Option<Value>>,
    stderr: Arc<Mutex<String>>,
    /// Its log file (in the test's state folder).
    log_file: std::path::PathBuf,
}

impl Host {
    /// Start the host the way Chrome does, in the test's environment: the agent's address
    /// comes from the person's keyport.toml (written by [`find_agent_at`]).
    fn start(token: &Token) -> Host {
        let mut cmd = Command::new(keyport_bin());
        cmd.arg(CALLER);
        Agent::hermetic(token, &mut cmd);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn keyport as a host");
        let mut stdout = child.stdout.take().unwrap();
        let (tx, frames) = std::sync::mpsc::channel();
        std::thread::spawn(move || loop {
            let mut len = [0u8; 4];
            if stdout.read_exact(&mut len).is_err() {
                let _ = tx.send(None);
                return;
            }
            let mut body = vec![0u8; u32::from_ne_bytes(len) as usize];
            if stdout.read_exact(&mut body).is_err() {
                let _ = tx.send(None);
                return;
            }
            let value = serde_json::from_slice(&body).expect("the host wrote a JSON frame");
            if tx.send(Some(value)).is_err() {
                return;
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            sink.lock().unwrap().push_str(&text);
        });
        Host {
            stdin: child.stdin.take(),
            child,
            frames,
            stderr,
            log_file: token
                .dir
                .path()
                .join("state")
                .join("keyport")
                .join("native-host.log"),
        }
    }

    fn send_bytes(&mut self, body: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(&(body.len() as u32).to_ne_bytes())
            .and_then(|_| stdin.write_all(body))
            .and_then(|_| stdin.flush())
            .expect("write a frame to the host");
    }

    fn send(&mut self, msg: &Value) {
        self.send_bytes(msg.to_string().as_bytes());
    }

    fn hello(&mut self, origin: &str) -> Value {
        self.send(&json!({"keyport": "hello", "version": 1, "origin": origin}));
        self.recv()
    }

    /// The next frame (60 s at most: a signature waits for consent).
    fn recv(&mut self) -> Value {
        match self.frames.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(v)) => v,
            Ok(None) => panic!("the host's stdout ended; stderr: {}", self.stderr()),
            Err(_) => panic!("the host wrote nothing within 60 s"),
        }
    }

    /// Whether stdout ended (within `limit`) with nothing more on it.
    fn stdout_ends(&mut self, limit: Duration) -> bool {
        match self.frames.recv_timeout(limit) {
            Ok(None) | Err(RecvTimeoutError::Disconnected) => true,
            Ok(Some(v)) => panic!("expected the end, got {v}"),
            Err(RecvTimeoutError::Timeout) => false,
        }
    }

    /// Call `method` with a numeric `id`: the result, or the error object.
    fn call(&mut self, id: u64, method: &str, params: Value) -> Result<Value, Value> {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let answer = loop {
            let msg = self.recv();
            if msg.get("id").is_some() {
                break msg;
            }
        };
        assert_eq!(answer["id"], id, "{answer}");
        match answer.get("error") {
            Some(e) => Err(e.clone()),
            None => Ok(answer["result"].clone()),
        }
    }

    fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Everything the host logged: stderr and its log file.
    fn everything_logged(&self) -> String {
        let file = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        format!("{}\n{file}", self.stderr())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Point the person's configuration (which the host reads, as the agent does) at `port`.
fn find_agent_at(token: &Token, port: u16) {
    write(
        &user_file(token),
        &format!("listen = \"127.0.0.1:{port}\"\n"),
    );
}

fn sign_params(slot: u64, cert: &str, digest: &[u8]) -> Value {
    json!({"slot_id": slot, "cert_id": cert, "pin": SECRET_PIN, "data": b64(digest),
           "algorithm_reference": "sha256"})
}

/// The slot of the demo token, asked through the host.
fn demo_slot(host: &mut Host) -> u64 {
    let slots = host
        .call(90, "pkcs11.slotsWithTokenPresent", json!({}))
        .unwrap();
    for (n, s) in slots.as_array().unwrap().iter().enumerate() {
        let slot = s["slot_id"].as_u64().unwrap();
        let token = host
            .call(91 + n as u64, "pkcs11.token", json!({"slot_id": slot}))
            .unwrap();
        if token["label"] == "keyport-demo" {
            return slot;
        }
    }
    panic!("no demo token among {slots}");
}

#[tokio::test]
async fn the_host_relays_a_signature_with_the_pages_origin_and_ends_with_the_port() {
    let token = Token::provision_with_pin(SECRET_PIN);
    let bus = PrivateBus::start();
    let fake = FakeNotifications::start(FAKE, &bus, token.dir.path(), "allow", None);
    let mut args = BASE_ARGS.to_vec();
    args.push("--no-tray");
    let agent = Agent::start_raw(&token, &args, &[("DBUS_SESSION_BUS_ADDRESS", &bus.address)]);
    find_agent_at(&token, agent.port);

    let mut host = Host::start(&token);
    let ready = host.hello(ALLOWED);
    assert_eq!(
        ready,
        json!({"keyport": "ready", "agent": format!("ws://127.0.0.1:{}/", agent.port)})
    );
    assert!(
        agent
            .wait_for_log("door=\"extension\"", Duration::from_secs(5))
            .await
            || agent.log().contains("door=extension"),
        "the agent did not log the extension door: {}",
        agent.log()
    );

    let info = host.call(1, "pkcs11.info", json!({})).unwrap();
    assert!(
        info["manufacturer_id"]
            .as_str()
            .unwrap()
            .contains("SoftHSM"),
        "{info}"
    );
    let slot = demo_slot(&mut host);
    let certs = host
        .call(2, "pkcs11.certificates", json!({"slot_id": slot}))
        .unwrap();
    let ids: Vec<&str> = certs
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"01") && ids.contains(&"02"), "{certs}");

    for (n, (cert, name)) in [("01", "rsa-2048"), ("02", "ec-p256")].iter().enumerate() {
        let digest = sha(
            "sha256",
            format!("signed through the extension door {n}").as_bytes(),
        );
        let sig = host
            .call(
                3 + n as u64,
                "pkcs11.signData",
                sign_params(slot, cert, &digest),
            )
            .unwrap();
        assert!(
            token.verifies(name, "sha256", &digest, &sig),
            "openssl rejects the {name} signature made through the host"
        );
    }

    // The person was asked, and the prompt named the page's origin, as the browser gave it.
    let notes = fake.events("notify");
    assert_eq!(notes.len(), 2, "{notes:?}");
    for n in &notes {
        assert!(n["summary"].as_str().unwrap().contains(ALLOWED), "{n}");
        assert!(n["body"].as_str().unwrap().contains(ALLOWED), "{n}");
    }

    // The PIN passed through the host (a frame in, a WebSocket message out): no copy of it is
    // left in the host's memory once the answers are back (the port stays open, as a tab's
    // does). Control: the scan sees the page's origin there.
    let pid = host.child.id();
    assert!(
        memory_contains(pid, ALLOWED.as_bytes()),
        "the scan sees nothing"
    );
    let left = memory_regions_containing(pid, SECRET_PIN.as_bytes());
    assert!(
        left.is_empty(),
        "the PIN is still in the host's memory: {left:#?}"
    );

    // It started nothing, and it ends with the port: stdin closed, it exits.
    assert!(children(host.child.id()).is_empty());
    host.close_stdin();
    let status = host
        .wait_exit(Duration::from_secs(5))
        .expect("the host did not exit within 5 s of stdin closing");
    assert!(status.success(), "{status}: {}", host.stderr());
    assert!(host.stdout_ends(Duration::from_secs(2)));

    let logged = host.everything_logged();
    assert!(
        logged.contains("native host: done: the browser closed the port"),
        "{logged}"
    );
    assert!(
        std::fs::metadata(&host.log_file).is_ok_and(|m| m.len() > 0),
        "no log file at {}",
        host.log_file.display()
    );
    assert!(!logged.contains(SECRET_PIN), "the PIN is in the host's log");
    let (_, agent_log) = agent.stop();
    assert!(
        !agent_log.contains(SECRET_PIN),
        "the PIN is in the agent's log"
    );
    assert_eq!(
        agent_log.matches("signature made").count(),
        2,
        "{agent_log}"
    );
}

#[tokio::test]
async fn an_origin_the_agent_does_not_allow_is_refused_and_the_host_exits() {
    let token = Token::provision();
    let agent = Agent::start(&token, &[]);
    find_agent_at(&token, agent.port);

    let mut host = Host::start(&token);
    let refused = host.hello("https://not-allowed.example");
    assert_eq!(refused["keyport"], "error", "{refused}");
    assert_eq!(refused["reason"], "AGENT_UNAVAILABLE", "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("https://not-allowed.example") && message.contains("allow_origins"),
        "{message}"
    );
    let status = host.wait_exit(Duration::from_secs(5)).expect("host exits");
    assert!(!status.success());
    assert!(
        agent
            .wait_for_log("handshake refused", Duration::from_secs(5))
            .await
    );

    // An origin that is no web origin at all never reaches the agent.
    let mut host = Host::start(&token);
    let refused = host.hello("chrome-extension://abcdefghijklmnopabcdefghijklmnop");
    assert_eq!(refused["reason"], "AGENT_UNAVAILABLE", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("not a web origin"),
        "{refused}"
    );
    assert!(host.wait_exit(Duration::from_secs(5)).is_some());

    // What is not a hello is the extension's mistake.
    let mut host = Host::start(&token);
    host.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "pkcs11.info"}));
    let refused = host.recv();
    assert_eq!(refused["reason"], "INVALID_REQUEST", "{refused}");
    assert!(host.wait_exit(Duration::from_secs(5)).is_some());
}

#[tokio::test]
async fn a_stopped_agent_is_agent_unavailable_and_a_stopping_one_ends_the_host() {
    let token = Token::provision();
    let agent = Agent::start(&token, &[]);
    find_agent_at(&token, agent.port);

    // Connected, then the agent stops: the host ends (the browser sees the port close).
    let mut host = Host::start(&token);
    assert_eq!(host.hello(TRUSTED)["keyport"], "ready");
    assert!(host.call(1, "keyport.version", json!({})).is_ok());
    let (status, _) = agent.stop();
    assert!(status.success());
    let exited = host.wait_exit(Duration::from_secs(5));
    assert!(exited.is_some(), "the host outlived the agent's connection");
    assert!(host.stdout_ends(Duration::from_secs(2)));
    // The agent resets the connection as it stops (no closing handshake): either way, it ended.
    assert!(
        host.everything_logged().contains("done: the agent"),
        "{}",
        host.everything_logged()
    );

    // Nothing listens any more: the documented hello error.
    let mut host = Host::start(&token);
    let answer = host.hello(TRUSTED);
    assert_eq!(answer["keyport"], "error", "{answer}");
    assert_eq!(answer["reason"], "AGENT_UNAVAILABLE", "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("not running"),
        "{answer}"
    );
    assert!(host.wait_exit(Duration::from_secs(5)).is_some());
}

/// A certificate of about 900 KB (30 000 names): its `pkcs11.certificates` answer is over the
/// browsers' 1 MB once in base64, and under the agent's own 2 MiB.
fn add_big_certificate(token: &Token) {
    let dir = token.dir.path().join("big");
    std::fs::create_dir_all(&dir).unwrap();
    let mut conf = String::from(
        "[req]\ndistinguished_name=dn\nprompt=no\nx509_extensions=ext\n\
         [dn]\nCN=Keyport many names\n[ext]\nsubjectAltName=@alt\n[alt]\n",
    );
    for i in 0..30_000 {
        conf.push_str(&format!("DNS.{i}=host{i:05}.many-names.example\n"));
    }
    std::fs::write(dir.join("big.cnf"), conf).unwrap();
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "30"])
        .arg("-keyout")
        .arg(dir.join("big.key"))
        .arg("-config")
        .arg(dir.join("big.cnf"))
        .arg("-out")
        .arg(dir.join("big.pem"))
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl req failed");
    // pkcs11-tool reads at most a few KB of an object; GnuTLS's p11tool writes any size.
    let ok = Command::new("p11tool")
        .args([
            "--provider",
            MODULE,
            "--login",
            "--write",
            "--load-certificate",
        ])
        .arg(dir.join("big.pem"))
        .args([
            "--label",
            "many-names",
            "--id",
            "0b",
            "pkcs11:token=keyport-demo",
        ])
        .env("SOFTHSM2_CONF", token.conf())
        .env("GNUTLS_PIN", SECRET_PIN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run p11tool (Debian package gnutls-bin)")
        .success();
    assert!(ok, "p11tool --write failed");
}

#[tokio::test]
async fn messages_over_the_limits_become_errors_and_the_port_stays_open() {
    let token = Token::provision_with_pin(SECRET_PIN);
    add_big_certificate(&token);
    let agent = Agent::start(&token, &[]);
    find_agent_at(&token, agent.port);
    let mut host = Host::start(&token);
    assert_eq!(host.hello(TRUSTED)["keyport"], "ready");
    let slot = demo_slot(&mut host);

    // The same request over the WebSocket door: an answer the agent sends whole.
    let mut direct = agent.trusted().await;
    let whole = direct
        .ok("pkcs11.certificates", json!({"slot_id": slot}))
        .await;
    let size = whole.to_string().len();
    assert!(
        size > 1024 * 1024 && size < 2 * 1024 * 1024,
        "the answer is {size} bytes"
    );

    // Through the host it does not fit the browser's 1 MB: an error for its id.
    let err = host
        .call(7, "pkcs11.certificates", json!({"slot_id": slot}))
        .unwrap_err();
    assert_eq!(err["code"], -32007, "{err}");
    assert_eq!(err["data"]["reason"], "MESSAGE_TOO_LARGE", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("1048576"),
        "{err}"
    );

    // A request over the agent's max_message_bytes (256 KiB): refused as the agent refuses it.
    let big = json!({"jsonrpc": "2.0", "id": 8, "method": "keyport.version",
                     "params": {"padding": "x".repeat(300 * 1024)}});
    host.send(&big);
    let refused = host.recv();
    assert_eq!(refused["error"]["code"], -32007, "{refused}");
    assert_eq!(refused["id"], Value::Null, "{refused}");

    // The port still works.
    let version = host.call(9, "keyport.version", json!({})).unwrap();
    assert_eq!(version["protocol"], keyport_protocol::PROTOCOL_VERSION);
    host.close_stdin();
    assert!(host
        .wait_exit(Duration::from_secs(5))
        .is_some_and(|s| s.success()));
    assert!(host
        .everything_logged()
        .contains("over the browser's 1 MB limit"));
}

#[tokio::test]
async fn an_idle_port_answers_the_agents_pings_and_stays_open() {
    let token = Token::provision();
    // The agent pings every second and drops a peer silent for two intervals.
    write(&user_file(&token), "ping_interval_secs = 1\n");
    let agent = Agent::start(&token, &[]);
    write(
        &user_file(&token),
        &format!(
            "ping_interval_secs = 1\nlisten = \"127.0.0.1:{}\"\n",
            agent.port
        ),
    );
    let mut host = Host::start(&token);
    assert_eq!(host.hello(TRUSTED)["keyport"], "ready");
    // A page that keeps its port open without a request, as a tab that waits does.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let version = host.call(1, "keyport.version", json!({}));
    assert!(version.is_ok(), "{version:?}: {}", host.everything_logged());
    assert!(
        !agent.log().contains("no answer to pings"),
        "{}",
        agent.log()
    );
    host.close_stdin();
    assert!(host.wait_exit(Duration::from_secs(5)).is_some());
}
