//! Reading public objects: the certificates on a token (they need no login), cached per token
//! for the signatures that check them.

use super::lock;
use super::module::Module;
use super::token::TokenState;
use crate::backend::CertificateObject;
use crate::error::{AgentError, Result};
use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass};
use keyport_protocol::ErrorReason;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every certificate on the token (and the certificate cache refreshed).
pub(super) fn certificates(
    m: &Module,
    t: &TokenState,
    wait: Duration,
) -> Result<Vec<CertificateObject>> {
    let _using = t.sessions(wait)?;
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

/// The certificate with CKA_ID `id` (from the cache when read recently).
pub(super) fn certificate(
    m: &Module,
    t: &TokenState,
    id: &[u8],
    wait: Duration,
) -> Result<CertificateObject> {
    if let Some(der) = t.cached_cert(id) {
        return Ok(CertificateObject {
            id: id.to_vec(),
            der: der.to_vec(),
        });
    }
    let _using = t.sessions(wait)?;
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
