//! Settings: command-line flags (clap) over a TOML file. Every key is documented in the README.

use crate::origin::Origin;
use clap::{Parser, ValueEnum};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What happens to a WebSocket client that sends no `Origin` header (not a browser: a local
/// program, which could load the PKCS #11 library itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum NoOriginPolicy {
    /// Refuse the handshake (403).
    Deny,
    /// Connect; every signature needs the person's consent, like an allowed origin.
    #[default]
    Consent,
    /// Connect and sign without a prompt, like a trusted origin (tests, benchmarks, kiosks).
    Trust,
}

/// How the agent asks the person before a signature (docs/DESKTOP.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum ConsentMode {
    /// Desktop notifications where a notification server with buttons answers; otherwise a
    /// graphical pinentry (a terminal one only when the agent runs in a terminal); else none.
    #[default]
    Auto,
    /// Desktop notifications (no bus or no notification server: CONSENT_UNAVAILABLE).
    Notify,
    /// pinentry's confirmation dialog (Allow / Always allow this site / Deny).
    Pinentry,
    /// No prompt: only trusted origins sign; everyone else gets CONSENT_UNAVAILABLE.
    None,
}

#[derive(Debug, Parser)]
#[command(
    name = "keyport",
    version,
    about = "Keyport: PKCS #11 tokens for web pages, with the person's consent"
)]
pub struct Cli {
    /// Address to listen on (loopback only); port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Allowed PKCS #11 library (exact path); repeat for more. The first is the default.
    #[arg(long = "module", value_name = "PATH")]
    pub modules: Vec<String>,
    /// Origin (scheme://host[:port]) whose pages may connect; signing needs consent. Repeatable.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
    /// Origin pre-approved to connect and sign without a prompt. Repeatable.
    #[arg(long = "trust-origin", value_name = "ORIGIN")]
    pub trust_origins: Vec<String>,
    /// TOML configuration file (flags win over it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Clients without an Origin header: deny, consent (default) or trust.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub no_origin: Option<NoOriginPolicy>,
    /// Seconds the person has to answer a consent prompt (default 60).
    #[arg(long, value_name = "SECS")]
    pub consent_timeout: Option<u64>,
    /// Seconds of no signature after which a token is logged out (default 300).
    #[arg(long, value_name = "SECS")]
    pub idle_logout: Option<u64>,
    /// Log in and out for every signature instead of keeping the token logged in.
    #[arg(long)]
    pub no_login_cache: bool,
    /// Run without a tray icon.
    #[arg(long)]
    pub no_tray: bool,
    /// How to ask for consent: auto (default), notify, pinentry or none.
    #[arg(long, value_enum, value_name = "UI")]
    pub consent: Option<ConsentMode>,
    /// The pinentry program for the agent's own PIN prompt and the pinentry consent dialog
    /// (default: `pinentry` on PATH).
    #[arg(long, value_name = "PATH")]
    pub pinentry: Option<PathBuf>,
    /// Seconds a signature waits for the PIN typed on a PIN-pad reader (default 60).
    #[arg(long, value_name = "SECS")]
    pub pin_pad_timeout: Option<u64>,
    /// Demo mode: also allow the demo page origins http://127.0.0.1:PORT and http://localhost:PORT.
    #[arg(long)]
    pub demo: bool,
    /// File where "always allow" sites are remembered.
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    /// Folder whose files the agent serves at /demo in demo mode (index.html, *.js, *.css).
    #[arg(long, value_name = "DIR")]
    pub demo_dir: Option<PathBuf>,
    /// Also write the log to this file (capped at 4 MiB, then rotated to FILE.1).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

/// The TOML file. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub modules: Option<Vec<String>>,
    pub allow_origins: Option<Vec<String>>,
    pub trust_origins: Option<Vec<String>>,
    pub no_origin: Option<NoOriginPolicy>,
    pub consent_timeout_secs: Option<u64>,
    pub request_timeout_secs: Option<u64>,
    pub idle_logout_secs: Option<u64>,
    pub keep_logged_in: Option<bool>,
    pub max_connections: Option<u32>,
    pub max_connections_per_origin: Option<usize>,
    pub max_message_bytes: Option<u32>,
    pub max_in_flight_per_connection: Option<usize>,
    pub max_reply_backlog_bytes: Option<usize>,
    pub ping_interval_secs: Option<u64>,
    pub handshake_timeout_secs: Option<u64>,
    pub max_pending_consent_per_origin: Option<usize>,
    pub max_pending_consent: Option<usize>,
    pub tray: Option<bool>,
    pub consent: Option<ConsentMode>,
    pub pinentry: Option<PathBuf>,
    pub pin_pad_timeout_secs: Option<u64>,
    pub module_isolation: Option<bool>,
    pub module_env: Option<Vec<String>>,
    pub demo: Option<bool>,
    pub state_file: Option<PathBuf>,
    pub demo_dir: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
}

/// The settings in force.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Allowlisted PKCS #11 libraries; the first is the default.
    pub modules: Vec<String>,
    pub allow_origins: Vec<Origin>,
    pub trust_origins: Vec<Origin>,
    pub no_origin: NoOriginPolicy,
    pub consent_timeout: Duration,
    pub request_timeout: Duration,
    pub idle_logout: Duration,
    pub keep_logged_in: bool,
    pub max_connections: u32,
    /// WebSocket connections from one origin (no-Origin clients count as one origin).
    pub max_connections_per_origin: usize,
    pub max_message_bytes: u32,
    pub max_in_flight_per_connection: usize,
    /// Bytes of answers a client has not read yet; past it the connection is closed.
    pub max_reply_backlog_bytes: usize,
    /// How often a WebSocket peer is pinged; silent for two intervals = gone.
    pub ping_interval: Duration,
    /// Longest time a socket may take to finish its HTTP request or WebSocket handshake.
    pub handshake_timeout: Duration,
    pub max_pending_consent_per_origin: usize,
    pub max_pending_consent: usize,
    pub tray: bool,
    pub consent: ConsentMode,
    /// The pinentry program (None: `pinentry` on PATH).
    pub pinentry: Option<PathBuf>,
    /// How long a signature waits for the PIN typed on a PIN-pad reader.
    pub pin_pad_timeout: Duration,
    /// Run each PKCS #11 library in a process of its own (the default).
    pub module_isolation: bool,
    /// Environment variables a module host gets beyond the usual ones.
    pub module_env: Vec<String>,
    pub demo: bool,
    pub state_file: Option<PathBuf>,
    pub demo_dir: Option<PathBuf>,
    /// Also log to this file (capped, rotated once).
    pub log_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], keyport_protocol::DEFAULT_PORT)),
            modules: Vec::new(),
            allow_origins: Vec::new(),
            trust_origins: Vec::new(),
            no_origin: NoOriginPolicy::Consent,
            consent_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            idle_logout: Duration::from_secs(300),
            keep_logged_in: true,
            max_connections: 64,
            max_connections_per_origin: 16,
            max_message_bytes: 256 * 1024,
            max_in_flight_per_connection: 16,
            max_reply_backlog_bytes: 4 * 1024 * 1024,
            ping_interval: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_pending_consent_per_origin: crate::consent::PendingLimits::default().per_origin,
            max_pending_consent: crate::consent::PendingLimits::default().total,
            tray: true,
            consent: ConsentMode::Auto,
            pinentry: None,
            pin_pad_timeout: Duration::from_secs(60),
            module_isolation: true,
            module_env: Vec::new(),
            demo: false,
            state_file: None,
            demo_dir: None,
            log_file: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid origin {0:?}: write scheme://host[:port], e.g. https://app.example.com")]
    Origin(String),
    #[error("refusing to listen on {0}: Keyport listens on loopback addresses only")]
    NotLoopback(SocketAddr),
    #[error("invalid module path {0:?}: give the absolute path of the PKCS #11 library")]
    Module(String),
}

fn origins(list: Vec<String>) -> Result<Vec<Origin>, ConfigError> {
    list.iter()
        .map(|o| Origin::parse(o).map_err(|_| ConfigError::Origin(o.clone())))
        .collect()
}

impl Config {
    /// Flags over the file over the defaults.
    pub fn load(cli: Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Self::merge(cli, file)
    }

    pub fn merge(cli: Cli, file: FileConfig) -> Result<Config, ConfigError> {
        let d = Config::default();
        let pick = |flag: Vec<String>, file: Option<Vec<String>>| {
            if flag.is_empty() {
                file.unwrap_or_default()
            } else {
                flag
            }
        };
        let secs = |flag: Option<u64>, file: Option<u64>, default: Duration| {
            flag.or(file).map(Duration::from_secs).unwrap_or(default)
        };
        let cfg = Config {
            listen: cli.listen.or(file.listen).unwrap_or(d.listen),
            modules: pick(cli.modules, file.modules),
            allow_origins: origins(pick(cli.allow_origins, file.allow_origins))?,
            trust_origins: origins(pick(cli.trust_origins, file.trust_origins))?,
            no_origin: cli.no_origin.or(file.no_origin).unwrap_or(d.no_origin),
            consent_timeout: secs(
                cli.consent_timeout,
                file.consent_timeout_secs,
                d.consent_timeout,
            ),
            request_timeout: secs(None, file.request_timeout_secs, d.request_timeout),
            idle_logout: secs(cli.idle_logout, file.idle_logout_secs, d.idle_logout),
            keep_logged_in: !cli.no_login_cache && file.keep_logged_in.unwrap_or(d.keep_logged_in),
            max_connections: file.max_connections.unwrap_or(d.max_connections).max(1),
            max_connections_per_origin: file
                .max_connections_per_origin
                .unwrap_or(d.max_connections_per_origin)
                .max(1),
            max_message_bytes: file
                .max_message_bytes
                .unwrap_or(d.max_message_bytes)
                .max(1024),
            max_in_flight_per_connection: file
                .max_in_flight_per_connection
                .unwrap_or(d.max_in_flight_per_connection)
                // A connection's stuck token calls hold threads: never more than half of them.
                .clamp(1, crate::app::MAX_BLOCKING_THREADS / 2),
            // At least one largest answer must fit, or a big certificate list would close it.
            max_reply_backlog_bytes: file
                .max_reply_backlog_bytes
                .unwrap_or(d.max_reply_backlog_bytes)
                .max(crate::server::MAX_RESPONSE_BYTES + 1024),
            ping_interval: secs(None, file.ping_interval_secs, d.ping_interval)
                .max(Duration::from_secs(1)),
            handshake_timeout: secs(None, file.handshake_timeout_secs, d.handshake_timeout)
                .max(Duration::from_secs(1)),
            max_pending_consent_per_origin: file
                .max_pending_consent_per_origin
                .unwrap_or(d.max_pending_consent_per_origin)
                .max(1),
            max_pending_consent: file
                .max_pending_consent
                .unwrap_or(d.max_pending_consent)
                .max(1),
            tray: !cli.no_tray && file.tray.unwrap_or(d.tray),
            consent: cli.consent.or(file.consent).unwrap_or(d.consent),
            pinentry: cli.pinentry.or(file.pinentry),
            pin_pad_timeout: secs(
                cli.pin_pad_timeout,
                file.pin_pad_timeout_secs,
                d.pin_pad_timeout,
            )
            .max(Duration::from_secs(1)),
            module_isolation: file.module_isolation.unwrap_or(d.module_isolation),
            module_env: file.module_env.unwrap_or_default(),
            demo: cli.demo || file.demo.unwrap_or(false),
            state_file: cli.state_file.or(file.state_file),
            demo_dir: cli.demo_dir.or(file.demo_dir),
            log_file: cli.log_file.or(file.log_file),
        };
        if !cfg.listen.ip().is_loopback() {
            return Err(ConfigError::NotLoopback(cfg.listen));
        }
        if let Some(m) = cfg.modules.iter().find(|m| !Path::new(m).is_absolute()) {
            return Err(ConfigError::Module(m.clone()));
        }
        Ok(cfg)
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("keyport").chain(args.iter().copied()))
    }

    #[test]
    fn origins_are_normalised_and_checked() {
        let cfg = Config::merge(
            cli(&[
                "--allow-origin",
                "HTTPS://App.Example.com/",
                "--trust-origin",
                "https://bücher.example:443",
            ]),
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(cfg.allow_origins[0].as_str(), "https://app.example.com");
        assert_eq!(
            cfg.trust_origins[0].as_str(),
            "https://xn--bcher-kva.example"
        );
        for bad in [
            "*",
            "app.example.com",
            "https://a.example/path",
            "file:///x",
        ] {
            let err = Config::merge(cli(&["--allow-origin", bad]), FileConfig::default());
            assert!(matches!(err, Err(ConfigError::Origin(_))), "{bad}");
        }
    }

    #[test]
    fn flags_win_over_the_file() {
        let file: FileConfig = toml::from_str(
            r#"
            listen = "127.0.0.1:9000"
            modules = ["/usr/lib/a.so"]
            allow_origins = ["https://file.example"]
            consent_timeout_secs = 5
            "#,
        )
        .unwrap();
        let cfg = Config::merge(
            cli(&["--module", "/usr/lib/b.so", "--listen", "127.0.0.1:0"]),
            file,
        )
        .unwrap();
        assert_eq!(cfg.modules, ["/usr/lib/b.so"]);
        assert_eq!(cfg.listen.port(), 0);
        assert_eq!(cfg.allow_origins[0].as_str(), "https://file.example");
        assert_eq!(cfg.consent_timeout, Duration::from_secs(5));
    }

    #[test]
    fn consent_mode_from_flag_or_file() {
        let file = || toml::from_str::<FileConfig>("consent = \"none\"").unwrap();
        assert_eq!(
            Config::merge(cli(&[]), FileConfig::default())
                .unwrap()
                .consent,
            ConsentMode::Auto
        );
        assert_eq!(
            Config::merge(cli(&[]), file()).unwrap().consent,
            ConsentMode::None
        );
        assert_eq!(
            Config::merge(cli(&["--consent", "notify"]), file())
                .unwrap()
                .consent,
            ConsentMode::Notify
        );
        assert!(Cli::try_parse_from(["keyport", "--consent", "popup"]).is_err());
    }

    #[test]
    fn one_connection_never_gets_the_whole_blocking_pool() {
        let d = Config::default();
        assert!(d.max_in_flight_per_connection * 4 <= crate::app::MAX_BLOCKING_THREADS);
        let file: FileConfig = toml::from_str("max_in_flight_per_connection = 1000").unwrap();
        let cfg = Config::merge(cli(&[]), file).unwrap();
        assert!(cfg.max_in_flight_per_connection < crate::app::MAX_BLOCKING_THREADS);
    }

    #[test]
    fn unknown_keys_and_public_addresses_are_refused() {
        assert!(toml::from_str::<FileConfig>("listn = \"x\"").is_err());
        let err =
            Config::merge(cli(&["--listen", "0.0.0.0:1"]), FileConfig::default()).unwrap_err();
        assert!(matches!(err, ConfigError::NotLoopback(_)));
        let err =
            Config::merge(cli(&["--module", "libsofthsm2.so"]), FileConfig::default()).unwrap_err();
        assert!(matches!(err, ConfigError::Module(_)));
    }
}
