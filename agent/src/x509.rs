//! Certificates: parsing for `parse_certs` and for certificate filters, the DigestInfo that RSA
//! keys sign, and verification of a signature with the certificate's public key (so that a token
//! holding only a certificate and a private key can still verify).

use crate::error::{AgentError, Result};
use keyport_protocol::{
    AlgorithmReference, ErrorReason, KeyUsage, ParsedCertificate, SignatureFormat, SignatureScheme,
};
use rsa::pkcs8::DecodePublicKey;
use rsa::Pkcs1v15Sign;
use sha2::Digest;
use x509_parser::prelude::*;

const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";

/// The kind of key a certificate carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa { bits: u32 },
    P256,
    P384,
    P521,
}

impl KeyKind {
    /// The signature scheme this key makes: "RSA" (PKCS #1 v1.5) or "ECDSA".
    pub fn scheme(&self) -> &'static str {
        match self {
            KeyKind::Rsa { .. } => "RSA",
            KeyKind::P256 | KeyKind::P384 | KeyKind::P521 => "ECDSA",
        }
    }
}

/// The kind of key a DER certificate holds.
pub fn certificate_key_kind(der: &[u8]) -> Result<KeyKind> {
    key_kind(&parse(der)?)
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>> {
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => Ok(cert),
        Err(e) => {
            tracing::warn!(error = %e, "certificate on the token does not parse");
            Err(AgentError::with_message(
                ErrorReason::UnsupportedAlgorithm,
                "The certificate on the token is not a valid X.509 certificate.",
            ))
        }
    }
}

fn key_kind(cert: &X509Certificate<'_>) -> Result<KeyKind> {
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => Ok(KeyKind::Rsa {
            bits: rsa.key_size() as u32,
        }),
        Ok(x509_parser::public_key::PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            match curve.as_deref() {
                Some(OID_P256) => Ok(KeyKind::P256),
                Some(OID_P384) => Ok(KeyKind::P384),
                Some(OID_P521) => Ok(KeyKind::P521),
                _ => Err(AgentError::with_message(
                    ErrorReason::UnsupportedAlgorithm,
                    "The certificate's EC curve is not supported (P-256, P-384 and P-521 are).",
                )),
            }
        }
        _ => Err(AgentError::with_message(
            ErrorReason::UnsupportedAlgorithm,
            "The certificate's key type is not supported (RSA and EC are).",
        )),
    }
}

fn upper_hex(bytes: &[u8]) -> String {
    hex::encode_upper(bytes)
}

fn rfc3339(t: &ASN1Time) -> String {
    t.to_datetime()
        .format(&::time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.timestamp().to_string())
}

/// The parsed fields `pkcs11.certificates` returns with `parse_certs: true`.
pub fn parse_certificate(der: &[u8]) -> Result<ParsedCertificate> {
    let cert = parse(der)?;
    let kind = key_kind(&cert).ok();
    let (algorithm, size, curve) = match kind {
        Some(KeyKind::Rsa { bits }) => ("RSA", bits, None),
        Some(KeyKind::P256) => ("EC", 256, Some("P-256")),
        Some(KeyKind::P384) => ("EC", 384, Some("P-384")),
        Some(KeyKind::P521) => ("EC", 521, Some("P-521")),
        None => ("unknown", 0, None),
    };
    let key_usage = key_usages(&cert)
        .unwrap_or_default()
        .into_iter()
        .map(|u| usage_name(u).to_string())
        .collect();
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    Ok(ParsedCertificate {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        common_name,
        serial_number: upper_hex(cert.raw_serial()),
        not_before: rfc3339(&cert.validity().not_before),
        not_after: rfc3339(&cert.validity().not_after),
        public_key_algorithm: algorithm.to_string(),
        public_key_size: size,
        curve: curve.map(str::to_string),
        key_usage,
        sha256_fingerprint: upper_hex(&sha2::Sha256::digest(der)),
    })
}

/// Every bit of the key usage extension, in RFC 5280 order (bit 0 first).
const KEY_USAGES: [KeyUsage; 9] = [
    KeyUsage::DigitalSignature,
    KeyUsage::NonRepudiation,
    KeyUsage::KeyEncipherment,
    KeyUsage::DataEncipherment,
    KeyUsage::KeyAgreement,
    KeyUsage::KeyCertSign,
    KeyUsage::CRLSign,
    KeyUsage::EncipherOnly,
    KeyUsage::DecipherOnly,
];

/// The name of a key usage bit, as the protocol spells it (`parsed.key_usage`, `filter.key_usage`).
fn usage_name(usage: KeyUsage) -> &'static str {
    match usage {
        KeyUsage::DigitalSignature => "digitalSignature",
        KeyUsage::NonRepudiation => "nonRepudiation",
        KeyUsage::KeyEncipherment => "keyEncipherment",
        KeyUsage::DataEncipherment => "dataEncipherment",
        KeyUsage::KeyAgreement => "keyAgreement",
        KeyUsage::KeyCertSign => "keyCertSign",
        KeyUsage::CRLSign => "cRLSign",
        KeyUsage::EncipherOnly => "encipherOnly",
        KeyUsage::DecipherOnly => "decipherOnly",
    }
}

/// The bits of the certificate's key usage extension, or None when it has none (or one that
/// does not parse, or two: it names no usage we can trust).
fn key_usages(cert: &X509Certificate<'_>) -> Option<Vec<KeyUsage>> {
    let ku = cert.key_usage().ok()??.value;
    let on = |usage: KeyUsage| match usage {
        KeyUsage::DigitalSignature => ku.digital_signature(),
        KeyUsage::NonRepudiation => ku.non_repudiation(),
        KeyUsage::KeyEncipherment => ku.key_encipherment(),
        KeyUsage::DataEncipherment => ku.data_encipherment(),
        KeyUsage::KeyAgreement => ku.key_agreement(),
        KeyUsage::KeyCertSign => ku.key_cert_sign(),
        KeyUsage::CRLSign => ku.crl_sign(),
        KeyUsage::EncipherOnly => ku.encipher_only(),
        KeyUsage::DecipherOnly => ku.decipher_only(),
    };
    Some(KEY_USAGES.into_iter().filter(|u| on(*u)).collect())
}

/// What a certificate filter (`pkcs11.certificates` with `filter`) looks at in a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterFacts {
    /// The key usage bits; None without the extension.
    pub key_usage: Option<Vec<KeyUsage>>,
    pub not_before: ::time::OffsetDateTime,
    pub not_after: ::time::OffsetDateTime,
}

impl FilterFacts {
    /// The key usage extension has this bit (a certificate without the extension has none).
    pub fn has_key_usage(&self, usage: KeyUsage) -> bool {
        self.key_usage.as_ref().is_some_and(|u| u.contains(&usage))
    }

    /// notBefore <= `t` <= notAfter (RFC 5280, 4.1.2.5: both ends are inclusive).
    pub fn valid_at(&self, t: ::time::OffsetDateTime) -> bool {
        self.not_before <= t && t <= self.not_after
    }
}

/// The [`FilterFacts`] of a DER certificate (an error when it does not parse: such a
/// certificate passes no condition on its contents).
pub fn filter_facts(der: &[u8]) -> Result<FilterFacts> {
    let cert = parse(der)?;
    Ok(FilterFacts {
        key_usage: key_usages(&cert),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
    })
}

fn pkcs1v15(alg: AlgorithmReference) -> Pkcs1v15Sign {
    match alg {
        AlgorithmReference::Sha1 => Pkcs1v15Sign::new::<sha1::Sha1>(),
        AlgorithmReference::Sha256 => Pkcs1v15Sign::new::<sha2::Sha256>(),
        AlgorithmReference::Sha384 => Pkcs1v15Sign::new::<sha2::Sha384>(),
        AlgorithmReference::Sha512 => Pkcs1v15Sign::new::<sha2::Sha512>(),
    }
}

/// The DER DigestInfo (algorithm prefix and digest) that CKM_RSA_PKCS signs.
pub fn digest_info(alg: AlgorithmReference, digest: &[u8]) -> Vec<u8> {
    let scheme = pkcs1v15(alg);
    let mut out = Vec::with_capacity(scheme.prefix.len() + digest.len());
    out.extend_from_slice(&scheme.prefix);
    out.extend_from_slice(digest);
    out
}

/// ECDSA verification of raw r||s over a prehashed digest, for one curve crate.
macro_rules! ec_verify {
    ($curve:ident, $field_bytes:expr, $point:expr, $digest:expr, $sig:expr) => {{
        use $curve::ecdsa::signature::hazmat::PrehashVerifier;
        // ECDSA reads a digest shorter than the curve as an integer; RustCrypto wants at least
        // half the field size, so left-pad with zeros (the same integer) as the token does.
        let digest: &[u8] = $digest;
        let padded;
        let digest = if digest.len() < $field_bytes {
            padded = [vec![0u8; $field_bytes - digest.len()], digest.to_vec()].concat();
            &padded[..]
        } else {
            digest
        };
        let key = $curve::ecdsa::VerifyingKey::from_sec1_bytes($point)
            .map_err(|_| AgentError::new(ErrorReason::UnsupportedAlgorithm))?;
        match $curve::ecdsa::Signature::from_slice($sig) {
            Ok(sig) => Ok(key.verify_prehash(digest, &sig).is_ok()),
            Err(_) => Ok(false),
        }
    }};
}

/// Verify `sig` over `digest` with the public key of the certificate `der`.
///
/// RSA: PKCS #1 v1.5 with the DigestInfo of `alg`. EC: raw r||s over the digest (ECDSA truncates a
/// longer digest to the curve's size, as the token does).
pub fn verify(der: &[u8], alg: AlgorithmReference, digest: &[u8], sig: &[u8]) -> Result<bool> {
    verify_with(
        der,
        alg,
        SignatureScheme::Pkcs1,
        SignatureFormat::Raw,
        digest,
        sig,
    )
}

/// [`verify`] for a signature made as `scheme` (RSA: PKCS #1 v1.5 or PSS with MGF1 of the same
/// hash and a salt as long as the hash) and encoded as `format` (ECDSA: raw r||s or DER).
pub fn verify_with(
    der: &[u8],
    alg: AlgorithmReference,
    scheme: SignatureScheme,
    format: SignatureFormat,
    digest: &[u8],
    sig: &[u8],
) -> Result<bool> {
    let cert = parse(der)?;
    let spki = cert.public_key().raw;
    let point = &cert.public_key().subject_public_key.data;
    let kind = key_kind(&cert)?;
    let field = match kind {
        KeyKind::Rsa { .. } => 0,
        KeyKind::P256 => 32,
        KeyKind::P384 => 48,
        KeyKind::P521 => 66,
    };
    if field > 0 && scheme == SignatureScheme::Pss {
        return Err(AgentError::with_message(
            ErrorReason::UnsupportedAlgorithm,
            "RSA-PSS needs an RSA key; this certificate's key is EC.",
        ));
    }
    let raw;
    let sig = match (field, format) {
        (0, _) | (_, SignatureFormat::Raw) => sig,
        (field, SignatureFormat::Der) => match ecdsa_der_to_raw(sig, field) {
            Some(r) => {
                raw = r;
                &raw[..]
            }
            None => return Ok(false),
        },
    };
    match kind {
        KeyKind::Rsa { .. } => {
            let key = rsa::RsaPublicKey::from_public_key_der(spki)
                .map_err(|_| AgentError::new(ErrorReason::UnsupportedAlgorithm))?;
            Ok(match scheme {
                SignatureScheme::Pkcs1 => key.verify(pkcs1v15(alg), digest, sig).is_ok(),
                SignatureScheme::Pss => key.verify(pss(alg), digest, sig).is_ok(),
            })
        }
        KeyKind::P256 => ec_verify!(p256, 32, point, digest, sig),
        KeyKind::P384 => ec_verify!(p384, 48, point, digest, sig),
        KeyKind::P521 => ec_verify!(p521, 66, point, digest, sig),
    }
}

fn pss(alg: AlgorithmReference) -> rsa::Pss {
    let salt = alg.digest_len();
    match alg {
        AlgorithmReference::Sha1 => rsa::Pss::new_with_salt::<sha1::Sha1>(salt),
        AlgorithmReference::Sha256 => rsa::Pss::new_with_salt::<sha2::Sha256>(salt),
        AlgorithmReference::Sha384 => rsa::Pss::new_with_salt::<sha2::Sha384>(salt),
        AlgorithmReference::Sha512 => rsa::Pss::new_with_salt::<sha2::Sha512>(salt),
    }
}

/// An ECDSA signature's raw r||s (halves of equal length) as DER `SEQUENCE { r, s }`.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>> {
    macro_rules! der {
        ($curve:ident) => {
            $curve::ecdsa::Signature::from_slice(raw).map(|s| s.to_der().as_bytes().to_vec())
        };
    }
    let der = match raw.len() {
        64 => der!(p256),
        96 => der!(p384),
        132 => der!(p521),
        _ => Err(p256::ecdsa::Error::new()),
    };
    der.map_err(|_| {
        AgentError::with_message(
            ErrorReason::DeviceError,
            "The token returned an ECDSA signature that is not one for P-256, P-384 or P-521.",
        )
    })
}

/// A DER `SEQUENCE { r, s }` as raw r||s of `field` bytes each (None if it is not one).
pub fn ecdsa_der_to_raw(der: &[u8], field: usize) -> Option<Vec<u8>> {
    macro_rules! raw {
        ($curve:ident) => {
            $curve::ecdsa::Signature::from_der(der)
                .ok()
                .map(|s| s.to_bytes().to_vec())
        };
    }
    match field {
        32 => raw!(p256),
        48 => raw!(p384),
        66 => raw!(p521),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::Rng;

    /// A DER TLV (short or long form length).
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match body.len() {
            n @ 0..=0x7f => out.push(n as u8),
            n @ 0x80..=0xff => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(body);
        out
    }

    fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }

    /// UTCTime before 2050, GeneralizedTime from then on (RFC 5280, 4.1.2.5).
    fn der_time(rfc3339: &str) -> Vec<u8> {
        let t = ::time::OffsetDateTime::parse(
            rfc3339,
            &::time::format_description::well_known::Rfc3339,
        )
        .unwrap()
        .to_offset(::time::UtcOffset::UTC);
        let (y, rest) = (
            t.year(),
            format!(
                "{:02}{:02}{:02}{:02}{:02}Z",
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
        );
        if (1950..2050).contains(&y) {
            tlv(0x17, format!("{:02}{rest}", y % 100).as_bytes())
        } else {
            tlv(0x18, format!("{y:04}{rest}").as_bytes())
        }
    }

    /// The key usage extension's value: a DER BIT STRING, bit 0 (digitalSignature) first.
    fn key_usage_bits(usages: &[KeyUsage]) -> Vec<u8> {
        let mut bits = 0u16;
        for u in usages {
            let i = KEY_USAGES.iter().position(|k| k == u).unwrap();
            bits |= 0x8000 >> i;
        }
        let bytes = bits.to_be_bytes();
        let len = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        let unused = bytes[..len].last().map_or(0, |b| b.trailing_zeros() as u8);
        tlv(0x03, &[&[unused], &bytes[..len]].concat())
    }

    /// A self-signed P-256 certificate (a real ECDSA signature, so openssl reads it too) valid
    /// from `not_before` to `not_after` (RFC 3339), with a key usage extension holding `usages`
    /// (marked critical), or without one (None: the certificate still has extensions, a
    /// basicConstraints).
    pub(crate) fn certificate(
        cn: &str,
        usages: Option<&[KeyUsage]>,
        not_before: &str,
        not_after: &str,
    ) -> Vec<u8> {
        use p256::ecdsa::signature::Signer;
        use p256::pkcs8::EncodePublicKey;
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let spki = p256::PublicKey::from(key.verifying_key())
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec();
        // ecdsa-with-SHA256 (1.2.840.10045.4.3.2).
        let alg = seq(&[tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02])]);
        // CN=cn (2.5.4.3).
        let name = seq(&[tlv(
            0x31,
            &seq(&[tlv(0x06, &[0x55, 0x04, 0x03]), tlv(0x0c, cn.as_bytes())]),
        )]);
        let extension = match usages {
            // keyUsage (2.5.29.15), critical.
            Some(u) => seq(&[
                tlv(0x06, &[0x55, 0x1d, 0x0f]),
                tlv(0x01, &[0xff]),
                tlv(0x04, &key_usage_bits(u)),
            ]),
            // basicConstraints (2.5.29.19): cA false.
            None => seq(&[tlv(0x06, &[0x55, 0x1d, 0x13]), tlv(0x04, &seq(&[]))]),
        };
        let tbs = seq(&[
            tlv(0xa0, &tlv(0x02, &[2])),
            tlv(0x02, &[1]),
            alg.clone(),
            name.clone(),
            seq(&[der_time(not_before), der_time(not_after)]),
            name,
            spki,
            tlv(0xa3, &seq(&[extension])),
        ]);
        let sig: p256::ecdsa::Signature = key.sign(&tbs);
        let sig = [&[0u8][..], sig.to_der().as_bytes()].concat();
        seq(&[tbs, alg, tlv(0x03, &sig)])
    }

    fn at(rfc3339: &str) -> ::time::OffsetDateTime {
        ::time::OffsetDateTime::parse(rfc3339, &::time::format_description::well_known::Rfc3339)
            .unwrap()
    }

    #[test]
    fn generated_certificates_are_what_they_claim() {
        let der = certificate(
            "both",
            Some(&[KeyUsage::DigitalSignature, KeyUsage::NonRepudiation]),
            "2020-01-01T00:00:00Z",
            "2060-06-30T12:34:56Z",
        );
        let parsed = parse_certificate(&der).unwrap();
        assert_eq!(parsed.common_name.as_deref(), Some("both"));
        assert_eq!(parsed.key_usage, ["digitalSignature", "nonRepudiation"]);
        assert_eq!(parsed.not_before, "2020-01-01T00:00:00Z");
        assert_eq!(parsed.not_after, "2060-06-30T12:34:56Z");
        assert_eq!(key_kind(&parse(&der).unwrap()).unwrap(), KeyKind::P256);
        // Its signature is real: the certificate verifies a digest signed with its key.
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let digest = sha2::Sha256::digest(b"filters");
        let sig: p256::ecdsa::Signature = key.sign_prehash(&digest).unwrap();
        assert!(verify(&der, AlgorithmReference::Sha256, &digest, &sig.to_bytes()).unwrap());
    }

    /// The names in `parsed.key_usage` are the protocol's `KeyUsage` values (what a filter
    /// takes), and every bit, decipherOnly (the second byte) included, is read.
    #[test]
    fn every_key_usage_bit_is_read_and_named_as_the_protocol_spells_it() {
        for usage in KEY_USAGES {
            assert_eq!(
                serde_json::to_value(usage).unwrap(),
                usage_name(usage),
                "{usage:?}"
            );
            let der = certificate(
                "one",
                Some(&[usage]),
                "2020-01-01T00:00:00Z",
                "2040-01-01T00:00:00Z",
            );
            let facts = filter_facts(&der).unwrap();
            assert_eq!(facts.key_usage, Some(vec![usage]));
            for other in KEY_USAGES {
                assert_eq!(
                    facts.has_key_usage(other),
                    other == usage,
                    "{usage:?} {other:?}"
                );
            }
            assert_eq!(
                parse_certificate(&der).unwrap().key_usage,
                [usage_name(usage)]
            );
        }
        let all = certificate(
            "all",
            Some(&KEY_USAGES),
            "2020-01-01T00:00:00Z",
            "2040-01-01T00:00:00Z",
        );
        assert_eq!(
            filter_facts(&all).unwrap().key_usage,
            Some(KEY_USAGES.to_vec())
        );
    }

    #[test]
    fn a_certificate_without_the_extension_has_no_key_usage() {
        let none = certificate("none", None, "2020-01-01T00:00:00Z", "2040-01-01T00:00:00Z");
        let facts = filter_facts(&none).unwrap();
        assert_eq!(facts.key_usage, None);
        assert!(KEY_USAGES.iter().all(|u| !facts.has_key_usage(*u)));
        assert!(parse_certificate(&none).unwrap().key_usage.is_empty());
        // An extension with no bit set: present, but it names no usage either.
        let empty = certificate(
            "empty",
            Some(&[]),
            "2020-01-01T00:00:00Z",
            "2040-01-01T00:00:00Z",
        );
        let facts = filter_facts(&empty).unwrap();
        assert_eq!(facts.key_usage, Some(vec![]));
        assert!(KEY_USAGES.iter().all(|u| !facts.has_key_usage(*u)));
    }

    #[test]
    fn validity_includes_both_ends_and_compares_instants() {
        let der = certificate(
            "validity",
            Some(&[KeyUsage::DigitalSignature]),
            "2020-01-01T00:00:00Z",
            "2030-01-01T00:00:00Z",
        );
        let facts = filter_facts(&der).unwrap();
        for (t, valid) in [
            ("2019-12-31T23:59:59Z", false),
            ("2020-01-01T00:00:00Z", true),
            ("2025-06-15T12:00:00.123456Z", true),
            ("2030-01-01T00:00:00Z", true),
            ("2030-01-01T00:00:01Z", false),
            // The same instants with an offset.
            ("2020-01-01T01:00:00+01:00", true),
            ("2019-12-31T23:00:00-01:00", true),
            ("2019-12-31T23:59:59-00:00", false),
            ("2030-01-01T00:30:00+00:30", true),
            ("2029-12-31T23:30:01-00:30", false),
        ] {
            assert_eq!(facts.valid_at(at(t)), valid, "{t}");
        }
        // GeneralizedTime (2050 and later) reads the same way.
        let late = certificate("late", None, "2049-12-31T00:00:00Z", "2051-01-01T00:00:00Z");
        let facts = filter_facts(&late).unwrap();
        assert!(facts.valid_at(at("2050-06-01T00:00:00Z")));
        assert!(!facts.valid_at(at("2051-01-01T00:00:01Z")));
    }

    #[test]
    fn what_does_not_parse_has_no_facts() {
        assert!(filter_facts(b"not a certificate").is_err());
        assert!(filter_facts(&[]).is_err());
        let der = certificate("cut", None, "2020-01-01T00:00:00Z", "2040-01-01T00:00:00Z");
        assert!(filter_facts(&der[..der.len() / 2]).is_err());
    }

    #[test]
    fn ecdsa_der_round_trips_every_curve_size_and_refuses_garbage() {
        let mut rng = Rng(0x6465_7231);
        for field in [32usize, 48, 66] {
            for round in 0..200 {
                let mut raw: Vec<u8> = (0..2 * field).map(|_| rng.next_u64() as u8).collect();
                // Below the curve's order (P-521's halves have 7 spare bits).
                raw[0] &= 0x7f;
                raw[field] &= 0x7f;
                if field == 66 {
                    raw[0] &= 0x01;
                    raw[field] &= 0x01;
                }
                // Leading zeros, and high bits that need a padding byte.
                match round % 3 {
                    0 => raw[..3].fill(0),
                    1 => raw[1] |= 0x80,
                    _ => {}
                }
                let der = ecdsa_raw_to_der(&raw).unwrap();
                assert_eq!(der[0], 0x30);
                assert_eq!(ecdsa_der_to_raw(&der, field).as_deref(), Some(&raw[..]));
                // Cut, or with a byte more: not a signature.
                assert_eq!(ecdsa_der_to_raw(&der[..der.len() - 1], field), None);
                let mut more = der.clone();
                more.push(0);
                assert_eq!(ecdsa_der_to_raw(&more, field), None);
            }
        }
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_err());
        assert!(ecdsa_raw_to_der(&[]).is_err());
        // r = 0 is no signature.
        assert!(ecdsa_raw_to_der(&[0; 64]).is_err());
        for junk in [&[][..], &[0x30], &[0x30, 0x02, 0x02, 0x00], &[0x31, 0x00]] {
            assert_eq!(ecdsa_der_to_raw(junk, 32), None);
        }
    }

    #[test]
    fn digest_info_has_the_sha256_prefix() {
        let info = digest_info(AlgorithmReference::Sha256, &[0u8; 32]);
        assert_eq!(info.len(), 19 + 32);
        assert_eq!(
            hex::encode(&info[..19]),
            "3031300d060960864801650304020105000420"
        );
    }

    const FIXTURES: [(&[u8], KeyKind, usize); 4] = [
        (
            include_bytes!("../tests/data/rsa-2048.der"),
            KeyKind::Rsa { bits: 2048 },
            256,
        ),
        (
            include_bytes!("../tests/data/ec-p256.der"),
            KeyKind::P256,
            64,
        ),
        (
            include_bytes!("../tests/data/ec-p384.der"),
            KeyKind::P384,
            96,
        ),
        (
            include_bytes!("../tests/data/ec-p521.der"),
            KeyKind::P521,
            132,
        ),
    ];

    /// Certificates come from a token (which anyone can write), signatures and digests from a
    /// page: mangled ones must give an answer or a typed error, never a panic.
    #[test]
    fn mangled_certificates_signatures_and_digests_never_panic() {
        let algs = [
            AlgorithmReference::Sha1,
            AlgorithmReference::Sha256,
            AlgorithmReference::Sha384,
            AlgorithmReference::Sha512,
        ];
        let mut rng = Rng(0x6b65_7970_6f72_7421);
        for (der, kind, sig_len) in FIXTURES {
            // The fixtures themselves are what they claim (so the mangling starts from valid input).
            let cert = parse(der).unwrap();
            assert_eq!(key_kind(&cert).unwrap(), kind);
            assert!(parse_certificate(der).is_ok());
            for round in 0..500 {
                let mut bad = der.to_vec();
                match round % 4 {
                    0 => {
                        let i = rng.below(bad.len());
                        bad[i] ^= 1 << rng.below(8);
                    }
                    1 => bad.truncate(rng.below(der.len())),
                    2 => {
                        let i = rng.below(bad.len());
                        let n = rng.below(16) + 1;
                        let junk = rng.bytes(n);
                        bad.splice(i..i, junk);
                    }
                    _ => {
                        for _ in 0..8 {
                            let i = rng.below(bad.len());
                            bad[i] = rng.next_u64() as u8;
                        }
                    }
                }
                let _ = parse_certificate(&bad);
                let alg = algs[rng.below(4)];
                let n = rng.below(80);
                let digest = rng.bytes(n);
                let n = match rng.below(3) {
                    0 => sig_len,
                    1 => rng.below(2 * sig_len + 2),
                    _ => 0,
                };
                let mut sig = rng.bytes(n);
                // Random P-521 halves are almost never below the group order: keep the top
                // bits clear so that such signatures reach the verifier itself.
                if n == 132 {
                    sig[0] &= 1;
                    sig[66] &= 1;
                }
                let _ = verify(&bad, alg, &digest, &sig);
                // The intact certificate with a random signature: false or a typed error, never
                // true. (Every fourth round: a real verification is slow in a debug build.)
                if round % 4 != 0 {
                    continue;
                }
                if let Ok(valid) = verify(der, alg, &digest, &sig) {
                    assert!(!valid, "a random signature verified");
                }
            }
        }
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        let err = parse_certificate(b"not a certificate").unwrap_err();
        assert_eq!(err.reason, ErrorReason::UnsupportedAlgorithm);
    }
}
