//! Regression tests for issue 19's findings 6–8: the administrator's policy
//! (`/etc/keyport/keyport.toml`, here the file the harness names with `KEYPORT_SYSTEM_CONFIG`)
//! against the person's file (`$XDG_CONFIG_HOME/keyport/keyport.toml`), flags, p11-kit registry
//! (`$XDG_CONFIG_HOME/pkcs11/modules`) and demo mode, end to end with the real binary. Each
//! test failed on the agent before its fix (c535ff3).
//!
//! * Finding 6: when the administrator lists either origin list, both are the administrator's
//!   (unless `user_may_add_origins = true`): the person cannot trust a page the administrator
//!   only meant to be allowed, nor list one at all, through the other list.
//! * Finding 7: the administrator's `p11-kit:NAME` is the system's module of that name; the
//!   person's p11-kit registry cannot point it at another library. (That the test hooks
//!   `KEYPORT_SYSTEM_CONFIG` and `KEYPORT_P11KIT_MODULES` are ignored by a release build is a
//!   unit test, `agent/src/hooks.rs`: these tests run the debug binary, which honours them.)
//! * Finding 8: demo mode does not add the demo page's origins where the administrator fixes
//!   the origins; the demo page cannot be framed.

use keyport_e2e::*;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

/// A page the administrator never listed.
const EVIL: &str = "https://evil.example";
/// Another library than SoftHSM (Debian's opensc package).
const OPENSC: &str = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";

/// p11-kit's registry folder of the person (`$XDG_CONFIG_HOME/pkcs11/modules`).
fn user_registry(token: &Token) -> PathBuf {
    token
        .dir
        .path()
        .join("config")
        .join("pkcs11")
        .join("modules")
}

/// `keyport config ARGS`: its report.
fn config_report(token: &Token, args: &[&str]) -> String {
    let mut all = vec!["config"];
    all.extend_from_slice(args);
    let (code, report, err) = run(token, &all);
    assert_eq!(code, 0, "keyport config: {err}");
    report
}

/// An agent with the test's files, any port, no tray, and `extra` flags.
fn start(token: &Token, extra: &[&str]) -> Agent {
    let mut args = vec!["--listen", "127.0.0.1:0", "--no-tray"];
    args.extend_from_slice(extra);
    Agent::start_raw(token, &args, &[])
}

/// The handshake of a page from `origin`: Ok, or the HTTP status it was refused with.
async fn handshake(agent: &Agent, origin: &str) -> Result<Client, Option<u16>> {
    Client::connect(&agent.url, Some(origin))
        .await
        .map_err(|e| handshake_status(&e))
}

async fn assert_refused(agent: &Agent, origin: &str) {
    let result = handshake(agent, origin).await.map(|_| ());
    assert_eq!(
        result,
        Err(Some(403)),
        "{origin} must be refused at the handshake; log:\n{}",
        agent.log()
    );
}

/// A signature by the client, without a prompt (none can show here), checked with openssl.
async fn signs_unprompted(c: &mut Client, token: &Token) {
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"issue 19");
    let sig = c
        .ok(
            "pkcs11.signData",
            json!({"slot_id": slot, "cert_id": "02", "pin": PIN, "data": b64(&digest),
                   "algorithm_reference": "sha256"}),
        )
        .await;
    assert!(token.verifies("ec-p256", "sha256", &digest, &sig));
}

/// Finding 6, one way: the administrator lists only `allow_origins`; the person's
/// `trust_origins` (file or flag) would have let a page connect and sign with no prompt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_6_the_persons_trusted_origins_do_not_widen_the_administrators_allowed_ones() {
    let token = Token::provision();
    write(
        &admin_file(&token),
        &format!(
            "modules = [\"{MODULE}\"]\nallow_origins = [\"{ALLOWED}\"]\nno_origin = \"deny\"\n"
        ),
    );
    write(
        &user_file(&token),
        &format!("trust_origins = [\"{EVIL}\"]\n"),
    );

    // Through the person's file.
    let agent = start(&token, &[]);
    assert_refused(&agent, EVIL).await;
    assert!(
        agent
            .wait_for_log(
                &format!("administrator's policy: trust_origins: {EVIL} not used"),
                Duration::from_secs(5)
            )
            .await,
        "{}",
        agent.log()
    );
    let mut c = agent.client(Some(ALLOWED)).await;
    let info = c.ok("pkcs11.info", json!({})).await;
    assert_eq!(info["manufacturer_id"], "SoftHSM");
    drop(c);
    drop(agent);

    let report = config_report(&token, &[]);
    let line = config_line(&report, "trust_origins");
    assert!(
        line.starts_with("trust_origins = []  # administrator (")
            && line.contains("allow_origins fixes the origins"),
        "{report}"
    );
    assert!(
        report.contains(&format!("# Policy: trust_origins: {EVIL} not used")),
        "{report}"
    );

    // Through the flag (the person's file gone).
    std::fs::remove_file(user_file(&token)).unwrap();
    let agent = start(&token, &["--trust-origin", EVIL]);
    assert_refused(&agent, EVIL).await;
    agent
        .client(Some(ALLOWED))
        .await
        .ok("pkcs11.info", json!({}))
        .await;
    let report = config_report(&token, &["--trust-origin", EVIL]);
    assert!(
        !config_line(&report, "trust_origins").contains(EVIL),
        "{report}"
    );
}

/// Finding 6, the other way: the administrator lists only `trust_origins`; the person's
/// `allow_origins` (file or flag) would have let any page of theirs connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_6_the_persons_allowed_origins_do_not_widen_the_administrators_trusted_ones() {
    let token = Token::provision();
    write(
        &admin_file(&token),
        &format!(
            "modules = [\"{MODULE}\"]\ntrust_origins = [\"{TRUSTED}\"]\nno_origin = \"deny\"\n"
        ),
    );
    write(
        &user_file(&token),
        &format!("allow_origins = [\"{EVIL}\"]\n"),
    );

    let agent = start(&token, &[]);
    assert_refused(&agent, EVIL).await;
    assert!(
        agent
            .wait_for_log(
                "administrator's policy: allow_origins",
                Duration::from_secs(5)
            )
            .await,
        "{}",
        agent.log()
    );
    signs_unprompted(&mut agent.trusted().await, &token).await;
    drop(agent);

    let report = config_report(&token, &[]);
    let line = config_line(&report, "allow_origins");
    assert!(
        line.starts_with("allow_origins = []  # administrator (")
            && line.contains("trust_origins fixes the origins"),
        "{report}"
    );
    assert!(
        report.contains(&format!("# Policy: allow_origins: {EVIL} not used")),
        "{report}"
    );

    std::fs::remove_file(user_file(&token)).unwrap();
    let agent = start(&token, &["--allow-origin", EVIL]);
    assert_refused(&agent, EVIL).await;
    signs_unprompted(&mut agent.trusted().await, &token).await;
}

/// Finding 6: `user_may_add_origins = true` lets the person add to both lists, whichever the
/// administrator's file lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_6_user_may_add_origins_lets_the_person_add_to_both_lists() {
    let token = Token::provision();
    write(
        &admin_file(&token),
        &format!(
            "modules = [\"{MODULE}\"]\nallow_origins = [\"{ALLOWED}\"]\nno_origin = \"deny\"\n\
             user_may_add_origins = true\n"
        ),
    );
    write(
        &user_file(&token),
        &format!("trust_origins = [\"{EVIL}\"]\n"),
    );
    let report = config_report(&token, &[]);
    assert!(
        config_line(&report, "trust_origins").contains(EVIL),
        "{report}"
    );
    assert!(!report.contains("# Policy:"), "{report}");
    let agent = start(&token, &[]);
    let mut c = handshake(&agent, EVIL)
        .await
        .expect("the person's trusted origin");
    signs_unprompted(&mut c, &token).await;
    agent
        .client(Some(ALLOWED))
        .await
        .ok("pkcs11.info", json!({}))
        .await;
    drop(c);
    drop(agent);

    // The other way, by flag.
    std::fs::remove_file(user_file(&token)).unwrap();
    write(
        &admin_file(&token),
        &format!(
            "modules = [\"{MODULE}\"]\ntrust_origins = [\"{TRUSTED}\"]\nuser_may_add_origins = true\n"
        ),
    );
    let agent = start(&token, &["--allow-origin", EVIL]);
    let mut c = handshake(&agent, EVIL)
        .await
        .expect("the person's allowed origin");
    c.ok("pkcs11.info", json!({})).await;
    signs_unprompted(&mut agent.trusted().await, &token).await;
}

/// Finding 7: the person's p11-kit registry (`~/.config/pkcs11/modules/softhsm2.module`) points
/// `softhsm2` at another library; the administrator's `p11-kit:softhsm2` still loads the
/// system's SoftHSM. The person's own entries still use their registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_7_the_persons_p11_kit_registry_does_not_redirect_the_administrators_modules() {
    let token = Token::provision();
    write(
        &admin_file(&token),
        &format!("modules = [\"p11-kit:softhsm2\"]\ntrust_origins = [\"{TRUSTED}\"]\n"),
    );
    write(
        &user_registry(&token).join("softhsm2.module"),
        &format!("module: {OPENSC}\n"),
    );

    let agent = start(&token, &[]);
    let mut c = agent.trusted().await;
    let info = c.ok("pkcs11.info", json!({})).await;
    assert_eq!(info["manufacturer_id"], "SoftHSM", "{info}");
    signs_unprompted(&mut c, &token).await;
    c.err(
        "pkcs11.info",
        json!({"module": OPENSC}),
        "MODULE_NOT_ALLOWED",
    )
    .await;
    drop(c);
    drop(agent);

    let report = config_report(&token, &[]);
    let line = config_line(&report, "modules");
    assert!(
        line.contains("/softhsm/libsofthsm2.so") && !line.contains("opensc"),
        "{report}"
    );
    // `keyport modules` shows both meanings of the name, and which one is in force.
    let (code, list, err) = run(&token, &["modules"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        list.contains(&format!(
            "softhsm2 (yours: what your own file and flags mean by it)\n  library: {OPENSC}\n"
        )) && list.contains(
            "softhsm2 (the system's: what the administrator's file means by it)\n  \
             library: /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so\n  \
             loads: SoftHSM Implementation of PKCS11 2.6 (PKCS #11 2.40)\n  \
             allowed (in this configuration)"
        ),
        "{list}"
    );

    // An administrator's name that only the person's registry knows is an error at start.
    write(
        &user_registry(&token).join("mine.module"),
        &format!("module: {OPENSC}\n"),
    );
    write(&admin_file(&token), "modules = [\"p11-kit:mine\"]\n");
    let (code, _, err) = run(&token, &["config"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("p11-kit has no module named \"mine\""),
        "{err}"
    );

    // The person's own entries use the person's registry (where the administrator lets them
    // add modules); the administrator's name keeps the system's meaning, even when the person
    // lists it too.
    write(
        &admin_file(&token),
        "modules = [\"p11-kit:softhsm2\"]\nuser_may_add_modules = true\n",
    );
    write(
        &user_file(&token),
        "modules = [\"p11-kit:softhsm2\", \"p11-kit:mine\"]\n",
    );
    let report = config_report(&token, &[]);
    let line = config_line(&report, "modules");
    assert!(
        line.starts_with("modules = [\"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so\", \"/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so\"]")
            && line.contains("plus yours"),
        "{report}"
    );
}

/// A plain GET: the status, the headers (names in lower case) and the body.
fn get(port: u16, path: &str) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status.parse().unwrap(), headers, body.to_string())
}

fn demo_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><p>demo</p>\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("demo.js"), "// demo\n").unwrap();
    dir
}

/// Finding 8: under an administrator who fixes the origins (and denies clients without an
/// Origin), `--demo` would have let any local program in with `Origin: http://127.0.0.1:PORT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_8_demo_mode_does_not_add_origins_the_administrator_fixed() {
    let token = Token::provision();
    let dir = demo_dir();
    let demo = ["--demo", "--demo-dir", dir.path().to_str().unwrap()];
    write(
        &admin_file(&token),
        &format!(
            "modules = [\"{MODULE}\"]\nallow_origins = [\"{ALLOWED}\"]\nno_origin = \"deny\"\n"
        ),
    );
    let agent = start(&token, &demo);
    for host in ["127.0.0.1", "localhost"] {
        assert_refused(&agent, &format!("http://{host}:{}", agent.port)).await;
    }
    assert!(
        agent
            .wait_for_log(
                "administrator's policy: demo: not used",
                Duration::from_secs(5)
            )
            .await,
        "{}",
        agent.log()
    );
    // Not served either: a page that cannot connect would only confuse.
    assert_eq!(get(agent.port, "/demo").0, 404);
    agent
        .client(Some(ALLOWED))
        .await
        .ok("pkcs11.info", json!({}))
        .await;
    drop(agent);

    let report = config_report(&token, &demo);
    let line = config_line(&report, "demo");
    assert!(
        line.starts_with("demo = false  # administrator (")
            && line.contains("allow_origins fixes the origins"),
        "{report}"
    );
    assert!(report.contains("# Policy: demo: not used"), "{report}");

    // Where the administrator lets the person add origins, demo mode works.
    write(
        &admin_file(&token),
        &format!(
            "modules = [\"{MODULE}\"]\nallow_origins = [\"{ALLOWED}\"]\nno_origin = \"deny\"\n\
             user_may_add_origins = true\n"
        ),
    );
    let agent = start(&token, &demo);
    let origin = format!("http://127.0.0.1:{}", agent.port);
    let mut c = handshake(&agent, &origin).await.expect("the demo origin");
    c.ok("pkcs11.info", json!({})).await;
    assert_eq!(get(agent.port, "/demo").0, 200);
}

/// Finding 8: the demo page's HTML may not be shown in another site's frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_8_the_demo_page_cannot_be_framed() {
    let token = Token::provision();
    let dir = demo_dir();
    let agent = start(
        &token,
        &[
            "--module",
            MODULE,
            "--demo",
            "--demo-dir",
            dir.path().to_str().unwrap(),
        ],
    );
    for path in ["/demo", "/demo/"] {
        let (status, headers, body) = get(agent.port, path);
        assert_eq!(status, 200, "{path}");
        assert!(body.contains("<p>demo</p>"), "{body}");
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("x-frame-options"), Some("DENY"), "{headers:?}");
        assert_eq!(
            header("content-security-policy"),
            Some("frame-ancestors 'none'"),
            "{headers:?}"
        );
    }
    let (status, _, _) = get(agent.port, "/demo/demo.js");
    assert_eq!(status, 200);
    // Without an administrator's file, demo mode still lets its own page in.
    let origin = format!("http://localhost:{}", agent.port);
    handshake(&agent, &origin)
        .await
        .expect("the demo origin")
        .ok("pkcs11.info", json!({}))
        .await;
}

/// A library's environment can load another library (LD_PRELOAD, PKCS11SPY): when the
/// administrator fixes the modules, the person's `module_env` is not used (found while adding
/// NAME=VALUE entries for issue 23). The library's process shows what it got: the agent still
/// signs through SoftHSM, and `keyport config` and the log say why the person's entries went.
#[tokio::test]
async fn the_persons_module_env_does_not_reach_the_administrators_modules() {
    let token = Token::provision();
    write(
        &admin_file(&token),
        &format!("modules = [\"{MODULE}\"]\ntrust_origins = [\"{TRUSTED}\"]\n"),
    );
    write(
        &user_file(&token),
        "module_env = [\"LD_PRELOAD=/nonexistent/evil.so\"]\n",
    );
    let report = config_report(&token, &[]);
    let line = config_line(&report, "module_env");
    assert!(line.starts_with("module_env = []"), "{line}");
    assert!(line.contains("administrator"), "{line}");
    assert!(
        report.contains("module_env: LD_PRELOAD not used"),
        "{report}"
    );
    assert!(
        !report.contains("evil.so"),
        "a value is never echoed: {report}"
    );

    // The agent signs through the administrator's library, with no preload in its process.
    let agent = start(&token, &[]);
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"module_env under policy");
    let sig = c
        .ok(
            "pkcs11.signData",
            json!({"slot_id": slot, "cert_id": "02", "pin": PIN, "data": b64(&digest),
                   "algorithm_reference": "sha256"}),
        )
        .await;
    assert!(token.verifies("ec-p256", "sha256", &digest, &sig));
    let host = host_of(agent.pid(), "libsofthsm2").expect("the library's process");
    let environ = std::fs::read(format!("/proc/{host}/environ")).unwrap();
    assert!(
        !String::from_utf8_lossy(&environ).contains("LD_PRELOAD"),
        "the person's LD_PRELOAD reached the library's process"
    );
}
