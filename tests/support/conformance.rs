//! The broker conformance suite, written once and run against every broker.
//!
//! [`run`] takes a factory that returns a new broker on one shared backend (one per node, as
//! [`crosswire::memory::MemoryHub::broker`] does) and checks the semantics the core relies on
//! (see the [`Broker`] trait docs): each case is announced by name on stderr, runs under
//! [`CASE_TIMEOUT`], and a failure or timeout panics naming the case.
//!
//! Channel names, server names and prefixes are unique per run, so the suite can share a
//! backend (a Redis or NATS server) with other tests running at the same time.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crosswire::broker::{Broker, BrokerMessage, Inbound};
use crosswire::ws::{WsConfig, WsServer};
use crosswire::Node;
use futures_util::FutureExt;
use serde_json::{json, Value};

use super::client::{Received, TestClient};
use super::observed::ObservedBroker;
use super::WAIT;

/// Longest time one case may take.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a broker must stay quiet where quiet is the behaviour under test.
pub const SILENCE: Duration = Duration::from_millis(150);

/// Runs the broker cases, then the node-level cases, on brokers made by `new_broker`.
pub async fn run<F, Fut>(new_broker: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Broker>>,
{
    broker_conformance(&new_broker).await;
    node_conformance(&new_broker).await;
}

/// The broker-level cases: only the [`Broker`] trait, no node.
pub async fn broker_conformance<F, Fut>(new_broker: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Broker>>,
{
    const SUITE: &str = "broker conformance";
    let f = new_broker;
    case(SUITE, "hands_over_inbound_once", inbound_once(f)).await;
    case(
        SUITE,
        "delivers_only_subscribed_channels",
        only_subscribed(f),
    )
    .await;
    case(SUITE, "unsubscribe_stops_delivery", unsubscribe_stops(f)).await;
    case(SUITE, "subscribing_twice_delivers_once", subscribe_twice(f)).await;
    case(
        SUITE,
        "receives_own_publishes_when_subscribed",
        own_publishes(f),
    )
    .await;
    case(SUITE, "keeps_order_per_publisher_1000_messages", order(f)).await;
    case(
        SUITE,
        "payloads_arrive_byte_exact_up_to_1_mib",
        byte_exact(f),
    )
    .await;
    case(SUITE, "fans_out_to_five_brokers", fan_out(f)).await;
    case(SUITE, "many_channels_at_once", many_channels(f)).await;
}

/// Node-level cases on the same factory: what the core builds on top of the broker.
pub async fn node_conformance<F, Fut>(new_broker: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Broker>>,
{
    const SUITE: &str = "node conformance";
    case(
        SUITE,
        "compressed_and_plain_nodes_understand_each_other",
        mixed_compression(new_broker),
    )
    .await;
    case(
        SUITE,
        "members_queries_and_targeted_unicast",
        cluster_awareness(new_broker),
    )
    .await;
}

/// Runs one case under [`CASE_TIMEOUT`]; a panic or timeout is re-raised naming the case.
async fn case(suite: &str, name: &str, body: impl Future<Output = ()>) {
    eprintln!("{suite}: {name}");
    let outcome = AssertUnwindSafe(tokio::time::timeout(CASE_TIMEOUT, body))
        .catch_unwind()
        .await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("{suite} case `{name}` timed out after {CASE_TIMEOUT:?}"),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(non-string panic)");
            panic!("{suite} case `{name}` failed: {message}")
        }
    }
}

/// A name no other run or case uses (channels, prefixes, server names).
pub fn unique(what: &str) -> String {
    static RUN: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let run = RUN.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("{}x{nanos}", std::process::id())
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("cw{run}n{n}-{what}")
}

// ----- the broker under test -----------------------------------------------------------------

/// A broker with its inbound stream taken, as a node would hold it.
struct Peer {
    broker: Arc<dyn Broker>,
    inbound: Inbound,
}

async fn peer<F, Fut>(new_broker: &F) -> Peer
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Broker>>,
{
    let broker = new_broker().await;
    let inbound = broker
        .take_inbound()
        .expect("a new broker hands over its inbound stream");
    Peer { broker, inbound }
}

impl Peer {
    async fn subscribe(&self, channel: &str) {
        self.broker
            .subscribe(channel)
            .await
            .unwrap_or_else(|e| panic!("subscribe `{channel}` failed: {e}"));
    }

    async fn unsubscribe(&self, channel: &str) {
        self.broker
            .unsubscribe(channel)
            .await
            .unwrap_or_else(|e| panic!("unsubscribe `{channel}` failed: {e}"));
    }

    async fn publish(&self, channel: &str, payload: impl Into<Bytes>) {
        self.broker
            .publish(channel, payload.into())
            .await
            .unwrap_or_else(|e| panic!("publish on `{channel}` failed: {e}"));
    }

    /// The next inbound message; panics naming `what` after [`WAIT`].
    async fn recv(&mut self, what: &str) -> BrokerMessage {
        tokio::time::timeout(WAIT, self.inbound.recv())
            .await
            .unwrap_or_else(|_| panic!("{what}: nothing received within {WAIT:?}"))
            .unwrap_or_else(|| panic!("{what}: the inbound stream ended"))
    }

    /// The next message must be `payload` on `channel`.
    async fn expect(&mut self, channel: &str, payload: &[u8], what: &str) {
        let got = self.recv(what).await;
        assert_eq!(
            (got.channel.as_str(), preview(&got.payload)),
            (channel, preview(payload)),
            "{what}: wrong message"
        );
        assert!(got.payload == payload, "{what}: payload bytes differ");
    }

    /// Nothing arrives for [`SILENCE`].
    async fn assert_silent(&mut self, what: &str) {
        if let Ok(Some(m)) = tokio::time::timeout(SILENCE, self.inbound.recv()).await {
            panic!(
                "{what}: unexpected message on `{}`: {}",
                m.channel,
                preview(&m.payload)
            );
        }
    }
}

/// A short printable form of a payload for assertion messages.
fn preview(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(48)];
    format!("{} bytes {:?}", bytes.len(), String::from_utf8_lossy(head))
}

// ----- broker cases --------------------------------------------------------------------------

async fn inbound_once<F, Fut>(f: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Broker>>,
{
    let broker = f().await;
    assert!(broker.take_inbound().is_some(), "first take_inbound");
    assert!(
        broker.take_inbound().is_none(),
        "a broker serves one node: the second take_inbound must be None"
    );
}

async fn only_subscribed<F, Fut>(f: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Broker>>,
{
    let mut sub = peer(f).await;
    let mut witness = peer(f).await;
    let publisher = peer(f).await;
    let wanted = unique("wanted");
    let unwanted = unique("unwanted");
    sub.subscribe(&wanted).await;
    witness.subscribe(&unwanted).await;

    publisher.publish(&unwanted, "not for sub").await;
    publisher.publish(&wanted, "for sub").await;
    witness
        .expect(
            &unwanted,
            b"not for sub",
            "the witness gets the other channel",
        )
        .await;
    sub.expect(&wanted, b"for sub", "sub gets its channel")
        .await;
    sub.assert_silent("sub never gets a channel it did not subscribe")
        .await;
    witness.assert_silent("the witness gets nothing else").await;
}

async fn unsubscribe_stops<F, Fut>(f: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Broker>>,
{
    let mut sub = peer(f).await;
    let mut witness = peer(f).await;
    let publisher = peer(f).await;
    let channel = unique("leaving");
    let marker = unique("marker");
    sub.subscribe(&channel).await;
    sub.subscribe(&marker).await;
    witness.subscribe(&channel).await;

    publisher.publish(&channel, "one").await;
    sub.expect(&channel, b"one", "delivered while subscribed")
        .await;
    sub.unsubscribe(&channel).await;
    sub.unsubscribe(&unique("never-subscribed")).await;

    publisher.publish(&channel, "two").await;
    publisher.publish(&marker, "marker").await;
    witness.expect(&channel, b"one", "witness, first").await;
    witness.expect(&channel, b"two", "witness, second").await;
    sub.expect(
        &marker,
        b"marker",
        "after unsubscribing only the marker comes",
    )
    .await;
    sub.assert_silent("nothing on the unsubscribed channel")
        .await;
}

async fn subscribe_twice<F, Fut>(f: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Broker>>,
{
    let mut sub = peer(f).await;
    let publisher = peer(f).await;
    let channel = unique("twice");
    let marker = unique("marker");
    sub.subscribe(&channel).await;
    sub.subscribe(&channel).await;
    sub.subscribe(&marker).await;

    publisher.publish(&channel, "one").await;
    publisher.publish(&channel, "two").await;
    sub.expect(&channel, b"one", "first message").await;
    sub.expect(
        &channel,
        b"two",
        "second message, not a duplicate of the first",
    )
    .await;
    sub.assert_silent("each message once").await;

    // A second subscribe was a no-op, so one unsubscribe ends the subscription.
    sub.unsubscribe(&channel).await;
    publisher.publish(&channel, "three").await;
    publisher.publish(&marker, "marker").await;
    sub.expect(
        &marker,
        b"marker",
        "one unsubscribe undoes a double subscribe",
    )
    .await;
    sub.assert_silent("nothing after unsubscribing").await;
}

async fn own_publishes<F, Fut>(f: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Broker>>,
{
    let mut me = peer(f).await;
    let mut other = peer(f).await;
    let channel = unique("own");
    me.subscribe(&channel).await;
    other.subscribe(&channel).await;
    me.publish(&channel, "mine").await;
    me.expect(
        &channel,
        b"mine",
        "a subscribed publisher gets its own message",
    )
    .await;
    other
        .expect(&channel, b"mine", "another subscriber gets it too")
        .await;
    me.assert_silent("exactly once").await;
}

async fn order<F, Fut>(f: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Broker>>,
{
    const COUNT: u32 = 1_000;
    let mut sub = peer(f).await;
    let first = peer(f).await;
    let second = peer(f).await;
    let channel = unique("order");
    sub.subscribe(&channel).await;

    let publish_all = |publisher: &'static str, peer: &Peer| {
        let channel = channel.clone();
        let broker = peer.broker.clone();
        async move {
            for seq in 0..COUNT {
                let payload = format!("{publisher}:{seq}");
                broker
                    .publish(&channel, Bytes::from(payload))
                    .await
                    .unwrap_or_else(|e| panic!("publish {publisher}:{seq} failed: {e}"));
            }
        }
    };
    let receive = async {
        let mut next: HashMap<String, u32> = HashMap::new();
        for _ in 0..2 * COUNT {
            let m = sub.recv("ordered messages").await;
            let text = String::from_utf8(m.payload.to_vec()).expect("utf-8 payload");
            let (publisher, seq) = text.split_once(':').expect("publisher:seq");
            let seq: u32 = seq.parse().expect("a sequence number");
            let expected = next.entry(publisher.to_owned()).or_insert(0);
            assert_eq!(seq, *expected, "messages of `{publisher}` out of order");
            *expected += 1;
        }
        assert_eq!(next.get("first"), Some(&COUNT), "all of `first`");
        assert_eq!(next.get("second"), Some(&COUNT), "all of `second`");
    };
    tokio::join!(
        publish_all("first", &first),
        publish_all("second", &second),
        receive
    );
    sub.assert_silent("no duplicates after the last message")
        .await;
}

/// Deterministic bytes covering every byte value (and invalid UTF-8).
fn binary(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|i| {
            if i < 256 {
                return i as u8;
            }
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

async fn byte_exact<F, Fut>(f: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Broker>>,
{
    let mut sub = peer(f).await;
    let publisher = peer(f).await;
    let channel = unique("bytes");
    sub.subscribe(&channel).await;
    let sizes = [0, 1, 2, 255, 256, 4_096, 65_535, 65_536, 300_001, 1 << 20];
    for (i, &size) in sizes.iter().enumerate() {
        let payload = binary(size, i as u64 + 7);
        publisher.publish(&channel, payload.clone()).await;
        let got = sub.recv(&format!("payload of {size} bytes")).await;
        assert_eq!(got.channel, channel, "payload of {size} bytes: channel");
        let first_difference = got.payload.iter().zip(&payload).position(|(a, b)| a != b);
        assert!(
            got.payload.len() == payload.len() && first_difference.is_none(),
            "payload of {size} bytes arrived as {} bytes, first difference at {first_difference:?}",
            got.payload.len()
        );
    }
    sub.assert_silent("one message per publish").await;
}

async fn fan_out<F, Fut>(f: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Broker>>,
{
    const MESSAGES: usize = 20;
    let mut subs = Vec::new();
    for _ in 0..5 {
        subs.push(peer(f).await);
    }
    let publisher = peer(f).await;
    let channel = unique("fan");
    for sub in &subs {
        sub.subscribe(&channel).await;
    }
    for i in 0..MESSAGES {
        publisher.publish(&channel, format!("m{i}")).await;
    }
    for (n, sub) in subs.iter_mut().enumerate() {
        for i in 0..MESSAGES {
            sub.expect(
                &channel,
                format!("m{i}").as_bytes(),
                &format!("subscriber {n}"),
            )
            .await;
        }
    }
    futures_util::future::join_all(
        subs.iter_mut()
            .map(|sub| sub.assert_silent("each subscriber gets each message once")),
    )
    .await;
}

async fn many_channels<F, Fut>(f: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Broker>>,
{
    const CHANNELS: usize = 100;
    let mut sub = peer(f).await;
    let publisher = peer(f).await;
    let base = unique("many");
    let channels: Vec<String> = (0..CHANNELS).map(|i| format!("{base}-{i}")).collect();
    futures_util::future::join_all(channels.iter().map(|c| sub.broker.subscribe(c)))
        .await
        .into_iter()
        .collect::<Result<Vec<()>, _>>()
        .unwrap_or_else(|e| panic!("concurrent subscribes failed: {e}"));

    async fn round(sub: &mut Peer, publisher: &Peer, channels: &[String], expect: &[String]) {
        for channel in channels {
            publisher.publish(channel, channel.clone()).await;
        }
        let mut got = BTreeSet::new();
        for _ in 0..expect.len() {
            let m = sub.recv("a message on one of many channels").await;
            assert_eq!(
                m.payload,
                m.channel.as_bytes(),
                "a message arrived on the wrong channel"
            );
            assert!(got.insert(m.channel.clone()), "`{}` twice", m.channel);
        }
        let expect: BTreeSet<String> = expect.iter().cloned().collect();
        assert_eq!(got, expect, "channels delivered");
        sub.assert_silent("nothing on other channels").await;
    }

    round(&mut sub, &publisher, &channels, &channels).await;
    for channel in channels.iter().step_by(2) {
        sub.unsubscribe(channel).await;
    }
    let kept: Vec<String> = channels.iter().skip(1).step_by(2).cloned().collect();
    round(&mut sub, &publisher, &channels, &kept).await;
}

// ----- node-level cases ----------------------------------------------------------------------

/// A node on an observed broker, served over WebSocket with one demo client bound to it.
struct Member {
    node: Node,
    observed: Arc<ObservedBroker>,
    client: TestClient,
    _server: WsServer,
}

async fn member<F, Fut>(f: &F, name: &str, prefixes: &(String, String), compress: bool) -> Member
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Broker>>,
{
    let observed = ObservedBroker::new(f().await);
    let node = Node::builder()
        .server_name(name)
        .broker(observed.as_broker())
        .bridge_prefix(prefixes.0.as_str())
        .ws_prefix(prefixes.1.as_str())
        .compression(compress, 16)
        .build()
        .await
        .expect("build a node");
    crosswire::demo::install(&node);
    node.on_cross("echo", |ev| async move {
        ev.reply(&ev.value()).await.expect("echo reply");
    });
    let server = WsServer::bind("127.0.0.1:0", node.clone(), WsConfig::default())
        .await
        .expect("bind a WebSocket server");
    let mut client = TestClient::with_id(server.local_addr(), &format!("client-of-{name}")).await;
    // The node reads nothing before the connection handler bound the id: a reply proves it.
    let (reply, _) = client.request("say", json!("ready?")).await;
    assert_eq!(reply["echo"], "ready?", "demo say reply");
    Member {
        node,
        observed,
        client,
        _server: server,
    }
}

fn large_payload() -> Value {
    json!({
        "text": "crosswire moves the same bytes to every node. ".repeat(6_000),
        "numbers": (0..4_000).collect::<Vec<u32>>(),
        "unicode": "é✓🚀\u{0}\"\\".repeat(500),
    })
}

async fn expect_push(client: &mut TestClient, event: &str, payload: &Value, what: &str) {
    match client.recv().await {
        Received::Json(v) => {
            assert_eq!(v["event"], event, "{what}: event");
            assert!(v["payload"] == *payload, "{what}: payload differs");
        }
        other => panic!("{what}: expected a push, got {other:?}"),
    }
}

async fn mixed_compression<F, Fut>(f: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Broker>>,
{
    let run = unique("mixed");
    let prefixes = (format!("{run}-bridge:"), format!("{run}-ws:"));
    let (zstd_name, plain_name) = (format!("{run}-zstd"), format!("{run}-plain"));
    let mut zstd = member(f, &zstd_name, &prefixes, true).await;
    let mut plain = member(f, &plain_name, &prefixes, false).await;
    let payload = large_payload();
    let json_len = payload.to_string().len();
    let broadcast_channel = format!("{}broadcast", prefixes.1);
    let bridge_channel = format!("{}server_bridge", prefixes.0);

    // Broadcasts, both directions: every client gets the payload unchanged.
    for (from, label) in [(&zstd, "compressed"), (&plain, "plain")] {
        from.node
            .broadcast()
            .emit("big", &payload)
            .await
            .unwrap_or_else(|e| panic!("{label} broadcast failed: {e}"));
    }
    for (client, label) in [
        (&mut zstd.client, "zstd client"),
        (&mut plain.client, "plain client"),
    ] {
        expect_push(
            client,
            "big",
            &payload,
            &format!("{label}, first broadcast"),
        )
        .await;
        expect_push(
            client,
            "big",
            &payload,
            &format!("{label}, second broadcast"),
        )
        .await;
    }
    let sizes = |m: &Member, channel: &str| -> Vec<usize> {
        m.observed
            .published_on(channel)
            .iter()
            .map(Bytes::len)
            .collect()
    };
    let zstd_sizes = sizes(&zstd, &broadcast_channel);
    let plain_sizes = sizes(&plain, &broadcast_channel);
    assert!(
        zstd_sizes.len() == 1 && zstd_sizes[0] < json_len / 4,
        "the compressing node's broadcast envelope is compressed: {zstd_sizes:?} vs {json_len} bytes of JSON"
    );
    assert!(
        plain_sizes.len() == 1 && plain_sizes[0] > json_len,
        "the plain node's broadcast envelope is not compressed: {plain_sizes:?} vs {json_len} bytes of JSON"
    );

    // Cross-server emits with large payloads and large replies, both directions.
    for (from, to, label) in [
        (&zstd, &plain_name, "compressed -> plain"),
        (&plain, &zstd_name, "plain -> compressed"),
    ] {
        let result = from
            .node
            .emit_cross("echo", &payload)
            .to([to.as_str()])
            .timeout(WAIT)
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{label}: emit failed: {e}"));
        assert!(result.success, "{label}: no reply in time");
        assert_eq!(result.responses.len(), 1, "{label}: one reply");
        assert!(
            result.responses[to.as_str()] == payload,
            "{label}: echoed payload differs"
        );
    }
    // The bridge also carries the nodes' membership and binding announcements, all far
    // smaller than these payloads even uncompressed.
    let large = |m: &Member| -> Vec<usize> {
        let mut sizes = sizes(m, &bridge_channel);
        sizes.retain(|&n| n > 1024);
        sizes
    };
    let zstd_bridge = large(&zstd);
    let plain_bridge = large(&plain);
    assert!(
        zstd_bridge.len() == 2 && zstd_bridge.iter().all(|&n| n < json_len / 4),
        "the compressing node's event and reply are compressed: {zstd_bridge:?}"
    );
    assert!(
        plain_bridge.len() == 2 && plain_bridge.iter().all(|&n| n > json_len),
        "the plain node's reply and event are not compressed: {plain_bridge:?}"
    );

    for m in [&zstd, &plain] {
        assert_eq!(
            m.node.pending_cross_callbacks(),
            0,
            "no reply collection left"
        );
        assert_eq!(
            m.node.metrics_snapshot().bad_envelopes,
            0,
            "no bad envelope"
        );
    }
}

/// Polls `check` until it holds; fails naming `what` after [`WAIT`].
async fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reached within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Three nodes with a client each find each other, answer cluster queries, and a unicast
/// to a client on another node is handled by that node only.
async fn cluster_awareness<F, Fut>(f: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Broker>>,
{
    let run = unique("cluster");
    let prefixes = (format!("{run}-bridge:"), format!("{run}-ws:"));
    let names: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| format!("{run}-{n}"))
        .collect();
    let mut members = Vec::new();
    for name in &names {
        members.push(member(f, name, &prefixes, true).await);
    }
    for m in &members {
        let node = m.node.clone();
        wait_until("every node lists the three, serving clients", move || {
            let members = node.members();
            members.len() == 3 && members.iter().all(|m| m.serves_clients)
        })
        .await;
        let node = m.node.clone();
        wait_until("every node knows the two remote clients", move || {
            node.directory_len() == 2
        })
        .await;
        let listed: Vec<String> = m.node.members().into_iter().map(|m| m.name).collect();
        assert_eq!(listed, names);
    }

    let a = members[0].node.clone();
    let total = a
        .cluster()
        .timeout(WAIT)
        .client_count()
        .await
        .expect("query");
    assert_eq!(total.value, 3, "{total:?}");
    assert_eq!(total.answered, names);
    assert!(total.is_complete());
    let client_of_c = format!("client-of-{}", names[2]);
    let found = a
        .cluster()
        .timeout(WAIT)
        .node_of(&client_of_c)
        .await
        .expect("query");
    assert_eq!(found.value.as_deref(), Some(names[2].as_str()));

    // Unicasts to b's client go to b's inbox: c never sees them.
    let handled = |m: &Member| m.node.metrics_snapshot().unicast_envelopes;
    let before = (handled(&members[1]), handled(&members[2]));
    let client_of_b = format!("client-of-{}", names[1]);
    const UNICASTS: u64 = 20;
    for i in 0..UNICASTS {
        let delivery = a.to(&client_of_b).emit("tick", &i).await.expect("unicast");
        assert!(delivery.published && delivery.local == 0);
    }
    for i in 0..UNICASTS {
        let (event, payload) = members[1].client.recv_push().await;
        assert_eq!((event.as_str(), payload), ("tick", json!(i)));
    }
    // A round trip to c after the unicasts: c has handled whatever `a` published before.
    let sync = a
        .emit_cross("echo", &"sync")
        .to([names[2].as_str()])
        .timeout(WAIT)
        .collect()
        .await
        .expect("sync");
    assert!(sync.success, "{sync:?}");
    let after = (handled(&members[1]), handled(&members[2]));
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (UNICASTS, 0),
        "unicast envelopes handled by b and c"
    );
}
