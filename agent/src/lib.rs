//! Keyport: a small desktop agent that lets web pages use PKCS #11 tokens, with the consent of
//! the person at the keyboard.
//!
//! # Layout
//! * `main.rs`: thin: logging, flags and config, then [`app::run`].
//! * [`app`]: picks a desktop shell, runs the server on its own runtime and the shell's loop (the
//!   tray, if any) on the main thread; shutdown on a signal or the tray's Quit.
//! * [`config`]: flags (clap) over the TOML file.
//! * [`server`]: binds loopback, stacks the handshake [`guard`] and the limits around jsonrpsee.
//! * [`guard`]: Host and Origin checks before the WebSocket upgrade; the demo page.
//! * [`methods`]: the JSON-RPC methods, one file per group; [`methods::AppState`].
//! * [`consent`]: who may sign; the [`consent::ConsentUi`] trait the desktop prompt implements.
//! * [`desktop`]: the [`desktop::Shell`] seam `app` calls (consent UI, tray, state folder);
//!   [`desktop::freedesktop`] (the consent notification, XDG paths, the tray-icon/tao tray) and
//!   [`desktop::headless`]; the toolkit-free tray model and icon they share; docs/DESKTOP.md.
//! * [`backend`]: the [`backend::Backend`] trait; the cryptoki implementation and its login
//!   policy ([`backend::pkcs11`]); an in-memory fake for tests.
//! * [`x509`]: certificate parsing, DigestInfo, signature verification.
//! * [`error`]: the one error type and its mapping to wire codes.
//!
//! The wire contract (names, params, results, error codes) lives in the `keyport-protocol` crate.

pub mod allowlist;
pub mod app;
pub mod backend;
pub mod config;
pub mod consent;
pub mod desktop;
pub mod error;
pub mod guard;
pub mod logging;
pub mod methods;
pub mod origin;
pub mod server;
pub mod state;
#[doc(hidden)]
pub mod testing;
pub mod x509;
