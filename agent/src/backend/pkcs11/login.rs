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
//!   logged in" after our own logout proves nothing, see `TokenState::login_verified`.
//! * The token is logged out after `idle_timeout` without a signature (a ticker the backend
//!   owns), on pause, and on shutdown. With `keep_logged_in = false` every signature logs in and
//!   out (the naive semantics).

use super::info::pin_state;
use crate::error::AgentError;
use cryptoki::context::Pkcs11;
use cryptoki::error::Error as CkError;
use cryptoki::slot::Slot;
use keyport_protocol::{ErrorReason, Pin, PinState};
use sha2::{Digest, Sha256};
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
