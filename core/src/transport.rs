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
/// decoded query parameters and the path. Every connection keeps one for its lifetime, so it
/// is stored compactly: the decoded parameters in one string, with their boundaries.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    path: Box<str>,
    /// Every decoded key and value, one after another.
    params_text: Box<str>,
    /// For each parameter in order, where its key and its value end in `params_text`.
    params_ends: Box<[(usize, usize)]>,
    remote_addr: Option<SocketAddr>,
    subprotocol: Option<Box<str>>,
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
        let mut params_text = String::new();
        let mut params_ends = Vec::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if options.lowercase_keys {
                params_text.push_str(&key.to_lowercase());
            } else {
                params_text.push_str(&key);
            }
            let key_end = params_text.len();
            params_text.push_str(&value);
            params_ends.push((key_end, params_text.len()));
        }
        RequestInfo {
            path: path.into(),
            params_text: params_text.into(),
            params_ends: params_ends.into(),
            remote_addr,
            subprotocol: None,
        }
    }

    /// Every parameter in request order, decoded.
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0;
        self.params_ends.iter().map(move |&(key_end, value_end)| {
            let text = &self.params_text;
            let pair = (&text[start..key_end], &text[key_end..value_end]);
            start = value_end;
            pair
        })
    }

    /// The same, with the subprotocol the transport agreed on.
    pub fn with_subprotocol(mut self, subprotocol: Option<String>) -> Self {
        self.subprotocol = subprotocol.map(String::into_boxed_str);
        self
    }

    /// The request path (without its leading slash by default).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// One query parameter, decoded (the last one, when the name is repeated).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.pairs()
            .filter(|&(key, _)| key == name)
            .map(|(_, value)| value)
            .last()
    }

    /// All query parameters, decoded, in a map (built on each call; a repeated name keeps its
    /// last value).
    pub fn params(&self) -> HashMap<String, String> {
        self.pairs()
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect()
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

/// A transport that accepts every frame and writes it nowhere, for the crate's unit tests.
#[cfg(test)]
pub(crate) struct Discard;

#[cfg(test)]
impl Transport for Discard {
    fn send(&self, _: Bytes) -> Result<(), SendError> {
        Ok(())
    }
    fn ping(&self) {}
    fn close(&self, _: u16, _: &str) {}
    fn terminate(&self) {}
}

#[cfg(test)]
mod tests {
    use super::{ParseOptions, RequestInfo};

    #[test]
    fn parameters_are_decoded_and_a_repeated_name_keeps_its_last_value() {
        let info = RequestInfo::parse(
            "/room/7?id=42&name=sam%20b&Id=x&id=43&empty=&flag",
            ParseOptions::default(),
            None,
        );
        assert_eq!(info.path(), "room/7");
        assert_eq!(info.param("id"), Some("43"));
        assert_eq!(info.param("Id"), Some("x"));
        assert_eq!(info.param("name"), Some("sam b"));
        assert_eq!(info.param("empty"), Some(""));
        assert_eq!(info.param("flag"), Some(""));
        assert_eq!(info.param("missing"), None);
        let params = info.params();
        assert_eq!(params.len(), 5);
        assert_eq!(params["id"], "43");

        let lower = ParseOptions {
            lowercase_keys: true,
            strip_leading_slash: false,
        };
        let info = RequestInfo::parse("/?ID=1&Id=2", lower, None);
        assert_eq!((info.path(), info.param("id")), ("/", Some("2")));
        assert!(RequestInfo::parse("/", lower, None).params().is_empty());
    }
}
