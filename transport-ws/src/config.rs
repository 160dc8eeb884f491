//! Transport settings.

use std::time::Duration;

use crate::subprotocol::Subprotocols;

use crosswire_core::ParseOptions;

/// Default largest client message accepted, in bytes.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;
/// Default capacity of each connection's outbound queue, in frames.
pub const DEFAULT_OUTBOUND_QUEUE: usize = 1024;
/// Default capacity of each connection's outbound queue, in payload bytes (4 MiB).
pub const DEFAULT_OUTBOUND_BYTES: usize = 4 << 20;
/// Default time a closing connection gets to answer the close frame.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default high-water mark of each connection's pending output, in bytes (1 MiB).
pub const DEFAULT_HIGH_WATER: usize = 1 << 20;
/// Default time a connection's writes may make no progress before it is dropped.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default most connections per server.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// Default time a client has to send its upgrade request.
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default message rate limit per connection: 1,000 messages a second, bursts of 200,
/// throttled. The burst stays well under [`DEFAULT_OUTBOUND_QUEUE`]: a burst of broadcasts
/// from one client lands in every other client's queue.
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    per_second: 1_000,
    burst: 200,
    over: OverRate::Throttle,
};

/// What happens to a client message over its connection's [`RateLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OverRate {
    /// Reading from the connection waits until the rate allows the next message: the
    /// client is slowed down, nothing is lost. The default.
    #[default]
    Throttle,
    /// The message is dropped (counted in `limit_rate`).
    Drop,
    /// The connection is closed with 1008 ("rate limit exceeded").
    Close,
}

/// A per-connection limit on client messages (text and binary; control frames are not
/// counted): a token bucket that earns `per_second` tokens a second and holds at most
/// `burst`, one token a message. Every message over the rate is counted in
/// [`MetricsSnapshot::limit_rate`](crosswire_core::MetricsSnapshot::limit_rate); the first
/// one of a connection is logged.
///
/// ```
/// use crosswire_ws::{OverRate, RateLimit, WsConfig};
/// let config = WsConfig::default().rate_limit(Some(RateLimit::per_second(50).burst(100).over(OverRate::Close)));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub(crate) per_second: u32,
    pub(crate) burst: u32,
    pub(crate) over: OverRate,
}

impl RateLimit {
    /// `messages` a second (at least 1), bursts of as many, throttled.
    pub fn per_second(messages: u32) -> Self {
        let messages = messages.max(1);
        RateLimit {
            per_second: messages,
            burst: messages,
            over: OverRate::Throttle,
        }
    }

    /// Most messages let through at once after a quiet time (at least 1).
    ///
    /// Default: the rate.
    pub fn burst(mut self, messages: u32) -> Self {
        self.burst = messages.max(1);
        self
    }

    /// What happens over the rate.
    ///
    /// Default: [`OverRate::Throttle`].
    pub fn over(mut self, action: OverRate) -> Self {
        self.over = action;
        self
    }
}

/// Settings of the WebSocket transport.
///
/// # Slow consumers
/// Frames pushed to a client wait in that connection's outbound queue until its task takes
/// them to write. The queue is bounded twice: at most
/// [`outbound_queue`](Self::outbound_queue) frames and at most
/// [`outbound_bytes`](Self::outbound_bytes) payload bytes. When a client stops reading and a
/// push would go past either bound, the connection is dropped at once (no close frame could
/// reach it), its close event reports code 1008 with reason `"slow consumer"`, and
/// [`MetricsSnapshot::slow_consumer_closes`](crosswire_core::MetricsSnapshot) counts it. Deliveries to
/// everyone else go on undisturbed.
///
/// A client that stops reading is noticed only once its queue fills, and the queue fills only
/// once the kernel stops taking bytes: when the client's receive buffer and then the server's
/// send buffer for the connection are full. The send buffer is auto-tuned by default and can
/// grow to about 4 MiB on Linux; [`send_buffer`](Self::send_buffer) caps it, so that the policy
/// acts sooner and less memory goes to a client that is not reading.
///
/// Per connection, the memory held for a client that stops reading is then at most about twice
/// the byte bound (the batch its task is writing, taken from the queue and no longer counted,
/// plus a full queue behind it) plus the kernel's buffers. The byte bound counts each
/// connection's frames in full, even though a broadcast frame is one allocation shared by every
/// recipient.
///
/// # Flow control: a client that sends faster than it reads
/// The queue above fills with pushes from others and with the replies and pushes that the
/// client's own messages cause. For the latter the server applies backpressure, as TCP does:
/// while a connection's pending output (its queue plus the batch being written) is above
/// [`high_water`](Self::high_water) bytes or half of
/// [`outbound_queue`](Self::outbound_queue) frames, the server stops reading from that
/// connection, and so stops running its handlers, until the output drains to half of that.
/// The client's messages wait in the kernel's buffers and then in the client itself: a client
/// that keeps reading, however slowly, loses nothing it sent. The same pause applies while
/// the connection has its node's
/// [`max_handlers_in_flight`](crosswire_core::NodeBuilder::max_handlers_in_flight)
/// handlers running, and while its [`rate_limit`](Self::rate_limit) throttles it. Each pause
/// is counted in [`MetricsSnapshot::read_pauses`](crosswire_core::MetricsSnapshot::read_pauses).
///
/// The 1008 "slow consumer" drop above remains for what backpressure cannot slow down: a
/// client whose queue overflows with pushes it did not cause (a slow reader of others'
/// broadcasts), and a client whose writes make no progress at all for
/// [`stall_timeout`](Self::stall_timeout) (counted in
/// [`MetricsSnapshot::stalled_closes`](crosswire_core::MetricsSnapshot::stalled_closes)).
/// While reading is paused, the client's pongs and heartbeats are not read either: a pause
/// longer than the node's ping interval ends like a dead connection.
///
/// # Limits
/// Every limit has a default and a setter: [`max_message_size`](Self::max_message_size)
/// (close 1009), [`max_connections`](Self::max_connections) (upgrade answered 503),
/// [`rate_limit`](Self::rate_limit), [`upgrade_timeout`](Self::upgrade_timeout), and on the
/// node: handlers in flight, pending requests, rooms per socket, event-name length, the auth
/// timeout and the connection handler timeout (see
/// [`NodeBuilder`](crosswire_core::NodeBuilder)). Each hit is counted in
/// [`Node::metrics_snapshot`](crosswire_core::Node::metrics_snapshot).
#[derive(Debug, Clone)]
pub struct WsConfig {
    pub(crate) max_message_size: usize,
    pub(crate) outbound_queue: usize,
    pub(crate) outbound_bytes: usize,
    pub(crate) send_buffer: Option<usize>,
    pub(crate) close_timeout: Duration,
    pub(crate) parse: ParseOptions,
    pub(crate) high_water: usize,
    pub(crate) stall_timeout: Duration,
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) upgrade_timeout: Duration,
    pub(crate) subprotocols: Subprotocols,
    pub(crate) require_subprotocol: bool,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            outbound_queue: DEFAULT_OUTBOUND_QUEUE,
            outbound_bytes: DEFAULT_OUTBOUND_BYTES,
            send_buffer: None,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            parse: ParseOptions::default(),
            high_water: DEFAULT_HIGH_WATER,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            rate_limit: Some(DEFAULT_RATE_LIMIT),
            max_connections: Some(DEFAULT_MAX_CONNECTIONS),
            upgrade_timeout: DEFAULT_UPGRADE_TIMEOUT,
            subprotocols: Subprotocols::None,
            require_subprotocol: false,
        }
    }
}

impl WsConfig {
    /// The subprotocols this server speaks: of those a client offers
    /// (`Sec-WebSocket-Protocol`, e.g. a browser's `new WebSocket(url, ["chat.v1"])`), the
    /// first in this list is echoed, and the connection's
    /// [`RequestInfo::subprotocol`](crosswire_core::RequestInfo::subprotocol) names it.
    /// Without a match the upgrade is answered without one (a browser that offered some then
    /// fails the handshake), or refused with 400 under
    /// [`require_subprotocol`](Self::require_subprotocol).
    ///
    /// ```
    /// use crosswire_ws::WsConfig;
    /// let config = WsConfig::default().subprotocols(["chat.v2", "chat.v1"]);
    /// # let _ = config;
    /// ```
    ///
    /// Default: none (no subprotocol is ever echoed).
    pub fn subprotocols<I, S>(mut self, supported: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.subprotocols = Subprotocols::OneOf(supported.into_iter().map(Into::into).collect());
        self
    }

    /// Lets a function choose the subprotocol from the client's offers (in the client's order
    /// of preference); its answer is echoed if it is one of the offers. See
    /// [`subprotocols`](Self::subprotocols).
    pub fn subprotocol_chooser(
        mut self,
        chooser: impl Fn(&[&str]) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.subprotocols = Subprotocols::Choose(std::sync::Arc::new(chooser));
        self
    }

    /// Refuses (400) an upgrade for which no subprotocol was chosen, a client that offered
    /// none included.
    ///
    /// Default: `false` (such connections are accepted without a subprotocol).
    pub fn require_subprotocol(mut self, required: bool) -> Self {
        self.require_subprotocol = required;
        self
    }

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

    /// Most payload bytes each connection's outbound queue may hold (see "Slow consumers"
    /// above): a push that would take the queued bytes past it is treated like a push into a
    /// full queue. Bytes count from the push until the connection's task takes the frame to
    /// write it. At least 1.
    ///
    /// A single frame larger than this is still accepted when the queue is empty, so that any
    /// frame can be delivered to a client that keeps up; the next push while it waits is
    /// refused.
    ///
    /// Default: 4 MiB ([`DEFAULT_OUTBOUND_BYTES`]).
    pub fn outbound_bytes(mut self, bytes: usize) -> Self {
        self.outbound_bytes = bytes.max(1);
        self
    }

    /// `SO_SNDBUF` of each connection's TCP socket: the most bytes the kernel buffers for a
    /// client that does not read them. `None` keeps the kernel's default, which on Linux is
    /// auto-tuned and grows to about 4 MiB on a fast path such as loopback.
    ///
    /// Why set it: with the default, a client that stops reading first fills several MiB of
    /// kernel memory per connection, which the server's RSS does not show, before its
    /// outbound queue starts to fill and the slow-consumer policy can act (see "Slow
    /// consumers" above). A small send buffer (say 64 KiB) makes the policy act sooner and
    /// bounds the kernel memory too. It costs throughput on long, fast links, where the buffer
    /// must hold every byte in flight, and more wake-ups for large messages. The
    /// kernel adjusts the value: Linux doubles it for its bookkeeping, enforces a small
    /// minimum, and caps it at `net.core.wmem_max`.
    ///
    /// It is set on every connection of [`WsServer`](crate::WsServer), and on connections
    /// upgraded by [`WsAcceptor`](crate::WsAcceptor) when the application serves them with
    /// hyper directly over `TokioIo<TcpStream>`. It is not set when the upgraded connection
    /// is anything else, such as TLS or hyper-util's `auto` builder (which wraps the stream),
    /// where no TCP socket is reachable: set it on the socket when accepting it instead. A
    /// failure to set it is logged as a warning and the connection goes on.
    ///
    /// Default: `None` (the kernel's default).
    pub fn send_buffer(mut self, bytes: Option<usize>) -> Self {
        self.send_buffer = bytes;
        self
    }

    /// How long a closing connection may take to answer the close frame before it is dropped.
    ///
    /// Default: 5 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Pending output (bytes queued for a connection plus the batch being written) above
    /// which the server stops reading from that connection, until it drains to half of it
    /// (see "Flow control" above). Capped at [`outbound_bytes`](Self::outbound_bytes).
    ///
    /// Default: 1 MiB ([`DEFAULT_HIGH_WATER`]).
    pub fn high_water(mut self, bytes: usize) -> Self {
        self.high_water = bytes.max(1);
        self
    }

    /// How long a connection's writes may make no progress at all, while something waits to
    /// be written, before the connection is dropped (close event 1008 "stalled",
    /// [`MetricsSnapshot::stalled_closes`](crosswire_core::MetricsSnapshot::stalled_closes)).
    ///
    /// Default: 30 s ([`DEFAULT_STALL_TIMEOUT`]).
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// The message rate limit of each connection (see [`RateLimit`]); `None` for none.
    ///
    /// Default: 1,000 messages a second, bursts of 200, throttled ([`DEFAULT_RATE_LIMIT`]).
    pub fn rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.rate_limit = limit;
        self
    }

    /// Most connections of the node (bound or not) when an upgrade request arrives; past it
    /// the request is answered 503 and counted in
    /// [`MetricsSnapshot::limit_connections`](crosswire_core::MetricsSnapshot::limit_connections).
    /// `None` for no limit.
    ///
    /// Default: 100,000 ([`DEFAULT_MAX_CONNECTIONS`]).
    pub fn max_connections(mut self, connections: Option<usize>) -> Self {
        self.max_connections = connections;
        self
    }

    /// How long a client of [`WsServer`](crate::WsServer) has, from the TCP connection, to
    /// send its whole upgrade request; then the TCP connection is closed (counted in
    /// [`MetricsSnapshot::upgrade_timeouts`](crosswire_core::MetricsSnapshot::upgrade_timeouts)).
    /// Applications serving [`WsAcceptor`](crate::WsAcceptor) from their own hyper server set
    /// the equivalent there (hyper's `header_read_timeout`).
    ///
    /// Default: 10 s ([`DEFAULT_UPGRADE_TIMEOUT`]).
    pub fn upgrade_timeout(mut self, timeout: Duration) -> Self {
        self.upgrade_timeout = timeout;
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
