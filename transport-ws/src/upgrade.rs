//! Turning an HTTP request into a crosswire connection: inside crosswire's own listener, inside
//! an existing hyper or axum server on a shared port, or after the application authenticated
//! the request itself (the recommended way: a failed check answers 401 and no WebSocket exists).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use crosswire_core::{LogLimiter, Node, RequestInfo, TransportCount};
use fastwebsockets::upgrade::{is_upgrade_request, upgrade};
use http_body_util::Empty;
use hyper::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use socket2::SockRef;
use tokio::net::TcpStream;

use crate::connection::{self, FlowSettings};
use crate::subprotocol::Choice;
use crate::WsConfig;

/// Accepts WebSocket upgrades for one node. Cheap to clone; use one per HTTP service.
///
/// ```no_run
/// # async fn serve(node: crosswire_core::Node, req: hyper::Request<hyper::body::Incoming>) {
/// use crosswire_ws::{Accept, WsAcceptor, WsConfig};
/// let acceptor = WsAcceptor::new(node, WsConfig::default());
/// // In a hyper/axum handler: authenticate first, then upgrade and bind in one step.
/// let user = req.uri().query().and_then(|q| q.strip_prefix("token=")).map(str::to_owned);
/// let response = match user {
///     Some(user) => acceptor.accept_with(req, Accept::new().socket_id(user)),
///     None => crosswire_ws::unauthorized(),
/// };
/// # let _ = response; }
/// ```
#[derive(Debug, Clone)]
pub struct WsAcceptor {
    node: Node,
    config: WsConfig,
    flow: Arc<FlowSettings>,
    /// Limits the "maximum of connections" warning to one line a second.
    full_log: Arc<LogLimiter>,
}

/// Per-connection choices of [`WsAcceptor::accept_with`].
#[derive(Debug, Clone, Default)]
pub struct Accept {
    socket_id: Option<String>,
    remote_addr: Option<SocketAddr>,
}

impl Accept {
    /// Nothing decided yet: the connection handlers bind it.
    pub fn new() -> Self {
        Accept::default()
    }

    /// Binds the connection to this socket id before its connection handlers run (for requests
    /// the application authenticated before the upgrade).
    pub fn socket_id(mut self, id: impl Into<String>) -> Self {
        self.socket_id = Some(id.into());
        self
    }

    /// The peer address, shown in [`RequestInfo::remote_addr`].
    pub fn remote_addr(mut self, addr: SocketAddr) -> Self {
        self.remote_addr = Some(addr);
        self
    }
}

impl WsAcceptor {
    /// An acceptor for `node` with `config`.
    pub fn new(node: Node, config: WsConfig) -> Self {
        let flow = Arc::new(FlowSettings::new(&config));
        node.mark_serving_clients();
        WsAcceptor {
            node,
            config,
            flow,
            full_log: Arc::new(LogLimiter::new()),
        }
    }

    /// The transport settings.
    pub fn config(&self) -> &WsConfig {
        &self.config
    }

    /// The node connections are given to.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Upgrades `request`, answering 426 to a request that is not a WebSocket upgrade, 400 to
    /// a malformed one, and 503 when the node is shutting down or has
    /// [`max_connections`](WsConfig::max_connections). Send the returned response; the
    /// connection starts once it is out.
    pub fn accept<B>(&self, request: Request<B>) -> Response<Empty<Bytes>> {
        self.accept_with(request, Accept::new())
    }

    /// [`accept`](Self::accept) with per-connection choices.
    pub fn accept_with<B>(
        &self,
        mut request: Request<B>,
        accept: Accept,
    ) -> Response<Empty<Bytes>> {
        if !is_upgrade_request(&request) {
            return status(StatusCode::UPGRADE_REQUIRED);
        }
        if self.node.is_shutting_down() {
            return status(StatusCode::SERVICE_UNAVAILABLE);
        }
        if let Some(max) = self.config.max_connections {
            if self.node.connection_count() >= max {
                self.node.count(TransportCount::ConnectionLimit);
                if let Some(held_back) = self.full_log.allow() {
                    tracing::warn!(
                        max,
                        held_back,
                        "refused an upgrade: the node has its maximum of connections"
                    );
                }
                return status(StatusCode::SERVICE_UNAVAILABLE);
            }
        }
        let subprotocol = match self
            .config
            .subprotocols
            .choose(request.headers(), self.config.require_subprotocol)
        {
            Choice::Chosen(chosen) => Some(chosen),
            Choice::NoneChosen => None,
            Choice::Refused => {
                tracing::debug!("refused an upgrade that offered no supported subprotocol");
                return status(StatusCode::BAD_REQUEST);
            }
        };
        let (mut response, upgrade_future) = match upgrade(&mut request) {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "rejected a malformed WebSocket upgrade");
                return status(StatusCode::BAD_REQUEST);
            }
        };
        if let Some(chosen) = &subprotocol {
            match HeaderValue::from_str(chosen) {
                Ok(value) => {
                    response.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, value);
                }
                Err(_) => return status(StatusCode::BAD_REQUEST),
            }
        }
        let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let info = RequestInfo::parse(target, self.config.parse, accept.remote_addr)
            .with_subprotocol(subprotocol);
        let node = self.node.clone();
        let send_buffer = self.config.send_buffer;
        let flow = self.flow.clone();
        tokio::spawn(async move {
            let websocket = match upgrade_future.await {
                Ok(websocket) => websocket,
                Err(error) => {
                    tracing::debug!(%error, "WebSocket upgrade did not complete");
                    return;
                }
            };
            let upgraded = websocket.into_inner().into_inner();
            // On crosswire's own listener (and on an application's hyper server over plain
            // TCP) the connection is a plain TCP stream: serve it directly, without hyper's
            // wrapper.
            match upgraded.downcast::<TokioIo<TcpStream>>() {
                Ok(parts) => {
                    let io = parts.io.into_inner();
                    if let Some(bytes) = send_buffer {
                        set_send_buffer(&io, bytes);
                    }
                    let early = &parts.read_buf;
                    connection::spawn(node, info, accept.socket_id, io, early, &flow);
                }
                Err(upgraded) => {
                    let io = TokioIo::new(upgraded);
                    connection::spawn(node, info, accept.socket_id, io, &[], &flow);
                }
            }
        });
        response
    }
}

/// Sets `SO_SNDBUF` of `stream` (see [`WsConfig::send_buffer`]); a failure is only logged.
fn set_send_buffer(stream: &TcpStream, bytes: usize) {
    if let Err(error) = SockRef::from(stream).set_send_buffer_size(bytes) {
        tracing::warn!(%error, bytes, "could not set the send buffer size (SO_SNDBUF)");
    }
}

fn status(code: StatusCode) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = code;
    response
}

/// A plain `401 Unauthorized` response, for requests rejected before any WebSocket exists.
pub fn unauthorized() -> Response<Empty<Bytes>> {
    status(StatusCode::UNAUTHORIZED)
}
