//! The crosswire server under test: one node serving `crosswire::demo`, alone, on Redis or
//! on NATS.
//! It binds each connection to the socket id of its `?id=` query parameter (the demo's
//! connection handler), so the auth timeout never closes a bench client.
//! With `--prometheus true` it installs the Prometheus recorder first and renders a scrape
//! every second, as a process exporting its metrics would.

use std::sync::Arc;
use std::time::Duration;

use crosswire::nats::NatsBroker;
use crosswire::redis::RedisBroker;
use crosswire::ws::{RateLimit, WsConfig, WsServer};
use crosswire::Node;

use super::{announce, ServerSpec};

/// Starts the node and its listener on a free port; returns its counters.
pub(super) async fn start(
    spec: &ServerSpec,
) -> Result<Box<dyn Fn() -> serde_json::Value + Send>, String> {
    let prometheus = if spec.prometheus {
        // Before the node is built, so its publish latency histogram records into it.
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| format!("prometheus recorder: {e}"))?;
        Some(handle)
    } else {
        None
    };
    let ping = (spec.ping_interval_secs > 0).then(|| Duration::from_secs(spec.ping_interval_secs));
    let mut builder = Node::builder()
        .server_name(&spec.name)
        .server_ping_interval(ping)
        .targeted_unicast(spec.targeted_unicast);
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
    } else if let Some(url) = &spec.nats {
        let broker = NatsBroker::builder()
            .url(url)
            .server_name(&spec.name)
            .build()
            .await
            .map_err(|e| format!("nats broker: {e}"))?;
        builder = builder.broker(broker);
    }
    let node = builder.build().await.map_err(|e| format!("node: {e}"))?;
    crosswire::demo::install(&node);
    if let Some(handle) = prometheus {
        tokio::spawn(scrape_every_second(handle, node.clone()));
    }
    let mut config = WsConfig::default().outbound_queue(spec.outbound_queue);
    if spec.stall_timeout_secs > 0.0 {
        let timeout = Duration::try_from_secs_f64(spec.stall_timeout_secs)
            .map_err(|e| format!("--stall-timeout: {e}"))?;
        config = config.stall_timeout(timeout);
    }
    match spec.rate_limit {
        None => {}
        Some(0) => config = config.rate_limit(None),
        Some(n) => config = config.rate_limit(Some(RateLimit::per_second(n))),
    }
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
        value["directory_len"] = node.directory_len().into();
        value
    }))
}

/// What a Prometheus scrape each second costs the process: the node's figures recorded, the
/// text rendered (and dropped), the histograms' samples drained. Every 10 scrapes, their mean
/// wall time (and the part of it in `record_metrics`) goes to stderr.
async fn scrape_every_second(handle: metrics_exporter_prometheus::PrometheusHandle, node: Node) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let (mut recording, mut spent) = (Duration::ZERO, Duration::ZERO);
    for scrapes in 1u32.. {
        ticker.tick().await;
        let started = std::time::Instant::now();
        node.record_metrics();
        recording += started.elapsed();
        std::hint::black_box(handle.render());
        handle.run_upkeep();
        spent += started.elapsed();
        if scrapes % 10 == 0 {
            let mean = |total: Duration| total.as_secs_f64() * 1e6 / f64::from(scrapes);
            eprintln!(
                "prometheus: {scrapes} scrapes, {:.1} µs each ({:.1} µs recording)",
                mean(spent),
                mean(recording)
            );
        }
    }
}

/// The node's counters as JSON: every field of `MetricsSnapshot`, read from its `Debug`
/// form (`MetricsSnapshot { name: 1, ... }`), so that counters added to crosswire appear here
/// without a change.
struct MetricsJson(crosswire::MetricsSnapshot);

impl serde::Serialize for MetricsJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let debug = format!("{:?}", self.0);
        let fields = debug_fields(&debug);
        let mut map = s.serialize_map(Some(fields.len()))?;
        for (name, value) in fields {
            map.serialize_entry(name, &value)?;
        }
        map.end()
    }
}

/// The `name: number` fields of a struct's derived `Debug` text.
fn debug_fields(debug: &str) -> Vec<(&str, u64)> {
    let body = debug
        .split_once('{')
        .map_or("", |(_, rest)| rest.trim_end().trim_end_matches('}'));
    body.split(',')
        .filter_map(|field| {
            let (name, value) = field.split_once(':')?;
            Some((name.trim(), value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metrics_field_is_serialized() {
        let value = serde_json::to_value(MetricsJson(crosswire::MetricsSnapshot::default()))
            .expect("a map of numbers");
        for key in [
            "slow_consumer_closes",
            "read_pauses",
            "stalled_closes",
            "limit_rate",
            "dead_connections",
            "auth_timeouts",
        ] {
            assert_eq!(value[key], 0, "{key} in {value}");
        }
    }
}
