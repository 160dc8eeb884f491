//! [`Node`]: the handle an application holds. It owns the connections of this server, their
//! socket-id bindings and rooms, the listeners, and the link to the broker.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::task::AbortHandle;

use crate::bridge::{CrossEmit, PendingReplies};
use crate::channels::{check_namespace, ChannelNames, Subscriptions};
use crate::directory::Directory;
use crate::envelope::AnnouncePhase;
use crate::envelope::Compression;
use crate::events::{
    system, ClientEvent, CloseEvent, CrossEvent, ErrorEvent, MessageEvent, SystemEvent,
    SystemListeners,
};
use crate::frame::{self, Incoming, Payload};
use crate::limits::{ConnectionLimits, InFlight};
use crate::listeners::{
    drive_all, poll_once, BoxFuture, HandlerResult, Listen, ListenerId, Listeners, Off, Registry,
};
use crate::membership::Membership;
use crate::metrics::{LogLimiter, Metrics, MetricsSnapshot};
use crate::options::{DuplicateBind, NodeBuilder, NodeOptions};
use crate::rooms::{Match, Rooms, SocketId};
use crate::transport::{RequestInfo, Transport};
use crate::{close_codes, Broker, CallbackId, Error, Socket};

/// The event name of the protocol's background-mode notice.
pub const BACKGROUND_EVENT: &str = "$background";

/// A crosswire server node. Cheap to clone: every clone is the same node.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
/// use crosswire_core::{close_codes, system, Error, Node};
///
/// let node = Node::builder().build().await?;
/// let n = node.clone();
/// node.on_system(system::Connection, move |socket| {
///     let n = n.clone();
///     async move {
///         match socket.request().param("id").map(str::to_owned) {
///             Some(id) => n.bind(&socket, &id)?,
///             None => socket.close(close_codes::AUTH_FAILED, "Auth failure"),
///         }
///         Ok::<_, Error>(())
///     }
/// });
/// node.on("say", |ev| async move {
///     ev.reply(&serde_json::json!({"msg": "hello"}))
/// });
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

pub(crate) struct NodeInner {
    pub(crate) options: NodeOptions,
    pub(crate) names: ChannelNames,
    pub(crate) broker: Option<Arc<dyn Broker>>,
    pub(crate) subscriptions: Option<Subscriptions>,
    pub(crate) compression: Compression,
    heartbeat_frame: Bytes,
    connections: RwLock<HashMap<u64, Socket>>,
    pub(crate) state: RwLock<State>,
    pub(crate) custom_channels: RwLock<HashSet<String>>,
    client_listeners: Listeners<ClientEvent>,
    pub(crate) cross_listeners: Listeners<CrossEvent>,
    system: SystemListeners,
    pub(crate) custom_handler: RwLock<Option<CustomHandler>>,
    pending: Arc<PendingReplies>,
    pub(crate) metrics: Metrics,
    /// Limits the "publish failed" warning to one line a second.
    pub(crate) publish_failure_log: LogLimiter,
    /// Limits the "bad signature" warning to one line a second.
    pub(crate) bad_signature_log: LogLimiter,
    /// Limits the "undecodable envelope" warning to one line a second.
    pub(crate) bad_envelope_log: LogLimiter,
    next_conn: AtomicU64,
    pub(crate) tasks: Mutex<Vec<AbortHandle>>,
    /// Set once [`Node::shutdown`] started: new connections are refused.
    pub(crate) shutting_down: AtomicBool,
    /// Woken when the last connection leaves.
    pub(crate) no_connections: tokio::sync::Notify,
    /// The other nodes of the cluster.
    pub(crate) membership: Membership,
    /// Which node each socket id of the cluster is bound on.
    pub(crate) directory: Directory,
}

/// Bindings and rooms, under one lock so they always agree.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) bound: HashMap<SocketId, Socket>,
    pub(crate) rooms: Rooms,
}

/// A message on a custom channel.
#[derive(Debug, Clone)]
pub struct CustomMessage {
    /// The channel it arrived on.
    pub channel: String,
    /// The bytes as published.
    pub payload: Bytes,
}

pub(crate) type CustomHandler = Arc<dyn Fn(CustomMessage) -> BoxFuture + Send + Sync>;

impl Drop for NodeInner {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().drain(..) {
            task.abort();
        }
    }
}

impl NodeBuilder {
    /// Validates the options, subscribes the node's channels, and starts its background tasks
    /// (broker reader, protocol pings).
    ///
    /// # Errors
    /// [`Error::Options`] for invalid options; [`Error::Broker`] when the broker cannot
    /// subscribe or was already used by another node.
    pub async fn build(self) -> Result<Node, Error> {
        let options = self.validate()?;
        let names = ChannelNames::new(
            &options.bridge_prefix,
            &options.ws_prefix,
            &options.server_name,
        );
        let inbound = match &self.broker {
            Some(broker) => Some(broker.take_inbound().ok_or_else(|| {
                crate::BrokerError::new(
                    crate::BrokerErrorKind::Closed,
                    "this broker instance already serves another node; create one per node",
                )
            })?),
            None => None,
        };
        let inner = Arc::new_cyclic(|weak: &Weak<NodeInner>| {
            let weak = weak.clone();
            // Handler errors are logged by the listeners and counted here.
            let ids = Registry::new(Some(Arc::new(move |_event: &str, _error: &str| {
                if let Some(node) = weak.upgrade() {
                    Metrics::add(&node.metrics.handler_errors);
                }
            })));
            NodeInner {
                compression: Compression {
                    enabled: options.compression,
                    threshold: options.compression_threshold,
                },
                heartbeat_frame: Bytes::from(options.heartbeat.clone().into_bytes()),
                subscriptions: self.broker.clone().map(Subscriptions::new),
                broker: self.broker,
                names,
                connections: RwLock::new(HashMap::new()),
                state: RwLock::new(State::default()),
                custom_channels: RwLock::new(options.custom_channels.iter().cloned().collect()),
                client_listeners: Listeners::new(ids.clone()),
                cross_listeners: Listeners::new(ids.clone()),
                system: SystemListeners::new(&ids),
                custom_handler: RwLock::new(None),
                pending: Arc::default(),
                metrics: Metrics::default(),
                publish_failure_log: LogLimiter::new(),
                bad_signature_log: LogLimiter::new(),
                bad_envelope_log: LogLimiter::new(),
                next_conn: AtomicU64::new(1),
                tasks: Mutex::new(Vec::new()),
                shutting_down: AtomicBool::new(false),
                no_connections: tokio::sync::Notify::new(),
                membership: Membership::new(
                    options.announce_interval,
                    options.missed_announcements,
                ),
                directory: Directory::new(),
                options,
            }
        });
        let node = Node { inner };
        if let Some(inbound) = inbound {
            let weak = Arc::downgrade(&node.inner);
            let tasks = [
                tokio::spawn(crate::inbound::run(weak.clone(), inbound)),
                tokio::spawn(crate::directory::run_announcer(weak.clone())),
                tokio::spawn(crate::membership::run(
                    weak,
                    node.inner.options.announce_interval,
                )),
            ];
            node.inner
                .tasks
                .lock()
                .extend(tasks.iter().map(tokio::task::JoinHandle::abort_handle));
            node.subscribe_fixed_channels().await?;
            // In the background: a broker that is down must not hold the start up.
            let hello = node.clone();
            tokio::spawn(async move { hello.announce(AnnouncePhase::Hello).await });
        }
        if let Some(interval) = node.inner.options.server_ping_interval {
            let task = tokio::spawn(ping_loop(Arc::downgrade(&node.inner), interval));
            node.inner.tasks.lock().push(task.abort_handle());
        }
        Ok(node)
    }
}

impl Node {
    /// Starts configuring a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    pub(crate) fn from_inner(inner: Arc<NodeInner>) -> Node {
        Node { inner }
    }

    pub(crate) fn inner(&self) -> &NodeInner {
        &self.inner
    }

    /// This node's server name.
    pub fn server_name(&self) -> &str {
        &self.inner.options.server_name
    }

    /// The validated options.
    pub fn options(&self) -> &NodeOptions {
        &self.inner.options
    }

    /// Live counters of dropped input and policy actions. Transports add to them.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// A copy of the counters.
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    pub(crate) fn pending(&self) -> &Arc<PendingReplies> {
        &self.inner.pending
    }

    /// Cross-server reply collections still waiting (for diagnostics and leak tests).
    pub fn pending_cross_callbacks(&self) -> usize {
        self.inner.pending.len()
    }

    /// Broker channels this node is subscribed to right now.
    pub fn subscribed_channels(&self) -> Vec<String> {
        let mut channels = self
            .inner
            .subscriptions
            .as_ref()
            .map(Subscriptions::subscribed)
            .unwrap_or_default();
        channels.sort();
        channels
    }

    async fn subscribe_fixed_channels(&self) -> Result<(), Error> {
        let names = &self.inner.names;
        let mut fixed = vec![
            names.bridge.clone(),
            names.own_inbox.clone(),
            names.broadcast.clone(),
            names.private_socket.clone(),
        ];
        fixed.extend(
            self.inner
                .options
                .preset_namespaces
                .iter()
                .map(|ns| names.namespace(ns)),
        );
        fixed.extend(self.inner.options.custom_channels.iter().cloned());
        if let Some(subs) = &self.inner.subscriptions {
            for channel in fixed {
                subs.reconcile(&channel, |_| true).await?;
            }
        }
        Ok(())
    }

    // ----- listeners -------------------------------------------------------------------------

    /// Handles client event `event` with an async handler; returns its id for [`Node::off`].
    pub fn on<F, Fut, R>(&self, event: &str, handler: F) -> ListenerId
    where
        F: Fn(ClientEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: HandlerResult,
    {
        self.inner
            .client_listeners
            .add(event, Listen::new(), handler)
    }

    /// Handles client event `event` once.
    pub fn once<F, Fut, R>(&self, event: &str, handler: F) -> ListenerId
    where
        F: Fn(ClientEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: HandlerResult,
    {
        self.inner
            .client_listeners
            .add(event, Listen::new().once(), handler)
    }

    /// Handles client event `event`, tagged and/or one-shot as `listen` says.
    pub fn on_with<F, Fut, R>(&self, event: &str, listen: Listen, handler: F) -> ListenerId
    where
        F: Fn(ClientEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: HandlerResult,
    {
        self.inner.client_listeners.add(event, listen, handler)
    }

    /// Removes client event listeners; returns how many.
    pub fn off<'a>(&self, event: &str, which: impl Into<Off<'a>>) -> usize {
        self.inner.client_listeners.remove(event, which.into())
    }

    /// Handles cross-server event `event`.
    pub fn on_cross<F, Fut, R>(&self, event: &str, handler: F) -> ListenerId
    where
        F: Fn(CrossEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: HandlerResult,
    {
        self.inner
            .cross_listeners
            .add(event, Listen::new(), handler)
    }

    /// Handles cross-server event `event` once.
    pub fn once_cross<F, Fut, R>(&self, event: &str, handler: F) -> ListenerId
    where
        F: Fn(CrossEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: HandlerResult,
    {
        self.inner
            .cross_listeners
            .add(event, Listen::new().once(), handler)
    }

    /// Handles cross-server event `event`, tagged and/or one-shot as `listen` says.
    pub fn on_cross_with<F, Fut, R>(&self, event: &str, listen: Listen, handler: F) -> ListenerId
    where
        F: Fn(CrossEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: HandlerResult,
    {
        self.inner.cross_listeners.add(event, listen, handler)
    }

    /// Removes cross-server event listeners; returns how many.
    pub fn off_cross<'a>(&self, event: &str, which: impl Into<Off<'a>>) -> usize {
        self.inner.cross_listeners.remove(event, which.into())
    }

    /// Handles a system event ([`system`] lists them).
    pub fn on_system<E, F, Fut, R>(&self, kind: E, handler: F) -> ListenerId
    where
        E: SystemEvent,
        F: Fn(E::Args) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: HandlerResult,
    {
        self.on_system_with(kind, Listen::new(), handler)
    }

    /// Handles a system event, tagged and/or one-shot as `listen` says.
    pub fn on_system_with<E, F, Fut, R>(&self, _kind: E, listen: Listen, handler: F) -> ListenerId
    where
        E: SystemEvent,
        F: Fn(E::Args) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: HandlerResult,
    {
        self.inner.system.of::<E>().add("", listen, handler)
    }

    /// Removes system event listeners; returns how many.
    pub fn off_system<'a, E: SystemEvent>(&self, _kind: E, which: impl Into<Off<'a>>) -> usize {
        self.inner.system.of::<E>().remove("", which.into())
    }

    fn fire<E: SystemEvent>(&self, _kind: E, args: E::Args) -> Vec<BoxFuture> {
        self.inner.system.of::<E>().start("", args)
    }

    /// Raises a system event on behalf of a transport (server errors, listening, close).
    pub fn emit_system<E: SystemEvent>(&self, kind: E, args: E::Args) {
        drive_all(self.fire(kind, args));
    }

    /// Sets the one handler of messages on custom channels (replacing any previous one).
    pub fn set_custom_channel_handler<F, Fut>(&self, handler: F)
    where
        F: Fn(CustomMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handler: CustomHandler = Arc::new(move |m| Box::pin(handler(m)));
        *self.inner.custom_handler.write() = Some(handler);
    }

    /// Removes the custom-channel handler; messages on custom channels are then counted and dropped.
    pub fn remove_custom_channel_handler(&self) {
        *self.inner.custom_handler.write() = None;
    }

    // ----- connections (called by transports) --------------------------------------------

    /// Registers a new client connection and runs the [`system::Connection`] handlers to
    /// completion. A transport calls this once per connection, before reading from it.
    pub async fn connect(&self, request: RequestInfo, transport: Box<dyn Transport>) -> Socket {
        self.connect_inner(request, transport, None).await
    }

    /// Like [`Node::connect`], for a connection the application authenticated before the
    /// upgrade: it is bound to `socket_id` before the connection handlers run. If the bind is
    /// refused (see [`DuplicateBind`]) the connection is closed with 4012.
    pub async fn connect_bound(
        &self,
        request: RequestInfo,
        transport: Box<dyn Transport>,
        socket_id: &str,
    ) -> Socket {
        self.connect_inner(request, transport, Some(socket_id))
            .await
    }

    async fn connect_inner(
        &self,
        request: RequestInfo,
        transport: Box<dyn Transport>,
        socket_id: Option<&str>,
    ) -> Socket {
        let conn_id = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let socket = Socket::new(conn_id, request, transport);
        self.inner
            .connections
            .write()
            .insert(conn_id, socket.clone());
        if self.is_shutting_down() {
            socket.close(close_codes::GOING_AWAY, "server shutting down");
            return socket;
        }
        if let Some(id) = socket_id {
            if let Err(error) = self.bind(&socket, id) {
                tracing::debug!(conn = conn_id, %error, "pre-authenticated bind refused");
                socket.close(close_codes::KICKED, "socket id already connected");
            }
        }
        let limits = self.inner.options.connection;
        let started = tokio::time::Instant::now();
        let handlers_deadline = started + limits.handler_timeout;
        for handler in self.fire(system::Connection, socket.clone()) {
            // Each handler runs as a task of its own: a panic is contained (the connection
            // goes on), and a handler outlives a transport that gives up on the connection,
            // up to the connection handler timeout.
            let mut task = tokio::spawn(handler);
            match tokio::time::timeout_at(handlers_deadline, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => tracing::error!(conn = conn_id, "a connection handler panicked"),
                Err(_) => {
                    task.abort();
                    Metrics::add(&self.inner.metrics.connection_handler_timeouts);
                    tracing::warn!(
                        conn = conn_id,
                        timeout = ?limits.handler_timeout,
                        "a connection handler timed out; closing the connection"
                    );
                    socket.close(close_codes::SERVER_ERROR, "connection handler timed out");
                    return socket;
                }
            }
        }
        if socket.socket_id().is_some() && self.inner.broker.is_some() {
            // The other nodes hear of the binding before the client's first message is read
            // (and so before it can learn it is logged in): a unicast they send after that
            // goes to this node, and another connection of the id elsewhere is closed.
            let directory = &self.inner.directory;
            let announced = directory.announced(directory.queued());
            let _ = tokio::time::timeout_at(handlers_deadline, announced).await;
        }
        if let Some(timeout) = limits.auth_timeout {
            if socket.socket_id().is_none() {
                self.close_if_unbound_at(&socket, started + timeout);
            }
        }
        socket
    }

    /// Closes `socket` with 4011 at `deadline` unless it is bound by then.
    fn close_if_unbound_at(&self, socket: &Socket, deadline: tokio::time::Instant) {
        let node = Arc::downgrade(&self.inner);
        let socket = socket.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            let Some(node) = node.upgrade() else { return };
            let open = node.connections.read().contains_key(&socket.conn_id());
            if open && socket.socket_id().is_none() {
                Metrics::add(&node.metrics.auth_timeouts);
                tracing::debug!(conn = socket.conn_id(), "closing a connection never bound");
                socket.close(close_codes::AUTH_FAILED, "authentication timeout");
            }
        });
    }

    /// Whether the node can take another message from `socket` now. A transport asks before
    /// reading and stops reading from the connection while it says no (its client event
    /// handlers in flight are at
    /// [`max_handlers_in_flight`](crate::NodeBuilder::max_handlers_in_flight)); it is told
    /// with [`Transport::resume`] when that changes.
    pub fn ready_for_input(&self, socket: &Socket) -> bool {
        socket.handlers_in_flight() < self.inner.options.connection.handlers_in_flight
    }

    /// Handles one text message from a client: heartbeat, protocol events, application events.
    /// Malformed frames are counted and dropped.
    pub fn handle_text(&self, socket: &Socket, text: &[u8]) {
        let Ok(text) = std::str::from_utf8(text) else {
            Metrics::add(&self.inner.metrics.malformed_frames);
            return;
        };
        if self.inner.system_has_message_listeners() {
            let event = MessageEvent {
                socket: socket.clone(),
                text: Bytes::copy_from_slice(text.as_bytes()),
            };
            drive_all(self.fire(system::Message, event));
        }
        match frame::parse(text, &self.inner.options.heartbeat) {
            Ok(Incoming::Heartbeat) => {
                let _ = socket.send_frame(self.inner.heartbeat_frame.clone());
                drive_all(self.fire(system::ClientPing, socket.clone()));
            }
            Ok(Incoming::Event {
                event,
                payload,
                callback_id,
            }) => self.handle_event(socket, &event, payload, callback_id),
            Err(error) => {
                Metrics::add(&self.inner.metrics.malformed_frames);
                tracing::debug!(conn = socket.conn_id(), %error, "dropped a malformed client frame");
            }
        }
    }

    fn handle_event(
        &self,
        socket: &Socket,
        event: &str,
        payload: &str,
        callback_id: Option<String>,
    ) {
        let limits = self.inner.options.connection;
        if event.len() > limits.event_name_len {
            Metrics::add(&self.inner.metrics.limit_event_name);
            if socket.limit_logged_once(ConnectionLimits::EVENT_NAME_LOGGED) {
                tracing::warn!(
                    conn = socket.conn_id(),
                    socket_id = socket.socket_id().as_deref().unwrap_or(""),
                    len = event.len(),
                    limit = limits.event_name_len,
                    "a client sent an event name longer than max_event_name_len; such events \
                     are dropped (logged once per connection)"
                );
            }
            return;
        }
        if event == BACKGROUND_EVENT {
            let Ok(on) = serde_json::from_str::<bool>(payload) else {
                Metrics::add(&self.inner.metrics.malformed_frames);
                return;
            };
            let node = Arc::downgrade(&self.inner);
            socket.set_background(on, self.inner.options.background_close_time, move || {
                if let Some(node) = node.upgrade() {
                    Metrics::add(&node.metrics.background_closes);
                }
            });
            return;
        }
        if event.starts_with('$') {
            Metrics::add(&self.inner.metrics.reserved_events);
            return;
        }
        if !self.inner.client_listeners.has(event) {
            Metrics::add(&self.inner.metrics.unhandled_events);
            return;
        }
        let reply = match callback_id {
            None => None,
            Some(callback_id) => {
                let reply =
                    crate::events::ClientReply::begin(socket, callback_id, limits.pending_requests);
                if reply.is_none() {
                    Metrics::add(&self.inner.metrics.limit_pending_requests);
                    if socket.limit_logged_once(ConnectionLimits::PENDING_REQUESTS_LOGGED) {
                        tracing::warn!(
                            conn = socket.conn_id(),
                            socket_id = socket.socket_id().as_deref().unwrap_or(""),
                            limit = limits.pending_requests,
                            "a client reached max_pending_requests; its further requests are \
                             dropped until earlier ones are answered (logged once per connection)"
                        );
                    }
                    return;
                }
                reply
            }
        };
        let payload = Payload::from_json_bytes(Bytes::copy_from_slice(payload.as_bytes()));
        let ev = ClientEvent::new(
            self.clone(),
            socket.clone(),
            Arc::from(event),
            payload,
            reply,
        );
        let handlers = self.inner.client_listeners.start(event, ev);
        for mut handler in handlers {
            if !poll_once(&mut handler) {
                // It has to wait: it runs on a task of its own and counts as in flight.
                let in_flight = InFlight::start(socket, limits.handlers_in_flight);
                tokio::spawn(async move {
                    handler.await;
                    drop(in_flight);
                });
            }
        }
    }

    /// Records a protocol pong from a client.
    pub fn handle_pong(&self, socket: &Socket) {
        socket.mark_alive();
        drive_all(self.fire(system::Pong, socket.clone()));
    }

    /// Reports a connection error (the transport then closes the connection).
    pub fn handle_error(&self, socket: &Socket, error: &str) {
        let event = ErrorEvent {
            socket: socket.clone(),
            error: Arc::from(error),
        };
        drive_all(self.fire(system::ConnectionError, event));
    }

    /// Removes a closed connection: its binding, its rooms, its timers. A transport calls this
    /// exactly once per connection, after its last read. Then the [`system::Close`] handlers
    /// run, without waiting for the broker to unsubscribe the namespaces this emptied (that
    /// goes on in the background).
    pub async fn disconnect(&self, socket: &Socket, code: u16, reason: &str) {
        socket.stop_timers();
        let now_empty = {
            let mut connections = self.inner.connections.write();
            connections.remove(&socket.conn_id());
            connections.is_empty()
        };
        let socket_id = socket.socket_id();
        let emptied = socket_id
            .as_ref()
            .and_then(|id| self.unbind_connection(id, socket))
            .unwrap_or_default();
        if !emptied.is_empty() && self.inner.subscriptions.is_some() {
            // The Close handlers do not wait for the broker: the memberships are gone already,
            // and the namespace channels follow. Their reconcile starts here, so a broker that
            // answers at once is done before the handlers run; one that has to wait goes on in
            // the background. (Unconstrained: an exhausted task budget is no reason to wait.)
            let node = self.clone();
            crate::listeners::drive(Box::pin(tokio::task::unconstrained(async move {
                for namespace in emptied {
                    node.log_reconcile(&namespace, node.reconcile_namespace(&namespace).await);
                }
            })));
        }
        let event = CloseEvent {
            socket: socket.clone(),
            socket_id,
            code,
            reason: Arc::from(reason),
        };
        drive_all(self.fire(system::Close, event));
        if now_empty {
            self.inner.no_connections.notify_waiters();
        }
    }

    /// Every open connection on this node, bound or not.
    pub fn connections(&self) -> Vec<Socket> {
        self.inner.connections.read().values().cloned().collect()
    }

    /// Calls `f` on every open connection of this node (under the connections' read lock: `f`
    /// must not block); returns the sum of what it returned.
    pub(crate) fn for_each_connection(&self, mut f: impl FnMut(&Socket) -> usize) -> usize {
        self.inner.connections.read().values().map(&mut f).sum()
    }

    /// The open connection `conn_id` of this node.
    pub(crate) fn connection(&self, conn_id: u64) -> Option<Socket> {
        self.inner.connections.read().get(&conn_id).cloned()
    }

    /// Number of open connections on this node, bound or not.
    pub fn connection_count(&self) -> usize {
        self.inner.connections.read().len()
    }

    // ----- socket-id binding -------------------------------------------------------------

    /// Binds an (authenticated) connection to an application socket id. Deliveries by id and
    /// rooms work only for bound connections; the binding and its rooms go away by themselves
    /// when the connection closes. Binding an id bound to another connection follows the
    /// node's [`DuplicateBind`] policy.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for an empty id, [`Error::AlreadyBound`] under
    /// [`DuplicateBind::Refuse`].
    pub fn bind(&self, socket: &Socket, socket_id: &str) -> Result<(), Error> {
        if socket_id.is_empty() {
            return Err(Error::invalid("socket id", "it is empty"));
        }
        let refuse = self.inner.options.duplicate_bind == DuplicateBind::Refuse;
        if refuse && self.bound_elsewhere(socket_id) {
            return Err(Error::AlreadyBound(socket_id.to_owned()));
        }
        let id: SocketId = Arc::from(socket_id);
        let stamp = self.inner.directory.stamp();
        let mut left_namespaces = Vec::new();
        let mut previous_id = None;
        let replaced = {
            let mut state = self.inner.state.write();
            if let Some(existing) = state.bound.get(&id) {
                if existing.same_connection(socket) {
                    return Ok(());
                }
                if refuse {
                    return Err(Error::AlreadyBound(socket_id.to_owned()));
                }
            }
            if let Some(previous) = socket.set_socket_id(Some(id.clone())) {
                state.bound.remove(&previous);
                left_namespaces = state.rooms.remove_socket(&previous);
                previous_id = Some(previous);
            }
            socket.set_bind_stamp(stamp);
            let replaced = state.bound.insert(id.clone(), socket.clone());
            if let Some(old) = &replaced {
                old.clear_socket_id_if(&id);
            }
            replaced
        };
        if let Some(previous) = previous_id {
            self.announce_binding(previous, stamp, false);
        }
        self.announce_binding(id, stamp, true);
        if let Some(old) = replaced {
            old.close(close_codes::KICKED, "replaced by a newer connection");
        }
        self.reconcile_namespaces_later(left_namespaces);
        Ok(())
    }

    /// Whether another live node announced a binding of `socket_id`.
    fn bound_elsewhere(&self, socket_id: &str) -> bool {
        self.inner
            .directory
            .owner(socket_id)
            .is_some_and(|owner| self.inner.membership.is_alive(&owner.node))
    }

    /// Queues the announcement of a binding change for the other nodes (none without a
    /// broker).
    fn announce_binding(&self, id: SocketId, stamp: u64, bound: bool) {
        if self.inner.broker.is_some() {
            self.inner.directory.queue(id, stamp, bound);
        }
    }

    /// Removes the binding of `socket_id` and all its room memberships; the connection stays
    /// open. Returns whether the id was bound.
    pub async fn unbind(&self, socket_id: &str) -> bool {
        let socket = self.inner.state.read().bound.get(socket_id).cloned();
        let Some(emptied) = socket.and_then(|socket| self.unbind_connection(socket_id, &socket))
        else {
            return false;
        };
        for namespace in emptied {
            self.log_reconcile(&namespace, self.reconcile_namespace(&namespace).await);
        }
        true
    }

    /// Removes the binding of `socket_id` to `socket` and its room memberships, at once, and
    /// announces it. Returns the namespaces this emptied (their channels are the caller's to
    /// reconcile), or `None` when the id was not bound to `socket`.
    fn unbind_connection(&self, socket_id: &str, socket: &Socket) -> Option<Vec<String>> {
        let emptied = self.unbind_connection_quietly(socket_id, socket)?;
        let stamp = self.inner.directory.stamp();
        self.announce_binding(Arc::from(socket_id), stamp, false);
        Some(emptied)
    }

    /// [`unbind_connection`](Self::unbind_connection) without the announcement, for an id
    /// that another node took over (the others know already).
    pub(crate) fn unbind_connection_quietly(
        &self,
        socket_id: &str,
        socket: &Socket,
    ) -> Option<Vec<String>> {
        let mut state = self.inner.state.write();
        match state.bound.get(socket_id) {
            Some(bound) if bound.same_connection(socket) => {
                state.bound.remove(socket_id);
                socket.clear_socket_id_if(socket_id);
                Some(state.rooms.remove_socket(socket_id))
            }
            _ => None,
        }
    }

    /// The connection bound to `socket_id` on this node.
    pub fn socket(&self, socket_id: &str) -> Option<Socket> {
        self.inner.state.read().bound.get(socket_id).cloned()
    }

    /// Number of connections bound to a socket id on this node.
    pub fn local_client_count(&self) -> usize {
        self.inner.state.read().bound.len()
    }

    // ----- rooms -------------------------------------------------------------------------

    /// Adds a bound socket id to a room, subscribing the namespace's channel if this is its
    /// first local member.
    ///
    /// # Errors
    /// [`Error::NotBound`] if the id is not bound on this node; [`Error::InvalidName`] for an
    /// empty or reserved namespace or an empty room; [`Error::TooManyRooms`] if the id is
    /// already in [`max_rooms_per_socket`](NodeBuilder::max_rooms_per_socket) rooms (and not
    /// in this one); a broker error if the namespace channel
    /// could not be subscribed (the membership stands and local delivery works; the next join
    /// retries the subscription).
    pub async fn join_room(
        &self,
        namespace: &str,
        room: &str,
        socket_id: &str,
    ) -> Result<(), Error> {
        check_namespace(namespace)?;
        if room.is_empty() {
            return Err(Error::invalid("room id", "it is empty"));
        }
        {
            let mut state = self.inner.state.write();
            let Some((id, _)) = state.bound.get_key_value(socket_id) else {
                return Err(Error::NotBound(socket_id.to_owned()));
            };
            let id = id.clone();
            let limit = self.inner.options.connection.rooms_per_socket;
            if state.rooms.rooms_of(&id) >= limit
                && !state.rooms.is_joined(&id, namespace, Some(room))
            {
                let socket = state.bound.get(socket_id).cloned();
                drop(state);
                Metrics::add(&self.inner.metrics.limit_rooms);
                let flag = ConnectionLimits::ROOMS_LOGGED;
                if let Some(socket) = socket.filter(|socket| socket.limit_logged_once(flag)) {
                    tracing::warn!(
                        conn = socket.conn_id(),
                        socket_id,
                        limit,
                        "a socket id reached max_rooms_per_socket; its further joins are \
                         refused (logged once per connection)"
                    );
                }
                return Err(Error::TooManyRooms {
                    socket_id: socket_id.to_owned(),
                    limit,
                });
            }
            state.rooms.join(namespace, room, &id);
        }
        self.reconcile_namespace(namespace).await
    }

    /// Removes a socket id from a room, unsubscribing the namespace's channel when its last
    /// local member leaves (unless preset or auto-unsubscribe is off).
    ///
    /// # Errors
    /// A broker error if the channel could not be unsubscribed.
    pub async fn leave_room(
        &self,
        namespace: &str,
        room: &str,
        socket_id: &str,
    ) -> Result<(), Error> {
        let emptied = self
            .inner
            .state
            .write()
            .rooms
            .leave(namespace, room, socket_id);
        if emptied {
            self.reconcile_namespace(namespace).await?;
        }
        Ok(())
    }

    /// Deletes a room on this node and every local membership in it.
    ///
    /// # Errors
    /// A broker error if the namespace channel could not be unsubscribed.
    pub async fn remove_room(&self, namespace: &str, room: &str) -> Result<(), Error> {
        let (_, emptied) = self.inner.state.write().rooms.remove_room(namespace, room);
        if emptied {
            self.reconcile_namespace(namespace).await?;
        }
        Ok(())
    }

    /// Distinct local socket ids in `room` of `namespace` (all rooms of it if `room` is
    /// `None`; rooms whose id starts with `room` under [`Match::Prefix`]).
    pub fn room_socket_ids(
        &self,
        namespace: &str,
        room: Option<&str>,
        matching: Match,
    ) -> HashSet<String> {
        self.inner
            .state
            .read()
            .rooms
            .socket_ids(namespace, room, matching)
            .iter()
            .map(|id| id.to_string())
            .collect()
    }

    /// Number of distinct local sockets in the matched rooms (see [`Node::room_socket_ids`]).
    pub fn socket_count_in_room(
        &self,
        namespace: &str,
        room: Option<&str>,
        matching: Match,
    ) -> usize {
        self.inner
            .state
            .read()
            .rooms
            .socket_ids(namespace, room, matching)
            .len()
    }

    /// Rooms joined by `socket_id` on this node, by namespace; only namespaces starting with
    /// `namespace_prefix` when given.
    pub fn joined_rooms(
        &self,
        socket_id: &str,
        namespace_prefix: Option<&str>,
    ) -> HashMap<String, HashSet<String>> {
        self.inner
            .state
            .read()
            .rooms
            .joined(socket_id, namespace_prefix)
    }

    /// Whether `socket_id` is in `room` of `namespace` (in any room of it if `room` is `None`).
    pub fn is_joined(&self, socket_id: &str, namespace: &str, room: Option<&str>) -> bool {
        self.inner
            .state
            .read()
            .rooms
            .is_joined(socket_id, namespace, room)
    }

    /// Number of local rooms in the namespaces matched by `namespace`.
    pub fn room_count(&self, namespace: &str, matching: Match) -> usize {
        self.inner
            .state
            .read()
            .rooms
            .room_count(namespace, matching)
    }

    /// Ids of local rooms in the namespaces matched by `namespace`.
    pub fn room_ids(&self, namespace: &str, matching: Match) -> Vec<String> {
        self.inner.state.read().rooms.room_ids(namespace, matching)
    }

    /// Keeps the namespace channel subscribed exactly while it is preset or has local members
    /// (or, with auto-unsubscribe off, once it was ever subscribed).
    pub(crate) async fn reconcile_namespace(&self, namespace: &str) -> Result<(), Error> {
        let Some(subs) = &self.inner.subscriptions else {
            return Ok(());
        };
        let channel = self.inner.names.namespace(namespace);
        let inner = &self.inner;
        subs.reconcile(&channel, |subscribed| {
            inner
                .options
                .preset_namespaces
                .iter()
                .any(|ns| ns == namespace)
                || (subscribed && !inner.options.auto_unsubscribe)
                || inner.state.read().rooms.has_namespace(namespace)
        })
        .await
        .map_err(Error::from)
    }

    pub(crate) fn reconcile_namespaces_later(&self, namespaces: Vec<String>) {
        if namespaces.is_empty() || self.inner.subscriptions.is_none() {
            return;
        }
        let node = self.clone();
        tokio::spawn(async move {
            for namespace in namespaces {
                node.log_reconcile(&namespace, node.reconcile_namespace(&namespace).await);
            }
        });
    }

    fn log_reconcile(&self, namespace: &str, result: Result<(), Error>) {
        if let Err(error) = result {
            tracing::warn!(namespace, %error, "could not update the namespace channel subscription");
        }
    }

    // ----- custom channels ---------------------------------------------------------------

    /// Subscribes a custom channel; its messages go to the custom-channel handler.
    ///
    /// # Errors
    /// [`Error::ReservedChannel`] for crosswire's own channels; a broker error.
    pub async fn subscribe(&self, channel: &str) -> Result<(), Error> {
        self.check_custom_channel(channel)?;
        self.inner
            .custom_channels
            .write()
            .insert(channel.to_owned());
        if let Some(subs) = &self.inner.subscriptions {
            subs.reconcile(channel, |_| true).await?;
        }
        Ok(())
    }

    /// Unsubscribes a custom channel.
    ///
    /// # Errors
    /// [`Error::ReservedChannel`] for crosswire's own channels; a broker error.
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), Error> {
        self.check_custom_channel(channel)?;
        self.inner.custom_channels.write().remove(channel);
        if let Some(subs) = &self.inner.subscriptions {
            subs.reconcile(channel, |_| false).await?;
        }
        Ok(())
    }

    /// Publishes raw bytes on a custom channel, unchanged (no envelope). Returns `false`
    /// when the node has no broker.
    ///
    /// # Errors
    /// [`Error::ReservedChannel`] for crosswire's own channels; a broker error.
    pub async fn publish(&self, channel: &str, payload: impl Into<Bytes>) -> Result<bool, Error> {
        self.check_custom_channel(channel)?;
        let Some(broker) = &self.inner.broker else {
            return Ok(false);
        };
        broker.publish(channel, payload.into()).await.map_err(|e| {
            Metrics::add(&self.inner.metrics.publish_failures);
            Error::from(e)
        })?;
        Ok(true)
    }

    fn check_custom_channel(&self, channel: &str) -> Result<(), Error> {
        if channel.is_empty() {
            return Err(Error::invalid("channel", "it is empty"));
        }
        if self.inner.names.is_reserved(channel) {
            return Err(Error::ReservedChannel(channel.to_owned()));
        }
        Ok(())
    }

    // ----- cross-server events -----------------------------------------------------------

    /// Starts a cross-server emit of `event` with `payload`; configure targets, expected
    /// replies and timeout on the returned [`CrossEmit`], then send it.
    pub fn emit_cross<T: Serialize + ?Sized>(&self, event: &str, payload: &T) -> CrossEmit<'_> {
        CrossEmit::new(self, event, payload)
    }

    /// Stops collecting replies for `id`; later replies are ignored. Returns whether it was
    /// still pending.
    pub fn cancel_cross_callback(&self, id: CallbackId) -> bool {
        self.inner.pending.cancel(id.0)
    }
}

impl NodeInner {
    fn system_has_message_listeners(&self) -> bool {
        self.system.of::<system::Message>().has("")
    }
}

/// Every interval: terminate connections that did not answer the previous ping, ping the rest.
async fn ping_loop(node: Weak<NodeInner>, interval: std::time::Duration) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(node) = node.upgrade() else { return };
        let sockets: Vec<Socket> = node.connections.read().values().cloned().collect();
        for socket in sockets {
            if socket.take_alive() {
                socket.transport().ping();
            } else {
                Metrics::add(&node.metrics.dead_connections);
                socket.transport().terminate();
            }
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("server_name", &self.server_name())
            .field("connections", &self.connection_count())
            .field("has_broker", &self.inner.broker.is_some())
            .finish()
    }
}

/// Options of [`Node::broadcast_to_room`].
#[derive(Debug, Clone, Default)]
pub struct RoomOptions {
    pub(crate) exclude: Vec<String>,
    pub(crate) local_only: bool,
    pub(crate) destroy: bool,
}

impl RoomOptions {
    /// Skips these socket ids. Default: none.
    pub fn exclude<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.exclude = ids.into_iter().map(Into::into).collect();
        self
    }

    /// Delivers to this node's members only. Default: `false`.
    pub fn local_only(mut self) -> Self {
        self.local_only = true;
        self
    }

    /// Removes the room after delivering, on every node that has it. Default: `false`.
    pub fn destroy(mut self) -> Self {
        self.destroy = true;
        self
    }
}

/// What a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Delivery {
    /// Local connections the frame was queued on.
    pub local: usize,
    /// Whether it was also published for other nodes.
    pub published: bool,
}
