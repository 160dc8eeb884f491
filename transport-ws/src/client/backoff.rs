//! The connector's reconnection schedule: [`crosswire_core::Backoff`] with the options'
//! fast attempts and maximum (fast attempts, then exponential backoff with jitter).

use crosswire_core::Backoff;

use super::options::ConnectorOptions;

/// The schedule of `options`: the fast interval for the first `fast_reconnect_threshold`
/// attempts, then a ceiling doubling from twice the fast interval up to the max interval,
/// the delay drawn from its upper half (as the JavaScript connector's `backoffDelay`).
pub(crate) fn schedule(options: &ConnectorOptions) -> Backoff {
    Backoff::new(
        options.fast_reconnect_interval.saturating_mul(2),
        options.reconnect_max_interval,
    )
    .fast_attempts(
        options.fast_reconnect_threshold,
        options.fast_reconnect_interval,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::client::Connector;

    fn defaults() -> Backoff {
        let connector = Connector::builder("ws://h").build().unwrap();
        schedule(connector.options())
    }

    #[test]
    fn fast_then_doubling_then_capped() {
        let schedule = defaults();
        let no_jitter: Vec<u64> = (1..=10)
            .map(|n| schedule.delay_with(n, 0.0).as_secs())
            .collect();
        assert_eq!(no_jitter, [3, 3, 3, 6, 12, 24, 48, 96, 120, 120]);
        assert_eq!(schedule.delay_with(u32::MAX, 0.0), Duration::from_secs(120));
    }

    #[test]
    fn jitter_stays_in_the_upper_half_and_fast_attempts_have_none() {
        let schedule = defaults();
        assert_eq!(schedule.delay_with(2, 1.0), Duration::from_secs(3));
        assert_eq!(schedule.delay_with(5, 1.0), Duration::from_secs(6));
        assert_eq!(schedule.delay_with(9, 1.0), Duration::from_secs(60));
        for attempt in 1..=1000 {
            let delay = schedule.delay(attempt);
            let ceiling = schedule.ceiling(attempt);
            assert!(
                delay <= ceiling && delay >= ceiling / 2,
                "{attempt}: {delay:?}"
            );
        }
    }
}
