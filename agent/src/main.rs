use clap::Parser;
use keyport::backend::pkcs11::{CryptokiBackend, LoginPolicy};
use keyport::config::{Cli, Config};
use std::io::Write;
use std::sync::Arc;

fn main() -> std::process::ExitCode {
    keyport::init_logging();
    let config = match Config::load(Cli::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keyport: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(config))
}

async fn run(config: Config) -> std::process::ExitCode {
    if config.modules.is_empty() {
        tracing::warn!(
            "no PKCS #11 library allowed: start with --module PATH (every request will fail)"
        );
    }
    let backend = Arc::new(CryptokiBackend::new(LoginPolicy {
        keep_logged_in: config.keep_logged_in,
        idle_timeout: config.idle_logout,
    }));
    let files = match (&config.demo_dir, config.demo) {
        (Some(dir), true) => match keyport::guard::StaticFile::load_dir(dir) {
            Ok(files) => files,
            Err(e) => {
                eprintln!(
                    "keyport: cannot read the demo folder {}: {e}",
                    dir.display()
                );
                return std::process::ExitCode::from(2);
            }
        },
        _ => Vec::new(),
    };
    let running = match keyport::server::start(&config, backend, None, files).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("keyport: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    println!(
        "Keyport {} listening on {}",
        env!("CARGO_PKG_VERSION"),
        running.url()
    );
    if config.demo {
        println!("Demo page: http://127.0.0.1:{}/demo", running.addr.port());
    }
    let _ = std::io::stdout().flush();

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    running.shutdown().await;
    std::process::ExitCode::SUCCESS
}
