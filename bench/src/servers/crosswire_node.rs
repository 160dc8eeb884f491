//! The crosswire server under test: one node serving `crosswire::demo`, alone or on Redis.

use std::sync::Arc;
use std::time::Duration;

use crosswire::redis::RedisBroker;
use crosswire::ws::{WsConfig, WsServer};
use crosswire::Node;

use super::{announce, ServerSpec};

/// Starts the node and its listener on a free port; returns its counters.
pub(super) async fn start(
    spec: &ServerSpec,
) -> Result<Box<dyn Fn() -> serde_json::Value + Send>, String> {
    let ping = (spec.ping_interval_secs > 0).then(|| Duration::from_secs(spec.ping_interval_secs));
    let mut builder = Node::builder()
        .server_name(&spec.name)
        .server_ping_interval(ping);
    if !spec.redis.is_empty() {
        let broker = spec
            .redis
            .iter()
            .fold(RedisBroker::builder(), |b, url| b.url(url))
            .server_name(&spec.name)
            .build()
            .await
            .map_err(|e| format!("redis broker: {e}"))?;
        builder = builder.broker(broker);
    }
    let node = builder.build().await.map_err(|e| format!("node: {e}"))?;
    crosswire::demo::install(&node);
    let config = WsConfig::default().outbound_queue(spec.outbound_queue);
    let server = WsServer::bind("127.0.0.1:0", node.clone(), config)
        .await
        .map_err(|e| format!("bind: {e}"))?;
    announce(spec, server.local_addr())?;
    // The server lives as long as the process.
    let server = Arc::new(server);
    Ok(Box::new(move || {
        let _keep = &server;
        let mut value =
            serde_json::to_value(MetricsJson(node.metrics_snapshot())).unwrap_or_default();
        value["connections"] = node.connection_count().into();
        value
    }))
}

/// The node's counters as JSON.
struct MetricsJson(crosswire::MetricsSnapshot);

impl serde::Serialize for MetricsJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let m = &self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("malformed_frames", &m.malformed_frames)?;
        map.serialize_entry("oversized_frames", &m.oversized_frames)?;
        map.serialize_entry("publish_failures", &m.publish_failures)?;
        map.serialize_entry("sends_to_closed", &m.sends_to_closed)?;
        map.serialize_entry("slow_consumer_closes", &m.slow_consumer_closes)?;
        map.serialize_entry("dead_connections", &m.dead_connections)?;
        map.serialize_entry("unhandled_events", &m.unhandled_events)?;
        map.end()
    }
}
