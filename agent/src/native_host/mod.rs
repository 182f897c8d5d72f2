//! `keyport` as a browser's native-messaging host: the extension door.
//!
//! The host is a thin relay to the running agent's WebSocket door, one process per page
//! connection (the browser starts it when the extension calls `connectNative` and ends it with
//! the port). It reads the extension's hello ([`hello`]), opens the agent's WebSocket (the
//! `listen` address of the same configuration files the agent reads) with the page's origin as
//! the browser reported it in the `Origin` header and `X-Keyport-Door: extension`, and from then
//! on relays every message verbatim both ways, in the browsers' framing ([`frame`]). The agent
//! applies to that origin exactly what it applies to any page: its allow and trust lists,
//! consent, limits and notifications. One agent holds the tokens' login state, the prompts and
//! the tray.
//!
//! Started:
//! * by Chromium, Chrome, Edge, Brave: `keyport chrome-extension://ID/` (and
//!   `--parent-window=N` on Windows);
//! * by Firefox: `keyport /path/to/org.keyport.agent.json keyport@keyport.org`;
//! * by hand or by a test: `keyport native-host` (with the agent's flags, e.g. `--listen`).
//!
//! stdout carries only frames. The host logs to stderr (Chrome passes it to its own stderr,
//! Firefox shows it in the Browser Console) and to `native-host.log` in the person's state
//! folder (appended by every host, capped and rotated once, like the agent's log); never a
//! message's contents. The host manifests the browsers need are rendered by [`manifest`].

pub mod frame;
pub mod hello;
pub mod manifest;
mod relay;

use crate::config::{Cli, Config};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// How a browser started the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// A Chromium-family browser: the calling extension's origin.
    Chromium { extension: String },
    /// Firefox: the host manifest's path and the calling extension's id.
    Firefox { manifest: String, extension: String },
}

impl Invocation {
    /// The calling extension, for the log.
    pub fn caller(&self) -> &str {
        match self {
            Invocation::Chromium { extension } | Invocation::Firefox { extension, .. } => extension,
        }
    }
}

/// Whether `args` (the whole command line, the program first) is a browser starting a host.
/// Neither shape is a valid `keyport` command line otherwise (the agent takes no positional
/// arguments), so nothing the person types is mistaken for one.
pub fn invocation(args: &[String]) -> Option<Invocation> {
    let first = args.get(1)?;
    if first.starts_with("chrome-extension://") {
        return Some(Invocation::Chromium {
            extension: first.clone(),
        });
    }
    match args {
        [_, manifest, extension] if manifest.ends_with(".json") && !extension.starts_with('-') => {
            Some(Invocation::Firefox {
                manifest: manifest.clone(),
                extension: extension.clone(),
            })
        }
        _ => None,
    }
}

/// Where the host logs besides stderr: `native-host.log` in the person's state folder.
pub fn log_path() -> Option<PathBuf> {
    crate::config::user_state_dir().map(|d| d.join("native-host.log"))
}

/// Run as a host started by a browser: the agent's configuration from its files only.
pub fn main_for_browser(how: &Invocation) -> ExitCode {
    run(Cli::parse_from(["keyport"]), how.caller())
}

/// Run as a host: `keyport native-host [flags]` (the flags as the agent takes them).
pub fn main_explicit(cli: Cli) -> ExitCode {
    run(cli, "keyport native-host")
}

fn run(cli: Cli, caller: &str) -> ExitCode {
    crate::logging::init();
    if let Some(path) = log_path() {
        if let Err(e) = crate::logging::also_append_to(&path) {
            tracing::warn!("cannot write the host's log {}: {e}", path.display());
        }
    }
    let config = Config::load(cli);
    let code = relay::run(config, caller);
    crate::logging::flush();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn browsers_are_recognised_by_how_they_start_a_host() {
        let id = "chrome-extension://mchpggbacmbihpiigmfcmknhfdhpojoo/";
        assert_eq!(
            invocation(&args(&["keyport", id])),
            Some(Invocation::Chromium {
                extension: id.into()
            })
        );
        // Chrome on Windows adds the window that asked.
        assert!(matches!(
            invocation(&args(&["keyport.exe", id, "--parent-window=1234"])),
            Some(Invocation::Chromium { .. })
        ));
        let ff = invocation(&args(&[
            "/usr/bin/keyport",
            "/usr/lib/mozilla/native-messaging-hosts/org.keyport.agent.json",
            "keyport@keyport.org",
        ]))
        .unwrap();
        assert_eq!(ff.caller(), "keyport@keyport.org");
    }

    #[test]
    fn the_agents_own_command_lines_are_not_hosts() {
        for a in [
            &["keyport"][..],
            &["keyport", "doctor"],
            &["keyport", "native-host"],
            &["keyport", "--config", "my.json"],
            &["keyport", "--listen", "127.0.0.1:0", "--module", "/x.json"],
            &["keyport", "settings.json", "--demo"],
        ] {
            assert_eq!(invocation(&args(a)), None, "{a:?}");
        }
    }
}
