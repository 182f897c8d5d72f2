//! Settings: command-line flags (clap) over a TOML file. Every key is documented in the README.

use crate::origin::Origin;
use clap::{Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The administrator's file (policy).
pub const SYSTEM_CONFIG: &str = "/etc/keyport/keyport.toml";
/// The test hook that names another administrator's file: honoured by debug builds only
/// ([`crate::hooks`]), so that nobody can drop the installed agent's policy with
/// `KEYPORT_SYSTEM_CONFIG=/dev/null`.
pub const SYSTEM_CONFIG_VAR: &str = "KEYPORT_SYSTEM_CONFIG";

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
    about = "Keyport: PKCS #11 tokens for web pages, with the person's consent",
    long_about = "Keyport: PKCS #11 tokens for web pages, with the person's consent.\n\n\
        Without a command it runs the agent. Settings come from flags, then the person's \
        $XDG_CONFIG_HOME/keyport/keyport.toml (or --config FILE), then the administrator's \
        /etc/keyport/keyport.toml, which is policy: the modules and origins it lists cannot be \
        widened unless it says so. `keyport config` shows what is in force and why."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address to listen on: a loopback address and port (127.0.0.1:10443, [::1]:10443,
    /// localhost:10443); port 0 picks a free port.
    #[arg(long, value_name = "ADDR", global = true)]
    pub listen: Option<String>,
    /// Allowed PKCS #11 library (exact path); repeat for more. The first is the default.
    #[arg(long = "module", value_name = "PATH", global = true)]
    pub modules: Vec<String>,
    /// Origin (scheme://host[:port]) whose pages may connect; signing needs consent. Repeatable.
    #[arg(long = "allow-origin", value_name = "ORIGIN", global = true)]
    pub allow_origins: Vec<String>,
    /// Origin pre-approved to connect and sign without a prompt. Repeatable.
    #[arg(long = "trust-origin", value_name = "ORIGIN", global = true)]
    pub trust_origins: Vec<String>,
    /// TOML configuration file (flags win over it).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Clients without an Origin header: deny, consent (default) or trust.
    #[arg(long, value_enum, value_name = "POLICY", global = true)]
    pub no_origin: Option<NoOriginPolicy>,
    /// Seconds the person has to answer a consent prompt (default 60).
    #[arg(long, value_name = "SECS", global = true)]
    pub consent_timeout: Option<u64>,
    /// Seconds of no signature after which a token is logged out (default 300).
    #[arg(long, value_name = "SECS", global = true)]
    pub idle_logout: Option<u64>,
    /// Log in and out for every signature instead of keeping the token logged in.
    #[arg(long, global = true)]
    pub no_login_cache: bool,
    /// Run without a tray icon.
    #[arg(long, global = true)]
    pub no_tray: bool,
    /// How to ask for consent: auto (default), notify, pinentry or none.
    #[arg(long, value_enum, value_name = "UI", global = true)]
    pub consent: Option<ConsentMode>,
    /// The pinentry program for the agent's own PIN prompt and the pinentry consent dialog
    /// (default: `pinentry` on PATH).
    #[arg(long, value_name = "PATH", global = true)]
    pub pinentry: Option<PathBuf>,
    /// Seconds a signature waits for the PIN typed on a PIN-pad reader (default 60).
    #[arg(long, value_name = "SECS", global = true)]
    pub pin_pad_timeout: Option<u64>,
    /// Demo mode: serve the demo page and also allow its origins http://127.0.0.1:PORT and
    /// http://localhost:PORT (not where the administrator's file fixes the origins).
    #[arg(long, global = true)]
    pub demo: bool,
    /// File where "always allow" sites are remembered.
    #[arg(long, value_name = "FILE", global = true)]
    pub state_file: Option<PathBuf>,
    /// Folder whose files the agent serves at /demo in demo mode (index.html, *.js, *.css).
    #[arg(long, value_name = "DIR", global = true)]
    pub demo_dir: Option<PathBuf>,
    /// Also write the log to this file (capped at 4 MiB, then rotated to FILE.1).
    #[arg(long, value_name = "FILE", global = true)]
    pub log_file: Option<PathBuf>,
}

/// What `keyport` does besides running the agent.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print the settings in force, and where each one comes from.
    Config,
    /// List the PKCS #11 modules registered with p11-kit, whether each loads, and whether it
    /// is allowed.
    Modules,
    /// Check what Keyport needs here and explain what is missing (exit status 1 when something
    /// stops signing).
    Doctor {
        /// Print the checks as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The TOML file. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
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
    /// Administrator's file only: the person may add modules to the ones it lists.
    pub user_may_add_modules: Option<bool>,
    /// Administrator's file only: the person may add origins (allowed or trusted) to its own.
    pub user_may_add_origins: Option<bool>,
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
    #[error("invalid module path {0:?}: give the absolute path of the PKCS #11 library, or p11-kit:NAME")]
    Module(String),
    #[error("module {entry:?}: {message}")]
    P11Kit { entry: String, message: String },
    #[error("invalid listen address {0:?}: write a loopback address and port, e.g. 127.0.0.1:10443, [::1]:10443 or localhost:10443")]
    Listen(String),
    #[error("{0} must be at least 1 second: with 0 every request would time out at once")]
    ZeroTimeout(&'static str),
    #[error("--demo serves the demo page from --demo-dir (or `demo_dir`): give the folder that holds index.html (js-client/demo in the source tree)")]
    DemoWithoutDir,
    #[error("{key} can only be set in the administrator's file ({admin}), not in {path}")]
    AdminOnly {
        key: &'static str,
        admin: String,
        path: PathBuf,
    },
}

/// An address to listen on: `IP:PORT`, or `localhost:PORT` (loopback). Anything else is refused
/// later if it is not loopback.
pub fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some(port) = text
        .strip_prefix("localhost:")
        .and_then(|p| p.parse::<u16>().ok())
    {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Err(ConfigError::Listen(text.to_string()))
}

fn origins(list: Vec<String>) -> Result<Vec<Origin>, ConfigError> {
    list.iter()
        .map(|o| Origin::parse(o).map_err(|_| ConfigError::Origin(o.clone())))
        .collect()
}

/// Where a setting in force comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    /// The administrator's file.
    Admin(PathBuf),
    /// The person's file.
    User(PathBuf),
    /// A command-line flag.
    Flag,
    /// The administrator's list, and the person's additions it allows.
    AdminAndPerson(PathBuf),
    /// The administrator's file does not set this key, but its other key fixes it (`allow_origins`
    /// fixes `trust_origins` and the demo origins, and the other way round).
    AdminFixedBy(PathBuf, &'static str),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::Admin(p) => write!(f, "administrator ({})", p.display()),
            Source::User(p) => write!(f, "yours ({})", p.display()),
            Source::Flag => write!(f, "command line"),
            Source::AdminAndPerson(p) => {
                write!(f, "administrator ({}) plus yours", p.display())
            }
            Source::AdminFixedBy(p, key) => {
                write!(
                    f,
                    "administrator ({}: its {key} fixes the origins)",
                    p.display()
                )
            }
        }
    }
}

/// The settings in force, and how they came to be.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Each file key in force, and where it came from.
    pub sources: BTreeMap<&'static str, Source>,
    /// The files read: (path, "administrator" or "yours").
    pub files: Vec<(PathBuf, &'static str)>,
    /// What the administrator's policy overruled, for the log and `keyport config`.
    pub notes: Vec<String>,
}

impl Config {
    /// The value of file key `key` in force, as TOML (for `keyport config`).
    pub fn value_of(&self, key: &str) -> toml::Value {
        use toml::Value as V;
        let secs = |d: Duration| V::Integer(d.as_secs() as i64);
        let strings = |v: &[String]| V::Array(v.iter().cloned().map(V::String).collect());
        let origins =
            |v: &[Origin]| V::Array(v.iter().map(|o| V::String(o.as_str().into())).collect());
        let path = |p: &Option<PathBuf>| match p {
            Some(p) => V::String(p.display().to_string()),
            None => V::String(String::new()),
        };
        let lower = |d: &dyn std::fmt::Debug| V::String(format!("{d:?}").to_lowercase());
        match key {
            "listen" => V::String(self.listen.to_string()),
            "modules" => strings(&self.modules),
            "allow_origins" => origins(&self.allow_origins),
            "trust_origins" => origins(&self.trust_origins),
            "no_origin" => lower(&self.no_origin),
            "consent" => lower(&self.consent),
            "consent_timeout_secs" => secs(self.consent_timeout),
            "request_timeout_secs" => secs(self.request_timeout),
            "idle_logout_secs" => secs(self.idle_logout),
            "keep_logged_in" => V::Boolean(self.keep_logged_in),
            "pinentry" => path(&self.pinentry),
            "pin_pad_timeout_secs" => secs(self.pin_pad_timeout),
            "tray" => V::Boolean(self.tray),
            "module_isolation" => V::Boolean(self.module_isolation),
            "module_env" => strings(&self.module_env),
            "max_connections" => V::Integer(self.max_connections.into()),
            "max_connections_per_origin" => V::Integer(self.max_connections_per_origin as i64),
            "max_message_bytes" => V::Integer(self.max_message_bytes.into()),
            "max_in_flight_per_connection" => V::Integer(self.max_in_flight_per_connection as i64),
            "max_reply_backlog_bytes" => V::Integer(self.max_reply_backlog_bytes as i64),
            "ping_interval_secs" => secs(self.ping_interval),
            "handshake_timeout_secs" => secs(self.handshake_timeout),
            "max_pending_consent_per_origin" => {
                V::Integer(self.max_pending_consent_per_origin as i64)
            }
            "max_pending_consent" => V::Integer(self.max_pending_consent as i64),
            "demo" => V::Boolean(self.demo),
            "demo_dir" => path(&self.demo_dir),
            "state_file" => path(&self.state_file),
            "log_file" => path(&self.log_file),
            _ => V::String(String::new()),
        }
    }

    /// One line for the log at start: modules, origins, consent mode.
    pub fn summary(&self) -> String {
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        format!(
            "modules: {}; allowed origins: {}; trusted origins: {}; clients without Origin: {}; consent: {}",
            list(self.modules.clone()),
            list(
                self.allow_origins
                    .iter()
                    .map(|o| o.as_str().to_string())
                    .chain(self.demo.then(|| "the demo page's own origin".to_string()))
                    .collect()
            ),
            list(self.trust_origins.iter().map(|o| o.as_str().to_string()).collect()),
            format!("{:?}", self.no_origin).to_lowercase(),
            format!("{:?}", self.consent).to_lowercase(),
        )
    }
}

impl Loaded {
    /// What `keyport config` prints: every setting in force as TOML, with where it came from.
    pub fn report(&self) -> String {
        let mut out = String::from("# Keyport's settings in force.\n");
        if self.files.is_empty() {
            out.push_str("# No configuration file was found; defaults and flags only.\n");
        }
        for (path, whose) in &self.files {
            out.push_str(&format!("# Read: {} ({whose})\n", path.display()));
        }
        for note in &self.notes {
            out.push_str(&format!("# Policy: {note}\n"));
        }
        for key in KEYS {
            let value = self.config.value_of(key);
            let source = self.sources.get(key).cloned().unwrap_or(Source::Default);
            out.push_str(&format!("{key} = {value}  # {source}\n"));
        }
        out
    }
}

/// The administrator's file: [`SYSTEM_CONFIG`] (a debug build honours `KEYPORT_SYSTEM_CONFIG`).
pub fn system_config_path() -> PathBuf {
    crate::hooks::var(SYSTEM_CONFIG_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(SYSTEM_CONFIG))
}

/// The person's file when no `--config` is given: `$XDG_CONFIG_HOME/keyport/keyport.toml`.
pub fn user_config_path() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("keyport").join("keyport.toml"))
}

/// Every key a file may set, in the order `keyport config` prints them.
pub const KEYS: &[&str] = &[
    "listen",
    "modules",
    "allow_origins",
    "trust_origins",
    "no_origin",
    "consent",
    "consent_timeout_secs",
    "request_timeout_secs",
    "idle_logout_secs",
    "keep_logged_in",
    "pinentry",
    "pin_pad_timeout_secs",
    "tray",
    "module_isolation",
    "module_env",
    "max_connections",
    "max_connections_per_origin",
    "max_message_bytes",
    "max_in_flight_per_connection",
    "max_reply_backlog_bytes",
    "ping_interval_secs",
    "handshake_timeout_secs",
    "max_pending_consent_per_origin",
    "max_pending_consent",
    "demo",
    "demo_dir",
    "state_file",
    "log_file",
];

/// The keys a flag of `cli` sets.
fn flag_keys(cli: &Cli) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut set = |on: bool, key| {
        if on {
            keys.push(key)
        }
    };
    set(cli.listen.is_some(), "listen");
    set(!cli.modules.is_empty(), "modules");
    set(!cli.allow_origins.is_empty(), "allow_origins");
    set(!cli.trust_origins.is_empty(), "trust_origins");
    set(cli.no_origin.is_some(), "no_origin");
    set(cli.consent.is_some(), "consent");
    set(cli.consent_timeout.is_some(), "consent_timeout_secs");
    set(cli.idle_logout.is_some(), "idle_logout_secs");
    set(cli.no_login_cache, "keep_logged_in");
    set(cli.pinentry.is_some(), "pinentry");
    set(cli.pin_pad_timeout.is_some(), "pin_pad_timeout_secs");
    set(cli.no_tray, "tray");
    set(cli.demo, "demo");
    set(cli.demo_dir.is_some(), "demo_dir");
    set(cli.state_file.is_some(), "state_file");
    set(cli.log_file.is_some(), "log_file");
    keys
}

/// A file as a TOML table, and as settings (both `None` when an optional file is absent).
fn read_table(path: &Path, required: bool) -> Result<Option<toml::Table>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let parse_error = |e: &dyn std::fmt::Display| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    // Checked as settings first: unknown keys and wrong types are refused with serde's words.
    toml::from_str::<FileConfig>(&text).map_err(|e| parse_error(&e))?;
    text.parse::<toml::Table>()
        .map(Some)
        .map_err(|e| parse_error(&e))
}

/// The strings of a list key in a table.
fn strings(table: &toml::Table, key: &str) -> Option<Vec<String>> {
    table.get(key).and_then(|v| v.as_array()).map(|a| {
        a.iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    })
}

/// How permissive a no-Origin policy is (the administrator's is a ceiling).
fn openness(p: NoOriginPolicy) -> u8 {
    match p {
        NoOriginPolicy::Deny => 0,
        NoOriginPolicy::Consent => 1,
        NoOriginPolicy::Trust => 2,
    }
}

impl Config {
    /// Flags over the person's file over the administrator's (policy) over the defaults.
    pub fn load(cli: Cli) -> Result<Config, ConfigError> {
        Ok(Self::load_explained(cli)?.config)
    }

    /// [`Config::load`], with where each setting came from (`keyport config`).
    pub fn load_explained(mut cli: Cli) -> Result<Loaded, ConfigError> {
        let admin_path = system_config_path();
        let admin = read_table(&admin_path, false)?;
        let (user_path, user) = match &cli.config {
            Some(path) => (Some(path.clone()), read_table(path, true)?),
            None => match user_config_path() {
                Some(path) => {
                    let table = read_table(&path, false)?;
                    (Some(path), table)
                }
                None => (None, None),
            },
        };
        let mut files = Vec::new();
        if admin.is_some() {
            files.push((admin_path.clone(), "administrator"));
        }
        if let (Some(p), Some(_)) = (&user_path, &user) {
            files.push((p.clone(), "yours"));
        }
        let admin = admin.unwrap_or_default();
        let user = user.unwrap_or_default();
        let user_path = user_path.unwrap_or_default();
        for key in ["user_may_add_modules", "user_may_add_origins"] {
            if user.contains_key(key) {
                return Err(ConfigError::AdminOnly {
                    key,
                    admin: admin_path.display().to_string(),
                    path: user_path,
                });
            }
        }
        let flags = flag_keys(&cli);
        let mut sources: BTreeMap<&'static str, Source> = BTreeMap::new();
        for key in KEYS {
            let source = if flags.contains(key) {
                Source::Flag
            } else if user.contains_key(*key) {
                Source::User(user_path.clone())
            } else if admin.contains_key(*key) {
                Source::Admin(admin_path.clone())
            } else {
                Source::Default
            };
            sources.insert(key, source);
        }

        // The person's settings over the administrator's, key by key; then the policy.
        let mut merged = admin.clone();
        for (k, v) in &user {
            merged.insert(k.clone(), v.clone());
        }
        let mut notes = Vec::new();
        let allows = |key: &str| admin.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
        let may_add_origins = allows("user_may_add_origins");
        // The origin list the administrator's file sets, if any: it fixes both origin lists
        // (and the demo origins), or a page the administrator never listed could be trusted
        // through the other list.
        let fixing_origins = ["allow_origins", "trust_origins"]
            .into_iter()
            .find(|key| admin.contains_key(*key))
            .filter(|_| !may_add_origins);
        for (key, may) in [
            ("modules", allows("user_may_add_modules")),
            ("allow_origins", may_add_origins),
            ("trust_origins", may_add_origins),
        ] {
            let (fixed, fixed_by) = match (strings(&admin, key), fixing_origins) {
                (Some(list), _) => (list, None),
                (None, Some(by)) if key != "modules" => (Vec::new(), Some(by)),
                (None, _) => continue,
            };
            let person = match key {
                "modules" => std::mem::take(&mut cli.modules),
                "allow_origins" => std::mem::take(&mut cli.allow_origins),
                _ => std::mem::take(&mut cli.trust_origins),
            };
            let person = if person.is_empty() {
                strings(&user, key).unwrap_or_default()
            } else {
                person
            };
            let extra: Vec<String> = person.into_iter().filter(|p| !fixed.contains(p)).collect();
            // The administrator's `p11-kit:NAME` means the system's module of that name, never
            // the one the person's registry names (~/.config/pkcs11/modules); the person's own
            // entries are resolved with the rest, later.
            let mut list = if key == "modules" {
                fixed
                    .iter()
                    .map(|entry| {
                        crate::p11kit::resolve_system_entry(entry).map_err(|message| {
                            ConfigError::P11Kit {
                                entry: entry.clone(),
                                message,
                            }
                        })
                    })
                    .collect::<Result<Vec<String>, ConfigError>>()?
            } else {
                fixed.clone()
            };
            if may && !extra.is_empty() {
                list.extend(extra);
                sources.insert(key, Source::AdminAndPerson(admin_path.clone()));
            } else {
                if !extra.is_empty() {
                    let why = match fixed_by {
                        Some(by) => format!(
                            "the administrator's {} sets {by}, which fixes both origin lists",
                            admin_path.display()
                        ),
                        None => format!("the administrator's {} sets them", admin_path.display()),
                    };
                    notes.push(format!(
                        "{key}: {} not used: {why}{}",
                        extra.join(", "),
                        if key == "modules" {
                            " (user_may_add_modules = true there would allow yours)"
                        } else {
                            " (user_may_add_origins = true there would allow yours)"
                        }
                    ));
                }
                let source = match fixed_by {
                    Some(by) => Source::AdminFixedBy(admin_path.clone(), by),
                    None => Source::Admin(admin_path.clone()),
                };
                sources.insert(key, source);
            }
            merged.insert(
                key.to_string(),
                toml::Value::Array(list.into_iter().map(toml::Value::String).collect()),
            );
        }
        let mut file: FileConfig =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: user_path.clone(),
                    message: e.to_string(),
                })?;
        file.user_may_add_modules = None;
        file.user_may_add_origins = None;
        let admin_no_origin = admin
            .get("no_origin")
            .and_then(|v| v.as_str())
            .and_then(|v| NoOriginPolicy::from_str(v, true).ok());
        let admin_isolation = admin.get("module_isolation").and_then(|v| v.as_bool());
        let mut config = Self::merge(cli, file)?;
        if let Some(ceiling) = admin_no_origin {
            if openness(config.no_origin) > openness(ceiling) {
                notes.push(format!(
                    "no_origin: {:?} not used: the administrator allows at most {ceiling:?}",
                    config.no_origin
                ));
                config.no_origin = ceiling;
                sources.insert("no_origin", Source::Admin(admin_path.clone()));
            }
        }
        // Demo mode lets in the demo page's own origins (http://127.0.0.1:PORT,
        // http://localhost:PORT), which any local program can send: not where the administrator
        // fixes the origins, unless the administrator's own file turns demo mode on.
        if let Some(by) = fixing_origins {
            if config.demo && admin.get("demo").and_then(|v| v.as_bool()) != Some(true) {
                notes.push(format!(
                    "demo: not used: the administrator's {} sets {by}, which fixes the origins \
                     pages may connect from, so demo mode cannot add the demo page's own \
                     (http://127.0.0.1:PORT, http://localhost:PORT); the demo page is not served \
                     (user_may_add_origins = true there would allow it)",
                    admin_path.display()
                ));
                config.demo = false;
                sources.insert("demo", Source::AdminFixedBy(admin_path.clone(), by));
            }
        }
        if admin_isolation == Some(true) && !config.module_isolation {
            notes.push(
                "module_isolation: false not used: the administrator requires libraries to run \
                 in processes of their own"
                    .into(),
            );
            config.module_isolation = true;
            sources.insert("module_isolation", Source::Admin(admin_path.clone()));
        }
        Ok(Loaded {
            config,
            sources,
            files,
            notes,
        })
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
        let listen = match cli.listen.as_deref().or(file.listen.as_deref()) {
            Some(text) => parse_listen(text)?,
            None => d.listen,
        };
        let modules = pick(cli.modules, file.modules)
            .into_iter()
            .map(|entry| {
                crate::p11kit::resolve_entry(&entry)
                    .map_err(|message| ConfigError::P11Kit { entry, message })
            })
            .collect::<Result<Vec<String>, ConfigError>>()?;
        let cfg = Config {
            listen,
            modules,
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
                .clamp(1, crate::limits::MAX_BLOCKING_THREADS / 2),
            // At least one largest answer must fit, or a big certificate list would close it.
            max_reply_backlog_bytes: file
                .max_reply_backlog_bytes
                .unwrap_or(d.max_reply_backlog_bytes)
                .max(crate::limits::MAX_RESPONSE_BYTES + 1024),
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
        if cfg.request_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout("request_timeout_secs"));
        }
        if cfg.consent_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout(
                "the consent timeout (--consent-timeout, consent_timeout_secs)",
            ));
        }
        if cfg.idle_logout.is_zero() {
            return Err(ConfigError::ZeroTimeout(
                "the idle logout (--idle-logout, idle_logout_secs)",
            ));
        }
        if cfg.demo && cfg.demo_dir.is_none() {
            return Err(ConfigError::DemoWithoutDir);
        }
        if let Some(m) = cfg.modules.iter().find(|m| !Path::new(m).is_absolute()) {
            return Err(ConfigError::Module(m.clone()));
        }
        Ok(cfg)
    }
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
        assert!(d.max_in_flight_per_connection * 4 <= crate::limits::MAX_BLOCKING_THREADS);
        let file: FileConfig = toml::from_str("max_in_flight_per_connection = 1000").unwrap();
        let cfg = Config::merge(cli(&[]), file).unwrap();
        assert!(cfg.max_in_flight_per_connection < crate::limits::MAX_BLOCKING_THREADS);
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
