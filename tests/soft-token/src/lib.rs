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

mod calls;
pub mod keys;
mod locate;
pub mod store;
pub mod token;
mod unsupported;

use cryptoki_sys::*;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use store::Store;
use token::Token;

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
    C_GetInfo: Some(calls::get_info),
    C_GetFunctionList: Some(C_GetFunctionList),
    C_GetSlotList: Some(calls::get_slot_list),
    C_GetSlotInfo: Some(calls::get_slot_info),
    C_GetTokenInfo: Some(calls::get_token_info),
    C_GetMechanismList: Some(calls::get_mechanism_list),
    C_GetMechanismInfo: Some(calls::get_mechanism_info),
    C_InitToken: Some(unsupported::InitToken),
    C_InitPIN: Some(unsupported::InitPIN),
    C_SetPIN: Some(unsupported::SetPIN),
    C_OpenSession: Some(calls::open_session),
    C_CloseSession: Some(calls::close_session),
    C_CloseAllSessions: Some(calls::close_all_sessions),
    C_GetSessionInfo: Some(calls::get_session_info),
    C_GetOperationState: Some(unsupported::GetOperationState),
    C_SetOperationState: Some(unsupported::SetOperationState),
    C_Login: Some(calls::login),
    C_Logout: Some(calls::logout),
    C_CreateObject: Some(unsupported::CreateObject),
    C_CopyObject: Some(unsupported::CopyObject),
    C_DestroyObject: Some(unsupported::DestroyObject),
    C_GetObjectSize: Some(unsupported::GetObjectSize),
    C_GetAttributeValue: Some(calls::get_attribute_value),
    C_SetAttributeValue: Some(unsupported::SetAttributeValue),
    C_FindObjectsInit: Some(calls::find_objects_init),
    C_FindObjects: Some(calls::find_objects),
    C_FindObjectsFinal: Some(calls::find_objects_final),
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
    C_SignInit: Some(calls::sign_init),
    C_Sign: Some(calls::sign),
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
