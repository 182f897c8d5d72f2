//! Keyport: a small desktop agent that lets web pages use PKCS #11 tokens, with the consent of
//! the person at the keyboard.
//!
//! # Layout
//! From the top down; a module uses only what is below it.
//! * `main.rs`: thin: logging, then either a module host ([`backend::host::server`]) or the
//!   agent: flags and config, then [`app::run`].
//! * [`app`]: picks a desktop shell and the backend, builds the [`state::Agent`], runs the
//!   server on its own runtime and the shell's loop (the tray, if any) on the main thread;
//!   shutdown on a signal or the tray's Quit.
//! * [`server`]: the transport. Binds loopback, accepts (bounded, backing off), answers the HTTP
//!   handshake after the [`guard`] and the connection limits ([`server::http`]), runs each
//!   WebSocket connection ([`server::connection`]) and frames JSON-RPC ([`server::rpc`]).
//! * [`methods`]: the JSON-RPC methods, one file per group, registered through
//!   `keyport_protocol::Method`.
//! * [`desktop`]: the [`desktop::Shell`] seam `app` calls (consent UI, tray, state folder);
//!   [`desktop::freedesktop`] (the consent notification, XDG paths, the tray-icon/tao tray) and
//!   [`desktop::headless`]; the toolkit-free tray model and icon they share; docs/DESKTOP.md.
//! * [`state`]: [`state::Agent`], what the methods, the server and the desktop share (backend,
//!   allowlist, consent policy, time limit), built from the config in one place.
//! * [`events`]: slot events: subscribers (connections, the tray) and the watchers that look
//!   at a module's slots while someone listens.
//! * [`consent`]: who may sign; the [`consent::ConsentUi`] trait the desktop prompt implements;
//!   [`consent::text`], what every prompt (notification, PIN-pad notice, pinentry's windows)
//!   says about a request: one renderer, one cleaning rule, one cap per field.
//! * [`guard`]: Host and Origin checks before the WebSocket upgrade; the demo page's files.
//! * [`backend`]: the [`backend::Backend`] trait; [`backend::host`], which runs each library in a
//!   process of its own; [`backend::pkcs11`], the cryptoki implementation (loading, per-token
//!   state, the login policy, info decoding, cryptoki's errors: the only place cryptoki is
//!   used); an in-memory fake for tests.
//! * [`allowlist`]: which libraries a request may name, and what one library is (its file).
//! * [`config`]: flags (clap) over the person's TOML file over the administrator's (policy);
//!   one table of keys (`config/settings.rs`) gives the file's schema, the flags' keys, the
//!   merge and `keyport config`'s report.
//! * [`limits`]: fixed limits that `app`, `server` and `config` share.
//! * [`origin`], [`x509`]: web origins; certificate parsing, DigestInfo, signature checks.
//! * [`logging`], [`secret`], [`error`]: logs that cannot fail or flood; wiping what secrets
//!   leave on the stack; the one error type and its mapping to wire codes.
//! * [`hooks`]: the environment variables the tests use, honoured by debug builds only.
//!
//! The wire contract (names, params, results, error codes) lives in the `keyport-protocol` crate.

pub mod allowlist;
pub mod app;
pub mod backend;
pub mod config;
pub mod consent;
pub mod desktop;
pub mod error;
pub mod events;
pub mod guard;
pub mod hooks;
pub mod limits;
pub mod logging;
pub mod methods;
pub mod origin;
pub mod p11kit;
pub mod ports;
pub mod secret;
pub mod server;
pub mod state;
#[doc(hidden)]
pub mod testing;
pub mod tools;
pub mod x509;
