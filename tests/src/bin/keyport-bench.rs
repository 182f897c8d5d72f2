//! Keyport benchmark: the agent over WebSocket against raw cryptoki, in one run, on one SoftHSM
//! token. Prints a Markdown table and writes JSON.
//!
//!   cargo build --release -p keyport && cargo run --release -p keyport-e2e --bin keyport-bench
//!   ... --bin keyport-bench -- --smoke            (tiny counts: CI checks it still runs)
//!   ... --bin keyport-bench -- --json out.json
//!   ... --bin keyport-bench -- --counts          (only the counts below: a minute)
//!
//! Rows:
//! * raw naive: C_Login + find key + C_Sign + C_Logout per operation (the semantics of one
//!   signData request), 1 thread and 2 threads (login state is per process, so the threads take
//!   turns per token, as any correct naive agent must);
//! * raw best: C_Sign on a logged-in session with a known key handle, 1 and 2 threads;
//! * agent: signData over WebSocket, 1 client sequential and 8 clients concurrent; slots and
//!   token round trips; each with its ratio to raw naive and raw best;
//! * agent peak RSS idle and after N requests, and time from spawn to the ready line;
//! * agent RSS idle with its tray, under Xvfb with a private session bus and (if installed)
//!   `trayer` as tray host; skipped, saying why, when Xvfb or dbus-daemon is missing;
//! * counts, which do not move with the machine's load: context switches and CPU time per
//!   `info` and ECDSA `signData` (agent and module host, thread by thread, from /proc), with
//!   the library in a module host and in process; PKCS #11 calls per request as the library
//!   saw them (the fault module in front of SoftHSM, logging every call), and the time of the
//!   repeated requests when each call takes 20 ms more (a slow card).

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use keyport_e2e::counts::{call_names, Snapshot};
use keyport_e2e::desktop::{PrivateBus, TrayHost, Xvfb};
use keyport_e2e::fault::FaultModule;
use keyport_e2e::{b64, sha, Agent, Client, Token, MODULE, PIN};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
enum Key {
    Ecdsa,
    Rsa,
}

impl Key {
    fn id(self) -> &'static str {
        match self {
            Key::Ecdsa => "02",
            Key::Rsa => "01",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Key::Ecdsa => "ECDSA P-256",
            Key::Rsa => "RSA-2048",
        }
    }
    fn mechanism(self) -> Mechanism<'static> {
        match self {
            Key::Ecdsa => Mechanism::Ecdsa,
            Key::Rsa => Mechanism::RsaPkcs,
        }
    }
    /// What the token signs for a SHA-256 digest.
    fn input(self, digest: &[u8]) -> Vec<u8> {
        match self {
            Key::Ecdsa => digest.to_vec(),
            Key::Rsa => {
                let mut v = hex::decode("3031300d060960864801650304020105000420").unwrap();
                v.extend_from_slice(digest);
                v
            }
        }
    }
}

#[derive(Debug, Serialize, Clone)]
struct Row {
    name: String,
    ops: usize,
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    /// Throughput relative to raw cryptoki with the same semantics (login/find/sign/logout).
    ratio_vs_raw_naive: Option<f64>,
    /// Throughput relative to raw cryptoki at its best (logged in, known key handle).
    ratio_vs_raw_best: Option<f64>,
    /// p50 minus the raw-best p50 of the same key and thread count.
    added_p50_us: Option<f64>,
}

fn row(name: String, mut lat: Vec<Duration>, wall: Duration) -> Row {
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e6;
    Row {
        name,
        ops: lat.len(),
        ops_per_sec: lat.len() as f64 / wall.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        ratio_vs_raw_naive: None,
        ratio_vs_raw_best: None,
        added_p50_us: None,
    }
}

struct Raw {
    ctx: Pkcs11,
    slot: Slot,
    init: Duration,
}

impl Raw {
    fn new() -> Raw {
        let started = Instant::now();
        let ctx = Pkcs11::new(MODULE).expect("load SoftHSM");
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        let init = started.elapsed();
        let slot = ctx
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|s| {
                ctx.get_token_info(*s)
                    .map(|t| t.label() == "keyport-demo")
                    .unwrap_or(false)
            })
            .expect("demo token");
        Raw { ctx, slot, init }
    }

    fn find(session: &Session, key: Key) -> ObjectHandle {
        let id = hex::decode(key.id()).unwrap();
        session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Id(id),
            ])
            .unwrap()[0]
    }

    /// Run `per_thread` on `threads` threads at once; their latencies and the wall time.
    fn on_threads<F>(threads: usize, per_thread: F) -> (Vec<Duration>, Duration)
    where
        F: Fn() -> Vec<Duration> + Sync,
    {
        let started = Instant::now();
        let lat = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(&per_thread)).collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        (lat, started.elapsed())
    }

    /// login + find + sign + logout per op; `threads` threads take turns on the login.
    fn naive(&self, key: Key, threads: usize, ops: usize) -> Row {
        let turn = Mutex::new(());
        let input = key.input(&sha("sha256", b"bench"));
        let (lat, wall) = Self::on_threads(threads, || {
            let session = self.ctx.open_ro_session(self.slot).unwrap();
            let mut lat = Vec::with_capacity(ops / threads);
            for _ in 0..ops / threads {
                let t = Instant::now();
                let _turn = turn.lock().unwrap();
                session
                    .login(UserType::User, Some(&AuthPin::from(PIN.to_string())))
                    .unwrap();
                let k = Self::find(&session, key);
                session.sign(&key.mechanism(), k, &input).unwrap();
                session.logout().unwrap();
                drop(_turn);
                lat.push(t.elapsed());
            }
            lat
        });
        row(
            format!("raw naive {} ({threads} thr)", key.name()),
            lat,
            wall,
        )
    }

    /// C_Sign only, on a logged-in session with a known key handle.
    fn best(&self, key: Key, threads: usize, ops: usize) -> Row {
        let input = key.input(&sha("sha256", b"bench"));
        let login = self.ctx.open_ro_session(self.slot).unwrap();
        login
            .login(UserType::User, Some(&AuthPin::from(PIN.to_string())))
            .unwrap();
        let (lat, wall) = Self::on_threads(threads, || {
            let session = self.ctx.open_ro_session(self.slot).unwrap();
            let k = Self::find(&session, key);
            let mut lat = Vec::with_capacity(ops / threads);
            for _ in 0..ops / threads {
                let t = Instant::now();
                session.sign(&key.mechanism(), k, &input).unwrap();
                lat.push(t.elapsed());
            }
            lat
        });
        login.logout().unwrap();
        row(
            format!("raw best {} ({threads} thr)", key.name()),
            lat,
            wall,
        )
    }
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn agent_rows(agent: &Agent, key: Key, clients: usize, ops: usize, slot: u64) -> Row {
    let digest = sha("sha256", b"bench");
    let params = json!({"slot_id": slot, "cert_id": key.id(), "pin": PIN, "data": b64(&digest), "algorithm_reference": "sha256"});
    // Warm up: load the module, log in, fill caches.
    agent
        .client(None)
        .await
        .ok("pkcs11.signData", params.clone())
        .await;
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(agent.client(None).await);
    }
    let started = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            let params = params.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(ops / clients);
                for _ in 0..ops / clients {
                    let t = Instant::now();
                    c.ok("pkcs11.signData", params.clone()).await;
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let who = if clients == 1 {
        "1 client".to_string()
    } else {
        format!("{clients} clients")
    };
    row(
        format!("agent signData {} ({who})", key.name()),
        lat,
        started.elapsed(),
    )
}

/// signDataBatch: batches of `size` ECDSA P-256 digests on one connection; a row's ops are
/// signatures (so its ratio compares signatures per second with raw best's).
async fn batch_row(agent: &Agent, slot: u64, size: usize, batches: usize, best: &Row) -> Row {
    let digests: Vec<String> = (0..size)
        .map(|i| b64(&sha("sha256", format!("batch {i}").as_bytes())))
        .collect();
    let params = json!({"slot_id": slot, "cert_id": Key::Ecdsa.id(), "pin": PIN,
                        "data": digests, "algorithm_reference": "sha256"});
    let mut c = agent.client(None).await;
    c.ok("pkcs11.signDataBatch", params.clone()).await;
    let started = Instant::now();
    let mut lat = Vec::with_capacity(batches);
    for _ in 0..batches {
        let t = Instant::now();
        let sigs = c.ok("pkcs11.signDataBatch", params.clone()).await;
        assert_eq!(sigs.as_array().map(Vec::len), Some(size));
        lat.push(t.elapsed());
    }
    let wall = started.elapsed();
    let mut r = row(
        format!("agent signDataBatch ×{size} ECDSA P-256 (1 client, module host; per batch)"),
        lat,
        wall,
    );
    // Signatures per second, against raw best's.
    r.ops = batches * size;
    r.ops_per_sec = r.ops as f64 / wall.as_secs_f64();
    r.ratio_vs_raw_best = Some(r.ops_per_sec / best.ops_per_sec);
    r
}

type ByKey = std::collections::HashMap<(&'static str, usize), Row>;

/// signData rows, ECDSA and RSA, 1 and 8 clients, with their ratios to the raw rows;
/// `label` is added to each row's name.
async fn sign_rows(
    agent: &Agent,
    slot: u64,
    label: &str,
    naive: &ByKey,
    best: &ByKey,
    (ec_ops, rsa_ops): (usize, usize),
) -> Vec<Row> {
    let mut out = Vec::new();
    for key in [Key::Ecdsa, Key::Rsa] {
        let ops = if matches!(key, Key::Ecdsa) {
            ec_ops
        } else {
            rsa_ops
        };
        for clients in [1, 8] {
            let mut r = agent_rows(agent, key, clients, ops, slot).await;
            r.name = format!("{}{label})", r.name.trim_end_matches(')'));
            let threads = if clients == 1 { 1 } else { 2 };
            let n = &naive[&(key.name(), threads)];
            let b = &best[&(key.name(), threads)];
            r.ratio_vs_raw_naive = Some(r.ops_per_sec / n.ops_per_sec);
            r.ratio_vs_raw_best = Some(r.ops_per_sec / b.ops_per_sec);
            r.added_p50_us = Some(r.p50_us - b.p50_us);
            out.push(r);
        }
    }
    out
}

async fn round_trips(agent: &Agent, method: &str, params: serde_json::Value, ops: usize) -> Row {
    let mut c = agent.client(None).await;
    c.ok(method, params.clone()).await;
    let started = Instant::now();
    let mut lat = Vec::with_capacity(ops);
    for _ in 0..ops {
        let t = Instant::now();
        c.ok(method, params.clone()).await;
        lat.push(t.elapsed());
    }
    row(format!("agent {method} (1 client)"), lat, started.elapsed())
}

#[derive(Serialize)]
struct Report {
    machine: String,
    smoke: bool,
    rows: Vec<Row>,
    module_init_ms: f64,
    start_to_ready_ms: f64,
    rss_idle_kib: u64,
    rss_after_first_request_kib: u64,
    rss_before_n_kib: u64,
    rss_after_n_kib: u64,
    rss_after_2n_kib: u64,
    peak_rss_kib: u64,
    n_requests: usize,
    /// Idle with its tray (the default when there is a display), or why not measured.
    tray: TrayMemory,
    /// What running the library in a module host costs, per signData row.
    isolation: Vec<IsolationCost>,
    /// First request to a library: host process start, library load, C_Initialize, C_GetInfo,
    /// minus a warm C_GetInfo round trip (median of 5 fresh agents).
    host_start_ms: f64,
    /// The agent and its module host after the signData rows.
    rss_agent_and_hosts_kib: u64,
    /// The in-process agent after the same rows.
    rss_in_process_kib: u64,
    /// Context switches, CPU time and token calls per request.
    counts: Counts,
}

#[derive(Serialize)]
struct IsolationCost {
    row: String,
    /// Module-host p50 minus in-process p50.
    added_p50_us: f64,
    /// Module-host throughput over in-process throughput.
    throughput_ratio: f64,
    p99_over_p50_host: f64,
    p99_over_p50_in_process: f64,
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
                .filter(|c| {
                    std::fs::read_to_string(format!("/proc/{c}/stat")).is_ok_and(|stat| {
                        let rest = &stat[stat.rfind(')').unwrap() + 2..];
                        rest.split_whitespace().nth(1) == Some(pid.to_string().as_str())
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// See [`Report::host_start_ms`].
async fn host_start_ms(token: &Token) -> f64 {
    let mut samples = Vec::new();
    for _ in 0..5 {
        let agent = Agent::start_raw(
            token,
            &[
                "--listen",
                "127.0.0.1:0",
                "--module",
                MODULE,
                "--no-origin",
                "trust",
                "--no-tray",
            ],
            &[("RUST_LOG", "warn")],
        );
        let mut c = agent.client(None).await;
        let t = Instant::now();
        c.ok("pkcs11.info", json!({})).await;
        let first = t.elapsed();
        let t = Instant::now();
        c.ok("pkcs11.info", json!({})).await;
        samples.push((first.saturating_sub(t.elapsed())).as_secs_f64() * 1e3);
        let _ = agent.stop();
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum TrayMemory {
    Measured {
        rss_idle_kib: u64,
        /// What the agent ran under, e.g. "Xvfb, trayer as tray host".
        under: String,
        /// A GL driver is mapped (GDK probed GL: tens of MB more, docs/DESKTOP.md "Memory").
        gl_driver_loaded: bool,
    },
    Skipped(String),
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The agent with its tray, idle: under Xvfb with a private session bus, with `trayer` as tray
/// host if it is installed (the icon is then embedded and drawn, as on a desktop).
async fn tray_memory(token: &Token) -> TrayMemory {
    for (program, package) in [("Xvfb", "xvfb"), ("dbus-daemon", "dbus")] {
        if !on_path(program) {
            return TrayMemory::Skipped(format!("{program} not found (Debian package {package})"));
        }
    }
    let x = Xvfb::start();
    let bus = PrivateBus::start();
    let host = on_path("trayer").then(|| TrayHost::start(&x, &bus));
    let agent = Agent::start_raw(
        token,
        &[
            "--listen",
            "127.0.0.1:0",
            "--module",
            MODULE,
            "--no-origin",
            "trust",
        ],
        &[
            ("DISPLAY", &x.display),
            ("DBUS_SESSION_BUS_ADDRESS", &bus.address),
            ("RUST_LOG", "warn,keyport=info"),
        ],
    );
    if !agent
        .wait_for_log("tray icon shown", Duration::from_secs(20))
        .await
    {
        let log = agent.log();
        let _ = agent.stop();
        return TrayMemory::Skipped(format!("the tray did not show: {}", log.trim()));
    }
    // Let the host embed and draw the icon, and the agent settle.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = agent.pid();
    let rss_idle_kib = rss_kib(pid, "VmRSS:");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let gl_driver_loaded = ["libLLVM", "_dri.so", "libGLX_mesa"]
        .iter()
        .any(|d| maps.contains(d));
    let (status, log) = agent.stop();
    assert!(
        status.success(),
        "the tray agent exited with {status}: {log}"
    );
    TrayMemory::Measured {
        rss_idle_kib,
        under: match host {
            Some(_) => "Xvfb, trayer as tray host".into(),
            None => "Xvfb, no tray host (trayer not found)".into(),
        },
        gl_driver_loaded,
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("PRETTY_NAME="))
                .map(|l| l[13..].trim_matches('"').to_string())
        })
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {os}")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let json_out = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let scale = |full: usize| if smoke { (full / 100).max(16) } else { full };
    let (ec_ops, rsa_ops, rt_ops, n_requests) =
        (scale(8000), scale(2000), scale(8000), scale(10_000));

    let token = Token::provision();
    std::env::set_var("SOFTHSM2_CONF", token.conf());
    let (count_n, slow_reps) = (scale(2000), if smoke { 2 } else { 5 });
    if args.iter().any(|a| a == "--counts") {
        let c = counts(&token, count_n, slow_reps).await;
        println!("Machine: {}", machine());
        print_counts(&c);
        if let Some(path) = json_out {
            std::fs::write(&path, serde_json::to_string_pretty(&c).unwrap()).unwrap();
            println!("\nJSON written to {path}");
        }
        return;
    }

    // Raw cryptoki first, in this process.
    let raw = Raw::new();
    let mut rows = Vec::new();
    let mut naive = ByKey::new();
    let mut best = ByKey::new();
    for key in [Key::Ecdsa, Key::Rsa] {
        let ops = if matches!(key, Key::Ecdsa) {
            ec_ops
        } else {
            rsa_ops
        };
        for threads in [1, 2] {
            let r = raw.naive(key, threads, ops / 2);
            naive.insert((key.name(), threads), r.clone());
            rows.push(r);
            let r = raw.best(key, threads, ops);
            best.insert((key.name(), threads), r.clone());
            rows.push(r);
        }
    }
    let module_init = raw.init;
    drop(raw);

    // The agent: start to ready, idle RSS.
    let started = Instant::now();
    let agent = Agent::start_raw(
        &token,
        &[
            "--listen",
            "127.0.0.1:0",
            "--module",
            MODULE,
            "--no-origin",
            "trust",
            "--no-tray",
        ],
        &[("RUST_LOG", "warn")],
    );
    let start_to_ready = started.elapsed();
    let pid = agent.child.id();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_idle = rss_kib(pid, "VmRSS:");

    let mut c = agent.client(None).await;
    let slot = c.slot_of("keyport-demo").await;
    let rss_first = rss_kib(pid, "VmRSS:");

    let ops = (ec_ops, rsa_ops);
    // The default: the library in a module host (the first request started it: time the next).
    let host_rows = sign_rows(&agent, slot, ", module host", &naive, &best, ops).await;
    rows.extend(host_rows.iter().cloned());
    let rss_with_hosts = rss_kib(pid, "VmRSS:")
        + children_of(pid)
            .iter()
            .map(|c| rss_kib(*c, "VmRSS:"))
            .sum::<u64>();
    // pkcs11.info is one trivial C_GetInfo: its round trip is the transport floor.
    rows.push(round_trips(&agent, "pkcs11.info", json!({}), rt_ops).await);
    rows.push(round_trips(&agent, "pkcs11.slots", json!({}), rt_ops).await);
    rows.push(round_trips(&agent, "pkcs11.token", json!({"slot_id": slot}), rt_ops).await);
    // 256 signatures in one request: against 256 raw C_Sign calls on a logged-in session.
    let batches = (ec_ops / 256).max(2);
    rows.push(batch_row(&agent, slot, 256, batches, &best[&(Key::Ecdsa.name(), 1)]).await);

    // Leak check: N requests (signatures and parsed certificate listings) after everything
    // above, twice. Growth in the first round can be warm-up; a leak also grows in the second.
    let rss_before_n = rss_kib(pid, "VmRSS:");
    let digest = sha("sha256", b"leak");
    let sign = json!({"slot_id": slot, "cert_id": "02", "pin": PIN, "data": b64(&digest), "algorithm_reference": "sha256"});
    let list = json!({"slot_id": slot, "parse_certs": true});
    let mut rss_rounds = Vec::new();
    for _round in 0..2 {
        for i in 0..n_requests {
            if i % 2 == 0 {
                c.ok("pkcs11.signData", sign.clone()).await;
            } else {
                c.ok("pkcs11.certificates", list.clone()).await;
            }
        }
        rss_rounds.push(rss_kib(pid, "VmRSS:"));
    }
    let rss_after = rss_rounds[0];
    let peak = rss_kib(pid, "VmHWM:");
    let (status, _) = agent.stop();
    assert!(status.success(), "agent exited with {status}");

    // The same rows with the library in the agent's own process (module_isolation = false),
    // and the cost of a host: start (process, library load, C_Initialize) and added latency.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keyport.toml");
    std::fs::write(&config, "module_isolation = false\n").unwrap();
    let in_process = Agent::start_raw(
        &token,
        &[
            "--listen",
            "127.0.0.1:0",
            "--module",
            MODULE,
            "--no-origin",
            "trust",
            "--no-tray",
            "--config",
            config.to_str().unwrap(),
        ],
        &[("RUST_LOG", "warn")],
    );
    let slot_in = in_process.client(None).await.slot_of("keyport-demo").await;
    let in_rows = sign_rows(&in_process, slot_in, ", in process", &naive, &best, ops).await;
    let rss_in_process = rss_kib(in_process.child.id(), "VmRSS:");
    let _ = in_process.stop();
    let mut isolation = Vec::new();
    for (h, i) in host_rows.iter().zip(&in_rows) {
        isolation.push(IsolationCost {
            row: h.name.replace(", module host", ""),
            added_p50_us: h.p50_us - i.p50_us,
            throughput_ratio: h.ops_per_sec / i.ops_per_sec,
            p99_over_p50_host: h.p99_us / h.p50_us,
            p99_over_p50_in_process: i.p99_us / i.p50_us,
        });
    }
    rows.extend(in_rows);
    let host_start = host_start_ms(&token).await;
    // The same agent with its tray, idle, on its own (nothing else runs meanwhile).
    let tray = tray_memory(&token).await;
    let counts = counts(&token, count_n, slow_reps).await;

    let report = Report {
        machine: machine(),
        smoke,
        rows,
        module_init_ms: module_init.as_secs_f64() * 1e3,
        start_to_ready_ms: start_to_ready.as_secs_f64() * 1e3,
        rss_idle_kib: rss_idle,
        rss_after_first_request_kib: rss_first,
        rss_before_n_kib: rss_before_n,
        rss_after_n_kib: rss_after,
        rss_after_2n_kib: rss_rounds[1],
        peak_rss_kib: peak,
        n_requests,
        tray,
        isolation,
        host_start_ms: host_start,
        rss_agent_and_hosts_kib: rss_with_hosts,
        rss_in_process_kib: rss_in_process,
        counts,
    };
    print_table(&report);
    if let Some(path) = json_out {
        std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
        println!("\nJSON written to {path}");
    }
}

fn print_table(r: &Report) {
    let f = |v: Option<f64>, unit: &str| {
        v.map(|v| format!("{v:.2}{unit}"))
            .unwrap_or_else(|| "".into())
    };
    println!(
        "Machine: {}{}",
        r.machine,
        if r.smoke {
            " (SMOKE MODE: counts too small to mean anything)"
        } else {
            ""
        }
    );
    println!();
    println!("| row | ops | ops/s | p50 µs | p99 µs | × raw naive | × raw best | added p50 µs |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in &r.rows {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} |",
            row.name,
            row.ops,
            row.ops_per_sec,
            row.p50_us,
            row.p99_us,
            f(row.ratio_vs_raw_naive, "×"),
            f(row.ratio_vs_raw_best, "×"),
            row.added_p50_us
                .map(|v| format!("{v:.0}"))
                .unwrap_or_default()
        );
    }
    println!();
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| module initialisation (raw C_Initialize) | {:.1} ms |",
        r.module_init_ms
    );
    println!(
        "| agent start to ready line | {:.1} ms |",
        r.start_to_ready_ms
    );
    println!(
        "| agent RSS idle, headless (`--no-tray`) | {:.1} MB |",
        r.rss_idle_kib as f64 / 1024.0
    );
    println!(
        "| agent RSS after first requests (module loaded) | {:.1} MB |",
        r.rss_after_first_request_kib as f64 / 1024.0
    );
    println!(
        "| agent RSS after the rows above | {:.1} MB |",
        r.rss_before_n_kib as f64 / 1024.0
    );
    println!(
        "| agent RSS after {} more requests | {:.1} MB |",
        r.n_requests,
        r.rss_after_n_kib as f64 / 1024.0
    );
    println!(
        "| agent RSS after another {} requests (a leak grows here too) | {:.1} MB |",
        r.n_requests,
        r.rss_after_2n_kib as f64 / 1024.0
    );
    println!(
        "| agent peak RSS | {:.1} MB |",
        r.peak_rss_kib as f64 / 1024.0
    );
    println!(
        "| module host start (first request to a library, minus a warm one) | {:.1} ms |",
        r.host_start_ms
    );
    println!(
        "| agent + module host RSS after the signData rows | {:.1} MB |",
        r.rss_agent_and_hosts_kib as f64 / 1024.0
    );
    println!(
        "| in-process agent RSS after the same rows | {:.1} MB |",
        r.rss_in_process_kib as f64 / 1024.0
    );
    println!();
    println!("| module host vs in process | added p50 µs | × throughput | p99/p50 host | p99/p50 in process |");
    println!("|---|---:|---:|---:|---:|");
    for c in &r.isolation {
        println!(
            "| {} | {:.0} | {:.2}× | {:.1} | {:.1} |",
            c.row,
            c.added_p50_us,
            c.throughput_ratio,
            c.p99_over_p50_host,
            c.p99_over_p50_in_process
        );
    }
    match &r.tray {
        TrayMemory::Measured {
            rss_idle_kib,
            under,
            gl_driver_loaded,
        } => println!(
            "| agent RSS idle with its tray ({under}){} | {:.1} MB |",
            if *gl_driver_loaded {
                "; a GL driver is loaded"
            } else {
                ""
            },
            *rss_idle_kib as f64 / 1024.0
        ),
        TrayMemory::Skipped(why) => {
            // One table cell: no line breaks or column separators, not the whole log.
            let why: String = why
                .chars()
                .map(|c| if c == '|' || c.is_control() { ' ' } else { c })
                .take(300)
                .collect();
            println!("| agent RSS idle with its tray | skipped: {why} |")
        }
    }
    print_counts(&r.counts);
}

// ---- Counts: context switches, CPU time and token calls per request (issue 26) ----

/// Context switches and CPU time per request, agent and module host apart.
#[derive(Serialize, Clone)]
struct CountRow {
    name: String,
    requests: usize,
    /// Agent and module host together.
    switches_per_request: f64,
    agent_switches_per_request: f64,
    host_switches_per_request: f64,
    /// Of all switches, preemptions (the rest are waits): these depend on the machine's load.
    preempted_per_request: f64,
    agent_cpu_us_per_request: f64,
    host_cpu_us_per_request: f64,
    /// Switches per request by thread (`agent: tokio-runtime-w`, `host: keyport-host-*`).
    by_thread: BTreeMap<String, f64>,
}

/// PKCS #11 calls per request, as the library saw them (the fault module's log, `log_all=1`).
#[derive(Serialize, Clone)]
struct TokenCallRow {
    request: String,
    calls_per_request: f64,
    /// The calls of the last such request, in order.
    calls: Vec<String>,
    /// Median time of one request, when every token call takes `call_delay_ms` more.
    slow_p50_ms: Option<f64>,
}

#[derive(Serialize, Default)]
struct Counts {
    rows: Vec<CountRow>,
    token_calls: Vec<TokenCallRow>,
    /// The slow token's delay per call.
    call_delay_ms: u64,
}

/// One sequential client sends `method` `n` times (after a warm-up); what the agent and its
/// hosts spent on it, per request.
async fn count_row(agent: &Agent, name: String, method: &str, params: Value, n: usize) -> CountRow {
    let mut c = agent.client(None).await;
    for _ in 0..20 {
        c.ok(method, params.clone()).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = Snapshot::of(agent.pid());
    for _ in 0..n {
        c.ok(method, params.clone()).await;
    }
    let used = Snapshot::of(agent.pid()).since(&before);
    let per = |v: u64| v as f64 / n as f64;
    CountRow {
        name,
        requests: n,
        switches_per_request: per(used.agent_switches + used.host_switches),
        agent_switches_per_request: per(used.agent_switches),
        host_switches_per_request: per(used.host_switches),
        preempted_per_request: per(used.preempted),
        agent_cpu_us_per_request: per(used.agent_cpu_ns) / 1e3,
        host_cpu_us_per_request: per(used.host_cpu_ns) / 1e3,
        by_thread: used
            .by_thread
            .into_iter()
            .map(|(k, v)| (k, per(v)))
            .collect(),
    }
}

fn agent_args(module: &str, config: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--module",
        module,
        "--no-origin",
        "trust",
        "--no-tray",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(config) = config {
        args.extend(["--config".to_string(), config.to_string()]);
    }
    args
}

/// The agents of the counts log at `warn` unless `KEYPORT_BENCH_LOG` says otherwise (`info`,
/// the agent's default, logs a line per signature: what that costs).
fn start_agent(token: &Token, module: &str, config: Option<&str>) -> Agent {
    let args = agent_args(module, config);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let level = std::env::var("KEYPORT_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    Agent::start_raw(token, &args, &[("RUST_LOG", &level)])
}

/// `k` requests: calls per request, and the calls of the last one.
async fn token_calls(
    c: &mut Client,
    fm: &FaultModule,
    request: &str,
    method: &str,
    params: &Value,
    k: usize,
) -> TokenCallRow {
    let start = fm.calls().len();
    for _ in 0..k - 1 {
        c.ok(method, params.clone()).await;
    }
    let last = fm.calls().len();
    c.ok(method, params.clone()).await;
    let all = fm.calls();
    TokenCallRow {
        request: request.to_string(),
        calls_per_request: call_names(&all[start..]).len() as f64 / k as f64,
        calls: call_names(&all[last..]),
        slow_p50_ms: None,
    }
}

async fn slow_p50_ms(c: &mut Client, method: &str, params: &Value, k: usize) -> f64 {
    let mut ms = Vec::new();
    for _ in 0..k {
        let t = Instant::now();
        c.ok(method, params.clone()).await;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    ms[ms.len() / 2]
}

/// The counts of issue 26: switches and CPU per `info` and ECDSA `signData`, with the library
/// in a module host and in process; token calls per request through the fault module (log
/// every call), then the same requests with every call 20 ms slower (a slow card).
async fn counts(token: &Token, n: usize, slow_reps: usize) -> Counts {
    let mut out = Counts {
        call_delay_ms: 20,
        ..Counts::default()
    };
    let digest = sha("sha256", b"counts");
    let dir = tempfile::tempdir().unwrap();
    let in_process = dir.path().join("in-process.toml");
    std::fs::write(&in_process, "module_isolation = false\n").unwrap();
    for (label, config) in [("module host", None), ("in process", in_process.to_str())] {
        let agent = start_agent(token, MODULE, config);
        let slot = agent.client(None).await.slot_of("keyport-demo").await;
        let sign = json!({"slot_id": slot, "cert_id": Key::Ecdsa.id(), "pin": PIN,
                          "data": b64(&digest), "algorithm_reference": "sha256"});
        let info = count_row(
            &agent,
            format!("pkcs11.info ({label})"),
            "pkcs11.info",
            json!({}),
            n,
        );
        out.rows.push(info.await);
        let name = format!("signData ECDSA P-256 ({label})");
        out.rows
            .push(count_row(&agent, name, "pkcs11.signData", sign, n).await);
        let _ = agent.stop();
    }

    // Token calls: the fault module in front of SoftHSM, logging every call.
    let fm = FaultModule::for_store(&token.conf());
    fm.set("log_all=1");
    let agent = start_agent(token, fm.path_str(), None);
    let mut c = agent.client(None).await;
    let slot = c.slot_of("keyport-demo").await;
    let sign = json!({"slot_id": slot, "cert_id": Key::Ecdsa.id(), "pin": PIN,
                      "data": b64(&digest), "algorithm_reference": "sha256"});
    let on_slot = json!({"slot_id": slot});
    let k = 10;
    let rows = [
        ("pkcs11.info", "pkcs11.info", json!({}), k),
        (
            "pkcs11.slotsWithTokenPresent",
            "pkcs11.slotsWithTokenPresent",
            json!({}),
            k,
        ),
        ("pkcs11.token", "pkcs11.token", on_slot.clone(), k),
        (
            "pkcs11.certificates (first)",
            "pkcs11.certificates",
            on_slot.clone(),
            1,
        ),
        (
            "pkcs11.certificates (again)",
            "pkcs11.certificates",
            on_slot.clone(),
            k,
        ),
        (
            "signData ECDSA P-256 (first: login)",
            "pkcs11.signData",
            sign.clone(),
            1,
        ),
        (
            "signData ECDSA P-256 (warm)",
            "pkcs11.signData",
            sign.clone(),
            k,
        ),
    ];
    for (request, method, params, k) in &rows {
        let row = token_calls(&mut c, &fm, request, method, params, *k).await;
        out.token_calls.push(row);
    }
    // A slow card: what a page waits for the requests that are asked again and again.
    fm.set(&format!("log_all=1\ncall_delay_ms={}", out.call_delay_ms));
    for row in out.token_calls.iter_mut() {
        let Some((_, method, params, _)) = rows.iter().find(|r| r.0 == row.request && r.3 > 1)
        else {
            continue;
        };
        row.slow_p50_ms = Some(slow_p50_ms(&mut c, method, params, slow_reps).await);
    }
    fm.set("");
    let _ = agent.stop();
    out
}

fn print_counts(c: &Counts) {
    println!();
    println!("| per request (1 client, sequential) | switches | agent | host | of them preempted | agent CPU µs | host CPU µs | waits (voluntary switches) by thread |");
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for r in &c.rows {
        // By group: its switches, and how many of its threads took part.
        let mut groups: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
        for (thread, v) in &r.by_thread {
            let group = thread.rsplit_once(" #").map_or(thread.as_str(), |(g, _)| g);
            let g = groups.entry(group).or_default();
            g.0 += v;
            g.1 += 1;
        }
        let threads: Vec<String> = groups
            .iter()
            .map(|(k, (v, n))| format!("{k} {v:.2} ({n} threads)"))
            .collect();
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {} |",
            r.name,
            r.switches_per_request,
            r.agent_switches_per_request,
            r.host_switches_per_request,
            r.preempted_per_request,
            r.agent_cpu_us_per_request,
            r.host_cpu_us_per_request,
            threads.join(", ")
        );
    }
    println!();
    println!(
        "| request | token calls | the calls | p50 ms, {} ms per call |",
        c.call_delay_ms
    );
    println!("|---|---:|---|---:|");
    for r in &c.token_calls {
        println!(
            "| {} | {:.1} | {} | {} |",
            r.request,
            r.calls_per_request,
            r.calls.join(", "),
            r.slow_p50_ms.map(|v| format!("{v:.1}")).unwrap_or_default()
        );
    }
}
