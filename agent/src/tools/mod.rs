//! The commands besides running the agent: `keyport config`, `keyport modules`,
//! `keyport doctor` (its checks of the extension door: `browsers.rs`).
//!
//! The doctor checks what Keyport needs on this machine and explains what is missing, in words
//! a person can act on; `--json` gives the same for scripts. Its exit status is 1 when something
//! stops signing (no module loads, the port is taken by another program, the configuration is
//! invalid), 0 otherwise (warnings included).

use crate::allowlist::Allowlist;
use crate::backend::Backend;
use crate::config::{Config, ConfigError, Loaded};
use serde::Serialize;

mod browsers;
mod modules;
pub use modules::modules_report;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Works, but not everything: signing still possible.
    Warn,
    /// Stops signing.
    Fail,
}

/// One check of the doctor.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
}

fn check(name: &str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name: name.to_string(),
        status,
        detail: detail.into(),
    }
}

/// What `keyport doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True when nothing stops signing.
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let mark = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            out.push_str(&format!("[{mark}] {}: {}\n", c.name, c.detail));
        }
        out.push_str(if self.ok {
            "Nothing stops signing.\n"
        } else {
            "Something stops signing: see the FAIL lines.\n"
        });
        out
    }
}

/// What a library says of itself (`C_GetInfo`): maker, description, its version and the
/// PKCS #11 version it implements through the interface Keyport uses (OpenSC says 3.0 through
/// `C_GetInterface`, 2.20 through `C_GetFunctionList`).
pub(crate) fn library(info: &keyport_protocol::InfoResult) -> String {
    format!(
        "{} {} {} (PKCS #11 {})",
        info.manufacturer_id, info.library_description, info.library_version, info.cryptoki_version
    )
}

/// One module: loads? what does it see?
fn module_check(backend: &dyn Backend, allow: &Allowlist, path: &str) -> Check {
    let name = format!("module {path}");
    if !std::path::Path::new(path).exists() {
        return check(
            &name,
            Status::Fail,
            "the file does not exist: install the token's middleware or fix the path",
        );
    }
    let module = match allow.resolve(Some(path)) {
        Ok(m) => m,
        Err(e) => return check(&name, Status::Fail, e.message),
    };
    let info = match backend.info(&module) {
        Ok(i) => i,
        Err(e) => return check(&name, Status::Fail, e.message),
    };
    let slots = match backend.slots(&module, false) {
        Ok(s) => s,
        Err(e) => return check(&name, Status::Fail, format!("loads, but {}", e.message)),
    };
    if slots.is_empty() {
        return check(
            &name,
            Status::Warn,
            format!(
                "loads ({}), but {}",
                library(&info),
                crate::backend::pcsc::no_slot_hint()
            ),
        );
    }
    let tokens: Vec<String> = backend
        .slot_presence(&module)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| {
            let t = s.token?;
            // A blank token has no label: say what it is rather than `"" in slot N`.
            let blank = backend
                .token(&module, s.slot_id)
                .is_ok_and(|info| !info.token_initialized);
            Some(if blank {
                format!("an uninitialised token in slot {}", s.slot_id)
            } else {
                format!("{:?} in slot {}", t.label, s.slot_id)
            })
        })
        .collect();
    check(
        &name,
        Status::Ok,
        format!(
            "loads ({}); {} slot(s); tokens: {}",
            library(&info),
            slots.len(),
            if tokens.is_empty() {
                "none inserted".to_string()
            } else {
                tokens.join(", ")
            }
        ),
    )
}

/// `keyport doctor`: one check after another, each a function below.
pub fn doctor(loaded: Result<Loaded, ConfigError>) -> Report {
    let mut checks = Vec::new();
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            checks.push(check("configuration", Status::Fail, e.to_string()));
            return Report { ok: false, checks };
        }
    };
    configuration_checks(&loaded, &mut checks);
    let config = &loaded.config;
    module_checks(config, &mut checks);
    port_check(config, &mut checks);
    prompt_checks(config, &mut checks);
    tray_check(config, &mut checks);
    browser_check(config, &mut checks);
    browsers::checks(&mut checks);
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    Report { ok, checks }
}

/// Which files were read, and what the administrator's policy changed.
fn configuration_checks(loaded: &Loaded, checks: &mut Vec<Check>) {
    let files = if loaded.files.is_empty() {
        "no configuration file (defaults and flags)".to_string()
    } else {
        loaded
            .files
            .iter()
            .map(|(p, whose)| format!("{} ({whose})", p.display()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut detail = format!("read: {files}");
    for n in &loaded.notes {
        detail.push_str(&format!("; policy: {n}"));
    }
    checks.push(check("configuration", Status::Ok, detail));
}

/// Each configured PKCS #11 library: does it load, what does it see?
fn module_checks(config: &Config, checks: &mut Vec<Check>) {
    if config.modules.is_empty() {
        // Windows has no p11-kit: a library is named by its path there.
        let how = if cfg!(windows) {
            "add `modules = ['C:\\Program Files\\Vendor\\pkcs11.dll']` (the library's path) \
             to %APPDATA%\\Keyport\\keyport.toml, or start with --module PATH"
        } else {
            "add `modules = [\"p11-kit:NAME\"]` (see `keyport modules`) or a path, or start \
             with --module PATH"
        };
        checks.push(check(
            "modules",
            Status::Fail,
            format!("no PKCS #11 library is configured: {how}"),
        ));
    } else {
        let backend = crate::backend::for_config(config);
        let allow = Allowlist::new(config.modules.clone());
        for m in &config.modules {
            checks.push(module_check(backend.as_ref(), &allow, m));
        }
        backend.shutdown();
    }
}

/// Is the port free, or held by this person's own agent?
fn port_check(config: &Config, checks: &mut Vec<Check>) {
    checks.push(match std::net::TcpListener::bind(config.listen) {
        Ok(_) => check(
            "port",
            Status::Ok,
            format!("{} is free for the agent", config.listen),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let holder = crate::ports::holder(config.listen.port());
            let keyport = holder
                .as_ref()
                .is_some_and(|h| h.is_keyport() && h.mine == Some(true));
            let why = holder
                .map(|h| h.describe())
                .unwrap_or_else(|| "which program holds it cannot be seen from here".into());
            if keyport {
                check(
                    "port",
                    Status::Ok,
                    format!("{}: {why} (pages reach it)", config.listen),
                )
            } else {
                check(
                    "port",
                    Status::Fail,
                    format!(
                        "{} is in use: {why}. Stop it, or choose another `listen` port (pages \
                         then need that URL)",
                        config.listen
                    ),
                )
            }
        }
        Err(e) => check(
            "port",
            Status::Fail,
            format!("cannot listen on {}: {e}", config.listen),
        ),
    });
}

/// Can the agent ask the person?
fn prompt_checks(config: &Config, checks: &mut Vec<Check>) {
    #[cfg(windows)]
    windows_prompt_checks(config, checks);
    #[cfg(not(windows))]
    freedesktop_prompt_checks(config, checks);
}

/// Elsewhere: a notification with buttons, a pinentry window?
#[cfg(not(windows))]
fn freedesktop_prompt_checks(config: &Config, checks: &mut Vec<Check>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let caps = match &runtime {
        Ok(rt) => rt.block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_secs(3),
                crate::desktop::freedesktop::notify::capabilities(),
            )
            .await
            .unwrap_or_else(|_| Err("the notification server did not answer".into()))
        }),
        Err(e) => Err(e.to_string()),
    };
    let pinentry = crate::desktop::pinentry_prompts(config.pinentry.as_deref());
    let notify_can_ask = caps
        .as_ref()
        .is_ok_and(|c| c.iter().any(|c| c == "actions"));
    let pinentry_can_ask = pinentry.as_ref().is_some_and(|p| p.usable);
    let notify_text = match &caps {
        Ok(c) if notify_can_ask => "a notification server with buttons answers".to_string(),
        Ok(_) => "the notification server cannot show buttons".to_string(),
        Err(e) => e.clone(),
    };
    let pinentry_text = match &pinentry {
        Some(p) if p.usable => format!("pinentry {} can show itself", p.program),
        Some(p) => format!(
            "pinentry {} cannot show itself here (no display or terminal)",
            p.program
        ),
        None => "no pinentry program (install pinentry-gnome3, or set `pinentry`)".into(),
    };
    let consent_detail = format!("{notify_text}; {pinentry_text}");
    checks.push(match config.consent {
        crate::config::ConsentMode::None => check(
            "consent prompt",
            if config.trust_origins.is_empty() {
                Status::Fail
            } else {
                Status::Warn
            },
            "prompts are off (consent = \"none\"): only trusted origins sign",
        ),
        _ if notify_can_ask || pinentry_can_ask => check("consent prompt", Status::Ok, consent_detail),
        _ if !config.trust_origins.is_empty() => check(
            "consent prompt",
            Status::Warn,
            format!("no prompt can be shown ({consent_detail}): only trusted origins sign"),
        ),
        _ => check(
            "consent prompt",
            Status::Fail,
            format!("no prompt can be shown ({consent_detail}), and no origin is trusted: nothing can sign"),
        ),
    });
    checks.push(if pinentry_can_ask {
        check(
            "PIN window",
            Status::Ok,
            "pages may leave the PIN to the agent's own window",
        )
    } else {
        check(
            "PIN window",
            Status::Warn,
            format!("{pinentry_text}: pages must send the PIN (or use a PIN-pad reader)"),
        )
    });
}

/// Windows: the agent's own dialogs ask (or pinentry, or nothing, as configured).
#[cfg(windows)]
fn windows_prompt_checks(config: &Config, checks: &mut Vec<Check>) {
    let choice = crate::desktop::windows::consent_ui(&crate::desktop::PromptConfig::of(config));
    let trusted = !config.trust_origins.is_empty();
    checks.push(match (&choice.ui, trusted) {
        (Some(_), _) => check("consent prompt", Status::Ok, choice.note.clone()),
        (None, true) => check("consent prompt", Status::Warn, choice.note.clone()),
        (None, false) => check(
            "consent prompt",
            Status::Fail,
            format!(
                "{}, and no origin is trusted: nothing can sign",
                choice.note
            ),
        ),
    });
    checks.push(match choice.pin {
        Some(_) => check(
            "PIN window",
            Status::Ok,
            "pages may leave the PIN to the agent's own window",
        ),
        None => check(
            "PIN window",
            Status::Warn,
            "no PIN window: pages must send the PIN (or use a PIN-pad reader)",
        ),
    });
}

/// Can the tray icon show? (Windows: always, in the notification area.)
#[cfg(windows)]
fn tray_check(config: &Config, checks: &mut Vec<Check>) {
    checks.push(match (config.tray, cfg!(feature = "tray")) {
        (false, _) => check("tray", Status::Ok, "off (tray = false / --no-tray)"),
        (true, false) => check("tray", Status::Warn, "this build has no tray"),
        (true, true) => check("tray", Status::Ok, "an icon in the notification area"),
    });
}

/// Can the tray icon show?
#[cfg(not(windows))]
fn tray_check(config: &Config, checks: &mut Vec<Check>) {
    let display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
    #[cfg(feature = "tray")]
    let indicator = crate::desktop::freedesktop::tray::no_appindicator();
    #[cfg(not(feature = "tray"))]
    let indicator = Some("this build has no tray".to_string());
    checks.push(match (config.tray, display, indicator) {
        (false, _, _) => check("tray", Status::Ok, "off (tray = false / --no-tray)"),
        (true, false, _) => check(
            "tray",
            Status::Warn,
            "no display here (DISPLAY, WAYLAND_DISPLAY): the agent runs without a tray icon",
        ),
        (true, true, Some(why)) => check("tray", Status::Warn, why),
        (true, true, None) => check(
            "tray",
            Status::Ok,
            "AppIndicator is installed; the desktop must show tray icons (GNOME: the \
             AppIndicator extension)",
        ),
    });
}

/// Which sites may connect, and what browsers ask the person.
fn browser_check(config: &Config, checks: &mut Vec<Check>) {
    let origins: Vec<String> = config
        .allow_origins
        .iter()
        .chain(&config.trust_origins)
        .map(|o| o.as_str().to_string())
        .collect();
    checks.push(check(
        "browsers",
        if origins.is_empty() && !config.demo {
            Status::Warn
        } else {
            Status::Ok
        },
        format!(
            "{}; Chrome and Edge (147+) ask the person once per site before it may reach this \
             computer (\"Access other apps and services on this device\"): allow it, or set \
             LocalNetworkAccessAllowedForUrls by policy (docs/BROWSERS.md)",
            if origins.is_empty() {
                "no web origin is allowed: add `allow_origins`".to_string()
            } else {
                format!("sites allowed: {}", origins.join(", "))
            }
        ),
    ));
}
