//! Keyport: a small desktop agent that lets web pages use PKCS #11 tokens, with the consent of
//! the person at the keyboard.
//!
//! # Layout
//! Floors from the top down. A module imports only from floors below its own: no import points
//! up, so there is no cycle (`agent/tests/layout.rs` checks it from the source, and that every
//! module is on this map).
//! 1. `main.rs`: thin: logging, then a module host ([`backend::host::server`]), a browser's
//!    native-messaging host ([`native_host`]) or the agent: flags and config, then [`app::run`].
//! 2. [`app`]: picks a desktop shell and the backend, builds the [`state::Agent`], runs the
//!    server on its own runtime and the shell's loop (the tray, if any) on the main thread;
//!    shutdown on a signal or the tray's Quit.
//! 3. [`tools`]: `keyport config`, `keyport modules`, `keyport doctor` (with the browsers'
//!    host manifests and the extension, `tools::browsers`).
//! 4. [`native_host`]: the extension door: `keyport` started by a browser as its
//!    native-messaging host relays one page's connection (the browsers' framing on stdin and
//!    stdout) to the agent's WebSocket door, with the page's origin; the host manifests, their
//!    renderer and the extension's pinned id.
//! 5. [`server`]: the transport. Binds loopback, accepts (bounded, backing off), answers the
//!    HTTP handshake after the [`guard`] and the connection limits ([`server::http`]), runs each
//!    WebSocket connection ([`server::connection`]) and frames JSON-RPC ([`server::rpc`]).
//! 6. [`methods`]: the JSON-RPC methods, one file per group, registered through
//!    `keyport_protocol::Method`.
//! 7. [`desktop`]: the [`desktop::Shell`] seam `app` calls (consent UI, tray, state folder);
//!    the shells, the same on every platform (`desktop::tray`, the tray-icon/tao tray, and
//!    [`desktop::headless`]), each made with a [`desktop::Desktop`]: [`desktop::freedesktop`]
//!    (the consent notification, XDG paths, the tray's Linux checks) or [`desktop::windows`]
//!    (the Win32 consent, PIN and PIN-pad dialogs, `%LOCALAPPDATA%`, Explorer);
//!    [`desktop::pinentry`] (the PIN and consent windows through GnuPG's pinentry programs);
//!    the toolkit-free tray model and icon; docs/DESKTOP.md.
//! 8. [`state`], [`guard`]: [`state::Agent`], what the methods, the server and the desktop share
//!    (backend, allowlist, consent policy, time limits, slot events), built from the config in
//!    one place, with every `impl Agent`; Host and Origin checks before the WebSocket upgrade,
//!    and the demo page's files.
//! 9. [`events`]: slot events: subscribers (connections, the tray) and the watchers that look
//!    at a module's slots while someone listens (through [`events::SlotSource`], which the
//!    Agent implements).
//! 10. [`backend`]: the [`backend::Backend`] trait; [`backend::host`], which runs each library in
//!     a process of its own (channel, supervisor, process, typed wire, the host's server);
//!     [`backend::pkcs11`], the cryptoki implementation (modules, per-token state, signing, the
//!     login policy, events, info decoding, cryptoki's errors: the only place cryptoki is used);
//!     [`backend::pcsc`], the smart-card service hint; an in-memory fake for tests.
//! 11. [`config`]: flags (clap) over the person's TOML file over the administrator's (policy);
//!     one table of keys (`config/settings.rs`) gives the file's schema, the flags' keys, the
//!     merge (`config/policy.rs`) and `keyport config`'s report (`config/report.rs`).
//! 12. [`ports`]: who holds a port (for the "port in use" error and `doctor`).
//! 13. [`consent`], [`allowlist`]: who may sign ([`consent::ConsentPolicy`], the
//!     [`consent::ConsentUi`] and [`consent::PinUi`] traits the desktop implements, the one
//!     renderer of every prompt's text, [`consent::text`]); which libraries a request may name,
//!     and what one library is (its file).
//! 14. [`p11kit`]: modules registered with p11-kit (the administrator's through system folders
//!     only).
//! 15. [`hooks`], [`i18n`], [`limits`], [`origin`], [`x509`]: the test-only environment variables
//!     (honoured by debug builds only); the person's language and the message catalogues
//!     (`agent/i18n/`); fixed limits that `app`, `server` and `config` share; web origins;
//!     certificate parsing, DigestInfo, signature checks.
//! 16. [`logging`], [`secret`]: logs that cannot fail or flood; wiping what secrets leave on the
//!     stack.
//! 17. [`error`], [`testing`]: the one error type and its mapping to wire codes; helpers for tests.
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
pub mod i18n;
pub mod limits;
pub mod logging;
pub mod methods;
pub mod native_host;
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
