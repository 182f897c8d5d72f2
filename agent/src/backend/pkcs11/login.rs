//! The login policy.
//!
//! PKCS #11 login state belongs to the whole process, per token: a C_Logout from one request
//! logs out every other session of that token. So each token has one
//! [`TokenState`](super::token::TokenState) whose `login` lock coordinates every request that
//! uses it:
//!
//! * A signature whose PIN matches the PIN that logged the token in (checked in constant time
//!   against a salted SHA-256 held in memory, never the PIN itself) signs under a shared (read)
//!   lock: many signers of one token proceed at once on pooled sessions, with no login.
//! * Any other PIN takes the exclusive (write) lock, logs the token out, and logs in with the new
//!   PIN, so the token itself judges every PIN we have not seen succeed. A wrong PIN therefore
//!   costs one try, exactly as it would without the cache, and leaves the token logged out.
//! * Only a PIN the token accepted (C_Login returned CKR_OK) becomes the verifier: "already
//!   logged in" after our own logout proves nothing, see [`TokenState::login_verified`].
//! * The token is logged out after `idle_timeout` without a signature (a ticker the backend
//!   owns), on pause, and on shutdown. With `keep_logged_in = false` every signature logs in and
//!   out (the naive semantics).

use super::info::pin_state;
use super::token::{discard, SignFailure, TokenState};
use super::{lock, CryptokiBackend, Module};
use crate::backend::SignRequest;
use crate::error::{AgentError, Result};
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use keyport_protocol::{ErrorReason, Pin, PinState};
use parking_lot::{RwLockUpgradableReadGuard, RwLockWriteGuard};
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;
use std::time::Duration;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// How long a token stays logged in, see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct LoginPolicy {
    pub keep_logged_in: bool,
    pub idle_timeout: Duration,
    /// Longest wait for another request's hold on a token (its login lock, a turn at
    /// signing): past it, TOKEN_BUSY. Below the agent's time limit for a call, so that a
    /// request that only waited is answered before it could look hung.
    pub lock_wait: Duration,
}

impl Default for LoginPolicy {
    fn default() -> Self {
        LoginPolicy {
            keep_logged_in: true,
            idle_timeout: Duration::from_secs(300),
            lock_wait: lock_wait_for(Duration::from_secs(30)),
        }
    }
}

/// The [`LoginPolicy::lock_wait`] for a time limit per call of `limit`: a few seconds less
/// (at least half of it), so that the answer TOKEN_BUSY arrives before the limit.
pub fn lock_wait_for(limit: Duration) -> Duration {
    limit.saturating_sub(Duration::from_secs(3)).max(limit / 2)
}

/// A salted SHA-256 of the PIN that logged a token in.
pub(super) struct PinVerifier {
    salt: [u8; 16],
    hash: Zeroizing<[u8; 32]>,
}

impl PinVerifier {
    pub(super) fn digest(salt: &[u8; 16], pin: &Pin) -> Zeroizing<[u8; 32]> {
        let mut h = Sha256::new();
        h.update(salt);
        h.update(pin.expose().as_bytes());
        Zeroizing::new(h.finalize().into())
    }

    pub(super) fn new(pin: &Pin) -> Self {
        let mut salt = [0u8; 16];
        // A failing OS RNG leaves a zero salt: still a correct verifier, only a weaker one.
        let _ = getrandom::fill(&mut salt);
        PinVerifier {
            salt,
            hash: Self::digest(&salt, pin),
        }
    }

    pub(super) fn matches(&self, pin: &Pin) -> bool {
        Self::digest(&self.salt, pin).ct_eq(&*self.hash).into()
    }
}

#[derive(Default)]
pub(super) struct Login {
    pub(super) verifier: Option<PinVerifier>,
    /// The token state's generation when the verifier was set: after the token left (a new
    /// generation) the verifier proves nothing, and the next signature logs in again.
    pub(super) generation: u64,
}

impl Login {
    /// Whether `pin` is the PIN that logged this generation of the token in.
    pub(super) fn vouches_for(&self, pin: &Pin, generation: u64) -> bool {
        self.generation == generation && self.verifier.as_ref().is_some_and(|v| v.matches(pin))
    }
}

impl TokenState {
    /// Log out (under the caller's write lock). If the module will not log out, every session
    /// of the token is closed, which ends its login state (PKCS #11: the login belongs to the
    /// application's sessions and ends with the last one). Either way the verifier is gone, so
    /// no PIN signs until the token has accepted it again.
    pub(super) fn logout_locked(&self, ctx: &Pkcs11, login: &mut Login) {
        login.verifier = None;
        lock(&self.keys).clear();
        let Ok(session) = self.take_session(ctx) else {
            self.close_sessions();
            return;
        };
        match session.logout() {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _)) => self.put_session(session),
            Err(e) => {
                tracing::warn!(slot = self.slot.id(), error = %e, "C_Logout failed; closing the token's sessions to end its login");
                discard(session);
                self.close_sessions();
            }
        }
    }

    /// Close every session of the token this agent holds (under the write lock: all of them).
    pub(super) fn close_sessions(&self) {
        self.forget_sessions();
    }

    /// Log in with `pin`, under the write lock, on a token believed logged out. Succeeds only
    /// when the token itself accepted this PIN: CKR_USER_ALREADY_LOGGED_IN proves nothing about
    /// it (a logout the module did not do, another user of the module's state), so then every
    /// session is closed and the login tried once more; if the token still claims to be logged
    /// in, nothing is signed.
    ///
    /// `pin` None: the reader's PIN pad (C_Login with a NULL PIN; the person types it on the
    /// reader, and CKR_FUNCTION_CANCELED means they cancelled there).
    pub(super) fn login_verified(&self, ctx: &Pkcs11, pin: Option<&Pin>) -> Result<()> {
        for attempt in 0..2 {
            let session = self.take_session(ctx)?;
            let auth = pin.map(|p| AuthPin::from(p.expose().to_string()));
            match session.login(UserType::User, auth.as_ref()) {
                Ok(()) => {
                    self.put_session(session);
                    return Ok(());
                }
                Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                    tracing::warn!(
                        slot = self.slot.id(),
                        attempt,
                        "C_Login: already logged in after a logout; the PIN is unverified, closing the token's sessions"
                    );
                    discard(session);
                    self.close_sessions();
                }
                Err(e) => {
                    self.after_error(session, &e);
                    if pin.is_none() && matches!(e, CkError::Pkcs11(RvError::FunctionCanceled, _)) {
                        return Err(ErrorReason::PinEntryCancelled.into());
                    }
                    return Err(pin_error(ctx, self.slot, e));
                }
            }
        }
        Err(AgentError::with_message(
            ErrorReason::DeviceError,
            "The token stays logged in after every logout, so it cannot check the PIN; nothing \
             was signed. Remove and reinsert the token, or restart the agent.",
        ))
    }
}

pub(super) fn pin_error(ctx: &Pkcs11, slot: Slot, err: CkError) -> AgentError {
    let mut out = AgentError::from(err);
    if let Ok(info) = ctx.get_token_info(slot) {
        let state = pin_state(&info);
        if state == PinState::Locked && out.reason == ErrorReason::PinIncorrect {
            out = AgentError::new(ErrorReason::PinLocked);
        }
        out = out.with_pin_state(state);
    }
    out
}

impl CryptokiBackend {
    /// Sign under the login policy: the fast path when the PIN matches the one that logged
    /// the token in, else [`Self::login_and_sign`].
    pub(super) fn sign_with_policy(
        &self,
        m: &Module,
        t: &TokenState,
        req: &SignRequest<'_>,
        pin: &Pin,
    ) -> Result<Vec<Vec<u8>>> {
        let result = (|| {
            if self.policy.keep_logged_in {
                let login = t.sessions(self.policy.lock_wait)?;
                if login.vouches_for(pin, t.generation()) {
                    match t.sign_logged_in(&m.ctx, req) {
                        Ok(sig) => return Ok(sig),
                        Err(SignFailure::Error(e)) => return Err(e),
                        Err(SignFailure::NotLoggedIn) => {}
                    }
                }
            }
            self.login_and_sign(m, t, req, pin)
        })();
        if result.is_ok() {
            t.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        }
        result
    }

    /// Sign after the person types the PIN on the reader. Every such signature logs in anew
    /// (the person's keypad entry is their yes to this one signature) and logs out after, so
    /// no later request rides on it, PIN or not. While the reader waits, the token's login
    /// lock is held against other logins and logouts, not against reads of public objects (a
    /// page listing certificates meanwhile is not held up for the minute the person may
    /// take); a turn at signing (`gate`) only for the signature itself.
    pub(super) fn sign_with_pin_pad(
        &self,
        m: &Module,
        t: &TokenState,
        req: &SignRequest<'_>,
        gate: &super::gate::Gate,
    ) -> Result<Vec<Vec<u8>>> {
        let info = m.ctx.get_token_info(t.slot)?;
        if !info.protected_authentication_path() {
            return Err(AgentError::with_message(
                ErrorReason::PinEntryUnavailable,
                "This token has no PIN pad: the PIN must come with the request or from the \
                 agent's PIN prompt.",
            ));
        }
        if info.user_pin_locked() {
            return Err(AgentError::new(ErrorReason::PinLocked).with_pin_state(PinState::Locked));
        }
        let wait = self.policy.lock_wait;
        let keypad = t.own_login_keypad(wait)?;
        let Ok(mut login) = RwLockUpgradableReadGuard::try_upgrade_for(keypad, wait) else {
            return Err(AgentError::new(ErrorReason::TokenBusy));
        };
        t.logout_locked(&m.ctx, &mut login);
        let keypad = RwLockWriteGuard::downgrade_to_upgradable(login);
        t.login_verified(&m.ctx, None)?;
        let result = {
            let Some(_turn) = gate.enter_within(wait) else {
                // Logged in on the person's keypad entry: never leave it so.
                let mut login = RwLockUpgradableReadGuard::upgrade(keypad);
                t.logout_locked(&m.ctx, &mut login);
                return Err(AgentError::new(ErrorReason::TokenBusy));
            };
            match t.sign_logged_in(&m.ctx, req) {
                Ok(sig) => Ok(sig),
                Err(SignFailure::Error(e)) => Err(e),
                Err(SignFailure::NotLoggedIn) => Err(AgentError::with_message(
                    ErrorReason::DeviceError,
                    "The token logged out right after the PIN was typed on the reader.",
                )),
            }
        };
        // Readers of public objects finish within their own calls; then the logout.
        let mut login = RwLockUpgradableReadGuard::upgrade(keypad);
        t.logout_locked(&m.ctx, &mut login);
        if result.is_ok() {
            t.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        }
        result
    }

    fn login_and_sign(
        &self,
        m: &Module,
        t: &TokenState,
        req: &SignRequest<'_>,
        pin: &Pin,
    ) -> Result<Vec<Vec<u8>>> {
        // Never spend a PIN try, nor drop everyone's login, on a PIN the token cannot accept.
        // Best effort: if the token cannot say, the login below still decides.
        if let Ok(info) = m.ctx.get_token_info(t.slot) {
            let len = pin.expose().len();
            if len < info.min_pin_length() || len > info.max_pin_length() {
                return Err(AgentError::with_message(
                    ErrorReason::PinLenRange,
                    format!(
                        "The PIN must have {} to {} characters for this token.",
                        info.min_pin_length(),
                        info.max_pin_length()
                    ),
                ));
            }
            if info.user_pin_locked() {
                return Err(
                    AgentError::new(ErrorReason::PinLocked).with_pin_state(PinState::Locked)
                );
            }
        }

        let mut login = t.own_login(self.policy.lock_wait)?;
        // Another request may have logged in with this very PIN while we waited for the lock.
        if self.policy.keep_logged_in && login.vouches_for(pin, t.generation()) {
            match t.sign_logged_in(&m.ctx, req) {
                Ok(sig) => return Ok(sig),
                Err(SignFailure::Error(e)) => return Err(e),
                Err(SignFailure::NotLoggedIn) => {}
            }
        }
        t.logout_locked(&m.ctx, &mut login);
        let generation = t.generation();
        t.login_verified(&m.ctx, Some(pin))?;
        // Only now, with the token's own yes, is this PIN the one that logged it in (this
        // generation of it: if the token left meanwhile, the next signature logs in again).
        login.verifier = Some(PinVerifier::new(pin));
        login.generation = generation;

        let result = match t.sign_logged_in(&m.ctx, req) {
            Ok(sig) => Ok(sig),
            Err(SignFailure::Error(e)) => Err(e),
            Err(SignFailure::NotLoggedIn) => Err(AgentError::with_message(
                ErrorReason::DeviceError,
                "The token logged out right after a successful login.",
            )),
        };
        if !self.policy.keep_logged_in {
            t.logout_locked(&m.ctx, &mut login);
        }
        result
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_verifier_matches_only_its_pin() {
        let v = PinVerifier::new(&Pin::new("1234"));
        assert!(v.matches(&Pin::new("1234")));
        assert!(!v.matches(&Pin::new("12345")));
        assert!(!v.matches(&Pin::new("")));
    }
}
