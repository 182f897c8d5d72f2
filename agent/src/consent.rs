//! Consent: who may sign, and asking the person when it is not settled in advance.
//!
//! [`ConsentPolicy::authorize`] is called before every signature:
//! 1. signing paused (tray) → SIGNING_PAUSED;
//! 2. a trusted origin (administrator's `trust_origins`, or a no-Origin client under
//!    `no_origin = "trust"`) → allowed without a prompt;
//! 3. an origin the person chose to "always allow" → allowed without a prompt;
//! 4. otherwise the [`ConsentUi`] asks; no UI → CONSENT_UNAVAILABLE; no answer in time →
//!    CONSENT_TIMEOUT; a refusal → CONSENT_DENIED. Waiting prompts are bounded per origin and in
//!    total (CONSENT_BUSY).
//!
//! What a prompt says about a request is [`text`]'s: every prompt renders it from there.

mod policy;
mod remembered;
pub mod text;

pub use policy::{ConsentPolicy, PendingLimits};
pub use remembered::RememberedSites;

use crate::error::Result;
use crate::origin::Origin;
use std::time::Duration;

/// Who is calling, as established at the WebSocket handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A browser page with this (allowlisted) origin.
    Origin(Origin),
    /// A client that sent no Origin header (a local program).
    Local { trusted: bool },
}

impl Caller {
    /// How the prompt names the caller.
    pub fn label(&self) -> &str {
        match self {
            Caller::Origin(o) => o.as_str(),
            Caller::Local { .. } => "a local application (no web origin)",
        }
    }
}

/// What the person is asked to approve. Never contains the PIN. Its texts are as they came (the
/// subject and issuer from the token): prompts show them through [`text::ConsentText`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRequest {
    /// Who asks: a web origin (which may be remembered) or a local program.
    pub caller: Caller,
    pub subject: String,
    pub issuer: String,
    /// e.g. "SHA-256 with RSA" or "SHA-384 with ECDSA".
    pub algorithm: String,
    /// Short fingerprint of the digest: its first 8 bytes in hex, in two groups. For a batch,
    /// of the SHA-256 of all its digests in order.
    pub digest_fingerprint: String,
    /// How many signatures (a batch signs many after one yes).
    pub count: usize,
}

/// The person's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    AllowAlways,
    Deny,
}

/// A way to ask the person (desktop notification, test double, ...).
#[async_trait::async_trait]
pub trait ConsentUi: Send + Sync + 'static {
    /// Ask and wait at most `timeout`. `Ok(None)` = no answer in time (the UI withdraws its prompt).
    /// `Err(why)` = no prompt can be shown here.
    async fn ask(
        &self,
        request: &ConsentRequest,
        timeout: Duration,
    ) -> Result<Option<Decision>, String>;

    /// Tell the person to type the PIN on the reader's keypad for `request` (a PIN-pad reader
    /// is waiting). The notice stays up until the returned value is dropped. Default: none.
    async fn pin_pad_notice(&self, _request: &ConsentRequest) -> Option<Box<dyn Send>> {
        None
    }
}

/// What the person answered to a PIN prompt.
pub enum PinAnswer {
    /// The PIN they typed (zeroized when dropped).
    Pin(keyport_protocol::Pin),
    /// They pressed Cancel or closed the prompt: a refusal.
    Cancelled,
    /// No answer in time (the UI withdrew its prompt).
    TimedOut,
}

/// A way to ask the person for the PIN, in one prompt that also says who asks to sign what
/// (the agent's own PIN prompt: pinentry). Typing the PIN is the consent to this signature.
#[async_trait::async_trait]
pub trait PinUi: Send + Sync + 'static {
    /// Ask, showing `error` (e.g. "Wrong PIN") when the previous try failed; wait at most
    /// `timeout`. `Err(why)` = no prompt can be shown here (PIN_ENTRY_UNAVAILABLE).
    async fn ask_pin(
        &self,
        request: &ConsentRequest,
        error: Option<&str>,
        timeout: Duration,
    ) -> Result<PinAnswer, String>;
}

/// The short digest fingerprint shown in prompts.
pub fn digest_fingerprint(digest: &[u8]) -> String {
    let head = hex::encode_upper(&digest[..digest.len().min(8)]);
    match head.len() > 8 {
        true => format!("{} {}", &head[..8], &head[8..]),
        false => head,
    }
}

#[cfg(test)]
impl ConsentRequest {
    /// A request as the prompts' tests show it: from `origin` (or a local program if it is not
    /// one), for one RSA signature with `subject`'s certificate.
    pub(crate) fn sample(origin: &str, subject: &str) -> ConsentRequest {
        ConsentRequest {
            caller: match Origin::parse(origin) {
                Ok(o) => Caller::Origin(o),
                Err(_) => Caller::Local { trusted: false },
            },
            subject: subject.into(),
            issuer: "CN=Demo CA".into(),
            algorithm: "SHA-256 with RSA".into(),
            digest_fingerprint: "ABABABAB ABABABAB".into(),
            count: 1,
        }
    }
}
