//! The client connector: a Rust WebSocket client for crosswire servers (and servers of the
//! JavaScript package), for bots, load testers, back-end services and desktop apps.
//!
//! [`Connector`] does what the JavaScript `WebSocketConnector` does in browsers, with the same
//! options, defaults and events: heartbeat with latency, reconnection (fast attempts, then
//! exponential backoff with jitter), requests with a callback or awaited, close codes. It
//! speaks the client side of `PROTOCOL.md`, over `ws://` or `wss://` (rustls).
//!
//! | JavaScript | crosswire |
//! |---|---|
//! | `new WebSocketConnector({url, customParams, …})` | `Connector::builder(url).param(k, v)….build()?` then `connect()` |
//! | `on / once / off(event, fn, tag)` | [`Connector::on`], [`Connector::once`], [`Connector::on_with`], [`Connector::off`] |
//! | `on('open' / 'close' / 'pong' / …)` | [`Connector::on_system`] with a kind of [`system`] |
//! | `emit(event, data)` | [`Connector::emit`] |
//! | `emit(event, data, callback, {onPending})` | `connector.request(event, data).on_pending(f).callback(cb)` |
//! | `emitWithPromise(event, data, options)` | `connector.request(event, data).timeout(t).await` |
//! | `reconnect(reset)`, `reconnecting()` | [`Connector::reconnect`], [`Connector::reconnecting`] |
//! | `setPingInterval(ms, immediate)`, `getPingInterval()` | [`Connector::set_ping_interval`], [`Connector::ping_interval`] |
//! | `manualClose()` | [`Connector::manual_close`], then [`Connector::closed`] |
//! | `errorCode` `WS_NOT_OPEN`, `CALLBACK_TIMEOUT` | [`RequestError::code`] |

mod backoff;
mod connector;
mod events;
mod options;
mod request;
mod session;

pub use connector::Connector;
pub use events::{system, CloseInfo, ConnectorEvent, Events, ReconnectInfo};
pub use options::{
    ConnectorBuilder, ConnectorOptions, DEFAULT_CALLBACK_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FAST_RECONNECT_INTERVAL, DEFAULT_FAST_RECONNECT_THRESHOLD, DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_PENDING_TIMEOUT, DEFAULT_PING_INTERVAL, DEFAULT_PONG_TIMEOUT,
    DEFAULT_RECONNECT_MAX_INTERVAL, DEFAULT_SEND_QUEUE,
};
pub use request::{Request, RequestError};

/// Why a connector could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// The URL is not `ws://` or `wss://` with a host.
    #[error("invalid WebSocket URL {0}")]
    InvalidUrl(String),
    /// An option is out of range.
    #[error("invalid connector option: {0}")]
    InvalidOption(String),
}
