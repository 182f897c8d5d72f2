//! `pkcs11.certificates`, with its filter (docs/PROTOCOL.md, "Certificate filters").

use super::register;
use crate::backend::CertificateObject;
use crate::error::{AgentError, Result};
use crate::state::Agent;
use crate::x509;
use base64::Engine;
use jsonrpsee::RpcModule;
use keyport_protocol::{CertificateEntry, CertificateFilter, Certificates, KeyUsage};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub(super) fn register_all(m: &mut RpcModule<Agent>) {
    register::<Certificates, _, _>(m, |p, state, _| async move {
        let filter = Filter::new(p.filter.unwrap_or_default())?;
        let module = state.module(p.module.as_deref())?;
        let with_parsed = p.parse_certs.unwrap_or(false);
        state
            .blocking(move |b| {
                let certs = b.certificates(&module, p.slot_id)?;
                // The key objects only when the filter asks: finding them costs token calls.
                let key_ids = match filter.has_private_key {
                    Some(_) => b.key_ids(&module, p.slot_id)?,
                    None => Vec::new(),
                };
                Ok(certs
                    .into_iter()
                    .filter(|c| filter.passes(c, &key_ids))
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

/// A [`CertificateFilter`] with its time read: every condition given must hold.
#[derive(Debug, Default)]
struct Filter {
    key_usage: Option<KeyUsage>,
    valid_at: Option<OffsetDateTime>,
    has_private_key: Option<bool>,
}

impl Filter {
    /// INVALID_PARAMS when `valid_at` is not an RFC 3339 time; the message names the field and
    /// never repeats what was sent (as for every other params error).
    fn new(f: CertificateFilter) -> Result<Self> {
        let valid_at = match f.valid_at {
            None => None,
            Some(t) => Some(OffsetDateTime::parse(&t, &Rfc3339).map_err(|_| {
                AgentError::invalid_params(
                    "Invalid params: `filter.valid_at` is not an RFC 3339 time \
                     (e.g. 2026-11-27T12:00:00Z).",
                )
            })?),
        };
        Ok(Filter {
            key_usage: f.key_usage,
            valid_at,
            has_private_key: f.has_private_key,
        })
    }

    /// Whether `cert` passes. `key_ids` are the CKA_IDs of the keys the token shows
    /// ([`crate::backend::Backend::key_ids`], read only when `has_private_key` is given). A
    /// certificate that does not parse passes no condition on its contents (`key_usage`,
    /// `valid_at`).
    fn passes(&self, cert: &CertificateObject, key_ids: &[Vec<u8>]) -> bool {
        if let Some(wanted) = self.has_private_key {
            if key_ids.contains(&cert.id) != wanted {
                return false;
            }
        }
        if self.key_usage.is_none() && self.valid_at.is_none() {
            return true;
        }
        let Ok(facts) = x509::filter_facts(&cert.der) else {
            return false;
        };
        if let Some(usage) = self.key_usage {
            if !facts.has_key_usage(usage) {
                return false;
            }
        }
        match self.valid_at {
            Some(t) => facts.valid_at(t),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::rpc_module;
    use super::super::tests::{call, state};
    use crate::backend::fake::FakeBackend;
    use crate::backend::CertificateObject;
    use crate::x509::tests::certificate;
    use keyport_protocol::KeyUsage::*;
    use serde_json::{json, Value};
    use std::sync::Arc;

    const FROM: &str = "2020-01-01T00:00:00Z";
    const TO: &str = "2040-01-01T00:00:00Z";

    /// The fake token: its key is the first certificate's id (01).
    fn backend() -> FakeBackend {
        let cert = |id: u8, der: Vec<u8>| CertificateObject { id: vec![id], der };
        FakeBackend {
            certificates: vec![
                cert(0x01, certificate("nr", Some(&[NonRepudiation]), FROM, TO)),
                cert(0x02, certificate("ds", Some(&[DigitalSignature]), FROM, TO)),
                cert(
                    0x03,
                    certificate("both", Some(&[DigitalSignature, NonRepudiation]), FROM, TO),
                ),
                cert(0x04, certificate("none", None, FROM, TO)),
                cert(
                    0x05,
                    certificate(
                        "expired",
                        Some(&[DigitalSignature]),
                        "2010-01-01T00:00:00Z",
                        FROM,
                    ),
                ),
                cert(
                    0x06,
                    certificate(
                        "future",
                        Some(&[DigitalSignature]),
                        "2030-01-01T00:00:00Z",
                        TO,
                    ),
                ),
                cert(0x07, b"not a certificate".to_vec()),
            ],
            ..Default::default()
        }
    }

    /// The ids `pkcs11.certificates` lists with this filter (None: no `filter` at all).
    async fn ids(filter: Option<Value>) -> Vec<String> {
        let m = rpc_module(state(Arc::new(backend())));
        let mut params = json!({"slot_id": 1});
        if let Some(f) = filter {
            params["filter"] = f;
        }
        let list = call(&m, "pkcs11.certificates", params).await.unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    }

    #[tokio::test]
    async fn no_filter_or_an_empty_one_lists_everything() {
        let all = ["01", "02", "03", "04", "05", "06", "07"];
        assert_eq!(ids(None).await, all);
        assert_eq!(ids(Some(json!({}))).await, all);
        assert_eq!(ids(Some(json!(null))).await, all);
        let m = rpc_module(state(Arc::new(backend())));
        let with_nulls = json!({"slot_id": 1, "filter": {"key_usage": null, "valid_at": null, "has_private_key": null}});
        let list = call(&m, "pkcs11.certificates", with_nulls).await.unwrap();
        assert_eq!(list.as_array().unwrap().len(), all.len());
    }

    #[tokio::test]
    async fn key_usage_needs_the_bit_and_the_extension() {
        assert_eq!(
            ids(Some(json!({"key_usage": "nonRepudiation"}))).await,
            ["01", "03"]
        );
        assert_eq!(
            ids(Some(json!({"key_usage": "digitalSignature"}))).await,
            ["02", "03", "05", "06"]
        );
        // No certificate has it; the one without the extension (04) and the unparsable one (07)
        // pass no key usage.
        assert!(ids(Some(json!({"key_usage": "keyCertSign"})))
            .await
            .is_empty());
        assert!(ids(Some(json!({"key_usage": "cRLSign"}))).await.is_empty());
    }

    #[tokio::test]
    async fn valid_at_is_inclusive_and_reads_offsets() {
        let at = |t: &str| Some(json!({"valid_at": t}));
        assert_eq!(
            ids(at("2025-06-01T00:00:00Z")).await,
            ["01", "02", "03", "04"]
        );
        assert_eq!(ids(at("2015-06-01T00:00:00Z")).await, ["05"]);
        assert_eq!(
            ids(at("2035-06-01T00:00:00Z")).await,
            ["01", "02", "03", "04", "06"]
        );
        assert!(ids(at("2045-01-01T00:00:00Z")).await.is_empty());
        // notAfter of 05 and notBefore of the others: both ends count, at the same instant
        // however it is written.
        let edge = ["01", "02", "03", "04", "05"];
        assert_eq!(ids(at(FROM)).await, edge);
        assert_eq!(ids(at("2020-01-01T02:00:00+02:00")).await, edge);
        assert_eq!(ids(at("2019-12-31T19:00:00-05:00")).await, edge);
        assert_eq!(
            ids(at("2020-01-01T00:00:00.5Z")).await,
            ["01", "02", "03", "04"]
        );
        assert_eq!(ids(at("2019-12-31T23:59:59Z")).await, ["05"]);
        // RFC 3339 (5.6, NOTE) lets a space stand for the `T`; the time crate takes it.
        assert_eq!(ids(at("2015-06-01 00:00:00z")).await, ["05"]);
    }

    #[tokio::test]
    async fn has_private_key_compares_the_ids_of_the_keys() {
        assert_eq!(ids(Some(json!({"has_private_key": true}))).await, ["01"]);
        assert_eq!(
            ids(Some(json!({"has_private_key": false}))).await,
            ["02", "03", "04", "05", "06", "07"]
        );
    }

    #[tokio::test]
    async fn conditions_combine_with_and() {
        assert_eq!(
            ids(Some(
                json!({"key_usage": "digitalSignature", "valid_at": "2025-06-01T00:00:00Z"})
            ))
            .await,
            ["02", "03"]
        );
        assert_eq!(
            ids(Some(
                json!({"key_usage": "nonRepudiation", "has_private_key": true})
            ))
            .await,
            ["01"]
        );
        assert!(ids(Some(
            json!({"key_usage": "digitalSignature", "has_private_key": true})
        ))
        .await
        .is_empty());
        assert_eq!(
            ids(Some(json!({
                "key_usage": "digitalSignature",
                "valid_at": "2035-06-01T00:00:00Z",
                "has_private_key": false,
            })))
            .await,
            ["02", "03", "06"]
        );
        // The unparsable certificate passes has_private_key alone, not with a condition on
        // its contents.
        assert!(ids(Some(json!({"has_private_key": false})))
            .await
            .contains(&"07".to_string()));
        assert!(!ids(Some(
            json!({"has_private_key": false, "valid_at": "2025-06-01T00:00:00Z"})
        ))
        .await
        .contains(&"07".to_string()));
    }

    #[tokio::test]
    async fn parse_certs_still_works_with_a_filter() {
        let m = rpc_module(state(Arc::new(backend())));
        let list = call(
            &m,
            "pkcs11.certificates",
            json!({"slot_id": 1, "parse_certs": true, "filter": {"key_usage": "nonRepudiation"}}),
        )
        .await
        .unwrap();
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["parsed"]["common_name"], "nr");
        assert_eq!(list[1]["parsed"]["common_name"], "both");
        assert_eq!(
            list[1]["parsed"]["key_usage"],
            json!(["digitalSignature", "nonRepudiation"])
        );
        // Without a condition on contents the unparsable one is listed, without `parsed`.
        let list = call(
            &m,
            "pkcs11.certificates",
            json!({"slot_id": 1, "parse_certs": true, "filter": {"has_private_key": false}}),
        )
        .await
        .unwrap();
        let last = list.as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["id"], "07");
        assert!(last.get("parsed").is_none(), "{last}");
    }

    #[tokio::test]
    async fn a_bad_time_or_usage_is_invalid_params_and_not_echoed() {
        let m = rpc_module(state(Arc::new(backend())));
        for bad in [
            "secret-7301",
            "",
            "2025-06-01",
            "2025-06-01T00:00:00",
            "2025-13-01T00:00:00Z",
            "1748736000",
        ] {
            let err = call(
                &m,
                "pkcs11.certificates",
                json!({"slot_id": 1, "filter": {"valid_at": bad}}),
            )
            .await
            .unwrap_err();
            assert_eq!(err["code"], -32602, "{bad}: {err}");
            assert_eq!(err["data"]["reason"], "INVALID_PARAMS", "{bad}: {err}");
            let msg = err["message"].as_str().unwrap();
            assert!(msg.contains("`filter.valid_at`"), "{msg}");
            if !bad.is_empty() {
                assert!(!err.to_string().contains(bad), "{bad} echoed: {err}");
            }
        }
        // Not a string at all: serde's error, which names the field too.
        let err = call(
            &m,
            "pkcs11.certificates",
            json!({"slot_id": 1, "filter": {"valid_at": 1748736000}}),
        )
        .await
        .unwrap_err();
        assert_eq!(err["data"]["reason"], "INVALID_PARAMS");
        assert!(
            err["message"].as_str().unwrap().contains("filter.valid_at"),
            "{err}"
        );
        // An unknown usage, a misspelt one and a misspelt condition.
        for filter in [
            json!({"key_usage": "secret-signing"}),
            json!({"key_usage": "digital_signature"}),
            json!({"key_usage": "DigitalSignature"}),
            json!({"has_private_key": "yes"}),
        ] {
            let err = call(
                &m,
                "pkcs11.certificates",
                json!({"slot_id": 1, "filter": filter}),
            )
            .await
            .unwrap_err();
            assert_eq!(err["data"]["reason"], "INVALID_PARAMS", "{filter}: {err}");
            let msg = err["message"].as_str().unwrap();
            assert!(msg.contains("`filter."), "{msg}");
            assert!(!msg.contains("secret") && !msg.contains("yes"), "{msg}");
        }
        // A condition we do not know: the known ones are listed, the name sent is not.
        let err = call(
            &m,
            "pkcs11.certificates",
            json!({"slot_id": 1, "filter": {"secret-usage": "x"}}),
        )
        .await
        .unwrap_err();
        assert_eq!(err["data"]["reason"], "INVALID_PARAMS", "{err}");
        let msg = err["message"].as_str().unwrap();
        assert!(
            msg.contains("`key_usage`") && !msg.contains("secret"),
            "{msg}"
        );
    }

    /// The token's errors come through, with or without the key objects; a bad time is refused
    /// before the token is asked anything.
    #[tokio::test]
    async fn errors_of_the_token_come_through() {
        let m = rpc_module(state(Arc::new(backend())));
        for filter in [json!({}), json!({"has_private_key": true})] {
            let err = call(
                &m,
                "pkcs11.certificates",
                json!({"slot_id": 2, "filter": filter}),
            )
            .await
            .unwrap_err();
            assert_eq!(err["data"]["reason"], "TOKEN_NOT_PRESENT", "{err}");
        }
        let err = call(
            &m,
            "pkcs11.certificates",
            json!({"slot_id": 2, "filter": {"valid_at": "never"}}),
        )
        .await
        .unwrap_err();
        assert_eq!(err["data"]["reason"], "INVALID_PARAMS", "{err}");
    }
}
