//! The reconnection schedule: fast attempts, then exponential backoff with jitter.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The delays between reconnection attempts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) fast_threshold: u32,
    pub(crate) fast_interval: Duration,
    pub(crate) max_interval: Duration,
}

impl Backoff {
    /// The delay before attempt `repeat` (from 1), given `jitter` in `[0, 1]`.
    ///
    /// Attempts up to the fast threshold wait exactly the fast interval. After that the
    /// ceiling doubles per attempt from the fast interval (2×, 4×, …) up to the max interval,
    /// and the delay is drawn from the upper half of it: `ceiling × (1 − jitter / 2)`, so
    /// clients dropped together spread out instead of returning in one wave, and no delay
    /// exceeds the max interval.
    pub(crate) fn delay(&self, repeat: u32, jitter: f64) -> Duration {
        if repeat <= self.fast_threshold {
            return self.fast_interval;
        }
        let doublings = (repeat - self.fast_threshold).min(32);
        let ceiling = self
            .fast_interval
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max_interval);
        ceiling.mul_f64(1.0 - jitter.clamp(0.0, 1.0) / 2.0)
    }
}

/// A random number in `[0, 1)`, from the standard library's per-instance random hasher keys.
pub(crate) fn jitter() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: Backoff = Backoff {
        fast_threshold: 3,
        fast_interval: Duration::from_secs(3),
        max_interval: Duration::from_secs(120),
    };

    #[test]
    fn fast_then_doubling_then_capped() {
        let no_jitter: Vec<u64> = (1..=10).map(|n| SCHEDULE.delay(n, 0.0).as_secs()).collect();
        assert_eq!(no_jitter, [3, 3, 3, 6, 12, 24, 48, 96, 120, 120]);
        assert_eq!(SCHEDULE.delay(u32::MAX, 0.0), Duration::from_secs(120));
    }

    #[test]
    fn jitter_stays_in_the_upper_half_and_fast_attempts_have_none() {
        assert_eq!(SCHEDULE.delay(2, 1.0), Duration::from_secs(3));
        assert_eq!(SCHEDULE.delay(5, 1.0), Duration::from_secs(6));
        assert_eq!(SCHEDULE.delay(9, 1.0), Duration::from_secs(60));
        let draws: Vec<f64> = (0..1000).map(|_| jitter()).collect();
        assert!(draws.iter().all(|j| (0.0..1.0).contains(j)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!(
            (0.4..0.6).contains(&mean),
            "jitter is not uniform: mean {mean}"
        );
    }
}
