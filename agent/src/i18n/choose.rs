//! Which language the person reads: the configuration's `language` (the person's, else the
//! administrator's default), else the environment's locale chain (Linux: `LANGUAGE`'s list, then
//! `LC_ALL`, `LC_MESSAGES`, `LANG`, as gettext reads them) or the system's UI languages (Windows,
//! macOS), each matched against the catalogues shipped along its chain (`pt_BR` → `pt`); English
//! when nothing matches.

use super::SOURCES;
use fluent_langneg::{negotiate_languages, NegotiationStrategy};
use unic_langid::LanguageIdentifier;

/// The language in use and where the choice came from (`keyport config` shows both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// A code of [`SOURCES`].
    pub language: &'static str,
    pub source: ChoiceSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChoiceSource {
    /// The configuration's `language` (its value).
    Config(String),
    /// An environment variable (its name and value).
    Environment(&'static str, String),
    /// The system's list of UI languages (Windows, macOS), the one that matched.
    System(String),
    /// Nothing asked for a language shipped (what was asked, if anything): English.
    Default(Option<String>),
}

impl std::fmt::Display for Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            ChoiceSource::Config(value) => {
                write!(
                    f,
                    "{} (the configuration's language = {value:?})",
                    self.language
                )
            }
            ChoiceSource::Environment(var, value) => {
                write!(f, "{} (from {var}={value})", self.language)
            }
            ChoiceSource::System(value) => {
                write!(f, "{} (the system's UI language {value})", self.language)
            }
            ChoiceSource::Default(None) => write!(f, "{} (the default)", self.language),
            ChoiceSource::Default(Some(asked)) => write!(
                f,
                "{} (the default: no catalogue for {asked}; shipped: {})",
                self.language,
                super::languages().collect::<Vec<_>>().join(" ")
            ),
        }
    }
}

/// A POSIX locale name or a BCP 47 tag as a language identifier: `fr_FR.UTF-8@euro` → `fr-FR`.
/// `None` for `C`, `POSIX` and what does not parse.
pub fn parse_locale(name: &str) -> Option<LanguageIdentifier> {
    let base = name.split(['.', '@']).next()?.trim();
    if base.is_empty() || base == "C" || base == "POSIX" {
        return None;
    }
    base.replace('_', "-").parse().ok()
}

/// The shipped language `name` falls to along its chain (`pt-BR` → `pt`), if any.
pub fn shipped(name: &str) -> Option<&'static str> {
    let asked = parse_locale(name)?;
    let available: Vec<LanguageIdentifier> = SOURCES
        .iter()
        .filter_map(|(code, _)| code.parse().ok())
        .collect();
    let found = negotiate_languages(&[asked], &available, None, NegotiationStrategy::Filtering);
    let found = found.first()?.language.as_str().to_string();
    SOURCES
        .iter()
        .map(|(code, _)| *code)
        .find(|code| *code == found)
}

/// The choice: `configured` (the configuration's `language`) first, then `env` (a variable's
/// value by name), then `system` (the system's UI languages, best first; empty on Linux).
pub fn choose(
    configured: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    system: &[String],
) -> Choice {
    let mut asked = None;
    if let Some(value) = configured {
        if let Some(language) = shipped(value) {
            return Choice {
                language,
                source: ChoiceSource::Config(value.to_string()),
            };
        }
        asked = Some(format!("the configuration's language = {value:?}"));
    }
    for (var, value) in locale_chain(env) {
        if let Some(language) = shipped(&value) {
            return Choice {
                language,
                source: ChoiceSource::Environment(var, value),
            };
        }
        asked.get_or_insert(format!("{var}={value}"));
    }
    for value in system {
        if let Some(language) = shipped(value) {
            return Choice {
                language,
                source: ChoiceSource::System(value.clone()),
            };
        }
        asked.get_or_insert(format!("the system's UI language {value}"));
    }
    Choice {
        language: "en",
        source: ChoiceSource::Default(asked),
    }
}

/// The environment's locale chain, as gettext reads it: the locale is the first set of
/// `LC_ALL`, `LC_MESSAGES`, `LANG`; if it is `C` or `POSIX` (or none is set) the messages are
/// English and `LANGUAGE` is not read; otherwise `LANGUAGE`'s colon-separated list comes first,
/// then the locale.
fn locale_chain(env: &dyn Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    let set = |var: &str| env(var).filter(|v| !v.is_empty());
    let Some((var, locale)) = ["LC_ALL", "LC_MESSAGES", "LANG"]
        .into_iter()
        .find_map(|var| set(var).map(|v| (var, v)))
    else {
        return Vec::new();
    };
    if parse_locale(&locale).is_none() {
        return Vec::new();
    }
    let mut chain: Vec<(&'static str, String)> = set("LANGUAGE")
        .map(|list| {
            list.split(':')
                .filter(|l| !l.is_empty())
                .map(|l| ("LANGUAGE", l.to_string()))
                .collect()
        })
        .unwrap_or_default();
    chain.push((var, locale));
    chain
}

/// [`choose`] as this platform reads the person's language: the process environment on Linux
/// and the BSDs, the system's UI languages on Windows and macOS (whose programs started from the
/// desktop have no `LANG`).
pub fn for_this_system(configured: Option<&str>) -> Choice {
    if cfg!(any(windows, target_os = "macos")) {
        choose(configured, &|_| None, &system_languages())
    } else {
        choose(configured, &|var| std::env::var(var).ok(), &[])
    }
}

/// The system's UI languages, best first: Windows' and macOS's user preference; none on Linux
/// (its environment says it: [`choose`]'s `env`).
pub fn system_languages() -> Vec<String> {
    #[cfg(any(windows, target_os = "macos"))]
    {
        sys_locale::get_locales().collect()
    }
    #[cfg(not(any(windows, target_os = "macos")))]
    {
        Vec::new()
    }
}

#[cfg(all(test, windows))]
mod windows_tests {
    /// Under Wine (CI) as on Windows: the person's UI languages are read, and one is chosen.
    #[test]
    fn the_system_names_the_persons_ui_languages() {
        let listed = super::system_languages();
        assert!(!listed.is_empty(), "no UI language listed");
        let choice = super::for_this_system(None);
        assert!(
            matches!(choice.source, super::ChoiceSource::System(_)),
            "{choice} from {listed:?}"
        );
        let choice = super::for_this_system(Some("fi"));
        assert_eq!(choice.language, "fi");
    }
}
