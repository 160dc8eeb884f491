//! The broker conformance suite (tests/support/conformance.rs), once per broker.

mod support;

use std::sync::Arc;

use crosswire::memory::MemoryHub;
use crosswire::Broker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    let hub = MemoryHub::new();
    support::conformance::run(|| {
        let hub = hub.clone();
        async move { hub.broker() as Arc<dyn Broker> }
    })
    .await;
}
