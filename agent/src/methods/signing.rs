//! `pkcs11.signData`, `pkcs11.signDataBatch` and `pkcs11.verifySignedData`.

use super::register;
use crate::allowlist::AllowedModule;
use crate::backend::{Backend, Credential, SignRequest};
use crate::consent::{digest_fingerprint, Caller, ConsentRequest};
use crate::error::{AgentError, Result};
use crate::i18n;
use crate::state::Agent;
use crate::x509;
use base64::Engine;
use jsonrpsee::RpcModule;
use keyport_protocol::{
    AlgorithmReference, ErrorReason, Pin, PinState, SignData, SignDataBatch, SignatureFormat,
    SignatureScheme, VerifySignedData, MAX_BATCH_DIGESTS,
};
use std::sync::Arc;
use zeroize::Zeroizing;

fn b64(field: &str, value: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| {
            AgentError::invalid_params(format!("Invalid params: `{field}` is not valid base64."))
        })
}

/// The digest in `field`, checked against the algorithm's length.
fn digest(field: &str, data: &str, alg: AlgorithmReference) -> Result<Zeroizing<Vec<u8>>> {
    let digest = Zeroizing::new(b64(field, data)?);
    if digest.len() != alg.digest_len() {
        return Err(AgentError::invalid_params(format!(
            "Invalid params: `{field}` must be the base64 of a {} digest ({} bytes), not {} bytes. \
             Hash the document first; Keyport signs digests.",
            alg.as_str(),
            alg.digest_len(),
            digest.len()
        )));
    }
    Ok(digest)
}

fn key_id(cert_id: &str) -> Result<Vec<u8>> {
    let cert_id = cert_id.trim();
    if cert_id.len() > 2 * keyport_protocol::MAX_CERT_ID_BYTES {
        return Err(AgentError::invalid_params(format!(
            "Invalid params: `cert_id` is longer than any certificate id ({} bytes at most).",
            keyport_protocol::MAX_CERT_ID_BYTES
        )));
    }
    match hex::decode(cert_id) {
        Ok(id) if !id.is_empty() => Ok(id),
        _ => Err(AgentError::invalid_params(
            "Invalid params: `cert_id` must be the hex `id` that pkcs11.certificates returned.",
        )),
    }
}

/// What the person is asked to approve, from the certificate (parsed once). For a batch the
/// fingerprint is that of the whole set: the SHA-256 of its digests in order.
fn consent_request(
    caller: &Caller,
    der: &[u8],
    alg: AlgorithmReference,
    digests: &[Zeroizing<Vec<u8>>],
) -> ConsentRequest {
    let hash = match alg {
        AlgorithmReference::Sha1 => "SHA-1",
        AlgorithmReference::Sha256 => "SHA-256",
        AlgorithmReference::Sha384 => "SHA-384",
        AlgorithmReference::Sha512 => "SHA-512",
    };
    let (subject, issuer, key) = match x509::parse_certificate(der) {
        Ok(c) => {
            let key = x509::certificate_key_kind(der).map_or_else(
                |_| i18n::text("key-unknown", &[]),
                |k| k.scheme().to_string(),
            );
            (c.subject, c.issuer, key)
        }
        Err(_) => (
            i18n::text("certificate-unreadable", &[]),
            String::new(),
            i18n::text("key-unknown", &[]),
        ),
    };
    let fingerprint = match digests {
        [one] => digest_fingerprint(one),
        many => {
            use sha2::Digest;
            let mut set = sha2::Sha256::new();
            for d in many {
                set.update(d.as_slice());
            }
            digest_fingerprint(&set.finalize())
        }
    };
    ConsentRequest {
        caller: caller.clone(),
        subject,
        issuer,
        algorithm: i18n::text(
            "consent-algorithm-name",
            &[("hash", hash.into()), ("key", (&key).into())],
        ),
        digest_fingerprint: fingerprint,
        count: digests.len(),
    }
}

/// Where the PIN of a signature comes from.
enum PinSource {
    /// The page sent it.
    Page(Pin),
    /// The reader's keypad (the token has a protected authentication path).
    PinPad,
    /// The agent's own PIN prompt.
    Prompt,
}

/// How many times the agent's PIN prompt re-opens after a wrong PIN in one request (the token
/// usually locks sooner); then the last error goes to the page.
pub const MAX_PIN_PROMPTS: usize = 5;

/// The line the PIN prompt shows after a failed try.
fn retry_text(e: &AgentError) -> String {
    let id = match (e.reason, e.pin_state) {
        (ErrorReason::PinIncorrect, Some(PinState::FinalTry)) => "pin-wrong-final-try",
        (ErrorReason::PinIncorrect, Some(PinState::CountLow)) => "pin-wrong-few-tries",
        (ErrorReason::PinIncorrect, _) => "pin-wrong",
        _ => "pin-wrong-length",
    };
    i18n::text(id, &[])
}

/// What `signData` and `signDataBatch` share: which key, how, and with which PIN.
struct Job {
    slot_id: u64,
    cert_id: String,
    pin: Option<Pin>,
    algorithm: AlgorithmReference,
    scheme: SignatureScheme,
    format: SignatureFormat,
    module: Option<String>,
}

/// The [`Job`] of `signData`'s or `signDataBatch`'s params (the same fields but `data`).
macro_rules! job {
    ($p:expr) => {
        Job {
            slot_id: $p.slot_id,
            cert_id: $p.cert_id,
            pin: $p.pin,
            algorithm: $p.algorithm_reference,
            scheme: $p.signature_scheme.unwrap_or_default(),
            format: $p.signature_format.unwrap_or_default(),
            module: $p.module,
        }
    };
}

/// Sign with `pin` (None: the reader's PIN pad), on this thread where the backend can.
async fn sign(
    state: &Agent,
    module: &AllowedModule,
    job: &Job,
    id: &[u8],
    digests: &Arc<Vec<Zeroizing<Vec<u8>>>>,
    pin: Option<Pin>,
) -> Result<Vec<Vec<u8>>> {
    // A batch's limit scales with its size: each signature may take `request_timeout` (the
    // module host enforces exactly that, signature by signature; this is the backstop).
    let per_signature = state.request_timeout * (digests.len().max(1) as u32);
    let limit = match pin {
        Some(_) => per_signature,
        None => per_signature + state.pin_pad_timeout,
    };
    let how = How {
        slot_id: job.slot_id,
        algorithm: job.algorithm,
        scheme: job.scheme,
    };
    let quick = state.quick(|b| b.sign_quick(module, &how.request(id, &pin, digests)));
    let (m, id, digests) = (module.clone(), id.to_vec(), digests.clone());
    let slow = move |b: &dyn Backend| b.sign(&m, &how.request(&id, &pin, &digests));
    state.call_within(limit, quick, slow).await
}

/// What a signature is made with, beside the key, the PIN and the digests.
#[derive(Clone, Copy)]
struct How {
    slot_id: u64,
    algorithm: AlgorithmReference,
    scheme: SignatureScheme,
}

impl How {
    /// The backend's request. It signs only with the key of a certificate on the token.
    fn request<'a>(
        self,
        key_id: &'a [u8],
        pin: &'a Option<Pin>,
        digests: &'a [Zeroizing<Vec<u8>>],
    ) -> SignRequest<'a> {
        SignRequest {
            slot_id: self.slot_id,
            key_id,
            credential: pin.as_ref().map_or(Credential::PinPad, Credential::Pin),
            algorithm: self.algorithm,
            scheme: self.scheme,
            digests,
            progress: None,
        }
    }
}

/// Where the PIN comes from: the page, or (none sent) the reader's keypad when the token has
/// one, else the agent's own PIN window.
async fn pin_source(
    state: &Arc<Agent>,
    module: &AllowedModule,
    job: &mut Job,
) -> Result<PinSource> {
    if let Some(pin) = job.pin.take() {
        return Ok(PinSource::Page(pin));
    }
    let (m, slot) = (module.clone(), job.slot_id);
    let quick = state.quick(|b| b.token_quick(module, slot));
    let token = state.call(quick, move |b| b.token(&m, slot)).await?;
    if token.protected_authentication_path {
        Ok(PinSource::PinPad)
    } else if state.consent.has_pin_ui() {
        Ok(PinSource::Prompt)
    } else {
        Err(AgentError::new(ErrorReason::PinEntryUnavailable))
    }
}

/// Ask for the PIN in the agent's window and sign with it; after a wrong PIN (or one of the
/// wrong length) ask again, saying why, up to [`MAX_PIN_PROMPTS`] times.
async fn with_prompted_pin<A, AF, S, SF>(ask: A, sign_with: S) -> Result<Vec<Vec<u8>>>
where
    A: Fn(Option<String>) -> AF,
    AF: std::future::Future<Output = Result<Pin>>,
    S: Fn(Pin) -> SF,
    SF: std::future::Future<Output = Result<Vec<Vec<u8>>>>,
{
    let mut error: Option<String> = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let pin = ask(error.take()).await?;
        match sign_with(pin).await {
            Err(e)
                if matches!(
                    e.reason,
                    ErrorReason::PinIncorrect | ErrorReason::PinLenRange
                ) && attempt < MAX_PIN_PROMPTS =>
            {
                error = Some(retry_text(&e));
            }
            other => return other,
        }
    }
}

/// Consent, the PIN (from the page, the reader's keypad or the agent's own window), and the
/// signatures, one per digest, encoded as the job asks.
async fn sign_all(
    state: Arc<Agent>,
    caller: Caller,
    mut job: Job,
    digests: Vec<Zeroizing<Vec<u8>>>,
) -> Result<Vec<String>> {
    let digests = Arc::new(digests);
    let id = key_id(&job.cert_id)?;
    let module = state.module(job.module.as_deref())?;
    let pre_approved = state.consent.pre_approved(&caller)?;
    let source = pin_source(&state, &module, &mut job).await?;

    // The certificate, read only when needed (a trusted page's signature skips this round
    // trip): for what the person is shown (consent, the agent's PIN window, the PIN-pad
    // notice) and for how an EC signature is encoded.
    let certificate = || async {
        let (m, cert_id, slot) = (module.clone(), id.clone(), job.slot_id);
        let quick = state.quick(|b| b.certificate_quick(&module, slot, &id));
        state
            .call(quick, move |b| b.certificate(&m, slot, &cert_id))
            .await
    };
    let shown = || async {
        let cert = certificate().await?;
        Ok::<_, AgentError>(consent_request(&caller, &cert.der, job.algorithm, &digests))
    };

    let signatures = match source {
        PinSource::Page(pin) => {
            if !pre_approved {
                // On refusal `pin` and the digests are dropped here, and zeroized.
                state.consent.authorize(&caller, &shown().await?).await?;
            }
            sign(&state, &module, &job, &id, &digests, Some(pin)).await?
        }
        PinSource::PinPad => {
            let request = shown().await?;
            state.consent.authorize(&caller, &request).await?;
            let _notice = state.consent.pin_pad_notice(&request).await;
            tracing::info!(origin = caller.label(), "waiting for the PIN on the reader");
            sign(&state, &module, &job, &id, &digests, None).await?
        }
        PinSource::Prompt => {
            // Typing the PIN in the prompt that names the site is the consent.
            let request = shown().await?;
            let ask = |error: Option<String>| {
                let (state, caller, request) = (&state, &caller, &request);
                async move {
                    state
                        .consent
                        .ask_pin(caller, request, error.as_deref())
                        .await
                }
            };
            let sign_with = |pin| sign(&state, &module, &job, &id, &digests, Some(pin));
            with_prompted_pin(ask, sign_with).await?
        }
    };
    let ec = job.format == SignatureFormat::Der
        && matches!(
            x509::certificate_key_kind(&certificate().await?.der),
            Ok(x509::KeyKind::P256 | x509::KeyKind::P384 | x509::KeyKind::P521)
        );
    tracing::info!(
        origin = caller.label(),
        count = signatures.len(),
        "signature made"
    );
    signatures
        .into_iter()
        .map(|sig| {
            let sig = match (ec, job.format) {
                (true, SignatureFormat::Der) => x509::ecdsa_raw_to_der(&sig)?,
                _ => sig,
            };
            Ok(base64::engine::general_purpose::STANDARD.encode(sig))
        })
        .collect()
}

pub(super) fn register_all(m: &mut RpcModule<Agent>) {
    register::<SignData, _, _>(m, |p, state, caller| async move {
        let digest = digest("data", &p.data, p.algorithm_reference)?;
        let job = job!(p);
        let mut sigs = sign_all(state, caller, job, vec![digest]).await?;
        sigs.pop()
            .ok_or_else(|| AgentError::new(ErrorReason::Internal))
    });

    register::<SignDataBatch, _, _>(m, |p, state, caller| async move {
        if p.data.is_empty() || p.data.len() > MAX_BATCH_DIGESTS {
            return Err(AgentError::invalid_params(format!(
                "Invalid params: `data` must hold 1 to {MAX_BATCH_DIGESTS} digests, not {}.",
                p.data.len()
            )));
        }
        // Every digest is checked before anything is signed.
        let digests = p
            .data
            .iter()
            .enumerate()
            .map(|(i, d)| digest(&format!("data[{i}]"), d, p.algorithm_reference))
            .collect::<Result<Vec<_>>>()?;
        sign_all(state, caller, job!(p), digests).await
    });

    register::<VerifySignedData, _, _>(m, |p, state, _| async move {
        let digest = digest("data", &p.data, p.algorithm_reference)?;
        let signature = b64("signature", &p.signature)?;
        let id = key_id(&p.cert_id)?;
        let module = state.module(p.module.as_deref())?;
        let (scheme, format) = (
            p.signature_scheme.unwrap_or_default(),
            p.signature_format.unwrap_or_default(),
        );
        state
            .blocking(move |b| {
                let cert = b.certificate(&module, p.slot_id, &id)?;
                x509::verify_with(
                    &cert.der,
                    p.algorithm_reference,
                    scheme,
                    format,
                    &digest,
                    &signature,
                )
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

    mod without_a_pin {
        use super::super::MAX_PIN_PROMPTS;
        use super::*;
        use crate::consent::{ConsentRequest, ConsentUi, Decision, PinAnswer, PinUi};
        use crate::state::Agent;
        use keyport_protocol::Pin;
        use std::sync::Mutex;
        use std::time::Duration;

        /// Says yes to every consent prompt, and counts them.
        #[derive(Default)]
        struct Yes(Mutex<usize>);

        #[async_trait::async_trait]
        impl ConsentUi for Yes {
            async fn ask(
                &self,
                _: &ConsentRequest,
                _: Duration,
            ) -> Result<Option<Decision>, String> {
                *self.0.lock().unwrap() += 1;
                Ok(Some(Decision::Allow))
            }
        }

        /// Answers PIN prompts from a script, and records what each prompt showed.
        struct Typist {
            answers: Mutex<Vec<&'static str>>,
            shown: Mutex<Vec<(String, Option<String>)>>,
        }

        impl Typist {
            fn new(answers: &[&'static str]) -> Arc<Typist> {
                let mut answers = answers.to_vec();
                answers.reverse();
                Arc::new(Typist {
                    answers: Mutex::new(answers),
                    shown: Mutex::new(Vec::new()),
                })
            }
        }

        #[async_trait::async_trait]
        impl PinUi for Typist {
            async fn ask_pin(
                &self,
                r: &ConsentRequest,
                error: Option<&str>,
                _: Duration,
            ) -> Result<PinAnswer, String> {
                self.shown
                    .lock()
                    .unwrap()
                    .push((r.caller.label().to_string(), error.map(str::to_string)));
                Ok(match self.answers.lock().unwrap().pop() {
                    Some("cancel") => PinAnswer::Cancelled,
                    Some("timeout") | None => PinAnswer::TimedOut,
                    Some(pin) => PinAnswer::Pin(Pin::new(pin)),
                })
            }
        }

        fn agent(
            backend: Arc<FakeBackend>,
            consent: Arc<Yes>,
            pin: Option<Arc<Typist>>,
        ) -> Arc<Agent> {
            let config = crate::config::Config {
                modules: vec!["/usr/lib/softhsm/libsofthsm2.so".to_string()],
                consent_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(5),
                ..Default::default()
            };
            let pin = pin.map(|p| p as Arc<dyn PinUi>);
            Agent::with_prompts(&config, backend, Some(consent), pin)
        }

        fn no_pin() -> Value {
            let mut p = sign_params(json!({}));
            p.as_object_mut().unwrap().remove("pin");
            p
        }

        #[tokio::test]
        async fn without_a_pin_pad_or_a_pin_prompt_it_is_pin_entry_unavailable() {
            let backend = Arc::new(FakeBackend::default());
            let m = rpc_module(agent(backend.clone(), Arc::default(), None));
            let err = call(&m, "pkcs11.signData", no_pin()).await.unwrap_err();
            assert_eq!(err["data"]["reason"], "PIN_ENTRY_UNAVAILABLE", "{err}");
            assert_eq!(err["code"], 1305);
            assert_eq!(backend.sign_calls(), 0);
        }

        #[tokio::test]
        async fn a_pin_pad_signs_after_consent_and_its_cancel_is_typed() {
            let backend = Arc::new(FakeBackend {
                pin_pad: Some(Some("1234".into())),
                ..Default::default()
            });
            let yes = Arc::new(Yes::default());
            let m = rpc_module(agent(backend.clone(), yes.clone(), None));
            let token = call(&m, "pkcs11.token", json!({"slot_id": 1}))
                .await
                .unwrap();
            assert_eq!(token["protected_authentication_path"], true);
            let sig = call(&m, "pkcs11.signData", no_pin()).await.unwrap();
            assert!(sig.as_str().unwrap().starts_with("RkFLRS1TSUc6"), "{sig}");
            assert_eq!(*yes.0.lock().unwrap(), 1, "consent was asked first");

            let cancelled = Arc::new(FakeBackend {
                pin_pad: Some(None),
                ..Default::default()
            });
            let m = rpc_module(agent(cancelled, Arc::default(), None));
            let err = call(&m, "pkcs11.signData", no_pin()).await.unwrap_err();
            assert_eq!(err["data"]["reason"], "PIN_ENTRY_CANCELLED", "{err}");
            assert_eq!(err["code"], 1304);
        }

        #[tokio::test]
        async fn the_agents_prompt_reopens_after_a_wrong_pin_and_cancel_denies() {
            let backend = Arc::new(FakeBackend::default());
            let yes = Arc::new(Yes::default());
            let typist = Typist::new(&["9999", "1234"]);
            let m = rpc_module(agent(backend.clone(), yes.clone(), Some(typist.clone())));
            let sig = call(&m, "pkcs11.signData", no_pin()).await.unwrap();
            assert!(sig.as_str().unwrap().starts_with("RkFLRS1TSUc6"), "{sig}");
            let shown = typist.shown.lock().unwrap().clone();
            assert_eq!(shown.len(), 2, "{shown:?}");
            assert_eq!(shown[0].1, None);
            assert_eq!(
                shown[1].1.as_deref(),
                Some("Wrong PIN. Few tries are left."),
                "the second prompt says why"
            );
            assert_eq!(
                *yes.0.lock().unwrap(),
                0,
                "the PIN prompt is the consent: no second prompt"
            );
            assert_eq!(backend.sign_calls(), 2);

            let typist = Typist::new(&["cancel"]);
            let m = rpc_module(agent(backend.clone(), yes.clone(), Some(typist)));
            let err = call(&m, "pkcs11.signData", no_pin()).await.unwrap_err();
            assert_eq!(err["data"]["reason"], "CONSENT_DENIED", "{err}");
            assert_eq!(backend.sign_calls(), 2, "nothing reached the token");

            let typist = Typist::new(&["timeout"]);
            let m = rpc_module(agent(backend.clone(), yes, Some(typist)));
            let err = call(&m, "pkcs11.signData", no_pin()).await.unwrap_err();
            assert_eq!(err["data"]["reason"], "CONSENT_TIMEOUT", "{err}");
        }

        #[tokio::test]
        async fn wrong_pins_reopen_the_prompt_a_bounded_number_of_times() {
            let backend = Arc::new(FakeBackend::default());
            let typist = Typist::new(&["9999"; 20]);
            let m = rpc_module(agent(backend.clone(), Arc::default(), Some(typist.clone())));
            let err = call(&m, "pkcs11.signData", no_pin()).await.unwrap_err();
            assert_eq!(err["data"]["reason"], "PIN_INCORRECT", "{err}");
            assert_eq!(typist.shown.lock().unwrap().len(), MAX_PIN_PROMPTS);
            assert_eq!(backend.sign_calls(), MAX_PIN_PROMPTS);
        }

        #[tokio::test]
        async fn a_page_that_sends_the_pin_is_never_prompted_for_it() {
            let backend = Arc::new(FakeBackend::default());
            let yes = Arc::new(Yes::default());
            let typist = Typist::new(&[]);
            let m = rpc_module(agent(backend, yes.clone(), Some(typist.clone())));
            call(&m, "pkcs11.signData", sign_params(json!({})))
                .await
                .unwrap();
            assert!(typist.shown.lock().unwrap().is_empty());
            assert_eq!(*yes.0.lock().unwrap(), 1);
        }
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
