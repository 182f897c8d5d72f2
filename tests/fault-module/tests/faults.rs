//! The fault module against a real SoftHSM2 token, through cryptoki (as the agent uses it).
//!
//! Each test provisions its own token, copies the module into its own folder (the helper
//! `tests/src/fault.rs`, included below) and runs its scenario in a child process: this test
//! binary again, running only `scenario_in_child` with `KEYPORT_FAULT_SCENARIO` set. SoftHSM
//! reads `SOFTHSM2_CONF` once per process and keeps login state per process, and a crash fault
//! must kill something other than the test runner; so the tests run in parallel and never
//! change their own environment.

// The end-to-end tests use all of it; these tests use the part about faults.
#[allow(dead_code)]
#[path = "../../src/fault.rs"]
mod fault;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use fault::FaultModule;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Distinctive, so that "the PIN is not in the log" cannot pass or fail by accident.
const PIN: &str = "kpFaultPin4712";
const SCENARIO: &str = "KEYPORT_FAULT_SCENARIO";
const SCENARIO_MODULE: &str = "KEYPORT_FAULT_SCENARIO_MODULE";
const LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The tests (parent side)

#[test]
fn forwards_without_faults() {
    let t = Setup::new("");
    t.run_ok("sign");
    let calls = t.module.calls();
    let login = format!("C_Login user_type=1 pin_len={} rv=0x0", PIN.len());
    for line in [
        "C_Initialize rv=0x0",
        &login,
        "C_Sign rv=0x0",
        "C_Logout rv=0x0",
    ] {
        assert!(calls.iter().any(|c| c == line), "no {line:?} in {calls:?}");
    }
}

#[test]
fn no_control_file_means_no_faults() {
    let t = Setup::new("sign=device_error");
    std::fs::remove_file(t.module.dir.path().join("fault.conf")).unwrap();
    t.run_ok("sign");
    assert!(t.module.calls().is_empty(), "nothing asked for a log");
}

#[test]
fn logout_device_error_leaves_the_user_logged_in() {
    let t = Setup::new("logout=device_error");
    t.run_ok("logout_fails");
    t.assert_called("C_Logout rv=0x30 (injected)");
}

#[test]
fn initialize_fails() {
    let t = Setup::new("initialize=fail");
    t.run_ok("initialize_general_error");
    assert_eq!(t.module.calls(), ["C_Initialize rv=0x5 (injected)"]);
}

#[test]
fn initialize_fails_with_a_chosen_rv() {
    let t = Setup::new("initialize=0x30");
    t.run_ok("initialize_device_error");
}

#[test]
fn hidden_tokens_look_pulled() {
    let t = Setup::new("hide_tokens=1");
    t.run_ok("tokens_hidden");
    let calls = t.module.calls();
    assert!(calls
        .iter()
        .any(|c| c.starts_with("C_GetTokenInfo slot=") && c.ends_with(" rv=0xe0 (injected)")));
}

#[test]
fn pinpad_login_with_a_null_pin() {
    let t = Setup::new(&format!(
        "protected_auth_path=1\npinpad_pin={PIN}\npinpad_delay_ms=50"
    ));
    t.run_ok("pinpad");
    t.assert_called("C_Login user_type=1 pinpad rv=0x0 (injected)");
}

#[test]
fn pinpad_cancel() {
    let t = Setup::new("protected_auth_path=1\npinpad=cancel");
    t.run_ok("pinpad_cancel");
    t.assert_called("C_Login user_type=1 pinpad rv=0x50 (injected)");
}

#[test]
fn faults_switch_on_and_off_while_loaded() {
    let t = Setup::new("");
    t.run_ok("switch");
    t.assert_called("C_Sign rv=0x30 (injected)");
    t.assert_called("C_Sign rv=0xe0 (injected)");
    t.assert_called("C_FindObjectsInit rv=0xe0 (injected)");
}

#[test]
fn sign_delay() {
    let t = Setup::new("sign_delay_ms=400");
    t.run_ok("sign_slow");
}

#[test]
fn sign_segv_dies_by_sigsegv() {
    let t = Setup::new("sign=segv");
    let status = t.run("crash");
    assert_eq!(
        status.signal(),
        Some(libc::SIGSEGV),
        "{status}\n{}",
        t.output()
    );
    t.assert_called("C_Sign segv (injected)");
}

#[test]
fn sign_abort_dies_by_sigabrt() {
    let t = Setup::new("sign=abort");
    let status = t.run("crash");
    assert_eq!(
        status.signal(),
        Some(libc::SIGABRT),
        "{status}\n{}",
        t.output()
    );
    t.assert_called("C_Sign abort (injected)");
}

#[test]
fn sign_exit_exits_3() {
    let t = Setup::new("sign=exit");
    let status = t.run("crash");
    assert_eq!(status.code(), Some(3), "{status}\n{}", t.output());
    t.assert_called("C_Sign exit (injected)");
}

#[test]
fn sign_hang_never_returns() {
    let t = Setup::new("sign=hang");
    let mut child = t.spawn("crash");
    let deadline = Instant::now() + LIMIT;
    while !t
        .module
        .calls()
        .iter()
        .any(|c| c == "C_Sign hang (injected)")
    {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("ended before C_Sign: {status}\n{}", t.output());
        }
        assert!(
            Instant::now() < deadline,
            "C_Sign not reached\n{}",
            t.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(still_running, "C_Sign returned\n{}", t.output());
    t.assert_pin_never_logged();
}

// The build that exports C_GetInterface (tests/fault-module/v3), through cryptoki: a library
// whose C_GetInterface fails is loaded through its C_GetFunctionList (the vendored cryptoki's
// fallback, vendor/README.md).

#[test]
fn v3_is_loaded_through_its_3_0_interface() {
    let t = Setup::v3("");
    t.run_ok("sign_through_3_0");
    t.assert_called("C_GetInterface 3.0 rv=0x0");
}

#[test]
fn v3_whose_get_interface_is_not_supported_signs_through_get_function_list() {
    let t = Setup::v3("get_interface=not_supported");
    t.run_ok("sign_through_2_x");
    t.assert_called("C_GetInterface rv=0x54 (injected)");
}

#[test]
fn v3_whose_get_interface_fails_signs_through_get_function_list() {
    let t = Setup::v3("get_interface=device_error");
    t.run_ok("sign_through_2_x");
    t.assert_called("C_GetInterface rv=0x30 (injected)");
}

#[test]
fn v3_whose_interface_is_a_2_x_list_signs_through_get_function_list() {
    let t = Setup::v3("get_interface=v2");
    t.run_ok("sign_through_2_x");
    t.assert_called("C_GetInterface 2.x rv=0x0 (injected)");
}

/// A provisioned token and a private copy of the fault module.
struct Setup {
    token: tempfile::TempDir,
    module: FaultModule,
}

impl Setup {
    fn new(conf: &str) -> Setup {
        Self::with(FaultModule::new(), conf)
    }

    /// With the build that exports `C_GetInterface`.
    fn v3(conf: &str) -> Setup {
        Self::with(FaultModule::v3(), conf)
    }

    fn with(module: FaultModule, conf: &str) -> Setup {
        let token = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/provision-token.sh");
        let status = Command::new(script)
            .arg(token.path())
            .arg(PIN)
            .status()
            .expect("run scripts/provision-token.sh");
        assert!(status.success(), "provisioning the SoftHSM token failed");
        module.set(conf);
        Setup { token, module }
    }

    fn output_path(&self) -> PathBuf {
        self.token.path().join("child-output.txt")
    }

    /// What the child printed.
    fn output(&self) -> String {
        std::fs::read_to_string(self.output_path()).unwrap_or_default()
    }

    /// Start `scenario` in a child process with this token and module.
    fn spawn(&self, scenario: &str) -> Child {
        let out = std::fs::File::create(self.output_path()).unwrap();
        Command::new(std::env::current_exe().unwrap())
            .args(["scenario_in_child", "--exact", "--nocapture"])
            .env(SCENARIO, scenario)
            .env(SCENARIO_MODULE, self.module.path_str())
            .env("SOFTHSM2_CONF", self.token.path().join("softhsm2.conf"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("run this test binary again")
    }

    /// Run `scenario` to its end and return how it ended.
    fn run(&self, scenario: &str) -> ExitStatus {
        let mut child = self.spawn(scenario);
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{scenario} still running after {LIMIT:?}\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.assert_pin_never_logged();
        status
    }

    fn run_ok(&self, scenario: &str) {
        let status = self.run(scenario);
        assert!(status.success(), "{scenario}: {status}\n{}", self.output());
    }

    fn assert_called(&self, line: &str) {
        let calls = self.module.calls();
        assert!(calls.iter().any(|c| c == line), "no {line:?} in {calls:?}");
    }

    fn assert_pin_never_logged(&self) {
        let log = std::fs::read_to_string(self.module.log_path()).unwrap_or_default();
        assert!(!log.contains(PIN), "the PIN is in the call log:\n{log}");
    }
}

// ---------------------------------------------------------------------------------------------
// The scenarios (child side)

/// A no-op in the normal run; in a child process, the scenario `$KEYPORT_FAULT_SCENARIO`.
#[test]
fn scenario_in_child() {
    let Ok(scenario) = std::env::var(SCENARIO) else {
        return;
    };
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) only changes this process's flag: no core dumps from
    // the crash scenarios.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0) };
    let module = std::env::var(SCENARIO_MODULE).unwrap();
    let p11 = Pkcs11::new(&module).expect("load the fault module");
    let init = p11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    match scenario.as_str() {
        "initialize_general_error" => assert_eq!(rv(init), RvError::GeneralError),
        "initialize_device_error" => assert_eq!(rv(init), RvError::DeviceError),
        _ => {
            init.unwrap();
            run_scenario(&scenario, &p11, Path::new(&module));
        }
    }
}

fn run_scenario(scenario: &str, p11: &Pkcs11, module: &Path) {
    let pin = AuthPin::from(PIN);
    match scenario {
        "sign" => {
            let session = p11.open_ro_session(demo_slot(p11)).unwrap();
            session.login(UserType::User, Some(&pin)).unwrap();
            assert_eq!(sign_p256(&session).unwrap().len(), 64);
            session.logout().unwrap();
        }
        "sign_slow" => {
            let session = p11.open_ro_session(demo_slot(p11)).unwrap();
            session.login(UserType::User, Some(&pin)).unwrap();
            let start = Instant::now();
            sign_p256(&session).unwrap();
            assert!(start.elapsed() >= Duration::from_millis(400));
        }
        "logout_fails" => {
            let slot = demo_slot(p11);
            let session = p11.open_ro_session(slot).unwrap();
            session.login(UserType::User, Some(&pin)).unwrap();
            assert_eq!(rv(session.logout()), RvError::DeviceError);
            let fresh = p11.open_ro_session(slot).unwrap();
            let state = fresh.get_session_info().unwrap().session_state();
            assert_eq!(state, SessionState::RoUser);
            assert_eq!(
                sign_p256(&fresh).unwrap().len(),
                64,
                "signs without a login"
            );
        }
        "tokens_hidden" => {
            assert!(p11.get_slots_with_token().unwrap().is_empty());
            let all = p11.get_all_slots().unwrap();
            assert!(!all.is_empty(), "the readers stay");
            for slot in all {
                assert!(!p11.get_slot_info(slot).unwrap().token_present());
                assert_eq!(rv(p11.get_token_info(slot)), RvError::TokenNotPresent);
                assert_eq!(rv(p11.open_ro_session(slot)), RvError::TokenNotPresent);
            }
        }
        "pinpad" => {
            let slot = demo_slot(p11);
            assert!(p11
                .get_token_info(slot)
                .unwrap()
                .protected_authentication_path());
            let session = p11.open_ro_session(slot).unwrap();
            session.login(UserType::User, None).unwrap();
            assert_eq!(sign_p256(&session).unwrap().len(), 64);
        }
        "pinpad_cancel" => {
            let session = p11.open_ro_session(demo_slot(p11)).unwrap();
            let login = session.login(UserType::User, None);
            assert_eq!(rv(login), RvError::FunctionCanceled);
            let state = session.get_session_info().unwrap().session_state();
            assert_eq!(state, SessionState::RoPublic);
        }
        "switch" => {
            let session = p11.open_ro_session(demo_slot(p11)).unwrap();
            session.login(UserType::User, Some(&pin)).unwrap();
            let key = find_p256(&session).unwrap();
            let sign = |s: &Session| s.sign(&Mechanism::Ecdsa, key, &[0x5a; 32]);
            sign(&session).unwrap();
            set_conf(module, "sign=device_error");
            assert_eq!(rv(sign(&session)), RvError::DeviceError);
            set_conf(module, "hide_tokens=1");
            assert!(p11.get_slots_with_token().unwrap().is_empty());
            assert_eq!(rv(sign(&session)), RvError::TokenNotPresent);
            assert_eq!(rv(find_p256(&session)), RvError::TokenNotPresent);
            set_conf(module, "");
            // The failed C_Sign calls ended their operations: a new one starts.
            assert_eq!(sign(&session).unwrap().len(), 64);
        }
        // The 3.0 list has C_GetInterface; the 2.x list (C_GetFunctionList's) has not.
        "sign_through_3_0" | "sign_through_2_x" => {
            let v3 = p11.is_fn_supported(Function::GetInterface);
            assert_eq!(
                v3,
                scenario == "sign_through_3_0",
                "which list cryptoki uses"
            );
            run_scenario("sign", p11, module);
        }
        "crash" => {
            let session = p11.open_ro_session(demo_slot(p11)).unwrap();
            session.login(UserType::User, Some(&pin)).unwrap();
            let result = sign_p256(&session);
            panic!("C_Sign returned: {result:?}");
        }
        other => panic!("no scenario {other}"),
    }
}

/// The slot of the token `keyport-demo` (SoftHSM gives tokens random slot ids).
fn demo_slot(p11: &Pkcs11) -> Slot {
    let slots = p11.get_slots_with_token().unwrap();
    *slots
        .iter()
        .find(|s| p11.get_token_info(**s).unwrap().label() == "keyport-demo")
        .expect("token keyport-demo")
}

/// The P-256 private key (id 02).
fn find_p256(session: &Session) -> cryptoki::error::Result<ObjectHandle> {
    let template = [
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::Id(vec![2]),
    ];
    Ok(*session.find_objects(&template)?.first().expect("key id 02"))
}

/// ECDSA with the P-256 key over a dummy SHA-256 digest: raw r||s, 64 bytes.
fn sign_p256(session: &Session) -> cryptoki::error::Result<Vec<u8>> {
    session.sign(&Mechanism::Ecdsa, find_p256(session)?, &[0x5a; 32])
}

/// The PKCS #11 error of a call that must fail.
fn rv<T: std::fmt::Debug>(result: cryptoki::error::Result<T>) -> RvError {
    match result {
        Err(Error::Pkcs11(rv, _)) => rv,
        other => panic!("expected a PKCS #11 error, got {other:?}"),
    }
}

/// From inside the child: replace the module's `fault.conf` (as `FaultModule::set` does).
fn set_conf(module: &Path, conf: &str) {
    let dir = module.parent().unwrap();
    let log = dir.join("calls.log");
    let tmp = dir.join("fault.conf.tmp");
    std::fs::write(&tmp, format!("{conf}\nlog={}\n", log.display())).unwrap();
    std::fs::rename(&tmp, dir.join("fault.conf")).unwrap();
}
