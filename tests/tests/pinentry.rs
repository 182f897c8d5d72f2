//! The agent's pinentry client (`keyport::desktop::pinentry`), in process: against the scripted
//! stand-in (`src/bin/fake-pinentry.rs`, which records every command it receives), then once
//! against the real thing, Debian's pinentry-gtk2 under Xvfb, driven with xdotool.
//!
//! `UPDATE_SCREENSHOT=1` also writes docs/pinentry.png (the real PIN dialog) and
//! docs/pinentry-ru.png (the same dialog in Russian).

use keyport::consent::{Caller, ConsentRequest, Decision};
use keyport::desktop::pinentry::{
    label_allow, label_always, label_deny, pin_dialog, pin_dialog_in, title, PinAnswer, PinDialog,
    Pinentry, PinentryKind, MAX_LINE, PINENTRY_ENV,
};
use keyport::origin::Origin;
use keyport_e2e::desktop::Xvfb;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FAKE: &str = env!("CARGO_BIN_EXE_fake-pinentry");
/// Distinctive, and with what Assuan must escape (`%`, a space) and a non-ASCII letter.
const PIN: &str = "kpPin%25 é7301";
const ORIGIN: &str = "https://sign.example";

/// A script for the stand-in, and where it records.
struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new(answers: &[&str]) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("script"), answers.join("\n") + "\n").unwrap();
        Fake { dir }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("log.jsonl")
    }

    /// The stand-in as the agent would find it, told its script (`flavor`: what it says to
    /// `GETINFO flavor`; `-`: it does not know the question).
    fn pinentry(&self, flavor: &str) -> Pinentry {
        let p = Pinentry::find(Some(Path::new(FAKE))).expect("the fake pinentry is built");
        assert_eq!(p.kind(), PinentryKind::Graphical);
        p.with_env("FAKE_PINENTRY_SCRIPT", self.dir.path().join("script"))
            .with_env("FAKE_PINENTRY_LOG", self.log())
            .with_env("FAKE_PINENTRY_FLAVOR", flavor)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// One record per invocation, complete lines only.
    fn records(&self) -> Vec<Value> {
        let text = self.log_text();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Wait (at most 10 s) until `n` invocations were recorded.
    fn wait_records(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.records();
            if r.len() >= n || Instant::now() > deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn verbs(record: &Value) -> Vec<String> {
    record["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[0].as_str().unwrap().to_string())
        .collect()
}

/// The (decoded) argument the stand-in received with `verb`.
fn arg(record: &Value, verb: &str) -> Option<String> {
    record["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c[0] == verb)
        .map(|c| c[1].as_str().unwrap().to_string())
}

fn pid(record: &Value) -> u32 {
    record["pid"].as_u64().unwrap() as u32
}

/// Neither running nor a zombie: reaped (`/proc/PID` is gone).
fn reaped(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn request(origin: Option<&str>, subject: &str) -> ConsentRequest {
    ConsentRequest {
        caller: match origin {
            Some(o) => Caller::Origin(Origin::parse(o).unwrap()),
            None => Caller::Local { trusted: false },
        },
        subject: subject.into(),
        issuer: "CN=Example Issuing CA, O=Example, C=BE".into(),
        algorithm: "SHA-256 with ECDSA".into(),
        digest_fingerprint: "3A7BD3E2 360A3D29".into(),
        count: 1,
    }
}

fn pin_of(answer: Result<PinAnswer, String>) -> String {
    match answer {
        Ok(PinAnswer::Pin(p)) => p.expose().to_string(),
        Ok(PinAnswer::Cancelled) => panic!("cancelled"),
        Ok(PinAnswer::TimedOut) => panic!("timed out"),
        Err(e) => panic!("error: {e}"),
    }
}

fn outcome(answer: &Result<PinAnswer, String>) -> &'static str {
    match answer {
        Ok(PinAnswer::Pin(_)) => "pin",
        Ok(PinAnswer::Cancelled) => "cancelled",
        Ok(PinAnswer::TimedOut) => "timed out",
        Err(_) => "error",
    }
}

const PIN_VERBS: [&str; 9] = [
    "SETTITLE",
    "SETDESC",
    "SETPROMPT",
    "SETERROR",
    "SETOK",
    "SETCANCEL",
    "SETTIMEOUT",
    "GETPIN",
    "BYE",
];

#[tokio::test]
async fn the_pin_comes_back_exactly_and_the_dialog_says_who_asks_what() {
    let fake = Fake::new(&[&format!("pin {PIN}")]);
    let p = fake.pinentry("gtk2");
    let r = request(Some(ORIGIN), "CN=Alice Example, O=Example, C=BE");
    let dialog = pin_dialog(&r, Some("Wrong PIN: 2 tries left".into()));
    let answer = p.get_pin(&dialog, Duration::from_secs(7)).await;
    assert_eq!(pin_of(answer), PIN);

    let records = fake.wait_records(1);
    let rec = &records[0];
    assert_eq!(verbs(rec), PIN_VERBS);
    assert_eq!(arg(rec, "SETTITLE").unwrap(), title());
    assert_eq!(arg(rec, "SETTIMEOUT").unwrap(), "7");
    assert_eq!(arg(rec, "SETERROR").unwrap(), "Wrong PIN: 2 tries left");
    assert_eq!(arg(rec, "SETCANCEL").unwrap(), label_deny());
    let desc = arg(rec, "SETDESC").unwrap();
    assert_eq!(desc, dialog.description);
    for part in [
        ORIGIN,
        "CN=Alice Example, O=Example, C=BE",
        "CN=Example Issuing CA, O=Example, C=BE",
        "SHA-256 with ECDSA",
        "3A7BD3E2 360A3D29",
    ] {
        assert!(desc.contains(part), "{part} missing from {desc}");
    }
    assert_eq!(rec["answer"], "pin");
    assert_eq!(rec["overlong"], 0);
    assert!(
        !fake.log_text().contains(PIN),
        "the stand-in logged the PIN"
    );
    assert!(reaped(pid(rec), Duration::from_secs(5)));
}

/// The pinentry gets the allowed part of the agent's environment only (and the extra variables
/// it was given).
#[tokio::test]
async fn the_pinentry_gets_only_the_environment_it_needs() {
    let fake = Fake::new(&["pin 1"]);
    pin_of(
        fake.pinentry("gtk2")
            .get_pin(&PinDialog::default(), Duration::from_secs(5))
            .await,
    );
    let allowed = |k: &str| {
        PINENTRY_ENV.contains(&k) || k.starts_with("LC_") || k.starts_with("FAKE_PINENTRY_")
    };
    let records = fake.wait_records(1);
    let got: Vec<&str> = records[0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for k in &got {
        assert!(allowed(k), "{k} reached the pinentry");
    }
    assert!(got.contains(&"FAKE_PINENTRY_LOG"));
    if std::env::var_os("PATH").is_some() {
        assert!(got.contains(&"PATH"));
    }
    // The test runs with variables that are not allowed (cargo's, at least): none got through.
    let others: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| !allowed(k))
        .collect();
    assert!(!others.is_empty(), "nothing to check against");
    for k in &others {
        assert!(!got.contains(&k.as_str()), "{k} reached the pinentry");
    }
}

#[tokio::test]
async fn cancel_close_and_timeout_are_answers_not_pins() {
    let fake = Fake::new(&["cancel", "close", "timeout", "ok"]);
    let p = fake.pinentry("gtk2");
    let dialog = pin_dialog(&request(Some(ORIGIN), "CN=A"), None);
    let started = Instant::now();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(outcome(&p.get_pin(&dialog, Duration::from_secs(30)).await));
    }
    assert_eq!(got, ["cancelled", "cancelled", "timed out"]);
    // The pinentry's own answers, not the deadline's.
    assert!(started.elapsed() < Duration::from_secs(10));
    // OK without data: an empty field.
    assert_eq!(
        pin_of(p.get_pin(&dialog, Duration::from_secs(30)).await),
        ""
    );
    let records = fake.wait_records(4);
    assert_eq!(records.len(), 4);
    for rec in &records {
        assert_eq!(
            verbs(rec),
            [
                "SETTITLE",
                "SETDESC",
                "SETPROMPT",
                "SETOK",
                "SETCANCEL",
                "SETTIMEOUT",
                "GETPIN",
                "BYE"
            ]
        );
        assert!(reaped(pid(rec), Duration::from_secs(5)));
    }
}

/// A pinentry that never answers is killed at the deadline and reaped: no process, no zombie.
#[tokio::test]
async fn a_pinentry_that_hangs_is_killed_at_the_deadline_and_reaped() {
    let fake = Fake::new(&["hang", "hang"]);
    let p = fake.pinentry("gtk2");
    let limit = Duration::from_secs(1);

    let started = Instant::now();
    let answer = p.get_pin(&PinDialog::default(), limit).await;
    let took = started.elapsed();
    assert_eq!(outcome(&answer), "timed out");
    assert!(took >= limit, "{took:?}");
    assert!(took < limit + Duration::from_secs(4), "{took:?}");
    let first = pid(&fake.wait_records(1)[0]);
    // Reaped before get_pin returned: not even a zombie is left.
    assert!(
        reaped(first, Duration::ZERO),
        "pinentry {first} is still there"
    );

    let started = Instant::now();
    let decision = p.confirm(&request(Some(ORIGIN), "CN=A"), limit).await;
    assert_eq!(decision, Ok(None));
    assert!(started.elapsed() < limit + Duration::from_secs(4));
    let second = pid(&fake.wait_records(2)[1]);
    assert!(
        reaped(second, Duration::ZERO),
        "pinentry {second} is still there"
    );
}

/// The request went away (the page closed) while the dialog was up: the dialog goes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_dialog_is_killed() {
    let fake = Fake::new(&["hang"]);
    let p = fake.pinentry("gtk2");
    let task = tokio::spawn(async move {
        p.get_pin(&PinDialog::default(), Duration::from_secs(60))
            .await
    });
    let records = tokio::task::spawn_blocking({
        let log = fake.log();
        move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !std::fs::read_to_string(&log)
                .unwrap_or_default()
                .ends_with('\n')
            {
                assert!(Instant::now() < deadline, "the stand-in never got GETPIN");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    records.await.unwrap();
    let pid = pid(&fake.records()[0]);
    assert!(!reaped(pid, Duration::ZERO), "it should still be up");
    task.abort();
    let _ = task.await;
    let gone = tokio::task::spawn_blocking(move || reaped(pid, Duration::from_secs(5)));
    assert!(gone.await.unwrap(), "pinentry {pid} outlived its request");
}

/// Whatever the pinentry sends that is not an answer is an error, and the error quotes none of
/// it (a pinentry that printed the PIN on the wrong line would otherwise leak it).
#[tokio::test]
async fn garbage_and_early_exits_are_errors_that_quote_nothing() {
    let fake = Fake::new(&[
        &format!("garbage {PIN}"),
        "garbage",
        "exit",
        &format!("err 83886085 {PIN}"),
        &format!("err {PIN}"),
    ]);
    let p = fake.pinentry("gtk2");
    let d = PinDialog::default();
    for _ in 0..5 {
        let e = match p.get_pin(&d, Duration::from_secs(10)).await {
            Err(e) => e,
            other => panic!("not an error: {}", outcome(&other)),
        };
        assert!(!e.contains(PIN) && !e.contains("kpPin"), "{e}");
        assert!(e.contains(FAKE), "the error names the program: {e}");
    }
    let fake2 = Fake::new(&[&format!("garbage {PIN}"), "exit"]);
    let p2 = fake2.pinentry("gtk2");
    let r = request(Some(ORIGIN), "CN=A");
    for _ in 0..2 {
        let e = p2.confirm(&r, Duration::from_secs(10)).await.unwrap_err();
        assert!(!e.contains("kpPin"), "{e}");
    }
    for rec in fake.wait_records(5).iter().chain(&fake2.wait_records(2)) {
        assert!(reaped(pid(rec), Duration::from_secs(5)));
    }
}

const CONFIRM_VERBS: [&str; 9] = [
    "GETINFO",
    "SETTITLE",
    "SETDESC",
    "SETOK",
    "SETNOTOK",
    "SETCANCEL",
    "SETTIMEOUT",
    "CONFIRM",
    "BYE",
];

#[tokio::test]
async fn confirm_maps_each_answer() {
    let fake = Fake::new(&["ok", "notok", "cancel", "close", "timeout"]);
    let p = fake.pinentry("gtk2");
    let r = request(Some(ORIGIN), "CN=Alice");
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(p.confirm(&r, Duration::from_secs(30)).await.unwrap());
    }
    assert_eq!(
        got,
        [
            Some(Decision::Allow),
            Some(Decision::AllowAlways),
            Some(Decision::Deny),
            Some(Decision::Deny),
            None
        ]
    );
    let records = fake.wait_records(5);
    for rec in &records {
        assert_eq!(verbs(rec), CONFIRM_VERBS);
        assert_eq!(arg(rec, "GETINFO").unwrap(), "flavor");
        assert_eq!(arg(rec, "SETOK").unwrap(), label_allow());
        assert_eq!(arg(rec, "SETNOTOK").unwrap(), label_always());
        assert_eq!(arg(rec, "SETCANCEL").unwrap(), label_deny());
        assert_eq!(arg(rec, "SETTIMEOUT").unwrap(), "30");
        let desc = arg(rec, "SETDESC").unwrap();
        assert!(desc.contains(ORIGIN) && desc.contains("CN=Alice"), "{desc}");
    }
    // Through the ConsentUi trait, as the consent policy asks.
    let fake = Fake::new(&["notok"]);
    let ui: Arc<dyn keyport::consent::ConsentUi> = Arc::new(fake.pinentry("gtk2"));
    assert_eq!(
        ui.ask(&r, Duration::from_secs(5)).await,
        Ok(Some(Decision::AllowAlways))
    );
}

/// "Always allow" only where the NOTOK answer can mean nothing else: a pinentry of a checked
/// flavor, for a web origin. Elsewhere no third button is offered, and NOT_CONFIRMED (the
/// catch-all "no" of pinentry-w32's Cancel, for one) is a refusal.
#[tokio::test]
async fn without_a_checked_flavor_or_a_web_origin_there_is_no_always() {
    for (flavor, origin) in [("w32", Some(ORIGIN)), ("-", Some(ORIGIN)), ("gtk2", None)] {
        let fake = Fake::new(&["notok", "ok"]);
        let p = fake.pinentry(flavor);
        let r = request(origin, "CN=A");
        assert_eq!(
            p.confirm(&r, Duration::from_secs(5)).await,
            Ok(Some(Decision::Deny)),
            "{flavor} {origin:?}"
        );
        assert_eq!(
            p.confirm(&r, Duration::from_secs(5)).await,
            Ok(Some(Decision::Allow)),
            "{flavor} {origin:?}"
        );
        for rec in fake.wait_records(2) {
            assert!(
                !verbs(&rec).contains(&"SETNOTOK".to_string()),
                "{flavor}: {rec}"
            );
        }
    }
}

/// A certificate subject from a hostile token, and hostile texts in every field of a PIN
/// dialog, can neither add a command nor break a line: the stand-in receives exactly the
/// commands sent, each within Assuan's line limit, each text decoded as it was meant.
#[tokio::test]
async fn hostile_texts_cannot_inject_commands() {
    let evil = format!(
        "CN=Evil\nGETPIN\r\nBYE\nCONFIRM %0A%\u{0}{}",
        "x%\n".repeat(700)
    );
    let fake = Fake::new(&["ok", "pin 1", "pin 2"]);
    let p = fake.pinentry("gtk2");
    let r = request(Some(ORIGIN), &evil);
    assert_eq!(
        p.confirm(&r, Duration::from_secs(5)).await,
        Ok(Some(Decision::Allow))
    );
    assert_eq!(
        pin_of(
            p.get_pin(&pin_dialog(&r, None), Duration::from_secs(5))
                .await
        ),
        "1"
    );
    // The Assuan layer alone (no cleaning): each text arrives exactly as given, or cut.
    let raw = PinDialog {
        title: "T\nGETPIN\r\nBYE %0A %".into(),
        description: format!("line 1\nline 2\n{}", "é%\n".repeat(800)),
        prompt: "PIN%0A\nCONFIRM".into(),
        error: Some("\u{0}\u{7f}\u{85}\u{202e}".into()),
        ok: Some("OK\nBYE".into()),
        cancel: None,
    };
    assert_eq!(pin_of(p.get_pin(&raw, Duration::from_secs(5)).await), "2");

    let records = fake.wait_records(3);
    assert_eq!(verbs(&records[0]), CONFIRM_VERBS);
    let pin_verbs: Vec<&str> = PIN_VERBS
        .iter()
        .copied()
        .filter(|v| *v != "SETERROR")
        .collect();
    assert_eq!(verbs(&records[1]), pin_verbs);
    for rec in &records {
        assert_eq!(rec["overlong"], 0, "a line over {MAX_LINE} bytes: {rec}");
    }
    for rec in &records[..2] {
        let desc = arg(rec, "SETDESC").unwrap();
        assert!(desc.starts_with(&format!("{ORIGIN} asks")), "{desc}");
        assert!(
            // Each run of blanked characters (here CR LF) is one space.
            desc.contains("CN=Evil GETPIN BYE CONFIRM %0A% x% x%"),
            "{desc}"
        );
        assert!(desc.contains("Digest: 3A7BD3E2 360A3D29"), "{desc}");
        assert!(desc.contains('…'), "not cut: {desc}");
    }
    let rec = &records[2];
    assert_eq!(arg(rec, "SETTITLE").unwrap(), raw.title);
    assert_eq!(arg(rec, "SETPROMPT").unwrap(), raw.prompt);
    assert_eq!(arg(rec, "SETERROR").unwrap(), raw.error.clone().unwrap());
    assert_eq!(arg(rec, "SETOK").unwrap(), "OK\nBYE");
    let desc = arg(rec, "SETDESC").unwrap();
    assert!(desc.ends_with('…') && raw.description.starts_with(desc.trim_end_matches('…')));
    assert!(desc.len() > 300, "cut too short: {} bytes", desc.len());
    assert_eq!(
        verbs(rec),
        [
            "SETTITLE",
            "SETDESC",
            "SETPROMPT",
            "SETERROR",
            "SETOK",
            "SETTIMEOUT",
            "GETPIN",
            "BYE"
        ]
    );
}

/// Two requests at once: one dialog, then the other (two pinentries would fight for the
/// keyboard grab, and the loser would cancel).
#[tokio::test]
async fn one_dialog_at_a_time() {
    let fake = Fake::new(&["after 300 pin a", "after 300 pin b"]);
    let p = fake.pinentry("gtk2");
    let d = PinDialog::default();
    let other = p.clone();
    let (a, b) = tokio::join!(
        p.get_pin(&d, Duration::from_secs(10)),
        other.get_pin(&d, Duration::from_secs(10))
    );
    let mut pins = [pin_of(a), pin_of(b)];
    pins.sort();
    assert_eq!(pins, ["a", "b"]);
    let mut records = fake.wait_records(2);
    records.sort_by_key(|r| r["started_ms"].as_u64());
    assert!(
        records[1]["started_ms"].as_u64() >= records[0]["ended_ms"].as_u64(),
        "the dialogs overlapped: {records:?}"
    );
}

/// A `tracing` subscriber at trace level writing into memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// With everything logged (trace level), the PIN is in no log line and no error, whatever the
/// pinentry does with it.
#[tokio::test]
async fn the_pin_is_in_no_log_line_and_no_error() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let fake = Fake::new(&[
        &format!("pin {PIN}"),
        &format!("garbage D {PIN}"),
        &format!("err 83886085 {PIN}"),
        "hang",
        "ok",
    ]);
    let p = fake.pinentry("gtk2");
    let r = request(Some(ORIGIN), "CN=A");
    let d = pin_dialog(&r, Some("Wrong PIN".into()));
    let mut errors = Vec::new();
    assert_eq!(pin_of(p.get_pin(&d, Duration::from_secs(5)).await), PIN);
    errors.push(p.get_pin(&d, Duration::from_secs(5)).await.err().unwrap());
    errors.push(p.get_pin(&d, Duration::from_secs(5)).await.err().unwrap());
    assert_eq!(
        outcome(&p.get_pin(&d, Duration::from_secs(1)).await),
        "timed out"
    );
    assert_eq!(
        p.confirm(&r, Duration::from_secs(5)).await,
        Ok(Some(Decision::Allow))
    );

    let log = captured.text();
    // The capture works: the conversation is in it.
    for expected in [
        "pinentry started",
        "to pinentry",
        "from pinentry: D (withheld)",
        "pinentry answered",
        "no PIN in time",
    ] {
        assert!(log.contains(expected), "{expected:?} not logged:\n{log}");
    }
    for text in errors.iter().chain([&log]) {
        assert!(!text.contains(PIN), "the PIN is in:\n{text}");
        assert!(!text.contains("kpPin"), "part of the PIN is in:\n{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// The real thing: Debian's pinentry-gtk2 under Xvfb.

/// Debian's pinentry-gtk2 (`.ci/packages-desktop.txt`).
const GTK2: &str = "/usr/bin/pinentry-gtk-2";

fn gtk2(x: &Xvfb) -> Pinentry {
    Pinentry::find(Some(Path::new(GTK2)))
        .unwrap_or_else(|| panic!("{GTK2} is missing: install the Debian package pinentry-gtk2"))
        .with_env("DISPLAY", &x.display)
}

fn xdotool(x: &Xvfb, args: &[&str]) -> String {
    let out = Command::new("xdotool")
        .args(args)
        .env("DISPLAY", &x.display)
        .output()
        .expect("run xdotool (Debian package xdotool)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The id of the visible pinentry window, once it is up and has the keyboard (at most 15 s).
/// `asking`: the request, which must still be waiting for an answer.
fn dialog_window<T>(x: &Xvfb, step: &str, asking: &tokio::task::JoinHandle<T>) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found = xdotool(x, &["search", "--onlyvisible", "--name", "^Keyport"]);
        if let Some(id) = found.lines().next() {
            // pinentry grabs the keyboard once the window is mapped.
            std::thread::sleep(Duration::from_millis(500));
            return id.to_string();
        }
        assert!(
            !asking.is_finished(),
            "{step}: the request ended before its dialog was seen"
        );
        assert!(
            Instant::now() < deadline,
            "{step}: no pinentry window appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn no_dialog_window(x: &Xvfb) -> bool {
    xdotool(x, &["search", "--onlyvisible", "--name", "^Keyport"]).is_empty()
}

/// Close `window` as a window manager does when its close button is clicked: a
/// `WM_DELETE_WINDOW` message (xdotool's `windowclose` destroys the window instead).
fn close_window(x: &Xvfb, window: &str) {
    use std::os::raw::c_long;
    use x11_dl::xlib;
    let window: xlib::Window = window.parse().unwrap();
    let xl = xlib::Xlib::open().expect("libX11");
    let name = std::ffi::CString::new(x.display.as_str()).unwrap();
    // SAFETY: plain Xlib calls on a display this function opens and closes.
    unsafe {
        let d = (xl.XOpenDisplay)(name.as_ptr());
        assert!(!d.is_null(), "cannot open display {}", x.display);
        let protocols = (xl.XInternAtom)(d, c"WM_PROTOCOLS".as_ptr(), xlib::False);
        let delete = (xl.XInternAtom)(d, c"WM_DELETE_WINDOW".as_ptr(), xlib::False);
        let mut data = xlib::ClientMessageData::new();
        data.set_long(0, delete as c_long);
        data.set_long(1, xlib::CurrentTime as c_long);
        let mut event = xlib::XEvent {
            client_message: xlib::XClientMessageEvent {
                type_: xlib::ClientMessage,
                serial: 0,
                send_event: xlib::True,
                display: d,
                window,
                message_type: protocols,
                format: 32,
                data,
            },
        };
        let sent = (xl.XSendEvent)(d, window, xlib::False, xlib::NoEventMask, &mut event);
        (xl.XFlush)(d);
        (xl.XCloseDisplay)(d);
        assert_ne!(sent, 0, "XSendEvent failed");
    }
}

/// The real pinentry-gtk2 shows the Russian dialog: its title (read back from the X window),
/// and a PIN typed into it comes back. With `UPDATE_SCREENSHOT=1`, docs/pinentry-ru.png.
#[test]
fn pinentry_gtk2_for_real_in_russian() {
    let x = Xvfb::start();
    let p = gtk2(&x);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ru = keyport::i18n::catalog("ru");
    let r = ConsentRequest {
        caller: Caller::Origin(Origin::parse(ORIGIN).unwrap()),
        subject: "CN=Иван Петров, O=Пример, C=RU".into(),
        issuer: "CN=Example Issuing CA 2, O=Example Corp, C=BE".into(),
        algorithm: ru.text(
            "consent-algorithm-name",
            &[("hash", "SHA-256".into()), ("key", "ECDSA".into())],
        ),
        digest_fingerprint: "3A7BD3E2 360A3D29".into(),
        count: 1,
    };
    let error = ru.text("pin-wrong-few-tries", &[]);
    let dialog = pin_dialog_in(ru, &r, Some(error));
    assert_eq!(dialog.title, ru.text("title-signature-request", &[]));
    assert_ne!(
        dialog.title,
        title(),
        "the Russian title is not the English one"
    );
    let asking = {
        let (p, d) = (p.clone(), dialog.clone());
        rt.spawn(async move { p.get_pin(&d, Duration::from_secs(30)).await })
    };
    let window = dialog_window(&x, "the Russian dialog", &asking);
    assert_eq!(xdotool(&x, &["getwindowname", &window]), dialog.title);
    xdotool(&x, &["type", "--delay", "40", TYPED_PIN]);
    if std::env::var("UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/pinentry-ru.png");
        let status = Command::new("import")
            .args(["-display", &x.display, "-window", &window])
            .arg(&file)
            .status()
            .expect("run import (Debian package imagemagick)");
        assert!(status.success(), "import failed");
    }
    xdotool(&x, &["key", "Return"]);
    assert_eq!(pin_of(rt.block_on(asking).unwrap()), TYPED_PIN);
    assert!(no_dialog_window(&x), "the dialog is still up");
}

/// Typed into the real dialog: `%` and a space (escaped by pinentry, decoded by the agent).
const TYPED_PIN: &str = "kp%25 x7301";

#[test]
fn pinentry_gtk2_for_real_get_pin() {
    let x = Xvfb::start();
    let p = gtk2(&x);
    assert_eq!(p.kind(), PinentryKind::Graphical);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = ConsentRequest {
        caller: Caller::Origin(Origin::parse(ORIGIN).unwrap()),
        subject: "CN=Alice Example, O=Example Corp, C=BE".into(),
        issuer: "CN=Example Issuing CA 2, O=Example Corp, C=BE".into(),
        algorithm: "SHA-256 with ECDSA".into(),
        digest_fingerprint: "3A7BD3E2 360A3D29".into(),
        count: 1,
    };

    // (a) Type the PIN, press Enter: it comes back exactly.
    let asking = {
        let (p, d) = (p.clone(), pin_dialog(&r, None));
        rt.spawn(async move { p.get_pin(&d, Duration::from_secs(30)).await })
    };
    let window = dialog_window(&x, "type the PIN", &asking);
    xdotool(&x, &["type", "--delay", "40", TYPED_PIN]);
    if std::env::var("UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/pinentry.png");
        let status = Command::new("import")
            .args(["-display", &x.display, "-window", &window])
            .arg(&file)
            .status()
            .expect("run import (Debian package imagemagick)");
        assert!(status.success(), "import failed");
    }
    xdotool(&x, &["key", "Return"]);
    assert_eq!(pin_of(rt.block_on(asking).unwrap()), TYPED_PIN);
    assert!(no_dialog_window(&x), "the dialog is still up");

    // Escape cancels.
    let asking = {
        let (p, d) = (p.clone(), pin_dialog(&r, Some("Wrong PIN".into())));
        rt.spawn(async move { p.get_pin(&d, Duration::from_secs(30)).await })
    };
    dialog_window(&x, "Escape", &asking);
    xdotool(&x, &["key", "Escape"]);
    assert_eq!(outcome(&rt.block_on(asking).unwrap()), "cancelled");

    // Nobody there: pinentry's own timeout (or, at worst, the deadline) ends it.
    let started = Instant::now();
    let answer = rt.block_on(p.get_pin(&pin_dialog(&r, None), Duration::from_secs(2)));
    assert_eq!(outcome(&answer), "timed out");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(no_dialog_window(&x));

    // Someone typed, then left: pinentry-gtk2's own timeout does not fire once there was
    // input, so only the hard deadline ends it, and the dialog goes with the killed process.
    let started = Instant::now();
    let asking = {
        let (p, d) = (p.clone(), pin_dialog(&r, None));
        rt.spawn(async move { p.get_pin(&d, Duration::from_secs(3)).await })
    };
    dialog_window(&x, "type, then leave", &asking);
    xdotool(&x, &["type", "1"]);
    assert_eq!(outcome(&rt.block_on(asking).unwrap()), "timed out");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "the deadline is 3 s + 1 s: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        no_dialog_window(&x),
        "the killed pinentry's dialog is still up"
    );
}

#[test]
fn pinentry_gtk2_for_real_confirm() {
    let x = Xvfb::start();
    let p = gtk2(&x);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = request(Some(ORIGIN), "CN=Alice Example, O=Example Corp, C=BE");

    let ask = |step: &str, act: &dyn Fn(&str)| -> Option<Decision> {
        let asking = {
            let (p, r) = (p.clone(), r.clone());
            rt.spawn(async move { p.confirm(&r, Duration::from_secs(30)).await })
        };
        let window = dialog_window(&x, step, &asking);
        act(&window);
        let answer = rt.block_on(asking).unwrap().expect("a pinentry answer");
        assert!(no_dialog_window(&x), "{step}: the dialog is still up");
        answer
    };
    // The buttons, left to right: Deny, Always allow this site, Allow; the focus starts on Deny
    // (Enter by reflex refuses).
    let keys = |keys: &'static [&'static str]| {
        let x = &x;
        move |_: &str| {
            xdotool(x, keys);
        }
    };
    assert_eq!(
        ask("Enter", &keys(&["key", "Return"])),
        Some(Decision::Deny)
    );
    assert_eq!(
        ask("Tab Enter", &keys(&["key", "Tab", "key", "Return"])),
        Some(Decision::AllowAlways)
    );
    assert_eq!(
        ask(
            "Tab Tab Enter",
            &keys(&["key", "Tab", "key", "Tab", "key", "Return"])
        ),
        Some(Decision::Allow)
    );
    // The mnemonics.
    assert_eq!(
        ask("Alt+W", &keys(&["key", "alt+w"])),
        Some(Decision::AllowAlways)
    );
    assert_eq!(
        ask("Alt+A", &keys(&["key", "alt+a"])),
        Some(Decision::Allow)
    );
    assert_eq!(
        ask("Escape", &keys(&["key", "Escape"])),
        Some(Decision::Deny)
    );
    // The window's close button: pinentry cancels (and says BUTTON_INFO close).
    assert_eq!(ask("close", &|w| close_window(&x, w)), Some(Decision::Deny));
    // No answer: pinentry's own timeout.
    let started = Instant::now();
    assert_eq!(rt.block_on(p.confirm(&r, Duration::from_secs(2))), Ok(None));
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(no_dialog_window(&x));
}
