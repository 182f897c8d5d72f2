use clap::Parser;
use keyport::config::{Cli, Config};
use std::process::ExitCode;

fn main() -> ExitCode {
    keyport::init_logging();
    match Config::load(Cli::parse()) {
        Ok(config) => keyport::app::run(config),
        Err(e) => {
            eprintln!("keyport: {e}");
            ExitCode::from(2)
        }
    }
}
