//! The person's language: every word a prompt, a dialog or the tray shows comes from a Project
//! Fluent catalogue (`agent/i18n/LANG.ftl`, compiled into the binary), in the language
//! [`choose`] picks, falling back message by message to English.
//!
//! Logs, the `keyport` command's output and JSON-RPC error messages stay English: a page
//! localises by the error's `data.reason` (docs/PROTOCOL.md).
//!
//! # Values in a message
//! Fluent can wrap each value in Unicode isolates (U+2068 … U+2069) so that a right-to-left
//! value cannot reorder the text around it. Keyport does not ([`Catalog`] turns it off), for
//! three reasons:
//! * the values that come from outside (the site, the certificate's subject and issuer) are
//!   cleaned before they are placed ([`crate::consent::text::clean`]): every format character,
//!   isolates and overrides among them, is gone, so no value can end an isolate or open one;
//! * the two values that may be right-to-left (subject, issuer) stand at the end of their own
//!   line after a label, in every catalogue (a test checks it), where the paragraph's direction
//!   keeps them in place;
//! * the marks are format characters that notification servers and pinentry's toolkits draw as
//!   boxes or pass to renderers that strip them: [`clean`](crate::consent::text::clean) exists
//!   precisely so that no prompt carries one. A test checks that no message, in any language,
//!   produces one.

mod choose;

pub use choose::{choose, for_this_system, parse_locale, Choice, ChoiceSource};

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use unic_langid::LanguageIdentifier;

/// The catalogues shipped, by language: English first (the fallback of every message).
pub const SOURCES: [(&str, &str); 16] = [
    ("en", include_str!("../../i18n/en.ftl")),
    ("fr", include_str!("../../i18n/fr.ftl")),
    ("nl", include_str!("../../i18n/nl.ftl")),
    ("de", include_str!("../../i18n/de.ftl")),
    ("et", include_str!("../../i18n/et.ftl")),
    ("fi", include_str!("../../i18n/fi.ftl")),
    ("lv", include_str!("../../i18n/lv.ftl")),
    ("lt", include_str!("../../i18n/lt.ftl")),
    ("cs", include_str!("../../i18n/cs.ftl")),
    ("sk", include_str!("../../i18n/sk.ftl")),
    ("hr", include_str!("../../i18n/hr.ftl")),
    ("pl", include_str!("../../i18n/pl.ftl")),
    ("es", include_str!("../../i18n/es.ftl")),
    ("it", include_str!("../../i18n/it.ftl")),
    ("pt", include_str!("../../i18n/pt.ftl")),
    ("ru", include_str!("../../i18n/ru.ftl")),
];

/// The languages shipped, as their codes.
pub fn languages() -> impl Iterator<Item = &'static str> {
    SOURCES.iter().map(|(code, _)| *code)
}

/// One language's messages.
pub struct Catalog {
    language: &'static str,
    bundle: FluentBundle<FluentResource>,
}

/// A value placed into a message: a text or a count (which picks a plural form).
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Text(&'a str),
    Number(u64),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::Text(s)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(s: &'a String) -> Self {
        Value::Text(s)
    }
}

impl From<u64> for Value<'_> {
    fn from(n: u64) -> Self {
        Value::Number(n)
    }
}

impl From<usize> for Value<'_> {
    fn from(n: usize) -> Self {
        Value::Number(n as u64)
    }
}

impl Catalog {
    fn build(index: usize) -> Catalog {
        let (language, source) = SOURCES[index];
        // A catalogue with a syntax error keeps the messages that parsed (the tests refuse
        // any error; a release cannot ship one, and must not panic if it did).
        let resource = FluentResource::try_new(source.to_string()).unwrap_or_else(|(r, _)| r);
        let id: LanguageIdentifier = language.parse().unwrap_or_default();
        let mut bundle = FluentBundle::new_concurrent(vec![id]);
        bundle.set_use_isolating(false);
        let _ = bundle.add_resource(resource);
        Catalog { language, bundle }
    }

    /// This catalogue's language code.
    pub fn language(&self) -> &'static str {
        self.language
    }

    /// Whether the catalogue has message `id`.
    pub fn has(&self, id: &str) -> bool {
        self.bundle.has_message(id)
    }

    /// Message `id` with `args` placed, or English's when this catalogue lacks it or cannot
    /// format it (and the id itself when English lacks it too: never a panic).
    pub fn text(&self, id: &str, args: &[(&str, Value)]) -> String {
        self.format(id, args)
            .or_else(|| (self.language != "en").then(|| english().format(id, args))?)
            .unwrap_or_else(|| id.to_string())
    }

    fn format(&self, id: &str, args: &[(&str, Value)]) -> Option<String> {
        let pattern = self.bundle.get_message(id)?.value()?;
        let mut fluent_args = FluentArgs::with_capacity(args.len());
        for (name, value) in args {
            let value = match *value {
                Value::Text(s) => FluentValue::from(s),
                Value::Number(n) => FluentValue::from(n),
            };
            fluent_args.set(*name, value);
        }
        let mut errors = Vec::new();
        let text = self
            .bundle
            .format_pattern(pattern, Some(&fluent_args), &mut errors);
        errors.is_empty().then(|| text.into_owned())
    }
}

static CATALOGS: [OnceLock<Catalog>; 16] = [const { OnceLock::new() }; 16];

/// The catalogue of `language` (a code of [`SOURCES`]); English for any other.
pub fn catalog(language: &str) -> &'static Catalog {
    let index = SOURCES
        .iter()
        .position(|(code, _)| *code == language)
        .unwrap_or(0);
    CATALOGS[index].get_or_init(|| Catalog::build(index))
}

fn english() -> &'static Catalog {
    catalog("en")
}

/// The language in use, as an index of [`SOURCES`]: set once at start ([`set_language`]).
static CURRENT: AtomicUsize = AtomicUsize::new(0);

/// Speak `language` (a code of [`SOURCES`]; English for any other) from now on.
pub fn set_language(language: &str) {
    let index = SOURCES
        .iter()
        .position(|(code, _)| *code == language)
        .unwrap_or(0);
    CURRENT.store(index, Ordering::Relaxed);
}

/// The catalogue of the language in use.
pub fn current() -> &'static Catalog {
    catalog(SOURCES[CURRENT.load(Ordering::Relaxed)].0)
}

/// Message `id` in the language in use.
pub fn text(id: &str, args: &[(&str, Value)]) -> String {
    current().text(id, args)
}

/// A button label without its key mark (`_Allow` → `Allow`): for a notification's actions and
/// other places that show no shortcut. `__` is a literal `_`.
pub fn plain(label: &str) -> String {
    label
        .replace("__", "\u{0}")
        .replace('_', "")
        .replace('\0', "_")
}

/// A button label for Windows, whose mark is `&` (`&&` a literal `&`): `Al_ways` → `Al&ways`.
pub fn windows_label(label: &str) -> String {
    label
        .replace('&', "&&")
        .replace("__", "\u{0}")
        .replace('_', "&")
        .replace('\0', "_")
}

/// The key a label's mark chooses (`Al_ways` → `w`), lower-cased.
pub fn mnemonic(label: &str) -> Option<char> {
    let at = label.replace("__", "").find('_')?;
    let key = label.replace("__", "")[at + 1..].chars().next()?;
    key.to_lowercase().next()
}

#[cfg(test)]
mod tests;
