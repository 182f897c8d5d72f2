//! PKCS #11 libraries out of process: each allowed library runs in a child process of its own
//! (this same binary in host mode), so that a crash or a hang in closed-source middleware never
//! takes the agent down, nor holds its threads.
//!
//! * [`wire`]: the framed, versioned protocol between agent and host.
//! * [`server`]: the host process (the cryptoki backend, its login policy and caches, next to
//!   the module).
//! * [`client`]: the agent's [`HostBackend`], which starts, watches, restarts and stops hosts.
//!
//! `module_isolation = false` in the configuration keeps the in-process backend instead.

pub mod client;
pub mod server;
pub mod wire;

pub use client::HostBackend;
