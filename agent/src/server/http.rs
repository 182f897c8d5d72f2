//! The HTTP phase of a connection: the demo page's files, or the WebSocket handshake after the
//! [`Guard`](crate::guard::Guard) and the connection limits allowed it. Every plain answer
//! carries `Connection: close`, so hyper closes the socket after it (no keep-alive; hyper's own
//! keep-alive switch would also strip the upgrade's `Connection` header), and the whole phase
//! must end within `handshake_timeout`.

use super::{connection, Shared};
use crate::guard::{OriginHeader, Verdict};
use crate::logging::quote;
use bytes::Bytes;
use http::header::{
    HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION,
    UPGRADE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use keyport_protocol::{Door, DOOR_HEADER};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

type Body = Full<Bytes>;

/// Largest request head (request line and headers) read; larger gets 431.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Serve one accepted socket until it is upgraded or answered. `_permit` is its place among
/// the sockets in the HTTP phase.
pub(super) async fn serve(
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
) {
    let timeout = shared.limits.handshake_timeout;
    let svc_shared = shared.clone();
    let service = hyper::service::service_fn(move |req| {
        let shared = svc_shared.clone();
        async move { Ok::<_, Infallible>(handle(req, shared)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::select! {
        _ = shared.shutdown.cancelled() => {}
        r = tokio::time::timeout(timeout, conn) => {
            if let Ok(Err(e)) = r {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        }
    }
}

/// The door a connection says it came through (`X-Keyport-Door`): the browser extension's
/// native-messaging host sends `extension`; pages connect directly. For the log only: any
/// local program can send the header, and it changes nothing the agent allows.
fn door_of(headers: &http::HeaderMap) -> Door {
    match headers.get(DOOR_HEADER).map(|v| v.as_bytes()) {
        Some(v) if v.eq_ignore_ascii_case(Door::Extension.as_str().as_bytes()) => Door::Extension,
        _ => Door::Websocket,
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(CONNECTION, "close")
        .body(Body::from(body))
        .expect("static response")
}

fn header(req: &Request<Incoming>, name: http::header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(token)))
}

/// Answer one HTTP request: the checks in the order they must run (Host, Origin, path,
/// upgrade, limits), each refusal a typed answer; one function so that the order is visible.
fn handle(mut req: Request<Incoming>, shared: Arc<Shared>) -> Response<Body> {
    let guard = &shared.guard;
    let host = header(&req, http::header::HOST);
    let upgrade = req.headers().contains_key(UPGRADE);
    if !upgrade {
        if req.method() != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "Only GET is served here.");
        }
        // Plain GETs for the demo page: Host is checked; Origin is absent on navigations.
        if !guard.host_ok(host) {
            return text(StatusCode::FORBIDDEN, "Host not allowed.");
        }
        let path = req.uri().path();
        let path = if path == "/demo/" { "/demo" } else { path };
        return match guard.files.iter().find(|f| f.path == path) {
            Some(f) => f
                .headers()
                .iter()
                .fold(Response::builder(), |r, (name, value)| {
                    r.header(*name, *value)
                })
                .header(http::header::CONTENT_TYPE, f.content_type)
                .header(http::header::CACHE_CONTROL, "no-store")
                .header("x-content-type-options", "nosniff")
                .header(CONNECTION, "close")
                .body(Body::from(f.body.clone()))
                .expect("static response"),
            None => text(
                StatusCode::NOT_FOUND,
                "Keyport agent: connect with a WebSocket (JSON-RPC 2.0).",
            ),
        };
    }

    let origin = OriginHeader::of(req.headers());
    let door = door_of(req.headers());
    let caller = match guard.check(host, origin) {
        Verdict::Refuse(why) => {
            let shown = match origin {
                OriginHeader::Value(o) => quote(o, 80),
                OriginHeader::Absent => "-".into(),
                OriginHeader::Unreadable => "(unreadable)".into(),
            };
            tracing::info!(
                origin = %shown,
                host = %quote(host.unwrap_or("-"), 80),
                door = door.as_str(),
                "handshake refused: {why}"
            );
            return text(StatusCode::FORBIDDEN, why);
        }
        Verdict::Connect(caller) => caller,
    };
    let key = req.headers().get(SEC_WEBSOCKET_KEY).cloned();
    let is_websocket = req.method() == Method::GET
        && req.version() == http::Version::HTTP_11
        && has_token(header(&req, CONNECTION), "upgrade")
        && has_token(header(&req, UPGRADE), "websocket")
        && req.headers().get(SEC_WEBSOCKET_VERSION) == Some(&HeaderValue::from_static("13"));
    let Some(key) = key.filter(|_| is_websocket) else {
        return text(
            StatusCode::BAD_REQUEST,
            "Bad WebSocket handshake: expected a version 13 upgrade.",
        );
    };
    let admitted = match shared.admission.admit(&caller) {
        Ok(a) => a,
        Err(why) => {
            tracing::info!(caller = %quote(caller.label(), 80), "handshake refused: {why}");
            return text(StatusCode::TOO_MANY_REQUESTS, why);
        }
    };

    let conn_shared = shared.clone();
    shared.tasks.spawn(async move {
        let upgraded = tokio::select! {
            _ = conn_shared.shutdown.cancelled() => return,
            u = hyper::upgrade::on(&mut req) => u,
        };
        let upgraded = match upgraded {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket upgrade failed");
                return;
            }
        };
        let hard = conn_shared.limits.hard_message_bytes();
        let config = WebSocketConfig::default()
            .max_message_size(Some(hard))
            .max_frame_size(Some(hard));
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        connection::serve(ws, caller, door, conn_shared, admitted).await;
    });

    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(CONNECTION, "Upgrade")
        .header(UPGRADE, "websocket")
        .header(SEC_WEBSOCKET_ACCEPT, derive_accept_key(key.as_bytes()))
        .body(Body::default())
        .expect("static response")
}
