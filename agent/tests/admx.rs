//! The Group Policy template (packaging/windows/Keyport.admx and en-US/Keyport.adml) against the
//! agent's table of settings: every policy writes a value (or a list's subkey) that the agent
//! reads as the key of the same name ([`keyport::config::registry`]), in the form its kind takes;
//! every text it names is in the ADML; and every key of the table is either offered or listed
//! below as one the template leaves out, with the reason. A new setting, a renamed key or a
//! changed kind fails here until the template follows.

use keyport::config::registry::POLICY_KEY;
use keyport::config::{Config, FileConfig, Kind, ADMIN_KEYS, KEYS};
use roxmltree::{Document, Node};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Keys the template does not offer, and why. (The registry still takes them: an administrator
/// can write them under the policy key by hand, or in %ProgramData%\Keyport\keyport.toml.)
const NOT_IN_TEMPLATE: &[(&str, &str)] = &[
    (
        "consent",
        "how the prompt is shown differs per desktop; the person's choice",
    ),
    ("pinentry", "GnuPG's pinentry program, not used on Windows"),
    ("demo", "the developers' demo page"),
    ("demo_dir", "the developers' demo page"),
    ("state_file", "a path in the person's own folders"),
    ("log_file", "a path in the person's own folders"),
    ("max_connections", "a resource limit: tuning, not policy"),
    (
        "max_connections_per_origin",
        "a resource limit: tuning, not policy",
    ),
    ("max_message_bytes", "a resource limit: tuning, not policy"),
    (
        "max_in_flight_per_connection",
        "a resource limit: tuning, not policy",
    ),
    (
        "max_reply_backlog_bytes",
        "a resource limit: tuning, not policy",
    ),
    ("ping_interval_secs", "a resource limit: tuning, not policy"),
    (
        "handshake_timeout_secs",
        "a resource limit: tuning, not policy",
    ),
    (
        "max_pending_consent_per_origin",
        "a resource limit: tuning, not policy",
    ),
    (
        "max_pending_consent",
        "a resource limit: tuning, not policy",
    ),
];

fn read(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/windows")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn children<'a, 'i>(node: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children()
        .filter(move |n| n.is_element() && n.tag_name().name() == name)
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &'a str) -> Option<Node<'a, 'i>> {
    children(node, name).next()
}

fn attr<'a>(node: Node<'a, '_>, name: &str) -> &'a str {
    node.attribute(name)
        .unwrap_or_else(|| panic!("<{}> has no {name}", node.tag_name().name()))
}

/// `$(string.ID)` → `ID`.
fn reference<'a>(value: &'a str, table: &str) -> &'a str {
    value
        .strip_prefix(&format!("$({table}."))
        .and_then(|v| v.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{value:?} is not a $({table}.…) reference"))
}

/// A `<decimal value="N"/>` inside `node`'s child `name`.
fn decimal(node: Node, name: &str) -> Option<String> {
    child(child(node, name)?, "decimal").map(|d| attr(d, "value").to_string())
}

/// What the ADML offers: string ids, and each presentation's controls (refId → control, default).
struct Adml {
    strings: BTreeSet<String>,
    presentations: BTreeMap<String, Vec<(String, String, Option<String>)>>,
}

fn adml() -> Adml {
    let text = read("en-US/Keyport.adml");
    let doc = Document::parse(&text).expect("Keyport.adml is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "policyDefinitionResources");
    let resources = child(root, "resources").expect("<resources>");
    let strings = children(child(resources, "stringTable").unwrap(), "string")
        .map(|s| attr(s, "id").to_string())
        .collect();
    let presentations = children(
        child(resources, "presentationTable").unwrap(),
        "presentation",
    )
    .map(|p| {
        let controls = p
            .children()
            .filter(|c| c.is_element())
            .map(|c| {
                let default = c.attribute("defaultValue").map(str::to_string).or_else(|| {
                    child(c, "defaultValue")
                        .and_then(|d| d.text())
                        .map(str::to_string)
                });
                (
                    attr(c, "refId").to_string(),
                    c.tag_name().name().to_string(),
                    default,
                )
            })
            .collect();
        (attr(p, "id").to_string(), controls)
    })
    .collect();
    Adml {
        strings,
        presentations,
    }
}

/// The ADML control that shows each kind of element.
fn control_of(element: &str) -> &'static str {
    match element {
        "list" => "listBox",
        "decimal" => "decimalTextBox",
        "text" => "textBox",
        "enum" => "dropdownList",
        "boolean" => "checkBox",
        other => panic!("no control for <{other}>"),
    }
}

#[test]
fn the_group_policy_template_writes_what_the_agent_reads() {
    let text = read("Keyport.admx");
    let doc = Document::parse(&text).expect("Keyport.admx is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "policyDefinitions");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://schemas.microsoft.com/GroupPolicy/2006/07/PolicyDefinitions")
    );
    let adml = adml();
    let string = |value: &str| {
        let id = reference(value, "string");
        assert!(adml.strings.contains(id), "the ADML has no string {id:?}");
    };
    let categories: BTreeSet<&str> = children(child(root, "categories").unwrap(), "category")
        .map(|c| {
            string(attr(c, "displayName"));
            attr(c, "name")
        })
        .collect();
    let supported: BTreeSet<&str> = children(
        child(child(root, "supportedOn").unwrap(), "definitions").unwrap(),
        "definition",
    )
    .map(|d| {
        string(attr(d, "displayName"));
        attr(d, "name")
    })
    .collect();
    let defaults = Config::default();

    let mut offered = BTreeSet::new();
    for policy in children(child(root, "policies").unwrap(), "policy") {
        let name = attr(policy, "name");
        assert_eq!(attr(policy, "class"), "Machine", "{name}: HKLM only");
        assert_eq!(attr(policy, "key"), POLICY_KEY, "{name}");
        string(attr(policy, "displayName"));
        string(attr(policy, "explainText"));
        let category = attr(child(policy, "parentCategory").unwrap(), "ref");
        assert!(categories.contains(category), "{name}: category {category}");
        let since = attr(child(policy, "supportedOn").unwrap(), "ref");
        assert!(supported.contains(since), "{name}: supportedOn {since}");
        let kind = FileConfig::kind(name)
            .unwrap_or_else(|| panic!("policy {name} is not a key of the agent's settings"));
        assert!(offered.insert(name), "{name} is offered twice");

        let elements: Vec<Node> = child(policy, "elements")
            .map(|e| e.children().filter(|n| n.is_element()).collect())
            .unwrap_or_default();
        if let Some(value) = policy.attribute("valueName") {
            // A policy that is its own switch: enabled 1, disabled 0.
            assert_eq!(value, name, "{name}: valueName");
            assert_eq!(kind, Kind::Bool, "{name}: only a boolean is a bare switch");
            assert_eq!(
                decimal(policy, "enabledValue").as_deref(),
                Some("1"),
                "{name}"
            );
            assert_eq!(
                decimal(policy, "disabledValue").as_deref(),
                Some("0"),
                "{name}"
            );
            assert!(elements.is_empty(), "{name}: a switch has no elements");
            continue;
        }
        let [element] = elements.as_slice() else {
            panic!("{name}: one element, the setting's value, expected");
        };
        let tag = element.tag_name().name();
        let id = attr(*element, "id");
        match (tag, &kind) {
            ("list", Kind::List) => {
                assert_eq!(
                    attr(*element, "key"),
                    format!(r"{POLICY_KEY}\{name}"),
                    "{name}"
                );
                // Values named 1, 2, … (no prefix, no names of the administrator's choosing).
                assert_eq!(element.attribute("valuePrefix"), Some(""), "{name}");
                assert_ne!(element.attribute("explicitValue"), Some("true"), "{name}");
                assert_ne!(element.attribute("additive"), Some("true"), "{name}");
            }
            ("decimal", Kind::Number { max }) => {
                assert_eq!(attr(*element, "valueName"), name);
                assert_ne!(element.attribute("storeAsText"), Some("true"), "{name}");
                let most: u64 = attr(*element, "maxValue").parse().unwrap();
                let least: u64 = attr(*element, "minValue").parse().unwrap();
                assert!(least >= 1 && most <= *max && least <= most, "{name}");
            }
            ("text", Kind::Text) => {
                assert_eq!(attr(*element, "valueName"), name);
                assert_ne!(element.attribute("expandable"), Some("true"), "{name}");
            }
            ("enum", Kind::Choice(words)) => {
                assert_eq!(attr(*element, "valueName"), name);
                let items: Vec<&str> = children(*element, "item")
                    .map(|item| {
                        string(attr(item, "displayName"));
                        let value = child(child(item, "value").unwrap(), "string").unwrap();
                        value.text().unwrap_or_default()
                    })
                    .collect();
                assert_eq!(
                    items, *words,
                    "{name}: the enum's strings are the agent's words"
                );
            }
            _ => panic!("{name}: a <{tag}> cannot write a {kind:?}"),
        }
        // The presentation: one control of the right sort for the element; its default, if any,
        // the agent's own.
        let presentation = reference(attr(policy, "presentation"), "presentation");
        let controls = adml
            .presentations
            .get(presentation)
            .unwrap_or_else(|| panic!("the ADML has no presentation {presentation:?}"));
        let [(ref_id, control, default)] = controls.as_slice() else {
            panic!("{name}: one control expected in its presentation");
        };
        assert_eq!(
            (ref_id.as_str(), control.as_str()),
            (id, control_of(tag)),
            "{name}"
        );
        if let Some(default) = default {
            let agent = match defaults.value_of(name) {
                toml::Value::String(s) => s,
                other => other.to_string(),
            };
            assert_eq!(
                *default, agent,
                "{name}: the template's default is not the agent's"
            );
        }
    }

    // Every key is offered, or left out on purpose.
    let left_out: BTreeSet<&str> = NOT_IN_TEMPLATE.iter().map(|(k, _)| *k).collect();
    for key in KEYS.iter().chain(ADMIN_KEYS) {
        assert!(
            offered.contains(key) != left_out.contains(key),
            "{key}: offer it in Keyport.admx, or list it in NOT_IN_TEMPLATE with the reason"
        );
    }
    for key in &left_out {
        assert!(
            FileConfig::kind(key).is_some(),
            "NOT_IN_TEMPLATE names {key}, not a key"
        );
    }
    // The ones the issue asks for by name.
    for key in [
        "modules",
        "allow_origins",
        "trust_origins",
        "user_may_add_modules",
        "user_may_add_origins",
    ] {
        assert!(offered.contains(key), "{key}");
    }
}

/// The example of the administrator's file the MSI ships (policy\keyport.toml.example): every
/// commented-out key, uncommented, is a key the agent takes.
#[test]
fn the_windows_example_file_names_real_keys() {
    let text = read("keyport.toml.example");
    let uncommented: String = text
        .lines()
        .filter_map(|line| line.strip_prefix('#'))
        .filter(|line| line.contains(" = ") && !line.starts_with(' '))
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(uncommented.lines().count() >= 10, "{uncommented}");
    let file: FileConfig = toml::from_str(&uncommented).unwrap_or_else(|e| panic!("{e}"));
    for key in [
        "modules",
        "allow_origins",
        "user_may_add_origins",
        "no_origin",
    ] {
        assert!(file.sets(key), "{key}");
    }
}
