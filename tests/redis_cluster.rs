//! A cluster of separate OS processes (the `cluster` example) on one real `redis-server`,
//! watched through the demo's `stats` request from real WebSocket clients: membership forms,
//! forgets crashed processes and takes in new ones; the cluster-wide queries behind `stats`
//! stay complete while it does; a user who reconnects to another process gets every later
//! unicast; room sizes add up over processes.
#![cfg(feature = "redis")]

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::client::TestClient;
use support::cluster_process::ClusterProcess;
use support::redis::RedisServer;

/// The announce interval of every process: a crashed one is forgotten after 3 × 200 ms.
const ANNOUNCE_MS: &str = "200";
/// Longest the cluster may take to reach a state `stats` is polled for.
const CONVERGE: Duration = Duration::from_secs(15);
/// Pause between two polls of `stats`.
const POLL: Duration = Duration::from_millis(50);
/// A `stats` request of a settled cluster is answered well within its 2 s query timeout.
const PROMPT: Duration = Duration::from_secs(1);

async fn start(name: &str, redis: &RedisServer) -> ClusterProcess {
    ClusterProcess::start(
        name,
        &[
            "--broker",
            "redis",
            "--redis",
            &redis.url(),
            "--announce-ms",
            ANNOUNCE_MS,
        ],
    )
    .await
}

/// Sends `stats`; returns the reply and how long it took.
async fn stats(client: &mut TestClient) -> (Value, Duration) {
    let started = Instant::now();
    let (reply, pushes) = client.request("stats", json!({})).await;
    assert!(pushes.is_empty(), "unexpected pushes: {pushes:?}");
    (reply, started.elapsed())
}

/// The `nodes` list `stats` shows for these `(name, clients)`.
fn nodes(expected: &[(&str, u64)]) -> Value {
    expected
        .iter()
        .map(|(name, clients)| json!({ "name": name, "clients": clients }))
        .collect()
}

/// Whether `reply` shows exactly these nodes and clients, complete.
fn shows(reply: &Value, expected: &[(&str, u64)]) -> bool {
    let total: u64 = expected.iter().map(|(_, n)| n).sum();
    reply["nodes"] == nodes(expected)
        && reply["clients"] == json!(total)
        && reply.get("missing").is_none()
}

/// Polls `stats` until it shows `expected`; panics with the last reply after [`CONVERGE`].
async fn await_stats(client: &mut TestClient, expected: &[(&str, u64)]) -> Value {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let (reply, _) = stats(client).await;
        if shows(&reply, expected) {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "stats did not show {expected:?} within {CONVERGE:?}; last reply: {reply}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Once the cluster settled on `expected`: several `stats` in a row are exact, complete
/// (every broadcast request was answered by the automatic count of live nodes, none missing)
/// and prompt.
async fn assert_settled(client: &mut TestClient, expected: &[(&str, u64)]) {
    for _ in 0..5 {
        let (reply, took) = stats(client).await;
        assert!(
            shows(&reply, expected),
            "expected {expected:?}, got {reply}"
        );
        assert!(
            took < PROMPT,
            "stats took {took:?} although the cluster settled: {reply}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_forms_heals_and_stats_stay_complete() {
    let redis = RedisServer::start().await;
    let mut processes = Vec::new();
    let mut clients = Vec::new();
    for name in ["a", "b", "c", "d", "e"] {
        let process = start(name, &redis).await;
        clients.push(TestClient::served(process.socket_addr(), &format!("u-{name}")).await);
        processes.push(process);
    }
    let watcher = &mut clients[0];

    let all = [("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1)];
    let reply = await_stats(watcher, &all).await;
    assert_eq!(reply["rooms"], json!({}), "no rooms yet: {reply}");
    assert_settled(watcher, &all).await;

    // Two processes crash: they never say goodbye, the others forget them once they missed
    // their announcements.
    let e = processes.pop().expect("e");
    let d = processes.pop().expect("d");
    tokio::join!(d.kill(), e.kill());
    let survivors = [("a", 1), ("b", 1), ("c", 1)];
    await_stats(watcher, &survivors).await;
    assert_settled(watcher, &survivors).await;

    // A new process joins.
    let f = start("f", &redis).await;
    let _client_f = TestClient::served(f.socket_addr(), "u-f").await;
    let grown = [("a", 1), ("b", 1), ("c", 1), ("f", 1)];
    await_stats(watcher, &grown).await;
    assert_settled(watcher, &grown).await;

    // Every process sees the same cluster.
    for client in clients.iter_mut().take(3) {
        assert_settled(client, &grown).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_reconnecting_elsewhere_gets_every_later_unicast() {
    let redis = RedisServer::start().await;
    let a = start("a", &redis).await;
    let b = start("b", &redis).await;
    let c = start("c", &redis).await;
    let mut sender = TestClient::served(c.socket_addr(), "sender").await;
    await_stats(&mut sender, &[("a", 0), ("b", 0), ("c", 1)]).await;

    let mut old = TestClient::served(a.socket_addr(), "u1").await;
    let mut new = TestClient::served(b.socket_addr(), "u1").await;
    let (code, _) = old.expect_close().await;
    assert_eq!(code, 4012, "the older connection of u1 is replaced");

    for i in 0..50 {
        let (reply, _) = sender
            .request(
                "command",
                json!({ "action": "toPlayer", "toPlayerId": "u1", "msg": i }),
            )
            .await;
        assert!(
            reply["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("Message sent")),
            "unicast {i}: {reply}"
        );
    }
    for i in 0..50 {
        let (event, payload) = new.recv_push().await;
        assert_eq!(event, "say", "push {i}");
        assert_eq!(
            payload,
            json!({ "action": "toPlayer", "msg": i }),
            "push {i} in order"
        );
    }
    new.assert_silent("the new u1 after its 50 unicasts").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_sizes_add_up_over_processes() {
    let redis = RedisServer::start().await;
    let a = start("a", &redis).await;
    let b = start("b", &redis).await;
    let c = start("c", &redis).await;
    let mut a1 = TestClient::served(a.socket_addr(), "r-a1").await;
    let mut a2 = TestClient::served(a.socket_addr(), "r-a2").await;
    let mut b1 = TestClient::served(b.socket_addr(), "r-b1").await;
    let mut c1 = TestClient::served(c.socket_addr(), "r-c1").await;
    await_stats(&mut a1, &[("a", 2), ("b", 1), ("c", 1)]).await;

    let joins: [(&mut TestClient, &[&str]); 4] = [
        (&mut a1, &["lobby"]),
        (&mut a2, &["lobby", "team"]),
        (&mut b1, &["lobby", "team"]),
        (&mut c1, &["lobby", "solo"]),
    ];
    for (client, rooms) in joins {
        for room in rooms {
            let (reply, _) = client.request("joinRoom", json!({ "roomId": room })).await;
            assert_eq!(
                reply["msg"],
                json!(format!("Successfully joined the roomId:{room}"))
            );
        }
    }
    let expected = [("a", 2), ("b", 1), ("c", 1)];
    for client in [&mut a1, &mut b1, &mut c1] {
        let (reply, took) = stats(client).await;
        assert!(shows(&reply, &expected), "{reply}");
        assert_eq!(
            reply["rooms"],
            json!({ "lobby": 4, "team": 2, "solo": 1 }),
            "{reply}"
        );
        assert!(took < PROMPT, "stats took {took:?}");
    }

    let (reply, _) = b1.request("leaveRoom", json!({ "roomId": "lobby" })).await;
    assert_eq!(reply["msg"], "Left the roomId:lobby");
    let (reply, _) = c1.request("leaveRoom", json!({ "roomId": "solo" })).await;
    assert_eq!(reply["msg"], "Left the roomId:solo");
    let (reply, _) = stats(&mut a2).await;
    assert!(shows(&reply, &expected), "{reply}");
    assert_eq!(reply["rooms"], json!({ "lobby": 3, "team": 2 }), "{reply}");
}
