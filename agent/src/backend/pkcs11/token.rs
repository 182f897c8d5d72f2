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
use super::login::{pin_error, Login};
use super::objects::CertCache;
use crate::error::{AgentError, Result};
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{KeyType, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use keyport_protocol::{ErrorReason, Pin};
use parking_lot::{RwLock, RwLockReadGuard, RwLockUpgradableReadGuard, RwLockWriteGuard};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

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
    /// Certificates read in this generation of the token (see `objects`).
    pub(super) certs: Mutex<CertCache>,
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

fn busy() -> AgentError {
    AgentError::with_message(
        ErrorReason::TokenBusy,
        "The token is busy with another request (a PIN being typed on its reader, or other \
         signatures); nothing was done. Retry in a moment.",
    )
}

impl TokenState {
    pub(super) fn new(slot: Slot) -> Self {
        TokenState {
            slot,
            login: RwLock::new(Login::default()),
            pool: Mutex::new(Vec::new()),
            keys: Mutex::new(HashMap::new()),
            certs: Mutex::new(CertCache::default()),
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
        *lock(&self.certs) = CertCache::default();
    }

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
