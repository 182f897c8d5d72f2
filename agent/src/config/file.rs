//! The TOML files: where they are, and reading one into a [`FileConfig`] (the schema is the
//! table's, [`super::settings`]).

use super::{ConfigError, FileConfig};
use std::path::{Path, PathBuf};

/// The administrator's file (policy).
pub const SYSTEM_CONFIG: &str = "/etc/keyport/keyport.toml";
/// The test hook that names another administrator's file: honoured by debug builds only
/// ([`crate::hooks`]), so that nobody can drop the installed agent's policy with
/// `KEYPORT_SYSTEM_CONFIG=/dev/null`.
pub const SYSTEM_CONFIG_VAR: &str = "KEYPORT_SYSTEM_CONFIG";

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

/// One file: where it is, and what it says (empty when an optional file is absent).
#[derive(Debug, Default)]
pub(super) struct Layer {
    pub path: PathBuf,
    pub settings: FileConfig,
    /// Whether the file was there to read.
    pub read: bool,
}

impl Layer {
    /// The administrator's file, if there is one.
    pub fn admin() -> Result<Layer, ConfigError> {
        Layer::read(system_config_path(), false)
    }

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
}
