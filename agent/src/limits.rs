//! Fixed limits that more than one layer needs: [`crate::app`] sizes the runtime with one,
//! [`crate::server`] bounds answers with the other, and [`crate::config`] keeps settings within
//! them. They live here, below all three, so that the config imports neither app nor server.

/// Threads for token calls. Each connection may hold at most `max_in_flight_per_connection`
/// (default 16) of them, stuck calls included, so one connection cannot take them all.
pub const MAX_BLOCKING_THREADS: usize = 64;

/// Longest answer (bytes); a larger one becomes error -32008.
pub const MAX_RESPONSE_BYTES: usize = 2 * 1024 * 1024;
