//! The soft token through cryptoki, as the agent uses it: slots and tokens, objects before and
//! after login, the PIN and its tries, the three mechanisms (each signature verified from the
//! certificate by RustCrypto and, on Linux, openssl), the PIN-pad, the faults, many threads.
//!
//! Each test loads its own copy of the library (a copy per folder is a module of its own in
//! the process, with its own state) with a provisioned token directory beside it. The crash
//! runs in a child process: this test binary again, running only `scenario_in_child`.

mod common;

use common::*;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{AttributeInfo, AttributeType, KeyType, ObjectClass};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::types::AuthPin;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn rv<T: std::fmt::Debug>(r: Result<T, Error>) -> RvError {
    match r {
        Err(Error::Pkcs11(rv, _)) => rv,
        other => panic!("expected a PKCS #11 error, got {other:?}"),
    }
}

fn pin(p: &str) -> AuthPin {
    AuthPin::from(p.to_string())
}

fn login(s: &Session, p: &str) -> Result<(), Error> {
    s.login(UserType::User, Some(&pin(p)))
}

fn pss(
    hash_alg: MechanismType,
    mgf: PkcsMgfType,
    len: cryptoki_sys::CK_ULONG,
) -> Mechanism<'static> {
    Mechanism::RsaPkcsPss(PkcsPssParams {
        hash_alg,
        mgf,
        s_len: len.into(),
    })
}

/// `(wrong tries flags)`: count low, final try, locked.
fn pin_flags(ctx: &Pkcs11, slot_id: u64) -> (bool, bool, bool) {
    let t = ctx.get_token_info(slot(slot_id)).unwrap();
    (
        t.user_pin_count_low(),
        t.user_pin_final_try(),
        t.user_pin_locked(),
    )
}

#[test]
fn two_slots_two_tokens() {
    let copy = Copy::new();
    let ctx = copy.load();
    let info = ctx.get_library_info().unwrap();
    assert_eq!(info.manufacturer_id().trim_end(), "Keyport");
    assert_eq!(info.cryptoki_version().major(), 2);
    let slots: Vec<u64> = ctx
        .get_slots_with_token()
        .unwrap()
        .iter()
        .map(|s| s.id())
        .collect();
    assert_eq!(slots, [0, 1]);
    assert_eq!(ctx.get_all_slots().unwrap().len(), 2);

    let t0 = ctx.get_token_info(slot(0)).unwrap();
    assert_eq!(t0.label().trim_end(), "Keyport Soft Token");
    assert!(t0.login_required() && t0.token_initialized() && t0.user_pin_initialized());
    assert!(!t0.protected_authentication_path() && !t0.write_protected());
    assert_eq!((t0.min_pin_length(), t0.max_pin_length()), (4, 64));
    let t1 = ctx.get_token_info(slot(1)).unwrap();
    assert_eq!(t1.label().trim_end(), "Keyport Soft PIN-pad");
    assert!(t1.protected_authentication_path());
    assert_ne!(t0.serial_number(), t1.serial_number());
    assert_eq!(pin_flags(&ctx, 0), (false, false, false));

    let info = ctx.get_slot_info(slot(1)).unwrap();
    assert!(info.token_present());
    assert!(matches!(
        ctx.get_slot_info(slot(2)),
        Err(Error::Pkcs11(RvError::SlotIdInvalid, _))
    ));

    let mechanisms = ctx.get_mechanism_list(slot(0)).unwrap();
    for m in [
        MechanismType::RSA_PKCS,
        MechanismType::RSA_PKCS_PSS,
        MechanismType::ECDSA,
    ] {
        assert!(mechanisms.contains(&m), "{m:?} in {mechanisms:?}");
        assert!(ctx.get_mechanism_info(slot(0), m).unwrap().sign());
    }
    // No slot events: the agent polls.
    assert_eq!(rv(ctx.get_slot_event()), RvError::FunctionNotSupported);

    // Sessions count in the token info.
    let _a = ctx.open_ro_session(slot(0)).unwrap();
    let _b = ctx.open_rw_session(slot(0)).unwrap();
    let t0 = ctx.get_token_info(slot(0)).unwrap();
    assert_eq!(
        (t0.session_count(), t0.rw_session_count()),
        (Some(2), Some(1))
    );
}

#[test]
fn objects_before_and_after_login() {
    let copy = Copy::new();
    let ctx = copy.load();
    for slot_id in [0, 1] {
        let s = ctx.open_ro_session(slot(slot_id)).unwrap();
        // Public objects: the certificates (their DER is the file's) and the public keys.
        for id in [RSA_ID, EC_ID] {
            let cert = find(&s, ObjectClass::CERTIFICATE, id).expect("certificate");
            assert_eq!(value(&s, cert, AttributeType::Value), copy.cert(id));
            assert_eq!(value(&s, cert, AttributeType::Id), [id]);
            assert!(find(&s, ObjectClass::PUBLIC_KEY, id).is_some());
            assert!(
                find(&s, ObjectClass::PRIVATE_KEY, id).is_none(),
                "private before login"
            );
        }
        assert_eq!(s.find_objects(&[]).unwrap().len(), 4);
        // Slot 1 takes a PIN with the call too (its pad is tested below).
        login(&s, PIN).unwrap();
        assert_eq!(s.find_objects(&[]).unwrap().len(), 6);
        for (id, kind) in [(RSA_ID, KeyType::RSA), (EC_ID, KeyType::EC)] {
            let key = find(&s, ObjectClass::PRIVATE_KEY, id).expect("private key after login");
            let attrs = s.get_attributes(key, &[AttributeType::KeyType]).unwrap();
            assert_eq!(attrs, [cryptoki::object::Attribute::KeyType(kind)]);
            // Secrets are sensitive; what a private key does not have is invalid.
            let secret = if kind == KeyType::RSA {
                AttributeType::PrivateExponent
            } else {
                AttributeType::Value
            };
            let info = s
                .get_attribute_info(key, &[secret, AttributeType::Sign, AttributeType::Url])
                .unwrap();
            assert!(
                matches!(
                    info.as_slice(),
                    [
                        AttributeInfo::Sensitive,
                        AttributeInfo::Available(1),
                        AttributeInfo::TypeInvalid
                    ]
                ),
                "{info:?}"
            );
        }
        // The public key's modulus is the certificate's.
        let public = find(&s, ObjectClass::PUBLIC_KEY, RSA_ID).unwrap();
        let modulus = value_of(&s, public, AttributeType::Modulus);
        assert_eq!(modulus.len(), 256);
        let cert = copy.cert(RSA_ID);
        assert!(
            cert.windows(modulus.len()).any(|w| w == modulus.as_slice()),
            "the modulus is in the certificate"
        );
        s.logout().unwrap();
    }
}

fn value_of(s: &Session, h: cryptoki::object::ObjectHandle, t: AttributeType) -> Vec<u8> {
    match s.get_attributes(h, &[t]).unwrap().as_slice() {
        [cryptoki::object::Attribute::Modulus(v)] => v.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn login_is_shared_by_the_sessions_of_a_slot() {
    let copy = Copy::new();
    let ctx = copy.load();
    let a = ctx.open_ro_session(slot(0)).unwrap();
    let b = ctx.open_ro_session(slot(0)).unwrap();
    let other = ctx.open_ro_session(slot(1)).unwrap();
    login(&a, PIN).unwrap();
    let state = |s: &Session| s.get_session_info().unwrap().session_state();
    assert_eq!(state(&b), SessionState::RoUser);
    assert_eq!(
        state(&other),
        SessionState::RoPublic,
        "another slot is not logged in"
    );
    assert_eq!(rv(login(&b, PIN)), RvError::UserAlreadyLoggedIn);
    assert!(find(&b, ObjectClass::PRIVATE_KEY, EC_ID).is_some());
    b.logout().unwrap();
    assert_eq!(state(&a), SessionState::RoPublic);
    assert_eq!(rv(a.logout()), RvError::UserNotLoggedIn);
    // The last session of a slot closing logs it out.
    login(&a, PIN).unwrap();
    drop(a);
    assert_eq!(state(&b), SessionState::RoUser);
    drop(b);
    let c = ctx.open_ro_session(slot(0)).unwrap();
    assert_eq!(state(&c), SessionState::RoPublic);
}

#[test]
fn wrong_pins_count_down_and_lock_and_the_count_survives() {
    let copy = Copy::new();
    let ctx = copy.load();
    let s = ctx.open_ro_session(slot(0)).unwrap();
    assert_eq!(rv(login(&s, "000000")), RvError::PinIncorrect);
    assert_eq!(pin_flags(&ctx, 0), (true, false, false));
    assert_eq!(
        pin_flags(&ctx, 1),
        (false, false, false),
        "slot 1 has its own count"
    );
    assert_eq!(rv(login(&s, "000000")), RvError::PinIncorrect);
    assert_eq!(pin_flags(&ctx, 0), (true, true, false));
    // The right PIN resets the count.
    login(&s, PIN).unwrap();
    assert_eq!(pin_flags(&ctx, 0), (false, false, false));
    s.logout().unwrap();
    // A PIN of a length the token cannot have costs no try.
    assert_eq!(rv(login(&s, "12")), RvError::PinLenRange);
    assert_eq!(pin_flags(&ctx, 0), (false, false, false));

    for _ in 0..3 {
        assert_eq!(rv(login(&s, "999999")), RvError::PinIncorrect);
    }
    assert_eq!(pin_flags(&ctx, 0), (false, false, true));
    assert_eq!(
        rv(login(&s, PIN)),
        RvError::PinLocked,
        "locked: even the right PIN"
    );
    assert_eq!(
        std::fs::read_to_string(copy.file("slot0.tries"))
            .unwrap()
            .trim(),
        "3"
    );
    drop(s);
    ctx.finalize().unwrap();

    // The count is in the directory: a new start of the module sees the lock.
    let ctx = copy.load();
    assert_eq!(pin_flags(&ctx, 0), (false, false, true));
    let s = ctx.open_ro_session(slot(0)).unwrap();
    assert_eq!(rv(login(&s, PIN)), RvError::PinLocked);
    // The test's way to unlock: the counter file gone.
    std::fs::remove_file(copy.file("slot0.tries")).unwrap();
    login(&s, PIN).unwrap();
}

#[test]
fn the_pin_is_read_at_each_login() {
    let copy = Copy::new();
    let ctx = copy.load();
    let s = ctx.open_ro_session(slot(0)).unwrap();
    copy.put("pin", "kpOther42\n");
    assert_eq!(rv(login(&s, PIN)), RvError::PinIncorrect);
    login(&s, "kpOther42").unwrap();
}

/// Sign `digest` (or its DigestInfo) with each mechanism and key, on `s` (logged in).
fn sign_every_way(copy: &Copy, s: &Session, label: &str) {
    let digest = sha256(label.as_bytes());
    let digest384 = sha384(label.as_bytes());
    let rsa = find(s, ObjectClass::PRIVATE_KEY, RSA_ID).unwrap();
    let ec = find(s, ObjectClass::PRIVATE_KEY, EC_ID).unwrap();
    let cases = [
        (
            Scheme::Pkcs1Sha256,
            rsa,
            Mechanism::RsaPkcs,
            digest_info_sha256(&digest),
            &digest,
            RSA_ID,
        ),
        (
            Scheme::PssSha256,
            rsa,
            pss(MechanismType::SHA256, PkcsMgfType::MGF1_SHA256, 32),
            digest.clone(),
            &digest,
            RSA_ID,
        ),
        (
            Scheme::PssSha384,
            rsa,
            pss(MechanismType::SHA384, PkcsMgfType::MGF1_SHA384, 48),
            digest384.clone(),
            &digest384,
            RSA_ID,
        ),
        (
            Scheme::Ecdsa,
            ec,
            Mechanism::Ecdsa,
            digest.clone(),
            &digest,
            EC_ID,
        ),
    ];
    for (scheme, key, mechanism, input, digest, id) in cases {
        let sig = s.sign(&mechanism, key, &input).unwrap();
        let cert = copy.cert(id);
        let len = if id == RSA_ID { 256 } else { 64 };
        assert_eq!(sig.len(), len, "{scheme:?}");
        assert!(
            independently_verified(&cert, scheme, digest, &sig),
            "{label}: the {scheme:?} signature does not verify with the certificate"
        );
        // The verifiers can fail: a flipped bit, another digest, another key.
        let mut bad = sig.clone();
        bad[7] ^= 0x10;
        assert!(
            !verifies(&cert, scheme, digest, &bad),
            "{scheme:?}: flipped bit"
        );
        let other = if scheme == Scheme::PssSha384 {
            sha384(b"another document")
        } else {
            sha256(b"another document")
        };
        assert!(
            !verifies(&cert, scheme, &other, &sig),
            "{scheme:?}: other digest"
        );
        let wrong_cert = copy.cert(if id == RSA_ID { EC_ID } else { RSA_ID });
        let other_kind = if id == RSA_ID {
            Scheme::Ecdsa
        } else {
            Scheme::Pkcs1Sha256
        };
        assert!(!verifies(&wrong_cert, other_kind, digest, &sig));
    }
}

#[test]
fn signs_with_each_mechanism_and_the_certificates_verify() {
    let copy = Copy::new();
    let ctx = copy.load();
    let s = ctx.open_ro_session(slot(0)).unwrap();
    login(&s, PIN).unwrap();
    sign_every_way(&copy, &s, "document one");
}

#[test]
fn sign_refusals() {
    let copy = Copy::new();
    let ctx = copy.load();
    let s = ctx.open_ro_session(slot(0)).unwrap();
    login(&s, PIN).unwrap();
    let rsa = find(&s, ObjectClass::PRIVATE_KEY, RSA_ID).unwrap();
    let ec = find(&s, ObjectClass::PRIVATE_KEY, EC_ID).unwrap();
    let digest = sha256(b"x");
    // Wrong key kind, bad parameters, wrong lengths.
    assert_eq!(
        rv(s.sign(&Mechanism::Ecdsa, rsa, &digest)),
        RvError::KeyTypeInconsistent
    );
    assert_eq!(
        rv(s.sign(&Mechanism::RsaPkcs, ec, &digest)),
        RvError::KeyTypeInconsistent
    );
    let mismatched = pss(MechanismType::SHA256, PkcsMgfType::MGF1_SHA1, 32);
    assert_eq!(
        rv(s.sign(&mismatched, rsa, &digest)),
        RvError::MechanismParamInvalid
    );
    let good = pss(MechanismType::SHA256, PkcsMgfType::MGF1_SHA256, 32);
    assert_eq!(rv(s.sign(&good, rsa, &digest[..20])), RvError::DataLenRange);
    assert_eq!(
        rv(s.sign(&Mechanism::RsaPkcs, rsa, &[0; 246])),
        RvError::DataLenRange
    );
    assert_eq!(
        rv(s.sign(&Mechanism::Sha256, rsa, &digest)),
        RvError::MechanismInvalid
    );
    // A certificate or a public key does not sign.
    let cert = find(&s, ObjectClass::CERTIFICATE, EC_ID).unwrap();
    assert_eq!(
        rv(s.sign(&Mechanism::Ecdsa, cert, &digest)),
        RvError::KeyHandleInvalid
    );
    let public = find(&s, ObjectClass::PUBLIC_KEY, EC_ID).unwrap();
    assert_eq!(
        rv(s.sign(&Mechanism::Ecdsa, public, &digest)),
        RvError::KeyFunctionNotPermitted
    );
    // After an error, the session signs again (the failed operation ended).
    assert_eq!(s.sign(&Mechanism::Ecdsa, ec, &digest).unwrap().len(), 64);

    // Logged out, the key handle asks for a login; a new session does not see the key.
    s.logout().unwrap();
    assert_eq!(
        rv(s.sign(&Mechanism::Ecdsa, ec, &digest)),
        RvError::UserNotLoggedIn
    );
    let fresh = ctx.open_ro_session(slot(0)).unwrap();
    assert!(find(&fresh, ObjectClass::PRIVATE_KEY, EC_ID).is_none());
    // Another slot's handles mean nothing here.
    login(&s, PIN).unwrap();
    let on_slot1 = ctx.open_ro_session(slot(1)).unwrap();
    assert_eq!(
        rv(on_slot1.sign(&Mechanism::Ecdsa, ec, &digest)),
        RvError::KeyHandleInvalid
    );
}

#[test]
fn pin_pad_login_waits_for_the_file() {
    let copy = Copy::new();
    let ctx = copy.load();
    let s = ctx.open_ro_session(slot(1)).unwrap();

    // The person types the PIN after a moment.
    let start = Instant::now();
    let typing = {
        let path = copy.file("pinpad-pin");
        let tmp = copy.file("pinpad-pin.typing");
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            std::fs::write(&tmp, format!("{PIN}\n")).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        })
    };
    s.login(UserType::User, None).unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "it waited for the pad"
    );
    typing.join().unwrap();
    assert!(
        !copy.file("pinpad-pin").exists(),
        "the typed PIN is consumed"
    );
    sign_every_way(&copy, &s, "signed after the PIN-pad");
    s.logout().unwrap();

    // A wrong PIN on the pad costs a try of this slot only.
    copy.put("pinpad-pin", "654321");
    assert_eq!(rv(s.login(UserType::User, None)), RvError::PinIncorrect);
    assert_eq!(pin_flags(&ctx, 1), (true, false, false));
    assert_eq!(pin_flags(&ctx, 0), (false, false, false));

    // Cancel at the pad; nobody at the pad in time.
    copy.put("pinpad-cancel", "");
    assert_eq!(rv(s.login(UserType::User, None)), RvError::FunctionCanceled);
    assert!(!copy.file("pinpad-cancel").exists());
    copy.put("pinpad-timeout-ms", "300");
    let start = Instant::now();
    assert_eq!(rv(s.login(UserType::User, None)), RvError::FunctionCanceled);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(10),
        "{waited:?}"
    );

    // The PIN can also come with the call; slot 0 has no pad.
    login(&s, PIN).unwrap();
    let s0 = ctx.open_ro_session(slot(0)).unwrap();
    assert_eq!(rv(s0.login(UserType::User, None)), RvError::ArgumentsBad);
}

#[test]
fn other_calls_go_on_while_the_pad_waits() {
    let copy = Copy::new();
    let ctx = copy.load();
    let waiting = {
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            let s = ctx.open_ro_session(slot(1)).unwrap();
            s.login(UserType::User, None)
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    // Meanwhile: another slot logs in and signs; the PIN-pad slot's certificates are read.
    let start = Instant::now();
    let s0 = ctx.open_ro_session(slot(0)).unwrap();
    login(&s0, PIN).unwrap();
    let ec = find(&s0, ObjectClass::PRIVATE_KEY, EC_ID).unwrap();
    s0.sign(&Mechanism::Ecdsa, ec, &sha256(b"meanwhile"))
        .unwrap();
    let s1 = ctx.open_ro_session(slot(1)).unwrap();
    assert!(find(&s1, ObjectClass::CERTIFICATE, RSA_ID).is_some());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(!waiting.is_finished());
    copy.put("pinpad-pin", PIN);
    waiting.join().unwrap().unwrap();
    assert_eq!(
        s1.get_session_info().unwrap().session_state(),
        SessionState::RoUser
    );
}

#[test]
fn many_threads_sign_at_once() {
    let copy = Copy::new();
    let ctx = copy.load();
    let first = ctx.open_ro_session(slot(0)).unwrap();
    login(&first, PIN).unwrap();
    let workers: Vec<_> = (0..6)
        .map(|i| {
            let ctx = ctx.clone();
            std::thread::spawn(move || {
                let s = ctx.open_ro_session(slot(0)).unwrap();
                let (id, mechanism) = if i % 2 == 0 {
                    (EC_ID, Mechanism::Ecdsa)
                } else {
                    (
                        RSA_ID,
                        pss(MechanismType::SHA256, PkcsMgfType::MGF1_SHA256, 32),
                    )
                };
                let key = find(&s, ObjectClass::PRIVATE_KEY, id).unwrap();
                (0..3)
                    .map(|n| {
                        let digest = sha256(format!("thread {i} signature {n}").as_bytes());
                        (
                            id,
                            digest.clone(),
                            s.sign(&mechanism, key, &digest).unwrap(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for w in workers {
        for (id, digest, sig) in w.join().unwrap() {
            let scheme = if id == EC_ID {
                Scheme::Ecdsa
            } else {
                Scheme::PssSha256
            };
            assert!(verifies(&copy.cert(id), scheme, &digest, &sig));
        }
    }
}

#[test]
fn hang_on_sign_holds_until_the_file_goes() {
    let copy = Copy::new();
    let ctx = copy.load();
    let s = ctx.open_ro_session(slot(0)).unwrap();
    login(&s, PIN).unwrap();
    let ec = find(&s, ObjectClass::PRIVATE_KEY, EC_ID).unwrap();
    copy.put("hang-on-sign", "");
    let digest = sha256(b"after a hang");
    let signing = {
        let digest = digest.clone();
        std::thread::spawn(move || s.sign(&Mechanism::Ecdsa, ec, &digest))
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !signing.is_finished(),
        "C_Sign hangs while the file is there"
    );
    // Meanwhile the module answers other calls.
    assert!(ctx.get_token_info(slot(0)).is_ok());
    std::fs::remove_file(copy.file("hang-on-sign")).unwrap();
    let sig = signing.join().unwrap().unwrap();
    assert!(verifies(&copy.cert(EC_ID), Scheme::Ecdsa, &digest, &sig));
}

#[test]
fn a_missing_or_broken_directory_fails_c_initialize() {
    let copy = Copy::new();
    std::fs::remove_dir_all(&copy.store).unwrap();
    let ctx = Pkcs11::new(&copy.lib).unwrap();
    let init = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    assert_eq!(rv(init), RvError::FunctionFailed);

    let copy = Copy::new();
    std::fs::write(copy.store.join("keys").join("03-junk.p8"), b"junk").unwrap();
    let ctx = Pkcs11::new(&copy.lib).unwrap();
    let init = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    assert_eq!(rv(init), RvError::FunctionFailed);
}

// ---------------------------------------------------------------------------------------------
// The crash, in a child process.

const SCENARIO: &str = "KEYPORT_SOFT_TOKEN_SCENARIO";
const SCENARIO_LIB: &str = "KEYPORT_SOFT_TOKEN_SCENARIO_LIB";

/// Run `scenario_in_child` in a child process (with `env`); its exit status and output.
fn child(
    scenario: &str,
    lib: &std::path::Path,
    env: &[(&str, &std::path::Path)],
) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "scenario_in_child",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(SCENARIO, scenario)
    .env(SCENARIO_LIB, lib)
    .env_remove("KEYPORT_SOFT_TOKEN_DIR")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run this test binary again");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child scenario {scenario} did not end within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

#[test]
fn crash_on_sign_aborts_the_process_once() {
    let copy = Copy::new();
    // The library alone in its folder: the directory comes from KEYPORT_SOFT_TOKEN_DIR.
    let alone = tempfile::tempdir().unwrap();
    let lib = alone.path().join(file_name());
    std::fs::copy(&copy.lib, &lib).unwrap();
    copy.put("crash-on-sign", "");
    let (status, out) = child("sign", &lib, &[("KEYPORT_SOFT_TOKEN_DIR", &copy.store)]);
    assert!(!status.success(), "the child survived: {status}\n{out}");
    assert!(out.contains("logged in, signing"), "{out}");
    assert!(!out.contains("signed and verified"), "{out}");
    assert!(out.contains("crash-on-sign: aborting"), "{out}");
    assert!(
        !copy.file("crash-on-sign").exists(),
        "the fault is consumed"
    );

    // The next process signs.
    let (status, out) = child("sign", &lib, &[("KEYPORT_SOFT_TOKEN_DIR", &copy.store)]);
    assert!(status.success(), "{status}\n{out}");
    assert!(out.contains("signed and verified"), "{out}");
    // Without the variable, a library with no directory beside it does not start.
    let (status, out) = child("no_dir", &lib, &[]);
    assert!(status.success(), "{status}\n{out}");
}

/// A no-op in the normal run; in a child process, the scenario `$KEYPORT_SOFT_TOKEN_SCENARIO`.
#[test]
fn scenario_in_child() {
    let Ok(scenario) = std::env::var(SCENARIO) else {
        return;
    };
    #[cfg(unix)]
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) only changes this process's flag: no core dump.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0)
    };
    let lib = std::env::var(SCENARIO_LIB).unwrap();
    let ctx = Pkcs11::new(&lib).unwrap();
    let init = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    match scenario.as_str() {
        "no_dir" => assert_eq!(rv(init), RvError::FunctionFailed),
        "sign" => {
            init.unwrap();
            let s = ctx.open_ro_session(slot(0)).unwrap();
            login(&s, PIN).unwrap();
            let key = find(&s, ObjectClass::PRIVATE_KEY, EC_ID).unwrap();
            let store = std::path::PathBuf::from(std::env::var("KEYPORT_SOFT_TOKEN_DIR").unwrap());
            let cert = std::fs::read(store.join("keys/02-ec.crt")).unwrap();
            println!("logged in, signing");
            let digest = sha256(b"crash");
            let sig = s.sign(&Mechanism::Ecdsa, key, &digest).unwrap();
            assert!(verifies(&cert, Scheme::Ecdsa, &digest, &sig));
            println!("signed and verified");
        }
        other => panic!("unknown scenario {other}"),
    }
}
