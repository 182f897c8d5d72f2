//! Desktop pieces for the end-to-end tests: a private D-Bus session bus, the scripted
//! notification server (`src/bin/fake-notifications.rs`) on it, and an Xvfb display.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// A private `dbus-daemon --session`; killed on drop.
pub struct PrivateBus {
    pub address: String,
    pid: u32,
}

impl PrivateBus {
    pub fn start() -> PrivateBus {
        let out = Command::new("dbus-daemon")
            .args([
                "--session",
                "--fork",
                "--nosyslog",
                "--print-address=1",
                "--print-pid=1",
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("run dbus-daemon (Debian package dbus)");
        assert!(out.status.success(), "dbus-daemon failed to start");
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        let address = lines.next().expect("bus address").trim().to_string();
        let pid = lines.next().expect("bus pid").trim().parse().expect("pid");
        assert!(address.starts_with("unix:"), "{address}");
        PrivateBus { address, pid }
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
    }
}

/// The scripted notification server on a bus, recording to a file; stopped on drop.
pub struct FakeNotifications {
    child: Child,
    _stdin: ChildStdin,
    pub record: PathBuf,
}

impl FakeNotifications {
    /// `bin`: `env!("CARGO_BIN_EXE_fake-notifications")`; `script`: e.g. "allow" or
    /// "always,deny"; `caps`: the capabilities it announces (None: "actions,body").
    pub fn start(
        bin: &str,
        bus: &PrivateBus,
        dir: &Path,
        script: &str,
        caps: Option<&str>,
    ) -> FakeNotifications {
        let record = dir.join(format!("notifications-{}.jsonl", script.replace(',', "-")));
        let mut cmd = Command::new(bin);
        cmd.arg("--record")
            .arg(&record)
            .args(["--script", script])
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(c) = caps {
            cmd.args(["--caps", c]);
        }
        let mut child = cmd.spawn().expect("spawn fake-notifications");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "fake-notifications did not start");
        FakeNotifications {
            child,
            _stdin: stdin,
            record,
        }
    }

    /// Everything recorded so far, one JSON object per call. Only complete lines count: the
    /// server may be writing the next one while we read.
    pub fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.record).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: a JSON line: {l}")))
            .collect()
    }

    /// The recorded calls of one kind ("notify", "close", "get_capabilities").
    pub fn events(&self, kind: &str) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["event"] == kind)
            .collect()
    }

    /// Wait until `n` calls of `kind` were recorded (at most 10 s).
    pub fn wait_for(&self, kind: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.events(kind);
            if events.len() >= n || Instant::now() > deadline {
                return events;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FakeNotifications {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An Xvfb display; killed on drop.
pub struct Xvfb {
    child: Child,
    pub display: String,
}

impl Xvfb {
    pub fn start() -> Xvfb {
        // Xvfb picks a free display number itself and writes it to its stdout (-displayfd 1):
        // tests running at once never share (and then lose) a display.
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "800x600x24",
                "-nolisten",
                "tcp",
                // Without it the server resets whenever its last client leaves, and a client
                // that connects during the reset is hung up on: a pinentry started right after
                // the previous one closed then falls back to curses and fails (ENOTTY).
                "-noreset",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run Xvfb (Debian package xvfb)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let n: u32 = match line.trim().parse() {
            Ok(n) => n,
            Err(_) => {
                let _ = child.kill();
                panic!("Xvfb did not start (it said {line:?})");
            }
        };
        Xvfb {
            child,
            display: format!(":{n}"),
        }
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An XEmbed tray host (`trayer`) across the top right of the display, so that the agent's icon
/// can be seen and clicked; killed on drop. The icon sits at [`TrayHost::ICON`].
pub struct TrayHost {
    child: Child,
    display: String,
}

impl TrayHost {
    /// Where the (first) icon's centre is, on [`Xvfb`]'s 800x600 screen.
    pub const ICON: (u32, u32) = (783, 16);

    pub fn start(x: &Xvfb, bus: &PrivateBus) -> TrayHost {
        let child = Command::new("trayer")
            .args([
                "--edge",
                "top",
                "--align",
                "right",
                "--widthtype",
                "pixel",
                "--width",
                "200",
                "--height",
                "32",
                "--transparent",
                "false",
            ])
            .env("DISPLAY", &x.display)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run trayer (Debian package trayer)");
        TrayHost {
            child,
            display: x.display.clone(),
        }
    }

    /// Run `xdotool` on this display (Debian package xdotool).
    pub fn xdotool(&self, args: &[&str]) {
        let status = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.display)
            .status()
            .expect("run xdotool (Debian package xdotool)");
        assert!(status.success(), "xdotool {args:?} failed");
    }

    /// Left-click the tray icon (opens its menu).
    pub fn click_icon(&self) {
        let (x, y) = Self::ICON;
        self.xdotool(&["mousemove", &x.to_string(), &y.to_string(), "click", "1"]);
    }
}

impl Drop for TrayHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until `file` contains `text` (at most `limit`); returns the file's text.
pub fn wait_for_text(file: &Path, text: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let s = std::fs::read_to_string(file).unwrap_or_default();
        if s.contains(text) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The icon a tray-icon tray publishes for the AppIndicator host: it writes each new icon to
/// `dir` as `tray-icon-<id>-<n>.png`, n counting up, and removes the previous one. Returns the
/// newest (n, bytes) once it reads a whole PNG (one that ends in its IEND chunk) twice alike:
/// it may be mid-write.
pub fn published_icon(dir: &Path) -> Option<(u32, Vec<u8>)> {
    let newest = || -> Option<(u32, PathBuf)> {
        std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| {
                let path = e.ok()?.path();
                let n = path
                    .file_stem()?
                    .to_str()?
                    .rsplit('-')
                    .next()?
                    .parse()
                    .ok()?;
                Some((n, path))
            })
            .max()
    };
    let (n, path) = newest()?;
    let mut bytes = std::fs::read(&path).ok()?;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let again = std::fs::read(&path).ok()?;
        if again == bytes && again.ends_with(b"IEND\xae\x42\x60\x82") {
            return Some((n, again));
        }
        bytes = again;
    }
}

/// Wait until the published icon is newer than `after` (at most `limit`).
pub fn wait_for_icon(dir: &Path, after: u32, limit: Duration) -> Option<(u32, Vec<u8>)> {
    let deadline = Instant::now() + limit;
    loop {
        match published_icon(dir) {
            Some((n, bytes)) if n > after => return Some((n, bytes)),
            _ if Instant::now() > deadline => return None,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
