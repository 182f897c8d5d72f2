//! The handshake guard's parsing of `Host` and `Origin` (what any local program can send):
//! never a panic; a normalised origin normalises to itself; and only an origin that normalises
//! to a listed one connects.
#![no_main]

use keyport::config::NoOriginPolicy;
use keyport::origin::Origin;
use keyport::guard::{Guard, OriginHeader, Verdict};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn guard() -> &'static Guard {
    static GUARD: OnceLock<Guard> = OnceLock::new();
    GUARD.get_or_init(|| Guard {
        port: 10443,
        allowed: [Origin::parse("https://app.example").unwrap()].into(),
        trusted: [Origin::parse("http://127.0.0.1:8080").unwrap()].into(),
        no_origin: NoOriginPolicy::Deny,
        files: Vec::new(),
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (host, origin) = text.split_once('\n').unwrap_or(("127.0.0.1:10443", text));
    if let Ok(n) = Origin::parse(origin) {
        assert_eq!(Origin::parse(n.as_str()).as_ref(), Ok(&n), "{origin:?}");
    }
    let g = guard();
    match g.check(Some(host), OriginHeader::Value(origin)) {
        Verdict::Connect(_) => {
            let n = Origin::parse(origin).expect("connected with an unparsable origin");
            assert!(g.allowed.contains(&n) || g.trusted.contains(&n), "{origin:?}");
            assert!(g.host_ok(Some(host)));
        }
        Verdict::Refuse(_) => {}
    }
});
