//! Wire details browsers need: WebSocket subprotocols, and broadcasts that reach anonymous
//! connections (not bound to a socket id) on every node. Real clients over loopback.

mod support;

use crosswire::memory::MemoryHub;
use crosswire::ws::{WsConfig, WsServer};
use crosswire::{system, Node};
use serde_json::json;
use support::client::{Received, TestClient};
use support::WAIT;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::Error as WsError;

/// A node whose connection handler reports each connection's subprotocol, served with `config`.
async fn serve(config: WsConfig) -> (WsServer, mpsc::UnboundedReceiver<Option<String>>) {
    let node = Node::builder()
        .auth_timeout(None)
        .build()
        .await
        .expect("node");
    let (tx, seen) = mpsc::unbounded_channel();
    node.on_system(system::Connection, move |socket| {
        let _ = tx.send(socket.request().subprotocol().map(str::to_owned));
        async {}
    });
    let server = WsServer::bind("127.0.0.1:0", node, config)
        .await
        .expect("bind");
    (server, seen)
}

/// Opens a connection offering `protocols` (none if empty); returns the echoed subprotocol,
/// or the handshake's error.
async fn offer(server: &WsServer, protocols: &str) -> Result<Option<String>, WsError> {
    let mut request = format!("ws://{}/", server.local_addr())
        .into_client_request()
        .expect("request");
    if !protocols.is_empty() {
        let value = HeaderValue::from_str(protocols).expect("header");
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", value);
    }
    let connecting = tokio_tungstenite::connect_async(request);
    let (_ws, response) = tokio::time::timeout(WAIT, connecting)
        .await
        .expect("handshake in time")?;
    Ok(response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned))
}

async fn next(seen: &mut mpsc::UnboundedReceiver<Option<String>>) -> Option<String> {
    tokio::time::timeout(WAIT, seen.recv())
        .await
        .expect("a connection registered")
        .expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supported_subprotocol_is_echoed_and_shown_to_the_application() {
    let (server, mut seen) = serve(WsConfig::default().subprotocols(["chat.v2", "chat.v1"])).await;

    // The client's order of preference decides among the supported ones. (tungstenite
    // compares offers without trimming, so they are listed without spaces; browsers send
    // `a, b`, which the server trims.)
    let echoed = offer(&server, "mqtt,chat.v1,chat.v2")
        .await
        .expect("handshake");
    assert_eq!(echoed.as_deref(), Some("chat.v1"));
    assert_eq!(next(&mut seen).await.as_deref(), Some("chat.v1"));

    // A client offering none is accepted without one.
    assert_eq!(offer(&server, "").await.expect("handshake"), None);
    assert_eq!(next(&mut seen).await, None);

    // Offering only unsupported ones: the server answers without one, and the client (as a
    // browser does) gives up on the handshake.
    let refused = offer(&server, "mqtt").await;
    assert!(matches!(refused, Err(WsError::Protocol(_))), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_subprotocol_refuses_upgrades_without_one() {
    let config = WsConfig::default()
        .subprotocol_chooser(|offers| {
            offers
                .iter()
                .find(|o| o.starts_with("game."))
                .map(|o| o.to_string())
        })
        .require_subprotocol(true);
    let (server, mut seen) = serve(config).await;
    let echoed = offer(&server, "x,game.v7").await.expect("handshake");
    assert_eq!(echoed.as_deref(), Some("game.v7"));
    assert_eq!(next(&mut seen).await.as_deref(), Some("game.v7"));
    for protocols in ["", "x"] {
        match offer(&server, protocols).await {
            Err(WsError::Http(response)) => assert_eq!(response.status(), StatusCode::BAD_REQUEST),
            other => panic!("offering {protocols:?} must be refused with 400, got {other:?}"),
        }
    }
    assert!(
        seen.try_recv().is_err(),
        "refused upgrades never became connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_echoes_nothing_so_browsers_offering_protocols_fail() {
    let (server, _seen) = serve(WsConfig::default()).await;
    assert_eq!(offer(&server, "").await.expect("handshake"), None);
    assert!(matches!(
        offer(&server, "chat").await,
        Err(WsError::Protocol(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_reach_anonymous_connections_on_every_node() {
    let hub = MemoryHub::new();
    let mut nodes = Vec::new();
    let mut servers = Vec::new();
    for name in ["a", "b"] {
        let node = Node::builder()
            .server_name(name)
            .broker(hub.broker())
            .auth_timeout(None)
            .build()
            .await
            .expect("node");
        let server = WsServer::bind("127.0.0.1:0", node.clone(), WsConfig::default())
            .await
            .expect("bind");
        nodes.push(node);
        servers.push(server);
    }
    // Nobody binds these: a spectator on each node.
    let mut on_a = TestClient::connect(&format!("ws://{}/", servers[0].local_addr())).await;
    let mut on_b = TestClient::connect(&format!("ws://{}/", servers[1].local_addr())).await;
    for node in &nodes {
        let deadline = tokio::time::Instant::now() + WAIT;
        while node.connection_count() < 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "connection registered"
            );
            tokio::task::yield_now().await;
        }
        assert_eq!(node.local_client_count(), 0, "no connection is bound");
    }

    let delivery = nodes[0]
        .broadcast()
        .emit("news", &json!(1))
        .await
        .expect("broadcast");
    assert_eq!((delivery.local, delivery.published), (1, true));
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(
            client.recv().await,
            Received::Json(json!({"event": "news", "payload": 1}))
        );
    }
    let local = nodes[1]
        .broadcast()
        .local()
        .emit("local", &json!(2))
        .await
        .expect("local broadcast");
    assert_eq!(local.local, 1);
    assert_eq!(
        on_b.recv().await,
        Received::Json(json!({"event": "local", "payload": 2}))
    );
}
