//! crosswire inside an axum application (feature `axum`): the one-line route, the demo events
//! over it, authentication by an axum middleware and by an extractor before the upgrade
//! (401/403, no WebSocket), binding to the authenticated identity, the application's state
//! reachable from crosswire handlers, the peer address from `ConnectInfo`, and `/health` on
//! the same port.
#![cfg(feature = "axum")]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use crosswire::axum::{upgrade, SocketId};
use crosswire::ws::{WsAcceptor, WsConfig};
use crosswire::Node;
use serde_json::{json, Value};
use support::client::TestClient;
use support::WAIT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Error as WsError;

/// The application's state, shared by axum handlers, the middleware and crosswire handlers.
struct AppState {
    node: Node,
    motd: String,
    tokens: HashMap<&'static str, &'static str>,
    /// For the handler that authenticates with an extractor and upgrades itself.
    acceptor: WsAcceptor,
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}

/// 401 without `?token=`, 403 with an unknown one; the token's user becomes the socket id.
async fn require_token(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Result<Response, StatusCode> {
    let token = query_param(request.uri().query(), "token").ok_or(StatusCode::UNAUTHORIZED)?;
    let user = state.tokens.get(token).ok_or(StatusCode::FORBIDDEN)?;
    request
        .extensions_mut()
        .insert(SocketId((*user).to_owned()));
    Ok(next.run(request).await)
}

/// An authenticated user, as an axum extractor: `?key=<user>-key`, else 401.
struct User(String);

impl<S: Send + Sync> FromRequestParts<S> for User {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, StatusCode> {
        query_param(parts.uri.query(), "key")
            .and_then(|key| key.strip_suffix("-key"))
            .filter(|user| !user.is_empty())
            .map(|user| User(user.to_owned()))
            .ok_or(StatusCode::UNAUTHORIZED)
    }
}

async fn by_extractor(
    user: User,
    State(state): State<Arc<AppState>>,
    mut request: Request,
) -> Response {
    request.extensions_mut().insert(SocketId(user.0));
    upgrade(&state.acceptor, request)
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let body = json!({
        "status": "ok",
        "connections": state.node.connection_count(),
        "clients": state.node.local_client_count(),
    });
    ([(CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Starts the app on a free port, served with `ConnectInfo<SocketAddr>`.
async fn start() -> (SocketAddr, Node) {
    let node = Node::builder().build().await.expect("node");
    crosswire::demo::install(&node);
    let state = Arc::new(AppState {
        node: node.clone(),
        motd: "welcome to the axum app".to_owned(),
        tokens: HashMap::from([("token-alice", "alice"), ("token-bob", "bob")]),
        acceptor: WsAcceptor::new(node.clone(), WsConfig::default()),
    });

    // A crosswire handler reaching the application's state through a captured clone.
    let s = state.clone();
    node.on("whoami", move |ev| {
        let s = s.clone();
        async move {
            let socket = ev.socket();
            let remote = socket.request().remote_addr().map(|a| a.to_string());
            let _ = ev.reply(&json!({
                "id": socket.socket_id().as_deref(),
                "motd": s.motd,
                "remote": remote,
            }));
        }
    });

    let app = Router::new()
        .route("/health", get(health))
        .route("/ws", crosswire::axum::ws(node.clone()))
        .route(
            "/secure/ws",
            crosswire::axum::ws(node.clone())
                .layer(from_fn_with_state(state.clone(), require_token)),
        )
        .route("/extractor/ws", get(by_extractor))
        .with_state(state);

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve");
    });
    (addr, node)
}

/// A hand-written HTTP/1.1 GET: status code and body.
async fn http_get(addr: SocketAddr, target: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read");
        String::from_utf8(response).expect("utf-8 response")
    };
    let response = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("HTTP GET timed out");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status code");
    (status, body.to_owned())
}

/// The HTTP status of a refused WebSocket handshake.
async fn refused_status(url: &str) -> u16 {
    match TestClient::try_connect(url).await {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal of {url}, got {other}"),
        Ok(_) => panic!("{url} was upgraded; expected an HTTP refusal"),
    }
}

/// Connects to `/ws?id=ID` and waits until a `say` request is answered (so it is bound).
async fn demo_client(addr: SocketAddr, id: &str) -> TestClient {
    let mut client = TestClient::connect(&format!("ws://{addr}/ws?id={id}")).await;
    let (reply, pushes) = client.request("say", json!("hello")).await;
    assert_eq!(reply["echo"], "hello", "client {id} is served");
    assert!(pushes.is_empty(), "unexpected pushes: {pushes:?}");
    client
}

fn health_json(body: &str) -> Value {
    serde_json::from_str(body).expect("health is JSON")
}

#[tokio::test]
async fn health_is_json_on_the_same_port() {
    let (addr, _node) = start().await;
    let (status, body) = http_get(addr, "/health").await;
    assert_eq!(status, 200);
    assert_eq!(
        health_json(&body),
        json!({"status": "ok", "connections": 0, "clients": 0})
    );

    let _client = demo_client(addr, "1").await;
    let (status, body) = http_get(addr, "/health").await;
    assert_eq!(status, 200);
    assert_eq!(
        health_json(&body),
        json!({"status": "ok", "connections": 1, "clients": 1})
    );
}

#[tokio::test]
async fn demo_request_reply_and_push_between_clients() {
    let (addr, _node) = start().await;
    let mut one = demo_client(addr, "1").await;
    let mut two = demo_client(addr, "2").await;

    let (reply, _) = one
        .request(
            "command",
            json!({"action": "toPlayer", "toPlayerId": "2", "msg": "hi two"}),
        )
        .await;
    assert!(
        reply["msg"]
            .as_str()
            .is_some_and(|msg| msg.starts_with("Message sent successfully")),
        "{reply}"
    );
    let (event, payload) = two.recv_push().await;
    assert_eq!(event, "say");
    assert_eq!(payload, json!({"action": "toPlayer", "msg": "hi two"}));
    one.assert_silent("the sender").await;
}

#[tokio::test]
async fn state_and_peer_address_reach_crosswire_handlers() {
    let (addr, _node) = start().await;
    let mut client = demo_client(addr, "7").await;
    let (reply, _) = client.request("whoami", Value::Null).await;
    assert_eq!(reply["id"], "7");
    assert_eq!(reply["motd"], "welcome to the axum app");
    let remote: SocketAddr = reply["remote"]
        .as_str()
        .and_then(|remote| remote.parse().ok())
        .unwrap_or_else(|| panic!("the peer address comes from ConnectInfo: {reply}"));
    assert!(remote.ip().is_loopback(), "{remote}");
    assert_ne!(
        remote.port(),
        addr.port(),
        "the client's port, not the server's"
    );
}

#[tokio::test]
async fn middleware_refuses_before_the_upgrade() {
    let (addr, node) = start().await;
    assert_eq!(refused_status(&format!("ws://{addr}/secure/ws")).await, 401);
    assert_eq!(
        refused_status(&format!("ws://{addr}/secure/ws?token=wrong")).await,
        403
    );
    assert_eq!(node.connection_count(), 0, "no WebSocket was created");
}

#[tokio::test]
async fn middleware_binds_the_token_user_before_the_first_message() {
    let (addr, _node) = start().await;
    let mut alice = TestClient::connect(&format!("ws://{addr}/secure/ws?token=token-alice")).await;
    // The very first message already sees the binding (no `?id=`; the demo leaves it alone).
    let (reply, _) = alice.request("whoami", Value::Null).await;
    assert_eq!(reply["id"], "alice");
    let (reply, _) = alice.request("say", json!("hi")).await;
    assert_eq!(reply["echo"], "hi");

    let mut two = demo_client(addr, "2").await;
    let (reply, _) = two
        .request(
            "command",
            json!({"action": "toPlayer", "toPlayerId": "alice", "msg": "for alice"}),
        )
        .await;
    assert!(
        reply["msg"]
            .as_str()
            .is_some_and(|msg| msg.starts_with("Message sent successfully")),
        "{reply}"
    );
    let (event, payload) = alice.recv_push().await;
    assert_eq!(event, "say");
    assert_eq!(payload, json!({"action": "toPlayer", "msg": "for alice"}));
}

#[tokio::test]
async fn extractor_refuses_or_binds_in_an_application_handler() {
    let (addr, node) = start().await;
    assert_eq!(
        refused_status(&format!("ws://{addr}/extractor/ws")).await,
        401
    );
    assert_eq!(node.connection_count(), 0, "no WebSocket was created");

    let mut bob = TestClient::connect(&format!("ws://{addr}/extractor/ws?key=bob-key")).await;
    let (reply, _) = bob.request("whoami", Value::Null).await;
    assert_eq!(reply["id"], "bob");
}

#[tokio::test]
async fn non_upgrade_get_is_426() {
    let (addr, _node) = start().await;
    let (status, _) = http_get(addr, "/ws?id=1").await;
    assert_eq!(status, 426);
    // The middleware answers before the route: no token is still 401.
    let (status, _) = http_get(addr, "/secure/ws").await;
    assert_eq!(status, 401);
}
