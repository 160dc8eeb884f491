//! The client connector (`crosswire::client`), the Rust counterpart of the JavaScript
//! `WebSocketConnector`, driven over loopback against crosswire's own server, and against
//! hand-written tokio-tungstenite servers for what a crosswire server never does (no heartbeat
//! echo, dropping TCP without a close frame) and to record the exact frames it writes.
//!
//! Timers under test run on Tokio's paused clock: real loopback I/O still works, and the clock
//! jumps to the next timer only when every task is idle, so delays can be checked exactly.
#![cfg(feature = "client")]

mod support;

use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crosswire::client::{system, Connector, ConnectorError, RequestError};
use crosswire::{Listen, Payload};
use futures_util::SinkExt;
use serde::Deserialize;
use serde_json::{json, Value};
use support::client::{Received, TestClient};
use support::connector::{open, record, DemoServer, RawServer, Seen};
use support::WAIT;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Tokio's timer wheel has millisecond ticks: a timer fires on the first tick at or after its
/// deadline, so on the paused clock a delay `d` is observed as `d` rounded up to the next ms.
fn assert_elapsed(elapsed: Duration, expected: Duration, what: &str) {
    assert!(
        elapsed >= expected && elapsed <= expected + ms(1),
        "{what}: {elapsed:?} elapsed, expected {expected:?}"
    );
}

/// Waits for `rx` within [`WAIT`].
async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing in time"))
        .unwrap_or_else(|| panic!("{what}: sender dropped"))
}

async fn stop(client: &Connector) {
    client.manual_close();
    tokio::time::timeout(WAIT, client.closed())
        .await
        .expect("the connector stops in time");
}

// 1. Heartbeat --------------------------------------------------------------------------------

#[tokio::test]
async fn the_heartbeat_fires_ping_then_pong_with_a_plausible_latency() {
    let demo = DemoServer::start().await;
    let (tx, mut server_pings) = mpsc::unbounded_channel();
    demo.node
        .on_system(crosswire::system::ClientPing, move |socket| {
            let _ = tx.send(socket.socket_id());
            async {}
        });
    let (client, mut events) = open(demo.builder("1").ping_interval(ms(50))).await;
    assert_eq!(client.ping_interval(), ms(50));

    // Each heartbeat is a ping, then its pong (a late echo may let another ping go first, but
    // nothing other than heartbeats happens).
    for _ in 0..3 {
        assert_eq!(events.next().await, Seen::Ping);
        assert_eq!(
            recv(&mut server_pings, "server heard the heartbeat")
                .await
                .as_deref(),
            Some("1")
        );
        let mut seen = events.next().await;
        while seen == Seen::Ping {
            seen = events.next().await;
        }
        match seen {
            Seen::Pong(latency) => assert!(
                latency > Duration::ZERO && latency < WAIT,
                "implausible latency {latency:?}"
            ),
            other => panic!("expected a pong, got {other:?}"),
        }
    }
    stop(&client).await;
}

#[tokio::test(start_paused = true)]
async fn set_ping_interval_changes_the_heartbeat_cadence() {
    let demo = DemoServer::start().await;
    let client = demo.builder("1").ping_interval(secs(10)).build().unwrap();
    let mut events = record(&client);
    client.connect();
    let (mut at, seen) = events.next_within(WAIT).await;
    assert_eq!(seen, Seen::Open);
    // `reconnect` does nothing while the connection is open: the events below are heartbeats
    // only (a reconnect or close would fail them).
    client.reconnect(true);

    // The configured cadence, exactly, on the paused clock.
    for _ in 0..2 {
        let (ping_at, seen) = events.next_within(secs(60)).await;
        assert_eq!(seen, Seen::Ping);
        assert_elapsed(ping_at - at, secs(10), "ping interval");
        at = ping_at;
        let (pong_at, seen) = events.next_within(secs(60)).await;
        assert_eq!(seen, Seen::Pong(pong_at - ping_at));
    }

    // Immediate: the next heartbeat is rescheduled from now.
    client.set_ping_interval(secs(3), true);
    assert_eq!(client.ping_interval(), secs(3));
    let changed_at = Instant::now();
    let (ping_at, seen) = events.next_within(secs(60)).await;
    assert_eq!(seen, Seen::Ping);
    assert_elapsed(
        ping_at - changed_at,
        secs(3),
        "interval after an immediate change",
    );
    assert!(matches!(events.next().await, Seen::Pong(_)));
    at = ping_at;

    // Not immediate: the heartbeat already scheduled keeps its time, the next one follows the
    // new interval.
    client.set_ping_interval(secs(7), false);
    assert_eq!(client.ping_interval(), secs(7));
    for expected in [secs(3), secs(7), secs(7)] {
        let (ping_at, seen) = events.next_within(secs(60)).await;
        assert_eq!(seen, Seen::Ping);
        assert_elapsed(ping_at - at, expected, "interval after a deferred change");
        at = ping_at;
        assert!(matches!(events.next().await, Seen::Pong(_)));
    }

    // A zero interval is refused.
    client.set_ping_interval(Duration::ZERO, true);
    assert_eq!(client.ping_interval(), secs(7));
    stop(&client).await;
}

// 2. Pong timeout -----------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn no_heartbeat_echo_closes_with_4002_and_nothing_reconnects() {
    let raw = RawServer::bind().await;
    let client = Connector::builder(raw.url()).build().unwrap(); // ping 10 s, pong timeout 2 s
    let mut events = record(&client);
    client.connect();
    let conn = raw.accept().await;
    let (opened_at, seen) = events.next_within(WAIT).await;
    assert_eq!(seen, Seen::Open);

    // The server reads everything and echoes nothing (tungstenite answers the close frame).
    let mut frames = conn.read_in_background();

    let (ping_at, seen) = events.next_within(secs(60)).await;
    assert_eq!(seen, Seen::Ping);
    assert_elapsed(ping_at - opened_at, secs(10), "first heartbeat");
    let (timeout_at, seen) = events.next_within(secs(60)).await;
    assert_eq!(seen, Seen::PongTimeout);
    assert_elapsed(timeout_at - ping_at, secs(2), "pong timeout");
    assert_eq!(
        events.next().await,
        Seen::Close(4002, "pong timeout".into())
    );

    assert_eq!(
        recv(&mut frames, "heartbeat").await,
        Message::Text(String::new())
    );
    match recv(&mut frames, "close frame").await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4002),
        other => panic!("expected a close frame, got {other:?}"),
    }

    // A close is not retried by itself: an hour later nothing has happened.
    tokio::time::sleep(secs(3600)).await;
    assert_eq!(events.try_next(), None);
    assert!(!client.reconnecting());
    assert!(!client.is_open());
    assert!(!raw.has_pending_connection().await);

    // The application decides: `reconnect` starts the schedule at its first fast attempt.
    client.reconnect(false);
    let (at, seen) = events.next_within(WAIT).await;
    assert_eq!(
        seen,
        Seen::Reconnect(crosswire::client::ReconnectInfo {
            repeat: 1,
            timeout: secs(3)
        })
    );
    let _frames = raw.accept_within(secs(60)).await.read_in_background();
    let (opened_at, seen) = events.next_within(secs(60)).await;
    assert_eq!(seen, Seen::Open);
    assert_elapsed(opened_at - at, secs(3), "fast reconnection delay");
    stop(&client).await;
}

// 3. Reconnect schedule -----------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn failed_attempts_follow_the_backoff_schedule_up_to_the_repeat_limit() {
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }; // dropped: connecting is refused at once
    let client = Connector::builder(format!("ws://127.0.0.1:{port}"))
        .repeat_limit(Some(6))
        .fast_reconnect_threshold(3)
        .fast_reconnect_interval(secs(3))
        .reconnect_max_interval(secs(20))
        .build()
        .unwrap();
    let mut events = record(&client);
    client.connect();

    // The first attempt fails, then six scheduled attempts fail.
    let (mut failed_at, seen) = events.next_within(WAIT).await;
    assert!(
        matches!(&seen, Seen::Error(e) if e.contains("connect")),
        "{seen:?}"
    );
    let ceilings = [3, 3, 3, 6, 12, 20].map(secs);
    for (repeat, ceiling) in (1..=6).zip(ceilings) {
        let (at, seen) = events.next_within(secs(600)).await;
        let Seen::Reconnect(info) = seen else {
            panic!("expected reconnect {repeat}, got {seen:?}")
        };
        assert_eq!(
            at, failed_at,
            "attempt {repeat} is scheduled when the last one fails"
        );
        assert_eq!(info.repeat, repeat);
        if repeat <= 3 {
            assert_eq!(info.timeout, secs(3), "fast attempt {repeat}");
        } else {
            assert!(
                info.timeout >= ceiling / 2 && info.timeout <= ceiling,
                "attempt {repeat}: {:?} outside [{:?}, {ceiling:?}]",
                info.timeout,
                ceiling / 2
            );
        }
        assert!(client.reconnecting());
        let (at, seen) = events.next_within(secs(600)).await;
        assert!(matches!(seen, Seen::Error(_)), "attempt {repeat}: {seen:?}");
        assert_elapsed(at - failed_at, info.timeout, "announced delay");
        failed_at = at;
    }
    let (at, seen) = events.next_within(secs(600)).await;
    assert_eq!(seen, Seen::RepeatLimit(6));
    assert_eq!(at, failed_at);
    assert!(!client.reconnecting());

    // No further attempt, however long we wait.
    tokio::time::sleep(secs(3600)).await;
    assert_eq!(events.try_next(), None);

    // Without a reset the limit still holds; with one, a new series starts at 1.
    client.reconnect(false);
    assert_eq!(events.next().await, Seen::RepeatLimit(6));
    client.reconnect(true);
    let seen = events.next().await;
    assert!(
        matches!(seen, Seen::Reconnect(info) if info.repeat == 1 && info.timeout == secs(3)),
        "{seen:?}"
    );
    stop(&client).await;
}

// 4. Reconnection -----------------------------------------------------------------------------

#[tokio::test]
async fn reconnects_from_the_close_listener_after_a_server_restart_on_the_same_port() {
    let demo = DemoServer::start().await;
    let addr = demo.addr();
    let client = demo
        .builder("1")
        .fast_reconnect_interval(ms(20))
        .fast_reconnect_threshold(1000)
        .build()
        .unwrap();
    // As in the JavaScript example: the application decides to reconnect from `close`.
    let handle = client.clone();
    let listener = client.on_system(system::Close, move |info| {
        if info.code == 1001 {
            handle.reconnect(false);
        }
        async {}
    });
    let mut events = record(&client);
    client.connect();
    assert_eq!(events.next().await, Seen::Open);
    let reply = client.request("say", &"before").await.unwrap();
    assert_eq!(reply.value()["echo"], "before");

    demo.server.shutdown().await;
    assert_eq!(
        events.next_non_heartbeat().await,
        Seen::Close(1001, "server shutting down".into())
    );
    let seen = events.next_non_heartbeat().await;
    assert!(
        matches!(seen, Seen::Reconnect(info) if info.repeat == 1 && info.timeout == ms(20)),
        "{seen:?}"
    );
    // At least one attempt fails while the port is closed...
    assert!(matches!(events.next_non_heartbeat().await, Seen::Error(_)));
    assert!(client.reconnecting());

    // ...then a new server on the same port takes the connector back.
    let demo = DemoServer::start_on(addr).await;
    assert_eq!(events.until(|s| *s == Seen::Open).await, Seen::Open);
    assert!(!client.reconnecting());
    let reply = client.request("say", &"after").await.unwrap();
    assert_eq!(reply.value()["echo"], "after");
    assert!(
        demo.node.socket("1").is_some(),
        "bound again on the new server"
    );

    assert_eq!(client.off_system(system::Close, listener), 1);
    stop(&client).await;
}

#[tokio::test]
async fn a_connection_dropped_without_a_close_frame_reports_1006_and_reconnects_by_itself() {
    let raw = RawServer::bind().await;
    let client = Connector::builder(raw.url())
        .fast_reconnect_interval(ms(20))
        .build()
        .unwrap();
    let mut events = record(&client);
    client.connect();
    let conn = raw.accept().await;
    assert_eq!(events.next().await, Seen::Open);

    drop(conn); // TCP FIN, no close frame
    assert!(matches!(events.next().await, Seen::Error(_)));
    assert_eq!(events.next().await, Seen::Close(1006, String::new()));
    assert_eq!(
        events.next().await,
        Seen::Reconnect(crosswire::client::ReconnectInfo {
            repeat: 1,
            timeout: ms(20)
        })
    );
    let _frames = raw.accept().await.read_in_background();
    assert_eq!(events.next().await, Seen::Open);
    stop(&client).await;
}

/// The JavaScript README's close handler reconnects after every code but 4001 and 4010–4012,
/// 1006 included, which the connector already retries: the two must not make two series.
#[tokio::test(start_paused = true)]
async fn the_js_close_handler_pattern_does_not_schedule_twice() {
    let raw = RawServer::bind().await;
    let client = Connector::builder(raw.url()).build().unwrap();
    let handle = client.clone();
    let listener = client.on_system(system::Close, move |info| {
        if !matches!(info.code, 4001 | 4010..=4012) {
            handle.reconnect(false);
        }
        async {}
    });
    let mut events = record(&client);
    client.connect();
    drop(raw.accept().await); // TCP FIN, no close frame
    assert_eq!(events.next().await, Seen::Open);
    assert!(matches!(events.next().await, Seen::Error(_)));
    assert_eq!(events.next().await, Seen::Close(1006, String::new()));
    let (at, seen) = events.next_within(WAIT).await;
    assert!(
        matches!(seen, Seen::Reconnect(info) if info.repeat == 1),
        "{seen:?}"
    );
    let _frames = raw.accept_within(secs(60)).await.read_in_background();
    let (opened_at, seen) = events.next_within(secs(60)).await;
    assert_eq!(seen, Seen::Open);
    assert_elapsed(opened_at - at, secs(3), "one fast attempt");
    // Up to the first heartbeat (due 10 s after opening; this server never echoes it),
    // nothing else happens: no second attempt, no second series.
    tokio::time::sleep(secs(9)).await;
    while let Some(seen) = events.try_next() {
        assert!(seen.is_heartbeat(), "{seen:?}");
    }
    assert!(!raw.has_pending_connection().await, "a second attempt");
    assert_eq!(client.off_system(system::Close, listener), 1);
    stop(&client).await;
}

// 5. Requests ---------------------------------------------------------------------------------

#[derive(Debug, Deserialize, PartialEq)]
struct SayReply {
    msg: String,
    echo: Value,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_get_the_demo_reply_awaited_typed_or_by_callback() {
    let demo = DemoServer::start().await;
    let (client, _events) = open(demo.builder("1")).await;

    let reply = client
        .request("say", &json!({ "msg": "Hi server" }))
        .await
        .unwrap();
    assert_eq!(
        reply.value(),
        json!({ "msg": "I am a callback for your say event", "echo": { "msg": "Hi server" } })
    );

    let typed: SayReply = client.request("say", &[1, 2]).reply_as().await.unwrap();
    assert_eq!(
        typed,
        SayReply {
            msg: "I am a callback for your say event".into(),
            echo: json!([1, 2]),
        }
    );
    let error = client
        .request("say", &1)
        .reply_as::<u32>()
        .await
        .unwrap_err();
    assert!(matches!(error, RequestError::Decode(_)));
    assert_eq!(error.code(), "DECODE_ERROR");

    let (tx, rx) = oneshot::channel();
    client
        .request("say", &"by callback")
        .callback(move |result| {
            let _ = tx.send(result);
        });
    let result = tokio::time::timeout(WAIT, rx).await.unwrap().unwrap();
    assert_eq!(result.unwrap().value()["echo"], "by callback");

    // Many in flight at once, each matched to its own reply.
    let replies = futures_util::future::join_all(
        (0..20).map(|i| client.request("say", &i).reply_as::<SayReply>()),
    )
    .await;
    for (i, reply) in replies.into_iter().enumerate() {
        assert_eq!(reply.unwrap().echo, json!(i));
    }
    assert_eq!(client.pending_requests(), 0);
    stop(&client).await;
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_request_times_out_and_is_forgotten() {
    let demo = DemoServer::start().await;
    demo.node.on("slow", |_| async {});
    let (client, _events) = open(demo.builder("1").callback_timeout(secs(5))).await;

    // A per-call timeout.
    let started = Instant::now();
    let wait = client
        .request("slow", &json!(null))
        .timeout(ms(200))
        .into_future();
    assert_eq!(client.pending_requests(), 1, "sent and registered");
    let error = wait.await.unwrap_err();
    assert_elapsed(started.elapsed(), ms(200), "per-call timeout");
    assert!(matches!(error, RequestError::Timeout { .. }), "{error:?}");
    assert_eq!(error.code(), "CALLBACK_TIMEOUT");
    assert!(error.to_string().starts_with("Is callback timeout: "));
    assert_eq!(client.pending_requests(), 0);

    // The connector's default timeout, and the callback form.
    let started = Instant::now();
    let (tx, rx) = oneshot::channel();
    client
        .request("slow", &json!(null))
        .callback(move |result| {
            let _ = tx.send((result, Instant::now()));
        });
    let (result, at) = rx.await.unwrap();
    assert_elapsed(at - started, secs(5), "default callback timeout");
    assert_eq!(result.unwrap_err().code(), "CALLBACK_TIMEOUT");
    assert_eq!(client.pending_requests(), 0);

    // A request future dropped before its reply is forgotten at once.
    let wait = client.request("slow", &json!(null)).into_future();
    assert_eq!(client.pending_requests(), 1);
    drop(wait);
    assert_eq!(client.pending_requests(), 0);

    // The connection is still fine.
    let reply = client.request("say", &"still here").await.unwrap();
    assert_eq!(reply.value()["echo"], "still here");
    stop(&client).await;
}

#[tokio::test]
async fn the_pending_notice_fires_for_a_slow_reply_only() {
    let demo = DemoServer::start().await;
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    demo.node.on("held", move |ev| {
        let gate = gate.clone();
        async move {
            gate.notified().await;
            let _ = ev.reply(&"released");
        }
    });
    let (client, _events) = open(demo.builder("1")).await;

    // Slow: the notice comes, then the reply.
    let (tx, mut notices) = mpsc::unbounded_channel();
    let request = tokio::spawn(
        client
            .request("held", &json!(null))
            .pending_timeout(ms(50))
            .on_pending(move || {
                let _ = tx.send(());
            })
            .timeout(WAIT)
            .into_future(),
    );
    recv(&mut notices, "pending notice").await;
    release.notify_one();
    let reply = request.await.unwrap().unwrap();
    assert_eq!(reply.value(), json!("released"));
    assert!(notices.try_recv().is_err(), "the notice fires once");

    // Fast: no notice, and the notice is dropped with the request, so it never can fire.
    let fired = Arc::new(Mutex::new(false));
    let flag = fired.clone();
    let reply = client
        .request("say", &"quick")
        .pending_timeout(secs(2))
        .on_pending(move || *flag.lock().unwrap() = true)
        .await
        .unwrap();
    assert_eq!(reply.value()["echo"], "quick");
    assert!(!*fired.lock().unwrap());
    assert_eq!(Arc::strong_count(&fired), 1, "the notice was dropped");
    assert_eq!(client.pending_requests(), 0);
    stop(&client).await;
}

// 6. Not open ---------------------------------------------------------------------------------

fn assert_not_open(result: Result<impl std::fmt::Debug, RequestError>) {
    let error = result.unwrap_err();
    assert!(matches!(error, RequestError::NotOpen), "{error:?}");
    assert_eq!(error.code(), "WS_NOT_OPEN");
    assert_eq!(
        error.to_string(),
        "WebSocket is not open",
        "the JS connector's message"
    );
}

/// `emit`, `request` and the callback form all fail at once with `WS_NOT_OPEN`.
async fn assert_all_not_open(client: &Connector) {
    assert_not_open(client.emit("say", &1));
    let started = std::time::Instant::now();
    assert_not_open(client.request("say", &1).await);
    let called = Arc::new(Mutex::new(None));
    let slot = called.clone();
    client
        .request("say", &1)
        .callback(move |result| *slot.lock().unwrap() = Some(result));
    let result = called
        .lock()
        .unwrap()
        .take()
        .expect("called back before `callback` returns");
    assert_not_open(result);
    assert!(started.elapsed() < ms(100), "failed at once");
    assert_eq!(client.pending_requests(), 0);
}

#[tokio::test]
async fn emit_and_request_fail_with_ws_not_open_before_connect_and_after_close() {
    let demo = DemoServer::start().await;
    let client = demo.builder("1").build().unwrap();
    assert_all_not_open(&client).await;

    let mut events = record(&client);
    client.connect();
    assert_eq!(events.next().await, Seen::Open);
    client.emit("say", &"open now").unwrap();
    stop(&client).await;
    assert_eq!(
        events.next().await,
        Seen::Close(4001, "manual close".into())
    );
    assert_all_not_open(&client).await;

    // A connector closed before it ever connected.
    let never = demo.builder("2").build().unwrap();
    never.manual_close();
    tokio::time::timeout(WAIT, never.closed()).await.unwrap();
    never.connect();
    assert_all_not_open(&never).await;
}

// 7. Requests pending during a drop -----------------------------------------------------------

#[tokio::test]
async fn requests_pending_when_the_server_closes_fail_with_connection_closed() {
    let demo = DemoServer::start().await;
    demo.node.on("slow", |_| async {});
    demo.node.on("kickMe", |ev| async move {
        ev.socket().close(4010, "bye");
    });
    let (client, mut events) = open(demo.builder("1")).await;

    let started = std::time::Instant::now();
    let awaited = tokio::spawn(
        client
            .request("slow", &json!(null))
            .timeout(secs(60))
            .into_future(),
    );
    let (tx, called_back) = oneshot::channel();
    client
        .request("slow", &json!(null))
        .timeout(secs(60))
        .callback(move |result| {
            let _ = tx.send(result);
        });
    assert_eq!(client.pending_requests(), 2);
    client.emit("kickMe", &json!(null)).unwrap();

    assert_eq!(
        events.next_non_heartbeat().await,
        Seen::Close(4010, "bye".into())
    );
    for result in [
        tokio::time::timeout(WAIT, awaited).await.unwrap().unwrap(),
        tokio::time::timeout(WAIT, called_back)
            .await
            .unwrap()
            .unwrap(),
    ] {
        let error = result.unwrap_err();
        assert!(matches!(error, RequestError::ConnectionClosed), "{error:?}");
        assert_eq!(error.code(), "CONNECTION_CLOSED");
    }
    assert!(
        started.elapsed() < secs(30),
        "failed long before the timeout"
    );
    assert_eq!(client.pending_requests(), 0);
    assert_not_open(client.emit("say", &1));
    assert!(!client.reconnecting(), "a close is not retried by itself");
    stop(&client).await;
}

// 8. Manual close -----------------------------------------------------------------------------

/// Waits until the runtime has exactly `expected` tasks alive. No event says "the runtime has
/// dropped this task", so this polls, yielding to the runtime (which runs the I/O driver
/// between yields) and bounded by [`WAIT`].
async fn tasks_return_to(expected: usize) {
    let metrics = tokio::runtime::Handle::current().metrics();
    let settled = tokio::time::timeout(WAIT, async {
        while metrics.num_alive_tasks() != expected {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "{} tasks alive, expected {expected}",
        metrics.num_alive_tasks()
    );
}

#[tokio::test]
async fn manual_close_sends_4001_and_leaves_nothing_running() {
    let demo = DemoServer::start().await;
    demo.node.on("slow", |_| async {});
    let (tx, mut server_closes) = mpsc::unbounded_channel();
    demo.node.on_system(crosswire::system::Close, move |event| {
        let _ = tx.send((event.code, event.socket_id));
        async {}
    });
    let baseline = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();

    let (client, mut events) = open(demo.builder("1").ping_interval(ms(20))).await;
    client.request("say", &1).await.unwrap();
    let (tx, pending) = oneshot::channel();
    client.request("slow", &1).callback(move |result| {
        let _ = tx.send(result);
    });

    client.manual_close();
    tokio::time::timeout(WAIT, client.closed()).await.unwrap();
    assert_eq!(
        events.next_non_heartbeat().await,
        Seen::Close(4001, "manual close".into())
    );
    assert_eq!(
        recv(&mut server_closes, "server-side close").await,
        (4001, Some("1".into()))
    );
    assert_eq!(
        pending.await.unwrap().unwrap_err().code(),
        "CONNECTION_CLOSED"
    );
    tasks_return_to(baseline).await;

    // Stopped for good: no reconnection, whatever is asked and however long we wait.
    tokio::time::pause();
    client.reconnect(true);
    client.reconnect(false);
    client.connect();
    tokio::time::sleep(secs(600)).await;
    while let Some(seen) = events.try_next() {
        assert!(seen.is_heartbeat(), "after manual close: {seen:?}");
    }
    assert!(!client.is_open());
    assert!(!client.reconnecting());
    assert_eq!(demo.node.connection_count(), 0);
    assert_not_open(client.emit("say", &1));
    tasks_return_to(baseline).await;
}

#[tokio::test]
async fn dropping_every_handle_closes_with_4001_and_stops_the_connector() {
    let demo = DemoServer::start().await;
    let (tx, mut server_closes) = mpsc::unbounded_channel();
    demo.node.on_system(crosswire::system::Close, move |event| {
        let _ = tx.send(event.code);
        async {}
    });
    let baseline = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let (client, mut events) = open(demo.builder("1")).await;
    client.request("say", &1).await.unwrap();

    drop(client);
    assert_eq!(recv(&mut server_closes, "server-side close").await, 4001);
    assert_eq!(
        events.next_non_heartbeat().await,
        Seen::Close(4001, "manual close".into())
    );
    tasks_return_to(baseline).await;
}

#[tokio::test]
async fn dropping_every_handle_while_reconnecting_stops_the_connector() {
    let baseline = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = Connector::builder(format!("ws://127.0.0.1:{port}"))
        .fast_reconnect_interval(ms(10))
        .build()
        .unwrap();
    let mut events = record(&client);
    client.connect();
    assert!(matches!(events.next().await, Seen::Error(_)));
    assert!(matches!(events.next().await, Seen::Reconnect(_)));
    drop(client);
    tasks_return_to(baseline).await;
}

// 9. Pushes -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_reach_on_once_and_tagged_listeners_until_removed() {
    let demo = DemoServer::start().await;
    let (alice, _a) = open(demo.builder("1")).await;
    let (bob, _b) = open(demo.builder("2")).await;

    // Listeners run in registration order, so once the last one has a push, the earlier
    // ones have had their chance at it.
    let (tx, mut once) = mpsc::unbounded_channel();
    alice.once("say", move |payload: Payload| {
        let _ = tx.send(payload.value());
        async {}
    });
    let (tx, mut tagged) = mpsc::unbounded_channel();
    alice.on_with("say", Listen::new().tag("ui"), move |payload| {
        let _ = tx.send(payload.value());
        async {}
    });
    // A listener that panics is contained; one that awaits a request of its own runs on.
    alice.on("say", |_| async { panic!("a faulty listener") });
    let (tx, mut asked) = mpsc::unbounded_channel();
    let handle = alice.clone();
    let asking = alice.on("say", move |payload| {
        let (handle, tx) = (handle.clone(), tx.clone());
        async move {
            let reply = handle.request("say", &payload.value()).await;
            let _ = tx.send(reply.map(|r| r.value()["echo"].clone()));
        }
    });
    let (tx, mut all) = mpsc::unbounded_channel();
    let all_id = alice.on("say", move |payload| {
        let _ = tx.send(payload.value());
        async {}
    });

    let reply = bob
        .request(
            "command",
            &json!({ "action": "broadcast", "msg": "hello all" }),
        )
        .await
        .unwrap();
    assert_eq!(
        reply.value()["msg"],
        "Message sent successfully [action:broadcast] "
    );
    let push = json!({ "action": "broadcast", "msg": "hello all" });
    assert_eq!(recv(&mut all, "broadcast").await, push);
    assert_eq!(once.try_recv().unwrap(), push);
    assert_eq!(tagged.try_recv().unwrap(), push);
    assert_eq!(
        recv(&mut asked, "a request from a listener").await.unwrap(),
        push
    );
    assert_eq!(alice.off("say", asking), 1, "removed by id");

    let reply = alice
        .request("joinRoom", &json!({ "roomId": "lobby" }))
        .await
        .unwrap();
    assert_eq!(reply.value()["msg"], "Successfully joined the roomId:lobby");
    assert_eq!(alice.off("say", "ui"), 1);
    assert_eq!(alice.off("say", "no such tag"), 0);

    bob.request(
        "command",
        &json!({ "action": "toRoom", "roomId": "lobby", "msg": "to the room" }),
    )
    .await
    .unwrap();
    assert_eq!(
        recv(&mut all, "room push").await,
        json!({ "action": "toRoom", "msg": "to the room" })
    );
    assert!(once.try_recv().is_err(), "a once listener fires once");
    assert!(
        asked.try_recv().is_err(),
        "a listener removed by id gets nothing"
    );
    assert_eq!(alice.off("say", all_id), 1);
    assert_eq!(
        alice.off("say", crosswire::Off::All),
        1,
        "the faulty one is left"
    );
    assert!(
        tagged.try_recv().is_err(),
        "a removed listener gets nothing"
    );

    stop(&alice).await;
    stop(&bob).await;
}

/// Two servers on one in-memory hub: a connector on each, pushes cross from one to the other.
#[tokio::test]
async fn pushes_cross_servers_between_connectors() {
    let hub = crosswire::memory::MemoryHub::new();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let one = DemoServer::start_with(
        crosswire::Node::builder()
            .server_name("one")
            .broker(hub.broker()),
        any,
    )
    .await;
    let two = DemoServer::start_with(
        crosswire::Node::builder()
            .server_name("two")
            .broker(hub.broker()),
        any,
    )
    .await;
    let (alice, _a) = open(one.builder("alice")).await;
    let (bob, _b) = open(two.builder("bob")).await;
    let (tx, mut said) = mpsc::unbounded_channel();
    alice.on("say", move |payload| {
        let _ = tx.send(payload.value());
        async {}
    });

    bob.request(
        "command",
        &json!({ "action": "toPlayer", "toPlayerId": "alice", "msg": "hi from two" }),
    )
    .await
    .unwrap();
    assert_eq!(
        recv(&mut said, "a push from the other server").await,
        json!({ "action": "toPlayer", "msg": "hi from two" })
    );
    stop(&alice).await;
    stop(&bob).await;
}

// 10. Interop with the JavaScript connector's frames ------------------------------------------

/// `single_server.rs` already sends JS frames with string payloads and the `""` heartbeat; this
/// adds object payloads in the JS connector's key order (`event`, `payload`, `callbackId`), a
/// long JS-style callback id, and a push to the sender itself between request and reply.
#[tokio::test]
async fn frames_written_like_the_js_connector_are_answered() {
    let demo = DemoServer::start().await;
    let mut js = TestClient::with_id(demo.addr(), "js").await;

    js.send_text(
        r#"{"event":"say","payload":{"msg":"Hi server"},"callbackId":"1718000000000_k3j4h5"}"#,
    )
    .await;
    assert_eq!(
        js.recv().await,
        Received::Json(json!({
            "callbackId": "1718000000000_k3j4h5",
            "payload": { "msg": "I am a callback for your say event", "echo": { "msg": "Hi server" } },
        }))
    );
    js.send_text(r#"{"event":"joinRoom","payload":{"roomId":"lobby"},"callbackId":"2"}"#)
        .await;
    assert_eq!(
        js.recv().await,
        Received::Json(json!({
            "callbackId": "2",
            "payload": { "msg": "Successfully joined the roomId:lobby" },
        }))
    );
    js.send_text(
        r#"{"event":"command","payload":{"action":"toRoom","roomId":"lobby","msg":"hey"},"callbackId":"3"}"#,
    )
    .await;
    let mut got = vec![js.recv().await, js.recv().await];
    got.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(
        got,
        [
            Received::Json(json!({
                "callbackId": "3",
                "payload": { "msg": "Message sent successfully [action:toRoom] " },
            })),
            Received::Json(json!({
                "event": "say",
                "payload": { "action": "toRoom", "msg": "hey" },
            })),
        ]
    );
    js.send_text("").await;
    assert_eq!(js.recv().await, Received::Text(String::new()));
}

#[derive(serde::Serialize)]
struct Move {
    x: i32,
    y: Vec<i32>,
    name: &'static str,
}

#[tokio::test(start_paused = true)]
async fn the_connector_writes_exactly_the_js_connectors_frames() {
    let raw = RawServer::bind().await;
    let client = Connector::builder(format!("{}/chat/大厅", raw.url()))
        .param("id", 7)
        .param("name", "Sam Lee&co/é!*'()~")
        .build()
        .unwrap();
    let mut events = record(&client);
    let (tx, mut messages) = mpsc::unbounded_channel();
    client.on_system(system::Message, move |text| {
        let _ = tx.send(text);
        async {}
    });
    client.connect();
    let mut conn = raw.accept().await;
    // The path as browsers send it (non-ASCII as UTF-8 %XX); the parameters as
    // `encodeURIComponent` writes them: A-Z a-z 0-9 - _ . ! ~ * ' ( ) kept, the rest escaped.
    assert_eq!(
        conn.target,
        "/chat/%E5%A4%A7%E5%8E%85?id=7&name=Sam%20Lee%26co%2F%C3%A9!*'()~"
    );
    assert_eq!(events.next().await, Seen::Open);

    // emit(event, data): {"event":E,"payload":P}
    client
        .emit(
            "move",
            &Move {
                x: 1,
                y: vec![2, 3],
                name: "é \"q\"",
            },
        )
        .unwrap();
    assert_eq!(
        conn.next().await,
        Some(Message::Text(
            r#"{"event":"move","payload":{"x":1,"y":[2,3],"name":"é \"q\""}}"#.into()
        ))
    );

    // emitWithPromise(event, data): {"event":E,"payload":P,"callbackId":C}
    let request = tokio::spawn(client.request("say", &json!({ "msg": "hi" })).into_future());
    let Some(Message::Text(text)) = conn.next().await else {
        panic!("expected the request frame")
    };
    let callback_id = serde_json::from_str::<Value>(&text).unwrap()["callbackId"]
        .as_str()
        .expect("a string callbackId")
        .to_owned();
    assert!((1..=64).contains(&callback_id.len()));
    assert_eq!(
        text,
        format!(r#"{{"event":"say","payload":{{"msg":"hi"}},"callbackId":"{callback_id}"}}"#)
    );
    conn.ws
        .send(Message::Text(format!(
            r#"{{"callbackId":"{callback_id}","payload":{{"ok":true}}}}"#
        )))
        .await
        .unwrap();
    let reply = request.await.unwrap().unwrap();
    assert_eq!(reply.value(), json!({ "ok": true }));
    // `message` sees every text as it arrived.
    assert_eq!(
        recv(&mut messages, "message").await,
        format!(r#"{{"callbackId":"{callback_id}","payload":{{"ok":true}}}}"#).as_bytes()
    );

    // The heartbeat: the empty text, after the ping interval; its echo is the pong.
    assert_eq!(
        conn.next_within(secs(60)).await,
        Some(Message::Text(String::new()))
    );
    conn.ws.send(Message::Text(String::new())).await.unwrap();
    assert_eq!(events.next_within(secs(60)).await.1, Seen::Ping);
    assert!(matches!(events.next().await, Seen::Pong(_)));
    assert_eq!(recv(&mut messages, "heartbeat message").await, "");

    // Listeners of the connector's own events are removed by tag.
    let tagged = client.on_system_with(system::Ping, Listen::new().tag("t"), |()| async {});
    assert_eq!(client.off_system(system::Ping, "t"), 1);
    assert_eq!(client.off_system(system::Ping, tagged), 0);
    let _frames = conn.read_in_background();
    stop(&client).await;
}

#[tokio::test]
async fn a_custom_ping_message_is_sent_as_is() {
    let raw = RawServer::bind().await;
    let client = Connector::builder(raw.url())
        .ping_message("ping")
        .ping_interval(ms(20))
        .build()
        .unwrap();
    let mut events = record(&client);
    client.connect();
    let mut conn = raw.accept().await;
    assert_eq!(conn.target, "/");
    assert_eq!(conn.next().await, Some(Message::Text("ping".into())));
    conn.ws.send(Message::Text("ping".into())).await.unwrap();
    events.until(|s| matches!(s, Seen::Pong(_))).await;
    let _frames = conn.read_in_background();
    stop(&client).await;
}

/// Background mode (`PROTOCOL.md`): the connector sends the reserved `$background` event like
/// any other, and the server's 4003 close is reported and not retried.
#[tokio::test(start_paused = true)]
async fn a_connector_left_in_the_background_is_closed_with_4003() {
    let demo = DemoServer::start_with(
        crosswire::Node::builder().background_close_time(secs(3)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await;
    let (client, mut events) = open(demo.builder("1")).await;
    let sent = Instant::now();
    client.emit("$background", &true).unwrap();
    let (at, seen) = events.next_within(secs(60)).await;
    assert_eq!(seen, Seen::Close(4003, "background timeout".into()));
    assert_elapsed(at - sent, secs(3), "background close time");
    tokio::time::sleep(secs(600)).await;
    assert_eq!(events.try_next(), None, "not retried");
    stop(&client).await;
}

// 11. wss:// ----------------------------------------------------------------------------------

mod tls {
    use std::sync::Arc;

    use crosswire::ws::{WsAcceptor, WsConfig};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
    use tokio_rustls::TlsAcceptor;

    use super::*;

    fn provider() -> Arc<tokio_rustls::rustls::crypto::CryptoProvider> {
        Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
    }

    /// Serves the demo over TLS with a fresh self-signed certificate for `localhost`; returns
    /// the port and the certificate.
    async fn serve_demo_over_tls() -> (u16, CertificateDer<'static>) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = certified.cert.der().clone();
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let tls = TlsAcceptor::from(Arc::new(config));

        let node = crosswire::Node::builder().build().await.unwrap();
        crosswire::demo::install(&node);
        let acceptor = WsAcceptor::new(node, WsConfig::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let tls = tls.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(stream) = tls.accept(tcp).await else {
                        return; // e.g. a client that refused the certificate
                    };
                    let service = service_fn(move |request| {
                        let response = acceptor.accept(request);
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        (port, cert)
    }

    #[tokio::test]
    async fn wss_round_trips_with_a_trusted_self_signed_certificate() {
        let (port, cert) = serve_demo_over_tls().await;
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let builder = Connector::builder(format!("wss://localhost:{port}"))
            .param("id", "tls")
            .tls_config(Arc::new(config));
        let (client, _events) = open(builder).await;
        let reply = client.request("say", &"over TLS").await.unwrap();
        assert_eq!(reply.value()["echo"], "over TLS");
        stop(&client).await;
    }

    #[tokio::test]
    async fn the_default_roots_refuse_a_self_signed_certificate() {
        let (port, _cert) = serve_demo_over_tls().await;
        let client = Connector::builder(format!("wss://localhost:{port}"))
            .param("id", "tls")
            .repeat_limit(Some(0))
            .build()
            .unwrap();
        let mut events = record(&client);
        client.connect();
        match events.next().await {
            Seen::Error(message) => assert!(
                message.contains("certificate"),
                "the error should name the certificate: {message}"
            ),
            other => panic!("expected an error, got {other:?}"),
        }
        assert_eq!(events.next().await, Seen::RepeatLimit(0));
        assert!(!client.is_open());
        stop(&client).await;
    }
}

// 12. Options ---------------------------------------------------------------------------------

#[test]
fn a_url_that_is_not_ws_or_wss_is_refused() {
    for url in ["http://x", "x:9000", "ws://", "wss://h/#frag"] {
        let error = Connector::builder(url).build().unwrap_err();
        assert!(
            matches!(error, ConnectorError::InvalidUrl(_)),
            "{url}: {error:?}"
        );
    }
    let error = Connector::builder("ws://x")
        .pong_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(matches!(error, ConnectorError::InvalidOption(ref o) if o.contains("pong_timeout")));
    let client = Connector::builder("ws://x:9000?a=1")
        .param("b", "c d")
        .build()
        .unwrap();
    assert_eq!(client.options().url(), "ws://x:9000/?a=1&b=c%20d");
}

// Regression tests for bugs found while writing this file -------------------------------------

/// A huge heartbeat interval or pong timeout (e.g. `Duration::MAX` to mean "never") used to
/// panic the connector's task on `Instant + Duration` overflow: `open` fired, then the
/// connector was dead and `closed()` never returned.
#[tokio::test]
async fn a_huge_ping_interval_or_pong_timeout_does_not_kill_the_connector() {
    let demo = DemoServer::start().await;
    for (ping, pong) in [(Duration::MAX, secs(2)), (ms(20), Duration::MAX)] {
        let (client, mut events) =
            open(demo.builder("1").ping_interval(ping).pong_timeout(pong)).await;
        if ping != Duration::MAX {
            events.until(|s| matches!(s, Seen::Pong(_))).await;
        }
        client.set_ping_interval(Duration::MAX, true);
        let reply = client.request("say", &"alive").await.unwrap();
        assert_eq!(reply.value()["echo"], "alive");
        stop(&client).await;
    }
}

/// `.timeout(Duration::MAX)` (or a huge `callback_timeout`) used to panic the awaiting task.
#[tokio::test]
async fn a_huge_request_timeout_waits_without_panicking() {
    let demo = DemoServer::start().await;
    let (client, _events) = open(demo.builder("1").callback_timeout(Duration::MAX)).await;
    let reply = client.request("say", &1).await.unwrap();
    assert_eq!(reply.value()["echo"], 1);
    let reply = client
        .request("say", &2)
        .timeout(Duration::MAX)
        .pending_timeout(Duration::MAX)
        .on_pending(|| {})
        .await
        .unwrap();
    assert_eq!(reply.value()["echo"], 2);
    stop(&client).await;
}

/// The timeout runs from when the request is sent (`into_future`, `callback`), like the JS
/// connector's timer started by `emit`, not from when the future is first polled.
#[tokio::test(start_paused = true)]
async fn a_request_times_out_counted_from_its_sending() {
    let demo = DemoServer::start().await;
    demo.node.on("slow", |_| async {});
    let (client, _events) = open(demo.builder("1")).await;
    let started = Instant::now();
    let wait = client.request("slow", &1).timeout(secs(1)).into_future();
    tokio::time::sleep(secs(3)).await;
    let error = wait.await.unwrap_err();
    assert_eq!(error.code(), "CALLBACK_TIMEOUT");
    assert_elapsed(
        started.elapsed(),
        secs(3),
        "timed out when first polled, after its deadline",
    );
    stop(&client).await;
}

#[tokio::test]
async fn a_full_send_queue_and_an_unencodable_payload_fail_without_a_pending_request() {
    let demo = DemoServer::start().await;
    let (client, _events) = open(demo.builder("1").send_queue(1)).await;
    // The connector's task cannot run between these calls (one-thread runtime, no await).
    client.emit("say", &1).unwrap();
    let error = client.emit("say", &2).unwrap_err();
    assert!(matches!(error, RequestError::QueueFull));
    assert_eq!(error.code(), "SEND_QUEUE_FULL");
    assert_eq!(
        client.request("say", &3).await.unwrap_err().code(),
        "SEND_QUEUE_FULL"
    );
    assert_eq!(client.pending_requests(), 0);

    let bad: std::collections::HashMap<(i32, i32), i32> = [((1, 2), 3)].into();
    assert_eq!(client.emit("say", &bad).unwrap_err().code(), "ENCODE_ERROR");
    assert_eq!(
        client.request("say", &bad).await.unwrap_err().code(),
        "ENCODE_ERROR"
    );
    assert_eq!(client.pending_requests(), 0);

    // The queue drains once the connector's task runs: the connection still works. (A
    // bounded retry: nothing signals "the queue has room again".)
    let mut tries = 0;
    let reply = loop {
        match client.request("say", &"drained").await {
            Err(RequestError::QueueFull) if tries < 1000 => {
                tries += 1;
                tokio::task::yield_now().await;
            }
            other => break other.unwrap(),
        }
    };
    assert_eq!(reply.value()["echo"], "drained");
    stop(&client).await;
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_completes_the_handshake_fails_the_attempt_after_connect_timeout() {
    // The kernel completes TCP connections to a listener that never accepts them.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = Connector::builder(format!("ws://{}", silent.local_addr().unwrap()))
        .connect_timeout(secs(4))
        .repeat_limit(Some(0))
        .build()
        .unwrap();
    let mut events = record(&client);
    let started = Instant::now();
    client.connect();
    let (at, seen) = events.next_within(secs(60)).await;
    assert_eq!(seen, Seen::Error("connecting timed out".into()));
    assert_elapsed(at - started, secs(4), "connect timeout");
    assert_eq!(events.next().await, Seen::RepeatLimit(0));
    stop(&client).await;
}

#[tokio::test]
async fn an_ipv6_literal_url_connects() {
    let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    };
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let demo = DemoServer::start_on(addr).await;
    let (client, _events) =
        open(Connector::builder(format!("ws://[::1]:{}/", addr.port())).param("id", "v6")).await;
    let reply = client.request("say", &"v6").await.unwrap();
    assert_eq!(reply.value()["echo"], "v6");
    assert!(demo.node.socket("v6").is_some());
    stop(&client).await;
}

/// A peer that stops reading (a dead or stalled server): once the socket buffers are full
/// (8 MiB against a 4 KiB receive buffer and a send buffer of at most 4 MiB), a write never
/// completes. The heartbeat must still notice: it used to wait forever.
#[tokio::test]
async fn a_peer_that_stops_reading_is_still_detected_by_the_heartbeat() {
    let raw = RawServer::bind_with_small_receive_buffer().await;
    let client = Connector::builder(raw.url())
        .ping_interval(ms(100))
        .pong_timeout(ms(300))
        .build()
        .unwrap();
    let mut events = record(&client);
    client.connect();
    let _conn = raw.accept().await; // accepted, never read again
    assert_eq!(events.next().await, Seen::Open);
    let chunk = "x".repeat(1 << 20);
    for _ in 0..8 {
        client.emit("bulk", &chunk).unwrap();
    }
    // No `ping` event: the heartbeat could not even be written, yet its deadline holds.
    assert_eq!(events.next().await, Seen::PongTimeout);
    assert_eq!(
        events.next().await,
        Seen::Close(4002, "pong timeout".into())
    );
    stop(&client).await;
}

/// The same stuck writer: `manual_close` used to hang (`closed()` never returned).
#[tokio::test]
async fn manual_close_stops_a_connector_whose_writes_are_blocked() {
    let raw = RawServer::bind_with_small_receive_buffer().await;
    let client = Connector::builder(raw.url()).build().unwrap();
    let mut events = record(&client);
    client.connect();
    let _conn = raw.accept().await; // accepted, never read again
    assert_eq!(events.next().await, Seen::Open);
    let chunk = "x".repeat(1 << 20);
    for _ in 0..8 {
        client.emit("bulk", &chunk).unwrap();
    }
    tokio::task::yield_now().await;
    stop(&client).await;
    assert_eq!(
        events.next().await,
        Seen::Close(4001, "manual close".into())
    );
}

/// An incoming message over `max_message_size` is not delivered; the connection is given up
/// as broken (`error`, then `close`) and reconnection starts by itself. (The close code is not
/// asserted: the connector drops TCP without a close frame and reports 1006, where RFC 6455
/// suggests closing with 1009; see the report.)
#[tokio::test]
async fn an_oversized_incoming_message_is_refused_and_the_connector_recovers() {
    let raw = RawServer::bind().await;
    let client = Connector::builder(raw.url())
        .max_message_size(1024)
        .fast_reconnect_interval(ms(20))
        .build()
        .unwrap();
    let (tx, mut pushes) = mpsc::unbounded_channel();
    client.on("big", move |payload| {
        let _ = tx.send(payload);
        async {}
    });
    let mut events = record(&client);
    client.connect();
    let mut conn = raw.accept().await;
    assert_eq!(events.next().await, Seen::Open);
    let big = format!(r#"{{"event":"big","payload":"{}"}}"#, "x".repeat(2048));
    conn.ws.send(Message::Text(big)).await.unwrap();
    let seen = events.next().await;
    assert!(
        matches!(&seen, Seen::Error(e) if e.contains("too long")),
        "{seen:?}"
    );
    assert!(matches!(events.next().await, Seen::Close(..)));
    assert!(matches!(events.next().await, Seen::Reconnect(_)));
    let mut conn = raw.accept().await;
    assert_eq!(events.next().await, Seen::Open);
    conn.ws
        .send(Message::Text(r#"{"event":"big","payload":"small"}"#.into()))
        .await
        .unwrap();
    assert_eq!(
        recv(&mut pushes, "a small push").await.value(),
        json!("small")
    );
    assert!(
        pushes.try_recv().is_err(),
        "the oversized push was never delivered"
    );
    let _frames = conn.read_in_background();
    stop(&client).await;
}

/// A server that refuses the client after the upgrade (the demo closes a client without an id
/// with 4011): the close is reported with its code and reason, and not retried.
#[tokio::test(start_paused = true)]
async fn an_application_close_after_the_upgrade_is_reported_and_not_retried() {
    let demo = DemoServer::start().await;
    let client = Connector::builder(format!("ws://{}", demo.addr()))
        .build()
        .unwrap();
    let mut events = record(&client);
    client.connect();
    assert_eq!(events.next().await, Seen::Open);
    assert_eq!(
        events.next().await,
        Seen::Close(4011, "Auth failure".into())
    );
    tokio::time::sleep(secs(600)).await;
    while let Some(seen) = events.try_next() {
        assert!(seen.is_heartbeat(), "after the close: {seen:?}");
    }
    assert!(!client.is_open());
    assert_eq!(demo.node.connection_count(), 0);
    stop(&client).await;
}
