//! The server: binds loopback, accepts TCP connections, answers HTTP only long enough for the
//! WebSocket handshake ([`http`]), then runs each WebSocket connection ([`connection`]), whose
//! messages [`rpc`] dispatches to the JSON-RPC methods. `main` and the tests both start it with
//! [`start`].
//!
//! Every resource a client can make the agent hold is bounded per client:
//! * sockets still in the HTTP phase: at most [`MAX_HANDSHAKING`] at once, each closed after
//!   `handshake_timeout` (slow or idle clients, plain-HTTP keep-alives: there are none, every
//!   plain answer closes its connection);
//! * WebSocket connections: `max_connections` in all and `max_connections_per_origin` per
//!   origin (429 past either);
//! * per connection: `max_in_flight_per_connection` requests (BUSY past it; batch entries
//!   count one by one), `max_message_bytes` per message, `max_reply_backlog_bytes` of answers
//!   the client has not read (past it the connection is closed), pings every `ping_interval`
//!   (no sign of life for two intervals closes it);
//! * `accept` failing (e.g. out of file descriptors) backs off instead of spinning.

pub mod connection;
pub mod http;
pub mod rpc;

use crate::config::Config;
use crate::consent::Caller;
use crate::guard::{Guard, StaticFile};
use crate::limits::MAX_RESPONSE_BYTES;
use crate::methods::rpc_module;
use crate::origin::Origin;
use crate::state::Agent;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Sockets in the HTTP phase at once; more are closed as soon as they are accepted.
pub const MAX_HANDSHAKING: usize = 128;
/// Entries in one batch.
pub const MAX_BATCH: usize = 16;

/// The limits the server enforces, from [`Config`].
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_origin: usize,
    pub max_message_bytes: usize,
    pub max_in_flight_per_connection: usize,
    pub max_reply_backlog_bytes: usize,
    pub handshake_timeout: Duration,
    pub ping_interval: Duration,
}

impl Limits {
    fn from(config: &Config) -> Self {
        Limits {
            max_connections: config.max_connections as usize,
            max_connections_per_origin: config.max_connections_per_origin,
            max_message_bytes: config.max_message_bytes as usize,
            max_in_flight_per_connection: config.max_in_flight_per_connection,
            max_reply_backlog_bytes: config.max_reply_backlog_bytes,
            handshake_timeout: config.handshake_timeout,
            ping_interval: config.ping_interval,
        }
    }

    /// Requests in flight from one caller over all its connections: twice a connection's, at
    /// most 32 (half the agent's 64 blocking threads), so that one site, however many tabs or
    /// reconnections it has, leaves threads for the others.
    pub fn max_in_flight_per_origin(&self) -> usize {
        (self.max_in_flight_per_connection * 2).clamp(1, 32)
    }

    /// Messages larger than this close the connection (code 1009); between `max_message_bytes`
    /// and this they get error -32007 and the connection stays usable.
    fn hard_message_bytes(&self) -> usize {
        self.max_message_bytes.saturating_mul(4).max(64 * 1024)
    }
}

/// WebSocket connections open, in all and per caller.
pub(crate) struct Admission {
    limits: Limits,
    open: Mutex<HashMap<String, usize>>,
    total: Mutex<usize>,
    /// Requests in flight per caller, over all its connections (see
    /// [`Limits::max_in_flight_per_origin`]). Held weakly: an entry lives while a connection
    /// or a token call of that caller holds it.
    in_flight: Mutex<HashMap<String, std::sync::Weak<tokio::sync::Semaphore>>>,
}

/// A WebSocket connection's place in [`Admission`]; given back on drop.
pub(crate) struct Admitted {
    admission: Arc<Admission>,
    key: String,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = lock(&self.admission.open);
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
        *lock(&self.admission.total) -= 1;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Admitted {
    /// The in-flight places of this connection's caller, shared by all its connections.
    pub fn origin_in_flight(&self) -> Arc<tokio::sync::Semaphore> {
        let mut all = lock(&self.admission.in_flight);
        if let Some(s) = all.get(&self.key).and_then(std::sync::Weak::upgrade) {
            return s;
        }
        all.retain(|_, s| s.strong_count() > 0);
        let s = Arc::new(tokio::sync::Semaphore::new(
            self.admission.limits.max_in_flight_per_origin(),
        ));
        all.insert(self.key.clone(), Arc::downgrade(&s));
        s
    }
}

impl Admission {
    /// A place for a new connection of `caller`, or why there is none.
    fn admit(self: &Arc<Self>, caller: &Caller) -> Result<Admitted, &'static str> {
        let key = match caller {
            Caller::Origin(o) => o.to_string(),
            Caller::Local { .. } => String::new(),
        };
        let mut total = lock(&self.total);
        if *total >= self.limits.max_connections {
            return Err("Too many connections to the agent.");
        }
        let mut open = lock(&self.open);
        let n = open.entry(key.clone()).or_insert(0);
        if *n >= self.limits.max_connections_per_origin {
            if *n == 0 {
                open.remove(&key);
            }
            return Err("Too many connections from this origin.");
        }
        *n += 1;
        *total += 1;
        Ok(Admitted {
            admission: self.clone(),
            key,
        })
    }

    /// WebSocket connections open now.
    pub fn open(&self) -> usize {
        *lock(&self.total)
    }
}

/// What every connection task shares.
pub(crate) struct Shared {
    pub agent: Arc<Agent>,
    pub guard: Guard,
    pub rpc: rpc::Rpc,
    pub limits: Limits,
    pub admission: Arc<Admission>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    pub next_conn_id: std::sync::atomic::AtomicUsize,
}

/// A running agent.
pub struct Running {
    pub addr: SocketAddr,
    pub state: Arc<Agent>,
    shared: Arc<Shared>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// WebSocket connections open now.
    pub fn connections(&self) -> usize {
        self.shared.admission.open()
    }

    /// Stop accepting, close connections, log out and finalise the modules.
    pub async fn shutdown(self) {
        self.shared.shutdown.cancel();
        let _ = self.accept_task.await;
        self.shared.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), self.shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open 5 s after shutdown; leaving them");
        }
        self.state.shutdown().await;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: the port is in use, and {holder}")]
    InUse { addr: SocketAddr, holder: String },
}

/// Start serving `state` on `config.listen` (port 0 = any free port).
pub async fn start(
    config: &Config,
    state: Arc<Agent>,
    files: Vec<StaticFile>,
) -> Result<Running, StartError> {
    let bind_err = |source| StartError::Bind {
        addr: config.listen,
        source,
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let holder = crate::ports::holder(config.listen.port())
                .map(|h| h.describe())
                .unwrap_or_else(|| "which program holds it cannot be seen from here".into());
            return Err(StartError::InUse {
                addr: config.listen,
                holder,
            });
        }
        Err(e) => return Err(bind_err(e)),
    };
    let addr = listener.local_addr().map_err(bind_err)?;

    let mut allowed: std::collections::HashSet<Origin> =
        config.allow_origins.iter().cloned().collect();
    let mut files_served = Vec::new();
    if config.demo {
        for host in ["127.0.0.1", "localhost"] {
            let demo = format!("http://{host}:{}", addr.port());
            allowed.insert(Origin::parse(&demo).expect("the demo page's origin is an origin"));
        }
        files_served = files;
    }
    let guard = Guard {
        port: addr.port(),
        allowed,
        trusted: config.trust_origins.iter().cloned().collect(),
        no_origin: config.no_origin,
        files: files_served,
    };

    let limits = Limits::from(config);
    let shared = Arc::new(Shared {
        agent: state.clone(),
        guard,
        rpc: rpc::Rpc::new(rpc_module(state.clone()), MAX_RESPONSE_BYTES, MAX_BATCH),
        admission: Arc::new(Admission {
            in_flight: Mutex::default(),
            limits: limits.clone(),
            open: Mutex::new(HashMap::new()),
            total: Mutex::new(0),
        }),
        limits,
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
        next_conn_id: std::sync::atomic::AtomicUsize::new(1),
    });
    let accept_task = tokio::spawn(accept_loop(listener, shared.clone()));

    Ok(Running {
        addr,
        state,
        shared,
        accept_task,
    })
}

/// Accept until shutdown. A failing `accept` (out of file descriptors, of memory) backs off
/// from 5 ms to 1 s instead of retrying at once: the failure repeats until something is freed.
async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let handshaking = Arc::new(Semaphore::new(MAX_HANDSHAKING));
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(5);
                let Ok(permit) = handshaking.clone().try_acquire_owned() else {
                    tracing::debug!("too many sockets in the HTTP phase; one closed");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let s = shared.clone();
                shared.tasks.spawn(async move {
                    http::serve(stream, s, permit).await;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "accept failed");
                tokio::select! {
                    _ = shared.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}
