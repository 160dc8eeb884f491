//! The broker conformance suite (tests/support/conformance.rs), once per broker.

mod support;

use std::sync::Arc;

use crosswire::broker::Broker;
use crosswire::memory::MemoryHub;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    let hub = MemoryHub::new();
    support::conformance::run(|| {
        let hub = hub.clone();
        async move { hub.broker() as Arc<dyn Broker> }
    })
    .await;
}

/// The suite on one real `redis-server`: every broker is a separate set of connections.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis() {
    use crosswire::redis::RedisBroker;
    let server = support::redis::RedisServer::start().await;
    let url = server.url();
    support::conformance::run(|| {
        let url = url.clone();
        async move {
            RedisBroker::builder()
                .url(&url)
                .build()
                .await
                .expect("build a Redis broker") as Arc<dyn Broker>
        }
    })
    .await;
}

/// The suite on one real `nats-server`: every broker is a separate connection.
#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats() {
    use crosswire::nats::NatsBroker;
    let server = support::nats::NatsServer::start().await;
    let url = server.url();
    let prefix = support::conformance::unique("prefix");
    support::conformance::run(|| {
        let (url, prefix) = (url.clone(), prefix.clone());
        async move {
            NatsBroker::builder()
                .url(&url)
                .subject_prefix(prefix)
                .build()
                .await
                .expect("build a NATS broker") as Arc<dyn Broker>
        }
    })
    .await;
}
