//! The real backend: PKCS #11 through the `cryptoki` crate. The only place the agent touches
//! cryptoki.
//!
//! * this file: [`CryptokiBackend`] (its modules, the idle logout, the [`Backend`]
//!   implementation, a request retried once on fresh state after stale handles);
//! * `module`: one loaded module (one per library file, however it is named), its per-slot
//!   state (bounded) and what it says of its slots;
//! * `token`: what is kept per token (the login lock, session pool, key and certificate
//!   caches) and logging it in and out;
//! * `sign`: the signature on a logged-in session, and the flows with a PIN (the login policy)
//!   or a reader's keypad;
//! * `objects`: reading certificates (public objects);
//! * `login`: the login policy and the verifier of the PIN that logged a token in;
//! * `gate`: the first-come-first-served gate for signatures;
//! * `events`: slot events (`C_WaitForSlotEvent`, or polling);
//! * `info`: decoding library, slot and token information;
//! * `error`: cryptoki's errors as [`AgentError`]s.

mod error;
mod events;
mod gate;
mod info;
mod login;
mod module;
mod objects;
mod sign;
mod token;

pub use login::{lock_wait_for, LoginPolicy};

use super::{Backend, CertificateObject, Credential, SignRequest, SlotPresence, SlotWait};
use crate::allowlist::AllowedModule;
use crate::error::{AgentError, Result};
use cryptoki::error::Error as CkError;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use keyport_protocol::{ErrorReason, InfoResult, SlotInfo, TokenInfo};
use module::{Module, Modules};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use token::TokenState;

/// How many times a request that met stale handles is tried again on fresh state.
const STALE_RETRIES: usize = 2;

pub struct CryptokiBackend {
    modules: Mutex<Modules>,
    policy: LoginPolicy,
    /// Signatures made at once (see [`gate::Gate`]).
    signing: gate::Gate,
    epoch: Instant,
    /// Stops the idle-logout ticker (see [`CryptokiBackend::start`]).
    idle_stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind: keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CryptokiBackend {
    /// A backend with no idle logout (tests, and the building block of [`Self::start`]).
    pub fn new(policy: LoginPolicy) -> Self {
        CryptokiBackend {
            modules: Mutex::new(Modules::default()),
            policy,
            signing: gate::Gate::new(gate::Gate::for_cores()),
            epoch: Instant::now(),
            idle_stop: Mutex::new(None),
        }
    }

    /// A backend that owns its idle-logout ticker: a thread that logs out tokens idle for
    /// `policy.idle_timeout`, stopped by [`Backend::shutdown`] or when the backend is dropped.
    pub fn start(policy: LoginPolicy) -> Arc<Self> {
        let backend = Arc::new(Self::new(policy));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let weak = Arc::downgrade(&backend);
        let period = backend.idle_period();
        let spawned = std::thread::Builder::new()
            .name("keyport-idle-logout".into())
            .spawn(move || loop {
                match stopped.recv_timeout(period) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => match weak.upgrade() {
                        Some(b) => b.logout_idle(),
                        None => return,
                    },
                    _ => return,
                }
            });
        match spawned {
            Ok(_) => *lock(&backend.idle_stop) = Some(stop),
            Err(e) => tracing::warn!(error = %e, "cannot start the idle-logout ticker"),
        }
        backend
    }

    fn stop_idle_ticker(&self) {
        lock(&self.idle_stop).take();
    }

    /// The loaded module `allowed` names, loading and initialising it on first use. Two paths
    /// to one file (a symlink, a hard link) are one module: one context, one lock per token.
    fn module(&self, allowed: &AllowedModule) -> Result<Arc<Module>> {
        lock(&self.modules).get_or_load(allowed)
    }

    /// Slots with state in the module `allowed` names (0 if it is not loaded): for tests.
    #[doc(hidden)]
    pub fn tokens_held(&self, allowed: &AllowedModule) -> usize {
        lock(&self.modules)
            .by_path
            .get(allowed.path())
            .map_or(0, |m| m.tokens_held())
    }

    fn loaded(&self) -> Vec<Arc<Module>> {
        lock(&self.modules).by_identity.values().cloned().collect()
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Run `op` on the state of the token in `slot_id`. If it failed on stale handles (the
    /// token was removed, and perhaps put back), run it once more on the fresh state when the
    /// token is there, or answer TOKEN_NOT_PRESENT when it is not: a page never sees a
    /// stale-handle error.
    ///
    /// A blank token (no CKF_TOKEN_INITIALIZED) refuses sessions, which reads as "no token": it
    /// is named for what it is, CERTIFICATE_NOT_FOUND (it holds none yet), never TOKEN_NOT_PRESENT.
    fn on_token<T>(
        &self,
        m: &Module,
        slot_id: u64,
        op: impl Fn(&TokenState) -> Result<T>,
    ) -> Result<T> {
        self.on_present_token(m, slot_id, op).map_err(|e| {
            if blank(m, slot_id, &e) {
                AgentError::with_message(
                    ErrorReason::CertificateNotFound,
                    format!(
                        "The token in slot {slot_id} is not initialised: it holds no certificates \
                         or keys yet (its owner initialises it with the token's own tool)."
                    ),
                )
            } else {
                e
            }
        })
    }

    /// A list of the objects on the token in `slot_id` (`op`); a blank token holds none.
    fn objects_on<T>(
        &self,
        m: &Module,
        slot_id: u64,
        op: impl Fn(&TokenState) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        match self.on_present_token(m, slot_id, op) {
            Err(e) if blank(m, slot_id, &e) => Ok(Vec::new()),
            other => other,
        }
    }

    fn on_present_token<T>(
        &self,
        m: &Module,
        slot_id: u64,
        op: impl Fn(&TokenState) -> Result<T>,
    ) -> Result<T> {
        let t = m.token_state(slot_id)?;
        for attempt in 0.. {
            let stale = t.stale_count();
            match op(&t) {
                Err(e) if t.stale_count() != stale && attempt < STALE_RETRIES => {
                    if attempt > 0 {
                        // OpenSC looks for a swapped card at most once a second per slot.
                        std::thread::sleep(Duration::from_millis(1100));
                    }
                    if events::token_absent(&m.ctx, slot_id) {
                        return Err(AgentError::new(ErrorReason::TokenNotPresent));
                    }
                    tracing::info!(
                        slot = slot_id,
                        reason = %e.reason,
                        "the token's handles were stale (it was removed, perhaps put back): again on fresh state"
                    );
                }
                Err(e) if t.stale_count() != stale && events::token_absent(&m.ctx, slot_id) => {
                    tracing::debug!(slot = slot_id, reason = %e.reason, "the token left");
                    return Err(AgentError::new(ErrorReason::TokenNotPresent));
                }
                other => return other,
            }
        }
        unreachable!("the loop returns")
    }

    /// Forget every login (pause, shutdown).
    pub(super) fn logout_everything(&self) {
        for m in self.loaded() {
            for t in m.tokens() {
                let mut login = t.login.write();
                if login.verifier.is_some() {
                    t.logout_locked(&m.ctx, &mut login);
                    tracing::info!(slot = t.slot.id(), "token logged out");
                }
            }
        }
    }

    /// Log out the tokens with no signature for `idle_timeout`.
    pub(super) fn logout_idle(&self) {
        let now = self.now_ms();
        let idle = self.policy.idle_timeout.as_millis() as u64;
        for m in self.loaded() {
            for t in m.tokens() {
                if now.saturating_sub(t.last_used_ms.load(Ordering::Relaxed)) < idle {
                    continue;
                }
                // Never wait for a busy token: it is not idle.
                let Some(mut login) = t.login.try_write() else {
                    continue;
                };
                if login.verifier.is_some() {
                    t.logout_locked(&m.ctx, &mut login);
                    tracing::info!(slot = t.slot.id(), "token logged out after idle timeout");
                }
            }
        }
    }

    /// How often the idle ticker looks: a quarter of the idle timeout, within 100 ms..30 s.
    pub(super) fn idle_period(&self) -> Duration {
        (self.policy.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(30))
    }
}

impl Backend for CryptokiBackend {
    fn info(&self, module: &AllowedModule) -> Result<InfoResult> {
        info::library_info(&self.module(module)?.ctx)
    }

    fn slots(&self, module: &AllowedModule, token_present: bool) -> Result<Vec<SlotInfo>> {
        info::slots(&self.module(module)?.ctx, token_present)
    }

    fn token(&self, module: &AllowedModule, slot_id: u64) -> Result<TokenInfo> {
        info::token_info(&self.module(module)?.ctx, slot_id)
    }

    fn certificates(&self, module: &AllowedModule, slot_id: u64) -> Result<Vec<CertificateObject>> {
        let m = self.module(module)?;
        self.objects_on(&m, slot_id, |t| {
            objects::certificates(&m, t, self.policy.lock_wait)
        })
    }

    fn key_ids(&self, module: &AllowedModule, slot_id: u64) -> Result<Vec<Vec<u8>>> {
        let m = self.module(module)?;
        self.objects_on(&m, slot_id, |t| {
            let _using = t.sessions(self.policy.lock_wait)?;
            t.with_session(&m.ctx, |s| {
                let ids_of = |class| -> std::result::Result<Vec<Vec<u8>>, CkError> {
                    let mut ids = Vec::new();
                    for handle in s.find_objects(&[Attribute::Class(class)])? {
                        for attr in s.get_attributes(handle, &[AttributeType::Id])? {
                            if let Attribute::Id(id) = attr {
                                ids.push(id);
                            }
                        }
                    }
                    Ok(ids)
                };
                let mut ids = ids_of(ObjectClass::PRIVATE_KEY)?;
                if ids.is_empty() {
                    // Private keys hidden until login (SoftHSM does): their public halves.
                    ids = ids_of(ObjectClass::PUBLIC_KEY)?;
                }
                ids.sort();
                ids.dedup();
                Ok(ids)
            })
        })
    }

    fn certificate(
        &self,
        module: &AllowedModule,
        slot_id: u64,
        id: &[u8],
    ) -> Result<CertificateObject> {
        let m = self.module(module)?;
        self.on_token(&m, slot_id, |t| {
            objects::certificate(&m, t, id, self.policy.lock_wait, objects::Check::Token)
        })
    }

    fn sign(&self, module: &AllowedModule, req: &SignRequest<'_>) -> Result<Vec<Vec<u8>>> {
        let m = self.module(module)?;
        let signature = self.on_token(&m, req.slot_id, |t| {
            // The key must be that of a certificate on the token (usually cached: the
            // signature's own calls fail if the token left, and the request runs again).
            let check = objects::Check::ByWhatFollows;
            let cert = objects::certificate(&m, t, req.key_id, self.policy.lock_wait, check)?;
            if req.scheme == keyport_protocol::SignatureScheme::Pss {
                // Refused before any login: an EC key, or a token without the mechanism.
                if !matches!(
                    crate::x509::certificate_key_kind(&cert.der),
                    Ok(crate::x509::KeyKind::Rsa { .. })
                ) {
                    return Err(AgentError::with_message(
                        ErrorReason::UnsupportedAlgorithm,
                        "RSA-PSS needs an RSA key; this certificate's key is not RSA.",
                    ));
                }
                let mechanisms = m.ctx.get_mechanism_list(t.slot)?;
                if !mechanisms.contains(&cryptoki::mechanism::MechanismType::RSA_PKCS_PSS) {
                    return Err(AgentError::with_message(
                        ErrorReason::UnsupportedAlgorithm,
                        "This token does not offer RSA-PSS (CKM_RSA_PKCS_PSS).",
                    ));
                }
            }
            match req.credential {
                Credential::Pin(pin) => {
                    let Some(_turn) = self.signing.enter_within(self.policy.lock_wait) else {
                        return Err(ErrorReason::TokenBusy.into());
                    };
                    sign::with_pin(self, &m, t, req, pin)
                }
                // The wait for the person at the reader must not hold a turn at signing.
                Credential::PinPad => sign::with_pin_pad(self, &m, t, req, &self.signing),
            }
        });
        // Hashing the PIN (the login cache's verifier) left a copy in a popped frame.
        crate::secret::scrub_stack();
        signature
    }

    fn slot_presence(&self, module: &AllowedModule) -> Result<Vec<SlotPresence>> {
        let m = self.module(module)?;
        m.presence()
    }

    fn wait_slot_event(&self, module: &AllowedModule, timeout: Duration) -> Result<SlotWait> {
        let m = self.module(module)?;
        Ok(m.wait_events(timeout))
    }

    fn logout_all(&self) {
        self.logout_everything();
    }

    fn shutdown(&self) {
        self.stop_idle_ticker();
        self.logout_all();
        let modules: Vec<Arc<Module>> = {
            let mut all = lock(&self.modules);
            all.by_path.clear();
            all.by_identity.drain().map(|(_, m)| m).collect()
        };
        for m in modules {
            let path = m.name.clone();
            for t in m.tokens() {
                t.forget_sessions();
            }
            lock(&m.tokens).clear();
            // A wait for slot events holds the module for up to a second: end it, and give
            // calls still running a moment to let go.
            m.waiter.close();
            let mut m = m;
            for _ in 0..30 {
                match Arc::try_unwrap(m) {
                    Ok(module) => {
                        m = Arc::new(module);
                        break;
                    }
                    Err(shared) => {
                        m = shared;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
            match Arc::try_unwrap(m) {
                Ok(m) => match m.ctx.finalize() {
                    Ok(()) => tracing::info!(module = %path, "PKCS #11 module finalised"),
                    Err(e) => tracing::warn!(module = %path, error = %e, "C_Finalize failed"),
                },
                Err(_) => {
                    tracing::warn!(module = %path, "module still in use at shutdown; not finalised")
                }
            }
        }
    }
}

/// Whether `e` came from a blank token in `slot_id`: one that is there but not initialised
/// (SoftHSM's free slot answers CKR_TOKEN_NOT_RECOGNIZED to C_OpenSession).
fn blank(m: &Module, slot_id: u64, e: &AgentError) -> bool {
    e.reason == ErrorReason::TokenNotPresent && info::uninitialised(&m.ctx, slot_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_module_gives_module_load_failed() {
        let b = CryptokiBackend::new(LoginPolicy::default());
        let err = b
            .info(&AllowedModule::for_tests("/nonexistent/libnothing.so"))
            .unwrap_err();
        assert_eq!(err.reason, ErrorReason::ModuleLoadFailed);
    }
}
