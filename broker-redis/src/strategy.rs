//! Which healthy Redis node takes a publish ([`Strategy`]).

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How a publish picks one of the healthy Redis nodes (the JavaScript package's
/// `selectionStrategy`). With a single Redis node it is always chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// A healthy node at random: simple, no hot spot. This is the default.
    #[default]
    Random,
    /// Healthy nodes in turn: even load.
    RoundRobin,
    /// The healthy node with the lowest measured `PING` latency. Turns the health check on
    /// even for a single node. Latency to this machine is not latency to the others: use
    /// with care across regions.
    Fastest,
}

impl Strategy {
    /// The name used by the JavaScript package and [`FromStr`]: `random`, `round-robin`,
    /// `fastest`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Random => "random",
            Strategy::RoundRobin => "round-robin",
            Strategy::Fastest => "fastest",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A strategy name that is none of `random`, `round-robin`, `fastest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown strategy `{0}`: expected random, round-robin or fastest")]
pub struct UnknownStrategy(pub String);

impl FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "random" => Ok(Strategy::Random),
            "round-robin" | "round_robin" | "roundrobin" => Ok(Strategy::RoundRobin),
            "fastest" => Ok(Strategy::Fastest),
            other => Err(UnknownStrategy(other.to_owned())),
        }
    }
}

/// Picks among candidates; keeps the round-robin cursor.
#[derive(Debug, Default)]
pub(crate) struct Picker {
    cursor: AtomicUsize,
}

impl Picker {
    /// Returns the position in `latencies` (one entry per candidate, `None` when not yet
    /// measured) of the candidate to use; `None` when there is no candidate.
    pub(crate) fn pick(&self, strategy: Strategy, latencies: &[Option<Duration>]) -> Option<usize> {
        let n = latencies.len();
        if n <= 1 {
            return (n == 1).then_some(0);
        }
        Some(match strategy {
            Strategy::Random => rand::random::<usize>() % n,
            Strategy::RoundRobin => self.cursor.fetch_add(1, Ordering::Relaxed) % n,
            Strategy::Fastest => latencies
                .iter()
                .enumerate()
                .min_by_key(|(_, l)| l.unwrap_or(Duration::MAX))
                .map_or(0, |(i, _)| i),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        for s in [Strategy::Random, Strategy::RoundRobin, Strategy::Fastest] {
            assert_eq!(s.as_str().parse::<Strategy>(), Ok(s));
        }
        assert!("fast".parse::<Strategy>().is_err());
    }

    #[test]
    fn picks() {
        let p = Picker::default();
        assert_eq!(p.pick(Strategy::Random, &[]), None);
        assert_eq!(p.pick(Strategy::Fastest, &[None]), Some(0));
        let l = [
            Some(Duration::from_millis(9)),
            None,
            Some(Duration::from_millis(2)),
        ];
        assert_eq!(p.pick(Strategy::Fastest, &l), Some(2));
        let turns: Vec<_> = (0..6)
            .filter_map(|_| p.pick(Strategy::RoundRobin, &l))
            .collect();
        assert_eq!(turns, [0, 1, 2, 0, 1, 2]);
        assert!((0..50).all(|_| p.pick(Strategy::Random, &l).is_some_and(|i| i < 3)));
    }
}
