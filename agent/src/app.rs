//! The agent's life: pick a desktop shell, run the server on its own tokio runtime on another
//! thread, run the shell's loop (the tray, if any) on the main thread, and stop cleanly on a
//! signal or the tray's Quit.

use crate::config::Config;
use crate::consent::{ConsentUi, PinUi};
use crate::desktop::{self, Running};
use crate::i18n;
use crate::limits::MAX_BLOCKING_THREADS;
use crate::state::Agent;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::Notify;

/// Run the agent until a signal or the tray's Quit; the exit code says how it ended.
///
/// Call it on the main thread (GTK and macOS want their toolkit there) before starting any
/// thread: the shell is picked first, and a tray shell starts its toolkit then (it may set a
/// variable in the process environment first, which is only sound while no other thread runs).
///
/// One function on purpose: the order of start-up (shell, then threads, then the server,
/// then the shell's loop) is the point, and reads best top to bottom.
pub fn run(mut config: Config) -> ExitCode {
    let language = i18n::for_this_system(config.language.as_deref());
    i18n::set_language(language.language);
    let shell = desktop::pick(&config);
    if config.state_file.is_none() {
        config.state_file = shell.default_state_file();
    }
    let consent = shell.consent_ui();
    tracing::info!("{}", config.summary());
    tracing::info!("{}", consent.note);
    tracing::info!("prompts speak {language}");
    if config.modules.is_empty() {
        tracing::warn!(
            "no PKCS #11 library is configured: add `modules` to the configuration (see `keyport \
             modules`) or start with --module PATH; every request will fail"
        );
    }
    for m in &config.modules {
        if let Err(e) = std::fs::metadata(m) {
            tracing::warn!(
                "the PKCS #11 library {m} cannot be used ({e}): requests naming it get \
                 MODULE_LOAD_FAILED; the other libraries are served"
            );
        }
    }
    let folder = config
        .state_file
        .as_ref()
        .and_then(|f| f.parent())
        .map(|d| d.to_path_buf());
    // The tray's person has no terminal: the tray's menu opens the folder that holds the log.
    let log_file = config.log_file.clone().or_else(|| {
        folder
            .as_ref()
            .filter(|_| shell.has_tray())
            .map(|dir| dir.join("keyport.log"))
    });
    if let Some(log) = log_file {
        if let Err(e) = crate::logging::also_log_to(&log) {
            tracing::warn!(file = %log.display(), error = %e, "cannot write the log file");
        }
    }

    let tray = shell.has_tray();
    let quit = Arc::new(Notify::new());
    let (running_tx, running_rx) = std::sync::mpsc::channel();
    let listening = {
        let quit = quit.clone();
        move |agent: Arc<Agent>, url: String| {
            let _ = running_tx.send(Running {
                agent,
                url,
                folder,
                quit: Box::new(move || quit.notify_one()),
            });
        }
    };
    // Tells the shell's loop the server stopped; also if serving panics, so the loop still ends.
    let stopped = OnDrop(Some(shell.on_server_stopped()));
    let server = std::thread::Builder::new()
        .name("keyport-server".into())
        .spawn(move || {
            // Token calls run on blocking threads; bound them (each may hold a session)
            // so that a hung token cannot make the agent spawn threads without end.
            // One async thread: a request then wakes no sibling worker that finds nothing to
            // do (BENCHMARKS.md, "Context switches"); the CPU-bound work (signatures, the
            // module hosts) is on other threads and processes anyway.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .max_blocking_threads(MAX_BLOCKING_THREADS)
                .enable_all()
                .build()
                .expect("tokio runtime");
            let code = runtime.block_on(serve(
                config,
                consent.ui,
                consent.pin,
                consent.note,
                tray,
                quit,
                listening,
            ));
            drop(stopped);
            code
        })
        .expect("server thread");

    shell.run(running_rx);
    server.join().unwrap_or_else(|_| {
        crate::logging::stderr_line("keyport: the server thread panicked");
        ExitCode::from(1)
    })
}

/// Runs its function when dropped.
struct OnDrop(Option<Box<dyn FnOnce() + Send>>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// Serve until a signal or `quit`; `listening` is told where, once the server listens.
async fn serve(
    config: Config,
    consent_ui: Option<Arc<dyn ConsentUi>>,
    pin_ui: Option<Arc<dyn PinUi>>,
    consent_note: String,
    tray: bool,
    quit: Arc<Notify>,
    listening: impl FnOnce(Arc<Agent>, String),
) -> ExitCode {
    let backend = crate::backend::for_config(&config);
    let state = Agent::with_prompts(&config, backend, consent_ui, pin_ui);
    state.consent.set_prompt_note(consent_note);
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
    listening(running.state.clone(), running.url());
    if tray {
        // The tray lists the tokens present.
        tokio::spawn(running.state.clone().show_tokens());
    }

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

/// Resolves on SIGTERM (Unix), or when Windows closes the agent's console or ends the session;
/// Ctrl-C and Quit stop the agent everywhere.
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
    #[cfg(windows)]
    {
        use tokio::signal::windows::{ctrl_close, ctrl_logoff, ctrl_shutdown};
        match (ctrl_close(), ctrl_logoff(), ctrl_shutdown()) {
            (Ok(mut close), Ok(mut logoff), Ok(mut shutdown)) => {
                tokio::select! {
                    _ = close.recv() => {}
                    _ = logoff.recv() => {}
                    _ = shutdown.recv() => {}
                }
            }
            _ => {
                tracing::warn!("cannot watch the console's close and the session's end");
                std::future::pending::<()>().await
            }
        }
    }
    #[cfg(not(any(unix, windows)))]
    std::future::pending::<()>().await
}
