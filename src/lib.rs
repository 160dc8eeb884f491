//! # crosswire
//!
//! Real-time WebSocket applications that outgrow one server: games, chat, live classrooms,
//! dashboards, and back-end services that talk through events.
//!
//! A [`Node`] is one server of your cluster. Clients connect over WebSocket (module [`ws`]),
//! speak a small JSON protocol compatible with the JavaScript `WebSocketConnector`, and are
//! bound to application socket ids. You deliver to everyone, to one id, to many ids or to a
//! room with the same call whether the client sits on this node or another; and nodes emit
//! events to each other and collect replies. Nodes meet through a [`Broker`](broker::Broker): in-memory
//! ([`memory`], the default), Redis or NATS — application code does not change.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use crosswire::memory::MemoryHub;
//! use crosswire::ws::{WsConfig, WsServer};
//! use crosswire::{close_codes, system, Error, Node};
//!
//! let hub = MemoryHub::new(); // one per process; Redis or NATS across machines
//! let node = Node::builder().server_name("a").broker(hub.broker()).build().await?;
//!
//! let n = node.clone();
//! node.on_system(system::Connection, move |socket| {
//!     let n = n.clone();
//!     async move {
//!         match socket.request().param("id").map(str::to_owned) {
//!             Some(id) => n.bind(&socket, &id)?,
//!             None => socket.close(close_codes::AUTH_FAILED, "Auth failure"),
//!         }
//!         Ok::<_, Error>(())
//!     }
//! });
//! node.on("joinRoom", |ev| async move {
//!     let id = ev.socket().socket_id().ok_or(Error::Closed)?;
//!     let room: String = serde_json::from_value(ev.value()["roomId"].clone()).map_err(Error::Decode)?;
//!     ev.node().join_room("chat", &room, &id).await?;
//!     ev.node().to_room("chat", &room).emit("say", &"welcome").await?;
//!     Ok::<_, Error>(())
//! });
//!
//! let server = WsServer::bind("127.0.0.1:0", node.clone(), WsConfig::default()).await?;
//! # server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Features
//! | feature | default | what it adds |
//! |---|---|---|
//! | `memory` | yes | [`memory::MemoryHub`]: several nodes in one process |
//! | `client` | yes | [`client::Connector`]: the Rust client connector, `ws://` and `wss://` |
//! | `redis` | no | `redis::RedisBroker`: nodes in many processes over one or more Redis servers |
//! | `redis-tls` | no | `rediss://` (TLS) Redis connections, rustls on `ring` |
//! | `nats` | no | `nats::NatsBroker`: nodes in many processes over one NATS server or cluster |
//! | `axum` | no | `axum::ws`: the WebSocket endpoint as one route of an axum 0.8 `Router` |
//! | `testing` | no | `testing::TestCluster`, `testing::TestClient`: unit tests of handlers without sockets |

#![doc(test(attr(deny(warnings))))]

#[doc(inline)]
pub use crosswire_core::{
    close_codes, system, Answer, Broadcast, BrokerError, BrokerErrorKind, CallbackId, ClientEvent,
    CloseEvent, Cluster, CrossEmit, CrossEvent, CrossReply, CrossResult, CustomMessage, Delivery,
    DuplicateBind, Error, ErrorEvent, HandlerResult, Listen, ListenerId, Match, Member,
    MessageEvent, MetricsSnapshot, Node, NodeBuilder, NodeOptions, Off, OptionsError, Payload,
    ReplyHandle, ReplyStream, RequestInfo, ShutdownReport, Socket, SocketIds, SystemEvent, ToRoom,
    ToSockets, Wire, BACKGROUND_EVENT, DEFAULT_ANNOUNCE_INTERVAL, DEFAULT_AUTH_TIMEOUT,
    DEFAULT_BACKGROUND_CLOSE_TIME, DEFAULT_BRIDGE_PREFIX, DEFAULT_COMPRESSION_THRESHOLD,
    DEFAULT_CONNECTION_HANDLER_TIMEOUT, DEFAULT_CROSS_TIMEOUT, DEFAULT_HEARTBEAT,
    DEFAULT_MAX_EVENT_NAME_LEN, DEFAULT_MAX_HANDLERS_IN_FLIGHT, DEFAULT_MAX_PENDING_REQUESTS,
    DEFAULT_MAX_ROOMS_PER_SOCKET, DEFAULT_METRICS_INTERVAL, DEFAULT_MISSED_ANNOUNCEMENTS,
    DEFAULT_SERVER_PING_INTERVAL, DEFAULT_WS_PREFIX, MAX_MEMBERS, MAX_SOCKET_ID_LEN,
    STANDALONE_SERVER_NAME,
};

/// For broker authors: the [`broker::Broker`] trait a broker implements, the inbound queue it
/// fills, its errors, the channel names crosswire uses, and a reconnection [`broker::Backoff`].
pub mod broker {
    #[doc(inline)]
    pub use crosswire_core::{
        inbound_channel, Backoff, Broker, BrokerError, BrokerErrorKind, BrokerHealth,
        BrokerMessage, Inbound, InboundSender, INBOUND_CAPACITY, NODE_INBOX, SERVER_BRIDGE,
        WS_BROADCAST, WS_PRIVATE_SOCKET,
    };
}

/// For transport authors: the [`transport::Transport`] a client transport gives the node for
/// each connection, the [`transport::Connection`] it gets back and feeds what it reads, what it
/// tells the node about the opening request, what it counts
/// ([`transport::TransportCount`]), and the frame codec of the client protocol.
pub mod transport {
    #[doc(inline)]
    pub use crosswire_core::{
        frame, Backoff, Connection, Listeners, LogLimiter, ParseOptions, RequestInfo, SendError,
        Transport, TransportCount,
    };
}

/// The WebSocket transport: [`ws::WsServer`], [`ws::WsAcceptor`], [`ws::WsConfig`].
pub mod ws {
    #[doc(inline)]
    pub use crosswire_ws::*;
}

/// The client connector: [`client::Connector`], the Rust counterpart of the JavaScript
/// `WebSocketConnector` (feature `client`, on by default).
#[cfg(feature = "client")]
pub mod client {
    #[doc(inline)]
    pub use crosswire_ws::client::*;
}

/// The in-memory broker.
#[cfg(feature = "memory")]
pub mod memory {
    #[doc(inline)]
    pub use crosswire_memory::*;
}

/// The Redis broker: nodes in many processes and machines over one or more Redis servers.
#[cfg(feature = "redis")]
pub mod redis {
    #[doc(inline)]
    pub use crosswire_redis::*;
}

/// The NATS broker: nodes in many processes and machines over one NATS server or cluster.
#[cfg(feature = "nats")]
pub mod nats {
    #[doc(inline)]
    pub use crosswire_nats::*;
}

#[cfg(feature = "axum")]
pub mod axum;

pub mod demo;

#[cfg(feature = "testing")]
pub mod testing;

/// The README's examples, compiled as doc tests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
