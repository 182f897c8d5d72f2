//! Waiting on the host's pipes with a deadline: poll(2) for readiness, and a writer into the
//! non-blocking stdin that waits for room until a deadline.

use std::process::{ChildStdin, ChildStdout};
use std::time::Instant;

/// A writer into the host's non-blocking stdin that waits for room until a deadline.
pub(super) struct DeadlineWriter<'a> {
    pub pipe: &'a mut ChildStdin,
    pub deadline: Instant,
}

impl std::io::Write for DeadlineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            match self.pipe.write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if !ready_before(&*self.pipe, libc_events::OUT, self.deadline) {
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

/// The poll(2) events [`ready_before`] waits for.
mod libc_events {
    #[cfg(unix)]
    pub const IN: i16 = libc::POLLIN;
    #[cfg(unix)]
    pub const OUT: i16 = libc::POLLOUT;
    #[cfg(not(unix))]
    pub const IN: i16 = 1;
    #[cfg(not(unix))]
    pub const OUT: i16 = 4;
}

/// Wait until `stdout` has data (or the other end closed), at most until `deadline`.
pub(super) fn readable_before(stdout: &ChildStdout, deadline: Instant) -> bool {
    ready_before(stdout, libc_events::IN, deadline)
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

#[cfg(not(unix))]
fn ready_before<P>(_: &P, _: i16, _: Instant) -> bool {
    true
}

/// Make the agent's end of the host's stdin non-blocking (see [`DeadlineWriter`]).
#[cfg(unix)]
pub(super) fn set_nonblocking(pipe: &ChildStdin) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
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

#[cfg(not(unix))]
pub(super) fn set_nonblocking(_: &ChildStdin) -> std::io::Result<()> {
    Ok(())
}
