//! Transport settings.

use std::time::Duration;

use crosswire_core::ParseOptions;

/// Default largest client message accepted, in bytes.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;
/// Default capacity of each connection's outbound queue, in frames.
pub const DEFAULT_OUTBOUND_QUEUE: usize = 1024;
/// Default time a closing connection gets to answer the close frame.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of the WebSocket transport.
///
/// # Slow consumers
/// Each connection has a bounded outbound queue of [`outbound_queue`](Self::outbound_queue)
/// frames. When a client stops reading and its queue fills, the connection is dropped at once
/// (no close frame could reach it), its close event reports code 1008 with reason
/// `"slow consumer"`, and [`Metrics::slow_consumer_closes`](crosswire_core::Metrics) counts it.
/// Deliveries to everyone else go on undisturbed, and memory stays bounded.
#[derive(Debug, Clone)]
pub struct WsConfig {
    pub(crate) max_message_size: usize,
    pub(crate) outbound_queue: usize,
    pub(crate) close_timeout: Duration,
    pub(crate) parse: ParseOptions,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            outbound_queue: DEFAULT_OUTBOUND_QUEUE,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            parse: ParseOptions::default(),
        }
    }
}

impl WsConfig {
    /// Largest client message; a larger one closes the connection with 1009.
    ///
    /// Default: 1 MiB.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes.max(1);
        self
    }

    /// Capacity of each connection's outbound queue (see "Slow consumers" above).
    ///
    /// Default: 1024 frames.
    pub fn outbound_queue(mut self, frames: usize) -> Self {
        self.outbound_queue = frames.max(1);
        self
    }

    /// How long a closing connection may take to answer the close frame before it is dropped.
    ///
    /// Default: 5 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// How the request target is turned into [`RequestInfo`](crosswire_core::RequestInfo).
    ///
    /// Default: keys as sent, leading slash removed from the path.
    pub fn parse_options(mut self, options: ParseOptions) -> Self {
        self.parse = options;
        self
    }
}
