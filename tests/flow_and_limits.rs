//! Flow control, per-connection limits and graceful shutdown, against a real server and real
//! clients: what the client sees, what the node counts, and that nothing accepted is lost.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crosswire::memory::MemoryHub;
use crosswire::ws::{OverRate, RateLimit, WsConfig, WsServer};
use crosswire::{system, CloseEvent, CrossReply, Error, Node, NodeBuilder};
use serde_json::json;
use support::client::{Received, TestClient};
use support::raw::{Frame, RawClient};
use support::WAIT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::timeout;

/// A demo node served on a loopback port, with its close events.
struct Served {
    node: Node,
    server: WsServer,
    closes: mpsc::UnboundedReceiver<CloseEvent>,
}

async fn serve(builder: NodeBuilder, config: WsConfig) -> Served {
    let node = builder.build().await.expect("node builds");
    crosswire::demo::install(&node);
    let (tx, closes) = mpsc::unbounded_channel();
    node.on_system(system::Close, move |event| {
        let _ = tx.send(event);
        async {}
    });
    let server = WsServer::bind("127.0.0.1:0", node.clone(), config)
        .await
        .expect("bind");
    Served {
        node,
        server,
        closes,
    }
}

impl Served {
    fn url(&self, query: &str) -> String {
        format!("ws://{}/{query}", self.server.local_addr())
    }

    async fn next_close(&mut self) -> CloseEvent {
        timeout(WAIT, self.closes.recv())
            .await
            .expect("a close event in time")
            .expect("close listener alive")
    }
}

/// A `say` request frame.
fn say(i: usize) -> String {
    json!({"event": "say", "payload": i, "callbackId": i.to_string()}).to_string()
}

/// Reads until `n` replies arrived; returns their callback ids in order.
async fn replies(client: &mut TestClient, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    while ids.len() < n {
        match client.recv().await {
            Received::Json(v) if v.get("callbackId").is_some() => {
                ids.push(v["callbackId"].as_str().unwrap_or_default().to_owned())
            }
            Received::Closed(code, reason) => panic!("closed {code} {reason} after {ids:?}"),
            _ => {}
        }
    }
    ids
}

#[tokio::test]
async fn handlers_in_flight_are_bounded_per_connection_and_nothing_is_lost() {
    const LIMIT: usize = 8;
    const REQUESTS: usize = 200;
    let node = Node::builder()
        .max_handlers_in_flight(LIMIT)
        .build()
        .await
        .expect("node");
    crosswire::demo::install(&node);
    let gate = Arc::new(Semaphore::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    node.on("slow", {
        let (gate, running, most) = (gate.clone(), running.clone(), most.clone());
        move |ev| {
            let (gate, running, most) = (gate.clone(), running.clone(), most.clone());
            let started_tx = started_tx.clone();
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let _ = started_tx.send(());
                let _permit = gate.acquire().await;
                running.fetch_sub(1, Ordering::SeqCst);
                let _ = ev.reply(&ev.value());
            }
        }
    });
    let server = WsServer::bind("127.0.0.1:0", node.clone(), WsConfig::default())
        .await
        .expect("bind");
    let mut client = TestClient::served(server.local_addr(), "flood").await;
    for i in 0..REQUESTS {
        let frame = json!({"event": "slow", "payload": i, "callbackId": i.to_string()});
        client.send_text(&frame.to_string()).await;
    }
    for _ in 0..LIMIT {
        timeout(WAIT, started.recv())
            .await
            .expect("handler started");
    }
    // The connection is paused at the limit: a heartbeat sent now is not even read.
    client.send_text("").await;
    assert!(
        client
            .recv_within(Duration::from_millis(300))
            .await
            .is_none(),
        "nothing is read while the handlers in flight are at the limit"
    );
    assert_eq!(running.load(Ordering::SeqCst), LIMIT);
    assert_eq!(node.metrics_snapshot().read_pauses, 1);

    gate.add_permits(REQUESTS);
    let mut answered = 0;
    while answered < REQUESTS {
        match client.recv().await {
            Received::Json(v) if v.get("callbackId").is_some() => answered += 1,
            Received::Closed(code, reason) => panic!("closed {code} {reason}"),
            _ => {}
        }
    }
    assert!(
        most.load(Ordering::SeqCst) <= LIMIT,
        "never more than {LIMIT} at once"
    );
    assert_eq!(node.connections()[0].handlers_in_flight(), 0);
}

/// A node whose connection handler binds `?id=` when there is one and leaves the connection
/// unbound otherwise, with a `say` echo.
async fn lenient(builder: NodeBuilder, config: WsConfig) -> Served {
    let node = builder.build().await.expect("node builds");
    let n = node.clone();
    node.on_system(system::Connection, move |socket| {
        let n = n.clone();
        async move {
            if let Some(id) = socket.request().param("id").map(str::to_owned) {
                let _ = n.bind(&socket, &id);
            }
        }
    });
    node.on("say", |ev| async move {
        let _ = ev.reply(&json!({"echo": ev.value()}));
    });
    let (tx, closes) = mpsc::unbounded_channel();
    node.on_system(system::Close, move |event| {
        let _ = tx.send(event);
        async {}
    });
    let server = WsServer::bind("127.0.0.1:0", node.clone(), config)
        .await
        .expect("bind");
    Served {
        node,
        server,
        closes,
    }
}

#[tokio::test]
async fn an_unbound_connection_is_closed_with_4011_at_the_auth_timeout() {
    let builder = Node::builder().auth_timeout(Some(Duration::from_millis(300)));
    let mut s = lenient(builder, WsConfig::default()).await;
    let mut bound = TestClient::served(s.server.local_addr(), "7").await;
    let mut anonymous = TestClient::connect(&s.url("?who=nobody")).await;
    assert_eq!(
        anonymous.expect_close().await,
        (4011, "authentication timeout".to_owned())
    );
    let closed = s.next_close().await;
    assert_eq!((closed.code, closed.socket_id), (4011, None));
    assert_eq!(s.node.metrics_snapshot().auth_timeouts, 1);
    // The bound connection, older than the timeout, is still served.
    let (reply, _) = bound.request("say", json!("still")).await;
    assert_eq!(reply["echo"], "still");
    assert_eq!(s.node.connection_count(), 1);
}

#[tokio::test]
async fn a_connection_handler_that_never_returns_is_aborted_and_closes_1011() {
    let node = Node::builder()
        .connection_handler_timeout(Duration::from_millis(200))
        .build()
        .await
        .expect("node");
    node.on_system(system::Connection, |_socket| std::future::pending::<()>());
    let (tx, mut closes) = mpsc::unbounded_channel();
    node.on_system(system::Close, move |event: CloseEvent| {
        let _ = tx.send(event.code);
        async {}
    });
    let server = WsServer::bind("127.0.0.1:0", node.clone(), WsConfig::default())
        .await
        .expect("bind");
    let mut client = TestClient::connect(&format!("ws://{}/", server.local_addr())).await;
    assert_eq!(
        client.expect_close().await,
        (1011, "connection handler timed out".to_owned())
    );
    assert_eq!(
        timeout(WAIT, closes.recv()).await.expect("close event"),
        Some(1011)
    );
    assert_eq!(node.metrics_snapshot().connection_handler_timeouts, 1);
    assert_eq!(node.connection_count(), 0);
}

#[tokio::test]
async fn over_the_rate_messages_are_throttled_dropped_or_closed_as_configured() {
    // Throttled: every request is answered, in order.
    let throttled = WsConfig::default().rate_limit(Some(RateLimit::per_second(200).burst(10)));
    let s = serve(Node::builder(), throttled).await;
    let mut client = TestClient::served(s.server.local_addr(), "t").await;
    for i in 0..60 {
        client.send_text(&say(i)).await;
    }
    let expected: Vec<String> = (0..60).map(|i| i.to_string()).collect();
    assert_eq!(replies(&mut client, 60).await, expected);
    let m = s.node.metrics_snapshot();
    assert!(m.limit_rate > 0 && m.read_pauses > 0, "{m:?}");

    // Dropped: the burst passes, the rest over the rate is dropped and counted.
    let dropping = RateLimit::per_second(1).burst(5).over(OverRate::Drop);
    let s = serve(
        Node::builder(),
        WsConfig::default().rate_limit(Some(dropping)),
    )
    .await;
    let mut client = TestClient::with_id(s.server.local_addr(), "d").await;
    for i in 0..20 {
        client.send_text(&say(i)).await;
    }
    let first = replies(&mut client, 5).await;
    assert_eq!(first, ["0", "1", "2", "3", "4"]);
    assert!(client
        .recv_within(Duration::from_millis(300))
        .await
        .is_none());
    assert!(s.node.metrics_snapshot().limit_rate >= 14);

    // Closed: 1008 on the first message over the rate.
    let closing = RateLimit::per_second(1).burst(3).over(OverRate::Close);
    let mut s = serve(
        Node::builder(),
        WsConfig::default().rate_limit(Some(closing)),
    )
    .await;
    let mut client = TestClient::with_id(s.server.local_addr(), "c").await;
    for i in 0..10 {
        client.send_text(&say(i)).await;
    }
    assert_eq!(replies(&mut client, 3).await, ["0", "1", "2"]);
    assert_eq!(
        client.expect_close().await,
        (1008, "rate limit exceeded".to_owned())
    );
    assert_eq!(s.next_close().await.code, 1008);
}

#[tokio::test]
async fn past_max_connections_the_upgrade_is_answered_503() {
    let s = serve(
        Node::builder(),
        WsConfig::default().max_connections(Some(2)),
    )
    .await;
    let _a = TestClient::served(s.server.local_addr(), "a").await;
    let _b = TestClient::served(s.server.local_addr(), "b").await;
    let refused = TestClient::try_connect(&s.url("?id=c")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        Err(other) => panic!("expected HTTP 503, got {other}"),
        Ok(_) => panic!("a third connection was accepted"),
    }
    assert_eq!(s.node.metrics_snapshot().limit_connections, 1);
}

#[tokio::test]
async fn a_client_that_never_sends_its_upgrade_request_is_cut_off() {
    let s = serve(
        Node::builder(),
        WsConfig::default().upgrade_timeout(Duration::from_millis(200)),
    )
    .await;
    let mut silent = TcpStream::connect(s.server.local_addr())
        .await
        .expect("tcp");
    let mut buf = [0u8; 64];
    let read = timeout(WAIT, silent.read(&mut buf))
        .await
        .expect("closed in time");
    // hyper may answer 408 before closing; either way the connection ends.
    match read {
        Ok(0) | Err(_) => {}
        Ok(n) => {
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert!(head.starts_with("HTTP/1.1 408"), "{head}");
        }
    }
    assert_eq!(s.node.metrics_snapshot().upgrade_timeouts, 1);
}

#[tokio::test]
async fn a_client_that_sends_but_never_reads_is_paused_then_dropped_as_stalled() {
    let config = WsConfig::default()
        .send_buffer(Some(4096))
        .high_water(64 * 1024)
        .stall_timeout(Duration::from_millis(500))
        .rate_limit(None);
    let mut s = serve(Node::builder(), config).await;
    // Never reads after the upgrade, with a tiny receive buffer.
    let mut sender = RawClient::connect_to(s.server.local_addr(), "/?id=stall", Some(4096)).await;
    let big = "x".repeat(4000);
    let frame = Frame::text(json!({"event": "say", "payload": big, "callbackId": "c"}).to_string())
        .encode();
    // Write until the server stops reading and the kernel buffers are full.
    let mut written = 0usize;
    loop {
        match timeout(
            Duration::from_millis(500),
            sender.stream().write_all(&frame),
        )
        .await
        {
            Ok(Ok(())) => written += 1,
            Ok(Err(_)) | Err(_) => break,
        }
        assert!(written < 100_000, "the server never stopped reading");
    }
    let closed = s.next_close().await;
    assert_eq!((closed.code, &*closed.reason), (1008, "stalled"));
    let m = s.node.metrics_snapshot();
    assert_eq!((m.stalled_closes, m.slow_consumer_closes), (1, 0), "{m:?}");
    assert!(m.read_pauses >= 1);
    // Everyone else is still served.
    let mut other = TestClient::served(s.server.local_addr(), "other").await;
    let (reply, _) = other.request("say", json!(1)).await;
    assert_eq!(reply["echo"], 1);
}

#[tokio::test]
async fn shutdown_flushes_closes_with_1001_fails_pending_collections_and_unsubscribes() {
    let hub = MemoryHub::new();
    let a = Node::builder()
        .server_name("a")
        .broker(hub.broker())
        .build()
        .await
        .expect("a");
    let b = Node::builder()
        .server_name("b")
        .broker(hub.broker())
        .build()
        .await
        .expect("b");
    crosswire::demo::install(&a);
    let server = WsServer::bind("127.0.0.1:0", a.clone(), WsConfig::default())
        .await
        .expect("bind");
    let addr = server.local_addr();
    let mut clients = Vec::new();
    for id in 0..5 {
        clients.push(TestClient::served(addr, &id.to_string()).await);
    }
    // Queued right before the shutdown: every client gets it before the close.
    a.broadcast()
        .emit("last", &json!("words"))
        .await
        .expect("broadcast");
    // A collection waiting for a node that never answers.
    b.on_cross("never", |_ev| std::future::pending::<()>());
    let waiting = tokio::spawn({
        let a = a.clone();
        async move { a.emit_cross("never", &()).to(["b"]).collect().await }
    });
    while a.pending_cross_callbacks() == 0 {
        tokio::task::yield_now().await;
    }
    assert!(!a.subscribed_channels().is_empty());

    let report = server.shutdown_within(WAIT).await;
    assert_eq!((report.closed, report.dropped), (5, 0), "{report:?}");
    assert_eq!(report.cross_callbacks_failed, 1);
    for mut client in clients {
        assert_eq!(
            client.recv_push().await,
            ("last".to_owned(), json!("words"))
        );
        assert_eq!(
            client.expect_close().await,
            (1001, "server shutting down".to_owned())
        );
    }
    assert!(matches!(
        waiting.await.expect("task"),
        Err(Error::ShuttingDown)
    ));
    assert!(a.subscribed_channels().is_empty());
    assert_eq!(a.connection_count(), 0);
    assert!(matches!(
        a.emit_cross("x", &()).send().await,
        Err(Error::ShuttingDown)
    ));
    assert!(TestClient::try_connect(&format!("ws://{addr}/?id=late"))
        .await
        .is_err());
    let _ = CrossReply::ShutDown { unresponded: 0 };
}

/// A transport that records the closes the node asks for.
#[derive(Debug, Default, Clone)]
struct Recorded(Arc<std::sync::Mutex<Vec<u16>>>);

impl crosswire::transport::Transport for Recorded {
    fn send(&self, _frame: bytes::Bytes) -> Result<(), crosswire::transport::SendError> {
        Ok(())
    }
    fn ping(&self) {}
    fn close(&self, code: u16, _reason: &str) {
        self.0.lock().expect("closes").push(code);
    }
    fn terminate(&self) {}
}

#[tokio::test]
async fn a_connection_registered_during_shutdown_is_closed_at_once_and_upgrades_get_503() {
    let node = Node::builder().build().await.expect("node");
    crosswire::demo::install(&node);
    let acceptor = crosswire::ws::WsAcceptor::new(node.clone(), WsConfig::default());
    let report = node.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.dropped, 0);

    // An upgrade that completed after the sweep: the node closes it with 1001 at once,
    // without running its connection handlers (which would bind it).
    let late = Recorded::default();
    let request = crosswire::RequestInfo::parse("/?id=late", Default::default(), None);
    let connection = node
        .connect(request, std::sync::Arc::new(late.clone()))
        .await;
    assert_eq!(*late.0.lock().expect("closes"), [1001]);
    assert_eq!(connection.socket().socket_id(), None);

    // And the acceptor refuses new upgrades.
    let request = hyper::Request::get("/?id=1")
        .header("host", "x")
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .body(())
        .expect("request");
    assert_eq!(acceptor.accept(request).status(), 503);
}
