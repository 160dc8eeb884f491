//! Unit tests of your handlers on the memory broker, without sockets (feature `testing`).
//!
//! A [`TestCluster`] builds nodes on one in-memory hub, each set up by your own setup function
//! (the one production code calls). A [`TestClient`] connects to one of them through the real
//! connection lifecycle (connection handlers, binding, rooms, heartbeat, close events) over an
//! in-memory [`Transport`], the same boundary the WebSocket server
//! uses: what the node writes to a socket, the client reads here, byte for byte.
//!
//! Everything runs on tokio timers, so a test under `#[tokio::test(start_paused = true)]`
//! (tokio's `test-util` feature) spends no wall time on heartbeat, background or cross-server
//! timeouts: the clock jumps whenever every task waits.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), crosswire::Error> {
//! use crosswire::testing::TestCluster;
//! use serde_json::json;
//!
//! let cluster = TestCluster::new(["a", "b"], crosswire::demo::install).await?;
//! let mut one = cluster.client("a").query("id", "1").connect().await;
//! let mut two = cluster.client("b").query("id", "2").connect().await;
//!
//! let command = json!({ "action": "toPlayer", "toPlayerId": "2", "msg": "hi" });
//! let reply = one.request("command", &command).await;
//! assert!(reply["msg"].as_str().is_some_and(|msg| msg.starts_with("Message sent successfully")));
//! two.expect_push("say", json!({ "action": "toPlayer", "msg": "hi" })).await;
//! one.assert_no_push(std::time::Duration::from_secs(1)).await;
//! # Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crosswire_core::frame::{encode_client_event, parse_server_frame, ServerFrame};
use crosswire_core::{Connection, ParseOptions, RequestInfo, SendError, Transport};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, watch, Notify};

use crate::memory::MemoryHub;
use crate::{Error, Node, NodeBuilder};

/// How long a [`TestClient`] waits for a push, a reply or a close before it fails the test.
///
/// On a paused clock a wait costs no wall time, so it is long enough for the node's default
/// timers (background close 10 s); for longer ones (the heartbeat timeout, two ping
/// intervals) set [`ClientBuilder::wait`].
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// Nodes on one in-memory hub, set up by the application's own setup function.
pub struct TestCluster {
    // Kept so the nodes' broker lives as long as the cluster.
    _hub: MemoryHub,
    nodes: Vec<Node>,
}

impl TestCluster {
    /// Builds a node for each name on one hub and calls `setup` on each, then waits until every
    /// node knows every other (so cross-server requests expect them all).
    ///
    /// # Errors
    /// What [`NodeBuilder::build`] returns (names must be unique).
    pub async fn new<'a>(
        names: impl IntoIterator<Item = &'a str>,
        setup: impl Fn(&Node),
    ) -> Result<TestCluster, Error> {
        TestCluster::configured(names, |builder| builder, setup).await
    }

    /// As [`new`](Self::new), with `configure` applied to each node's builder (after its name
    /// and broker), for options such as timeouts or limits.
    ///
    /// # Errors
    /// What [`NodeBuilder::build`] returns.
    pub async fn configured<'a>(
        names: impl IntoIterator<Item = &'a str>,
        configure: impl Fn(NodeBuilder) -> NodeBuilder,
        setup: impl Fn(&Node),
    ) -> Result<TestCluster, Error> {
        let hub = MemoryHub::new();
        let mut nodes = Vec::new();
        for name in names {
            let builder = Node::builder().server_name(name).broker(hub.broker());
            let node = configure(builder).build().await?;
            setup(&node);
            nodes.push(node);
        }
        let cluster = TestCluster { _hub: hub, nodes };
        cluster.until_everyone_knows_everyone().await;
        Ok(cluster)
    }

    /// Waits until each node lists every node as a member (each join is an event).
    async fn until_everyone_knows_everyone(&self) {
        let joined = Arc::new(Notify::new());
        for node in &self.nodes {
            let joined = joined.clone();
            node.on_system(crate::system::NodeJoined, move |_| {
                joined.notify_waiters();
                async {}
            });
        }
        let complete = || {
            self.nodes.iter().all(|node| {
                let members = node.members();
                self.nodes
                    .iter()
                    .all(|other| members.iter().any(|m| m.name == other.server_name()))
            })
        };
        let deadline = tokio::time::Instant::now() + DEFAULT_WAIT;
        loop {
            let next_join = joined.notified();
            tokio::pin!(next_join);
            next_join.as_mut().enable();
            if complete() {
                return;
            }
            if tokio::time::timeout_at(deadline, next_join).await.is_err() {
                panic!("the test cluster's nodes did not all meet within {DEFAULT_WAIT:?}");
            }
        }
    }

    /// The node named `name`.
    ///
    /// # Panics
    /// When the cluster has no such node.
    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|node| node.server_name() == name)
            .unwrap_or_else(|| panic!("the test cluster has no node {name:?}"))
    }

    /// Every node, in the order of their names.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Starts describing a client of node `name`; [`ClientBuilder::connect`] connects it.
    ///
    /// # Panics
    /// When the cluster has no such node.
    pub fn client(&self, name: &str) -> ClientBuilder {
        ClientBuilder::new(self.node(name).clone())
    }
}

/// The opening request of a [`TestClient`] and how it behaves.
#[must_use = "nothing connects until `connect`"]
pub struct ClientBuilder {
    node: Node,
    path: String,
    query: Vec<(String, String)>,
    bound_as: Option<String>,
    answers_pings: bool,
    wait: Duration,
}

impl ClientBuilder {
    /// A client of `node` (also for a node built without [`TestCluster`]).
    pub fn new(node: Node) -> Self {
        ClientBuilder {
            node,
            path: "/".to_owned(),
            query: Vec::new(),
            bound_as: None,
            answers_pings: true,
            wait: DEFAULT_WAIT,
        }
    }

    /// The request path. Default: `/`.
    pub fn path(mut self, path: &str) -> Self {
        self.path = path.to_owned();
        self
    }

    /// Adds a query parameter to the opening request (encoded as a browser would).
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Connects already bound to `socket_id`, as after authentication before the upgrade
    /// (`WsAcceptor::accept_with`, `crosswire::axum::ws_with`).
    pub fn bound_as(mut self, socket_id: &str) -> Self {
        self.bound_as = Some(socket_id.to_owned());
        self
    }

    /// Never answers the server's protocol pings (a client that froze), to test the
    /// heartbeat timeout. By default pings are answered at once, as browsers do.
    pub fn silent(mut self) -> Self {
        self.answers_pings = false;
        self
    }

    /// How long the client waits for a push, a reply or a close before it fails the test.
    /// Default: [`DEFAULT_WAIT`].
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Connects: the node's connection handlers run to completion before this returns.
    pub async fn connect(self) -> TestClient {
        let mut target = self.path.clone();
        if !self.query.is_empty() {
            let mut query = form_urlencoded::Serializer::new(String::new());
            for (name, value) in &self.query {
                query.append_pair(name, value);
            }
            target = format!("{target}?{}", query.finish());
        }
        let request = RequestInfo::parse(&target, ParseOptions::default(), None);
        let (frames_tx, frames) = mpsc::unbounded_channel();
        let (closed_tx, closed) = watch::channel(None);
        let peer = Arc::new(Peer {
            closed: closed_tx,
            pinged: Notify::new(),
            finished: watch::channel(false).0,
        });
        let transport = Arc::new(InMemoryTransport {
            frames: frames_tx,
            peer: peer.clone(),
        });
        let connection = match &self.bound_as {
            Some(id) => self.node.connect_bound(request, transport, id).await,
            None => self.node.connect(request, transport).await,
        };
        let connection = Arc::new(Mutex::new(Some(connection)));
        tokio::spawn(drive(
            connection.clone(),
            peer.clone(),
            closed.clone(),
            self.answers_pings,
        ));
        TestClient {
            heartbeat: self.node.options().heartbeat().to_owned(),
            connection,
            peer,
            frames,
            closed,
            pushes: VecDeque::new(),
            replies: HashMap::new(),
            heartbeats: 0,
            next_callback: 0,
            wait: self.wait,
        }
    }
}

/// A push the client received.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    /// The event name.
    pub event: String,
    /// The payload (`null` when absent).
    pub payload: Value,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The close code (1006 when the server dropped the connection without one).
    pub code: u16,
    /// The close reason.
    pub reason: String,
}

/// What the node's side and the client's side of one connection share.
struct Peer {
    /// Set once, by whichever side closes first.
    closed: watch::Sender<Option<Closed>>,
    /// The node sent a protocol ping.
    pinged: Notify,
    /// The node removed the connection (its Close handlers ran).
    finished: watch::Sender<bool>,
}

impl Peer {
    fn close(&self, code: u16, reason: &str) {
        self.closed.send_if_modified(|closed| {
            let first = closed.is_none();
            if first {
                *closed = Some(Closed {
                    code,
                    reason: reason.to_owned(),
                });
            }
            first
        });
    }
}

/// The node's side of a test connection: frames go to the client's queue unchanged.
struct InMemoryTransport {
    frames: mpsc::UnboundedSender<Bytes>,
    peer: Arc<Peer>,
}

impl Transport for InMemoryTransport {
    fn send(&self, frame: Bytes) -> Result<(), SendError> {
        if !self.is_open() {
            return Err(SendError::Closed);
        }
        self.frames.send(frame).map_err(|_| SendError::Closed)
    }

    fn ping(&self) {
        self.peer.pinged.notify_one();
    }

    fn close(&self, code: u16, reason: &str) {
        self.peer.close(code, reason);
    }

    fn terminate(&self) {
        // As the WebSocket transport reports it.
        self.peer.close(crate::close_codes::ABNORMAL, "terminated");
    }

    fn is_open(&self) -> bool {
        self.peer.closed.borrow().is_none()
    }
}

/// The client's background: answers pings, and finishes the connection once either side
/// closed (the client answers a close at once).
async fn drive(
    connection: Arc<Mutex<Option<Connection>>>,
    peer: Arc<Peer>,
    mut closed: watch::Receiver<Option<Closed>>,
    answers_pings: bool,
) {
    let ended = loop {
        let ended = tokio::select! {
            _ = peer.pinged.notified() => None,
            ended = closed.wait_for(Option::is_some) => {
                Some(ended.ok().and_then(|closed| closed.clone()))
            }
        };
        match ended {
            Some(ended) => break ended,
            None if answers_pings => {
                if let Some(connection) = connection.lock().as_ref() {
                    connection.pong();
                }
            }
            None => {}
        }
    };
    let Closed { code, reason } = ended.unwrap_or(Closed {
        code: crate::close_codes::ABNORMAL,
        reason: String::new(),
    });
    let finished = connection.lock().take();
    if let Some(connection) = finished {
        connection.finish(code, &reason).await;
    }
    peer.finished.send_replace(true);
}

/// A client connected to a node over an in-memory transport. Dropping it is a client that
/// went away (1006).
pub struct TestClient {
    connection: Arc<Mutex<Option<Connection>>>,
    peer: Arc<Peer>,
    frames: mpsc::UnboundedReceiver<Bytes>,
    closed: watch::Receiver<Option<Closed>>,
    /// Pushes read while waiting for something else.
    pushes: VecDeque<Push>,
    /// Replies read while waiting for something else, by callback id.
    replies: HashMap<String, Value>,
    heartbeats: usize,
    heartbeat: String,
    next_callback: u64,
    wait: Duration,
}

impl TestClient {
    /// The connection as the node's handlers see it, while it is open.
    pub fn socket(&self) -> Option<crate::Socket> {
        self.connection
            .lock()
            .as_ref()
            .map(|connection| connection.socket().clone())
    }

    /// Sends one text message exactly as given (for malformed or hand-made frames).
    pub fn send_text(&self, text: &str) {
        if let Some(connection) = self.connection.lock().as_ref() {
            connection.text(text);
        }
    }

    /// Sends event `event` with `payload`, without asking for a reply.
    ///
    /// # Panics
    /// When `payload` cannot be encoded as JSON.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, payload: &T) {
        let frame = encode_client_event(event, payload, None).expect("a JSON payload");
        self.send_frame(&frame);
    }

    /// Sends a frame made by `encode_client_event` (JSON, so UTF-8).
    fn send_frame(&self, frame: &[u8]) {
        self.send_text(std::str::from_utf8(frame).expect("JSON is UTF-8"));
    }

    /// Sends event `event` as a request and returns the reply.
    ///
    /// # Panics
    /// When no reply arrives within the client's wait, or the connection closes first.
    pub async fn request<T: Serialize + ?Sized>(&mut self, event: &str, payload: &T) -> Value {
        let wait = self.wait;
        match self.request_within(event, payload, wait).await {
            Some(reply) => reply,
            None => panic!("no reply to {event:?} within {wait:?}"),
        }
    }

    /// Sends a request and returns its reply, or `None` when none came within `within`
    /// (nor before the connection closed).
    ///
    /// # Panics
    /// When `payload` cannot be encoded as JSON.
    pub async fn request_within<T: Serialize + ?Sized>(
        &mut self,
        event: &str,
        payload: &T,
        within: Duration,
    ) -> Option<Value> {
        self.next_callback += 1;
        let callback_id = format!("test-{}", self.next_callback);
        let frame =
            encode_client_event(event, payload, Some(&callback_id)).expect("a JSON payload");
        self.send_frame(&frame);
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(reply) = self.replies.remove(&callback_id) {
                return Some(reply);
            }
            if !self.read_one(deadline).await {
                return None;
            }
        }
    }

    /// Sends the heartbeat string and returns whether the node echoed it within the wait.
    pub async fn heartbeat(&mut self) -> bool {
        let before = self.heartbeats;
        let heartbeat = self.heartbeat.clone();
        self.send_text(&heartbeat);
        let deadline = tokio::time::Instant::now() + self.wait;
        while self.heartbeats == before {
            if !self.read_one(deadline).await {
                return false;
            }
        }
        true
    }

    /// The next push.
    ///
    /// # Panics
    /// When none arrives within the client's wait, or the connection closes first.
    pub async fn next_push(&mut self) -> Push {
        let wait = self.wait;
        match self.next_push_within(wait).await {
            Some(push) => push,
            None => panic!("no push within {wait:?} ({})", self.state()),
        }
    }

    /// The next push, or `None` when none arrived within `within` (or the connection closed).
    pub async fn next_push_within(&mut self, within: Duration) -> Option<Push> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(push) = self.pushes.pop_front() {
                return Some(push);
            }
            if !self.read_one(deadline).await {
                return None;
            }
        }
    }

    /// Asserts that the next push is `event` with `payload`.
    ///
    /// # Panics
    /// When it is not, or none arrives within the client's wait.
    pub async fn expect_push<T: Serialize>(&mut self, event: &str, payload: T) {
        let expected = Push {
            event: event.to_owned(),
            payload: serde_json::to_value(payload).expect("a JSON payload"),
        };
        let push = self.next_push().await;
        assert_eq!(push, expected, "unexpected push");
    }

    /// Asserts that no push arrives within `within`.
    ///
    /// # Panics
    /// When one does.
    pub async fn assert_no_push(&mut self, within: Duration) {
        if let Some(push) = self.next_push_within(within).await {
            panic!("expected no push, got {push:?}");
        }
    }

    /// Waits until the connection is closed, and removed from its node (its Close handlers
    /// ran), and returns how it closed.
    ///
    /// # Panics
    /// When it is still open after the client's wait.
    pub async fn closed(&mut self) -> Closed {
        let wait = self.wait;
        let mut finished = self.peer.finished.subscribe();
        let removed = finished.wait_for(|finished| *finished);
        if tokio::time::timeout(wait, removed).await.is_err() {
            panic!("the connection is still open after {wait:?}");
        }
        self.close_status()
            .unwrap_or_else(|| unreachable!("finished only after a close"))
    }

    /// How the connection ended, if it did.
    pub fn close_status(&self) -> Option<Closed> {
        self.closed.borrow().clone()
    }

    /// Closes the connection from the client's side with `code` and `reason` (the node's
    /// Close handlers see them).
    pub fn close(&self, code: u16, reason: &str) {
        self.peer.close(code, reason);
    }

    /// Reads one frame into the buffers; `false` at the deadline or once the connection is
    /// closed and every frame is read.
    async fn read_one(&mut self, deadline: tokio::time::Instant) -> bool {
        let frame = tokio::select! {
            biased;
            frame = self.frames.recv() => frame,
            _ = self.closed.wait_for(Option::is_some) => self.frames.try_recv().ok(),
            () = tokio::time::sleep_until(deadline) => None,
        };
        let Some(frame) = frame else { return false };
        let Ok(text) = std::str::from_utf8(&frame) else {
            panic!("the node sent a frame that is not UTF-8: {frame:?}");
        };
        match parse_server_frame(text, &self.heartbeat) {
            Ok(ServerFrame::Heartbeat) => self.heartbeats += 1,
            Ok(ServerFrame::Push { event, payload }) => self.pushes.push_back(Push {
                event: event.into_owned(),
                payload: serde_json::from_str(payload.get()).unwrap_or(Value::Null),
            }),
            Ok(ServerFrame::Reply {
                callback_id,
                payload,
            }) => {
                let payload = serde_json::from_str(payload.get()).unwrap_or(Value::Null);
                self.replies.insert(callback_id.into_owned(), payload);
            }
            Err(error) => panic!("the node sent a frame the client cannot read ({error}): {text}"),
        }
        true
    }

    fn state(&self) -> &'static str {
        if self.closed.borrow().is_some() {
            "the connection is closed"
        } else {
            "the connection is open"
        }
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.peer.close(crate::close_codes::ABNORMAL, "");
    }
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.nodes.iter().map(Node::server_name).collect();
        f.debug_struct("TestCluster")
            .field("nodes", &names)
            .finish()
    }
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("node", &self.node.server_name())
            .field("path", &self.path)
            .field("query", &self.query)
            .field("bound_as", &self.bound_as)
            .field("answers_pings", &self.answers_pings)
            .field("wait", &self.wait)
            .finish()
    }
}

impl std::fmt::Debug for TestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClient")
            .field("closed", &*self.closed.borrow())
            .field("buffered_pushes", &self.pushes.len())
            .finish()
    }
}
