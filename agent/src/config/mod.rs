//! Settings: command-line flags (clap) over the person's TOML file over the administrator's
//! (policy) over the defaults. Every key is documented in the README.
//!
//! * `settings.rs`: the table, one row per key; `table.rs` turns it into [`Config`],
//!   [`FileConfig`] (the TOML schema), [`KEYS`] and what `keyport config` shows.
//! * `cli.rs`: the flags and commands ([`Cli`], [`Command`]).
//! * `file.rs`: where the files are per platform, and reading one; the administrator's layers.
//! * `registry.rs`: the administrator's policy in the Windows registry (what Group Policy
//!   writes), read through the same table.
//! * `policy.rs`: the administrator's layers as policy.
//! * `module_env.rs`: `module_env`'s entries (`NAME` or `NAME=VALUE`).
//! * `report.rs`: where each value came from ([`Source`], [`Loaded`]), `keyport config`'s report
//!   and the log's summary line.

mod cli;
mod file;
mod module_env;
mod policy;
pub mod registry;
mod report;
mod settings;
mod table;

pub use cli::{Cli, Command};
pub use file::{
    system_config_path, user_config_path, user_state_dir, APP_DIR, SYSTEM_CONFIG, SYSTEM_CONFIG_VAR,
};
pub use module_env::ModuleEnv;
pub use report::{Loaded, Source};
pub use settings::{Config, FileConfig, ADMIN_KEYS, KEYS};
pub use table::{parse_listen, Kind};

use clap::ValueEnum;
use file::{Admin, Layer};
use policy::Policy;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

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
    #[error(
        "module_env entry {entry:?}: {why}. Write NAME to pass the agent's own variable on to the \
         libraries' processes, or NAME=VALUE to set it there (e.g. \"PKCS11SPY=/usr/lib/softhsm/libsofthsm2.so\")"
    )]
    ModuleEnv { entry: String, why: &'static str },
    #[error(
        "module_env sets {0}, but with module_isolation = false the libraries run inside the agent, \
         whose environment is the one it was started with: set {0} there (the systemd unit, the \
         autostart entry, the shell), or leave module_isolation on"
    )]
    ModuleEnvInProcess(String),
    #[error(
        "invalid language {0:?}: write a language tag or locale, e.g. de, pt-BR or fr_FR.UTF-8"
    )]
    Language(String),
    #[error("invalid policy value {value}: {message}")]
    Registry { value: String, message: String },
    #[error("{key} can only be set in the administrator's policy ({admin}), not in {path}")]
    AdminOnly {
        key: &'static str,
        admin: String,
        path: PathBuf,
    },
}

impl Config {
    /// Flags over the person's file over the administrator's (policy) over the defaults.
    pub fn load(cli: Cli) -> Result<Config, ConfigError> {
        Ok(Self::load_explained(cli)?.config)
    }

    /// [`Config::load`], with where each setting came from (`keyport config`).
    pub fn load_explained(cli: Cli) -> Result<Loaded, ConfigError> {
        Self::load_with(cli, Admin::read()?)
    }

    /// [`Config::load_explained`] with the administrator's layers given.
    fn load_with(cli: Cli, admin: Admin) -> Result<Loaded, ConfigError> {
        let user = Layer::person(cli.config.as_deref())?;
        for &key in ADMIN_KEYS {
            if user.settings.sets(key) {
                return Err(ConfigError::AdminOnly {
                    key,
                    admin: admin.places(),
                    path: user.path,
                });
            }
        }
        let admins = admin.layers().iter().map(|layer| (layer, "administrator"));
        let files = admins
            .chain([(&user, "yours")])
            .filter(|(layer, _)| layer.read)
            .map(|(layer, whose)| (layer.path.clone(), whose))
            .collect();
        let flags = FileConfig::from_flags(&cli);
        let mut layers = vec![
            (&flags, Source::Flag),
            (&user.settings, Source::User(user.path.clone())),
        ];
        for layer in admin.layers() {
            layers.push((&layer.settings, Source::Admin(layer.path.clone())));
        }
        let sources = report::provenance(&layers);
        let mut policy = Policy::new(&admin, sources);
        let merged = policy.merge(flags.over(user.settings))?;
        let mut config = Config::from_file(merged)?;
        policy.overrule(&mut config);
        Ok(Loaded {
            config,
            sources: policy.sources,
            files,
            notes: policy.notes,
        })
    }

    /// The flags over one file, without the administrator's policy.
    pub fn merge(cli: Cli, file: FileConfig) -> Result<Config, ConfigError> {
        Config::from_file(FileConfig::from_flags(&cli).over(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::time::Duration;

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
        // An absolute path on this platform (`/usr/lib/b.so` is not one on Windows).
        let module = std::env::temp_dir().join("b.so").display().to_string();
        let cfg =
            Config::merge(cli(&["--module", &module, "--listen", "127.0.0.1:0"]), file).unwrap();
        assert_eq!(cfg.modules, [module]);
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
