//! The agent's shared state: what every method, the tray and the server share, built in one
//! place from the [`Config`].
//!
//! Above it sit the JSON-RPC methods (`methods/`), the desktop (`desktop/`) and the server
//! (`server/`); none of them reaches the others to get at it.

use crate::allowlist::{AllowedModule, Allowlist};
use crate::backend::{Backend, SlotPresence, SlotWait};
use crate::config::Config;
use crate::consent::{ConsentPolicy, ConsentUi, PendingLimits, PinUi, RememberedSites};
use crate::error::{AgentError, Result};
use crate::events::{self, Sink, SlotSource};
use keyport_protocol::ErrorReason;
use keyport_protocol::{SlotEvent, SubscriptionId};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

pub struct Agent {
    pub backend: Arc<dyn Backend>,
    /// Allowlisted PKCS #11 libraries; the first is the default.
    pub modules: Allowlist,
    pub consent: ConsentPolicy,
    /// Longest time one backend call may take.
    pub request_timeout: Duration,
    /// How much longer a signature may wait for the PIN typed on a PIN-pad reader.
    pub pin_pad_timeout: Duration,
    /// Optional capabilities in force (`keyport_protocol::feature`), for `keyport.version`.
    pub features: Vec<String>,
    /// Who is told of tokens inserted and removed ([`crate::events`]).
    pub events: Arc<crate::events::SlotEvents>,
    /// The tokens present, for the tray ([`Agent::show_tokens`]).
    pub tokens: crate::events::TokenBoard,
}

/// A request's places in flight: one of its connection's, one of its origin's (the server
/// takes them; a token call holds a share until it returns, see [`Agent::blocking`]).
pub struct InFlight {
    _places: [OwnedSemaphorePermit; 2],
}

impl InFlight {
    pub fn new(places: [OwnedSemaphorePermit; 2]) -> InFlight {
        InFlight { _places: places }
    }
}

tokio::task_local! {
    /// The in-flight permits of the request being handled (see [`request_share`]).
    pub static IN_FLIGHT: Arc<InFlight>;
}

/// A share of the current request's in-flight permits, for a token call to hold until it
/// returns. `None` outside a request (in-process tests, background jobs).
pub fn request_share() -> Option<Arc<InFlight>> {
    IN_FLIGHT.try_with(Arc::clone).ok()
}

/// Cleared when the future that waits for a blocking call is dropped or done.
struct Wanted(Arc<std::sync::atomic::AtomicBool>);

impl Default for Wanted {
    fn default() -> Self {
        Wanted(Arc::new(std::sync::atomic::AtomicBool::new(true)))
    }
}

impl Drop for Wanted {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Agent {
    /// The state for `config`, over `backend` (which owns its own background work, such as the
    /// idle logout), asking the person through `consent_ui` (none: only trusted callers sign).
    pub fn new(
        config: &Config,
        backend: Arc<dyn Backend>,
        consent_ui: Option<Arc<dyn ConsentUi>>,
    ) -> Arc<Agent> {
        Self::with_prompts(config, backend, consent_ui, None)
    }

    /// [`Agent::new`], and the agent's own PIN prompt `pin_ui` (none: a request without a PIN
    /// signs only on a PIN-pad reader).
    pub fn with_prompts(
        config: &Config,
        backend: Arc<dyn Backend>,
        consent_ui: Option<Arc<dyn ConsentUi>>,
        pin_ui: Option<Arc<dyn PinUi>>,
    ) -> Arc<Agent> {
        let mut features = vec![keyport_protocol::feature::SLOT_EVENTS.to_string()];
        if config.module_isolation {
            features.push(keyport_protocol::feature::MODULE_ISOLATION.to_string());
        }
        if consent_ui.is_some() {
            features.push(keyport_protocol::feature::CONSENT_PROMPT.to_string());
        }
        if pin_ui.is_some() {
            features.push(keyport_protocol::feature::PIN_PROMPT.to_string());
        }
        let consent = ConsentPolicy::new(
            config.trust_origins.iter().cloned(),
            consent_ui,
            config.consent_timeout,
            RememberedSites::load(config.state_file.clone()),
        )
        .with_pin_ui(pin_ui)
        .with_pending_limits(PendingLimits {
            per_origin: config.max_pending_consent_per_origin,
            total: config.max_pending_consent,
        });
        Arc::new(Agent {
            backend,
            modules: Allowlist::new(config.modules.clone()),
            consent,
            request_timeout: config.request_timeout,
            pin_pad_timeout: config.pin_pad_timeout,
            features,
            events: Default::default(),
            tokens: Default::default(),
        })
    }

    /// The module a request names (or the default), if it is on the allowlist.
    pub fn module(&self, requested: Option<&str>) -> Result<AllowedModule> {
        self.modules.resolve(requested)
    }

    /// Run a backend call on a blocking thread, bounded by `request_timeout`. The thread holds
    /// a share of the request's in-flight permit until it returns, even when the page was
    /// already told REQUEST_TIMEOUT: a stuck call keeps counting against its connection.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Backend) -> Result<T> + Send + 'static,
    {
        self.blocking_within(self.request_timeout, f).await
    }

    /// [`Agent::blocking`] with a time limit of its own (a PIN-pad signature waits for the
    /// person at the reader).
    pub async fn blocking_within<T, F>(&self, limit: Duration, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Backend) -> Result<T> + Send + 'static,
    {
        let backend = self.backend.clone();
        let share = request_share();
        // Work nobody waits for any more (its connection closed, or it timed out while queued
        // for a blocking thread) is dropped before it reaches the token.
        let wanted = Wanted::default();
        let still_wanted = wanted.0.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _share = share;
            if !still_wanted.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(AgentError::with_message(
                    ErrorReason::RequestTimeout,
                    "Nobody waits for this request any more; it was dropped unrun.",
                ));
            }
            f(backend.as_ref())
        });
        // A backend that enforces the limit itself (the module host stops a library that hangs
        // and says which) gets half a second to say so before the generic answer.
        let limit = limit + Duration::from_millis(500);
        match tokio::time::timeout(limit, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => {
                tracing::error!(error = %join, "backend call panicked");
                Err(AgentError::new(ErrorReason::Internal))
            }
            Err(_) => Err(AgentError::new(ErrorReason::RequestTimeout)),
        }
    }

    /// The backend's call made on this (async) thread, if it can answer so: see
    /// [`Backend::info_quick`]. For [`Agent::call`].
    pub fn quick<T>(
        &self,
        quick: impl FnOnce(&dyn Backend) -> Option<crate::backend::Quick<T>>,
    ) -> Option<crate::backend::Quick<T>> {
        quick(self.backend.as_ref())
    }

    /// The `quick` call when there is one ([`Agent::quick`]), else `slow` on a blocking thread
    /// ([`Agent::blocking`]).
    pub async fn call<T, F>(&self, quick: Option<crate::backend::Quick<T>>, slow: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Backend) -> Result<T> + Send + 'static,
    {
        self.call_within(self.request_timeout, quick, slow).await
    }

    /// [`Agent::call`] with a time limit of its own.
    pub async fn call_within<T, F>(
        &self,
        limit: Duration,
        quick: Option<crate::backend::Quick<T>>,
        slow: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Backend) -> Result<T> + Send + 'static,
    {
        let Some(answer) = quick else {
            return self.blocking_within(limit, slow).await;
        };
        // A task of its own, which runs to its end even if this request is dropped (its page went
        // away): a call that hangs still gets its host stopped at the deadline, and it holds a
        // share of the request's in-flight permit until then, as a blocking call does.
        let share = request_share();
        let task = tokio::spawn(async move {
            let _share = share;
            answer.await
        });
        match tokio::time::timeout(limit + Duration::from_millis(500), task).await {
            Ok(Ok(result)) => result,
            // The runtime is stopping.
            Ok(Err(join)) if join.is_cancelled() => Err(AgentError::new(ErrorReason::Internal)),
            Ok(Err(join)) => {
                tracing::error!(error = %join, "backend call panicked");
                Err(AgentError::new(ErrorReason::Internal))
            }
            Err(_) => Err(AgentError::new(ErrorReason::RequestTimeout)),
        }
    }

    /// Log out, close sessions, finalise the modules: once, at the end. A module stuck in a
    /// call is not waited for beyond a few seconds.
    pub async fn shutdown(&self) {
        let backend = self.backend.clone();
        let finish = tokio::task::spawn_blocking(move || backend.shutdown());
        if tokio::time::timeout(Duration::from_secs(5), finish)
            .await
            .is_err()
        {
            tracing::warn!("a PKCS #11 module did not finish within 5 s; stopping without it");
        }
    }

    /// Subscribe to the slot events of `module`; `conn` owns the subscription (None: the agent
    /// itself). If the module has no watcher yet, its slots are looked at before this returns
    /// (a module that cannot be loaded fails the subscription), so that every change after the
    /// answer is reported; then the watcher starts.
    pub async fn subscribe_slot_events(
        self: &Arc<Self>,
        conn: Option<usize>,
        module: AllowedModule,
        sink: Sink,
    ) -> Result<SubscriptionId> {
        self.subscribe_polled_every(conn, module, sink, events::POLL_INTERVAL)
            .await
    }

    /// [`Agent::subscribe_slot_events`], content with a polled module looked at every `poll`.
    pub async fn subscribe_polled_every(
        self: &Arc<Self>,
        conn: Option<usize>,
        module: AllowedModule,
        sink: Sink,
        poll: Duration,
    ) -> Result<SubscriptionId> {
        let source: Arc<dyn SlotSource> = self.clone();
        self.events
            .subscribe(source, conn, module, sink, poll)
            .await
    }

    /// Keep [`Agent::tokens`] up to date for the tray: what each allowed module holds now, then
    /// its events (looked at every [`events::TRAY_POLL_INTERVAL`] where the module has none of
    /// its own).
    pub async fn show_tokens(self: Arc<Self>) {
        let modules: Vec<String> = self.modules.paths().map(str::to_string).collect();
        for path in modules {
            let Ok(module) = self.module(Some(&path)) else {
                continue;
            };
            let m = module.clone();
            match self.blocking(move |b| b.slot_presence(&m)).await {
                Ok(now) => self.tokens.set(module.path(), &now),
                Err(e) => {
                    tracing::info!(module = module.path(), reason = %e.reason, "the tray cannot list its tokens: {}", e.message);
                    continue;
                }
            }
            let agent = Arc::downgrade(&self);
            let sink: Sink = Arc::new(move |_, e: &SlotEvent| match agent.upgrade() {
                Some(agent) => {
                    agent.tokens.apply(e);
                    true
                }
                None => false,
            });
            if let Err(e) = self
                .subscribe_polled_every(None, module, sink, events::TRAY_POLL_INTERVAL)
                .await
            {
                tracing::info!(reason = %e.reason, "the tray cannot follow tokens: {}", e.message);
            }
        }
    }
}

#[async_trait::async_trait]
impl SlotSource for Agent {
    async fn presence(&self, module: &AllowedModule) -> Result<Vec<SlotPresence>> {
        let m = module.clone();
        self.blocking(move |b| b.slot_presence(&m)).await
    }

    async fn wait_for_event(&self, module: &AllowedModule, slice: Duration) -> Result<SlotWait> {
        let m = module.clone();
        self.blocking_within(self.request_timeout + slice, move |b| {
            b.wait_slot_event(&m, slice)
        })
        .await
    }
}
