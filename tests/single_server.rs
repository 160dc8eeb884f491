//! Chapter 1 of the JavaScript package's README ("single WebSocket server mode"), ported:
//! one node with the demo event set behind `WsServer`, driven by real WebSocket clients over
//! loopback.

mod support;

use crosswire::ws::{WsConfig, WsServer};
use crosswire::{system, CloseEvent, Node, NodeBuilder};
use serde_json::{json, Value};
use support::client::{Received, TestClient};
use support::WAIT;
use tokio::sync::mpsc;

struct Demo {
    node: Node,
    server: WsServer,
    closes: mpsc::UnboundedReceiver<CloseEvent>,
}

impl Demo {
    async fn start(builder: NodeBuilder) -> Demo {
        let node = builder.build().await.expect("node builds");
        crosswire::demo::install(&node);
        let (tx, closes) = mpsc::unbounded_channel();
        node.on_system(system::Close, move |event| {
            let _ = tx.send(event);
            async {}
        });
        let server = WsServer::bind("127.0.0.1:0", node.clone(), WsConfig::default())
            .await
            .expect("server binds a loopback port");
        Demo {
            node,
            server,
            closes,
        }
    }

    async fn client(&self, id: &str) -> TestClient {
        TestClient::served(self.server.local_addr(), id).await
    }

    async fn next_close(&mut self) -> CloseEvent {
        tokio::time::timeout(WAIT, self.closes.recv())
            .await
            .expect("a close event in time")
            .expect("close listener alive")
    }
}

fn say_push(action: &str, msg: &str) -> (String, Value) {
    ("say".to_owned(), json!({ "action": action, "msg": msg }))
}

#[tokio::test]
async fn a_client_with_an_id_is_bound_to_it() {
    let demo = Demo::start(Node::builder()).await;
    let _client = demo.client("1").await;
    assert_eq!(demo.node.connection_count(), 1);
    assert_eq!(demo.node.local_client_count(), 1);
    let socket = demo.node.socket("1").expect("id 1 is bound");
    assert_eq!(socket.socket_id().as_deref(), Some("1"));
    assert_eq!(socket.request().param("id"), Some("1"));
    assert_eq!(socket.request().path(), "");
}

#[tokio::test]
async fn a_client_without_an_id_is_closed_with_4011() {
    let mut demo = Demo::start(Node::builder()).await;
    let addr = demo.server.local_addr();

    let client = TestClient::connect(&format!("ws://{addr}/")).await;
    assert_eq!(
        client.expect_close_then_drain().await,
        (4011, "Auth failure".to_owned())
    );
    let closed = demo.next_close().await;
    assert_eq!((closed.code, closed.socket_id), (4011, None));

    // An empty id is no id.
    let client = TestClient::connect(&format!("ws://{addr}/?id=&name=Sam")).await;
    assert_eq!(
        client.expect_close_then_drain().await,
        (4011, "Auth failure".to_owned())
    );
    assert_eq!(demo.next_close().await.code, 4011);

    assert_eq!(demo.node.connection_count(), 0);
    assert_eq!(demo.node.local_client_count(), 0);
}

#[tokio::test]
async fn a_request_is_answered_to_the_asker_only() {
    let demo = Demo::start(Node::builder()).await;
    let mut asker = demo.client("1").await;
    let mut other = demo.client("2").await;

    let (reply, pushes) = asker
        .request("say", json!({ "msg": "I am a client with ID: 1" }))
        .await;
    assert_eq!(
        reply,
        json!({
            "msg": "I am a callback for your say event",
            "echo": { "msg": "I am a client with ID: 1" },
        })
    );
    assert!(pushes.is_empty());
    other.assert_silent("the other client").await;
}

#[tokio::test]
async fn each_reply_carries_its_own_callback_id() {
    let demo = Demo::start(Node::builder()).await;
    let mut client = demo.client("1").await;

    // Two requests in flight at once, with ids the client chose.
    client
        .send_text(r#"{"event":"say","payload":"first","callbackId":"a-1"}"#)
        .await;
    client
        .send_text(r#"{"event":"say","payload":"second","callbackId":"b-2"}"#)
        .await;
    let mut replies = Vec::new();
    for _ in 0..2 {
        match client.recv().await {
            Received::Json(v) => replies.push(v),
            other => panic!("expected a reply, got {other:?}"),
        }
    }
    assert_eq!(replies[0]["callbackId"], "a-1");
    assert_eq!(replies[0]["payload"]["echo"], "first");
    assert_eq!(replies[1]["callbackId"], "b-2");
    assert_eq!(replies[1]["payload"]["echo"], "second");
    // A reply has exactly the two fields of the protocol.
    assert_eq!(replies[0].as_object().map(|o| o.len()), Some(2));

    // A plain event (no callbackId) runs the handler but gets no reply.
    client.emit("say", json!("no reply wanted")).await;
    client
        .assert_silent("a client that asked for no reply")
        .await;
}

#[tokio::test]
async fn room_delivery_reaches_members_only() {
    let demo = Demo::start(Node::builder()).await;
    let mut alice = demo.client("1").await;
    let mut bob = demo.client("2").await;
    let mut carol = demo.client("3").await;

    for client in [&mut alice, &mut bob] {
        let (reply, _) = client
            .request("joinRoom", json!({ "roomId": "1000" }))
            .await;
        assert_eq!(reply["msg"], "Successfully joined the roomId:1000");
    }
    assert!(demo.node.is_joined("1", "chat", Some("1000")));
    assert!(demo.node.is_joined("2", "chat", Some("1000")));
    assert!(!demo.node.is_joined("3", "chat", Some("1000")));

    // A non-member sends to the room: members get it, the sender does not.
    let (reply, pushes) = carol
        .request(
            "command",
            json!({ "action": "toRoom", "roomId": "1000", "msg": "room hello" }),
        )
        .await;
    assert_eq!(reply["msg"], "Message sent successfully [action:toRoom] ");
    assert!(pushes.is_empty(), "carol is not a member: {pushes:?}");
    assert_eq!(alice.recv_push().await, say_push("toRoom", "room hello"));
    assert_eq!(bob.recv_push().await, say_push("toRoom", "room hello"));
    carol.assert_silent("a non-member").await;

    // A member sending to its room receives it too; the push is queued before the reply.
    let (_, pushes) = alice
        .request(
            "command",
            json!({ "action": "toRoom", "roomId": 1000, "msg": "from inside" }),
        )
        .await;
    assert_eq!(
        pushes,
        vec![json!({ "event": "say", "payload": { "action": "toRoom", "msg": "from inside" } })]
    );
    assert_eq!(bob.recv_push().await, say_push("toRoom", "from inside"));

    // After leaving, bob no longer gets room deliveries.
    let (reply, _) = bob.request("leaveRoom", json!({ "roomId": "1000" })).await;
    assert_eq!(reply["msg"], "Left the roomId:1000");
    let (_, pushes) = carol
        .request(
            "command",
            json!({ "action": "toRoom", "roomId": "1000", "msg": "after leave" }),
        )
        .await;
    assert!(pushes.is_empty());
    assert_eq!(alice.recv_push().await, say_push("toRoom", "after leave"));
    bob.assert_silent("a client that left the room").await;
    alice.assert_silent("a member after its one push").await;
}

#[tokio::test]
async fn broadcast_reaches_every_bound_client_exactly_once() {
    let demo = Demo::start(Node::builder()).await;
    let mut sender = demo.client("1").await;
    let mut others = [demo.client("2").await, demo.client("3").await];
    assert_eq!(demo.node.local_client_count(), 3);

    let (reply, pushes) = sender
        .request(
            "command",
            json!({ "action": "broadcast", "msg": "to everyone" }),
        )
        .await;
    assert_eq!(
        reply["msg"],
        "Message sent successfully [action:broadcast] "
    );
    assert_eq!(
        pushes,
        vec![json!({ "event": "say", "payload": { "action": "broadcast", "msg": "to everyone" } })]
    );
    for (i, client) in others.iter_mut().enumerate() {
        assert_eq!(
            client.recv_push().await,
            say_push("broadcast", "to everyone")
        );
        client
            .assert_silent(&format!("other client {i} after one broadcast"))
            .await;
    }
    sender
        .assert_silent("the sender after its one broadcast")
        .await;

    // The server side: one local delivery per bound client, nothing published (no broker).
    let delivery = demo
        .node
        .broadcast()
        .emit("serverSay", &json!({ "msg": "from the server" }))
        .await
        .expect("broadcast");
    assert_eq!((delivery.local, delivery.published), (3, false));
    for client in others.iter_mut().chain(std::iter::once(&mut sender)) {
        assert_eq!(
            client.recv_push().await,
            ("serverSay".to_owned(), json!({ "msg": "from the server" }))
        );
        client
            .assert_silent("a client after the server broadcast")
            .await;
    }
}

#[tokio::test]
async fn the_default_heartbeat_is_the_empty_string_and_is_echoed() {
    let demo = Demo::start(Node::builder()).await;
    let (tx, mut pings) = mpsc::unbounded_channel();
    demo.node.on_system(system::ClientPing, move |socket| {
        let _ = tx.send(socket.socket_id());
        async {}
    });
    let mut client = demo.client("1").await;

    for _ in 0..3 {
        client.send_text("").await;
        assert_eq!(client.recv().await, Received::Text(String::new()));
        let pinged = tokio::time::timeout(WAIT, pings.recv())
            .await
            .expect("client-ping event in time")
            .expect("listener alive");
        assert_eq!(pinged.as_deref(), Some("1"));
    }
    // A heartbeat is not an event: nothing is counted as dropped.
    assert_eq!(demo.node.metrics_snapshot().malformed_frames, 0);
}

#[tokio::test]
async fn a_custom_heartbeat_string_is_echoed_and_nothing_else() {
    let demo = Demo::start(Node::builder().heartbeat("ping")).await;
    let mut client = demo.client("1").await;

    client.send_text("ping").await;
    assert_eq!(client.recv().await, Received::Text("ping".to_owned()));

    // Another text, or the default heartbeat, is not the heartbeat: no echo.
    client.send_text("pong").await;
    client
        .assert_silent("a client that sent a wrong heartbeat")
        .await;
    client.send_text("").await;
    client
        .assert_silent("a client that sent the default heartbeat")
        .await;

    // The connection still works, heartbeat included.
    let (reply, pushes) = client.request("say", json!(1)).await;
    assert_eq!(reply["echo"], 1);
    assert!(pushes.is_empty());
    // Frames of one connection are handled in order: both texts were dropped as malformed.
    assert_eq!(demo.node.metrics_snapshot().malformed_frames, 2);
    client.send_text("ping").await;
    assert_eq!(client.recv().await, Received::Text("ping".to_owned()));
}

#[tokio::test]
async fn to_player_and_to_players_deliver_to_those_ids_only() {
    let demo = Demo::start(Node::builder()).await;
    let mut one = demo.client("1").await;
    let mut two = demo.client("2").await;
    let mut three = demo.client("3").await;

    let (reply, pushes) = one
        .request(
            "command",
            json!({ "action": "toPlayer", "toPlayerId": "2", "msg": "just you" }),
        )
        .await;
    assert_eq!(reply["msg"], "Message sent successfully [action:toPlayer] ");
    assert!(pushes.is_empty());
    assert_eq!(two.recv_push().await, say_push("toPlayer", "just you"));
    three
        .assert_silent("a client not addressed by toPlayer")
        .await;

    // Ids may be strings or numbers; an unknown id is skipped.
    let (reply, pushes) = one
        .request(
            "command",
            json!({ "action": "toPlayers", "toPlayerIds": ["2", 3, "404"], "msg": "you two" }),
        )
        .await;
    assert_eq!(
        reply["msg"],
        "Message sent successfully [action:toPlayers] "
    );
    assert!(pushes.is_empty());
    assert_eq!(two.recv_push().await, say_push("toPlayers", "you two"));
    assert_eq!(three.recv_push().await, say_push("toPlayers", "you two"));
    one.assert_silent("the sender of toPlayers").await;
    two.assert_silent("client 2 after one push").await;

    // The same from server code.
    let delivery = demo
        .node
        .to("3")
        .emit("serverSay", &json!("only three"))
        .await
        .expect("to_socket_id");
    assert_eq!((delivery.local, delivery.published), (1, false));
    assert_eq!(
        three.recv_push().await,
        ("serverSay".to_owned(), json!("only three"))
    );
    let delivery = demo
        .node
        .to(["1", "2", "missing"])
        .emit("serverSay", &json!("one and two"))
        .await
        .expect("to_socket_ids");
    assert_eq!((delivery.local, delivery.published), (2, false));
    assert_eq!(
        one.recv_push().await,
        ("serverSay".to_owned(), json!("one and two"))
    );
    assert_eq!(
        two.recv_push().await,
        ("serverSay".to_owned(), json!("one and two"))
    );
    three.assert_silent("client 3 not addressed").await;

    // Missing target fields are reported in the reply, nothing is sent.
    let (reply, _) = one
        .request("command", json!({ "action": "toPlayer", "msg": "?" }))
        .await;
    assert_eq!(reply["msg"], "Missing toPlayerId");
}
