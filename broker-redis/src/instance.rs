//! One configured Redis node: its two connections' state, health flags and counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::{MultiplexedConnection, PubSubSink};
use tokio::sync::Notify;

use crate::health::ConnectionKind;
use crate::RedisNode;

/// A live connection and the signal that tells its task it is lost. Each connection has its
/// own signal, so a late "lost" for an old connection never touches a new one.
#[derive(Clone)]
pub(crate) struct Link<C> {
    pub(crate) conn: C,
    pub(crate) lost: Arc<Notify>,
}

impl<C> Link<C> {
    pub(crate) fn same(&self, other: &Link<C>) -> bool {
        Arc::ptr_eq(&self.lost, &other.lost)
    }
}

const UNMEASURED: u64 = u64::MAX;

pub(crate) struct Instance {
    pub(crate) node: RedisNode,
    pub(crate) client: redis::Client,
    /// Added at runtime: wait the rejoin delay before its first publish too.
    settle_on_first: bool,
    pub(crate) publisher: Mutex<Option<Link<MultiplexedConnection>>>,
    pub(crate) subscriber: Mutex<Option<Link<PubSubSink>>>,
    publisher_healthy: AtomicBool,
    subscriber_healthy: AtomicBool,
    publisher_tried: AtomicBool,
    subscriber_tried: AtomicBool,
    ever_usable: AtomicBool,
    /// While `Some(t)` and before `t`, the node is usable but preferably not chosen.
    settle_until: Mutex<Option<Instant>>,
    latency_micros: AtomicU64,
    /// When the publisher connection last answered anything, in µs after `created` (at
    /// least 1); 0 before its first answer.
    last_answer_micros: AtomicU64,
    created: Instant,
    pub(crate) published: AtomicU64,
    pub(crate) publish_failures: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

impl Instance {
    pub(crate) fn new(node: RedisNode, client: redis::Client, settle_on_first: bool) -> Self {
        Instance {
            node,
            client,
            settle_on_first,
            publisher: Mutex::new(None),
            subscriber: Mutex::new(None),
            publisher_healthy: AtomicBool::new(false),
            subscriber_healthy: AtomicBool::new(false),
            publisher_tried: AtomicBool::new(false),
            subscriber_tried: AtomicBool::new(false),
            ever_usable: AtomicBool::new(false),
            settle_until: Mutex::new(None),
            latency_micros: AtomicU64::new(UNMEASURED),
            last_answer_micros: AtomicU64::new(0),
            created: Instant::now(),
            published: AtomicU64::new(0),
            publish_failures: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        }
    }

    pub(crate) fn healthy(&self, kind: ConnectionKind) -> bool {
        match kind {
            ConnectionKind::Publisher => self.publisher_healthy.load(Ordering::SeqCst),
            ConnectionKind::Subscriber => self.subscriber_healthy.load(Ordering::SeqCst),
        }
    }

    /// Sets a connection's health; returns the previous value and whether this was the
    /// connection's first report.
    pub(crate) fn swap_healthy(&self, kind: ConnectionKind, healthy: bool) -> (bool, bool) {
        let (flag, tried) = match kind {
            ConnectionKind::Publisher => (&self.publisher_healthy, &self.publisher_tried),
            ConnectionKind::Subscriber => (&self.subscriber_healthy, &self.subscriber_tried),
        };
        let first = !tried.swap(true, Ordering::SeqCst);
        let was = flag.swap(healthy, Ordering::SeqCst);
        if healthy && !was && self.usable() {
            let settle = self.ever_usable.swap(true, Ordering::SeqCst) || self.settle_on_first;
            *self.settle_until.lock() = settle.then_some(Instant::now());
        }
        (was, first)
    }

    /// Both connections have had their first attempt (successful or not).
    pub(crate) fn tried(&self) -> bool {
        self.publisher_tried.load(Ordering::SeqCst) && self.subscriber_tried.load(Ordering::SeqCst)
    }

    /// Can take publishes: the publisher works and this node's own subscriber has
    /// subscribed to every channel it needs.
    pub(crate) fn usable(&self) -> bool {
        self.healthy(ConnectionKind::Publisher) && self.healthy(ConnectionKind::Subscriber)
    }

    /// Usable for at least `rejoin_delay` since it (re)joined, or since its first start.
    pub(crate) fn settled(&self, now: Instant, rejoin_delay: Duration) -> bool {
        self.settle_until
            .lock()
            .is_none_or(|since| now.duration_since(since) >= rejoin_delay)
    }

    pub(crate) fn record_latency(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(UNMEASURED - 1);
        self.latency_micros.store(micros, Ordering::Relaxed);
    }

    /// The publisher connection answered a command (a `PUBLISH`, a `PING`, its handshake).
    pub(crate) fn record_answer(&self) {
        let micros = u64::try_from(self.created.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last_answer_micros
            .fetch_max(micros.max(1), Ordering::Relaxed);
    }

    /// Whether the publisher connection answered anything in the last `window`: if so, a
    /// command that timed out was late behind a queue, and the connection is alive.
    pub(crate) fn answered_within(&self, window: Duration) -> bool {
        match self.last_answer_micros.load(Ordering::Relaxed) {
            0 => false,
            last => {
                self.created
                    .elapsed()
                    .saturating_sub(Duration::from_micros(last))
                    < window
            }
        }
    }

    pub(crate) fn latency(&self) -> Option<Duration> {
        match self.latency_micros.load(Ordering::Relaxed) {
            UNMEASURED => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> Instance {
        let node = RedisNode::new("127.0.0.1", 6379);
        let client = node.client().unwrap();
        Instance::new(node, client, false)
    }

    #[test]
    fn a_connection_counts_as_answering_only_after_an_answer_and_within_the_window() {
        let instance = instance();
        assert!(!instance.answered_within(Duration::from_secs(3600)));
        instance.record_answer();
        assert!(instance.answered_within(Duration::from_secs(3600)));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!instance.answered_within(Duration::from_millis(1)));
    }
}
