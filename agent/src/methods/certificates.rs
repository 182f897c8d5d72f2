//! `pkcs11.certificates`.

use super::register;
use crate::state::Agent;
use crate::x509;
use base64::Engine;
use jsonrpsee::RpcModule;
use keyport_protocol::{CertificateEntry, Certificates};

pub(super) fn register_all(m: &mut RpcModule<Agent>) {
    register::<Certificates, _, _>(m, |p, state, _| async move {
        let module = state.module(p.module.as_deref())?;
        let with_parsed = p.parse_certs.unwrap_or(false);
        state
            .blocking(move |b| {
                let certs = b.certificates(&module, p.slot_id)?;
                Ok(certs
                    .into_iter()
                    .map(|c| CertificateEntry {
                        base64: base64::engine::general_purpose::STANDARD.encode(&c.der),
                        id: hex::encode_upper(&c.id),
                        // A certificate we cannot parse is still listed, without `parsed`.
                        parsed: with_parsed
                            .then(|| x509::parse_certificate(&c.der).ok())
                            .flatten(),
                    })
                    .collect())
            })
            .await
    });
}
