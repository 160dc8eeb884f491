//! One monotonic clock for the whole generator: send and receive timestamps come from the
//! same process, so `now - sent` is a true one-way latency.

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

/// Starts the clock (idempotent); call once early so timestamps stay small.
pub(crate) fn start() {
    let _ = START.get_or_init(Instant::now);
}

/// Nanoseconds since the generator's clock started.
pub(crate) fn now_nanos() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}
