//! `pkcs11.signData` and `pkcs11.verifySignedData`.

use super::register;
use crate::backend::SignRequest;
use crate::consent::{digest_fingerprint, Caller, ConsentRequest};
use crate::error::{AgentError, Result};
use crate::state::Agent;
use crate::x509;
use base64::Engine;
use jsonrpsee::RpcModule;
use keyport_protocol::{AlgorithmReference, SignData, VerifySignedData};
use zeroize::Zeroizing;

fn b64(field: &str, value: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| {
            AgentError::invalid_params(format!("Invalid params: `{field}` is not valid base64."))
        })
}

/// The digest in `data`, checked against the algorithm's length.
fn digest(data: &str, alg: AlgorithmReference) -> Result<Zeroizing<Vec<u8>>> {
    let digest = Zeroizing::new(b64("data", data)?);
    if digest.len() != alg.digest_len() {
        return Err(AgentError::invalid_params(format!(
            "Invalid params: `data` must be the base64 of a {} digest ({} bytes), not {} bytes. \
             Hash the document first; Keyport signs digests.",
            alg.as_str(),
            alg.digest_len(),
            digest.len()
        )));
    }
    Ok(digest)
}

fn key_id(cert_id: &str) -> Result<Vec<u8>> {
    match hex::decode(cert_id.trim()) {
        Ok(id) if !id.is_empty() => Ok(id),
        _ => Err(AgentError::invalid_params(
            "Invalid params: `cert_id` must be the hex `id` that pkcs11.certificates returned.",
        )),
    }
}

/// What the person is asked to approve, from the certificate (parsed once).
fn consent_request(
    caller: &Caller,
    der: &[u8],
    alg: AlgorithmReference,
    digest: &[u8],
) -> ConsentRequest {
    let hash = match alg {
        AlgorithmReference::Sha1 => "SHA-1",
        AlgorithmReference::Sha256 => "SHA-256",
        AlgorithmReference::Sha384 => "SHA-384",
        AlgorithmReference::Sha512 => "SHA-512",
    };
    let (subject, issuer, key) = match x509::parse_certificate(der) {
        Ok(c) => {
            let key = x509::certificate_key_kind(der).map_or("the token's key", |k| k.scheme());
            (c.subject, c.issuer, key)
        }
        Err(_) => (
            "(unreadable certificate)".to_string(),
            String::new(),
            "the token's key",
        ),
    };
    ConsentRequest {
        caller: caller.clone(),
        subject,
        issuer,
        algorithm: format!("{hash} with {key}"),
        digest_fingerprint: digest_fingerprint(digest),
    }
}

pub(super) fn register_all(m: &mut RpcModule<Agent>) {
    register::<SignData, _, _>(m, |p, state, caller| async move {
        let digest = digest(&p.data, p.algorithm_reference)?;
        let id = key_id(&p.cert_id)?;
        let module = state.module(p.module.as_deref())?;

        // Trusted or remembered callers skip the prompt (and building it).
        if !state.consent.pre_approved(&caller)? {
            let cert = {
                let (module, id, slot) = (module.clone(), id.clone(), p.slot_id);
                state
                    .blocking(move |b| b.certificate(&module, slot, &id))
                    .await?
            };
            let request = consent_request(&caller, &cert.der, p.algorithm_reference, &digest);
            // On refusal `p` (with the PIN) and `digest` are dropped here, and zeroized.
            state.consent.authorize(&caller, &request).await?;
        }

        let signature = state
            .blocking(move |b| {
                // The backend signs only with the key of a certificate on the token.
                let req = SignRequest {
                    slot_id: p.slot_id,
                    key_id: &id,
                    pin: &p.pin,
                    algorithm: p.algorithm_reference,
                    digest: &digest,
                };
                b.sign(&module, &req)
            })
            .await?;
        tracing::info!(origin = caller.label(), "signature made");
        Ok(base64::engine::general_purpose::STANDARD.encode(signature))
    });

    register::<VerifySignedData, _, _>(m, |p, state, _| async move {
        let digest = digest(&p.data, p.algorithm_reference)?;
        let signature = b64("signature", &p.signature)?;
        let id = key_id(&p.cert_id)?;
        let module = state.module(p.module.as_deref())?;
        state
            .blocking(move |b| {
                let cert = b.certificate(&module, p.slot_id, &id)?;
                x509::verify(&cert.der, p.algorithm_reference, &digest, &signature)
            })
            .await
    });
}

#[cfg(test)]
mod tests {
    use super::super::rpc_module;
    use super::super::tests::{call, state};
    use crate::backend::fake::FakeBackend;
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn sign_params(overrides: Value) -> Value {
        let mut p = json!({
            "slot_id": 1, "cert_id": "01", "pin": "1234",
            "data": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=", "algorithm_reference": "sha256"
        });
        for (k, v) in overrides.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    }

    #[tokio::test]
    async fn without_consent_nothing_reaches_the_token() {
        let backend = Arc::new(FakeBackend::default());
        let m = rpc_module(state(backend.clone()));
        // In process there is no handshake: the caller is an untrusted local client.
        let err = call(&m, "pkcs11.signData", sign_params(json!({})))
            .await
            .unwrap_err();
        assert_eq!(err["data"]["reason"], "CONSENT_UNAVAILABLE");
        assert_eq!(err["code"], 1502);
        assert_eq!(backend.sign_calls(), 0);
    }

    #[tokio::test]
    async fn bad_inputs_are_typed_errors_and_never_echo_the_pin() {
        let m = rpc_module(state(Arc::new(FakeBackend::default())));
        let cases = [
            (json!({"data": "***"}), "INVALID_PARAMS"),
            (json!({"data": "AAAA"}), "INVALID_PARAMS"),
            (json!({"algorithm_reference": "md5"}), "INVALID_PARAMS"),
            (json!({"cert_id": "zz"}), "INVALID_PARAMS"),
            (json!({"cert_id": ""}), "INVALID_PARAMS"),
            (json!({"cert_id": "02"}), "CERTIFICATE_NOT_FOUND"),
            (json!({"slot_id": 2}), "TOKEN_NOT_PRESENT"),
            (json!({"module": "/lib/x.so"}), "MODULE_NOT_ALLOWED"),
            (json!({"pin": 1234}), "INVALID_PARAMS"),
        ];
        for (over, reason) in cases {
            let params = sign_params(over.clone());
            let err = call(&m, "pkcs11.signData", params).await.unwrap_err();
            assert_eq!(err["data"]["reason"], reason, "{over}: {err}");
            assert!(!err.to_string().contains("1234"), "PIN echoed: {err}");
        }
    }

    #[tokio::test]
    async fn digest_length_must_match_the_algorithm() {
        let m = rpc_module(state(Arc::new(FakeBackend::default())));
        let err = call(
            &m,
            "pkcs11.signData",
            sign_params(json!({"algorithm_reference": "sha384"})),
        )
        .await
        .unwrap_err();
        let msg = err["message"].as_str().unwrap();
        assert!(msg.contains("48 bytes") && msg.contains("not 32"), "{msg}");
    }

    #[tokio::test]
    async fn verify_reports_bad_base64_signature() {
        let m = rpc_module(state(Arc::new(FakeBackend::default())));
        let mut p = sign_params(json!({}));
        p["signature"] = json!("!!");
        let err = call(&m, "pkcs11.verifySignedData", p).await.unwrap_err();
        assert_eq!(err["data"]["reason"], "INVALID_PARAMS");
    }
}
