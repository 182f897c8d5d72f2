//! The Keyport soft token (`tests/soft-token`, the PKCS #11 module the Windows tests load under
//! Wine) through the real agent on Linux: it lists the token's certificates, signs with RSA
//! (PKCS #1 v1.5 and PSS) and P-256, and openssl verifies every signature with the certificate
//! the provisioning script wrote; its PIN-pad slot signs with the PIN "typed on the pad"; a
//! crash in it is MODULE_CRASHED, and the agent signs again after.
//!
//! The module is `target/<profile>/libkeyport_soft_token.so` (`cargo build -p
//! keyport-soft-token`, or `$KEYPORT_SOFT_TOKEN_LIB`), copied with its token directory beside it
//! (`<stem>.d`, made by `tests/soft-token/provision.sh`): the agent's module host starts with a
//! cleared environment, so the directory beside the library is the one it finds.

use keyport_e2e::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const FILE_NAME: &str = "libkeyport_soft_token.so";
/// Distinctive, so that "the PIN is in no log" cannot pass or fail by chance.
const SOFT_PIN: &str = "kpSoftPin6021";
const TOKEN: &str = "Keyport Soft Token";
const PINPAD: &str = "Keyport Soft PIN-pad";

fn built_library() -> PathBuf {
    if let Some(p) = std::env::var_os("KEYPORT_SOFT_TOKEN_LIB") {
        return p.into();
    }
    // Tests run from target/<profile>/deps/.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    let candidates = [dir.join(FILE_NAME), dir.parent().unwrap().join(FILE_NAME)];
    match candidates.iter().find(|p| p.exists()) {
        Some(p) => p.clone(),
        None => panic!(
            "{} not built: run `cargo build -p keyport-soft-token` (or cargo build --workspace)",
            candidates[1].display()
        ),
    }
}

/// A private copy of the soft token with a freshly provisioned directory, and a folder for the
/// agent's own state.
struct Soft {
    home: Token,
    lib: PathBuf,
    store: PathBuf,
}

impl Soft {
    fn new() -> Soft {
        let home = Token {
            dir: tempfile::tempdir().unwrap(),
        };
        let dir = home.dir.path().join("module");
        std::fs::create_dir_all(&dir).unwrap();
        let lib = dir.join(FILE_NAME);
        std::fs::copy(built_library(), &lib).unwrap();
        let store = dir.join("libkeyport_soft_token.d");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("soft-token/provision.sh");
        let status = std::process::Command::new("bash")
            .arg(script)
            .arg(&store)
            .arg(SOFT_PIN)
            .status()
            .expect("run tests/soft-token/provision.sh");
        assert!(status.success(), "provisioning the soft token failed");
        Soft { home, lib, store }
    }

    fn lib(&self) -> &str {
        self.lib.to_str().unwrap()
    }

    /// The agent with this token as its only library (in a module host, the default).
    fn agent(&self) -> Agent {
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--module",
            self.lib(),
            "--trust-origin",
            TRUSTED,
            "--no-tray",
        ];
        Agent::start_raw(&self.home, &args, &[])
    }

    fn cert(&self, id: &str) -> Vec<u8> {
        let name = if id == "01" { "01-rsa" } else { "02-ec" };
        std::fs::read(self.store.join("keys").join(format!("{name}.crt"))).unwrap()
    }

    /// Write a file of the token directory atomically.
    fn put(&self, name: &str, text: &str) {
        let tmp = self.store.join(format!("{name}.writing"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.store.join(name)).unwrap();
    }
}

fn sign_params(slot: u64, id: &str, digest: &[u8], pin: Option<&str>) -> Value {
    let mut p = json!({"slot_id": slot, "cert_id": id, "data": b64(digest),
                       "algorithm_reference": "sha256"});
    if let Some(pin) = pin {
        p["pin"] = json!(pin);
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_lists_and_signs_and_openssl_verifies() {
    let soft = Soft::new();
    let agent = soft.agent();
    let mut c = agent.trusted().await;

    let info = c.ok("pkcs11.info", json!({})).await;
    assert_eq!(info["manufacturer_id"], "Keyport", "{info}");
    assert!(
        host_of(agent.pid(), soft.lib()).is_some(),
        "the token runs in a module host"
    );
    let slots = c.ok("pkcs11.slotsWithTokenPresent", json!({})).await;
    assert_eq!(slots.as_array().unwrap().len(), 2, "{slots}");
    let slot = c.slot_of(TOKEN).await;
    let token = c.ok("pkcs11.token", json!({"slot_id": slot})).await;
    assert_eq!(token["protected_authentication_path"], false, "{token}");
    assert_eq!(token["pin_state"], "ok", "{token}");

    // The certificates: exactly the DER the provisioning wrote, with the subjects asked for.
    let certs = c
        .ok(
            "pkcs11.certificates",
            json!({"slot_id": slot, "parse_certs": true}),
        )
        .await;
    let certs = certs.as_array().unwrap();
    assert_eq!(certs.len(), 2, "{certs:?}");
    for (id, cn) in [("01", "Keyport Soft RSA"), ("02", "Keyport Soft EC")] {
        let e = certs.iter().find(|e| e["id"] == id).expect(id);
        assert_eq!(unb64(e["base64"].as_str().unwrap()), soft.cert(id));
        assert!(e["parsed"].to_string().contains(cn), "{e}");
    }

    // RSA PKCS #1 v1.5, RSA-PSS, ECDSA: each verified by openssl with the certificate.
    for (id, scheme, encoding) in [
        ("01", "pkcs1", Encoding::Plain),
        ("01", "pss", Encoding::Pss),
        ("02", "ecdsa", Encoding::Plain),
    ] {
        let digest = sha("sha256", format!("soft token {id} {scheme}").as_bytes());
        let mut p = sign_params(slot, id, &digest, Some(SOFT_PIN));
        if scheme == "pss" {
            p["signature_scheme"] = json!("pss");
        }
        let sig = unb64(c.ok("pkcs11.signData", p).await.as_str().unwrap());
        assert_eq!(sig.len(), if id == "01" { 256 } else { 64 });
        let cert = soft.cert(id);
        assert!(
            openssl_verify_as(&cert, "sha256", &digest, &sig, encoding),
            "openssl rejects the {id}/{scheme} signature"
        );
        let mut bad = sig.clone();
        bad[3] ^= 1;
        assert!(!openssl_verify_as(&cert, "sha256", &digest, &bad, encoding));
    }

    // A wrong PIN is the token's answer, with the tries it has left.
    let digest = sha("sha256", b"wrong");
    let e = c
        .err(
            "pkcs11.signData",
            sign_params(slot, "02", &digest, Some("kpWrong1")),
            "PIN_INCORRECT",
        )
        .await;
    assert_eq!(e["data"]["pin_state"], "count_low", "{e}");
    let token = c.ok("pkcs11.token", json!({"slot_id": slot})).await;
    assert_eq!(token["pin_state"], "count_low", "{token}");
    // The right PIN signs again, and the count is reset.
    c.ok(
        "pkcs11.signData",
        sign_params(slot, "02", &digest, Some(SOFT_PIN)),
    )
    .await;
    let token = c.ok("pkcs11.token", json!({"slot_id": slot})).await;
    assert_eq!(token["pin_state"], "ok", "{token}");
    assert!(!agent.log().contains(SOFT_PIN), "the PIN is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pin_pad_slot_signs_with_the_pin_typed_on_the_pad() {
    let soft = Soft::new();
    let agent = soft.agent();
    let mut c = agent.trusted().await;
    let slot = c.slot_of(PINPAD).await;
    let token = c.ok("pkcs11.token", json!({"slot_id": slot})).await;
    assert_eq!(token["protected_authentication_path"], true, "{token}");

    // No PIN in the request: the agent logs in on the pad; "the person" types after a moment.
    let pinpad = soft.store.join("pinpad-pin");
    let typist = {
        let tmp = soft.store.join("pinpad-pin.typing");
        let pinpad = pinpad.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            std::fs::write(&tmp, SOFT_PIN).unwrap();
            std::fs::rename(&tmp, &pinpad).unwrap();
        })
    };
    let start = Instant::now();
    for (id, text) in [("01", &b"pad one"[..]), ("02", b"pad two")] {
        if id == "02" {
            // Each signature asks the pad again.
            soft.put("pinpad-pin", SOFT_PIN);
        }
        let digest = sha("sha256", text);
        let sig = c
            .ok("pkcs11.signData", sign_params(slot, id, &digest, None))
            .await;
        assert!(
            openssl_verify(
                &soft.cert(id),
                "sha256",
                &digest,
                &unb64(sig.as_str().unwrap())
            ),
            "openssl rejects the {id} signature made after the pad"
        );
    }
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "it waited for the pad"
    );
    typist.join().unwrap();
    assert!(!pinpad.exists(), "each typed PIN was taken");

    // Cancel on the pad.
    soft.put("pinpad-cancel", "");
    c.err(
        "pkcs11.signData",
        sign_params(slot, "02", &sha("sha256", b"no"), None),
        "PIN_ENTRY_CANCELLED",
    )
    .await;
    assert!(!agent.log().contains(SOFT_PIN), "the PIN is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_token_is_module_crashed_and_the_agent_recovers() {
    let soft = Soft::new();
    let agent = soft.agent();
    let mut c = agent.trusted().await;
    let slot = c.slot_of(TOKEN).await;
    let digest = sha("sha256", b"before the crash");
    c.ok(
        "pkcs11.signData",
        sign_params(slot, "02", &digest, Some(SOFT_PIN)),
    )
    .await;

    soft.put("crash-on-sign", "");
    let e = c
        .err(
            "pkcs11.signData",
            sign_params(slot, "01", &digest, Some(SOFT_PIN)),
            "MODULE_CRASHED",
        )
        .await;
    assert!(e["message"].as_str().unwrap().contains(soft.lib()), "{e}");
    assert!(!soft.store.join("crash-on-sign").exists());

    // A fresh host: lists and signs again (logging in anew), verified.
    let certs = c.ok("pkcs11.certificates", json!({"slot_id": slot})).await;
    assert_eq!(certs.as_array().unwrap().len(), 2);
    let digest = sha("sha256", b"after the crash");
    let sig = c
        .ok(
            "pkcs11.signData",
            sign_params(slot, "01", &digest, Some(SOFT_PIN)),
        )
        .await;
    assert!(openssl_verify(
        &soft.cert("01"),
        "sha256",
        &digest,
        &unb64(sig.as_str().unwrap())
    ));
}
