//! The map in `lib.rs`'s `# Layout` is the truth: every module of the crate stands on a floor
//! there, and a module imports only from floors below its own (no import upwards, hence no
//! cycle). Checked from the source: every `crate::NAME` outside comments and tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The floors of `# Layout`: module name → floor number (1 is the top).
fn floors(lib: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    let mut in_layout = false;
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.trim();
        if doc.starts_with('#') {
            in_layout = doc == "# Layout";
            continue;
        }
        if !in_layout {
            continue;
        }
        // `N. [`a`], [`b`] (…): what they do` — the names before the first colon.
        let Some((number, rest)) = doc.split_once(". ") else {
            continue;
        };
        let Ok(floor) = number.parse::<u32>() else {
            continue;
        };
        let head = rest.split(": ").next().unwrap_or(rest);
        for name in head.split('`').skip(1).step_by(2) {
            let top = name.split("::").next().unwrap();
            if !top.contains('.') {
                out.entry(top.to_string()).or_insert(floor);
            }
        }
    }
    out
}

/// Every `.rs` file below `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crate's top-level modules a file's code (not its comments, not its tests) names.
fn imports(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("#[cfg(test)]") {
            break;
        }
        let code = line.split("//").next().unwrap();
        for part in code.split("crate::").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn every_module_is_on_the_map_and_imports_only_point_down() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let floors = floors(&lib);
    assert!(floors.len() > 10, "no # Layout floors found: {floors:?}");
    let declared: Vec<String> = lib
        .lines()
        .filter_map(|l| {
            l.strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))
                .map(|m| m.trim_end_matches(';').to_string())
        })
        .collect();
    for m in &declared {
        assert!(
            floors.contains_key(m),
            "module `{m}` is not on lib.rs's # Layout"
        );
    }
    for m in floors.keys() {
        assert!(
            declared.contains(m),
            "# Layout names `{m}`, which lib.rs does not declare"
        );
    }

    let mut files = Vec::new();
    sources(&src(), &mut files);
    let mut upward = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src()).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let own = floors[&top];
        let text = std::fs::read_to_string(&file).unwrap();
        for name in imports(&text) {
            if name == top {
                continue;
            }
            let Some(&theirs) = floors.get(&name) else {
                panic!(
                    "{} names crate::{name}, which is not on the map",
                    rel.display()
                );
            };
            if theirs <= own {
                upward.push(format!(
                    "{} (floor {own}) imports crate::{name} (floor {theirs})",
                    rel.display()
                ));
            }
        }
    }
    upward.sort();
    upward.dedup();
    assert!(
        upward.is_empty(),
        "imports that do not point down:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_checker_sees_an_upward_import() {
    let lib = "//! # Layout\n//! 1. [`app`]: top\n//! 2. [`state`], [`x`]: below\n";
    let f = floors(lib);
    assert_eq!(f["app"], 1);
    assert_eq!(f["x"], 2);
    assert_eq!(
        imports("use crate::app::X; // crate::state\nfn f() { crate::x::y(); }\n#[cfg(test)]\nuse crate::z;"),
        ["app", "x"]
    );
}
