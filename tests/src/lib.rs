//! Harness for the end-to-end tests: a SoftHSM2 token made by `scripts/provision-token.sh` in a
//! temporary folder, the real `keyport` binary started against it, a JSON-RPC client over a real
//! WebSocket, and an independent verifier (the `openssl` command line).
//!
//! The `keyport` binary is `target/<profile>/keyport` beside the test executable (`cargo test
//! --workspace` builds it), or `$KEYPORT_BIN`.

pub mod counts;
pub mod desktop;
pub mod fault;
pub mod pcsc;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// Distinctive so that "the PIN is not in the log" cannot fail on a timestamp or a port that
/// happens to contain it (a 4-digit PIN did, in CI).
pub const PIN: &str = "kpTestPin7301";
pub const TRUSTED: &str = "https://trusted.example";
pub const ALLOWED: &str = "https://allowed.example";

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A private SoftHSM2 token store (one per agent: SoftHSM's file store is not safe for several
/// processes at once when one of them writes, e.g. a wrong PIN updating the token's flags) with
/// the demo token (RSA-2048 id 01, P-256 id 02, P-384 id 03, P-521 id 04, a certificate without
/// a key id 09) and an empty token.
pub struct Token {
    pub dir: tempfile::TempDir,
}

impl Token {
    pub fn provision() -> Token {
        Self::provision_with_pin(PIN)
    }

    pub fn provision_with_pin(pin: &str) -> Token {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new(workspace_root().join("scripts/provision-token.sh"))
            .arg(dir.path())
            .arg(pin)
            .status()
            .expect("run scripts/provision-token.sh");
        assert!(status.success(), "provisioning the SoftHSM token failed");
        Token { dir }
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    /// Whether openssl verifies `signature` (the base64 string signData returned) over `digest`
    /// with the public key of the certificate `name` written at provisioning.
    pub fn verifies(&self, name: &str, alg: &str, digest: &[u8], signature: &Value) -> bool {
        let sig = unb64(
            signature
                .as_str()
                .expect("signData returns a base64 string"),
        );
        openssl_verify(&self.cert_der(name), alg, digest, &sig)
    }

    /// The DER certificate written at provisioning (e.g. `rsa-2048`, `ec-p256`, `ec-p384`).
    pub fn cert_der(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join("certs").join(format!("{name}.der"))).unwrap()
    }
}

pub fn keyport_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KEYPORT_BIN") {
        return PathBuf::from(p);
    }
    // Tests run from target/<profile>/deps/, binaries such as the benchmark from target/<profile>/.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    let candidates = [dir.join("keyport"), dir.parent().unwrap().join("keyport")];
    match candidates.iter().find(|p| p.exists()) {
        Some(p) => p.clone(),
        None => panic!(
            "{} not built: run `cargo build -p keyport` (or cargo test --workspace)",
            candidates[1].display()
        ),
    }
}

/// A running `keyport` process; killed on drop.
pub struct Agent {
    pub child: Child,
    pub url: String,
    pub port: u16,
    stderr: Option<std::thread::JoinHandle<()>>,
    /// Everything logged so far (stderr), line by line as it arrives.
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

/// The flags every test agent starts with: any free port, SoftHSM allowed, `TRUSTED` trusted and
/// `ALLOWED` allowed.
pub const BASE_ARGS: [&str; 8] = [
    "--listen",
    "127.0.0.1:0",
    "--module",
    MODULE,
    "--trust-origin",
    TRUSTED,
    "--allow-origin",
    ALLOWED,
];

impl Agent {
    /// Start with [`BASE_ARGS`], no tray, plus `extra` flags.
    pub fn start(token: &Token, extra: &[&str]) -> Agent {
        let mut args = BASE_ARGS.to_vec();
        args.push("--no-tray");
        args.extend_from_slice(extra);
        Self::start_raw(token, &args, &[])
    }

    pub fn start_raw(token: &Token, args: &[&str], env: &[(&str, &str)]) -> Agent {
        let mut cmd = Command::new(keyport_bin());
        cmd.args(args);
        Self::start_command(token, cmd, env)
    }

    /// Start `cmd` (the agent, or a wrapper that runs it, such as `prlimit`) with the test
    /// environment, and wait for its ready line.
    pub fn start_command(token: &Token, mut cmd: Command, env: &[(&str, &str)]) -> Agent {
        Self::hermetic(token, &mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn keyport");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = log.clone();
        let stderr = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(i) = line.find("ws://") {
                    let _ = tx.send(line[i..].split_whitespace().next().unwrap().to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("agent printed no ready line");
        let port = url
            .rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .parse()
            .unwrap();
        Agent {
            child,
            url,
            port,
            stderr: Some(stderr),
            log,
        }
    }

    /// Hermetic: no desktop of the person running the tests (no prompt pops up on it, no tray),
    /// remembered sites in the test's own folder, the test token.
    pub fn hermetic(token: &Token, cmd: &mut Command) {
        cmd.env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env("XDG_STATE_HOME", token.dir.path().join("state"))
            // Neither the person's nor the administrator's configuration of this machine.
            .env("XDG_CONFIG_HOME", token.dir.path().join("config"))
            .env(
                "KEYPORT_SYSTEM_CONFIG",
                token.dir.path().join("etc-keyport").join("keyport.toml"),
            )
            .env("SOFTHSM2_CONF", token.conf())
            .env("RUST_LOG", "keyport=debug,info")
            // Prompts in English whatever the machine's language (a test sets its own).
            .env("LANG", "C.UTF-8")
            .env_remove("LANGUAGE")
            .env_remove("LC_ALL")
            .env_remove("LC_MESSAGES");
    }

    /// Stop with SIGTERM and return everything the agent logged.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        unsafe_kill_term(self.child.id());
        let status = wait_timeout(&mut self.child, Duration::from_secs(10))
            .expect("agent did not exit after SIGTERM");
        self.stderr.take().unwrap().join().unwrap();
        let log = self.log.lock().unwrap().clone();
        (status, log)
    }

    /// Wait until the agent has logged `text` (at most `limit`); returns whether it did.
    pub async fn wait_for_log(&self, text: &str, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if self.log.lock().unwrap().contains(text) {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the agent logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub async fn client(&self, origin: Option<&str>) -> Client {
        Client::connect(&self.url, origin).await.expect("connect")
    }

    pub async fn trusted(&self) -> Client {
        self.client(Some(TRUSTED)).await
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill_term(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A sequential JSON-RPC client over a real WebSocket.
#[derive(Debug)]
pub struct Client {
    ws: Ws,
    next_id: u64,
    /// Notifications (messages without an `id`) that arrived while waiting for an answer.
    notifications: std::collections::VecDeque<Value>,
}

/// Why a handshake failed: the HTTP status, if the server answered.
pub fn handshake_status(err: &tokio_tungstenite::tungstenite::Error) -> Option<u16> {
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => Some(resp.status().as_u16()),
        _ => None,
    }
}

impl Client {
    pub async fn connect(
        url: &str,
        origin: Option<&str>,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        Self::connect_with(url, origin, None).await
    }

    /// Connect with an explicit `Host` header (to test DNS-rebinding defence).
    pub async fn connect_with(
        url: &str,
        origin: Option<&str>,
        host: Option<&str>,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut req = url.into_client_request()?;
        if let Some(o) = origin {
            req.headers_mut().insert("Origin", o.parse().unwrap());
        }
        if let Some(h) = host {
            req.headers_mut().insert("Host", h.parse().unwrap());
        }
        // A handshake the agent never answers is a failure, not a test that hangs.
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(30),
            tokio_tungstenite::connect_async(req),
        )
        .await
        .expect("the agent did not finish the WebSocket handshake within 30 s")?;
        Ok(Client {
            ws,
            next_id: 1,
            notifications: Default::default(),
        })
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// The next text message within `limit`: `Ok(None)` when the connection closed, `Err(())`
    /// when nothing came in time.
    pub async fn recv_within(&mut self, limit: Duration) -> Result<Option<Value>, ()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Err(()),
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return Ok(None),
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Ok(Some(
                        serde_json::from_str(t.as_str()).expect("agent sent JSON"),
                    ))
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The next notification (a message with a `method` and no `id`) within `limit`, or None.
    /// Anything else that arrives meanwhile is a test failure.
    pub async fn notification_within(&mut self, limit: Duration) -> Option<Value> {
        if let Some(n) = self.notifications.pop_front() {
            return Some(n);
        }
        match self.recv_within(limit).await {
            Ok(Some(msg)) => {
                assert!(
                    msg.get("id").is_none() && msg.get("method").is_some(),
                    "expected a notification, got {msg}"
                );
                Some(msg)
            }
            Ok(None) => panic!("the connection closed while waiting for a notification"),
            Err(()) => None,
        }
    }

    /// Notifications already received (while waiting for answers) and not yet taken.
    pub fn buffered_notifications(&self) -> usize {
        self.notifications.len()
    }

    /// Send a message without waiting (e.g. while not reading answers); false if it failed.
    pub async fn try_send_text(&mut self, text: String) -> bool {
        self.ws.send(Message::text(text)).await.is_ok()
    }

    /// The next text message, or None when the connection closed.
    pub async fn recv(&mut self) -> Option<Value> {
        loop {
            match tokio::time::timeout(Duration::from_secs(60), self.ws.next())
                .await
                .expect("agent answered within 60 s")?
            {
                Ok(Message::Text(t)) => {
                    return Some(serde_json::from_str(t.as_str()).expect("agent sent JSON"))
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Call a method: Ok(result) or Err(error object).
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_text(
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        )
        .await;
        let resp = loop {
            let msg = self
                .recv()
                .await
                .expect("connection closed before the answer");
            if msg.get("id").is_none() && msg.get("method").is_some() {
                self.notifications.push_back(msg);
                continue;
            }
            break msg;
        };
        assert_eq!(resp["id"], id, "answer to another request: {resp}");
        match resp.get("error") {
            Some(e) => Err(e.clone()),
            None => Ok(resp["result"].clone()),
        }
    }

    /// Call method `M` with typed params; the answer is read as `M::Result` (a protocol type),
    /// the error as the raw error object.
    pub async fn call_typed<M: keyport_protocol::Method>(
        &mut self,
        params: &M::Params,
    ) -> Result<M::Result, Value> {
        let params = serde_json::to_value(params).expect("params serialise");
        self.call(M::NAME, params).await.map(|v| {
            serde_json::from_value(v.clone()).unwrap_or_else(|e| {
                panic!(
                    "{}: the answer {v} is not the protocol's result type: {e}",
                    M::NAME
                )
            })
        })
    }

    pub async fn ok(&mut self, method: &str, params: Value) -> Value {
        match self.call(method, params).await {
            Ok(v) => v,
            Err(e) => panic!("{method} failed: {e}"),
        }
    }

    /// Call and expect an error with this reason; returns the error object.
    pub async fn err(&mut self, method: &str, params: Value, reason: &str) -> Value {
        match self.call(method, params.clone()).await {
            Ok(v) => panic!("{method}({params}) succeeded with {v}, expected {reason}"),
            Err(e) => {
                assert_eq!(e["data"]["reason"], reason, "{method}({params}): {e}");
                let code = keyport_protocol::ErrorReason::ALL
                    .iter()
                    .find(|r| r.as_str() == reason)
                    .map(|r| r.code())
                    .unwrap();
                assert_eq!(e["code"], code, "{e}");
                e
            }
        }
    }

    /// The slot id of the token with this label.
    pub async fn slot_of(&mut self, label: &str) -> u64 {
        use keyport_protocol::{ModuleParams, SlotsWithTokenPresent, Token, TokenParams};
        let slots = self
            .call_typed::<SlotsWithTokenPresent>(&ModuleParams::default())
            .await
            .expect("slots");
        for s in slots {
            let params = TokenParams {
                slot_id: s.slot_id,
                module: None,
            };
            let token = self.call_typed::<Token>(&params).await.expect("token");
            if token.label == label {
                return s.slot_id;
            }
        }
        panic!("no token labelled {label}");
    }
}

/// The resident memory of a process, in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// CPU time a process has used (user + system), in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces, inside parentheses).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// A TCP port that was free a moment ago (for tests that cannot read the agent's ready line).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `needle` occurs anywhere in the writable memory of process `pid` (root or the
/// parent may read `/proc/PID/mem`).
pub fn memory_contains(pid: u32, needle: &[u8]) -> bool {
    !memory_regions_containing(pid, needle).is_empty()
}

/// The lines of `/proc/PID/maps` whose memory holds `needle`, each with the offset of the first
/// match and what surrounds it (to tell a read buffer from a stack when a secret is found).
/// Only writable mappings are read: a secret received at run time cannot be anywhere else, and
/// reading the large read-only file mappings would make the scan slow.
pub fn memory_regions_containing(pid: u32, needle: &[u8]) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("open /proc/PID/mem");
    let finder = memchr::memmem::Finder::new(needle);
    let mut found = Vec::new();
    let mut buf = Vec::new();
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
            continue;
        };
        if !perms.starts_with("rw") || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        buf.resize((end - start) as usize, 0);
        if mem.seek(SeekFrom::Start(start)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        if let Some(at) = finder.find(&buf) {
            let around = &buf[at.saturating_sub(160)..(at + needle.len() + 96).min(buf.len())];
            found.push(format!(
                "{line} (+{at:#x} of {:#x}): {}",
                buf.len(),
                String::from_utf8_lossy(around).escape_debug()
            ));
        }
    }
    found
}

pub fn sha(alg: &str, data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    match alg {
        "sha1" => sha1::Sha1::digest(data).to_vec(),
        "sha256" => sha2::Sha256::digest(data).to_vec(),
        "sha384" => sha2::Sha384::digest(data).to_vec(),
        "sha512" => sha2::Sha512::digest(data).to_vec(),
        other => panic!("unknown algorithm {other}"),
    }
}

/// DER-encode a raw r||s ECDSA signature (for openssl).
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Vec<u8> {
    fn int(bytes: &[u8]) -> Vec<u8> {
        let mut b: Vec<u8> = bytes.iter().copied().skip_while(|&x| x == 0).collect();
        if b.is_empty() || b[0] & 0x80 != 0 {
            b.insert(0, 0);
        }
        let mut out = vec![0x02];
        out.extend(der_len(b.len()));
        out.extend(b);
        out
    }
    fn der_len(n: usize) -> Vec<u8> {
        if n < 0x80 {
            vec![n as u8]
        } else if n < 0x100 {
            vec![0x81, n as u8]
        } else {
            vec![0x82, (n >> 8) as u8, n as u8]
        }
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let body = [int(r), int(s)].concat();
    let mut out = vec![0x30];
    out.extend(der_len(body.len()));
    out.extend(body);
    out
}

/// Verify with the openssl command line and the certificate's public key: the independent check.
/// RSA: PKCS #1 v1.5 over the DigestInfo of `alg`. EC: raw r||s over the digest.
pub fn openssl_verify(cert_der: &[u8], alg: &str, digest: &[u8], signature: &[u8]) -> bool {
    openssl_verify_as(cert_der, alg, digest, signature, Encoding::Plain)
}

/// How a signature given to [`openssl_verify_as`] was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// RSA PKCS #1 v1.5; ECDSA raw r||s (converted to DER for openssl here).
    Plain,
    /// RSA-PSS, MGF1 with the digest's hash, salt as long as the digest.
    Pss,
    /// ECDSA already DER, given to openssl as it is.
    Der,
}

/// [`openssl_verify`] for a signature made as `encoding` says.
pub fn openssl_verify_as(
    cert_der: &[u8],
    alg: &str,
    digest: &[u8],
    signature: &[u8],
    encoding: Encoding,
) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("cert.der"), cert_der).unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(p("cert.der"))
        .args(["-pubkey", "-noout"])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(p("pub.pem"), &out.stdout).unwrap();
    let pem = String::from_utf8_lossy(&out.stdout).to_string();
    let is_ec = Command::new("openssl")
        .args(["pkey", "-pubin", "-noout", "-text", "-in"])
        .arg(p("pub.pem"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("ASN1 OID"))
        .unwrap();
    assert!(pem.contains("PUBLIC KEY"));
    let sig = if is_ec && encoding != Encoding::Der {
        ecdsa_raw_to_der(signature)
    } else {
        signature.to_vec()
    };
    std::fs::write(p("sig"), sig).unwrap();
    std::fs::write(p("digest"), digest).unwrap();
    let mut cmd = Command::new("openssl");
    cmd.args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(p("pub.pem"))
        .arg("-in")
        .arg(p("digest"))
        .arg("-sigfile")
        .arg(p("sig"));
    if !is_ec {
        cmd.args(["-pkeyopt", &format!("digest:{alg}")]);
        if encoding == Encoding::Pss {
            cmd.args([
                "-pkeyopt",
                "rsa_padding_mode:pss",
                "-pkeyopt",
                "rsa_pss_saltlen:digest",
                "-pkeyopt",
                &format!("rsa_mgf1_md:{alg}"),
            ]);
        }
    }
    let out = cmd.output().unwrap();
    out.status.success()
}

/// A TOML config file `keyport.toml` in `dir` with `text`; returns its path.
pub fn config_file(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("keyport.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// The processes whose parent is `pid`, with their state letter (`Z` for a zombie).
pub fn children(pid: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f[1].parse::<u32>() == Ok(pid) {
            out.push((child, f[0].chars().next().unwrap()));
        }
    }
    out
}

/// The host of the library `module` among `pid`'s children.
pub fn host_of(pid: u32, module: &str) -> Option<u32> {
    children(pid).into_iter().map(|(p, _)| p).find(|p| {
        std::fs::read(format!("/proc/{p}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(module))
    })
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s[s.rfind(')').unwrap() + 2..].starts_with('Z'))
        .unwrap_or(false)
}

/// Wait until `cond` holds (at most `limit`).
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    cond()
}

// Shared by the end-to-end files that set up files, libraries and commands.

pub fn admin_file(token: &Token) -> PathBuf {
    token.dir.path().join("etc-keyport").join("keyport.toml")
}

pub fn user_file(token: &Token) -> PathBuf {
    token
        .dir
        .path()
        .join("config")
        .join("keyport")
        .join("keyport.toml")
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Run `keyport ARGS` to the end (a command, or an agent that must refuse to start): exit
/// code, stdout, stderr.
pub fn run(token: &Token, args: &[&str]) -> (i32, String, String) {
    run_with_env(token, args, &[])
}

/// [`run`] with `env` set over the test environment.
pub fn run_with_env(token: &Token, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(keyport_bin());
    cmd.args(args);
    Agent::hermetic(token, &mut cmd);
    cmd.envs(env.iter().copied());
    let out = cmd.stdin(Stdio::null()).output().expect("run keyport");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn config_line<'a>(report: &'a str, key: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in\n{report}"))
}

/// The demo token's slot as `module` sees it.
pub async fn demo_slot(c: &mut Client, module: &str) -> u64 {
    let slots = c
        .ok("pkcs11.slotsWithTokenPresent", json!({"module": module}))
        .await;
    for s in slots.as_array().unwrap() {
        let id = s["slot_id"].as_u64().unwrap();
        let t = c
            .ok("pkcs11.token", json!({"slot_id": id, "module": module}))
            .await;
        if t["label"] == "keyport-demo" {
            return id;
        }
    }
    panic!("no demo token behind {module}");
}

/// A fault module on a token store of its own (two SoftHSM processes must not share one).
pub fn faulty_library() -> (Token, fault::FaultModule) {
    let store = Token::provision();
    let faulty = fault::FaultModule::for_store(&store.conf());
    (store, faulty)
}
