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
use std::sync::atomic::{AtomicU64, Ordering};
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
        self.subscribed.lock().insert(channel.to_owned());
        self.hub
            .channels
            .lock()
            .entry(channel.to_owned())
            .or_default()
            .insert(self.id, self.sender.clone());
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.subscribed.lock().remove(channel);
        let mut channels = self.hub.channels.lock();
        if let Some(subs) = channels.get_mut(channel) {
            subs.remove(&self.id);
            if subs.is_empty() {
                channels.remove(channel);
            }
        }
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
            if let Some(subs) = channels.get_mut(&channel) {
                subs.remove(&self.id);
                if subs.is_empty() {
                    channels.remove(&channel);
                }
            }
        }
    }
}
