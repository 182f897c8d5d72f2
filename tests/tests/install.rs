//! Running Keyport like installed software, end to end with the real binary: configuration
//! found without `--config` (the person's file under `$XDG_CONFIG_HOME`, the administrator's
//! policy file), `keyport config`, p11-kit module names (Debian's registered softhsm2),
//! `keyport doctor --json` in a healthy and a broken setting, and the papercuts a new user met.

use keyport_e2e::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Debian's softhsm2 package registers it with p11-kit under this name.
const P11KIT_SOFTHSM: &str = "p11-kit:softhsm2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_administrators_file_is_policy_and_the_persons_file_is_found_without_config() {
    let token = Token::provision();
    let fault = keyport_e2e::fault::FaultModule::new();
    write(
        &admin_file(&token),
        &format!(
            "modules = [\"{MODULE}\"]\nallow_origins = [\"{ALLOWED}\"]\ntrust_origins = [\"{TRUSTED}\"]\n\
             no_origin = \"consent\"\n"
        ),
    );
    // The person adds a module and an origin, and loosens the no-Origin policy: none of it
    // is allowed by the administrator. Their consent timeout is theirs to choose.
    write(
        &user_file(&token),
        &format!(
            "modules = [\"{}\"]\nallow_origins = [\"https://mine.example\"]\nno_origin = \"trust\"\n\
             consent_timeout_secs = 7\n",
            fault.path_str()
        ),
    );
    let (code, report, err) = run(&token, &["config"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        report.contains("(administrator)") && report.contains("(yours)"),
        "{report}"
    );
    assert!(
        config_line(&report, "modules").contains("administrator"),
        "{report}"
    );
    assert!(
        !config_line(&report, "modules").contains(fault.path_str()),
        "{report}"
    );
    assert!(config_line(&report, "consent_timeout_secs")
        .starts_with("consent_timeout_secs = 7  # yours"));
    assert!(
        config_line(&report, "no_origin").contains("\"consent\""),
        "{report}"
    );
    assert!(report.contains("# Policy: modules:"), "{report}");
    // A flag is the person's too: it cannot widen the administrator's list either.
    let (code, report, _) = run(&token, &["config", "--module", fault.path_str()]);
    assert_eq!(code, 0);
    assert!(
        !config_line(&report, "modules").contains(fault.path_str()),
        "{report}"
    );
    // But flags win where the administrator's file is not policy.
    let (_, report, _) = run(&token, &["config", "--consent-timeout", "9"]);
    assert!(
        config_line(&report, "consent_timeout_secs")
            .starts_with("consent_timeout_secs = 9  # command line"),
        "{report}"
    );

    let agent = Agent::start_raw(&token, &["--listen", "127.0.0.1:0", "--no-tray"], &[]);
    assert!(
        agent
            .wait_for_log("administrator's policy: modules", Duration::from_secs(5))
            .await,
        "{}",
        agent.log()
    );
    let mut c = agent.trusted().await;
    c.ok("pkcs11.info", json!({})).await;
    c.err(
        "pkcs11.info",
        json!({"module": fault.path_str()}),
        "MODULE_NOT_ALLOWED",
    )
    .await;
    let refused = Client::connect(&agent.url, Some("https://mine.example")).await;
    assert_eq!(
        refused.map(|_| ()).map_err(|e| handshake_status(&e)),
        Err(Some(403)),
        "the person's origin is not added"
    );
    drop(c);
    agent.stop();

    // The administrator allows additions: the person's module and origin are added.
    write(
        &admin_file(&token),
        &format!(
            "modules = [\"{MODULE}\"]\nallow_origins = [\"{ALLOWED}\"]\ntrust_origins = [\"{TRUSTED}\"]\n\
             user_may_add_modules = true\nuser_may_add_origins = true\n"
        ),
    );
    let agent = Agent::start_raw(&token, &["--listen", "127.0.0.1:0", "--no-tray"], &[]);
    let mut c = agent.trusted().await;
    c.ok("pkcs11.info", json!({"module": fault.path_str()}))
        .await;
    Client::connect(&agent.url, Some("https://mine.example"))
        .await
        .expect("the person's origin is added");
    drop(c);
    agent.stop();

    // Only the administrator may open the door.
    write(&user_file(&token), "user_may_add_modules = true\n");
    let (code, _, err) = run(&token, &["--listen", "127.0.0.1:0", "--no-tray"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("user_may_add_modules can only be set in the administrator's policy"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_by_p11_kit_name() {
    let token = Token::provision();
    let (code, list, err) = run(&token, &["modules"]);
    assert_eq!(code, 0, "{err}");
    assert!(list.contains("softhsm2\n  library: /usr/lib/"), "{list}");
    assert!(list.contains("loads: SoftHSM"), "{list}");

    let agent = Agent::start(&token, &["--module", P11KIT_SOFTHSM]);
    let mut c = agent.trusted().await;
    // By the registered name, or the configured form, or the default.
    for module in [json!("softhsm2"), json!(P11KIT_SOFTHSM), Value::Null] {
        let info = c.ok("pkcs11.info", json!({"module": module})).await;
        assert_eq!(info["manufacturer_id"], "SoftHSM", "{module}");
    }
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"by name");
    let sig = c
        .ok(
            "pkcs11.signData",
            json!({"slot_id": slot, "cert_id": "02", "pin": PIN, "data": b64(&digest),
                   "algorithm_reference": "sha256", "module": "softhsm2"}),
        )
        .await;
    assert!(token.verifies("ec-p256", "sha256", &digest, &sig));
    // Registered, but not allowed here.
    c.err(
        "pkcs11.info",
        json!({"module": "opensc-pkcs11"}),
        "MODULE_NOT_ALLOWED",
    )
    .await;
    // An unknown name in the configuration is refused at start, with what is registered.
    let (code, _, err) = run(&token, &["--module", "p11-kit:nosuch", "--no-tray"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("p11-kit has no module named \"nosuch\"") && err.contains("softhsm2"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_explains_a_healthy_and_a_broken_machine() {
    let token = Token::provision();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let (code, out, err) = run(
        &token,
        &[
            "doctor",
            "--json",
            "--listen",
            &listen,
            "--module",
            P11KIT_SOFTHSM,
            "--trust-origin",
            TRUSTED,
            "--no-tray",
        ],
    );
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["ok"], true);
    let check = |report: &Value, prefix: &str| -> Value {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"].as_str().unwrap().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {report:#}"))
            .clone()
    };
    let m = check(&report, "module ");
    assert_eq!(m["status"], "ok", "{m}");
    assert!(
        m["detail"].as_str().unwrap().contains("keyport-demo"),
        "{m}"
    );
    assert_eq!(check(&report, "port")["status"], "ok");
    // No session bus and no display here: the consent prompt cannot show, but a trusted origin
    // still signs.
    assert_eq!(check(&report, "consent prompt")["status"], "warn");

    // Broken: a missing module, the port taken by another program, nothing can ask or sign.
    let squatter = std::net::TcpListener::bind(&listen).unwrap();
    let (code, out, _) = run(
        &token,
        &[
            "doctor",
            "--json",
            "--listen",
            &listen,
            "--module",
            "/nonexistent/libp11.so",
            "--no-tray",
        ],
    );
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["ok"], false);
    let m = check(&report, "module ");
    assert_eq!(m["status"], "fail");
    assert!(
        m["detail"].as_str().unwrap().contains("does not exist"),
        "{m}"
    );
    let p = check(&report, "port");
    assert_eq!(p["status"], "fail", "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("pid"),
        "names the holder: {p}"
    );
    assert_eq!(check(&report, "consent prompt")["status"], "fail");
    drop(squatter);

    // Nothing configured at all, in words.
    let (code, out, _) = run(&token, &["doctor", "--listen", &listen, "--no-tray"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("[FAIL] modules: no PKCS #11 library is configured"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn papercuts_of_a_new_user() {
    let token = Token::provision();
    // localhost is a loopback name.
    let port = free_port();
    let agent = Agent::start_raw(
        &token,
        &[
            "--listen",
            &format!("localhost:{port}"),
            "--module",
            MODULE,
            "--no-tray",
            "--trust-origin",
            TRUSTED,
        ],
        &[],
    );
    assert_eq!(agent.port, port);
    assert!(agent.url.contains("127.0.0.1"));

    // A second instance says who holds the port.
    let (code, _, err) = run(
        &token,
        &[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--module",
            MODULE,
            "--no-tray",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("another Keyport is already running"), "{err}");
    assert!(err.contains(&format!("pid {}", agent.pid())), "{err}");
    drop(agent);

    // Zero timeouts, and a demo page with nothing to show, are refused at start.
    let config = token.dir.path().join("zero.toml");
    std::fs::write(&config, "request_timeout_secs = 0\n").unwrap();
    for (args, says) in [
        (
            vec!["--config", config.to_str().unwrap()],
            "request_timeout_secs must be at least 1 second",
        ),
        (vec!["--consent-timeout", "0"], "consent timeout"),
        (
            vec!["--demo"],
            "--demo serves the demo page from --demo-dir",
        ),
        (vec!["--listen", "example.com:80"], "invalid listen address"),
    ] {
        let mut all = vec!["--module", MODULE, "--no-tray"];
        all.extend(args);
        let (code, _, err) = run(&token, &all);
        assert_eq!(code, 2, "{all:?}: {err}");
        assert!(err.contains(says), "{all:?}: {err}");
    }

    // A missing library: said at start; the others are served; its answer names the cause.
    let agent = Agent::start(&token, &["--module", "/nonexistent/libmissing.so"]);
    assert!(
        agent
            .wait_for_log(
                "/nonexistent/libmissing.so cannot be used",
                Duration::from_secs(5)
            )
            .await,
        "{}",
        agent.log()
    );
    let mut c = agent.trusted().await;
    let e = c
        .err(
            "pkcs11.info",
            json!({"module": "/nonexistent/libmissing.so"}),
            "MODULE_LOAD_FAILED",
        )
        .await;
    assert!(
        e["message"].as_str().unwrap().contains("No such file"),
        "{e}"
    );
    c.ok("pkcs11.info", json!({})).await;
    drop(c);
    drop(agent);

    // A smart-card library with no reader: an empty list, and the log says why.
    const OPENSC: &str = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";
    let agent = Agent::start(&token, &["--module", OPENSC]);
    let mut c = agent.trusted().await;
    let slots = c.ok("pkcs11.slots", json!({"module": OPENSC})).await;
    assert_eq!(slots, json!([]));
    assert!(
        agent
            .wait_for_log("no card reader was found", Duration::from_secs(5))
            .await,
        "{}",
        agent.log()
    );
    drop(c);
    drop(agent);

    // No library configured: the answer says so.
    let agent = Agent::start_raw(
        &token,
        &[
            "--listen",
            "127.0.0.1:0",
            "--no-tray",
            "--trust-origin",
            TRUSTED,
        ],
        &[],
    );
    let mut c = agent.trusted().await;
    let e = c.err("pkcs11.slots", json!({}), "MODULE_NOT_ALLOWED").await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("no PKCS #11 library configured"),
        "{e}"
    );
    let e = c
        .err(
            "pkcs11.slots",
            json!({"module": MODULE}),
            "MODULE_NOT_ALLOWED",
        )
        .await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("no PKCS #11 library configured"),
        "{e}"
    );
}

/// A shared machine: another user's program holds the port. Keyport refuses to start and says
/// so (it must not fight over the port, and a page must not be served by someone else's agent
/// unnoticed: the doctor names the holder too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_program_on_the_port_is_named() {
    let token = Token::provision();
    let port = free_port();
    let mut squatter = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c"])
        .arg(format!(
            "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',{port}))\ns.listen()\nprint('ready',flush=True)\ntime.sleep(60)"
        ))
        .stdout(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux) and python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(squatter.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    let (code, _, err) = run(
        &token,
        &[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--module",
            MODULE,
            "--no-tray",
        ],
    );
    let _ = squatter.kill();
    let _ = squatter.wait();
    assert_eq!(code, 1);
    assert!(
        err.contains("another user's") && err.contains("uid 65534"),
        "{err}"
    );
}

/// `keyport config` shows what an unset `pinentry` and `state_file` mean here (the README gives
/// their defaults), not a bare `""`; a value that is set says where it came from as before.
#[test]
fn config_shows_the_defaults_in_effect() {
    let token = Token::provision();
    let (code, report, err) = run(&token, &["config"]);
    assert_eq!(code, 0, "{err}");
    let state = token.dir.path().join("state/keyport/state.json");
    assert_eq!(
        config_line(&report, "state_file"),
        format!("state_file = \"\"  # default: {}", state.display()),
        "{report}"
    );
    let on_path = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("pinentry"))
        .find(|p| p.is_file());
    let pinentry = config_line(&report, "pinentry");
    match on_path {
        Some(p) => assert_eq!(
            pinentry,
            format!(
                "pinentry = \"\"  # default: {} (the pinentry found)",
                p.display()
            )
        ),
        None => assert!(
            pinentry.contains("# default: pinentry on PATH (none found"),
            "{pinentry}"
        ),
    }
    let (_, report, _) = run(
        &token,
        &[
            "config",
            "--pinentry",
            "/opt/pe",
            "--state-file",
            "/tmp/kp.json",
        ],
    );
    assert_eq!(
        config_line(&report, "pinentry"),
        "pinentry = \"/opt/pe\"  # command line"
    );
    assert_eq!(
        config_line(&report, "state_file"),
        "state_file = \"/tmp/kp.json\"  # command line"
    );
}
