//! The real backend: PKCS #11 through the `cryptoki` crate.
//!
//! # Login policy
//! PKCS #11 login state belongs to the whole process, per token: a C_Logout from one request
//! logs out every other session of that token. So each token has one [`TokenState`] whose
//! `login` lock coordinates every request that uses it:
//!
//! * A signature whose PIN matches the PIN that logged the token in (checked in constant time
//!   against a salted SHA-256 held in memory, never the PIN itself) signs under a shared (read)
//!   lock: many signers of one token proceed at once on pooled sessions, with no login.
//! * Any other PIN takes the exclusive (write) lock, logs the token out, and logs in with the new
//!   PIN, so the token itself judges every PIN we have not seen succeed. A wrong PIN therefore
//!   costs one try, exactly as it would without the cache, and leaves the token logged out.
//! * The token is logged out after `idle_timeout` without a signature, on pause, and on shutdown.
//!   With `keep_logged_in = false` every signature logs in and out (the naive semantics).
//!
//! Private key handles are cached per CKA_ID while logged in (SoftHSM invalidates them at logout,
//! so the cache is cleared at every logout).

use super::{Backend, CertificateObject, SignRequest};
use crate::allowlist::{AllowedModule, ModuleIdentity};
use crate::error::{invalidates_token_state, AgentError, Result};
use crate::x509::digest_info;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::{Limit, Slot};
use cryptoki::types::{AuthPin, Version};
use keyport_protocol::{ErrorReason, InfoResult, Pin, PinState, SlotInfo, TokenInfo};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// How long a token stays logged in, see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct LoginPolicy {
    pub keep_logged_in: bool,
    pub idle_timeout: Duration,
}

impl Default for LoginPolicy {
    fn default() -> Self {
        LoginPolicy {
            keep_logged_in: true,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Idle sessions kept per token.
const POOL_SIZE: usize = 8;
/// Slots whose state one module keeps (a real module has a handful; ids that name no slot
/// never get state).
const MAX_TOKENS_PER_MODULE: usize = 64;

pub struct CryptokiBackend {
    modules: Mutex<Modules>,
    policy: LoginPolicy,
    epoch: Instant,
}

/// The loaded modules, by the file they are (one library = one module, whatever path named
/// it), and the paths already resolved to one of them.
#[derive(Default)]
struct Modules {
    by_identity: HashMap<ModuleIdentity, Arc<Module>>,
    by_path: HashMap<String, Arc<Module>>,
}

struct Module {
    /// The file loaded (symlinks resolved), for logs and messages.
    name: String,
    ctx: Pkcs11,
    tokens: Mutex<HashMap<u64, Arc<TokenState>>>,
}

/// A salted SHA-256 of the PIN that logged a token in.
struct PinVerifier {
    salt: [u8; 16],
    hash: Zeroizing<[u8; 32]>,
}

impl PinVerifier {
    fn digest(salt: &[u8; 16], pin: &Pin) -> Zeroizing<[u8; 32]> {
        let mut h = Sha256::new();
        h.update(salt);
        h.update(pin.expose().as_bytes());
        Zeroizing::new(h.finalize().into())
    }

    fn new(pin: &Pin) -> Self {
        let mut salt = [0u8; 16];
        // A failing OS RNG leaves a zero salt: still a correct verifier, only a weaker one.
        let _ = getrandom::fill(&mut salt);
        PinVerifier {
            salt,
            hash: Self::digest(&salt, pin),
        }
    }

    fn matches(&self, pin: &Pin) -> bool {
        Self::digest(&self.salt, pin).ct_eq(&*self.hash).into()
    }
}

#[derive(Default)]
struct Login {
    verifier: Option<PinVerifier>,
}

/// What Keyport keeps of one slot of one module. Every use of the token's sessions holds its
/// `login` lock (read to use them, write to log in or out), so under the write lock no other
/// thread holds a session of the token: closing them all is then safe, and logs it out.
struct TokenState {
    slot: Slot,
    login: RwLock<Login>,
    pool: Mutex<Vec<Session>>,
    keys: Mutex<HashMap<Vec<u8>, (ObjectHandle, KeyType)>>,
    /// Certificates by CKA_ID, read at most `CERT_TTL` ago (public objects: no login needed).
    certs: Mutex<HashMap<Vec<u8>, CachedCert>>,
    last_used_ms: AtomicU64,
}

/// A certificate's DER and when it was read.
type CachedCert = (Instant, Arc<Vec<u8>>);

/// How long a certificate read from the token is reused by signData/verifySignedData. Listing the
/// certificates always reads the token (and refreshes this cache); a token error clears it.
const CERT_TTL: Duration = Duration::from_secs(10);

/// Why a signature on a (believed) logged-in token did not happen.
enum SignFailure {
    NotLoggedIn,
    Error(AgentError),
}

impl From<AgentError> for SignFailure {
    fn from(e: AgentError) -> Self {
        SignFailure::Error(e)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind: keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn version(v: Version) -> String {
    format!("{}.{}", v.major(), v.minor())
}

fn limit(l: Limit) -> Option<u64> {
    match l {
        Limit::Max(n) => Some(n),
        Limit::Unavailable | Limit::Infinite => None,
    }
}

fn slot_of(slot_id: u64) -> Result<Slot> {
    Slot::try_from(slot_id).map_err(|_| AgentError::new(ErrorReason::SlotNotFound))
}

fn pin_state(info: &cryptoki::slot::TokenInfo) -> PinState {
    if info.user_pin_locked() {
        PinState::Locked
    } else if info.user_pin_final_try() {
        PinState::FinalTry
    } else if info.user_pin_count_low() {
        PinState::CountLow
    } else {
        PinState::Ok
    }
}

#[allow(clippy::unnecessary_cast)] // CK_FLAGS is a C unsigned long: 32 bits on Windows.
fn token_flags(t: &cryptoki::slot::TokenInfo) -> u64 {
    use cryptoki_sys as s;
    let bits = [
        (t.rng(), s::CKF_RNG),
        (t.write_protected(), s::CKF_WRITE_PROTECTED),
        (t.login_required(), s::CKF_LOGIN_REQUIRED),
        (t.user_pin_initialized(), s::CKF_USER_PIN_INITIALIZED),
        (t.restore_key_not_needed(), s::CKF_RESTORE_KEY_NOT_NEEDED),
        (t.clock_on_token(), s::CKF_CLOCK_ON_TOKEN),
        (
            t.protected_authentication_path(),
            s::CKF_PROTECTED_AUTHENTICATION_PATH,
        ),
        (t.dual_crypto_operations(), s::CKF_DUAL_CRYPTO_OPERATIONS),
        (t.token_initialized(), s::CKF_TOKEN_INITIALIZED),
        (
            t.secondary_authentication(),
            s::CKF_SECONDARY_AUTHENTICATION,
        ),
        (t.user_pin_count_low(), s::CKF_USER_PIN_COUNT_LOW),
        (t.user_pin_final_try(), s::CKF_USER_PIN_FINAL_TRY),
        (t.user_pin_locked(), s::CKF_USER_PIN_LOCKED),
        (t.user_pin_to_be_changed(), s::CKF_USER_PIN_TO_BE_CHANGED),
        (t.so_pin_count_low(), s::CKF_SO_PIN_COUNT_LOW),
        (t.so_pin_final_try(), s::CKF_SO_PIN_FINAL_TRY),
        (t.so_pin_locked(), s::CKF_SO_PIN_LOCKED),
        (t.so_pin_to_be_changed(), s::CKF_SO_PIN_TO_BE_CHANGED),
        (t.error_state(), s::CKF_ERROR_STATE),
    ];
    bits.iter()
        .filter(|(on, _)| *on)
        .fold(0, |acc, (_, bit)| acc | *bit as u64)
}

impl TokenState {
    fn new(slot: Slot) -> Self {
        TokenState {
            slot,
            login: RwLock::new(Login::default()),
            pool: Mutex::new(Vec::new()),
            keys: Mutex::new(HashMap::new()),
            certs: Mutex::new(HashMap::new()),
            last_used_ms: AtomicU64::new(0),
        }
    }

    fn take_session(&self, ctx: &Pkcs11) -> Result<Session> {
        if let Some(s) = lock(&self.pool).pop() {
            return Ok(s);
        }
        Ok(ctx.open_ro_session(self.slot)?)
    }

    fn put_session(&self, session: Session) {
        let mut pool = lock(&self.pool);
        if pool.len() < POOL_SIZE {
            pool.push(session);
        }
    }

    /// Run `f` on a pooled session; a session-killing error empties the pool.
    fn with_session<T>(
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
                if invalidates_token_state(&e) {
                    drop(session);
                    self.forget_sessions();
                } else {
                    self.put_session(session);
                }
                Err(e.into())
            }
        }
    }

    fn forget_sessions(&self) {
        lock(&self.pool).clear();
        lock(&self.keys).clear();
        lock(&self.certs).clear();
    }

    fn cached_cert(&self, id: &[u8]) -> Option<Arc<Vec<u8>>> {
        let certs = lock(&self.certs);
        certs
            .get(id)
            .filter(|(at, _)| at.elapsed() < CERT_TTL)
            .map(|(_, der)| der.clone())
    }

    fn cache_cert(&self, id: &[u8], der: &[u8]) {
        lock(&self.certs).insert(id.to_vec(), (Instant::now(), Arc::new(der.to_vec())));
    }

    /// Log out (under the caller's write lock). If the module will not log out, every session
    /// of the token is closed, which ends its login state (PKCS #11: the login belongs to the
    /// application's sessions and ends with the last one). Either way the verifier is gone, so
    /// no PIN signs until the token has accepted it again.
    fn logout_locked(&self, ctx: &Pkcs11, login: &mut Login) {
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
                drop(session);
                self.close_sessions();
            }
        }
    }

    /// Close every session of the token this agent holds (under the write lock: all of them).
    fn close_sessions(&self) {
        self.forget_sessions();
    }

    /// Log in with `pin`, under the write lock, on a token believed logged out. Succeeds only
    /// when the token itself accepted this PIN: CKR_USER_ALREADY_LOGGED_IN proves nothing about
    /// it (a logout the module did not do, another user of the module's state), so then every
    /// session is closed and the login tried once more; if the token still claims to be logged
    /// in, nothing is signed.
    fn login_verified(&self, ctx: &Pkcs11, pin: &Pin) -> Result<()> {
        for attempt in 0..2 {
            let session = self.take_session(ctx)?;
            let auth = AuthPin::from(pin.expose().to_string());
            match session.login(UserType::User, Some(&auth)) {
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
                    drop(session);
                    self.close_sessions();
                }
                Err(e) => {
                    if invalidates_token_state(&e) {
                        drop(session);
                        self.forget_sessions();
                    } else {
                        self.put_session(session);
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

    fn find_key(
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
            .map_err(|e| SignFailure::Error(e.into()))?;
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
            .map_err(|e| SignFailure::Error(e.into()))?;
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

    /// Sign on a token that is logged in (as far as we know).
    fn sign_logged_in(
        &self,
        ctx: &Pkcs11,
        req: &SignRequest<'_>,
    ) -> std::result::Result<Vec<u8>, SignFailure> {
        let session = self.take_session(ctx)?;
        match self.sign_on(&session, req, true) {
            Err(SignFailure::Error(e)) if e.reason == ErrorReason::DeviceError => {
                // The session may be dead; do not pool it.
                drop(session);
                self.forget_sessions();
                Err(SignFailure::Error(e))
            }
            other => {
                self.put_session(session);
                other
            }
        }
    }

    fn sign_on(
        &self,
        session: &Session,
        req: &SignRequest<'_>,
        retry: bool,
    ) -> std::result::Result<Vec<u8>, SignFailure> {
        let (key, kind) = self.find_key(session, req.key_id)?;
        let (mechanism, data) = if kind == KeyType::RSA {
            (
                Mechanism::RsaPkcs,
                Zeroizing::new(digest_info(req.algorithm, req.digest)),
            )
        } else if kind == KeyType::EC {
            (Mechanism::Ecdsa, Zeroizing::new(req.digest.to_vec()))
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
                self.sign_on(session, req, false)
            }
            Err(e) => Err(SignFailure::Error(e.into())),
        }
    }
}

impl Module {
    /// The state of a slot that exists. An id that names no slot gets SLOT_NOT_FOUND and
    /// leaves nothing behind; the map is bounded (slots are few, and state of a slot that is
    /// idle and logged out is cheap to drop).
    fn token_state(&self, slot_id: u64) -> Result<Arc<TokenState>> {
        if let Some(t) = lock(&self.tokens).get(&slot_id) {
            return Ok(t.clone());
        }
        let slot = slot_of(slot_id)?;
        self.ctx.get_slot_info(slot)?;
        let mut tokens = lock(&self.tokens);
        if tokens.len() >= MAX_TOKENS_PER_MODULE {
            tokens.retain(|_, t| {
                Arc::strong_count(t) > 1
                    || t.login
                        .try_read()
                        .map(|l| l.verifier.is_some())
                        .unwrap_or(true)
            });
        }
        if tokens.len() >= MAX_TOKENS_PER_MODULE && !tokens.contains_key(&slot_id) {
            return Err(AgentError::with_message(
                ErrorReason::DeviceError,
                format!(
                    "The PKCS #11 library {} has more than {MAX_TOKENS_PER_MODULE} slots in use.",
                    self.name
                ),
            ));
        }
        Ok(tokens
            .entry(slot_id)
            .or_insert_with(|| Arc::new(TokenState::new(slot)))
            .clone())
    }

    fn tokens(&self) -> Vec<Arc<TokenState>> {
        lock(&self.tokens).values().cloned().collect()
    }

    /// How many slots have state (for tests of the bound).
    fn tokens_held(&self) -> usize {
        lock(&self.tokens).len()
    }
}

fn pin_error(ctx: &Pkcs11, slot: Slot, err: CkError) -> AgentError {
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
    pub fn new(policy: LoginPolicy) -> Self {
        CryptokiBackend {
            modules: Mutex::new(Modules::default()),
            policy,
            epoch: Instant::now(),
        }
    }

    /// The loaded module `allowed` names, loading and initialising it on first use. Two paths
    /// to one file (a symlink, a hard link) are one module: one context, one lock per token.
    fn module(&self, allowed: &AllowedModule) -> Result<Arc<Module>> {
        let path = allowed.path();
        let mut modules = lock(&self.modules);
        if let Some(m) = modules.by_path.get(path) {
            return Ok(m.clone());
        }
        let identity = allowed.identity().map_err(|e| {
            tracing::warn!(module = path, error = %e, "cannot find PKCS #11 module");
            AgentError::with_message(
                ErrorReason::ModuleLoadFailed,
                format!("The PKCS #11 library {path} could not be found: {e}."),
            )
        })?;
        if let Some(m) = modules.by_identity.get(&identity).cloned() {
            tracing::info!(module = path, loaded = %m.name, "another path to a loaded PKCS #11 module");
            modules.by_path.insert(path.to_string(), m.clone());
            return Ok(m);
        }
        let name = identity.canonical.display().to_string();
        let ctx = Pkcs11::new(&identity.canonical).map_err(|e| {
            tracing::warn!(module = %name, error = %e, "cannot load PKCS #11 module");
            AgentError::with_message(
                ErrorReason::ModuleLoadFailed,
                format!("The PKCS #11 library {path} could not be loaded."),
            )
        })?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => {
                tracing::warn!(module = %name, error = %e, "C_Initialize failed");
                return Err(AgentError::with_message(
                    ErrorReason::ModuleLoadFailed,
                    format!("The PKCS #11 library {path} failed to initialise ({e})."),
                ));
            }
        }
        tracing::info!(module = %name, "PKCS #11 module loaded");
        let m = Arc::new(Module {
            name,
            ctx,
            tokens: Mutex::new(HashMap::new()),
        });
        modules.by_identity.insert(identity, m.clone());
        modules.by_path.insert(path.to_string(), m.clone());
        Ok(m)
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

    fn login_and_sign(&self, m: &Module, t: &TokenState, req: &SignRequest<'_>) -> Result<Vec<u8>> {
        // Never spend a PIN try, nor drop everyone's login, on a PIN the token cannot accept.
        // Best effort: if the token cannot say, the login below still decides.
        if let Ok(info) = m.ctx.get_token_info(t.slot) {
            let len = req.pin.expose().len();
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

        let mut login = t.login.write().unwrap_or_else(|e| e.into_inner());
        // Another request may have logged in with this very PIN while we waited for the lock.
        if self.policy.keep_logged_in && login.verifier.as_ref().is_some_and(|v| v.matches(req.pin))
        {
            match t.sign_logged_in(&m.ctx, req) {
                Ok(sig) => return Ok(sig),
                Err(SignFailure::Error(e)) => return Err(e),
                Err(SignFailure::NotLoggedIn) => {}
            }
        }
        t.logout_locked(&m.ctx, &mut login);
        t.login_verified(&m.ctx, req.pin)?;
        // Only now, with the token's own yes, is this PIN the one that logged it in.
        login.verifier = Some(PinVerifier::new(req.pin));

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
}

impl Backend for CryptokiBackend {
    fn info(&self, module: &AllowedModule) -> Result<InfoResult> {
        let m = self.module(module)?;
        let info = m.ctx.get_library_info()?;
        Ok(InfoResult {
            cryptoki_version: version(info.cryptoki_version()),
            manufacturer_id: info.manufacturer_id().trim_end().to_string(),
            flags: 0,
            library_description: info.library_description().trim_end().to_string(),
            library_version: version(info.library_version()),
        })
    }

    fn slots(&self, module: &AllowedModule, token_present: bool) -> Result<Vec<SlotInfo>> {
        let m = self.module(module)?;
        let slots = if token_present {
            m.ctx.get_slots_with_token()?
        } else {
            m.ctx.get_all_slots()?
        };
        let mut out = Vec::with_capacity(slots.len());
        for slot in slots {
            let info = m.ctx.get_slot_info(slot)?;
            let flags = (info.token_present() as u64)
                | ((info.removable_device() as u64) << 1)
                | ((info.hardware_slot() as u64) << 2);
            out.push(SlotInfo {
                slot_id: slot.id(),
                description: info.slot_description().trim_end().to_string(),
                flags,
                hardware_version: version(info.hardware_version()),
                firmware_version: version(info.firmware_version()),
            });
        }
        Ok(out)
    }

    fn token(&self, module: &AllowedModule, slot_id: u64) -> Result<TokenInfo> {
        let m = self.module(module)?;
        let slot = slot_of(slot_id)?;
        let t = m.ctx.get_token_info(slot)?;
        let opt = |v: Option<usize>| v.map(|n| n as u64);
        Ok(TokenInfo {
            slot_id,
            label: t.label().trim_end().to_string(),
            manufacturer_id: t.manufacturer_id().trim_end().to_string(),
            model: t.model().trim_end().to_string(),
            serial_number: t.serial_number().trim_end().to_string(),
            flags: token_flags(&t),
            pin_state: pin_state(&t),
            max_session_count: limit(t.max_session_count()),
            session_count: t.session_count(),
            max_rw_session_count: limit(t.max_rw_session_count()),
            rw_session_count: t.rw_session_count(),
            max_pin_length: t.max_pin_length() as u64,
            min_pin_length: t.min_pin_length() as u64,
            total_public_memory: opt(t.total_public_memory()),
            free_public_memory: opt(t.free_public_memory()),
            total_private_memory: opt(t.total_private_memory()),
            free_private_memory: opt(t.free_private_memory()),
            hardware_version: version(t.hardware_version()),
            firmware_version: version(t.firmware_version()),
        })
    }

    fn certificates(&self, module: &AllowedModule, slot_id: u64) -> Result<Vec<CertificateObject>> {
        let m = self.module(module)?;
        let t = m.token_state(slot_id)?;
        let _using = t.login.read().unwrap_or_else(|e| e.into_inner());
        t.with_session(&m.ctx, |s| {
            let template = [
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(CertificateType::X_509),
            ];
            let mut out = Vec::new();
            for handle in s.find_objects(&template)? {
                let mut id = Vec::new();
                let mut der = Vec::new();
                for attr in s.get_attributes(handle, &[AttributeType::Id, AttributeType::Value])? {
                    match attr {
                        Attribute::Id(v) => id = v,
                        Attribute::Value(v) => der = v,
                        _ => {}
                    }
                }
                if !der.is_empty() {
                    out.push(CertificateObject { id, der });
                }
            }
            let mut cache = lock(&t.certs);
            cache.clear();
            for c in &out {
                cache.insert(c.id.clone(), (Instant::now(), Arc::new(c.der.clone())));
            }
            Ok(out)
        })
    }

    fn certificate(
        &self,
        module: &AllowedModule,
        slot_id: u64,
        id: &[u8],
    ) -> Result<CertificateObject> {
        let m = self.module(module)?;
        let t = m.token_state(slot_id)?;
        if let Some(der) = t.cached_cert(id) {
            return Ok(CertificateObject {
                id: id.to_vec(),
                der: der.to_vec(),
            });
        }
        let _using = t.login.read().unwrap_or_else(|e| e.into_inner());
        let der = t.with_session(&m.ctx, |s| {
            let template = [
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(CertificateType::X_509),
                Attribute::Id(id.to_vec()),
            ];
            let Some(handle) = s.find_objects(&template)?.first().copied() else {
                return Ok(None);
            };
            let attrs = s.get_attributes(handle, &[AttributeType::Value])?;
            Ok(attrs.into_iter().find_map(|a| match a {
                Attribute::Value(v) => Some(v),
                _ => None,
            }))
        })?;
        match der {
            Some(der) => {
                t.cache_cert(id, &der);
                Ok(CertificateObject {
                    id: id.to_vec(),
                    der,
                })
            }
            None => Err(AgentError::new(ErrorReason::CertificateNotFound)),
        }
    }

    fn sign(&self, module: &AllowedModule, req: &SignRequest<'_>) -> Result<Vec<u8>> {
        let m = self.module(module)?;
        let t = m.token_state(req.slot_id)?;
        let result = (|| {
            if self.policy.keep_logged_in {
                let login = t.login.read().unwrap_or_else(|e| e.into_inner());
                if login.verifier.as_ref().is_some_and(|v| v.matches(req.pin)) {
                    match t.sign_logged_in(&m.ctx, req) {
                        Ok(sig) => return Ok(sig),
                        Err(SignFailure::Error(e)) => return Err(e),
                        Err(SignFailure::NotLoggedIn) => {}
                    }
                }
            }
            self.login_and_sign(&m, &t, req)
        })();
        if result.is_ok() {
            t.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        }
        result
    }

    fn logout_all(&self) {
        for m in self.loaded() {
            for t in m.tokens() {
                let mut login = t.login.write().unwrap_or_else(|e| e.into_inner());
                if login.verifier.is_some() {
                    t.logout_locked(&m.ctx, &mut login);
                    tracing::info!(slot = t.slot.id(), "token logged out");
                }
            }
        }
    }

    fn logout_idle(&self) {
        let now = self.now_ms();
        let idle = self.policy.idle_timeout.as_millis() as u64;
        for m in self.loaded() {
            for t in m.tokens() {
                if now.saturating_sub(t.last_used_ms.load(Ordering::Relaxed)) < idle {
                    continue;
                }
                // Never wait for a busy token: it is not idle.
                let Ok(mut login) = t.login.try_write() else {
                    continue;
                };
                if login.verifier.is_some() {
                    t.logout_locked(&m.ctx, &mut login);
                    tracing::info!(slot = t.slot.id(), "token logged out after idle timeout");
                }
            }
        }
    }

    fn shutdown(&self) {
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

    #[test]
    fn unknown_module_gives_module_load_failed() {
        let b = CryptokiBackend::new(LoginPolicy::default());
        let err = b
            .info(&AllowedModule::for_tests("/nonexistent/libnothing.so"))
            .unwrap_err();
        assert_eq!(err.reason, ErrorReason::ModuleLoadFailed);
    }
}
