//! Errors returned by crosswire-core.

use std::error::Error as StdError;
use std::fmt;

/// Everything a [`Node`](crate::Node) operation can fail with.
///
/// Each variant says what went wrong and, where it helps, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The node options were invalid; the node was not built.
    #[error("invalid options: {0}")]
    Options(#[from] OptionsError),
    /// The broker refused or failed an operation; see [`BrokerError::kind`].
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// A payload could not be serialized to JSON.
    #[error("payload could not be encoded as JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// A payload could not be deserialized into the requested type.
    #[error("payload could not be decoded: {0}")]
    Decode(#[source] serde_json::Error),
    /// The socket id is not bound to a connection on this node.
    #[error("socket id `{0}` is not bound on this node")]
    NotBound(String),
    /// The socket id is already in the most rooms a node allows per socket id
    /// ([`NodeBuilder::max_rooms_per_socket`](crate::NodeBuilder::max_rooms_per_socket)); it
    /// must leave a room before it joins another.
    #[error("socket id `{socket_id}` is already in {limit} rooms, the most this node allows")]
    TooManyRooms {
        /// The socket id that tried to join.
        socket_id: String,
        /// The node's `max_rooms_per_socket`.
        limit: usize,
    },
    /// The socket id is already bound to another connection and the node's
    /// [`DuplicateBind`](crate::DuplicateBind) policy is `Refuse`.
    #[error("socket id `{0}` is already bound to another connection")]
    AlreadyBound(String),
    /// A name (event, socket id, namespace, channel) was empty or otherwise unusable.
    #[error("invalid {what}: {reason}")]
    InvalidName {
        /// What kind of name was rejected.
        what: &'static str,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The channel belongs to crosswire itself (it starts with the bridge or ws prefix).
    #[error("channel `{0}` is reserved for crosswire (it starts with the bridge or ws prefix)")]
    ReservedChannel(String),
    /// The connection is closed; nothing was sent.
    #[error("connection is closed")]
    Closed,
    /// The connection's outbound queue was full: the slow-consumer policy closed it.
    #[error("connection's outbound queue is full (slow consumer); the connection is being closed")]
    SlowConsumer,
    /// A reply was attempted for a message that asked for none, or was sent twice.
    #[error("this message expects no reply, or it was already answered")]
    NoReplyExpected,
    /// The node is shutting down ([`Node::shutdown`](crate::Node::shutdown)): new
    /// cross-server emits are refused and reply collections still waiting end.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The node's [`Wire`](crate::Wire) cannot carry what was asked (on the Node.js
    /// package's wire: a client reply handed to another node).
    #[error("not possible on this node's wire: {0}")]
    Unsupported(&'static str),
}

impl Error {
    pub(crate) fn invalid(what: &'static str, reason: &'static str) -> Self {
        Error::InvalidName { what, reason }
    }
}

/// The options given to [`NodeBuilder`](crate::NodeBuilder) were rejected by `build()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// `bridge_prefix` and `ws_prefix` are equal; cross-server and client channels would collide.
    #[error("bridge prefix and ws prefix must differ (both are `{0}`)")]
    SamePrefixes(String),
    /// A prefix is a prefix of the other, so channel names could collide.
    #[error("bridge prefix `{bridge}` and ws prefix `{ws}` overlap: one starts with the other")]
    OverlappingPrefixes {
        /// The bridge prefix.
        bridge: String,
        /// The ws prefix.
        ws: String,
    },
    /// A prefix is empty.
    #[error("channel prefixes must not be empty")]
    EmptyPrefix,
    /// A broker is configured but no server name was given.
    #[error("a server name is required when a broker is used")]
    MissingServerName,
    /// The server name is empty or too long.
    #[error("server name must be 1 to 64 bytes")]
    InvalidServerName,
    /// A preset namespace is empty or would collide with crosswire's own channels.
    #[error("invalid room namespace `{0}`")]
    InvalidNamespace(String),
    /// A duration that must be positive is zero.
    #[error("`{0}` must be greater than zero")]
    ZeroDuration(&'static str),
    /// The cluster secret is empty or shorter than 16 bytes.
    #[error("the cluster secret must be at least 16 bytes long")]
    ClusterSecretTooShort,
    /// A limit that must be at least 1 is zero.
    #[error("`{0}` must be at least 1")]
    ZeroLimit(&'static str),
    /// A custom channel name is empty.
    #[error("custom channel names must not be empty")]
    EmptyCustomChannel,
    /// A custom channel starts with the bridge or ws prefix, so it would take over channels
    /// of crosswire's own (e.g. `ws:chat` is room namespace `chat`).
    #[error(
        "custom channel `{channel}` starts with `{prefix}`, a prefix reserved for crosswire's own channels"
    )]
    ReservedCustomChannel {
        /// The custom channel.
        channel: String,
        /// The reserved prefix it starts with.
        prefix: String,
    },
    /// A cluster secret was set on a node speaking the Node.js package's wire
    /// ([`Wire::JsPackage`](crate::Wire::JsPackage)), which has no place for a signature.
    #[error("the Node.js package's wire cannot carry a cluster signature: drop the cluster secret or the JS wire")]
    SignedJsWire,
}

/// What kind of broker failure happened; tells the caller whether a retry can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerErrorKind {
    /// No broker node is reachable or healthy right now; a later retry may succeed.
    Unavailable,
    /// The broker rejected the message (too large, bad channel name); retrying will not help.
    Rejected,
    /// The broker took the message but did not confirm it in time, while it still answers
    /// other requests (it is slow, not gone). The message may yet be delivered, so retrying
    /// may deliver it twice.
    TimedOut,
    /// The broker was shut down or already attached to another node.
    Closed,
    /// Any other I/O or protocol failure.
    Other,
}

/// A failure reported by a [`Broker`](crate::Broker) implementation.
#[derive(Debug)]
pub struct BrokerError {
    kind: BrokerErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl BrokerError {
    /// Creates an error of `kind` with a human-readable message.
    pub fn new(kind: BrokerErrorKind, message: impl Into<String>) -> Self {
        BrokerError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> BrokerErrorKind {
        self.kind
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            BrokerErrorKind::Unavailable | BrokerErrorKind::Other
        )
    }
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "broker error ({:?}): {}", self.kind, self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for BrokerError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}
