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
    CloseHandle, GetLastError, SetHandleInformation, ERROR_BROKEN_PIPE, ERROR_HANDLE_EOF,
    ERROR_IO_PENDING, HANDLE, HANDLE_FLAG_INHERIT, WAIT_OBJECT_0,
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

/// Before the agent starts a host: its own standard handles stop being inheritable (a console
/// or the pipes of whoever started it: std gives a child the handles it asks for as duplicates
/// of its own, so nothing else needs them inheritable), and the job exists. With std's other
/// handles all non-inheritable, a host then inherits its three pipes and nothing else.
pub(super) fn before_spawn() -> std::io::Result<()> {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.get().is_none() {
        for which in [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE] {
            // SAFETY: GetStdHandle has no preconditions; SetHandleInformation changes only the
            // inheritance flag of a handle of this process (a null or invalid one is refused).
            unsafe {
                let h = GetStdHandle(which);
                if !h.is_null() && h as isize != -1 {
                    SetHandleInformation(h, HANDLE_FLAG_INHERIT, 0);
                }
            }
        }
        let _ = DONE.set(());
    }
    job().map(drop)
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

#[cfg(test)]
mod tests {
    //! These run under Wine (`cargo test --target x86_64-pc-windows-gnu`): each test starts this
    //! test program again as the process it needs (`KEYPORT_WIN_TEST` says which role).
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::Duration;
    use windows_sys::Win32::System::Threading::{OpenProcess, PROCESS_SYNCHRONIZE};

    const ROLE: &str = "KEYPORT_WIN_TEST";

    /// This test program, running only `test` with `role`.
    fn again(test: &str, role: &str) -> Command {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(ROLE, role);
        c
    }

    /// A role that waits: says so on stdout, then sleeps, reading and writing nothing.
    fn sleeper_role() -> bool {
        if std::env::var(ROLE).as_deref() == Ok("sleeper") {
            println!("SLEEPING");
            std::thread::sleep(Duration::from_secs(60));
            std::process::exit(0);
        }
        false
    }

    #[test]
    fn a_host_does_not_outlive_the_agent_that_adopted_it() {
        const TEST: &str =
            "backend::host::windows::tests::a_host_does_not_outlive_the_agent_that_adopted_it";
        if sleeper_role() {
            return;
        }
        if std::env::var(ROLE).as_deref() == Ok("agent") {
            // The "agent": adopts a sleeping host, says its pid, and ends without stopping it.
            before_spawn().unwrap();
            let child = again(TEST, "sleeper")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            // It inherited none of the agent's handles: `output()` below returns at once,
            // not when the sleeper ends.
            let _stopper = adopt(&child).unwrap();
            println!("HOST {}", child.id());
            std::process::exit(0);
        }
        let started = Instant::now();
        let out = again(TEST, "agent").output().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the host held the agent's stdout or stderr: it inherited them"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let pid: u32 = text
            .split("HOST ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("no host pid in {text:?}"));
        // SAFETY: a wait-only handle, closed below; none (the process is gone) is fine too.
        let h = unsafe { OpenProcess(PROCESS_SYNCHRONIZE, 0, pid) };
        if h.is_null() {
            return; // Already gone.
        }
        // SAFETY: the handle just opened.
        let ended = unsafe { WaitForSingleObject(h, 15_000) } == WAIT_OBJECT_0;
        // SAFETY: as above.
        unsafe { CloseHandle(h) };
        assert!(ended, "the host {pid} outlived its agent by 15 s");
    }

    #[test]
    fn reading_a_silent_host_and_writing_to_a_deaf_one_give_up_at_the_deadline() {
        const TEST: &str = "backend::host::windows::tests::\
            reading_a_silent_host_and_writing_to_a_deaf_one_give_up_at_the_deadline";
        if sleeper_role() {
            return;
        }
        let mut child = again(TEST, "sleeper")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stopper = adopt(&child).unwrap();
        let (mut stdin, mut stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
        // The test harness's words, then the sleeper's: from then on it writes nothing.
        let mut said = Vec::new();
        while !String::from_utf8_lossy(&said).contains("SLEEPING\n") {
            let mut byte = [0u8; 1];
            let n = DeadlineReader {
                pipe: &mut stdout,
                deadline: Instant::now() + Duration::from_secs(20),
            }
            .read(&mut byte)
            .unwrap();
            assert_eq!(
                n,
                1,
                "the sleeper ended: {:?}",
                String::from_utf8_lossy(&said)
            );
            said.push(byte[0]);
        }

        let started = Instant::now();
        let mut buf = [0u8; 16];
        let read = DeadlineReader {
            pipe: &mut stdout,
            deadline: started + Duration::from_millis(500),
        }
        .read(&mut buf);
        let waited = started.elapsed();
        assert_eq!(read.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        assert!(
            waited >= Duration::from_millis(450) && waited < Duration::from_secs(5),
            "{waited:?}"
        );

        // Far more than the pipe holds: the writer stops at the deadline, not never.
        let started = Instant::now();
        let big = vec![7u8; 4 << 20];
        let written = DeadlineWriter {
            pipe: &mut stdin,
            deadline: started + Duration::from_millis(500),
        }
        .write_all(&big);
        let waited = started.elapsed();
        assert_eq!(written.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        assert!(waited < Duration::from_secs(5), "{waited:?}");

        // And stopping it ends it: the reader sees the end of the pipe.
        terminate(&stopper);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(1));
        let n = DeadlineReader {
            pipe: &mut stdout,
            deadline: Instant::now() + Duration::from_secs(5),
        }
        .read(&mut buf)
        .unwrap();
        assert_eq!(n, 0);
    }
}
