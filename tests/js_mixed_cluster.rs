//! Mixed clusters: nodes of the real Node.js package (tests/js_package/server.js) and crosswire
//! nodes (the `cluster` example with `--js-compat` / `--js-compat-json`, each its own process)
//! on one real `redis-server`, with clients on every node: the package's own connector
//! (`WebSocketConnector`, tests/support/js_connector.rs) and raw Rust clients. Every kind of
//! message crosses
//! between the two kinds of node, in both directions, on both of the package's encodings;
//! then a cluster of Node.js nodes is replaced by crosswire nodes one node at a time.
//!
//! Needs `node`, the package in `target/js-package` (scripts/test.sh installs it) and the
//! `cluster` example built with all features.
#![cfg(feature = "redis")]

mod support;

use std::net::SocketAddr;

use serde_json::json;

use support::client::TestClient;
use support::cluster_process::ClusterProcess;
use support::demo_clients::{AnyClient, Clients};
use support::js_connector::JsConnectors;
use support::js_package::JsPackageNode;
use support::redis::RedisServer;

/// A node of either kind.
enum AnyNode {
    /// A Node.js package node.
    Js(JsPackageNode),
    /// A crosswire node on the package's wire.
    Rust(ClusterProcess, String),
}

impl AnyNode {
    /// Starts a Node.js package node; its `askAll` waits for `nodes` replies.
    async fn js(name: &str, redis: &RedisServer, json: bool, nodes: usize) -> AnyNode {
        AnyNode::Js(JsPackageNode::start(name, &redis.url(), json, nodes).await)
    }

    /// Starts a crosswire node on the package's wire (`--js-compat`, or `--js-compat-json`).
    async fn rust(name: &str, redis: &RedisServer, json: bool) -> AnyNode {
        let wire = if json {
            "--js-compat-json"
        } else {
            "--js-compat"
        };
        let url = redis.url();
        let args = ["--broker", "redis", "--redis", &url, wire];
        AnyNode::Rust(ClusterProcess::start(name, &args).await, name.to_owned())
    }

    fn addr(&self) -> SocketAddr {
        match self {
            AnyNode::Js(node) => node.addr(),
            AnyNode::Rust(node, _) => node.socket_addr(),
        }
    }

    fn name(&self) -> &str {
        match self {
            AnyNode::Js(node) => node.name(),
            AnyNode::Rust(_, name) => name,
        }
    }

    async fn kill(self) {
        match self {
            AnyNode::Js(node) => node.kill().await,
            AnyNode::Rust(node, _) => node.kill().await,
        }
    }
}

/// Two Node.js package nodes and two crosswire nodes; clients 1, 2 on js1, 3, 4 on js2, 5, 6
/// on rust-a, 7, 8 on rust-b; the odd ones are the package's connector, the even ones raw
/// Rust clients.
async fn mixed_cluster(json: bool) {
    let redis = RedisServer::start().await;
    let nodes = [
        AnyNode::js("js1", &redis, json, 4).await,
        AnyNode::js("js2", &redis, json, 4).await,
        AnyNode::rust("rust-a", &redis, json).await,
        AnyNode::rust("rust-b", &redis, json).await,
    ];
    let connectors = JsConnectors::start().await;
    let mut c = Clients(Vec::new());
    for id in 1..=8 {
        let (addr, name) = (nodes[(id - 1) / 2].addr(), id.to_string());
        c.0.push(if id % 2 == 1 {
            AnyClient::Js(connectors.served(addr, &name).await)
        } else {
            AnyClient::Rust(TestClient::served(addr, &name).await)
        });
    }
    let everyone: Vec<usize> = (0..8).collect();

    // From a Node.js node's client, then from a crosswire node's client.
    for from in [0, 5] {
        let tag = format!("from {}", from + 1);
        let all = json!({ "action": "broadcast", "msg": format!("all {tag}") });
        c.command_reaches(from, all, &everyone).await;
        for to in [2, 6] {
            let one = json!({
                "action": "toPlayer", "msg": format!("one {tag}"), "toPlayerId": (to + 1).to_string()
            });
            c.command_reaches(from, one, &[to]).await;
        }
        let some = json!({
            "action": "toPlayers", "msg": format!("some {tag}"), "toPlayerIds": ["2", "4", "6", "8"]
        });
        c.command_reaches(from, some, &[1, 3, 5, 7]).await;
    }

    c.join_room("r").await;
    for from in [1, 4] {
        let room = json!({
            "action": "toRoomExcept", "msg": format!("room from {}", from + 1),
            "roomId": "r", "exceptIds": ["4", "8"]
        });
        c.command_reaches(from, room, &[0, 1, 2, 4, 5, 6]).await;
    }

    // A cross-server request to every node, asked on each kind: all four answer.
    let names: Vec<&str> = nodes.iter().map(AnyNode::name).collect();
    for from in [2, 6] {
        c.ask_all(from, &names).await;
    }
    // And to named nodes only, one of each kind, asked on each kind.
    c.ask_nodes(0, &["js2", "rust-b"]).await;
    c.ask_nodes(7, &["js1", "rust-a"]).await;
}

/// Custom channels between the kinds: a crosswire node publishes JSON on `app:ping`; the
/// Node.js node answers every message there on `app:pong` with `{from, got}`; the crosswire
/// node gets it back as JSON text, numbers, nesting and key order as sent.
async fn custom_channels(json: bool) {
    use crosswire::redis::RedisBroker;
    use crosswire::{Node, Wire};

    let redis = RedisServer::start().await;
    let js = AnyNode::js("js1", &redis, json, 2).await;
    let broker = RedisBroker::builder()
        .url(&redis.url())
        .server_name("rust-c")
        .build()
        .await
        .expect("redis broker");
    let node = Node::builder()
        .server_name("rust-c")
        .wire(Wire::JsPackage { msgpack: !json })
        .broker(broker)
        .build()
        .await
        .expect("node");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    node.set_custom_channel_handler(move |message| {
        let _ = tx.send((message.channel, message.payload));
        async {}
    });
    node.subscribe("app:pong").await.expect("subscribe");
    let sent = r#"{"n":1,"big":4294967296,"f":1.5,"neg":-7,"s":"h\u00e9llo ✓","nested":{"z":[true,null,"x"],"a":{}}}"#;
    assert!(matches!(node.publish("app:ping", sent).await, Ok(true)));
    let (channel, payload) = tokio::time::timeout(support::WAIT, rx.recv())
        .await
        .expect("an answer in time")
        .expect("the handler is alive");
    assert_eq!(channel, "app:pong");
    let expected = r#"{"from":"js1","got":{"n":1,"big":4294967296,"f":1.5,"neg":-7,"s":"héllo ✓","nested":{"z":[true,null,"x"],"a":{}}}}"#;
    assert_eq!(std::str::from_utf8(&payload).expect("JSON text"), expected);
    drop(js);
}

#[tokio::test]
async fn custom_channels_msgpack() {
    custom_channels(false).await;
}

#[tokio::test]
async fn custom_channels_json() {
    custom_channels(true).await;
}

#[tokio::test]
async fn mixed_cluster_msgpack() {
    mixed_cluster(false).await;
}

#[tokio::test]
async fn mixed_cluster_json() {
    mixed_cluster(true).await;
}

/// What one round of the migration showed: pushes sent, received, and lost (sent to a client
/// whose node was down: nobody holds them, as in the package).
#[derive(Debug, Default, PartialEq, Eq)]
struct Round {
    sent: usize,
    received: usize,
    lost_to_down_clients: usize,
}

/// Every client in `up` sends one `toPlayer` to every other client (up or down); every client
/// in `up` must receive the ones meant for it.
async fn round(clients: &mut [Option<AnyClient>], label: &str) -> Round {
    let n = clients.len();
    let mut result = Round::default();
    let up: Vec<usize> = (0..n).filter(|&i| clients[i].is_some()).collect();
    for &from in &up {
        for to in (0..n).filter(|&to| to != from) {
            let msg = format!("{label}: {} to {}", from + 1, to + 1);
            let command = json!({
                "action": "toPlayer", "msg": msg, "toPlayerId": (to + 1).to_string()
            });
            let client = clients[from].as_mut().expect("up");
            let (reply, early) = client.request("command", command).await;
            assert!(early.is_empty(), "{early:?}");
            assert_eq!(
                reply,
                json!({ "msg": "Message sent successfully [action:toPlayer] " }),
                "{msg}"
            );
            result.sent += 1;
            match clients[to].as_mut() {
                Some(receiver) => {
                    let (event, payload) = receiver.recv_push().await;
                    assert_eq!((event.as_str(), &payload["msg"]), ("say", &json!(msg)));
                    result.received += 1;
                }
                None => result.lost_to_down_clients += 1,
            }
        }
    }
    for (i, client) in clients.iter_mut().enumerate() {
        if let Some(client) = client {
            client
                .assert_silent(&format!("client {} after {label}", i + 1))
                .await;
        }
    }
    eprintln!("migration, {label}: {result:?}");
    result
}

/// Three nodes, one connector client each, replaced one at a time by crosswire nodes on
/// `wire` (`Some(json)`: the package's wire; `None`: crosswire's). Around every step every
/// client sends a push to every other: with the node down, all arrive except the two sent to
/// its client; after the replacement, all six. Then every client asks every node, and a
/// broadcast reaches everyone.
async fn replace_one_by_one(
    redis: &RedisServer,
    mut nodes: Vec<Option<AnyNode>>,
    wire: Option<bool>,
) {
    let connectors = JsConnectors::start().await;
    let mut clients: Vec<Option<AnyClient>> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let addr = node.as_ref().expect("started").addr();
        let client = connectors.served(addr, &(i + 1).to_string()).await;
        clients.push(Some(AnyClient::Js(client)));
    }
    assert_eq!(round(&mut clients, "before").await.received, 6);

    for step in 0..3 {
        // The node stops (a deploy kills it); its client is cut off.
        nodes[step].take().expect("running").kill().await;
        let mut cut = clients[step].take().expect("connected");
        let (code, _) = cut.expect_close().await;
        assert_eq!(
            code, 1006,
            "the client of a killed node sees an abnormal close"
        );
        let during = round(&mut clients, &format!("step {}, node down", step + 1)).await;
        assert_eq!(
            (during.sent, during.received, during.lost_to_down_clients),
            (4, 2, 2)
        );

        // Its replacement; the connector comes back as a new client of the same socket id.
        let name = format!("rust{}", step + 1);
        let node = match wire {
            Some(json) => AnyNode::rust(&name, redis, json).await,
            None => {
                let url = redis.url();
                let args = ["--broker", "redis", "--redis", &url];
                AnyNode::Rust(ClusterProcess::start(&name, &args).await, name)
            }
        };
        let id = (step + 1).to_string();
        let client = connectors
            .served_as(&format!("{id}-step{id}"), node.addr(), &id)
            .await;
        clients[step] = Some(AnyClient::Js(client));
        nodes[step] = Some(node);
        let after = round(&mut clients, &format!("step {}, replaced", step + 1)).await;
        assert_eq!((after.sent, after.received), (6, 6));

        let mut c = Clients(clients.iter_mut().map(|c| c.take().expect("up")).collect());
        let names: Vec<&str> = nodes.iter().flatten().map(AnyNode::name).collect();
        for from in 0..3 {
            c.ask_all(from, &names).await;
        }
        let all = json!({ "action": "broadcast", "msg": format!("step {}", step + 1) });
        c.command_reaches(step, all, &[0, 1, 2]).await;
        clients = c.0.into_iter().map(Some).collect();
    }
}

/// The migration: three Node.js package nodes are replaced one at a time by crosswire nodes
/// on the package's wire (see [`replace_one_by_one`] for what is checked at each step).
#[tokio::test]
async fn rolling_migration_from_the_node_js_package() {
    let redis = RedisServer::start().await;
    let mut nodes = Vec::new();
    for name in ["js1", "js2", "js3"] {
        nodes.push(Some(AnyNode::js(name, &redis, false, 3).await));
    }
    replace_one_by_one(&redis, nodes, Some(false)).await;
}

/// The switch-over after a migration: three crosswire nodes on the package's wire (the last
/// Node.js node is gone) are restarted one by one on crosswire's own wire. Every crosswire
/// node reads both wires, so nodes writing either one reach each other during the switch.
#[tokio::test]
async fn switch_over_to_crosswire_wire() {
    let redis = RedisServer::start().await;
    let mut nodes = Vec::new();
    for name in ["rust1", "rust2", "rust3"] {
        nodes.push(Some(AnyNode::rust(name, &redis, false).await));
    }
    replace_one_by_one(&redis, nodes, None).await;
}
