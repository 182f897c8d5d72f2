//! Keyport: a small desktop agent that lets web pages use PKCS #11 tokens, with the consent of
//! the person at the keyboard.
//!
//! # Layout
//! * `main.rs`: thin: logging, flags and config, then [`app::run`].
//! * [`app`]: the server on its own runtime, the tray on the main thread, shutdown on a signal
//!   or the tray's Quit.
//! * [`config`]: flags (clap) over the TOML file.
//! * [`server`]: binds loopback, stacks the handshake [`guard`] and the limits around jsonrpsee.
//! * [`guard`]: Host and Origin checks before the WebSocket upgrade; the demo page.
//! * [`methods`]: the JSON-RPC methods, one file per group; [`methods::AppState`].
//! * [`consent`]: who may sign; the [`consent::ConsentUi`] trait the desktop prompt implements.
//! * [`desktop`]: the consent notification, the tray's model (toolkit-free) and its thin
//!   tray-icon/tao layer; docs/DESKTOP.md.
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
