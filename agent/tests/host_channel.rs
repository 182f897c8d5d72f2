//! Soak test of the agent ⇄ module host channel (issue 19, finding 1): many callers at once,
//! with requests and replies far larger than a pipe buffer (up to the 8 MiB frame cap), for a
//! bounded time. The channel must keep moving: every call answered, none waiting past its
//! deadline while the host idles, no host killed.
//!
//! The agent once deadlocked here: a caller still blocked writing its request into a full pipe
//! was handed the reading role, while the host's workers blocked writing replies nobody read.
//! `KEYPORT_SOAK_SECS` sets the length (default 20 s; the test command runs 60 s).

use keyport::allowlist::Allowlist;
use keyport::backend::host::HostBackend;
use keyport::backend::pkcs11::LoginPolicy;
use keyport::testing::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The library the host loads (it only has to load): SoftHSM, or `KEYPORT_SOAK_MODULE` (on
/// Windows, under Wine, the test token DLL: scripts/test-windows.sh sets it).
const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
const MIB: usize = 1024 * 1024;
/// The frame cap less room for the envelope.
const LARGEST: usize = 8 * MIB - 1024;
const CALLERS: usize = 16;
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A size: mostly small, often several pipe buffers, now and then near the frame cap.
fn size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=44 => rng.below(4096),
        45..=89 => 64 * 1024 + rng.below(MIB),
        _ => 4 * MIB + rng.below(LARGEST - 4 * MIB),
    }
}

#[test]
fn the_host_channel_keeps_moving_under_concurrent_large_frames() {
    let secs: u64 = std::env::var("KEYPORT_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let module = std::env::var("KEYPORT_SOAK_MODULE").unwrap_or_else(|_| {
        if !cfg!(unix) {
            panic!("set KEYPORT_SOAK_MODULE to a PKCS #11 library (scripts/test-windows.sh does)");
        }
        SOFTHSM.into()
    });
    // SoftHSM with an empty store of its own: the host needs a module that loads.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::create_dir(dir.path().join("tokens")).unwrap();
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            dir.path().join("tokens").display()
        ),
    )
    .unwrap();
    std::env::set_var("SOFTHSM2_CONF", &conf);

    let backend = Arc::new(HostBackend::new(
        env!("CARGO_BIN_EXE_keyport").into(),
        LoginPolicy::default(),
        CALL_TIMEOUT,
        &[],
    ));
    let module = Allowlist::new([module]).resolve(None).unwrap();
    backend
        .echo(&module, String::new(), 1, 0)
        .expect("the host starts");
    let first_host = backend.host_pids();
    assert_eq!(first_host.len(), 1);

    let until = Instant::now() + Duration::from_secs(secs);
    let calls = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..CALLERS)
        .map(|n| {
            let (backend, module, calls, bytes) = (
                backend.clone(),
                module.clone(),
                calls.clone(),
                bytes.clone(),
            );
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (n as u64 + 1));
                let mut slowest = Duration::ZERO;
                while Instant::now() < until {
                    let (send, get) = (size(&mut rng), size(&mut rng));
                    let delay = if rng.chance(20) { rng.below(50) } else { 0 };
                    let started = Instant::now();
                    let answer = backend.echo(&module, "x".repeat(send), get as u32, delay as u32);
                    let took = started.elapsed();
                    let (seen, reply) = answer.unwrap_or_else(|e| {
                        panic!(
                            "caller {n}: {} ({}) after {took:?}, sending {send} B for {get} B",
                            e.reason, e.message
                        )
                    });
                    assert_eq!(seen, send, "caller {n}: the host saw another request");
                    assert_eq!(reply.len(), get, "caller {n}: another reply");
                    slowest = slowest.max(took);
                    calls.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add((send + get) as u64, Ordering::Relaxed);
                }
                slowest
            })
        })
        .collect();
    let slowest = callers
        .into_iter()
        .map(|c| c.join().expect("a caller failed"))
        .max()
        .unwrap();
    let calls = calls.load(Ordering::Relaxed);
    let mib = bytes.load(Ordering::Relaxed) / MIB as u64;
    eprintln!("{calls} calls, {mib} MiB through the channel in {secs} s; slowest {slowest:?}");
    // Progress: far more than one round of calls, and nobody near the deadline.
    assert!(
        calls >= (CALLERS * 4) as u64,
        "only {calls} calls in {secs} s"
    );
    assert!(
        slowest < CALL_TIMEOUT / 2,
        "a call waited {slowest:?} although the host only echoes"
    );
    // The same host served it all: none was killed or crashed.
    assert_eq!(backend.host_pids(), first_host);
}
