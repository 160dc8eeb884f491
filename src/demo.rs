//! The demo event set every example server implements; it is also the benchmark contract.
//!
//! - `joinRoom {roomId}` → join `("chat", roomId)`, reply `{msg}`;
//! - `leaveRoom {roomId}` → leave it, reply `{msg}`;
//! - `command {action, msg, toPlayerId?, toPlayerIds?, roomId?}` with action `broadcast`,
//!   `toPlayer`, `toPlayers` or `toRoom` → push `say {action, msg}` cluster-wide, reply `{msg}`;
//!   `toRoomExcept {roomId, exceptIds}` is `toRoom` without the listed socket ids;
//! - `say` → reply `{msg, echo: payload}`;
//! - `askAll {expect?, nodes?}` → a cross-server request `demo:whoami` to every node (or to
//!   the named `nodes`), each answering `{name}`; reply `{names: [..]}` (sorted). `expect` is
//!   how many replies to wait for (by default every member, or each named node; on the
//!   Node.js package's wire, where members are unknown, 1); 2 s timeout;
//! - `stats` (any payload) → reply the cluster-wide view of the `chat` namespace, asked of
//!   every node with [`Node::cluster`] (2 s timeout):
//!   `{nodes: [{name, clients}, ...], clients, rooms: {roomId: members, ...}}`, nodes sorted
//!   by name, `clients` their total; with `missing: [names]` when some live nodes did not
//!   answer in time (the reply then covers the others); `{error}` when the queries could not
//!   be sent (broker down, node shutting down).
//!
//! Identity comes from the query parameter `id` (unless the connection was bound before the
//! upgrade); a connection without one is closed with 4011.
//! Ids and room ids may be JSON strings or numbers (numbers are used as strings).

use std::time::Duration;

use serde_json::{json, Value};

use crate::{close_codes, system, ClientEvent, Node};

/// The room namespace of the demo.
pub const NAMESPACE: &str = "chat";

/// How long `stats` and `askAll` wait for the nodes' answers.
const STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// The cross-server event of `askAll`.
const WHOAMI: &str = "demo:whoami";

/// Installs the demo's connection handler and events on `node`.
pub fn install(node: &Node) {
    let n = node.clone();
    node.on_system(system::Connection, move |socket| {
        let n = n.clone();
        async move {
            if socket.socket_id().is_some() {
                return; // authenticated and bound before the upgrade
            }
            match socket.request().param("id").filter(|id| !id.is_empty()) {
                Some(id) => {
                    let id = id.to_owned();
                    if let Err(error) = n.bind(&socket, &id) {
                        tracing::info!(%error, "demo: bind refused");
                        if matches!(error, crate::Error::InvalidName { .. }) {
                            socket.close(close_codes::AUTH_FAILED, "Auth failure");
                        }
                    }
                }
                None => socket.close(close_codes::AUTH_FAILED, "Auth failure"),
            }
        }
    });

    node.on("joinRoom", |ev| async move {
        let msg = match (ev.socket().socket_id(), id_field(&ev.value(), "roomId")) {
            (Some(id), Some(room)) => match ev.node().join_room(NAMESPACE, &room, &id).await {
                Ok(()) => format!("Successfully joined the roomId:{room}"),
                Err(error) => format!("Failed to join the room: {error}"),
            },
            _ => "Failed to join the room".to_owned(),
        };
        reply(&ev, json!({ "msg": msg }));
    });

    node.on("leaveRoom", |ev| async move {
        let msg = match (ev.socket().socket_id(), id_field(&ev.value(), "roomId")) {
            (Some(id), Some(room)) => match ev.node().leave_room(NAMESPACE, &room, &id).await {
                Ok(()) => format!("Left the roomId:{room}"),
                Err(error) => format!("Failed to leave the room: {error}"),
            },
            _ => "Failed to leave the room".to_owned(),
        };
        reply(&ev, json!({ "msg": msg }));
    });

    node.on("command", |ev| async move {
        let msg = command(ev.node(), &ev.value()).await;
        reply(&ev, json!({ "msg": msg }));
    });

    node.on("stats", |ev| async move {
        let value = stats(ev.node()).await;
        reply(&ev, value);
    });

    node.on("askAll", |ev| async move {
        let data = ev.value();
        let nodes: Vec<String> = match data["nodes"].as_array() {
            Some(nodes) => nodes
                .iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect(),
            None => Vec::new(),
        };
        let names = ask_all(ev.node(), data["expect"].as_u64(), &nodes).await;
        reply(&ev, json!({ "names": names }));
    });

    node.on_cross(WHOAMI, |ev| async move {
        let name = ev.node().server_name().to_owned();
        let _ = ev.reply(&json!({ "name": name })).await;
    });

    node.on("say", |ev| async move {
        // The payload is echoed as it came, without decoding it.
        #[derive(serde::Serialize)]
        struct Say<'a> {
            msg: &'static str,
            echo: &'a crate::Payload,
        }
        reply(
            &ev,
            &Say {
                msg: "I am a callback for your say event",
                echo: ev.payload(),
            },
        );
    });
}

async fn command(node: &Node, data: &Value) -> String {
    let Some(action) = data["action"].as_str() else {
        return "Failed to send message".to_owned();
    };
    let push = json!({ "action": action, "msg": data["msg"] });
    let sent = match action {
        "broadcast" => node.broadcast().emit("say", &push).await,
        "toPlayer" => match id_field(data, "toPlayerId") {
            Some(id) => node.to(&id).emit("say", &push).await,
            None => return "Missing toPlayerId".to_owned(),
        },
        "toPlayers" => match data["toPlayerIds"].as_array() {
            Some(ids) => {
                let ids: Vec<String> = ids.iter().filter_map(id_value).collect();
                node.to(&ids).emit("say", &push).await
            }
            None => return "Missing toPlayerIds".to_owned(),
        },
        "toRoom" => match id_field(data, "roomId") {
            Some(room) => node.to_room(NAMESPACE, &room).emit("say", &push).await,
            None => return "Missing roomId".to_owned(),
        },
        "toRoomExcept" => match (id_field(data, "roomId"), data["exceptIds"].as_array()) {
            (Some(room), Some(except)) => {
                let except: Vec<String> = except.iter().filter_map(id_value).collect();
                let to_room = node.to_room(NAMESPACE, &room).except(&except);
                to_room.emit("say", &push).await
            }
            _ => return "Missing roomId or exceptIds".to_owned(),
        },
        _ => return "Unknown action type".to_owned(),
    };
    match sent {
        Ok(_) => format!("Message sent successfully [action:{action}] "),
        Err(error) => format!("Failed to send message: {error}"),
    }
}

/// The names of the nodes that answered `demo:whoami` within the timeout, sorted.
async fn ask_all(node: &Node, expect: Option<u64>, nodes: &[String]) -> Vec<String> {
    let mut emit = node.emit_cross(WHOAMI, &json!({})).timeout(STATS_TIMEOUT);
    if !nodes.is_empty() {
        emit = emit.to(nodes);
    }
    if let Some(expect) = expect {
        emit = emit.expect(usize::try_from(expect).unwrap_or(usize::MAX));
    }
    let Ok(result) = emit.collect().await else {
        return Vec::new();
    };
    let mut names: Vec<String> = result
        .responses
        .values()
        .filter_map(|answer| answer["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// The cluster-wide view of the demo's namespace: clients by node and room sizes, asked
/// concurrently.
async fn stats(node: &Node) -> Value {
    let cluster = node.cluster().timeout(STATS_TIMEOUT);
    let (clients, rooms) = tokio::join!(cluster.clients_by_node(), cluster.room_sizes(NAMESPACE));
    let (clients, rooms) = match (clients, rooms) {
        (Ok(clients), Ok(rooms)) => (clients, rooms),
        (Err(error), _) | (_, Err(error)) => {
            return json!({ "error": format!("Failed to get the stats: {error}") });
        }
    };
    // `clients_by_node` is a BTreeMap: the nodes come sorted by name.
    let nodes: Vec<Value> = clients
        .value
        .iter()
        .map(|(name, count)| json!({ "name": name, "clients": count }))
        .collect();
    let total: usize = clients.value.values().sum();
    let mut value = json!({ "nodes": nodes, "clients": total, "rooms": rooms.value });
    let mut missing: Vec<String> = clients.missing;
    missing.extend(rooms.missing);
    missing.sort();
    missing.dedup();
    if !missing.is_empty() {
        value["missing"] = json!(missing);
    }
    value
}

/// A socket or room id from a JSON string or number.
fn id_value(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn id_field(data: &Value, field: &str) -> Option<String> {
    id_value(&data[field])
}

fn reply<T: serde::Serialize>(ev: &ClientEvent, value: T) {
    if ev.wants_reply() {
        if let Err(error) = ev.reply(&value) {
            tracing::debug!(%error, "demo: reply not sent");
        }
    }
}
