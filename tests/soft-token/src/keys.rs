//! The keys and what they sign: RSA (PKCS #1 v1.5 over the caller's bytes, PSS over a digest)
//! and ECDSA on P-256 (over a digest), all with RustCrypto.

use cryptoki_sys::*;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use pkcs8::der::Decode;
use pkcs8::DecodePrivateKey;
use rand_core::OsRng;
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, Pss, RsaPrivateKey};

/// rsaEncryption.
const RSA_OID: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-ecPublicKey.
const EC_OID: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// prime256v1 (P-256).
const P256_OID: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// CKA_EC_PARAMS of P-256: the DER of its OID.
pub const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// A private key. Both kinds zeroize their secrets when dropped.
pub enum Key {
    Rsa(Box<RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
}

/// A hash named by a PSS mechanism's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    /// The hash of `CK_RSA_PKCS_PSS_PARAMS.hashAlg` and its MGF1 (which must name the same one).
    pub fn of(hash_alg: CK_MECHANISM_TYPE, mgf: CK_RSA_PKCS_MGF_TYPE) -> Option<Hash> {
        let (hash, want_mgf) = match hash_alg {
            CKM_SHA_1 => (Hash::Sha1, CKG_MGF1_SHA1),
            CKM_SHA224 => (Hash::Sha224, CKG_MGF1_SHA224),
            CKM_SHA256 => (Hash::Sha256, CKG_MGF1_SHA256),
            CKM_SHA384 => (Hash::Sha384, CKG_MGF1_SHA384),
            CKM_SHA512 => (Hash::Sha512, CKG_MGF1_SHA512),
            _ => return None,
        };
        (mgf == want_mgf).then_some(hash)
    }

    pub fn digest_len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha224 => 28,
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }
}

/// A signing mechanism, with its parameters checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mech {
    /// CKM_RSA_PKCS: PKCS #1 v1.5 padding of the caller's bytes (usually a DigestInfo).
    RsaPkcs,
    /// CKM_RSA_PKCS_PSS: the caller's bytes are the digest.
    RsaPss { hash: Hash, salt: usize },
    /// CKM_ECDSA: the caller's bytes are the digest; the signature is r || s.
    Ecdsa,
}

impl Key {
    /// A PKCS #8 DER private key: RSA, or EC on P-256.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Key, String> {
        let info = pkcs8::PrivateKeyInfo::from_der(der).map_err(|e| format!("not PKCS #8: {e}"))?;
        let oid = info.algorithm.oid;
        if oid == RSA_OID {
            let key = RsaPrivateKey::from_pkcs8_der(der).map_err(|e| format!("RSA key: {e}"))?;
            return Ok(Key::Rsa(Box::new(key)));
        }
        if oid == EC_OID {
            let curve = info
                .algorithm
                .parameters_oid()
                .map_err(|e| format!("EC key without a named curve: {e}"))?;
            if curve != P256_OID {
                return Err(format!("EC key on curve {curve}: only P-256 is supported"));
            }
            let key = p256::ecdsa::SigningKey::from_pkcs8_der(der)
                .map_err(|e| format!("P-256 key: {e}"))?;
            return Ok(Key::P256(key));
        }
        Err(format!(
            "key algorithm {oid}: only RSA and EC P-256 are supported"
        ))
    }

    pub fn key_type(&self) -> CK_KEY_TYPE {
        match self {
            Key::Rsa(_) => CKK_RSA,
            Key::P256(_) => CKK_EC,
        }
    }

    /// RSA: (modulus, public exponent), big-endian.
    pub fn rsa_public(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        match self {
            Key::Rsa(k) => Some((k.n().to_bytes_be(), k.e().to_bytes_be())),
            Key::P256(_) => None,
        }
    }

    /// EC: the public point, uncompressed (0x04 || x || y).
    pub fn ec_point(&self) -> Option<Vec<u8>> {
        match self {
            Key::P256(k) => Some(
                k.verifying_key()
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec(),
            ),
            Key::Rsa(_) => None,
        }
    }

    /// The key's size in bits (the modulus, or the curve's order).
    pub fn bits(&self) -> usize {
        match self {
            Key::Rsa(k) => k.size() * 8,
            Key::P256(_) => 256,
        }
    }

    /// Whether `mech` is for this kind of key, and its parameters fit the key:
    /// CKR_KEY_TYPE_INCONSISTENT or CKR_MECHANISM_PARAM_INVALID otherwise.
    pub fn check(&self, mech: Mech) -> Result<(), CK_RV> {
        match (self, mech) {
            (Key::Rsa(_), Mech::RsaPkcs) | (Key::P256(_), Mech::Ecdsa) => Ok(()),
            (Key::Rsa(k), Mech::RsaPss { hash, salt }) => {
                // RFC 8017 9.1.1: emLen >= hLen + sLen + 2.
                if salt + hash.digest_len() + 2 > k.size() {
                    Err(CKR_MECHANISM_PARAM_INVALID)
                } else {
                    Ok(())
                }
            }
            _ => Err(CKR_KEY_TYPE_INCONSISTENT),
        }
    }

    /// How long a signature by this key is.
    pub fn signature_len(&self) -> usize {
        match self {
            Key::Rsa(k) => k.size(),
            Key::P256(_) => 64,
        }
    }

    /// Sign `data` as `mech` says (checked with [`Key::check`] before). Input of the wrong
    /// length is CKR_DATA_LEN_RANGE.
    pub fn sign(&self, mech: Mech, data: &[u8]) -> Result<Vec<u8>, CK_RV> {
        match (self, mech) {
            (Key::Rsa(k), Mech::RsaPkcs) => {
                if data.len() + 11 > k.size() {
                    return Err(CKR_DATA_LEN_RANGE);
                }
                k.sign_with_rng(&mut OsRng, Pkcs1v15Sign::new_unprefixed(), data)
                    .map_err(|_| CKR_FUNCTION_FAILED)
            }
            (Key::Rsa(k), Mech::RsaPss { hash, salt }) => {
                if data.len() != hash.digest_len() {
                    return Err(CKR_DATA_LEN_RANGE);
                }
                let scheme = match hash {
                    Hash::Sha1 => Pss::new_with_salt::<sha1::Sha1>(salt),
                    Hash::Sha224 => Pss::new_with_salt::<sha2::Sha224>(salt),
                    Hash::Sha256 => Pss::new_with_salt::<sha2::Sha256>(salt),
                    Hash::Sha384 => Pss::new_with_salt::<sha2::Sha384>(salt),
                    Hash::Sha512 => Pss::new_with_salt::<sha2::Sha512>(salt),
                };
                k.sign_with_rng(&mut OsRng, scheme, data)
                    .map_err(|_| CKR_FUNCTION_FAILED)
            }
            (Key::P256(k), Mech::Ecdsa) => {
                // ECDSA takes the leftmost bits of a longer digest; a shorter one is a smaller
                // number, which left zeros keep (the signer wants at least half the field).
                let mut padded = [0u8; 32];
                let input = if data.len() < 32 {
                    padded[32 - data.len()..].copy_from_slice(data);
                    &padded[..]
                } else {
                    data
                };
                let sig: p256::ecdsa::Signature =
                    k.sign_prehash(input).map_err(|_| CKR_FUNCTION_FAILED)?;
                Ok(sig.to_bytes().to_vec())
            }
            _ => Err(CKR_KEY_TYPE_INCONSISTENT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pss_hash_and_mgf_must_agree() {
        assert_eq!(Hash::of(CKM_SHA256, CKG_MGF1_SHA256), Some(Hash::Sha256));
        assert_eq!(Hash::of(CKM_SHA_1, CKG_MGF1_SHA1), Some(Hash::Sha1));
        assert_eq!(Hash::of(CKM_SHA256, CKG_MGF1_SHA1), None);
        assert_eq!(Hash::of(CKM_MD5, CKG_MGF1_SHA1), None);
    }

    #[test]
    fn garbage_is_no_key() {
        assert!(Key::from_pkcs8_der(b"not a key").is_err());
        assert!(Key::from_pkcs8_der(&[]).is_err());
    }
}
