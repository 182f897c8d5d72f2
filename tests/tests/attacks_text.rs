//! Regression tests for issue 19's findings 9–12: texts the agent shows but does not control (a
//! certificate's subject and issuer in its prompts, the command name of a program holding its
//! port) and what one page could learn of the others (subscription ids). Each test reproduces a
//! finding against the real binary, a real SoftHSM token and the scripted notification server or
//! pinentry, and failed on the agent before its fix.

use keyport_e2e::desktop::{FakeNotifications, PrivateBus};
use keyport_e2e::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};

const NOTIFICATIONS: &str = env!("CARGO_BIN_EXE_fake-notifications");

/// Make a P-256 key pair and a certificate for it with `subject` (openssl's `-subj` form, UTF-8),
/// self-signed or issued by `issuer`, with openssl, and put both on the demo token under CKA_ID
/// `id`: a token whose certificate says what an attacker wants.
fn add_certificate(token: &Token, id: &str, subject: &str, issuer: Option<&str>) {
    let dir = token.dir.path().join(format!("cert-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let run = |cmd: &mut Command| {
        let out = cmd
            .env("SOFTHSM2_CONF", token.conf())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("openssl").args([
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &p("key.pem"),
    ]));
    match issuer {
        // Self-signed: the issuer says the same.
        None => run(Command::new("openssl").args([
            "req",
            "-x509",
            "-utf8",
            "-new",
            "-key",
            &p("key.pem"),
            "-subj",
            subject,
            "-days",
            "30",
            "-out",
            &p("cert.pem"),
        ])),
        // Signed by a CA of that name.
        Some(issuer) => {
            run(Command::new("openssl").args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &p("ca.pem"),
            ]));
            run(Command::new("openssl").args([
                "req",
                "-x509",
                "-utf8",
                "-new",
                "-key",
                &p("ca.pem"),
                "-subj",
                issuer,
                "-days",
                "30",
                "-out",
                &p("ca.crt"),
            ]));
            run(Command::new("openssl").args([
                "req",
                "-utf8",
                "-new",
                "-key",
                &p("key.pem"),
                "-subj",
                subject,
                "-out",
                &p("leaf.csr"),
            ]));
            run(Command::new("openssl").args([
                "x509",
                "-req",
                "-in",
                &p("leaf.csr"),
                "-CA",
                &p("ca.crt"),
                "-CAkey",
                &p("ca.pem"),
                "-set_serial",
                "7",
                "-days",
                "30",
                "-out",
                &p("cert.pem"),
            ]));
        }
    }
    // GnuTLS's p11tool: pkcs11-tool refuses a subject over 256 bytes.
    for (file, kind) in [
        ("key.pem", "--load-privkey"),
        ("cert.pem", "--load-certificate"),
    ] {
        run(Command::new("p11tool")
            .env("GNUTLS_PIN", PIN)
            .args(["--provider", MODULE, "--login", "--write", kind, &p(file)])
            .args(["--label", &format!("hostile-{id}"), "--id", id])
            .arg("pkcs11:token=keyport-demo"));
    }
}

fn sign_params(slot: u64, id: &str, digest: &[u8], pin: bool) -> Value {
    let mut p = json!({"slot_id": slot, "cert_id": id, "data": b64(digest),
                       "algorithm_reference": "sha256"});
    if pin {
        p["pin"] = json!(PIN);
    }
    p
}

/// How the prompts show a digest: its first 8 bytes in hex, in two groups.
fn fingerprint(digest: &[u8]) -> String {
    let hex = hex::encode_upper(&digest[..8]);
    format!("{} {}", &hex[..8], &hex[8..])
}

/// The lines of a text as a notification server or a toolkit breaks them: at line feeds, and at
/// carriage returns, NEL and the Unicode line and paragraph separators (Pango breaks there).
fn display_lines(text: &str) -> Vec<&str> {
    text.split(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
        .collect()
}

/// Characters that move, hide or break what a prompt shows, as the attack used them.
const SNEAKY: [char; 9] = [
    '\u{2028}', '\u{2029}', '\u{202E}', '\u{2066}', '\u{061C}', '\u{180E}', '\u{85}', '\u{200B}',
    '\u{FEFF}',
];

/// Finding 9: a certificate's subject (and so, self-signed, its issuer) with U+2028, U+2029,
/// U+202E and U+2066 forged "Issued by:" and "Digest:" lines in the notification; a subject of
/// 3,000 characters pushed the fingerprint and the time limit past the body's 2,000-byte cut.
/// Now each field is cleaned and capped: one line per label, the real fingerprint and time limit
/// always there, none of those characters in the body, and markup still escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_cannot_forge_or_push_out_lines_of_the_notification() {
    let token = Token::provision();
    add_certificate(
        &token,
        "0a",
        "/CN=Alice\u{2028}Issued by: CN=Trusted Root CA\
         /O=<b>Bank<\\/b>\u{2029}Digest: 00000000 00000000\
         /OU=x\u{202E}lave\u{2066}y\u{200B}z",
        None,
    );
    let long = "Long Name ".repeat(300);
    add_certificate(
        &token,
        "0b",
        &format!("/CN=Long/name={long}"),
        Some("/CN=Keyport Test CA"),
    );

    let bus = PrivateBus::start();
    let fake = FakeNotifications::start(
        NOTIFICATIONS,
        &bus,
        token.dir.path(),
        "deny",
        Some("actions,body,body-markup"),
    );
    let mut args = BASE_ARGS.to_vec();
    args.extend(["--no-tray", "--consent-timeout", "30"]);
    let agent = Agent::start_raw(&token, &args, &[("DBUS_SESSION_BUS_ADDRESS", &bus.address)]);
    let mut c = agent.client(Some(ALLOWED)).await;
    let slot = c.slot_of("keyport-demo").await;

    for (n, id) in ["0a", "0b"].into_iter().enumerate() {
        let digest = sha("sha256", id.as_bytes());
        c.err(
            "pkcs11.signData",
            sign_params(slot, id, &digest, true),
            "CONSENT_DENIED",
        )
        .await;
        let notes = fake.wait_for("notify", n + 1);
        let body = notes[n]["body"].as_str().unwrap();
        let lines = display_lines(body);
        for label in ["Certificate:", "Issued by:", "Algorithm:", "Digest:"] {
            let starting = lines.iter().filter(|l| l.trim_start().starts_with(label));
            assert_eq!(
                starting.count(),
                1,
                "{id}: lines starting with {label:?} (one expected: none forged, none pushed \
                 out) in the notification:\n{body:?}"
            );
        }
        let digest_line = format!("Digest: {}", fingerprint(&digest));
        assert!(
            lines.contains(&digest_line.as_str()),
            "{id}: no {digest_line:?} line in the notification:\n{body}"
        );
        assert_eq!(
            lines.last(),
            Some(&"No answer within 30 s is a refusal."),
            "{id}: the time limit is not the last line:\n{body}"
        );
        assert!(
            !body.contains(SNEAKY),
            "{id}: {:?} in the notification:\n{body}",
            body.chars()
                .filter(|c| SNEAKY.contains(c))
                .collect::<String>()
        );
        assert!(body.len() <= 2000, "{id}: {} bytes", body.len());
    }
    let notes = fake.events("notify");
    let first = notes[0]["body"].as_str().unwrap();
    // Still recognisable, and the server renders markup: it is escaped.
    assert!(
        first.contains("Alice Issued by: CN=Trusted Root CA"),
        "{first}"
    );
    assert!(first.contains("&lt;b&gt;Bank&lt;/b&gt;"), "{first}");
    assert!(!first.contains("<b>"), "{first}");
    let second = notes[1]["body"].as_str().unwrap();
    assert!(second.contains("Long Name Long Name"), "{second}");
    assert!(
        second.contains('…'),
        "the long subject is not cut: {second}"
    );
    drop(agent);
}

/// The scripted pinentry (`src/bin/fake-pinentry.rs`) as the person, behind a small shell
/// script that sets its own variables (the agent gives a pinentry only the environment a
/// pinentry needs): one answer per dialog, and a record of every command each dialog received.
struct Pinentry {
    dir: tempfile::TempDir,
}

impl Pinentry {
    fn new(answers: &[&str]) -> Pinentry {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("script"), answers.join("\n") + "\n").unwrap();
        let program = dir.path().join("pinentry");
        std::fs::write(
            &program,
            format!(
                "#!/bin/sh\nFAKE_PINENTRY_SCRIPT='{}' FAKE_PINENTRY_LOG='{}' exec '{}'\n",
                dir.path().join("script").display(),
                dir.path().join("log").display(),
                env!("CARGO_BIN_EXE_fake-pinentry"),
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        Pinentry { dir }
    }

    fn program(&self) -> String {
        self.dir.path().join("pinentry").display().to_string()
    }

    /// One record per dialog shown, in order.
    fn dialogs(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Finding 10: U+061C (Arabic letter mark) and U+180E (Mongolian vowel separator), both format
/// characters, reached the PIN window (pinentry's cleaning knew a hand-made list of them). Now
/// every Cc, Cf, Zl and Zp character is blanked: neither the PIN window nor pinentry's consent
/// window gets them, and the subject is still shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_characters_do_not_reach_the_pin_or_consent_window() {
    let token = Token::provision();
    add_certificate(
        &token,
        "0c",
        "/CN=Mallory\u{061C}Bank\u{180E}Corp\
         /O=Evil\u{061C}\u{180E}\u{FEFF}\u{AD}\u{2060}Org\u{85}Ltd",
        None,
    );
    let person = Pinentry::new(&["cancel", "cancel"]);
    let program = person.program();
    let mut args = BASE_ARGS.to_vec();
    args.extend(["--no-tray", "--consent", "pinentry", "--pinentry", &program]);
    let agent = Agent::start_raw(&token, &args, &[("DISPLAY", ":99")]);
    let mut c = agent.client(Some(ALLOWED)).await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"mongolian vowel separator");
    // No PIN from the page: the agent's PIN window.
    c.err(
        "pkcs11.signData",
        sign_params(slot, "0c", &digest, false),
        "CONSENT_DENIED",
    )
    .await;
    // The PIN from the page: pinentry's consent window.
    c.err(
        "pkcs11.signData",
        sign_params(slot, "0c", &digest, true),
        "CONSENT_DENIED",
    )
    .await;

    let dialogs = person.dialogs();
    assert_eq!(dialogs.len(), 2, "{dialogs:?}");
    for (d, verb) in dialogs.iter().zip(["GETPIN", "CONFIRM"]) {
        let commands = d["commands"].as_array().unwrap();
        assert!(commands.iter().any(|c| c[0] == verb), "{d}");
        for command in commands {
            let text = command[1].as_str().unwrap();
            assert!(
                !text.contains(SNEAKY) && !text.contains(['\u{FEFF}', '\u{AD}', '\u{2060}']),
                "{verb}: {:?} in {command}",
                text.chars()
                    .filter(|c| !c.is_ascii() && *c != '…')
                    .collect::<String>()
            );
        }
        let desc = commands
            .iter()
            .find(|c| c[0] == "SETDESC")
            .and_then(|c| c[1].as_str())
            .expect("a description");
        assert!(desc.starts_with(ALLOWED), "{verb}: {desc}");
        assert!(desc.contains("CN=Mallory Bank Corp"), "{verb}: {desc}");
        assert!(desc.contains("O=Evil Org Ltd"), "{verb}: {desc}");
        assert!(
            desc.contains(&format!("Digest: {}", fingerprint(&digest))),
            "{verb}: {desc}"
        );
    }
    drop(agent);
}

/// A process that named itself with terminal escapes and holds a port: python3 sets its command
/// name (`prctl(PR_SET_NAME)`, what `/proc/PID/comm` shows), listens on a free loopback port,
/// prints it, and waits until its stdin closes. Killed on drop.
struct Squatter {
    child: std::process::Child,
    port: u16,
}

/// The command name it sets: an OSC that retitles the terminal (ending in BEL), then SGR red.
const ESCAPES: &[u8] = b"\x1b]0;pwn\x07\x1b[31mX";

impl Squatter {
    fn start() -> Squatter {
        let program = r#"
import ctypes, socket, sys
name = bytes.fromhex(sys.argv[1])
if ctypes.CDLL(None, use_errno=True).prctl(15, name, 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_NAME) failed")
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
print(s.getsockname()[1], flush=True)
sys.stdin.read()
"#;
        let mut child = Command::new("python3")
            .args(["-c", program, &hex::encode(ESCAPES)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run python3");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let port = line.trim().parse().expect("python3 printed its port");
        let comm = std::fs::read(format!("/proc/{}/comm", child.id())).unwrap();
        assert_eq!(
            comm.strip_suffix(b"\n"),
            Some(ESCAPES),
            "prctl did not name it"
        );
        Squatter { child, port }
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `keyport ARGS` to the end with the test environment: (exit code, stdout, stderr).
fn run_keyport(token: &Token, args: &[&str]) -> (i32, Vec<u8>, Vec<u8>) {
    let mut cmd = Command::new(keyport_bin());
    cmd.args(args);
    Agent::hermetic(token, &mut cmd);
    let out = cmd.stdin(Stdio::null()).output().expect("run keyport");
    (out.status.code().unwrap_or(-1), out.stdout, out.stderr)
}

/// Finding 11: the command name of the program holding the agent's port went raw to the
/// terminal, in the "port in use" error at start and in `keyport doctor`: a name can retitle
/// the terminal, recolour it, or worse. Now its control characters are replaced (and it is
/// capped); the holder is still named, with its pid.
#[test]
fn a_port_holders_name_cannot_send_terminal_escapes() {
    let token = Token::provision();
    let squatter = Squatter::start();
    let listen = format!("127.0.0.1:{}", squatter.port);
    let pid = format!("pid {}", squatter.child.id());
    let start = ["--listen", &listen, "--module", MODULE, "--no-tray"];
    let (code, out, err) = run_keyport(&token, &start);
    assert_eq!(code, 1, "the agent did not refuse the port in use");
    let mut doctor = vec!["doctor"];
    doctor.extend(start);
    let (_, doctor_out, doctor_err) = run_keyport(&token, &doctor);
    for (what, bytes) in [
        ("start-up stdout", &out),
        ("start-up stderr", &err),
        ("doctor stdout", &doctor_out),
        ("doctor stderr", &doctor_err),
    ] {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !bytes.contains(&0x1b) && !bytes.contains(&0x07) && !text.contains('\u{9b}'),
            "{what} has terminal controls: {:?}",
            text
        );
    }
    for (what, bytes) in [("start-up error", &err), ("doctor", &doctor_out)] {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            text.contains("pwn") && text.contains("[31mX") && text.contains(&pid),
            "{what} does not name the holder: {text}"
        );
    }
}

async fn subscribe(c: &mut Client) -> u64 {
    c.ok("pkcs11.subscribeSlotEvents", json!({}))
        .await
        .as_u64()
        .expect("a subscription id")
}

/// Finding 12: subscription ids were one count for the whole agent, so a page that subscribed
/// twice learnt how many subscriptions other pages had made in between (and could name theirs).
/// Now they are random: two connections subscribing in turn see ids nowhere near each other's,
/// all of them exact in JavaScript (below 2^53), and one connection cannot end the other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_ids_tell_a_page_nothing_of_the_others() {
    let token = Token::provision();
    let agent = Agent::start(&token, &[]);
    let mut a = agent.client(Some(ALLOWED)).await;
    let mut b = agent.client(Some(TRUSTED)).await;
    let (mut ids_a, mut ids_b) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        ids_a.push(subscribe(&mut a).await);
        ids_b.push(subscribe(&mut b).await);
    }
    let all: Vec<u64> = ids_a.iter().chain(&ids_b).copied().collect();
    for &id in &all {
        assert!(
            (1..1 << 53).contains(&id),
            "{id} is not exact in JavaScript"
        );
    }
    for x in &ids_a {
        for y in &ids_b {
            assert!(
                x.abs_diff(*y) > 8,
                "ids of two connections are a count: A {ids_a:?}, B {ids_b:?}"
            );
        }
    }
    let mut distinct = all.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), all.len(), "{all:?}");

    // B cannot end A's subscriptions; A can, once.
    for id in &ids_a {
        let ended = b
            .ok("pkcs11.unsubscribeSlotEvents", json!({"subscription": id}))
            .await;
        assert_eq!(ended, json!(false), "B ended A's subscription {id}");
    }
    for id in &ids_a {
        let ended = a
            .ok("pkcs11.unsubscribeSlotEvents", json!({"subscription": id}))
            .await;
        assert_eq!(ended, json!(true), "A's subscription {id} was gone");
    }
    for id in &ids_b {
        let ended = b
            .ok("pkcs11.unsubscribeSlotEvents", json!({"subscription": id}))
            .await;
        assert_eq!(ended, json!(true), "B's subscription {id} was gone");
    }
}
