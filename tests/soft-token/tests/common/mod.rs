//! What the soft token's tests share: a private copy of the built library with a provisioned
//! token directory beside it, and verifiers that do not use the token (RustCrypto fed the
//! certificate's public key; on Linux also the openssl command line).
//!
//! The library is `target/<profile>/deps/libkeyport_soft_token.so` (or `keyport_soft_token.dll`),
//! beside the test executable, or `$KEYPORT_SOFT_TOKEN_LIB`. The token directory is
//! copied from `$KEYPORT_SOFT_TOKEN_FIXTURE` if set; else on Linux provision.sh makes one (once
//! per test process); for Windows the build script made one on the build machine (the tests
//! run under Wine, which cannot start bash or openssl).

#![allow(dead_code)]

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::slot::Slot;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use rsa::pkcs8::DecodePublicKey;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use x509_cert::der::{Decode, Encode};

pub const PIN: &str = "123456";
pub const RSA_ID: u8 = 0x01;
pub const EC_ID: u8 = 0x02;

pub fn file_name() -> &'static str {
    if cfg!(windows) {
        "keyport_soft_token.dll"
    } else {
        "libkeyport_soft_token.so"
    }
}

/// The library cargo built with this test executable: `cargo test` leaves it beside the
/// executable in `deps/` (a `cargo build` copies it one folder up, where it may be older).
pub fn built_library() -> PathBuf {
    if let Some(p) = std::env::var_os("KEYPORT_SOFT_TOKEN_LIB") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let candidates = [
        deps.join(file_name()),
        deps.parent().unwrap().join(file_name()),
    ];
    match candidates.iter().find(|p| p.exists()) {
        Some(p) => p.clone(),
        None => panic!(
            "{} not built: run `cargo build -p keyport-soft-token` (cargo test builds it)",
            candidates[1].display()
        ),
    }
}

/// A Linux path as Wine reaches it (drive Z: is /).
fn host_path(p: &str) -> PathBuf {
    if cfg!(windows) && p.starts_with('/') {
        PathBuf::from(format!("Z:{}", p.replace('/', "\\")))
    } else {
        PathBuf::from(p)
    }
}

/// A provisioned token directory, never written to (each test copies it).
pub fn fixture() -> &'static Path {
    static FIXTURE: OnceLock<PathBuf> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        if let Some(d) = std::env::var_os("KEYPORT_SOFT_TOKEN_FIXTURE") {
            return host_path(d.to_str().expect("a UTF-8 fixture path"));
        }
        if cfg!(windows) {
            let Some(built) = option_env!("KEYPORT_SOFT_TOKEN_FIXTURE_BUILT") else {
                panic!(
                    "no token directory: the build script could not run provision.sh (openssl?); \
                     or set KEYPORT_SOFT_TOKEN_FIXTURE to a directory it made"
                )
            };
            return host_path(built);
        }
        let dir = tempfile::tempdir().unwrap().keep();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("provision.sh");
        let status = std::process::Command::new("bash")
            .arg(script)
            .arg(&dir)
            .status()
            .expect("run provision.sh");
        assert!(status.success(), "provision.sh failed");
        dir
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A private copy of the library with its token directory `<stem>.d` beside it.
pub struct Copy {
    pub dir: tempfile::TempDir,
    pub lib: PathBuf,
    pub store: PathBuf,
}

impl Copy {
    pub fn new() -> Copy {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join(file_name());
        std::fs::copy(built_library(), &lib).unwrap();
        let stem = Path::new(file_name())
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap();
        let store = dir.path().join(format!("{stem}.d"));
        copy_dir(fixture(), &store);
        Copy { dir, lib, store }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.store.join(name)
    }

    /// Write a file of the token directory atomically (a reader never sees half of it).
    pub fn put(&self, name: &str, text: &str) {
        let tmp = self.store.join(format!("{name}.writing"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.file(name)).unwrap();
    }

    /// The certificate provisioned with CKA_ID `id`, from the file.
    pub fn cert(&self, id: u8) -> Vec<u8> {
        let name = if id == RSA_ID { "01-rsa" } else { "02-ec" };
        std::fs::read(self.store.join("keys").join(format!("{name}.crt"))).unwrap()
    }

    /// Load and initialise this copy (as the agent does).
    pub fn load(&self) -> Pkcs11 {
        let ctx = Pkcs11::new(&self.lib).expect("load the soft token");
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .expect("C_Initialize");
        ctx
    }
}

pub fn slot(id: u64) -> Slot {
    Slot::try_from(id).unwrap()
}

/// The handle of the one object of `class` with CKA_ID `id` the session sees, if any.
pub fn find(s: &Session, class: ObjectClass, id: u8) -> Option<ObjectHandle> {
    let found = s
        .find_objects(&[Attribute::Class(class), Attribute::Id(vec![id])])
        .unwrap();
    assert!(found.len() <= 1, "{found:?}");
    found.first().copied()
}

pub fn value(s: &Session, h: ObjectHandle, t: AttributeType) -> Vec<u8> {
    let attrs = s.get_attributes(h, &[t]).unwrap();
    match attrs.as_slice() {
        [Attribute::Value(v)] | [Attribute::Id(v)] | [Attribute::Label(v)] => v.clone(),
        other => panic!("{t:?}: {other:?}"),
    }
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

pub fn sha384(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha384::digest(data).to_vec()
}

/// The DigestInfo of a SHA-256 digest (RFC 8017 9.2, note 1), written out here.
pub fn digest_info_sha256(digest: &[u8]) -> Vec<u8> {
    let mut out = vec![
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    out.extend_from_slice(digest);
    out
}

/// How a signature was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Pkcs1Sha256,
    PssSha256,
    PssSha384,
    Ecdsa,
}

fn spki(cert: &[u8]) -> Vec<u8> {
    let cert = x509_cert::Certificate::from_der(cert).expect("a DER certificate");
    cert.tbs_certificate
        .subject_public_key_info
        .to_der()
        .unwrap()
}

/// Whether the public key of `cert` verifies `sig` over `digest` (RustCrypto).
pub fn verifies(cert: &[u8], scheme: Scheme, digest: &[u8], sig: &[u8]) -> bool {
    let spki = spki(cert);
    match scheme {
        Scheme::Ecdsa => {
            let key = p256::ecdsa::VerifyingKey::from_public_key_der(&spki).expect("P-256 key");
            let Ok(sig) = p256::ecdsa::Signature::from_slice(sig) else {
                return false;
            };
            key.verify_prehash(digest, &sig).is_ok()
        }
        rsa_scheme => {
            let key = rsa::RsaPublicKey::from_public_key_der(&spki).expect("RSA key");
            match rsa_scheme {
                Scheme::Pkcs1Sha256 => key
                    .verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), digest, sig)
                    .is_ok(),
                Scheme::PssSha256 => key
                    .verify(rsa::Pss::new::<sha2::Sha256>(), digest, sig)
                    .is_ok(),
                _ => key
                    .verify(rsa::Pss::new::<sha2::Sha384>(), digest, sig)
                    .is_ok(),
            }
        }
    }
}

/// Whether the openssl command line verifies `sig` over `digest` with the key of `cert`.
#[cfg(unix)]
pub fn openssl_verifies(cert: &[u8], scheme: Scheme, digest: &[u8], sig: &[u8]) -> bool {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("cert.der"), cert).unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-pubkey", "-noout", "-in"])
        .arg(p("cert.der"))
        .output()
        .expect("openssl");
    assert!(out.status.success());
    std::fs::write(p("pub.pem"), &out.stdout).unwrap();
    let sig = if scheme == Scheme::Ecdsa {
        ecdsa_der(sig)
    } else {
        sig.to_vec()
    };
    std::fs::write(p("sig"), sig).unwrap();
    std::fs::write(p("digest"), digest).unwrap();
    let mut cmd = Command::new("openssl");
    cmd.args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(p("pub.pem"))
        .arg("-in")
        .arg(p("digest"))
        .arg("-sigfile")
        .arg(p("sig"));
    let alg = if scheme == Scheme::PssSha384 {
        "sha384"
    } else {
        "sha256"
    };
    if scheme != Scheme::Ecdsa {
        cmd.args(["-pkeyopt", &format!("digest:{alg}")]);
    }
    if matches!(scheme, Scheme::PssSha256 | Scheme::PssSha384) {
        cmd.args(["-pkeyopt", "rsa_padding_mode:pss"])
            .args(["-pkeyopt", "rsa_pss_saltlen:digest"])
            .args(["-pkeyopt", &format!("rsa_mgf1_md:{alg}")]);
    }
    cmd.output().unwrap().status.success()
}

/// A raw r || s ECDSA signature as DER (for openssl).
#[cfg(unix)]
fn ecdsa_der(raw: &[u8]) -> Vec<u8> {
    match p256::ecdsa::Signature::from_slice(raw) {
        Ok(sig) => sig.to_der().as_bytes().to_vec(),
        Err(_) => raw.to_vec(),
    }
}

/// Both verifiers where both exist; they must agree.
pub fn independently_verified(cert: &[u8], scheme: Scheme, digest: &[u8], sig: &[u8]) -> bool {
    let rust = verifies(cert, scheme, digest, sig);
    #[cfg(unix)]
    {
        let openssl = openssl_verifies(cert, scheme, digest, sig);
        assert_eq!(
            rust, openssl,
            "RustCrypto and openssl disagree on {scheme:?}"
        );
    }
    rust
}
