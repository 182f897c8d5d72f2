//! Certificates: parsing for `parse_certs`, the DigestInfo that RSA keys sign, and verification
//! of a signature with the certificate's public key (so that a token holding only a certificate
//! and a private key can still verify).

use crate::error::{AgentError, Result};
use keyport_protocol::{AlgorithmReference, ErrorReason, ParsedCertificate};
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
    let mut key_usage = Vec::new();
    if let Ok(Some(ku)) = cert.key_usage() {
        let ku = ku.value;
        let bits = [
            (ku.digital_signature(), "digitalSignature"),
            (ku.non_repudiation(), "nonRepudiation"),
            (ku.key_encipherment(), "keyEncipherment"),
            (ku.data_encipherment(), "dataEncipherment"),
            (ku.key_agreement(), "keyAgreement"),
            (ku.key_cert_sign(), "keyCertSign"),
            (ku.crl_sign(), "cRLSign"),
            (ku.encipher_only(), "encipherOnly"),
            (ku.decipher_only(), "decipherOnly"),
        ];
        key_usage = bits
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| n.to_string())
            .collect();
    }
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
    let cert = parse(der)?;
    let spki = cert.public_key().raw;
    let point = &cert.public_key().subject_public_key.data;
    match key_kind(&cert)? {
        KeyKind::Rsa { .. } => {
            let key = rsa::RsaPublicKey::from_public_key_der(spki)
                .map_err(|_| AgentError::new(ErrorReason::UnsupportedAlgorithm))?;
            Ok(key.verify(pkcs1v15(alg), digest, sig).is_ok())
        }
        KeyKind::P256 => ec_verify!(p256, 32, point, digest, sig),
        KeyKind::P384 => ec_verify!(p384, 48, point, digest, sig),
        KeyKind::P521 => ec_verify!(p521, 66, point, digest, sig),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

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
