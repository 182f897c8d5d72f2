//! The module host: `keyport __module-host --module PATH ...`, a child process of the agent that
//! loads one PKCS #11 library and serves the agent's [`Call`]s on its stdin/stdout.
//!
//! * Before the module is loaded, the protocol channel is moved off fds 0 and 1 (which then
//!   read /dev/null or NUL and write to stderr): a library that prints cannot corrupt the frames.
//! * A reader thread reads calls; a pool of workers runs them on the [`CryptokiBackend`] (the
//!   login policy, session pool and caches live here, next to the module) and writes replies.
//! * The host exits when the agent closes the channel (the agent ended, however it ended), or
//!   on [`wire::Shutdown`] after finalising the module.

use super::wire::{self, Call, Hello, Hex, Op, Reply, Request, WireError};
use crate::allowlist::{AllowedModule, Allowlist};
use crate::backend::pkcs11::{CryptokiBackend, LoginPolicy};
use crate::backend::{Backend, Credential, Progress, SignRequest};
use crate::error::{AgentError, Result};
use serde::Serialize;
use serde_json::value::RawValue;
use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zeroize::Zeroizing;

/// The argument that selects host mode (hidden from `--help`).
pub const HOST_ARG: &str = "__module-host";
/// Calls running at once in one host, at most. The agent sends no more than its blocking
/// threads (`MAX_BLOCKING_THREADS`, 64) at once.
const WORKERS: usize = 64;
/// Calls running at once in one host unless `KEYPORT_HOST_WORKERS` says otherwise: more than
/// one site may have in flight (32), so that calls waiting on the token (a keypad, a turn at
/// signing, a slow card) always leave threads for the ones that do not (`pkcs11.info`,
/// reading certificates). CPU-bound signatures are bounded separately (the signing gate).
/// An idle worker is a parked thread.
const DEFAULT_WORKERS: usize = 48;
/// The longest wait for a slot event one call may ask for.
const MAX_WAIT_MS: u64 = 10_000;

/// What the agent passes on the command line.
#[derive(Debug, Clone)]
pub struct HostArgs {
    pub module: String,
    pub policy: LoginPolicy,
}

impl HostArgs {
    pub fn to_args(&self) -> Vec<String> {
        vec![
            HOST_ARG.into(),
            "--module".into(),
            self.module.clone(),
            "--keep-logged-in".into(),
            self.policy.keep_logged_in.to_string(),
            "--idle-logout-ms".into(),
            self.policy.idle_timeout.as_millis().to_string(),
            "--lock-wait-ms".into(),
            self.policy.lock_wait.as_millis().to_string(),
        ]
    }

    pub fn parse(args: &[String]) -> Option<HostArgs> {
        let mut module = None;
        let mut policy = LoginPolicy::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--module" => module = Some(it.next()?.clone()),
                "--keep-logged-in" => policy.keep_logged_in = it.next()?.parse().ok()?,
                "--idle-logout-ms" => {
                    policy.idle_timeout = Duration::from_millis(it.next()?.parse().ok()?)
                }
                "--lock-wait-ms" => {
                    policy.lock_wait = Duration::from_millis(it.next()?.parse().ok()?)
                }
                _ => return None,
            }
        }
        Some(HostArgs {
            module: module?,
            policy,
        })
    }
}

/// The channel to the agent, moved off the standard descriptors.
struct Channel {
    input: std::fs::File,
    output: Mutex<std::fs::File>,
}

#[cfg(unix)]
fn take_channel() -> std::io::Result<Channel> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: dup/dup2/open on descriptors this process owns; every result is checked, and the
    // new descriptors are owned by exactly one File each.
    unsafe {
        let input = libc::dup(0);
        let output = libc::dup(1);
        if input < 0 || output < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if null < 0 || libc::dup2(null, 0) < 0 || libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::close(null);
        for fd in [input, output] {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        Ok(Channel {
            input: OwnedFd::from_raw_fd(input).into(),
            output: Mutex::new(OwnedFd::from_raw_fd(output).into()),
        })
    }
}

#[cfg(windows)]
fn take_channel() -> std::io::Result<Channel> {
    let (input, output) = super::windows::take_channel()?;
    Ok(Channel {
        input,
        output: Mutex::new(output),
    })
}

impl Channel {
    fn send(&self, message: &impl Serialize) -> std::io::Result<()> {
        let mut out = self.output.lock().unwrap_or_else(|e| e.into_inner());
        wire::send(&mut *out, message)
    }
}

/// Entry point of host mode; `args` follow [`HOST_ARG`].
pub fn main(args: &[String]) -> ExitCode {
    let Some(args) = HostArgs::parse(args) else {
        crate::logging::stderr_line("keyport: the module host was started with wrong arguments");
        return ExitCode::from(2);
    };
    let channel = match take_channel() {
        Ok(c) => Arc::new(c),
        Err(e) => {
            crate::logging::stderr_line(&format!("keyport module host: {e}"));
            return ExitCode::from(2);
        }
    };
    let backend = CryptokiBackend::start(args.policy);
    let module = Allowlist::new([args.module.clone()])
        .resolve(None)
        .expect("one module listed");
    // Load the module now, so that the agent learns at once whether it loads.
    let load_error = backend.info(&module).err().map(|e| WireError::from(&e));
    let loaded = load_error.is_none();
    let hello = Hello {
        protocol: wire::PROTOCOL_VERSION,
        load_error,
    };
    if channel.send(&hello).is_err() || !loaded {
        return ExitCode::SUCCESS;
    }
    tracing::debug!(module = %args.module, "module host ready");
    serve(channel, backend, module)
}

/// Serve calls until the agent closes the channel or asks us to shut down.
///
/// Leader and followers: every worker takes turns at reading the channel; the one that read a
/// call hands the reading role on (by releasing the lock) and runs the call itself. A call is
/// thus picked up by a thread already waiting on the channel, with no hand-off to another
/// thread on its way.
fn serve(channel: Arc<Channel>, backend: Arc<CryptokiBackend>, module: AllowedModule) -> ExitCode {
    let reading = Arc::new(Mutex::new(()));
    let workers: Vec<_> = (0..workers())
        .map(|n| {
            let (reading, channel, backend, module) = (
                reading.clone(),
                channel.clone(),
                backend.clone(),
                module.clone(),
            );
            std::thread::Builder::new()
                .name(format!("keyport-host-{n}"))
                .spawn(move || loop {
                    let frame = {
                        let _turn = reading.lock().unwrap_or_else(|e| e.into_inner());
                        wire::read_frame(&mut &channel.input)
                    };
                    let call = match frame.map(|f| serde_json::from_slice::<Call>(&f)) {
                        Ok(Ok(call)) => call,
                        // The agent closed the channel (it is gone or wants us gone), or sent
                        // something we cannot read: either way, the end.
                        Ok(Err(e)) => end(&backend, &format!("a call it cannot read ({e})")),
                        Err(wire::FrameError::Closed) => end(&backend, ""),
                        Err(e) => end(&backend, &format!("an unreadable channel ({e})")),
                    };
                    if matches!(call.request, Request::Shutdown(_)) {
                        backend.shutdown();
                        let null = RawValue::from_string("null".into()).expect("JSON");
                        let _ = channel.send(&Reply::to(call.id, Ok(null)));
                        crate::logging::flush();
                        std::process::exit(0);
                    }
                    let reply = run(backend.as_ref(), &module, call, &channel);
                    if channel.send(&reply).is_err() {
                        end(&backend, "");
                    }
                })
        })
        .collect();
    for w in workers {
        match w {
            Ok(w) => {
                let _ = w.join();
            }
            Err(_) => return ExitCode::from(1),
        }
    }
    ExitCode::SUCCESS
}

/// Threads serving calls at once ([`DEFAULT_WORKERS`]).
fn workers() -> usize {
    std::env::var("KEYPORT_HOST_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_WORKERS)
        .clamp(1, WORKERS)
}

/// The end of the host: log out and finalise if the module lets us within 2 s (a worker
/// stuck in it must not keep the process alive), then exit.
fn end(backend: &Arc<CryptokiBackend>, why: &str) -> ! {
    static ENDING: std::sync::Once = std::sync::Once::new();
    ENDING.call_once(|| {
        if !why.is_empty() {
            tracing::warn!("module host: {why}; exiting");
        }
        let b = backend.clone();
        let done = std::thread::spawn(move || b.shutdown());
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while !done.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        crate::logging::flush();
        let _ = std::io::stderr().flush();
        std::process::exit(0);
    });
    // Another worker is ending the process.
    loop {
        std::thread::park();
    }
}

fn reply<T: Serialize>(id: u64, result: Result<T>) -> Reply {
    let result = result.and_then(|v| {
        serde_json::value::to_raw_value(&v)
            .map_err(|_| AgentError::new(keyport_protocol::ErrorReason::Internal))
    });
    Reply::to(id, result.map_err(|e| WireError::from(&e)))
}

/// The reply to `_op`: typed by the op's declaration, as the agent reads it.
fn answer<O: Op>(id: u64, _op: &O, result: Result<O::Reply>) -> Reply {
    reply(id, result)
}

/// The longest pause an [`wire::Echo`] may ask for.
const MAX_ECHO_DELAY_MS: u32 = 2_000;

fn run(backend: &dyn Backend, module: &AllowedModule, call: Call, channel: &Channel) -> Reply {
    let id = call.id;
    match call.request {
        Request::Info(op) => answer(id, &op, backend.info(module)),
        Request::Slots(op) => answer(id, &op, backend.slots(module, op.token_present)),
        Request::Token(op) => answer(id, &op, backend.token(module, op.slot_id)),
        Request::Certificates(op) => {
            let certs = backend.certificates(module, op.slot_id);
            answer(
                id,
                &op,
                certs.map(|c| c.into_iter().map(Into::into).collect()),
            )
        }
        Request::KeyIds(op) => {
            let ids = backend.key_ids(module, op.slot_id);
            answer(id, &op, ids.map(|ids| ids.into_iter().map(Hex).collect()))
        }
        Request::Certificate(op) => {
            let cert = backend.certificate(module, op.slot_id, &op.id.0);
            answer(id, &op, cert.map(Into::into))
        }
        Request::Sign(op) => {
            let digests: Vec<Zeroizing<Vec<u8>>> = op
                .digests
                .iter()
                .map(|d| Zeroizing::new(d.0.clone()))
                .collect();
            // Each signature of a batch tells the agent the call goes on, so that its time
            // limit is per signature, not per batch.
            let progress = || {
                let _ = channel.send(&Reply::progress(id));
            };
            let request = SignRequest {
                slot_id: op.slot_id,
                key_id: &op.key_id.0,
                credential: op.pin.as_ref().map_or(Credential::PinPad, Credential::Pin),
                algorithm: op.algorithm,
                scheme: op.scheme,
                digests: &digests,
                progress: (digests.len() > 1).then_some(Progress(&progress)),
            };
            let sigs = backend.sign(module, &request);
            answer(id, &op, sigs.map(|s| s.into_iter().map(Hex).collect()))
        }
        Request::SlotPresence(op) => answer(id, &op, backend.slot_presence(module)),
        Request::WaitSlotEvent(op) => {
            let wait = Duration::from_millis(op.timeout_ms.min(MAX_WAIT_MS));
            answer(id, &op, backend.wait_slot_event(module, wait))
        }
        Request::LogoutAll(op) => {
            backend.logout_all();
            answer(id, &op, Ok(()))
        }
        // Handled by the reader (it must not run on a worker that could be stuck).
        Request::Shutdown(op) => answer(id, &op, Ok(())),
        Request::Echo(op) => {
            let pause = op.delay_ms.min(MAX_ECHO_DELAY_MS);
            std::thread::sleep(Duration::from_millis(pause.into()));
            let n = (op.reply_bytes as usize).min(wire::MAX_FRAME_BYTES - 64);
            answer(id, &op, Ok((op.payload.len(), "x".repeat(n))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_arguments_round_trip() {
        let args = HostArgs {
            module: "/usr/lib/x.so".into(),
            policy: LoginPolicy {
                keep_logged_in: false,
                idle_timeout: Duration::from_millis(1500),
                lock_wait: Duration::from_millis(2500),
            },
        };
        let argv = args.to_args();
        assert_eq!(argv[0], HOST_ARG);
        let back = HostArgs::parse(&argv[1..]).unwrap();
        assert_eq!(back.module, "/usr/lib/x.so");
        assert!(!back.policy.keep_logged_in);
        assert_eq!(back.policy.idle_timeout, Duration::from_millis(1500));
        assert_eq!(back.policy.lock_wait, Duration::from_millis(2500));
        assert!(HostArgs::parse(&["--module".into()]).is_none());
        assert!(HostArgs::parse(&["--bogus".into(), "1".into()]).is_none());
    }
}
