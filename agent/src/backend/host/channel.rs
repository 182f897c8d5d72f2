//! The agent's end of one module host's channel: [`Host::call`] sends a request and waits for
//! its reply, with no reader thread in between; a host that stops answering is stopped, and
//! one that dies fails every call it held.
//!
//! Reading the channel never waits behind writing to it (see [`Host::call`]): that once froze
//! the channel for every site.

use super::lock;
use super::os::{read_frame_before, DeadlineWriter, Frame, Stopper};
use super::wire::{self, Call, Op, Reply, Request};
use crate::error::{AgentError, Result};
use keyport_protocol::ErrorReason;
use std::collections::HashMap;
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A running host process: its channel, and the calls on their way through it.
pub(super) struct Host {
    name: String,
    pid: u32,
    /// The channel's writing end (non-blocking: see [`Host::write`]).
    stdin: parking_lot::Mutex<ChildStdin>,
    /// The channel's reading end. Whoever holds it reads for everyone (see [`Host::call`]).
    stdout: parking_lot::Mutex<ChildStdout>,
    /// Calls on their way, by id.
    pending: Mutex<HashMap<u64, Slot>>,
    next_id: AtomicU64,
    /// Set once it is gone: why, as the error its calls get.
    death: OnceLock<AgentError>,
    /// Why the agent killed it, if it did.
    kill_reason: Mutex<Option<String>>,
    /// Set when the agent kills it: from then on no new call is given to it, even before the
    /// reaper has seen it end.
    stopping: std::sync::atomic::AtomicBool,
    /// Stops it at once ([`Host::kill`]).
    stopper: Stopper,
}

impl Host {
    /// The channel to the host `pid` of the library `name`, with nothing on its way yet.
    pub(super) fn new(
        name: String,
        pid: u32,
        stopper: Stopper,
        stdin: ChildStdin,
        stdout: ChildStdout,
    ) -> Host {
        Host {
            stopper,
            name,
            pid,
            stdin: parking_lot::Mutex::new(stdin),
            stdout: parking_lot::Mutex::new(stdout),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            death: OnceLock::new(),
            kill_reason: Mutex::new(None),
            stopping: std::sync::atomic::AtomicBool::new(false),
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

/// What a waiting call receives: its reply, its turn to read the channel, or word that its
/// call made headway (its deadline starts again).
enum Delivery {
    Reply(Reply),
    YourTurn,
    Progress,
}

/// Where a call stands, in [`Host::pending`].
enum Slot {
    /// Its request is still being written: it cannot read yet, so it is never handed the
    /// reading role (it could be stuck writing into a full pipe while the replies pile up).
    Writing,
    /// Written; waiting for its reply or its turn to read.
    Waiting(mpsc::Sender<Delivery>),
    /// Its reply came while it was still writing.
    Arrived(Reply),
}

/// How a turn at reading ended.
enum Read {
    Mine(Reply),
    TimedOut,
    Ended,
}

impl Host {
    /// Send `request` and wait for its reply; at most `timeout` passes without the host saying
    /// anything of it (a batch says after each signature that it goes on: see
    /// [`Reply::progress`]).
    ///
    /// There is no reader thread: a caller that has written its request and finds the channel
    /// free reads it, handing the replies of others to them, until its own comes; then it
    /// passes the reading role to another caller that has written its request. A lone call
    /// therefore reads its own reply, with no thread in between.
    ///
    /// Reading never waits behind writing: a caller is given the reading role only once its
    /// request is written, and a reply due to a caller still writing is kept for it. So
    /// whenever the host has a reply to write, somebody reads it (or will, as soon as their
    /// write returns), and the host's writers never block the host's reader for good. A write
    /// itself is bounded by the deadline (the pipe is non-blocking): a host that stops reading
    /// its requests is stopped like one that stops answering.
    pub(super) fn call<O: Op>(&self, op: O, timeout: Duration) -> Result<O::Reply> {
        let request: Request = op.into();
        if let Some(e) = self.death.get() {
            return Err(e.clone());
        }
        let mut deadline = Instant::now() + timeout;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.pending).insert(id, Slot::Writing);
        if let Err(e) = self.write(&Call { id, request }, deadline) {
            lock(&self.pending).remove(&id);
            return Err(match e.kind() {
                std::io::ErrorKind::TimedOut => self.timed_out(timeout),
                _ => self.wait_death(),
            });
        }
        // Unbounded: a reply must never find the channel full of turns (it was lost once so).
        let (tx, rx) = mpsc::channel();
        let early = {
            let mut pending = lock(&self.pending);
            match pending.remove(&id) {
                Some(Slot::Arrived(reply)) => Some(reply),
                _ => {
                    pending.insert(id, Slot::Waiting(tx));
                    None
                }
            }
        };
        // The reaper sets `death` before it fails the waiting calls: if it has, it may have
        // done so before we were waiting.
        if early.is_none() && self.death.get().is_some() {
            lock(&self.pending).remove(&id);
            return Err(self.wait_death());
        }
        let reply = match early {
            Some(reply) => reply,
            None => loop {
                if let Some(mut stdout) = self.stdout.try_lock() {
                    let turn = self.read_for(&mut stdout, id, &rx, &mut deadline, timeout);
                    drop(stdout);
                    lock(&self.pending).remove(&id);
                    self.pass_the_turn();
                    match turn {
                        Read::Mine(reply) => break reply,
                        Read::TimedOut => return Err(self.timed_out(timeout)),
                        Read::Ended => return Err(self.wait_death()),
                    }
                }
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(Delivery::Reply(reply)) => break reply,
                    Ok(Delivery::YourTurn) => continue,
                    Ok(Delivery::Progress) => deadline = Instant::now() + timeout,
                    Err(_) => {
                        lock(&self.pending).remove(&id);
                        return Err(self.timed_out(timeout));
                    }
                }
            },
        };
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

    /// Read the channel until reply `id` comes, delivering the others to their callers.
    fn read_for(
        &self,
        stdout: &mut ChildStdout,
        id: u64,
        rx: &mpsc::Receiver<Delivery>,
        deadline: &mut Instant,
        timeout: Duration,
    ) -> Read {
        loop {
            // A previous reader may have delivered ours just before passing the turn.
            while let Ok(d) = rx.try_recv() {
                match d {
                    Delivery::Reply(r) => return Read::Mine(r),
                    Delivery::Progress => *deadline = Instant::now() + timeout,
                    Delivery::YourTurn => {}
                }
            }
            let frame = match read_frame_before(stdout, *deadline) {
                Frame::Read(frame) => frame,
                Frame::TimedOut => return Read::TimedOut,
                Frame::Ended => return Read::Ended,
            };
            let Ok(reply) = serde_json::from_slice::<Reply>(&frame) else {
                self.kill("it answered garbage".into());
                return Read::Ended;
            };
            if reply.id == id {
                if reply.progress {
                    *deadline = Instant::now() + timeout;
                    continue;
                }
                return Read::Mine(reply);
            }
            self.deliver(reply);
        }
    }

    /// Hand `reply` to the call it answers (kept for it if it is still writing; dropped if
    /// nobody waits for it any more).
    fn deliver(&self, reply: Reply) {
        let mut pending = lock(&self.pending);
        let Some(slot) = pending.get_mut(&reply.id) else {
            return;
        };
        match slot {
            Slot::Waiting(tx) if reply.progress => {
                let _ = tx.send(Delivery::Progress);
            }
            Slot::Waiting(_) => {
                if let Some(Slot::Waiting(tx)) = pending.remove(&reply.id) {
                    let _ = tx.send(Delivery::Reply(reply));
                }
            }
            Slot::Writing if !reply.progress => *slot = Slot::Arrived(reply),
            Slot::Writing | Slot::Arrived(_) => {}
        }
    }

    /// Give the reading role to a call that is waiting (its request written), if any.
    fn pass_the_turn(&self) {
        let pending = lock(&self.pending);
        if let Some(tx) = pending.values().find_map(|s| match s {
            Slot::Waiting(tx) => Some(tx),
            _ => None,
        }) {
            let _ = tx.send(Delivery::YourTurn);
        }
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
        for (id, slot) in waiting {
            if let Slot::Waiting(tx) = slot {
                let _ = tx.send(Delivery::Reply(Reply::to(id, Err((&error).into()))));
            }
        }
    }
}
