//! The table of settings: one row per key of the TOML file, in the order `keyport config` prints
//! them. A row says everything about its key: the [`Config`] field, its type and default, the
//! check a given value goes through, and the flag that sets it, if any. [`table`](super::table)
//! turns the rows into [`Config`], [`FileConfig`], [`KEYS`] and the rest.
//!
//! A new setting is one row here (plus, if it has a flag, the field in [`Cli`](super::Cli)), and its line in
//! the README's table.

use super::table::{at_least, listed, nonzero, settings, within};
use super::{ConfigError, ConsentMode, ModuleEnv, NoOriginPolicy};
use crate::consent::PendingLimits;
use crate::limits::{MAX_BLOCKING_THREADS, MAX_RESPONSE_BYTES};
use crate::origin::Origin;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

settings! {
    /// Where to listen: a loopback address and port.
    listen => listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], keyport_protocol::DEFAULT_PORT)),
        check loopback, flag |c| c.listen.clone();
    /// Allowlisted PKCS #11 libraries (absolute paths, `p11-kit:NAME` resolved); the first is the
    /// default.
    modules => modules: Vec<String> = Vec::new(),
        check modules, flag |c| listed(&c.modules);
    allow_origins => allow_origins: Vec<Origin> = Vec::new(),
        flag |c| listed(&c.allow_origins);
    trust_origins => trust_origins: Vec<Origin> = Vec::new(),
        flag |c| listed(&c.trust_origins);
    no_origin => no_origin: NoOriginPolicy = NoOriginPolicy::Consent,
        flag |c| c.no_origin;
    consent => consent: ConsentMode = ConsentMode::Auto,
        flag |c| c.consent;
    consent_timeout_secs => consent_timeout: Duration = secs(60),
        check nonzero("the consent timeout (--consent-timeout, consent_timeout_secs)"),
        flag |c| c.consent_timeout;
    request_timeout_secs => request_timeout: Duration = secs(30),
        check nonzero("request_timeout_secs");
    idle_logout_secs => idle_logout: Duration = secs(300),
        check nonzero("the idle logout (--idle-logout, idle_logout_secs)"),
        flag |c| c.idle_logout;
    keep_logged_in => keep_logged_in: bool = true,
        flag |c| c.no_login_cache.then_some(false);
    /// The pinentry program (None: `pinentry` on PATH).
    pinentry => pinentry: Option<PathBuf> = None,
        flag |c| c.pinentry.clone();
    /// How long a signature waits for the PIN typed on a PIN-pad reader.
    pin_pad_timeout_secs => pin_pad_timeout: Duration = secs(60),
        check at_least(secs(1)), flag |c| c.pin_pad_timeout;
    /// The language of prompts, dialogs and the tray (None: the environment's; agent/i18n/).
    language => language: Option<String> = None,
        check language, flag |c| c.language.clone();
    tray => tray: bool = true,
        flag |c| c.no_tray.then_some(false);
    /// Run each PKCS #11 library in a process of its own (the default).
    module_isolation => module_isolation: bool = true;
    /// Environment variables a module host gets beyond the usual ones: passed on (`NAME`) or
    /// set (`NAME=VALUE`).
    module_env => module_env: Vec<ModuleEnv> = Vec::new();
    max_connections => max_connections: u32 = 64,
        check at_least(1);
    /// WebSocket connections from one origin (no-Origin clients count as one origin).
    max_connections_per_origin => max_connections_per_origin: usize = 16,
        check at_least(1);
    max_message_bytes => max_message_bytes: u32 = 256 * 1024,
        check at_least(1024);
    /// Requests running at once per connection. A connection's stuck token calls hold threads:
    /// never more than half of them.
    max_in_flight_per_connection => max_in_flight_per_connection: usize = 16,
        check within(1, MAX_BLOCKING_THREADS / 2);
    /// Bytes of answers a client has not read yet; past it the connection is closed. At least
    /// one largest answer must fit, or a big certificate list would close it.
    max_reply_backlog_bytes => max_reply_backlog_bytes: usize = 4 * 1024 * 1024,
        check at_least(MAX_RESPONSE_BYTES + 1024);
    /// How often a WebSocket peer is pinged; silent for two intervals = gone.
    ping_interval_secs => ping_interval: Duration = secs(30),
        check at_least(secs(1));
    /// Longest time a socket may take to finish its HTTP request or WebSocket handshake.
    handshake_timeout_secs => handshake_timeout: Duration = secs(10),
        check at_least(secs(1));
    max_pending_consent_per_origin => max_pending_consent_per_origin: usize =
        PendingLimits::default().per_origin,
        check at_least(1);
    max_pending_consent => max_pending_consent: usize = PendingLimits::default().total,
        check at_least(1);
    /// Demo mode: serve the demo page and let its own origins in.
    demo => demo: bool = false,
        flag |c| c.demo.then_some(true);
    /// The folder served at /demo in demo mode.
    demo_dir => demo_dir: Option<PathBuf> = None,
        flag |c| c.demo_dir.clone();
    /// Where "always allow" answers are remembered (None: the desktop's default).
    state_file => state_file: Option<PathBuf> = None,
        flag |c| c.state_file.clone();
    /// Also log to this file (capped, rotated once).
    log_file => log_file: Option<PathBuf> = None,
        flag |c| c.log_file.clone();

    [admin only]
    /// Administrator's file only: the person may add modules to the ones it lists.
    user_may_add_modules,
    /// Administrator's file only: the person may add origins (allowed or trusted) to its own.
    user_may_add_origins,
}

/// `listen`'s check: Keyport listens on loopback addresses only.
fn loopback(addr: SocketAddr) -> Result<SocketAddr, ConfigError> {
    match addr.ip().is_loopback() {
        true => Ok(addr),
        false => Err(ConfigError::NotLoopback(addr)),
    }
}

/// `language`'s check: a language tag or locale name (`de`, `pt-BR`, `fr_FR.UTF-8`). One no
/// catalogue serves is not an error: the environment's language, then English, are used, and
/// `keyport config` says so.
fn language(value: Option<String>) -> Result<Option<String>, ConfigError> {
    match &value {
        Some(v) if crate::i18n::parse_locale(v).is_none() => Err(ConfigError::Language(v.clone())),
        _ => Ok(value),
    }
}

/// `modules`' check: `p11-kit:NAME` becomes the library's path (the person's registry seen
/// too: the administrator's names were resolved by the policy already), and every entry must be
/// an absolute path.
fn modules(entries: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let paths = entries
        .into_iter()
        .map(|entry| {
            crate::p11kit::resolve_entry(&entry)
                .map_err(|message| ConfigError::P11Kit { entry, message })
        })
        .collect::<Result<Vec<String>, ConfigError>>()?;
    match paths
        .iter()
        .find(|m| !std::path::Path::new(m).is_absolute())
    {
        Some(m) => Err(ConfigError::Module(m.clone())),
        None => Ok(paths),
    }
}

impl Config {
    /// The settings a layer (flags over files, after the policy) gives, checked: each key's own
    /// check (the table's), then those across keys.
    pub fn from_file(file: FileConfig) -> Result<Config, ConfigError> {
        let config = Config::from_layer(file)?;
        if config.demo && config.demo_dir.is_none() {
            return Err(ConfigError::DemoWithoutDir);
        }
        // A variable to set has no process of its own to go to when libraries run in the
        // agent's (setting it in the agent, with threads running, is not safe, and would reach
        // every library).
        let set: Vec<&str> = config
            .module_env
            .iter()
            .filter(|e| matches!(e, ModuleEnv::Set(..)))
            .map(ModuleEnv::name)
            .collect();
        if !config.module_isolation && !set.is_empty() {
            return Err(ConfigError::ModuleEnvInProcess(set.join(", ")));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cli;
    use clap::Parser;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("keyport").chain(args.iter().copied()))
    }

    #[test]
    fn module_env_is_checked_and_sets_nothing_in_process() {
        let parse = |text: &str| Config::merge(cli(&[]), toml::from_str(text).unwrap());
        let cfg = parse("module_env = [\"OPENSC_DEBUG\", \"PKCS11SPY=/usr/lib/x.so\"]").unwrap();
        assert_eq!(
            cfg.module_env,
            [
                ModuleEnv::Pass("OPENSC_DEBUG".into()),
                ModuleEnv::Set("PKCS11SPY".into(), "/usr/lib/x.so".into())
            ]
        );
        let err = parse("module_env = [\"PKCS11 SPY=/usr/lib/x.so\"]").unwrap_err();
        assert!(matches!(err, ConfigError::ModuleEnv { .. }), "{err}");
        let in_process = "module_isolation = false\nmodule_env = [\"A\", \"PKCS11SPY=/x.so\"]";
        let err = parse(in_process).unwrap_err().to_string();
        assert!(
            err.contains("sets PKCS11SPY") && err.contains("module_isolation"),
            "{err}"
        );
        // Passing a variable on is harmless in process (the agent has it already).
        parse("module_isolation = false\nmodule_env = [\"A\"]").unwrap();
    }

    #[test]
    fn one_connection_never_gets_the_whole_blocking_pool() {
        let d = Config::default();
        assert!(d.max_in_flight_per_connection * 4 <= crate::limits::MAX_BLOCKING_THREADS);
        let file: FileConfig = toml::from_str("max_in_flight_per_connection = 1000").unwrap();
        let cfg = Config::merge(cli(&[]), file).unwrap();
        assert!(cfg.max_in_flight_per_connection < crate::limits::MAX_BLOCKING_THREADS);
    }
}
