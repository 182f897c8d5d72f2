//! What the host's channel needs from the system: writing into the host's stdin with a
//! deadline, reading a frame (Windows), and stopping a host at once ([`Stopper`]).
//!
//! Unix here: poll(2) for room, non-blocking pipes, kill(2). Windows: overlapped I/O awaited
//! until the deadline, and a job object (`windows.rs`).

use std::process::Child;
#[cfg(windows)]
use std::process::ChildStdout;
use std::time::Instant;

#[cfg(windows)]
pub(super) use super::windows::DeadlineWriter;

/// How reading one frame before a deadline ended (Windows: the reply thread reads so).
#[cfg(windows)]
pub(super) enum Frame {
    Read(zeroize::Zeroizing<Vec<u8>>),
    TimedOut,
    /// The host closed the channel (or it broke).
    Ended,
}

/// Read the host's next frame, waiting at most until `deadline` for it to arrive.
#[cfg(windows)]
pub(super) fn read_frame_before(stdout: &mut ChildStdout, deadline: Instant) -> Frame {
    use super::wire::{self, FrameError};
    let read = wire::read_frame(&mut super::windows::DeadlineReader {
        pipe: stdout,
        deadline,
    });
    match read {
        Ok(frame) => Frame::Read(frame),
        Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => Frame::TimedOut,
        Err(_) => Frame::Ended,
    }
}

/// What must be done before the agent starts a host (Windows: see `windows::before_spawn`).
pub(super) fn before_spawn() -> std::io::Result<()> {
    #[cfg(windows)]
    return super::windows::before_spawn();
    #[cfg(not(windows))]
    Ok(())
}

/// What stops a host at once: its pid on Unix, its process handle on Windows (where the host is
/// also put into the agent's job, so that it cannot outlive the agent).
pub(super) struct Stopper {
    #[cfg(unix)]
    pid: u32,
    #[cfg(windows)]
    process: std::os::windows::io::OwnedHandle,
}

impl Stopper {
    pub(super) fn of(child: &Child) -> std::io::Result<Stopper> {
        #[cfg(unix)]
        return Ok(Stopper { pid: child.id() });
        #[cfg(windows)]
        return Ok(Stopper {
            process: super::windows::adopt(child)?,
        });
    }

    /// Stop the host now. The caller makes sure it has not been reaped yet.
    pub(super) fn stop(&self) {
        #[cfg(unix)]
        // SAFETY: kill(2) on the pid of our own child, not reaped yet.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
        }
        #[cfg(windows)]
        super::windows::terminate(&self.process);
    }
}

/// A writer into the host's non-blocking stdin that waits for room until a deadline.
#[cfg(unix)]
pub(super) struct DeadlineWriter<'a> {
    pub pipe: &'a mut std::process::ChildStdin,
    pub deadline: Instant,
}

#[cfg(unix)]
impl std::io::Write for DeadlineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            match self.pipe.write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if !ready_before(&*self.pipe, libc::POLLOUT, self.deadline) {
                        return Err(std::io::ErrorKind::TimedOut.into());
                    }
                }
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.pipe.flush()
    }
}

/// Wait until `pipe` is ready for `events` (or broken), at most until `deadline`.
#[cfg(unix)]
fn ready_before(pipe: &impl std::os::fd::AsRawFd, events: i16, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fd = libc::pollfd {
            fd: pipe.as_raw_fd(),
            events,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for a descriptor we own, for the duration of the call.
        match unsafe { libc::poll(&mut fd, 1, ms) } {
            0 => continue,
            n if n > 0 => return true,
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {
                continue
            }
            // A broken descriptor: using it will say so.
            _ => return true,
        }
    }
}

/// Make the agent's end of a pipe to the host non-blocking (its stdin: see [`DeadlineWriter`];
/// its stdout when a task reads it).
#[cfg(unix)]
pub(super) fn set_nonblocking(pipe: &impl std::os::fd::AsRawFd) -> std::io::Result<()> {
    let fd = pipe.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; only the O_NONBLOCK status flag changes.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Nothing to do on Windows: writes are overlapped ones with a deadline.
#[cfg(windows)]
pub(super) fn set_nonblocking<T>(_: &T) -> std::io::Result<()> {
    Ok(())
}
