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
//! * Reading the channel never waits behind writing to it: one reader per host, which never
//!   writes (see `channel`).
//! * The calls a request makes most are made from the async thread when the host is up and the
//!   request fits one write ([`Backend::info_quick`]): no blocking thread between the page and
//!   the host.
//! * Each host is reaped by a thread of its own (no zombies), exits when the agent's end of the
//!   channel closes (no orphans), and gets only the environment a module needs
//!   ([`module_environment`]).

use super::channel::Host;
use super::lock;
use super::process::{module_environment, Launcher};
use super::supervisor::Supervisor;
use super::wire::{self, Hex, Op};
use crate::allowlist::{AllowedModule, ModuleIdentity};
use crate::backend::pkcs11::LoginPolicy;
use crate::backend::{
    Backend, CertificateObject, Credential, Quick, SignRequest, SlotPresence, SlotWait,
};
use crate::config::ModuleEnv;
use crate::error::{AgentError, Result};
use keyport_protocol::{ErrorReason, InfoResult, SlotInfo, TokenInfo};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a host gets to log out and finalise at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How long a signature waits for the person at a PIN-pad reader unless configured.
pub const DEFAULT_PIN_PAD_TIMEOUT: Duration = Duration::from_secs(60);

pub struct HostBackend {
    launcher: Launcher,
    call_timeout: Duration,
    /// How long a signature may wait for the person at a PIN-pad reader, beyond `call_timeout`.
    pin_pad_timeout: Duration,
    modules: Mutex<HashMap<String, Arc<Supervisor>>>,
    by_identity: Mutex<HashMap<ModuleIdentity, Arc<Supervisor>>>,
}

impl HostBackend {
    /// Hosts run `exe` (this very binary) in host mode with `policy`; a call waits at most
    /// `call_timeout`; `extra_env` passes on or sets variables beyond `MODULE_ENV`.
    pub fn new(
        exe: PathBuf,
        policy: LoginPolicy,
        call_timeout: Duration,
        extra_env: &[ModuleEnv],
    ) -> HostBackend {
        HostBackend {
            launcher: Launcher {
                exe,
                policy,
                env: module_environment(extra_env),
            },
            call_timeout,
            pin_pad_timeout: DEFAULT_PIN_PAD_TIMEOUT,
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
            .or_insert_with(|| Arc::new(Supervisor::new(identity.canonical.display().to_string())))
            .clone();
        lock(&self.modules).insert(allowed.path().to_string(), s.clone());
        Ok(s)
    }
    /// The live host of `allowed`, started if need be.
    fn host(&self, allowed: &AllowedModule) -> Result<Arc<Host>> {
        self.supervisor(allowed)?.host(&self.launcher)
    }

    /// How long a signature may wait for the person at a PIN-pad reader (default 60 s).
    pub fn with_pin_pad_timeout(mut self, timeout: Duration) -> Self {
        self.pin_pad_timeout = timeout;
        self
    }

    fn call<O: Op>(&self, allowed: &AllowedModule, op: O) -> Result<O::Reply> {
        self.host(allowed)?.call(op, self.call_timeout)
    }

    /// `op` made from the async thread ([`Host::call_quick`]) if its host is up and it can be;
    /// a host is never started here (that waits for the library to load).
    #[allow(unused_variables)]
    fn quick<O, T>(
        &self,
        allowed: &AllowedModule,
        op: O,
        timeout: Duration,
        then: fn(O::Reply) -> T,
    ) -> Option<Quick<T>>
    where
        O: Op,
        O::Reply: Send + 'static,
        T: Send + 'static,
    {
        #[cfg(unix)]
        {
            use futures_util::FutureExt;
            // Never waits: not for the table's lock beyond a lookup, not for a host starting.
            let supervisor = lock(&self.modules).get(allowed.path())?.clone();
            let host = supervisor.try_live()?;
            let reply = host.call_quick(op, timeout)?;
            Some(reply.map(move |r| r.map(then)).boxed())
        }
        #[cfg(not(unix))]
        None
    }

    /// The host's request for `request`, and how long it may take.
    fn sign_op(&self, request: &SignRequest<'_>) -> (wire::Sign, Duration) {
        let (pin, timeout) = match request.credential {
            Credential::Pin(pin) => (Some(pin.clone()), self.call_timeout),
            // The person types on the reader: that wait has its own bound.
            Credential::PinPad => (None, self.call_timeout + self.pin_pad_timeout),
        };
        let sign = wire::Sign {
            slot_id: request.slot_id,
            key_id: Hex(request.key_id.to_vec()),
            pin,
            algorithm: request.algorithm,
            scheme: request.scheme,
            digests: request.digests.iter().map(|d| Hex(d.to_vec())).collect(),
        };
        (sign, timeout)
    }

    fn live_hosts(&self) -> Vec<Arc<Host>> {
        let sups: Vec<Arc<Supervisor>> = lock(&self.by_identity).values().cloned().collect();
        sups.iter().filter_map(|s| s.live()).collect()
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
        let echo = wire::Echo {
            payload,
            reply_bytes,
            delay_ms,
        };
        self.call(module, echo)
    }

    /// [`HostBackend::echo`] made from the async thread, when it can be (see
    /// [`Backend::info_quick`]).
    #[doc(hidden)]
    pub fn echo_quick(
        &self,
        module: &AllowedModule,
        payload: String,
        reply_bytes: u32,
        delay_ms: u32,
    ) -> Option<Quick<(usize, String)>> {
        let echo = wire::Echo {
            payload,
            reply_bytes,
            delay_ms,
        };
        self.quick(module, echo, self.call_timeout, |r| r)
    }

    /// Process ids of the hosts running now (for tests and the benchmark).
    pub fn host_pids(&self) -> Vec<u32> {
        self.live_hosts().iter().map(|h| h.pid()).collect()
    }
}

impl Backend for HostBackend {
    fn info(&self, module: &AllowedModule) -> Result<InfoResult> {
        self.call(module, wire::Info {})
    }

    fn slots(&self, module: &AllowedModule, token_present: bool) -> Result<Vec<SlotInfo>> {
        self.call(module, wire::Slots { token_present })
    }

    fn token(&self, module: &AllowedModule, slot_id: u64) -> Result<TokenInfo> {
        self.call(module, wire::Token { slot_id })
    }

    fn certificates(&self, module: &AllowedModule, slot_id: u64) -> Result<Vec<CertificateObject>> {
        let certs = self.call(module, wire::Certificates { slot_id })?;
        Ok(certs.into_iter().map(CertificateObject::from).collect())
    }

    fn key_ids(&self, module: &AllowedModule, slot_id: u64) -> Result<Vec<Vec<u8>>> {
        let ids = self.call(module, wire::KeyIds { slot_id })?;
        Ok(ids.into_iter().map(|id| id.0.clone()).collect())
    }

    fn certificate(
        &self,
        module: &AllowedModule,
        slot_id: u64,
        id: &[u8],
    ) -> Result<CertificateObject> {
        let id = Hex(id.to_vec());
        Ok(self.call(module, wire::Certificate { slot_id, id })?.into())
    }

    fn sign(&self, module: &AllowedModule, request: &SignRequest<'_>) -> Result<Vec<Vec<u8>>> {
        let (sign, timeout) = self.sign_op(request);
        let sigs = self.host(module)?.call(sign, timeout)?;
        Ok(signatures(sigs))
    }

    fn info_quick(&self, module: &AllowedModule) -> Option<Quick<InfoResult>> {
        self.quick(module, wire::Info {}, self.call_timeout, |r| r)
    }

    fn slots_quick(
        &self,
        module: &AllowedModule,
        token_present: bool,
    ) -> Option<Quick<Vec<SlotInfo>>> {
        self.quick(
            module,
            wire::Slots { token_present },
            self.call_timeout,
            |r| r,
        )
    }

    fn token_quick(&self, module: &AllowedModule, slot_id: u64) -> Option<Quick<TokenInfo>> {
        self.quick(module, wire::Token { slot_id }, self.call_timeout, |r| r)
    }

    fn certificate_quick(
        &self,
        module: &AllowedModule,
        slot_id: u64,
        id: &[u8],
    ) -> Option<Quick<CertificateObject>> {
        let op = wire::Certificate {
            slot_id,
            id: Hex(id.to_vec()),
        };
        self.quick(module, op, self.call_timeout, CertificateObject::from)
    }

    fn sign_quick(
        &self,
        module: &AllowedModule,
        request: &SignRequest<'_>,
    ) -> Option<Quick<Vec<Vec<u8>>>> {
        let (sign, timeout) = self.sign_op(request);
        self.quick(module, sign, timeout, signatures)
    }

    fn slot_presence(&self, module: &AllowedModule) -> Result<Vec<SlotPresence>> {
        self.call(module, wire::SlotPresence {})
    }

    fn wait_slot_event(&self, module: &AllowedModule, timeout: Duration) -> Result<SlotWait> {
        let wait = wire::WaitSlotEvent {
            timeout_ms: timeout.as_millis() as u64,
        };
        self.host(module)?.call(wait, self.call_timeout + timeout)
    }

    fn logout_all(&self) {
        for h in self.live_hosts() {
            if let Err(e) = h.call(wire::LogoutAll {}, self.call_timeout) {
                tracing::warn!(module = %h.name(), reason = %e.reason, "logout failed: {}", e.message);
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
                    let _ = h.call(wire::Shutdown {}, SHUTDOWN_GRACE);
                })
            })
            .collect();
        for f in finishing {
            let _ = f.join();
        }
        // Whoever did not exit within the grace is stopped.
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        for h in &hosts {
            while h.death().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.death().is_none() {
                h.kill("the agent is stopping".into());
            }
        }
        for h in &hosts {
            h.wait_death();
            tracing::info!(module = %h.name(), "module host stopped");
        }
    }
}

/// The signatures of a host's reply, as bytes.
fn signatures(sigs: Vec<Hex>) -> Vec<Vec<u8>> {
    sigs.into_iter().map(|s| s.0.clone()).collect()
}
