//! The reading side of a host's channel: its one reader (a task on the async runtime, else a
//! thread), which hands each reply to whoever waits for it, and never writes.

use super::super::wire::{self, Reply};
use super::super::{lock, os};
use super::Host;
use std::process::ChildStdout;
#[cfg(unix)]
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
#[cfg(windows)]
use std::time::{Duration, Instant};

/// What a waiting call receives: its reply, or word that its call made headway (its deadline
/// starts again).
pub(super) enum Delivery {
    Reply(Reply),
    Progress,
}

/// Who waits for a reply, in [`Host::pending`]: a thread, or a task on the async runtime.
pub(super) enum Waiter {
    Thread(mpsc::Sender<Delivery>),
    #[cfg(unix)]
    Task(tokio::sync::mpsc::UnboundedSender<Delivery>),
}

impl Waiter {
    pub(super) fn send(&self, d: Delivery) {
        // A caller that gave up has dropped its receiver: nothing to do.
        let _ = match self {
            Waiter::Thread(tx) => tx.send(d).map_err(drop),
            #[cfg(unix)]
            Waiter::Task(tx) => tx.send(d).map_err(drop),
        };
    }
}

/// Read the host's replies from now on: on a task of the current async runtime, if the
/// caller is inside one (Unix), else on a thread of their own.
pub(super) fn start(host: &Arc<Host>, stdout: ChildStdout) -> std::io::Result<()> {
    #[cfg(unix)]
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        os::set_nonblocking(&stdout)?;
        let pipe = {
            let _inside = runtime.enter();
            // SAFETY: `stdout` owns its descriptor, which stays open, and the same, for as
            // long as the AsyncFd that owns `stdout` lives.
            unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(
                    stdout,
                    tokio::io::Interest::READABLE,
                )
            }?
        };
        host.quick.store(true, Ordering::SeqCst);
        runtime.spawn(read_task(host.clone(), pipe));
        return Ok(());
    }
    let host = host.clone();
    std::thread::Builder::new()
        .name("keyport-host-replies".into())
        .spawn(move || read_thread(&host, stdout))
        .map(drop)
}

/// The reading thread: every frame to its caller, until the channel ends (the reaper then
/// says why) or the host says something unreadable (it is stopped).
fn read_thread(host: &Host, mut stdout: ChildStdout) {
    loop {
        #[cfg(unix)]
        let frame = wire::read_frame(&mut stdout);
        // Overlapped I/O awaited until a deadline a day away. A read that times out may
        // have taken part of a frame, so the host is stopped then: a host idle for a day
        // is started again at its next call.
        #[cfg(windows)]
        let frame = match os::read_frame_before(
            &mut stdout,
            Instant::now() + Duration::from_secs(24 * 3600),
        ) {
            os::Frame::Read(frame) => Ok(frame),
            os::Frame::TimedOut => {
                host.kill("it said nothing for a day".into());
                return;
            }
            os::Frame::Ended => Err(wire::FrameError::Closed),
        };
        match frame {
            Ok(frame) => {
                if !dispatch(host, &frame) {
                    return;
                }
            }
            Err(wire::FrameError::TooLarge(n)) => {
                host.kill(format!("it sent a frame of {n} bytes"));
                return;
            }
            Err(_) => return,
        }
    }
}

/// Hand one frame to its caller; false (and the host stopped) when it is not a reply.
fn dispatch(host: &Host, frame: &[u8]) -> bool {
    match serde_json::from_slice::<Reply>(frame) {
        Ok(reply) => {
            deliver(host, reply);
            true
        }
        Err(_) => {
            host.kill("it answered garbage".into());
            false
        }
    }
}

/// Hand `reply` to the call it answers (dropped if nobody waits for it any more).
fn deliver(host: &Host, reply: Reply) {
    let mut pending = lock(&host.pending);
    if reply.progress {
        if let Some(waiter) = pending.get(&reply.id) {
            waiter.send(Delivery::Progress);
        }
    } else if let Some(waiter) = pending.remove(&reply.id) {
        waiter.send(Delivery::Reply(reply));
    }
}

/// The reading task: every frame to its caller, until the channel ends (the reaper then says
/// why) or the host says something unreadable (it is stopped). Memory follows the bytes that
/// arrive, never a length claimed.
#[cfg(unix)]
async fn read_task(host: Arc<Host>, mut pipe: tokio::io::unix::AsyncFd<ChildStdout>) {
    use std::io::Read;
    let mut frames = wire::Frames::default();
    let mut chunk = zeroize::Zeroizing::new(vec![0u8; 64 * 1024]);
    loop {
        loop {
            match frames.next_frame() {
                Ok(Some(frame)) => {
                    if !dispatch(&host, &frame) {
                        return;
                    }
                }
                Ok(None) => break,
                Err(n) => {
                    host.kill(format!("it sent a frame of {n} bytes"));
                    return;
                }
            }
        }
        let Ok(mut ready) = pipe.readable_mut().await else {
            return;
        };
        match ready.try_io(|p| p.get_mut().read(&mut chunk)) {
            Ok(Ok(0)) => return,
            Ok(Ok(n)) => frames.push(&chunk[..n]),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => return,
            Err(_would_block) => {}
        }
    }
}
