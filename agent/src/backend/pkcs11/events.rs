//! Tokens coming and going: which slots hold which token ([`CryptokiBackend::slot_presence`])
//! and the module's own slot events ([`Waiter`], `C_WaitForSlotEvent`).
//!
//! # The waiting thread
//! `C_WaitForSlotEvent` without `CKF_DONT_BLOCK` blocks until a token is inserted or removed,
//! and PKCS #11 offers no way to cancel it short of `C_Finalize`. So one thread per module waits
//! in it, started by the first [`Waiter::wait`] and feeding a small queue; callers wait on the
//! queue with their own time limit. The thread ends after an event when nobody asked for events
//! in the last [`IDLE`], when the module says it cannot wait (`CKR_FUNCTION_NOT_SUPPORTED`: the
//! caller polls instead), and at `C_Finalize` (`CKR_CRYPTOKI_NOT_INITIALIZED`). So an agent
//! nobody subscribed to has at most one call of this kind outstanding, blocked until the next
//! event, and makes no other token calls for it.
//!
//! The thread holds a clone of the module's context, not the module: shutting the backend down
//! still finalises the library, which ends the wait.

use super::{info, lock};
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The waiting thread stops after an event if nobody asked for events for this long.
pub(super) const IDLE: Duration = Duration::from_secs(10);
/// Events queued for the next caller (a module reporting more is flapping; one event is enough
/// to make the caller look at every slot again).
const MAX_QUEUED: usize = 64;

#[derive(Default)]
struct WaitState {
    /// The backend is shutting down: waits end at once.
    closed: bool,
    running: bool,
    /// The module cannot wait for events: callers poll.
    unsupported: bool,
    events: VecDeque<u64>,
    last_asked: Option<Instant>,
}

/// The waiting side of one module (see the module documentation).
#[derive(Default)]
pub(super) struct Waiter {
    shared: Arc<(Mutex<WaitState>, Condvar)>,
}

/// What [`Waiter::wait`] saw: the slots the module named, or why none.
pub(super) enum Waited {
    Slots(Vec<u64>),
    Quiet,
    Unsupported,
}

impl Waiter {
    /// Wait at most `timeout` for slot events of the module whose context is `ctx`.
    /// End every wait now, and refuse new ones (the module is about to be finalised).
    pub(super) fn close(&self) {
        let (state, changed) = &*self.shared;
        lock(state).closed = true;
        changed.notify_all();
    }

    pub(super) fn wait(&self, ctx: &Pkcs11, timeout: Duration) -> Waited {
        let (state, changed) = &*self.shared;
        {
            let mut s = lock(state);
            if s.closed {
                return Waited::Quiet;
            }
            s.last_asked = Some(Instant::now());
            if s.unsupported {
                return Waited::Unsupported;
            }
            if !s.events.is_empty() {
                return Waited::Slots(s.events.drain(..).collect());
            }
            if !s.running {
                // Ask without blocking first: it tells whether the module can wait at all.
                drop(s);
                match ctx.get_slot_event() {
                    Ok(Some(slot)) => return Waited::Slots(vec![slot.id()]),
                    Ok(None) => {}
                    Err(e) => {
                        log_unsupported(&e);
                        lock(state).unsupported = true;
                        return Waited::Unsupported;
                    }
                }
                let mut s = lock(state);
                if !s.running {
                    s.running = true;
                    let shared = self.shared.clone();
                    let ctx = ctx.clone();
                    let spawned = std::thread::Builder::new()
                        .name("keyport-slot-events".into())
                        .spawn(move || wait_loop(ctx, shared));
                    if let Err(e) = spawned {
                        tracing::warn!(error = %e, "cannot start a thread to wait for slot events; polling");
                        s.running = false;
                        s.unsupported = true;
                        return Waited::Unsupported;
                    }
                }
            }
        }
        let s = lock(state);
        let (mut s, _) = changed
            .wait_timeout_while(s, timeout, |s| {
                s.events.is_empty() && !s.unsupported && !s.closed
            })
            .unwrap_or_else(|e| e.into_inner());
        if !s.events.is_empty() {
            Waited::Slots(s.events.drain(..).collect())
        } else if s.unsupported {
            Waited::Unsupported
        } else {
            Waited::Quiet
        }
    }
}

fn log_unsupported(e: &CkError) {
    match e {
        CkError::Pkcs11(RvError::FunctionNotSupported, _) => {
            tracing::debug!("the module has no C_WaitForSlotEvent: its slots are polled")
        }
        e => tracing::info!(error = %e, "C_WaitForSlotEvent failed: the module's slots are polled"),
    }
}

fn wait_loop(ctx: Pkcs11, shared: Arc<(Mutex<WaitState>, Condvar)>) {
    let (state, changed) = &*shared;
    loop {
        let result = ctx.wait_for_slot_event();
        let mut s = lock(state);
        match result {
            Ok(slot) => {
                if s.events.len() >= MAX_QUEUED {
                    s.events.pop_front();
                }
                s.events.push_back(slot.id());
                changed.notify_all();
                if s.last_asked.is_none_or(|at| at.elapsed() > IDLE) {
                    s.running = false;
                    return;
                }
            }
            Err(CkError::Pkcs11(RvError::CryptokiNotInitialized, _)) => {
                // C_Finalize: the module is going away.
                s.running = false;
                changed.notify_all();
                return;
            }
            Err(e) => {
                log_unsupported(&e);
                s.running = false;
                s.unsupported = true;
                changed.notify_all();
                return;
            }
        }
    }
}

/// A label or serial as the token pads it (blank-padded UTF-8).
pub(super) fn field(s: &str) -> String {
    s.trim_end_matches([' ', '\0']).to_string()
}

/// Whether the token is not (any more) in its slot. Asks `C_GetSlotInfo` first: some modules
/// (OpenSC) notice a card that was swapped only there (or in `C_GetSlotList`), and until then
/// keep answering for the old card.
pub(super) fn token_absent(ctx: &Pkcs11, slot_id: u64) -> bool {
    let Ok(slot) = info::slot_of(slot_id) else {
        return false;
    };
    match ctx.get_slot_info(slot) {
        Ok(info) if !info.token_present() => return true,
        Err(CkError::Pkcs11(RvError::SlotIdInvalid, _)) => return true,
        _ => {}
    }
    matches!(
        ctx.get_token_info(slot),
        Err(CkError::Pkcs11(
            RvError::TokenNotPresent | RvError::DeviceRemoved | RvError::TokenNotRecognized,
            _
        ))
    )
}
