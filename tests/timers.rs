//! The node's timers on tokio's paused clock, through the testing kit: background mode and
//! the heartbeat, checked to the millisecond in no wall time. (Over a real socket, the same
//! behaviour is covered by `bad_input.rs` and `client.rs`.)

#![cfg(feature = "testing")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crosswire::testing::{Closed, TestCluster};
use crosswire::{close_codes, system, NodeBuilder, BACKGROUND_EVENT};
use serde_json::json;
use tokio::time::Instant;

const CLOSE_TIME: Duration = Duration::from_secs(10);
const PING_INTERVAL: Duration = Duration::from_secs(20);

fn timers(builder: NodeBuilder) -> NodeBuilder {
    builder
        .background_close_time(CLOSE_TIME)
        .server_ping_interval(Some(PING_INTERVAL))
}

async fn demo() -> TestCluster {
    TestCluster::configured(["a"], timers, crosswire::demo::install)
        .await
        .expect("cluster")
}

#[tokio::test(start_paused = true)]
async fn staying_in_the_background_too_long_closes_with_4003_at_the_close_time() {
    let cluster = demo().await;
    let mut client = cluster.client("a").query("id", "1").connect().await;
    let sent = Instant::now();
    client.emit(BACKGROUND_EVENT, &true);
    assert_eq!(
        client.closed().await,
        Closed {
            code: close_codes::BACKGROUND_TIMEOUT,
            reason: "background timeout".to_owned()
        }
    );
    assert_eq!(sent.elapsed(), CLOSE_TIME);
    let node = cluster.node("a");
    let m = node.metrics_snapshot();
    assert_eq!((m.background_closes, m.reserved_events), (1, 0));
    assert_eq!(node.local_client_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn coming_back_from_the_background_keeps_the_connection() {
    let cluster = demo().await;
    let mut client = cluster.client("a").query("id", "1").connect().await;
    client.emit(BACKGROUND_EVENT, &true);
    client.emit(BACKGROUND_EVENT, &false);
    client.assert_no_push(CLOSE_TIME * 3).await;
    assert_eq!(client.close_status(), None);
    assert_eq!(
        client.request("say", &"still there?").await["echo"],
        "still there?"
    );

    // Going to the background again starts a fresh timer, and a repeat does not restart it.
    client.emit(BACKGROUND_EVENT, &true);
    let sent = Instant::now();
    tokio::time::sleep(CLOSE_TIME / 2).await;
    client.emit(BACKGROUND_EVENT, &true);
    assert_eq!(client.closed().await.code, close_codes::BACKGROUND_TIMEOUT);
    assert_eq!(sent.elapsed(), CLOSE_TIME);
    assert_eq!(cluster.node("a").metrics_snapshot().background_closes, 1);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_answering_pings_is_terminated_at_the_second_ping() {
    let cluster = demo().await;
    let started = Instant::now();
    let mut alive = cluster.client("a").query("id", "alive").connect().await;
    let mut frozen = cluster
        .client("a")
        .query("id", "frozen")
        .silent()
        .wait(PING_INTERVAL * 3)
        .connect()
        .await;
    assert_eq!(
        frozen.closed().await,
        Closed {
            code: close_codes::ABNORMAL,
            reason: "terminated".to_owned()
        }
    );
    // Pinged at its slice's first tick, found dead at the next one, an interval later. The
    // slices tick every sixteenth of the interval (see below).
    let elapsed = started.elapsed();
    assert!(
        elapsed > PING_INTERVAL && elapsed <= PING_INTERVAL * 2,
        "{elapsed:?}"
    );
    assert_eq!(elapsed.as_nanos() % (PING_INTERVAL / 16).as_nanos(), 0);
    assert_eq!(cluster.node("a").metrics_snapshot().dead_connections, 1);
    alive.assert_no_push(PING_INTERVAL * 10).await;
    assert_eq!(alive.request("say", &json!("here")).await["echo"], "here");
}

#[tokio::test(start_paused = true)]
async fn pings_are_spread_over_the_interval_in_sixteen_slices() {
    let cluster = demo().await;
    let node = cluster.node("a");
    let pongs = Arc::new(AtomicUsize::new(0));
    let counted = pongs.clone();
    node.on_system(system::Pong, move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        async {}
    });
    let mut clients = Vec::new();
    for i in 0..32 {
        let id = i.to_string();
        clients.push(cluster.client("a").query("id", &id).connect().await);
    }

    // Looked at halfway between ticks: each tick pinged the 2 of the 32 connections in its
    // slice (connection numbers modulo 16), and a full interval pinged each one once.
    let tick = PING_INTERVAL / 16;
    tokio::time::sleep(tick / 2).await;
    let mut answered = Vec::new();
    for _ in 0..16 {
        tokio::time::sleep(tick).await;
        answered.push(pongs.load(Ordering::SeqCst));
    }
    assert_eq!(answered, (1..=16).map(|k| 2 * k).collect::<Vec<_>>());
    for client in &clients {
        assert_eq!(client.close_status(), None);
    }
}
