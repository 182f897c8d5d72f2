//! Starting a module host: the same binary in host mode, with only the environment a PKCS #11
//! library needs, its log lines forwarded into the agent's log, and its hello awaited.

use super::channel::{exit_status, Host};
use super::lock;
use super::os::{before_spawn, set_nonblocking, Stopper};
use super::server::HostArgs;
use super::wire::{self, Hello};
use crate::backend::pkcs11::LoginPolicy;
use crate::config::ModuleEnv;
use crate::error::{AgentError, Result};
use crate::logging::quote;
use keyport_protocol::ErrorReason;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
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

/// The environment a module host gets: [`MODULE_ENV`], [`MODULE_ENV_PREFIXES`] and the
/// variables `extra` passes on, from this process; then the ones `extra` sets, whose value wins.
pub fn module_environment(extra: &[ModuleEnv]) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| {
            let Some(k) = k.to_str() else { return false };
            MODULE_ENV.contains(&k)
                || MODULE_ENV_PREFIXES.iter().any(|p| k.starts_with(p))
                || extra
                    .iter()
                    .any(|e| matches!(e, ModuleEnv::Pass(name) if name == k))
        })
        .collect();
    for e in extra {
        if let ModuleEnv::Set(name, value) = e {
            env.retain(|(k, _)| k.to_str() != Some(name));
            env.push((name.into(), value.into()));
        }
    }
    env
}

/// What a start failure adds to its message: a library's own words come first, then where a
/// variable it misses would go. Most libraries that cannot start in a host and can elsewhere
/// miss a variable (a configuration file's path, pkcs11-spy's `PKCS11SPY`), and their error code
/// alone (often CKR_DEVICE_ERROR or CKR_GENERAL_ERROR) sends a person looking at the token.
const ENV_HINT: &str = "It runs in a process of its own that gets only the usual environment \
     variables: one it needs goes in `module_env` (NAME=VALUE to set it, NAME to pass on the \
     agent's own; docs/MODULES.md)";

/// Lines of its own a library printed while starting that a start failure quotes (the last
/// ones), and how long the failure waits for them once the process has exited.
const START_LINES: usize = 3;
const START_OUTPUT_WAIT: Duration = Duration::from_secs(1);

/// How long a host may take to load its module and say hello.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What every host of an agent is started with.
pub(super) struct Launcher {
    /// This very binary.
    pub exe: PathBuf,
    pub policy: LoginPolicy,
    /// The environment ([`module_environment`]).
    pub env: Vec<(OsString, OsString)>,
}

impl Launcher {
    /// Start a host for `module` and wait for its hello (at most [`START_TIMEOUT`]).
    pub(super) fn start(&self, module: &str) -> Result<Arc<Host>> {
        let started = Instant::now();
        let args = HostArgs {
            module: module.to_string(),
            policy: self.policy,
        };
        before_spawn().map_err(|e| {
            AgentError::with_message(
                ErrorReason::Internal,
                format!("The agent cannot supervise processes here: {e}."),
            )
        })?;
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
        // First of all (Windows): into the agent's job, so that it cannot outlive the agent.
        let stopper = match Stopper::of(&child) {
            Ok(stopper) => stopper,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(AgentError::with_message(
                    ErrorReason::Internal,
                    format!("The agent could not supervise the process for {module}: {e}."),
                ));
            }
        };
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let name = module.to_string();
        let output = forward_log(stderr, name.clone(), pid);

        let stdout = match hello(&mut child, stdout, module) {
            Ok(stdout) => stdout,
            Err(mut e) => {
                output.explain(&mut e);
                tracing::warn!(module = %name, reason = %e.reason, "{}", e.message);
                return Err(e);
            }
        };
        output.started();
        if let Err(e) = set_nonblocking(&stdin) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(AgentError::with_message(
                ErrorReason::Internal,
                e.to_string(),
            ));
        }
        let host = Arc::new(Host::new(name, pid, stopper, stdin));
        // The reaper first: from then on, stopping the host is enough for it to be reaped.
        host.watch(child)
            .map_err(|e| AgentError::with_message(ErrorReason::Internal, e.to_string()))?;
        if let Err(e) = host.read_replies(stdout) {
            host.kill(format!("its replies cannot be read: {e}"));
            return Err(AgentError::with_message(
                ErrorReason::Internal,
                e.to_string(),
            ));
        }
        tracing::info!(
            module = %host.name(),
            pid,
            start_ms = started.elapsed().as_millis() as u64,
            "module host started"
        );
        Ok(host)
    }
}

/// Wait for the host's hello, within [`START_TIMEOUT`] (a module whose `C_Initialize` hangs is
/// killed): the channel's reading end once the module loaded, else why not (the child is then
/// reaped).
fn hello(child: &mut Child, mut stdout: ChildStdout, module: &str) -> Result<ChildStdout> {
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
        Ok(Ok(frame)) => {
            serde_json::from_slice::<Hello>(&frame).map_err(|_| wire::garbled("its hello", module))
        }
        Ok(Err(_)) | Err(mpsc::RecvTimeoutError::Disconnected) => {
            let status = exit_status(child);
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
        return Err(AgentError::from(e));
    }
    Ok(reader.join().expect("the hello reader does not panic"))
}

/// What a host printed while it started: the last lines of the library's own (not the host's
/// log lines), until [`StartOutput::started`]; and whether its stderr has closed.
struct StartOutput {
    lines: Arc<Mutex<Option<VecDeque<String>>>>,
    closed: mpsc::Receiver<()>,
}

impl StartOutput {
    /// The host said hello: what the library prints from now on is only logged.
    fn started(&self) {
        *lock(&self.lines) = None;
    }

    /// Add to a start failure what the library printed (once its process has gone and its
    /// output is all read, within [`START_OUTPUT_WAIT`]) and where a variable it misses would go.
    fn explain(&self, e: &mut AgentError) {
        if !matches!(
            e.reason,
            ErrorReason::ModuleLoadFailed | ErrorReason::ModuleCrashed
        ) {
            return;
        }
        let _ = self.closed.recv_timeout(START_OUTPUT_WAIT);
        let said: Vec<String> = lock(&self.lines).take().unwrap_or_default().into();
        let mut message = e.message.trim_end().to_string();
        if !message.ends_with('.') {
            message.push('.');
        }
        if !said.is_empty() {
            let said = said.join(" / ");
            message.push_str(&format!(
                " The library printed: {}.",
                said.trim_end_matches('.')
            ));
        }
        message.push_str(&format!(" {ENV_HINT}."));
        e.message = message;
    }
}

/// The host's log lines, into the agent's log (cut, and rate-limited with it); the library's
/// own lines while it starts are also kept for a start failure's message ([`StartOutput`]).
fn forward_log(stderr: std::process::ChildStderr, module: String, pid: u32) -> StartOutput {
    let lines = Arc::new(Mutex::new(Some(VecDeque::new())));
    let kept = lines.clone();
    let (closed_tx, closed) = mpsc::sync_channel(1);
    let _ = std::thread::Builder::new()
        .name("keyport-host-log".into())
        .spawn(move || {
            // Dropped at the end of stderr (the host has exited).
            let _closed = closed_tx;
            for line in std::io::BufReader::new(stderr).split(b'\n') {
                let Ok(line) = line else { return };
                let line = String::from_utf8_lossy(&line);
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
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
                    _ => {
                        tracing::warn!(target: "keyport::host", module = %module, pid, "{}", quote(line, 400));
                        if let Some(kept) = lock(&kept).as_mut() {
                            // The last lines, each once (a library asked twice, through
                            // C_GetInterface and C_GetFunctionList, often says it twice).
                            let line = quote(line, 200);
                            kept.retain(|l| *l != line);
                            if kept.len() == START_LINES {
                                kept.pop_front();
                            }
                            kept.push_back(line);
                        }
                    }
                }
            }
        });
    StartOutput { lines, closed }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_env_sets_its_values_and_passes_only_what_is_set() {
        let env = module_environment(&[
            ModuleEnv::Set("PKCS11SPY".into(), "/usr/lib/softhsm/libsofthsm2.so".into()),
            // A usual variable set anew: the new value, once.
            ModuleEnv::Set("PATH".into(), "/only/this".into()),
            ModuleEnv::Pass("KEYPORT_TEST_SURELY_UNSET_4711".into()),
        ]);
        let values = |name: &str| -> Vec<&OsString> {
            env.iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v)
                .collect()
        };
        assert_eq!(values("PKCS11SPY"), ["/usr/lib/softhsm/libsofthsm2.so"]);
        assert_eq!(values("PATH"), ["/only/this"]);
        assert!(values("KEYPORT_TEST_SURELY_UNSET_4711").is_empty());
    }
}
