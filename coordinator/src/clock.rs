//! The one place this crate reads a clock.
//!
//! The state machine never does: everything it decides is a function of the
//! log. Leases are different by nature (they expire after a time), so the
//! embedded store's lease expiry and membership keep-alives read this
//! monotonic clock; `clippy.toml` bans every other clock in the crate.

/// Now, on the monotonic clock tokio's timers use (so paused test time
/// applies).
#[allow(
    clippy::disallowed_methods,
    reason = "lease timing is the crate's one legitimate use of a clock"
)]
pub fn monotonic_now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}
