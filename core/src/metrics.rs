//! Counters of what a node dropped, refused or cleaned up, so nothing is lost silently.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::transport::TransportCount;

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// Live counters of one node, read with
        /// [`Node::metrics_snapshot`](crate::Node::metrics_snapshot). Transports count what
        /// they do on their own with [`Node::count`](crate::Node::count).
        #[derive(Debug, Default)]
        pub(crate) struct Metrics {
            $($(#[doc = $doc])* pub(crate) $name: AtomicU64,)*
        }

        /// A node's counters at one instant
        /// ([`Node::metrics_snapshot`](crate::Node::metrics_snapshot)).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct MetricsSnapshot {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl Metrics {
            /// Reads every counter.
            pub(crate) fn snapshot(&self) -> MetricsSnapshot {
                MetricsSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl MetricsSnapshot {
            /// Calls `f` with each counter's exported name (`crosswire_<field>_total`), its
            /// description (the field's doc comment) and its value.
            pub(crate) fn for_each(&self, mut f: impl FnMut(&'static str, &'static str, u64)) {
                $(f(
                    concat!("crosswire_", stringify!($name), "_total"),
                    concat!($($doc),*),
                    self.$name,
                );)*
            }
        }
    };
}

counters! {
    /// Client messages (text, or binary holding the JSON protocol) that were not a valid event
    /// frame (not UTF-8, bad JSON, not an object, no event).
    malformed_frames,
    /// Client messages larger than the transport's limit (the connection is closed with 1009).
    oversized_frames,
    /// Binary client messages; parsed like text (the JSON protocol in a binary frame).
    binary_frames,
    /// Client events starting with `$` other than the protocol's own; dropped.
    reserved_events,
    /// Client or cross-server events no handler listened to.
    unhandled_events,
    /// Node envelopes that failed to decode; dropped.
    bad_envelopes,
    /// Node envelopes refused for their cluster-secret signature: unsigned or wrongly signed
    /// at a node with a secret, or signed at a node without one; dropped.
    bad_signatures,
    /// Broker messages on channels this node has no use for; dropped.
    unknown_channel_messages,
    /// Broker publishes that failed (the caller got an `Err`).
    publish_failures,
    /// Frames that could not be queued because the connection was closing.
    sends_to_closed,
    /// Connections closed by the slow-consumer policy (outbound queue full).
    slow_consumer_closes,
    /// Connections terminated for not answering a protocol ping.
    dead_connections,
    /// Connections closed with 4003 after staying in background mode too long.
    background_closes,
    /// Cross-server replies that arrived after their callback completed, timed out or was cancelled.
    late_replies,
    /// Connections closed with 4011 for staying unbound past the auth timeout.
    auth_timeouts,
    /// Connections closed with 1011 because their connection handlers outran their timeout.
    connection_handler_timeouts,
    /// Times a transport stopped reading from a connection for flow control (its outbound
    /// queue above the high-water mark, or its handlers in flight at the limit).
    read_pauses,
    /// Connections closed with 1008 because their writes made no progress for the stall
    /// timeout (a peer that stopped reading altogether).
    stalled_closes,
    /// Upgrades refused with 503 because the node had its maximum of connections.
    limit_connections,
    /// Client messages over the per-connection rate (throttled, dropped or closed, as
    /// configured).
    limit_rate,
    /// Connections closed with 1001 by a shutdown.
    shutdown_closes,
    /// TCP connections closed because their upgrade request did not arrive in time.
    upgrade_timeouts,
    /// Room joins refused because the socket id was in `max_rooms_per_socket` rooms.
    limit_rooms,
    /// Client events dropped because their name was longer than `max_event_name_len` bytes.
    limit_event_name,
    /// Client requests dropped because their connection had `max_pending_requests` requests
    /// waiting for a reply.
    limit_pending_requests,
    /// Event handlers that returned an error (each logged with its event, at most one line a
    /// second).
    handler_errors,
    /// Announcements showing that another live node uses this node's server name, or that
    /// two live nodes share one (each is logged as an error).
    duplicate_server_names,
    /// Announcements of nodes ignored because the member table was full
    /// ([`MAX_MEMBERS`](crate::MAX_MEMBERS)).
    members_refused,
    /// Envelopes of pushes to socket ids that this node received and decoded, on the shared
    /// channel or in its inbox (a measure of what targeted unicast saves).
    unicast_envelopes,
    /// Pushes to socket ids that reached this node's inbox after the ids had moved, and were
    /// sent on to their new node (or to the shared channel).
    unicast_forwards,
    /// Replies to client requests from another node whose connection was gone.
    client_replies_lost,
    /// Client messages received (text, or binary holding the JSON protocol), valid or not,
    /// heartbeats included; oversized ones are counted in `oversized_frames` only.
    client_messages,
    /// Bytes of the client messages counted in `client_messages`.
    client_message_bytes,
    /// Pushes this node handed to its own connections: one per push (to everyone, a room or
    /// socket ids), sent on this node or received from another, however many connections
    /// took it, even none.
    pushes,
    /// Push frames queued on local connections: one per connection that took a push.
    deliveries,
    /// Bytes of the push frames counted in `deliveries`.
    delivered_bytes,
    /// Cross-server emits sent from this node that collect replies (`replies`, `collect`,
    /// `on_reply`, and the node's own cluster queries).
    cross_requests,
    /// Cross-server reply collections that reached their timeout with replies missing.
    cross_request_timeouts,
}

impl Metrics {
    /// Adds one to `counter`.
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_n(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts one push queued on `delivered` local connections, `frame_len` bytes each.
    /// Called once per push, after the delivery loop and outside its locks.
    pub(crate) fn count_push(&self, delivered: usize, frame_len: usize) {
        self.pushes.fetch_add(1, Ordering::Relaxed);
        if delivered > 0 {
            self.deliveries
                .fetch_add(delivered as u64, Ordering::Relaxed);
            self.delivered_bytes
                .fetch_add((delivered * frame_len) as u64, Ordering::Relaxed);
        }
    }

    /// Counts one client message of `len` bytes.
    pub(crate) fn count_client_message(&self, len: usize) {
        self.client_messages.fetch_add(1, Ordering::Relaxed);
        self.client_message_bytes
            .fetch_add(len as u64, Ordering::Relaxed);
    }

    /// The counter of what a transport did.
    pub(crate) fn of(&self, what: TransportCount) -> &AtomicU64 {
        match what {
            TransportCount::OversizedFrame => &self.oversized_frames,
            TransportCount::BinaryFrame => &self.binary_frames,
            TransportCount::ReadPause => &self.read_pauses,
            TransportCount::StalledClose => &self.stalled_closes,
            TransportCount::RateLimited => &self.limit_rate,
            TransportCount::UpgradeTimeout => &self.upgrade_timeouts,
            TransportCount::ConnectionLimit => &self.limit_connections,
        }
    }
}

/// Lets a repeated warning through at most once per [`LogLimiter::INTERVAL`], counting the
/// occurrences it held back, so a flood of the same failure (a broker outage under load) costs
/// neither CPU nor log volume. The counters above still count every occurrence.
#[derive(Debug)]
pub struct LogLimiter {
    start: std::time::Instant,
    /// Earliest time of the next log line, in µs after `start`.
    next_micros: AtomicU64,
    suppressed: AtomicU64,
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter::new()
    }
}

impl LogLimiter {
    /// The shortest time between two lines let through.
    pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

    /// A limiter that lets the first occurrence through.
    pub fn new() -> Self {
        LogLimiter {
            start: std::time::Instant::now(),
            next_micros: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last line)` when this occurrence is to be logged.
    pub fn allow(&self) -> Option<u64> {
        let now = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let next = self.next_micros.load(Ordering::Relaxed);
        let interval = Self::INTERVAL.as_micros() as u64;
        if now >= next
            && self
                .next_micros
                .compare_exchange(next, now + interval, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::LogLimiter;

    #[test]
    fn a_burst_logs_once_and_counts_the_rest() {
        let limiter = LogLimiter::new();
        assert_eq!(limiter.allow(), Some(0));
        for _ in 0..99 {
            assert_eq!(limiter.allow(), None);
        }
        // Pretend the interval passed: the next line reports what was held back.
        limiter
            .next_micros
            .store(0, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(limiter.allow(), Some(99));
    }
}
