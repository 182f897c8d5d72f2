//! A stand-in for GnuPG's pinentry programs, for the tests: speaks Assuan on stdin/stdout and
//! answers `GETPIN` or `CONFIRM` as its script says.
//!
//! Environment:
//! * `FAKE_PINENTRY_SCRIPT`: a file with one answer per line, one line per invocation, used in
//!   order across invocations (also concurrent ones: an invocation claims line N by creating
//!   `SCRIPT.N.taken` with `create_new`, which only one process can do). No line left: it
//!   records that and exits without a greeting.
//! * `FAKE_PINENTRY_LOG` (optional): one JSON line appended per invocation, written in one
//!   `write_all` (tests poll the file): `pid`, `answer` (the script verb only: never the PIN),
//!   `commands` (every command received, as `[VERB, decoded argument]`), `env` (the names of
//!   its environment variables), `overlong` (lines over Assuan's 1000 bytes), `started_ms` and
//!   `ended_ms` (Unix time). It is written when the client says `BYE` or closes stdin, or, for
//!   `hang`, `garbage` and `exit`, just before that happens.
//! * `FAKE_PINENTRY_FLAVOR`: what `GETINFO flavor` answers (default `gtk2`; `-`: an error, like
//!   a pinentry too old to know).
//!
//! Answers: `pin <PIN>` (the rest of the line; `D` + `OK` to GETPIN, `OK` to CONFIRM), `ok`
//! (`OK`: to GETPIN, an empty PIN), `cancel` (`ERR 83886179`), `close` (`S BUTTON_INFO close`
//! then `ERR 83886179`), `timeout` (`ERR 83886142`), `notok` (`ERR 83886194`), `err <N> <text>`
//! (`ERR N text`), `hang` (never answers), `garbage [<text>]` (a line that is not Assuan — the
//! text, if given — then exits), `exit` (exits without answering). `after <ms> <answer>` waits
//! first.

use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Take the next line of the script (`None`: none left).
fn claim(script: &Path) -> Option<String> {
    let text = std::fs::read_to_string(script).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let mut mark = script.as_os_str().to_owned();
        mark.push(format!(".{i}.taken"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(PathBuf::from(mark))
        {
            Ok(_) => return Some(line.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(_) => return None,
        }
    }
    None
}

fn decode(arg: &[u8]) -> String {
    let mut out = Vec::with_capacity(arg.len());
    let mut i = 0;
    while i < arg.len() {
        if arg[i] == b'%' && i + 2 < arg.len() {
            if let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(&arg[i + 1..i + 3]), 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(arg[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn escape(data: &str) -> String {
    let mut out = String::new();
    for c in data.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out
}

struct Record {
    log: Option<PathBuf>,
    value: Value,
    written: bool,
}

impl Record {
    fn command(&mut self, verb: &str, arg: &str) {
        self.value["commands"]
            .as_array_mut()
            .unwrap()
            .push(json!([verb, arg]));
    }

    fn write(&mut self) {
        if self.written {
            return;
        }
        self.written = true;
        self.value["ended_ms"] = json!(now_ms());
        let Some(log) = &self.log else { return };
        let mut text = self.value.to_string();
        text.push('\n');
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = f.write_all(text.as_bytes());
        }
    }
}

fn main() {
    let script = std::env::var_os("FAKE_PINENTRY_SCRIPT").map(PathBuf::from);
    let flavor = std::env::var("FAKE_PINENTRY_FLAVOR").unwrap_or_else(|_| "gtk2".into());
    let mut env: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    env.sort();
    let answer = script.as_deref().and_then(claim);
    let mut record = Record {
        log: std::env::var_os("FAKE_PINENTRY_LOG").map(PathBuf::from),
        value: json!({
            "pid": std::process::id(),
            "answer": Value::Null,
            "commands": [],
            "env": env,
            "overlong": 0,
            "started_ms": now_ms(),
        }),
        written: false,
    };
    let Some(answer) = answer else {
        record.value["answer"] = json!("none left");
        record.write();
        std::process::exit(3);
    };
    // `after <ms> <answer>`
    let (delay, answer) = match answer.strip_prefix("after ") {
        Some(rest) => {
            let (ms, rest) = rest.split_once(' ').unwrap_or((rest, "ok"));
            (ms.parse().unwrap_or(0), rest.to_string())
        }
        None => (0, answer),
    };
    let (verb, rest) = answer.split_once(' ').unwrap_or((answer.as_str(), ""));
    // Never the PIN itself.
    record.value["answer"] = json!(verb);

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut say = |text: &str| {
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    };
    say(&format!(
        "OK Pleased to meet you, process {}\n",
        std::process::id()
    ));
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => {
                record.command("(eof)", "");
                record.write();
                return;
            }
            Ok(_) => {}
        }
        if line.len() > 1000 {
            let n = record.value["overlong"].as_u64().unwrap_or(0) + 1;
            record.value["overlong"] = json!(n);
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let (cmd, arg) = match text.iter().position(|&b| b == b' ') {
            Some(i) => (&text[..i], &text[i + 1..]),
            None => (text, &[][..]),
        };
        let cmd = String::from_utf8_lossy(cmd).into_owned();
        let arg = decode(arg);
        record.command(&cmd, &arg);
        match cmd.as_str() {
            "BYE" => {
                record.write();
                say("OK closing connection\n");
                return;
            }
            "GETINFO" => match arg.as_str() {
                "flavor" if flavor != "-" => say(&format!("D {}\nOK\n", escape(&flavor))),
                "pid" => say(&format!("D {}\nOK\n", std::process::id())),
                _ => say("ERR 83886360 IPC parameter error <Pinentry>\n"),
            },
            "SETTITLE" | "SETDESC" | "SETPROMPT" | "SETERROR" | "SETOK" | "SETNOTOK"
            | "SETCANCEL" | "SETTIMEOUT" | "OPTION" => say("OK\n"),
            "GETPIN" | "CONFIRM" => {
                if delay > 0 {
                    std::thread::sleep(Duration::from_millis(delay));
                }
                match verb {
                    "pin" if cmd == "GETPIN" => say(&format!("D {}\nOK\n", escape(rest))),
                    "pin" | "ok" => say("OK\n"),
                    "cancel" => say("ERR 83886179 Operation cancelled <Pinentry>\n"),
                    "close" => {
                        say("S BUTTON_INFO close\nERR 83886179 Operation cancelled <Pinentry>\n")
                    }
                    "timeout" => say("ERR 83886142 Timeout <Pinentry>\n"),
                    "notok" => say("ERR 83886194 Not confirmed <Pinentry>\n"),
                    "err" => say(&format!("ERR {rest}\n")),
                    "hang" => {
                        record.write();
                        loop {
                            std::thread::sleep(Duration::from_secs(3600));
                        }
                    }
                    "garbage" => {
                        record.write();
                        let text = if rest.is_empty() {
                            "HELLO %ZZ this is not Assuan"
                        } else {
                            rest
                        };
                        say(&format!("{text}\n"));
                        std::process::exit(0);
                    }
                    "exit" => {
                        record.write();
                        std::process::exit(0);
                    }
                    _ => say("ERR 83886080 unknown script answer\n"),
                }
            }
            _ => say("ERR 536871187 Unknown IPC command <User defined source 1>\n"),
        }
    }
}
