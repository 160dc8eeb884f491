//! Chapter 3 of the JavaScript package, ported onto the testing kit: five demo nodes on one
//! in-memory hub, fifty clients spread over them, and a "boss" client whose commands must
//! reach exactly the intended clients, exactly once, whatever node they sit on.
//!
//! The demo's event logic is the point here, not the socket: the wire is covered by
//! `single_server.rs`, `rfc6455.rs` and the rest, and `testing_kit.rs` runs a scenario both
//! ways.

#![cfg(feature = "testing")]

use std::collections::BTreeSet;

use crosswire::testing::{TestClient, TestCluster};
use serde_json::{json, Value};

const NODES: [&str; 5] = ["node0", "node1", "node2", "node3", "node4"];

struct Player {
    id: String,
    client: TestClient,
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
    let reply = players[boss].client.request("command", &command).await;
    assert_eq!(
        reply["msg"],
        format!("Message sent successfully [action:{action}] "),
        "{label}: command reply"
    );
    let push = json!({ "action": action, "msg": command["msg"] });
    for player in players.iter_mut().filter(|p| expected.contains(&p.id)) {
        player.client.expect_push("say", &push).await;
    }
    let marker = json!({ "action": "broadcast", "msg": format!("marker after {label}") });
    players[boss].client.request("command", &marker).await;
    for player in players.iter_mut() {
        let got = player.client.next_push().await;
        assert_eq!(
            (got.event.as_str(), &got.payload),
            ("say", &marker),
            "{label}: player {} got something other than the marker: a stray or duplicate push",
            player.id
        );
    }
}

fn ids<I: IntoIterator<Item = u32>>(ids: I) -> BTreeSet<String> {
    ids.into_iter().map(|i| i.to_string()).collect()
}

#[tokio::test(start_paused = true)]
async fn boss_commands_reach_exactly_the_intended_clients_across_nodes() {
    let cluster = TestCluster::new(NODES, crosswire::demo::install)
        .await
        .expect("cluster");
    // Players 1..=50 round-robin over the nodes, then the boss on the last node.
    let mut players = Vec::new();
    for id in (1..=50u32)
        .map(|id| id.to_string())
        .chain(["555".to_owned()])
    {
        let node = match id.as_str() {
            "555" => NODES[4],
            _ => NODES[(id.parse::<usize>().expect("numeric") - 1) % NODES.len()],
        };
        let client = cluster.client(node).query("id", &id).connect().await;
        players.push(Player { id, client });
    }
    let boss = players.len() - 1;
    for (i, node) in cluster.nodes().iter().enumerate() {
        assert_eq!(node.local_client_count(), 10 + usize::from(i == 4));
    }

    // Players 1..=10 join rooms 1000 (3, 6, 9), 1001 (1, 4, 7, 10) and 1002 (2, 5, 8).
    for player in &mut players[..10] {
        let room = format!("100{}", player.id.parse::<u32>().expect("numeric") % 3);
        let reply = player
            .client
            .request("joinRoom", &json!({ "roomId": room }))
            .await;
        assert_eq!(
            reply["msg"],
            format!("Successfully joined the roomId:{room}")
        );
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
        command_reaches_exactly(&mut players, boss, command, &expected, label).await;
    }

    // A member that leaves its room gets the room's pushes no more.
    let reply = players[2]
        .client
        .request("leaveRoom", &json!({ "roomId": "1000" }))
        .await;
    assert_eq!(reply["msg"], "Left the roomId:1000");
    let command = json!({ "action": "toRoom", "msg": "after 3 left", "roomId": "1000" });
    command_reaches_exactly(
        &mut players,
        boss,
        command,
        &ids([6, 9]),
        "toRoom 1000 after a leave",
    )
    .await;

    // The cluster-wide view of the demo's `stats` request, from any node.
    let stats = players[0].client.request("stats", &json!({})).await;
    assert_eq!(stats["clients"], 51);
    assert_eq!(stats["nodes"].as_array().map(Vec::len), Some(NODES.len()));
    assert_eq!(stats["rooms"], json!({ "1000": 2, "1001": 4, "1002": 3 }));

    for node in cluster.nodes() {
        let m = node.metrics_snapshot();
        assert_eq!(m.bad_envelopes, 0, "{}", node.server_name());
        assert_eq!(m.slow_consumer_closes, 0, "{}", node.server_name());
        assert_eq!(node.pending_cross_callbacks(), 0, "{}", node.server_name());
    }
}

#[tokio::test(start_paused = true)]
async fn a_socket_id_over_the_length_limit_is_refused_with_4011() {
    use crosswire::close_codes::AUTH_FAILED;
    use crosswire::testing::Closed;

    let cluster = TestCluster::new(["a"], crosswire::demo::install)
        .await
        .expect("cluster");
    let too_long = "x".repeat(crosswire::MAX_SOCKET_ID_LEN + 1);
    // From the query, bound by the demo's connection handler.
    let mut client = cluster.client("a").query("id", &too_long).connect().await;
    let closed = Closed {
        code: AUTH_FAILED,
        reason: "Auth failure".to_owned(),
    };
    assert_eq!(client.closed().await, closed);
    // Pre-authenticated: the node refuses the bind itself.
    let mut client = cluster.client("a").bound_as(&too_long).connect().await;
    let closed = Closed {
        code: AUTH_FAILED,
        reason: "invalid socket id".to_owned(),
    };
    assert_eq!(client.closed().await, closed);
    assert_eq!(cluster.node("a").local_client_count(), 0);
}
