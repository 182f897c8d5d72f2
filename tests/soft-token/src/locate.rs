//! The file this module was loaded from (its token directory is beside it, see `store`).

use std::path::PathBuf;

/// The path of the loaded `.so`, found with `dladdr` on one of its functions.
#[cfg(unix)]
pub fn this_library() -> Option<PathBuf> {
    use std::ffi::{CStr, OsStr};
    use std::os::unix::ffi::OsStrExt;
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    let me = crate::C_GetFunctionList as *const libc::c_void;
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
    // Absolute, not canonical: a symlinked library reads the directory beside the link.
    std::path::absolute(OsStr::from_bytes(file.to_bytes())).ok()
}

/// The path of the loaded DLL: the module that holds one of its functions
/// (`GetModuleHandleExW` with FROM_ADDRESS), then its file name.
#[cfg(windows)]
pub fn this_library() -> Option<PathBuf> {
    use std::ffi::OsString;
    use std::os::windows::ffi::OsStringExt;
    use windows_sys::Win32::Foundation::HMODULE;
    use windows_sys::Win32::System::LibraryLoader::{
        GetModuleFileNameW, GetModuleHandleExW, GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS,
        GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
    };
    let mut module: HMODULE = std::ptr::null_mut();
    let me = crate::C_GetFunctionList as *const u16;
    // SAFETY: FROM_ADDRESS takes any address inside a module (here: a function of this DLL);
    // UNCHANGED_REFCOUNT: no reference to release afterwards. `module` is a valid out pointer.
    let found = unsafe {
        GetModuleHandleExW(
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
            me,
            &mut module,
        )
    };
    if found == 0 {
        return None;
    }
    // Long paths: grow the buffer until the name fits.
    let mut buf = vec![0u16; 512];
    loop {
        let room = u32::try_from(buf.len()).ok()?;
        // SAFETY: `buf` holds `room` UTF-16 units; `module` is this DLL, loaded.
        let n = unsafe { GetModuleFileNameW(module, buf.as_mut_ptr(), room) };
        let n = usize::try_from(n).ok()?;
        if n == 0 {
            return None;
        }
        if n < buf.len() {
            return Some(PathBuf::from(OsString::from_wide(&buf[..n])));
        }
        if buf.len() >= 32 * 1024 {
            return None;
        }
        buf.resize(buf.len() * 2, 0);
    }
}
