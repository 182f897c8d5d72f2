//! What Keyport keeps of one token: its session pool, the private-key handles and certificates
//! read from it, and the signature itself on a (believed) logged-in session.
//!
//! Private key handles are cached per CKA_ID while logged in (SoftHSM invalidates them at
//! logout, so the cache is cleared at every logout).
//!
//! # When the token goes away
//! A card pulled out (and perhaps put back) leaves every session handle, key handle and login
//! of it dead. [`TokenState::invalidate`] drops them all and starts a new *generation*: a login
//! verified in an older generation no longer takes the fast path, so the next signature logs in
//! again. It runs when the slot watcher sees the token leave or change, and on the first error
//! that says the handles are stale ([`TokenState::note_error`]); the backend then retries the
//! request once on fresh state ([`TokenState::stale_count`]), so a page never sees a
//! stale-handle error.

use super::error::{invalidates_token_state, is_stale_handle};
use super::lock;
use super::login::Login;
use crate::backend::SignRequest;
use crate::error::{AgentError, Result};
use crate::x509::digest_info;
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState};
use cryptoki::slot::Slot;
use keyport_protocol::ErrorReason;
use keyport_protocol::{AlgorithmReference, SignatureScheme};
use parking_lot::{RwLock, RwLockReadGuard, RwLockUpgradableReadGuard, RwLockWriteGuard};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Idle sessions kept per token.
pub(super) const POOL_SIZE: usize = 8;

/// What Keyport keeps of one slot of one module. Every use of the token's sessions holds its
/// `login` lock (read to use them, write to log in or out), so under the write lock no other
/// thread holds a session of the token: closing them all is then safe, and logs it out.
pub(super) struct TokenState {
    pub(super) slot: Slot,
    pub(super) login: RwLock<Login>,
    pub(super) pool: Mutex<Vec<Session>>,
    pub(super) keys: Mutex<HashMap<Vec<u8>, (ObjectHandle, KeyType)>>,
    /// Certificates by CKA_ID, read at most `CERT_TTL` ago (public objects: no login needed).
    pub(super) certs: Mutex<HashMap<Vec<u8>, CachedCert>>,
    pub(super) last_used_ms: AtomicU64,
    /// Bumped by [`TokenState::invalidate`]: what was kept before is dead.
    generation: AtomicU64,
    /// Errors seen that say the handles were stale (see [`TokenState::note_error`]).
    stale: AtomicU64,
}

/// Close a session we no longer trust. It may already be dead (the token left): that is
/// expected, and not worth the error cryptoki would log when dropping it.
pub(super) fn discard(session: Session) {
    match session.get_session_info() {
        // Dead already (its token left): nothing to close. Dropping it would call
        // C_CloseSession, and cryptoki logs that failure as an error, twice with `close()`.
        Err(CkError::Pkcs11(
            RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::DeviceRemoved
            | RvError::TokenNotPresent
            | RvError::CryptokiNotInitialized,
            _,
        )) => std::mem::forget(session),
        _ => {
            if let Err(e) = session.close() {
                tracing::debug!(error = %e, "closing a session");
            }
        }
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
        s_len: (alg.digest_len() as u64).into(),
    }
}

/// A certificate's DER and when it was read.
type CachedCert = (Instant, Arc<Vec<u8>>);

/// How long a certificate read from the token is reused by signData/verifySignedData. Listing the
/// certificates always reads the token (and refreshes this cache); a token error clears it.
const CERT_TTL: Duration = Duration::from_secs(10);

fn busy() -> AgentError {
    AgentError::with_message(
        ErrorReason::TokenBusy,
        "The token is busy with another request (a PIN being typed on its reader, or other \
         signatures); nothing was done. Retry in a moment.",
    )
}

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

impl TokenState {
    pub(super) fn new(slot: Slot) -> Self {
        TokenState {
            slot,
            login: RwLock::new(Login::default()),
            pool: Mutex::new(Vec::new()),
            keys: Mutex::new(HashMap::new()),
            certs: Mutex::new(HashMap::new()),
            last_used_ms: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            stale: AtomicU64::new(0),
        }
    }

    /// Use the token's sessions (the login lock, shared), waiting at most `wait` for a login
    /// or logout in progress (a PIN typed on the reader's keypad can take a minute): past it,
    /// TOKEN_BUSY, typed and in time, so that a request that merely waited never looks hung.
    pub(super) fn sessions(&self, wait: Duration) -> Result<RwLockReadGuard<'_, Login>> {
        self.login.try_read_for(wait).ok_or_else(busy)
    }

    /// Log in or out (the login lock, alone), waiting at most `wait`.
    pub(super) fn own_login(&self, wait: Duration) -> Result<RwLockWriteGuard<'_, Login>> {
        self.login.try_write_for(wait).ok_or_else(busy)
    }

    /// The login lock for a login at the reader's keypad: no other login or logout meanwhile,
    /// but reads of public objects go on (upgraded to log out, before and after).
    pub(super) fn own_login_keypad(
        &self,
        wait: Duration,
    ) -> Result<RwLockUpgradableReadGuard<'_, Login>> {
        self.login.try_upgradable_read_for(wait).ok_or_else(busy)
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// How many stale-handle errors this token has seen: a request that sees it change while
    /// it ran failed on stale state, and may be retried once.
    pub(super) fn stale_count(&self) -> u64 {
        self.stale.load(Ordering::SeqCst)
    }

    /// The token left (or may have): drop its sessions, key handles and certificates, and
    /// start a new generation, so that a login verified before does not count any more. Needs
    /// no lock: sessions in use elsewhere fail on their own and are not pooled again for long.
    pub(super) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.forget_sessions();
    }

    /// A session that just failed with `err`: pooled again if it may still live, else closed;
    /// and the error noted (see [`TokenState::note_error`]).
    pub(super) fn after_error(&self, session: Session, err: &CkError) {
        if invalidates_token_state(err) {
            discard(session);
        } else {
            self.put_session(session);
        }
        self.note_error(err);
    }

    /// Look at an error from the token: one that says its sessions are dead invalidates the
    /// state, and one that says the handles are stale is counted (the request may be retried).
    pub(super) fn note_error(&self, err: &CkError) {
        if invalidates_token_state(err) {
            self.invalidate();
        }
        if is_stale_handle(err) {
            self.stale.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub(super) fn take_session(&self, ctx: &Pkcs11) -> Result<Session> {
        if let Some(s) = lock(&self.pool).pop() {
            return Ok(s);
        }
        ctx.open_ro_session(self.slot).map_err(|e| {
            self.note_error(&e);
            e.into()
        })
    }

    pub(super) fn put_session(&self, session: Session) {
        let mut pool = lock(&self.pool);
        if pool.len() < POOL_SIZE {
            pool.push(session);
        }
    }

    /// Run `f` on a pooled session; a session-killing error empties the pool.
    pub(super) fn with_session<T>(
        &self,
        ctx: &Pkcs11,
        f: impl FnOnce(&Session) -> std::result::Result<T, CkError>,
    ) -> Result<T> {
        let session = self.take_session(ctx)?;
        match f(&session) {
            Ok(v) => {
                self.put_session(session);
                Ok(v)
            }
            Err(e) => {
                self.after_error(session, &e);
                Err(e.into())
            }
        }
    }

    pub(super) fn forget_sessions(&self) {
        let pooled: Vec<Session> = lock(&self.pool).drain(..).collect();
        for session in pooled {
            discard(session);
        }
        lock(&self.keys).clear();
        lock(&self.certs).clear();
    }

    pub(super) fn cached_cert(&self, id: &[u8]) -> Option<Arc<Vec<u8>>> {
        let certs = lock(&self.certs);
        certs
            .get(id)
            .filter(|(at, _)| at.elapsed() < CERT_TTL)
            .map(|(_, der)| der.clone())
    }

    pub(super) fn cache_cert(&self, id: &[u8], der: &[u8]) {
        lock(&self.certs).insert(id.to_vec(), (Instant::now(), Arc::new(der.to_vec())));
    }

    pub(super) fn find_key(
        &self,
        session: &Session,
        id: &[u8],
    ) -> std::result::Result<(ObjectHandle, KeyType), SignFailure> {
        if let Some(k) = lock(&self.keys).get(id) {
            return Ok(*k);
        }
        let template = [
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(id.to_vec()),
        ];
        let found = session
            .find_objects(&template)
            .map_err(|e| self.failure(e))?;
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
            .map_err(|e| self.failure(e))?;
        let kind = attrs
            .into_iter()
            .find_map(|a| match a {
                Attribute::KeyType(k) => Some(k),
                _ => None,
            })
            .ok_or_else(|| {
                SignFailure::Error(AgentError::new(ErrorReason::UnsupportedAlgorithm))
            })?;
        lock(&self.keys).insert(id.to_vec(), (handle, kind));
        Ok((handle, kind))
    }

    /// Sign every digest of `req`, on one session of a token that is logged in (as far as we
    /// know).
    pub(super) fn sign_logged_in(
        &self,
        ctx: &Pkcs11,
        req: &SignRequest<'_>,
    ) -> std::result::Result<Vec<Vec<u8>>, SignFailure> {
        let session = self.take_session(ctx)?;
        let signed = req
            .digests
            .iter()
            .map(|digest| {
                let sig = self.sign_on(&session, req, digest, true);
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
                self.forget_sessions();
                Err(SignFailure::Error(e))
            }
            other => {
                self.put_session(session);
                other
            }
        }
    }

    pub(super) fn sign_on(
        &self,
        session: &Session,
        req: &SignRequest<'_>,
        digest: &[u8],
        retry: bool,
    ) -> std::result::Result<Vec<u8>, SignFailure> {
        let (key, kind) = self.find_key(session, req.key_id)?;
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
        match session.sign(&mechanism, key, &data) {
            Ok(sig) => Ok(sig),
            Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _)) => Err(SignFailure::NotLoggedIn),
            Err(CkError::Pkcs11(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid, _))
                if retry =>
            {
                lock(&self.keys).clear();
                self.sign_on(session, req, digest, false)
            }
            Err(e) => Err(self.failure(e)),
        }
    }

    /// A token error as a failure, noted first (see [`TokenState::note_error`]).
    fn failure(&self, e: CkError) -> SignFailure {
        self.note_error(&e);
        SignFailure::Error(e.into())
    }
}
