//! Nodes of the real Node.js package `websocket-cross-server-adapter` (tests/js_package/
//! server.js, serving crosswire's demo event set) as a cluster on one real `redis-server`, with
//! real WebSocket clients: the harness the mixed clusters of Node.js and crosswire nodes build
//! on. Each test runs once with the package's msgpack wire (its default) and once with JSON.
//!
//! Needs `node` and the package in `target/js-package` (scripts/test.sh installs it).
#![cfg(feature = "redis")]

mod support;

use futures_util::future::join_all;
use serde_json::{json, Value};

use support::client::TestClient;
use support::js_package::JsPackageNode;
use support::redis::RedisServer;

/// Two Node.js package nodes on one Redis, with clients "1" and "2" on `js1` and "3" and "4"
/// on `js2`.
struct AllJs {
    /// The clients, `clients[i]` bound as socket id `i + 1`.
    clients: Vec<TestClient>,
    js1: JsPackageNode,
    js2: JsPackageNode,
    /// Dropped last: the nodes never see their Redis go away.
    _redis: RedisServer,
}

impl AllJs {
    /// Starts Redis, both nodes (with the package's msgpack wire unless `json`) and the four
    /// clients, each served once.
    async fn start(json: bool) -> AllJs {
        let redis = RedisServer::start().await;
        let js1 = JsPackageNode::start("js1", &redis.url(), json, 2).await;
        let js2 = JsPackageNode::start("js2", &redis.url(), json, 2).await;
        let mut clients = Vec::new();
        for (node, id) in [(&js1, "1"), (&js1, "2"), (&js2, "3"), (&js2, "4")] {
            clients.push(TestClient::served(node.addr(), id).await);
        }
        AllJs {
            clients,
            js1,
            js2,
            _redis: redis,
        }
    }

    /// Sends `command` from client `from` (an index) and asserts its reply and that exactly
    /// the clients at `receivers` get the push `say {action, msg}`, each once, while every
    /// client stays silent afterwards.
    async fn command_reaches(&mut self, from: usize, command: Value, receivers: &[usize]) {
        let action = command["action"].as_str().expect("an action").to_owned();
        let push = json!({ "action": action, "msg": command["msg"] });
        let (reply, early) = self.clients[from].request("command", command).await;
        assert_eq!(
            reply,
            json!({ "msg": format!("Message sent successfully [action:{action}] ") }),
            "reply to {action} from client {}",
            from + 1
        );
        assert!(early.len() <= 1, "client {} got {early:?}", from + 1);
        for (i, client) in self.clients.iter_mut().enumerate() {
            let who = i + 1;
            let got = if i == from && !early.is_empty() {
                let frame = &early[0];
                (
                    frame["event"].as_str().unwrap_or_default().to_owned(),
                    frame["payload"].clone(),
                )
            } else if receivers.contains(&i) {
                client.recv_push().await
            } else {
                continue;
            };
            assert!(
                receivers.contains(&i),
                "client {who} should not get {got:?} ({action})"
            );
            assert_eq!(
                got,
                ("say".to_owned(), push.clone()),
                "client {who} ({action})"
            );
        }
        self.all_silent(&action).await;
    }

    /// Asserts that no client receives anything more (for `QUIET`, all at once).
    async fn all_silent(&mut self, after: &str) {
        let checks = self.clients.iter_mut().enumerate().map(|(i, client)| {
            let who = format!("client {} after {after}", i + 1);
            async move { client.assert_silent(&who).await }
        });
        join_all(checks).await;
    }
}

/// Broadcast, unicast, multicast, room pushes with exclusions and a cross-server request to
/// all nodes, over two Node.js package nodes.
async fn all_js_cluster(json: bool) {
    let mut cluster = AllJs::start(json).await;

    // Identity is the `id` query parameter; without one the connection is refused.
    let url = format!("ws://{}/", cluster.js1.addr());
    let mut anonymous = TestClient::connect(&url).await;
    assert_eq!(
        anonymous.expect_close().await,
        (4011, "Auth failure".to_owned())
    );

    let broadcast = json!({ "action": "broadcast", "msg": "to all" });
    cluster.command_reaches(0, broadcast, &[0, 1, 2, 3]).await;

    let to_player = json!({ "action": "toPlayer", "msg": "to 3", "toPlayerId": "3" });
    cluster.command_reaches(0, to_player, &[2]).await;

    let to_players =
        json!({ "action": "toPlayers", "msg": "to 2 and 4", "toPlayerIds": ["2", "4"] });
    cluster.command_reaches(0, to_players, &[1, 3]).await;

    for (i, client) in cluster.clients.iter_mut().enumerate() {
        let (reply, pushes) = client.request("joinRoom", json!({ "roomId": "r" })).await;
        assert_eq!(
            reply,
            json!({ "msg": "Successfully joined the roomId:r" }),
            "client {}",
            i + 1
        );
        assert!(pushes.is_empty(), "client {} got {pushes:?}", i + 1);
    }
    let except = json!({
        "action": "toRoomExcept", "msg": "room but 4", "roomId": "r", "exceptIds": ["4"]
    });
    cluster.command_reaches(0, except, &[0, 1, 2]).await;

    // Every node answers, the asking one included.
    let (reply, pushes) = cluster.clients[2].request("askAll", json!({})).await;
    assert_eq!(
        reply,
        json!({ "names": [cluster.js1.name(), cluster.js2.name()] })
    );
    assert!(pushes.is_empty(), "client 3 got {pushes:?}");
    cluster.all_silent("askAll").await;
}

/// Two Node.js package nodes with its default Redis encoding, msgpack (notepack.io).
#[tokio::test]
async fn all_js_cluster_msgpack() {
    all_js_cluster(false).await;
}

/// Two Node.js package nodes with Redis data compression off: JSON on the wire.
#[tokio::test]
async fn all_js_cluster_json() {
    all_js_cluster(true).await;
}
