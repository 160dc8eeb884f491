//! One monotonic clock for every generator process: `CLOCK_MONOTONIC` is the same clock in
//! every process on this machine, so a token stamped by the sending process and read by a
//! receiving one (the `scale` scenario's generator processes) gives a true one-way latency.

use nix::time::{clock_gettime, ClockId};

/// Nanoseconds on `CLOCK_MONOTONIC` (since boot); 0 if the clock cannot be read, which
/// Linux never refuses for this clock.
pub(crate) fn now_nanos() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |ts| {
        (ts.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec() as u64)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn never_goes_back() {
        let a = super::now_nanos();
        let b = super::now_nanos();
        assert!(a > 0 && b >= a, "{a} then {b}");
    }
}
