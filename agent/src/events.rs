//! Slot events: who is told when a token is inserted or removed, and the watchers that find out.
//!
//! A subscriber is a connection (`pkcs11.subscribeSlotEvents`) or the tray; each names one
//! module. While a module has a subscriber, one watcher task looks at it:
//!
//! * where the module reports events itself (`C_WaitForSlotEvent`, waited for next to the module
//!   in its host, see `backend/pkcs11/events.rs`), the watcher waits for one in slices of
//!   [`WAIT_SLICE`] and looks at the slots only when one came;
//! * otherwise (SoftHSM, and any module whose wait fails) it looks at the slots every
//!   [`POLL_INTERVAL`].
//!
//! Looking at the slots means [`Backend::slot_presence`](crate::backend::Backend), which also
//! drops what was kept of a token that left. The differences with the last look become
//! [`SlotEvent`]s for every subscriber of the module. When the last subscriber of a module
//! leaves, its watcher ends at its next turn: an agent nobody subscribed to makes no token calls
//! for events (beyond one `C_WaitForSlotEvent` left waiting in a module that has it).
//!
//! Bounded: [`MAX_PER_CONNECTION`] subscriptions per connection (connections themselves are
//! bounded by the server), one watcher per module, and notifications go through the
//! connection's outgoing queue, which is bounded in bytes (a client that does not read is
//! disconnected, and its subscriptions end with it).
//!
//! Subscription ids are random ([`new_id`]), not a count: a page that subscribes learns nothing
//! of how many subscriptions other pages made, and cannot guess theirs (it could not end them
//! anyway: a subscription is ended only by the connection that holds it).

use crate::allowlist::AllowedModule;
use crate::backend::{SlotPresence, SlotWait};
use crate::error::{AgentError, Result};
use keyport_protocol::{ErrorReason, SlotEvent, SlotEventKind, SubscriptionId};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Subscriptions one connection may hold.
pub const MAX_PER_CONNECTION: usize = 8;
/// How often a module without events of its own is looked at.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long one wait for a module's event lasts before the watcher checks it still has
/// subscribers.
pub const WAIT_SLICE: Duration = Duration::from_secs(1);
/// How often the tray's own subscription looks at a polled module (a person glancing at a menu
/// needs less than a page waiting for a card; pages' subscriptions make it [`POLL_INTERVAL`]).
pub const TRAY_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The largest subscription id: 2^53 − 1, so that a page reads every id exactly (JavaScript's
/// numbers are doubles).
pub const MAX_ID: SubscriptionId = (1 << 53) - 1;

/// A new subscription id: random in 1..=[`MAX_ID`] (53 random bits from the operating system),
/// and not `taken`.
fn new_id(taken: impl Fn(SubscriptionId) -> bool) -> Result<SubscriptionId> {
    // A collision is all but impossible (a few hundred ids among 2^53); a few draws settle it.
    for _ in 0..8 {
        let id = getrandom::u64().map_err(|e| {
            AgentError::with_message(
                ErrorReason::Internal,
                format!("no randomness for a subscription id: {e}"),
            )
        })? & MAX_ID;
        if id != 0 && !taken(id) {
            return Ok(id);
        }
    }
    Err(AgentError::with_message(
        ErrorReason::Internal,
        "no free subscription id",
    ))
}

/// Where a subscriber's events go. Returns false once the subscriber is gone.
pub type Sink = Arc<dyn Fn(SubscriptionId, &SlotEvent) -> bool + Send + Sync>;

/// What a connection gives the methods so that they can subscribe it: its id, and a way to
/// send it a text message (a notification) outside any request.
#[derive(Clone)]
pub struct Notifier {
    pub conn: usize,
    send: Arc<dyn Fn(String) -> bool + Send + Sync>,
}

impl Notifier {
    pub fn new(conn: usize, send: impl Fn(String) -> bool + Send + Sync + 'static) -> Notifier {
        Notifier {
            conn,
            send: Arc::new(send),
        }
    }

    /// Queue `text` for the connection; false if it is gone.
    pub fn send(&self, text: String) -> bool {
        (self.send)(text)
    }
}

/// Who is subscribed, and which modules are watched.
#[derive(Default)]
pub struct SlotEvents {
    hub: Mutex<Hub>,
}

#[derive(Default)]
struct Hub {
    subs: HashMap<SubscriptionId, Subscriber>,
    /// Modules (by path) with a watcher running.
    watched: HashSet<String>,
}

struct Subscriber {
    /// The connection that owns it (None: the agent itself, e.g. the tray).
    conn: Option<usize>,
    module: AllowedModule,
    sink: Sink,
    /// How often it wants a polled module looked at.
    poll: Duration,
}

fn lock(m: &Mutex<Hub>) -> std::sync::MutexGuard<'_, Hub> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SlotEvents {
    /// Subscribe `sink` to the events of `module`; returns the subscription's id and whether a
    /// watcher must be started for the module.
    fn add(
        &self,
        conn: Option<usize>,
        module: AllowedModule,
        sink: Sink,
        poll: Duration,
    ) -> Result<(SubscriptionId, bool)> {
        let mut hub = lock(&self.hub);
        if let Some(c) = conn {
            let held = hub.subs.values().filter(|s| s.conn == Some(c)).count();
            if held >= MAX_PER_CONNECTION {
                return Err(AgentError::with_message(
                    ErrorReason::Busy,
                    format!(
                        "A connection may hold at most {MAX_PER_CONNECTION} slot-event \
                         subscriptions: unsubscribe one first."
                    ),
                ));
            }
        }
        let id = new_id(|id| hub.subs.contains_key(&id))?;
        let start = hub.watched.insert(module.path().to_string());
        hub.subs.insert(
            id,
            Subscriber {
                conn,
                module,
                sink,
                poll,
            },
        );
        Ok((id, start))
    }

    /// End subscription `id` if `conn` owns it.
    pub fn unsubscribe(&self, conn: Option<usize>, id: SubscriptionId) -> bool {
        let mut hub = lock(&self.hub);
        match hub.subs.get(&id) {
            Some(s) if s.conn == conn => {
                hub.subs.remove(&id);
                true
            }
            _ => false,
        }
    }

    /// End every subscription of connection `conn` (it closed).
    pub fn drop_connection(&self, conn: usize) {
        lock(&self.hub).subs.retain(|_, s| s.conn != Some(conn));
    }

    /// Subscriptions held now (for tests of the bounds).
    pub fn count(&self) -> usize {
        lock(&self.hub).subs.len()
    }

    /// Modules watched now (for tests: a watcher ends once its module has no subscriber).
    pub fn watched(&self) -> usize {
        lock(&self.hub).watched.len()
    }

    /// Whether the watcher of `module` goes on, and how often its subscribers want a polled
    /// module looked at; if not, it is marked stopped (under the same lock a new subscriber
    /// takes, so that one either sees it running or starts another).
    fn keep_watching(&self, module: &AllowedModule) -> Option<Duration> {
        let mut hub = lock(&self.hub);
        let poll = hub
            .subs
            .values()
            .filter(|s| s.module.path() == module.path())
            .map(|s| s.poll)
            .min();
        if poll.is_none() {
            hub.watched.remove(module.path());
        }
        poll
    }

    /// Tell every subscriber of `module` about `events`; subscribers whose receiver is gone
    /// are dropped.
    fn publish(&self, module: &AllowedModule, events: &[SlotEvent]) {
        if events.is_empty() {
            return;
        }
        let targets: Vec<(SubscriptionId, Sink)> = lock(&self.hub)
            .subs
            .iter()
            .filter(|(_, s)| s.module.path() == module.path())
            .map(|(id, s)| (*id, s.sink.clone()))
            .collect();
        let mut gone = Vec::new();
        for (id, sink) in targets {
            for event in events {
                if !sink(id, event) {
                    gone.push(id);
                    break;
                }
            }
        }
        if !gone.is_empty() {
            let mut hub = lock(&self.hub);
            for id in gone {
                hub.subs.remove(&id);
            }
        }
    }
}

/// What a watcher asks of the tokens' side: the agent implements it, running each call off the
/// async runtime and bounded in time (`crate::state::Agent`).
#[async_trait::async_trait]
pub trait SlotSource: Send + Sync + 'static {
    /// Every slot of `module` and the token in it.
    async fn presence(&self, module: &AllowedModule) -> Result<Vec<SlotPresence>>;
    /// Wait at most `slice` for a slot event of `module`.
    async fn wait_for_event(&self, module: &AllowedModule, slice: Duration) -> Result<SlotWait>;
}

impl SlotEvents {
    /// Subscribe `sink` to the slot events of `module`; `conn` owns the subscription (None: the
    /// agent itself), and a polled module is looked at every `poll`. If the module has no
    /// watcher yet, its slots are looked at before this returns (a module that cannot be
    /// loaded fails the subscription), so that every change after the answer is reported;
    /// then the watcher starts.
    pub async fn subscribe(
        self: &Arc<Self>,
        source: Arc<dyn SlotSource>,
        conn: Option<usize>,
        module: AllowedModule,
        sink: Sink,
        poll: Duration,
    ) -> Result<SubscriptionId> {
        let (id, start) = self.add(conn, module.clone(), sink, poll)?;
        if start {
            match source.presence(&module).await {
                Ok(now) => {
                    tracing::debug!(module = module.path(), "watching slots");
                    tokio::spawn(watch(self.clone(), source, module, now));
                }
                Err(e) => {
                    self.unsubscribe(conn, id);
                    self.keep_watching(&module);
                    return Err(e);
                }
            }
        }
        Ok(id)
    }
}

/// The tokens present, as the tray shows them: kept up to date by the agent's own
/// subscriptions (`crate::state::Agent::show_tokens`).
#[derive(Default)]
pub struct TokenBoard {
    /// (module, slot id) → token label.
    tokens: Mutex<std::collections::BTreeMap<(String, u64), String>>,
    listeners: Mutex<Vec<Arc<dyn Fn() + Send + Sync>>>,
}

impl TokenBoard {
    /// Every token present: (module, slot id, label), by module and slot.
    pub fn list(&self) -> Vec<(String, u64, String)> {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|((m, s), l)| (m.clone(), *s, l.clone()))
            .collect()
    }

    /// Call `f` whenever the list changes, from any thread.
    pub fn on_change(&self, f: impl Fn() + Send + Sync + 'static) {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(f));
    }

    pub(crate) fn set(&self, module: &str, slots: &[SlotPresence]) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|(m, _), _| m != module);
        for s in slots {
            if let Some(t) = &s.token {
                tokens.insert((module.to_string(), s.slot_id), t.label.clone());
            }
        }
        drop(tokens);
        self.changed();
    }

    pub(crate) fn apply(&self, e: &SlotEvent) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let key = (e.module.clone(), e.slot_id);
        match e.event {
            SlotEventKind::Inserted => {
                tokens.insert(key, e.token_label.clone().unwrap_or_default());
            }
            SlotEventKind::Removed => {
                tokens.remove(&key);
            }
        }
        drop(tokens);
        self.changed();
    }

    fn changed(&self) {
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for f in listeners {
            f();
        }
    }
}

/// What changed between two looks at a module's slots.
pub fn diff(module: &str, before: &[SlotPresence], now: &[SlotPresence]) -> Vec<SlotEvent> {
    let event = |slot_id, event, label: Option<&String>| SlotEvent {
        module: module.to_string(),
        slot_id,
        event,
        token_label: label.cloned(),
    };
    let token_in = |list: &[SlotPresence], id| {
        list.iter()
            .find(|s| s.slot_id == id)
            .and_then(|s| s.token.clone())
    };
    let mut out = Vec::new();
    for b in before {
        let after = token_in(now, b.slot_id);
        if let Some(old) = &b.token {
            if after.as_ref() != Some(old) {
                out.push(event(b.slot_id, SlotEventKind::Removed, Some(&old.label)));
            }
        }
    }
    for n in now {
        if let Some(new) = &n.token {
            if token_in(before, n.slot_id).as_ref() != Some(new) {
                out.push(event(n.slot_id, SlotEventKind::Inserted, Some(&new.label)));
            }
        }
    }
    out
}

/// The watcher of one module (see the module documentation), from the slots as they were
/// when it started.
async fn watch(
    events: Arc<SlotEvents>,
    source: Arc<dyn SlotSource>,
    module: AllowedModule,
    mut known: Vec<SlotPresence>,
) {
    let mut polling = false;
    // The module's own wait starts with the first call: look once more after it, in case a
    // token came or went in between.
    let mut first = true;
    while let Some(poll) = events.keep_watching(&module) {
        let look_now = if polling {
            tokio::time::sleep(poll).await;
            true
        } else {
            let waited = source.wait_for_event(&module, WAIT_SLICE).await;
            let first = std::mem::take(&mut first);
            match waited {
                Ok(SlotWait::Event) => true,
                Ok(SlotWait::Quiet) => first,
                Ok(SlotWait::Unsupported) => {
                    tracing::info!(
                        module = module.path(),
                        "the module does not report slot events: polling it every {} ms",
                        poll.as_millis()
                    );
                    polling = true;
                    true
                }
                Err(e) => {
                    // A host that crashed or hung is replaced at the next call; look again.
                    tracing::debug!(module = module.path(), reason = %e.reason, "waiting for slot events failed: {}", e.message);
                    tokio::time::sleep(POLL_INTERVAL).await;
                    true
                }
            }
        };
        if !look_now {
            continue;
        }
        match source.presence(&module).await {
            Ok(now) => {
                let changes = diff(module.path(), &known, &now);
                for e in &changes {
                    tracing::info!(module = module.path(), slot = e.slot_id, label = ?e.token_label, "token {:?}", e.event);
                }
                events.publish(&module, &changes);
                known = now;
            }
            Err(e) => {
                tracing::debug!(module = module.path(), reason = %e.reason, "cannot list the slots: {}", e.message);
            }
        }
    }
    tracing::debug!(
        module = module.path(),
        "no subscriber left: stopped watching slots"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TokenIdentity;

    fn slot(id: u64, label: Option<&str>) -> SlotPresence {
        SlotPresence {
            slot_id: id,
            token: label.map(|l| TokenIdentity {
                label: l.into(),
                serial: format!("{l}-serial"),
            }),
        }
    }

    fn kinds(events: &[SlotEvent]) -> Vec<(u64, SlotEventKind, Option<&str>)> {
        events
            .iter()
            .map(|e| (e.slot_id, e.event, e.token_label.as_deref()))
            .collect()
    }

    /// A subscriber that records what it is sent.
    fn recorder() -> (Sink, Arc<Mutex<Vec<SlotEvent>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let sink: Sink = Arc::new(move |_, e: &SlotEvent| {
            into.lock().unwrap().push(e.clone());
            true
        });
        (sink, seen)
    }

    async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !done() {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_polled_module_reports_changes_and_its_watcher_ends_with_its_last_subscriber() {
        use std::sync::atomic::Ordering;
        let fake = Arc::new(crate::backend::fake::FakeBackend::default());
        let agent = crate::methods::tests::state(fake.clone());
        let module = agent.module(None).unwrap();
        let (sink, seen) = recorder();
        let id = agent
            .subscribe_slot_events(Some(1), module.clone(), sink)
            .await
            .unwrap();
        assert_eq!(agent.events.watched(), 1);
        // The tray follows the same module, more slowly; the page's pace wins.
        agent.clone().show_tokens().await;
        assert_eq!(
            agent.tokens.list(),
            [(module.path().to_string(), 1, "fake".to_string())]
        );
        fake.present.store(false, Ordering::SeqCst);
        assert!(until(Duration::from_secs(5), || !seen.lock().unwrap().is_empty()).await);
        assert_eq!(seen.lock().unwrap()[0].event, SlotEventKind::Removed);
        assert_eq!(seen.lock().unwrap()[0].slot_id, fake.slot_id);
        fake.present.store(true, Ordering::SeqCst);
        assert!(until(Duration::from_secs(5), || seen.lock().unwrap().len() == 2).await);
        assert_eq!(seen.lock().unwrap()[1].event, SlotEventKind::Inserted);
        assert_eq!(
            agent.tokens.list().len(),
            1,
            "the tray saw it leave and come back"
        );

        // Another connection cannot end it; its owner can, once.
        assert!(!agent.events.unsubscribe(Some(2), id));
        assert!(agent.events.unsubscribe(Some(1), id));
        assert!(!agent.events.unsubscribe(Some(1), id));
        // The tray's subscription is the agent's own: end it too.
        let tray: Vec<SubscriptionId> = lock(&agent.events.hub)
            .subs
            .iter()
            .filter(|(_, s)| s.conn.is_none())
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(tray.len(), 1);
        assert!(agent.events.unsubscribe(None, tray[0]));
        assert!(until(Duration::from_secs(5), || agent.events.watched() == 0).await);
        let calls = fake.presence_calls.load(Ordering::SeqCst);
        tokio::time::sleep(POLL_INTERVAL * 3).await;
        assert_eq!(
            fake.presence_calls.load(Ordering::SeqCst),
            calls,
            "no subscriber, no token calls"
        );

        // Many cycles, and a connection that goes away: nothing is left.
        for _ in 0..1000 {
            let (sink, _) = recorder();
            let id = agent
                .subscribe_slot_events(Some(3), module.clone(), sink)
                .await
                .unwrap();
            assert!(agent.events.unsubscribe(Some(3), id));
        }
        for _ in 0..MAX_PER_CONNECTION {
            let (sink, _) = recorder();
            agent
                .subscribe_slot_events(Some(4), module.clone(), sink)
                .await
                .unwrap();
        }
        let (sink, _) = recorder();
        let err = agent
            .subscribe_slot_events(Some(4), module.clone(), sink)
            .await
            .unwrap_err();
        assert_eq!(err.reason, ErrorReason::Busy);
        agent.events.drop_connection(4);
        assert_eq!(agent.events.count(), 0);
        assert!(until(Duration::from_secs(5), || agent.events.watched() == 0).await);
    }

    /// Issue 19, finding 12: ids were one count for the whole agent.
    #[test]
    fn ids_are_random_distinct_and_safe_in_javascript() {
        let mut seen = HashSet::new();
        for _ in 0..1000 {
            let id = new_id(|id| seen.contains(&id)).unwrap();
            assert!((1..=MAX_ID).contains(&id), "{id}");
            assert!(seen.insert(id));
        }
        let mut ids: Vec<_> = seen.into_iter().collect();
        ids.sort();
        // Out of 1,000 draws among 2^53, none next to another: not a count.
        assert!(ids.windows(2).all(|w| w[1] - w[0] > 1));
        // Everything taken: an error, not a loop forever nor a panic.
        assert_eq!(new_id(|_| true).unwrap_err().reason, ErrorReason::Internal);
    }

    #[tokio::test]
    async fn a_subscriber_that_is_gone_is_dropped() {
        let fake = Arc::new(crate::backend::fake::FakeBackend::default());
        let agent = crate::methods::tests::state(fake);
        let module = agent.module(None).unwrap();
        let sink: Sink = Arc::new(|_, _| false);
        agent
            .subscribe_slot_events(Some(1), module.clone(), sink)
            .await
            .unwrap();
        let event = SlotEvent {
            module: module.path().into(),
            slot_id: 1,
            event: SlotEventKind::Removed,
            token_label: None,
        };
        agent.events.publish(&module, &[event]);
        assert_eq!(agent.events.count(), 0);
    }

    #[test]
    fn diff_names_insertions_removals_and_swaps() {
        use SlotEventKind::*;
        let before = [slot(1, Some("a")), slot(2, None), slot(3, Some("c"))];
        let now = [slot(1, Some("a")), slot(2, Some("b")), slot(3, None)];
        assert_eq!(
            kinds(&diff("m", &before, &now)),
            [(3, Removed, Some("c")), (2, Inserted, Some("b"))]
        );
        // Another token in the same slot: out with the old, in with the new.
        let swapped = [slot(1, Some("z"))];
        assert_eq!(
            kinds(&diff("m", &[slot(1, Some("a"))], &swapped)),
            [(1, Removed, Some("a")), (1, Inserted, Some("z"))]
        );
        // A reader unplugged (its slot gone) and one plugged in with a card.
        assert_eq!(
            kinds(&diff("m", &[slot(1, Some("a"))], &[slot(7, Some("n"))])),
            [(1, Removed, Some("a")), (7, Inserted, Some("n"))]
        );
        assert!(diff("m", &before, &before).is_empty());
    }
}
