//! The agent's end of one module host's channel: [`Host::call`] sends a request and waits for
//! its reply; a host that stops answering is stopped, and one that dies fails every call it
//! held.
//!
//! One reader per host reads every reply and hands it to its caller: a task on the agent's
//! async runtime where there is one (Unix), else a thread. The reader never writes, so reading
//! never waits behind writing (a reader stuck behind a writer once froze the channel for every
//! site); writers write into a non-blocking pipe with their call's deadline.
//!
//! Where the reader is a task, a small request can also be made from the async thread itself
//! ([`Host::call_quick`]): written at once, its reply awaited on the same thread. No blocking
//! thread is woken for it, and no thread but the host's is.

mod reader;

use super::lock;
use super::os::{DeadlineWriter, Stopper};
use super::wire::{self, Call, Op, Reply, Request};
use crate::error::{AgentError, Result};
use keyport_protocol::ErrorReason;
use reader::{Delivery, Waiter};
use std::collections::HashMap;
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A running host process: its channel, and the calls on their way through it.
pub(super) struct Host {
    name: String,
    pid: u32,
    /// The channel's writing end (non-blocking: see [`Host::write`]).
    stdin: parking_lot::Mutex<ChildStdin>,
    /// Calls on their way, by id: who waits for each reply.
    pending: Mutex<HashMap<u64, Waiter>>,
    next_id: AtomicU64,
    /// Its replies are read by a task on the async runtime: calls may wait for them there.
    #[cfg(unix)]
    quick: AtomicBool,
    /// Set once it is gone: why, as the error its calls get.
    death: OnceLock<AgentError>,
    /// Why the agent killed it, if it did.
    kill_reason: Mutex<Option<String>>,
    /// Set when the agent kills it: from then on no new call is given to it, even before the
    /// reaper has seen it end.
    stopping: AtomicBool,
    /// Stops it at once ([`Host::kill`]).
    stopper: Stopper,
}

impl Host {
    /// The channel to the host `pid` of the library `name`, with nothing on its way yet.
    pub(super) fn new(name: String, pid: u32, stopper: Stopper, stdin: ChildStdin) -> Host {
        Host {
            stopper,
            name,
            pid,
            stdin: parking_lot::Mutex::new(stdin),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            #[cfg(unix)]
            quick: AtomicBool::new(false),
            death: OnceLock::new(),
            kill_reason: Mutex::new(None),
            stopping: AtomicBool::new(false),
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    /// Still serving: neither gone nor being stopped.
    pub(super) fn serving(&self) -> bool {
        self.death.get().is_none() && !self.stopping.load(Ordering::SeqCst)
    }

    /// Why it is gone, once it is.
    pub(super) fn death(&self) -> Option<&AgentError> {
        self.death.get()
    }

    /// Watch the process on a thread of its own until it ends (see [`Host::reap`]).
    pub(super) fn watch(self: &Arc<Self>, child: Child) -> std::io::Result<()> {
        let h = self.clone();
        std::thread::Builder::new()
            .name("keyport-host-reaper".into())
            .spawn(move || h.reap(child))
            .map(drop)
    }
}

/// Wait for a dead child and say how it ended.
pub(super) fn exit_status(child: &mut Child) -> String {
    match child.wait() {
        Ok(status) => describe(status),
        Err(e) => format!("its status is unknown: {e}"),
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let name = match sig {
                libc::SIGSEGV => " (SIGSEGV)",
                libc::SIGABRT => " (SIGABRT)",
                libc::SIGKILL => " (SIGKILL)",
                libc::SIGBUS => " (SIGBUS)",
                libc::SIGILL => " (SIGILL)",
                libc::SIGFPE => " (SIGFPE)",
                _ => "",
            };
            return format!("killed by signal {sig}{name}");
        }
    }
    #[cfg(windows)]
    if let Some(name) = status.code().and_then(super::windows::exit_code_name) {
        let code = status.code().unwrap_or_default() as u32;
        return format!("exit status {code:#010X}: {name}");
    }
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => "ended".into(),
    }
}

/// Takes a call off [`Host::pending`] when its caller stops waiting, however it stops (`H`: the
/// host, borrowed by a waiting thread, shared by a waiting future).
struct Forget<H: std::ops::Deref<Target = Host>> {
    host: H,
    id: u64,
}

impl<H: std::ops::Deref<Target = Host>> Drop for Forget<H> {
    fn drop(&mut self) {
        lock(&self.host.pending).remove(&self.id);
    }
}

/// The largest write a pipe takes whole or not at all (POSIX: `PIPE_BUF`, 4096 on Linux): a
/// quick call's request is one such write, so it never leaves part of a frame behind.
#[cfg(unix)]
const ATOMIC_WRITE_BYTES: usize = libc::PIPE_BUF;

impl Host {
    /// Read the host's replies from now on: on a task of the current async runtime, if the
    /// caller is inside one (Unix), else on a thread of their own.
    pub(super) fn read_replies(self: &Arc<Self>, stdout: ChildStdout) -> std::io::Result<()> {
        reader::start(self, stdout)
    }

    /// Register a call's waiter; its error if the host is already gone (the reaper fails the
    /// waiting calls after it sets `death`: a call registered after that would never hear).
    fn register(&self, waiter: Waiter) -> std::result::Result<u64, AgentError> {
        if let Some(e) = self.death.get() {
            return Err(e.clone());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.pending).insert(id, waiter);
        if self.death.get().is_some() {
            lock(&self.pending).remove(&id);
            return Err(self.wait_death());
        }
        Ok(id)
    }

    /// Send `request` and wait for its reply on this thread; at most `timeout` passes without
    /// the host saying anything of it (a batch says after each signature that it goes on: see
    /// [`Reply::progress`]).
    ///
    /// Not from the async runtime's own thread: where the replies are read by a task there,
    /// that task could not run while this waits (use [`Host::call_quick`] there).
    pub(super) fn call<O: Op>(&self, op: O, timeout: Duration) -> Result<O::Reply> {
        let request: Request = op.into();
        let (tx, rx) = mpsc::channel();
        let id = self.register(Waiter::Thread(tx))?;
        let _forget = Forget { host: self, id };
        let mut deadline = Instant::now() + timeout;
        if let Err(e) = self.write(&Call { id, request }, deadline) {
            return Err(match e.kind() {
                std::io::ErrorKind::TimedOut => self.timed_out(timeout),
                _ => self.wait_death(),
            });
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Delivery::Reply(reply)) => return self.decode::<O>(reply),
                Ok(Delivery::Progress) => deadline = Instant::now() + timeout,
                Err(_) => return Err(self.timed_out(timeout)),
            }
        }
    }

    /// [`Host::call`] from the async runtime, when it can be made there: the replies are read
    /// by a task, and the request fits one write that the pipe takes at once. Then the request
    /// is written now and the returned future waits for the reply; `None` otherwise (make the
    /// call on a blocking thread).
    ///
    /// The future may be dropped (its page went away): the call is forgotten, and its reply,
    /// when it comes, dropped. A caller that wants the host stopped if the call hangs keeps the
    /// future running to its end (it stops the host at its deadline).
    #[cfg(unix)]
    pub(super) fn call_quick<O>(
        self: &Arc<Self>,
        op: O,
        timeout: Duration,
    ) -> Option<impl std::future::Future<Output = Result<O::Reply>> + Send + 'static>
    where
        O: Op,
        O::Reply: Send + 'static,
    {
        use std::io::Write;
        if !self.quick.load(Ordering::SeqCst) || !self.serving() {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request: Request = op.into();
        let frame = wire::frame(&Call { id, request }).ok()?;
        if frame.len() > ATOMIC_WRITE_BYTES {
            return None;
        }
        // Another caller is writing (a long frame, or into a full pipe): not now.
        let mut stdin = self.stdin.try_lock()?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        lock(&self.pending).insert(id, Waiter::Task(tx));
        let gone = |host: &Arc<Host>| {
            lock(&host.pending).remove(&id);
        };
        if self.death.get().is_some() {
            gone(self);
            return None;
        }
        let written = stdin.write(&frame);
        drop(stdin);
        match written {
            Ok(n) if n == frame.len() => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                gone(self);
                return None;
            }
            Ok(_) => {
                // Not possible for a write of at most PIPE_BUF bytes; the channel is unusable.
                gone(self);
                self.kill("a request was written in part".into());
                return None;
            }
            // The host is gone or going: the blocking call says how.
            Err(_) => {
                gone(self);
                return None;
            }
        }
        // Made before the future: one dropped before it first runs forgets its call too.
        let call = Forget {
            host: self.clone(),
            id,
        };
        Some(async move {
            let host = &call.host;
            let mut deadline = tokio::time::Instant::now() + timeout;
            loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(Delivery::Reply(reply))) => return host.decode::<O>(reply),
                    Ok(Some(Delivery::Progress)) => {
                        deadline = tokio::time::Instant::now() + timeout;
                    }
                    // Not expected: whoever takes a call off `pending` (a reply, the reaper)
                    // answers it first. Said as a death all the same.
                    Ok(None) => {
                        return Err(host.death().cloned().unwrap_or_else(|| host.stopped()));
                    }
                    Err(_) => return Err(host.timed_out(timeout)),
                }
            }
        })
    }

    /// A reply's value, as the type its request declares.
    fn decode<O: Op>(&self, reply: Reply) -> Result<O::Reply> {
        match (reply.ok, reply.err) {
            (_, Some(e)) => Err(e.into()),
            (Some(v), None) => {
                serde_json::from_str(v.get()).map_err(|_| wire::garbled("an answer", &self.name))
            }
            (None, None) => Err(wire::garbled("an empty answer", &self.name)),
        }
    }

    /// Write one call, giving up at `deadline` (`TimedOut`). The writers take turns; one
    /// that cannot get its turn before the deadline gives up too.
    fn write(&self, call: &Call, deadline: Instant) -> std::io::Result<()> {
        let Some(mut stdin) = self.stdin.try_lock_until(deadline) else {
            return Err(std::io::ErrorKind::TimedOut.into());
        };
        let mut out = DeadlineWriter {
            pipe: &mut stdin,
            deadline,
        };
        let written = wire::send(&mut out, call);
        if written
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
        {
            // Part of a frame may be in the pipe: the channel is unusable from here on.
            self.kill("it stopped reading its requests".into());
        }
        written
    }

    fn timed_out(&self, timeout: Duration) -> AgentError {
        self.kill(format!(
            "a call took longer than {} s",
            timeout.as_secs_f32()
        ));
        AgentError::with_message(
            ErrorReason::RequestTimeout,
            format!(
                "The PKCS #11 library {} did not answer in {} s; its process was stopped \
                 and is restarted at the next request.",
                self.name,
                timeout.as_secs()
            ),
        )
    }

    pub(super) fn wait_death(&self) -> AgentError {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Some(e) = self.death.get() {
                return e.clone();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.stopped()
    }

    fn stopped(&self) -> AgentError {
        AgentError::with_message(
            ErrorReason::ModuleCrashed,
            format!(
                "The process serving the PKCS #11 library {} stopped answering.",
                self.name
            ),
        )
    }

    /// Stop the host at once (it hung): its calls get MODULE_CRASHED with `why`.
    pub(super) fn kill(&self, why: String) {
        if self.death.get().is_some() || self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::warn!(module = %self.name, pid = self.pid, "stopping the module host: {why}");
        *lock(&self.kill_reason) = Some(why);
        // Not reaped yet: the reaper sets `death` after waiting, and we checked it is unset.
        self.stopper.stop();
    }

    /// The reaper thread: wait for the host to end, say why, and fail every call still waiting.
    fn reap(self: Arc<Self>, mut child: Child) {
        let status = exit_status(&mut child);
        let killed = lock(&self.kill_reason).take();
        let message = match &killed {
            Some(why) => format!(
                "The process serving the PKCS #11 library {} was stopped ({why}); it is restarted at the next request.",
                self.name
            ),
            None => format!(
                "The PKCS #11 library {} crashed ({status}); it is restarted at the next request.",
                self.name
            ),
        };
        if status == "exit status 0" {
            tracing::debug!(module = %self.name, pid = self.pid, "module host exited");
        } else {
            tracing::warn!(module = %self.name, pid = self.pid, "module host ended: {status}");
        }
        let error = AgentError::with_message(ErrorReason::ModuleCrashed, message);
        let _ = self.death.set(error.clone());
        let waiting: Vec<_> = lock(&self.pending).drain().collect();
        for (id, waiter) in waiting {
            waiter.send(Delivery::Reply(Reply::to(id, Err((&error).into()))));
        }
    }
}
