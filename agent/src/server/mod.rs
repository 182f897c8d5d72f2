//! The server: binds loopback, stacks the guard and the limits around jsonrpsee, and owns the
//! background jobs (idle logout). `main` and the tests both start it with [`start`].

use crate::backend::Backend;
use crate::config::Config;
use crate::consent::{ConsentPolicy, ConsentUi, RememberedSites};
use crate::error::AgentError;
use crate::guard::{Guard, GuardLayer, StaticFile};
use crate::methods::{rpc_module, AppState};
use jsonrpsee::core::middleware::{Batch, Notification, RpcServiceT};
use jsonrpsee::server::middleware::rpc::RpcServiceBuilder;
use jsonrpsee::server::{BatchRequestConfig, ServerConfig, ServerHandle};
use jsonrpsee::types::{ErrorObjectOwned, Id, Request};
use jsonrpsee::MethodResponse;
use keyport_protocol::ErrorReason;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Bounds the requests in flight on one connection; over the bound a request gets BUSY at once.
#[derive(Clone)]
pub struct InFlightLimit<S> {
    service: S,
    permits: Arc<Semaphore>,
}

fn busy() -> ErrorObjectOwned {
    AgentError::new(ErrorReason::Busy).into()
}

impl<S> RpcServiceT for InFlightLimit<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync
        + Clone
        + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(&self, request: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let permit = self.permits.clone().try_acquire_owned();
        let service = self.service.clone();
        async move {
            match permit {
                Ok(_permit) => service.call(request).await,
                Err(_) => MethodResponse::error(request.id, busy()),
            }
        }
    }

    fn batch<'a>(&self, requests: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let permit = self.permits.clone().try_acquire_owned();
        let service = self.service.clone();
        async move {
            match permit {
                Ok(_permit) => service.batch(requests).await,
                Err(_) => MethodResponse::error(Id::Null, busy()),
            }
        }
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = MethodResponse> + Send + 'a {
        self.service.notification(n)
    }
}

/// A running agent.
pub struct Running {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    handle: ServerHandle,
    idle_task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Stop accepting, close connections, log out and finalise the modules.
    pub async fn shutdown(self) {
        let _ = self.handle.stop();
        self.handle.stopped().await;
        self.idle_task.abort();
        let backend = self.state.backend.clone();
        let _ = tokio::task::spawn_blocking(move || backend.shutdown()).await;
    }

    /// Resolves when the server stops.
    pub async fn stopped(&self) {
        self.handle.clone().stopped().await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Start serving on `config.listen` (port 0 = any free port).
pub async fn start(
    config: &Config,
    backend: Arc<dyn Backend>,
    consent_ui: Option<Arc<dyn ConsentUi>>,
    files: Vec<StaticFile>,
) -> Result<Running, StartError> {
    let listener = std::net::TcpListener::bind(config.listen)
        .and_then(|l| l.set_nonblocking(true).map(|_| l))
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;

    let mut allowed: std::collections::HashSet<String> =
        config.allow_origins.iter().cloned().collect();
    let mut files_served = Vec::new();
    if config.demo {
        for host in ["127.0.0.1", "localhost"] {
            allowed.insert(format!("http://{host}:{}", addr.port()));
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

    let consent = ConsentPolicy::new(
        config.trust_origins.iter().cloned(),
        consent_ui,
        config.consent_timeout,
        RememberedSites::load(config.state_file.clone()),
    )
    .with_pending_limits(
        config.max_pending_consent_per_origin,
        config.max_pending_consent,
    );
    let state = Arc::new(AppState {
        backend: backend.clone(),
        modules: config.modules.clone(),
        consent,
        request_timeout: config.request_timeout,
    });

    let server_config = ServerConfig::builder()
        .ws_only()
        .max_request_body_size(config.max_message_bytes)
        .max_response_body_size(8 * 1024 * 1024)
        .max_connections(config.max_connections)
        .max_subscriptions_per_connection(0)
        .set_batch_request_config(BatchRequestConfig::Limit(16))
        .build();
    let max_in_flight = config.max_in_flight_per_connection;
    let rpc_middleware = RpcServiceBuilder::new().layer_fn(move |service| InFlightLimit {
        service,
        permits: Arc::new(Semaphore::new(max_in_flight)),
    });
    let server = jsonrpsee::server::Server::builder()
        .set_config(server_config)
        .set_http_middleware(tower::ServiceBuilder::new().layer(GuardLayer(Arc::new(guard))))
        .set_rpc_middleware(rpc_middleware)
        .build_from_tcp(listener)
        .map_err(|source| StartError::Bind { addr, source })?;
    let handle = server.start(rpc_module(state.clone()));

    let idle = config.idle_logout;
    let idle_task = tokio::spawn(async move {
        let period = (idle / 4).clamp(
            std::time::Duration::from_millis(100),
            std::time::Duration::from_secs(30),
        );
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let b = backend.clone();
            let _ = tokio::task::spawn_blocking(move || b.logout_idle()).await;
        }
    });

    Ok(Running {
        addr,
        state,
        handle,
        idle_task,
    })
}
