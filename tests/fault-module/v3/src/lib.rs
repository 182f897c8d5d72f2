//! The fault module (`tests/fault-module`) as a PKCS #11 3.0 library: the same code, and also
//! the `C_GetInterface` and `C_GetInterfaceList` symbols, which a library either exports or
//! does not (a control file cannot add or remove a symbol, hence this second `.so`). The control
//! key `get_interface=` makes them fail or serve the 2.x list; see the fault module's
//! documentation.

#![deny(unsafe_op_in_unsafe_fn)]

use cryptoki_sys::*;

/// This library's `C_GetFunctionList` (the fault module's: it exports no symbol of its own
/// from here without this).
pub use keyport_fault_module::C_GetFunctionList;

/// # Safety
///
/// The PKCS #11 contract (see [`keyport_fault_module::get_interface`]).
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_GetInterface(
    name: CK_UTF8CHAR_PTR,
    version: CK_VERSION_PTR,
    interface: CK_INTERFACE_PTR_PTR,
    flags: CK_FLAGS,
) -> CK_RV {
    // SAFETY: the caller keeps the same contract.
    unsafe { keyport_fault_module::get_interface(name, version, interface, flags) }
}

/// # Safety
///
/// The PKCS #11 contract (see [`keyport_fault_module::get_interface_list`]).
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_GetInterfaceList(list: CK_INTERFACE_PTR, count: CK_ULONG_PTR) -> CK_RV {
    // SAFETY: the caller keeps the same contract.
    unsafe { keyport_fault_module::get_interface_list(list, count) }
}
