//! Every bad-input rule of `PROTOCOL.md`, against a real server and real clients: what the
//! client sees, what the node keeps, and the counter in `Node::metrics_snapshot` that records
//! it.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crosswire::ws::{WsConfig, WsServer};
use crosswire::{
    system, CloseEvent, DuplicateBind, Error, Match, MetricsSnapshot, Node, NodeBuilder,
};
use serde_json::{json, Value};
use support::client::{Received, TestClient};
use support::raw::{Frame, RawClient};
use support::WAIT;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

struct Server {
    node: Node,
    server: WsServer,
    closes: mpsc::UnboundedReceiver<CloseEvent>,
    bound: mpsc::UnboundedReceiver<Option<Arc<str>>>,
}

impl Server {
    /// A node with the demo event set (identity from `?id=`), served on a loopback port.
    async fn start(builder: NodeBuilder, config: WsConfig) -> Server {
        let node = builder.build().await.expect("node builds");
        crosswire::demo::install(&node);
        Server::serve(node, config).await
    }

    /// Serves `node` as it is configured; records its close events and, after the node's
    /// own connection handlers ran, the id each new connection is bound to.
    async fn serve(node: Node, config: WsConfig) -> Server {
        let (tx, closes) = mpsc::unbounded_channel();
        node.on_system(system::Close, move |event| {
            let _ = tx.send(event);
            async {}
        });
        let (tx, bound) = mpsc::unbounded_channel();
        node.on_system(system::Connection, move |socket| {
            let tx = tx.clone();
            // Inside the future: it runs after the futures of earlier connection handlers.
            async move {
                let _ = tx.send(socket.socket_id());
            }
        });
        let server = WsServer::bind("127.0.0.1:0", node.clone(), config)
            .await
            .expect("server binds a loopback port");
        Server {
            node,
            server,
            closes,
            bound,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// A demo client with `?id=ID`, served (and therefore bound) before it is returned.
    async fn client(&self, id: &str) -> TestClient {
        TestClient::served(self.addr(), id).await
    }

    /// Waits until a connection bound to `id` has finished its connection handlers.
    async fn wait_bound(&mut self, id: &str) {
        timeout(WAIT, async {
            loop {
                let bound = self.bound.recv().await.expect("connection listener alive");
                if bound.as_deref() == Some(id) {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no connection bound to {id} in time"));
    }

    async fn next_close(&mut self) -> CloseEvent {
        timeout(WAIT, self.closes.recv())
            .await
            .expect("a close event in time")
            .expect("close listener alive")
    }

    fn metrics(&self) -> MetricsSnapshot {
        self.node.metrics_snapshot()
    }

    /// The counters of what was dropped, refused or closed: [`metrics`](Self::metrics) with
    /// the traffic counters (messages, pushes, deliveries, requests) zeroed.
    fn losses(&self) -> MetricsSnapshot {
        let mut m = self.metrics();
        m.client_messages = 0;
        m.client_message_bytes = 0;
        m.pushes = 0;
        m.deliveries = 0;
        m.delivered_bytes = 0;
        m.cross_requests = 0;
        m
    }
}

/// The next value from a listener's channel, within [`WAIT`].
async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    timeout(WAIT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing in time"))
        .unwrap_or_else(|| panic!("{what}: listener gone"))
}

/// Asserts that `client` is still served: a request is answered, and nothing else arrived
/// before the answer (frames of one connection are handled in order, so everything the
/// client sent before has been dealt with by then).
async fn assert_still_served(client: &mut TestClient) {
    let (reply, pushes) = client.request("say", json!("still there?")).await;
    assert_eq!(reply["echo"], "still there?");
    assert!(
        pushes.is_empty(),
        "unexpected frames before the reply: {pushes:?}"
    );
}

/// A `say` request of exactly `len` bytes with callbackId `cb`.
fn say_frame_of_len(len: usize, cb: &str) -> String {
    let empty = format!(r#"{{"event":"say","payload":"","callbackId":"{cb}"}}"#);
    let pad = len.checked_sub(empty.len()).expect("len fits the frame");
    let frame = format!(
        r#"{{"event":"say","payload":"{}","callbackId":"{cb}"}}"#,
        "x".repeat(pad)
    );
    assert_eq!(frame.len(), len);
    frame
}

// ----- malformed, oversized and binary frames --------------------------------------------

#[tokio::test]
async fn malformed_frames_are_dropped_counted_and_the_connection_keeps_working() {
    let s = Server::start(Node::builder(), WsConfig::default()).await;
    let mut client = s.client("1").await;
    let malformed = [
        ("not JSON", "hello there"),
        ("truncated JSON", r#"{"event":"say","payload":"#),
        ("a JSON array", r#"["say",{"msg":1}]"#),
        ("a JSON number", "42"),
        ("no event", r#"{"payload":1,"callbackId":"c1"}"#),
        (
            "an empty event",
            r#"{"event":"","payload":1,"callbackId":"c2"}"#,
        ),
        (
            "a non-string event",
            r#"{"event":7,"payload":1,"callbackId":"c3"}"#,
        ),
        ("a null event", r#"{"event":null,"callbackId":"c4"}"#),
        ("trailing data", r#"{"event":"say","callbackId":"c5"} {}"#),
        (
            "a non-boolean $background",
            r#"{"event":"$background","payload":"yes"}"#,
        ),
    ];
    for (count, (what, frame)) in (1..).zip(malformed) {
        client.send_text(frame).await;
        // No reply, no push, no close: the next request is the next thing answered.
        assert_still_served(&mut client).await;
        assert_eq!(s.metrics().malformed_frames, count, "after {what}");
    }
    let m = s.metrics();
    assert_eq!(
        (m.unhandled_events, m.reserved_events, m.background_closes),
        (0, 0, 0)
    );
    assert_eq!(s.node.connection_count(), 1);
}

#[tokio::test]
async fn a_message_of_exactly_the_size_limit_is_accepted() {
    let limit = 1024;
    let s = Server::start(Node::builder(), WsConfig::default().max_message_size(limit)).await;
    let mut client = s.client("1").await;
    client.send_text(&say_frame_of_len(limit, "edge")).await;
    match client.recv().await {
        Received::Json(reply) => assert_eq!(reply["callbackId"], "edge"),
        other => panic!("a message of exactly the limit should be answered, got {other:?}"),
    }
    assert_eq!(s.metrics().oversized_frames, 0);
}

#[tokio::test]
async fn an_oversized_message_closes_that_client_with_1009_only() {
    let limit = 1024;
    let mut s = Server::start(Node::builder(), WsConfig::default().max_message_size(limit)).await;
    let mut big = s.client("big").await;
    let mut other = s.client("other").await;

    big.send_text(&say_frame_of_len(limit + 1, "too-big")).await;
    assert_eq!(
        big.expect_close_then_drain().await,
        (1009, "message too big".to_owned())
    );
    let closed = s.next_close().await;
    assert_eq!(closed.socket_id.as_deref(), Some("big"));
    assert_eq!(closed.code, 1009);
    assert_eq!(s.metrics().oversized_frames, 1);

    assert_still_served(&mut other).await;
    assert_eq!(s.node.connection_count(), 1);
    assert!(s.node.socket("big").is_none());
    assert_eq!(s.metrics().oversized_frames, 1);
}

/// Some clients (game engines, mini-program runtimes) send the JSON protocol in binary
/// frames: the server parses those like text. One that is not UTF-8 or not an event is
/// counted malformed and dropped, as a text frame would be, and the connection stays open.
#[tokio::test]
async fn binary_frames_holding_json_are_parsed_like_text() {
    let s = Server::start(Node::builder(), WsConfig::default()).await;
    let mut client = s.client("1").await;
    client
        .send_binary(br#"{"event":"say","payload":1,"callbackId":"bin"}"#.to_vec())
        .await;
    match client.recv().await {
        Received::Json(reply) => {
            assert_eq!(reply["callbackId"], "bin");
            assert_eq!(reply["payload"]["echo"], 1);
            assert!(reply["payload"]["msg"].is_string(), "{reply}");
        }
        other => panic!("the binary request should be answered, got {other:?}"),
    }
    let m = s.metrics();
    assert_eq!((m.binary_frames, m.malformed_frames), (1, 0));

    // Not UTF-8: never a close 1007 (binary messages need not be UTF-8), just malformed.
    client.send_binary(vec![0xff; 300]).await;
    assert_still_served(&mut client).await;
    let m = s.metrics();
    assert_eq!((m.binary_frames, m.malformed_frames), (2, 1));

    // UTF-8 but not JSON.
    client.send_binary(b"hello there".to_vec()).await;
    assert_still_served(&mut client).await;
    let m = s.metrics();
    assert_eq!((m.binary_frames, m.malformed_frames), (3, 2));
    assert_eq!(s.node.connection_count(), 1);
}

// ----- events ----------------------------------------------------------------------------

#[tokio::test]
async fn reserved_events_never_reach_handlers() {
    let s = Server::start(Node::builder(), WsConfig::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    for event in ["$secret", "$background"] {
        let calls = calls.clone();
        s.node.on(event, move |ev| {
            // Synchronous: had the handler been started, this ran before the next frame.
            calls.fetch_add(1, Ordering::SeqCst);
            let _ = ev.reply(&json!("leaked"));
            async {}
        });
    }
    let mut client = s.client("1").await;

    client
        .send_text(r#"{"event":"$secret","payload":1,"callbackId":"r1"}"#)
        .await;
    assert_still_served(&mut client).await;
    assert_eq!(s.metrics().reserved_events, 1);

    // `$background` is the protocol's own: handled (here: a no-op leave), never dispatched.
    client
        .send_text(r#"{"event":"$background","payload":false,"callbackId":"r2"}"#)
        .await;
    assert_still_served(&mut client).await;

    assert_eq!(calls.load(Ordering::SeqCst), 0, "no handler ran");
    let m = s.metrics();
    assert_eq!(
        (m.reserved_events, m.malformed_frames, m.unhandled_events),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn an_event_without_a_handler_gets_no_reply() {
    let s = Server::start(Node::builder(), WsConfig::default()).await;
    let mut client = s.client("1").await;
    client
        .send_text(r#"{"event":"nobodyListens","payload":{},"callbackId":"u1"}"#)
        .await;
    // Silence is the behaviour: the client's own callback timeout reports it.
    client
        .assert_silent("a client that asked an unhandled event")
        .await;
    client.emit("nobodyListensEither", json!(1)).await;
    assert_still_served(&mut client).await;
    let m = s.metrics();
    assert_eq!((m.unhandled_events, m.malformed_frames), (2, 0));
}

#[tokio::test]
async fn an_unusable_callback_id_makes_a_plain_event() {
    let s = Server::start(Node::builder(), WsConfig::default()).await;
    let (tx, mut probes) = mpsc::unbounded_channel();
    s.node.on("probe", move |ev| {
        // Whether a reply was expected, and whether one could be sent.
        let _ = tx.send((
            ev.value(),
            ev.wants_reply(),
            ev.reply(&json!("answer")).is_ok(),
        ));
        async {}
    });
    let mut client = s.client("1").await;

    let too_long = "x".repeat(65);
    let bad_ids: [(&str, Value); 6] = [
        ("empty", json!("")),
        ("65 characters", json!(too_long)),
        ("a number", json!(7)),
        ("null", Value::Null),
        ("an object", json!({ "id": "c1" })),
        ("an array", json!(["c1"])),
    ];
    for (what, id) in bad_ids {
        let frame = json!({ "event": "probe", "payload": what, "callbackId": id });
        client.send_text(&frame.to_string()).await;
        let (payload, wanted, replied) = timeout(WAIT, probes.recv())
            .await
            .expect("the handler ran")
            .expect("probe listener alive");
        assert_eq!(payload, json!(what));
        assert!(!wanted, "callbackId {what}: no reply expected");
        assert!(!replied, "callbackId {what}: reply refused");
        // No reply frame reached the client.
        assert_still_served(&mut client).await;
    }

    // The limits themselves: 64 characters (counted as characters, not bytes) is a request.
    for id in ["x".repeat(64), "é".repeat(64)] {
        let frame = json!({ "event": "probe", "payload": "edge", "callbackId": id });
        client.send_text(&frame.to_string()).await;
        let (_, wanted, replied) = timeout(WAIT, probes.recv())
            .await
            .expect("the handler ran")
            .expect("probe listener alive");
        assert!(wanted && replied);
        assert_eq!(
            client.recv().await,
            Received::Json(json!({ "callbackId": id, "payload": "answer" }))
        );
    }
    assert_eq!(
        s.losses(),
        MetricsSnapshot::default(),
        "nothing was dropped"
    );
}

// Background mode is tested on the paused clock, through the testing kit: `timers.rs`.

// ----- binding and cleanup ---------------------------------------------------------------

#[tokio::test]
async fn a_duplicate_bind_replaces_the_old_connection_with_4012() {
    let mut s = Server::start(Node::builder(), WsConfig::default()).await;
    let mut old = s.client("1").await;
    let (reply, _) = old.request("joinRoom", json!({ "roomId": "r1" })).await;
    assert_eq!(reply["msg"], "Successfully joined the roomId:r1");

    let mut new = TestClient::with_id(s.addr(), "1").await;
    assert_eq!(
        old.expect_close_then_drain().await,
        (4012, "replaced by a newer connection".to_owned())
    );
    // The old connection is fully gone, and its disconnect left the id alone.
    let closed = s.next_close().await;
    assert_eq!((closed.code, closed.socket_id.clone()), (4012, None));
    let bound = s.node.socket("1").expect("id 1 stays bound");
    assert_ne!(bound.conn_id(), closed.socket.conn_id());
    assert_eq!(s.node.connection_count(), 1);
    assert_eq!(s.node.local_client_count(), 1);
    assert!(
        s.node.is_joined("1", "chat", Some("r1")),
        "rooms belong to the id"
    );
    assert_eq!(s.node.room_count("chat", Match::Exact), 1);

    // The new connection gets the id's deliveries, room included.
    assert_still_served(&mut new).await;
    let mut third = s.client("3").await;
    let (_, pushes) = third
        .request(
            "command",
            json!({ "action": "toRoom", "roomId": "r1", "msg": "room" }),
        )
        .await;
    assert!(pushes.is_empty());
    assert_eq!(
        new.recv_push().await,
        (
            "say".to_owned(),
            json!({ "action": "toRoom", "msg": "room" })
        )
    );
    s.node
        .to("1")
        .emit("direct", &json!(1))
        .await
        .expect("to_socket_id");
    assert_eq!(new.recv_push().await, ("direct".to_owned(), json!(1)));
    // Nothing was ever queued on the kicked connection.
    assert_eq!(s.metrics().sends_to_closed, 0);
}

#[tokio::test]
async fn a_refused_duplicate_bind_keeps_the_old_connection() {
    let node = Node::builder()
        .duplicate_bind(DuplicateBind::Refuse)
        .build()
        .await
        .expect("node builds");
    let (tx, mut binds) = mpsc::unbounded_channel();
    let n = node.clone();
    node.on_system(system::Connection, move |socket| {
        let id = socket.request().param("id").unwrap_or_default().to_owned();
        let _ = tx.send((socket.conn_id(), n.bind(&socket, &id)));
        async {}
    });
    node.on("say", |ev| async move {
        let _ = ev.reply(&json!({ "echo": ev.value() }));
    });
    let mut s = Server::serve(node, WsConfig::default()).await;

    let mut first = s.client("1").await;
    let (first_conn, result) = next(&mut binds, "the first bind").await;
    result.expect("the first bind succeeds");
    let mut second = s.client("1").await;
    let (second_conn, result) = next(&mut binds, "the second bind").await;
    match result {
        Err(Error::AlreadyBound(id)) => assert_eq!(id, "1"),
        other => panic!("expected AlreadyBound, got {other:?}"),
    }

    // The old connection keeps the id; the new one stays open, unbound.
    let bound = s.node.socket("1").expect("id 1 bound");
    assert_eq!(bound.conn_id(), first_conn);
    assert_ne!(second_conn, first_conn);
    assert_eq!(s.node.connection_count(), 2);
    assert_eq!(s.node.local_client_count(), 1);
    s.node
        .to("1")
        .emit("direct", &json!("for the first"))
        .await
        .expect("to_socket_id");
    assert_eq!(
        first.recv_push().await,
        ("direct".to_owned(), json!("for the first"))
    );
    second.assert_silent("the refused connection").await;
    assert_still_served(&mut second).await;
    assert!(s.closes.try_recv().is_err(), "nobody was closed");
    assert_eq!(s.losses(), MetricsSnapshot::default());
}

#[tokio::test]
async fn disconnect_removes_the_binding_and_every_room() {
    let mut s = Server::start(Node::builder(), WsConfig::default()).await;
    let mut leaver = s.client("7").await;
    let mut stayer = s.client("8").await;
    for room in ["a", "b"] {
        let (reply, _) = leaver.request("joinRoom", json!({ "roomId": room })).await;
        assert_eq!(
            reply["msg"],
            format!("Successfully joined the roomId:{room}")
        );
    }
    let (_, _) = stayer.request("joinRoom", json!({ "roomId": "a" })).await;
    assert_eq!(s.node.local_client_count(), 2);
    assert!(s.node.is_joined("7", "chat", Some("a")));
    assert!(s.node.is_joined("7", "chat", Some("b")));
    assert_eq!(s.node.room_count("chat", Match::Exact), 2);

    leaver.close(4001).await;
    let closed = s.next_close().await;
    assert_eq!(
        (closed.code, closed.socket_id.as_deref()),
        (4001, Some("7"))
    );

    assert!(s.node.socket("7").is_none());
    assert_eq!(s.node.local_client_count(), 1);
    assert_eq!(s.node.connection_count(), 1);
    assert!(!s.node.is_joined("7", "chat", None));
    assert!(s.node.joined_rooms("7", None).is_empty());
    assert_eq!(
        s.node.room_count("chat", Match::Exact),
        1,
        "room a keeps id 8"
    );
    assert!(s.node.is_joined("8", "chat", Some("a")));

    stayer.close(4001).await;
    let closed = s.next_close().await;
    assert_eq!(closed.socket_id.as_deref(), Some("8"));
    assert_eq!(s.node.local_client_count(), 0);
    assert_eq!(s.node.connection_count(), 0);
    assert_eq!(s.node.room_count("chat", Match::Exact), 0);
    assert!(!s.node.is_joined("8", "chat", None));
    assert_eq!(
        s.losses(),
        MetricsSnapshot::default(),
        "a clean disconnect drops nothing"
    );
}

// ----- slow and dead peers ---------------------------------------------------------------

/// Reads `client`'s pushes in a task of its own: each must be `event` with a `seq`, which is
/// passed on, until a `stop` push ends the task and hands the client back.
fn read_seqs(
    mut client: TestClient,
    event: &'static str,
) -> (
    tokio::task::JoinHandle<TestClient>,
    mpsc::UnboundedReceiver<u64>,
) {
    let (seq_tx, seqs) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        loop {
            let (name, payload) = client.recv_push().await;
            if name == "stop" {
                return client;
            }
            assert_eq!(name, event);
            let _ = seq_tx.send(payload["seq"].as_u64().expect("seq"));
        }
    });
    (reader, seqs)
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_others_get_every_broadcast() {
    let mut s = Server::start(Node::builder(), WsConfig::default().outbound_queue(16)).await;
    let fast = s.client("fast").await;
    let _slow = RawClient::connect_to(s.addr(), "/?id=slow", Some(4096)).await;
    s.wait_bound("fast").await;
    s.wait_bound("slow").await;

    // The fast client is read all along, by its own task.
    let (reader, mut seqs) = read_seqs(fast, "big");

    let blob = "x".repeat(64 * 1024);
    let mut dropped_at = None;
    let max_broadcasts = 500;
    for seq in 0..max_broadcasts {
        let delivery = s
            .node
            .broadcast()
            .emit("big", &json!({ "seq": seq, "blob": blob }))
            .await
            .expect("broadcast");
        assert!(
            delivery.local >= 1,
            "the fast client is always delivered to"
        );
        let got = timeout(WAIT, seqs.recv())
            .await
            .expect("the fast client keeps up")
            .expect("the fast client's reader ended");
        assert_eq!(got, seq, "the fast client gets every broadcast, in order");
        if dropped_at.is_none() && s.metrics().slow_consumer_closes >= 1 {
            dropped_at = Some(seq);
        }
        // Keep broadcasting a while after the drop.
        if dropped_at.is_some_and(|at| seq >= at + 20) {
            break;
        }
    }
    let dropped_at = dropped_at.expect("the slow client was dropped");
    assert!(dropped_at < max_broadcasts - 20);

    let closed = s.next_close().await;
    assert_eq!(closed.socket_id.as_deref(), Some("slow"));
    assert_eq!((closed.code, &*closed.reason), (1008, "slow consumer"));
    assert_eq!(s.metrics().slow_consumer_closes, 1);
    assert!(s.node.socket("slow").is_none());
    assert_eq!(s.node.connection_count(), 1);

    s.node
        .to("fast")
        .emit("stop", &json!(null))
        .await
        .expect("to_socket_id");
    let mut fast = timeout(WAIT, reader)
        .await
        .expect("reader stops")
        .expect("reader did not panic");
    assert_still_served(&mut fast).await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_at_the_byte_bound_with_a_small_send_buffer() {
    let config = WsConfig::default()
        .outbound_bytes(64 * 1024)
        .send_buffer(Some(4096));
    let mut s = Server::start(Node::builder(), config).await;
    let fast = s.client("fast").await;
    let _slow = RawClient::connect_to(s.addr(), "/?id=slow", Some(4096)).await;
    s.wait_bound("fast").await;
    s.wait_bound("slow").await;

    // The fast client is read all along, by its own task.
    let (reader, mut seqs) = read_seqs(fast, "chunk");

    // 8 KiB pushes, far below the frame bound (1024): only the byte bound can drop the slow
    // client.
    let blob = "x".repeat(8 * 1024);
    let mut dropped_at = None;
    let max_pushes = 2000;
    for seq in 0..max_pushes {
        let payload = json!({ "seq": seq, "blob": blob });
        if dropped_at.is_none() {
            let sent = s.node.to("slow").emit("chunk", &payload).await;
            assert!(sent.is_ok(), "push {seq} to the slow client: {sent:?}");
        }
        s.node
            .to("fast")
            .emit("chunk", &payload)
            .await
            .expect("push to the fast client");
        let got = timeout(WAIT, seqs.recv())
            .await
            .expect("the fast client keeps up")
            .expect("the fast client's reader ended");
        assert_eq!(got, seq, "the fast client gets every push, in order");
        if dropped_at.is_none() && s.metrics().slow_consumer_closes >= 1 {
            dropped_at = Some(seq);
        }
        // Keep pushing to the fast client a while after the drop.
        if dropped_at.is_some_and(|at| seq >= at + 20) {
            break;
        }
    }
    let dropped_at = dropped_at.expect("the slow client was dropped");
    // 64 KiB queued plus a few KiB in each kernel buffer: about ten pushes. With the kernel's
    // default send buffer (auto-tuned to MiBs) it would take hundreds.
    assert!(
        dropped_at < 64,
        "dropped only after {dropped_at} pushes of 8 KiB"
    );

    let closed = s.next_close().await;
    assert_eq!(closed.socket_id.as_deref(), Some("slow"));
    assert_eq!((closed.code, &*closed.reason), (1008, "slow consumer"));
    assert_eq!(s.metrics().slow_consumer_closes, 1);
    assert!(s.node.socket("slow").is_none());
    assert_eq!(s.node.connection_count(), 1);

    s.node
        .to("fast")
        .emit("stop", &json!(null))
        .await
        .expect("to_socket_id");
    let mut fast = timeout(WAIT, reader)
        .await
        .expect("reader stops")
        .expect("reader did not panic");
    assert_still_served(&mut fast).await;
}

#[tokio::test]
async fn a_peer_that_never_answers_pings_is_terminated() {
    let interval = Duration::from_millis(200);
    let mut s = Server::start(
        Node::builder().server_ping_interval(Some(interval)),
        WsConfig::default(),
    )
    .await;
    let pongs = Arc::new(AtomicUsize::new(0));
    let counted = pongs.clone();
    s.node.on_system(system::Pong, move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        async {}
    });
    let mut alive = s.client("alive").await;
    let _dead = RawClient::connect_to(s.addr(), "/?id=dead", None).await;
    s.wait_bound("dead").await;

    // Keep reading the tungstenite client (it answers pings while read) while the other one
    // is found dead.
    let deadline = Instant::now() + interval * 6;
    let (closed, idle) = tokio::join!(s.next_close(), alive.recv_until(deadline));
    assert_eq!(closed.socket_id.as_deref(), Some("dead"));
    assert_eq!((closed.code, &*closed.reason), (1006, "terminated"));
    assert_eq!(idle, None, "the answering client got nothing but pings");

    assert_eq!(s.metrics().dead_connections, 1);
    assert!(pongs.load(Ordering::SeqCst) >= 1, "pings were answered");
    assert!(s.node.socket("dead").is_none());
    assert_eq!(s.node.connection_count(), 1);
    assert_still_served(&mut alive).await;
}

#[tokio::test]
async fn a_connection_stopped_during_its_connection_handler_is_still_cleaned_up() {
    // Regression: stopping a connection while its connection handler still ran (here: the
    // close timeout expired) cancelled the handler and never reported the disconnect, so the
    // node kept the connection and its binding forever.
    let node = Node::builder().build().await.expect("node builds");
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let n = node.clone();
    node.on_system(system::Connection, move |socket| {
        let n = n.clone();
        let mut release = release_rx.clone();
        let done_tx = done_tx.clone();
        async move {
            n.bind(&socket, "slow-auth").expect("bind");
            socket.close(4011, "Auth failure");
            // A slow authentication back end, still busy after the connection is gone.
            let _ = release.wait_for(|released| *released).await;
            let _ = done_tx.send(());
        }
    });
    let config = WsConfig::default().close_timeout(Duration::from_millis(100));
    let mut s = Server::serve(node, config).await;

    let client = TestClient::with_id(s.addr(), "x").await;
    // The drain ends when the server drops the connection, which it does after giving up on
    // the (not yet reading) reader.
    assert_eq!(
        client.expect_close_then_drain().await,
        (4011, "Auth failure".to_owned())
    );
    release_tx.send(true).expect("handler waiting");
    next(&mut done, "the connection handler finished").await;
    let closed = s.next_close().await;
    assert_eq!(
        (closed.code, closed.socket_id.as_deref()),
        (4011, Some("slow-auth"))
    );
    assert_eq!(s.node.connection_count(), 0);
    assert_eq!(s.node.local_client_count(), 0);
}

#[tokio::test]
async fn a_panicking_connection_handler_does_not_leak_or_stop_the_connection() {
    let node = Node::builder().build().await.expect("node builds");
    // A handler that only panics has no output type of its own: `()` is named.
    node.on_system::<_, _, _, ()>(system::Connection, |_socket| async {
        panic!("handler bug")
    });
    crosswire::demo::install(&node);
    let mut server = Server::serve(node, WsConfig::default()).await;
    let mut client = TestClient::with_id(server.addr(), "9").await;
    server.wait_bound("9").await;
    assert_still_served(&mut client).await;
    client.close(1000).await;
    let closed = server.next_close().await;
    assert_eq!(closed.socket_id.as_deref(), Some("9"));
    assert_eq!(server.node.connection_count(), 0);
    assert_eq!(server.node.local_client_count(), 0);
}

// ----- frame-level rules ------------------------------------------------------------------

#[tokio::test]
async fn frames_sent_right_behind_the_upgrade_request_are_answered() {
    let mut s = Server::start(Node::builder(), WsConfig::default()).await;
    // One write: the server reads the frame together with the request.
    let request = Frame::text(r#"{"event":"say","payload":1,"callbackId":"c"}"#).encode();
    let mut client = RawClient::connect_with_early(s.addr(), "/?id=eager", &request).await;
    s.wait_bound("eager").await;
    let (_, opcode, reply) = client.read_frame().await;
    assert_eq!(opcode, 1);
    let reply: Value = serde_json::from_slice(&reply).expect("reply JSON");
    assert_eq!(reply["callbackId"], "c");
    assert_eq!(reply["payload"]["echo"], 1);
}

#[tokio::test]
async fn a_ping_is_answered_and_an_unmasked_frame_closes_with_1002() {
    let mut s = Server::start(Node::builder(), WsConfig::default()).await;
    let mut client = RawClient::connect_to(s.addr(), "/?id=raw", None).await;
    s.wait_bound("raw").await;

    client.send(&Frame::ping("are you there").encode()).await;
    assert_eq!(
        client.read_frame().await,
        (true, 0xA, b"are you there".to_vec())
    );

    // Clients must mask their frames (RFC 6455 5.1).
    client.send(&Frame::text("{}").unmasked().encode()).await;
    let (_, opcode, payload) = client.read_frame().await;
    assert_eq!((opcode, &payload[..2]), (0x8, &1002u16.to_be_bytes()[..]));
    let closed = s.next_close().await;
    assert_eq!(
        (closed.code, closed.socket_id.as_deref()),
        (1002, Some("raw"))
    );
    assert_eq!(s.node.connection_count(), 0);
}

#[tokio::test]
async fn a_handler_returning_an_error_is_counted_and_the_connection_goes_on() {
    let node = Node::builder().build().await.expect("node builds");
    crosswire::demo::install(&node);
    node.on("score", |ev| async move {
        let score: u32 = ev.json()?;
        ev.reply(&(score + 1))
    });
    let mut server = Server::serve(node.clone(), WsConfig::default()).await;
    let mut client = TestClient::with_id(server.addr(), "7").await;
    server.wait_bound("7").await;
    let (reply, _) = client.request("score", json!(41)).await;
    assert_eq!(reply, json!(42));
    assert_eq!(node.metrics_snapshot().handler_errors, 0);
    // Not a number: the handler's `?` returns the decode error, which is counted.
    client.emit("score", json!("many")).await;
    assert_still_served(&mut client).await;
    assert_eq!(node.metrics_snapshot().handler_errors, 1);
}
