//! Where the settings live, and reading them into [`FileConfig`]s (the schema is the table's,
//! [`super::settings`]):
//!
//! | | Linux (and macOS) | Windows |
//! |---|---|---|
//! | the administrator's file | `/etc/keyport/keyport.toml` | `%ProgramData%\Keyport\keyport.toml` |
//! | the administrator's registry policy | — | `HKLM\Software\Policies\Keyport` ([`super::registry`]) |
//! | the person's file | `$XDG_CONFIG_HOME/keyport/keyport.toml` | `%APPDATA%\Keyport\keyport.toml` |
//! | the person's state ([`user_state_dir`]) | `$XDG_STATE_HOME/keyport` | `%LOCALAPPDATA%\Keyport` |
//!
//! The administrator's layers are one policy ([`Admin`]): key by key, the registry's value wins
//! over the file's, and both win over the person's (as [`super::policy`] says).

use super::{registry, ConfigError, FileConfig};
use std::path::{Path, PathBuf};

/// The administrator's file (policy), as the documentation names it.
#[cfg(not(windows))]
pub const SYSTEM_CONFIG: &str = "/etc/keyport/keyport.toml";
/// The administrator's file (policy), as the documentation names it.
#[cfg(windows)]
pub const SYSTEM_CONFIG: &str = r"%ProgramData%\Keyport\keyport.toml";
/// The test hook that names another administrator's file: honoured by debug builds only
/// ([`crate::hooks`]), so that nobody can drop the installed agent's policy with
/// `KEYPORT_SYSTEM_CONFIG=/dev/null`.
pub const SYSTEM_CONFIG_VAR: &str = "KEYPORT_SYSTEM_CONFIG";

/// The name of Keyport's folders in the person's and the system's folders: `keyport` where
/// folders are lowercase by custom, `Keyport` on Windows.
pub const APP_DIR: &str = if cfg!(windows) { "Keyport" } else { "keyport" };

/// The administrator's file: [`SYSTEM_CONFIG`] (a debug build honours `KEYPORT_SYSTEM_CONFIG`).
pub fn system_config_path() -> PathBuf {
    crate::hooks::var(SYSTEM_CONFIG_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(default_system_config)
}

#[cfg(not(windows))]
fn default_system_config() -> PathBuf {
    PathBuf::from(SYSTEM_CONFIG)
}

/// `%ProgramData%\Keyport\keyport.toml`, the folder asked of the shell (FOLDERID_ProgramData),
/// not of the variable: a person can set their own `ProgramData` variable, and would drop the
/// policy with it.
#[cfg(windows)]
fn default_system_config() -> PathBuf {
    use windows_sys::Win32::UI::Shell::FOLDERID_ProgramData;
    dirs_sys::known_folder(FOLDERID_ProgramData)
        .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"))
        .join(APP_DIR)
        .join("keyport.toml")
}

/// The person's file when no `--config` is given: `$XDG_CONFIG_HOME/keyport/keyport.toml`
/// (`%APPDATA%\Keyport\keyport.toml` on Windows).
pub fn user_config_path() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join(APP_DIR).join("keyport.toml"))
}

/// The folder for the person's state (what "always allow" remembers, a log): the platform's
/// state folder, `$XDG_STATE_HOME/keyport` (`~/.local/state/keyport`) on Linux, else the local
/// (not roaming) application data folder: `%LOCALAPPDATA%\Keyport` on Windows.
pub fn user_state_dir() -> Option<PathBuf> {
    dirs::state_dir()
        .or_else(dirs::data_local_dir)
        .map(|d| d.join(APP_DIR))
}

/// One layer of settings: where it is, and what it says (empty when an optional one is absent).
#[derive(Debug, Default)]
pub(super) struct Layer {
    /// The file's path, or the registry key's [`registry::label`].
    pub path: PathBuf,
    pub settings: FileConfig,
    /// Whether it was there to read.
    pub read: bool,
}

impl Layer {
    /// The person's file: `--config FILE` (which must exist), else the usual one if it exists.
    pub fn person(config: Option<&Path>) -> Result<Layer, ConfigError> {
        match (config, user_config_path()) {
            (Some(path), _) => Layer::read(path.to_path_buf(), true),
            (None, Some(path)) => Layer::read(path, false),
            (None, None) => Ok(Layer::default()),
        }
    }

    fn read(path: PathBuf, required: bool) -> Result<Layer, ConfigError> {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Layer {
                    path,
                    ..Layer::default()
                })
            }
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        // Unknown keys and wrong types are refused with serde's words, which name the key.
        match toml::from_str::<FileConfig>(&text) {
            Ok(settings) => Ok(Layer {
                path,
                settings,
                read: true,
            }),
            Err(e) => Err(ConfigError::Parse {
                path,
                message: e.to_string(),
            }),
        }
    }

    /// The registry's policy key, on Windows; elsewhere there is none.
    fn registry() -> Result<Option<Layer>, ConfigError> {
        #[cfg(windows)]
        return Layer::registry_at(&registry::policy_key());
        #[cfg(not(windows))]
        Ok(None)
    }

    /// The registry key `ROOT\path` as a layer (`None`: there is no such key).
    #[cfg(windows)]
    pub fn registry_at(key: &str) -> Result<Option<Layer>, ConfigError> {
        let path = registry::label(key);
        let tree = match registry::read(key) {
            Ok(Some(tree)) => tree,
            Ok(None) => return Ok(None),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        let env = |name: &str| std::env::var(name).ok();
        let settings = registry::file_config(&tree, key, &env)?;
        Ok(Some(Layer {
            path,
            settings,
            read: true,
        }))
    }
}

/// The administrator's policy: its layers, highest first (the registry's policy key, then the
/// file), and what they say together.
#[derive(Debug)]
pub(super) struct Admin {
    /// Never empty: the file is always there (read or not); the registry's layer comes first
    /// when there is one.
    layers: Vec<Layer>,
    /// The layers over each other, key by key.
    pub settings: FileConfig,
}

impl Admin {
    /// The machine's policy: the registry's key (Windows) over the administrator's file.
    pub fn read() -> Result<Admin, ConfigError> {
        let file = Layer::read(system_config_path(), false)?;
        Ok(Admin::of(
            Layer::registry()?.into_iter().chain([file]).collect(),
        ))
    }

    /// These layers, highest first; the last is the file.
    pub fn of(layers: Vec<Layer>) -> Admin {
        let settings = layers
            .iter()
            .rev()
            .fold(FileConfig::default(), |lower, layer| {
                layer.settings.clone().over(lower)
            });
        Admin { layers, settings }
    }

    /// The layers, highest first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Where the administrator's `key` comes from: the first layer that sets it, else the file
    /// (what a note names when no layer sets the key).
    pub fn path_of(&self, key: &str) -> &Path {
        self.layers
            .iter()
            .find(|layer| layer.settings.sets(key))
            .or(self.layers.last())
            .map_or(Path::new(""), |layer| &layer.path)
    }

    /// Every place the administrator's policy can be, for an error: `A or B`.
    pub fn places(&self) -> String {
        let mut places: Vec<String> = self
            .layers
            .iter()
            .map(|l| l.path.display().to_string())
            .collect();
        if cfg!(windows) && self.layers.len() == 1 {
            places.insert(
                0,
                registry::label(&registry::policy_key())
                    .display()
                    .to_string(),
            );
        }
        places.join(" or ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cli, Config, NoOriginPolicy, Source};
    use clap::Parser;

    const KEY: &str = r"HKLM\Software\Policies\Keyport";

    fn layer(path: PathBuf, toml: &str) -> Layer {
        Layer {
            path,
            settings: toml::from_str(toml).unwrap(),
            read: true,
        }
    }

    /// A module path that is absolute on this platform (only its form is checked).
    fn module(name: &str) -> String {
        std::env::temp_dir().join(name).display().to_string()
    }

    #[test]
    fn the_registry_is_over_the_administrators_file_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let file_path = dir.path().join("ProgramData-keyport.toml");
        let registry = layer(
            registry::label(KEY),
            "allow_origins = [\"https://reg.example\"]\nconsent_timeout_secs = 9",
        );
        let file = layer(
            file_path.clone(),
            &format!(
                "allow_origins = [\"https://file.example\"]\nmodules = [{:?}]\n\
                 no_origin = \"deny\"\nconsent_timeout_secs = 20\nuser_may_add_origins = false",
                module("a.dll")
            ),
        );
        let person = dir.path().join("mine.toml");
        std::fs::write(
            &person,
            "allow_origins = [\"https://mine.example\"]\nconsent_timeout_secs = 5",
        )
        .unwrap();
        let cli = Cli::parse_from(["keyport", "--config", person.to_str().unwrap()]);
        let loaded = Config::load_with(cli, Admin::of(vec![registry, file])).unwrap();
        let config = &loaded.config;
        let label = registry::label(KEY);

        // Key by key: the registry's origins, the file's modules and ceiling, the person's
        // timeout (not a policy key: the person's layer is over the administrator's).
        assert_eq!(config.allow_origins[0].as_str(), "https://reg.example");
        assert_eq!(config.allow_origins.len(), 1);
        assert_eq!(config.modules, [module("a.dll")]);
        assert_eq!(config.no_origin, NoOriginPolicy::Deny);
        assert_eq!(config.consent_timeout.as_secs(), 5);
        let source = |key: &str| loaded.sources[key].clone();
        assert_eq!(source("allow_origins"), Source::Admin(label.clone()));
        assert_eq!(
            source("trust_origins"),
            Source::AdminFixedBy(label.clone(), "allow_origins")
        );
        assert_eq!(source("modules"), Source::Admin(file_path.clone()));
        assert_eq!(source("no_origin"), Source::Admin(file_path.clone()));
        assert_eq!(source("consent_timeout_secs"), Source::User(person.clone()));
        assert_eq!(
            loaded.notes,
            [format!(
                "allow_origins: https://mine.example not used: the administrator's {} sets them \
                 (user_may_add_origins = true there would allow yours)",
                label.display()
            )]
        );
        let report = loaded.report();
        for line in [
            format!(r"# Read: registry {KEY} (administrator)"),
            format!("# Read: {} (administrator)", file_path.display()),
            format!(r#"allow_origins = ["https://reg.example"]  # administrator (registry {KEY})"#),
            format!(
                "no_origin = \"deny\"  # administrator ({})",
                file_path.display()
            ),
        ] {
            assert!(report.lines().any(|l| l == line), "{line}\n{report}");
        }

        // The registry's "yes" lets the person add, whatever the file says.
        let registry = layer(
            registry::label(KEY),
            "allow_origins = [\"https://reg.example\"]\nuser_may_add_origins = true",
        );
        let file = layer(file_path.clone(), "user_may_add_origins = false");
        let cli = Cli::parse_from(["keyport", "--config", person.to_str().unwrap()]);
        let loaded = Config::load_with(cli, Admin::of(vec![registry, file])).unwrap();
        let origins: Vec<&str> = loaded
            .config
            .allow_origins
            .iter()
            .map(|o| o.as_str())
            .collect();
        assert_eq!(origins, ["https://reg.example", "https://mine.example"]);
        assert_eq!(
            loaded.sources["allow_origins"],
            Source::AdminAndPerson(label)
        );
    }

    #[test]
    fn the_person_cannot_set_the_administrators_keys() {
        let dir = tempfile::tempdir().unwrap();
        let person = dir.path().join("mine.toml");
        std::fs::write(&person, "user_may_add_modules = true").unwrap();
        let cli = Cli::parse_from(["keyport", "--config", person.to_str().unwrap()]);
        let admin = Admin::of(vec![Layer {
            path: dir.path().join("admin.toml"),
            ..Layer::default()
        }]);
        let err = Config::load_with(cli, admin).unwrap_err().to_string();
        assert!(
            err.starts_with("user_may_add_modules can only be set in the administrator's policy ("),
            "{err}"
        );
        assert!(err.contains("admin.toml"), "{err}");
        // On Windows the registry's key is named too, even when it is absent.
        assert_eq!(
            err.contains(r"registry HKLM\Software\Policies\Keyport"),
            cfg!(windows)
        );
    }

    #[test]
    fn paths_follow_the_platform() {
        let user = user_config_path().unwrap();
        assert!(
            user.ends_with(Path::new(APP_DIR).join("keyport.toml")),
            "{user:?}"
        );
        assert!(user_state_dir().unwrap().ends_with(APP_DIR));
        let system = default_system_config();
        assert!(system.is_absolute(), "{system:?}");
        if cfg!(windows) {
            // %APPDATA%, %LOCALAPPDATA% and the shell's ProgramData (which the variable names
            // too, unless someone changed it).
            let var = |name| PathBuf::from(std::env::var_os(name).unwrap());
            assert_eq!(user, var("APPDATA").join(r"Keyport\keyport.toml"));
            assert_eq!(
                user_state_dir().unwrap(),
                var("LOCALAPPDATA").join("Keyport")
            );
            assert_eq!(system, var("ProgramData").join(r"Keyport\keyport.toml"));
        } else {
            assert_eq!(system, Path::new("/etc/keyport/keyport.toml"));
        }
    }
}
