//! What the broker tells the application about its Redis nodes: [`HealthEvent`] (the
//! JavaScript package's `onRedisHealthChange`) and [`SubscriptionErrorEvent`]
//! (`onRedisSubscriptionError`).

use std::fmt;
use std::sync::Arc;

/// Which of the two connections a crosswire node keeps to each Redis node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionKind {
    /// The connection that sends `PUBLISH` and `PING`.
    Publisher,
    /// The pub/sub connection that receives messages.
    Subscriber,
}

impl ConnectionKind {
    /// `publisher` or `subscriber`, as the JavaScript package's `typeRedis`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionKind::Publisher => "publisher",
            ConnectionKind::Subscriber => "subscriber",
        }
    }
}

impl fmt::Display for ConnectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a connection's health changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthCause {
    /// The publisher connected and answered `PING`.
    Connected,
    /// The subscriber connected and subscribed to every channel the node needs.
    Subscribed,
    /// A connection attempt failed (refused, timed out, authentication).
    ConnectFailed,
    /// An established connection was closed or broke.
    ConnectionLost,
    /// A health-check `PING` failed or timed out.
    PingFailed,
    /// A `PUBLISH` failed on the connection; the message went to another node.
    PublishFailed,
    /// Re-subscribing after a (re)connect failed.
    SubscribeFailed,
}

impl HealthCause {
    /// A short name: `connect`, `subscribed`, `connect-error`, `close`, `ping-error`,
    /// `publish-error`, `subscribe-error`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthCause::Connected => "connect",
            HealthCause::Subscribed => "subscribed",
            HealthCause::ConnectFailed => "connect-error",
            HealthCause::ConnectionLost => "close",
            HealthCause::PingFailed => "ping-error",
            HealthCause::PublishFailed => "publish-error",
            HealthCause::SubscribeFailed => "subscribe-error",
        }
    }
}

impl fmt::Display for HealthCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection to a Redis node became healthy or unhealthy. Raised on changes only.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HealthEvent {
    /// The Redis node's host.
    pub host: String,
    /// The Redis node's port.
    pub port: u16,
    /// The crosswire server name given to the broker builder (empty when none).
    pub server_name: String,
    /// What happened.
    pub event: HealthCause,
    /// The connection's health after the change.
    pub healthy: bool,
    /// The error behind an unhealthy change.
    pub error: Option<String>,
    /// Healthy publisher connections, all Redis nodes together, after the change.
    pub healthy_publishers: usize,
    /// Healthy subscriber connections, all Redis nodes together, after the change.
    pub healthy_subscribers: usize,
    /// Number of configured Redis nodes.
    pub total_nodes: usize,
    /// Which connection changed.
    pub connection: ConnectionKind,
}

/// Whether a failed channel operation was a subscribe or an unsubscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionAction {
    /// `SUBSCRIBE`.
    Subscribe,
    /// `UNSUBSCRIBE`.
    Unsubscribe,
}

impl SubscriptionAction {
    /// `subscribe` or `unsubscribe`.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionAction::Subscribe => "subscribe",
            SubscriptionAction::Unsubscribe => "unsubscribe",
        }
    }
}

/// Subscribing or unsubscribing a channel on one Redis node failed. The broker reconnects
/// that subscriber, which then subscribes to exactly the channels the node needs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SubscriptionErrorEvent {
    /// The Redis node's host.
    pub host: String,
    /// The Redis node's port.
    pub port: u16,
    /// The crosswire server name given to the broker builder (empty when none).
    pub server_name: String,
    /// The channel(s), comma-separated when a whole re-subscription failed.
    pub channel: String,
    /// What was attempted.
    pub action: SubscriptionAction,
    /// The error.
    pub error: String,
}

pub(crate) type HealthCallback = Arc<dyn Fn(&HealthEvent) + Send + Sync>;
pub(crate) type SubscriptionErrorCallback = Arc<dyn Fn(&SubscriptionErrorEvent) + Send + Sync>;

/// The application's callbacks.
#[derive(Clone, Default)]
pub(crate) struct Callbacks {
    pub(crate) health: Vec<HealthCallback>,
    pub(crate) subscription_error: Vec<SubscriptionErrorCallback>,
}

impl fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callbacks")
            .field("health", &self.health.len())
            .field("subscription_error", &self.subscription_error.len())
            .finish()
    }
}
