//! Chapter 3 of the JavaScript package, ported: five WebSocket nodes on one in-memory hub,
//! fifty real clients spread over them, and a "boss" client whose commands must reach exactly
//! the intended clients, exactly once, whatever node they sit on. Plus the namespace channel
//! subscriptions behind rooms.

mod support;

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use crosswire::memory::MemoryHub;
use crosswire::ws::{WsConfig, WsServer};
use crosswire::{system, Node};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use support::client::{Received, TestClient};
use support::observed::ObservedBroker;
use support::WAIT;

const NODES: usize = 5;
const CHAT: &str = "ws:chat";

/// A node of the demo, served on a free port.
struct Server {
    node: Node,
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
        node,
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

/// A demo client that keeps the pushes it saw while waiting for replies.
struct Player {
    id: String,
    node: usize,
    client: TestClient,
    pushes: VecDeque<Value>,
}

impl Player {
    /// Connects with `?id=` and waits until the node has bound it: the node reads nothing
    /// from a connection before its connection handler (the bind) finished, so one reply
    /// proves it.
    async fn connect(servers: &[Server], node: usize, id: &str) -> Player {
        let client = TestClient::with_id(servers[node].server.local_addr(), id).await;
        let mut player = Player {
            id: id.to_owned(),
            node,
            client,
            pushes: VecDeque::new(),
        };
        let reply = player.request("say", json!("ready?")).await;
        assert_eq!(reply["echo"], "ready?", "player {id}: demo reply");
        player
    }

    async fn request(&mut self, event: &str, payload: Value) -> Value {
        let (reply, pushes) = self.client.request(event, payload).await;
        self.pushes.extend(pushes);
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

    /// The next push, as its whole frame `{"event", "payload"}`.
    async fn next_push(&mut self, what: &str) -> Value {
        if let Some(push) = self.pushes.pop_front() {
            return push;
        }
        match self.client.recv_within(WAIT).await {
            Some(Received::Json(push)) => push,
            Some(other) => panic!("{what}: player {} got {other:?}", self.id),
            None => panic!("{what}: player {} got no push within {WAIT:?}", self.id),
        }
    }
}

fn say_push(action: &str, msg: &str) -> Value {
    json!({ "event": "say", "payload": { "action": action, "msg": msg } })
}

/// The boss sends `command`; exactly `expected` receive its push, once; then a marker
/// broadcast must be every client's next push, which proves nobody got a stray or duplicate.
async fn command_reaches_exactly(
    players: &mut [Player],
    boss: usize,
    command: Value,
    expected: &BTreeSet<String>,
    label: &str,
) {
    let action = command["action"].as_str().expect("an action").to_owned();
    let msg = command["msg"].as_str().expect("a msg").to_owned();
    let reply = players[boss].request("command", command).await;
    assert_eq!(
        reply["msg"],
        format!("Message sent successfully [action:{action}] "),
        "{label}: command reply"
    );
    let push = say_push(&action, &msg);
    let mut reached = BTreeSet::new();
    for player in players.iter_mut() {
        if expected.contains(&player.id) {
            let got = player.next_push(label).await;
            assert_eq!(got, push, "{label}: push to player {}", player.id);
            reached.insert(player.id.clone());
        }
    }
    assert_eq!(
        &reached, expected,
        "{label}: every intended player is connected"
    );

    let marker = format!("marker after {label}");
    let reply = players[boss]
        .request("command", json!({ "action": "broadcast", "msg": marker }))
        .await;
    assert!(
        reply["msg"]
            .as_str()
            .is_some_and(|m| m.starts_with("Message sent successfully")),
        "{label}: marker reply {reply}"
    );
    let marker_push = say_push("broadcast", &marker);
    for player in players.iter_mut() {
        let got = player.next_push(&marker).await;
        assert_eq!(
            got, marker_push,
            "{label}: player {} (node {}) got something other than the marker: a stray or duplicate push",
            player.id, player.node
        );
    }
}

fn ids<I: IntoIterator<Item = u32>>(ids: I) -> BTreeSet<String> {
    ids.into_iter().map(|i| i.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boss_commands_reach_exactly_the_intended_clients_across_nodes() {
    let hub = MemoryHub::new();
    let mut servers = Vec::new();
    for i in 0..NODES {
        servers.push(demo_server(&hub, &format!("node{i}"), |b| b).await);
    }

    // Players 1..=50 round-robin over the nodes, then the boss on the last node.
    let mut players = futures_util::future::join_all((1..=50u32).map(|id| {
        let servers = &servers;
        async move { Player::connect(servers, (id as usize - 1) % NODES, &id.to_string()).await }
    }))
    .await;
    let boss_node = NODES - 1;
    players.push(Player::connect(&servers, boss_node, "555").await);
    let boss = players.len() - 1;
    for (i, server) in servers.iter().enumerate() {
        let expected = 10 + usize::from(i == boss_node);
        assert_eq!(
            server.node.local_client_count(),
            expected,
            "node{i} clients"
        );
    }

    // Players 1..=10 join rooms 1000 (3, 6, 9), 1001 (1, 4, 7, 10) and 1002 (2, 5, 8).
    for player in &mut players[..10] {
        let id: u32 = player.id.parse().expect("numeric id");
        player.join(&format!("100{}", id % 3)).await;
    }

    let everyone: BTreeSet<String> = players.iter().map(|p| p.id.clone()).collect();
    assert_eq!(everyone.len(), 51);
    let scenarios: Vec<(Value, BTreeSet<String>, &str)> = vec![
        (
            json!({ "action": "broadcast", "msg": "hello everyone" }),
            everyone.clone(),
            "broadcast",
        ),
        (
            json!({ "action": "toPlayer", "msg": "hi 13", "toPlayerId": "13" }),
            ids([13]),
            "toPlayer 13",
        ),
        (
            json!({ "action": "toPlayer", "msg": "hi 25", "toPlayerId": 25 }),
            ids([25]),
            "toPlayer 25 (numeric, local to the boss)",
        ),
        (
            json!({ "action": "toPlayers", "msg": "hi some", "toPlayerIds": ["3", "10", "25", "37"] }),
            ids([3, 10, 25, 37]),
            "toPlayers",
        ),
        (
            json!({ "action": "toPlayers", "msg": "hi some (numbers)", "toPlayerIds": [3, 10, 25, 37] }),
            ids([3, 10, 25, 37]),
            "toPlayers with numeric ids",
        ),
        (
            json!({ "action": "toRoom", "msg": "hi room 1000", "roomId": "1000" }),
            ids([3, 6, 9]),
            "toRoom 1000",
        ),
        (
            json!({ "action": "toRoom", "msg": "hi room 1001", "roomId": "1001" }),
            ids([1, 4, 7, 10]),
            "toRoom 1001",
        ),
        (
            json!({ "action": "toPlayer", "msg": "hi nobody", "toPlayerId": "999" }),
            BTreeSet::new(),
            "toPlayer of an id nobody has",
        ),
    ];
    for (command, expected, label) in scenarios {
        eprintln!("scenario: {label}");
        command_reaches_exactly(&mut players, boss, command, &expected, label).await;
    }

    for (i, server) in servers.iter().enumerate() {
        let m = server.node.metrics_snapshot();
        assert_eq!(m.bad_envelopes, 0, "node{i}");
        assert_eq!(m.slow_consumer_closes, 0, "node{i}");
        assert_eq!(server.node.pending_cross_callbacks(), 0, "node{i}");
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
