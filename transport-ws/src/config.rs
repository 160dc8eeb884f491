//! Transport settings.

use std::time::Duration;

use crosswire_core::ParseOptions;

/// Default largest client message accepted, in bytes.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;
/// Default capacity of each connection's outbound queue, in frames.
pub const DEFAULT_OUTBOUND_QUEUE: usize = 1024;
/// Default capacity of each connection's outbound queue, in payload bytes (4 MiB).
pub const DEFAULT_OUTBOUND_BYTES: usize = 4 << 20;
/// Default time a closing connection gets to answer the close frame.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of the WebSocket transport.
///
/// # Slow consumers
/// Frames pushed to a client wait in that connection's outbound queue until its task takes
/// them to write. The queue is bounded twice: at most
/// [`outbound_queue`](Self::outbound_queue) frames and at most
/// [`outbound_bytes`](Self::outbound_bytes) payload bytes. When a client stops reading and a
/// push would go past either bound, the connection is dropped at once (no close frame could
/// reach it), its close event reports code 1008 with reason `"slow consumer"`, and
/// [`Metrics::slow_consumer_closes`](crosswire_core::Metrics) counts it. Deliveries to
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
#[derive(Debug, Clone)]
pub struct WsConfig {
    pub(crate) max_message_size: usize,
    pub(crate) outbound_queue: usize,
    pub(crate) outbound_bytes: usize,
    pub(crate) send_buffer: Option<usize>,
    pub(crate) close_timeout: Duration,
    pub(crate) parse: ParseOptions,
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

    /// How the request target is turned into [`RequestInfo`](crosswire_core::RequestInfo).
    ///
    /// Default: keys as sent, leading slash removed from the path.
    pub fn parse_options(mut self, options: ParseOptions) -> Self {
        self.parse = options;
        self
    }
}
