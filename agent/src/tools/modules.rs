//! `keyport modules`: the PKCS #11 modules registered with p11-kit and the allowed libraries it
//! does not know, whether each is allowed and whether it loads.

use super::library;
use crate::allowlist::Allowlist;
use crate::backend::Backend;
use crate::config::Config;

/// `keyport modules`: the p11-kit registry, whether each loads, whether it is allowed; then the
/// allowed libraries that are not registered (pkcs11-spy, p11-kit's proxy and client, a
/// vendor's), whether each loads. A name the person's registry gives another library is listed
/// twice: the person's (what their own `p11-kit:NAME` loads) and the system's (what the
/// administrator's loads).
pub fn modules_report(config: &Config) -> String {
    const YOURS: &str = " (yours: what your own file and flags mean by it)";
    const SYSTEMS: &str = " (the system's: what the administrator's file means by it)";
    let system = crate::p11kit::system_registry();
    let full = crate::p11kit::registry();
    let mut registry: Vec<(crate::p11kit::Registered, &str)> = Vec::new();
    for r in full.values() {
        match system.get(&r.name).filter(|s| s.path != r.path) {
            Some(s) => {
                registry.push((r.clone(), YOURS));
                registry.push((s.clone(), SYSTEMS));
            }
            None => registry.push((r.clone(), "")),
        }
    }
    // Names the person's registry hides (an empty file) still mean the system's module to
    // the administrator.
    registry.extend(
        system
            .values()
            .filter(|s| !full.contains_key(&s.name))
            .map(|s| (s.clone(), SYSTEMS)),
    );
    registry.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let backend = crate::backend::for_config(config);
    let mut out = String::new();
    if registry.is_empty() {
        out.push_str(&format!(
            "No PKCS #11 module is registered with p11-kit (looked in {}).\n",
            crate::p11kit::folders()
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (r, note) in &registry {
        let path = r.path.display().to_string();
        let allowed = config
            .modules
            .iter()
            .any(|m| crate::p11kit::same_file(std::path::Path::new(m), &r.path));
        // Any registered module may be tried here: the person asked for this list.
        let loads = loads(backend.as_ref(), &path);
        out.push_str(&format!(
            "{name}{note}\n  library: {path}\n  {loads}\n  {allowed}\n  config: modules = [\"{prefix}{name}\"]\n",
            name = r.name,
            prefix = crate::p11kit::PREFIX,
            allowed = if allowed {
                "allowed (in this configuration)"
            } else {
                "not allowed (add it to `modules` to use it)"
            },
        ));
    }
    let unregistered: Vec<&String> = config
        .modules
        .iter()
        .filter(|m| {
            !registry
                .iter()
                .any(|(r, _)| crate::p11kit::same_file(std::path::Path::new(m), &r.path))
        })
        .collect();
    if !unregistered.is_empty() {
        out.push_str("Allowed in this configuration, not registered with p11-kit:\n");
    }
    for path in unregistered {
        out.push_str(&format!("{path}\n  {}\n", loads(backend.as_ref(), path)));
    }
    backend.shutdown();
    out
}

/// Whether the library at `path` loads, and what it says of itself (for `keyport modules`).
fn loads(backend: &dyn Backend, path: &str) -> String {
    let probe = Allowlist::new([path.to_string()]);
    match probe.resolve(None).and_then(|m| backend.info(&m)) {
        Ok(info) => format!("loads: {}", library(&info)),
        Err(e) => format!("does not load: {}", e.message),
    }
}
