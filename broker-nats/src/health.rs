//! What the broker tells the application about its NATS connection: [`NatsHealthEvent`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What happened to the NATS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NatsHealth {
    /// Connected to a NATS server. After a reconnect, raised only once the server has
    /// confirmed that every subscription is back (a probe round trip on the new connection,
    /// sent after the client re-sent every `SUB`), so messages published from then on reach
    /// this node.
    Connected,
    /// The connection was lost. The client keeps reconnecting to the configured servers (and
    /// the ones they announced) until one answers; each try is a
    /// [`Reconnecting`](NatsHealth::Reconnecting) event.
    Disconnected,
    /// The client is about to try to reconnect, after `delay`. `attempt` counts the tries
    /// since the connection was lost (one per server tried), from 1. The delays are the
    /// async-nats defaults: none before the first try, then 2^(attempt - 1) ms, at most 4 s.
    Reconnecting {
        /// The try since the connection was lost, from 1.
        attempt: usize,
        /// How long the client waits before this try.
        delay: Duration,
    },
    /// The connected server entered lame duck mode: it will shut down soon, and the client
    /// moves to another server when it does.
    LameDuckMode,
    /// The client fell behind on a subscription and NATS dropped messages for it (see
    /// [`NatsBroker::slow_consumer_events`](crate::NatsBroker::slow_consumer_events)).
    SlowConsumer,
    /// The server reported an error (authorization, permissions, protocol).
    ServerError,
    /// The client reported an error (for example it gave up reconnecting).
    ClientError,
    /// The connection is closed for good; the broker stays unusable.
    Closed,
}

impl NatsHealth {
    /// A short name: `connected`, `disconnected`, `reconnecting`, `lame-duck`,
    /// `slow-consumer`, `server-error`, `client-error`, `closed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            NatsHealth::Connected => "connected",
            NatsHealth::Disconnected => "disconnected",
            NatsHealth::Reconnecting { .. } => "reconnecting",
            NatsHealth::LameDuckMode => "lame-duck",
            NatsHealth::SlowConsumer => "slow-consumer",
            NatsHealth::ServerError => "server-error",
            NatsHealth::ClientError => "client-error",
            NatsHealth::Closed => "closed",
        }
    }
}

impl fmt::Display for NatsHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something happened to the NATS connection; see
/// [`on_health_change`](crate::NatsBrokerBuilder::on_health_change).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NatsHealthEvent {
    /// What happened.
    pub event: NatsHealth,
    /// Whether the connection is usable after the event.
    pub healthy: bool,
    /// The NATS server concerned, `host:port` as the server announced itself (the configured
    /// URLs, comma-separated, before the first connection).
    pub server: String,
    /// The crosswire server name given to the broker builder (empty when none).
    pub server_name: String,
    /// The error or detail behind the event, if any.
    pub error: Option<String>,
}

pub(crate) type HealthCallback = Arc<dyn Fn(NatsHealthEvent) + Send + Sync>;

/// The application's health callbacks.
#[derive(Clone, Default)]
pub(crate) struct Callbacks {
    pub(crate) health: Vec<HealthCallback>,
}

impl fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callbacks")
            .field("health", &self.health.len())
            .finish()
    }
}
