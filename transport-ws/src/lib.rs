//! The WebSocket transport of crosswire, on fastwebsockets and hyper.
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

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(feature = "client")]
pub mod client;
mod config;
mod connection;
mod server;
mod upgrade;

pub use config::{
    WsConfig, DEFAULT_CLOSE_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_OUTBOUND_BYTES,
    DEFAULT_OUTBOUND_QUEUE,
};
pub use server::WsServer;
pub use upgrade::{unauthorized, Accept, WsAcceptor};
