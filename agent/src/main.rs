use clap::Parser;
use keyport::config::{Cli, Config};
use std::process::ExitCode;

/// Every heap block is wiped when it is freed: request buffers, parser scratch space and frames
/// that carried a PIN leave no copy behind once the request is over (README, "PINs").
#[global_allocator]
static ALLOC: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);

fn main() -> ExitCode {
    keyport::desktop::before_any_thread();
    // A module host (a child process of the agent serving one PKCS #11 library).
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(keyport::backend::host::server::HOST_ARG) {
        keyport::logging::init_host();
        let code = keyport::backend::host::server::main(&args[2..]);
        keyport::logging::flush();
        return code;
    }
    keyport::logging::init();
    let code = match Config::load(Cli::parse()) {
        Ok(config) => keyport::app::run(config),
        Err(e) => {
            keyport::logging::stderr_line(&format!("keyport: {e}"));
            ExitCode::from(2)
        }
    };
    keyport::logging::flush();
    code
}
