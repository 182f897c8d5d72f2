//! `keyport doctor`'s checks of the extension door, for each browser it finds: is the
//! native-messaging host manifest there (where the browser reads it, the person's folder before
//! the system's), valid, pointing at this keyport and allowing Keyport's extension; and is the
//! extension installed, where that can be told from the browser's profiles (Chromium family:
//! `Extensions/ID` or the profile's preferences; Firefox: `extensions.json`).
//!
//! The folders are Linux's (docs/BROWSERS.md); elsewhere one line says they are not checked.
//! Nothing here stops signing (the WebSocket door does not need it): problems are warnings.

use super::{check, Check, Status};
use crate::native_host::manifest::{self, Family, FILE_NAME, GECKO_ID};
use std::path::{Path, PathBuf};

/// One browser: its manifests' folders and its profiles, relative to the machine's folders.
struct Browser {
    name: &'static str,
    family: Family,
    /// The system folder (absolute on the real machine; under [`Places::root`] in tests).
    system: &'static str,
    /// The person's folder, under [`Places::config`] (Chromium family) or [`Places::home`]
    /// (Firefox).
    user: &'static str,
    /// Where its profiles are, under the same.
    profiles: &'static str,
    /// Its programs, looked for on `PATH`.
    programs: &'static [&'static str],
}

/// The browsers and their folders on Linux. Brave is a Chromium build without Google's
/// branding: it reads Chromium's system folder (its own user folder is under BraveSoftware).
const BROWSERS: &[Browser] = &[
    Browser {
        name: "Chromium",
        family: Family::Chromium,
        system: "/etc/chromium/native-messaging-hosts",
        user: "chromium/NativeMessagingHosts",
        profiles: "chromium",
        programs: &["chromium", "chromium-browser"],
    },
    Browser {
        name: "Google Chrome",
        family: Family::Chromium,
        system: "/etc/opt/chrome/native-messaging-hosts",
        user: "google-chrome/NativeMessagingHosts",
        profiles: "google-chrome",
        programs: &["google-chrome", "google-chrome-stable"],
    },
    Browser {
        name: "Microsoft Edge",
        family: Family::Chromium,
        system: "/etc/opt/edge/native-messaging-hosts",
        user: "microsoft-edge/NativeMessagingHosts",
        profiles: "microsoft-edge",
        programs: &["microsoft-edge", "microsoft-edge-stable"],
    },
    Browser {
        name: "Brave",
        family: Family::Chromium,
        system: "/etc/chromium/native-messaging-hosts",
        user: "BraveSoftware/Brave-Browser/NativeMessagingHosts",
        profiles: "BraveSoftware/Brave-Browser",
        programs: &["brave-browser", "brave"],
    },
    Browser {
        name: "Firefox",
        family: Family::Firefox,
        system: "/usr/lib/mozilla/native-messaging-hosts",
        user: ".mozilla/native-messaging-hosts",
        profiles: ".mozilla/firefox",
        programs: &["firefox", "firefox-esr"],
    },
];

/// The machine as the checks see it.
struct Places {
    home: PathBuf,
    /// `$XDG_CONFIG_HOME` (`~/.config`), where Chromium-family browsers keep their profiles.
    config: PathBuf,
    /// Prefix of the system folders ("/" on the real machine).
    root: PathBuf,
    /// The folders of `PATH`.
    path: Vec<PathBuf>,
    /// This keyport, which the manifests must start.
    binary: PathBuf,
}

impl Browser {
    /// The folder the person's manifest and the profiles are under.
    fn base<'a>(&self, at: &'a Places) -> &'a Path {
        match self.family {
            Family::Chromium => &at.config,
            Family::Firefox => &at.home,
        }
    }

    fn system_dir(&self, at: &Places) -> PathBuf {
        at.root.join(self.system.trim_start_matches('/'))
    }

    /// Whether this browser is here: a program on PATH, its profiles, or a manifest for it.
    fn found(&self, at: &Places) -> bool {
        self.programs
            .iter()
            .any(|p| at.path.iter().any(|d| d.join(p).is_file()))
            || self.base(at).join(self.profiles).is_dir()
            || self.base(at).join(self.user).join(FILE_NAME).is_file()
            || self.system_dir(at).join(FILE_NAME).is_file()
    }
}

/// The checks for every browser found (one line when none is).
pub(super) fn checks(checks: &mut Vec<Check>) {
    if !cfg!(target_os = "linux") {
        checks.push(check(
            "extension door",
            Status::Ok,
            "the browsers' host manifests and the extension are checked on Linux only",
        ));
        return;
    }
    let (Some(home), Some(config), Ok(binary)) = (
        dirs::home_dir(),
        dirs::config_dir(),
        std::env::current_exe(),
    ) else {
        checks.push(check(
            "extension door",
            Status::Warn,
            "cannot tell: no home folder, or this program's path is unknown",
        ));
        return;
    };
    let places = Places {
        home,
        config,
        root: PathBuf::from("/"),
        path: std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default(),
        binary,
    };
    checks.extend(checks_at(&places));
}

fn checks_at(at: &Places) -> Vec<Check> {
    let mut out = Vec::new();
    for b in BROWSERS.iter().filter(|b| b.found(at)) {
        out.push(manifest_check(b, at));
        out.push(extension_check(b, at));
    }
    if out.is_empty() {
        out.push(check(
            "extension door",
            Status::Ok,
            "no browser found (Chromium, Google Chrome, Microsoft Edge, Brave, Firefox)",
        ));
    }
    out
}

/// The manifest the browser would read (the person's before the system's), checked.
fn manifest_check(b: &Browser, at: &Places) -> Check {
    let name = format!("host manifest ({})", b.name);
    let user = b.base(at).join(b.user).join(FILE_NAME);
    let system = b.system_dir(at).join(FILE_NAME);
    let Some(path) = [user, system.clone()].into_iter().find(|p| p.is_file()) else {
        let family = match b.family {
            Family::Chromium => "chromium",
            Family::Firefox => "firefox",
        };
        return check(
            &name,
            Status::Warn,
            format!(
                "none at {}: the extension cannot start keyport in {} (the WebSocket door still \
                 works). Install the keyport package, or write `keyport native-host \
                 --print-manifest {family}` there",
                system.display(),
                b.name
            ),
        );
    };
    let text = match read_small(&path) {
        Ok(t) => t,
        Err(e) => return check(&name, Status::Warn, format!("{}: {e}", path.display())),
    };
    let problems = manifest::problems(b.family, &text, &at.binary);
    if problems.is_empty() {
        check(
            &name,
            Status::Ok,
            format!(
                "{}: starts this keyport for Keyport's extension",
                path.display()
            ),
        )
    } else {
        check(
            &name,
            Status::Warn,
            format!("{}: {}", path.display(), problems.join("; ")),
        )
    }
}

/// Read a file the browsers or the package wrote, refusing one too large to be theirs.
fn read_small(path: &Path) -> Result<String, String> {
    const MAX: u64 = 32 * 1024 * 1024;
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX {
        return Err(format!("{len} bytes: too large to read"));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// The profile folders of a browser: those holding the file `marker`.
fn profiles(dir: &Path, marker: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.join(marker).is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn profile_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether one Chromium-family profile has the extension: installed from a store or by policy
/// (`Extensions/ID`), or known to its preferences (an unpacked one too).
fn chromium_profile_has(profile: &Path, id: &str) -> bool {
    profile.join("Extensions").join(id).is_dir()
        || ["Preferences", "Secure Preferences"].iter().any(|f| {
            read_small(&profile.join(f))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .is_some_and(|v| v["extensions"]["settings"].get(id).is_some())
        })
}

/// Whether one Firefox profile has the add-on, and whether it is on.
fn firefox_profile_has(profile: &Path) -> Option<bool> {
    let text = read_small(&profile.join("extensions.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let addon = v["addons"]
        .as_array()?
        .iter()
        .find(|a| a["id"] == GECKO_ID)?;
    Some(addon["active"] == true)
}

fn extension_check(b: &Browser, at: &Places) -> Check {
    let name = format!("extension ({})", b.name);
    let dir = b.base(at).join(b.profiles);
    // Each profile that has it, and whether it is on there.
    let found: Vec<(String, bool)> = match b.family {
        Family::Chromium => {
            let id = match manifest::extension_id() {
                Ok(id) => id,
                Err(e) => return check(&name, Status::Warn, e),
            };
            let profiles = profiles(&dir, "Preferences");
            let found = profiles
                .iter()
                .filter(|p| chromium_profile_has(p, id))
                .map(|p| (profile_name(p), true))
                .collect();
            if profiles.is_empty() {
                return cannot_tell(&name, &dir);
            }
            found
        }
        Family::Firefox => {
            let profiles = profiles(&dir, "extensions.json");
            if profiles.is_empty() {
                return cannot_tell(&name, &dir);
            }
            profiles
                .iter()
                .filter_map(|p| firefox_profile_has(p).map(|on| (profile_name(p), on)))
                .collect()
        }
    };
    let on: Vec<&str> = found
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| n.as_str())
        .collect();
    let off: Vec<&str> = found
        .iter()
        .filter(|(_, on)| !*on)
        .map(|(n, _)| n.as_str())
        .collect();
    match (on.is_empty(), off.is_empty()) {
        (false, _) => check(
            &name,
            Status::Ok,
            format!("installed in profile(s) {}", on.join(", ")),
        ),
        (true, false) => check(
            &name,
            Status::Warn,
            format!("installed but disabled in profile(s) {}", off.join(", ")),
        ),
        (true, true) => check(
            &name,
            Status::Warn,
            format!(
                "not installed in any profile in {}: install Keyport's extension (or sites use \
                 the WebSocket door)",
                dir.display()
            ),
        ),
    }
}

fn cannot_tell(name: &str, dir: &Path) -> Check {
    check(
        name,
        Status::Ok,
        format!("cannot tell: no profile in {}", dir.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn machine() -> (tempfile::TempDir, Places) {
        let dir = tempfile::tempdir().unwrap();
        let at = Places {
            home: dir.path().join("home"),
            config: dir.path().join("home/.config"),
            root: dir.path().join("root"),
            path: vec![dir.path().join("bin")],
            binary: dir.path().join("bin/keyport"),
        };
        fs::create_dir_all(dir.path().join("bin")).unwrap();
        fs::write(&at.binary, "").unwrap();
        (dir, at)
    }

    fn put(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name} in {checks:?}"))
    }

    #[test]
    fn no_browser_is_one_line() {
        let (_d, at) = machine();
        let out = checks_at(&at);
        assert_eq!(out.len(), 1);
        assert!(out[0].detail.contains("no browser found"));
    }

    #[test]
    fn a_browser_without_a_manifest_or_the_extension_is_warned_about() {
        let (_d, at) = machine();
        put(&at.path[0].join("chromium"), "");
        put(&at.config.join("chromium/Default/Preferences"), "{}");
        let out = checks_at(&at);
        assert_eq!(out.len(), 2, "{out:?}");
        let m = find(&out, "host manifest (Chromium)");
        assert_eq!(m.status, Status::Warn);
        assert!(
            m.detail.contains("--print-manifest chromium"),
            "{}",
            m.detail
        );
        let e = find(&out, "extension (Chromium)");
        assert_eq!(e.status, Status::Warn);
        assert!(e.detail.contains("not installed"), "{}", e.detail);
    }

    #[test]
    fn a_good_system_manifest_and_an_installed_extension_are_ok() {
        let (_d, at) = machine();
        let id = manifest::extension_id().unwrap();
        let text = manifest::render(Family::Chromium, &at.binary).unwrap();
        put(
            &at.root
                .join("etc/chromium/native-messaging-hosts")
                .join(FILE_NAME),
            &text,
        );
        put(&at.config.join("chromium/Default/Preferences"), "{}");
        put(&at.config.join("chromium/Profile 1/Preferences"), "{}");
        fs::create_dir_all(
            at.home
                .join(".config/chromium/Profile 1/Extensions")
                .join(id)
                .join("0.1.0_0"),
        )
        .unwrap();
        // An unpacked extension is only in the profile's preferences.
        put(
            &at.config.join("chromium/Default/Secure Preferences"),
            &format!(r#"{{"extensions":{{"settings":{{"{id}":{{"path":"/src/extension"}}}}}}}}"#),
        );
        let out = checks_at(&at);
        // Chromium (its manifest and profiles) and Brave (it reads the same system folder).
        let m = find(&out, "host manifest (Chromium)");
        assert_eq!(m.status, Status::Ok, "{}", m.detail);
        let e = find(&out, "extension (Chromium)");
        assert_eq!(e.status, Status::Ok, "{}", e.detail);
        assert!(e.detail.contains("Default, Profile 1"), "{}", e.detail);
        assert_eq!(find(&out, "host manifest (Brave)").status, Status::Ok);
        assert!(find(&out, "extension (Brave)")
            .detail
            .contains("cannot tell"));
        assert!(!out.iter().any(|c| c.name.contains("Edge")));
    }

    #[test]
    fn the_persons_manifest_is_the_one_checked_and_its_faults_are_named() {
        let (_d, at) = machine();
        let good = manifest::render(Family::Firefox, &at.binary).unwrap();
        put(
            &at.root
                .join("usr/lib/mozilla/native-messaging-hosts")
                .join(FILE_NAME),
            &good,
        );
        let old = crate::native_host::manifest::tests::absolute("/opt/old/keyport");
        let elsewhere = manifest::render(Family::Firefox, &old).unwrap();
        put(
            &at.home
                .join(".mozilla/native-messaging-hosts")
                .join(FILE_NAME),
            &elsewhere,
        );
        let out = checks_at(&at);
        let m = find(&out, "host manifest (Firefox)");
        assert_eq!(m.status, Status::Warn);
        assert!(
            m.detail.contains(".mozilla/native-messaging-hosts"),
            "{}",
            m.detail
        );
        assert!(
            m.detail.contains(&format!("its path is {}", old.display())),
            "{}",
            m.detail
        );
        // Broken JSON is named too.
        put(
            &at.home
                .join(".mozilla/native-messaging-hosts")
                .join(FILE_NAME),
            "{",
        );
        let m = checks_at(&at);
        assert!(find(&m, "host manifest (Firefox)")
            .detail
            .contains("not valid JSON"));
    }

    #[test]
    fn firefox_profiles_say_whether_the_add_on_is_there_and_on() {
        let (_d, at) = machine();
        let profiles = at.home.join(".mozilla/firefox");
        put(
            &profiles.join("abcd.default-esr/extensions.json"),
            &format!(
                r#"{{"addons":[{{"id":"other@example.org","active":true}},{{"id":"{GECKO_ID}","active":false}}]}}"#
            ),
        );
        let out = checks_at(&at);
        let e = find(&out, "extension (Firefox)");
        assert_eq!(e.status, Status::Warn);
        assert!(
            e.detail.contains("disabled in profile(s) abcd.default-esr"),
            "{}",
            e.detail
        );
        put(
            &profiles.join("efgh.second/extensions.json"),
            &format!(r#"{{"addons":[{{"id":"{GECKO_ID}","active":true}}]}}"#),
        );
        let e = checks_at(&at);
        let e = find(&e, "extension (Firefox)");
        assert_eq!(e.status, Status::Ok);
        assert!(e.detail.contains("efgh.second"), "{}", e.detail);
    }

    #[test]
    fn the_package_installs_a_manifest_in_every_system_folder_checked_here() {
        // The package's files (agent/Cargo.toml's deb assets), or the links its postinst makes
        // under /etc/opt, where a package may not ship files.
        let cargo = include_str!("../../Cargo.toml");
        let postinst = include_str!("../../../packaging/debian/postinst");
        for b in BROWSERS {
            let asset = format!("\"{}/\"", b.system.trim_start_matches('/'));
            assert!(
                cargo.contains(&asset) || postinst.contains(b.system),
                "the package installs nothing in {} ({})",
                b.system,
                b.name
            );
        }
    }
}
