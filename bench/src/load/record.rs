//! Exact accounting of one step: who must receive which sequence number, what each client
//! did receive (a bit per sequence number), and the totals.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::latency::Latencies;

/// Sequence numbers at or above this are treated as garbage (misdelivered), so that a bad
/// frame cannot make a client allocate a huge bitset.
const MAX_SEQ: u64 = 1 << 28;

/// Which clients (by pool index) must receive message `seq` of a step.
#[derive(Clone)]
pub(crate) enum Audience {
    /// Every client (broadcast).
    All,
    /// Clients whose `index % groups == seq % groups` (rooms: client i in room `i % groups`,
    /// message `seq` sent to room `seq % groups`; RPC: reply `seq` to client `seq % clients`).
    Group {
        /// Number of groups.
        groups: usize,
    },
    /// Exactly one client, computed from the sequence number (unicast; for the multi-node
    /// scenarios).
    One(Arc<dyn Fn(u64) -> usize + Send + Sync>),
}

impl std::fmt::Debug for Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Audience::All => f.write_str("All"),
            Audience::Group { groups } => write!(f, "Group({groups})"),
            Audience::One(_) => f.write_str("One(..)"),
        }
    }
}

impl Audience {
    /// Whether `client` must receive message `seq`.
    pub(crate) fn is_expected(&self, seq: u64, client: usize) -> bool {
        match self {
            Audience::All => true,
            Audience::Group { groups } => {
                let g = (*groups).max(1) as u64;
                seq % g == client as u64 % g
            }
            Audience::One(target) => target(seq) == client,
        }
    }

    /// How many of messages `0..sent` each of `clients` clients must receive, in
    /// O(clients + sent).
    pub(crate) fn expected_counts(&self, clients: usize, sent: u64) -> Vec<u64> {
        match self {
            Audience::One(target) => {
                let mut counts = vec![0u64; clients];
                for seq in 0..sent {
                    if let Some(c) = counts.get_mut(target(seq)) {
                        *c += 1;
                    }
                }
                counts
            }
            _ => (0..clients).map(|i| self.expected_count(i, sent)).collect(),
        }
    }

    /// How many of messages `0..sent` `client` must receive. O(1) except for [`Audience::One`]
    /// (O(sent)).
    pub(crate) fn expected_count(&self, client: usize, sent: u64) -> u64 {
        match self {
            Audience::All => sent,
            Audience::Group { groups } => {
                let g = (*groups).max(1) as u64;
                let r = client as u64 % g;
                if sent > r {
                    (sent - r).div_ceil(g)
                } else {
                    0
                }
            }
            Audience::One(target) => (0..sent).filter(|&s| target(s) == client).count() as u64,
        }
    }
}

/// One measured step, shared by the driver and every client's reader.
#[derive(Debug)]
pub(crate) struct StepCtx {
    /// The step id carried in every token (`d<id>:...`).
    pub(crate) id: u32,
    /// Who must receive what.
    pub(crate) audience: Audience,
    /// Send-to-receive latency of every first, expected receipt.
    pub(crate) latencies: Latencies,
    delivered: AtomicU64,
    target: AtomicU64,
    reached: Notify,
}

static NEXT_STEP: AtomicU64 = AtomicU64::new(1);

impl StepCtx {
    /// A new step with a fresh id.
    pub(crate) fn new(audience: Audience) -> Arc<StepCtx> {
        Self::with_id(NEXT_STEP.fetch_add(1, Ordering::Relaxed) as u32, audience)
    }

    /// A step with the id another process chose (a generator process recording the step
    /// its parent sends).
    pub(crate) fn with_id(id: u32, audience: Audience) -> Arc<StepCtx> {
        Arc::new(StepCtx {
            id,
            audience,
            latencies: Latencies::new(),
            delivered: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            reached: Notify::new(),
        })
    }

    /// Expected receipts so far (first receipts of expected messages).
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }

    fn count_delivery(&self) {
        let now = self.delivered.fetch_add(1, Ordering::AcqRel) + 1;
        if now == self.target.load(Ordering::Acquire) {
            self.reached.notify_one();
        }
    }

    /// Waits until `expected` deliveries have arrived or `deadline` has passed; returns
    /// whether all arrived. This is the end of a step: what is missing then is lost.
    pub(crate) async fn wait_for(&self, expected: u64, deadline: Duration) -> bool {
        self.target.store(expected, Ordering::Release);
        let wait = async {
            while self.delivered() < expected {
                self.reached.notified().await;
            }
        };
        tokio::time::timeout(deadline, wait).await.is_ok()
    }
}

/// What one client received during a step.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    ctx: Option<Arc<StepCtx>>,
    seen: Vec<u64>,
    received: u64,
    duplicated: u64,
    misdelivered: u64,
    stale: u64,
}

impl Recorder {
    /// Starts recording for `ctx`, forgetting the previous step.
    pub(crate) fn begin(&mut self, ctx: &Arc<StepCtx>) {
        *self = Recorder {
            ctx: Some(ctx.clone()),
            ..Recorder::default()
        };
    }

    /// Handles one accounted receipt by client `client`.
    pub(crate) fn on_delivery(&mut self, client: usize, step: u32, seq: u64, sent_nanos: u64) {
        let Some(ctx) = &self.ctx else {
            self.stale += 1;
            return;
        };
        if ctx.id != step {
            self.stale += 1;
            return;
        }
        if seq >= MAX_SEQ || !ctx.audience.is_expected(seq, client) {
            self.misdelivered += 1;
            return;
        }
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            self.duplicated += 1;
            return;
        }
        self.seen[word] |= 1 << bit;
        self.received += 1;
        let now = super::clock::now_nanos();
        ctx.latencies.record(client, now.saturating_sub(sent_nanos));
        ctx.count_delivery();
    }

    /// How many distinct messages with a sequence number in `lo..hi` it received.
    pub(crate) fn count_between(&self, lo: u64, hi: u64) -> u64 {
        (lo..hi.min(MAX_SEQ))
            .filter(|&seq| {
                let (word, bit) = ((seq / 64) as usize, seq % 64);
                self.seen.get(word).is_some_and(|w| w & (1 << bit) != 0)
            })
            .count() as u64
    }

    /// Ends the step: this client's part of the totals, given how many it had to receive.
    pub(crate) fn finish(&mut self, expected: u64) -> Tally {
        let tally = Tally {
            deliveries: self.received,
            lost: expected.saturating_sub(self.received),
            duplicated: self.duplicated,
            misdelivered: self.misdelivered,
            stale: self.stale,
        };
        *self = Recorder::default();
        tally
    }
}

/// The accounting totals of a step.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    /// First receipts of expected messages.
    pub(crate) deliveries: u64,
    /// Expected receipts that did not arrive before the step ended (after its drain).
    pub(crate) lost: u64,
    /// Second and later receipts of the same message by the same client.
    pub(crate) duplicated: u64,
    /// Receipts by a client that was not in the message's audience.
    pub(crate) misdelivered: u64,
    /// Tokens of another (earlier) step, or received between steps.
    pub(crate) stale: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.deliveries += o.deliveries;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.misdelivered += o.misdelivered;
        self.stale += o.stale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_group_audiences_and_receipts() {
        let rooms = Audience::Group { groups: 10 };
        assert_eq!(rooms.expected_count(3, 25), 3); // 3, 13, 23
        assert_eq!(rooms.expected_count(3, 23), 2);
        assert_eq!(rooms.expected_count(3, 3), 0);
        let ctx = StepCtx::new(rooms);
        let mut r = Recorder::default();
        r.begin(&ctx);
        r.on_delivery(3, ctx.id, 13, 0);
        r.on_delivery(3, ctx.id, 13, 0);
        r.on_delivery(3, ctx.id, 14, 0);
        r.on_delivery(3, ctx.id + 1, 3, 0);
        assert_eq!(r.count_between(0, 13), 0);
        assert_eq!(r.count_between(13, 14), 1);
        let t = r.finish(3);
        assert_eq!(
            (t.deliveries, t.lost, t.duplicated, t.misdelivered, t.stale),
            (1, 2, 1, 1, 1)
        );
    }
}
