//! The boundary between a node and its message broker.
//!
//! A broker only moves bytes between nodes. Rooms, bindings, envelopes, reply counting and
//! local delivery all live in the core, so a broker crate implements four small operations:
//! [`publish`](Broker::publish), [`subscribe`](Broker::subscribe),
//! [`unsubscribe`](Broker::unsubscribe) and [`take_inbound`](Broker::take_inbound).

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::BrokerError;

/// Capacity of the inbound queue a broker fills and its node drains.
///
/// Brokers wait (they do not drop) when it is full, so a node that falls behind slows its
/// broker connection instead of losing messages.
pub const INBOUND_CAPACITY: usize = 8192;

/// One message received from the broker on a subscribed channel.
#[derive(Debug, Clone)]
pub struct BrokerMessage {
    /// The channel it arrived on.
    pub channel: String,
    /// The bytes exactly as published.
    pub payload: Bytes,
}

/// The receiving end of a broker's inbound messages, drained by exactly one node.
pub type Inbound = mpsc::Receiver<BrokerMessage>;

/// The sending end a broker implementation pushes inbound messages into.
pub type InboundSender = mpsc::Sender<BrokerMessage>;

/// Creates the bounded inbound queue a broker implementation hands to its node.
pub fn inbound_channel() -> (InboundSender, Inbound) {
    mpsc::channel(INBOUND_CAPACITY)
}

/// How many connections a broker keeps to its servers, and how many of them work right now
/// (see [`Broker::health`]); exported as the `crosswire_broker_connections` and
/// `crosswire_broker_connections_healthy` gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerHealth {
    /// Connections to broker servers the broker keeps (or tries to keep).
    pub connections: usize,
    /// Those of them that are usable right now.
    pub healthy: usize,
}

impl BrokerHealth {
    /// `healthy` of `connections` connections work.
    ///
    /// ```
    /// let health = crosswire_core::BrokerHealth::new(4, 3);
    /// assert_eq!((health.connections, health.healthy), (4, 3));
    /// ```
    pub fn new(connections: usize, healthy: usize) -> Self {
        BrokerHealth {
            connections,
            healthy: healthy.min(connections),
        }
    }
}

/// A publish/subscribe transport between crosswire nodes.
///
/// Semantics every implementation must keep (the conformance suite checks them):
/// - a node receives a message only on channels it is subscribed to, its own publishes included;
/// - subscribing twice to a channel delivers each message once; unsubscribing stops delivery;
/// - messages from one publisher on one channel arrive in order;
/// - payload bytes arrive unchanged.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Publishes `payload` on `channel`.
    ///
    /// # Errors
    /// Fails when no broker node can take the message; nothing is dropped silently.
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BrokerError>;

    /// Subscribes to `channel`. Subscribing to a channel already subscribed is a no-op.
    ///
    /// # Errors
    /// Fails when the subscription could not be established.
    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError>;

    /// Unsubscribes from `channel`. Unsubscribing a channel not subscribed is a no-op.
    ///
    /// # Errors
    /// Fails when the broker could not be told.
    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError>;

    /// Hands over the stream of inbound messages. Returns `None` after the first call: a
    /// broker instance serves exactly one node.
    fn take_inbound(&self) -> Option<Inbound>;

    /// The state of the broker's connections, for metrics. The default, for brokers without
    /// connections of their own (in-memory), is one connection, always healthy.
    fn health(&self) -> BrokerHealth {
        BrokerHealth::new(1, 1)
    }
}
