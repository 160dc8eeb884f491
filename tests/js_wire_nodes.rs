//! crosswire nodes on the Node.js package's wire (`Wire::JsPackage`), among themselves on one
//! in-memory hub: every kind of message goes through the package's format both ways (the
//! mixed clusters with the package's own nodes are in `tests/js_package_cluster.rs`).

mod support;

use bytes::Bytes;
use crosswire::memory::MemoryHub;
use crosswire::ws::{WsConfig, WsServer};
use crosswire::{Error, Node, OptionsError, Wire};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use support::client::TestClient;
use support::WAIT;

/// Two demo nodes on one hub, both on the package's wire, and their servers.
struct Pair {
    nodes: Vec<Node>,
    servers: Vec<WsServer>,
}

async fn pair(msgpack: bool) -> Pair {
    let hub = MemoryHub::new();
    let mut nodes = Vec::new();
    let mut servers = Vec::new();
    for name in ["rust-a", "rust-b"] {
        let node = Node::builder()
            .server_name(name)
            .wire(Wire::JsPackage { msgpack })
            .broker(hub.broker())
            .build()
            .await
            .expect("a node on the package's wire");
        crosswire::demo::install(&node);
        let server = WsServer::bind("127.0.0.1:0", node.clone(), WsConfig::default())
            .await
            .expect("bind");
        nodes.push(node);
        servers.push(server);
    }
    Pair { nodes, servers }
}

impl Pair {
    /// Clients "1" and "2" on node a, "3" and "4" on node b.
    async fn clients(&self) -> Vec<TestClient> {
        let mut clients = Vec::new();
        for (id, server) in [("1", 0), ("2", 0), ("3", 1), ("4", 1)] {
            clients.push(TestClient::served(self.servers[server].local_addr(), id).await);
        }
        clients
    }
}

/// Client `from` sends the demo's `command` with `payload`; each of `receivers` (indices
/// into `clients`) gets one `say` with `msg`, the others nothing. The sender may get its push
/// before its reply.
async fn command(clients: &mut [TestClient], from: usize, payload: Value, receivers: &[usize]) {
    let msg = payload["msg"].as_str().unwrap_or_default().to_owned();
    let (reply, early) = clients[from].request("command", payload).await;
    let text = reply["msg"].as_str().unwrap_or_default();
    assert!(text.starts_with("Message sent successfully"), "{reply}");
    for (i, client) in clients.iter_mut().enumerate() {
        if !receivers.contains(&i) {
            continue;
        }
        let push = match early.first() {
            Some(push) if i == from => push.clone(),
            _ => {
                let (event, payload) = client.recv_push().await;
                json!({ "event": event, "payload": payload })
            }
        };
        assert_eq!(push["event"], "say", "client {}: {push}", i + 1);
        assert_eq!(
            push["payload"]["msg"],
            msg.as_str(),
            "client {}: {push}",
            i + 1
        );
    }
    assert!(early.len() <= 1, "{early:?}");
    for (i, client) in clients.iter_mut().enumerate() {
        client.assert_silent(&format!("client {}", i + 1)).await;
    }
}

async fn every_kind_of_message(msgpack: bool) {
    let pair = pair(msgpack).await;
    let mut c = pair.clients().await;

    let to_all = json!({"action": "broadcast", "msg": "to all"});
    command(&mut c, 0, to_all, &[0, 1, 2, 3]).await;
    let to_3 = json!({"action": "toPlayer", "toPlayerId": "3", "msg": "to 3"});
    command(&mut c, 0, to_3, &[2]).await;
    let to_2_4 = json!({"action": "toPlayers", "toPlayerIds": ["2", "4"], "msg": "to 2, 4"});
    command(&mut c, 0, to_2_4, &[1, 3]).await;
    // And back from the other node.
    let to_1 = json!({"action": "toPlayer", "toPlayerId": "1", "msg": "to 1"});
    command(&mut c, 3, to_1, &[0]).await;

    for client in c.iter_mut() {
        let (reply, _) = client.request("joinRoom", json!({"roomId": "r"})).await;
        assert!(reply["msg"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Successfully"));
    }
    let except_4 =
        json!({"action": "toRoomExcept", "roomId": "r", "exceptIds": ["4"], "msg": "room"});
    command(&mut c, 0, except_4, &[0, 1, 2]).await;

    let (reply, _) = c[2].request("askAll", json!({"expect": 2})).await;
    assert_eq!(reply["names"], json!(["rust-a", "rust-b"]));
    // Without `expect`, one reply is awaited, as in the package: this node's own.
    let (reply, _) = c[2].request("askAll", json!({})).await;
    assert_eq!(reply["names"].as_array().map(Vec::len), Some(1), "{reply}");

    // Nothing of crosswire's own (membership, bindings) is published on this wire.
    assert_eq!(pair.nodes[0].members().len(), 1, "only itself");
    for node in &pair.nodes {
        assert_eq!(node.metrics_snapshot().bad_envelopes, 0);
    }
}

#[tokio::test]
async fn every_kind_of_message_on_msgpack() {
    every_kind_of_message(true).await;
}

#[tokio::test]
async fn every_kind_of_message_on_json() {
    every_kind_of_message(false).await;
}

#[tokio::test]
async fn custom_channels_carry_json_text() {
    let pair = pair(true).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    pair.nodes[1].set_custom_channel_handler(move |message| {
        let _ = tx.send(message.payload);
        async {}
    });
    pair.nodes[1]
        .subscribe("app:events")
        .await
        .expect("subscribe");
    let sent = pair.nodes[0]
        .publish(
            "app:events",
            Bytes::from_static(br#"{"b":1,"a":[true,null,"x"]}"#),
        )
        .await;
    assert!(matches!(sent, Ok(true)), "{sent:?}");
    let got = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("in time");
    // Key order is kept, as JavaScript keeps it.
    assert_eq!(got.as_deref(), Some(&br#"{"b":1,"a":[true,null,"x"]}"#[..]));
    let refused = pair.nodes[0]
        .publish("app:events", Bytes::from_static(b"not json"))
        .await;
    assert!(
        matches!(refused, Err(Error::InvalidName { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_cluster_secret_is_refused_on_this_wire() {
    let built = Node::builder()
        .server_name("a")
        .wire(Wire::JsPackage { msgpack: true })
        .cluster_secret("0123456789abcdef0123")
        .build()
        .await;
    assert!(
        matches!(built, Err(Error::Options(OptionsError::SignedJsWire))),
        "{:?}",
        built.err()
    );
}
