//! The administrator's policy in the Windows registry: `HKLM\Software\Policies\Keyport`, where
//! Group Policy writes what `packaging/windows/Keyport.admx` offers. It is read on Windows only,
//! and it is the administrator's file in another form: every key of `keyport.toml` (and the
//! administrator-only ones) is a value of the same name, read through the table of settings
//! ([`FileConfig::kind`]), so there is no second list of keys:
//!
//! * a boolean is a REG_DWORD, 1 or 0;
//! * a number (`*_secs`, `max_*`) is a REG_DWORD (or a REG_QWORD);
//! * a text (a path, an address, `no_origin`, `consent`) is a REG_SZ; a REG_EXPAND_SZ has its
//!   `%VARIABLES%` expanded (`%ProgramFiles%\OpenSC Project\...`);
//! * a list (`modules`, `allow_origins`, `trust_origins`, `module_env`) is a subkey of that name
//!   whose values are named `1`, `2`, … (what the ADMX `<list>` element writes), in that order, or
//!   a REG_MULTI_SZ value of that name. A list with no entries is not set (Group Policy leaves the
//!   subkey behind, emptied, when a list policy is turned off); to fix an empty list, write it in
//!   the file (`allow_origins = []`).
//!
//! Value names match the keys whatever their case, as the registry's names do. A value or
//! subkey that is not a key, or a value of the wrong type, is a [`ConfigError::Registry`] that
//! names it, as a wrong key is in the file. The layers, registry over file, are put together in
//! [`super::file::Admin`].

use super::table::Kind;
use super::{ConfigError, FileConfig, ADMIN_KEYS, KEYS};
use std::path::PathBuf;
use toml::Value;

/// The policy key, under HKEY_LOCAL_MACHINE.
pub const POLICY_KEY: &str = r"Software\Policies\Keyport";
/// The test hook that names another key, e.g. `HKCU\Software\KeyportTest` (debug builds only,
/// like [`super::SYSTEM_CONFIG_VAR`]).
pub const POLICY_KEY_VAR: &str = "KEYPORT_POLICY_KEY";

/// A registry value's data, as far as the policy reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegData {
    Sz(String),
    ExpandSz(String),
    MultiSz(Vec<String>),
    Dword(u32),
    Qword(u64),
    /// A type the policy never takes (REG_BINARY, …), by name.
    Other(String),
}

/// A key: its values and its subkeys, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegTree {
    pub values: Vec<(String, RegData)>,
    pub subkeys: Vec<(String, RegTree)>,
}

/// What `keyport config` names the layer by: `registry HKLM\Software\Policies\Keyport`.
pub fn label(key: &str) -> PathBuf {
    PathBuf::from(format!("registry {key}"))
}

/// The key the agent reads, as `ROOT\path` (a debug build honours `KEYPORT_POLICY_KEY`).
pub fn policy_key() -> String {
    crate::hooks::var(POLICY_KEY_VAR)
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!(r"HKLM\{POLICY_KEY}"))
}

/// The settings a policy key gives. `at` names the key in errors; `env` looks a variable up for
/// REG_EXPAND_SZ.
pub fn file_config(
    tree: &RegTree,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<FileConfig, ConfigError> {
    // Each key, its value, and the registry name that gave it (for errors).
    let mut found: Vec<(&'static str, Value, String)> = Vec::new();
    let mut add = |key: &'static str, value: Value, name: String| match found
        .iter()
        .find(|(k, ..)| *k == key)
    {
        Some((_, _, first)) => Err(bad(&name, format!("{key} is set twice (also {first})"))),
        None => {
            found.push((key, value, name));
            Ok(())
        }
    };
    for (name, data) in &tree.values {
        let at = format!(r"{at}\{name}");
        let (key, kind) = known(name).ok_or_else(|| unknown(&at))?;
        let value = match (kind, data) {
            (Kind::List, RegData::MultiSz(list)) => list_value(list.iter().map(|s| expand(s, env))),
            (Kind::List, data) => return Err(bad(&at, not_list(key, data))),
            (kind, data) => Some(scalar(&kind, data, env).map_err(|why| bad(&at, why))?),
        };
        if let Some(value) = value {
            add(key, value, at)?;
        }
    }
    for (name, sub) in &tree.subkeys {
        let at = format!(r"{at}\{name}");
        let (key, kind) = known(name).ok_or_else(|| unknown(&at))?;
        if kind != Kind::List {
            return Err(bad(
                &at,
                format!("{key} is a single value of the key above, not a subkey"),
            ));
        }
        if let Some(value) = numbered(sub, &at, env)? {
            add(key, value, at)?;
        }
    }
    // One key at a time first, so that an error names the value that caused it.
    for (key, value, name) in &found {
        let one = toml::Table::from_iter([(key.to_string(), value.clone())]);
        if let Err(e) = Value::Table(one).try_into::<FileConfig>() {
            return Err(bad(name, e.to_string().trim().to_string()));
        }
    }
    let all = toml::Table::from_iter(found.into_iter().map(|(k, v, _)| (k.to_string(), v)));
    Value::Table(all)
        .try_into::<FileConfig>()
        .map_err(|e| bad(at, e.to_string().trim().to_string()))
}

/// The key a registry name stands for (names are not case-sensitive), and its kind.
fn known(name: &str) -> Option<(&'static str, Kind)> {
    KEYS.iter()
        .chain(ADMIN_KEYS)
        .find(|key| key.eq_ignore_ascii_case(name))
        .and_then(|&key| Some((key, FileConfig::kind(key)?)))
}

/// A single value of its kind, as TOML (`Err`: why not).
fn scalar(
    kind: &Kind,
    data: &RegData,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, String> {
    let number = match data {
        RegData::Dword(n) => Some(u64::from(*n)),
        RegData::Qword(n) => Some(*n),
        _ => None,
    };
    let text = match data {
        RegData::Sz(s) => Some(s.clone()),
        RegData::ExpandSz(s) => Some(expand(s, env)),
        _ => None,
    };
    match (kind, number, text) {
        (Kind::Bool, Some(n @ (0 | 1)), _) => Ok(Value::Boolean(n == 1)),
        (Kind::Bool, ..) => Err(format!(
            "{} where a REG_DWORD 1 (true) or 0 (false) belongs",
            shown(data)
        )),
        (Kind::Number { max }, Some(n), _) => match i64::try_from(n) {
            Ok(i) if n <= *max => Ok(Value::Integer(i)),
            _ => Err(format!("{n} is more than the largest allowed, {max}")),
        },
        (Kind::Number { .. }, ..) => Err(format!(
            "{} where a REG_DWORD (a whole number) belongs",
            shown(data)
        )),
        (Kind::Text, _, Some(text)) => Ok(Value::String(text)),
        (Kind::Choice(words), _, Some(text)) => match words.iter().find(|w| **w == text) {
            Some(_) => Ok(Value::String(text)),
            None => Err(format!("{text:?} is not one of {}", words.join(", "))),
        },
        (Kind::Text | Kind::Choice(_), ..) => {
            Err(format!("{} where a REG_SZ belongs", shown(data)))
        }
        (Kind::List, ..) => Err(format!("{} where a list belongs", shown(data))),
    }
}

/// A list's subkey: values named 1, 2, … in that order (`None`: it has none).
fn numbered(
    sub: &RegTree,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Value>, ConfigError> {
    if let Some((name, _)) = sub.subkeys.first() {
        return Err(bad(
            &format!(r"{at}\{name}"),
            "a list's key has no subkeys".into(),
        ));
    }
    let mut entries = Vec::new();
    for (name, data) in &sub.values {
        let at = format!(r"{at}\{name}");
        let number = name
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0 && !name.starts_with(['+', '0']))
            .ok_or_else(|| {
                bad(
                    &at,
                    "a list's entries are values named 1, 2, 3, … (Group Policy's list)".into(),
                )
            })?;
        let text = match data {
            RegData::Sz(s) => s.clone(),
            RegData::ExpandSz(s) => expand(s, env),
            other => return Err(bad(&at, format!("{} where a REG_SZ belongs", shown(other)))),
        };
        entries.push((number, text));
    }
    entries.sort_by_key(|(n, _)| *n);
    Ok(list_value(entries.into_iter().map(|(_, text)| text)))
}

/// A list as TOML; `None` when it is empty (not set).
fn list_value(entries: impl Iterator<Item = String>) -> Option<Value> {
    let list: Vec<Value> = entries.map(Value::String).collect();
    (!list.is_empty()).then_some(Value::Array(list))
}

/// `%NAME%` replaced by the variable's value; an unknown one is left as it is (as Windows'
/// ExpandEnvironmentStrings does).
pub fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(end) if end > 0 => {
                let name = &after[..end];
                match env(name) {
                    Some(value) => out.push_str(&value),
                    None => out.push_str(&rest[start..start + end + 2]),
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A value's type and data, for an error (never a long text).
fn shown(data: &RegData) -> String {
    match data {
        RegData::Sz(s) => format!("a REG_SZ {s:?}"),
        RegData::ExpandSz(s) => format!("a REG_EXPAND_SZ {s:?}"),
        RegData::MultiSz(_) => "a REG_MULTI_SZ".into(),
        RegData::Dword(n) => format!("a REG_DWORD {n}"),
        RegData::Qword(n) => format!("a REG_QWORD {n}"),
        RegData::Other(kind) => format!("a {kind}"),
    }
}

fn not_list(key: &str, data: &RegData) -> String {
    format!(
        "{} where a list belongs: write {key} as a subkey whose values are named 1, 2, … \
         (Group Policy's list), or as a REG_MULTI_SZ",
        shown(data)
    )
}

fn unknown(at: &str) -> ConfigError {
    bad(
        at,
        "not a Keyport setting (the values are named like keyport.toml's keys: listen, modules, \
         allow_origins, …)"
            .into(),
    )
}

fn bad(value: &str, message: String) -> ConfigError {
    ConfigError::Registry {
        value: value.to_string(),
        message,
    }
}

#[cfg(windows)]
pub use self::windows::read;

/// Reading a key with winreg.
#[cfg(windows)]
mod windows {
    use super::{RegData, RegTree};
    use std::io;
    use winreg::enums::{RegType, HKEY_CURRENT_USER, HKEY_LOCAL_MACHINE, KEY_READ};
    use winreg::types::FromRegValue;
    use winreg::{RegKey, RegValue};

    /// The key `ROOT\path` (`HKLM` or `HKCU`), two levels deep: its values, its subkeys' values,
    /// and the names of theirs. `None`: there is no such key.
    pub fn read(key: &str) -> io::Result<Option<RegTree>> {
        let (root, path) = key.split_once('\\').unwrap_or((key, ""));
        let hive = match root.to_ascii_uppercase().as_str() {
            "HKLM" | "HKEY_LOCAL_MACHINE" => HKEY_LOCAL_MACHINE,
            "HKCU" | "HKEY_CURRENT_USER" => HKEY_CURRENT_USER,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{root} is not HKLM or HKCU"),
                ))
            }
        };
        match RegKey::predef(hive).open_subkey_with_flags(path, KEY_READ) {
            Ok(key) => tree(&key, 2).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn tree(key: &RegKey, depth: u8) -> io::Result<RegTree> {
        let mut out = RegTree::default();
        if depth == 0 {
            return Ok(out);
        }
        for value in key.enum_values() {
            let (name, value) = value?;
            out.values.push((name, data(&value)?));
        }
        for name in key.enum_keys() {
            let name = name?;
            let sub = key.open_subkey_with_flags(&name, KEY_READ)?;
            out.subkeys.push((name, tree(&sub, depth - 1)?));
        }
        Ok(out)
    }

    fn data(value: &RegValue) -> io::Result<RegData> {
        Ok(match value.vtype {
            RegType::REG_SZ => RegData::Sz(String::from_reg_value(value)?),
            RegType::REG_EXPAND_SZ => RegData::ExpandSz(String::from_reg_value(value)?),
            RegType::REG_MULTI_SZ => RegData::MultiSz(
                Vec::<String>::from_reg_value(value)?
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect(),
            ),
            RegType::REG_DWORD => RegData::Dword(u32::from_reg_value(value)?),
            RegType::REG_QWORD => RegData::Qword(u64::from_reg_value(value)?),
            ref other => RegData::Other(format!("{other:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: &str = r"HKLM\Software\Policies\Keyport";

    fn sz(s: &str) -> RegData {
        RegData::Sz(s.into())
    }

    fn list(entries: &[(&str, RegData)]) -> RegTree {
        RegTree {
            values: entries
                .iter()
                .map(|(n, d)| (n.to_string(), d.clone()))
                .collect(),
            subkeys: Vec::new(),
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn mapped(tree: &RegTree) -> Result<FileConfig, ConfigError> {
        file_config(tree, AT, &no_env)
    }

    /// The error's value and message (any other error fails the test).
    fn error(tree: &RegTree) -> (String, String) {
        match mapped(tree) {
            Err(ConfigError::Registry { value, message }) => (value, message),
            other => panic!("not a registry error: {other:?}"),
        }
    }

    /// A value of each kind, as Group Policy would write it.
    fn sample(kind: &Kind) -> RegTree {
        match kind {
            Kind::Bool => list(&[("v", RegData::Dword(1))]),
            Kind::Number { .. } => list(&[("v", RegData::Dword(7))]),
            Kind::Text => list(&[("v", sz("127.0.0.1:1"))]),
            Kind::Choice(words) => list(&[("v", sz(&words[0]))]),
            Kind::List => list(&[("1", sz("x"))]),
        }
    }

    #[test]
    fn every_key_of_the_table_can_be_set_in_the_registry() {
        for &key in KEYS.iter().chain(ADMIN_KEYS) {
            let kind = FileConfig::kind(key).unwrap();
            let sample = sample(&kind);
            let tree = match kind {
                Kind::List => RegTree {
                    subkeys: vec![(key.to_string(), sample)],
                    ..RegTree::default()
                },
                _ => RegTree {
                    values: vec![(key.to_string(), sample.values[0].1.clone())],
                    ..RegTree::default()
                },
            };
            let file = mapped(&tree).unwrap_or_else(|e| panic!("{key}: {e}"));
            assert!(file.sets(key), "{key}");
            for other in KEYS.iter().chain(ADMIN_KEYS).filter(|k| **k != key) {
                assert!(!file.sets(other), "{key} set {other}");
            }
        }
    }

    #[test]
    fn what_group_policy_writes_becomes_the_settings() {
        let tree = RegTree {
            values: vec![
                ("user_may_add_origins".into(), RegData::Dword(1)),
                ("Consent_Timeout_Secs".into(), RegData::Dword(30)),
                ("no_origin".into(), sz("deny")),
                ("keep_logged_in".into(), RegData::Qword(0)),
                (
                    "modules".into(),
                    RegData::MultiSz(vec!["C:\\a.dll".into(), "C:\\b.dll".into()]),
                ),
            ],
            subkeys: vec![
                (
                    "allow_origins".into(),
                    list(&[
                        ("2", sz("https://b.example")),
                        ("10", sz("https://c.example")),
                        ("1", sz("https://a.example")),
                    ]),
                ),
                // Left behind, emptied, by a list policy turned off: not set.
                ("trust_origins".into(), RegTree::default()),
            ],
        };
        let file = mapped(&tree).unwrap();
        assert_eq!(file.user_may_add_origins, Some(true));
        assert_eq!(file.consent_timeout_secs, Some(30));
        assert_eq!(file.no_origin, Some(crate::config::NoOriginPolicy::Deny));
        assert_eq!(file.keep_logged_in, Some(false));
        assert_eq!(file.modules.unwrap(), ["C:\\a.dll", "C:\\b.dll"]);
        assert_eq!(
            file.allow_origins.unwrap(),
            [
                "https://a.example",
                "https://b.example",
                "https://c.example"
            ]
        );
        assert_eq!(file.trust_origins, None);
        assert_eq!(file.listen, None);
    }

    #[test]
    fn a_bad_value_is_an_error_that_names_it() {
        let at = |name: &str| format!(r"{AT}\{name}");
        let one = |name: &str, data: RegData| list(&[(name, data)]);
        let cases: Vec<(RegTree, String, &str)> = vec![
            (one("listn", sz("x")), at("listn"), "not a Keyport setting"),
            (
                one("tray", RegData::Dword(2)),
                at("tray"),
                "REG_DWORD 1 (true) or 0",
            ),
            (one("tray", sz("true")), at("tray"), "REG_SZ \"true\""),
            (
                one("max_connections", sz("5")),
                at("max_connections"),
                "a whole number",
            ),
            (
                one("max_connections", RegData::Qword(1 << 33)),
                at("max_connections"),
                "more than the largest allowed, 4294967295",
            ),
            (
                one("consent", sz("popup")),
                at("consent"),
                "\"popup\" is not one of auto, notify",
            ),
            (
                one("listen", RegData::Dword(1)),
                at("listen"),
                "where a REG_SZ belongs",
            ),
            (
                one("modules", sz("C:\\a.dll")),
                at("modules"),
                "write modules as a subkey whose values are named 1, 2",
            ),
            (
                one("pinentry", RegData::Other("REG_BINARY".into())),
                at("pinentry"),
                "a REG_BINARY where a REG_SZ",
            ),
        ];
        for (tree, value, words) in cases {
            let (v, message) = error(&tree);
            assert_eq!(v, value);
            assert!(message.contains(words), "{value}: {message}");
            let shown = ConfigError::Registry { value: v, message }.to_string();
            assert!(
                shown.starts_with(&format!("invalid policy value {value}: ")),
                "{shown}"
            );
        }
    }

    #[test]
    fn a_bad_list_key_is_an_error_that_names_it() {
        let sub = |name: &str, key: RegTree| RegTree {
            subkeys: vec![(name.into(), key)],
            ..RegTree::default()
        };
        let origins = |entries: &[(&str, RegData)]| sub("allow_origins", list(entries));
        let at = format!(r"{AT}\allow_origins");
        for name in ["0", "01", "+1", "a", "", "1.5"] {
            let (value, message) = error(&origins(&[(name, sz("https://a.example"))]));
            assert_eq!(value, format!(r"{at}\{name}"));
            assert!(message.contains("named 1, 2, 3"), "{message}");
        }
        let (value, message) = error(&origins(&[("1", RegData::Dword(1))]));
        assert_eq!(
            (value.as_str(), message.as_str()),
            (&*format!(r"{at}\1"), "a REG_DWORD 1 where a REG_SZ belongs")
        );
        let nested = sub("allow_origins", sub("more", RegTree::default()));
        assert_eq!(error(&nested).0, format!(r"{at}\more"));
        let (value, message) = error(&sub("tray", list(&[("1", RegData::Dword(1))])));
        assert_eq!(value, format!(r"{AT}\tray"));
        assert!(message.contains("not a subkey"), "{message}");
        assert!(error(&sub("nope", RegTree::default()))
            .1
            .contains("not a Keyport setting"));
        // The same list twice: a REG_MULTI_SZ and a subkey.
        let mut twice = origins(&[("1", sz("https://a.example"))]);
        twice.values.push((
            "allow_origins".into(),
            RegData::MultiSz(vec!["https://b.example".into()]),
        ));
        let (value, message) = error(&twice);
        assert_eq!(value, at);
        assert!(message.contains("set twice"), "{message}");
    }

    #[test]
    fn expandable_texts_have_their_variables_expanded() {
        let env = |name: &str| (name == "ProgramFiles").then(|| r"C:\Program Files".to_string());
        assert_eq!(
            expand(r"%ProgramFiles%\OpenSC Project\opensc-pkcs11.dll", &env),
            r"C:\Program Files\OpenSC Project\opensc-pkcs11.dll"
        );
        assert_eq!(expand(r"%Nope%\x;100%;%%;%", &env), r"%Nope%\x;100%;%%;%");
        let tree = RegTree {
            values: vec![(
                "pinentry".into(),
                RegData::ExpandSz(r"%ProgramFiles%\p.exe".into()),
            )],
            subkeys: vec![(
                "modules".into(),
                list(&[("1", RegData::ExpandSz(r"%ProgramFiles%\m.dll".into()))]),
            )],
        };
        let file = file_config(&tree, AT, &env).unwrap();
        assert_eq!(
            file.pinentry.unwrap(),
            PathBuf::from(r"C:\Program Files\p.exe")
        );
        assert_eq!(file.modules.unwrap(), [r"C:\Program Files\m.dll"]);
    }

    /// What Group Policy writes, written into the real registry with winreg (HKCU, a key of this
    /// test's own: HKLM's policy key is the machine's) and read back by the agent's code: the
    /// value tree, the layer, the merged settings and the report.
    #[cfg(windows)]
    #[test]
    fn the_agent_reads_the_policy_from_the_windows_registry() {
        use crate::config::file::{Admin, Layer};
        use crate::config::{Cli, Config, Source};
        use clap::Parser;
        use winreg::enums::{RegType, HKEY_CURRENT_USER};
        use winreg::{RegKey, RegValue};

        /// Deletes the test's key, whatever happens.
        struct Scratch(String);
        impl Drop for Scratch {
            fn drop(&mut self) {
                let _ = RegKey::predef(HKEY_CURRENT_USER).delete_subkey_all(&self.0);
            }
        }
        let path = format!(r"Software\KeyportTest\policy-{}", std::process::id());
        let scratch = Scratch(path.clone());
        let at = format!(r"HKCU\{}", scratch.0);
        let (key, _) = RegKey::predef(HKEY_CURRENT_USER)
            .create_subkey(&path)
            .unwrap();
        key.set_value("user_may_add_origins", &1u32).unwrap();
        key.set_value("no_origin", &"deny").unwrap();
        key.set_value("Consent_Timeout_Secs", &30u32).unwrap();
        key.set_value("max_connections", &8u64).unwrap();
        key.set_value("module_env", &vec!["OPENSC_DEBUG", "PKCS11SPY=C:\\spy.dll"])
            .unwrap();
        let expandable: Vec<u16> = "%SystemRoot%\\pkcs11.dll\0".encode_utf16().collect();
        let (modules, _) = key.create_subkey("modules").unwrap();
        modules
            .set_raw_value(
                "1",
                &RegValue {
                    bytes: expandable.iter().flat_map(|w| w.to_le_bytes()).collect(),
                    vtype: RegType::REG_EXPAND_SZ,
                },
            )
            .unwrap();
        let (origins, _) = key.create_subkey("allow_origins").unwrap();
        origins.set_value("2", &"https://b.example").unwrap();
        origins.set_value("1", &"https://a.example").unwrap();

        let tree = read(&at).unwrap().expect("the key is there");
        let env = |name: &str| std::env::var(name).ok();
        let file = file_config(&tree, &at, &env).unwrap();
        let system_root = std::env::var("SystemRoot").unwrap();
        assert_eq!(
            file.modules.unwrap(),
            [format!(r"{system_root}\pkcs11.dll")]
        );
        assert_eq!(
            file.allow_origins.unwrap(),
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(
            file.module_env.unwrap(),
            ["OPENSC_DEBUG", r"PKCS11SPY=C:\spy.dll"]
        );
        assert_eq!(file.user_may_add_origins, Some(true));
        assert_eq!(file.consent_timeout_secs, Some(30));
        assert_eq!(file.max_connections, Some(8));

        // The key as the administrator's top layer, over an absent file.
        let layer = Layer::registry_at(&at).unwrap().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let absent = Layer {
            path: dir.path().join("keyport.toml"),
            ..Layer::default()
        };
        let person = dir.path().join("mine.toml");
        std::fs::write(&person, "allow_origins = [\"https://mine.example\"]").unwrap();
        let cli = Cli::parse_from(["keyport", "--config", person.to_str().unwrap()]);
        let loaded = Config::load_with(cli, Admin::of(vec![layer, absent])).unwrap();
        let origins: Vec<&str> = loaded
            .config
            .allow_origins
            .iter()
            .map(|o| o.as_str())
            .collect();
        assert_eq!(
            origins,
            [
                "https://a.example",
                "https://b.example",
                "https://mine.example"
            ]
        );
        assert_eq!(loaded.config.no_origin, crate::config::NoOriginPolicy::Deny);
        assert_eq!(loaded.sources["no_origin"], Source::Admin(label(&at)));
        let report = loaded.report();
        assert!(
            report.contains(&format!("# Read: registry {at} (administrator)")),
            "{report}"
        );

        // A value of a type the policy never takes: an error that names it.
        key.set_raw_value(
            "tray",
            &RegValue {
                bytes: vec![1, 2].into(),
                vtype: RegType::REG_BINARY,
            },
        )
        .unwrap();
        match Layer::registry_at(&at) {
            Err(ConfigError::Registry { value, message }) => {
                assert_eq!(value, format!(r"{at}\tray"));
                assert!(message.contains("REG_BINARY"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        drop(scratch);
        assert!(read(&at).unwrap().is_none(), "no key, no layer");
        assert!(read(r"HKCR\x").is_err(), "only HKLM and HKCU");
    }
}
