//! One WebSocket connection: read messages, dispatch each on its own task, write the answers.
//!
//! Answers wait in an outgoing queue bounded in bytes (`max_reply_backlog_bytes`): a client that
//! sends requests but never reads their answers is disconnected when the bound is passed,
//! instead of making the agent hold its answers without end. A ping goes out every
//! `ping_interval`; a peer that sends nothing (not even the pong) for two intervals is gone.
//! When the connection ends, its requests still running are dropped (a prompt that is up is
//! withdrawn); token calls already on a blocking thread finish there.

use super::rpc::{binary_reply, oversize_reply, ConnContext};
use super::{Admitted, Shared};
use crate::consent::Caller;
use crate::events::Notifier;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// How long answers already queued may take to go out once the connection is ending.
const FLUSH_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// How long the closing handshake may take: the peer's own close is not waited for.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// The answers waiting to be written, bounded in bytes.
struct Outbox {
    tx: mpsc::UnboundedSender<Message>,
    /// Shared with the writer, which must not hold `tx` (its channel would never end).
    bytes: Arc<AtomicUsize>,
    max: usize,
    /// Cancelled when the bound is passed: the connection closes.
    overflow: CancellationToken,
}

impl Outbox {
    fn push(&self, msg: Message) {
        let n = msg.len();
        let queued = self.bytes.fetch_add(n, Ordering::SeqCst) + n;
        if queued > self.max {
            self.overflow.cancel();
            return;
        }
        if self.tx.send(msg).is_err() {
            self.bytes.fetch_sub(n, Ordering::SeqCst);
        }
    }
}

/// Serve one WebSocket connection until it ends. One function on purpose: its `select!` loop
/// is the connection's whole life (requests, answers, pings, limits, shutdown), and the
/// teardown after it must see every local the loop used.
pub(super) async fn serve<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    caller: Caller,
    door: keyport_protocol::Door,
    shared: Arc<Shared>,
    admitted: Admitted,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limits = &shared.limits;
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let outbox = Arc::new(Outbox {
        tx,
        bytes: Arc::new(AtomicUsize::new(0)),
        max: limits.max_reply_backlog_bytes,
        overflow: CancellationToken::new(),
    });
    let id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
    // Notifications share the answers' queue and its bound; held weakly, so that a
    // subscription never keeps a closed connection's queue alive.
    let weak = Arc::downgrade(&outbox);
    let ctx = ConnContext {
        caller,
        id,
        in_flight: Arc::new(Semaphore::new(limits.max_in_flight_per_connection)),
        origin_in_flight: admitted.origin_in_flight(),
        notifier: Some(Notifier::new(id, move |text| match weak.upgrade() {
            Some(outbox) if !outbox.overflow.is_cancelled() => {
                outbox.push(Message::text(text));
                true
            }
            _ => false,
        })),
    };
    tracing::debug!(
        conn = ctx.id,
        caller = %crate::logging::quote(ctx.caller.label(), 80),
        door = door.as_str(),
        "connected"
    );

    let queued = outbox.bytes.clone();
    let mut writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let n = msg.len();
            let sent = sink.send(msg).await;
            queued.fetch_sub(n, Ordering::SeqCst);
            if sent.is_err() {
                return;
            }
        }
        // Say goodbye, but do not wait for the peer to close its side: until both halves are
        // dropped, the read buffer holds the last requests (PINs among them) in clear.
        let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
    });

    let mut requests = JoinSet::new();
    // Tasks a connection may have at once: its in-flight requests and as many on their way to
    // a BUSY answer. Past this the connection is not read until some finish (each task holds
    // its request's future: an unbounded backlog would hold unbounded memory).
    let max_tasks = limits.max_in_flight_per_connection * 2 + 2;
    let interval = limits.ping_interval;
    let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
    let mut heard = Instant::now();
    let why = loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break "the agent is stopping",
            _ = outbox.overflow.cancelled() => break "the client does not read its answers",
            _ = ping.tick() => {
                if heard.elapsed() > interval * 2 {
                    break "no answer to pings";
                }
                outbox.push(Message::Ping(Default::default()));
            }
            Some(_) = requests.join_next(), if !requests.is_empty() => {}
            msg = stream.next(), if requests.len() < max_tasks => {
                let msg = match msg {
                    None => break "closed by the client",
                    Some(Err(e)) => {
                        tracing::debug!(conn = ctx.id, error = %e, "WebSocket error");
                        break "a WebSocket error";
                    }
                    Some(Ok(m)) => m,
                };
                heard = Instant::now();
                match msg {
                    Message::Text(text) => {
                        if text.len() > limits.max_message_bytes {
                            outbox.push(Message::text(oversize_reply(limits.max_message_bytes)));
                            continue;
                        }
                        let (shared, ctx, outbox) = (shared.clone(), ctx.clone(), outbox.clone());
                        requests.spawn(async move {
                            if let Some(reply) = shared.rpc.handle(text.as_str(), &ctx).await {
                                outbox.push(Message::text(reply));
                            }
                        });
                    }
                    Message::Binary(_) => outbox.push(Message::text(binary_reply())),
                    Message::Close(_) => break "closed by the client",
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                }
            }
        }
    };
    tracing::debug!(conn = ctx.id, "disconnected: {why}");
    // Its subscriptions end with it.
    shared.agent.events.drop_connection(ctx.id);
    // Requests still running are abandoned; answers already queued go out if the client reads.
    requests.abort_all();
    drop(requests);
    let abandoned = outbox.overflow.is_cancelled() || shared.shutdown.is_cancelled();
    drop(outbox);
    if abandoned
        || tokio::time::timeout(FLUSH_GRACE, &mut writer)
            .await
            .is_err()
    {
        writer.abort();
        // The writer's half must be gone before we return (the read half goes with us).
        let _ = writer.await;
    }
}
