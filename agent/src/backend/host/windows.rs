//! The module host's Windows side: what `pipe.rs` (poll, non-blocking writes) and `kill(2)`
//! do on Unix.
//!
//! * Deadlines on the channel: std creates the agent's ends of a child's pipes with
//!   `FILE_FLAG_OVERLAPPED`, so a read or write here is an overlapped one whose completion is
//!   awaited until the deadline, then cancelled ([`DeadlineReader`], [`DeadlineWriter`]). A
//!   timed-out transfer leaves the channel unusable; the caller stops the host, as on Unix.
//! * A job object ([`adopt`]): every host is put into one job that the agent holds open and that
//!   kills its processes when it closes, so no host outlives the agent however the agent ends;
//!   the job also makes an unhandled exception end a host at once (no error-report dialog
//!   keeping a crashed host alive).
//! * Handles: std creates every handle it opens non-inheritable, and makes only the three
//!   pipe ends of the child inheritable for the duration of the spawn (under a lock), so a host
//!   inherits its pipes and nothing else.
//! * [`take_channel`]: the host moves its channel off the standard handles before it loads the
//!   module, so that a library that prints cannot corrupt the frames.

use std::io::{Read, Write};
use std::os::windows::io::{AsRawHandle, BorrowedHandle, OwnedHandle, RawHandle};
use std::sync::OnceLock;
use std::time::Instant;
use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, ERROR_BROKEN_PIPE, ERROR_HANDLE_EOF, ERROR_IO_PENDING, HANDLE,
    WAIT_OBJECT_0,
};
use windows_sys::Win32::Storage::FileSystem::{ReadFile, WriteFile};
use windows_sys::Win32::System::Console::{
    GetStdHandle, SetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
    SetInformationJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, TerminateProcess, WaitForSingleObject, INFINITE,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};

/// One overlapped transfer on `handle`, awaited until `deadline`: the bytes moved, `Ok(0)` at
/// the end of the pipe, `TimedOut` once the deadline passed (the transfer is cancelled first).
fn transfer(
    handle: RawHandle,
    deadline: Instant,
    op: impl FnOnce(HANDLE, *mut OVERLAPPED) -> i32,
) -> std::io::Result<usize> {
    // SAFETY: a manual-reset event owned by this frame, closed on every path below.
    let event = unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) };
    if event.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    let event = Event(event);
    // SAFETY: all-zero is a valid OVERLAPPED (offset 0, no event) before the event is set.
    let mut ov: OVERLAPPED = unsafe { std::mem::zeroed() };
    ov.hEvent = event.0;
    let handle = handle as HANDLE;
    let started = op(handle, &mut ov);
    // SAFETY: GetLastError right after the call whose failure it explains.
    if started == 0 && unsafe { GetLastError() } != ERROR_IO_PENDING {
        return finished(std::io::Error::last_os_error());
    }
    if started == 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = left.as_millis().min(u128::from(INFINITE - 1)) as u32;
        // SAFETY: waiting on our own event.
        if unsafe { WaitForSingleObject(event.0, ms) } != WAIT_OBJECT_0 {
            // SAFETY: cancels only this transfer; `ov` stays alive until it is over (below).
            unsafe { CancelIoEx(handle, &ov) };
            let mut moved = 0;
            // SAFETY: waits until the cancelled transfer is done with `ov` and the buffer.
            if unsafe { GetOverlappedResult(handle, &ov, &mut moved, 1) } != 0 && moved > 0 {
                return Ok(moved as usize);
            }
            return Err(std::io::ErrorKind::TimedOut.into());
        }
    }
    let mut moved = 0;
    // SAFETY: the transfer is complete (signalled, or finished at once); `ov` is ours.
    if unsafe { GetOverlappedResult(handle, &ov, &mut moved, 1) } == 0 {
        return finished(std::io::Error::last_os_error());
    }
    Ok(moved as usize)
}

/// The end of a pipe reads as the end of the stream, as on Unix.
fn finished(e: std::io::Error) -> std::io::Result<usize> {
    match e.raw_os_error().map(|c| c as u32) {
        Some(ERROR_BROKEN_PIPE) | Some(ERROR_HANDLE_EOF) => Ok(0),
        _ => Err(e),
    }
}

struct Event(HANDLE);

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: our own event handle, closed once.
        unsafe { CloseHandle(self.0) };
    }
}

/// Reads the host's stdout, giving up at `deadline` (`TimedOut`).
pub(super) struct DeadlineReader<'a> {
    pub pipe: &'a mut std::process::ChildStdout,
    pub deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let len = buf.len().min(u32::MAX as usize) as u32;
        transfer(self.pipe.as_raw_handle(), self.deadline, |h, ov| {
            // SAFETY: `buf` outlives the transfer (`transfer` waits for it to end).
            unsafe { ReadFile(h, buf.as_mut_ptr(), len, std::ptr::null_mut(), ov) }
        })
    }
}

/// Writes into the host's stdin, giving up at `deadline` (`TimedOut`).
pub(super) struct DeadlineWriter<'a> {
    pub pipe: &'a mut std::process::ChildStdin,
    pub deadline: Instant,
}

impl Write for DeadlineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let len = buf.len().min(u32::MAX as usize) as u32;
        transfer(self.pipe.as_raw_handle(), self.deadline, |h, ov| {
            // SAFETY: `buf` outlives the transfer (`transfer` waits for it to end).
            unsafe { WriteFile(h, buf.as_ptr(), len, std::ptr::null_mut(), ov) }
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The job every host of this agent runs in (created at the first host).
fn job() -> std::io::Result<HANDLE> {
    static JOB: OnceLock<usize> = OnceLock::new();
    if let Some(job) = JOB.get() {
        return Ok(*job as HANDLE);
    }
    // SAFETY: an unnamed job with default security; the handle is kept for the agent's life
    // (closing it, which the end of the agent does, kills the hosts).
    let job = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
    if job.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: all-zero is "no limits"; we set two flags.
    let mut limits: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
    limits.BasicLimitInformation.LimitFlags =
        JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION;
    // SAFETY: the structure and its size match the information class.
    let set = unsafe {
        SetInformationJobObject(
            job,
            JobObjectExtendedLimitInformation,
            (&limits as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast(),
            std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
        )
    };
    if set == 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: the job we just made, unused.
        unsafe { CloseHandle(job) };
        return Err(e);
    }
    // Two hosts starting at once: the first job stored wins, the other is closed.
    match JOB.set(job as usize) {
        Ok(()) => Ok(job),
        Err(_) => {
            // SAFETY: our own job, empty, not stored.
            unsafe { CloseHandle(job) };
            Ok(*JOB.get().expect("set") as HANDLE)
        }
    }
}

/// Put a freshly started host into the agent's job, and keep a handle to stop it with.
pub(super) fn adopt(child: &std::process::Child) -> std::io::Result<OwnedHandle> {
    let job = job()?;
    // SAFETY: the child's process handle, valid while `child` is.
    if unsafe { AssignProcessToJobObject(job, child.as_raw_handle() as HANDLE) } == 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: borrowed for the duplication only.
    unsafe { BorrowedHandle::borrow_raw(child.as_raw_handle()) }.try_clone_to_owned()
}

/// Stop a host at once (it hung).
pub(super) fn terminate(process: &OwnedHandle) {
    // SAFETY: our own process handle; the exit code says the agent stopped it.
    unsafe { TerminateProcess(process.as_raw_handle() as HANDLE, 1) };
}

/// How a host's exit code reads, for the known crash codes (NTSTATUS).
pub(super) fn exit_code_name(code: i32) -> Option<&'static str> {
    Some(match code as u32 {
        0xC000_0005 => "access violation",
        0xC000_0409 => "fail-fast: the library aborted",
        0xC000_00FD => "stack overflow",
        0xC000_001D => "illegal instruction",
        0xC000_0094 => "integer division by zero",
        0xC000_0135 => "a DLL it needs was not found",
        0xC000_0142 => "a DLL failed to initialise",
        3 => "abort",
        _ => return None,
    })
}

/// In the host: the channel (what stdin and stdout were), with stdin then reading `NUL` and
/// stdout writing to stderr, for Windows and for the C runtime's descriptors 0 and 1 (which C
/// libraries print through).
pub(super) fn take_channel() -> std::io::Result<(std::fs::File, std::fs::File)> {
    let std_handle = |which| {
        // SAFETY: GetStdHandle has no preconditions.
        let h = unsafe { GetStdHandle(which) };
        if h.is_null() || h as isize == -1 {
            return Err(std::io::Error::other("no channel on the standard handles"));
        }
        // SAFETY: a handle of this process, borrowed for the duplication only.
        unsafe { BorrowedHandle::borrow_raw(h as RawHandle) }.try_clone_to_owned()
    };
    let input = std::fs::File::from(std_handle(STD_INPUT_HANDLE)?);
    let output = std::fs::File::from(std_handle(STD_OUTPUT_HANDLE)?);
    let null = std::fs::File::open("NUL")?;
    // SAFETY: SetStdHandle with handles this process owns; `null` is kept open for the
    // process's life (leaked on purpose: it is the new standard input).
    unsafe {
        SetStdHandle(STD_INPUT_HANDLE, null.as_raw_handle() as HANDLE);
        SetStdHandle(STD_OUTPUT_HANDLE, GetStdHandle(STD_ERROR_HANDLE));
    }
    std::mem::forget(null);
    // The C runtime read its descriptors at start-up: point them there too (this closes its
    // copies of the old handles; ours are the duplicates above).
    // SAFETY: descriptors of the C runtime, each checked.
    unsafe {
        let nul = libc::open(c"NUL".as_ptr(), libc::O_RDONLY);
        if nul < 0 || libc::dup2(nul, 0) < 0 || libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::other(
                "cannot move the C runtime's stdin and stdout",
            ));
        }
        libc::close(nul);
    }
    Ok((input, output))
}
