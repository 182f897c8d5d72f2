//! Reading public objects: the certificates on a token (they need no login), cached per token
//! and *generation* of it ([`TokenState::generation`]: a new one starts when the token is
//! removed, replaced or its handles turn stale). A second listing, and the certificate check of
//! every signature, then cost no token call: on a card each call is one or more APDUs.

use super::lock;
use super::module::Module;
use super::token::TokenState;
use crate::backend::CertificateObject;
use crate::error::{AgentError, Result};
use crate::x509::KeyKind;
use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass};
use keyport_protocol::ErrorReason;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What was read of a token's certificates in one generation of it.
#[derive(Default)]
pub(super) struct CertCache {
    /// The generation they were read in: in any other, nothing here counts.
    generation: u64,
    by_id: HashMap<Vec<u8>, Cached>,
    /// Every certificate on the token, once a listing read them all.
    all: Option<Arc<Vec<CertificateObject>>>,
}

/// One certificate's DER, and the length of its key's signatures (when its key is known).
#[derive(Clone)]
struct Cached {
    der: Arc<Vec<u8>>,
    signature_len: Option<usize>,
}

impl Cached {
    fn new(der: Vec<u8>) -> Cached {
        let signature_len = crate::x509::certificate_key_kind(&der)
            .ok()
            .map(|kind| match kind {
                KeyKind::Rsa { bits } => (bits as usize).div_ceil(8),
                // r || s, each as long as the curve's order.
                KeyKind::P256 => 64,
                KeyKind::P384 => 96,
                KeyKind::P521 => 132,
            });
        Cached {
            der: Arc::new(der),
            signature_len,
        }
    }
}

/// What the cache knows of the certificate with one CKA_ID.
enum Known {
    Found(Arc<Vec<u8>>),
    /// A listing of this generation read every certificate, and none has this id.
    Absent,
    Unknown,
}

impl CertCache {
    /// The cache as of `generation`: emptied if it was filled in another.
    fn at(&mut self, generation: u64) -> &mut CertCache {
        if self.generation != generation {
            *self = CertCache {
                generation,
                ..CertCache::default()
            };
        }
        self
    }

    fn all_of(&self, generation: u64) -> Option<Arc<Vec<CertificateObject>>> {
        (self.generation == generation)
            .then(|| self.all.clone())
            .flatten()
    }

    fn lookup(&self, generation: u64, id: &[u8]) -> Known {
        if self.generation != generation {
            return Known::Unknown;
        }
        match (self.by_id.get(id), &self.all) {
            (Some(c), _) => Known::Found(c.der.clone()),
            (None, Some(_)) => Known::Absent,
            (None, None) => Known::Unknown,
        }
    }
}

/// How long signatures of the key with CKA_ID `id` are, if its certificate is cached (a
/// signature then needs no length query).
pub(super) fn signature_len(t: &TokenState, id: &[u8]) -> Option<usize> {
    let cache = lock(&t.certs);
    if cache.generation != t.generation() {
        return None;
    }
    cache.by_id.get(id).and_then(|c| c.signature_len)
}

/// Whether the token whose certificates are cached is still in its slot: one of its sessions
/// still lives. PKCS #11 closes every session of a token that leaves its slot, so this also
/// catches a card pulled and put back, or swapped for another, when no slot watcher told us
/// (an agent nobody subscribed to watches no slot); `C_GetSessionInfo` needs no card command.
/// A session that died starts a new generation of the token's state (and counts as stale).
fn still_there(t: &TokenState) -> bool {
    let Some(session) = lock(&t.pool).pop() else {
        return false;
    };
    match session.get_session_info() {
        Ok(_) => {
            t.put_session(session);
            true
        }
        Err(e) => {
            t.after_error(session, &e);
            false
        }
    }
}

/// Every certificate on the token: read once per generation of it, then one `C_GetSessionInfo`
/// ([`still_there`]).
pub(super) fn certificates(
    m: &Module,
    t: &TokenState,
    wait: Duration,
) -> Result<Vec<CertificateObject>> {
    let _using = t.sessions(wait)?;
    let cached = lock(&t.certs).all_of(t.generation());
    if let Some(all) = cached {
        if still_there(t) {
            return Ok(all.to_vec());
        }
    }
    let generation = t.generation();
    let out = t.with_session(&m.ctx, |s| {
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
        Ok(out)
    })?;
    // Kept only if the token is still the one read (else the next request reads again).
    let mut cache = lock(&t.certs);
    if t.generation() == generation {
        let cache = cache.at(generation);
        cache.by_id = out
            .iter()
            .map(|c| (c.id.clone(), Cached::new(c.der.clone())))
            .collect();
        cache.all = Some(Arc::new(out.clone()));
    }
    Ok(out)
}

/// Whether a certificate from the cache needs [`still_there`] first.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Yes: nothing else will touch the token in this request.
    Token,
    /// No: the request goes on with calls on the token's sessions (a signature), which fail on
    /// a token that left, and the request is then run again on fresh state.
    ByWhatFollows,
}

/// The certificate with CKA_ID `id`: from the cache when this generation of the token was read.
pub(super) fn certificate(
    m: &Module,
    t: &TokenState,
    id: &[u8],
    wait: Duration,
    check: Check,
) -> Result<CertificateObject> {
    let mut known = lock(&t.certs).lookup(t.generation(), id);
    let _using = match (&known, check) {
        (Known::Found(_) | Known::Absent, Check::ByWhatFollows) => None,
        _ => Some(t.sessions(wait)?),
    };
    if !matches!(known, Known::Unknown) && check == Check::Token && !still_there(t) {
        known = Known::Unknown;
    }
    let generation = t.generation();
    match known {
        Known::Found(der) => {
            return Ok(CertificateObject {
                id: id.to_vec(),
                der: der.to_vec(),
            })
        }
        Known::Absent => return Err(AgentError::new(ErrorReason::CertificateNotFound)),
        Known::Unknown => {}
    }
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
            let mut cache = lock(&t.certs);
            if t.generation() == generation {
                cache
                    .at(generation)
                    .by_id
                    .insert(id.to_vec(), Cached::new(der.clone()));
            }
            Ok(CertificateObject {
                id: id.to_vec(),
                der,
            })
        }
        None => Err(AgentError::new(ErrorReason::CertificateNotFound)),
    }
}
