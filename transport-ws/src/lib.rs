//! The WebSocket transport of crosswire.
//!
//! What is whose: the HTTP/1.1 upgrade is served by hyper, and fastwebsockets checks the
//! upgrade request, computes `Sec-WebSocket-Accept` and unmasks payloads. Reading and writing
//! frames after the upgrade is crosswire's own code (`connection/reader.rs`, `writer.rs`): it
//! is what keeps an idle connection at about 2 KB (no buffer held while idle, one task per
//! connection). Its evidence: `tests/rfc6455.rs` walks the Autobahn testsuite's case groups
//! 1–7 and 9 with a raw client, and `fuzz/` fuzzes the reader alone and against
//! fastwebsockets' reader.
//!
//! Three ways to accept connections for a [`Node`](crosswire_core::Node):
//! - [`WsServer::bind`]: crosswire listens on its own port;
//! - [`WsAcceptor::accept`]: inside an existing hyper or axum service, on a shared port;
//! - [`WsAcceptor::accept_with`] + [`Accept::socket_id`]: the application authenticates the HTTP
//!   request first and answers [`unauthorized`] before any WebSocket exists.
//!
//! With the `client` feature, [`client::Connector`] is the client side: the Rust counterpart of
//! the JavaScript `WebSocketConnector`.
//!
//! Each connection is served by one task that holds no buffer while idle; see
//! [`WsConfig`] for limits and the slow-consumer policy.
//!
#![doc = include_str!("docs/frames.md")]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(feature = "client")]
pub mod client;
mod config;
mod connection;
#[doc(hidden)]
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod server;
mod subprotocol;
mod upgrade;

pub use config::{
    OverRate, RateLimit, WsConfig, DEFAULT_CLOSE_TIMEOUT, DEFAULT_HIGH_WATER,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_OUTBOUND_BYTES,
    DEFAULT_OUTBOUND_QUEUE, DEFAULT_RATE_LIMIT, DEFAULT_STALL_TIMEOUT, DEFAULT_UPGRADE_TIMEOUT,
};
pub use server::{WsServer, DEFAULT_SHUTDOWN_DEADLINE};
pub use subprotocol::{Chooser, Subprotocols};
pub use upgrade::{unauthorized, Accept, WsAcceptor};
