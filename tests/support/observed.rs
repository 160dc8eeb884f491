//! [`ObservedBroker`]: wraps any broker and records what its node asks of it, so tests can
//! check how often a channel was subscribed and what a node published (e.g. whether an
//! envelope was compressed) without reaching into the library.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use crosswire::broker::{Broker, BrokerError, Inbound};

/// A broker that forwards everything to `inner` and keeps a log.
pub struct ObservedBroker {
    inner: Arc<dyn Broker>,
    log: Mutex<Log>,
}

#[derive(Default)]
struct Log {
    subscribes: HashMap<String, usize>,
    unsubscribes: HashMap<String, usize>,
    published: Vec<(String, Bytes)>,
}

impl ObservedBroker {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Broker>) -> Arc<ObservedBroker> {
        Arc::new(ObservedBroker {
            inner,
            log: Mutex::new(Log::default()),
        })
    }

    /// This broker as the trait object a node takes.
    pub fn as_broker(self: &Arc<Self>) -> Arc<dyn Broker> {
        self.clone()
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().expect("observed broker log poisoned")
    }

    /// How many times the node called `subscribe(channel)`.
    pub fn subscribe_calls(&self, channel: &str) -> usize {
        let log = self.log();
        log.subscribes.get(channel).copied().unwrap_or(0)
    }

    /// How many times the node called `unsubscribe(channel)`.
    pub fn unsubscribe_calls(&self, channel: &str) -> usize {
        let log = self.log();
        log.unsubscribes.get(channel).copied().unwrap_or(0)
    }

    /// Every payload the node published on `channel`, in order.
    pub fn published_on(&self, channel: &str) -> Vec<Bytes> {
        let log = self.log();
        log.published
            .iter()
            .filter(|(c, _)| c == channel)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Forgets what was published so far.
    pub fn clear_published(&self) {
        self.log().published.clear();
    }
}

impl std::fmt::Debug for ObservedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedBroker").finish_non_exhaustive()
    }
}

fn count(counts: &mut HashMap<String, usize>, channel: &str) {
    *counts.entry(channel.to_owned()).or_default() += 1;
}

#[async_trait]
impl Broker for ObservedBroker {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BrokerError> {
        self.log()
            .published
            .push((channel.to_owned(), payload.clone()));
        self.inner.publish(channel, payload).await
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        count(&mut self.log().subscribes, channel);
        self.inner.subscribe(channel).await
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        count(&mut self.log().unsubscribes, channel);
        self.inner.unsubscribe(channel).await
    }

    fn take_inbound(&self) -> Option<Inbound> {
        self.inner.take_inbound()
    }
}
