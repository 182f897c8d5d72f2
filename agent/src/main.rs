// On Windows the agent is a tray program: started at login it opens no console window. Run from
// a console (`keyport doctor`), it writes there ([`keyport::logging::attach_console`]).
#![cfg_attr(windows, windows_subsystem = "windows")]

use clap::Parser;
use keyport::config::{Cli, Command, Config};
use std::process::ExitCode;

/// Every heap block is wiped when it is freed: request buffers, parser scratch space and frames
/// that carried a PIN leave no copy behind once the request is over (README, "PINs").
#[global_allocator]
static ALLOC: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);

fn main() -> ExitCode {
    keyport::desktop::before_any_thread();
    keyport::logging::attach_console();
    // A module host (a child process of the agent serving one PKCS #11 library).
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(keyport::backend::host::server::HOST_ARG) {
        keyport::logging::init_host();
        let code = keyport::backend::host::server::main(&args[2..]);
        keyport::logging::flush();
        return code;
    }
    // A browser starting its native-messaging host (the extension door).
    if let Some(how) = keyport::native_host::invocation(&args) {
        return keyport::native_host::main_for_browser(&how);
    }
    let cli = Cli::parse();
    if let Some(command) = cli.command.clone() {
        return tool(command, cli);
    }
    keyport::logging::init();
    let code = match Config::load_explained(cli) {
        Ok(loaded) => {
            for note in &loaded.notes {
                tracing::warn!("administrator's policy: {note}");
            }
            keyport::app::run(loaded.config)
        }
        Err(e) => {
            keyport::logging::stderr_line(&format!("keyport: {e}"));
            ExitCode::from(2)
        }
    };
    keyport::logging::flush();
    code
}

/// `keyport config`, `keyport modules`, `keyport doctor`: print, and exit;
/// `keyport native-host`: the extension door's host.
fn tool(command: Command, cli: Cli) -> ExitCode {
    // The configuration, for the commands that print what they find.
    fn load(cli: Cli) -> Result<keyport::config::Loaded, keyport::config::ConfigError> {
        keyport::logging::init_quiet();
        Config::load_explained(cli)
    }
    let code = match command {
        Command::Config => match load(cli) {
            Ok(l) => {
                keyport::logging::stdout_line(
                    l.report_with_defaults(&effective_defaults()).trim_end(),
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                keyport::logging::stderr_line(&format!("keyport: {e}"));
                ExitCode::from(2)
            }
        },
        Command::Modules => match load(cli) {
            Ok(l) => {
                keyport::logging::stdout_line(keyport::tools::modules_report(&l.config).trim_end());
                ExitCode::SUCCESS
            }
            Err(e) => {
                keyport::logging::stderr_line(&format!("keyport: {e}"));
                ExitCode::from(2)
            }
        },
        Command::Doctor { json } => {
            let report = keyport::tools::doctor(load(cli));
            let text = if json {
                serde_json::to_string_pretty(&report).unwrap_or_default()
            } else {
                report.text()
            };
            keyport::logging::stdout_line(text.trim_end());
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::NativeHost {
            print_manifest: Some(family),
            host_path,
        } => print_manifest_of(&family, host_path),
        // It sets up its own logging (its log file) and flushes it.
        Command::NativeHost { .. } => return keyport::native_host::main_explicit(cli),
    };
    keyport::logging::flush();
    code
}

/// `keyport native-host --print-manifest FAMILY [--host-path PATH]`.
fn print_manifest_of(family: &str, host_path: Option<std::path::PathBuf>) -> ExitCode {
    use keyport::native_host::manifest;
    let path = match host_path.map(Ok).unwrap_or_else(std::env::current_exe) {
        Ok(p) => p,
        Err(e) => {
            keyport::logging::stderr_line(&format!("keyport: where is this program? {e}"));
            return ExitCode::from(2);
        }
    };
    let rendered = manifest::Family::parse(family)
        .ok_or_else(|| format!("no browser family {family:?}: chromium or firefox"))
        .and_then(|f| manifest::render(f, &path));
    match rendered {
        Ok(text) => {
            keyport::logging::stdout_line(text.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            keyport::logging::stderr_line(&format!("keyport: {e}"));
            ExitCode::from(2)
        }
    }
}

/// What the settings left unset mean on this machine, for `keyport config`: the pinentry program
/// and the state file the agent would use.
fn effective_defaults() -> std::collections::BTreeMap<&'static str, String> {
    use keyport::desktop::{native, pinentry::Pinentry};
    let pinentry = match Pinentry::find(None) {
        Some(p) => format!("{} (the pinentry found)", p.program().display()),
        None => "pinentry on PATH (none found: no PIN prompt)".to_string(),
    };
    let state_file = match (native().default_state_file)() {
        Some(p) => p.display().to_string(),
        None => "none (no state folder found)".to_string(),
    };
    [("pinentry", pinentry), ("state_file", state_file)].into()
}
