//! Test hooks: environment variables that point the agent at another administrator's file
//! (`KEYPORT_SYSTEM_CONFIG`), another policy key in the Windows registry (`KEYPORT_POLICY_KEY`)
//! or other p11-kit registry folders (`KEYPORT_P11KIT_MODULES`), so that the end-to-end tests
//! never read the machine's own policy.
//!
//! Only a debug build honours them (the tests run `target/debug/keyport`). A release build, the
//! one that is installed, ignores them and logs that it did: otherwise anyone who can set a
//! variable in the person's session (the person, a login script, a desktop file) could drop the
//! administrator's policy (`KEYPORT_SYSTEM_CONFIG=/dev/null`) or make the administrator's
//! `p11-kit:NAME` load another library. Someone who builds their own binary can change the
//! policy anyway: a policy binds the installed binary, and that is a release build.

use std::ffi::OsString;
use std::sync::Mutex;

/// Whether this build honours the test hooks: debug builds only.
pub const HONOURED: bool = cfg!(debug_assertions);

/// The value of the test hook `name` (unset or empty: `None`); always `None` in a release
/// build, which logs once per hook that it ignored one that is set.
pub fn var(name: &'static str) -> Option<OsString> {
    honoured(HONOURED, name, std::env::var_os(name))
}

/// [`var`] for a build that does (debug) or does not (release) honour the hooks.
fn honoured(honour: bool, name: &'static str, value: Option<OsString>) -> Option<OsString> {
    let value = value.filter(|v| !v.is_empty())?;
    if honour {
        return Some(value);
    }
    static WARNED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if !warned.contains(&name) {
        warned.push(name);
        tracing::warn!(
            "{name} is set but ignored: it is a test hook that only debug builds honour"
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_debug_builds_honour_the_hooks() {
        let set = || Some(OsString::from("/dev/null"));
        // A release build: nothing, whatever is set.
        assert_eq!(honoured(false, "KEYPORT_TEST_HOOK_A", set()), None);
        assert_eq!(honoured(false, "KEYPORT_TEST_HOOK_A", set()), None);
        // A debug build: the value; empty is unset.
        assert_eq!(honoured(true, "KEYPORT_TEST_HOOK_B", set()), set());
        assert_eq!(
            honoured(true, "KEYPORT_TEST_HOOK_B", Some(OsString::new())),
            None
        );
        assert_eq!(honoured(true, "KEYPORT_TEST_HOOK_B", None), None);
        // And which one this is follows the build profile: `cargo test --release` runs the
        // release side of this line.
        assert_eq!(HONOURED, cfg!(debug_assertions));
        std::env::set_var("KEYPORT_TEST_HOOK_C", "/dev/null");
        assert_eq!(var("KEYPORT_TEST_HOOK_C").is_some(), cfg!(debug_assertions));
    }
}
