//! The node's own limits (rooms per socket id, event-name length, pending requests per
//! connection) and the close event that does not wait for the broker, against a real server
//! and real clients.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use crosswire::broker::{Broker, Inbound};
use crosswire::memory::MemoryHub;
use crosswire::ws::{WsConfig, WsServer};
use crosswire::{
    system, BrokerError, ClientEvent, CloseEvent, Error, MetricsSnapshot, Node, NodeBuilder,
    DEFAULT_MAX_EVENT_NAME_LEN, DEFAULT_MAX_PENDING_REQUESTS, DEFAULT_MAX_ROOMS_PER_SOCKET,
};
use serde_json::{json, Value};
use support::client::{Received, TestClient};
use support::WAIT;
use tokio::sync::mpsc;
use tokio::time::timeout;

struct Server {
    node: Node,
    server: WsServer,
    closes: mpsc::UnboundedReceiver<CloseEvent>,
}

impl Server {
    /// A node with the demo event set (identity from `?id=`), served on a loopback port.
    async fn start(builder: NodeBuilder) -> Server {
        let node = builder.build().await.expect("node builds");
        crosswire::demo::install(&node);
        let (tx, closes) = mpsc::unbounded_channel();
        node.on_system(system::Close, move |event| {
            let _ = tx.send(event);
            async {}
        });
        let server = WsServer::bind("127.0.0.1:0", node.clone(), WsConfig::default())
            .await
            .expect("server binds a loopback port");
        Server {
            node,
            server,
            closes,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// A demo client with `?id=ID`, served (and therefore bound) before it is returned.
    async fn client(&self, id: &str) -> TestClient {
        TestClient::served(self.addr(), id).await
    }

    fn metrics(&self) -> MetricsSnapshot {
        self.node.metrics_snapshot()
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

/// The demo's `joinRoom`; returns its reply message.
async fn join(client: &mut TestClient, room: &str) -> String {
    let (reply, _) = client.request("joinRoom", json!({ "roomId": room })).await;
    reply["msg"].as_str().unwrap_or_default().to_owned()
}

/// Sends a request frame with callbackId `cb`, without waiting for anything.
async fn send_request(client: &mut TestClient, event: &str, cb: &str) {
    let frame = json!({ "event": event, "payload": cb, "callbackId": cb });
    client.send_text(&frame.to_string()).await;
}

/// Registers `event` on `node`: each call is reported on the returned channel by payload, and
/// a request is answered with its payload.
fn echo_event(node: &Node, event: &str) -> mpsc::UnboundedReceiver<Value> {
    let (tx, rx) = mpsc::unbounded_channel();
    node.on(event, move |ev| {
        let _ = tx.send(ev.value());
        if ev.wants_reply() {
            let _ = ev.reply(&ev.value());
        }
        async {}
    });
    rx
}

/// Registers the plain event `probe`, reported on the returned channel: sent after other
/// frames, its arrival proves that the node has dealt with them.
fn probe(node: &Node) -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    node.on("probe", move |_| {
        let _ = tx.send(());
        async {}
    });
    rx
}

// ----- close events do not wait for the broker ---------------------------------------------

/// A MemoryHub broker whose `unsubscribe` never completes (a broker that hangs).
struct StuckUnsubscribe {
    inner: Arc<dyn Broker>,
    unsubscribes: AtomicUsize,
}

#[async_trait]
impl Broker for StuckUnsubscribe {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BrokerError> {
        self.inner.publish(channel, payload).await
    }
    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.inner.subscribe(channel).await
    }
    async fn unsubscribe(&self, _channel: &str) -> Result<(), BrokerError> {
        self.unsubscribes.fetch_add(1, Ordering::SeqCst);
        std::future::pending().await
    }
    fn take_inbound(&self) -> Option<Inbound> {
        self.inner.take_inbound()
    }
}

#[tokio::test]
async fn the_close_event_does_not_wait_for_the_broker() {
    let hub = MemoryHub::new();
    let broker = Arc::new(StuckUnsubscribe {
        inner: hub.broker(),
        unsubscribes: AtomicUsize::new(0),
    });
    let mut s = Server::start(
        Node::builder()
            .server_name("a")
            .broker(broker.clone() as Arc<dyn Broker>),
    )
    .await;
    let mut client = s.client("1").await;
    assert_eq!(
        join(&mut client, "r1").await,
        "Successfully joined the roomId:r1"
    );
    assert_eq!(hub.subscriber_count("ws:chat"), 1);

    client.close(4001).await;
    let closed = timeout(WAIT, s.closes.recv())
        .await
        .expect("the close event fires although the broker never confirms the unsubscribe")
        .expect("close listener alive");
    assert_eq!(
        (closed.code, closed.socket_id.as_deref()),
        (4001, Some("1"))
    );
    // The memberships went at once; the channel's unsubscribe started before the event and
    // goes on in the background.
    assert!(s.node.socket("1").is_none());
    assert!(!s.node.is_joined("1", "chat", None));
    assert_eq!(s.node.room_count("chat", Default::default()), 0);
    assert_eq!(broker.unsubscribes.load(Ordering::SeqCst), 1);
}

// ----- rooms per socket id -----------------------------------------------------------------

#[tokio::test]
async fn joins_past_max_rooms_per_socket_are_refused_and_counted() {
    let s = Server::start(Node::builder().max_rooms_per_socket(3)).await;
    let mut client = s.client("1").await;
    for room in ["a", "b", "c"] {
        assert_eq!(
            join(&mut client, room).await,
            format!("Successfully joined the roomId:{room}")
        );
    }
    // At the limit: joining a room it is already in is no new room.
    assert_eq!(
        join(&mut client, "a").await,
        "Successfully joined the roomId:a"
    );
    assert_eq!(s.metrics().limit_rooms, 0);

    // One over.
    let refused = join(&mut client, "d").await;
    assert!(
        refused.starts_with("Failed to join the room:") && refused.contains('3'),
        "{refused}"
    );
    assert!(!s.node.is_joined("1", "chat", Some("d")));
    assert_eq!(s.metrics().limit_rooms, 1);

    // The same through the API, in any namespace: a typed error with the limit.
    let error = s.node.join_room("game", "x", "1").await.unwrap_err();
    assert!(
        matches!(&error, Error::TooManyRooms { socket_id, limit: 3 } if socket_id == "1"),
        "{error:?}"
    );
    assert_eq!(s.metrics().limit_rooms, 2);
    assert_eq!(s.node.joined_rooms("1", None)["chat"].len(), 3);

    // The connection keeps working, and leaving a room makes space for another.
    assert_still_served(&mut client).await;
    let (left, _) = client.request("leaveRoom", json!({ "roomId": "a" })).await;
    assert!(left["msg"].as_str().is_some(), "{left}");
    assert_eq!(
        join(&mut client, "d").await,
        "Successfully joined the roomId:d"
    );
    // Other socket ids have their own count.
    let mut other = s.client("2").await;
    assert_eq!(
        join(&mut other, "e").await,
        "Successfully joined the roomId:e"
    );
    assert_eq!(s.metrics().limit_rooms, 2);
}

#[tokio::test]
async fn max_rooms_per_socket_defaults_to_1024() {
    assert_eq!(DEFAULT_MAX_ROOMS_PER_SOCKET, 1024);
    let s = Server::start(Node::builder()).await;
    assert_eq!(s.node.options().max_rooms_per_socket(), 1024);
    let _client = s.client("1").await;
    for room in 0..1024 {
        s.node
            .join_room("chat", &room.to_string(), "1")
            .await
            .unwrap_or_else(|e| panic!("room {room}: {e}"));
    }
    let error = s.node.join_room("chat", "1024", "1").await.unwrap_err();
    assert!(matches!(error, Error::TooManyRooms { limit: 1024, .. }));
    assert_eq!(s.metrics().limit_rooms, 1);
}

// ----- event-name length -------------------------------------------------------------------

#[tokio::test]
async fn event_names_longer_than_max_event_name_len_are_dropped_and_counted() {
    let s = Server::start(Node::builder().max_event_name_len(8)).await;
    // Bytes, not characters: "éééé" is 8 bytes, "ééééé" is 10.
    let names = ["e2345678", "éééé", "e23456789", "ééééé"];
    let mut calls: Vec<_> = names.iter().map(|n| echo_event(&s.node, n)).collect();
    let mut client = s.client("1").await;

    for (name, calls) in names[..2].iter().zip(&mut calls[..2]) {
        let (reply, _) = client.request(name, json!(name)).await;
        assert_eq!(reply, json!(name));
        assert_eq!(next(calls, name).await, json!(name));
    }
    for name in &names[2..] {
        send_request(&mut client, name, name).await;
        client.emit(name, json!("plain")).await;
    }
    // No reply to them arrives before this one.
    assert_still_served(&mut client).await;
    for (name, calls) in names[2..].iter().zip(&mut calls[2..]) {
        assert!(calls.try_recv().is_err(), "the handler of {name} ran");
    }
    let m = s.metrics();
    assert_eq!(
        (m.limit_event_name, m.malformed_frames, m.unhandled_events),
        (4, 0, 0)
    );
}

#[tokio::test]
async fn max_event_name_len_defaults_to_128_bytes() {
    assert_eq!(DEFAULT_MAX_EVENT_NAME_LEN, 128);
    let s = Server::start(Node::builder()).await;
    let longest = "x".repeat(128);
    let too_long = "x".repeat(129);
    let mut longest_calls = echo_event(&s.node, &longest);
    let mut too_long_calls = echo_event(&s.node, &too_long);
    let mut client = s.client("1").await;

    let (reply, _) = client.request(&longest, json!(1)).await;
    assert_eq!(reply, json!(1));
    next(&mut longest_calls, "128 bytes").await;
    send_request(&mut client, &too_long, "over").await;
    assert_still_served(&mut client).await;
    assert!(too_long_calls.try_recv().is_err());
    assert_eq!(s.metrics().limit_event_name, 1);
}

// ----- pending requests --------------------------------------------------------------------

/// Registers `hold`: its handler keeps each event (and so its reply handle) without
/// answering, and reports it on the returned channel.
fn hold_event(
    node: &Node,
) -> (
    Arc<Mutex<Vec<ClientEvent>>>,
    mpsc::UnboundedReceiver<String>,
) {
    let held = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::unbounded_channel();
    let keep = held.clone();
    node.on("hold", move |ev: ClientEvent| {
        let _ = tx.send(ev.value().as_str().unwrap_or_default().to_owned());
        keep.lock().expect("held events").push(ev);
        async {}
    });
    (held, rx)
}

#[tokio::test]
async fn requests_past_max_pending_requests_are_dropped_and_counted() {
    let s = Server::start(Node::builder().max_pending_requests(2)).await;
    let (held, mut holds) = hold_event(&s.node);
    let mut probes = probe(&s.node);
    let mut client = s.client("1").await;

    // At the limit: both requests run.
    for cb in ["h1", "h2"] {
        send_request(&mut client, "hold", cb).await;
        assert_eq!(next(&mut holds, "held request").await, cb);
    }
    // One over: not run, counted. A plain event is no request, so it still runs.
    send_request(&mut client, "hold", "h3").await;
    send_request(&mut client, "say", "s1").await;
    client.emit("probe", json!(null)).await;
    next(&mut probes, "the plain event").await;
    assert!(holds.try_recv().is_err(), "the request over the limit ran");
    assert_eq!(s.metrics().limit_pending_requests, 2);

    // Answering one frees its place.
    let first = held.lock().expect("held events").remove(0);
    first.reply(&json!("late")).expect("the reply is queued");
    assert_eq!(
        client.recv().await,
        Received::Json(json!({ "callbackId": "h1", "payload": "late" }))
    );
    assert_still_served(&mut client).await;

    // Dropping an unanswered one (its handle gone) frees its place too.
    held.lock().expect("held events").clear();
    for cb in ["h4", "h5"] {
        send_request(&mut client, "hold", cb).await;
        assert_eq!(next(&mut holds, "held request").await, cb);
    }
    send_request(&mut client, "hold", "h6").await;
    client.emit("probe", json!(null)).await;
    next(&mut probes, "the plain event").await;
    assert!(holds.try_recv().is_err(), "the request over the limit ran");
    assert_eq!(s.metrics().limit_pending_requests, 3);

    // Another connection has its own count.
    let mut other = s.client("2").await;
    assert_still_served(&mut other).await;
    held.lock().expect("held events").clear();
    assert_still_served(&mut client).await;
    assert_eq!(s.metrics().limit_pending_requests, 3);
}

#[tokio::test]
async fn max_pending_requests_defaults_to_256() {
    assert_eq!(DEFAULT_MAX_PENDING_REQUESTS, 256);
    let s = Server::start(Node::builder()).await;
    let (_held, mut holds) = hold_event(&s.node);
    let mut probes = probe(&s.node);
    let mut client = s.client("1").await;
    for n in 0..257 {
        send_request(&mut client, "hold", &format!("h{n}")).await;
    }
    client.emit("probe", json!(null)).await;
    next(&mut probes, "the plain event").await;
    let mut ran = 0;
    while holds.try_recv().is_ok() {
        ran += 1;
    }
    assert_eq!(ran, 256);
    assert_eq!(s.metrics().limit_pending_requests, 1);
}

// ----- each limit is logged once per connection --------------------------------------------

/// Everything logged at warning level by this test binary, once the first test asks for it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("captured log").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The process-wide capture. Global (not per thread): a thread-local subscriber misses
    /// events whose callsite another test's thread registered first.
    fn global() -> Captured {
        static LOG: OnceLock<Captured> = OnceLock::new();
        LOG.get_or_init(|| {
            let log = Captured::default();
            let writer = log.clone();
            tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .with_max_level(tracing::Level::WARN)
                .init();
            log
        })
        .clone()
    }

    /// Lines that contain every one of `texts`.
    fn lines_with(&self, texts: &[&str]) -> usize {
        let log = self.0.lock().expect("captured log");
        String::from_utf8_lossy(&log)
            .lines()
            .filter(|line| texts.iter().all(|text| line.contains(text)))
            .count()
    }
}

#[tokio::test]
async fn each_limit_is_logged_once_per_connection() {
    let log = Captured::global();
    let s = Server::start(
        Node::builder()
            .max_rooms_per_socket(1)
            .max_event_name_len(8)
            .max_pending_requests(1),
    )
    .await;
    let (held, mut holds) = hold_event(&s.node);
    let mut probes = probe(&s.node);
    // Socket ids no other test uses: the log is shared by the whole test binary.
    let ids = ["logged-once-1", "logged-once-2"];
    for id in ids {
        let mut client = s.client(id).await;
        assert_eq!(
            join(&mut client, "a").await,
            "Successfully joined the roomId:a"
        );
        for _ in 0..3 {
            assert!(join(&mut client, "b").await.starts_with("Failed"));
            client.emit("too_long_a_name", json!(1)).await;
        }
        send_request(&mut client, "hold", "h1").await;
        next(&mut holds, "held request").await;
        for _ in 0..3 {
            send_request(&mut client, "hold", "h2").await;
        }
        client.emit("probe", json!(null)).await;
        next(&mut probes, "the plain event").await;
        held.lock().expect("held events").clear();
    }
    let m = s.metrics();
    assert_eq!(
        (m.limit_rooms, m.limit_event_name, m.limit_pending_requests),
        (6, 6, 6)
    );
    for limit in [
        "max_rooms_per_socket",
        "max_event_name_len",
        "max_pending_requests",
    ] {
        for id in ids {
            assert_eq!(log.lines_with(&[limit, id]), 1, "{limit} for {id}");
        }
    }
}

#[cfg(feature = "testing")]
#[tokio::test(start_paused = true)]
async fn socket_ids_longer_than_max_socket_id_len_are_refused() {
    let cluster = crosswire::testing::TestCluster::new(["a"], |_| {})
        .await
        .expect("cluster");
    let node = cluster.node("a");
    let client = cluster.client("a").connect().await;
    let socket = client.socket().expect("the connection is open");
    let longest = "é".repeat(crosswire::MAX_SOCKET_ID_LEN / 2); // 256 bytes, 128 characters
    let too_long = format!("{longest}x");
    let refused = node.bind(&socket, &too_long);
    assert!(
        matches!(refused, Err(crosswire::Error::InvalidName { .. })),
        "{refused:?}"
    );
    assert!(node.socket(&too_long).is_none());
    assert_eq!(socket.socket_id(), None);
    node.bind(&socket, &longest)
        .expect("an id of exactly the limit binds");
    assert!(node.socket(&longest).is_some());
}
