//! The handshake guard: a tower layer in front of jsonrpsee that checks `Host` (DNS rebinding)
//! and `Origin` (cross-site WebSocket hijacking) before the upgrade, refuses with 403, and hands
//! the established [`Caller`] to the methods through the request's extensions. It also serves the
//! demo page when demo mode is on.

use crate::config::{normalize_origin, NoOriginPolicy};
use crate::consent::Caller;
use jsonrpsee::core::BoxError;
use jsonrpsee::server::{HttpBody, HttpResponse};
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A static file served over plain HTTP (the demo page and the client bundle).
#[derive(Debug, Clone)]
pub struct StaticFile {
    pub path: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl StaticFile {
    /// The demo files in `dir`: `index.html` at `/demo`, every other `.html`, `.js`, `.mjs`,
    /// `.css` or `.map` file at `/demo/NAME`. Read once at start.
    pub fn load_dir(dir: &std::path::Path) -> std::io::Result<Vec<StaticFile>> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let content_type = match path.extension().and_then(|e| e.to_str()) {
                Some("html") => "text/html; charset=utf-8",
                Some("js" | "mjs") => "text/javascript; charset=utf-8",
                Some("css") => "text/css; charset=utf-8",
                Some("map") => "application/json",
                _ => continue,
            };
            let url = if name == "index.html" {
                "/demo".to_string()
            } else {
                format!("/demo/{name}")
            };
            files.push(StaticFile {
                path: url,
                content_type,
                body: std::fs::read(&path)?,
            });
        }
        Ok(files)
    }
}

#[derive(Debug)]
pub struct Guard {
    pub port: u16,
    /// Origins that may connect (allowed and trusted).
    pub allowed: HashSet<String>,
    pub trusted: HashSet<String>,
    pub no_origin: NoOriginPolicy,
    /// Files served on GET (demo mode only).
    pub files: Vec<StaticFile>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Connect(Caller),
    Refuse(&'static str),
}

impl Guard {
    fn host_ok(&self, host: Option<&str>) -> bool {
        let Some(host) = host else { return false };
        let host = host.to_ascii_lowercase();
        let port = self.port;
        [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ]
        .contains(&host)
    }

    /// Decide on a handshake from its `Host` and `Origin` headers.
    pub fn check(&self, host: Option<&str>, origin: Option<&str>) -> Verdict {
        if !self.host_ok(host) {
            return Verdict::Refuse(
                "Host not allowed: connect to 127.0.0.1, localhost or [::1] with the agent's port.",
            );
        }
        match origin {
            None => match self.no_origin {
                NoOriginPolicy::Deny => {
                    Verdict::Refuse("Clients without an Origin header are not allowed.")
                }
                NoOriginPolicy::Consent => Verdict::Connect(Caller::Local { trusted: false }),
                NoOriginPolicy::Trust => Verdict::Connect(Caller::Local { trusted: true }),
            },
            Some(origin) => match normalize_origin(origin) {
                Ok(o) if self.allowed.contains(&o) || self.trusted.contains(&o) => {
                    Verdict::Connect(Caller::Origin(o))
                }
                _ => Verdict::Refuse("Origin not allowed: add it to the agent's allow_origins."),
            },
        }
    }
}

#[derive(Clone)]
pub struct GuardLayer(pub Arc<Guard>);

impl<S> tower::Layer<S> for GuardLayer {
    type Service = GuardService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GuardService {
            inner,
            guard: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GuardService<S> {
    inner: S,
    guard: Arc<Guard>,
}

fn text(status: http::StatusCode, body: &str) -> HttpResponse {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(HttpBody::from(body.to_string()))
        .expect("static response")
}

fn header<B>(req: &http::Request<B>, name: http::header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

impl<S, B> tower::Service<http::Request<B>> for GuardService<S>
where
    S: tower::Service<http::Request<B>, Response = HttpResponse>,
    S::Error: Into<BoxError> + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let host = header(&req, http::header::HOST);
        let is_upgrade = req.headers().contains_key(http::header::UPGRADE);
        // Plain GETs for the demo page: Host is checked; Origin is absent on navigations.
        if !is_upgrade && req.method() == http::Method::GET {
            let response = if !self.guard.host_ok(host) {
                text(http::StatusCode::FORBIDDEN, "Host not allowed.")
            } else {
                let path = req.uri().path();
                let path = if path == "/demo/" { "/demo" } else { path };
                match self.guard.files.iter().find(|f| f.path == path) {
                    Some(f) => http::Response::builder()
                        .header(http::header::CONTENT_TYPE, f.content_type)
                        .header(http::header::CACHE_CONTROL, "no-store")
                        .header("x-content-type-options", "nosniff")
                        .body(HttpBody::from(f.body.clone()))
                        .expect("static response"),
                    None => text(
                        http::StatusCode::NOT_FOUND,
                        "Keyport agent: connect with a WebSocket (JSON-RPC 2.0).",
                    ),
                }
            };
            return Box::pin(async move { Ok(response) });
        }
        match self.guard.check(host, header(&req, http::header::ORIGIN)) {
            Verdict::Refuse(why) => {
                tracing::info!(
                    origin = header(&req, http::header::ORIGIN).unwrap_or("-"),
                    host = host.unwrap_or("-"),
                    "handshake refused: {why}"
                );
                Box::pin(async move { Ok(text(http::StatusCode::FORBIDDEN, why)) })
            }
            Verdict::Connect(caller) => {
                req.extensions_mut().insert(caller);
                let fut = self.inner.call(req);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(no_origin: NoOriginPolicy) -> Guard {
        Guard {
            port: 4000,
            allowed: ["https://app.example".to_string()].into(),
            trusted: ["https://kiosk.example".to_string()].into(),
            no_origin,
            files: Vec::new(),
        }
    }

    #[test]
    fn host_must_be_loopback_with_our_port() {
        let g = guard(NoOriginPolicy::Consent);
        for host in [
            "127.0.0.1:4000",
            "localhost:4000",
            "LOCALHOST:4000",
            "[::1]:4000",
        ] {
            assert!(
                matches!(g.check(Some(host), None), Verdict::Connect(_)),
                "{host}"
            );
        }
        for host in [
            None,
            Some("127.0.0.1:4001"),
            Some("evil.example:4000"),
            Some("127.0.0.1"),
        ] {
            assert!(
                matches!(g.check(host, None), Verdict::Refuse(_)),
                "{host:?}"
            );
        }
    }

    #[test]
    fn origins() {
        let g = guard(NoOriginPolicy::Consent);
        let h = Some("127.0.0.1:4000");
        assert_eq!(
            g.check(h, Some("https://app.example")),
            Verdict::Connect(Caller::Origin("https://app.example".into()))
        );
        assert_eq!(
            g.check(h, Some("https://kiosk.example")),
            Verdict::Connect(Caller::Origin("https://kiosk.example".into()))
        );
        for bad in [
            "https://evil.example",
            "null",
            "https://app.example.evil.example",
            "http://app.example",
        ] {
            assert!(matches!(g.check(h, Some(bad)), Verdict::Refuse(_)), "{bad}");
        }
        assert_eq!(
            g.check(h, None),
            Verdict::Connect(Caller::Local { trusted: false })
        );
        assert!(matches!(
            guard(NoOriginPolicy::Deny).check(h, None),
            Verdict::Refuse(_)
        ));
        assert_eq!(
            guard(NoOriginPolicy::Trust).check(h, None),
            Verdict::Connect(Caller::Local { trusted: true })
        );
    }
}
