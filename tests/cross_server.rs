//! Chapter 2 of the JavaScript package, ported: five nodes without WebSocket talk through
//! cross-server events on one in-memory hub, and through custom channels.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;
use crosswire::memory::MemoryHub;
use crosswire::{CrossReply, Error, Node};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use support::WAIT;

const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];

/// What one `say` handler saw.
#[derive(Debug)]
struct Said {
    handler: String,
    sender: String,
    payload: Value,
}

/// Five nodes on one hub, each answering `say` with "Hi, this is server X".
struct Cluster {
    nodes: Vec<Node>,
    said: mpsc::UnboundedReceiver<Said>,
    markers: u64,
}

fn hi(name: &str) -> Value {
    json!({ "msg": format!("Hi, this is server {name}") })
}

/// Registers the chapter's `say` handler: report the event, reply when asked.
fn install_say(node: &Node, said: mpsc::UnboundedSender<Said>) {
    let name = node.server_name().to_owned();
    node.on_cross("say", move |ev| {
        let name = name.clone();
        let said = said.clone();
        async move {
            let _ = said.send(Said {
                handler: name.clone(),
                sender: ev.sender().to_owned(),
                payload: ev.value(),
            });
            if ev.wants_reply() {
                ev.reply(&hi(&name)).await.expect("say reply");
            }
        }
    });
}

impl Cluster {
    async fn start() -> Cluster {
        let hub = MemoryHub::new();
        let (tx, said) = mpsc::unbounded_channel();
        let mut nodes = Vec::new();
        for name in NAMES {
            let node = Node::builder()
                .server_name(name)
                .broker(hub.broker())
                .build()
                .await
                .expect("build a node");
            install_say(&node, tx.clone());
            nodes.push(node);
        }
        Cluster {
            nodes,
            said,
            markers: 0,
        }
    }

    fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.server_name() == name)
            .expect("a node of the cluster")
    }

    async fn next_said(&mut self, what: &str) -> Said {
        tokio::time::timeout(WAIT, self.said.recv())
            .await
            .unwrap_or_else(|_| panic!("{what}: no `say` handler ran within {WAIT:?}"))
            .expect("the handlers' channel stays open")
    }

    /// The next `n` handler runs.
    async fn said(&mut self, n: usize, what: &str) -> Vec<Said> {
        let mut all = Vec::new();
        for _ in 0..n {
            all.push(self.next_said(what).await);
        }
        all
    }

    /// Proves no `say` from `from` is still on its way: a marker emitted to every node must
    /// be the next event each handler sees (each node handles `from`'s messages in order).
    async fn settle(&mut self, from: &str) {
        self.markers += 1;
        let marker = json!({ "marker": self.markers });
        self.node(from)
            .emit_cross("say", &marker)
            .send()
            .await
            .expect("marker emit");
        let got = self.said(NAMES.len(), "marker").await;
        for said in &got {
            assert_eq!(
                said.payload, marker,
                "{} handled an unexpected `say` (stray or duplicate)",
                said.handler
            );
        }
        assert_eq!(
            handlers(&got),
            names(&NAMES),
            "every node handled the marker"
        );
    }

    fn assert_nothing_pending(&self) {
        for node in &self.nodes {
            assert_eq!(
                node.pending_cross_callbacks(),
                0,
                "node {} leaked a pending reply collection",
                node.server_name()
            );
        }
    }
}

fn handlers(said: &[Said]) -> BTreeSet<String> {
    said.iter().map(|s| s.handler.clone()).collect()
}

fn names(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// Every callback item, until the callback is dropped (its collection ended).
async fn all_replies(mut rx: mpsc::UnboundedReceiver<CrossReply>) -> Vec<CrossReply> {
    let mut items = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return items,
            Err(_) => panic!("the reply callback did not finish; got so far: {items:?}"),
        }
    }
}

fn replies_by_server(items: &[CrossReply]) -> HashMap<String, Value> {
    items
        .iter()
        .filter_map(|item| match item {
            CrossReply::Reply { server, data, .. } => Some((server.clone(), data.clone())),
            _ => None,
        })
        .collect()
}

fn remaining(items: &[CrossReply]) -> Vec<usize> {
    items
        .iter()
        .filter_map(|item| match item {
            CrossReply::Reply { remaining, .. } => Some(*remaining),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_without_callback_reaches_every_node_including_self() {
    let mut cluster = Cluster::start().await;
    cluster
        .node("a")
        .emit_cross("say", &json!({ "msg": "hello" }))
        .send()
        .await
        .expect("emit");
    let got = cluster.said(5, "broadcast").await;
    assert_eq!(handlers(&got), names(&NAMES), "all five handlers ran");
    for said in &got {
        assert_eq!(said.sender, "a", "sender name");
        assert_eq!(said.payload, json!({ "msg": "hello" }));
    }
    cluster.settle("a").await;
    cluster.assert_nothing_pending();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn except_self_skips_the_sender() {
    let mut cluster = Cluster::start().await;
    cluster
        .node("c")
        .emit_cross("say", &json!({ "msg": "not me" }))
        .except_self(true)
        .send()
        .await
        .expect("emit");
    let got = cluster.said(4, "except self").await;
    assert_eq!(handlers(&got), names(&["a", "b", "d", "e"]));
    cluster.settle("c").await;
    cluster.assert_nothing_pending();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targeted_emit_reaches_exactly_its_targets_and_expects_one_reply_each() {
    let mut cluster = Cluster::start().await;
    let a = cluster.node("a").clone();

    // Collected: success with two replies means two were expected (one would stop at the
    // first reply, three would time out).
    let result = a
        .emit_cross("say", &json!({ "msg": "to b and c" }))
        .to(["b", "c"])
        .timeout(WAIT)
        .collect()
        .await
        .expect("emit");
    assert!(result.success, "both targets replied: {result:?}");
    assert_eq!(result.unresponded, 0);
    assert_eq!(
        result.responses,
        HashMap::from([("b".to_owned(), hi("b")), ("c".to_owned(), hi("c"))])
    );
    let got = cluster.said(2, "targeted").await;
    assert_eq!(handlers(&got), names(&["b", "c"]));
    cluster.settle("a").await;

    // The callback path counts down from the default of two.
    let (tx, rx) = mpsc::unbounded_channel();
    a.emit_cross("say", &json!({ "msg": "to b and c again" }))
        .to(["b", "c"])
        .timeout(WAIT)
        .on_reply(move |item| {
            let _ = tx.send(item);
            async {}
        })
        .await
        .expect("emit");
    let items = all_replies(rx).await;
    assert_eq!(remaining(&items), [1, 0], "{items:?}");
    assert_eq!(items.len(), 2, "no timeout item: {items:?}");
    cluster.said(2, "targeted again").await;
    cluster.settle("a").await;
    cluster.assert_nothing_pending();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_reply_counts_down_and_names_each_server() {
    let mut cluster = Cluster::start().await;
    let (tx, rx) = mpsc::unbounded_channel();
    cluster
        .node("b")
        .emit_cross("say", &json!({ "msg": "who is there?" }))
        .expect(5)
        .timeout(WAIT)
        .on_reply(move |item| {
            let _ = tx.send(item);
            async {}
        })
        .await
        .expect("emit");
    let items = all_replies(rx).await;
    assert_eq!(remaining(&items), [4, 3, 2, 1, 0], "{items:?}");
    assert_eq!(items.len(), 5, "no timeout item: {items:?}");
    let by_server = replies_by_server(&items);
    assert_eq!(by_server.len(), 5, "one reply per server: {items:?}");
    for name in NAMES {
        assert_eq!(by_server[name], hi(name), "reply of {name}");
    }
    cluster.said(5, "handlers").await;
    cluster.settle("b").await;
    cluster.assert_nothing_pending();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_gathers_every_reply() {
    let mut cluster = Cluster::start().await;
    let result = cluster
        .node("e")
        .emit_cross("say", &json!({ "msg": "report" }))
        .expect(5)
        .timeout(WAIT)
        .collect()
        .await
        .expect("emit");
    assert!(result.success, "{result:?}");
    assert_eq!(result.unresponded, 0);
    assert_eq!(result.responses.len(), 5);
    for name in NAMES {
        assert_eq!(result.responses[name], hi(name), "reply of {name}");
    }
    cluster.said(5, "handlers").await;
    cluster.settle("e").await;
    cluster.assert_nothing_pending();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_to_all_expecting_one_reply_completes_on_it_and_drops_the_rest() {
    let mut cluster = Cluster::start().await;
    let a = cluster.node("a").clone();
    // The JS package's default (`expectedResponses` 1), asked for explicitly: crosswire's
    // default waits for every live node.
    let mut stream = a
        .emit_cross("say", &json!({ "msg": "first one wins" }))
        .expect(1)
        .timeout(WAIT)
        .replies()
        .await
        .expect("emit");
    let id = stream.callback_id();
    let first = tokio::time::timeout(WAIT, stream.recv())
        .await
        .expect("a reply in time");
    assert!(
        matches!(first, Some(CrossReply::Reply { remaining: 0, .. })),
        "{first:?}"
    );
    assert!(
        tokio::time::timeout(WAIT, stream.recv())
            .await
            .expect("the stream ends")
            .is_none(),
        "nothing after the last expected reply"
    );
    assert_eq!(a.pending_cross_callbacks(), 0, "completed");
    assert!(!a.cancel_cross_callback(id), "nothing left to cancel");
    cluster.said(5, "handlers").await;
    // The four other replies arrive late and are dropped (counted) by `a`.
    for name in ["b", "c", "d", "e"] {
        let sync = cluster
            .node(name)
            .emit_cross("say", &"sync")
            .to(["a"])
            .collect()
            .await
            .expect("emit");
        assert!(sync.success, "sync from {name}");
    }
    cluster.said(4, "syncs").await;
    assert_eq!(a.metrics_snapshot().late_replies, 4);
    cluster.settle("a").await;
    cluster.assert_nothing_pending();
}

// Paused time on one thread: the 300 ms timeout passes only once every node is idle, so the
// five replies always come first, however loaded the machine is.
#[tokio::test(start_paused = true)]
async fn too_few_replies_time_out_with_the_unresponded_count() {
    let mut cluster = Cluster::start().await;
    let a = cluster.node("a").clone();

    let result = a
        .emit_cross("say", &json!({ "msg": "seven?" }))
        .expect(7)
        .timeout(Duration::from_millis(300))
        .collect()
        .await
        .expect("emit");
    assert!(!result.success, "{result:?}");
    assert_eq!(result.unresponded, 2, "{result:?}");
    assert_eq!(result.responses.len(), 5, "{result:?}");
    cluster.assert_nothing_pending();
    cluster.said(5, "handlers").await;

    let (tx, rx) = mpsc::unbounded_channel();
    a.emit_cross("say", &json!({ "msg": "seven again?" }))
        .expect(7)
        .timeout(Duration::from_millis(300))
        .on_reply(move |item| {
            let _ = tx.send(item);
            async {}
        })
        .await
        .expect("emit");
    let items = all_replies(rx).await;
    assert_eq!(remaining(&items), [6, 5, 4, 3, 2], "{items:?}");
    assert_eq!(
        items.last(),
        Some(&CrossReply::TimedOut { unresponded: 2 }),
        "the last callback is the timeout"
    );
    assert_eq!(items.len(), 6, "{items:?}");
    cluster.said(5, "handlers").await;
    cluster.settle("a").await;
    cluster.assert_nothing_pending();
}

#[tokio::test(start_paused = true)]
async fn nodes_without_a_handler_say_so_and_absent_targets_time_out() {
    let mut cluster = Cluster::start().await;
    let a = cluster.node("a").clone();
    let timeout = Duration::from_secs(60);

    // `b` has no handler: it says so, and the collection ends at once, waiting for nobody.
    let started = tokio::time::Instant::now();
    let result = a
        .emit_cross("nobody-listens", &json!({}))
        .to(["b"])
        .timeout(timeout)
        .collect()
        .await
        .expect("emit");
    assert!(started.elapsed() < timeout, "ended before the timeout");
    assert!(result.success, "{result:?}");
    assert_eq!(result.unresponded, 0);
    assert!(result.responses.is_empty() && result.missing.is_empty());

    // To every node: none has a handler, none is waited for.
    let result = a
        .emit_cross("nobody-listens", &json!({}))
        .timeout(timeout)
        .collect()
        .await
        .expect("emit");
    assert!(started.elapsed() < timeout, "ended before the timeout");
    assert!(result.success && result.responses.is_empty(), "{result:?}");

    // A node that does not exist cannot say so: it is reported missing at the timeout.
    let result = a
        .emit_cross("say", &json!({}))
        .to(["ghost"])
        .timeout(Duration::from_millis(300))
        .collect()
        .await
        .expect("emit");
    assert!(!result.success, "{result:?}");
    assert_eq!(result.unresponded, 1);
    assert_eq!(result.missing, ["ghost"]);
    cluster.assert_nothing_pending();

    // A round trip from `a` to `b` proves `b` has handled both events by now.
    let sync = a.emit_cross("say", &"sync").to(["b"]).collect().await;
    assert!(sync.expect("emit").success);
    cluster.said(1, "sync").await;
    assert_eq!(
        cluster.node("b").metrics_snapshot().unhandled_events,
        2,
        "b counted both unhandled events"
    );
    cluster.assert_nothing_pending();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_cross_callback_stops_further_replies() {
    let mut cluster = Cluster::start().await;
    // `b` answers `slow` at once; `c`, `d` and `e` wait for the gate, then report.
    let (gate, gate_rx) = watch::channel(false);
    let (replied_tx, mut replied) = mpsc::unbounded_channel::<String>();
    for node in &cluster.nodes[1..] {
        let name = node.server_name().to_owned();
        let gate_rx = gate_rx.clone();
        let replied_tx = replied_tx.clone();
        node.on_cross("slow", move |ev| {
            let name = name.clone();
            let mut gate_rx = gate_rx.clone();
            let replied_tx = replied_tx.clone();
            async move {
                if name != "b" {
                    gate_rx.wait_for(|open| *open).await.expect("gate");
                }
                ev.reply(&hi(&name)).await.expect("slow reply");
                let _ = replied_tx.send(name);
            }
        });
    }
    let a = cluster.node("a").clone();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = a
        .emit_cross("slow", &())
        .to(["b", "c", "d", "e"])
        .timeout(WAIT)
        .on_reply(move |item| {
            let _ = tx.send(item);
            async {}
        })
        .await
        .expect("emit");
    let first = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("b's reply in time")
        .expect("b's reply");
    assert_eq!(
        first,
        CrossReply::Reply {
            server: "b".into(),
            data: hi("b"),
            remaining: 3
        }
    );
    assert!(a.cancel_cross_callback(id), "it was pending");
    assert!(!a.cancel_cross_callback(id), "cancelling twice");
    assert_eq!(a.pending_cross_callbacks(), 0);
    assert!(
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("the callback ends")
            .is_none(),
        "no callback after cancelling"
    );

    gate.send(true).expect("open the gate");
    let mut late = BTreeSet::new();
    while late.len() < 4 {
        let name = tokio::time::timeout(WAIT, replied.recv())
            .await
            .expect("replies after the gate opened")
            .expect("replied channel open");
        late.insert(name);
    }
    // Each late reply is on `a`'s queue; a round trip from its sender proves `a` handled it.
    for name in ["c", "d", "e"] {
        let sync = cluster
            .node(name)
            .emit_cross("say", &"sync")
            .to(["a"])
            .collect()
            .await
            .expect("emit");
        assert!(sync.success, "sync from {name}");
    }
    cluster.said(3, "syncs").await;
    assert_eq!(a.metrics_snapshot().late_replies, 3, "late replies dropped");
    cluster.assert_nothing_pending();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_reply_stream_cancels_the_collection() {
    let mut cluster = Cluster::start().await;
    let a = cluster.node("a").clone();
    let mut stream = a
        .emit_cross("say", &json!({ "msg": "anyone?" }))
        .expect(6)
        .timeout(WAIT)
        .replies()
        .await
        .expect("emit");
    assert_eq!(a.pending_cross_callbacks(), 1);
    // Six replies never come: only dropping the stream can end this collection.
    match tokio::time::timeout(WAIT, stream.recv()).await {
        Ok(Some(CrossReply::Reply { .. })) => {}
        other => panic!("expected a first reply, got {other:?}"),
    }
    drop(stream);
    assert_eq!(
        a.pending_cross_callbacks(),
        0,
        "dropping the stream cancels"
    );
    cluster.said(5, "handlers").await;
    cluster.settle("a").await;
    cluster.assert_nothing_pending();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_node_runs_its_own_handler() {
    let node = Node::builder()
        .build()
        .await
        .expect("build a standalone node");
    let name = node.server_name().to_owned();
    let (tx, mut said) = mpsc::unbounded_channel();
    install_say(&node, tx);

    node.emit_cross("say", &json!({ "msg": "alone" }))
        .send()
        .await
        .expect("emit");
    let got = tokio::time::timeout(WAIT, said.recv())
        .await
        .expect("handler ran")
        .expect("channel open");
    assert_eq!(
        (got.handler.as_str(), got.sender.as_str()),
        (&*name, &*name)
    );

    let result = node
        .emit_cross("say", &json!({ "msg": "alone again" }))
        .timeout(WAIT)
        .collect()
        .await
        .expect("emit");
    assert!(result.success, "{result:?}");
    assert_eq!(result.responses, HashMap::from([(name.clone(), hi(&name))]));
    said.recv().await.expect("second handler run");

    assert!(
        !node.publish("news", "x").await.expect("publish"),
        "no broker: nothing published"
    );
    assert_eq!(node.pending_cross_callbacks(), 0);
}

/// Custom-channel messages seen by the handlers, tagged with the receiving node.
type Custom = (String, String, Bytes);

/// Publishes the marker from `from` and returns what the handlers got before it, once every
/// node has seen it (each node handles `from`'s messages in order).
async fn before_markers(
    from: &Node,
    rx: &mut mpsc::UnboundedReceiver<Custom>,
    nodes: usize,
) -> BTreeSet<(String, String, Vec<u8>)> {
    assert!(from
        .publish("marker", "marker")
        .await
        .expect("publish marker"));
    let mut marked = BTreeSet::new();
    let mut before = BTreeSet::new();
    while marked.len() < nodes {
        let (node, channel, payload) = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("custom-channel messages in time")
            .expect("channel open");
        if channel == "marker" {
            assert!(marked.insert(node.clone()), "{node} got the marker twice");
        } else {
            assert!(
                !marked.contains(&node),
                "{node}: a message after the marker"
            );
            let fresh = before.insert((node.clone(), channel, payload.to_vec()));
            assert!(fresh, "{node} got a message twice");
        }
    }
    before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_channels_carry_raw_bytes_between_nodes() {
    let hub = MemoryHub::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<Custom>();
    let mut nodes = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let node = Node::builder()
            .server_name(name)
            .broker(hub.broker())
            .custom_channels(["marker"])
            .build()
            .await
            .expect("build a node");
        let tx = tx.clone();
        let name = name.to_owned();
        node.set_custom_channel_handler(move |m| {
            let _ = tx.send((name.clone(), m.channel, m.payload));
            async {}
        });
        nodes.push(node);
    }
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    b.subscribe("game-scores").await.expect("subscribe b");
    c.subscribe("game-scores").await.expect("subscribe c");
    c.subscribe("game-scores").await.expect("subscribing again");
    assert_eq!(hub.subscriber_count("game-scores"), 2);

    // Not JSON, not UTF-8, not an envelope: handed over unchanged.
    let raw: Vec<u8> = vec![0xff, 0x00, 0xfe, b'{', 0x80, 0x01, 0x02];
    assert!(a
        .publish("game-scores", raw.clone())
        .await
        .expect("publish"));
    let got = before_markers(a, &mut rx, nodes.len()).await;
    let expected: BTreeSet<_> = ["b", "c"]
        .iter()
        .map(|n| ((*n).to_owned(), "game-scores".to_owned(), raw.clone()))
        .collect();
    assert_eq!(got, expected, "exactly b and c got the raw bytes");

    b.unsubscribe("game-scores").await.expect("unsubscribe b");
    assert_eq!(hub.subscriber_count("game-scores"), 1);
    assert!(a.publish("game-scores", "second").await.expect("publish"));
    let got = before_markers(a, &mut rx, nodes.len()).await;
    let expected = BTreeSet::from([("c".to_owned(), "game-scores".to_owned(), b"second".to_vec())]);
    assert_eq!(got, expected, "only c after b unsubscribed");

    for node in &nodes {
        assert_eq!(node.metrics_snapshot().bad_envelopes, 0);
        assert_eq!(node.pending_cross_callbacks(), 0);
    }
}

#[tokio::test]
async fn crosswire_channels_are_reserved() {
    let hub = MemoryHub::new();
    let node = Node::builder()
        .server_name("a")
        .broker(hub.broker())
        .build()
        .await
        .expect("build a node");
    let reserved = |result: Result<_, Error>, channel: &str| match result {
        Err(Error::ReservedChannel(c)) => assert_eq!(c, channel),
        other => panic!("`{channel}`: expected ReservedChannel, got {other:?}"),
    };
    for channel in [
        "csbp:server_bridge",
        "csbp:anything",
        "ws:broadcast",
        "ws:chat",
    ] {
        reserved(node.publish(channel, "x").await.map(|_| ()), channel);
        reserved(node.subscribe(channel).await, channel);
        reserved(node.unsubscribe(channel).await, channel);
    }
    // Nothing was subscribed or published by the refused calls.
    assert_eq!(hub.subscriber_count("ws:chat"), 0);
    assert_eq!(hub.subscriber_count("csbp:anything"), 0);
    assert_eq!(hub.subscriber_count("csbp:server_bridge"), 1);
    assert_eq!(node.pending_cross_callbacks(), 0);
}
