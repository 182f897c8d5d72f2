//! The calls this module implements beyond `C_Initialize`, `C_Finalize` and
//! `C_GetFunctionList`: information, sessions, login (with the PIN-pad), objects, signatures.
//! Each checks and copies the caller's pointers and runs on the [`crate::token::Token`] under
//! the lock.

use crate::store::{self, Store, Value};
use crate::token::{slot_index, Param, MAX_PIN, MECHANISMS, MIN_PIN, SLOTS};
use crate::{
    bytes, get, guard, list_out, nonnull, pad, put, size, ulong, with, GENERATION, HANG_LIMIT,
    PINPAD_WAIT, POLL, R, VERSION,
};
use cryptoki_sys::*;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

pub(crate) unsafe extern "C" fn get_info(info: CK_INFO_PTR) -> CK_RV {
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

pub(crate) unsafe extern "C" fn get_slot_list(
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

pub(crate) unsafe extern "C" fn get_slot_info(slot: CK_SLOT_ID, info: CK_SLOT_INFO_PTR) -> CK_RV {
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

pub(crate) unsafe extern "C" fn get_token_info(slot: CK_SLOT_ID, info: CK_TOKEN_INFO_PTR) -> CK_RV {
    guard(|| {
        let (pin_flags, (sessions, rw)) = with(|t| {
            slot_index(slot)?;
            Ok((t.pin_flags(slot), t.counts(slot)))
        })?;
        let spec = &SLOTS[slot_index(slot)?];
        nonnull(info)?;
        let mut flags =
            CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_TOKEN_INITIALIZED | pin_flags;
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

pub(crate) unsafe extern "C" fn get_mechanism_list(
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

pub(crate) unsafe extern "C" fn get_mechanism_info(
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

pub(crate) unsafe extern "C" fn open_session(
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

pub(crate) unsafe extern "C" fn close_session(session: CK_SESSION_HANDLE) -> CK_RV {
    guard(|| with(|t| t.close(session)))
}

pub(crate) unsafe extern "C" fn close_all_sessions(slot: CK_SLOT_ID) -> CK_RV {
    guard(|| with(|t| t.close_all(slot)))
}

pub(crate) unsafe extern "C" fn get_session_info(
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

pub(crate) unsafe extern "C" fn login(
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

pub(crate) unsafe extern "C" fn logout(session: CK_SESSION_HANDLE) -> CK_RV {
    guard(|| with(|t| t.logout(session)))
}

pub(crate) unsafe extern "C" fn get_attribute_value(
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

pub(crate) unsafe extern "C" fn find_objects_init(
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

pub(crate) unsafe extern "C" fn find_objects(
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

pub(crate) unsafe extern "C" fn find_objects_final(session: CK_SESSION_HANDLE) -> CK_RV {
    guard(|| with(|t| t.find_final(session)))
}

pub(crate) unsafe extern "C" fn sign_init(
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

pub(crate) unsafe extern "C" fn sign(
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
