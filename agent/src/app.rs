//! The agent's life: the server on its own tokio runtime, the tray (if any) on the main thread,
//! and the clean shutdown on a signal or the tray's Quit.

use crate::backend::pkcs11::{CryptokiBackend, LoginPolicy};
use crate::config::Config;
use crate::consent::ConsentUi;
use crate::desktop::tray::{self, UserEvent};
use crate::desktop::{self, tray_model::TrayModel};
use crate::state::Agent;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::Notify;

/// Threads for token calls. Each connection may hold at most `max_in_flight_per_connection`
/// (default 16) of them, stuck calls included, so one connection cannot take them all.
pub const MAX_BLOCKING_THREADS: usize = 64;

/// What the server thread hands the tray once it listens.
struct Started {
    state: Arc<Agent>,
    url: String,
}

/// Run the agent until a signal or the tray's Quit; the exit code says how it ended.
///
/// The tray's tao event loop runs on the calling thread, which must be the main thread (GTK and
/// macOS want it there); the server runs on its own tokio runtime on another thread. Without a
/// tray the calling thread just waits.
pub fn run(mut config: Config) -> ExitCode {
    if config.state_file.is_none() {
        config.state_file = desktop::default_state_file();
    }
    let (consent_ui, consent_note) = desktop::consent_ui(&config);
    tracing::info!("{consent_note}");

    let event_loop = if !config.tray {
        Err("started with --no-tray".to_string())
    } else if let Some(why) = tray::unavailable() {
        Err(why)
    } else {
        tray::event_loop()
    };
    let event_loop = match event_loop {
        Ok(el) => Some(el),
        Err(why) => {
            tracing::info!("running headless, without a tray icon: {why}");
            None
        }
    };
    let folder = config
        .state_file
        .as_ref()
        .and_then(|f| f.parent())
        .map(|d| d.to_path_buf());
    // The tray's person has no terminal: the tray's menu opens the folder that holds the log.
    let log_file = config.log_file.clone().or_else(|| {
        event_loop
            .as_ref()
            .and(folder.as_ref())
            .map(|dir| dir.join("keyport.log"))
    });
    if let Some(log) = log_file {
        if let Err(e) = crate::logging::also_log_to(&log) {
            tracing::warn!(file = %log.display(), error = %e, "cannot write the log file");
        }
    }

    let quit = Arc::new(Notify::new());
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let on_stop = event_loop.as_ref().map(|el| el.create_proxy());
    let server = {
        let quit = quit.clone();
        std::thread::Builder::new()
            .name("keyport-server".into())
            .spawn(move || {
                // Token calls run on blocking threads; bound them (each may hold a session)
                // so that a hung token cannot make the agent spawn threads without end.
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .max_blocking_threads(MAX_BLOCKING_THREADS)
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                let code = runtime.block_on(serve(config, consent_ui, quit, started_tx));
                if let Some(proxy) = on_stop {
                    let _ = proxy.send_event(UserEvent::Stopped);
                }
                code
            })
            .expect("server thread")
    };
    let join = |server: std::thread::JoinHandle<ExitCode>| {
        server.join().unwrap_or_else(|_| {
            crate::logging::stderr_line("keyport: the server thread panicked");
            ExitCode::from(1)
        })
    };

    let Some(event_loop) = event_loop else {
        return join(server);
    };
    let Ok(started) = started_rx.recv() else {
        // The server did not start (it said why).
        return join(server);
    };
    let model = TrayModel::new(
        started.state,
        started.url,
        folder,
        move || quit.notify_one(),
        desktop::open_folder,
    );
    if let Err(why) = tray::run(event_loop, model) {
        tracing::info!("running headless, without a tray icon: cannot show it ({why})");
    }
    join(server)
}

async fn serve(
    config: Config,
    consent_ui: Option<Arc<dyn ConsentUi>>,
    quit: Arc<Notify>,
    started: std::sync::mpsc::Sender<Started>,
) -> ExitCode {
    if config.modules.is_empty() {
        tracing::warn!(
            "no PKCS #11 library allowed: start with --module PATH (every request will fail)"
        );
    }
    let backend = CryptokiBackend::start(LoginPolicy {
        keep_logged_in: config.keep_logged_in,
        idle_timeout: config.idle_logout,
    });
    let state = Agent::new(&config, backend, consent_ui);
    let files = match (&config.demo_dir, config.demo) {
        (Some(dir), true) => match crate::guard::StaticFile::load_dir(dir) {
            Ok(files) => files,
            Err(e) => {
                crate::logging::stderr_line(&format!(
                    "keyport: cannot read the demo folder {}: {e}",
                    dir.display()
                ));
                return ExitCode::from(2);
            }
        },
        _ => Vec::new(),
    };
    let running = match crate::server::start(&config, state, files).await {
        Ok(r) => r,
        Err(e) => {
            crate::logging::stderr_line(&format!("keyport: {e}"));
            return ExitCode::from(1);
        }
    };
    // The ready line. A closed or full stdout must not stop the agent (nobody reads it then).
    crate::logging::stdout_line(&format!(
        "Keyport {} listening on {}",
        env!("CARGO_PKG_VERSION"),
        running.url()
    ));
    if config.demo {
        crate::logging::stdout_line(&format!(
            "Demo page: http://127.0.0.1:{}/demo",
            running.addr.port()
        ));
    }
    let _ = started.send(Started {
        state: running.state.clone(),
        url: running.url(),
    });

    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminated() => {}
        _ = quit.notified() => {}
    }
    tracing::info!("shutting down");
    running.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Resolves on SIGTERM (Unix); elsewhere never (Ctrl-C and Quit still stop the agent).
async fn terminated() {
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            term.recv().await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM");
            std::future::pending::<()>().await
        }
    }
    #[cfg(not(unix))]
    std::future::pending::<()>().await
}
