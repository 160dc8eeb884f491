//! Counters of what a node dropped, refused or cleaned up, so nothing is lost silently.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Live counters of one node. Transports add to them too.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A copy of [`Metrics`] at one instant.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct MetricsSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Metrics {
            /// Reads every counter.
            pub fn snapshot(&self) -> MetricsSnapshot {
                MetricsSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Client text frames that were not a valid event frame (bad JSON, not an object, no event).
    malformed_frames,
    /// Client messages larger than the transport's limit (the connection is closed with 1009).
    oversized_frames,
    /// Binary client frames (the protocol is text-only); dropped.
    binary_frames,
    /// Client events starting with `$` other than the protocol's own; dropped.
    reserved_events,
    /// Client or cross-server events no handler listened to.
    unhandled_events,
    /// Node envelopes that failed to decode; dropped.
    bad_envelopes,
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
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
