//! The command line (clap): the flags, which set the same keys as the files
//! ([`super::settings`] maps each flag to its key), and the commands besides running the agent.

use super::{ConsentMode, NoOriginPolicy};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

// The flags. One that sets a file key is mapped to it in that key's row of the table
// (settings.rs); `--config` and the commands are the command line's own.
#[derive(Debug, Parser)]
#[command(
    name = "keyport",
    version,
    about = "Keyport: PKCS #11 tokens for web pages, with the person's consent",
    long_about = "Keyport: PKCS #11 tokens for web pages, with the person's consent.\n\n\
        Without a command it runs the agent. Settings come from flags, then the person's \
        $XDG_CONFIG_HOME/keyport/keyport.toml (or --config FILE), then the administrator's \
        /etc/keyport/keyport.toml, which is policy: the modules and origins it lists cannot be \
        widened unless it says so. `keyport config` shows what is in force and why."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address to listen on: a loopback address and port (127.0.0.1:10443, [::1]:10443,
    /// localhost:10443); port 0 picks a free port.
    #[arg(long, value_name = "ADDR", global = true)]
    pub listen: Option<String>,
    /// Allowed PKCS #11 library: an absolute path (matched exactly), or p11-kit:NAME for a module
    /// registered with p11-kit (`keyport modules` lists them); repeat for more. The first is the
    /// default.
    #[arg(long = "module", value_name = "PATH", global = true)]
    pub modules: Vec<String>,
    /// Origin (scheme://host[:port]) whose pages may connect; signing needs consent. Repeatable.
    #[arg(long = "allow-origin", value_name = "ORIGIN", global = true)]
    pub allow_origins: Vec<String>,
    /// Origin pre-approved to connect and sign without a prompt. Repeatable.
    #[arg(long = "trust-origin", value_name = "ORIGIN", global = true)]
    pub trust_origins: Vec<String>,
    /// TOML configuration file (flags win over it).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Clients without an Origin header: deny, consent (default) or trust.
    #[arg(long, value_enum, value_name = "POLICY", global = true)]
    pub no_origin: Option<NoOriginPolicy>,
    /// Seconds the person has to answer a consent prompt (default 60).
    #[arg(long, value_name = "SECS", global = true)]
    pub consent_timeout: Option<u64>,
    /// Seconds of no signature after which a token is logged out (default 300).
    #[arg(long, value_name = "SECS", global = true)]
    pub idle_logout: Option<u64>,
    /// Log in and out for every signature instead of keeping the token logged in.
    #[arg(long, global = true)]
    pub no_login_cache: bool,
    /// Run without a tray icon.
    #[arg(long, global = true)]
    pub no_tray: bool,
    /// How to ask for consent: auto (default), notify, pinentry or none.
    #[arg(long, value_enum, value_name = "UI", global = true)]
    pub consent: Option<ConsentMode>,
    /// The pinentry program for the agent's own PIN prompt and the pinentry consent dialog
    /// (default: `pinentry` on PATH).
    #[arg(long, value_name = "PATH", global = true)]
    pub pinentry: Option<PathBuf>,
    /// The language of prompts, dialogs and the tray, e.g. de or pt-BR (default: the
    /// environment's, LANGUAGE / LC_ALL / LC_MESSAGES / LANG; the system's on Windows and macOS).
    #[arg(long, value_name = "LANG", global = true)]
    pub language: Option<String>,
    /// Seconds a signature waits for the PIN typed on a PIN-pad reader (default 60).
    #[arg(long, value_name = "SECS", global = true)]
    pub pin_pad_timeout: Option<u64>,
    /// Demo mode: serve the demo page and also allow its origins http://127.0.0.1:PORT and
    /// http://localhost:PORT (not where the administrator's file fixes the origins).
    #[arg(long, global = true)]
    pub demo: bool,
    /// File where "always allow" sites are remembered.
    #[arg(long, value_name = "FILE", global = true)]
    pub state_file: Option<PathBuf>,
    /// Folder whose files the agent serves at /demo in demo mode (index.html, *.js, *.css).
    #[arg(long, value_name = "DIR", global = true)]
    pub demo_dir: Option<PathBuf>,
    /// Also write the log to this file (capped at 4 MiB, then rotated to FILE.1).
    #[arg(long, value_name = "FILE", global = true)]
    pub log_file: Option<PathBuf>,
}

/// What `keyport` does besides running the agent.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print the settings in force, and where each one comes from.
    Config,
    /// List the PKCS #11 modules registered with p11-kit, whether each loads, and whether it
    /// is allowed.
    Modules,
    /// Check what Keyport needs here and explain what is missing (exit status 1 when something
    /// stops signing).
    Doctor {
        /// Print the checks as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run as the browser extension's native-messaging host: relay one page's connection
    /// (framed JSON on stdin and stdout) to the running agent. Browsers start it by
    /// themselves through the host manifests; this runs it by hand.
    NativeHost {
        /// Print the host manifest for this browser family (chromium: Chromium, Chrome, Edge,
        /// Brave; firefox) and exit.
        #[arg(long, value_name = "FAMILY", value_parser = ["chromium", "firefox"])]
        print_manifest: Option<String>,
        /// The program the printed manifest starts (default: this keyport).
        #[arg(long, value_name = "PATH", requires = "print_manifest")]
        host_path: Option<PathBuf>,
    },
}
