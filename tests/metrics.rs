//! The `cluster` example's Prometheus endpoint (`--metrics ADDR`), scraped over real HTTP
//! while real WebSocket clients come and go: the connection gauge follows them, a client's
//! message and a broadcast show in the counters, every exported family is there, and other
//! paths answer 404.
//!
//! Runs the `cluster` example binary: `cargo build --example cluster` first (`cargo test`
//! without a target filter builds it).

mod support;

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use support::client::TestClient;
use support::cluster_process::ClusterProcess;

/// Longest a metric may take to show what the clients did.
const CONVERGE: Duration = Duration::from_secs(10);
/// Pause between two scrapes while waiting for a value.
const POLL: Duration = Duration::from_millis(20);

/// One HTTP response: status code and body.
struct Scrape {
    status: u16,
    body: String,
}

/// `GET path` at `addr` over a fresh connection; `None` when the listener is not up (yet) or
/// the answer is not HTTP.
async fn get(addr: &str, path: &str) -> Option<Scrape> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(support::WAIT, stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let response = String::from_utf8(response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(Scrape {
        status,
        body: body.to_owned(),
    })
}

/// The value of sample `name{node="node1"}` in a Prometheus text body.
fn sample(body: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}{{node=\"node1\"}} ");
    body.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

/// Scrapes `/metrics` until `name` satisfies `accept`; panics with the last body after
/// [`CONVERGE`].
async fn wait_for(metrics: &str, name: &str, accept: impl Fn(f64) -> bool) -> String {
    let deadline = Instant::now() + CONVERGE;
    let mut last = None;
    loop {
        if let Some(scrape) = get(metrics, "/metrics").await {
            assert_eq!(scrape.status, 200, "{}", scrape.body);
            let value = sample(&scrape.body, name);
            if value.is_some_and(&accept) {
                return scrape.body;
            }
            last = Some((value, scrape.body));
        }
        assert!(
            Instant::now() < deadline,
            "{name} never reached the expected value; last scrape: {last:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test]
async fn prometheus_endpoint_follows_real_clients() {
    let metrics = format!("127.0.0.1:{}", support::free_port());
    // Killed on drop, a failed assertion included.
    let cluster = ClusterProcess::start("node1", &["--nodes", "1", "--metrics", &metrics]).await;
    let ws = cluster.socket_addr();

    wait_for(&metrics, "crosswire_connections", |v| v == 0.0).await;

    let mut alice = TestClient::with_id(ws, "alice").await;
    let mut bob = TestClient::with_id(ws, "bob").await;
    wait_for(&metrics, "crosswire_connections", |v| v == 2.0).await;
    // The demo binds each connection's `?id=` in its connection handler, just after the
    // connection counts.
    let body = wait_for(&metrics, "crosswire_bound_sockets", |v| v == 2.0).await;
    let messages_before = sample(&body, "crosswire_client_messages_total").unwrap_or(0.0);
    let pushes_before = sample(&body, "crosswire_pushes_total").unwrap_or(0.0);

    // A request: its reply proves the node handled it before the next scrape.
    let say = json!({"event": "say", "payload": {"text": "hello"}, "callbackId": "s1"}).to_string();
    alice.send_text(&say).await;
    assert!(
        matches!(alice.recv().await, support::client::Received::Json(v) if v["callbackId"] == "s1")
    );
    // A broadcast to both clients.
    let (_, _) = alice
        .request("command", json!({"action": "broadcast", "msg": "hi"}))
        .await;
    assert_eq!(bob.recv_push().await.0, "say");
    // The cluster-wide `stats` query is a cross-server request.
    let (_, _) = bob.request("stats", json!({})).await;

    let body = get(&metrics, "/metrics").await.expect("a scrape");
    let messages = sample(&body.body, "crosswire_client_messages_total").expect("messages");
    assert!(
        messages >= messages_before + 3.0,
        "{messages} < {messages_before} + 3"
    );
    let bytes = sample(&body.body, "crosswire_client_message_bytes_total").expect("bytes");
    assert!(bytes >= say.len() as f64, "{bytes}");
    let pushes = sample(&body.body, "crosswire_pushes_total").expect("pushes");
    assert!(pushes > pushes_before, "{pushes} <= {pushes_before}");
    let deliveries = sample(&body.body, "crosswire_deliveries_total").expect("deliveries");
    assert!(deliveries >= 2.0, "{deliveries}");
    let requests = sample(&body.body, "crosswire_cross_requests_total").expect("requests");
    assert!(requests >= 1.0, "{requests}");
    // Every family is exported, the publish latency histogram included (announcements and
    // the broadcast went through the broker).
    for name in [
        "crosswire_rooms",
        "crosswire_cross_requests_pending",
        "crosswire_members",
        "crosswire_directory_entries",
        "crosswire_broker_connections",
        "crosswire_broker_connections_healthy",
        "crosswire_delivered_bytes_total",
        "crosswire_cross_request_timeouts_total",
        "crosswire_slow_consumer_closes_total",
        "crosswire_limit_connections_total",
        "crosswire_publish_failures_total",
        "crosswire_broker_publish_seconds_count",
        "crosswire_broker_publish_seconds_sum",
    ] {
        assert!(
            sample(&body.body, name).is_some(),
            "{name} missing:\n{}",
            body.body
        );
    }
    assert!(body
        .body
        .contains("# TYPE crosswire_broker_publish_seconds histogram"));
    assert!(body.body.contains("# TYPE crosswire_connections gauge"));
    assert!(body.body.contains("# TYPE crosswire_pushes_total counter"));
    assert_eq!(sample(&body.body, "crosswire_members"), Some(1.0));
    assert_eq!(
        sample(&body.body, "crosswire_broker_connections_healthy"),
        Some(1.0)
    );

    alice.close(1000).await;
    wait_for(&metrics, "crosswire_connections", |v| v == 1.0).await;
    bob.close(1000).await;
    wait_for(&metrics, "crosswire_connections", |v| v == 0.0).await;
    wait_for(&metrics, "crosswire_bound_sockets", |v| v == 0.0).await;

    let other = get(&metrics, "/other").await.expect("an answer");
    assert_eq!(other.status, 404);
}
