//! Keyport: a small desktop agent that lets web pages use PKCS #11 tokens, with the consent of
//! the person at the keyboard.
//!
//! # Layout
//! * `main.rs`: thin: logging, flags and config, then [`app::run`].
//! * [`app`]: the server on its own runtime, the tray on the main thread, shutdown on a signal
//!   or the tray's Quit.
//! * [`config`]: flags (clap) over the TOML file.
//! * [`server`]: binds loopback, stacks the handshake [`guard`] and the limits around jsonrpsee.
//! * [`guard`]: Host and Origin checks before the WebSocket upgrade; the demo page.
//! * [`methods`]: the JSON-RPC methods, one file per group; [`methods::AppState`].
//! * [`consent`]: who may sign; the [`consent::ConsentUi`] trait the desktop prompt implements.
//! * [`desktop`]: the consent notification, the tray's model (toolkit-free) and its thin
//!   tray-icon/tao layer; docs/DESKTOP.md.
//! * [`backend`]: the [`backend::Backend`] trait; the cryptoki implementation and its login
//!   policy ([`backend::pkcs11`]); an in-memory fake for tests.
//! * [`x509`]: certificate parsing, DigestInfo, signature verification.
//! * [`error`]: the one error type and its mapping to wire codes.
//!
//! The wire contract (names, params, results, error codes) lives in the `keyport-protocol` crate.

pub mod app;
pub mod backend;
pub mod config;
pub mod consent;
pub mod desktop;
pub mod error;
pub mod guard;
pub mod methods;
pub mod server;
#[doc(hidden)]
pub mod testing;
pub mod x509;

/// Logging to stderr. `RUST_LOG` sets the level, but the JSON-RPC and WebSocket libraries are
/// capped at `warn` whatever it says: at trace level they would log raw requests, PINs included.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for target in [
        "jsonrpsee=warn",
        "jsonrpsee_server=warn",
        "jsonrpsee_core=warn",
        "soketto=warn",
    ] {
        filter = filter.add_directive(target.parse().expect("static directive"));
    }
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(|| LogWriter)
        .try_init();
}

static LOG_FILE: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();

/// From now on, also write the log to `path` (emptied first). For the tray, whose person has no
/// terminal: the tray's menu opens the folder that holds it.
pub fn also_log_to(path: &std::path::Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::File::create(path)?;
    let _ = LOG_FILE.set(file);
    Ok(())
}

/// stderr, plus the log file once [`also_log_to`] has set one.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(mut f) = LOG_FILE.get() {
            let _ = f.write_all(buf);
        }
        std::io::stderr().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
