//! Logging that can neither fail a request nor fill a disk.
//!
//! * Writes never fail nor wait: a broken stderr (EPIPE, a full disk) loses log lines, never an
//!   answer; tracing-subscriber's own error report (`eprintln!`, which panics on a broken
//!   stderr) is off. Lines are written by a thread of their own behind a bounded, lossy queue
//!   (tracing-appender's non-blocking writer): a slow reader drops lines, it never holds up a
//!   request. [`flush`] before exiting.
//! * Bounded volume: at most [`MAX_LINE_BYTES`] per line, and a token bucket of
//!   [`BURST_LINES`] lines refilled at [`LINES_PER_SEC`]; lines over it are dropped and counted,
//!   and the next line written says how many were dropped.
//! * The log file (tray mode, or `--log-file`) is capped at [`FILE_CAP_BYTES`]; then it is
//!   renamed to `NAME.1` (replacing the older one) and a new file starts: at most twice the cap
//!   on disk.
//! * What a page sends is logged through [`quote`]: truncated and escaped.
//! * The libraries that would log raw frames at trace level (the PIN among them) are capped at
//!   `warn` by a filter of their own, whatever `RUST_LOG` says.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

pub const MAX_LINE_BYTES: usize = 2048;
pub const BURST_LINES: f64 = 2000.0;
pub const LINES_PER_SEC: f64 = 200.0;
pub const FILE_CAP_BYTES: u64 = 4 * 1024 * 1024;

/// Targets capped at `warn`: at trace level they log raw requests and frames.
const QUIET_TARGETS: &[&str] = &[
    "jsonrpsee",
    "soketto",
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "h2",
    "zbus",
];

/// `s` for a log line: at most `max` characters, control characters escaped, with its length
/// when cut. Use it for anything a page or a peer sent.
pub fn quote(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 16);
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push_str(&format!("…({} bytes)", s.len()));
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Start logging to stderr. `RUST_LOG` sets the level (default `info`).
pub fn init() {
    init_with(false, "info")
}

/// Logging for `keyport config`, `modules`, `doctor`: warnings and errors only (unless
/// `RUST_LOG` says otherwise), so that what they print is not drowned.
pub fn init_quiet() {
    init_with(false, "warn")
}

/// Logging for a module host: plain `LEVEL message fields` lines on stderr, which the agent
/// reads and logs again as its own (with time, target `keyport::host`, module and pid).
pub fn init_host() {
    init_with(true, "info")
}

fn init_with(host: bool, default_level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{filter, EnvFilter, Layer};

    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let quiet = filter::filter_fn(|meta| {
        let target = meta.target();
        // By prefix: jsonrpsee logs as `jsonrpsee-server`, `jsonrpsee_core::...` and more.
        let noisy = QUIET_TARGETS.iter().any(|t| target.starts_with(t));
        !noisy || *meta.level() <= tracing::Level::WARN
    });
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("keyport-log")
        .finish(LogWriter);
    *guard_slot() = Some(guard);
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(!host && std::io::stderr().is_terminal())
        .with_writer(writer)
        .log_internal_errors(false);
    let _ = if host {
        let fmt = fmt.without_time().with_target(false);
        tracing_subscriber::registry()
            .with(fmt.with_filter(env).with_filter(quiet))
            .try_init()
    } else {
        tracing_subscriber::registry()
            .with(fmt.with_filter(env).with_filter(quiet))
            .try_init()
    };
}

/// Lines waiting for the logging thread; more are dropped.
pub const QUEUED_LINES: usize = 4096;

fn guard_slot(
) -> std::sync::MutexGuard<'static, Option<tracing_appender::non_blocking::WorkerGuard>> {
    static GUARD: Mutex<Option<tracing_appender::non_blocking::WorkerGuard>> = Mutex::new(None);
    lock(&GUARD)
}

/// Write out the lines still queued (waits for the logging thread, briefly). Call before the
/// process exits; logging after it goes nowhere.
pub fn flush() {
    drop(guard_slot().take());
}

/// From now on, also write the log to `path` (emptied first), capped as the module docs say.
pub fn also_log_to(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = CappedFile::create(path.to_path_buf(), FILE_CAP_BYTES)?;
    *lock(&sink().file) = Some(file);
    Ok(())
}

/// From now on, also append the log to `path` (kept, not emptied: several processes, e.g. one
/// native-messaging host per page, may write it), capped as the module docs say.
pub fn also_append_to(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = CappedFile::append(path.to_path_buf(), FILE_CAP_BYTES)?;
    *lock(&sink().file) = Some(file);
    Ok(())
}

/// A file that is rotated to `NAME.1` when it would grow past its cap.
pub struct CappedFile {
    path: PathBuf,
    file: std::fs::File,
    written: u64,
    cap: u64,
}

impl CappedFile {
    pub fn create(path: PathBuf, cap: u64) -> std::io::Result<Self> {
        let file = std::fs::File::create(&path)?;
        Ok(CappedFile {
            path,
            file,
            written: 0,
            cap,
        })
    }

    /// Open `path` to append to it (created if missing); what it holds counts against the cap.
    pub fn append(path: PathBuf, cap: u64) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let written = file.metadata()?.len();
        Ok(CappedFile {
            path,
            file,
            written,
            cap,
        })
    }

    fn rotated(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }

    /// Append `buf`; errors are swallowed (a log must never fail its caller).
    pub fn write(&mut self, buf: &[u8]) {
        if self.written + buf.len() as u64 > self.cap && self.written > 0 {
            let _ = std::fs::rename(&self.path, self.rotated());
            // Appending: another process that shares the file may have started the new one.
            let reopened = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path);
            match reopened {
                Ok(f) => {
                    self.file = f;
                    self.written = 0;
                }
                // Cannot start a new file: stop writing this one rather than grow it.
                Err(_) => return,
            }
        }
        if self.file.write_all(buf).is_ok() {
            self.written += buf.len() as u64;
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
    dropped: u64,
}

struct Sink {
    bucket: Mutex<Bucket>,
    file: Mutex<Option<CappedFile>>,
}

fn sink() -> &'static Sink {
    static SINK: OnceLock<Sink> = OnceLock::new();
    SINK.get_or_init(|| Sink {
        bucket: Mutex::new(Bucket {
            tokens: BURST_LINES,
            at: Instant::now(),
            dropped: 0,
        }),
        file: Mutex::new(None),
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a line may be written now; `Some(n)` also reports `n` lines dropped before it.
fn admit() -> Option<u64> {
    let mut b = lock(&sink().bucket);
    let now = Instant::now();
    let refill = now.duration_since(b.at).as_secs_f64() * LINES_PER_SEC;
    b.tokens = (b.tokens + refill).min(BURST_LINES);
    b.at = now;
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        Some(std::mem::take(&mut b.dropped))
    } else {
        b.dropped += 1;
        None
    }
}

fn emit(buf: &[u8]) {
    if let Some(f) = lock(&sink().file).as_mut() {
        f.write(buf);
    }
    let _ = std::io::stderr().write_all(buf);
}

/// stderr plus the log file; one formatted event per `write` call.
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(dropped) = admit() else {
            return Ok(buf.len());
        };
        if dropped > 0 {
            emit(
                format!("keyport: {dropped} log lines dropped (over the rate limit)\n").as_bytes(),
            );
        }
        if buf.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !is_char_boundary(buf, cut) {
                cut -= 1;
            }
            let mut line = buf[..cut].to_vec();
            line.extend_from_slice(format!("…(line of {} bytes cut)\n", buf.len()).as_bytes());
            emit(&line);
        } else {
            emit(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

fn is_char_boundary(buf: &[u8], i: usize) -> bool {
    i == 0 || i >= buf.len() || (buf[i] as i8) >= -0x40
}

/// Windows: a program of the windows subsystem (the agent) starts without standard handles
/// unless its parent gave it some (a pipe, a file, Wine's terminal); started from a console, it
/// writes to that console. Elsewhere, nothing to do.
pub fn attach_console() {
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::Console::{
            AttachConsole, GetStdHandle, ATTACH_PARENT_PROCESS, STD_ERROR_HANDLE, STD_OUTPUT_HANDLE,
        };
        // SAFETY: GetStdHandle and AttachConsole have no preconditions; std reads the standard
        // handles anew at each write, so it writes to the console from here on.
        unsafe {
            if GetStdHandle(STD_OUTPUT_HANDLE).is_null() && GetStdHandle(STD_ERROR_HANDLE).is_null()
            {
                AttachConsole(ATTACH_PARENT_PROCESS);
            }
        }
    }
}

/// Print a line to stderr (not through the log: a message for the person who started us).
pub fn stderr_line(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Print a line to stdout; a closed or full stdout is not an error worth dying for.
pub fn stdout_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_cuts_and_escapes() {
        assert_eq!(quote("abc", 10), "abc");
        assert_eq!(quote("a\nb\u{1b}", 10), "a\\nb\\u{1b}");
        let long = "é".repeat(100);
        let q = quote(&long, 5);
        assert!(q.starts_with("ééééé…(200 bytes)"), "{q}");
    }

    #[test]
    fn the_file_is_rotated_at_its_cap_and_never_grows_past_it() {
        let dir = std::env::temp_dir().join(format!("keyport-log-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.log");
        let mut f = CappedFile::create(path.clone(), 1000).unwrap();
        for n in 0..500 {
            f.write(format!("line {n:04} of the log\n").as_bytes());
        }
        let main = std::fs::metadata(&path).unwrap().len();
        let old = std::fs::metadata(dir.join("k.log.1")).unwrap().len();
        assert!(main <= 1000 && old <= 1000, "{main} {old}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("line 0499 of the log\n"), "{text}");
        // Closed first: Windows does not remove a folder whose file is still open.
        drop(f);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_appended_file_keeps_what_it_had_and_counts_it_against_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.log");
        std::fs::write(&path, "earlier host\n").unwrap();
        let mut f = CappedFile::append(path.clone(), 30).unwrap();
        f.write(b"this host\n");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "earlier host\nthis host\n"
        );
        f.write(b"one line too many\n");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "one line too many\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("h.log.1")).unwrap(),
            "earlier host\nthis host\n"
        );
    }

    #[test]
    fn char_boundaries() {
        let s = "aé".as_bytes();
        assert!(is_char_boundary(s, 1));
        assert!(!is_char_boundary(s, 2));
    }
}
