//! Helpers for testing the client connector (`crosswire::client`): a demo server, a recorder of
//! the connector's own events, and a hand-written raw WebSocket server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crosswire::client::{system, CloseInfo, Connector, ConnectorBuilder, ReconnectInfo};
use crosswire::ws::{WsConfig, WsServer};
use crosswire::Node;
use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::WAIT;

/// A crosswire node with the demo event set behind a `WsServer` on a loopback port.
pub struct DemoServer {
    pub node: Node,
    pub server: WsServer,
}

impl DemoServer {
    /// Starts on a free loopback port.
    pub async fn start() -> DemoServer {
        DemoServer::start_on("127.0.0.1:0".parse().expect("an address")).await
    }

    /// Starts on `addr` (e.g. the port of a server that was shut down).
    pub async fn start_on(addr: SocketAddr) -> DemoServer {
        DemoServer::start_with(Node::builder(), addr).await
    }

    /// Starts a node built from `builder` on `addr`.
    pub async fn start_with(builder: crosswire::NodeBuilder, addr: SocketAddr) -> DemoServer {
        let node = builder.build().await.expect("node builds");
        crosswire::demo::install(&node);
        let server = WsServer::bind(addr, node.clone(), WsConfig::default())
            .await
            .expect("server binds a loopback port");
        DemoServer { node, server }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// A connector builder for this server, bound as socket id `id` by the demo.
    pub fn builder(&self, id: &str) -> ConnectorBuilder {
        Connector::builder(format!("ws://{}", self.addr())).param("id", id)
    }
}

/// One of the connector's own events, as a test sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Open,
    Close(u16, String),
    Error(String),
    Ping,
    Pong(Duration),
    Reconnect(ReconnectInfo),
    RepeatLimit(u32),
    PongTimeout,
}

impl Seen {
    /// Whether this is a heartbeat event (ping or pong), which most tests skip.
    pub fn is_heartbeat(&self) -> bool {
        matches!(self, Seen::Ping | Seen::Pong(_))
    }
}

/// Every system event of a connector, in order, with the (Tokio) instant it fired at. The
/// listeners hold only a channel sender, never the connector.
pub struct Recorder {
    rx: mpsc::UnboundedReceiver<(Instant, Seen)>,
}

/// Registers listeners for every system event of `client` (except `message`).
pub fn record(client: &Connector) -> Recorder {
    let (tx, rx) = mpsc::unbounded_channel();
    let sender = |tx: &mpsc::UnboundedSender<(Instant, Seen)>| {
        let tx = tx.clone();
        move |seen: Seen| {
            let _ = tx.send((Instant::now(), seen));
            async {}
        }
    };
    let s = sender(&tx);
    client.on_system(system::Open, move |()| s(Seen::Open));
    let s = sender(&tx);
    client.on_system(system::Close, move |c: CloseInfo| {
        s(Seen::Close(c.code, c.reason.to_string()))
    });
    let s = sender(&tx);
    client.on_system(system::Error, move |e| s(Seen::Error(e.to_string())));
    let s = sender(&tx);
    client.on_system(system::Ping, move |()| s(Seen::Ping));
    let s = sender(&tx);
    client.on_system(system::Pong, move |latency| s(Seen::Pong(latency)));
    let s = sender(&tx);
    client.on_system(system::Reconnect, move |info| s(Seen::Reconnect(info)));
    let s = sender(&tx);
    client.on_system(system::RepeatLimit, move |limit| {
        s(Seen::RepeatLimit(limit))
    });
    let s = sender(&tx);
    client.on_system(system::PongTimeout, move |()| s(Seen::PongTimeout));
    Recorder { rx }
}

impl Recorder {
    /// The next event and when it fired, within `wait`; panics otherwise.
    pub async fn next_within(&mut self, wait: Duration) -> (Instant, Seen) {
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .expect("a connector event in time")
            .expect("the recorder's listeners are alive")
    }

    /// The next event within [`WAIT`].
    pub async fn next(&mut self) -> Seen {
        self.next_within(WAIT).await.1
    }

    /// The next event that is not a ping or pong, within [`WAIT`].
    pub async fn next_non_heartbeat(&mut self) -> Seen {
        loop {
            let seen = self.next().await;
            if !seen.is_heartbeat() {
                return seen;
            }
        }
    }

    /// Skips events until one matches `want`; returns it (within [`WAIT`] each).
    pub async fn until(&mut self, want: impl Fn(&Seen) -> bool) -> Seen {
        loop {
            let seen = self.next().await;
            if want(&seen) {
                return seen;
            }
        }
    }

    /// An event already recorded, if any.
    pub fn try_next(&mut self) -> Option<Seen> {
        self.rx.try_recv().ok().map(|(_, seen)| seen)
    }
}

/// Builds, records, connects and waits for `open`.
pub async fn open(builder: ConnectorBuilder) -> (Connector, Recorder) {
    let client = builder.build().expect("valid connector options");
    let mut events = record(&client);
    client.connect();
    assert_eq!(events.next().await, Seen::Open);
    assert!(client.is_open());
    (client, events)
}

/// A hand-written WebSocket server (tokio-tungstenite), for behaviour a crosswire server never
/// shows (no heartbeat echo, dropping TCP without a close frame) and for recording frames.
pub struct RawServer {
    listener: TcpListener,
}

/// One connection accepted by a [`RawServer`].
pub struct RawConn {
    pub ws: WebSocketStream<TcpStream>,
    /// The request target of the upgrade (path and query) as the server saw it.
    pub target: String,
}

impl RawServer {
    pub async fn bind() -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        RawServer { listener }
    }

    /// A server whose connections have a tiny receive buffer (no autotuning), so that a peer
    /// that stops reading blocks the writer after a few megabytes rather than tens.
    pub async fn bind_with_small_receive_buffer() -> RawServer {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        socket
            .bind("127.0.0.1:0".parse().expect("an address"))
            .expect("bind a loopback port");
        let listener = socket.listen(16).expect("listen");
        RawServer { listener }
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound address")
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr())
    }

    /// Accepts the next connection and completes its WebSocket handshake, within `wait`.
    // The handshake callback's error type is tungstenite's, however large.
    #[allow(clippy::result_large_err)]
    pub async fn accept_within(&self, wait: Duration) -> RawConn {
        let (tcp, _) = tokio::time::timeout(wait, self.listener.accept())
            .await
            .expect("a connection in time")
            .expect("accept");
        let target = Arc::new(Mutex::new(String::new()));
        let seen = target.clone();
        let ws = tokio_tungstenite::accept_hdr_async(tcp, move |req: &Request, res: Response| {
            *seen.lock().expect("not poisoned") = req.uri().to_string();
            Ok(res)
        })
        .await
        .expect("WebSocket handshake");
        let target = target.lock().expect("not poisoned").clone();
        RawConn { ws, target }
    }

    pub async fn accept(&self) -> RawConn {
        self.accept_within(WAIT).await
    }

    /// Whether a connection is waiting to be accepted, without waiting for one.
    pub async fn has_pending_connection(&self) -> bool {
        tokio::time::timeout(Duration::ZERO, self.listener.accept())
            .await
            .is_ok()
    }
}

impl RawConn {
    /// The next message, or `None` once the connection ended; panics after `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Message> {
        match tokio::time::timeout(wait, self.ws.next())
            .await
            .expect("a message in time")
        {
            Some(Ok(message)) => Some(message),
            Some(Err(_)) | None => None,
        }
    }

    pub async fn next(&mut self) -> Option<Message> {
        self.next_within(WAIT).await
    }

    /// Keeps reading in the background (so tungstenite answers a close frame at once) and
    /// hands over every message.
    pub fn read_in_background(mut self) -> mpsc::UnboundedReceiver<Message> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(message)) = self.ws.next().await {
                let _ = tx.send(message);
            }
        });
        rx
    }
}
