//! The core of [crosswire](https://docs.rs/crosswire): everything that stays the same whatever
//! the transport and the broker.
//!
//! Applications use the `crosswire` facade crate; transport and broker authors depend on this
//! crate and implement [`Transport`] or [`Broker`].
//!
//! # A message's path
//! 1. A transport reads a text frame and hands it to its [`Connection`] (from
//!    [`Node::connect`]); [`frame`] parses it
//!    (heartbeat, `$background`, or an application event) and the node runs the handlers
//!    registered with [`Node::on`].
//! 2. A handler delivers with [`Node::broadcast`], [`Node::to`] or [`Node::to_room`] (module
//!    `recipients`) and `emit` (module `delivery`): the push is encoded once, queued on local
//!    connections, then wrapped in one envelope and published.
//! 3. Other nodes receive the envelope from their broker (module `inbound`), decode it without
//!    copying the push, and queue the same bytes on their own connections.
//!
//! # Channels
//! With the default prefixes a node subscribes to `csbp:server_bridge` (cross-server events and
//! replies, membership and binding announcements), its inbox `csbp:inbox:{server_name}`
//! (pushes to socket ids bound on it, replies handed to it), `ws:broadcast`,
//! `ws:private_socket` (pushes to socket ids whose node the sender does not know), and
//! `ws:{namespace}` for each room namespace with local members (or preset), plus its custom
//! channels.
//!
//! # The cluster
//! Module `membership` keeps the table of live nodes ([`Node::members`]), `directory` the
//! node of every socket id (single login across nodes, targeted unicast), and `cluster` the
//! cluster-wide queries and actions ([`Node::cluster`]).

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![doc(test(attr(deny(warnings))))]

mod backoff;
mod binding;
mod bridge;
mod broker;
mod channels;
pub mod close_codes;
mod cluster;
mod connection;
mod custom_channels;
mod delivery;
mod directory;
mod envelope;
mod error;
mod events;
pub mod frame;
#[doc(hidden)]
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod handoff;
mod inbound;
mod js_compat;
mod js_wire;
mod lifecycle;
mod limits;
mod listeners;
mod membership;
mod metrics;
mod node;
mod options;
mod recipients;
mod room_index;
mod rooms;
mod shutdown;
mod signing;
mod socket;
mod telemetry;
mod transport;

pub use backoff::Backoff;
pub use binding::MAX_SOCKET_ID_LEN;
pub use bridge::{
    CallbackId, CrossEmit, CrossReply, CrossResult, ReplyStream, DEFAULT_CROSS_TIMEOUT,
};
pub use broker::{
    inbound_channel, Broker, BrokerHealth, BrokerMessage, Inbound, InboundSender, INBOUND_CAPACITY,
};
pub use channels::{NODE_INBOX, SERVER_BRIDGE, WS_BROADCAST, WS_PRIVATE_SOCKET};
pub use cluster::{Answer, Cluster};
pub use connection::Connection;
pub use custom_channels::CustomMessage;
pub use delivery::Delivery;
pub use error::{BrokerError, BrokerErrorKind, Error, OptionsError};
pub use events::{
    system, ClientEvent, CloseEvent, CrossEvent, ErrorEvent, MessageEvent, SystemEvent,
};
pub use frame::Payload;
pub use handoff::ReplyHandle;
pub use limits::{
    DEFAULT_AUTH_TIMEOUT, DEFAULT_CONNECTION_HANDLER_TIMEOUT, DEFAULT_MAX_EVENT_NAME_LEN,
    DEFAULT_MAX_HANDLERS_IN_FLIGHT, DEFAULT_MAX_PENDING_REQUESTS, DEFAULT_MAX_ROOMS_PER_SOCKET,
};
pub use listeners::{HandlerResult, Listen, ListenerId, Listeners, Off};
pub use membership::{
    Member, DEFAULT_ANNOUNCE_INTERVAL, DEFAULT_MISSED_ANNOUNCEMENTS, MAX_MEMBERS,
};
pub use metrics::{LogLimiter, MetricsSnapshot};
pub use node::{Node, BACKGROUND_EVENT};
pub use options::{
    DuplicateBind, NodeBuilder, NodeOptions, Wire, DEFAULT_BACKGROUND_CLOSE_TIME,
    DEFAULT_BRIDGE_PREFIX, DEFAULT_COMPRESSION_THRESHOLD, DEFAULT_HEARTBEAT,
    DEFAULT_METRICS_INTERVAL, DEFAULT_SERVER_PING_INTERVAL, DEFAULT_WS_PREFIX,
    STANDALONE_SERVER_NAME,
};
pub use recipients::{Broadcast, SocketIds, ToRoom, ToSockets};
pub use room_index::Match;
pub use shutdown::ShutdownReport;
pub use socket::Socket;
pub use transport::{ParseOptions, RequestInfo, SendError, Transport, TransportCount};
