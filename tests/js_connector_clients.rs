//! The Node.js package's own JavaScript connector (`WebSocketConnector`, driven through
//! tests/support/js_connector.rs) as client of two nodes of the package on one real
//! `redis-server`, on both of its encodings: the all-JS cluster the mixed-cluster tests
//! (tests/js_mixed_cluster.rs) start from, and a check of the test harness itself.
//!
//! Needs `node` and the package in `target/js-package` (scripts/test.sh installs it).
#![cfg(feature = "redis")]

mod support;

use serde_json::json;

use support::demo_clients::{AnyClient, Clients};
use support::js_connector::JsConnectors;
use support::js_package::JsPackageNode;
use support::redis::RedisServer;

/// Broadcast, unicast, multicast, room pushes with exclusions and a cross-server request to
/// all nodes, over two Node.js package nodes; connector clients 1 and 2 on js1, 3 and 4 on js2.
async fn all_js_cluster(json: bool) {
    let redis = RedisServer::start().await;
    let js1 = JsPackageNode::start("js1", &redis.url(), json, 2).await;
    let js2 = JsPackageNode::start("js2", &redis.url(), json, 2).await;
    let connectors = JsConnectors::start().await;

    // Without an id the node closes the connection; the connector reports code and reason.
    let url = format!("ws://{}/", js1.addr());
    let mut anonymous = connectors.connect("anonymous", &url).await;
    assert_eq!(
        anonymous.expect_close().await,
        (4011, "Auth failure".to_owned())
    );

    let mut c = Clients(Vec::new());
    for (node, id) in [(&js1, "1"), (&js1, "2"), (&js2, "3"), (&js2, "4")] {
        c.0.push(AnyClient::Js(connectors.served(node.addr(), id).await));
    }
    let broadcast = json!({ "action": "broadcast", "msg": "to all" });
    c.command_reaches(0, broadcast, &[0, 1, 2, 3]).await;
    let to_player = json!({ "action": "toPlayer", "msg": "to 3", "toPlayerId": "3" });
    c.command_reaches(0, to_player, &[2]).await;
    let to_players =
        json!({ "action": "toPlayers", "msg": "to 2 and 4", "toPlayerIds": ["2", "4"] });
    c.command_reaches(0, to_players, &[1, 3]).await;
    c.join_room("r").await;
    let except = json!({
        "action": "toRoomExcept", "msg": "room but 4", "roomId": "r", "exceptIds": ["4"]
    });
    c.command_reaches(0, except, &[0, 1, 2]).await;
    // Every node answers, the asking one included.
    c.ask_all(2, &[js1.name(), js2.name()]).await;

    // manualClose: the node unbinds the id, so a push to it reaches nobody.
    let Some(AnyClient::Js(fourth)) = c.0.pop() else {
        panic!("client 4 is a connector")
    };
    fourth.close().await;
    let to_gone = json!({ "action": "toPlayer", "msg": "to 4", "toPlayerId": "4" });
    c.command_reaches(0, to_gone, &[]).await;
}

/// The package's default Redis encoding, msgpack (notepack.io).
#[tokio::test]
async fn all_js_cluster_msgpack() {
    all_js_cluster(false).await;
}

/// Redis data compression off: JSON on the wire.
#[tokio::test]
async fn all_js_cluster_json() {
    all_js_cluster(true).await;
}
