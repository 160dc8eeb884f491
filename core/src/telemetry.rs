//! Exporting a node's counters and gauges through the [`metrics`](https://docs.rs/metrics)
//! facade, so any exporter (Prometheus, StatsD, OpenTelemetry, ...) can publish them.
//!
//! Counting itself stays where it was: plain atomic counters in [`Metrics`](crate::Metrics),
//! bumped once per push or message outside the delivery locks. [`Node::record_metrics`]
//! copies them to the recorder, on a timer ([`NodeBuilder::metrics_interval`]) or just before
//! a scrape. Only the broker publish latency is recorded as it happens, into a histogram
//! handle taken from the recorder when the node is built.
//!
//! [`NodeBuilder::metrics_interval`]: crate::NodeBuilder::metrics_interval

use std::sync::{Arc, Once, Weak};
use std::time::Duration;

use ::metrics::{Histogram, Label, Unit};

use crate::node::{Node, NodeInner};

/// The broker publish latency histogram.
pub(crate) const PUBLISH_SECONDS: &str = "crosswire_broker_publish_seconds";

/// The gauges: name and description.
const GAUGES: [(&str, &str); 8] = [
    (
        "crosswire_connections",
        "Open client connections of this node, bound or not.",
    ),
    (
        "crosswire_bound_sockets",
        "Socket ids bound to a connection of this node.",
    ),
    (
        "crosswire_rooms",
        "Rooms with members on this node, over every namespace.",
    ),
    (
        "crosswire_cross_requests_pending",
        "Cross-server reply collections of this node still waiting for replies.",
    ),
    (
        "crosswire_members",
        "Live nodes of the cluster this node knows of, itself included.",
    ),
    (
        "crosswire_directory_entries",
        "Socket ids bound on other nodes that this node's directory knows of.",
    ),
    (
        "crosswire_broker_connections",
        "Connections the broker keeps to its servers (0 without a broker).",
    ),
    (
        "crosswire_broker_connections_healthy",
        "Broker connections usable right now.",
    ),
];

/// The histogram of [`PUBLISH_SECONDS`] for node `server_name`, from the recorder installed
/// now (a no-op handle when there is none).
pub(crate) fn publish_histogram(server_name: &str) -> Histogram {
    ::metrics::histogram!(PUBLISH_SECONDS, "node" => server_name.to_owned())
}

/// Describes every metric to the installed recorder, once per process.
fn describe() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        crate::MetricsSnapshot::default().for_each(|name, doc, _| {
            ::metrics::describe_counter!(name, plain_text(doc));
        });
        for (name, doc) in GAUGES {
            ::metrics::describe_gauge!(name, doc);
        }
        ::metrics::describe_histogram!(
            PUBLISH_SECONDS,
            Unit::Seconds,
            "Time a broker publish of this node took, failed ones included."
        );
    });
}

/// A doc comment as plain text for a metric's help line: no backticks, and intra-doc links
/// `[text](target)` reduced to their text.
fn plain_text(doc: &str) -> String {
    let mut out = String::with_capacity(doc.len());
    let mut rest = doc.trim();
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after
            .find("](")
            .and_then(|close| Some((close, after[close..].find(')')? + close)))
        {
            Some((close, end)) => {
                out.push_str(&after[..close]);
                rest = &after[end + 1..];
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.retain(|c| c != '`');
    out
}

impl Node {
    /// Copies this node's counters and gauges to the recorder of the
    /// [`metrics`](https://docs.rs/metrics) facade, labelled `node="<server name>"`.
    ///
    /// Every counter of [`metrics_snapshot`](Node::metrics_snapshot) becomes
    /// `crosswire_<field>_total` (set to its absolute value); the gauges are
    /// `crosswire_connections`, `crosswire_bound_sockets`, `crosswire_rooms`,
    /// `crosswire_cross_requests_pending`, `crosswire_members`,
    /// `crosswire_directory_entries`, `crosswire_broker_connections` and
    /// `crosswire_broker_connections_healthy`. The histogram
    /// `crosswire_broker_publish_seconds` is recorded at each publish, into the recorder that
    /// was installed when the node was built: install the recorder before building nodes.
    /// The metrics' descriptions (their help text) go to the recorder of the first call in
    /// the process.
    ///
    /// A background task calls this every
    /// [`metrics_interval`](crate::NodeBuilder::metrics_interval); call it yourself right
    /// before rendering a scrape for exact figures. Without a recorder installed, it costs
    /// next to nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use crosswire_core::Node;
    ///
    /// // Install a recorder (e.g. metrics-exporter-prometheus) first, then build the node.
    /// let node = Node::builder().server_name("a").build().await?;
    /// node.record_metrics(); // a no-op recorder here: nothing is installed
    /// # Ok(()) }
    /// ```
    pub fn record_metrics(&self) {
        describe();
        let inner = self.inner();
        let labels = [Label::new("node", Arc::<str>::from(self.server_name()))];
        self.metrics_snapshot().for_each(|name, _, value| {
            ::metrics::counter!(name, labels.iter()).absolute(value);
        });
        let (bound, rooms) = {
            let state = inner.state.read();
            (state.bound.len(), state.rooms.total())
        };
        let broker = inner
            .broker
            .as_ref()
            .map(|broker| broker.health())
            .unwrap_or(crate::BrokerHealth::new(0, 0));
        let values = [
            self.connection_count(),
            bound,
            rooms,
            self.pending_cross_callbacks(),
            inner.membership.other_count() + 1,
            inner.directory.len(),
            broker.connections,
            broker.healthy,
        ];
        for ((name, _), value) in GAUGES.into_iter().zip(values) {
            ::metrics::gauge!(name, labels.iter()).set(value as f64);
        }
    }
}

/// Calls [`Node::record_metrics`] every `interval` while the node lives.
pub(crate) async fn run(node: Weak<NodeInner>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = node.upgrade() else { return };
        Node::from_inner(inner).record_metrics();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::plain_text;
    use crate::transport::Discard;
    use crate::{Node, RequestInfo};

    #[tokio::test]
    async fn a_push_is_counted_once_with_its_recipients() {
        let node = Node::builder().build().await.unwrap();
        let mut clients = Vec::new();
        for id in ["a", "b", "c"] {
            clients.push(
                node.connect_bound(RequestInfo::default(), std::sync::Arc::new(Discard), id)
                    .await,
            );
        }
        let len = crate::frame::encode_push("news", &"hello").unwrap().len() as u64;
        node.broadcast().emit("news", &"hello").await.unwrap();
        let m = node.metrics_snapshot();
        assert_eq!((m.pushes, m.deliveries, m.delivered_bytes), (1, 3, 3 * len));

        node.join_room("chat", "lobby", "a").await.unwrap();
        node.to_room("chat", "lobby")
            .emit("news", &"hello")
            .await
            .unwrap();
        node.to(["b", "nobody"])
            .emit("news", &"hello")
            .await
            .unwrap();
        let m = node.metrics_snapshot();
        assert_eq!((m.pushes, m.deliveries, m.delivered_bytes), (3, 5, 5 * len));

        let message = r#"{"event":"nobody listens"}"#;
        clients[0].text(message);
        clients[1].text("not json");
        clients[1].binary(&[0xFF, 0xFE, 0x00]);
        let m = node.metrics_snapshot();
        assert_eq!(m.client_messages, 3);
        assert_eq!(m.client_message_bytes, (message.len() + 8 + 3) as u64);
        assert_eq!(m.malformed_frames, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn cross_requests_and_their_timeouts_are_counted() {
        let node = Node::builder().build().await.unwrap();
        node.on_cross("ping", |ev| async move {
            let _ = ev.reply(&"pong").await;
        });
        // Answered by this node at once.
        let answered = node.emit_cross("ping", &()).collect().await.unwrap();
        assert!(answered.success);
        // Node "b" never answers.
        let result = node
            .emit_cross("ping", &())
            .to(["b"])
            .timeout(Duration::from_millis(50))
            .collect()
            .await
            .unwrap();
        assert!(!result.success);
        // Sent without collecting: not a request.
        node.emit_cross("ping", &()).send().await.unwrap();
        let m = node.metrics_snapshot();
        assert_eq!((m.cross_requests, m.cross_request_timeouts), (2, 1));
        assert_eq!(node.pending_cross_callbacks(), 0);
    }

    #[tokio::test]
    async fn record_metrics_exports_counters_and_gauges_by_node() {
        let node = Node::builder()
            .server_name("a")
            .metrics_interval(None)
            .build()
            .await
            .unwrap();
        let _client = node
            .connect_bound(
                RequestInfo::default(),
                std::sync::Arc::new(Discard),
                "alice",
            )
            .await;
        node.join_room("chat", "lobby", "alice").await.unwrap();
        node.broadcast().emit("news", &"hello").await.unwrap();

        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || node.record_metrics());
        let exported: Vec<(String, Vec<String>, DebugValue)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let labels = key.labels().map(|l| format!("{}={}", l.key(), l.value()));
                (key.name().to_owned(), labels.collect(), value)
            })
            .collect();
        let value = |name: &str| {
            let (_, labels, value) = exported
                .iter()
                .find(|(n, _, _)| n == name)
                .unwrap_or_else(|| panic!("{name} not exported"));
            assert_eq!(labels, &["node=a"]);
            value
        };
        let gauge = |v: f64| DebugValue::Gauge(v.into());
        assert_eq!(value("crosswire_connections"), &gauge(1.0));
        assert_eq!(value("crosswire_bound_sockets"), &gauge(1.0));
        assert_eq!(value("crosswire_rooms"), &gauge(1.0));
        assert_eq!(value("crosswire_members"), &gauge(1.0));
        assert_eq!(value("crosswire_broker_connections"), &gauge(0.0));
        assert_eq!(value("crosswire_pushes_total"), &DebugValue::Counter(1));
        assert_eq!(value("crosswire_deliveries_total"), &DebugValue::Counter(1));
        assert_eq!(
            value("crosswire_malformed_frames_total"),
            &DebugValue::Counter(0)
        );
        let counters = exported
            .iter()
            .filter(|(_, _, v)| matches!(v, DebugValue::Counter(_)))
            .count();
        let mut fields = 0;
        crate::MetricsSnapshot::default().for_each(|name, _, _| {
            assert!(name.starts_with("crosswire_") && name.ends_with("_total"));
            fields += 1;
        });
        assert_eq!(counters, fields);
    }

    #[test]
    fn help_lines_are_plain_text() {
        assert_eq!(
            plain_text(" Ignored when the table was full ([`MAX_MEMBERS`](crate::MAX_MEMBERS))."),
            "Ignored when the table was full (MAX_MEMBERS)."
        );
        assert_eq!(plain_text("a [b c"), "a [b c");
        assert_eq!(plain_text("`x` in [y](z) and [w](v)"), "x in y and w");
    }
}
