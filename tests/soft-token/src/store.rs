//! The token directory (README.md: the format): the keys and certificates, read at
//! `C_Initialize`, and the files read or written at each use (the PIN, the wrong-PIN counters,
//! the PIN-pad's and the faults' files).

use crate::keys::{Key, P256_PARAMS};
use cryptoki_sys::*;
use pkcs8::der::{Decode, Encode};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

/// The variable naming the token directory (else `<library stem>.d` beside the library).
pub const DIR_VAR: &str = "KEYPORT_SOFT_TOKEN_DIR";
/// Wrong PIN entries before the PIN locks.
pub const MAX_TRIES: u32 = 3;
/// The objects of one slot at most (handles are `slot * HANDLES_PER_SLOT + index + 1`).
pub const HANDLES_PER_SLOT: usize = 1000;

/// An attribute's value: its bytes as PKCS #11 lays them out (a CK_ULONG in native order, a
/// CK_BBOOL as one byte), or a secret that is never revealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Bytes(Vec<u8>),
    Sensitive,
}

/// One object of the token.
pub struct Object {
    pub class: CK_OBJECT_CLASS,
    /// CKA_PRIVATE: seen only by a logged-in user.
    pub private: bool,
    pub attrs: Vec<(CK_ATTRIBUTE_TYPE, Value)>,
    /// A private key's key.
    pub key: Option<Arc<Key>>,
}

impl Object {
    pub fn attr(&self, t: CK_ATTRIBUTE_TYPE) -> Option<&Value> {
        self.attrs.iter().find(|(a, _)| *a == t).map(|(_, v)| v)
    }

    /// Whether every attribute of `template` is on this object with exactly that value.
    pub fn matches(&self, template: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)]) -> bool {
        template
            .iter()
            .all(|(t, want)| matches!(self.attr(*t), Some(Value::Bytes(v)) if v == want))
    }
}

pub fn ulong(v: CK_ULONG) -> Value {
    Value::Bytes(v.to_ne_bytes().to_vec())
}

pub fn bool(v: bool) -> Value {
    Value::Bytes(vec![if v { CK_TRUE } else { CK_FALSE }])
}

fn bytes(v: &[u8]) -> Value {
    Value::Bytes(v.to_vec())
}

/// The token directory.
#[derive(Clone, Debug)]
pub struct Store {
    pub dir: PathBuf,
}

/// A key or certificate file, by its CKA_ID and label.
struct Entry {
    id: Vec<u8>,
    label: String,
    key: Option<Key>,
    cert: Option<Vec<u8>>,
}

impl Store {
    /// The directory: `$KEYPORT_SOFT_TOKEN_DIR`, else `<stem>.d` beside `library`.
    pub fn locate(library: Option<&Path>) -> Result<Store, String> {
        if let Some(dir) = std::env::var_os(DIR_VAR).filter(|d| !d.is_empty()) {
            return Ok(Store { dir: dir.into() });
        }
        let library = library.ok_or("cannot tell which file this library was loaded from")?;
        let stem = library
            .file_stem()
            .ok_or_else(|| format!("{}: no file name", library.display()))?;
        let mut name = stem.to_os_string();
        name.push(".d");
        Ok(Store {
            dir: library.with_file_name(name),
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Every object in `keys/`: for each CKA_ID a certificate, a private key and its public
    /// key, as far as there are files. Errors name the file.
    pub fn objects(&self) -> Result<Vec<Object>, String> {
        let keys = self.path("keys");
        let listing = std::fs::read_dir(&keys).map_err(|e| format!("{}: {e}", keys.display()))?;
        let mut entries: Vec<Entry> = Vec::new();
        let mut names: Vec<PathBuf> = listing.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for path in names {
            let shown = path.display().to_string();
            let kind = match path.extension().and_then(|e| e.to_str()) {
                Some("p8") => "p8",
                Some("crt") => "crt",
                _ => continue,
            };
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or_else(|| format!("{shown}: the name is not UTF-8"))?;
            let (id_hex, label) = stem.split_once('-').unwrap_or((stem, ""));
            let id = hex(id_hex).ok_or_else(|| {
                format!("{shown}: the name must start with the CKA_ID in hex (e.g. 01-rsa.p8)")
            })?;
            let data = Zeroizing::new(std::fs::read(&path).map_err(|e| format!("{shown}: {e}"))?);
            let i = match entries.iter().position(|e| e.id == id) {
                Some(i) => i,
                None => {
                    entries.push(Entry {
                        id: id.clone(),
                        label: label.to_string(),
                        key: None,
                        cert: None,
                    });
                    entries.len() - 1
                }
            };
            let entry = &mut entries[i];
            if entry.label != label {
                return Err(format!(
                    "{shown}: CKA_ID {id_hex} has two labels ({:?} and {label:?})",
                    entry.label
                ));
            }
            if kind == "p8" {
                entry.key = Some(Key::from_pkcs8_der(&data).map_err(|e| format!("{shown}: {e}"))?);
            } else {
                x509_cert::Certificate::from_der(&data)
                    .map_err(|e| format!("{shown}: not a DER X.509 certificate: {e}"))?;
                entry.cert = Some(data.to_vec());
            }
        }
        let mut objects = Vec::new();
        for e in entries {
            let subject = match &e.cert {
                Some(der) => Some(cert_object(&e.id, &e.label, der, &mut objects)?),
                None => None,
            };
            if let Some(key) = e.key {
                key_objects(&e.id, &e.label, subject.as_deref(), key, &mut objects);
            }
        }
        if objects.len() > HANDLES_PER_SLOT {
            return Err(format!(
                "{}: more than {HANDLES_PER_SLOT} objects",
                keys.display()
            ));
        }
        Ok(objects)
    }

    /// The user PIN (`pin`, one line).
    pub fn pin(&self) -> Result<Zeroizing<Vec<u8>>, String> {
        let path = self.path("pin");
        let pin = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(line(Zeroizing::new(pin)))
    }

    fn tries_file(&self, slot: CK_SLOT_ID) -> PathBuf {
        self.path(&format!("slot{slot}.tries"))
    }

    /// Wrong PINs entered in a row on `slot` (no file: none).
    pub fn wrong_tries(&self, slot: CK_SLOT_ID) -> Result<u32, String> {
        let path = self.tries_file(slot);
        match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .map_err(|_| format!("{}: not a number", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Record `n` wrong PINs in a row on `slot` (atomically: a temporary file renamed).
    pub fn set_wrong_tries(&self, slot: CK_SLOT_ID, n: u32) -> Result<(), String> {
        let path = self.tries_file(slot);
        let tmp = self.path(&format!("slot{slot}.tries.tmp"));
        std::fs::write(&tmp, format!("{n}\n"))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Take (read and delete) the file `name`, if it is there.
    pub fn take(&self, name: &str) -> Option<Zeroizing<Vec<u8>>> {
        let path = self.path(name);
        let data = Zeroizing::new(std::fs::read(&path).ok()?);
        // Consumed: gone before it is acted on, so that it acts once.
        std::fs::remove_file(&path).ok()?;
        Some(data)
    }

    pub fn has(&self, name: &str) -> bool {
        self.path(name).exists()
    }
}

/// A PIN as a file holds it, without the end of its line.
pub fn line(mut pin: Zeroizing<Vec<u8>>) -> Zeroizing<Vec<u8>> {
    for end in [b'\n', b'\r'] {
        if pin.last() == Some(&end) {
            pin.pop();
        }
    }
    pin
}

/// `"0a1B"` as bytes; None unless an even number of hex digits (at least two).
pub fn hex(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn common(
    class: CK_OBJECT_CLASS,
    private: bool,
    id: &[u8],
    label: &str,
) -> Vec<(CK_ATTRIBUTE_TYPE, Value)> {
    vec![
        (CKA_CLASS, ulong(class)),
        (CKA_TOKEN, bool(true)),
        (CKA_PRIVATE, bool(private)),
        (CKA_MODIFIABLE, bool(false)),
        (CKA_LABEL, bytes(label.as_bytes())),
        (CKA_ID, bytes(id)),
    ]
}

/// The certificate object; returns the DER of its subject.
fn cert_object(
    id: &[u8],
    label: &str,
    der: &[u8],
    out: &mut Vec<Object>,
) -> Result<Vec<u8>, String> {
    let cert = x509_cert::Certificate::from_der(der).map_err(|e| e.to_string())?;
    let tbs = &cert.tbs_certificate;
    let encode = |r: pkcs8::der::Result<Vec<u8>>| r.map_err(|e| e.to_string());
    let subject = encode(tbs.subject.to_der())?;
    let mut attrs = common(CKO_CERTIFICATE, false, id, label);
    attrs.extend([
        (CKA_CERTIFICATE_TYPE, ulong(CKC_X_509)),
        (CKA_TRUSTED, bool(false)),
        (CKA_CERTIFICATE_CATEGORY, ulong(0)),
        (CKA_SUBJECT, bytes(&subject)),
        (CKA_ISSUER, bytes(&encode(tbs.issuer.to_der())?)),
        (
            CKA_SERIAL_NUMBER,
            bytes(&encode(tbs.serial_number.to_der())?),
        ),
        (CKA_VALUE, bytes(der)),
    ]);
    out.push(Object {
        class: CKO_CERTIFICATE,
        private: false,
        attrs,
        key: None,
    });
    Ok(subject)
}

/// The private key object (private, sensitive) and its public key object.
fn key_objects(id: &[u8], label: &str, subject: Option<&[u8]>, key: Key, out: &mut Vec<Object>) {
    let mut public_parts = vec![(CKA_KEY_TYPE, ulong(key.key_type()))];
    let mut secret_parts = Vec::new();
    if let Some((n, e)) = key.rsa_public() {
        public_parts.extend([
            (CKA_MODULUS, bytes(&n)),
            (CKA_PUBLIC_EXPONENT, bytes(&e)),
            (
                CKA_MODULUS_BITS,
                ulong(CK_ULONG::try_from(key.bits()).unwrap_or(0)),
            ),
        ]);
        for t in [
            CKA_PRIVATE_EXPONENT,
            CKA_PRIME_1,
            CKA_PRIME_2,
            CKA_EXPONENT_1,
            CKA_EXPONENT_2,
            CKA_COEFFICIENT,
        ] {
            secret_parts.push((t, Value::Sensitive));
        }
    }
    let point = key.ec_point();
    if point.is_some() {
        public_parts.push((CKA_EC_PARAMS, bytes(&P256_PARAMS)));
        secret_parts.push((CKA_VALUE, Value::Sensitive));
    }
    let subject = subject.map(|s| (CKA_SUBJECT, bytes(s)));

    let mut public = common(CKO_PUBLIC_KEY, false, id, label);
    public.extend(public_parts.iter().cloned());
    if let Some(point) = point {
        // CKA_EC_POINT: the DER OCTET STRING of the point (PKCS #11 2.40).
        let mut der = vec![0x04, u8::try_from(point.len()).unwrap_or(0)];
        der.extend(point);
        public.push((CKA_EC_POINT, Value::Bytes(der)));
    }
    public.extend(subject.clone());
    public.extend([
        (CKA_LOCAL, bool(false)),
        (CKA_DERIVE, bool(false)),
        (CKA_ENCRYPT, bool(false)),
        (CKA_VERIFY, bool(true)),
        (CKA_VERIFY_RECOVER, bool(false)),
        (CKA_WRAP, bool(false)),
        (CKA_TRUSTED, bool(false)),
    ]);

    let mut private = common(CKO_PRIVATE_KEY, true, id, label);
    private.extend(public_parts);
    private.extend(secret_parts);
    private.extend(subject);
    private.extend([
        (CKA_LOCAL, bool(false)),
        (CKA_DERIVE, bool(false)),
        (CKA_SENSITIVE, bool(true)),
        (CKA_ALWAYS_SENSITIVE, bool(true)),
        (CKA_EXTRACTABLE, bool(false)),
        (CKA_NEVER_EXTRACTABLE, bool(true)),
        (CKA_DECRYPT, bool(false)),
        (CKA_SIGN, bool(true)),
        (CKA_SIGN_RECOVER, bool(false)),
        (CKA_UNWRAP, bool(false)),
        (CKA_WRAP_WITH_TRUSTED, bool(false)),
        (CKA_ALWAYS_AUTHENTICATE, bool(false)),
    ]);
    out.push(Object {
        class: CKO_PRIVATE_KEY,
        private: true,
        attrs: private,
        key: Some(Arc::new(key)),
    });
    out.push(Object {
        class: CKO_PUBLIC_KEY,
        private: false,
        attrs: public,
        key: None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids() {
        assert_eq!(hex("01"), Some(vec![1]));
        assert_eq!(hex("0aFF"), Some(vec![10, 255]));
        assert_eq!(hex("1"), None);
        assert_eq!(hex(""), None);
        assert_eq!(hex("zz"), None);
        assert_eq!(hex("é1"), None);
    }

    #[test]
    fn the_dir_beside_the_library() {
        if std::env::var_os(DIR_VAR).is_some() {
            return; // the variable wins; tested end to end
        }
        let s = Store::locate(Some(Path::new("/x/y/libkeyport_soft_token.so"))).unwrap();
        assert_eq!(s.dir, Path::new("/x/y/libkeyport_soft_token.d"));
        assert!(Store::locate(None).is_err());
    }

    #[test]
    fn wrong_tries_round_trip_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store {
            dir: dir.path().to_path_buf(),
        };
        assert_eq!(s.wrong_tries(1), Ok(0));
        s.set_wrong_tries(1, 2).unwrap();
        assert_eq!(s.wrong_tries(1), Ok(2));
        assert_eq!(s.wrong_tries(0), Ok(0));
        std::fs::write(dir.path().join("slot0.tries"), "many").unwrap();
        assert!(s.wrong_tries(0).unwrap_err().contains("slot0.tries"));
        std::fs::write(dir.path().join("pin"), "1234\r\n").unwrap();
        assert_eq!(&s.pin().unwrap()[..], b"1234");
        assert!(s.take("nothing").is_none());
        std::fs::write(dir.path().join("once"), "x").unwrap();
        assert_eq!(&s.take("once").unwrap()[..], b"x");
        assert!(!s.has("once"));
    }

    fn objects_err(s: &Store) -> String {
        match s.objects() {
            Ok(o) => panic!("{} objects, expected an error", o.len()),
            Err(e) => e,
        }
    }

    #[test]
    fn a_missing_or_bad_keys_dir_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store {
            dir: dir.path().to_path_buf(),
        };
        assert!(objects_err(&s).contains("keys"));
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        assert!(s.objects().unwrap().is_empty());
        std::fs::write(dir.path().join("keys/xx-bad.p8"), "x").unwrap();
        assert!(objects_err(&s).contains("xx-bad.p8"));
        std::fs::remove_file(dir.path().join("keys/xx-bad.p8")).unwrap();
        std::fs::write(dir.path().join("keys/01-bad.crt"), "x").unwrap();
        assert!(objects_err(&s).contains("01-bad.crt"));
    }
}
