//! The testing kit (`crosswire::testing`): clients over the in-memory transport go through the
//! real connection lifecycle, timers run on tokio's paused clock, and one chat scenario passes
//! the same way over the kit and over real WebSocket sockets.

#![cfg(feature = "testing")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use crosswire::memory::MemoryHub;
use crosswire::testing::{Closed, TestClient, TestCluster};
use crosswire::ws::{WsConfig, WsServer};
use crosswire::{close_codes, system, ClientEvent, CloseEvent, Error, Node, NodeBuilder};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// The application under test: a tiny chat (what a user's `setup` would be).
fn chat(node: &Node) {
    let n = node.clone();
    node.on_system(system::Connection, move |socket| {
        let node = n.clone();
        async move {
            if socket.socket_id().is_some() {
                return Ok(()); // authenticated before the upgrade
            }
            match socket.request().param("id").map(str::to_owned) {
                Some(id) => node.bind(&socket, &id)?,
                None => socket.close(close_codes::AUTH_FAILED, "who are you?"),
            }
            Ok::<_, Error>(())
        }
    });
    node.on("join", |ev: ClientEvent| async move {
        let room: String = ev.json()?;
        let id = ev.socket().socket_id().ok_or(Error::Closed)?;
        ev.node().join_room("chat", &room, &id).await?;
        ev.reply(&json!({ "joined": room }))
    });
    node.on("say", |ev: ClientEvent| async move {
        let said: Value = ev.json()?;
        let room = said["room"].as_str().unwrap_or_default().to_owned();
        let from = ev.socket().socket_id().ok_or(Error::Closed)?;
        ev.node()
            .to_room("chat", &room)
            .except(&*from)
            .emit("said", &json!({ "from": &*from, "text": said["text"] }))
            .await?;
        ev.reply(&"sent")
    });
}

/// What the chat scenario needs from a client, over the kit or over a socket.
trait ChatClient {
    async fn request(&mut self, event: &str, payload: Value) -> Value;
    async fn next_push(&mut self) -> (String, Value);
    async fn assert_no_push(&mut self);
}

impl ChatClient for TestClient {
    async fn request(&mut self, event: &str, payload: Value) -> Value {
        TestClient::request(self, event, &payload).await
    }
    async fn next_push(&mut self) -> (String, Value) {
        let push = TestClient::next_push(self).await;
        (push.event, push.payload)
    }
    async fn assert_no_push(&mut self) {
        TestClient::assert_no_push(self, Duration::from_millis(200)).await;
    }
}

impl ChatClient for support::client::TestClient {
    async fn request(&mut self, event: &str, payload: Value) -> Value {
        let (reply, pushes) = support::client::TestClient::request(self, event, payload).await;
        assert!(pushes.is_empty(), "pushes before the reply: {pushes:?}");
        reply
    }
    async fn next_push(&mut self) -> (String, Value) {
        self.recv_push().await
    }
    async fn assert_no_push(&mut self) {
        self.assert_silent("the client outside the room").await;
    }
}

/// Two clients on two nodes join a room, one says hello, the other receives it; a third,
/// outside the room, receives nothing.
async fn chat_scenario(
    alice: &mut impl ChatClient,
    bob: &mut impl ChatClient,
    carol: &mut impl ChatClient,
) {
    let joined = json!({ "joined": "lobby" });
    assert_eq!(alice.request("join", json!("lobby")).await, joined);
    assert_eq!(bob.request("join", json!("lobby")).await, joined);
    let reply = alice
        .request("say", json!({ "room": "lobby", "text": "hello" }))
        .await;
    assert_eq!(reply, json!("sent"));
    assert_eq!(
        bob.next_push().await,
        (
            "said".to_owned(),
            json!({ "from": "alice", "text": "hello" })
        )
    );
    carol.assert_no_push().await;
    alice.assert_no_push().await; // the sender is excepted
}

#[tokio::test(start_paused = true)]
async fn the_chat_scenario_on_the_kit() {
    let cluster = TestCluster::new(["a", "b"], chat).await.expect("cluster");
    let mut alice = cluster.client("a").query("id", "alice").connect().await;
    let mut bob = cluster.client("b").query("id", "bob").connect().await;
    let mut carol = cluster.client("b").query("id", "carol").connect().await;
    chat_scenario(&mut alice, &mut bob, &mut carol).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_chat_scenario_over_websockets() {
    let hub = MemoryHub::new();
    let mut servers = Vec::new();
    for name in ["a", "b"] {
        let node = Node::builder()
            .server_name(name)
            .broker(hub.broker())
            .build()
            .await
            .expect("node");
        chat(&node);
        let server = WsServer::bind("127.0.0.1:0", node, WsConfig::default())
            .await
            .expect("bind");
        servers.push(server);
    }
    let url = |server: &WsServer, id: &str| format!("ws://{}/?id={id}", server.local_addr());
    use support::client::TestClient as WsClient;
    let mut alice = WsClient::connect(&url(&servers[0], "alice")).await;
    let mut bob = WsClient::connect(&url(&servers[1], "bob")).await;
    let mut carol = WsClient::connect(&url(&servers[1], "carol")).await;
    // Bob's node must know where the room's members are before Alice speaks: both joined
    // through their own node, and room pushes go to every node subscribed to `ws:chat`.
    chat_scenario(&mut alice, &mut bob, &mut carol).await;
    for server in servers {
        server.shutdown().await;
    }
}

/// Sends the code of every Close event of `node` to the returned receiver.
fn close_codes_of(node: &Node) -> mpsc::UnboundedReceiver<(Option<String>, u16)> {
    let (tx, rx) = mpsc::unbounded_channel();
    node.on_system(system::Close, move |ev: CloseEvent| {
        let _ = tx.send((ev.socket_id.map(|id| id.to_string()), ev.code));
        async {}
    });
    rx
}

#[tokio::test(start_paused = true)]
async fn the_connection_lifecycle_runs_as_over_a_socket() {
    let cluster = TestCluster::new(["a"], chat).await.expect("cluster");
    let node = cluster.node("a");
    let mut closes = close_codes_of(node);

    // The connection handler refuses a client without an id, with its code and reason.
    let mut anonymous = cluster.client("a").connect().await;
    assert_eq!(
        anonymous.closed().await,
        Closed {
            code: close_codes::AUTH_FAILED,
            reason: "who are you?".to_owned()
        }
    );
    assert_eq!(closes.recv().await, Some((None, close_codes::AUTH_FAILED)));

    // A bound client is in the node's tables until it closes; its close code reaches the
    // Close handlers.
    let client = cluster.client("a").query("id", "7").connect().await;
    assert!(node.socket("7").is_some());
    assert_eq!(
        client.socket().and_then(|s| s.socket_id()).as_deref(),
        Some("7")
    );
    client.close(close_codes::CLIENT_MANUAL, "bye");
    assert_eq!(
        closes.recv().await,
        Some((Some("7".to_owned()), close_codes::CLIENT_MANUAL))
    );
    assert!(node.socket("7").is_none());

    // Pre-authenticated (bound before the connection handlers), and dropped: 1006.
    let client = cluster.client("a").bound_as("8").connect().await;
    assert!(node.socket("8").is_some());
    drop(client);
    assert_eq!(
        closes.recv().await,
        Some((Some("8".to_owned()), close_codes::ABNORMAL))
    );

    // Heartbeat echo, and malformed input counted, not fatal.
    let mut client = cluster.client("a").query("id", "9").connect().await;
    assert!(client.heartbeat().await);
    client.send_text("{not json");
    assert_eq!(node.metrics_snapshot().malformed_frames, 1);
    assert_eq!(client.request("join", &"r").await, json!({ "joined": "r" }));
}

/// A node with short, distinct timers, to see each fire on the paused clock.
fn timers(builder: NodeBuilder) -> NodeBuilder {
    builder
        .server_ping_interval(Some(Duration::from_secs(20)))
        .background_close_time(Duration::from_secs(60))
        .auth_timeout(Some(Duration::from_secs(30)))
}

#[tokio::test(start_paused = true)]
async fn timers_fire_on_the_paused_clock() {
    let started = tokio::time::Instant::now();
    let wall = std::time::Instant::now();
    let cluster = TestCluster::configured(["a", "b"], timers, |_| {})
        .await
        .expect("cluster");
    let node = cluster.node("a");

    // A client that stops answering pings is terminated after missing one (1006).
    let mut frozen = cluster
        .client("a")
        .bound_as("frozen")
        .silent()
        .wait(Duration::from_secs(120))
        .connect()
        .await;
    assert_eq!(frozen.closed().await.code, close_codes::ABNORMAL);
    assert_eq!(node.metrics_snapshot().dead_connections, 1);

    // A client that answers pings stays, through many intervals.
    let mut alive = cluster.client("a").bound_as("alive").connect().await;
    alive.assert_no_push(Duration::from_secs(600)).await;
    assert!(alive.close_status().is_none());

    // Never bound: closed with 4011 at the auth timeout.
    let mut unbound = cluster
        .client("a")
        .wait(Duration::from_secs(60))
        .connect()
        .await;
    assert_eq!(unbound.closed().await.code, close_codes::AUTH_FAILED);
    assert_eq!(node.metrics_snapshot().auth_timeouts, 1);

    // In background mode too long: 4003.
    let mut sleeper = cluster
        .client("a")
        .bound_as("sleeper")
        .wait(Duration::from_secs(120))
        .connect()
        .await;
    sleeper.emit(crosswire::BACKGROUND_EVENT, &true);
    assert_eq!(sleeper.closed().await.code, close_codes::BACKGROUND_TIMEOUT);

    // A cross-server request to a node that never answers ends at its timeout.
    cluster
        .node("b")
        .on_cross("slow", |_ev| std::future::pending::<()>());
    let result = node
        .emit_cross("slow", &())
        .to(["b"])
        .timeout(Duration::from_secs(30))
        .collect()
        .await
        .expect("collect");
    assert!(!result.success);
    assert_eq!(result.missing, ["b"]);

    // Minutes of the node's clock went by; the wall clock barely moved.
    let simulated = started.elapsed();
    assert!(simulated >= Duration::from_secs(600), "{simulated:?}");
    eprintln!(
        "simulated {simulated:?} of timers in {:?} of wall time",
        wall.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn pushes_keep_their_order_and_replies_do_not_swallow_them() {
    let cluster = TestCluster::new(["a", "b"], chat).await.expect("cluster");
    let mut alice = cluster.client("a").query("id", "alice").connect().await;
    let bob = Arc::new(cluster.node("b").clone());
    for n in 0..20 {
        bob.to("alice").emit("n", &n).await.expect("push");
    }
    // A request in the middle: the pushes that arrive before its reply stay queued.
    assert_eq!(alice.request("join", &"r").await, json!({ "joined": "r" }));
    for n in 0..20 {
        alice.expect_push("n", n).await;
    }
    alice.assert_no_push(Duration::from_secs(1)).await;
}
