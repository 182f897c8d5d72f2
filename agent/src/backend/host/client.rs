//! The agent's side: [`HostBackend`], a [`Backend`] whose every call goes to the module host of
//! the library it names.
//!
//! * One host per library file ([`ModuleIdentity`]: a symlink is the same host), started at the
//!   first call and again after it dies.
//! * A call that takes longer than `request_timeout` gets REQUEST_TIMEOUT and its host is
//!   killed (other calls on that host get MODULE_CRASHED naming why): nothing stays stuck.
//! * A host that dies (a crash, an abort, an exit) fails the calls it held with MODULE_CRASHED;
//!   one that dies again and again before it could serve is retried after a growing pause
//!   (1 s, 2 s, … 60 s), and its error says when.
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
/// A host that dies within this of its start (or before its hello) "crashed at start".
const EARLY_DEATH: Duration = Duration::from_secs(2);

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
    /// Deaths at start in a row.
    early_deaths: u32,
    /// No new host before this.
    retry_at: Option<Instant>,
    /// Why the last start failed (said again until `retry_at`).
    last_error: Option<AgentError>,
}

/// A running host process.
struct Host {
    name: String,
    pid: u32,
    started: Instant,
    stdin: Mutex<ChildStdin>,
    /// The channel's reading end. Whoever holds it reads for everyone (see [`Host::call`]).
    stdout: Mutex<ChildStdout>,
    /// Calls waiting for their reply, by id.
    pending: Mutex<HashMap<u64, mpsc::Sender<Delivery>>>,
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
        if let Some(h) = &st.host {
            if h.serving() {
                return Ok(h.clone());
            }
            if h.started.elapsed() < EARLY_DEATH {
                st.early_deaths += 1;
            } else {
                st.early_deaths = 0;
            }
            st.host = None;
        }
        if let Some(at) = st.retry_at {
            let now = Instant::now();
            if now < at {
                let base = st
                    .last_error
                    .clone()
                    .unwrap_or_else(|| AgentError::new(ErrorReason::ModuleCrashed));
                return Err(AgentError::with_message(
                    base.reason,
                    format!(
                        "{} It failed {} times in a row at start; the next try is in {} s.",
                        base.message.trim_end(),
                        st.early_deaths,
                        (at - now).as_secs().max(1)
                    ),
                ));
            }
        }
        match self.spawn(&sup.name) {
            Ok(h) => {
                st.host = Some(h.clone());
                st.retry_at = None;
                st.last_error = None;
                Ok(h)
            }
            Err(e) => {
                st.early_deaths += 1;
                // The first failure may be a fluke: try again at once; then back off.
                if st.early_deaths >= 2 {
                    let secs = 1u64 << (st.early_deaths - 2).min(6);
                    st.retry_at = Some(Instant::now() + Duration::from_secs(secs.min(60)));
                }
                st.last_error = Some(e.clone());
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
        let host = Arc::new(Host {
            name,
            pid,
            started,
            stdin: Mutex::new(stdin),
            stdout: Mutex::new(stdout),
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

/// What a waiting call receives: its reply, or its turn to read the channel.
enum Delivery {
    Reply(Reply),
    YourTurn,
}

/// How a turn at reading ended.
enum Read {
    Mine(Reply),
    TimedOut,
    Ended,
}

impl Host {
    /// Send `request` and wait for its reply, at most `timeout`.
    ///
    /// There is no reader thread: a caller that finds the channel free reads it, handing the
    /// replies of others to them, until its own comes; then it passes the reading role to a
    /// waiting caller. A lone call therefore reads its own reply, with no thread in between.
    fn call<T: DeserializeOwned>(&self, request: Request, timeout: Duration) -> Result<T> {
        if let Some(e) = self.death.get() {
            return Err(e.clone());
        }
        let deadline = Instant::now() + timeout;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Unbounded: a reply must never find the channel full of turns (it was lost once so).
        let (tx, rx) = mpsc::channel();
        lock(&self.pending).insert(id, tx);
        let sent = {
            let mut stdin = lock(&self.stdin);
            wire::send(&mut *stdin, &Call { id, request })
        };
        if sent.is_err() {
            lock(&self.pending).remove(&id);
            return Err(self.wait_death());
        }
        let reply = loop {
            if let Ok(mut stdout) = self.stdout.try_lock() {
                let turn = self.read_for(&mut stdout, id, &rx, deadline);
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
                Err(_) => {
                    lock(&self.pending).remove(&id);
                    return Err(self.timed_out(timeout));
                }
            }
        };
        match (reply.ok, reply.err) {
            (_, Some(e)) => Err(e.into()),
            (Some(v), None) => {
                serde_json::from_str(v.get()).map_err(|_| wire::garbled("an answer", &self.name))
            }
            (None, None) => Err(wire::garbled("an empty answer", &self.name)),
        }
    }

    /// Read the channel until reply `id` comes, delivering the others to their callers.
    fn read_for(
        &self,
        stdout: &mut ChildStdout,
        id: u64,
        rx: &mpsc::Receiver<Delivery>,
        deadline: Instant,
    ) -> Read {
        loop {
            // A previous reader may have delivered ours just before passing the turn.
            while let Ok(d) = rx.try_recv() {
                if let Delivery::Reply(r) = d {
                    return Read::Mine(r);
                }
            }
            if !readable_before(stdout, deadline) {
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
                return Read::Mine(reply);
            }
            if let Some(tx) = lock(&self.pending).remove(&reply.id) {
                let _ = tx.send(Delivery::Reply(reply));
            }
        }
    }

    /// Give the reading role to a call still waiting, if any.
    fn pass_the_turn(&self) {
        if let Some(tx) = lock(&self.pending).values().next() {
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
        if self.death.get().is_some() {
            return;
        }
        tracing::warn!(module = %self.name, pid = self.pid, "stopping the module host: {why}");
        *lock(&self.kill_reason) = Some(why);
        self.stopping.store(true, Ordering::SeqCst);
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
        let message = match lock(&self.kill_reason).take() {
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
        for (id, tx) in waiting {
            let _ = tx.send(Delivery::Reply(Reply {
                id,
                ok: None,
                err: Some((&error).into()),
            }));
        }
    }
}

/// Wait until `stdout` has data (or the other end closed), at most until `deadline`.
#[cfg(unix)]
fn readable_before(stdout: &ChildStdout, deadline: Instant) -> bool {
    use std::os::fd::AsRawFd;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fd = libc::pollfd {
            fd: stdout.as_raw_fd(),
            events: libc::POLLIN,
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
            // A broken descriptor: reading it will say so.
            _ => return true,
        }
    }
}

#[cfg(not(unix))]
fn readable_before(_: &ChildStdout, _: Instant) -> bool {
    true
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
