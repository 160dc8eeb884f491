//! The connection lifecycle as transports drive it: a connection registers
//! ([`Node::connect`], which returns its [`Connection`] handle), its messages come in
//! (`handle_text`), it answers pings, and it leaves (`disconnect`, through
//! [`Connection::finish`]); the ping loop terminates the connections that stopped answering.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use tracing::Instrument;

use crate::events::{system, ClientEvent, CloseEvent, ErrorEvent, MessageEvent};
use crate::frame::{self, Incoming, Payload};
use crate::limits::{ConnectionLimits, InFlight};
use crate::listeners::{drive_all, poll_once};
use crate::metrics::Metrics;
use crate::node::{Node, NodeInner, BACKGROUND_EVENT};
use crate::transport::{RequestInfo, Transport};
use crate::{close_codes, Connection, Error, Socket};

impl Node {
    /// Registers a new client connection and runs the [`system::Connection`] handlers to
    /// completion. A transport calls this once per connection, before reading from it, and
    /// feeds what it reads to the returned [`Connection`].
    pub async fn connect(&self, request: RequestInfo, transport: Arc<dyn Transport>) -> Connection {
        self.connect_inner(request, transport, None).await
    }

    /// Like [`Node::connect`], for a connection the application authenticated before the
    /// upgrade: it is bound to `socket_id` before the connection handlers run. If the bind is
    /// refused (see [`DuplicateBind`](crate::DuplicateBind)) the connection is closed with 4012.
    pub async fn connect_bound(
        &self,
        request: RequestInfo,
        transport: Arc<dyn Transport>,
        socket_id: &str,
    ) -> Connection {
        self.connect_inner(request, transport, Some(socket_id))
            .await
    }

    async fn connect_inner(
        &self,
        request: RequestInfo,
        transport: Arc<dyn Transport>,
        socket_id: Option<&str>,
    ) -> Connection {
        let conn_id = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        // Everything done for this connection runs in its span; `bind` records the socket id.
        let span = tracing::info_span!(
            "conn",
            node = %self.server_name(),
            conn = conn_id,
            peer = request.remote_addr().map(tracing::field::display),
            socket_id = tracing::field::Empty,
        );
        let socket = Socket::new(conn_id, request, transport, span.clone());
        // The handle exists before the handlers run: if the transport gives up on the
        // connection meanwhile (its task is cancelled), dropping it still removes it.
        let connection = Connection::new(self.clone(), socket.clone());
        self.register(socket, socket_id).instrument(span).await;
        connection
    }

    /// The rest of [`connect_inner`](Self::connect_inner), in the connection's span.
    async fn register(&self, socket: Socket, socket_id: Option<&str>) {
        let conn_id = socket.conn_id();
        self.inner
            .connections
            .write()
            .insert(conn_id, socket.clone());
        if self.is_shutting_down() {
            socket.close(close_codes::GOING_AWAY, "server shutting down");
            return;
        }
        if let Some(id) = socket_id {
            if let Err(error) = self.bind(&socket, id) {
                tracing::debug!(conn = conn_id, %error, "pre-authenticated bind refused");
                match error {
                    Error::AlreadyBound(_) => {
                        socket.close(close_codes::KICKED, "socket id already connected");
                    }
                    _ => socket.close(close_codes::AUTH_FAILED, "invalid socket id"),
                }
            }
        }
        let limits = self.inner.options.connection;
        let started = tokio::time::Instant::now();
        let handlers_deadline = started + limits.handler_timeout;
        for handler in self.fire(system::Connection, socket.clone()) {
            // Each handler runs as a task of its own: a panic is contained (the connection
            // goes on), and a handler outlives a transport that gives up on the connection,
            // up to the connection handler timeout.
            let mut task = tokio::spawn(handler.instrument(socket.span().clone()));
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
                    return;
                }
            }
        }
        if socket.socket_id().is_some() && self.announces_bindings() {
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
    }

    /// Closes `socket` with 4011 at `deadline` unless it is bound by then.
    fn close_if_unbound_at(&self, socket: &Socket, deadline: tokio::time::Instant) {
        let node = Arc::downgrade(&self.inner);
        let socket = socket.clone();
        let span = socket.span().clone();
        let closer = async move {
            tokio::time::sleep_until(deadline).await;
            let Some(node) = node.upgrade() else { return };
            let open = node.connections.read().contains_key(&socket.conn_id());
            if open && socket.socket_id().is_none() {
                Metrics::add(&node.metrics.auth_timeouts);
                tracing::debug!(conn = socket.conn_id(), "closing a connection never bound");
                socket.close(close_codes::AUTH_FAILED, "authentication timeout");
            }
        };
        tokio::spawn(closer.instrument(span));
    }

    /// See [`Connection::ready_for_input`].
    pub(crate) fn ready_for_input(&self, socket: &Socket) -> bool {
        socket.handlers_in_flight() < self.inner.options.connection.handlers_in_flight
    }

    /// See [`Connection::binary`].
    pub(crate) fn handle_binary(&self, socket: &Socket, message: &[u8]) {
        match std::str::from_utf8(message) {
            Ok(text) => self.handle_text(socket, text),
            Err(_) => {
                self.inner.metrics.count_client_message(message.len());
                Metrics::add(&self.inner.metrics.malformed_frames);
            }
        }
    }

    /// See [`Connection::text`].
    pub(crate) fn handle_text(&self, socket: &Socket, text: &str) {
        self.inner.metrics.count_client_message(text.len());
        let _span = socket.span().enter();
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
        let Some(event_name) = self.inner.client_listeners.shared_name(event) else {
            Metrics::add(&self.inner.metrics.unhandled_events);
            return;
        };
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
        let ev = ClientEvent::new(self.clone(), socket.clone(), event_name, payload, reply);
        let handlers = self.inner.client_listeners.start(event, ev);
        for mut handler in handlers {
            if !poll_once(&mut handler) {
                // It has to wait: it runs on a task of its own and counts as in flight.
                let in_flight = InFlight::start(socket, limits.handlers_in_flight);
                let handler = async move {
                    handler.await;
                    drop(in_flight);
                };
                tokio::spawn(handler.instrument(socket.span().clone()));
            }
        }
    }

    /// See [`Connection::pong`].
    pub(crate) fn handle_pong(&self, socket: &Socket) {
        let _span = socket.span().enter();
        socket.mark_alive();
        drive_all(self.fire(system::Pong, socket.clone()));
    }

    /// See [`Connection::error`].
    pub(crate) fn handle_error(&self, socket: &Socket, error: &str) {
        let _span = socket.span().enter();
        let event = ErrorEvent {
            socket: socket.clone(),
            error: Arc::from(error),
        };
        drive_all(self.fire(system::ConnectionError, event));
    }

    /// Removes a closed connection: its binding, its rooms, its timers (see
    /// [`Connection::finish`]). Then the [`system::Close`] handlers run, without waiting for
    /// the broker to unsubscribe the namespaces this emptied (that goes on in the background).
    pub(crate) async fn disconnect(&self, socket: &Socket, code: u16, reason: &str) {
        // Nothing here awaits: the span is entered for the whole call.
        let _span = socket.span().enter();
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

    /// Calls `f` on every open connection of this node, in the order they connected (under the
    /// connections' read lock: `f` must not block); returns the sum of what it returned.
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
}

impl NodeInner {
    fn system_has_message_listeners(&self) -> bool {
        self.system.of::<system::Message>().has("")
    }
}

/// The node's connections are pinged in this many slices (by connection number), one slice
/// every `interval / PING_SLICES`: each connection once an interval, but never all at once.
/// A node holding 17,000 connections would otherwise queue 17,000 pings and read as many pongs
/// in one burst, and every push queued behind them would wait.
const PING_SLICES: u32 = 16;

/// Every interval, for each connection (in slices, see [`PING_SLICES`]): terminate it if it did
/// not answer the previous ping, ping it if it did.
pub(crate) async fn ping_loop(node: Weak<NodeInner>, interval: std::time::Duration) {
    let tick = interval / PING_SLICES;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for slice in (0..u64::from(PING_SLICES)).cycle() {
        ticker.tick().await;
        let Some(node) = node.upgrade() else { return };
        let sockets: Vec<Socket> = node
            .connections
            .read()
            .iter()
            .filter(|(conn_id, _)| *conn_id % u64::from(PING_SLICES) == slice)
            .map(|(_, socket)| socket.clone())
            .collect();
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use parking_lot::Mutex;

    use crate::{Node, RequestInfo, SendError, Transport};

    /// Records which connection (its index in connecting order) each frame was queued on.
    struct Recorder {
        index: usize,
        order: Arc<Mutex<Vec<usize>>>,
    }

    impl Transport for Recorder {
        fn send(&self, _: Bytes) -> Result<(), SendError> {
            self.order.lock().push(self.index);
            Ok(())
        }
        fn ping(&self) {}
        fn close(&self, _: u16, _: &str) {}
        fn terminate(&self) {}
    }

    #[tokio::test]
    async fn a_push_to_everyone_reaches_the_connections_in_the_order_they_connected() {
        let node = Node::builder().build().await.expect("node");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut connections = Vec::new();
        for index in 0..200 {
            let transport = Arc::new(Recorder {
                index,
                order: order.clone(),
            });
            connections.push(node.connect(RequestInfo::default(), transport).await);
        }
        // Leaving connections free numbers in the middle; the rest keep their order.
        for connection in connections.drain(50..60) {
            connection.finish(1000, "bye").await;
        }
        let delivery = node.broadcast().emit("news", &"hello").await.expect("emit");
        assert_eq!(delivery.local, 190);
        let expected: Vec<usize> = (0..50).chain(60..200).collect();
        assert_eq!(*order.lock(), expected);
    }
}
