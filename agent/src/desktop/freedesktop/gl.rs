//! Keeping GTK from loading a GL driver the tray never uses.
//!
//! When GTK 3 starts (tao builds its event loop), GDK probes the display for GL-capable visuals.
//! With Mesa that loads the GL driver and, with it, libLLVM: under Xvfb the idle tray agent had
//! an RSS of 85 MiB, 43 MiB of it libLLVM. Nothing in the agent draws with GL (the icon is a
//! 32×32 RGBA image, the menu plain GTK widgets), and `GDK_GL=disable` tells GDK not to probe:
//! 30.5 MiB (docs/DESKTOP.md, "Memory"). GDK reads the variable once, as it starts, so it has to be in the
//! process environment before then; it cannot be passed to GTK any other way.
//!
//! * A `GDK_GL` the person set (not empty) is theirs: left as it is.
//! * Changing the environment is only sound while no other thread reads it: `std::env::set_var`
//!   is `unsafe` from edition 2024 for that reason (this crate is edition 2021, where the call is
//!   safe but the rule is the same). [`disable_probe`] runs from [`super::tray::start`],
//!   which [`crate::desktop::pick`] calls on the main thread before the agent starts any thread
//!   (`app::run` picks the shell first). On Linux it also counts the process's threads in
//!   `/proc/self/task` and leaves the variable alone if there is more than one: a later change
//!   that starts a thread earlier costs memory, never soundness.
//! * Programs started for the person (the file manager of "Open settings and log folder") get the
//!   environment without the agent's `GDK_GL` ([`super::open_folder`]). The module hosts get a
//!   list of variables that does not include it.

use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, Ordering};

pub const VAR: &str = "GDK_GL";
pub const VALUE: &str = "disable";

static DISABLED_BY_US: AtomicBool = AtomicBool::new(false);

/// What to do about `GDK_GL` before GTK starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Set `GDK_GL=disable`.
    Disable,
    /// The person set `GDK_GL`: theirs.
    PersonsChoice,
    /// Other threads run already: changing the environment now could race with them.
    NotAlone,
}

/// `current`: `GDK_GL` as it is; `threads`: how many threads the process has, if known.
pub fn decide(current: Option<&OsStr>, threads: Option<usize>) -> Decision {
    if current.is_some_and(|v| !v.is_empty()) {
        Decision::PersonsChoice
    } else if threads.is_some_and(|n| n > 1) {
        Decision::NotAlone
    } else {
        Decision::Disable
    }
}

/// How many threads this process has (Linux; elsewhere unknown).
fn threads() -> Option<usize> {
    if cfg!(target_os = "linux") {
        std::fs::read_dir("/proc/self/task").ok().map(|d| d.count())
    } else {
        None
    }
}

/// Turn GDK's GL probe off unless the person chose otherwise. Call it on the main thread before
/// any other thread starts, before GTK starts (see the module docs).
pub fn disable_probe() -> Decision {
    static DECIDED: std::sync::OnceLock<Decision> = std::sync::OnceLock::new();
    *DECIDED.get_or_init(|| {
        let decision = decide(std::env::var_os(VAR).as_deref(), threads());
        if decision == Decision::Disable {
            std::env::set_var(VAR, VALUE);
            DISABLED_BY_US.store(true, Ordering::SeqCst);
        }
        decision
    })
}

/// Say in the log what [`disable_probe`] decided (it runs before logging starts).
pub fn log_decision() {
    match disable_probe() {
        Decision::Disable => tracing::debug!("{VAR}={VALUE}: GTK will not load a GL driver"),
        Decision::PersonsChoice => tracing::debug!("{VAR} is set: GTK's GL as the person chose"),
        Decision::NotAlone => {
            tracing::debug!("{VAR} left unset: other threads ran already (more memory, no harm)")
        }
    }
}

/// Whether `GDK_GL` in this process's environment is the agent's, not the person's.
pub fn disabled_by_us() -> bool {
    DISABLED_BY_US.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_is_disabled_unless_the_person_chose_or_threads_run() {
        assert_eq!(decide(None, Some(1)), Decision::Disable);
        assert_eq!(decide(None, None), Decision::Disable);
        // An empty variable is no choice (GDK reads it as no flags).
        assert_eq!(decide(Some(OsStr::new("")), Some(1)), Decision::Disable);
        for theirs in ["disable", "always", "gles"] {
            assert_eq!(
                decide(Some(OsStr::new(theirs)), Some(1)),
                Decision::PersonsChoice
            );
            assert_eq!(
                decide(Some(OsStr::new(theirs)), Some(4)),
                Decision::PersonsChoice
            );
        }
        assert_eq!(decide(None, Some(2)), Decision::NotAlone);
        assert_eq!(decide(Some(OsStr::new("")), Some(3)), Decision::NotAlone);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn with_another_thread_running_the_environment_is_not_touched() {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || stopped.recv());
        let before = std::env::var_os(VAR);
        let decision = disable_probe();
        assert_ne!(decision, Decision::Disable);
        assert_eq!(std::env::var_os(VAR), before);
        assert!(!disabled_by_us());
        drop(stop);
        let _ = other.join();
    }
}
