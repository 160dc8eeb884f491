//! An in-memory broker: several crosswire nodes in one process, for tests, examples and
//! single-process deployments.
//!
//! Nodes share a [`MemoryHub`]; each gets its own [`MemoryBroker`] from [`MemoryHub::broker`]
//! and behaves exactly as on a real broker: it receives only the channels it subscribed to,
//! its own publishes included, in publish order.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
//! use crosswire_core::Node;
//! use crosswire_memory::MemoryHub;
//!
//! let hub = MemoryHub::new();
//! let a = Node::builder().server_name("a").broker(hub.broker()).build().await?;
//! let b = Node::builder().server_name("b").broker(hub.broker()).build().await?;
//! b.on_cross("ping", |ev| async move { let _ = ev.reply(&"pong").await; });
//! let result = a.emit_cross("ping", &()).to(["b"]).collect().await?;
//! assert_eq!(result.responses["b"], "pong");
//! # Ok(()) }
//! ```
//!
//! # Back-pressure
//! A publish waits while a subscriber's inbound queue
//! ([`INBOUND_CAPACITY`](crosswire_core::INBOUND_CAPACITY) messages) is full, like a TCP
//! connection to a real broker would, so nothing is dropped.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use crosswire_core::{
    inbound_channel, Broker, BrokerError, BrokerErrorKind, BrokerMessage, Inbound, InboundSender,
};
use parking_lot::Mutex;

/// The shared bus of one process. Clone it to hand it around; every clone is the same hub.
#[derive(Clone, Default)]
pub struct MemoryHub {
    inner: Arc<HubInner>,
}

#[derive(Default)]
struct HubInner {
    next_id: AtomicU64,
    /// channel → subscriber id → its inbound queue.
    channels: Mutex<HashMap<String, HashMap<u64, InboundSender>>>,
}

impl MemoryHub {
    /// Creates an empty hub.
    pub fn new() -> Self {
        MemoryHub::default()
    }

    /// A broker for one node on this hub.
    pub fn broker(&self) -> Arc<MemoryBroker> {
        let (tx, rx) = inbound_channel();
        Arc::new(MemoryBroker {
            hub: self.inner.clone(),
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            sender: tx,
            inbound: Mutex::new(Some(rx)),
            subscribed: Mutex::new(HashSet::new()),
            disconnected: AtomicBool::new(false),
        })
    }

    /// Number of subscribers of `channel` on this hub.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.inner
            .channels
            .lock()
            .get(channel)
            .map_or(0, HashMap::len)
    }
}

impl std::fmt::Debug for MemoryHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryHub")
            .field("channels", &self.inner.channels.lock().len())
            .finish()
    }
}

/// One node's connection to a [`MemoryHub`].
pub struct MemoryBroker {
    hub: Arc<HubInner>,
    id: u64,
    sender: InboundSender,
    inbound: Mutex<Option<Inbound>>,
    subscribed: Mutex<HashSet<String>>,
    /// Set by [`MemoryBroker::disconnect`]: the link is dead for good.
    disconnected: AtomicBool,
}

impl MemoryBroker {
    /// Simulates the death of this node's link to the broker (a crashed process, a cut
    /// network): every channel of this broker is unsubscribed on the hub at once, so the node
    /// receives nothing more, and every later [`publish`](Broker::publish) and
    /// [`subscribe`](Broker::subscribe) fails with a [`BrokerError`] of kind
    /// [`BrokerErrorKind::Closed`]. The node itself is not told: it goes on as a node whose
    /// broker went away would, and the other nodes stop hearing from it (they forget it after
    /// its missed announcements). There is no way back; a new node needs a new broker.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use crosswire_core::{Broker, BrokerErrorKind};
    /// use crosswire_memory::MemoryHub;
    ///
    /// let hub = MemoryHub::new();
    /// let broker = hub.broker();
    /// broker.subscribe("news").await.unwrap();
    /// broker.disconnect();
    /// assert_eq!(hub.subscriber_count("news"), 0);
    /// let error = broker.publish("news", "hi".into()).await.unwrap_err();
    /// assert_eq!(error.kind(), BrokerErrorKind::Closed);
    /// # }
    /// ```
    pub fn disconnect(&self) {
        // Under the hub's lock, so that a subscribe racing with this cannot slip in after it.
        let mut channels = self.hub.channels.lock();
        self.disconnected.store(true, Ordering::Release);
        for channel in self.subscribed.lock().drain() {
            remove_subscriber(&mut channels, &channel, self.id);
        }
    }

    /// Whether [`disconnect`](Self::disconnect) was called.
    pub fn is_disconnected(&self) -> bool {
        self.disconnected.load(Ordering::Acquire)
    }

    fn check_connected(&self) -> Result<(), BrokerError> {
        if self.is_disconnected() {
            return Err(BrokerError::new(
                BrokerErrorKind::Closed,
                "this broker was disconnected from its hub",
            ));
        }
        Ok(())
    }
}

/// Removes subscriber `id` from `channel`, and the channel when it has no subscriber left.
fn remove_subscriber(
    channels: &mut HashMap<String, HashMap<u64, InboundSender>>,
    channel: &str,
    id: u64,
) {
    if let Some(subs) = channels.get_mut(channel) {
        subs.remove(&id);
        if subs.is_empty() {
            channels.remove(channel);
        }
    }
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("id", &self.id)
            .field("subscribed", &self.subscribed.lock().len())
            .finish()
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BrokerError> {
        self.check_connected()?;
        let subscribers: Vec<InboundSender> = self
            .hub
            .channels
            .lock()
            .get(channel)
            .map(|subs| subs.values().cloned().collect())
            .unwrap_or_default();
        for subscriber in subscribers {
            let message = BrokerMessage {
                channel: channel.to_owned(),
                payload: payload.clone(),
            };
            // A subscriber whose node is gone has closed its queue; skip it as a broker would.
            let _ = subscriber.send(message).await;
        }
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        if self.sender.is_closed() {
            return Err(BrokerError::new(
                BrokerErrorKind::Closed,
                "the node of this broker is gone",
            ));
        }
        let mut channels = self.hub.channels.lock();
        self.check_connected()?;
        self.subscribed.lock().insert(channel.to_owned());
        channels
            .entry(channel.to_owned())
            .or_default()
            .insert(self.id, self.sender.clone());
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.subscribed.lock().remove(channel);
        remove_subscriber(&mut self.hub.channels.lock(), channel, self.id);
        Ok(())
    }

    fn take_inbound(&self) -> Option<Inbound> {
        self.inbound.lock().take()
    }
}

impl Drop for MemoryBroker {
    fn drop(&mut self) {
        let mut channels = self.hub.channels.lock();
        for channel in self.subscribed.get_mut().drain() {
            remove_subscriber(&mut channels, &channel, self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn disconnect_cuts_the_link_both_ways() {
        let hub = MemoryHub::new();
        let gone = hub.broker();
        let other = hub.broker();
        let mut other_inbound = other.take_inbound().unwrap();
        let mut gone_inbound = gone.take_inbound().unwrap();
        for channel in ["a", "b"] {
            gone.subscribe(channel).await.unwrap();
            other.subscribe(channel).await.unwrap();
        }
        assert!(!gone.is_disconnected());

        gone.disconnect();
        assert!(gone.is_disconnected());
        assert_eq!(
            hub.subscriber_count("a"),
            1,
            "only the other broker is left"
        );
        assert_eq!(hub.subscriber_count("b"), 1);

        // Nothing goes out ...
        let error = gone
            .publish("a", Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), BrokerErrorKind::Closed);
        let error = gone.subscribe("c").await.unwrap_err();
        assert_eq!(error.kind(), BrokerErrorKind::Closed);
        assert_eq!(hub.subscriber_count("c"), 0);
        // ... and nothing comes in.
        other.publish("a", Bytes::from_static(b"y")).await.unwrap();
        let got = other_inbound.recv().await.unwrap();
        assert_eq!((got.channel.as_str(), &got.payload[..]), ("a", &b"y"[..]));
        let nothing = tokio::time::timeout(Duration::from_millis(50), gone_inbound.recv()).await;
        assert!(nothing.is_err(), "a disconnected broker receives nothing");
        // Unsubscribing is still harmless, and dropping it leaves the hub consistent.
        gone.unsubscribe("a").await.unwrap();
        drop(gone);
        assert_eq!(hub.subscriber_count("a"), 1);
    }
}
