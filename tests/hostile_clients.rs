//! Clients that push a real server hard, seen through real client libraries (tokio-tungstenite
//! and Node's `ws`, see `tests/js/`):
//!
//! - a client still sending a message far above `WsConfig::max_message_size` must read the
//!   server's 1009 close frame and end with a closing handshake, not a reset or a broken pipe
//!   (RFC 6455 §7.1.1: the server goes on reading, and discarding, until the peer's close frame
//!   or a deadline before it closes TCP);
//! - a client that sends faster than it reads its replies, and another that reads slowly but
//!   steadily, must lose nothing (the server stops reading a connection while its outbound
//!   queue is high instead of dropping it as a slow consumer).
//!
//! The Node.js clients need `node` and `tests/js/node_modules`: run `scripts/test.sh`.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crosswire::ws::{WsConfig, WsServer};
use crosswire::{system, CloseEvent, MetricsSnapshot, Node};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::client::TestClient;
use support::node_js::run_script;
use support::WAIT;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Oversized messages sent against the default 1 MiB limit: twice it, and far above it (more
/// than any kernel buffers between client and server can hold, so the client is still
/// sending when the server refuses it).
const OVERSIZED: [usize; 2] = [2 << 20, 64 << 20];

/// How long one oversized client may take, connect to report.
const OVERSIZED_LIMIT: Duration = Duration::from_secs(30);

/// Makes the tests of this file run one at a time: each loads the machine (64 MiB messages, a
/// flood of broadcasts), and their timing should not depend on each other.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    TURN.get_or_init(|| tokio::sync::Mutex::new(()))
        .lock()
        .await
}

/// A node with the demo event set, served on a loopback port, its close events recorded.
struct Server {
    node: Node,
    server: WsServer,
    closes: mpsc::UnboundedReceiver<CloseEvent>,
}

impl Server {
    async fn start(config: WsConfig) -> Server {
        let node = Node::builder().build().await.expect("node builds");
        crosswire::demo::install(&node);
        let (tx, closes) = mpsc::unbounded_channel();
        node.on_system(system::Close, move |event| {
            let _ = tx.send(event);
            async {}
        });
        let server = WsServer::bind("127.0.0.1:0", node.clone(), config)
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

    /// The URL of a demo client bound to `id`.
    fn url(&self, id: &str) -> String {
        format!("ws://{}/?id={id}", self.addr())
    }

    /// The next close event, within `limit`.
    async fn next_close(&mut self, limit: Duration) -> CloseEvent {
        timeout(limit, self.closes.recv())
            .await
            .expect("a close event in time")
            .expect("close listener alive")
    }

    fn metrics(&self) -> MetricsSnapshot {
        self.node.metrics_snapshot()
    }

    /// Asserts that the server still serves a new client, then lets it go.
    async fn assert_serves_a_new_client(&self, id: &str) {
        TestClient::served(self.addr(), id).await.close(1000).await;
    }
}

/// A demo `say` event of exactly `len` bytes.
fn say_frame_of_len(len: usize) -> String {
    let empty = r#"{"event":"say","payload":""}"#;
    let pad = len.checked_sub(empty.len()).expect("len fits the frame");
    format!(r#"{{"event":"say","payload":"{}"}}"#, "x".repeat(pad))
}

// ----- 1009 reaches a client that is still sending ---------------------------------------

/// How a client's connection ended, as its library reported it.
#[derive(Debug)]
struct Ending {
    /// The code of the close frame it read; 1006 when it read none.
    code: u16,
    /// Whether the whole message went out and the connection then ended without an error
    /// (the closing handshake completed instead of a reset or a broken pipe).
    clean: bool,
    /// Everything else it reported.
    detail: String,
}

/// Sends one text message of `size` bytes with tokio-tungstenite (its own limits raised so it
/// sends anything) while reading what the server sends until the connection ends.
async fn tungstenite_sends_oversized(url: &str, size: usize) -> Ending {
    let config = WebSocketConfig {
        max_message_size: Some(128 << 20),
        max_frame_size: Some(128 << 20),
        ..WebSocketConfig::default()
    };
    let (ws, _) = timeout(
        WAIT,
        tokio_tungstenite::connect_async_with_config(url, Some(config), false),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    let (mut sink, mut stream) = ws.split();
    let text = say_frame_of_len(size);
    let send = async move { sink.send(Message::Text(text)).await };
    // The close frame read (if any), then how the stream ended: `None` when cleanly (the
    // library answers the close frame itself and reports the end of TCP as the end).
    let read = async move {
        let mut close = None;
        loop {
            match stream.next().await {
                Some(Ok(Message::Close(frame))) => close = Some(frame),
                Some(Ok(_)) => continue,
                Some(Err(error)) => return (close, Some(error)),
                None => return (close, None),
            }
        }
    };
    let (sent, (close, error)) = timeout(OVERSIZED_LIMIT, async { tokio::join!(send, read) })
        .await
        .unwrap_or_else(|_| panic!("{size}-byte message: no ending within {OVERSIZED_LIMIT:?}"));
    let code = match &close {
        Some(Some(frame)) => u16::from(frame.code),
        Some(None) => 1005,
        None => 1006,
    };
    Ending {
        code,
        clean: close.is_some() && sent.is_ok() && error.is_none(),
        detail: format!("close frame: {close:?}; send: {sent:?}; read error: {error:?}"),
    }
}

/// Sends one text message of `size` bytes with Node's `ws` (`tests/js/oversized.mjs`);
/// returns the close code its `close` event reported, and the rest of its report.
async fn node_ws_sends_oversized(url: &str, size: usize) -> Ending {
    let args = [
        url.to_owned(),
        size.to_string(),
        "--timeout-s".into(),
        "25".into(),
    ];
    let report = run_script("oversized.mjs", &args, OVERSIZED_LIMIT).await;
    let code = report["code"].as_u64().and_then(|c| u16::try_from(c).ok());
    Ending {
        code: code.unwrap_or(0),
        clean: report["sendDone"] == true && report["error"].is_null(),
        detail: report.to_string(),
    }
}

/// Runs `send` (one of the two senders above) for every size of [`OVERSIZED`] against a
/// default server and asserts that each client read 1009 and that its connection then ended
/// cleanly (its whole message went out, no reset or broken pipe), that the server closed each
/// with 1009 and counted it, and that it serves a new client afterwards.
async fn assert_oversized_messages_get_1009<F, Fut>(library: &str, send: F)
where
    F: Fn(String, usize) -> Fut,
    Fut: std::future::Future<Output = Ending>,
{
    let _turn = one_at_a_time().await;
    let mut s = Server::start(WsConfig::default()).await;
    let mut seen = Vec::new();
    for size in OVERSIZED {
        let id = format!("big{size}");
        let ending = send(s.url(&id), size).await;
        let closed = s.next_close(WAIT).await;
        assert_eq!(closed.socket_id.as_deref(), Some(id.as_str()));
        seen.push((size, ending, closed.code));
    }
    let got: Vec<_> = seen
        .iter()
        .map(|(size, ending, _)| (*size, ending.code, ending.clean))
        .collect();
    let expected: Vec<_> = OVERSIZED.iter().map(|&size| (size, 1009, true)).collect();
    let details: Vec<_> = seen
        .iter()
        .map(|(size, ending, server_code)| {
            format!(
                "{size} bytes: client read {}, server closed with {server_code}; {}",
                ending.code, ending.detail
            )
        })
        .collect();
    assert_eq!(
        got,
        expected,
        "{library}: (size, close code read, clean ending) of a client still sending:\n{}",
        details.join("\n")
    );
    for (size, _, server_code) in &seen {
        assert_eq!(*server_code, 1009, "server close event for {size} bytes");
    }
    s.assert_serves_a_new_client("after").await;
    assert_eq!(s.metrics().oversized_frames, OVERSIZED.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tungstenite_client_still_sending_an_oversized_message_reads_1009_and_ends_cleanly() {
    assert_oversized_messages_get_1009("tokio-tungstenite", |url, size| async move {
        tungstenite_sends_oversized(&url, size).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ws_client_still_sending_an_oversized_message_reads_1009_and_ends_cleanly() {
    assert_oversized_messages_get_1009("node ws", |url, size| async move {
        node_ws_sends_oversized(&url, size).await
    })
    .await;
}

// ----- a client that sends faster than it reads loses nothing ----------------------------

/// Broadcast commands the flooding client sends (200 every 2 ms, 2 KB each; see
/// `tests/js/flood.mjs`). Today's server drops it as a slow consumer well before this many.
const FLOOD_COUNT: usize = 10_000;

/// Deadline of the whole flood test, and of the Node.js client's own report.
const FLOOD_LIMIT: Duration = Duration::from_secs(30);
const FLOOD_SCRIPT_TIMEOUT_S: u64 = 25;

/// The slow reader's pace: at most [`SLOW_BATCH`] frames per [`SLOW_TICK`] (5,000 frames/s,
/// a fraction of what the server can produce). Pacing, not synchronization: it only slows
/// the reader down.
const SLOW_BATCH: usize = 50;
const SLOW_TICK: Duration = Duration::from_millis(10);

/// `SO_SNDBUF` of the server's connections: small, so that a client that falls behind fills
/// its outbound queue (and backpressure engages) within the test's few tens of MB instead of
/// the kernel's auto-tuned buffers absorbing it.
const SMALL_SEND_BUFFER: usize = 64 << 10;

/// `SO_RCVBUF` of the slow reader (the kernel may cap it at `net.core.rmem_max`): room for
/// about 2,000 pushes besides its outbound queue, so that a burst of broadcasts (the flooding
/// client resuming after a pause) does not overflow the queue of a reader that keeps reading.
const SLOW_RECV_BUFFER: usize = 4 << 20;

/// The sequence number of a broadcast `say` push from `flood.mjs` (its `msg` starts with it).
fn broadcast_seq(frame: &Value) -> Option<usize> {
    if frame["event"] != "say" || frame["payload"]["action"] != "broadcast" {
        return None;
    }
    frame["payload"]["msg"].as_str()?.get(..10)?.parse().ok()
}

/// What the slow reader got so far.
#[derive(Debug, Clone, Default)]
struct SlowProgress {
    /// Broadcast pushes received, and how many different ones.
    received: usize,
    distinct: usize,
    /// How the connection ended, if it did: close code and reason, or the error.
    ended: Option<String>,
}

/// A demo client bound to an id that reads at a fixed slow pace.
struct SlowReader {
    ws: WebSocketStream<TcpStream>,
}

impl SlowReader {
    /// Connects as `id` and returns once a request is answered (so it is bound).
    async fn connect(addr: SocketAddr, id: &str) -> SlowReader {
        let socket = TcpSocket::new_v4().expect("tcp socket");
        socket
            .set_recv_buffer_size(SLOW_RECV_BUFFER as u32)
            .expect("set SO_RCVBUF");
        let stream = timeout(WAIT, socket.connect(addr))
            .await
            .expect("TCP connect in time")
            .expect("TCP connect");
        let url = format!("ws://{addr}/?id={id}");
        let (mut ws, _) = timeout(WAIT, tokio_tungstenite::client_async(url, stream))
            .await
            .expect("upgrade in time")
            .expect("upgrade");
        let hello = json!({ "event": "say", "payload": "hello", "callbackId": "hello" });
        ws.send(Message::Text(hello.to_string()))
            .await
            .expect("send hello");
        timeout(WAIT, async {
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Text(text) = message {
                    let value: Value = serde_json::from_str(&text).expect("JSON reply");
                    if value["callbackId"] == "hello" {
                        return;
                    }
                }
            }
            panic!("slow reader {id}: connection ended before its hello was answered");
        })
        .await
        .expect("hello answered in time");
        SlowReader { ws }
    }

    /// Reads at its slow pace until it has `count` distinct broadcasts or the connection
    /// ends, keeping `progress` up to date (the caller decides how long to wait for it).
    async fn read_broadcasts(mut self, count: usize, progress: Arc<Mutex<SlowProgress>>) {
        let mut seen = vec![false; count];
        let mut pace = tokio::time::interval(SLOW_TICK);
        pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            pace.tick().await;
            for _ in 0..SLOW_BATCH {
                let frame = match self.ws.next().await {
                    Some(Ok(Message::Text(text))) => serde_json::from_str(&text).ok(),
                    Some(Ok(Message::Close(frame))) => {
                        progress.lock().unwrap().ended = Some(format!("close frame {frame:?}"));
                        return;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => {
                        progress.lock().unwrap().ended = Some(format!("read error: {error}"));
                        return;
                    }
                    None => {
                        progress.lock().unwrap().ended = Some("ended".to_owned());
                        return;
                    }
                };
                let Some(seq) = frame.as_ref().and_then(broadcast_seq) else {
                    continue;
                };
                let mut got = progress.lock().unwrap();
                got.received += 1;
                if seq < count && !std::mem::replace(&mut seen[seq], true) {
                    got.distinct += 1;
                }
                if got.distinct == count {
                    return;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_faster_than_it_reads_and_a_slow_reader_lose_nothing() {
    let _turn = one_at_a_time().await;
    let deadline = Instant::now() + FLOOD_LIMIT;
    let s = Server::start(WsConfig::default().send_buffer(Some(SMALL_SEND_BUFFER))).await;
    let progress = Arc::new(Mutex::new(SlowProgress::default()));
    let slow = SlowReader::connect(s.addr(), "slow").await;
    let mut slow = tokio::spawn(slow.read_broadcasts(FLOOD_COUNT, progress.clone()));

    let args = [
        s.url("flood"),
        "--count".into(),
        FLOOD_COUNT.to_string(),
        "--timeout-s".into(),
        FLOOD_SCRIPT_TIMEOUT_S.to_string(),
    ];
    let flood = run_script("flood.mjs", &args, FLOOD_LIMIT).await;
    // Once the flooding client has all its broadcasts back, every one of them is on its way
    // to the slow reader too; if it has not, no more are coming.
    let slow_deadline = if flood["complete"] == true {
        deadline
    } else {
        Instant::now()
    };
    if tokio::time::timeout_at(slow_deadline, &mut slow)
        .await
        .is_err()
    {
        slow.abort();
    }
    let slow = progress.lock().unwrap().clone();
    let metrics = s.metrics();
    let summary = format!("flood client: {flood}\nslow reader: {slow:?}\nserver: {metrics:?}");

    let count = FLOOD_COUNT as u64;
    assert_eq!(
        (
            flood["sent"].as_u64(),
            flood["distinct"].as_u64(),
            flood["closed"].as_bool(),
        ),
        (Some(count), Some(count), Some(false)),
        "the flooding client must get all {count} of its broadcasts back, unclosed\n{summary}"
    );
    assert_eq!(
        flood["unexpected"].as_u64(),
        Some(0),
        "duplicates or strange frames\n{summary}"
    );
    assert_eq!(
        (slow.distinct, slow.received, &slow.ended),
        (FLOOD_COUNT, FLOOD_COUNT, &None),
        "the slow reader must get every broadcast once, unclosed\n{summary}"
    );
    assert_eq!(metrics.slow_consumer_closes, 0, "{summary}");
}
