//! The namespace channel subscriptions behind rooms, seen at the broker, with real WebSocket
//! clients of the demo. (Chapter 3 of the JavaScript package, the boss whose commands reach
//! exactly the intended clients, runs on the testing kit: `demo_logic.rs`.)

mod support;

use std::sync::Arc;

use crosswire::memory::MemoryHub;
use crosswire::ws::{WsConfig, WsServer};
use crosswire::{system, Node};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use support::client::TestClient;
use support::observed::ObservedBroker;
use support::WAIT;

const CHAT: &str = "ws:chat";

/// A node of the demo, served on a free port.
struct Server {
    server: WsServer,
    observed: Arc<ObservedBroker>,
    closed: mpsc::UnboundedReceiver<Option<String>>,
}

async fn demo_server(
    hub: &MemoryHub,
    name: &str,
    configure: impl FnOnce(crosswire::NodeBuilder) -> crosswire::NodeBuilder,
) -> Server {
    let observed = ObservedBroker::new(hub.broker());
    let node = configure(
        Node::builder()
            .server_name(name)
            .broker(observed.as_broker()),
    )
    .build()
    .await
    .expect("build a node");
    crosswire::demo::install(&node);
    let (tx, closed) = mpsc::unbounded_channel();
    node.on_system(system::Close, move |ev| {
        let _ = tx.send(ev.socket_id.map(|id| id.to_string()));
        async {}
    });
    let server = WsServer::bind("127.0.0.1:0", node.clone(), WsConfig::default())
        .await
        .expect("bind a WebSocket server");
    Server {
        server,
        observed,
        closed,
    }
}

impl Server {
    /// Waits until the node has removed the connection bound to `id` (rooms included).
    async fn closed(&mut self, id: &str) {
        let closed = tokio::time::timeout(WAIT, self.closed.recv())
            .await
            .unwrap_or_else(|_| panic!("connection {id} not closed within {WAIT:?}"))
            .expect("close events channel open");
        assert_eq!(closed.as_deref(), Some(id), "closed connection");
    }
}

/// A demo client.
struct Player {
    id: String,
    client: TestClient,
}

impl Player {
    /// Connects with `?id=` and waits until the node has bound it: the node reads nothing
    /// from a connection before its connection handler (the bind) finished, so one reply
    /// proves it.
    async fn connect(servers: &[Server], node: usize, id: &str) -> Player {
        let client = TestClient::with_id(servers[node].server.local_addr(), id).await;
        let mut player = Player {
            id: id.to_owned(),
            client,
        };
        let reply = player.request("say", json!("ready?")).await;
        assert_eq!(reply["echo"], "ready?", "player {id}: demo reply");
        player
    }

    async fn request(&mut self, event: &str, payload: Value) -> Value {
        let (reply, pushes) = self.client.request(event, payload).await;
        assert!(
            pushes.is_empty(),
            "player {}: unexpected pushes {pushes:?}",
            self.id
        );
        reply
    }

    async fn join(&mut self, room: &str) {
        let reply = self.request("joinRoom", json!({ "roomId": room })).await;
        assert_eq!(
            reply["msg"],
            format!("Successfully joined the roomId:{room}"),
            "player {} joins {room}",
            self.id
        );
    }

    async fn leave(&mut self, room: &str) {
        let reply = self.request("leaveRoom", json!({ "roomId": room })).await;
        assert_eq!(
            reply["msg"],
            format!("Left the roomId:{room}"),
            "player {} leaves {room}",
            self.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_channel_is_subscribed_exactly_while_a_local_member_remains() {
    let hub = MemoryHub::new();
    let mut servers = vec![
        demo_server(&hub, "node0", |b| b).await,
        demo_server(&hub, "node1", |b| b).await,
    ];
    let mut p1 = Player::connect(&servers, 0, "1").await;
    let mut p2 = Player::connect(&servers, 0, "2").await;
    let mut p3 = Player::connect(&servers, 1, "3").await;
    assert_eq!(hub.subscriber_count(CHAT), 0, "no room yet");

    p1.join("1000").await;
    assert_eq!(hub.subscriber_count(CHAT), 1, "first join on node0");
    p2.join("1001").await;
    p1.join("1001").await;
    p1.join("1001").await;
    assert_eq!(hub.subscriber_count(CHAT), 1, "more joins on node0");
    assert_eq!(
        servers[0].observed.subscribe_calls(CHAT),
        1,
        "node0 never subscribes twice"
    );
    p3.join("1000").await;
    assert_eq!(hub.subscriber_count(CHAT), 2, "first join on node1");

    p1.leave("1000").await;
    p1.leave("1001").await;
    assert_eq!(hub.subscriber_count(CHAT), 2, "p2 still in a room on node0");
    p2.leave("1001").await;
    assert_eq!(hub.subscriber_count(CHAT), 1, "node0's last member left");
    assert_eq!(servers[0].observed.unsubscribe_calls(CHAT), 1);

    p3.client.close(4001).await;
    servers[1].closed("3").await;
    assert_eq!(
        hub.subscriber_count(CHAT),
        0,
        "node1's last member disconnected"
    );

    // A later join subscribes again, and a disconnect unsubscribes again.
    p1.join("1002").await;
    assert_eq!(hub.subscriber_count(CHAT), 1, "join after the last leave");
    assert_eq!(servers[0].observed.subscribe_calls(CHAT), 2);
    p1.client.close(4001).await;
    servers[0].closed("1").await;
    assert_eq!(hub.subscriber_count(CHAT), 0, "p1 disconnected");
    assert_eq!(servers[0].observed.unsubscribe_calls(CHAT), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preset_namespaces_stay_subscribed() {
    let hub = MemoryHub::new();
    let mut servers = vec![demo_server(&hub, "node0", |b| b.preset_namespaces(["chat"])).await];
    assert_eq!(hub.subscriber_count(CHAT), 1, "subscribed at start");

    let mut p1 = Player::connect(&servers, 0, "1").await;
    p1.join("1000").await;
    p1.leave("1000").await;
    assert_eq!(hub.subscriber_count(CHAT), 1, "after the last leave");
    p1.join("1000").await;
    p1.client.close(4001).await;
    servers[0].closed("1").await;
    assert_eq!(hub.subscriber_count(CHAT), 1, "after the last disconnect");
    assert_eq!(servers[0].observed.subscribe_calls(CHAT), 1);
    assert_eq!(servers[0].observed.unsubscribe_calls(CHAT), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_unsubscribe_off_keeps_namespaces_subscribed() {
    let hub = MemoryHub::new();
    let mut servers = vec![demo_server(&hub, "node0", |b| b.auto_unsubscribe(false)).await];
    assert_eq!(
        hub.subscriber_count(CHAT),
        0,
        "nothing before the first join"
    );

    let mut p1 = Player::connect(&servers, 0, "1").await;
    p1.join("1000").await;
    assert_eq!(hub.subscriber_count(CHAT), 1, "first join");
    p1.leave("1000").await;
    assert_eq!(hub.subscriber_count(CHAT), 1, "after the last leave");
    p1.join("1001").await;
    p1.client.close(4001).await;
    servers[0].closed("1").await;
    assert_eq!(hub.subscriber_count(CHAT), 1, "after the last disconnect");
    assert_eq!(servers[0].observed.subscribe_calls(CHAT), 1);
    assert_eq!(servers[0].observed.unsubscribe_calls(CHAT), 0);
}
