//! Signing: on a logged-in session (the key found by CKA_ID, the mechanism for its type and the
//! scheme), and the flows around it: with a PIN under the login policy (the fast path when the
//! PIN matches the one that logged the token in), and with the PIN typed on a reader's keypad.

use super::login::PinVerifier;
use super::token::{discard, TokenState};
use super::{lock, CryptokiBackend, Module};
use crate::backend::SignRequest;
use crate::error::{AgentError, Result};
use crate::x509::digest_info;
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState};
use keyport_protocol::{AlgorithmReference, ErrorReason, Pin, PinState, SignatureScheme};
use parking_lot::{RwLockUpgradableReadGuard, RwLockWriteGuard};
use std::sync::atomic::Ordering;
use zeroize::Zeroizing;

/// Why a signature on a (believed) logged-in token did not happen.
pub(super) enum SignFailure {
    NotLoggedIn,
    Error(AgentError),
}

impl From<AgentError> for SignFailure {
    fn from(e: AgentError) -> Self {
        SignFailure::Error(e)
    }
}

/// RSASSA-PSS as Keyport makes it: MGF1 with the digest's own hash, salt as long as the hash.
pub(super) fn pss_params(alg: AlgorithmReference) -> PkcsPssParams {
    let (hash_alg, mgf) = match alg {
        AlgorithmReference::Sha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
        AlgorithmReference::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
        AlgorithmReference::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384),
        AlgorithmReference::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512),
    };
    PkcsPssParams {
        hash_alg,
        mgf,
        s_len: (alg.digest_len() as cryptoki_sys::CK_ULONG).into(),
    }
}

fn find_key(
    t: &TokenState,
    session: &Session,
    id: &[u8],
) -> std::result::Result<(ObjectHandle, KeyType), SignFailure> {
    if let Some(k) = lock(&t.keys).get(id) {
        return Ok(*k);
    }
    let template = [
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::Id(id.to_vec()),
    ];
    let found = session.find_objects(&template).map_err(|e| failure(t, e))?;
    let Some(handle) = found.first().copied() else {
        // Private objects are invisible to a session that is not logged in.
        let logged_in = session
            .get_session_info()
            .map(|i| {
                matches!(
                    i.session_state(),
                    SessionState::RoUser | SessionState::RwUser
                )
            })
            .unwrap_or(false);
        return Err(if logged_in {
            SignFailure::Error(AgentError::new(ErrorReason::KeyNotFound))
        } else {
            SignFailure::NotLoggedIn
        });
    };
    let attrs = session
        .get_attributes(handle, &[AttributeType::KeyType])
        .map_err(|e| failure(t, e))?;
    let kind = attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::KeyType(k) => Some(k),
            _ => None,
        })
        .ok_or_else(|| SignFailure::Error(AgentError::new(ErrorReason::UnsupportedAlgorithm)))?;
    lock(&t.keys).insert(id.to_vec(), (handle, kind));
    Ok((handle, kind))
}

/// Sign every digest of `req`, on one session of a token that is logged in (as far as we
/// know).
pub(super) fn sign_logged_in(
    t: &TokenState,
    ctx: &Pkcs11,
    req: &SignRequest<'_>,
) -> std::result::Result<Vec<Vec<u8>>, SignFailure> {
    let session = t.take_session(ctx)?;
    let signed = req
        .digests
        .iter()
        .map(|digest| {
            let sig = sign_on(t, &session, req, digest, true);
            if let (Ok(_), Some(progress)) = (&sig, req.progress) {
                (progress.0)();
            }
            sig
        })
        .collect::<std::result::Result<Vec<_>, _>>();
    match signed {
        Err(SignFailure::Error(e)) if e.reason == ErrorReason::DeviceError => {
            // The session may be dead; do not pool it.
            discard(session);
            t.forget_sessions();
            Err(SignFailure::Error(e))
        }
        other => {
            t.put_session(session);
            other
        }
    }
}

pub(super) fn sign_on(
    t: &TokenState,
    session: &Session,
    req: &SignRequest<'_>,
    digest: &[u8],
    retry: bool,
) -> std::result::Result<Vec<u8>, SignFailure> {
    let (key, kind) = find_key(t, session, req.key_id)?;
    let (mechanism, data) = if kind == KeyType::RSA {
        match req.scheme {
            SignatureScheme::Pkcs1 => (
                Mechanism::RsaPkcs,
                Zeroizing::new(digest_info(req.algorithm, digest)),
            ),
            SignatureScheme::Pss => (
                Mechanism::RsaPkcsPss(pss_params(req.algorithm)),
                Zeroizing::new(digest.to_vec()),
            ),
        }
    } else if kind == KeyType::EC {
        if req.scheme == SignatureScheme::Pss {
            return Err(AgentError::with_message(
                ErrorReason::UnsupportedAlgorithm,
                "RSA-PSS needs an RSA key; this certificate's key is EC.",
            )
            .into());
        }
        (Mechanism::Ecdsa, Zeroizing::new(digest.to_vec()))
    } else {
        return Err(AgentError::with_message(
            ErrorReason::UnsupportedAlgorithm,
            "The key for this certificate is neither RSA nor EC.",
        )
        .into());
    };
    // C_SignInit + C_Sign into a buffer sized from the key's certificate: no length query.
    let signed = match super::objects::signature_len(t, req.key_id) {
        Some(len) => session.sign_with_len(&mechanism, key, &data, len),
        None => session.sign(&mechanism, key, &data),
    };
    match signed {
        Ok(sig) => Ok(sig),
        Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _)) => Err(SignFailure::NotLoggedIn),
        Err(CkError::Pkcs11(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid, _))
            if retry =>
        {
            lock(&t.keys).clear();
            sign_on(t, session, req, digest, false)
        }
        Err(e) => Err(failure(t, e)),
    }
}

/// A token error as a failure, noted first (see [`TokenState::note_error`]).
fn failure(t: &TokenState, e: CkError) -> SignFailure {
    t.note_error(&e);
    SignFailure::Error(e.into())
}

/// Sign under the login policy: the fast path when the PIN matches the one that logged
/// the token in, else [`login_and_sign`].
pub(super) fn with_pin(
    b: &CryptokiBackend,
    m: &Module,
    t: &TokenState,
    req: &SignRequest<'_>,
    pin: &Pin,
) -> Result<Vec<Vec<u8>>> {
    let result = (|| {
        if b.policy.keep_logged_in {
            let login = t.sessions(b.policy.lock_wait)?;
            if login.vouches_for(pin, t.generation()) {
                match sign_logged_in(t, &m.ctx, req) {
                    Ok(sig) => return Ok(sig),
                    Err(SignFailure::Error(e)) => return Err(e),
                    Err(SignFailure::NotLoggedIn) => {}
                }
            }
        }
        login_and_sign(b, m, t, req, pin)
    })();
    if result.is_ok() {
        t.last_used_ms.store(b.now_ms(), Ordering::Relaxed);
    }
    result
}

/// Sign after the person types the PIN on the reader. Every such signature logs in anew
/// (the person's keypad entry is their yes to this one signature) and logs out after, so
/// no later request rides on it, PIN or not. While the reader waits, the token's login
/// lock is held against other logins and logouts, not against reads of public objects (a
/// page listing certificates meanwhile is not held up for the minute the person may
/// take); a turn at signing (`gate`) only for the signature itself.
pub(super) fn with_pin_pad(
    b: &CryptokiBackend,
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
    let wait = b.policy.lock_wait;
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
        match sign_logged_in(t, &m.ctx, req) {
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
        t.last_used_ms.store(b.now_ms(), Ordering::Relaxed);
    }
    result
}

fn login_and_sign(
    b: &CryptokiBackend,
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
            return Err(AgentError::new(ErrorReason::PinLocked).with_pin_state(PinState::Locked));
        }
    }

    let mut login = t.own_login(b.policy.lock_wait)?;
    // Another request may have logged in with this very PIN while we waited for the lock.
    if b.policy.keep_logged_in && login.vouches_for(pin, t.generation()) {
        match sign_logged_in(t, &m.ctx, req) {
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

    let result = match sign_logged_in(t, &m.ctx, req) {
        Ok(sig) => Ok(sig),
        Err(SignFailure::Error(e)) => Err(e),
        Err(SignFailure::NotLoggedIn) => Err(AgentError::with_message(
            ErrorReason::DeviceError,
            "The token logged out right after a successful login.",
        )),
    };
    if !b.policy.keep_logged_in {
        t.logout_locked(&m.ctx, &mut login);
    }
    result
}
