//! Everything this module does not do: CKR_FUNCTION_NOT_SUPPORTED (the legacy parallel
//! functions: CKR_FUNCTION_NOT_PARALLEL).

#![allow(non_snake_case)]

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
