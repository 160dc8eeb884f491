//! The soak's accounting over connection lives: which broadcasts each connection had to
//! receive (those sent while it was connected, less a guard at each end for the time a push
//! takes to get there), which it did, and its heartbeats sent and answered.
//!
//! The guard after connecting covers the server binding the new connection. The guard before
//! leaving covers the pushes still on their way when the client closed: a client that drops
//! its TCP connection loses them by design. It is the run's largest delivery latency, at least
//! [`GUARD`], so that a slow machine does not count them as lost.

use std::time::Duration;

use crate::load::churn::{Ending, Leave, Life};

/// Broadcasts sent less than this after a connection's handshake are not expected by it (it
/// may or may not get them); the least guard before it leaves.
pub(super) const GUARD: Duration = Duration::from_secs(1);

/// The guard times of a run, nanoseconds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Guards {
    /// After the handshake.
    pub(super) after_connect: u64,
    /// Before the leave began.
    pub(super) before_leave: u64,
}

impl Guards {
    /// [`GUARD`] after connecting; before leaving, the largest delivery latency seen
    /// (`max_latency`), at least [`GUARD`].
    pub(super) fn new(max_latency: Duration) -> Guards {
        let guard = GUARD.as_nanos() as u64;
        Guards {
            after_connect: guard,
            before_leave: guard.max(max_latency.as_nanos() as u64),
        }
    }
}

/// The sequence numbers `lo..hi` a connection must receive: those sent at or after
/// `connected + guards.after_connect` and at or before `ended - guards.before_leave` (no end:
/// every one sent after). `sent_at[seq]` is the send time of broadcast `seq` (non-decreasing).
pub(super) fn window(
    sent_at: &[u64],
    connected: u64,
    ended: Option<u64>,
    guards: Guards,
) -> (u64, u64) {
    let lo = sent_at.partition_point(|&t| t < connected.saturating_add(guards.after_connect));
    let hi = match ended {
        Some(end) => sent_at.partition_point(|&t| t.saturating_add(guards.before_leave) <= end),
        None => sent_at.len(),
    };
    (lo as u64, hi.max(lo) as u64)
}

/// A connection that missed broadcasts it had to receive.
#[derive(Debug, Clone)]
pub(super) struct Missed {
    /// Its slot (socket id).
    pub(super) index: usize,
    /// How its life ended.
    pub(super) ending: Ending,
    /// Broadcasts it had to receive.
    pub(super) expected: u64,
    /// Of those, received.
    pub(super) received: u64,
}

/// Broadcast accounting over every life.
#[derive(Debug, Clone, Default)]
pub(super) struct Broadcasts {
    /// Connection lives accounted.
    pub(super) lives: u64,
    /// Broadcasts the lives had to receive, summed.
    pub(super) expected: u64,
    /// Of those, received.
    pub(super) received: u64,
    /// Of those, missing.
    pub(super) missing: u64,
    /// Receipts outside a life's window (in its guard times), not counted above.
    pub(super) outside_window: u64,
    /// Second receipts of a broadcast by the same connection.
    pub(super) duplicated: u64,
    /// Receipts of tokens of another step, or before the connection joined the step.
    pub(super) stale: u64,
    /// Lives that missed at least one broadcast, the first few of them.
    pub(super) missed: Vec<Missed>,
    /// Lives that missed at least one broadcast.
    pub(super) lives_missing: u64,
    /// Connections held from before the first broadcast to the end: how many, and the
    /// fewest and most broadcasts one of them received in all (each had to receive every
    /// one, guard times included).
    pub(super) throughout: (u64, u64, u64),
}

/// Examples of lives with missing broadcasts kept in [`Broadcasts::missed`].
const EXAMPLES: usize = 5;

/// Accounts `lives` (their receipts are consumed) against the send times `sent_at`.
pub(super) fn broadcasts(lives: &mut [Life], sent_at: &[u64], guards: Guards) -> Broadcasts {
    let first_send = sent_at.first().copied().unwrap_or(u64::MAX);
    let mut b = Broadcasts::default();
    let mut throughout = (0u64, u64::MAX, 0u64);
    for life in lives.iter_mut() {
        let (lo, hi) = window(sent_at, life.connected_nanos, life.ended_nanos, guards);
        let received = life.rec.count_between(lo, hi);
        let tally = life.rec.finish(0);
        let expected = hi - lo;
        b.lives += 1;
        b.expected += expected;
        b.received += received;
        b.missing += expected - received;
        b.outside_window += tally.deliveries - received;
        b.duplicated += tally.duplicated;
        b.stale += tally.stale + tally.misdelivered;
        if received < expected {
            b.lives_missing += 1;
            if b.missed.len() < EXAMPLES {
                b.missed.push(Missed {
                    index: life.index,
                    ending: life.ending,
                    expected,
                    received,
                });
            }
        }
        if life.ending == Ending::Open && life.connected_nanos < first_send {
            throughout.0 += 1;
            throughout.1 = throughout.1.min(tally.deliveries);
            throughout.2 = throughout.2.max(tally.deliveries);
        }
    }
    if throughout.0 == 0 {
        throughout.1 = 0;
    }
    b.throughout = throughout;
    b
}

/// Heartbeats sent and answered, by how the connection's life ended.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Beats {
    /// Heartbeats sent.
    pub(super) sent: u64,
    /// Replies received.
    pub(super) answered: u64,
    /// Unanswered on connections open at the end (after a pause for the last replies): must
    /// be 0.
    pub(super) unanswered_open: u64,
    /// Unanswered on connections that left (sent just before they closed).
    pub(super) unanswered_left: u64,
    /// Unanswered on connections that ended by themselves.
    pub(super) unanswered_lost: u64,
}

/// Sums the heartbeats of `lives`.
pub(super) fn heartbeats(lives: &[Life]) -> Beats {
    let mut beats = Beats::default();
    for life in lives {
        beats.sent += life.beats_sent;
        beats.answered += life.beats_answered;
        let unanswered = life.beats_sent.saturating_sub(life.beats_answered);
        match life.ending {
            Ending::Open => beats.unanswered_open += unanswered,
            Ending::Left(_) => beats.unanswered_left += unanswered,
            Ending::Lost => beats.unanswered_lost += unanswered,
        }
    }
    beats
}

/// Lives by how they ended: open, left cleanly, dropped, lost.
pub(super) fn endings(lives: &[Life]) -> [u64; 4] {
    let mut counts = [0; 4];
    for life in lives {
        let i = match life.ending {
            Ending::Open => 0,
            Ending::Left(Leave::Clean) => 1,
            Ending::Left(Leave::Drop) => 2,
            Ending::Lost => 3,
        };
        counts[i] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_leaves_out_the_guard_times() {
        let sent = [10, 20, 30, 40, 50];
        let g = Guards {
            after_connect: 5,
            before_leave: 5,
        };
        assert_eq!(window(&sent, 0, None, g), (0, 5));
        assert_eq!(window(&sent, 12, None, g), (1, 5)); // from 17: 20 is the first
        assert_eq!(window(&sent, 12, Some(41), g), (1, 3)); // to 36: 30 is the last
        assert_eq!(window(&sent, 35, Some(41), g), (3, 3)); // from 40 to 36: nothing
        assert_eq!(window(&[], 0, None, g), (0, 0));
        let late = Guards {
            after_connect: 5,
            before_leave: 15,
        };
        assert_eq!(window(&sent, 12, Some(41), late), (1, 2)); // to 26
        let floor = Guards::new(Duration::from_millis(10));
        assert_eq!(floor.before_leave, GUARD.as_nanos() as u64);
    }
}
