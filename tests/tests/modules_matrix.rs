//! The compatibility matrix (docs/MODULES.md): the PKCS #11 libraries people have, each through
//! the real agent, configured from Keyport's file alone, both in a module host and in the
//! agent's own process. For each: it loads, lists its slots and tokens, lists the token's
//! certificates, signs (every signature verified by openssl against the certificate), survives
//! a removal where it can (the token leaves: TOKEN_NOT_PRESENT; it comes back: it signs again),
//! and `keyport doctor` and `keyport modules` describe it.
//!
//! The rows:
//! * SoftHSM 2.6 (PKCS #11 2.40);
//! * OpenSC's `pkcs11-spy.so` wrapping SoftHSM, its target set by `module_env` (and what happens
//!   without it, or with `module_isolation = false`);
//! * p11-kit's `p11-kit-proxy.so` (every module registered with p11-kit behind one library);
//! * p11-kit's `p11-kit-client.so` reaching SoftHSM served by `p11-kit server` on a Unix socket
//!   (a token on another machine, its socket forwarded; docs/MODULES.md), and the server going
//!   away and coming back;
//! * the fault module: exporting only `C_GetFunctionList`; the `-v3` build serving its 3.0
//!   interface; its `C_GetInterface` answering CKR_FUNCTION_NOT_SUPPORTED, or CKR_DEVICE_ERROR
//!   (each signs through `C_GetFunctionList`: the vendored cryptoki's fallback);
//! * with the emulated OpenPGP card on the private PC/SC stack (root; `tests/pcsc/`): OpenSC 0.23's
//!   `opensc-pkcs11.so` (3.0 interface) and `onepin-opensc-pkcs11.so`, `pkcs11-spy.so` wrapping
//!   OpenSC, and p11-kit's proxy again, now with the card beside SoftHSM's tokens.
//!
//! Each row prints its line of the matrix to stderr (`MATRIX | ...`; `--nocapture` shows them).
//! The PC/SC rows fail (they do not skip) where the stack cannot run; every wait is bounded.

use keyport_e2e::fault::FaultModule;
use keyport_e2e::pcsc::{PcscStack, OPENSC, USER_PIN, USER_TOKEN};
use keyport_e2e::*;
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SPY: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so";
const ONEPIN: &str = "/usr/lib/x86_64-linux-gnu/onepin-opensc-pkcs11.so";
const PROXY: &str = "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so";
const CLIENT: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so";
/// The SoftHSM token every SoftHSM row signs on (scripts/provision-token.sh).
const DEMO: &str = "keyport-demo";
/// How long a token may take to leave or come back (OpenSC sees a card in ~0.5 s).
const LIMIT: Duration = Duration::from_secs(15);

/// A key to sign with: its certificate's CKA_ID (hex) and DER.
struct Key {
    id: &'static str,
    cert: Vec<u8>,
}

/// The SoftHSM token's RSA-2048 (01) and P-256 (02) keys.
fn demo_keys(token: &Token) -> Vec<Key> {
    vec![
        Key {
            id: "01",
            cert: token.cert_der("rsa-2048"),
        },
        Key {
            id: "02",
            cert: token.cert_der("ec-p256"),
        },
    ]
}

/// How a row takes its token away and brings it back, if it can.
enum Removal<'a> {
    /// Not this library's to do; why.
    None(&'static str),
    /// The fault module hides its tokens as a pulled card does (and closes their sessions):
    /// `conf` is the row's own control lines, kept throughout.
    Fault(&'a FaultModule, &'a str),
    /// The emulated card leaves the reader.
    Card(&'a PcscStack),
    /// `p11-kit server` stops and starts again on the same socket.
    Server(&'a mut P11KitServer),
}

/// One row of the matrix.
struct Library<'a> {
    name: &'a str,
    path: String,
    /// Variables the library needs: `module_env = ["NAME=VALUE"]` for its module host; in the
    /// agent's own process (where `module_env` cannot set them) the agent's environment.
    env: Vec<(String, String)>,
    /// Variables the agent gets in both modes (e.g. the PC/SC socket, a private HOME).
    agent_env: Vec<(String, String)>,
    /// The start of what `C_GetInfo` says: manufacturer and description.
    maker: &'a str,
    token: &'a str,
    pin: &'a str,
    keys: Vec<Key>,
}

impl Library<'_> {
    fn new<'a>(
        name: &'a str,
        path: &str,
        maker: &'a str,
        token: &'a str,
        pin: &'a str,
        keys: Vec<Key>,
    ) -> Library<'a> {
        Library {
            name,
            path: path.to_string(),
            env: Vec::new(),
            agent_env: Vec::new(),
            maker,
            token,
            pin,
            keys,
        }
    }

    /// Keyport's file for this library: it alone configures the library.
    fn config(&self, dir: &Path, isolation: bool) -> String {
        let mut text = format!(
            "modules = [{:?}]\nmodule_isolation = {isolation}\n",
            self.path
        );
        if isolation && !self.env.is_empty() {
            let entries: Vec<String> = self
                .env
                .iter()
                .map(|(k, v)| format!("{:?}", format!("{k}={v}")))
                .collect();
            text.push_str(&format!("module_env = [{}]\n", entries.join(", ")));
        }
        let path = dir.join(format!("keyport-{isolation}.toml"));
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// `keyport ARGS` with this library's configuration, as the person would run it.
    fn command(&self, token: &Token, config: &str, isolation: bool, args: &[&str]) -> Command {
        let mut cmd = Command::new(keyport_bin());
        cmd.args(["--config", config, "--trust-origin", TRUSTED])
            .args(args);
        Agent::hermetic(token, &mut cmd);
        // Nothing the test runner's own environment holds for these libraries reaches them.
        for var in ["PKCS11SPY", "PKCS11SPY_OUTPUT", "P11_KIT_SERVER_ADDRESS"] {
            cmd.env_remove(var);
        }
        cmd.envs(self.agent_env.iter().map(|(k, v)| (k, v)));
        if !isolation {
            cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        }
        cmd
    }
}

/// What a run of the agent found, for the matrix line.
struct Found {
    cryptoki: String,
    version: String,
    slots: usize,
    certs: usize,
    /// What the removal did.
    removal: String,
}

/// The row through a running agent: load, slots and tokens, certificates, signatures, the
/// removal. Returns what it found.
async fn through_agent(
    lib: &Library<'_>,
    token: &Token,
    dir: &Path,
    isolation: bool,
    removal: &mut Removal<'_>,
) -> Found {
    let mode = if isolation {
        "module host"
    } else {
        "in process"
    };
    let config = lib.config(dir, isolation);
    let cmd = lib.command(
        token,
        &config,
        isolation,
        &["--listen", "127.0.0.1:0", "--no-tray"],
    );
    let agent = Agent::start_command(token, cmd, &[]);
    let mut c = agent.trusted().await;
    let what = format!("{} ({mode})", lib.name);

    let info = match c.call("pkcs11.info", json!({})).await {
        Ok(info) => info,
        Err(e) => panic!("{what}: pkcs11.info: {e}\nagent log:\n{}", agent.log()),
    };
    let says = format!(
        "{} {}",
        info["manufacturer_id"].as_str().unwrap(),
        info["library_description"].as_str().unwrap()
    );
    assert!(
        says.starts_with(lib.maker),
        "{what}: C_GetInfo says {says:?}: {info}"
    );
    if isolation {
        // The host is started with the library's canonical path.
        let canonical = std::fs::canonicalize(&lib.path).unwrap();
        assert!(
            host_of(agent.pid(), canonical.to_str().unwrap()).is_some(),
            "{what}: no module host runs the library"
        );
    } else {
        assert!(
            children(agent.pid()).is_empty(),
            "{what}: no module host in process"
        );
    }

    let slots = c.ok("pkcs11.slots", json!({})).await;
    let slots = slots.as_array().expect("slots").len();
    let slot = slot_labelled(&mut c, lib.token).await.unwrap_or_else(|| {
        panic!(
            "{what}: no token {:?}\nagent log:\n{}",
            lib.token,
            agent.log()
        )
    });
    let certs = certificates(&mut c, lib, slot, &what).await;
    sign_each(&mut c, lib, slot, &what, "first").await;

    let mut removal_outcome = match removal {
        Removal::None(why) => format!("n/a ({why})"),
        _ => "leaves (TOKEN_NOT_PRESENT) and comes back (signs)".to_string(),
    };
    match removal {
        Removal::None(_) => {}
        Removal::Fault(module, conf) => {
            module.set(&format!("{conf}\nhide_tokens=1\ntoken_epoch=1"));
            gone(&mut c, lib, slot, &what).await;
            module.set(&format!("{conf}\ntoken_epoch=1"));
            back(&mut c, lib, &what).await;
        }
        Removal::Card(stack) => {
            stack.remove_card();
            gone(&mut c, lib, slot, &what).await;
            stack.insert_openpgp();
            back(&mut c, lib, &what).await;
        }
        Removal::Server(server) => {
            server.stop();
            // The library is still there; its token is not: calls fail at once (none hangs)
            // with the library's error, and the agent stays up.
            let e = c
                .call("pkcs11.token", json!({"slot_id": slot}))
                .await
                .expect_err("the token's server is gone");
            assert_eq!(e["data"]["reason"], "DEVICE_ERROR", "{what}: {e}");
            server.start();
            // p11-kit-client (0.24) connects in C_Initialize only: the same library stays cut
            // off until it is initialised again (a new module host, a new agent), which the
            // next runs of this row do. Measured, not required: a client that reconnects
            // would be welcome.
            removal_outcome = match c.call("pkcs11.slotsWithTokenPresent", json!({})).await {
                Ok(_) => {
                    back(&mut c, lib, &what).await;
                    "the server stops (DEVICE_ERROR) and comes back".into()
                }
                Err(e) => {
                    assert_eq!(e["data"]["reason"], "DEVICE_ERROR", "{what}: {e}");
                    "the server stops: DEVICE_ERROR; back: the library reconnects only when \
                     loaded again (agent restart)"
                        .into()
                }
            };
        }
    }
    drop(c);
    let (status, log) = agent.stop();
    assert!(status.success(), "{what}: agent exit {status}\n{log}");
    assert!(!log.contains("panicked"), "{what}:\n{log}");
    Found {
        cryptoki: info["cryptoki_version"].as_str().unwrap().to_string(),
        version: info["library_version"].as_str().unwrap().to_string(),
        slots,
        certs,
        removal: removal_outcome,
    }
}

/// The slot of the token labelled `label`, if it is present.
async fn slot_labelled(c: &mut Client, label: &str) -> Option<u64> {
    let slots = c.ok("pkcs11.slotsWithTokenPresent", json!({})).await;
    for s in slots.as_array().expect("slots") {
        let id = s["slot_id"].as_u64().unwrap();
        // A token that leaves between the two calls is simply not there.
        if let Ok(t) = c.call("pkcs11.token", json!({"slot_id": id})).await {
            if t["label"] == label {
                return Some(id);
            }
        }
    }
    None
}

/// The token's certificates: each key's is there, with its id. Returns how many there are.
async fn certificates(c: &mut Client, lib: &Library<'_>, slot: u64, what: &str) -> usize {
    let certs = c.ok("pkcs11.certificates", json!({"slot_id": slot})).await;
    let certs = certs.as_array().expect("certificates");
    for key in &lib.keys {
        assert!(
            certs
                .iter()
                .any(|e| e["id"] == key.id && e["base64"] == b64(&key.cert)),
            "{what}: no certificate {} among {certs:?}",
            key.id
        );
    }
    certs.len()
}

/// Sign with each key; openssl verifies each signature with the key's certificate.
async fn sign_each(c: &mut Client, lib: &Library<'_>, slot: u64, what: &str, when: &str) {
    for key in &lib.keys {
        let digest = sha("sha256", format!("{what} {when} {}", key.id).as_bytes());
        let params = json!({"slot_id": slot, "cert_id": key.id, "pin": lib.pin,
                            "data": b64(&digest), "algorithm_reference": "sha256"});
        let sig = match c.call("pkcs11.signData", params).await {
            Ok(sig) => unb64(sig.as_str().expect("base64")),
            Err(e) => panic!("{what}: signData with key {} ({when}): {e}", key.id),
        };
        assert!(
            openssl_verify(&key.cert, "sha256", &digest, &sig),
            "{what}: openssl does not verify the signature of key {} ({when})",
            key.id
        );
    }
}

/// The token has left: it is no longer listed, and signing says precisely that.
async fn gone(c: &mut Client, lib: &Library<'_>, slot: u64, what: &str) {
    let deadline = Instant::now() + LIMIT;
    while slot_labelled(c, lib.token).await.is_some() {
        assert!(
            Instant::now() < deadline,
            "{what}: the token is still listed after {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let digest = sha("sha256", b"absent");
    let params = json!({"slot_id": slot, "cert_id": lib.keys[0].id, "pin": lib.pin,
                        "data": b64(&digest), "algorithm_reference": "sha256"});
    c.err("pkcs11.signData", params, "TOKEN_NOT_PRESENT").await;
}

/// The token is back: listed again, and it signs again (the agent logs in by itself).
async fn back(c: &mut Client, lib: &Library<'_>, what: &str) {
    let deadline = Instant::now() + LIMIT;
    let slot = loop {
        if let Some(slot) = slot_labelled(c, lib.token).await {
            break slot;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the token is not back after {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    sign_each(c, lib, slot, what, "after the removal").await;
}

/// `keyport doctor --json` and `keyport modules` with the library's configuration (in a module
/// host): the doctor's check of it is ok and names what loaded; `modules` lists it as loading.
fn described(lib: &Library<'_>, token: &Token, dir: &Path, found: &Found) {
    let config = lib.config(dir, true);
    let out = lib
        .command(token, &config, true, &["doctor", "--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: doctor --json: {e}\n{}",
            lib.name,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == format!("module {}", lib.path))
        .unwrap_or_else(|| panic!("{}: the doctor does not check it: {report}", lib.name));
    let detail = check["detail"].as_str().unwrap();
    assert_eq!(check["status"], "ok", "{}: {check}", lib.name);
    assert!(
        detail.contains(lib.maker)
            && detail.contains(&format!("{} (PKCS #11 {})", found.version, found.cryptoki))
            && detail.contains(&format!("\"{}\"", lib.token)),
        "{}: the doctor says {detail:?}",
        lib.name
    );

    let out = lib
        .command(token, &config, true, &["modules"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: keyport modules: {}",
        lib.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let entry = modules_entry(&listing, &lib.path)
        .unwrap_or_else(|| panic!("{}: keyport modules does not list it:\n{listing}", lib.name));
    assert!(
        entry.contains(&format!("loads: {}", lib.maker)),
        "{}: keyport modules says:\n{entry}",
        lib.name
    );
}

/// The entry of `keyport modules` for the library at `path`: a registered module's that is
/// allowed, or the line of an allowed library p11-kit does not know.
fn modules_entry(listing: &str, path: &str) -> Option<String> {
    let same =
        |other: &str| std::fs::canonicalize(other.trim()).ok() == std::fs::canonicalize(path).ok();
    let mut entries: Vec<Vec<&str>> = Vec::new();
    for line in listing.lines() {
        if line.starts_with("  ") {
            if let Some(e) = entries.last_mut() {
                e.push(line);
            }
        } else {
            entries.push(vec![line]);
        }
    }
    entries
        .into_iter()
        .find(|e| {
            same(e[0])
                || (e
                    .iter()
                    .any(|l| l.strip_prefix("  library: ").is_some_and(same))
                    && e.contains(&"  allowed (in this configuration)"))
        })
        .map(|e| e.join("\n"))
}

/// The library in a module host and in process, then described; prints its matrix line.
async fn row(lib: &Library<'_>, token: &Token, mut removal: Removal<'_>) {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let found = through_agent(lib, token, dir.path(), true, &mut removal).await;
    let in_process = through_agent(lib, token, dir.path(), false, &mut removal).await;
    assert_eq!(in_process.version, found.version, "{}", lib.name);
    described(lib, token, dir.path(), &found);
    eprintln!(
        "MATRIX | {} | {} | PKCS #11 {} | host + in process | {} slot(s) | {} cert(s) | signs {} key(s) | removal (host): {} | in process: {} | doctor, modules ok | {:.1} s",
        lib.name,
        found.version,
        found.cryptoki,
        found.slots,
        found.certs,
        lib.keys.len(),
        found.removal,
        in_process.removal,
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// SoftHSM, and what wraps it

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_pkcs11_spy_and_p11_kit_proxy() {
    let token = Token::provision();
    let softhsm = Library::new(
        "SoftHSM",
        MODULE,
        "SoftHSM Implementation of PKCS11",
        DEMO,
        PIN,
        demo_keys(&token),
    );
    row(
        &softhsm,
        &token,
        Removal::None("SoftHSM's tokens are not removable"),
    )
    .await;

    let spy_dir = tempfile::tempdir().unwrap();
    let spy_log = spy_dir.path().join("spy.log");
    let mut spy = Library::new(
        "pkcs11-spy + SoftHSM",
        SPY,
        "SoftHSM Implementation of PKCS11",
        DEMO,
        PIN,
        demo_keys(&token),
    );
    spy.env = vec![
        ("PKCS11SPY".into(), MODULE.into()),
        ("PKCS11SPY_OUTPUT".into(), spy_log.to_str().unwrap().into()),
    ];
    row(
        &spy,
        &token,
        Removal::None("SoftHSM's tokens are not removable"),
    )
    .await;
    let calls = std::fs::read_to_string(&spy_log).unwrap_or_default();
    assert!(
        calls.contains("C_Sign"),
        "the signatures went through the spy:\n{calls}"
    );
    spy_misconfigured(&spy, &token, spy_dir.path()).await;

    // A HOME of its own: p11-kit reads the person's registry there, and the test runner's
    // must not change what the proxy serves.
    let home = tempfile::tempdir().unwrap();
    let mut proxy = Library::new(
        "p11-kit-proxy (SoftHSM registered)",
        PROXY,
        "PKCS#11 Kit PKCS#11 Kit Proxy Module",
        DEMO,
        PIN,
        demo_keys(&token),
    );
    proxy.agent_env = vec![("HOME".into(), home.path().to_str().unwrap().into())];
    row(
        &proxy,
        &token,
        Removal::None("SoftHSM's tokens are not removable"),
    )
    .await;
}

/// pkcs11-spy left without its target says where the fault is, and `NAME=VALUE` in process is
/// refused at start, saying what to do instead.
async fn spy_misconfigured(spy: &Library<'_>, token: &Token, dir: &Path) {
    let bare = Library::new(spy.name, SPY, spy.maker, DEMO, PIN, Vec::new());
    let config = bare.config(dir, true);
    let out = bare
        .command(token, &config, true, &["doctor", "--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == format!("module {SPY}"))
        .unwrap();
    let detail = check["detail"].as_str().unwrap();
    assert_eq!(check["status"], "fail", "{check}");
    assert!(
        detail.contains("Please set PKCS11SPY") && detail.contains("module_env"),
        "the message names the variable and where it goes: {detail}"
    );

    let path = dir.join("in-process.toml");
    std::fs::write(
        &path,
        format!("modules = [{SPY:?}]\nmodule_isolation = false\nmodule_env = [\"PKCS11SPY={MODULE}\"]\n"),
    )
    .unwrap();
    let out = bare
        .command(
            token,
            path.to_str().unwrap(),
            false,
            &["--listen", "127.0.0.1:0", "--no-tray"],
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "refused at start: {err}");
    assert!(
        err.contains("module_env sets PKCS11SPY") && err.contains("module_isolation"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// A token on another machine: p11-kit server + p11-kit-client.so

/// `p11-kit server` serving the SoftHSM token `keyport-demo` on a Unix socket of its own.
struct P11KitServer {
    child: Option<Child>,
    socket: PathBuf,
    softhsm_conf: PathBuf,
}

impl P11KitServer {
    fn new(token: &Token, dir: &Path) -> P11KitServer {
        let mut server = P11KitServer {
            child: None,
            socket: dir.join("p11-kit.sock"),
            softhsm_conf: token.conf(),
        };
        server.start();
        server
    }

    /// What p11-kit-client.so needs: `P11_KIT_SERVER_ADDRESS`.
    fn address(&self) -> String {
        format!("unix:path={}", self.socket.display())
    }

    /// Start (again), and wait for the socket.
    fn start(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        // A process group of its own: the server serves each connection from a process of its
        // own, which a stop must end too (a machine that goes away takes them all).
        let child = Command::new("p11-kit")
            .process_group(0)
            .args(["server", "--foreground", "--provider", MODULE, "--name"])
            .arg(&self.socket)
            .arg(format!("pkcs11:token={DEMO}"))
            .env("SOFTHSM2_CONF", &self.softhsm_conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run p11-kit server (Debian package p11-kit)");
        self.child = Some(child);
        let deadline = Instant::now() + LIMIT;
        while !self.socket.exists() {
            assert!(
                Instant::now() < deadline,
                "p11-kit server made no socket in {LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The group is the server's (process_group(0) above): the server and its children.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for P11KitServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p11_kit_client_reaches_softhsm_served_by_p11_kit_server() {
    let token = Token::provision();
    let dir = tempfile::tempdir().unwrap();
    let mut server = P11KitServer::new(&token, dir.path());
    let mut client = Library::new(
        "p11-kit-client + p11-kit server (SoftHSM)",
        CLIENT,
        "PKCS#11 Kit",
        DEMO,
        PIN,
        demo_keys(&token),
    );
    client.env = vec![("P11_KIT_SERVER_ADDRESS".into(), server.address())];
    row(&client, &token, Removal::Server(&mut server)).await;
}

// ---------------------------------------------------------------------------------------------
// C_GetInterface: the fault module's two builds

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_get_interface_that_fails_falls_back_to_c_get_function_list() {
    let token = Token::provision();
    /// A row: its name, which build, its control lines, the line its call log must have.
    struct Case {
        name: &'static str,
        build: fn() -> FaultModule,
        conf: &'static str,
        called: Option<&'static str>,
    }
    let cases = [
        Case {
            name: "fault module, C_GetFunctionList only",
            build: FaultModule::new,
            conf: "",
            called: None,
        },
        Case {
            name: "fault module -v3, 3.0 interface",
            build: FaultModule::v3,
            conf: "",
            called: Some("C_GetInterface 3.0 rv=0x0"),
        },
        Case {
            name: "fault module -v3, C_GetInterface: CKR_FUNCTION_NOT_SUPPORTED",
            build: FaultModule::v3,
            conf: "get_interface=not_supported",
            called: Some("C_GetInterface rv=0x54 (injected)"),
        },
        Case {
            name: "fault module -v3, C_GetInterface: CKR_DEVICE_ERROR",
            build: FaultModule::v3,
            conf: "get_interface=device_error",
            called: Some("C_GetInterface rv=0x30 (injected)"),
        },
    ];
    for Case {
        name,
        build,
        conf,
        called,
    } in cases
    {
        let module = build().serving(&token.conf());
        module.set(conf);
        let lib = Library::new(
            name,
            module.path_str(),
            "SoftHSM Implementation of PKCS11",
            DEMO,
            PIN,
            demo_keys(&token),
        );
        row(&lib, &token, Removal::Fault(&module, conf)).await;
        let calls = module.calls();
        match called {
            Some(line) => assert!(
                calls.iter().any(|c| c == line),
                "{name}: no {line:?} in {calls:?}"
            ),
            None => assert!(
                !calls.iter().any(|c| c.starts_with("C_GetInterface")),
                "{calls:?}"
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// OpenSC on the emulated card (root: a private pcscd)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opensc_libraries_on_the_emulated_card() {
    let stack = PcscStack::start();
    stack.insert_openpgp();
    let cert = stack.provision_openpgp();
    let token = Token::provision();
    let card_key = || {
        vec![Key {
            id: "03",
            cert: cert.clone(),
        }]
    };
    let pcsc: Vec<(String, String)> = stack
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();

    let mut opensc = Library::new(
        "OpenSC opensc-pkcs11",
        OPENSC,
        "OpenSC Project OpenSC smartcard framework",
        USER_TOKEN,
        USER_PIN,
        card_key(),
    );
    opensc.agent_env = pcsc.clone();
    row(&opensc, &token, Removal::Card(&stack)).await;

    let mut onepin = Library::new(
        "OpenSC onepin-opensc-pkcs11",
        ONEPIN,
        "OpenSC Project OpenSC smartcard framework",
        USER_TOKEN,
        USER_PIN,
        card_key(),
    );
    onepin.agent_env = pcsc.clone();
    row(&onepin, &token, Removal::Card(&stack)).await;

    let spy_dir = tempfile::tempdir().unwrap();
    let spy_log = spy_dir.path().join("spy.log");
    let mut spy = Library::new(
        "pkcs11-spy + OpenSC",
        SPY,
        "OpenSC Project OpenSC smartcard framework",
        USER_TOKEN,
        USER_PIN,
        card_key(),
    );
    spy.agent_env = pcsc.clone();
    spy.env = vec![
        ("PKCS11SPY".into(), OPENSC.into()),
        ("PKCS11SPY_OUTPUT".into(), spy_log.to_str().unwrap().into()),
    ];
    row(&spy, &token, Removal::Card(&stack)).await;
    let calls = std::fs::read_to_string(&spy_log).unwrap_or_default();
    assert!(
        calls.contains("C_Sign"),
        "the signatures went through the spy"
    );

    // Every registered module behind one library: SoftHSM's tokens and the card's, side by side.
    let home = tempfile::tempdir().unwrap();
    let mut proxy = Library::new(
        "p11-kit-proxy (SoftHSM and OpenSC registered)",
        PROXY,
        "PKCS#11 Kit PKCS#11 Kit Proxy Module",
        USER_TOKEN,
        USER_PIN,
        card_key(),
    );
    proxy.agent_env = pcsc.clone();
    proxy
        .agent_env
        .push(("HOME".into(), home.path().to_str().unwrap().into()));
    row(&proxy, &token, Removal::None("shown on OpenSC itself")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = proxy.config(dir.path(), true);
    let cmd = proxy.command(
        &token,
        &config,
        true,
        &["--listen", "127.0.0.1:0", "--no-tray"],
    );
    let agent = Agent::start_command(&token, cmd, &[]);
    let mut c = agent.trusted().await;
    for label in [DEMO, USER_TOKEN] {
        assert!(
            slot_labelled(&mut c, label).await.is_some(),
            "the proxy serves {label}"
        );
    }
}
