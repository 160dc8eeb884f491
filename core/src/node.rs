//! [`Node`]: the handle an application holds. It owns the connections of this server, their
//! socket-id bindings and rooms, the listeners, and the link to the broker.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::task::AbortHandle;

use crate::bridge::PendingReplies;
use crate::channels::{ChannelNames, Subscriptions};
use crate::directory::Directory;
use crate::envelope::AnnouncePhase;
use crate::envelope::Compression;
use crate::events::{ClientEvent, CrossEvent, SystemEvent, SystemListeners};
use crate::js_compat::JsWire;
use crate::listeners::{
    drive_all, HandlerResult, Listen, ListenerId, Listeners, Off, Registry, Started,
};
use crate::membership::Membership;
use crate::metrics::{LogLimiter, Metrics, MetricsSnapshot};
use crate::options::{NodeBuilder, NodeOptions, Wire};
use crate::room_index::{Rooms, SocketId};
use crate::transport::TransportCount;
use crate::{Broker, Error, Socket};

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
    pub(crate) inner: Arc<NodeInner>,
}

pub(crate) struct NodeInner {
    pub(crate) options: NodeOptions,
    pub(crate) names: ChannelNames,
    pub(crate) broker: Option<Arc<dyn Broker>>,
    pub(crate) subscriptions: Option<Subscriptions>,
    pub(crate) compression: Compression,
    pub(crate) heartbeat_frame: Bytes,
    /// This node's open connections by connection number. Ordered, so that a push to everyone
    /// reaches them in the order they connected: their tasks, outboxes and kernel sockets were
    /// allocated in that order, and visiting them in it (not in a hash map's order) saved 7–9 % of
    /// the server's CPU per delivery of a broadcast to 2,000 clients (BENCHMARKS.md).
    pub(crate) connections: RwLock<BTreeMap<u64, Socket>>,
    pub(crate) state: RwLock<State>,
    pub(crate) custom_channels: RwLock<HashSet<String>>,
    pub(crate) client_listeners: Listeners<ClientEvent>,
    pub(crate) cross_listeners: Listeners<CrossEvent>,
    pub(crate) system: SystemListeners,
    pub(crate) custom_handler: RwLock<Option<crate::custom_channels::CustomHandler>>,
    pub(crate) pending: Arc<PendingReplies>,
    pub(crate) metrics: Metrics,
    /// The `crosswire_broker_publish_seconds` histogram, from the recorder installed when
    /// the node was built.
    pub(crate) publish_seconds: ::metrics::Histogram,
    /// Limits the "publish failed" warning to one line a second.
    pub(crate) publish_failure_log: LogLimiter,
    /// Limits the "bad signature" warning to one line a second.
    pub(crate) bad_signature_log: LogLimiter,
    /// Limits the "undecodable envelope" warning to one line a second.
    pub(crate) bad_envelope_log: LogLimiter,
    pub(crate) next_conn: AtomicU64,
    pub(crate) tasks: Mutex<Vec<AbortHandle>>,
    /// Set once [`Node::shutdown`] started: new connections are refused.
    pub(crate) shutting_down: AtomicBool,
    /// Woken when the last connection leaves.
    pub(crate) no_connections: tokio::sync::Notify,
    /// The other nodes of the cluster.
    pub(crate) membership: Membership,
    /// Which node each socket id of the cluster is bound on.
    pub(crate) directory: Directory,
    /// The Node.js package's wire: always read (see `inbound`), written when
    /// [`Wire::JsPackage`] is set ([`NodeInner::js`]).
    pub(crate) js_wire: JsWire,
}

impl NodeInner {
    /// Whether this node writes the package's messages instead of crosswire's envelope.
    pub(crate) fn writes_js(&self) -> bool {
        matches!(self.options.wire, Wire::JsPackage { .. })
    }

    /// The Node.js package's wire, when this node writes it.
    pub(crate) fn js(&self) -> Option<&JsWire> {
        self.writes_js().then_some(&self.js_wire)
    }
}

/// Bindings and rooms, under one lock so they always agree.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) bound: HashMap<SocketId, Socket>,
    pub(crate) rooms: Rooms,
}

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
                connections: RwLock::new(BTreeMap::new()),
                state: RwLock::new(State::default()),
                custom_channels: RwLock::new(options.custom_channels.iter().cloned().collect()),
                client_listeners: Listeners::new(ids.clone()),
                cross_listeners: Listeners::new(ids.clone()),
                system: SystemListeners::new(&ids),
                custom_handler: RwLock::new(None),
                pending: Arc::default(),
                metrics: Metrics::default(),
                publish_seconds: crate::telemetry::publish_histogram(&options.server_name),
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
                // A node on crosswire's wire only reads the package's messages, in whichever
                // encoding they come: its write format is never used.
                js_wire: JsWire::new(
                    &options.bridge_prefix,
                    &options.ws_prefix,
                    !matches!(options.wire, Wire::JsPackage { msgpack: false }),
                ),
                options,
            }
        });
        let node = Node { inner };
        if let Some(inbound) = inbound {
            let weak = Arc::downgrade(&node.inner);
            let mut tasks = vec![tokio::spawn(crate::inbound::run(weak.clone(), inbound))];
            // The package's nodes neither announce themselves nor their bindings.
            let announces = !node.inner.writes_js();
            if announces {
                tasks.push(tokio::spawn(crate::directory::run_announcer(weak.clone())));
                tasks.push(tokio::spawn(crate::membership::run(
                    weak,
                    node.inner.options.announce_interval,
                )));
            }
            node.inner
                .tasks
                .lock()
                .extend(tasks.iter().map(tokio::task::JoinHandle::abort_handle));
            node.subscribe_fixed_channels().await?;
            if announces {
                // In the background: a broker that is down must not hold the start up.
                let hello = node.clone();
                tokio::spawn(async move { hello.announce(AnnouncePhase::Hello).await });
            }
        }
        if let Some(interval) = node.inner.options.metrics_interval {
            let task = tokio::spawn(crate::telemetry::run(Arc::downgrade(&node.inner), interval));
            node.inner.tasks.lock().push(task.abort_handle());
        }
        if let Some(interval) = node.inner.options.server_ping_interval {
            let task = tokio::spawn(crate::lifecycle::ping_loop(
                Arc::downgrade(&node.inner),
                interval,
            ));
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

    /// Counts what a transport did on its own (see [`TransportCount`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use crosswire_core::{Node, TransportCount};
    ///
    /// let node = Node::builder().build().await?;
    /// node.count(TransportCount::OversizedFrame);
    /// assert_eq!(node.metrics_snapshot().oversized_frames, 1);
    /// # Ok(()) }
    /// ```
    pub fn count(&self, what: TransportCount) {
        Metrics::add(self.inner.metrics.of(what));
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

    /// Handles a system event ([`system`](crate::system) lists them).
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

    pub(crate) fn fire<E: SystemEvent>(&self, _kind: E, args: E::Args) -> Started {
        self.inner.system.of::<E>().start("", args)
    }

    /// Raises a system event on behalf of a transport (server errors, listening, close).
    pub fn emit_system<E: SystemEvent>(&self, kind: E, args: E::Args) {
        drive_all(self.fire(kind, args));
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
