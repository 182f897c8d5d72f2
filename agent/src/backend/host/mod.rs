//! PKCS #11 libraries out of process: each allowed library runs in a child process of its own
//! (this same binary in host mode), so that a crash or a hang in closed-source middleware never
//! takes the agent down, nor holds its threads.
//!
//! * [`wire`]: the framed, versioned protocol between agent and host.
//! * [`server`]: the host process (the cryptoki backend, its login policy and caches, next to
//!   the module).
//! * [`client`]: the agent's [`HostBackend`], the [`crate::backend::Backend`] whose calls go to
//!   the host of the library they name; `supervisor`: one library's host over time (restarts,
//!   back-off); `process`: starting a host; `channel`: one host's channel (calls, replies,
//!   deadlines, death); `os` and `windows`: what those need from the system.
//!
//! `module_isolation = false` in the configuration keeps the in-process backend instead.

mod channel;
pub mod client;
mod os;
mod process;
pub mod server;
mod supervisor;
#[cfg(windows)]
mod windows;
pub mod wire;

pub use client::HostBackend;
pub use process::{module_environment, MODULE_ENV, MODULE_ENV_PREFIXES};

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
