//! The native-messaging host manifests: the one renderer the packages, `keyport native-host
//! --print-manifest` and the tests use, the check `keyport doctor` runs on an installed one, and
//! the extension's pinned id.
//!
//! The id is computed here, once, from the `key` in the extension's own manifest
//! (`extension/manifest.json`, compiled in): Chrome's id is the SHA-256 of that DER public key,
//! its first 32 hex digits written with the letters a–p for 0–f. Firefox knows the extension by
//! its Gecko id ([`GECKO_ID`]).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::OnceLock;

/// The extension's id in Firefox (`browser_specific_settings.gecko.id`).
pub use keyport_protocol::EXTENSION_GECKO_ID as GECKO_ID;
/// The host's name, as the extension calls `connectNative` and as the manifest's file is named.
pub use keyport_protocol::NATIVE_HOST_NAME as HOST_NAME;
/// The manifest file's name in every browser's folder.
pub const FILE_NAME: &str = "org.keyport.agent.json";
const DESCRIPTION: &str = "Keyport: PKCS #11 tokens for web pages, with the person's consent";

/// The extension's manifest (its `key` pins its Chrome id).
const EXTENSION_MANIFEST: &str = include_str!("../../../extension/manifest.json");

/// The two kinds of host manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Chromium, Google Chrome, Microsoft Edge, Brave: `allowed_origins`.
    Chromium,
    /// Firefox: `allowed_extensions`.
    Firefox,
}

impl Family {
    pub fn parse(name: &str) -> Option<Family> {
        match name {
            "chromium" | "chrome" | "edge" | "brave" => Some(Family::Chromium),
            "firefox" => Some(Family::Firefox),
            _ => None,
        }
    }
}

/// Chrome's extension id for a `key` (base64 of the DER SubjectPublicKeyInfo).
pub fn id_from_key(key_base64: &str) -> Result<String, String> {
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(key_base64.trim())
        .map_err(|e| format!("the extension's key is not base64: {e}"))?;
    if der.is_empty() {
        return Err("the extension's key is empty".into());
    }
    let digest = Sha256::digest(&der);
    Ok(digest[..16]
        .iter()
        .flat_map(|b| [b >> 4, b & 0xf])
        .map(|nibble| (b'a' + nibble) as char)
        .collect())
}

/// The pinned Chrome id of Keyport's extension (from `extension/manifest.json`'s `key`).
pub fn extension_id() -> Result<&'static str, String> {
    static ID: OnceLock<Result<String, String>> = OnceLock::new();
    ID.get_or_init(|| {
        let manifest: Value = serde_json::from_str(EXTENSION_MANIFEST)
            .map_err(|e| format!("extension/manifest.json is not JSON: {e}"))?;
        let key = manifest["key"]
            .as_str()
            .ok_or("extension/manifest.json has no `key`: the extension's id is not pinned")?;
        id_from_key(key)
    })
    .as_deref()
    .map_err(Clone::clone)
}

/// The origin a Chromium-family manifest allows: `chrome-extension://ID/`.
pub fn extension_origin(id: &str) -> String {
    format!("chrome-extension://{id}/")
}

/// The manifest for `family`, for the host at `binary` (an absolute path), as JSON text.
pub fn render(family: Family, binary: &Path) -> Result<String, String> {
    if !binary.is_absolute() {
        return Err(format!(
            "the host's path must be absolute (browsers require it on Linux and macOS): {}",
            binary.display()
        ));
    }
    let path = binary
        .to_str()
        .ok_or_else(|| format!("the host's path is not UTF-8: {}", binary.display()))?;
    let mut manifest = json!({
        "name": HOST_NAME,
        "description": DESCRIPTION,
        "path": path,
        "type": "stdio",
    });
    match family {
        Family::Chromium => {
            manifest["allowed_origins"] = json!([extension_origin(extension_id()?)]);
        }
        Family::Firefox => manifest["allowed_extensions"] = json!([GECKO_ID]),
    }
    let mut text = serde_json::to_string_pretty(&manifest).map_err(|e| e.to_string())?;
    text.push('\n');
    Ok(text)
}

/// What is wrong with an installed manifest `text` of `family`, expected to start `binary`
/// (empty: nothing). Each entry is a sentence.
pub fn problems(family: Family, text: &str, binary: &Path) -> Vec<String> {
    let manifest: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return vec![format!("not valid JSON ({e})")],
    };
    let mut out = Vec::new();
    if manifest["name"] != HOST_NAME {
        out.push(format!("its name is {}, not {HOST_NAME}", manifest["name"]));
    }
    if manifest["type"] != "stdio" {
        out.push(format!("its type is {}, not \"stdio\"", manifest["type"]));
    }
    match manifest["path"].as_str() {
        None => out.push("it has no path".into()),
        Some(p) if !same_file(Path::new(p), binary) => out.push(format!(
            "its path is {p}, not this keyport ({})",
            binary.display()
        )),
        Some(_) => {}
    }
    let (member, want) = match family {
        Family::Chromium => match extension_id() {
            Ok(id) => ("allowed_origins", extension_origin(id)),
            Err(e) => return vec![e],
        },
        Family::Firefox => ("allowed_extensions", GECKO_ID.to_string()),
    };
    let allowed = manifest[member].as_array();
    if !allowed.is_some_and(|list| list.iter().any(|v| v == want.as_str())) {
        out.push(format!(
            "its {member} does not list Keyport's extension ({want}): {}",
            manifest[member]
        ));
    }
    out
}

/// Whether two paths name one file (symlinks followed); equal texts when either is missing.
fn same_file(a: &Path, b: &Path) -> bool {
    match (dunce::canonicalize(a), dunce::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An absolute path on this platform (`/usr/bin/keyport`; on Windows under `C:\`).
    pub(crate) fn absolute(unix: &str) -> std::path::PathBuf {
        if cfg!(windows) {
            std::path::PathBuf::from(format!("C:{}", unix.replace('/', "\\")))
        } else {
            std::path::PathBuf::from(unix)
        }
    }

    #[test]
    fn the_id_is_the_keys_digest_in_letters_a_to_p() {
        // A throwaway 1024-bit key; its id computed apart from this code:
        // `openssl dgst -sha256 -binary key.der | xxd -p -c64 | cut -c1-32 | tr 0-9a-f a-p`.
        let key = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDmSZ+hh76xZO4FKNmLYAmDSh9e6mAvAPnf\
                   HZ1KiebCWTLoDuzCZPmxwsPGIF/M8QVjXwb+QwunLpU+ybyeVef7wlENDx6KBZs3eRaqsRQM\
                   rngbvNSJ8acJFcrFsBmsL5ezr2hU+jgrmvZhpQOhEZH45np1WGcIuFASkj6hVMZOlQIDAQAB";
        assert_eq!(
            id_from_key(key).unwrap(),
            "ldeejkjioochihabacpjgjojgfpkmhpj"
        );
        assert!(id_from_key("not base64!").is_err());
        assert!(id_from_key("").is_err());
    }

    #[test]
    fn the_pinned_id_comes_from_the_extensions_manifest() {
        let id = extension_id().unwrap();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|c| (b'a'..=b'p').contains(&c)), "{id}");
        let manifest: Value = serde_json::from_str(EXTENSION_MANIFEST).unwrap();
        assert_eq!(
            manifest["browser_specific_settings"]["gecko"]["id"], GECKO_ID,
            "the extension's Gecko id and the host manifest's must be one"
        );
    }

    #[test]
    fn the_file_is_named_after_the_host() {
        assert_eq!(FILE_NAME, format!("{HOST_NAME}.json"));
    }

    #[test]
    fn the_documentation_names_the_pinned_ids() {
        let doc = include_str!("../../../docs/BROWSERS.md");
        let id = extension_id().unwrap();
        assert!(
            doc.contains(&format!("chrome-extension://{id}/")) && doc.contains(GECKO_ID),
            "docs/BROWSERS.md does not name the extension's ids ({id}, {GECKO_ID})"
        );
    }

    #[test]
    fn chromium_and_firefox_manifests() {
        let bin = &absolute("/usr/bin/keyport");
        let chrome: Value = serde_json::from_str(&render(Family::Chromium, bin).unwrap()).unwrap();
        let id = extension_id().unwrap();
        assert_eq!(
            chrome,
            json!({
                "name": "org.keyport.agent",
                "description": DESCRIPTION,
                "path": bin.to_str().unwrap(),
                "type": "stdio",
                "allowed_origins": [format!("chrome-extension://{id}/")],
            })
        );
        let firefox: Value = serde_json::from_str(&render(Family::Firefox, bin).unwrap()).unwrap();
        assert_eq!(
            firefox["allowed_extensions"],
            json!(["keyport@keyport.org"])
        );
        assert!(firefox.get("allowed_origins").is_none());
        assert_eq!(firefox["name"], HOST_NAME);
        // Browsers refuse a relative path on Linux.
        assert!(render(Family::Chromium, Path::new("keyport")).is_err());
        assert_eq!(Family::parse("edge"), Some(Family::Chromium));
        assert_eq!(Family::parse("safari"), None);
    }

    #[test]
    fn the_check_finds_what_is_wrong() {
        let bin = &absolute("/usr/bin/keyport");
        for family in [Family::Chromium, Family::Firefox] {
            let good = render(family, bin).unwrap();
            assert_eq!(problems(family, &good, bin), Vec::<String>::new());
            let elsewhere = problems(family, &good, &absolute("/opt/keyport/bin/keyport"));
            assert_eq!(elsewhere.len(), 1, "{elsewhere:?}");
            let said = format!("its path is {}", bin.display());
            assert!(elsewhere[0].contains(&said), "{elsewhere:?}");
        }
        let wrong_family = render(Family::Firefox, bin).unwrap();
        let p = problems(Family::Chromium, &wrong_family, bin);
        assert!(p[0].contains("allowed_origins"), "{p:?}");
        let other_id = render(Family::Chromium, bin)
            .unwrap()
            .replace(extension_id().unwrap(), "abcdefghijklmnopabcdefghijklmnop");
        assert!(problems(Family::Chromium, &other_id, bin)[0].contains("does not list"));
        assert!(problems(Family::Chromium, "{not json", bin)[0].contains("not valid JSON"));
        let p = problems(Family::Firefox, r#"{"name":"x","type":"pipe"}"#, bin);
        assert_eq!(p.len(), 4, "{p:?}");
    }
}
