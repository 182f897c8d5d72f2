//! The Keyport soft token: a small software PKCS #11 module, for tests only.
//!
//! It serves RSA and P-256 keys with their certificates from a directory of files that
//! `provision.sh` writes with openssl (README.md: the format), in two slots:
//!
//! * slot 0, "Keyport Soft Token": a token with a user PIN;
//! * slot 1, "Keyport Soft PIN-pad": the same objects behind CKF_PROTECTED_AUTHENTICATION_PATH.
//!   `C_Login` with a NULL PIN waits (at most 30 s) for the person at the pad: a test writes the
//!   PIN to the file `pinpad-pin` (taken and deleted), or `pinpad-cancel` (CKR_FUNCTION_CANCELED,
//!   as is the end of the wait).
//!
//! Three wrong PINs in a row lock a slot (the counter is kept in the directory, so it survives
//! the process); the PIN flags of CK_TOKEN_INFO follow it. Faults for tests: the file
//! `crash-on-sign` makes `C_Sign` delete it and abort the process; `hang-on-sign` makes
//! `C_Sign` wait until the file is gone (at most 120 s).
//!
//! It builds as `libkeyport_soft_token.so` on Linux and `keyport_soft_token.dll` for
//! `x86_64-pc-windows-gnu` (there cryptoki-sys lays the structures out packed, as PKCS #11
//! wants on Windows: every structure the caller passes is read and written unaligned here).
//!
//! What Keyport calls works (PKCS #11 2.40: length queries, CKR_BUFFER_TOO_SMALL,
//! CK_UNAVAILABLE_INFORMATION, one login state per slot shared by its sessions); every other
//! function answers CKR_FUNCTION_NOT_SUPPORTED. One mutex guards the state: the module is
//! safe to call from many threads (CKF_OS_LOCKING_OK). No panic crosses the FFI boundary.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod keys;
mod locate;
pub mod store;
pub mod token;

use cryptoki_sys::*;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use store::{Store, Value};
use token::{slot_index, Param, Token, MAX_PIN, MECHANISMS, MIN_PIN, SLOTS};
use zeroize::Zeroizing;

/// How long `C_Login` with a NULL PIN waits for the person at the pad (the file
/// `pinpad-timeout-ms` may say otherwise).
pub const PINPAD_WAIT: Duration = Duration::from_secs(30);
/// The longest a `hang-on-sign` fault holds `C_Sign`.
pub const HANG_LIMIT: Duration = Duration::from_secs(120);
/// How often the PIN-pad and hang waits look at their files.
const POLL: Duration = Duration::from_millis(50);

static STATE: Mutex<Option<Token>> = Mutex::new(None);
/// Bumped by every `C_Initialize` and `C_Finalize`: a wait outside the lock that sees it change
/// knows its session is gone.
static GENERATION: AtomicU64 = AtomicU64::new(0);

type R<T> = Result<T, CK_RV>;

fn state() -> MutexGuard<'static, Option<Token>> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run `f` on the initialised token.
fn with<T>(f: impl FnOnce(&mut Token) -> R<T>) -> R<T> {
    match state().as_mut() {
        Some(t) => f(t),
        None => Err(CKR_CRYPTOKI_NOT_INITIALIZED),
    }
}

/// Run an entry point's body; a panic becomes CKR_GENERAL_ERROR instead of crossing the FFI
/// boundary.
fn guard(body: impl FnOnce() -> R<()>) -> CK_RV {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => CKR_OK,
        Ok(Err(rv)) => rv,
        Err(_) => CKR_GENERAL_ERROR,
    }
}

/// Write through a caller's pointer that may be unaligned (packed structures on Windows).
///
/// # Safety
/// `p` is non-NULL and valid for a write of a `T`.
unsafe fn put<T>(p: *mut T, v: T) {
    // SAFETY: the caller's promise.
    unsafe { ptr::write_unaligned(p, v) }
}

/// Read through a caller's pointer that may be unaligned.
///
/// # Safety
/// `p` is non-NULL and valid for a read of a `T`.
unsafe fn get<T>(p: *const T) -> T {
    // SAFETY: the caller's promise.
    unsafe { ptr::read_unaligned(p) }
}

fn nonnull<T>(p: *const T) -> R<()> {
    if p.is_null() {
        Err(CKR_ARGUMENTS_BAD)
    } else {
        Ok(())
    }
}

fn ulong(n: usize) -> CK_ULONG {
    CK_ULONG::try_from(n).unwrap_or(CK_ULONG::MAX)
}

fn size(n: CK_ULONG) -> R<usize> {
    usize::try_from(n).map_err(|_| CKR_ARGUMENTS_BAD)
}

/// The caller's bytes `(p, len)`; NULL is allowed only for no bytes.
///
/// # Safety
/// `p`, if not NULL, is valid for reads of `len` bytes.
unsafe fn bytes<'a>(p: *const CK_BYTE, len: CK_ULONG) -> R<&'a [u8]> {
    let len = size(len)?;
    if len == 0 {
        return Ok(&[]);
    }
    nonnull(p)?;
    // SAFETY: the caller's promise.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// `text` blank-padded (and cut) to N bytes, as PKCS #11's fixed-size strings are.
fn pad<const N: usize>(text: &str) -> [CK_UTF8CHAR; N] {
    let mut out = [b' '; N];
    let n = text.len().min(N);
    out[..n].copy_from_slice(&text.as_bytes()[..n]);
    out
}

/// Return a list the PKCS #11 way: its length with a NULL buffer, CKR_BUFFER_TOO_SMALL (and the
/// length) with a short one.
///
/// # Safety
/// `count` is NULL or valid for reads and writes; `list`, if not NULL, for `*count` entries.
unsafe fn list_out<T: Copy>(items: &[T], list: *mut T, count: *mut CK_ULONG) -> R<()> {
    nonnull(count)?;
    // SAFETY: the caller's promise, for this and the writes below.
    let room = unsafe { get(count) };
    unsafe { put(count, ulong(items.len())) };
    if list.is_null() {
        return Ok(());
    }
    if size(room)? < items.len() {
        return Err(CKR_BUFFER_TOO_SMALL);
    }
    for (i, item) in items.iter().enumerate() {
        // SAFETY: `list` holds at least `items.len()` entries.
        unsafe { put(list.add(i), *item) };
    }
    Ok(())
}

const VERSION: CK_VERSION = CK_VERSION { major: 0, minor: 1 };

static FUNCTIONS: CK_FUNCTION_LIST = CK_FUNCTION_LIST {
    version: CK_VERSION {
        major: 2,
        minor: 40,
    },
    C_Initialize: Some(initialize),
    C_Finalize: Some(finalize),
    C_GetInfo: Some(get_info),
    C_GetFunctionList: Some(C_GetFunctionList),
    C_GetSlotList: Some(get_slot_list),
    C_GetSlotInfo: Some(get_slot_info),
    C_GetTokenInfo: Some(get_token_info),
    C_GetMechanismList: Some(get_mechanism_list),
    C_GetMechanismInfo: Some(get_mechanism_info),
    C_InitToken: Some(unsupported::InitToken),
    C_InitPIN: Some(unsupported::InitPIN),
    C_SetPIN: Some(unsupported::SetPIN),
    C_OpenSession: Some(open_session),
    C_CloseSession: Some(close_session),
    C_CloseAllSessions: Some(close_all_sessions),
    C_GetSessionInfo: Some(get_session_info),
    C_GetOperationState: Some(unsupported::GetOperationState),
    C_SetOperationState: Some(unsupported::SetOperationState),
    C_Login: Some(login),
    C_Logout: Some(logout),
    C_CreateObject: Some(unsupported::CreateObject),
    C_CopyObject: Some(unsupported::CopyObject),
    C_DestroyObject: Some(unsupported::DestroyObject),
    C_GetObjectSize: Some(unsupported::GetObjectSize),
    C_GetAttributeValue: Some(get_attribute_value),
    C_SetAttributeValue: Some(unsupported::SetAttributeValue),
    C_FindObjectsInit: Some(find_objects_init),
    C_FindObjects: Some(find_objects),
    C_FindObjectsFinal: Some(find_objects_final),
    C_EncryptInit: Some(unsupported::EncryptInit),
    C_Encrypt: Some(unsupported::Encrypt),
    C_EncryptUpdate: Some(unsupported::EncryptUpdate),
    C_EncryptFinal: Some(unsupported::EncryptFinal),
    C_DecryptInit: Some(unsupported::DecryptInit),
    C_Decrypt: Some(unsupported::Decrypt),
    C_DecryptUpdate: Some(unsupported::DecryptUpdate),
    C_DecryptFinal: Some(unsupported::DecryptFinal),
    C_DigestInit: Some(unsupported::DigestInit),
    C_Digest: Some(unsupported::Digest),
    C_DigestUpdate: Some(unsupported::DigestUpdate),
    C_DigestKey: Some(unsupported::DigestKey),
    C_DigestFinal: Some(unsupported::DigestFinal),
    C_SignInit: Some(sign_init),
    C_Sign: Some(sign),
    C_SignUpdate: Some(unsupported::SignUpdate),
    C_SignFinal: Some(unsupported::SignFinal),
    C_SignRecoverInit: Some(unsupported::SignRecoverInit),
    C_SignRecover: Some(unsupported::SignRecover),
    C_VerifyInit: Some(unsupported::VerifyInit),
    C_Verify: Some(unsupported::Verify),
    C_VerifyUpdate: Some(unsupported::VerifyUpdate),
    C_VerifyFinal: Some(unsupported::VerifyFinal),
    C_VerifyRecoverInit: Some(unsupported::VerifyRecoverInit),
    C_VerifyRecover: Some(unsupported::VerifyRecover),
    C_DigestEncryptUpdate: Some(unsupported::DigestEncryptUpdate),
    C_DecryptDigestUpdate: Some(unsupported::DecryptDigestUpdate),
    C_SignEncryptUpdate: Some(unsupported::SignEncryptUpdate),
    C_DecryptVerifyUpdate: Some(unsupported::DecryptVerifyUpdate),
    C_GenerateKey: Some(unsupported::GenerateKey),
    C_GenerateKeyPair: Some(unsupported::GenerateKeyPair),
    C_WrapKey: Some(unsupported::WrapKey),
    C_UnwrapKey: Some(unsupported::UnwrapKey),
    C_DeriveKey: Some(unsupported::DeriveKey),
    C_SeedRandom: Some(unsupported::SeedRandom),
    C_GenerateRandom: Some(unsupported::GenerateRandom),
    C_GetFunctionStatus: Some(unsupported::GetFunctionStatus),
    C_CancelFunction: Some(unsupported::CancelFunction),
    // Keyport polls the slots of a module without slot events.
    C_WaitForSlotEvent: Some(unsupported::WaitForSlotEvent),
};

/// The entry point: this module's function list.
///
/// # Safety
/// `list` must be NULL or valid for a write (the PKCS #11 contract).
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_GetFunctionList(list: CK_FUNCTION_LIST_PTR_PTR) -> CK_RV {
    guard(|| {
        nonnull(list)?;
        // SAFETY: non-NULL, and valid for a write by contract.
        unsafe {
            put(
                list,
                &FUNCTIONS as *const CK_FUNCTION_LIST as CK_FUNCTION_LIST_PTR,
            )
        };
        Ok(())
    })
}

unsafe extern "C" fn initialize(args: *mut c_void) -> CK_RV {
    guard(|| {
        if !args.is_null() {
            // SAFETY: a non-NULL argument is a CK_C_INITIALIZE_ARGS (the contract).
            let a = unsafe { get(args as *const CK_C_INITIALIZE_ARGS) };
            if !{ a.pReserved }.is_null() {
                return Err(CKR_ARGUMENTS_BAD);
            }
            let given = [
                { a.CreateMutex }.is_some(),
                { a.DestroyMutex }.is_some(),
                { a.LockMutex }.is_some(),
                { a.UnlockMutex }.is_some(),
            ];
            if given.iter().any(|g| *g) && !given.iter().all(|g| *g) {
                return Err(CKR_ARGUMENTS_BAD);
            }
            // The caller's own locks only: this module uses the OS's.
            if given[0] && a.flags & CKF_OS_LOCKING_OK == 0 {
                return Err(CKR_CANT_LOCK);
            }
        }
        let mut s = state();
        if s.is_some() {
            return Err(CKR_CRYPTOKI_ALREADY_INITIALIZED);
        }
        let library = locate::this_library();
        let store = Store::locate(library.as_deref()).map_err(|e| {
            eprintln!("keyport-soft-token: no token directory: {e}");
            CKR_FUNCTION_FAILED
        })?;
        let token = Token::new(store.clone()).map_err(|e| {
            eprintln!(
                "keyport-soft-token: token directory {}: {e}",
                store.dir.display()
            );
            CKR_FUNCTION_FAILED
        })?;
        *s = Some(token);
        GENERATION.fetch_add(1, Ordering::SeqCst);
        Ok(())
    })
}

unsafe extern "C" fn finalize(reserved: *mut c_void) -> CK_RV {
    guard(|| {
        if !reserved.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let mut s = state();
        if s.take().is_none() {
            return Err(CKR_CRYPTOKI_NOT_INITIALIZED);
        }
        GENERATION.fetch_add(1, Ordering::SeqCst);
        Ok(())
    })
}

unsafe extern "C" fn get_info(info: CK_INFO_PTR) -> CK_RV {
    guard(|| {
        with(|_| Ok(()))?;
        nonnull(info)?;
        let value = CK_INFO {
            cryptokiVersion: CK_VERSION {
                major: 2,
                minor: 40,
            },
            manufacturerID: pad("Keyport"),
            flags: 0,
            libraryDescription: pad("Keyport Soft Token"),
            libraryVersion: VERSION,
        };
        // SAFETY: non-NULL, valid for a write by contract.
        unsafe { put(info, value) };
        Ok(())
    })
}

unsafe extern "C" fn get_slot_list(
    _token_present: CK_BBOOL,
    list: CK_SLOT_ID_PTR,
    count: CK_ULONG_PTR,
) -> CK_RV {
    guard(|| {
        with(|_| Ok(()))?;
        // Both slots always hold their token.
        let slots: Vec<CK_SLOT_ID> = (0..SLOTS.len()).map(ulong).collect();
        // SAFETY: the contract: `count` valid, `list` NULL or `*count` entries.
        unsafe { list_out(&slots, list, count) }
    })
}

unsafe extern "C" fn get_slot_info(slot: CK_SLOT_ID, info: CK_SLOT_INFO_PTR) -> CK_RV {
    guard(|| {
        with(|_| Ok(()))?;
        let spec = &SLOTS[slot_index(slot)?];
        nonnull(info)?;
        let value = CK_SLOT_INFO {
            slotDescription: pad(spec.description),
            manufacturerID: pad("Keyport"),
            flags: CKF_TOKEN_PRESENT,
            hardwareVersion: VERSION,
            firmwareVersion: VERSION,
        };
        // SAFETY: non-NULL, valid for a write by contract.
        unsafe { put(info, value) };
        Ok(())
    })
}

unsafe extern "C" fn get_token_info(slot: CK_SLOT_ID, info: CK_TOKEN_INFO_PTR) -> CK_RV {
    guard(|| {
        let (pin_flags, (sessions, rw)) = with(|t| {
            slot_index(slot)?;
            Ok((t.pin_flags(slot), t.counts(slot)))
        })?;
        let spec = &SLOTS[slot_index(slot)?];
        nonnull(info)?;
        let mut flags = CKF_LOGIN_REQUIRED
            | CKF_USER_PIN_INITIALIZED
            | CKF_TOKEN_INITIALIZED
            | CKF_WRITE_PROTECTED
            | pin_flags;
        if spec.pinpad {
            flags |= CKF_PROTECTED_AUTHENTICATION_PATH;
        }
        let value = CK_TOKEN_INFO {
            label: pad(spec.label),
            manufacturerID: pad("Keyport"),
            model: pad("Soft Token"),
            serialNumber: pad(spec.serial),
            flags,
            ulMaxSessionCount: CK_EFFECTIVELY_INFINITE,
            ulSessionCount: ulong(sessions),
            ulMaxRwSessionCount: CK_EFFECTIVELY_INFINITE,
            ulRwSessionCount: ulong(rw),
            ulMaxPinLen: ulong(MAX_PIN),
            ulMinPinLen: ulong(MIN_PIN),
            ulTotalPublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulTotalPrivateMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePrivateMemory: CK_UNAVAILABLE_INFORMATION,
            hardwareVersion: VERSION,
            firmwareVersion: VERSION,
            // No clock on the token (CKF_CLOCK_ON_TOKEN unset): blank.
            utcTime: [b' '; 16],
        };
        // SAFETY: non-NULL, valid for a write by contract.
        unsafe { put(info, value) };
        Ok(())
    })
}

unsafe extern "C" fn get_mechanism_list(
    slot: CK_SLOT_ID,
    list: CK_MECHANISM_TYPE_PTR,
    count: CK_ULONG_PTR,
) -> CK_RV {
    guard(|| {
        with(|_| slot_index(slot))?;
        // SAFETY: the contract: `count` valid, `list` NULL or `*count` entries.
        unsafe { list_out(&MECHANISMS, list, count) }
    })
}

unsafe extern "C" fn get_mechanism_info(
    slot: CK_SLOT_ID,
    mechanism: CK_MECHANISM_TYPE,
    info: CK_MECHANISM_INFO_PTR,
) -> CK_RV {
    guard(|| {
        with(|_| slot_index(slot))?;
        let value = match mechanism {
            CKM_RSA_PKCS | CKM_RSA_PKCS_PSS => CK_MECHANISM_INFO {
                ulMinKeySize: 1024,
                ulMaxKeySize: 4096,
                flags: CKF_SIGN,
            },
            CKM_ECDSA => CK_MECHANISM_INFO {
                ulMinKeySize: 256,
                ulMaxKeySize: 256,
                flags: CKF_SIGN | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS,
            },
            _ => return Err(CKR_MECHANISM_INVALID),
        };
        nonnull(info)?;
        // SAFETY: non-NULL, valid for a write by contract.
        unsafe { put(info, value) };
        Ok(())
    })
}

unsafe extern "C" fn open_session(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    _app: *mut c_void,
    _notify: CK_NOTIFY,
    session: CK_SESSION_HANDLE_PTR,
) -> CK_RV {
    guard(|| {
        let h = with(|t| {
            nonnull(session)?;
            t.open(slot, flags)
        })?;
        // SAFETY: non-NULL (checked above), valid for a write by contract.
        unsafe { put(session, h) };
        Ok(())
    })
}

unsafe extern "C" fn close_session(session: CK_SESSION_HANDLE) -> CK_RV {
    guard(|| with(|t| t.close(session)))
}

unsafe extern "C" fn close_all_sessions(slot: CK_SLOT_ID) -> CK_RV {
    guard(|| with(|t| t.close_all(slot)))
}

unsafe extern "C" fn get_session_info(
    session: CK_SESSION_HANDLE,
    info: CK_SESSION_INFO_PTR,
) -> CK_RV {
    guard(|| {
        let (slot, state, flags) = with(|t| t.session_state(session))?;
        nonnull(info)?;
        let value = CK_SESSION_INFO {
            slotID: slot,
            state,
            flags,
            ulDeviceError: 0,
        };
        // SAFETY: non-NULL, valid for a write by contract.
        unsafe { put(info, value) };
        Ok(())
    })
}

unsafe extern "C" fn login(
    session: CK_SESSION_HANDLE,
    user: CK_USER_TYPE,
    pin: CK_UTF8CHAR_PTR,
    pin_len: CK_ULONG,
) -> CK_RV {
    guard(|| {
        if !pin.is_null() {
            // SAFETY: a non-NULL PIN holds `pin_len` bytes (the contract).
            let pin = unsafe { bytes(pin, pin_len) }?;
            return with(|t| {
                t.login_check(session, user)?;
                t.login(session, pin)
            });
        }
        // No PIN: the person types it on the pad, if the token has one.
        let (store, generation) = with(|t| {
            let slot = t.login_check(session, user)?;
            if !SLOTS[slot_index(slot)?].pinpad {
                return Err(CKR_ARGUMENTS_BAD);
            }
            Ok((t.store.clone(), GENERATION.load(Ordering::SeqCst)))
        })?;
        let typed = pinpad(&store, generation)?;
        if GENERATION.load(Ordering::SeqCst) != generation {
            return Err(CKR_CRYPTOKI_NOT_INITIALIZED);
        }
        with(|t| t.login(session, &typed))
    })
}

/// Wait, without the lock, for the person at the pad: `pinpad-pin` (the PIN they typed) or
/// `pinpad-cancel`, each taken when seen; nothing within the time is a cancel too.
fn pinpad(store: &Store, generation: u64) -> R<Zeroizing<Vec<u8>>> {
    let wait = store
        .take("pinpad-timeout-ms")
        .and_then(|t| std::str::from_utf8(&t).ok()?.trim().parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(PINPAD_WAIT);
    let start = Instant::now();
    loop {
        if GENERATION.load(Ordering::SeqCst) != generation {
            // C_Finalize: the session is gone.
            return Err(CKR_CRYPTOKI_NOT_INITIALIZED);
        }
        if store.take("pinpad-cancel").is_some() {
            return Err(CKR_FUNCTION_CANCELED);
        }
        if let Some(pin) = store.take("pinpad-pin") {
            return Ok(store::line(pin));
        }
        if start.elapsed() >= wait {
            return Err(CKR_FUNCTION_CANCELED);
        }
        std::thread::sleep(POLL);
    }
}

unsafe extern "C" fn logout(session: CK_SESSION_HANDLE) -> CK_RV {
    guard(|| with(|t| t.logout(session)))
}

unsafe extern "C" fn get_attribute_value(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    template: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
) -> CK_RV {
    guard(|| {
        let n = size(count)?;
        if n > 0 {
            nonnull(template)?;
        }
        // SAFETY: `template` holds `count` attributes (the contract).
        let wanted: Vec<CK_ATTRIBUTE> = (0..n).map(|i| unsafe { get(template.add(i)) }).collect();
        let values = with(|t| {
            wanted
                .iter()
                .map(|a| t.attribute(session, object, a.type_))
                .collect::<R<Vec<_>>>()
        })?;
        let mut rv = CKR_OK;
        for (i, (mut a, value)) in wanted.into_iter().zip(values).enumerate() {
            let (len, problem) = match value {
                None => (CK_UNAVAILABLE_INFORMATION, CKR_ATTRIBUTE_TYPE_INVALID),
                Some(Value::Sensitive) => (CK_UNAVAILABLE_INFORMATION, CKR_ATTRIBUTE_SENSITIVE),
                Some(Value::Bytes(v)) if { a.pValue }.is_null() => (ulong(v.len()), CKR_OK),
                Some(Value::Bytes(v)) if size(a.ulValueLen)? < v.len() => {
                    (CK_UNAVAILABLE_INFORMATION, CKR_BUFFER_TOO_SMALL)
                }
                Some(Value::Bytes(v)) => {
                    // SAFETY: pValue holds ulValueLen >= v.len() bytes (the contract).
                    unsafe { ptr::copy_nonoverlapping(v.as_ptr(), a.pValue as *mut u8, v.len()) };
                    (ulong(v.len()), CKR_OK)
                }
            };
            a.ulValueLen = len;
            // SAFETY: as above: the caller's attribute i.
            unsafe { put(template.add(i), a) };
            if rv == CKR_OK {
                rv = problem;
            }
        }
        if rv == CKR_OK {
            Ok(())
        } else {
            Err(rv)
        }
    })
}

unsafe extern "C" fn find_objects_init(
    session: CK_SESSION_HANDLE,
    template: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
) -> CK_RV {
    guard(|| {
        let n = size(count)?;
        if n > 0 {
            nonnull(template)?;
        }
        let mut wanted = Vec::with_capacity(n);
        for i in 0..n {
            // SAFETY: `template` holds `count` attributes, each pValue `ulValueLen` bytes.
            let a = unsafe { get(template.add(i)) };
            let value = unsafe { bytes(a.pValue as *const u8, a.ulValueLen) }?;
            wanted.push((a.type_, value.to_vec()));
        }
        with(|t| t.find_init(session, &wanted))
    })
}

unsafe extern "C" fn find_objects(
    session: CK_SESSION_HANDLE,
    objects: CK_OBJECT_HANDLE_PTR,
    max: CK_ULONG,
    count: CK_ULONG_PTR,
) -> CK_RV {
    guard(|| {
        let max = size(max)?;
        nonnull(count)?;
        if max > 0 {
            nonnull(objects)?;
        }
        let found = with(|t| t.find(session, max))?;
        for (i, h) in found.iter().enumerate() {
            // SAFETY: `objects` holds `max` >= found.len() handles (the contract).
            unsafe { put(objects.add(i), *h) };
        }
        // SAFETY: non-NULL, valid for a write by contract.
        unsafe { put(count, ulong(found.len())) };
        Ok(())
    })
}

unsafe extern "C" fn find_objects_final(session: CK_SESSION_HANDLE) -> CK_RV {
    guard(|| with(|t| t.find_final(session)))
}

unsafe extern "C" fn sign_init(
    session: CK_SESSION_HANDLE,
    mechanism: CK_MECHANISM_PTR,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    guard(|| {
        nonnull(mechanism)?;
        // SAFETY: non-NULL, a CK_MECHANISM by contract.
        let m = unsafe { get(mechanism) };
        let param = if { m.pParameter }.is_null() && m.ulParameterLen == 0 {
            Param::None
        } else if m.mechanism == CKM_RSA_PKCS_PSS
            && !{ m.pParameter }.is_null()
            && size(m.ulParameterLen)? == std::mem::size_of::<CK_RSA_PKCS_PSS_PARAMS>()
        {
            // SAFETY: a parameter of the size of CK_RSA_PKCS_PSS_PARAMS (the contract).
            Param::Pss(unsafe { get(m.pParameter as *const CK_RSA_PKCS_PSS_PARAMS) })
        } else {
            Param::Other
        };
        with(|t| t.sign_init(session, m.mechanism, param, key))
    })
}

/// The faults of `C_Sign` (README.md): a crash, or a wait until the file is gone.
fn sign_faults(store: &Store) {
    if store.take("crash-on-sign").is_some() {
        eprintln!("keyport-soft-token: crash-on-sign: aborting");
        std::process::abort();
    }
    let start = Instant::now();
    while store.has("hang-on-sign") && start.elapsed() < HANG_LIMIT {
        std::thread::sleep(POLL);
    }
}

unsafe extern "C" fn sign(
    session: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    data_len: CK_ULONG,
    signature: CK_BYTE_PTR,
    signature_len: CK_ULONG_PTR,
) -> CK_RV {
    guard(|| {
        let (store, (key, mech)) = with(|t| Ok((t.store.clone(), t.sign_op(session)?)))?;
        sign_faults(&store);
        let result = (|| {
            nonnull(signature_len)?;
            // SAFETY: `data` holds `data_len` bytes (the contract).
            let data = unsafe { bytes(data, data_len) }?;
            let need = key.signature_len();
            if signature.is_null() {
                // A length query: the operation goes on.
                // SAFETY: non-NULL, valid for a write by contract.
                unsafe { put(signature_len, ulong(need)) };
                return Ok(false);
            }
            // SAFETY: non-NULL, valid for reads and writes by contract.
            let room = size(unsafe { get(signature_len) })?;
            unsafe { put(signature_len, ulong(need)) };
            if room < need {
                return Err(CKR_BUFFER_TOO_SMALL);
            }
            let sig = key.sign(mech, data)?;
            // SAFETY: `signature` holds `room` >= sig.len() bytes (the contract).
            unsafe { ptr::copy_nonoverlapping(sig.as_ptr(), signature, sig.len()) };
            unsafe { put(signature_len, ulong(sig.len())) };
            Ok(true)
        })();
        match result {
            Ok(false) | Err(CKR_BUFFER_TOO_SMALL) => {}
            // A signature, or a failure: either ends the operation (PKCS #11 5.2).
            _ => with(|t| {
                t.sign_done(session);
                Ok(())
            })?,
        }
        result.map(|_| ())
    })
}

/// Everything this module does not do: CKR_FUNCTION_NOT_SUPPORTED.
#[allow(non_snake_case)]
mod unsupported {
    use cryptoki_sys::*;

    macro_rules! not_supported {
        ($($name:ident($($t:ty),*);)*) => {$(
            pub unsafe extern "C" fn $name($(_: $t),*) -> CK_RV {
                CKR_FUNCTION_NOT_SUPPORTED
            }
        )*};
    }

    type B = *mut CK_BYTE;
    type L = *mut CK_ULONG;
    type M = *mut CK_MECHANISM;
    type A = *mut CK_ATTRIBUTE;
    type H = CK_SESSION_HANDLE;
    type O = CK_OBJECT_HANDLE;
    type U = *mut CK_UTF8CHAR;

    not_supported! {
        InitToken(CK_SLOT_ID, U, CK_ULONG, U);
        InitPIN(H, U, CK_ULONG);
        SetPIN(H, U, CK_ULONG, U, CK_ULONG);
        GetOperationState(H, B, L);
        SetOperationState(H, B, CK_ULONG, O, O);
        CreateObject(H, A, CK_ULONG, *mut O);
        CopyObject(H, O, A, CK_ULONG, *mut O);
        DestroyObject(H, O);
        GetObjectSize(H, O, L);
        SetAttributeValue(H, O, A, CK_ULONG);
        EncryptInit(H, M, O);
        Encrypt(H, B, CK_ULONG, B, L);
        EncryptUpdate(H, B, CK_ULONG, B, L);
        EncryptFinal(H, B, L);
        DecryptInit(H, M, O);
        Decrypt(H, B, CK_ULONG, B, L);
        DecryptUpdate(H, B, CK_ULONG, B, L);
        DecryptFinal(H, B, L);
        DigestInit(H, M);
        Digest(H, B, CK_ULONG, B, L);
        DigestUpdate(H, B, CK_ULONG);
        DigestKey(H, O);
        DigestFinal(H, B, L);
        SignUpdate(H, B, CK_ULONG);
        SignFinal(H, B, L);
        SignRecoverInit(H, M, O);
        SignRecover(H, B, CK_ULONG, B, L);
        VerifyInit(H, M, O);
        Verify(H, B, CK_ULONG, B, CK_ULONG);
        VerifyUpdate(H, B, CK_ULONG);
        VerifyFinal(H, B, CK_ULONG);
        VerifyRecoverInit(H, M, O);
        VerifyRecover(H, B, CK_ULONG, B, L);
        DigestEncryptUpdate(H, B, CK_ULONG, B, L);
        DecryptDigestUpdate(H, B, CK_ULONG, B, L);
        SignEncryptUpdate(H, B, CK_ULONG, B, L);
        DecryptVerifyUpdate(H, B, CK_ULONG, B, L);
        GenerateKey(H, M, A, CK_ULONG, *mut O);
        GenerateKeyPair(H, M, A, CK_ULONG, A, CK_ULONG, *mut O, *mut O);
        WrapKey(H, M, O, O, B, L);
        UnwrapKey(H, M, O, B, CK_ULONG, A, CK_ULONG, *mut O);
        DeriveKey(H, M, O, A, CK_ULONG, *mut O);
        SeedRandom(H, B, CK_ULONG);
        GenerateRandom(H, B, CK_ULONG);
        WaitForSlotEvent(CK_FLAGS, *mut CK_SLOT_ID, *mut std::ffi::c_void);
    }

    /// Legacy functions (PKCS #11 5.20): never parallel.
    pub unsafe extern "C" fn GetFunctionStatus(_: H) -> CK_RV {
        CKR_FUNCTION_NOT_PARALLEL
    }

    pub unsafe extern "C" fn CancelFunction(_: H) -> CK_RV {
        CKR_FUNCTION_NOT_PARALLEL
    }
}
