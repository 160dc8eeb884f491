//! Cluster awareness on the in-memory broker, with real WebSocket clients over loopback:
//! membership (joins, graceful leaves, crashes), automatic reply counts while nodes come and
//! go, cluster-wide queries and actions, duplicate server names, single login across nodes,
//! replies to a client from a logic node, and unicasts routed to the owner's inbox.
//!
//! A "crash" is [`MemoryBroker::disconnect`]: the node keeps running but its link to the hub
//! is dead, so it stops announcing itself without saying goodbye.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crosswire::memory::{MemoryBroker, MemoryHub};
use crosswire::ws::{WsConfig, WsServer};
use crosswire::{system, CrossReply, DuplicateBind, Match, Member, Node, NodeBuilder, ReplyHandle};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use support::client::{Received, TestClient, QUIET};
use support::{eventually, WAIT};

// ----- shared helpers --------------------------------------------------------------------

/// Announce interval of most tests: short, so that expiry takes a fraction of a second.
const INTERVAL: Duration = Duration::from_millis(100);
/// Announcements a node may miss before the others forget it.
const MISSED: u32 = 3;

/// One node of a test cluster: the node, its broker (to "crash" it), and its WebSocket
/// server when it serves clients.
struct TestNode {
    node: Node,
    broker: Arc<MemoryBroker>,
    server: Option<WsServer>,
}

impl TestNode {
    fn name(&self) -> &str {
        self.node.server_name()
    }

    fn addr(&self) -> SocketAddr {
        self.server
            .as_ref()
            .unwrap_or_else(|| panic!("{} serves no WebSocket clients", self.name()))
            .local_addr()
    }

    /// Simulates a crash: the node's broker link dies, it never says goodbye.
    fn crash(&self) {
        self.broker.disconnect();
    }
}

/// Starts node `name` on `hub` with the test announce interval (then `configure`); with
/// `ws`, it runs the demo (`?id=` binds in the connection handler) on a WebSocket server.
async fn start_node(
    hub: &MemoryHub,
    name: &str,
    ws: bool,
    configure: impl FnOnce(NodeBuilder) -> NodeBuilder,
) -> TestNode {
    let broker = hub.broker();
    let builder = Node::builder()
        .server_name(name)
        .broker(broker.clone())
        .announce_interval(INTERVAL)
        .missed_announcements(MISSED);
    let node = configure(builder).build().await.expect("build a node");
    let server = if ws {
        crosswire::demo::install(&node);
        let server = WsServer::bind("127.0.0.1:0", node.clone(), WsConfig::default())
            .await
            .expect("bind a WebSocket server");
        Some(server)
    } else {
        None
    };
    TestNode {
        node,
        broker,
        server,
    }
}

/// Starts one node per `(name, serves clients)`.
async fn start_nodes(
    hub: &MemoryHub,
    nodes: &[(&str, bool)],
    configure: impl Fn(NodeBuilder) -> NodeBuilder,
) -> Vec<TestNode> {
    let mut started = Vec::new();
    for &(name, ws) in nodes {
        started.push(start_node(hub, name, ws, &configure).await);
    }
    started
}

fn find<'a>(nodes: &'a [TestNode], name: &str) -> &'a TestNode {
    nodes
        .iter()
        .find(|n| n.name() == name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

/// [`eventually`](support::eventually) for an async check.
async fn eventually_async<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        match check().await {
            Ok(()) => return,
            Err(why) if Instant::now() >= deadline => {
                panic!("{what}: not reached within {WAIT:?}: {why}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// What a node's member table says: `(name, serves_clients, clients)`, sorted by name.
fn member_view(node: &Node) -> Vec<(String, bool, usize)> {
    node.members()
        .into_iter()
        .map(|m| (m.name, m.serves_clients, m.clients))
        .collect()
}

/// Waits until every one of `nodes` lists exactly `expected` (sorted by name).
async fn wait_members(nodes: &[&Node], expected: &[(&str, bool, usize)]) {
    let expected: Vec<(String, bool, usize)> = expected
        .iter()
        .map(|&(name, serves, clients)| (name.to_owned(), serves, clients))
        .collect();
    eventually("member tables converge", || {
        for node in nodes {
            let view = member_view(node);
            if view != expected {
                return Err(format!("{} lists {view:?}", node.server_name()));
            }
        }
        Ok(())
    })
    .await;
}

/// Waits until every one of `nodes` lists exactly the nodes `names` (whatever their state).
async fn wait_member_names(nodes: &[&Node], names: &[&str]) {
    eventually("member names converge", || {
        for node in nodes {
            let listed: Vec<String> = node.members().into_iter().map(|m| m.name).collect();
            if listed != names {
                return Err(format!("{} lists {listed:?}", node.server_name()));
            }
        }
        Ok(())
    })
    .await;
}

/// Proves that each of `targets` has handled everything `from` published before: on the
/// memory hub every node drains one inbound queue in publish order, so a target that
/// answers this cross-server event (here with "no handler") handled the earlier messages.
async fn barrier(from: &Node, targets: &[&str]) {
    let result = from
        .emit_cross("test.barrier", &())
        .to(targets.iter().copied())
        .timeout(WAIT)
        .collect()
        .await
        .expect("barrier emit");
    assert!(result.success, "barrier through {targets:?}: {result:?}");
}

/// A `NodeJoined`/`NodeLeft` seen by a node: observer, member, when (monotonic and wall).
#[derive(Debug)]
struct Seen {
    observer: String,
    member: Member,
    at: Instant,
    wall: SystemTime,
}

/// Reports every `NodeLeft` (or `NodeJoined` with `joined`) of `observers` on the returned channel.
fn watch_members(observers: &[&Node], joined: bool) -> mpsc::UnboundedReceiver<Seen> {
    let (tx, rx) = mpsc::unbounded_channel();
    for node in observers {
        let tx = tx.clone();
        let observer = node.server_name().to_owned();
        let report = move |member: Member| {
            let _ = tx.send(Seen {
                observer: observer.clone(),
                member,
                at: Instant::now(),
                wall: SystemTime::now(),
            });
            async {}
        };
        if joined {
            node.on_system(system::NodeJoined, report);
        } else {
            node.on_system(system::NodeLeft, report);
        }
    }
    rx
}

/// The next `n` events about `name` (events about other nodes are skipped), one per
/// observer, sorted by observer.
async fn seen_about(rx: &mut mpsc::UnboundedReceiver<Seen>, name: &str, n: usize) -> Vec<Seen> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let event = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {}/{n} membership events about {name}", seen.len()))
            .expect("membership events channel open");
        if event.member.name == name {
            seen.push(event);
        }
    }
    seen.sort_by(|a, b| a.observer.cmp(&b.observer));
    seen
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn set(list: &[&str]) -> HashSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn keys(map: &HashMap<String, Value>) -> HashSet<String> {
    map.keys().cloned().collect()
}

/// Reads pushes until `n` arrived; fails on anything else.
async fn pushes(client: &mut TestClient, who: &str, n: usize) -> Vec<(String, Value)> {
    let mut got = Vec::new();
    while got.len() < n {
        match client.recv().await {
            Received::Json(v) if v["event"].is_string() => got.push((
                v["event"].as_str().unwrap_or_default().to_owned(),
                v["payload"].clone(),
            )),
            other => panic!(
                "{who}: expected push {} of {n}, got {other:?}",
                got.len() + 1
            ),
        }
    }
    got
}

/// Sends `n` unicasts `{"from", "seq"}` to `socket_id` from `node`, one after the other.
async fn send_unicasts(node: &Node, socket_id: &str, n: usize) {
    for seq in 0..n {
        let payload = json!({ "from": node.server_name(), "seq": seq });
        node.to(socket_id)
            .emit("note", &payload)
            .await
            .expect("unicast");
    }
}

/// Asserts that `got` holds exactly `per_sender` `note` pushes of each sender, in order.
fn assert_in_order_per_sender(got: &[(String, Value)], senders: &[&str], per_sender: usize) {
    let mut next: BTreeMap<String, u64> = senders.iter().map(|s| ((*s).to_owned(), 0)).collect();
    for (event, payload) in got {
        assert_eq!(event, "note", "unexpected push {payload}");
        let from = payload["from"].as_str().expect("sender").to_owned();
        let seq = payload["seq"].as_u64().expect("seq");
        let expected = next
            .get_mut(&from)
            .unwrap_or_else(|| panic!("push from unexpected sender {from}"));
        assert_eq!(seq, *expected, "pushes from {from} out of order or lost");
        *expected += 1;
    }
    for (from, count) in next {
        assert_eq!(count, per_sender as u64, "pushes from {from}");
    }
}

/// Asserts that nothing but (at most) the end of the connection arrives within [`QUIET`].
async fn assert_no_push(client: &mut TestClient, who: &str) {
    match client.recv_within(QUIET).await {
        None | Some(Received::Closed(..)) => {}
        Some(other) => panic!("{who} should have received nothing, got {other:?}"),
    }
}

// ----- 1. membership ---------------------------------------------------------------------

/// Announce interval of the membership test: long enough that "dropped on its goodbye" and
/// "dropped after its missed announcements" are far apart even on a loaded machine.
const MEMBERSHIP_INTERVAL: Duration = Duration::from_millis(200);

/// Five nodes find each other (serving or not, with their client counts); one that shuts
/// down is dropped at once through its goodbye, one that crashes after its missed
/// announcements; a newcomer is seen by everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_forms_and_heals() {
    const INTERVAL: Duration = MEMBERSHIP_INTERVAL;
    let configure = |b: NodeBuilder| b.announce_interval(INTERVAL);
    let hub = MemoryHub::new();
    let mut nodes = start_nodes(
        &hub,
        &[
            ("w1", true),
            ("w2", true),
            ("w3", true),
            ("w4", true),
            ("backend", false),
        ],
        configure,
    )
    .await;
    let _c1 = TestClient::served(find(&nodes, "w1").addr(), "c1").await;
    let _c2 = TestClient::served(find(&nodes, "w1").addr(), "c2").await;
    let _c3 = TestClient::served(find(&nodes, "w2").addr(), "c3").await;

    let all: Vec<&Node> = nodes.iter().map(|n| &n.node).collect();
    wait_members(
        &all,
        &[
            ("backend", false, 0),
            ("w1", true, 2),
            ("w2", true, 1),
            ("w3", true, 0),
            ("w4", true, 0),
        ],
    )
    .await;
    // Every node reports the others' start times (to the millisecond they announce).
    for node in &all {
        for member in node.members() {
            let own = find(&nodes, &member.name).node.members();
            let own = own.iter().find(|m| m.name == member.name).expect("self");
            let skew = own
                .started_at
                .duration_since(member.started_at)
                .unwrap_or_else(|e| e.duration());
            assert!(
                skew < Duration::from_millis(2),
                "{} sees {} started at {:?}, it says {:?}",
                node.server_name(),
                member.name,
                member.started_at,
                own.started_at
            );
        }
    }

    let observing: Vec<Node> = ["w1", "w2", "backend"]
        .iter()
        .map(|name| find(&nodes, name).node.clone())
        .collect();
    let observers: Vec<&Node> = observing.iter().collect();
    let mut left = watch_members(&observers, false);
    let expiry = INTERVAL * MISSED;

    // A graceful shutdown: the others forget w4 on its goodbye, long before it could expire
    // (which takes more than `expiry` after its last announcement, so more than
    // `expiry - INTERVAL` = 2 intervals after the shutdown started).
    let w4 = nodes.iter().position(|n| n.name() == "w4").expect("w4");
    let w4 = nodes.remove(w4);
    let shutdown_started = Instant::now();
    let report = w4.server.expect("w4 server").shutdown().await;
    assert_eq!(report.dropped, 0);
    for seen in seen_about(&mut left, "w4", observers.len()).await {
        let after = seen.at.duration_since(shutdown_started);
        assert!(
            after < INTERVAL,
            "{} dropped w4 {after:?} after its shutdown: not on its goodbye",
            seen.observer
        );
        let silent = seen
            .wall
            .duration_since(seen.member.last_seen)
            .unwrap_or_default();
        assert!(
            silent < expiry,
            "{} dropped w4 after {silent:?} of silence: that is an expiry, not a goodbye",
            seen.observer
        );
    }
    wait_member_names(&observers, &["backend", "w1", "w2", "w3"]).await;

    // A crash: w3 goes silent; the others forget it once it missed `MISSED` announcements.
    let w3 = find(&nodes, "w3");
    w3.crash();
    let crashed_at = Instant::now();
    for seen in seen_about(&mut left, "w3", observers.len()).await {
        let after = seen.at.duration_since(crashed_at);
        let silent = seen
            .wall
            .duration_since(seen.member.last_seen)
            .unwrap_or_default();
        assert!(
            silent + Duration::from_millis(5) >= expiry,
            "{} dropped w3 after only {silent:?} of silence (expiry is {expiry:?})",
            seen.observer
        );
        assert!(
            after > INTERVAL && after < expiry + 10 * INTERVAL,
            "{} dropped w3 {after:?} after its crash (expiry is {expiry:?})",
            seen.observer
        );
    }
    wait_members(
        &observers,
        &[("backend", false, 0), ("w1", true, 2), ("w2", true, 1)],
    )
    .await;
    // The crashed node hears nobody any more: it ends up alone, and its announcements fail.
    wait_member_names(&[&w3.node], &["w3"]).await;
    assert!(w3.node.metrics_snapshot().publish_failures > 0);

    // A newcomer: everyone sees it join, and it sees everyone alive (not the dead ones).
    let mut joined = watch_members(&observers, true);
    let w5 = start_node(&hub, "w5", true, configure).await;
    let seen = seen_about(&mut joined, "w5", observers.len()).await;
    let seen_by: Vec<&str> = seen.iter().map(|s| s.observer.as_str()).collect();
    assert_eq!(seen_by, ["backend", "w1", "w2"]);
    let _c4 = TestClient::served(w5.addr(), "c4").await;
    let mut live = observers.clone();
    live.push(&w5.node);
    wait_members(
        &live,
        &[
            ("backend", false, 0),
            ("w1", true, 2),
            ("w2", true, 1),
            ("w5", true, 1),
        ],
    )
    .await;
}

// ----- 2. automatic reply counts -----------------------------------------------------------

/// Registers a cross-server handler replying the node's name.
fn reply_name(node: &Node, event: &str) {
    let name = node.server_name().to_owned();
    node.on_cross(event, move |ev| {
        let name = name.clone();
        async move {
            ev.reply(&name).await.expect("reply");
        }
    });
}

/// Registers a cross-server handler that reports it started, then never replies.
fn hang(node: &Node, event: &str, started: mpsc::UnboundedSender<String>) {
    let name = node.server_name().to_owned();
    node.on_cross(event, move |_| {
        let _ = started.send(name.clone());
        std::future::pending::<()>()
    });
}

/// A request to all expects every live node, without `expect`: all reply → complete; nodes
/// without a handler are not waited for; a hanging node that crashes or shuts down ends the
/// wait when it leaves, and is named missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_requests_count_live_nodes() {
    let hub = MemoryHub::new();
    let nodes = start_nodes(
        &hub,
        &[
            ("a", false),
            ("b", false),
            ("c", false),
            ("d", false),
            ("e", false),
        ],
        |b| b,
    )
    .await;
    let node = |name| &find(&nodes, name).node;
    let (started_tx, mut started) = mpsc::unbounded_channel();
    for n in &nodes {
        reply_name(&n.node, "status");
    }
    for name in ["a", "b", "c"] {
        reply_name(node(name), "partial");
    }
    for name in ["a", "b", "c", "d"] {
        reply_name(node(name), "crash-hang");
    }
    hang(node("e"), "crash-hang", started_tx.clone());
    for name in ["a", "b", "c", "e"] {
        reply_name(node(name), "leave-hang");
    }
    hang(node("d"), "leave-hang", started_tx);
    let all: Vec<&Node> = nodes.iter().map(|n| &n.node).collect();
    wait_member_names(&all, &["a", "b", "c", "d", "e"]).await;
    let timeout = Duration::from_secs(10);

    // Everyone replies: complete, from every node.
    let begun = Instant::now();
    let result = node("a")
        .emit_cross("status", &())
        .timeout(timeout)
        .collect()
        .await
        .expect("collect");
    assert!(result.success, "{result:?}");
    assert_eq!(keys(&result.responses), set(&["a", "b", "c", "d", "e"]));
    assert_eq!(result.responses["d"], "d");
    assert!(
        result.missing.is_empty() && result.unresponded == 0,
        "{result:?}"
    );
    assert!(begun.elapsed() < timeout / 2);
    let result = node("e")
        .emit_cross("status", &())
        .except_self(true)
        .timeout(timeout)
        .collect()
        .await
        .expect("collect");
    assert!(result.success, "{result:?}");
    assert_eq!(keys(&result.responses), set(&["a", "b", "c", "d"]));

    // d and e have no handler: they say so and are not waited for.
    let begun = Instant::now();
    let mut stream = node("a")
        .emit_cross("partial", &())
        .timeout(timeout)
        .replies()
        .await
        .expect("replies");
    let (mut replied, mut no_handler) = (HashSet::new(), HashSet::new());
    while let Some(item) = stream.recv().await {
        match item {
            CrossReply::Reply { server, .. } => assert!(replied.insert(server)),
            CrossReply::NoHandler { server, .. } => assert!(no_handler.insert(server)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(replied, set(&["a", "b", "c"]));
    assert_eq!(no_handler, set(&["d", "e"]));
    assert!(stream.missing().is_empty());
    drop(stream);
    let result = node("b")
        .emit_cross("partial", &())
        .timeout(timeout)
        .collect()
        .await
        .expect("collect");
    assert!(result.success, "{result:?}");
    assert_eq!(keys(&result.responses), set(&["a", "b", "c"]));
    assert!(result.missing.is_empty());
    assert!(
        begun.elapsed() < timeout / 2,
        "completed before the timeout"
    );

    // e hangs, then crashes: the collection ends when the others forget e, not at the timeout.
    let asker = node("a").clone();
    let collection = tokio::spawn(async move {
        let begun = Instant::now();
        let result = asker
            .emit_cross("crash-hang", &())
            .timeout(timeout)
            .collect()
            .await;
        (result, begun.elapsed())
    });
    let hanging = tokio::time::timeout(WAIT, started.recv())
        .await
        .expect("e's handler runs");
    assert_eq!(hanging.as_deref(), Some("e"));
    find(&nodes, "e").crash();
    let (result, took) = tokio::time::timeout(WAIT, collection)
        .await
        .expect("the collection ends once e is forgotten")
        .expect("collection task");
    let result = result.expect("collect");
    assert!(!result.success, "{result:?}");
    assert_eq!(result.missing, ["e"]);
    assert_eq!(result.unresponded, 1);
    assert_eq!(keys(&result.responses), set(&["a", "b", "c", "d"]));
    assert!(
        took < timeout / 2,
        "ended on e's departure, not the timeout ({took:?})"
    );
    assert_eq!(node("a").pending_cross_callbacks(), 0);

    // The cluster goes on without e: a request to all expects the four left.
    let live: Vec<&Node> = ["a", "b", "c", "d"].iter().map(|n| node(n)).collect();
    wait_member_names(&live, &["a", "b", "c", "d"]).await;
    let result = node("c")
        .emit_cross("status", &())
        .timeout(timeout)
        .collect()
        .await
        .expect("collect");
    assert!(result.success, "{result:?}");
    assert_eq!(keys(&result.responses), set(&["a", "b", "c", "d"]));

    // A newcomer is expected as soon as it is known.
    let f = start_node(&hub, "f", false, |b| b).await;
    reply_name(&f.node, "status");
    let mut live = live;
    live.push(&f.node);
    wait_member_names(&live, &["a", "b", "c", "d", "f"]).await;
    let result = node("a")
        .emit_cross("status", &())
        .timeout(timeout)
        .collect()
        .await
        .expect("collect");
    assert!(result.success, "{result:?}");
    assert_eq!(keys(&result.responses), set(&["a", "b", "c", "d", "f"]));

    // d hangs, then shuts down: its goodbye ends the wait at once.
    let asker = f.node.clone();
    let collection = tokio::spawn(async move {
        let result = asker
            .emit_cross("leave-hang", &())
            .timeout(timeout)
            .collect()
            .await;
        (result, Instant::now())
    });
    let hanging = tokio::time::timeout(WAIT, started.recv())
        .await
        .expect("d's handler runs");
    assert_eq!(hanging.as_deref(), Some("d"));
    let shutdown_started = Instant::now();
    node("d").shutdown(Duration::from_secs(1)).await;
    let (result, ended) = tokio::time::timeout(WAIT, collection)
        .await
        .expect("the collection ends once d left")
        .expect("collection task");
    let result = result.expect("collect");
    assert!(!result.success, "{result:?}");
    assert_eq!(result.missing, ["d"]);
    assert_eq!(
        keys(&result.responses),
        set(&["a", "b", "c"]),
        "f has no handler"
    );
    let after = ended.duration_since(shutdown_started);
    assert!(
        after < INTERVAL * MISSED,
        "ended {after:?} after d's shutdown: not on its goodbye"
    );
}

// ----- 3. cluster-wide queries and actions -------------------------------------------------

/// Ten clients on five WebSocket nodes, plus a back-end node without clients: every query
/// and action of `node.cluster()` covers the whole cluster, from any node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_queries_and_actions() {
    let hub = MemoryHub::new();
    let ws = ["w0", "w1", "w2", "w3", "w4"];
    let mut spec: Vec<(&str, bool)> = ws.iter().map(|n| (*n, true)).collect();
    spec.push(("backend", false));
    let nodes = start_nodes(&hub, &spec, |b| b).await;
    let all: Vec<&Node> = nodes.iter().map(|n| &n.node).collect();
    let every = ["backend", "w0", "w1", "w2", "w3", "w4"];
    wait_member_names(&all, &every).await;

    // p0..p9, two per WebSocket node: p{i} on w{i/2}.
    let mut clients = Vec::new();
    for i in 0..10 {
        let addr = find(&nodes, ws[i / 2]).addr();
        clients.push(TestClient::served(addr, &format!("p{i}")).await);
    }
    let rooms: [(usize, &str); 7] = [
        (0, "lobby"),
        (2, "lobby"),
        (4, "lobby"),
        (6, "lobby"),
        (1, "game-1"),
        (3, "game-1"),
        (6, "game-1"),
    ];
    for (i, room) in rooms.into_iter().chain([(5, "game-2")]) {
        let (reply, _) = clients[i]
            .request("joinRoom", json!({ "roomId": room }))
            .await;
        assert_eq!(
            reply["msg"],
            format!("Successfully joined the roomId:{room}")
        );
    }
    let backend = &find(&nodes, "backend").node;
    let w0 = &find(&nodes, "w0").node;
    let cluster = backend.cluster().timeout(WAIT);
    let answered = names(&every);

    // Counts, from the node without clients and from one with clients.
    for asker in [backend, w0] {
        let total = asker
            .cluster()
            .timeout(WAIT)
            .client_count()
            .await
            .expect("count");
        assert_eq!(total.value, 10, "asked by {}", asker.server_name());
        assert_eq!(total.answered, answered);
        assert!(total.is_complete());
    }
    let by_node = cluster.clients_by_node().await.expect("by node");
    let expected: BTreeMap<String, usize> = every
        .iter()
        .map(|n| ((*n).to_owned(), if *n == "backend" { 0 } else { 2 }))
        .collect();
    assert_eq!(by_node.value, expected);
    assert!(by_node.missing.is_empty());

    // Rooms.
    let lobby = cluster
        .room_socket_ids("chat", Some("lobby"), Match::Exact)
        .await
        .expect("ids");
    assert_eq!(lobby.value, set(&["p0", "p2", "p4", "p6"]));
    assert_eq!(lobby.answered, answered);
    let games = w0
        .cluster()
        .timeout(WAIT)
        .room_socket_ids("chat", Some("game"), Match::Prefix)
        .await
        .expect("ids");
    assert_eq!(games.value, set(&["p1", "p3", "p5", "p6"]));
    let exact_game = cluster
        .room_socket_ids("chat", Some("game"), Match::Exact)
        .await
        .expect("ids");
    assert!(exact_game.value.is_empty());
    let anywhere = cluster
        .room_socket_ids("chat", None, Match::Exact)
        .await
        .expect("ids");
    assert_eq!(
        anywhere.value,
        set(&["p0", "p1", "p2", "p3", "p4", "p5", "p6"])
    );
    let count = |room, matching| cluster.room_socket_count("chat", Some(room), matching);
    assert_eq!(count("lobby", Match::Exact).await.expect("count").value, 4);
    assert_eq!(count("game-1", Match::Exact).await.expect("count").value, 3);
    assert_eq!(count("game", Match::Prefix).await.expect("count").value, 4);
    assert_eq!(count("game", Match::Exact).await.expect("count").value, 0);
    let sizes = cluster.room_sizes("chat").await.expect("sizes");
    let expected: BTreeMap<String, usize> = [("game-1", 3), ("game-2", 1), ("lobby", 4)]
        .into_iter()
        .map(|(room, n)| (room.to_owned(), n))
        .collect();
    assert_eq!(sizes.value, expected);
    assert_eq!(sizes.answered, answered);

    // Joined rooms, with a namespace prefix; joined through the cluster where p0 is.
    let joined = cluster
        .join_room("chat-admin", "mods", "p0")
        .await
        .expect("join");
    assert!(joined.value);
    let rooms_of = |id, prefix| cluster.joined_rooms(id, prefix);
    let all_of_p0 = rooms_of("p0", Some("chat")).await.expect("joined");
    let expected: HashMap<String, HashSet<String>> = [
        ("chat".to_owned(), set(&["lobby"])),
        ("chat-admin".to_owned(), set(&["mods"])),
    ]
    .into_iter()
    .collect();
    assert_eq!(all_of_p0.value, expected);
    let admin_of_p0 = rooms_of("p0", Some("chat-")).await.expect("joined");
    assert_eq!(
        admin_of_p0.value,
        [("chat-admin".to_owned(), set(&["mods"]))]
            .into_iter()
            .collect()
    );
    let p6 = rooms_of("p6", None).await.expect("joined");
    assert_eq!(
        p6.value,
        [("chat".to_owned(), set(&["lobby", "game-1"]))]
            .into_iter()
            .collect()
    );
    assert!(rooms_of("p9", None).await.expect("joined").value.is_empty());

    // Where clients are.
    let at = cluster.node_of("p7").await.expect("node of");
    assert_eq!(at.value.as_deref(), Some("w3"));
    assert!(at.is_complete());
    let nowhere = cluster.node_of("ghost").await.expect("node of");
    assert_eq!(nowhere.value, None);
    assert_eq!(nowhere.answered, answered);
    assert!(cluster.is_online("p9").await.expect("online").value);
    let ghost = cluster.is_online("ghost").await.expect("online");
    assert!(!ghost.value);
    assert!(ghost.is_complete());

    // Disconnect p8 (on w4) from the back-end node.
    let kicked = cluster
        .disconnect("p8", 4010, "forced logout")
        .await
        .expect("disconnect");
    assert!(kicked.value);
    assert!(!cluster.is_online("p8").await.expect("online").value);
    let p8 = clients.remove(8);
    assert_eq!(
        p8.expect_close_then_drain().await,
        (4010, "forced logout".to_owned())
    );
    assert!(
        !cluster
            .disconnect("p8", 4010, "again")
            .await
            .expect("disconnect")
            .value
    );
    eventually_async("p8's connection is removed", || async {
        let total = cluster.client_count().await.map_err(|e| e.to_string())?;
        match total.value {
            9 => Ok(()),
            n => Err(format!("{n} clients")),
        }
    })
    .await;
    let mut p9 = clients.remove(8); // p9, on w4

    // Move p9 (on w4) into a room from the back-end node; a room broadcast from w0 reaches it.
    let joined = cluster.join_room("chat", "vip", "p9").await.expect("join");
    assert!(joined.value);
    assert!(
        !cluster
            .join_room("chat", "vip", "ghost")
            .await
            .expect("join")
            .value
    );
    w0.to_room("chat", "vip")
        .emit("say", &json!("vip-1"))
        .await
        .expect("room broadcast");
    assert_eq!(p9.recv_push().await, ("say".to_owned(), json!("vip-1")));
    assert_eq!(
        cluster
            .room_socket_ids("chat", Some("vip"), Match::Exact)
            .await
            .expect("ids")
            .value,
        set(&["p9"])
    );

    // And out again: the next room broadcast does not reach it (a unicast sent after it does,
    // and w4 handles w0's messages in order, so p9 would have had the room push first).
    let left = cluster
        .leave_room("chat", "vip", "p9")
        .await
        .expect("leave");
    assert!(left.value);
    let again = cluster
        .leave_room("chat", "vip", "p9")
        .await
        .expect("leave");
    assert!(!again.value, "p9 was no longer in the room");
    assert_eq!(
        again.answered,
        names(&["backend", "w0", "w1", "w2", "w3", "w4"])
    );
    w0.to_room("chat", "vip")
        .emit("say", &json!("vip-2"))
        .await
        .expect("room broadcast");
    w0.to("p9")
        .emit("say", &json!("marker"))
        .await
        .expect("unicast");
    assert_eq!(p9.recv_push().await, ("say".to_owned(), json!("marker")));
    assert!(rooms_of("p9", None).await.expect("joined").value.is_empty());
    // The other clients heard none of it.
    let whos: Vec<String> = (0..clients.len()).map(|i| format!("p{i}")).collect();
    futures_util::future::join_all(
        clients
            .iter_mut()
            .zip(&whos)
            .map(|(client, who)| client.assert_silent(who)),
    )
    .await;
}

// ----- 4. duplicate server names -----------------------------------------------------------

/// Two live nodes named alike: both detect it (counter and system event), and so does a
/// third node that hears both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_server_name_detected() {
    let hub = MemoryHub::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, String)>();
    let nodes = start_nodes(
        &hub,
        &[("twin", false), ("twin", false), ("other", false)],
        |b| b,
    )
    .await;
    // Announcements repeat every interval, so listeners installed after the start hear it.
    for (i, n) in nodes.iter().enumerate() {
        let tx = tx.clone();
        n.node.on_system(system::DuplicateServerName, move |name| {
            let _ = tx.send((i, name));
            async {}
        });
    }
    let mut reported = HashSet::new();
    let deadline = Instant::now() + WAIT;
    while reported.len() < nodes.len() {
        let (i, name) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only nodes {reported:?} reported the duplicate"))
            .expect("channel open");
        assert_eq!(name, "twin");
        reported.insert(i);
    }
    for (i, n) in nodes.iter().enumerate() {
        let count = n.node.metrics_snapshot().duplicate_server_names;
        assert!(count >= 1, "node #{i} ({}) counted {count}", n.name());
    }
    // The third node lists the shared name once.
    let listed: Vec<String> = nodes[2]
        .node
        .members()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(listed, ["other", "twin"]);
}

/// A node that starts learns the others, and the socket ids bound on them, from their answers
/// to its hello, not from their next periodic announcement (here 30 s away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newcomer_learns_members_and_bindings_at_once() {
    let hub = MemoryHub::new();
    let slow = |b: NodeBuilder| b.announce_interval(Duration::from_secs(30));
    let nodes = start_nodes(&hub, &[("a", true), ("b", false)], slow).await;
    let (a, b) = (&find(&nodes, "a").node, &find(&nodes, "b").node);
    wait_member_names(&[a, b], &["a", "b"]).await;
    let mut client = TestClient::served(find(&nodes, "a").addr(), "k1").await;

    let newcomer = start_node(&hub, "n", false, slow).await;
    wait_members(
        &[&newcomer.node],
        &[("a", true, 1), ("b", false, 0), ("n", false, 0)],
    )
    .await;
    eventually("the newcomer's directory knows k1", || {
        match newcomer.node.directory_len() {
            1 => Ok(()),
            n => Err(format!("{n} ids")),
        }
    })
    .await;
    let envelopes = |node: &Node| node.metrics_snapshot().unicast_envelopes;
    let before = (envelopes(a), envelopes(b));
    newcomer
        .node
        .to("k1")
        .emit("note", &json!({ "from": "n", "seq": 0 }))
        .await
        .expect("unicast");
    assert_in_order_per_sender(&pushes(&mut client, "k1", 1).await, &["n"], 1);
    barrier(&newcomer.node, &["a", "b"]).await;
    assert_eq!(
        (envelopes(a), envelopes(b)),
        (before.0 + 1, before.1),
        "the newcomer sent the unicast to a's inbox only"
    );
}

// ----- 5. single login across nodes --------------------------------------------------------

/// Under `Replace` (the default), a second login on another node closes the first with
/// 4012, and every unicast sent afterwards from any node reaches the new connection in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_login_replace() {
    let hub = MemoryHub::new();
    let nodes = start_nodes(&hub, &[("A", true), ("B", true), ("C", false)], |b| b).await;
    let (a, b, c) = (
        &find(&nodes, "A").node,
        &find(&nodes, "B").node,
        &find(&nodes, "C").node,
    );
    wait_member_names(&[a, b, c], &["A", "B", "C"]).await;

    let mut old = TestClient::served(find(&nodes, "A").addr(), "u1").await;
    let mut new = TestClient::served(find(&nodes, "B").addr(), "u1").await;
    assert_eq!(
        old.expect_close().await,
        (4012, "logged in on another server".to_owned())
    );
    assert!(a.socket("u1").is_none(), "A let go of u1");
    // A knows already (it closed the old connection); make sure C heard of the new binding
    // too before it sends: a push C sends before that would go to A's inbox and be
    // forwarded, and could be overtaken by one sent after it.
    barrier(b, &["A", "C"]).await;
    let node_of = c
        .cluster()
        .timeout(WAIT)
        .node_of("u1")
        .await
        .expect("node of");
    assert_eq!(node_of.value.as_deref(), Some("B"));
    let b_envelopes = b.metrics_snapshot().unicast_envelopes;
    let forwards = a.metrics_snapshot().unicast_forwards;

    const N: usize = 50;
    tokio::join!(
        send_unicasts(a, "u1", N),
        send_unicasts(b, "u1", N),
        send_unicasts(c, "u1", N),
    );
    let got = pushes(&mut new, "new login", 3 * N).await;
    assert_in_order_per_sender(&got, &["A", "B", "C"], N);
    new.assert_silent("new login").await;
    assert_no_push(&mut old, "old login").await;
    // A's and C's went straight to B's inbox, none through A.
    assert_eq!(
        b.metrics_snapshot().unicast_envelopes - b_envelopes,
        2 * N as u64
    );
    assert_eq!(a.metrics_snapshot().unicast_forwards, forwards);
}

/// Under `Refuse` on every node, a second login on another node is refused: the demo's
/// connection handler logs the `AlreadyBound` error and leaves the connection unbound, so it
/// stays open, gets no pushes for the id, and is closed with 4011 when the auth timeout
/// passes. The first login keeps the id and every unicast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_login_refuse() {
    let hub = MemoryHub::new();
    let auth_timeout = Duration::from_secs(1);
    let nodes = start_nodes(&hub, &[("A", true), ("B", true), ("C", false)], |b| {
        b.duplicate_bind(DuplicateBind::Refuse)
            .auth_timeout(Some(auth_timeout))
    })
    .await;
    let (a, b, c) = (
        &find(&nodes, "A").node,
        &find(&nodes, "B").node,
        &find(&nodes, "C").node,
    );
    wait_member_names(&[a, b, c], &["A", "B", "C"]).await;

    let mut old = TestClient::served(find(&nodes, "A").addr(), "u1").await;
    // B learns of the first login before the second one comes (otherwise B would bind, and
    // close its own connection with 4012 once it hears of the older binding).
    barrier(a, &["B", "C"]).await;
    let mut new = TestClient::with_id(find(&nodes, "B").addr(), "u1").await;
    let (reply, _) = new.request("say", json!("still here")).await;
    assert_eq!(
        reply["echo"], "still here",
        "the refused connection stays open"
    );
    assert!(b.socket("u1").is_none(), "B refused the second login");
    let node_of = c
        .cluster()
        .timeout(WAIT)
        .node_of("u1")
        .await
        .expect("node of");
    assert_eq!(node_of.value.as_deref(), Some("A"));

    const N: usize = 20;
    tokio::join!(
        send_unicasts(a, "u1", N),
        send_unicasts(b, "u1", N),
        send_unicasts(c, "u1", N),
    );
    let got = pushes(&mut old, "first login", 3 * N).await;
    assert_in_order_per_sender(&got, &["A", "B", "C"], N);
    let (reply, extra) = old.request("say", json!("me")).await;
    assert_eq!(reply["echo"], "me", "the first login is still served");
    assert!(extra.is_empty(), "{extra:?}");

    // The refused connection got nothing but, at the auth timeout, its close.
    match new.recv_within(auth_timeout + WAIT).await {
        Some(Received::Closed(code, reason)) => {
            assert_eq!((code, reason.as_str()), (4011, "authentication timeout"));
        }
        other => panic!("the refused connection got {other:?}"),
    }
    assert!(a.socket("u1").is_some_and(|s| s.is_open()));
}

// ----- 6. replies from a logic node --------------------------------------------------------

/// A WebSocket node hands client requests off to a logic node without WebSocket, which
/// answers the client itself (`reply_to`) and pushes to it (`to_socket_id`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_from_logic_node() {
    let hub = MemoryHub::new();
    let nodes = start_nodes(&hub, &[("W", true), ("L", false)], |b| b).await;
    let (w, l) = (&find(&nodes, "W").node, &find(&nodes, "L").node);
    wait_members(&[w, l], &[("L", false, 0), ("W", true, 0)]).await;

    let node = w.clone();
    w.on("play", move |ev| {
        let node = node.clone();
        async move {
            let handle = ev.hand_off().expect("a request");
            let job = json!({ "reply": handle, "n": ev.value()["n"] });
            node.emit_cross("game", &job)
                .to(["L"])
                .send()
                .await
                .expect("to L");
        }
    });
    let logic = l.clone();
    l.on_cross("game", move |ev| {
        let logic = logic.clone();
        async move {
            let job = ev.value();
            let handle: ReplyHandle =
                serde_json::from_value(job["reply"].clone()).expect("a reply handle");
            assert_eq!(handle.node(), "W");
            let n = job["n"].as_i64().expect("n");
            let socket_id = handle.socket_id().expect("a bound client").to_owned();
            let answer = json!({ "n": n, "double": 2 * n, "for": socket_id, "by": "L" });
            logic.reply_to(&handle, &answer).await.expect("reply_to");
            logic
                .to(&socket_id)
                .emit("update", &json!({ "n": n }))
                .await
                .expect("push");
        }
    });

    let addr = find(&nodes, "W").addr();
    let mut x = TestClient::served(addr, "x").await;
    let mut y = TestClient::served(addr, "y").await;

    /// Plays `n`; returns the reply and the `update` push that follows it.
    async fn play(client: &mut TestClient, n: i64) -> (Value, Value) {
        let (reply, mut pushes) = client.request("play", json!({ "n": n })).await;
        let push = match pushes.pop() {
            Some(push) => push,
            None => {
                let (event, payload) = client.recv_push().await;
                json!({ "event": event, "payload": payload })
            }
        };
        assert!(pushes.is_empty(), "{pushes:?}");
        (reply, push)
    }

    let (reply, push) = play(&mut x, 3).await;
    assert_eq!(reply, json!({ "n": 3, "double": 6, "for": "x", "by": "L" }));
    assert_eq!(push, json!({ "event": "update", "payload": { "n": 3 } }));

    // Two clients at once (each with its own callback ids): each gets its own answer.
    let ((rx, px), (ry, py)) = tokio::join!(play(&mut x, 10), play(&mut y, 20));
    assert_eq!(rx, json!({ "n": 10, "double": 20, "for": "x", "by": "L" }));
    assert_eq!(px["payload"], json!({ "n": 10 }));
    assert_eq!(ry, json!({ "n": 20, "double": 40, "for": "y", "by": "L" }));
    assert_eq!(py["payload"], json!({ "n": 20 }));
    x.assert_silent("x").await;
    y.assert_silent("y").await;
    assert_eq!(w.metrics_snapshot().client_replies_lost, 0);
}

// ----- 7. targeted unicast -----------------------------------------------------------------

/// Counts the `unicast_envelopes` each node handles while node A sends `n` unicasts to a
/// client of node B; returns them by node name.
async fn unicast_envelopes_per_node(targeted: bool, n: usize) -> BTreeMap<String, u64> {
    let hub = MemoryHub::new();
    let spec = [
        ("A", false),
        ("B", true),
        ("C", false),
        ("D", false),
        ("E", false),
    ];
    let nodes = start_nodes(&hub, &spec, |b| b.targeted_unicast(targeted)).await;
    let all: Vec<&Node> = nodes.iter().map(|n| &n.node).collect();
    wait_member_names(&all, &["A", "B", "C", "D", "E"]).await;
    let mut client = TestClient::served(find(&nodes, "B").addr(), "t1").await;
    eventually("every other node's directory knows t1", || {
        for node in &all {
            let expected = usize::from(node.server_name() != "B");
            if node.directory_len() != expected {
                return Err(format!("{}: {}", node.server_name(), node.directory_len()));
            }
        }
        Ok(())
    })
    .await;
    let before: Vec<u64> = all
        .iter()
        .map(|node| node.metrics_snapshot().unicast_envelopes)
        .collect();

    let a = &find(&nodes, "A").node;
    send_unicasts(a, "t1", n).await;
    let got = pushes(&mut client, "t1", n).await;
    assert_in_order_per_sender(&got, &["A"], n);
    // Every node has handled whatever A published for t1.
    barrier(a, &["B", "C", "D", "E"]).await;
    all.iter()
        .zip(before)
        .map(|(node, before)| {
            let after = node.metrics_snapshot().unicast_envelopes;
            (node.server_name().to_owned(), after - before)
        })
        .collect()
}

/// With the directory converged, unicasts go to the owner's inbox only; without targeting,
/// every other node receives them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targeted_unicast_reaches_only_the_owner() {
    const N: u64 = 20;
    let expected: BTreeMap<String, u64> = [("A", 0), ("B", N), ("C", 0), ("D", 0), ("E", 0)]
        .into_iter()
        .map(|(name, n)| (name.to_owned(), n))
        .collect();
    assert_eq!(unicast_envelopes_per_node(true, N as usize).await, expected);

    let expected: BTreeMap<String, u64> = [("A", 0), ("B", N), ("C", N), ("D", N), ("E", N)]
        .into_iter()
        .map(|(name, n)| (name.to_owned(), n))
        .collect();
    assert_eq!(
        unicast_envelopes_per_node(false, N as usize).await,
        expected
    );
}
