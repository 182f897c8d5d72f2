//! One library's host over time: started at the first call, started again after it dies, and
//! not restarted in a loop when it keeps failing (a growing pause, said in the error).

use super::channel::Host;
use super::lock;
use super::process::Launcher;
use crate::error::{AgentError, Result};
use keyport_protocol::ErrorReason;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Deaths of started hosts within this are counted ([`Supervised::crashed`]).
const CRASH_WINDOW: Duration = Duration::from_secs(60);
/// Deaths of started hosts within [`CRASH_WINDOW`] restarted at once before the back-off.
const CRASHES_BEFORE_BACK_OFF: u32 = 5;

/// One library's host, restarted as needed.
pub(super) struct Supervisor {
    name: String,
    state: Mutex<Supervised>,
}

#[derive(Default)]
struct Supervised {
    host: Option<Arc<Host>>,
    /// Starts that failed in a row (reset by a start that succeeds).
    start_failures: u32,
    /// When hosts that had started died (crashed, or were stopped because a call hung), over
    /// the last [`CRASH_WINDOW`].
    crashes: std::collections::VecDeque<Instant>,
    /// No new host before this.
    retry_at: Option<Instant>,
    /// Why the last one failed (said again until `retry_at`).
    last_error: Option<AgentError>,
}

impl Supervised {
    /// A start failed: from the second in a row on, the next waits 1, 2, 4 … 60 s.
    fn start_failed(&mut self, why: AgentError) {
        self.start_failures += 1;
        // The first failure may be a fluke: try again at once; then back off.
        if self.start_failures >= 2 {
            self.back_off(self.start_failures - 2);
        }
        self.last_error = Some(why);
    }

    /// A host that had started died. A few such deaths are restarted at once (a card pulled
    /// mid-call, one hung call); from the [`CRASHES_BEFORE_BACK_OFF`]th within a minute on
    /// (a library that crashes on some request, whoever sends it), the next start waits 1, 2,
    /// 4 … 60 s.
    fn crashed(&mut self, why: AgentError) {
        let now = Instant::now();
        while self
            .crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW)
        {
            self.crashes.pop_front();
        }
        self.crashes.push_back(now);
        let n = self.crashes.len() as u32;
        if n >= CRASHES_BEFORE_BACK_OFF {
            self.back_off(n - CRASHES_BEFORE_BACK_OFF);
        }
        // Bounded: past 12 the pause is at its longest anyway.
        if self.crashes.len() > 12 {
            self.crashes.pop_front();
        }
        self.last_error = Some(why);
    }

    fn back_off(&mut self, step: u32) {
        let secs = 1u64 << step.min(6);
        self.retry_at = Some(Instant::now() + Duration::from_secs(secs.min(60)));
    }

    fn failures(&self) -> usize {
        self.start_failures as usize + self.crashes.len()
    }
}

impl Supervisor {
    /// The supervisor of the library file `name` (its canonical path).
    pub(super) fn new(name: String) -> Supervisor {
        Supervisor {
            name,
            state: Mutex::new(Supervised::default()),
        }
    }

    /// Its host, if one is running and not gone.
    pub(super) fn live(&self) -> Option<Arc<Host>> {
        lock(&self.state)
            .host
            .clone()
            .filter(|h| h.death().is_none())
    }

    /// Its host, if one is running and not gone, and nobody is starting one right now: for the
    /// async thread, which must never wait for a host to start (that holds `state`).
    #[cfg(unix)]
    pub(super) fn try_live(&self) -> Option<Arc<Host>> {
        let state = match self.state.try_lock() {
            Ok(state) => state,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        state.host.clone().filter(|h| h.serving())
    }

    /// The live host, started if need be (unless it is backing off).
    pub(super) fn host(&self, launcher: &Launcher) -> Result<Arc<Host>> {
        let mut st = lock(&self.state);
        if let Some(h) = st.host.take() {
            if h.serving() {
                st.host = Some(h.clone());
                return Ok(h);
            }
            // It died, or is being stopped.
            let why = h.death().cloned().unwrap_or_else(|| {
                AgentError::with_message(
                    ErrorReason::ModuleCrashed,
                    format!("The PKCS #11 library {} was stopped.", h.name()),
                )
            });
            st.crashed(why);
        }
        if let Some(at) = st.retry_at {
            let now = Instant::now();
            if now < at {
                let base = st
                    .last_error
                    .clone()
                    .unwrap_or_else(|| AgentError::new(ErrorReason::ModuleCrashed));
                let message = base
                    .message
                    .split("; it is restarted at the next request")
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches('.')
                    .to_string();
                return Err(AgentError::with_message(
                    base.reason,
                    format!(
                        "{message}. It failed {} times lately, so it is not restarted at once: \
                         the next try is in {} s.",
                        st.failures(),
                        (at - now).as_secs().max(1)
                    ),
                ));
            }
        }
        match launcher.start(&self.name) {
            Ok(h) => {
                st.host = Some(h.clone());
                st.retry_at = None;
                st.start_failures = 0;
                Ok(h)
            }
            Err(e) => {
                st.start_failed(e.clone());
                Err(e)
            }
        }
    }
}
