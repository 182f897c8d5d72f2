//! The agent's side: [`HostBackend`], a [`Backend`] whose every call goes to the module host of
//! the library it names.
//!
//! * One host per library file ([`ModuleIdentity`]: a symlink is the same host), started at the
//!   first call and again after it dies.
//! * A call that takes longer than `request_timeout` gets REQUEST_TIMEOUT and its host is
//!   killed (other calls on that host get MODULE_CRASHED naming why): nothing stays stuck.
//! * A call that only *waited* in the host (for a token another request holds, such as a PIN
//!   typed on a keypad) is answered TOKEN_BUSY by the host before that limit: waiting never
//!   gets a host killed. A batch tells the agent after each signature that it goes on: its
//!   limit is per signature.
//! * A host that dies (a crash, an abort, an exit) fails the calls it held with MODULE_CRASHED;
//!   one that fails to start twice in a row, or dies five times within a minute (a library
//!   that crashes on some request), is retried after a growing pause (1 s, 2 s, … 60 s), and
//!   its error says when.
//! * Reading the channel never waits behind writing to it (see [`Host::call`]).
//! * Each host is reaped by its reader thread (no zombies), exits when the agent's end of the
//!   channel closes (no orphans), and gets only the environment a module needs
//!   ([`module_environment`]).

use super::server::HostArgs;
use super::wire::{self, Call, Hello, Reply, Request, WireCertificate};
use crate::allowlist::{AllowedModule, ModuleIdentity};
use crate::backend::pkcs11::LoginPolicy;
use crate::backend::{Backend, CertificateObject, Credential, SignRequest, SlotPresence, SlotWait};
use crate::error::{AgentError, Result};
use crate::logging::quote;
use keyport_protocol::{ErrorReason, InfoResult, SlotInfo, TokenInfo};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Variables a module host inherits (when set); everything else is removed. PKCS #11 libraries
/// read their configuration from these (`SOFTHSM2_CONF`, `OPENSC_CONF`, p11-kit's), find the
/// smart-card service (`PCSCLITE_CSOCK_NAME`, `XDG_RUNTIME_DIR`), or show their own PIN dialog
/// (the display and session bus variables).
pub const MODULE_ENV: &[&str] = &[
    "HOME",
    "USER",
    "LOGNAME",
    "PATH",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_CONFIG_DIRS",
    "XDG_DATA_HOME",
    "XDG_DATA_DIRS",
    "XDG_CACHE_HOME",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XAUTHORITY",
    "DBUS_SESSION_BUS_ADDRESS",
    "SOFTHSM2_CONF",
    "OPENSC_CONF",
    "OPENSC_DRIVER",
    "PCSCLITE_CSOCK_NAME",
    "RUST_LOG",
];
/// Prefixes of variables a module host inherits.
pub const MODULE_ENV_PREFIXES: &[&str] = &["LC_", "P11_KIT_", "PKCS11_"];

/// The environment a module host gets: [`MODULE_ENV`], [`MODULE_ENV_PREFIXES`] and `extra`.
pub fn module_environment(extra: &[String]) -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(k, _)| {
            let Some(k) = k.to_str() else { return false };
            MODULE_ENV.contains(&k)
                || MODULE_ENV_PREFIXES.iter().any(|p| k.starts_with(p))
                || extra.iter().any(|e| e == k)
        })
        .collect()
}

/// How long a host may take to load its module and say hello.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a host gets to log out and finalise at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How long a signature waits for the person at a PIN-pad reader unless configured.
pub const DEFAULT_PIN_PAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Deaths of started hosts within this are counted ([`Supervised::crashed`]).
const CRASH_WINDOW: Duration = Duration::from_secs(60);
/// Deaths of started hosts within [`CRASH_WINDOW`] restarted at once before the back-off.
const CRASHES_BEFORE_BACK_OFF: u32 = 5;

pub struct HostBackend {
    exe: PathBuf,
    policy: LoginPolicy,
    call_timeout: Duration,
    /// How long a signature may wait for the person at a PIN-pad reader, beyond `call_timeout`.
    pin_pad_timeout: Duration,
    env: Vec<(OsString, OsString)>,
    modules: Mutex<HashMap<String, Arc<Supervisor>>>,
    by_identity: Mutex<HashMap<ModuleIdentity, Arc<Supervisor>>>,
}

/// One library's host, restarted as needed.
struct Supervisor {
    name: String,
    state: Mutex<Supervised>,
}

#[derive(Default)]
struct Supervised {
    host: Option<Arc<Host>>,
    /// Starts that failed in a row (reset by a start that succeeds).
    start_failures: u32,
    /// When hosts that had started died (crashed, or were stopped because a call hung), over
    /// the last [`CRASH_WINDOW`].
    crashes: std::collections::VecDeque<Instant>,
    /// No new host before this.
    retry_at: Option<Instant>,
    /// Why the last one failed (said again until `retry_at`).
    last_error: Option<AgentError>,
}

impl Supervised {
    /// A start failed: from the second in a row on, the next waits 1, 2, 4 … 60 s.
    fn start_failed(&mut self, why: AgentError) {
        self.start_failures += 1;
        // The first failure may be a fluke: try again at once; then back off.
        if self.start_failures >= 2 {
            self.back_off(self.start_failures - 2);
        }
        self.last_error = Some(why);
    }

    /// A host that had started died. A few such deaths are restarted at once (a card pulled
    /// mid-call, one hung call); from the [`CRASHES_BEFORE_BACK_OFF`]th within a minute on
    /// (a library that crashes on some request, whoever sends it), the next start waits 1, 2,
    /// 4 … 60 s.
    fn crashed(&mut self, why: AgentError) {
        let now = Instant::now();
        while self
            .crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW)
        {
            self.crashes.pop_front();
        }
        self.crashes.push_back(now);
        let n = self.crashes.len() as u32;
        if n >= CRASHES_BEFORE_BACK_OFF {
            self.back_off(n - CRASHES_BEFORE_BACK_OFF);
        }
        // Bounded: past 12 the pause is at its longest anyway.
        if self.crashes.len() > 12 {
            self.crashes.pop_front();
        }
        self.last_error = Some(why);
    }

    fn back_off(&mut self, step: u32) {
        let secs = 1u64 << step.min(6);
        self.retry_at = Some(Instant::now() + Duration::from_secs(secs.min(60)));
    }

    fn failures(&self) -> usize {
        self.start_failures as usize + self.crashes.len()
    }
}

/// A running host process.
struct Host {
    name: String,
    pid: u32,
    /// The channel's writing end (non-blocking: see [`Host::write`]).
    stdin: parking_lot::Mutex<ChildStdin>,
    /// The channel's reading end. Whoever holds it reads for everyone (see [`Host::call`]).
    stdout: parking_lot::Mutex<ChildStdout>,
    /// Calls on their way, by id.
    pending: Mutex<HashMap<u64, Slot>>,
    next_id: AtomicU64,
    /// Set once it is gone: why, as the error its calls get.
    death: OnceLock<AgentError>,
    /// Why the agent killed it, if it did.
    kill_reason: Mutex<Option<String>>,
    /// Set when the agent kills it: from then on no new call is given to it, even before the
    /// reaper has seen it end.
    stopping: std::sync::atomic::AtomicBool,
}

impl Host {
    /// Still serving: neither gone nor being stopped.
    fn serving(&self) -> bool {
        self.death.get().is_none() && !self.stopping.load(Ordering::SeqCst)
    }
}

impl HostBackend {
    /// Hosts run `exe` (this very binary) in host mode with `policy`; a call waits at most
    /// `call_timeout`; `extra_env` names variables to pass beyond [`MODULE_ENV`].
    pub fn new(
        exe: PathBuf,
        policy: LoginPolicy,
        call_timeout: Duration,
        extra_env: &[String],
    ) -> HostBackend {
        HostBackend {
            exe,
            policy,
            call_timeout,
            pin_pad_timeout: DEFAULT_PIN_PAD_TIMEOUT,
            env: module_environment(extra_env),
            modules: Mutex::new(HashMap::new()),
            by_identity: Mutex::new(HashMap::new()),
        }
    }

    fn supervisor(&self, allowed: &AllowedModule) -> Result<Arc<Supervisor>> {
        if let Some(s) = lock(&self.modules).get(allowed.path()) {
            return Ok(s.clone());
        }
        let identity = allowed.identity().map_err(|e| {
            AgentError::with_message(
                ErrorReason::ModuleLoadFailed,
                format!(
                    "The PKCS #11 library {} could not be found: {e}.",
                    allowed.path()
                ),
            )
        })?;
        let s = lock(&self.by_identity)
            .entry(identity.clone())
            .or_insert_with(|| {
                Arc::new(Supervisor {
                    name: identity.canonical.display().to_string(),
                    state: Mutex::new(Supervised::default()),
                })
            })
            .clone();
        lock(&self.modules).insert(allowed.path().to_string(), s.clone());
        Ok(s)
    }

    /// The live host of `allowed`, started if need be.
    fn host(&self, allowed: &AllowedModule) -> Result<Arc<Host>> {
        let sup = self.supervisor(allowed)?;
        let mut st = lock(&sup.state);
        if let Some(h) = st.host.take() {
            if h.serving() {
                st.host = Some(h.clone());
                return Ok(h);
            }
            // It died, or is being stopped.
            let why = h.death.get().cloned().unwrap_or_else(|| {
                AgentError::with_message(
                    ErrorReason::ModuleCrashed,
                    format!("The PKCS #11 library {} was stopped.", h.name),
                )
            });
            st.crashed(why);
        }
        if let Some(at) = st.retry_at {
            let now = Instant::now();
            if now < at {
                let base = st
                    .last_error
                    .clone()
                    .unwrap_or_else(|| AgentError::new(ErrorReason::ModuleCrashed));
                let message = base
                    .message
                    .split("; it is restarted at the next request")
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches('.')
                    .to_string();
                return Err(AgentError::with_message(
                    base.reason,
                    format!(
                        "{message}. It failed {} times lately, so it is not restarted at once: \
                         the next try is in {} s.",
                        st.failures(),
                        (at - now).as_secs().max(1)
                    ),
                ));
            }
        }
        match self.spawn(&sup.name) {
            Ok(h) => {
                st.host = Some(h.clone());
                st.retry_at = None;
                st.start_failures = 0;
                Ok(h)
            }
            Err(e) => {
                st.start_failed(e.clone());
                Err(e)
            }
        }
    }

    fn spawn(&self, module: &str) -> Result<Arc<Host>> {
        let started = Instant::now();
        let args = HostArgs {
            module: module.to_string(),
            policy: self.policy,
        };
        let mut child = Command::new(&self.exe)
            .args(args.to_args())
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                tracing::error!(error = %e, "cannot start a module host");
                AgentError::with_message(
                    ErrorReason::ModuleLoadFailed,
                    format!("The agent could not start a process for the PKCS #11 library {module}: {e}."),
                )
            })?;
        let pid = child.id();
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let name = module.to_string();
        forward_log(stderr, name.clone(), pid);

        // The hello, within START_TIMEOUT (a module whose C_Initialize hangs is killed).
        let (hello_tx, hello_rx) = mpsc::sync_channel(1);
        let reader = std::thread::Builder::new()
            .name("keyport-host-reader".into())
            .spawn(move || {
                let first = wire::read_frame(&mut stdout);
                let _ = hello_tx.send(first);
                stdout
            })
            .map_err(|e| AgentError::with_message(ErrorReason::Internal, e.to_string()))?;
        let hello = match hello_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(frame)) => serde_json::from_slice::<Hello>(&frame)
                .map_err(|_| wire::garbled("its hello", module)),
            Ok(Err(_)) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = reap(&mut child);
                Err(AgentError::with_message(
                    ErrorReason::ModuleCrashed,
                    format!("The PKCS #11 library {module} crashed at start ({status})."),
                ))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(AgentError::with_message(
                    ErrorReason::ModuleLoadFailed,
                    format!(
                        "The PKCS #11 library {module} did not finish loading in {} s.",
                        START_TIMEOUT.as_secs()
                    ),
                ))
            }
        };
        let hello = match hello {
            Ok(h) => h,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                tracing::warn!(module = %name, "{}", e.message);
                return Err(e);
            }
        };
        if hello.protocol != wire::PROTOCOL_VERSION {
            let _ = child.kill();
            let _ = child.wait();
            return Err(wire::garbled("another protocol version", module));
        }
        if let Some(e) = hello.load_error {
            let _ = child.wait();
            let e = AgentError::from(e);
            tracing::warn!(module = %name, reason = %e.reason, "{}", e.message);
            return Err(e);
        }
        let stdout = reader.join().expect("the hello reader does not panic");
        if let Err(e) = set_nonblocking(&stdin) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(AgentError::with_message(
                ErrorReason::Internal,
                e.to_string(),
            ));
        }
        let host = Arc::new(Host {
            name,
            pid,
            stdin: parking_lot::Mutex::new(stdin),
            stdout: parking_lot::Mutex::new(stdout),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            death: OnceLock::new(),
            kill_reason: Mutex::new(None),
            stopping: std::sync::atomic::AtomicBool::new(false),
        });
        let h = host.clone();
        std::thread::Builder::new()
            .name("keyport-host-reaper".into())
            .spawn(move || h.reap(child))
            .map_err(|e| AgentError::with_message(ErrorReason::Internal, e.to_string()))?;
        tracing::info!(
            module = %host.name,
            pid,
            start_ms = started.elapsed().as_millis() as u64,
            "module host started"
        );
        Ok(host)
    }

    /// How long a signature may wait for the person at a PIN-pad reader (default 60 s).
    pub fn with_pin_pad_timeout(mut self, timeout: Duration) -> Self {
        self.pin_pad_timeout = timeout;
        self
    }

    fn call<T: DeserializeOwned>(&self, allowed: &AllowedModule, request: Request) -> Result<T> {
        let host = self.host(allowed)?;
        host.call(request, self.call_timeout)
    }

    fn live_hosts(&self) -> Vec<Arc<Host>> {
        let sups: Vec<Arc<Supervisor>> = lock(&self.by_identity).values().cloned().collect();
        sups.iter()
            .filter_map(|s| lock(&s.state).host.clone())
            .filter(|h| h.death.get().is_none())
            .collect()
    }

    /// Send `payload` to the host of `module` and get `reply_bytes` back after `delay_ms`,
    /// touching no token: the channel's soak test. Returns the payload's length as the host
    /// saw it, and the reply.
    #[doc(hidden)]
    pub fn echo(
        &self,
        module: &AllowedModule,
        payload: String,
        reply_bytes: u32,
        delay_ms: u32,
    ) -> Result<(usize, String)> {
        self.call(
            module,
            Request::Echo {
                payload,
                reply_bytes,
                delay_ms,
            },
        )
    }

    /// Process ids of the hosts running now (for tests and the benchmark).
    pub fn host_pids(&self) -> Vec<u32> {
        self.live_hosts().iter().map(|h| h.pid).collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wait for a dead child and say how it ended.
fn reap(child: &mut Child) -> String {
    match child.wait() {
        Ok(status) => describe(status),
        Err(e) => format!("its status is unknown: {e}"),
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let name = match sig {
                libc::SIGSEGV => " (SIGSEGV)",
                libc::SIGABRT => " (SIGABRT)",
                libc::SIGKILL => " (SIGKILL)",
                libc::SIGBUS => " (SIGBUS)",
                libc::SIGILL => " (SIGILL)",
                libc::SIGFPE => " (SIGFPE)",
                _ => "",
            };
            return format!("killed by signal {sig}{name}");
        }
    }
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => "ended".into(),
    }
}

/// The host's log lines, into the agent's log (cut, and rate-limited with it).
fn forward_log(stderr: std::process::ChildStderr, module: String, pid: u32) {
    let _ = std::thread::Builder::new()
        .name("keyport-host-log".into())
        .spawn(move || {
            for line in std::io::BufReader::new(stderr).split(b'\n') {
                let Ok(line) = line else { return };
                let line = String::from_utf8_lossy(&line);
                let line = line.trim();
                // The host writes `LEVEL message`; anything else (the module's own output)
                // is logged as a warning.
                let (level, text) = line.split_once(' ').unwrap_or(("", line));
                let text = quote(text.trim_start(), 400);
                match level {
                    "ERROR" => tracing::error!(target: "keyport::host", module = %module, pid, "{text}"),
                    "WARN" => tracing::warn!(target: "keyport::host", module = %module, pid, "{text}"),
                    "INFO" => tracing::info!(target: "keyport::host", module = %module, pid, "{text}"),
                    "DEBUG" => tracing::debug!(target: "keyport::host", module = %module, pid, "{text}"),
                    "TRACE" => tracing::trace!(target: "keyport::host", module = %module, pid, "{text}"),
                    _ => tracing::warn!(target: "keyport::host", module = %module, pid, "{}", quote(line, 400)),
                }
            }
        });
}

/// What a waiting call receives: its reply, its turn to read the channel, or word that its
/// call made headway (its deadline starts again).
enum Delivery {
    Reply(Reply),
    YourTurn,
    Progress,
}

/// Where a call stands, in [`Host::pending`].
enum Slot {
    /// Its request is still being written: it cannot read yet, so it is never handed the
    /// reading role (it could be stuck writing into a full pipe while the replies pile up).
    Writing,
    /// Written; waiting for its reply or its turn to read.
    Waiting(mpsc::Sender<Delivery>),
    /// Its reply came while it was still writing.
    Arrived(Reply),
}

/// How a turn at reading ended.
enum Read {
    Mine(Reply),
    TimedOut,
    Ended,
}

impl Host {
    /// Send `request` and wait for its reply; at most `timeout` passes without the host saying
    /// anything of it (a batch says after each signature that it goes on: see
    /// [`Reply::progress`]).
    ///
    /// There is no reader thread: a caller that has written its request and finds the channel
    /// free reads it, handing the replies of others to them, until its own comes; then it
    /// passes the reading role to another caller that has written its request. A lone call
    /// therefore reads its own reply, with no thread in between.
    ///
    /// Reading never waits behind writing: a caller is given the reading role only once its
    /// request is written, and a reply due to a caller still writing is kept for it. So
    /// whenever the host has a reply to write, somebody reads it (or will, as soon as their
    /// write returns), and the host's writers never block the host's reader for good. A write
    /// itself is bounded by the deadline (the pipe is non-blocking): a host that stops reading
    /// its requests is stopped like one that stops answering.
    fn call<T: DeserializeOwned>(&self, request: Request, timeout: Duration) -> Result<T> {
        if let Some(e) = self.death.get() {
            return Err(e.clone());
        }
        let mut deadline = Instant::now() + timeout;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.pending).insert(id, Slot::Writing);
        if let Err(e) = self.write(&Call { id, request }, deadline) {
            lock(&self.pending).remove(&id);
            return Err(match e.kind() {
                std::io::ErrorKind::TimedOut => self.timed_out(timeout),
                _ => self.wait_death(),
            });
        }
        // Unbounded: a reply must never find the channel full of turns (it was lost once so).
        let (tx, rx) = mpsc::channel();
        let early = {
            let mut pending = lock(&self.pending);
            match pending.remove(&id) {
                Some(Slot::Arrived(reply)) => Some(reply),
                _ => {
                    pending.insert(id, Slot::Waiting(tx));
                    None
                }
            }
        };
        // The reaper sets `death` before it fails the waiting calls: if it has, it may have
        // done so before we were waiting.
        if early.is_none() && self.death.get().is_some() {
            lock(&self.pending).remove(&id);
            return Err(self.wait_death());
        }
        let reply = match early {
            Some(reply) => reply,
            None => loop {
                if let Some(mut stdout) = self.stdout.try_lock() {
                    let turn = self.read_for(&mut stdout, id, &rx, &mut deadline, timeout);
                    drop(stdout);
                    lock(&self.pending).remove(&id);
                    self.pass_the_turn();
                    match turn {
                        Read::Mine(reply) => break reply,
                        Read::TimedOut => return Err(self.timed_out(timeout)),
                        Read::Ended => return Err(self.wait_death()),
                    }
                }
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(Delivery::Reply(reply)) => break reply,
                    Ok(Delivery::YourTurn) => continue,
                    Ok(Delivery::Progress) => deadline = Instant::now() + timeout,
                    Err(_) => {
                        lock(&self.pending).remove(&id);
                        return Err(self.timed_out(timeout));
                    }
                }
            },
        };
        match (reply.ok, reply.err) {
            (_, Some(e)) => Err(e.into()),
            (Some(v), None) => {
                serde_json::from_str(v.get()).map_err(|_| wire::garbled("an answer", &self.name))
            }
            (None, None) => Err(wire::garbled("an empty answer", &self.name)),
        }
    }

    /// Write one call, giving up at `deadline` (`TimedOut`). The writers take turns; one
    /// that cannot get its turn before the deadline gives up too.
    fn write(&self, call: &Call, deadline: Instant) -> std::io::Result<()> {
        let Some(mut stdin) = self.stdin.try_lock_until(deadline) else {
            return Err(std::io::ErrorKind::TimedOut.into());
        };
        let mut out = DeadlineWriter {
            pipe: &mut stdin,
            deadline,
        };
        let written = wire::send(&mut out, call);
        if written
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
        {
            // Part of a frame may be in the pipe: the channel is unusable from here on.
            self.kill("it stopped reading its requests".into());
        }
        written
    }

    /// Read the channel until reply `id` comes, delivering the others to their callers.
    fn read_for(
        &self,
        stdout: &mut ChildStdout,
        id: u64,
        rx: &mpsc::Receiver<Delivery>,
        deadline: &mut Instant,
        timeout: Duration,
    ) -> Read {
        loop {
            // A previous reader may have delivered ours just before passing the turn.
            while let Ok(d) = rx.try_recv() {
                match d {
                    Delivery::Reply(r) => return Read::Mine(r),
                    Delivery::Progress => *deadline = Instant::now() + timeout,
                    Delivery::YourTurn => {}
                }
            }
            if !readable_before(stdout, *deadline) {
                return Read::TimedOut;
            }
            let Ok(frame) = wire::read_frame(stdout) else {
                return Read::Ended;
            };
            let Ok(reply) = serde_json::from_slice::<Reply>(&frame) else {
                self.kill("it answered garbage".into());
                return Read::Ended;
            };
            if reply.id == id {
                if reply.progress {
                    *deadline = Instant::now() + timeout;
                    continue;
                }
                return Read::Mine(reply);
            }
            self.deliver(reply);
        }
    }

    /// Hand `reply` to the call it answers (kept for it if it is still writing; dropped if
    /// nobody waits for it any more).
    fn deliver(&self, reply: Reply) {
        let mut pending = lock(&self.pending);
        let Some(slot) = pending.get_mut(&reply.id) else {
            return;
        };
        match slot {
            Slot::Waiting(tx) if reply.progress => {
                let _ = tx.send(Delivery::Progress);
            }
            Slot::Waiting(_) => {
                if let Some(Slot::Waiting(tx)) = pending.remove(&reply.id) {
                    let _ = tx.send(Delivery::Reply(reply));
                }
            }
            Slot::Writing if !reply.progress => *slot = Slot::Arrived(reply),
            Slot::Writing | Slot::Arrived(_) => {}
        }
    }

    /// Give the reading role to a call that is waiting (its request written), if any.
    fn pass_the_turn(&self) {
        let pending = lock(&self.pending);
        if let Some(tx) = pending.values().find_map(|s| match s {
            Slot::Waiting(tx) => Some(tx),
            _ => None,
        }) {
            let _ = tx.send(Delivery::YourTurn);
        }
    }

    fn timed_out(&self, timeout: Duration) -> AgentError {
        self.kill(format!(
            "a call took longer than {} s",
            timeout.as_secs_f32()
        ));
        AgentError::with_message(
            ErrorReason::RequestTimeout,
            format!(
                "The PKCS #11 library {} did not answer in {} s; its process was stopped \
                 and is restarted at the next request.",
                self.name,
                timeout.as_secs()
            ),
        )
    }

    fn wait_death(&self) -> AgentError {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Some(e) = self.death.get() {
                return e.clone();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        AgentError::with_message(
            ErrorReason::ModuleCrashed,
            format!(
                "The process serving the PKCS #11 library {} stopped answering.",
                self.name
            ),
        )
    }

    /// Stop the host at once (it hung): its calls get MODULE_CRASHED with `why`.
    fn kill(&self, why: String) {
        if self.death.get().is_some() || self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::warn!(module = %self.name, pid = self.pid, "stopping the module host: {why}");
        *lock(&self.kill_reason) = Some(why);
        #[cfg(unix)]
        // SAFETY: kill(2) on the pid of our own child, not reaped yet (the reaper sets `death`
        // after waitpid, and we checked it is unset).
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
        }
    }

    /// The reaper thread: wait for the host to end, say why, and fail every call still waiting.
    fn reap(self: Arc<Self>, mut child: Child) {
        let status = reap(&mut child);
        let killed = lock(&self.kill_reason).take();
        let message = match &killed {
            Some(why) => format!(
                "The process serving the PKCS #11 library {} was stopped ({why}); it is restarted at the next request.",
                self.name
            ),
            None => format!(
                "The PKCS #11 library {} crashed ({status}); it is restarted at the next request.",
                self.name
            ),
        };
        if status == "exit status 0" {
            tracing::debug!(module = %self.name, pid = self.pid, "module host exited");
        } else {
            tracing::warn!(module = %self.name, pid = self.pid, "module host ended: {status}");
        }
        let error = AgentError::with_message(ErrorReason::ModuleCrashed, message);
        let _ = self.death.set(error.clone());
        let waiting: Vec<_> = lock(&self.pending).drain().collect();
        for (id, slot) in waiting {
            if let Slot::Waiting(tx) = slot {
                let _ = tx.send(Delivery::Reply(Reply::to(id, Err((&error).into()))));
            }
        }
    }
}

/// A writer into the host's non-blocking stdin that waits for room until a deadline.
struct DeadlineWriter<'a> {
    pipe: &'a mut ChildStdin,
    deadline: Instant,
}

impl std::io::Write for DeadlineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            match self.pipe.write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if !ready_before(&*self.pipe, libc_events::OUT, self.deadline) {
                        return Err(std::io::ErrorKind::TimedOut.into());
                    }
                }
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.pipe.flush()
    }
}

/// The poll(2) events [`ready_before`] waits for.
mod libc_events {
    #[cfg(unix)]
    pub const IN: i16 = libc::POLLIN;
    #[cfg(unix)]
    pub const OUT: i16 = libc::POLLOUT;
    #[cfg(not(unix))]
    pub const IN: i16 = 1;
    #[cfg(not(unix))]
    pub const OUT: i16 = 4;
}

/// Wait until `stdout` has data (or the other end closed), at most until `deadline`.
fn readable_before(stdout: &ChildStdout, deadline: Instant) -> bool {
    ready_before(stdout, libc_events::IN, deadline)
}

/// Wait until `pipe` is ready for `events` (or broken), at most until `deadline`.
#[cfg(unix)]
fn ready_before(pipe: &impl std::os::fd::AsRawFd, events: i16, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fd = libc::pollfd {
            fd: pipe.as_raw_fd(),
            events,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for a descriptor we own, for the duration of the call.
        match unsafe { libc::poll(&mut fd, 1, ms) } {
            0 => continue,
            n if n > 0 => return true,
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {
                continue
            }
            // A broken descriptor: using it will say so.
            _ => return true,
        }
    }
}

#[cfg(not(unix))]
fn ready_before<P>(_: &P, _: i16, _: Instant) -> bool {
    true
}

/// Make the agent's end of the host's stdin non-blocking (see [`DeadlineWriter`]).
#[cfg(unix)]
fn set_nonblocking(pipe: &ChildStdin) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = pipe.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; only the O_NONBLOCK status flag changes.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn set_nonblocking(_: &ChildStdin) -> std::io::Result<()> {
    Ok(())
}

impl Backend for HostBackend {
    fn info(&self, module: &AllowedModule) -> Result<InfoResult> {
        self.call(module, Request::Info)
    }

    fn slots(&self, module: &AllowedModule, token_present: bool) -> Result<Vec<SlotInfo>> {
        self.call(module, Request::Slots { token_present })
    }

    fn token(&self, module: &AllowedModule, slot_id: u64) -> Result<TokenInfo> {
        self.call(module, Request::Token { slot_id })
    }

    fn certificates(&self, module: &AllowedModule, slot_id: u64) -> Result<Vec<CertificateObject>> {
        let certs: Vec<WireCertificate> = self.call(module, Request::Certificates { slot_id })?;
        Ok(certs.into_iter().map(CertificateObject::from).collect())
    }

    fn key_ids(&self, module: &AllowedModule, slot_id: u64) -> Result<Vec<Vec<u8>>> {
        let ids: Vec<String> = self.call(module, Request::KeyIds { slot_id })?;
        ids.iter()
            .map(|h| hex::decode(h).map_err(|_| AgentError::new(ErrorReason::Internal)))
            .collect()
    }

    fn certificate(
        &self,
        module: &AllowedModule,
        slot_id: u64,
        id: &[u8],
    ) -> Result<CertificateObject> {
        let cert: WireCertificate = self.call(
            module,
            Request::Certificate {
                slot_id,
                id: id.to_vec(),
            },
        )?;
        Ok(cert.into())
    }

    fn sign(&self, module: &AllowedModule, request: &SignRequest<'_>) -> Result<Vec<Vec<u8>>> {
        let (pin, timeout) = match request.credential {
            Credential::Pin(pin) => (Some(pin.clone()), self.call_timeout),
            // The person types on the reader: that wait has its own bound.
            Credential::PinPad => (None, self.call_timeout + self.pin_pad_timeout),
        };
        let sign = Request::Sign {
            slot_id: request.slot_id,
            key_id: request.key_id.to_vec(),
            pin,
            algorithm: request.algorithm,
            scheme: request.scheme,
            digests: request.digests.iter().map(hex::encode).collect(),
        };
        let sigs: Vec<String> = self.host(module)?.call(sign, timeout)?;
        sigs.iter()
            .map(|s| hex::decode(s).map_err(|_| AgentError::new(ErrorReason::Internal)))
            .collect()
    }

    fn slot_presence(&self, module: &AllowedModule) -> Result<Vec<SlotPresence>> {
        self.call(module, Request::SlotPresence)
    }

    fn wait_slot_event(&self, module: &AllowedModule, timeout: Duration) -> Result<SlotWait> {
        let wait = Request::WaitSlotEvent {
            timeout_ms: timeout.as_millis() as u64,
        };
        self.host(module)?.call(wait, self.call_timeout + timeout)
    }

    fn logout_all(&self) {
        for h in self.live_hosts() {
            if let Err(e) = h.call::<()>(Request::LogoutAll, self.call_timeout) {
                tracing::warn!(module = %h.name, reason = %e.reason, "logout failed: {}", e.message);
            }
        }
    }

    fn shutdown(&self) {
        let hosts = self.live_hosts();
        let finishing: Vec<_> = hosts
            .iter()
            .map(|h| {
                let h = h.clone();
                std::thread::spawn(move || {
                    let _ = h.call::<()>(Request::Shutdown, SHUTDOWN_GRACE);
                })
            })
            .collect();
        for f in finishing {
            let _ = f.join();
        }
        // Whoever did not exit within the grace is stopped.
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        for h in &hosts {
            while h.death.get().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.death.get().is_none() {
                h.kill("the agent is stopping".into());
            }
        }
        for h in &hosts {
            h.wait_death();
            tracing::info!(module = %h.name, "module host stopped");
        }
    }
}
