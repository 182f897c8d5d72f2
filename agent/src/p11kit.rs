//! PKCS #11 modules by their p11-kit name: the registry of `*.module` files that distributions
//! install (Debian: `/usr/share/p11-kit/modules/softhsm2.module` says
//! `module: /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so`). A configuration may list
//! `p11-kit:softhsm2` instead of a path that differs per distribution, and a page may send
//! `module: "softhsm2"`; either way only a module on the allowlist is used.
//!
//! The registry is read from the system's folders (p11-kit's package folder
//! `/usr/share/p11-kit/modules`, then its system folder `/etc/pkcs11/modules`) and the person's
//! (`$XDG_CONFIG_HOME/pkcs11/modules`, i.e. `~/.config/pkcs11/modules`), later folders winning,
//! as p11-kit does. The administrator's `p11-kit:NAME` entries are resolved through the system's
//! folders only ([`resolve_system_entry`]): the person's registry must not make the
//! administrator's name load another library. The person's own entries see the person's
//! registry too ([`resolve_entry`]). In a debug build, `KEYPORT_P11KIT_MODULES` (folders
//! separated by `:`) replaces the system's folders (tests; see [`crate::hooks`]). A relative
//! `module:` is looked up in p11-kit's module folder (`/usr/lib/<multiarch>/pkcs11`). Other
//! p11-kit options (`enable-in`, `priority`, …) are not used: Keyport loads a module only when
//! its configuration says so.
//!
//! Windows has no p11-kit registry: there the folders are none (but the test hook's), and a
//! `p11-kit:NAME` entry is an error that asks for the library's path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How a configuration names a module by its p11-kit name.
pub const PREFIX: &str = "p11-kit:";

/// The test hook that replaces the system's registry folders (debug builds only).
pub const DIRS_VAR: &str = "KEYPORT_P11KIT_MODULES";

/// One registered module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// Its name: the registry file's name without `.module`.
    pub name: String,
    /// The library (absolute).
    pub path: PathBuf,
    /// The registry file that says so.
    pub file: PathBuf,
}

/// The system's registry folders, in order (later ones win): what the administrator's
/// entries are resolved through.
pub fn system_folders() -> Vec<PathBuf> {
    if let Some(dirs) = crate::hooks::var(DIRS_VAR) {
        return std::env::split_paths(&dirs).collect();
    }
    if cfg!(windows) {
        return Vec::new();
    }
    vec![
        PathBuf::from("/usr/share/p11-kit/modules"),
        PathBuf::from("/etc/pkcs11/modules"),
    ]
}

/// The person's registry folder (`$XDG_CONFIG_HOME/pkcs11/modules`), if there is a home.
pub fn user_folder() -> Option<PathBuf> {
    if cfg!(windows) {
        return None;
    }
    dirs::config_dir().map(|config| config.join("pkcs11").join("modules"))
}

/// Every folder the registry is read from, in order (later ones win): the system's, then the
/// person's.
pub fn folders() -> Vec<PathBuf> {
    let mut out = system_folders();
    out.extend(user_folder());
    out
}

/// Where a relative `module:` is found.
fn module_dirs() -> Vec<PathBuf> {
    if cfg!(windows) {
        return Vec::new();
    }
    let triplet = format!("{}-linux-gnu", std::env::consts::ARCH);
    [
        format!("/usr/lib/{triplet}/pkcs11"),
        "/usr/lib64/pkcs11".into(),
        "/usr/lib/pkcs11".into(),
        "/usr/local/lib/pkcs11".into(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

/// The `module:` line of a registry file, resolved to a path.
fn module_of(text: &str) -> Option<PathBuf> {
    let value = text.lines().find_map(|line| {
        let line = line.trim();
        if line.starts_with('#') {
            return None;
        }
        let (key, value) = line.split_once(':')?;
        (key.trim() == "module").then(|| value.trim().to_string())
    })?;
    if value.is_empty() {
        return None;
    }
    let path = PathBuf::from(&value);
    if path.is_absolute() {
        return Some(path);
    }
    let dirs = module_dirs();
    dirs.iter()
        .map(|d| d.join(&path))
        .find(|p| p.exists())
        .or_else(|| dirs.first().map(|d| d.join(&path)))
}

/// Every registered module, by name (the system's and the person's registry).
pub fn registry() -> BTreeMap<String, Registered> {
    registry_in(&folders())
}

/// The modules the system's registry names (not the person's).
pub fn system_registry() -> BTreeMap<String, Registered> {
    registry_in(&system_folders())
}

pub fn registry_in(folders: &[PathBuf]) -> BTreeMap<String, Registered> {
    let mut out = BTreeMap::new();
    for folder in folders {
        let Ok(entries) = std::fs::read_dir(folder) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for file in files {
            if file.extension().and_then(|e| e.to_str()) != Some("module") {
                continue;
            }
            let Some(name) = file.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            match module_of(&text) {
                Some(path) => {
                    out.insert(
                        name.to_string(),
                        Registered {
                            name: name.to_string(),
                            path,
                            file: file.clone(),
                        },
                    );
                }
                // A file without `module:` disables the name (p11-kit: a user's empty file
                // hides a system module).
                None => {
                    out.remove(name);
                }
            }
        }
    }
    out
}

/// Whether `entry` is a configuration's `p11-kit:NAME`; the name.
pub fn name_in(entry: &str) -> Option<&str> {
    entry.strip_prefix(PREFIX).filter(|n| !n.is_empty())
}

/// The person's module entry as a path: absolute paths as they are, `p11-kit:NAME` through the
/// whole registry (the person's folder included). The error says what is registered.
pub fn resolve_entry(entry: &str) -> Result<String, String> {
    resolve_entry_in(entry, &folders())
}

/// The administrator's module entry as a path: `p11-kit:NAME` through the system's registry
/// only, whatever the person's `~/.config/pkcs11/modules` says.
pub fn resolve_system_entry(entry: &str) -> Result<String, String> {
    resolve_entry_in(entry, &system_folders())
}

fn resolve_entry_in(entry: &str, folders: &[PathBuf]) -> Result<String, String> {
    let Some(name) = name_in(entry) else {
        return Ok(entry.to_string());
    };
    let registry = registry_in(folders);
    match registry.get(name) {
        Some(r) => Ok(r.path.display().to_string()),
        None => {
            let names: Vec<&str> = registry.keys().map(String::as_str).collect();
            Err(if folders.is_empty() {
                format!(
                    "p11-kit has no module named {name:?}: there is no p11-kit registry here; \
                     give the library's path"
                )
            } else if names.is_empty() {
                format!(
                    "p11-kit has no module named {name:?} (no module is registered in {})",
                    shown(folders)
                )
            } else {
                format!(
                    "p11-kit has no module named {name:?} in {}; registered: {}",
                    shown(folders),
                    names.join(", ")
                )
            })
        }
    }
}

fn shown(folders: &[PathBuf]) -> String {
    folders
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `a` and `b` are the same file (a path and a symlink to it are).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The registry's files name Unix paths, and Windows has no registry: these two are Unix's.
    #[cfg(unix)]
    #[test]
    #[cfg(unix)] // p11-kit's folders and library paths are Unix ones.
    fn registry_files_name_modules_and_later_folders_win() {
        let dir = tempfile::tempdir().unwrap();
        let (system, user) = (dir.path().join("system"), dir.path().join("user"));
        std::fs::create_dir_all(&system).unwrap();
        std::fs::create_dir_all(&user).unwrap();
        std::fs::write(
            system.join("softhsm2.module"),
            "# comment\n\nmodule: /usr/lib/softhsm/libsofthsm2.so\n",
        )
        .unwrap();
        std::fs::write(system.join("opensc.module"), "module: opensc-pkcs11.so\n").unwrap();
        std::fs::write(system.join("hidden.module"), "module: /x/hidden.so\n").unwrap();
        std::fs::write(system.join("README"), "module: /x/not-a-module.so\n").unwrap();
        std::fs::write(user.join("hidden.module"), "# disabled by the person\n").unwrap();
        std::fs::write(user.join("softhsm2.module"), "module: /opt/softhsm.so\n").unwrap();
        let r = registry_in(&[system, user]);
        assert_eq!(
            r.keys().collect::<Vec<_>>(),
            ["opensc", "softhsm2"],
            "{r:?}"
        );
        assert_eq!(r["softhsm2"].path, Path::new("/opt/softhsm.so"));
        assert!(r["opensc"].path.is_absolute());
        assert!(r["opensc"].path.ends_with("pkcs11/opensc-pkcs11.so"));
    }

    #[test]
    fn entries_name_paths_or_registered_modules() {
        assert_eq!(name_in("p11-kit:opensc"), Some("opensc"));
        assert_eq!(name_in("p11-kit:"), None);
        assert_eq!(name_in("/usr/lib/x.so"), None);
        assert_eq!(resolve_entry("/usr/lib/x.so").unwrap(), "/usr/lib/x.so");
        assert_eq!(
            resolve_system_entry("/usr/lib/x.so").unwrap(),
            "/usr/lib/x.so"
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_administrators_names_do_not_see_the_persons_registry() {
        let dir = tempfile::tempdir().unwrap();
        let (system, user) = (dir.path().join("system"), dir.path().join("user"));
        std::fs::create_dir_all(&system).unwrap();
        std::fs::create_dir_all(&user).unwrap();
        std::fs::write(
            system.join("softhsm2.module"),
            "module: /usr/lib/softhsm.so\n",
        )
        .unwrap();
        std::fs::write(user.join("softhsm2.module"), "module: /tmp/evil.so\n").unwrap();
        std::fs::write(user.join("mine.module"), "module: /opt/mine.so\n").unwrap();
        let both = [system.clone(), user];
        assert_eq!(
            resolve_entry_in("p11-kit:softhsm2", &both).unwrap(),
            "/tmp/evil.so"
        );
        assert_eq!(
            resolve_entry_in("p11-kit:softhsm2", std::slice::from_ref(&system)).unwrap(),
            "/usr/lib/softhsm.so"
        );
        let err = resolve_entry_in("p11-kit:mine", &[system]).unwrap_err();
        assert!(
            err.contains("no module named \"mine\"") && err.contains("softhsm2"),
            "{err}"
        );
        // The person's folder comes last, after the system's.
        assert_eq!(folders().last(), user_folder().as_ref());
        assert!(!system_folders()
            .iter()
            .any(|f| Some(f) == user_folder().as_ref()));
    }

    #[cfg(windows)]
    #[test]
    fn windows_has_no_registry_and_says_so() {
        assert!(system_folders().is_empty() && user_folder().is_none());
        for resolve in [resolve_entry, resolve_system_entry] {
            let err = resolve("p11-kit:opensc").unwrap_err();
            assert!(
                err.contains("no p11-kit registry here; give the library's path"),
                "{err}"
            );
        }
        assert_eq!(resolve_entry(r"C:\x.dll").unwrap(), r"C:\x.dll");
    }
}
