//! The catalogues against English: the same messages, each with every placeable English uses, in
//! every plural form; nothing hidden in what they produce; distinct button keys.

use super::*;
use fluent_syntax::ast;
use std::collections::{BTreeMap, BTreeSet};
use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};

/// A control, format (bidi marks and isolates among them) or separator character: what no
/// prompt may carry (the same categories `consent::text` blanks in values).
fn is_hidden(c: char) -> bool {
    matches!(
        c.general_category(),
        G::Control | G::Format | G::LineSeparator | G::ParagraphSeparator
    )
}

/// Message ids of a catalogue, and its parse errors.
fn ids(source: &str) -> (Vec<String>, usize) {
    let (resource, errors) = match FluentResource::try_new(source.to_string()) {
        Ok(r) => (r, 0),
        Err((r, e)) => (r, e.len()),
    };
    let mut ids: Vec<String> = resource
        .entries()
        .filter_map(|e| match e {
            ast::Entry::Message(m) => Some(m.id.name.to_string()),
            ast::Entry::Term(t) => Some(format!("-{}", t.id.name)),
            _ => None,
        })
        .collect();
    ids.sort();
    (ids, errors)
}

/// The values placed in tests: numbers where the message counts, a marker text elsewhere.
const NUMBERS: [&str; 3] = ["count", "seconds", "slot"];

fn marker(name: &str) -> String {
    format!("XQ{name}QX")
}

/// Every way through a pattern (one per variant of each select expression), as the set of
/// variables it shows. A select's own selector is not shown.
fn paths(pattern: &ast::Pattern<&str>) -> Vec<BTreeSet<String>> {
    let mut out = vec![BTreeSet::new()];
    for element in &pattern.elements {
        if let ast::PatternElement::Placeable { expression } = element {
            out = expression_paths(expression)
                .into_iter()
                .flat_map(|add| {
                    out.iter()
                        .map(move |have| have.union(&add).cloned().collect())
                })
                .collect();
        }
    }
    out
}

fn expression_paths(e: &ast::Expression<&str>) -> Vec<BTreeSet<String>> {
    match e {
        ast::Expression::Select { variants, .. } => {
            variants.iter().flat_map(|v| paths(&v.value)).collect()
        }
        ast::Expression::Inline(ast::InlineExpression::VariableReference { id }) => {
            vec![BTreeSet::from([id.name.to_string()])]
        }
        ast::Expression::Inline(ast::InlineExpression::Placeable { expression }) => {
            expression_paths(expression)
        }
        ast::Expression::Inline(_) => vec![BTreeSet::new()],
    }
}

/// Each message of a catalogue: its ways through ([`paths`]).
fn messages(source: &str) -> BTreeMap<String, Vec<BTreeSet<String>>> {
    let resource = FluentResource::try_new(source.to_string()).unwrap_or_else(|(r, _)| r);
    resource
        .entries()
        .filter_map(|e| match e {
            ast::Entry::Message(m) => Some((m.id.name.to_string(), paths(m.value.as_ref()?))),
            _ => None,
        })
        .collect()
}

/// The variables English's message `id` shows.
fn english_variables(id: &str) -> Vec<String> {
    let english = messages(SOURCES[0].1);
    let all: BTreeSet<String> = english[id].iter().flatten().cloned().collect();
    all.into_iter().collect()
}

#[test]
fn every_variant_of_every_message_shows_every_placeable_english_shows() {
    let english = messages(SOURCES[0].1);
    for (code, source) in SOURCES {
        for (id, ways) in messages(source) {
            let Some(en) = english.get(&id) else { continue };
            let wanted: BTreeSet<String> = en.iter().flatten().cloned().collect();
            for way in &ways {
                let missing: Vec<_> = wanted.difference(way).collect();
                let extra: Vec<_> = way.difference(&wanted).collect();
                assert!(
                    missing.is_empty(),
                    "{code} {id}: a variant drops {missing:?}"
                );
                assert!(extra.is_empty(), "{code} {id}: a variant adds {extra:?}");
            }
        }
    }
}

fn args_for<S: AsRef<str>>(names: &[S], n: u64) -> Vec<(&str, Value<'static>)> {
    names
        .iter()
        .map(|name| {
            let name = name.as_ref();
            let v = if NUMBERS.contains(&name) {
                Value::Number(n)
            } else {
                Value::Text(Box::leak(marker(name).into_boxed_str()))
            };
            (name, v)
        })
        .collect()
}

/// Counts that meet every plural category of the sixteen languages (one, few, many, other, zero).
const COUNTS: [u64; 14] = [0, 1, 2, 3, 4, 5, 11, 12, 21, 22, 25, 100, 101, 111];

#[test]
fn every_catalogue_parses_and_has_exactly_englishs_messages() {
    let (english, errors) = ids(SOURCES[0].1);
    assert_eq!(errors, 0);
    assert!(english.len() > 40, "{}", english.len());
    for (code, source) in SOURCES {
        let (ids, errors) = ids(source);
        assert_eq!(errors, 0, "{code}: the catalogue has syntax errors");
        let missing: Vec<_> = english.iter().filter(|i| !ids.contains(i)).collect();
        let extra: Vec<_> = ids.iter().filter(|i| !english.contains(i)).collect();
        assert!(missing.is_empty(), "{code}: missing {missing:?}");
        assert!(extra.is_empty(), "{code}: not in English {extra:?}");
        let mut unique = ids.clone();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "{code}: a message twice");
    }
}

#[test]
fn every_message_keeps_every_placeable_in_every_plural_form_and_hides_nothing() {
    let (english, _) = ids(SOURCES[0].1);
    for id in &english {
        let names = english_variables(id);
        for code in languages() {
            let catalog = catalog(code);
            for n in COUNTS {
                let args = args_for(&names, n);
                let text = catalog
                    .format(id, &args)
                    .unwrap_or_else(|| panic!("{code} {id} ({n}): does not format"));
                for name in &names {
                    let shown = match NUMBERS.contains(&name.as_str()) {
                        true => n.to_string(),
                        false => marker(name),
                    };
                    assert!(
                        text.contains(&shown),
                        "{code} {id} ({n}): drops ${name}: {text:?}"
                    );
                }
                assert!(
                    !text.chars().any(|c| is_hidden(c) && c != '\n'),
                    "{code} {id}: a hidden character in {text:?}"
                );
                assert!(
                    !text.contains('\n'),
                    "{code} {id}: a line break in {text:?}"
                );
            }
        }
    }
}

#[test]
fn subject_and_issuer_end_their_line_after_a_label() {
    for code in languages() {
        let c = catalog(code);
        for (id, name) in [
            ("consent-certificate", "subject"),
            ("consent-issuer", "issuer"),
        ] {
            let text = c.text(id, &args_for(&[name], 1));
            assert!(text.ends_with(&marker(name)), "{code} {id}: {text:?}");
            assert!(text.len() > marker(name).len() + 1, "{code} {id}: no label");
        }
    }
}

#[test]
fn button_keys_are_marked_once_and_distinct() {
    for code in languages() {
        let c = catalog(code);
        let key = |id: &str| {
            let label = c.text(id, &[]);
            let marks = label.replace("__", "").matches('_').count();
            assert_eq!(marks, 1, "{code} {id}: {label:?} needs exactly one _ mark");
            mnemonic(&label).unwrap_or_else(|| panic!("{code} {id}: {label:?}"))
        };
        let (allow, always, deny) = (
            key("button-allow"),
            key("button-always"),
            key("button-deny"),
        );
        assert!(
            allow != always && always != deny && allow != deny,
            "{code}: consent keys"
        );
        let (sign, cancel) = (key("button-sign"), key("button-cancel"));
        assert_ne!(sign, cancel, "{code}: Windows PIN dialog keys");
        assert_ne!(sign, deny, "{code}: pinentry PIN dialog keys");
    }
}

#[test]
fn every_title_starts_with_the_programs_name() {
    // The person sees who asks; the end-to-end tests find the windows by it.
    for code in languages() {
        for id in [
            "title-signature-request",
            "title-allow-signing",
            "title-pin",
            "title-pin-pad",
        ] {
            let title = catalog(code).text(id, &[]);
            assert!(title.starts_with("Keyport"), "{code} {id}: {title:?}");
        }
    }
}

#[test]
fn counts_take_the_languages_plural_forms() {
    let headline = |code: &str, n: u64| {
        catalog(code)
            .text(
                "consent-headline-batch",
                &[("caller", "https://a.example".into()), ("count", n.into())],
            )
            .replace(&n.to_string(), "#")
    };
    assert_eq!(
        catalog("en").text(
            "consent-headline-batch",
            &[
                ("caller", "https://a.example".into()),
                ("count", 100u64.into())
            ]
        ),
        "https://a.example asks for 100 signatures with your certificate."
    );
    assert_eq!(
        headline("en", 1),
        "https://a.example asks for # signature with your certificate."
    );
    for code in languages() {
        assert_ne!(
            headline(code, 1),
            headline(code, 100),
            "{code}: one = other"
        );
    }
    // CLDR's rules: one / few / many (ru, pl), one / few / other (hr): 1, 2 and 5 differ, 22 is
    // like 2 and 25 like 5; 21 is "one" in ru and hr, "many" in pl.
    for code in ["ru", "pl", "hr"] {
        assert_ne!(headline(code, 1), headline(code, 2), "{code}: one = few");
        assert_ne!(headline(code, 2), headline(code, 5), "{code}: few = many");
        assert_eq!(headline(code, 22), headline(code, 2), "{code}: 22");
        assert_eq!(headline(code, 25), headline(code, 5), "{code}: 25");
    }
    for code in ["ru", "hr"] {
        assert_eq!(headline(code, 21), headline(code, 1), "{code}: 21 is one");
    }
    assert_eq!(headline("pl", 21), headline("pl", 5), "pl: 21 is many");
    // cs, sk: one (1), few (2–4), other (0, 5, 21, 22…).
    for code in ["cs", "sk"] {
        assert_ne!(headline(code, 1), headline(code, 2), "{code}: one = few");
        assert_ne!(headline(code, 2), headline(code, 5), "{code}: few = other");
        assert_eq!(headline(code, 22), headline(code, 5), "{code}: 22 is other");
        assert_eq!(headline(code, 21), headline(code, 5), "{code}: 21 is other");
    }
    // lt: one (1, 21), few (2–9, 22…), other (10–20); after "prašo" the noun is genitive,
    // where few and other share a form (2 and 10 "parašų").
    assert_eq!(headline("lt", 21), headline("lt", 1), "lt: 21 is one");
    assert_ne!(headline("lt", 1), headline("lt", 2), "lt: one = few");
    assert_eq!(headline("lv", 21), headline("lv", 1), "lv: 21 is one");
}

#[test]
fn a_missing_message_falls_back_to_english_then_to_its_id() {
    assert_eq!(
        catalog("fr").text("no-such-message", &[]),
        "no-such-message"
    );
    assert_eq!(catalog("xx").language(), "en");
    assert_eq!(catalog("de").language(), "de");
    assert!(catalog("de").has("tray-quit"));
}

#[test]
fn labels_for_each_place() {
    assert_eq!(plain("Al_ways allow"), "Always allow");
    assert_eq!(plain("a__b _C"), "a_b C");
    assert_eq!(windows_label("Al_ways & co"), "Al&ways && co");
    assert_eq!(mnemonic("Al_ways"), Some('w'));
    assert_eq!(mnemonic("_Allow"), Some('a'));
    assert_eq!(mnemonic("none"), None);
}

mod choosing {
    use super::super::choose::{choose, shipped, ChoiceSource};

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_environment_the_configuration_and_the_fallback() {
        let c = choose(None, &env(&[("LANG", "fr_FR.UTF-8")]), &[]);
        assert_eq!(c.language, "fr");
        assert_eq!(
            c.source,
            ChoiceSource::Environment("LANG", "fr_FR.UTF-8".into())
        );
        assert_eq!(c.to_string(), "fr (from LANG=fr_FR.UTF-8)");
        // LC_ALL over LC_MESSAGES over LANG.
        let vars = [
            ("LANG", "fr_FR.UTF-8"),
            ("LC_MESSAGES", "nl_BE.UTF-8"),
            ("LC_ALL", ""),
        ];
        assert_eq!(choose(None, &env(&vars), &[]).language, "nl");
        let vars = [("LANG", "fr_FR.UTF-8"), ("LC_ALL", "et_EE.UTF-8")];
        assert_eq!(choose(None, &env(&vars), &[]).language, "et");
        // LANGUAGE's list first, its first shipped entry…
        let vars = [("LANG", "fr_FR.UTF-8"), ("LANGUAGE", "gd:de_AT:fr")];
        let c = choose(None, &env(&vars), &[]);
        assert_eq!(
            c.source,
            ChoiceSource::Environment("LANGUAGE", "de_AT".into())
        );
        // …unless the locale is C: English, as gettext does.
        let vars = [("LANG", "C.UTF-8"), ("LANGUAGE", "de")];
        assert_eq!(choose(None, &env(&vars), &[]).language, "en");
        // The configuration wins.
        let c = choose(Some("de"), &env(&[("LANG", "fr_FR.UTF-8")]), &[]);
        assert_eq!(
            (c.language, c.source),
            ("de", ChoiceSource::Config("de".into()))
        );
        // A chain: pt_BR falls to pt; an unknown language to English, saying what was asked.
        assert_eq!(
            choose(None, &env(&[("LANG", "pt_BR.UTF-8")]), &[]).language,
            "pt"
        );
        let c = choose(None, &env(&[("LANG", "sw_KE.UTF-8")]), &[]);
        assert_eq!(c.language, "en");
        assert_eq!(
            c.source,
            ChoiceSource::Default(Some("LANG=sw_KE.UTF-8".into()))
        );
        assert!(
            c.to_string().contains("no catalogue for LANG=sw_KE.UTF-8"),
            "{c}"
        );
        let c = choose(None, &env(&[]), &[]);
        assert_eq!((c.language, c.source), ("en", ChoiceSource::Default(None)));
        // A configured language not shipped: the environment, then English.
        assert_eq!(
            choose(Some("sw"), &env(&[("LANG", "lv_LV.UTF-8")]), &[]).language,
            "lv"
        );
        // Windows and macOS: the system's list, best first.
        let system = ["sw-KE".to_string(), "lt-LT".to_string()];
        let c = choose(None, &env(&[]), &system);
        assert_eq!(
            (c.language, c.source),
            ("lt", ChoiceSource::System("lt-LT".into()))
        );
    }

    #[test]
    fn locale_names_along_their_chain() {
        for (name, code) in [
            ("fr_CA.UTF-8@euro", Some("fr")),
            ("ru_RU.KOI8-R", Some("ru")),
            ("cs-CZ", Some("cs")),
            ("hr", Some("hr")),
            ("en_GB.UTF-8", Some("en")),
            ("C", None),
            ("POSIX", None),
            ("", None),
            ("!!", None),
            ("sr_RS@latin", None),
        ] {
            assert_eq!(shipped(name), code, "{name}");
        }
    }
}
