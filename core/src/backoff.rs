//! Reconnection delays: fast attempts, then exponential backoff with jitter.

use std::time::Duration;

/// The delays between reconnection attempts: a few fast attempts at a fixed interval, then a
/// delay doubling from an initial value up to a maximum, with jitter.
///
/// A building block for transport and broker crates: the client connector of `crosswire-ws`
/// and the Redis broker's publisher and subscriber loops use it, and a broker that keeps its
/// own connections can use it the same way. Call [`next_delay`](Self::next_delay) after each
/// failed attempt (or lost connection) and sleep that long, and [`reset`](Self::reset) once a
/// connection is up again.
///
/// # The schedule
/// Attempts `1..=fast_attempts` wait exactly the fast interval, without jitter. Attempt
/// `fast_attempts + k` (from `k = 1`) has a ceiling of `initial × 2^(k − 1)`, capped at `max`.
/// With jitter (the default) the delay is drawn from the upper half of the ceiling,
/// `ceiling × (1 − r / 2)` with `r` uniform in `[0, 1)`, so that many peers dropped together
/// (clients of a restarted server, nodes of a restarted Redis) spread out instead of
/// returning in one wave, and no delay exceeds `max`. Without jitter the delay is the
/// ceiling. The JavaScript client computes the same schedule.
///
/// ```
/// use std::time::Duration;
/// use crosswire_core::Backoff;
///
/// let ms = Duration::from_millis;
/// let mut backoff = Backoff::new(ms(100), ms(1000))
///     .fast_attempts(2, ms(50))
///     .jitter(false);
/// let delays: Vec<_> = (0..7).map(|_| backoff.next_delay()).collect();
/// assert_eq!(delays, [50, 50, 100, 200, 400, 800, 1000].map(ms));
/// backoff.reset();
/// assert_eq!(backoff.next_delay(), ms(50));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    fast_attempts: u32,
    fast_interval: Duration,
    initial: Duration,
    max: Duration,
    jitter: bool,
    attempt: u32,
}

impl Backoff {
    /// A schedule doubling from `initial` up to `max`, with jitter and no fast attempts.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            fast_attempts: 0,
            fast_interval: Duration::ZERO,
            initial,
            max,
            jitter: true,
            attempt: 0,
        }
    }

    /// Makes the first `count` attempts wait exactly `interval` (not capped by the maximum)
    /// before the doubling starts.
    #[must_use]
    pub fn fast_attempts(mut self, count: u32, interval: Duration) -> Self {
        self.fast_attempts = count;
        self.fast_interval = interval;
        self
    }

    /// Turns jitter on (the default) or off.
    #[must_use]
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// The delay before the next attempt; counts that attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        self.delay(self.attempt)
    }

    /// Starts the schedule over: the next delay is the first one again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many delays [`next_delay`](Self::next_delay) has given since the start or the
    /// last [`reset`](Self::reset).
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The delay before attempt `attempt` (from 1), with jitter drawn if it is on. For a
    /// caller that keeps its own attempt count; doesn't change this schedule's count.
    pub fn delay(&self, attempt: u32) -> Duration {
        let random = if self.jitter { fastrand::f64() } else { 0.0 };
        self.delay_with(attempt, random)
    }

    /// The delay before attempt `attempt` (from 1) for a given draw `random` in `[0, 1]`
    /// (clamped), whether or not jitter is on: `ceiling × (1 − random / 2)` past the fast
    /// attempts. Deterministic, for tests and for mirroring the schedule elsewhere.
    pub fn delay_with(&self, attempt: u32, random: f64) -> Duration {
        if attempt <= self.fast_attempts {
            return self.fast_interval;
        }
        let ceiling = self.ceiling(attempt);
        // `ceiling − ceiling × r/2` rather than `ceiling × (1 − r/2)`: the factor below ½
        // cannot overflow even for `Duration::MAX`.
        let random = if random.is_nan() {
            0.0
        } else {
            random.clamp(0.0, 1.0)
        };
        ceiling.saturating_sub(ceiling.mul_f64(random / 2.0))
    }

    /// The largest delay before attempt `attempt` (from 1): the delay without jitter.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        if attempt <= self.fast_attempts {
            return self.fast_interval;
        }
        let doublings = (attempt - self.fast_attempts - 1).min(31);
        self.initial.saturating_mul(1u32 << doublings).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// The client connector's default schedule.
    fn client() -> Backoff {
        Backoff::new(secs(6), secs(120)).fast_attempts(3, secs(3))
    }

    #[test]
    fn schedule_without_jitter_is_exact() {
        let mut backoff = client().jitter(false);
        let delays: Vec<u64> = (0..10).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(delays, [3, 3, 3, 6, 12, 24, 48, 96, 120, 120]);
        assert_eq!(backoff.attempts(), 10);

        let ms = Duration::from_millis;
        let mut redis = Backoff::new(ms(50), ms(1000)).jitter(false);
        let delays: Vec<u64> = (0..7)
            .map(|_| redis.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_stays_in_the_upper_half_and_fast_attempts_have_none() {
        let schedule = client();
        assert_eq!(schedule.delay_with(2, 1.0), secs(3));
        assert_eq!(schedule.delay_with(5, 1.0), secs(6));
        assert_eq!(schedule.delay_with(9, 1.0), secs(60));
        assert_eq!(schedule.delay_with(9, 0.0), secs(120));
        let mut backoff = client();
        let mut sum = 0.0;
        for attempt in 1..=2000u32 {
            let delay = backoff.next_delay();
            let ceiling = schedule.ceiling(attempt);
            if attempt <= 3 {
                assert_eq!(delay, secs(3));
            } else {
                assert!(
                    delay >= ceiling / 2 && delay <= ceiling,
                    "{attempt}: {delay:?}"
                );
            }
            if attempt > 100 {
                sum += delay.as_secs_f64() / 120.0;
            }
        }
        let mean = sum / 1900.0;
        assert!((0.7..0.8).contains(&mean), "jitter is not uniform: {mean}");
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = client().jitter(false);
        for _ in 0..6 {
            backoff.next_delay();
        }
        backoff.reset();
        assert_eq!(backoff.attempts(), 0);
        assert_eq!(backoff.next_delay(), secs(3));
        let mut redis = Backoff::new(secs(1), secs(60));
        for _ in 0..20 {
            redis.next_delay();
        }
        redis.reset();
        let first = redis.next_delay();
        assert!(first >= secs(1) / 2 && first <= secs(1), "{first:?}");
    }

    #[test]
    fn no_overflow_at_huge_attempt_counts() {
        let mut backoff = client().jitter(false);
        assert_eq!(backoff.delay(u32::MAX), secs(120));
        let unbounded = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(unbounded.delay_with(u32::MAX, 0.0), Duration::MAX);
        assert!(unbounded.delay_with(u32::MAX, 1.0) >= Duration::MAX / 2);
        assert!(unbounded.delay(1) >= Duration::MAX / 2);
        let tiny = Backoff::new(Duration::from_nanos(1), Duration::MAX).jitter(false);
        assert_eq!(tiny.delay(u32::MAX), Duration::from_nanos(1 << 31));
        backoff.attempt = u32::MAX;
        assert_eq!(backoff.next_delay(), secs(120));
        assert_eq!(backoff.attempts(), u32::MAX);
        assert_eq!(client().delay_with(10, f64::NAN), secs(120));
    }
}
