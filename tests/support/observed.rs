//! [`ObservedBroker`]: wraps any broker and records what its node asks of it, so tests can
//! check how often a channel was subscribed and what a node published (e.g. whether an
//! envelope was compressed) without reaching into the library.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use crosswire::{Broker, BrokerError, Inbound};

type BrokerFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BrokerError>> + Send + 'a>>;

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

    /// How many times the node called `subscribe(channel)`.
    pub fn subscribe_calls(&self, channel: &str) -> usize {
        let log = self.log.lock().expect("observed broker log poisoned");
        log.subscribes.get(channel).copied().unwrap_or(0)
    }

    /// How many times the node called `unsubscribe(channel)`.
    pub fn unsubscribe_calls(&self, channel: &str) -> usize {
        let log = self.log.lock().expect("observed broker log poisoned");
        log.unsubscribes.get(channel).copied().unwrap_or(0)
    }

    /// Every payload the node published on `channel`, in order.
    pub fn published_on(&self, channel: &str) -> Vec<Bytes> {
        let log = self.log.lock().expect("observed broker log poisoned");
        log.published
            .iter()
            .filter(|(c, _)| c == channel)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Forgets what was published so far.
    pub fn clear_published(&self) {
        self.log
            .lock()
            .expect("observed broker log poisoned")
            .published
            .clear();
    }
}

impl std::fmt::Debug for ObservedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedBroker").finish_non_exhaustive()
    }
}

// `Broker` is declared with `#[async_trait]`; these are the signatures it expands to, written
// out so the tests need no extra dependency.
impl Broker for ObservedBroker {
    fn publish<'life0, 'life1, 'async_trait>(
        &'life0 self,
        channel: &'life1 str,
        payload: Bytes,
    ) -> BrokerFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.log
                .lock()
                .expect("observed broker log poisoned")
                .published
                .push((channel.to_owned(), payload.clone()));
            self.inner.publish(channel, payload).await
        })
    }

    fn subscribe<'life0, 'life1, 'async_trait>(
        &'life0 self,
        channel: &'life1 str,
    ) -> BrokerFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            *self
                .log
                .lock()
                .expect("observed broker log poisoned")
                .subscribes
                .entry(channel.to_owned())
                .or_default() += 1;
            self.inner.subscribe(channel).await
        })
    }

    fn unsubscribe<'life0, 'life1, 'async_trait>(
        &'life0 self,
        channel: &'life1 str,
    ) -> BrokerFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            *self
                .log
                .lock()
                .expect("observed broker log poisoned")
                .unsubscribes
                .entry(channel.to_owned())
                .or_default() += 1;
            self.inner.unsubscribe(channel).await
        })
    }

    fn take_inbound(&self) -> Option<Inbound> {
        self.inner.take_inbound()
    }
}
