//! The PKCS #11 conventions cryptoki hides, through the raw function list of a private copy:
//! length queries with NULL buffers, CKR_BUFFER_TOO_SMALL, CK_UNAVAILABLE_INFORMATION, the
//! signing operation's life, and the calls that are not supported.

mod common;

use common::*;
use cryptoki_sys::*;
use std::ptr;

/// The function list of a private copy of the library (kept loaded while it is used).
struct Raw {
    _copy: Copy,
    _lib: libloading::Library,
    f: &'static CK_FUNCTION_LIST,
}

impl Raw {
    fn new() -> Raw {
        let copy = Copy::new();
        // SAFETY: loading the soft token runs no code but Rust's own initialisers.
        let lib = unsafe { libloading::Library::new(&copy.lib) }.unwrap();
        let mut list: CK_FUNCTION_LIST_PTR = ptr::null_mut();
        // SAFETY: the PKCS #11 entry point, called as the standard says.
        let rv = unsafe {
            let get = lib
                .get::<unsafe extern "C" fn(CK_FUNCTION_LIST_PTR_PTR) -> CK_RV>(
                    b"C_GetFunctionList\0",
                )
                .unwrap();
            get(&mut list)
        };
        assert_eq!(rv, CKR_OK);
        // SAFETY: a static list inside the library, which `_lib` keeps loaded.
        let f: &'static CK_FUNCTION_LIST = unsafe { &*list };
        Raw {
            _copy: copy,
            _lib: lib,
            f,
        }
    }
}

fn attr(t: CK_ATTRIBUTE_TYPE, buf: &mut [u8]) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: t,
        pValue: if buf.is_empty() {
            ptr::null_mut()
        } else {
            buf.as_mut_ptr().cast()
        },
        ulValueLen: buf.len().try_into().unwrap(),
    }
}

fn len_of(a: &CK_ATTRIBUTE) -> CK_ULONG {
    // A copy: the structure is packed on Windows.
    let a = *a;
    a.ulValueLen
}

#[test]
fn the_conventions_cryptoki_hides() {
    let raw = Raw::new();
    let f = raw.f;
    // SAFETY: every call below follows the PKCS #11 contract (valid pointers and lengths).
    unsafe {
        assert_eq!(
            f.C_GetInfo.unwrap()(&mut CK_INFO::default()),
            CKR_CRYPTOKI_NOT_INITIALIZED
        );
        let mut args = CK_C_INITIALIZE_ARGS {
            flags: CKF_OS_LOCKING_OK,
            ..Default::default()
        };
        let args_ptr: *mut CK_C_INITIALIZE_ARGS = &mut args;
        assert_eq!(f.C_Initialize.unwrap()(args_ptr.cast()), CKR_OK);
        assert_eq!(
            f.C_Initialize.unwrap()(ptr::null_mut()),
            CKR_CRYPTOKI_ALREADY_INITIALIZED
        );

        // Slot list: the length with NULL, too small, then right.
        let mut count: CK_ULONG = 0;
        assert_eq!(
            f.C_GetSlotList.unwrap()(CK_TRUE, ptr::null_mut(), &mut count),
            CKR_OK
        );
        assert_eq!(count, 2);
        let mut slots = [CK_SLOT_ID::MAX; 2];
        count = 1;
        assert_eq!(
            f.C_GetSlotList.unwrap()(CK_TRUE, slots.as_mut_ptr(), &mut count),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(count, 2);
        assert_eq!(
            f.C_GetSlotList.unwrap()(CK_TRUE, slots.as_mut_ptr(), &mut count),
            CKR_OK
        );
        assert_eq!(slots, [0, 1]);
        assert_eq!(
            f.C_GetSlotList.unwrap()(CK_TRUE, ptr::null_mut(), ptr::null_mut()),
            CKR_ARGUMENTS_BAD
        );

        let mut mechs: CK_ULONG = 0;
        assert_eq!(
            f.C_GetMechanismList.unwrap()(0, ptr::null_mut(), &mut mechs),
            CKR_OK
        );
        assert_eq!(mechs, 3);

        // Sessions must be serial.
        let mut h: CK_SESSION_HANDLE = 0;
        let no_app = ptr::null_mut();
        assert_eq!(
            f.C_OpenSession.unwrap()(0, 0, no_app, None, &mut h),
            CKR_SESSION_PARALLEL_NOT_SUPPORTED
        );
        assert_eq!(
            f.C_OpenSession.unwrap()(0, CKF_SERIAL_SESSION, no_app, None, &mut h),
            CKR_OK
        );

        // Find the EC certificate, in two calls of one handle.
        let mut class = CKO_CERTIFICATE.to_ne_bytes();
        let mut id = [EC_ID];
        let mut template = [attr(CKA_CLASS, &mut class), attr(CKA_ID, &mut id)];
        assert_eq!(
            f.C_FindObjectsInit.unwrap()(h, template.as_mut_ptr(), 2),
            CKR_OK
        );
        assert_eq!(
            f.C_FindObjectsInit.unwrap()(h, template.as_mut_ptr(), 2),
            CKR_OPERATION_ACTIVE
        );
        let mut found = [0 as CK_OBJECT_HANDLE; 4];
        let mut n: CK_ULONG = 0;
        assert_eq!(
            f.C_FindObjects.unwrap()(h, found.as_mut_ptr(), 4, &mut n),
            CKR_OK
        );
        assert_eq!(n, 1);
        let cert = found[0];
        assert_eq!(
            f.C_FindObjects.unwrap()(h, found.as_mut_ptr(), 4, &mut n),
            CKR_OK
        );
        assert_eq!(n, 0);
        assert_eq!(f.C_FindObjectsFinal.unwrap()(h), CKR_OK);
        assert_eq!(
            f.C_FindObjectsFinal.unwrap()(h),
            CKR_OPERATION_NOT_INITIALIZED
        );

        // Attribute lengths with NULL buffers; an unknown attribute is unavailable.
        let mut template = [
            attr(CKA_VALUE, &mut []),
            attr(CKA_ID, &mut []),
            attr(CKA_MODULUS, &mut []),
        ];
        assert_eq!(
            f.C_GetAttributeValue.unwrap()(h, cert, template.as_mut_ptr(), 3),
            CKR_ATTRIBUTE_TYPE_INVALID
        );
        let der_len = raw._copy.cert(EC_ID).len();
        assert_eq!(len_of(&template[0]), CK_ULONG::try_from(der_len).unwrap());
        assert_eq!(len_of(&template[1]), 1);
        assert_eq!(len_of(&template[2]), CK_UNAVAILABLE_INFORMATION);
        // Too small a buffer; then the right one.
        let mut small = [0u8; 10];
        let mut template = [attr(CKA_VALUE, &mut small)];
        assert_eq!(
            f.C_GetAttributeValue.unwrap()(h, cert, template.as_mut_ptr(), 1),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(len_of(&template[0]), CK_UNAVAILABLE_INFORMATION);
        let mut room = vec![0u8; der_len + 5];
        let mut template = [attr(CKA_VALUE, &mut room)];
        assert_eq!(
            f.C_GetAttributeValue.unwrap()(h, cert, template.as_mut_ptr(), 1),
            CKR_OK
        );
        assert_eq!(len_of(&template[0]), CK_ULONG::try_from(der_len).unwrap());
        assert_eq!(&room[..der_len], raw._copy.cert(EC_ID).as_slice());
        assert_eq!(
            f.C_GetAttributeValue.unwrap()(h, 9999, template.as_mut_ptr(), 1),
            CKR_OBJECT_HANDLE_INVALID
        );

        // Log in (only CKU_USER), find the private key.
        let mut pin = PIN.as_bytes().to_vec();
        let pin_len = CK_ULONG::try_from(pin.len()).unwrap();
        assert_eq!(
            f.C_Login.unwrap()(h, CKU_SO, pin.as_mut_ptr(), pin_len),
            CKR_USER_TYPE_INVALID
        );
        assert_eq!(
            f.C_Login.unwrap()(h, CKU_USER, pin.as_mut_ptr(), pin_len),
            CKR_OK
        );
        let mut class = CKO_PRIVATE_KEY.to_ne_bytes();
        let mut template = [attr(CKA_CLASS, &mut class), attr(CKA_ID, &mut id)];
        assert_eq!(
            f.C_FindObjectsInit.unwrap()(h, template.as_mut_ptr(), 2),
            CKR_OK
        );
        assert_eq!(
            f.C_FindObjects.unwrap()(h, found.as_mut_ptr(), 4, &mut n),
            CKR_OK
        );
        assert_eq!(n, 1);
        let key = found[0];
        assert_eq!(f.C_FindObjectsFinal.unwrap()(h), CKR_OK);

        // Sign: length query, too small, then the signature; the operation then ends.
        let mut mechanism = CK_MECHANISM {
            mechanism: CKM_ECDSA,
            pParameter: ptr::null_mut(),
            ulParameterLen: 0,
        };
        let mut digest = sha256(b"raw");
        let digest_len = CK_ULONG::try_from(digest.len()).unwrap();
        let sign = f.C_Sign.unwrap();
        let mut len: CK_ULONG = 0;
        assert_eq!(
            sign(
                h,
                digest.as_mut_ptr(),
                digest_len,
                ptr::null_mut(),
                &mut len
            ),
            CKR_OPERATION_NOT_INITIALIZED
        );
        assert_eq!(f.C_SignInit.unwrap()(h, &mut mechanism, key), CKR_OK);
        assert_eq!(
            f.C_SignInit.unwrap()(h, &mut mechanism, key),
            CKR_OPERATION_ACTIVE
        );
        assert_eq!(
            sign(
                h,
                digest.as_mut_ptr(),
                digest_len,
                ptr::null_mut(),
                &mut len
            ),
            CKR_OK
        );
        assert_eq!(len, 64);
        let mut sig = [0u8; 64];
        len = 10;
        assert_eq!(
            sign(
                h,
                digest.as_mut_ptr(),
                digest_len,
                sig.as_mut_ptr(),
                &mut len
            ),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(len, 64);
        assert_eq!(
            sign(
                h,
                digest.as_mut_ptr(),
                digest_len,
                sig.as_mut_ptr(),
                &mut len
            ),
            CKR_OK
        );
        assert_eq!(len, 64);
        assert!(verifies(
            &raw._copy.cert(EC_ID),
            Scheme::Ecdsa,
            &digest,
            &sig
        ));
        assert_eq!(
            sign(
                h,
                digest.as_mut_ptr(),
                digest_len,
                sig.as_mut_ptr(),
                &mut len
            ),
            CKR_OPERATION_NOT_INITIALIZED
        );

        // A PSS parameter of the wrong size.
        let mut params = CK_RSA_PKCS_PSS_PARAMS {
            hashAlg: CKM_SHA256,
            mgf: CKG_MGF1_SHA256,
            sLen: 32,
        };
        let mut mechanism = CK_MECHANISM {
            mechanism: CKM_RSA_PKCS_PSS,
            pParameter: (&mut params as *mut CK_RSA_PKCS_PSS_PARAMS).cast(),
            ulParameterLen: 3,
        };
        let mut rsa_id = [RSA_ID];
        let mut template = [attr(CKA_CLASS, &mut class), attr(CKA_ID, &mut rsa_id)];
        assert_eq!(
            f.C_FindObjectsInit.unwrap()(h, template.as_mut_ptr(), 2),
            CKR_OK
        );
        assert_eq!(
            f.C_FindObjects.unwrap()(h, found.as_mut_ptr(), 4, &mut n),
            CKR_OK
        );
        assert_eq!(f.C_FindObjectsFinal.unwrap()(h), CKR_OK);
        assert_eq!(
            f.C_SignInit.unwrap()(h, &mut mechanism, found[0]),
            CKR_MECHANISM_PARAM_INVALID
        );

        // What the token does not do.
        assert_eq!(
            f.C_SignUpdate.unwrap()(h, digest.as_mut_ptr(), digest_len),
            CKR_FUNCTION_NOT_SUPPORTED
        );
        assert_eq!(
            f.C_GenerateRandom.unwrap()(h, sig.as_mut_ptr(), 8),
            CKR_FUNCTION_NOT_SUPPORTED
        );
        let mut event: CK_SLOT_ID = 0;
        assert_eq!(
            f.C_WaitForSlotEvent.unwrap()(CKF_DONT_BLOCK, &mut event, ptr::null_mut()),
            CKR_FUNCTION_NOT_SUPPORTED
        );

        // Session info, then the end.
        let mut info = CK_SESSION_INFO::default();
        assert_eq!(f.C_GetSessionInfo.unwrap()(h, &mut info), CKR_OK);
        let state = info.state;
        assert_eq!(state, CKS_RO_USER_FUNCTIONS);
        assert_eq!(f.C_CloseSession.unwrap()(h), CKR_OK);
        assert_eq!(f.C_CloseSession.unwrap()(h), CKR_SESSION_HANDLE_INVALID);
        assert_eq!(f.C_Finalize.unwrap()(ptr::null_mut()), CKR_OK);
        assert_eq!(
            f.C_Finalize.unwrap()(ptr::null_mut()),
            CKR_CRYPTOKI_NOT_INITIALIZED
        );
    }
}

#[test]
fn initialize_arguments() {
    let raw = Raw::new();
    let f = raw.f;
    unsafe extern "C" fn create(_: *mut CK_VOID_PTR) -> CK_RV {
        CKR_OK
    }
    unsafe extern "C" fn other(_: CK_VOID_PTR) -> CK_RV {
        CKR_OK
    }
    // SAFETY: C_Initialize with valid CK_C_INITIALIZE_ARGS.
    unsafe {
        let mut reserved = 0u8;
        let mut args = CK_C_INITIALIZE_ARGS {
            pReserved: (&mut reserved as *mut u8).cast(),
            ..Default::default()
        };
        let p: *mut CK_C_INITIALIZE_ARGS = &mut args;
        assert_eq!(f.C_Initialize.unwrap()(p.cast()), CKR_ARGUMENTS_BAD);
        // Only some of the lock functions: bad; all of them without OS locking: cannot.
        let mut args = CK_C_INITIALIZE_ARGS {
            CreateMutex: Some(create),
            ..Default::default()
        };
        let p: *mut CK_C_INITIALIZE_ARGS = &mut args;
        assert_eq!(f.C_Initialize.unwrap()(p.cast()), CKR_ARGUMENTS_BAD);
        let mut args = CK_C_INITIALIZE_ARGS {
            CreateMutex: Some(create),
            DestroyMutex: Some(other),
            LockMutex: Some(other),
            UnlockMutex: Some(other),
            ..Default::default()
        };
        let p: *mut CK_C_INITIALIZE_ARGS = &mut args;
        assert_eq!(f.C_Initialize.unwrap()(p.cast()), CKR_CANT_LOCK);
        (*p).flags = CKF_OS_LOCKING_OK;
        assert_eq!(f.C_Initialize.unwrap()(p.cast()), CKR_OK);
        assert_eq!(f.C_Finalize.unwrap()(ptr::null_mut()), CKR_OK);
    }
}
