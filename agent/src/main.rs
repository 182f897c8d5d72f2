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

/// `keyport config`, `keyport modules`, `keyport doctor`: print, and exit.
fn tool(command: Command, cli: Cli) -> ExitCode {
    keyport::logging::init_quiet();
    let loaded = Config::load_explained(cli);
    let code = match command {
        Command::Config => match loaded {
            Ok(l) => {
                keyport::logging::stdout_line(l.report().trim_end());
                ExitCode::SUCCESS
            }
            Err(e) => {
                keyport::logging::stderr_line(&format!("keyport: {e}"));
                ExitCode::from(2)
            }
        },
        Command::Modules => match loaded {
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
            let report = keyport::tools::doctor(loaded);
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
    };
    keyport::logging::flush();
    code
}
