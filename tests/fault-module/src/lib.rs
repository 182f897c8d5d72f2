//! A fault-injecting PKCS #11 module, for tests only.
//!
//! `libkeyport_fault_module.so` is a real PKCS #11 module. Its `C_GetFunctionList` loads the
//! target module (SoftHSM2 by default), copies the target's function list and replaces a few
//! entries with wrappers. A wrapper forwards to the real function unless the control file asks
//! for a fault; every other entry is the target's own function.
//!
//! # Control file
//!
//! `fault.conf` in the directory of the loaded `.so` (found with `dladdr`). A test copies the
//! `.so` into its own temporary folder and writes `fault.conf` beside it: no environment
//! variable, and parallel tests cannot see each other's faults. The file is read again on every
//! intercepted call, so a test can switch a fault on and off while the module is in use (write
//! it atomically: temporary file + rename). No file means no fault.
//!
//! One `key=value` per line; lines starting with `#` and blank lines are ignored. Unknown keys and
//! bad values are reported on stderr (never with the value) and otherwise ignored.
//!
//! | key | effect |
//! |---|---|
//! | `target=/path/module.so` | the real module, read once at the first `C_GetFunctionList` (default `/usr/lib/softhsm/libsofthsm2.so`) |
//! | `initialize=fail` or `=<rv>` | `C_Initialize` returns CKR_GENERAL_ERROR (or that rv) without calling the real one |
//! | `initialize=segv` / `abort` / `exit` / `hang` | `C_Initialize` crashes, exits with code 3, or sleeps forever (a module that dies at start) |
//! | `initialize_delay_ms=N` | `C_Initialize` sleeps N ms first |
//! | `softhsm_conf=PATH` | read once, before the real module loads: sets `SOFTHSM2_CONF` in this process, so this copy of the module serves its own token store |
//! | `logout=device_error` or `=<rv>` | `C_Logout` returns CKR_DEVICE_ERROR (or that rv) without calling the real one: the token stays logged in |
//! | `sign=segv` | `C_Sign` writes to address 8 (page zero): the process dies by SIGSEGV |
//! | `sign=abort` | `C_Sign` calls `std::process::abort` (SIGABRT) |
//! | `sign=exit` | `C_Sign` calls `std::process::exit(3)` |
//! | `sign=hang` | `C_Sign` sleeps forever |
//! | `sign=device_error` or `=<rv>` | `C_Sign` returns CKR_DEVICE_ERROR (or that rv); the real operation is ended (signed and thrown away), as a failed C_Sign ends it |
//! | `sign_delay_ms=N` | `C_Sign` sleeps N ms before forwarding a call with a signature buffer (not the length query with a NULL buffer, so one signature costs one delay whether the caller asks for the length first or not) |
//! | `token_info=segv` / `abort` / `exit` / `hang` or `=<rv>` | `C_GetTokenInfo` crashes, exits, hangs or returns that rv (a library that dies on a request) |
//! | `protected_auth_path=1` | `C_GetTokenInfo` adds CKF_PROTECTED_AUTHENTICATION_PATH; `C_Login` with a NULL PIN acts as a PIN-pad (next three keys) |
//! | `pinpad_pin=PIN` | the PIN "typed on the PIN-pad": passed to the real `C_Login` |
//! | `pinpad=cancel` | the person cancels on the PIN-pad: `C_Login` returns CKR_FUNCTION_CANCELED |
//! | `pinpad_delay_ms=N` | the PIN-pad takes N ms before the PIN or the cancel |
//! | `hide_tokens=1` | a pulled card: `C_GetSlotList(tokenPresent=TRUE)` returns no slot, `C_GetSlotInfo` clears CKF_TOKEN_PRESENT, `C_GetTokenInfo`, `C_OpenSession`, `C_Login`, `C_FindObjectsInit` and `C_Sign` return CKR_TOKEN_NOT_PRESENT; sessions stay valid, so once the key is removed the card is back as it was |
//! | `token_epoch=N` | a card pulled out and put back: the first intercepted call that sees a new `N` closes every session of the real module (which logs its tokens out, as a card losing power does), so every handle from before is stale. With `hide_tokens` this models the whole cycle: `hide_tokens=1` + a new epoch (pulled), then `hide_tokens=0` (back) |
//! | `slot_events=1` | `C_WaitForSlotEvent` works (else it is the real module's: SoftHSM has none): a change of `hide_tokens` or `token_epoch` is an event for every slot of the real module. Blocking waits look at the control file every 10 ms and end with CKR_CRYPTOKI_NOT_INITIALIZED at `C_Finalize`; `CKF_DONT_BLOCK` answers CKR_NO_EVENT when nothing changed |
//! | `no_pss=1` | a token without RSA-PSS: `C_GetMechanismList` leaves out CKM_RSA_PKCS_PSS |
//! | `call_delay_ms=N` | every token call (each intercepted function but `C_Initialize`, `C_Finalize` and `C_WaitForSlotEvent`) sleeps N ms first: a slow card, where each call is one or more APDUs |
//! | `log_all=1` | also log the token calls this module only passes on (`C_GetInfo`, `C_GetSessionInfo`, `C_CloseSession`, `C_CloseAllSessions`, `C_FindObjects`, `C_FindObjectsFinal`, `C_GetAttributeValue`, `C_SignInit`, `C_GetMechanismInfo`): with `log=`, one line per PKCS #11 call the caller made, to count them |
//! | `sign_too_small=1` | the first `C_Sign` with a buffer after each `C_SignInit` answers CKR_BUFFER_TOO_SMALL without saying the length it needs (as some libraries do); the operation goes on, as PKCS #11 says it does |
//! | `log=/abs/path` | append one line per intercepted call, e.g. `C_Login user_type=1 pin_len=8 rv=0x0`, `C_Logout rv=0x30 (injected)`, `C_Sign segv (injected)`; never a PIN |
//! | `get_interface=<rv>` | (the `-v3` build only, see below) `C_GetInterface` and `C_GetInterfaceList` return that rv (`not_supported` is CKR_FUNCTION_NOT_SUPPORTED, as a Thales Luna library with old firmware answers); `C_GetFunctionList` still serves the 2.x list |
//! | `get_interface=v2` | (the `-v3` build only) the default interface is the 2.x function list (version 2.40), not the 3.0 one |
//!
//! `<rv>` is hexadecimal, with or without `0x` (`initialize=0x30`); booleans are `1` or `0`.
//! Without `pinpad_pin` or `pinpad=cancel`, a NULL PIN goes to the real module unchanged.
//! A fault has priority over a delay; `hide_tokens` has priority over everything.
//!
//! Intercepted: `C_Initialize`, `C_Finalize`, `C_GetSlotList`, `C_GetSlotInfo`,
//! `C_GetTokenInfo`, `C_OpenSession`, `C_Login`, `C_Logout`, `C_FindObjectsInit`, `C_Sign`,
//! `C_WaitForSlotEvent` (and `C_GetFunctionList`, which returns this module's list); passed on,
//! but delayed by `call_delay_ms` and logged with `log_all=1`: the functions listed there.
//!
//! # Two builds: with and without `C_GetInterface`
//!
//! Whether a library exports `C_GetInterface` is a symbol, fixed when it is linked, not
//! something a control file can switch. So there are two `.so` files with the same code:
//!
//! * `libkeyport_fault_module.so` (this crate) exports `C_GetFunctionList` only: a PKCS #11 2.x
//!   library, which every caller loads through `C_GetFunctionList`.
//! * `libkeyport_fault_module_v3.so` (`tests/fault-module/v3`, a cdylib of a few lines over this
//!   crate) also exports `C_GetInterface` and `C_GetInterfaceList`, which [`get_interface`] and
//!   [`get_interface_list`] answer: by default the interface "PKCS 11" 3.0 (this module's list
//!   with the 3.0 functions absent), or, for a 2.x version, the 2.x list; `get_interface=` makes
//!   them fail or serve the 2.x list, while `C_GetFunctionList` keeps working, as real libraries
//!   that export a `C_GetInterface` they cannot serve do.
//!
//! Wrappers never let a panic cross the FFI boundary (it becomes CKR_GENERAL_ERROR); the crash
//! faults do not unwind, they end the process on purpose.

#![deny(unsafe_op_in_unsafe_fn)]

use cryptoki_sys::*;
use std::collections::VecDeque;
use std::ffi::{c_void, CStr, OsStr};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The real module when the control file names none.
pub const DEFAULT_TARGET: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The control file's name, in the directory of the loaded `.so`.
pub const CONTROL_FILE: &str = "fault.conf";

/// What `sign=` asks of `C_Sign`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignFault {
    Segv,
    Abort,
    Exit,
    Hang,
    /// Return this rv without signing.
    Return(CK_RV),
}

/// The faults a control file asks for (the default: none).
#[derive(Clone, Default)]
pub struct Faults {
    pub target: Option<PathBuf>,
    pub softhsm_conf: Option<PathBuf>,
    pub initialize: Option<CK_RV>,
    pub initialize_crash: Option<SignFault>,
    pub initialize_delay_ms: u64,
    pub logout: Option<CK_RV>,
    pub sign: Option<SignFault>,
    pub sign_delay_ms: u64,
    pub token_info: Option<SignFault>,
    pub protected_auth_path: bool,
    pub pinpad_pin: Option<String>,
    pub pinpad_cancel: bool,
    pub pinpad_delay_ms: u64,
    pub hide_tokens: bool,
    pub token_epoch: u64,
    pub slot_events: bool,
    pub no_pss: bool,
    pub log: Option<PathBuf>,
    pub log_all: bool,
    pub call_delay_ms: u64,
    pub sign_too_small: bool,
    pub get_interface: Option<InterfaceFault>,
}

/// What `get_interface=` asks of `C_GetInterface` and `C_GetInterfaceList` (the `-v3` build).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterfaceFault {
    /// Return this rv.
    Return(CK_RV),
    /// Serve the 2.x function list as the default interface.
    V2,
}

impl Faults {
    /// Parse a control file. The problems found (unknown keys, bad values) name the line and
    /// the key, never the value.
    pub fn parse(text: &str) -> (Faults, Vec<String>) {
        let mut f = Faults::default();
        let mut problems = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                problems.push(format!("line {}: no '='", i + 1));
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            let ok = match key {
                "target" => put(&mut f.target, Some(Some(value.into()))),
                "softhsm_conf" => put(&mut f.softhsm_conf, Some(Some(value.into()))),
                "initialize" => match parse_sign(value) {
                    Some(SignFault::Return(rv)) => put(&mut f.initialize, Some(Some(rv))),
                    crash @ Some(_) => put(&mut f.initialize_crash, Some(crash)),
                    None => false,
                },
                "initialize_delay_ms" => put(&mut f.initialize_delay_ms, value.parse().ok()),
                "logout" => put(&mut f.logout, parse_rv(value).map(Some)),
                "sign" => put(&mut f.sign, parse_sign(value).map(Some)),
                "sign_delay_ms" => put(&mut f.sign_delay_ms, value.parse().ok()),
                "token_info" => put(&mut f.token_info, parse_sign(value).map(Some)),
                "protected_auth_path" => put(&mut f.protected_auth_path, parse_bool(value)),
                "pinpad_pin" => put(&mut f.pinpad_pin, Some(Some(value.to_string()))),
                "pinpad" => put(&mut f.pinpad_cancel, parse_pinpad(value)),
                "pinpad_delay_ms" => put(&mut f.pinpad_delay_ms, value.parse().ok()),
                "hide_tokens" => put(&mut f.hide_tokens, parse_bool(value)),
                "token_epoch" => put(&mut f.token_epoch, value.parse().ok()),
                "slot_events" => put(&mut f.slot_events, parse_bool(value)),
                "no_pss" => put(&mut f.no_pss, parse_bool(value)),
                "log" => put(&mut f.log, Some(Some(value.into()))),
                "log_all" => put(&mut f.log_all, parse_bool(value)),
                "call_delay_ms" => put(&mut f.call_delay_ms, value.parse().ok()),
                "sign_too_small" => put(&mut f.sign_too_small, parse_bool(value)),
                "get_interface" => put(&mut f.get_interface, parse_interface(value).map(Some)),
                _ => {
                    problems.push(format!("line {}: unknown key {key:?}", i + 1));
                    continue;
                }
            };
            if !ok {
                problems.push(format!("line {}: bad value for {key}", i + 1));
            }
        }
        (f, problems)
    }

    /// The faults `fault.conf` beside this module asks for now (none if there is no such file),
    /// after acting on a new `token_epoch` (see [`observe`]).
    pub fn load() -> Faults {
        let f = Self::read();
        observe(&f);
        f
    }

    fn read() -> Faults {
        let Some(path) = control_file() else {
            return Faults::default();
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return Faults::default();
        };
        let (faults, problems) = Faults::parse(&text);
        for p in problems {
            warn(&format!("{}: {p}", path.display()));
        }
        faults
    }

    /// Append `line` to the `log=` file, if any, in one write (readers never see half a line).
    fn log(&self, line: &str) {
        let Some(path) = &self.log else { return };
        let line = format!("{line}\n");
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = file.write_all(line.as_bytes());
        }
    }

    /// Log `call` (with `detail`) and its rv; returns `rv`.
    fn report(&self, call: &str, detail: &str, rv: CK_RV, injected: bool) -> CK_RV {
        let sep = if detail.is_empty() { "" } else { " " };
        let tag = if injected { " (injected)" } else { "" };
        self.log(&format!("{call}{sep}{detail} rv={rv:#x}{tag}"));
        rv
    }
}

fn put<T>(slot: &mut T, value: Option<T>) -> bool {
    match value {
        Some(v) => {
            *slot = v;
            true
        }
        None => false,
    }
}

/// `fail`, `device_error`, `not_supported`, or a hexadecimal rv (`0x30`, `30`).
pub fn parse_rv(value: &str) -> Option<CK_RV> {
    match value {
        "fail" => Some(CKR_GENERAL_ERROR),
        "device_error" => Some(CKR_DEVICE_ERROR),
        "not_supported" => Some(CKR_FUNCTION_NOT_SUPPORTED),
        hex => {
            let hex = hex
                .strip_prefix("0x")
                .or_else(|| hex.strip_prefix("0X"))
                .unwrap_or(hex);
            CK_RV::from_str_radix(hex, 16).ok()
        }
    }
}

fn parse_sign(value: &str) -> Option<SignFault> {
    Some(match value {
        "segv" => SignFault::Segv,
        "abort" => SignFault::Abort,
        "exit" => SignFault::Exit,
        "hang" => SignFault::Hang,
        rv => SignFault::Return(parse_rv(rv)?),
    })
}

/// `v2`, or an rv as [`parse_rv`] reads it.
fn parse_interface(value: &str) -> Option<InterfaceFault> {
    match value {
        "v2" => Some(InterfaceFault::V2),
        rv => parse_rv(rv).map(InterfaceFault::Return),
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// `pinpad=cancel` (true) or `pinpad=ok` (false: type `pinpad_pin`).
fn parse_pinpad(value: &str) -> Option<bool> {
    match value {
        "cancel" => Some(true),
        "ok" => Some(false),
        _ => None,
    }
}

fn warn(message: &str) {
    let _ = writeln!(std::io::stderr(), "keyport-fault-module: {message}");
}

/// What a wrapped token call does first: read the control file (acting on a new epoch), then
/// wait `call_delay_ms`.
fn enter() -> Faults {
    let f = Faults::load();
    sleep_ms(f.call_delay_ms);
    f
}

fn sleep_ms(ms: u64) {
    if ms > 0 {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// `fault.conf` beside the file this code was loaded from.
fn control_file() -> Option<&'static Path> {
    static PATH: OnceLock<Option<PathBuf>> = OnceLock::new();
    PATH.get_or_init(|| {
        let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
        let me = C_GetFunctionList as *const c_void;
        // SAFETY: dladdr only reads the address (a function of this library) and fills `info`.
        if unsafe { libc::dladdr(me, info.as_mut_ptr()) } == 0 {
            return None;
        }
        // SAFETY: dladdr succeeded, so it initialised `info` (and all-zero was valid anyway).
        let info = unsafe { info.assume_init() };
        if info.dli_fname.is_null() {
            return None;
        }
        // SAFETY: dli_fname is a NUL-terminated string owned by the loader, alive while we are.
        let file = unsafe { CStr::from_ptr(info.dli_fname) };
        // Absolute, not canonical: a symlinked .so reads the fault.conf beside the link.
        let file = std::path::absolute(Path::new(OsStr::from_bytes(file.to_bytes()))).ok()?;
        Some(file.parent()?.join(CONTROL_FILE))
    })
    .as_deref()
}

/// The loaded target: its function list, and ours (a copy with some entries replaced).
struct Module {
    /// Never unloaded: the function pointers below point into it.
    _lib: libloading::Library,
    real: CK_FUNCTION_LIST,
    ours: CK_FUNCTION_LIST,
}

static MODULE: OnceLock<Result<Module, String>> = OnceLock::new();

fn load_module() -> Result<Module, String> {
    let faults = Faults::read();
    if let Some(conf) = &faults.softhsm_conf {
        // Before the real module loads (SoftHSM reads it in C_Initialize). The module host
        // loads us before it starts any thread that reads the environment.
        std::env::set_var("SOFTHSM2_CONF", conf);
    }
    let target = faults
        .target
        .unwrap_or_else(|| PathBuf::from(DEFAULT_TARGET));
    let shown = target.display();
    // SAFETY: loading a PKCS #11 module runs its initialisers, which is what we are asked to do.
    let lib = unsafe { libloading::Library::new(&target) }.map_err(|e| format!("{shown}: {e}"))?;
    let mut list: CK_FUNCTION_LIST_PTR = ptr::null_mut();
    {
        // SAFETY: every PKCS #11 module exports C_GetFunctionList with this signature.
        let get = unsafe {
            lib.get::<unsafe extern "C" fn(CK_FUNCTION_LIST_PTR_PTR) -> CK_RV>(
                b"C_GetFunctionList\0",
            )
        }
        .map_err(|e| format!("{shown}: {e}"))?;
        // SAFETY: `list` is a valid place for the module to write its list's address.
        let rv = unsafe { get(&mut list) };
        if rv != CKR_OK || list.is_null() {
            return Err(format!("{shown}: C_GetFunctionList returned {rv:#x}"));
        }
    }
    // SAFETY: the module returned a non-NULL pointer to its function list, valid while loaded.
    let real = unsafe { *list };
    let mut ours = real;
    ours.C_GetFunctionList = Some(C_GetFunctionList);
    ours.C_Initialize = Some(initialize);
    ours.C_GetSlotList = Some(get_slot_list);
    ours.C_GetSlotInfo = Some(get_slot_info);
    ours.C_GetTokenInfo = Some(get_token_info);
    ours.C_OpenSession = Some(open_session);
    ours.C_Login = Some(login);
    ours.C_Logout = Some(logout);
    ours.C_FindObjectsInit = Some(find_objects_init);
    ours.C_Sign = Some(sign);
    ours.C_Finalize = Some(finalize);
    ours.C_GetMechanismList = Some(get_mechanism_list);
    ours.C_WaitForSlotEvent = Some(wait_for_slot_event);
    ours.C_GetInfo = Some(get_info);
    ours.C_GetSessionInfo = Some(get_session_info);
    ours.C_CloseSession = Some(close_session);
    ours.C_CloseAllSessions = Some(close_all_sessions);
    ours.C_FindObjects = Some(find_objects);
    ours.C_FindObjectsFinal = Some(find_objects_final);
    ours.C_GetAttributeValue = Some(get_attribute_value);
    ours.C_SignInit = Some(sign_init);
    ours.C_GetMechanismInfo = Some(get_mechanism_info);
    Ok(Module {
        _lib: lib,
        real,
        ours,
    })
}

/// The real module's function list (the wrappers are only reachable once it is loaded).
fn real() -> &'static CK_FUNCTION_LIST {
    match MODULE.get() {
        Some(Ok(m)) => &m.real,
        _ => panic!("a wrapper was called before the target module was loaded"),
    }
}

/// Call the real module's function `$name`, or CKR_FUNCTION_NOT_SUPPORTED if it has none.
macro_rules! forward {
    ($name:ident($($arg:expr),*)) => {
        match real().$name {
            // SAFETY: the real module's own entry point, with arguments PKCS #11 allows: the
            // caller's, unchanged, or (PIN-pad login) a live buffer of ours.
            Some(f) => unsafe { f($($arg),*) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    };
}

/// Run a wrapper's body; a panic becomes CKR_GENERAL_ERROR instead of crossing the FFI boundary.
fn guard(body: impl FnOnce() -> CK_RV) -> CK_RV {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(CKR_GENERAL_ERROR)
}

/// Entry point: load the target module (once) and return this module's function list.
///
/// # Safety
///
/// `list` must be NULL or valid for a write (the PKCS #11 contract). The list returned must not
/// be written to.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_GetFunctionList(list: CK_FUNCTION_LIST_PTR_PTR) -> CK_RV {
    guard(|| {
        if list.is_null() {
            return CKR_ARGUMENTS_BAD;
        }
        match MODULE.get_or_init(load_module) {
            Ok(m) => {
                // SAFETY: `list` is non-NULL and, by contract, valid for a write.
                unsafe { *list = &m.ours as *const CK_FUNCTION_LIST as CK_FUNCTION_LIST_PTR };
                CKR_OK
            }
            Err(e) => {
                warn(e);
                CKR_GENERAL_ERROR
            }
        }
    })
}

/// The interface name PKCS #11 3.0 defines.
const INTERFACE_NAME: &CStr = c"PKCS 11";

/// `[the 3.0 interface, the 2.x interface]` of the `-v3` build, made once the target is
/// loaded: the 3.0 one is this module's list with the 3.0-only functions absent (NULL, which
/// PKCS #11 allows) and `C_GetInterface` / `C_GetInterfaceList` present.
fn interfaces() -> Result<&'static [CK_INTERFACE; 2], CK_RV> {
    struct Shared(&'static [CK_INTERFACE; 2]);
    // SAFETY: the pointers inside point to data that lives as long as the process (a static
    // name, leaked lists, the loaded module's list) and is never written again.
    unsafe impl Send for Shared {}
    // SAFETY: as above: nothing behind the pointers changes.
    unsafe impl Sync for Shared {}
    static INTERFACES: OnceLock<Shared> = OnceLock::new();
    let m = match MODULE.get_or_init(load_module) {
        Ok(m) => m,
        Err(e) => {
            warn(e);
            return Err(CKR_GENERAL_ERROR);
        }
    };
    let shared = INTERFACES.get_or_init(|| {
        let mut v3 = CK_FUNCTION_LIST_3_0::default();
        // SAFETY: a 3.0 list begins with the 2.x list's fields in the same order (PKCS #11 3.0,
        // CK_FUNCTION_LIST_3_0): this copies our 2.x list into that prefix.
        unsafe {
            ptr::copy_nonoverlapping(
                &m.ours,
                &mut v3 as *mut CK_FUNCTION_LIST_3_0 as *mut CK_FUNCTION_LIST,
                1,
            )
        };
        v3.version = CK_VERSION { major: 3, minor: 0 };
        v3.C_GetInterfaceList = Some(get_interface_list);
        v3.C_GetInterface = Some(get_interface);
        let v3: &'static CK_FUNCTION_LIST_3_0 = Box::leak(Box::new(v3));
        let name = INTERFACE_NAME.as_ptr() as *mut CK_UTF8CHAR;
        let interface = |list: *const c_void| CK_INTERFACE {
            pInterfaceName: name,
            pFunctionList: list as *mut c_void,
            flags: 0,
        };
        Shared(Box::leak(Box::new([
            interface(v3 as *const CK_FUNCTION_LIST_3_0 as *const c_void),
            interface(&m.ours as *const CK_FUNCTION_LIST as *const c_void),
        ])))
    });
    Ok(shared.0)
}

/// `C_GetInterface` of the `-v3` build (which exports it under that name): the default
/// interface, or the one of the version asked for (3.x or 2.x), unless `get_interface=` says
/// otherwise.
///
/// # Safety
///
/// The PKCS #11 contract: `name` NULL or a NUL-terminated string, `version` NULL or valid for
/// a read, `interface` NULL or valid for a write.
pub unsafe extern "C" fn get_interface(
    name: CK_UTF8CHAR_PTR,
    version: CK_VERSION_PTR,
    interface: CK_INTERFACE_PTR_PTR,
    _flags: CK_FLAGS,
) -> CK_RV {
    guard(|| {
        let f = Faults::read();
        let v2 = match f.get_interface {
            Some(InterfaceFault::Return(rv)) => return f.report("C_GetInterface", "", rv, true),
            Some(InterfaceFault::V2) => true,
            None => false,
        };
        if interface.is_null() {
            return f.report("C_GetInterface", "", CKR_ARGUMENTS_BAD, false);
        }
        // SAFETY: `name`, when not NULL, is a NUL-terminated string (the contract).
        if !name.is_null()
            && unsafe { CStr::from_ptr(name as *const std::ffi::c_char) } != INTERFACE_NAME
        {
            return f.report("C_GetInterface", "name", CKR_ARGUMENTS_BAD, false);
        }
        // SAFETY: `version`, when not NULL, is valid for a read (the contract).
        let major = (!version.is_null()).then(|| unsafe { (*version).major });
        let all = match interfaces() {
            Ok(all) => all,
            Err(rv) => return f.report("C_GetInterface", "", rv, false),
        };
        let chosen = match (major, v2) {
            (None, false) | (Some(3), false) => &all[0],
            (None, true) | (Some(2), _) => &all[1],
            _ => return f.report("C_GetInterface", "version", CKR_ARGUMENTS_BAD, false),
        };
        // SAFETY: `interface` is non-NULL and, by contract, valid for a write; `chosen` lives as
        // long as the process.
        unsafe { *interface = chosen as *const CK_INTERFACE as *mut CK_INTERFACE };
        let detail = if std::ptr::eq(chosen, &all[0]) {
            "3.0"
        } else {
            "2.x"
        };
        f.report("C_GetInterface", detail, CKR_OK, v2)
    })
}

/// `C_GetInterfaceList` of the `-v3` build: both interfaces (only the 2.x one with
/// `get_interface=v2`), or the rv `get_interface=` asks for.
///
/// # Safety
///
/// The PKCS #11 contract: `count` NULL or valid for reads and writes; `list`, when not NULL,
/// valid for `*count` entries.
pub unsafe extern "C" fn get_interface_list(list: CK_INTERFACE_PTR, count: CK_ULONG_PTR) -> CK_RV {
    guard(|| {
        let f = Faults::read();
        let offered = match f.get_interface {
            Some(InterfaceFault::Return(rv)) => {
                return f.report("C_GetInterfaceList", "", rv, true)
            }
            Some(InterfaceFault::V2) => 1..2,
            None => 0..2,
        };
        if count.is_null() {
            return f.report("C_GetInterfaceList", "", CKR_ARGUMENTS_BAD, false);
        }
        let all = match interfaces() {
            Ok(all) => all,
            Err(rv) => return f.report("C_GetInterfaceList", "", rv, false),
        };
        let offered = &all[offered];
        let n = offered.len() as CK_ULONG;
        // SAFETY: `count` is non-NULL and valid for reads and writes; `list`, when not NULL,
        // holds `*count` entries (the contract).
        let rv = unsafe {
            if !list.is_null() && *count < n {
                CKR_BUFFER_TOO_SMALL
            } else {
                if !list.is_null() {
                    ptr::copy_nonoverlapping(offered.as_ptr(), list, offered.len());
                }
                CKR_OK
            }
        };
        // SAFETY: as above.
        unsafe { *count = n };
        f.report("C_GetInterfaceList", "", rv, false)
    })
}

/// Token calls this module only passes on: delayed by `call_delay_ms`, logged with `log_all=1`.
macro_rules! passed_on {
    ($(fn $wrapper:ident = $name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        unsafe extern "C" fn $wrapper($($arg: $ty),*) -> CK_RV {
            guard(|| {
                let f = enter();
                let rv = forward!($name($($arg),*));
                if f.log_all {
                    f.report(stringify!($name), "", rv, false);
                }
                rv
            })
        }
    )*};
}

passed_on! {
    fn get_info = C_GetInfo(info: CK_INFO_PTR);
    fn get_session_info = C_GetSessionInfo(session: CK_SESSION_HANDLE, info: CK_SESSION_INFO_PTR);
    fn close_session = C_CloseSession(session: CK_SESSION_HANDLE);
    fn close_all_sessions = C_CloseAllSessions(slot: CK_SLOT_ID);
    fn find_objects = C_FindObjects(
        session: CK_SESSION_HANDLE,
        objects: CK_OBJECT_HANDLE_PTR,
        max: CK_ULONG,
        count: CK_ULONG_PTR
    );
    fn find_objects_final = C_FindObjectsFinal(session: CK_SESSION_HANDLE);
    fn get_attribute_value = C_GetAttributeValue(
        session: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
        template: CK_ATTRIBUTE_PTR,
        count: CK_ULONG
    );
    fn get_mechanism_info = C_GetMechanismInfo(
        slot: CK_SLOT_ID,
        kind: CK_MECHANISM_TYPE,
        info: CK_MECHANISM_INFO_PTR
    );
}

unsafe extern "C" fn initialize(args: *mut c_void) -> CK_RV {
    guard(|| {
        let f = Faults::load();
        sleep_ms(f.initialize_delay_ms);
        if let Some(crash) = f.initialize_crash {
            f.log(&format!("C_Initialize {} (injected)", crash_name(crash)));
            self_destruct(crash)
        }
        if let Some(rv) = f.initialize {
            return f.report("C_Initialize", "", rv, true);
        }
        let rv = forward!(C_Initialize(args));
        if rv == CKR_OK {
            FINALIZED.store(false, Ordering::SeqCst);
        }
        f.report("C_Initialize", "", rv, false)
    })
}

unsafe extern "C" fn get_slot_list(
    token_present: CK_BBOOL,
    slots: CK_SLOT_ID_PTR,
    count: CK_ULONG_PTR,
) -> CK_RV {
    guard(|| {
        let f = enter();
        let detail = format!("token_present={token_present}");
        if f.hide_tokens && token_present != CK_FALSE {
            if count.is_null() {
                return f.report("C_GetSlotList", &detail, CKR_ARGUMENTS_BAD, true);
            }
            // SAFETY: `count` is non-NULL and, by contract, valid for a write.
            unsafe { *count = 0 };
            return f.report("C_GetSlotList", &detail, CKR_OK, true);
        }
        let rv = forward!(C_GetSlotList(token_present, slots, count));
        f.report("C_GetSlotList", &detail, rv, false)
    })
}

unsafe extern "C" fn get_slot_info(slot: CK_SLOT_ID, info: CK_SLOT_INFO_PTR) -> CK_RV {
    guard(|| {
        let f = enter();
        let rv = forward!(C_GetSlotInfo(slot, info));
        if rv == CKR_OK && f.hide_tokens && !info.is_null() {
            // SAFETY: the real module just filled `*info`, a caller's valid CK_SLOT_INFO.
            unsafe { (*info).flags &= !CKF_TOKEN_PRESENT };
        }
        f.report("C_GetSlotInfo", &format!("slot={slot}"), rv, f.hide_tokens)
    })
}

unsafe extern "C" fn get_token_info(slot: CK_SLOT_ID, info: CK_TOKEN_INFO_PTR) -> CK_RV {
    guard(|| {
        let f = enter();
        let detail = format!("slot={slot}");
        if f.hide_tokens {
            return f.report("C_GetTokenInfo", &detail, CKR_TOKEN_NOT_PRESENT, true);
        }
        match f.token_info {
            Some(SignFault::Return(rv)) => return f.report("C_GetTokenInfo", &detail, rv, true),
            Some(crash) => {
                f.log(&format!("C_GetTokenInfo {} (injected)", crash_name(crash)));
                self_destruct(crash)
            }
            None => {}
        }
        let rv = forward!(C_GetTokenInfo(slot, info));
        let add_flag = rv == CKR_OK && f.protected_auth_path && !info.is_null();
        if add_flag {
            // SAFETY: the real module just filled `*info`, a caller's valid CK_TOKEN_INFO.
            unsafe { (*info).flags |= CKF_PROTECTED_AUTHENTICATION_PATH };
        }
        f.report("C_GetTokenInfo", &detail, rv, add_flag)
    })
}

unsafe extern "C" fn open_session(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    app: *mut c_void,
    notify: CK_NOTIFY,
    session: CK_SESSION_HANDLE_PTR,
) -> CK_RV {
    guard(|| {
        let f = enter();
        let detail = format!("slot={slot}");
        if f.hide_tokens {
            return f.report("C_OpenSession", &detail, CKR_TOKEN_NOT_PRESENT, true);
        }
        let rv = forward!(C_OpenSession(slot, flags, app, notify, session));
        f.report("C_OpenSession", &detail, rv, false)
    })
}

unsafe extern "C" fn login(
    session: CK_SESSION_HANDLE,
    user_type: CK_USER_TYPE,
    pin: CK_UTF8CHAR_PTR,
    pin_len: CK_ULONG,
) -> CK_RV {
    guard(|| {
        let f = enter();
        if f.hide_tokens {
            let detail = format!("user_type={user_type} pin_len={pin_len}");
            return f.report("C_Login", &detail, CKR_TOKEN_NOT_PRESENT, true);
        }
        if pin.is_null() && f.protected_auth_path {
            let detail = format!("user_type={user_type} pinpad");
            sleep_ms(f.pinpad_delay_ms);
            if f.pinpad_cancel {
                return f.report("C_Login", &detail, CKR_FUNCTION_CANCELED, true);
            }
            if let Some(typed) = &f.pinpad_pin {
                let mut typed = typed.as_bytes().to_vec();
                let len = typed.len() as CK_ULONG;
                let rv = forward!(C_Login(session, user_type, typed.as_mut_ptr(), len));
                return f.report("C_Login", &detail, rv, true);
            }
        }
        let rv = forward!(C_Login(session, user_type, pin, pin_len));
        f.report(
            "C_Login",
            &format!("user_type={user_type} pin_len={pin_len}"),
            rv,
            false,
        )
    })
}

unsafe extern "C" fn logout(session: CK_SESSION_HANDLE) -> CK_RV {
    guard(|| {
        let f = enter();
        if let Some(rv) = f.logout {
            return f.report("C_Logout", "", rv, true);
        }
        let rv = forward!(C_Logout(session));
        f.report("C_Logout", "", rv, false)
    })
}

unsafe extern "C" fn find_objects_init(
    session: CK_SESSION_HANDLE,
    template: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
) -> CK_RV {
    guard(|| {
        let f = enter();
        if f.hide_tokens {
            return f.report("C_FindObjectsInit", "", CKR_TOKEN_NOT_PRESENT, true);
        }
        let rv = forward!(C_FindObjectsInit(session, template, count));
        f.report("C_FindObjectsInit", "", rv, false)
    })
}

/// Sessions whose signing operation is yet to answer CKR_BUFFER_TOO_SMALL (`sign_too_small`).
fn fresh_signs() -> std::sync::MutexGuard<'static, std::collections::HashSet<CK_SESSION_HANDLE>> {
    static FRESH: OnceLock<Mutex<std::collections::HashSet<CK_SESSION_HANDLE>>> = OnceLock::new();
    FRESH
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

unsafe extern "C" fn sign_init(
    session: CK_SESSION_HANDLE,
    mechanism: CK_MECHANISM_PTR,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    guard(|| {
        let f = enter();
        let rv = forward!(C_SignInit(session, mechanism, key));
        if rv == CKR_OK && f.sign_too_small {
            fresh_signs().insert(session);
        }
        if f.log_all {
            f.report("C_SignInit", "", rv, false);
        }
        rv
    })
}

unsafe extern "C" fn sign(
    session: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    data_len: CK_ULONG,
    signature: CK_BYTE_PTR,
    signature_len: CK_ULONG_PTR,
) -> CK_RV {
    guard(|| {
        let mut f = enter();
        if !signature.is_null() && fresh_signs().remove(&session) {
            // The operation goes on (PKCS #11 5.2); the length needed is not said.
            return f.report("C_Sign", "buffer", CKR_BUFFER_TOO_SMALL, true);
        }
        if !signature.is_null() && f.sign_delay_ms > 0 && f.sign.is_none() && !f.hide_tokens {
            sleep_ms(f.sign_delay_ms);
            // The card may have been pulled meanwhile.
            f = Faults::load();
            f.sign_delay_ms = 0;
        }
        if f.hide_tokens {
            end_real_sign(session, data, data_len);
            return f.report("C_Sign", "", CKR_TOKEN_NOT_PRESENT, true);
        }
        match f.sign {
            Some(SignFault::Return(rv)) => {
                end_real_sign(session, data, data_len);
                return f.report("C_Sign", "", rv, true);
            }
            Some(crash) => {
                f.log(&format!("C_Sign {} (injected)", crash_name(crash)));
                self_destruct(crash)
            }
            None => {}
        }
        if !signature.is_null() {
            sleep_ms(f.sign_delay_ms);
        }
        let rv = forward!(C_Sign(session, data, data_len, signature, signature_len));
        f.report("C_Sign", "", rv, false)
    })
}

/// Set by `C_Finalize`: blocked `C_WaitForSlotEvent` calls return.
static FINALIZED: AtomicBool = AtomicBool::new(false);

/// What the module has acted on and reported.
#[derive(Default)]
struct Seen {
    /// The last `token_epoch` acted on.
    epoch: u64,
    /// The (hide_tokens, token_epoch) last turned into events, once the first wait saw one.
    reported: Option<(bool, u64)>,
    /// Slots with an event not yet returned.
    queue: VecDeque<CK_SLOT_ID>,
}

fn seen() -> std::sync::MutexGuard<'static, Seen> {
    static SEEN: OnceLock<Mutex<Seen>> = OnceLock::new();
    SEEN.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The real module's slots (with or without a token).
fn real_slots() -> Vec<CK_SLOT_ID> {
    let mut count: CK_ULONG = 0;
    if forward!(C_GetSlotList(CK_FALSE, ptr::null_mut(), &mut count)) != CKR_OK {
        return Vec::new();
    }
    let mut slots = vec![0; count as usize];
    if forward!(C_GetSlotList(CK_FALSE, slots.as_mut_ptr(), &mut count)) != CKR_OK {
        return Vec::new();
    }
    slots.truncate(count as usize);
    slots
}

/// Act on a new `token_epoch`: the card was pulled (and perhaps put back), so every session
/// of the real module is closed, which also logs its tokens out.
fn observe(f: &Faults) {
    if MODULE.get().is_none() || FINALIZED.load(Ordering::SeqCst) {
        return;
    }
    let mut s = seen();
    if s.epoch == f.token_epoch {
        return;
    }
    s.epoch = f.token_epoch;
    drop(s);
    for slot in real_slots() {
        forward!(C_CloseAllSessions(slot));
    }
    f.log(&format!(
        "card epoch {}: every session closed",
        f.token_epoch
    ));
}

unsafe extern "C" fn get_mechanism_list(
    slot: CK_SLOT_ID,
    list: CK_MECHANISM_TYPE_PTR,
    count: CK_ULONG_PTR,
) -> CK_RV {
    guard(|| {
        let f = enter();
        if !f.no_pss || count.is_null() {
            let rv = forward!(C_GetMechanismList(slot, list, count));
            return f.report("C_GetMechanismList", &format!("slot={slot}"), rv, false);
        }
        // The real list, without CKM_RSA_PKCS_PSS.
        let mut n: CK_ULONG = 0;
        let rv = forward!(C_GetMechanismList(slot, ptr::null_mut(), &mut n));
        if rv != CKR_OK {
            return f.report("C_GetMechanismList", "", rv, false);
        }
        let mut all = vec![0; n as usize];
        let rv = forward!(C_GetMechanismList(slot, all.as_mut_ptr(), &mut n));
        if rv != CKR_OK {
            return f.report("C_GetMechanismList", "", rv, false);
        }
        all.truncate(n as usize);
        all.retain(|m| *m != CKM_RSA_PKCS_PSS);
        // SAFETY: `count` is non-NULL and, by contract, valid for reads and writes; `list`, when
        // non-NULL, holds `*count` entries.
        unsafe {
            if !list.is_null() {
                if (*count as usize) < all.len() {
                    *count = all.len() as CK_ULONG;
                    return f.report("C_GetMechanismList", "no_pss", CKR_BUFFER_TOO_SMALL, true);
                }
                ptr::copy_nonoverlapping(all.as_ptr(), list, all.len());
            }
            *count = all.len() as CK_ULONG;
        }
        f.report("C_GetMechanismList", "no_pss", CKR_OK, true)
    })
}

unsafe extern "C" fn finalize(args: *mut c_void) -> CK_RV {
    guard(|| {
        FINALIZED.store(true, Ordering::SeqCst);
        let f = Faults::read();
        let rv = forward!(C_Finalize(args));
        f.report("C_Finalize", "", rv, false)
    })
}

unsafe extern "C" fn wait_for_slot_event(
    flags: CK_FLAGS,
    slot: CK_SLOT_ID_PTR,
    reserved: *mut c_void,
) -> CK_RV {
    guard(|| {
        let f = Faults::load();
        if !f.slot_events {
            let rv = forward!(C_WaitForSlotEvent(flags, slot, reserved));
            return f.report("C_WaitForSlotEvent", "", rv, false);
        }
        if slot.is_null() {
            return f.report("C_WaitForSlotEvent", "", CKR_ARGUMENTS_BAD, true);
        }
        loop {
            if FINALIZED.load(Ordering::SeqCst) {
                return f.report("C_WaitForSlotEvent", "", CKR_CRYPTOKI_NOT_INITIALIZED, true);
            }
            let now = Faults::load();
            let state = (now.hide_tokens, now.token_epoch);
            let mut s = seen();
            match s.reported {
                None => s.reported = Some(state),
                Some(before) if before != state => {
                    s.reported = Some(state);
                    drop(s);
                    let slots = real_slots();
                    s = seen();
                    s.queue.extend(slots);
                }
                Some(_) => {}
            }
            if let Some(id) = s.queue.pop_front() {
                // SAFETY: `slot` is non-NULL and, by contract, valid for a write.
                unsafe { *slot = id };
                return now.report("C_WaitForSlotEvent", &format!("slot={id}"), CKR_OK, true);
            }
            drop(s);
            if flags & CKF_DONT_BLOCK != 0 {
                return now.report("C_WaitForSlotEvent", "dont_block", CKR_NO_EVENT, true);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

/// A failed C_Sign ends the signing operation (PKCS #11 5.13): sign for real and drop the
/// result, so that the caller's next C_SignInit is not refused with CKR_OPERATION_ACTIVE.
fn end_real_sign(session: CK_SESSION_HANDLE, data: CK_BYTE_PTR, data_len: CK_ULONG) {
    let mut len: CK_ULONG = 0;
    let rv = forward!(C_Sign(session, data, data_len, ptr::null_mut(), &mut len));
    if rv == CKR_OK {
        let mut buf = vec![0u8; len as usize];
        forward!(C_Sign(session, data, data_len, buf.as_mut_ptr(), &mut len));
    }
}

fn crash_name(crash: SignFault) -> &'static str {
    match crash {
        SignFault::Segv => "segv",
        SignFault::Abort => "abort",
        SignFault::Exit => "exit",
        SignFault::Hang => "hang",
        SignFault::Return(_) => "return",
    }
}

/// The crash faults: never return.
fn self_destruct(crash: SignFault) -> ! {
    match crash {
        SignFault::Segv => {
            // Not address 0: debug builds check raw NULL writes and would abort, not fault.
            let page_zero = std::hint::black_box(8usize) as *mut u8;
            // SAFETY: none, on purpose: the write to unmapped page zero kills us with SIGSEGV.
            unsafe { ptr::write_volatile(page_zero, 1) };
            std::process::abort()
        }
        SignFault::Exit => std::process::exit(3),
        SignFault::Hang => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        SignFault::Abort | SignFault::Return(_) => std::process::abort(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_text_no_fault() {
        let (f, problems) = Faults::parse("");
        assert!(problems.is_empty());
        assert!(f.target.is_none() && f.initialize.is_none() && f.sign.is_none());
        assert!(!f.hide_tokens && !f.protected_auth_path && f.log.is_none());
    }

    #[test]
    fn every_key() {
        let text = "# a comment\n\n target = /x/y.so \ninitialize=fail\ninitialize_delay_ms=5\n\
                    logout=device_error\nsign=hang\nsign_delay_ms=7\nprotected_auth_path=1\n\
                    pinpad_pin=12 34\npinpad=cancel\npinpad_delay_ms=9\nhide_tokens=1\nlog=/tmp/l\n\
                    log_all=1\ncall_delay_ms=20\nsign_too_small=1\n";
        let (f, problems) = Faults::parse(text);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(f.target.as_deref(), Some(Path::new("/x/y.so")));
        assert_eq!(f.initialize, Some(CKR_GENERAL_ERROR));
        assert_eq!(f.initialize_delay_ms, 5);
        assert_eq!(f.logout, Some(CKR_DEVICE_ERROR));
        assert_eq!(f.sign, Some(SignFault::Hang));
        assert_eq!(f.sign_delay_ms, 7);
        assert!(f.protected_auth_path && f.pinpad_cancel && f.hide_tokens);
        assert_eq!(f.pinpad_pin.as_deref(), Some("12 34"));
        assert_eq!(f.pinpad_delay_ms, 9);
        assert_eq!(f.log.as_deref(), Some(Path::new("/tmp/l")));
        assert!(f.log_all);
        assert_eq!(f.call_delay_ms, 20);
        assert!(f.sign_too_small);
    }

    #[test]
    fn rv_values() {
        assert_eq!(parse_rv("0x30"), Some(CKR_DEVICE_ERROR));
        assert_eq!(parse_rv("E0"), Some(CKR_TOKEN_NOT_PRESENT));
        assert_eq!(parse_rv("fail"), Some(CKR_GENERAL_ERROR));
        assert_eq!(parse_rv("nope"), None);
        let (f, _) = Faults::parse("sign=device_error\n");
        assert_eq!(f.sign, Some(SignFault::Return(CKR_DEVICE_ERROR)));
    }

    #[test]
    fn problems_never_show_values() {
        let (f, problems) = Faults::parse("pin=secret1\nsign=secret2\nsecret3\nhide_tokens=yes\n");
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(f.sign.is_none() && !f.hide_tokens);
        assert!(!problems.concat().contains("secret"), "{problems:?}");
    }
}
