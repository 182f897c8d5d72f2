//! Who holds a port on Windows: the IP Helper's table of listening sockets with their process
//! (`GetExtendedTcpTable`), the process's executable name, and whether its token's user is ours.

use super::{printable_name, Holder};
use std::os::windows::ffi::OsStringExt;
use windows_sys::Win32::Foundation::{CloseHandle, ERROR_INSUFFICIENT_BUFFER, HANDLE, NO_ERROR};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetExtendedTcpTable, MIB_TCP6ROW_OWNER_PID, MIB_TCPROW_OWNER_PID, TCP_TABLE_OWNER_PID_LISTENER,
};
use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};
use windows_sys::Win32::Security::{EqualSid, GetTokenInformation, TokenUser, TOKEN_QUERY};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, OpenProcessToken, QueryFullProcessImageNameW,
    PROCESS_QUERY_LIMITED_INFORMATION,
};

/// Who listens on TCP `port` (IPv4 or IPv6, any local address).
pub fn holder(port: u16) -> Option<Holder> {
    let pid = listener_pid(AF_INET, port).or_else(|| listener_pid(AF_INET6, port))?;
    // Pid 0 (the idle process) never listens: the table does not know the owner (Wine 8.0
    // reports 0 for every socket).
    if pid == 0 {
        return Some(Holder {
            mine: None,
            owner: "another account".into(),
            pid: None,
            name: None,
        });
    }
    let process = Process::open(pid);
    // A process of another account cannot be opened without administrator rights; nor can a
    // process that has just ended: who it was is then not known.
    let mine = process
        .as_ref()
        .and_then(|p| same_user(p.0, Process::current()));
    let name = process.as_ref().and_then(|p| p.name());
    Some(Holder {
        mine,
        owner: "another account".into(),
        pid: Some(pid),
        name,
    })
}

/// The pid of the process listening on `port` in the table of address `family`.
fn listener_pid(family: u16, port: u16) -> Option<u32> {
    let table = tcp_table(family)?;
    // The table: a u32 count, then the rows (each naturally aligned: 4 bytes).
    let count = u32::from_ne_bytes(table.get(..4)?.try_into().ok()?) as usize;
    let rows = &table[4..];
    let found = |local_port: u32, owner: u32| {
        // The port is in network byte order in the low 16 bits.
        (u16::from_be(local_port as u16) == port).then_some(owner)
    };
    (0..count).find_map(|i| match u32::from(family) {
        f if f == u32::from(AF_INET) => {
            let size = std::mem::size_of::<MIB_TCPROW_OWNER_PID>();
            let row = rows.get(i * size..(i + 1) * size)?;
            // SAFETY: `row` holds one whole row; read unaligned into a copy.
            let row: MIB_TCPROW_OWNER_PID =
                unsafe { std::ptr::read_unaligned(row.as_ptr().cast()) };
            found(row.dwLocalPort, row.dwOwningPid)
        }
        _ => {
            let size = std::mem::size_of::<MIB_TCP6ROW_OWNER_PID>();
            let row = rows.get(i * size..(i + 1) * size)?;
            // SAFETY: as above.
            let row: MIB_TCP6ROW_OWNER_PID =
                unsafe { std::ptr::read_unaligned(row.as_ptr().cast()) };
            found(row.dwLocalPort, row.dwOwningPid)
        }
    })
}

/// The raw table of listeners of one address family.
fn tcp_table(family: u16) -> Option<Vec<u8>> {
    let mut size = 0u32;
    for _ in 0..4 {
        let mut buf = vec![0u8; size as usize];
        let ptr = if buf.is_empty() {
            std::ptr::null_mut()
        } else {
            buf.as_mut_ptr().cast()
        };
        // SAFETY: `buf` has `size` bytes (or the call only reports the size it needs).
        let rc = unsafe {
            GetExtendedTcpTable(
                ptr,
                &mut size,
                0,
                u32::from(family),
                TCP_TABLE_OWNER_PID_LISTENER,
                0,
            )
        };
        match rc {
            NO_ERROR if !buf.is_empty() => return Some(buf),
            NO_ERROR | ERROR_INSUFFICIENT_BUFFER => size = size.max(4),
            _ => return None,
        }
    }
    None
}

/// A process handle, closed when dropped.
struct Process(HANDLE);

impl Process {
    fn open(pid: u32) -> Option<Process> {
        // SAFETY: a query-only handle, closed in Drop.
        let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        (!h.is_null()).then_some(Process(h))
    }

    fn current() -> HANDLE {
        // SAFETY: the pseudo-handle of this process; never closed.
        unsafe { GetCurrentProcess() }
    }

    /// The executable's file name without `.exe`, printable.
    fn name(&self) -> Option<String> {
        let mut buf = [0u16; 1024];
        let mut len = buf.len() as u32;
        // SAFETY: `buf` holds `len` UTF-16 units.
        if unsafe { QueryFullProcessImageNameW(self.0, 0, buf.as_mut_ptr(), &mut len) } == 0 {
            return None;
        }
        let path = std::path::PathBuf::from(std::ffi::OsString::from_wide(&buf[..len as usize]));
        let stem = path.file_stem()?.to_string_lossy().into_owned();
        Some(printable_name(stem.as_bytes()))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: our own handle, closed once.
        unsafe { CloseHandle(self.0) };
    }
}

/// Whether two processes' tokens have the same user (None: a token cannot be read).
fn same_user(a: HANDLE, b: HANDLE) -> Option<bool> {
    let (ua, ub) = (token_user(a)?, token_user(b)?);
    // The SID follows the TOKEN_USER header; its pointer is the first field.
    let sid = |buf: &Vec<u64>| {
        // SAFETY: `buf` holds a TOKEN_USER, whose first field is the SID's pointer (into buf).
        unsafe { *(buf.as_ptr() as *const *mut core::ffi::c_void) }
    };
    // SAFETY: two valid SIDs inside the buffers, alive for the call.
    Some(unsafe { EqualSid(sid(&ua), sid(&ub)) } != 0)
}

/// A process's TOKEN_USER, in an 8-byte-aligned buffer.
fn token_user(process: HANDLE) -> Option<Vec<u64>> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: a query-only token handle, closed below.
    if unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) } == 0 {
        return None;
    }
    let mut buf = vec![0u64; 128];
    let mut len = 0u32;
    // SAFETY: `buf` has 1024 bytes; the call writes at most that and says how much it used.
    let ok = unsafe {
        GetTokenInformation(
            token,
            TokenUser,
            buf.as_mut_ptr().cast(),
            (buf.len() * 8) as u32,
            &mut len,
        )
    };
    // SAFETY: the token opened above.
    unsafe { CloseHandle(token) };
    (ok != 0).then_some(buf)
}
