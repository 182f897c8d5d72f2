//! The token backend: what the method handlers need from PKCS #11, as a trait.
//!
//! Handlers never touch cryptoki; they call a [`Backend`] on a blocking thread. The real one is
//! [`host::HostBackend`], which runs each library in a process of its own where
//! [`pkcs11::CryptokiBackend`] serves it (or that backend in process, with
//! `module_isolation = false`); unit and in-process tests use [`fake::FakeBackend`].
//! Every call names an [`AllowedModule`]: only the allowlist makes one.

pub mod fake;
pub mod host;
pub mod pcsc;
pub mod pkcs11;

use crate::allowlist::AllowedModule;
use crate::error::Result;
use keyport_protocol::{AlgorithmReference, InfoResult, Pin, SignatureScheme, SlotInfo, TokenInfo};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use zeroize::Zeroizing;

/// A certificate object on a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateObject {
    /// CKA_ID.
    pub id: Vec<u8>,
    /// CKA_VALUE: the DER.
    pub der: Vec<u8>,
}

/// A token as the slot watcher tells one from another: a different label or serial number in
/// the same slot is a different token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenIdentity {
    pub label: String,
    pub serial: String,
}

/// One slot of a module, and the token in it (none: empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotPresence {
    pub slot_id: u64,
    pub token: Option<TokenIdentity>,
}

/// What [`Backend::wait_slot_event`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SlotWait {
    /// The module reported a slot event: look at [`Backend::slot_presence`] again.
    Event,
    /// Nothing within the time given.
    Quiet,
    /// The module cannot report events (no `C_WaitForSlotEvent`): poll instead.
    Unsupported,
}

/// How the token learns the PIN for a signature.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// A PIN from the page or from the agent's own prompt. Borrowed, never stored as text.
    Pin(&'a Pin),
    /// The reader's PIN pad (CKF_PROTECTED_AUTHENTICATION_PATH): `C_Login` with no PIN, and the
    /// person types it on the reader. Every such signature logs in anew and logs out after.
    PinPad,
}

/// What a signature request hands the backend: one key, one credential, one or more digests
/// (a batch signs them all after one login).
#[derive(Debug)]
pub struct SignRequest<'a> {
    pub slot_id: u64,
    /// CKA_ID of the certificate and of its private key.
    pub key_id: &'a [u8],
    pub credential: Credential<'a>,
    pub algorithm: AlgorithmReference,
    /// How an RSA key signs (PKCS #1 v1.5 or PSS); EC keys take `Pkcs1` only.
    pub scheme: SignatureScheme,
    /// The digests to sign, their lengths already checked against `algorithm`.
    pub digests: &'a [Zeroizing<Vec<u8>>],
    /// Called after each signature of the batch (the module host tells the agent, whose time
    /// limit then starts again: it is per signature, not per batch).
    pub progress: Option<Progress<'a>>,
}

/// What a batch calls after each signature ([`SignRequest::progress`]).
#[derive(Clone, Copy)]
pub struct Progress<'a>(pub &'a (dyn Fn() + Sync));

impl std::fmt::Debug for Progress<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

/// The backend `config` asks for: libraries in processes of their own (the default), or in
/// this one.
pub fn for_config(config: &crate::config::Config) -> std::sync::Arc<dyn Backend> {
    let policy = pkcs11::LoginPolicy {
        keep_logged_in: config.keep_logged_in,
        idle_timeout: config.idle_logout,
        lock_wait: pkcs11::lock_wait_for(config.request_timeout),
    };
    let exe = std::env::current_exe()
        .ok()
        .filter(|_| config.module_isolation);
    match exe {
        Some(exe) => std::sync::Arc::new(
            host::HostBackend::new(exe, policy, config.request_timeout, &config.module_env)
                .with_pin_pad_timeout(config.pin_pad_timeout),
        ),
        None => {
            if config.module_isolation {
                tracing::warn!(
                    "cannot find this program's path: PKCS #11 libraries run in process"
                );
                let set: Vec<&str> = config
                    .module_env
                    .iter()
                    .filter(|e| matches!(e, crate::config::ModuleEnv::Set(..)))
                    .map(|e| e.name())
                    .collect();
                if !set.is_empty() {
                    tracing::warn!(
                        "module_env: {} not set: libraries run in the agent's own process",
                        set.join(", ")
                    );
                }
            }
            pkcs11::CryptokiBackend::start(policy)
        }
    }
}

/// A backend call answered without a blocking thread (see [`Backend::info_quick`]).
pub type Quick<T> = futures_util::future::BoxFuture<'static, Result<T>>;

pub trait Backend: Send + Sync + 'static {
    fn info(&self, module: &AllowedModule) -> Result<InfoResult>;
    fn slots(&self, module: &AllowedModule, token_present: bool) -> Result<Vec<SlotInfo>>;
    fn token(&self, module: &AllowedModule, slot_id: u64) -> Result<TokenInfo>;
    /// Every X.509 certificate object on the token.
    fn certificates(&self, module: &AllowedModule, slot_id: u64) -> Result<Vec<CertificateObject>>;
    /// The CKA_IDs of the key objects the token shows: its private keys, and where it hides
    /// those until login (and is not logged in), its public keys.
    fn key_ids(&self, module: &AllowedModule, slot_id: u64) -> Result<Vec<Vec<u8>>>;
    /// The certificate with this CKA_ID (CERTIFICATE_NOT_FOUND if none).
    fn certificate(
        &self,
        module: &AllowedModule,
        slot_id: u64,
        id: &[u8],
    ) -> Result<CertificateObject>;
    /// Sign each digest with the private key of the certificate whose CKA_ID is `key_id` (a key
    /// without a certificate on the token does not sign: CERTIFICATE_NOT_FOUND), after one
    /// login: RSA keys sign the DigestInfo with CKM_RSA_PKCS (or the digest with
    /// CKM_RSA_PKCS_PSS), EC keys the digest with CKM_ECDSA (raw r||s). One signature per
    /// digest, in order; any failure fails the whole request.
    fn sign(&self, module: &AllowedModule, request: &SignRequest<'_>) -> Result<Vec<Vec<u8>>>;
    /// Every slot of the module and the token in it. What was kept of a token that left its
    /// slot, or was replaced by another, is dropped (login, sessions, key handles, certificates).
    fn slot_presence(&self, module: &AllowedModule) -> Result<Vec<SlotPresence>>;
    /// Wait at most `timeout` for the module to report a token inserted or removed
    /// (`C_WaitForSlotEvent`). What was kept of a slot it names is dropped.
    fn wait_slot_event(&self, module: &AllowedModule, timeout: Duration) -> Result<SlotWait>;
    /// Forget every login (pause, idle, shutdown). Idempotent.
    fn logout_all(&self);

    /// The calls a request makes most, answered on the async thread where the backend can do
    /// so without blocking it (the module host's channel on Unix, with its host up and the
    /// request small enough to write at once): no blocking thread is woken for them. `None`:
    /// make the blocking call instead. The future holds no thread; it answers by the same
    /// time limit as the blocking call.
    fn info_quick(&self, _module: &AllowedModule) -> Option<Quick<InfoResult>> {
        None
    }
    fn slots_quick(
        &self,
        _module: &AllowedModule,
        _token_present: bool,
    ) -> Option<Quick<Vec<SlotInfo>>> {
        None
    }
    fn token_quick(&self, _module: &AllowedModule, _slot_id: u64) -> Option<Quick<TokenInfo>> {
        None
    }
    fn certificate_quick(
        &self,
        _module: &AllowedModule,
        _slot_id: u64,
        _id: &[u8],
    ) -> Option<Quick<CertificateObject>> {
        None
    }
    fn sign_quick(
        &self,
        _module: &AllowedModule,
        _request: &SignRequest<'_>,
    ) -> Option<Quick<Vec<Vec<u8>>>> {
        None
    }
    /// Log out, close sessions, finalise the modules. Called once at shutdown.
    fn shutdown(&self) {
        self.logout_all();
    }
}
