//! The boundary between a node and a client transport (WebSocket, or anything else that
//! carries the JSON frames of `PROTOCOL.md`).
//!
//! A transport accepts connections, describes each one with a [`RequestInfo`], hands the node
//! a [`Transport`] for writing to it ([`Node::connect`](crate::Node::connect)), and feeds
//! what it reads to the [`Connection`](crate::Connection) it got back, until
//! [`Connection::finish`](crate::Connection::finish). What it refuses or drops on its own
//! (oversized messages, rate limits) it counts with [`Node::count`](crate::Node::count).

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::Bytes;

/// Why a frame could not be queued on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is closed or closing.
    #[error("connection is closed")]
    Closed,
    /// The connection's bounded outbound queue is full; the transport's slow-consumer policy
    /// has been applied (the connection is being closed).
    #[error("outbound queue full (slow consumer)")]
    SlowConsumer,
}

/// The write side of one client connection, as the node sees it.
///
/// Every method must return at once: implementations queue the work for a writer task and
/// never block or await.
pub trait Transport: Send + Sync + 'static {
    /// Queues one text frame holding `frame` (already-encoded JSON, shared between recipients).
    ///
    /// # Errors
    /// [`SendError::Closed`] once the connection is closing, [`SendError::SlowConsumer`] when
    /// the outbound queue is full.
    fn send(&self, frame: Bytes) -> Result<(), SendError>;

    /// Queues a protocol-level ping.
    fn ping(&self);

    /// Closes the connection gracefully with `code` and `reason`.
    fn close(&self, code: u16, reason: &str);

    /// Drops the connection at once, without a closing handshake.
    fn terminate(&self);

    /// The node can take input from this connection again, after
    /// [`Connection::ready_for_input`](crate::Connection::ready_for_input) said it could not: a transport
    /// that stopped reading from it reads again. Called from whatever task finished the work
    /// that was holding it back; must return at once.
    fn resume(&self) {}

    /// Whether the connection still accepts frames (no close started). A socket id bound to
    /// a connection that is closing counts as not here: deliveries for it go to the cluster,
    /// where it may be bound again. Default: `true`.
    fn is_open(&self) -> bool {
        true
    }
}

/// What a transport did on its own, counted into its node's metrics with
/// [`Node::count`](crate::Node::count) (each has a counter of the same meaning in
/// [`MetricsSnapshot`](crate::MetricsSnapshot)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportCount {
    /// A client message over the size limit (the connection is closed with 1009):
    /// `oversized_frames`.
    OversizedFrame,
    /// A binary client message, parsed like text: `binary_frames`.
    BinaryFrame,
    /// Reading stopped for flow control: `read_pauses`.
    ReadPause,
    /// A connection dropped because its writes made no progress: `stalled_closes`.
    StalledClose,
    /// A client message over the per-connection rate: `limit_rate`.
    RateLimited,
    /// A TCP connection closed because its upgrade request did not arrive in time:
    /// `upgrade_timeouts`.
    UpgradeTimeout,
    /// An upgrade refused because the node had its maximum of connections:
    /// `limit_connections`.
    ConnectionLimit,
}

/// What the application learns about a connection's opening request.
///
/// Client parameters travel in the URL query (browsers cannot set headers), so this holds the
/// decoded query parameters and the path.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    path: String,
    params: HashMap<String, String>,
    remote_addr: Option<SocketAddr>,
    subprotocol: Option<String>,
}

/// How [`RequestInfo::parse`] treats the request target.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions {
    /// Lower-case parameter names. Default: `false`.
    pub lowercase_keys: bool,
    /// Remove the leading `/` from the path. Default: `true`.
    pub strip_leading_slash: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            lowercase_keys: false,
            strip_leading_slash: true,
        }
    }
}

impl RequestInfo {
    /// Parses a request target such as `/chat?id=7&name=sam%20b`.
    ///
    /// ```
    /// use crosswire_core::{ParseOptions, RequestInfo};
    /// let info = RequestInfo::parse("/chat?id=7&name=sam%20b", ParseOptions::default(), None);
    /// assert_eq!(info.path(), "chat");
    /// assert_eq!(info.param("name"), Some("sam b"));
    /// ```
    pub fn parse(target: &str, options: ParseOptions, remote_addr: Option<SocketAddr>) -> Self {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let path = if options.strip_leading_slash {
            path.trim_start_matches('/')
        } else {
            path
        };
        let params = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| {
                let k = if options.lowercase_keys {
                    k.to_lowercase()
                } else {
                    k.into_owned()
                };
                (k, v.into_owned())
            })
            .collect();
        RequestInfo {
            path: path.to_owned(),
            params,
            remote_addr,
            subprotocol: None,
        }
    }

    /// The same, with the subprotocol the transport agreed on.
    pub fn with_subprotocol(mut self, subprotocol: Option<String>) -> Self {
        self.subprotocol = subprotocol;
        self
    }

    /// The request path (without its leading slash by default).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// One query parameter, decoded.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// All query parameters, decoded.
    pub fn params(&self) -> &HashMap<String, String> {
        &self.params
    }

    /// The WebSocket subprotocol agreed on in the handshake, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// The peer's address, when the transport knows it.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }
}
