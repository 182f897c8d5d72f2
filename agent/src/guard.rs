//! The handshake guard: the `Host` (DNS rebinding) and `Origin` (cross-site WebSocket
//! hijacking) checks that decide, before the upgrade, whether a WebSocket may open and who the
//! [`Caller`] is. The server (`server/http.rs`) asks it and answers 403 when it refuses; it also
//! holds the demo page's files.

use crate::config::NoOriginPolicy;
use crate::consent::Caller;
use crate::origin::Origin;
use std::collections::HashSet;

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

    /// Headers this file is served with beyond its type. A page (HTML) may not be shown in a
    /// frame of another site: the demo page signs with the person's token, and a site that
    /// framed it could make its buttons be clicked unseen (clickjacking).
    pub fn headers(&self) -> &'static [(&'static str, &'static str)] {
        if self.content_type.starts_with("text/html") {
            &[
                ("x-frame-options", "DENY"),
                ("content-security-policy", "frame-ancestors 'none'"),
            ]
        } else {
            &[]
        }
    }
}

#[derive(Debug)]
pub struct Guard {
    pub port: u16,
    /// Origins that may connect (allowed and trusted).
    pub allowed: HashSet<Origin>,
    pub trusted: HashSet<Origin>,
    pub no_origin: NoOriginPolicy,
    /// Files served on GET (demo mode only).
    pub files: Vec<StaticFile>,
}

/// The `Origin` header of a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginHeader<'a> {
    /// No header: not a browser page (a local program).
    Absent,
    /// A header that is not visible ASCII (e.g. a look-alike Unicode host): refused, never
    /// mistaken for an absent one.
    Unreadable,
    Value(&'a str),
}

impl<'a> OriginHeader<'a> {
    pub fn of(headers: &'a http::HeaderMap) -> Self {
        match headers.get(http::header::ORIGIN) {
            None => OriginHeader::Absent,
            Some(v) => match v.to_str() {
                Ok(s) => OriginHeader::Value(s),
                Err(_) => OriginHeader::Unreadable,
            },
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Connect(Caller),
    Refuse(&'static str),
}

impl Guard {
    /// Whether `Host` names the agent on loopback with its port.
    pub fn host_ok(&self, host: Option<&str>) -> bool {
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
    pub fn check(&self, host: Option<&str>, origin: OriginHeader<'_>) -> Verdict {
        if !self.host_ok(host) {
            return Verdict::Refuse(
                "Host not allowed: connect to 127.0.0.1, localhost or [::1] with the agent's port.",
            );
        }
        match origin {
            OriginHeader::Unreadable => {
                Verdict::Refuse("Origin not allowed: the Origin header is not readable ASCII.")
            }
            OriginHeader::Absent => match self.no_origin {
                NoOriginPolicy::Deny => {
                    Verdict::Refuse("Clients without an Origin header are not allowed.")
                }
                NoOriginPolicy::Consent => Verdict::Connect(Caller::Local { trusted: false }),
                NoOriginPolicy::Trust => Verdict::Connect(Caller::Local { trusted: true }),
            },
            OriginHeader::Value(origin) => match Origin::parse(origin) {
                Ok(o) if self.allowed.contains(&o) || self.trusted.contains(&o) => {
                    Verdict::Connect(Caller::Origin(o))
                }
                _ => Verdict::Refuse("Origin not allowed: add it to the agent's allow_origins."),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(no_origin: NoOriginPolicy) -> Guard {
        Guard {
            port: 4000,
            allowed: [Origin::parse("https://app.example").unwrap()].into(),
            trusted: [Origin::parse("https://kiosk.example").unwrap()].into(),
            no_origin,
            files: Vec::new(),
        }
    }

    #[test]
    fn demo_pages_may_not_be_framed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<p>demo</p>").unwrap();
        std::fs::write(dir.path().join("demo.js"), "//").unwrap();
        let files = StaticFile::load_dir(dir.path()).unwrap();
        let page = files.iter().find(|f| f.path == "/demo").unwrap();
        assert!(page.headers().contains(&("x-frame-options", "DENY")));
        assert!(page
            .headers()
            .contains(&("content-security-policy", "frame-ancestors 'none'")));
        let script = files.iter().find(|f| f.path == "/demo/demo.js").unwrap();
        assert!(script.headers().is_empty());
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
                matches!(
                    g.check(Some(host), OriginHeader::Absent),
                    Verdict::Connect(_)
                ),
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
                matches!(g.check(host, OriginHeader::Absent), Verdict::Refuse(_)),
                "{host:?}"
            );
        }
    }

    #[test]
    fn origins() {
        let g = guard(NoOriginPolicy::Consent);
        let h = Some("127.0.0.1:4000");
        assert_eq!(
            g.check(h, OriginHeader::Value("https://app.example")),
            Verdict::Connect(Caller::Origin(
                Origin::parse("https://app.example").unwrap()
            ))
        );
        assert_eq!(
            g.check(h, OriginHeader::Value("https://kiosk.example")),
            Verdict::Connect(Caller::Origin(
                Origin::parse("https://kiosk.example").unwrap()
            ))
        );
        for bad in [
            "https://evil.example",
            "null",
            "https://app.example.evil.example",
            "http://app.example",
        ] {
            assert!(
                matches!(g.check(h, OriginHeader::Value(bad)), Verdict::Refuse(_)),
                "{bad}"
            );
        }
        assert_eq!(
            g.check(h, OriginHeader::Absent),
            Verdict::Connect(Caller::Local { trusted: false })
        );
        assert!(matches!(
            guard(NoOriginPolicy::Deny).check(h, OriginHeader::Absent),
            Verdict::Refuse(_)
        ));
        assert_eq!(
            guard(NoOriginPolicy::Trust).check(h, OriginHeader::Absent),
            Verdict::Connect(Caller::Local { trusted: true })
        );
    }

    #[test]
    fn an_unreadable_origin_is_refused_even_where_no_origin_is_trusted() {
        let g = guard(NoOriginPolicy::Trust);
        let h = Some("127.0.0.1:4000");
        let mut headers = http::HeaderMap::new();
        // "https://еvil.example" with a Cyrillic е, as raw UTF-8 bytes.
        headers.insert(
            http::header::ORIGIN,
            http::HeaderValue::from_bytes("https://\u{435}vil.example".as_bytes()).unwrap(),
        );
        let origin = OriginHeader::of(&headers);
        assert_eq!(origin, OriginHeader::Unreadable);
        assert!(matches!(g.check(h, origin), Verdict::Refuse(_)));
        assert_eq!(
            OriginHeader::of(&http::HeaderMap::new()),
            OriginHeader::Absent
        );
    }
}
