//! crosswire inside an [axum](https://docs.rs/axum/0.8) application (feature `axum`): the
//! WebSocket endpoint is one route, next to the application's own routes on the same port.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::Router;
//! use crosswire::Node;
//!
//! let node = Node::builder().build().await?;
//! crosswire::demo::install(&node);
//! let app = Router::new().route("/ws", crosswire::axum::ws(node));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! The upgrade is crosswire's own ([`WsAcceptor`]): a request that is not a WebSocket upgrade
//! gets `426 Upgrade Required`, and `503 Service Unavailable` comes back when the node is
//! shutting down or has its [`max_connections`](WsConfig::max_connections).
//!
//! # Authentication before the upgrade
//!
//! Authenticate with axum's own tools, before any WebSocket exists: a middleware
//! ([`axum::middleware::from_fn`]) or an extractor answers 401/403 and the request never
//! reaches the upgrade. To bind the connection to the authenticated identity, the middleware
//! inserts a [`SocketId`] into the request's extensions; [`ws`] binds the connection to it before its connection handlers run, so
//! `socket.socket_id()` is already set in [`system::Connection`](crate::system::Connection)
//! handlers and in every event handler.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::extract::Request;
//! use axum::http::StatusCode;
//! use axum::middleware::{from_fn, Next};
//! use axum::response::Response;
//! use axum::Router;
//! use crosswire::axum::SocketId;
//!
//! /// Stands in for real verification (a session, a JWT...).
//! async fn require_user(mut request: Request, next: Next) -> Result<Response, StatusCode> {
//!     let user = request
//!         .headers()
//!         .get("x-user")
//!         .and_then(|value| value.to_str().ok())
//!         .ok_or(StatusCode::UNAUTHORIZED)?
//!         .to_owned();
//!     request.extensions_mut().insert(SocketId(user));
//!     Ok(next.run(request).await)
//! }
//!
//! let node = crosswire::Node::builder().build().await?;
//! let app: Router = Router::new()
//!     .route("/ws", crosswire::axum::ws(node).layer(from_fn(require_user)));
//! # let _ = app; Ok(()) }
//! ```
//!
//! A handler of the application's own (with its extractors) can upgrade too, with
//! [`upgrade`].
//!
//! # Peer addresses
//!
//! Served with
//! [`into_make_service_with_connect_info::<SocketAddr>()`](::axum::Router::into_make_service_with_connect_info),
//! the peer address (axum's [`ConnectInfo<SocketAddr>`](ConnectInfo)) becomes the
//! connection's [`RequestInfo::remote_addr`](crate::RequestInfo::remote_addr); without it the
//! address is `None` and everything else works the same.
//!
//! # Application state
//!
//! crosswire's handlers are closures registered on the [`Node`]; they reach the application's
//! state the way axum handlers reach theirs: by a clone of it (typically an
//! `Arc<AppState>`) captured when the handler is registered. The same state can be given to
//! the router with `with_state`, and the node can be part of it (a [`Node`] is cheap to clone),
//! so that HTTP routes reach the node too:
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use axum::extract::State;
//! use axum::routing::get;
//! use axum::Router;
//!
//! struct AppState { motd: String, node: crosswire::Node }
//!
//! let node = crosswire::Node::builder().build().await?;
//! let state = Arc::new(AppState { motd: "hello".into(), node: node.clone() });
//!
//! let s = state.clone();
//! node.on("motd", move |ev| {
//!     let s = s.clone();
//!     async move { let _ = ev.reply(&s.motd); }
//! });
//! let app: Router = Router::new()
//!     .route("/ws", crosswire::axum::ws(node))
//!     .route("/online", get(|State(s): State<Arc<AppState>>| async move {
//!         s.node.local_client_count().to_string()
//!     }))
//!     .with_state(state);
//! # let _ = app; Ok(()) }
//! ```

use std::net::SocketAddr;

use ::axum::extract::{ConnectInfo, Request};
use ::axum::response::{IntoResponse, Response};
use ::axum::routing::{get, MethodRouter};
use crosswire_core::Node;
use crosswire_ws::{Accept, WsAcceptor, WsConfig};

/// The socket id an authenticated request binds its connection to: a middleware (or a
/// handler) inserts it into the request's extensions before [`ws`] or [`upgrade`] upgrades
/// the request, and the connection is bound to it before its connection handlers run.
///
/// Binding follows the node's rules for an id already bound to another connection, as
/// [`Node::bind`] does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SocketId(pub String);

/// The WebSocket endpoint of `node` with the default [`WsConfig`], as a route for
/// [`Router::route`](::axum::Router::route): `GET` requests are upgraded (see the
/// [module documentation](self) for authentication and peer addresses), other methods get
/// `405 Method Not Allowed`.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::routing::get;
/// use axum::Router;
/// use crosswire::Node;
///
/// let node = Node::builder().build().await?;
/// crosswire::demo::install(&node); // binds `?id=`
/// let app = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .route("/ws", crosswire::axum::ws(node));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app).await?;
/// # Ok(()) }
/// ```
pub fn ws<S>(node: Node) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    ws_with(node, WsConfig::default())
}

/// [`ws`] with transport settings (limits, subprotocols, timeouts...).
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use crosswire::ws::WsConfig;
/// let node = crosswire::Node::builder().build().await?;
/// let config = WsConfig::default().max_connections(Some(10_000));
/// let app: axum::Router = axum::Router::new().route("/ws", crosswire::axum::ws_with(node, config));
/// # let _ = app; Ok(()) }
/// ```
pub fn ws_with<S>(node: Node, config: WsConfig) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    let acceptor = WsAcceptor::new(node, config);
    get(move |request: Request| async move { upgrade(&acceptor, request) })
}

/// Upgrades `request` with `acceptor`, from a handler of the application's own (for example
/// one that authenticates with an extractor first). Takes the [`SocketId`] and
/// [`ConnectInfo<SocketAddr>`](ConnectInfo) from the request's extensions when they are
/// there. Answers as [`WsAcceptor::accept`] does: 426 to a request that is not a WebSocket
/// upgrade, 503 when the node is shutting down or full.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::extract::{Request, State};
/// use axum::response::Response;
/// use axum::routing::get;
/// use crosswire::axum::{upgrade, SocketId};
/// use crosswire::ws::{WsAcceptor, WsConfig};
///
/// async fn handler(State(acceptor): State<WsAcceptor>, mut request: Request) -> Response {
///     request.extensions_mut().insert(SocketId("7".into()));
///     upgrade(&acceptor, request)
/// }
/// let node = crosswire::Node::builder().build().await?;
/// let app: axum::Router = axum::Router::new()
///     .route("/ws", get(handler))
///     .with_state(WsAcceptor::new(node, WsConfig::default()));
/// # let _ = app; Ok(()) }
/// ```
pub fn upgrade(acceptor: &WsAcceptor, mut request: Request) -> Response {
    let mut accept = Accept::new();
    if let Some(ConnectInfo(addr)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        accept = accept.remote_addr(*addr);
    }
    if let Some(SocketId(id)) = request.extensions_mut().remove::<SocketId>() {
        accept = accept.socket_id(id);
    }
    acceptor.accept_with(request, accept).into_response()
}
