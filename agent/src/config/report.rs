//! Where each setting in force came from ([`Source`], [`Loaded`]), and what `keyport config`
//! and the log at start say about the settings.

use super::{Config, FileConfig, KEYS};
use std::collections::BTreeMap;
use std::path::PathBuf;

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

/// Where each key's value comes from, before the policy: the first of `layers` (highest first)
/// that sets it, else the default.
pub(super) fn provenance(layers: &[(&FileConfig, Source)]) -> BTreeMap<&'static str, Source> {
    KEYS.iter()
        .map(|&key| {
            let source = layers
                .iter()
                .find(|(layer, _)| layer.sets(key))
                .map_or(Source::Default, |(_, source)| source.clone());
            (key, source)
        })
        .collect()
}

impl Config {
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
        self.report_with_defaults(&BTreeMap::new())
    }

    /// [`Loaded::report`], where a key left at its default says what that default is in effect
    /// (`defaults`: key → e.g. the path it would use), rather than an empty `""`.
    pub fn report_with_defaults(&self, defaults: &BTreeMap<&'static str, String>) -> String {
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
            match defaults.get(key) {
                Some(effective) if source == Source::Default => {
                    out.push_str(&format!("{key} = {value}  # default: {effective}\n"));
                }
                _ => out.push_str(&format!("{key} = {value}  # {source}\n")),
            }
        }
        let language = crate::i18n::for_this_system(self.config.language.as_deref());
        out.push_str(&format!("# Prompts speak {language}\n"));
        out
    }
}
