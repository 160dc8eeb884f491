//! Node options: defaults, the builder, and validation.

use std::sync::Arc;
use std::time::Duration;

use crate::channels::ChannelNames;
use crate::limits::ConnectionLimits;
use crate::membership::{DEFAULT_ANNOUNCE_INTERVAL, DEFAULT_MISSED_ANNOUNCEMENTS};
use crate::signing::ClusterKey;
use crate::{Broker, OptionsError};

/// Default bridge prefix for cross-server channels.
pub const DEFAULT_BRIDGE_PREFIX: &str = "csbp:";
/// Default prefix for client-delivery channels.
pub const DEFAULT_WS_PREFIX: &str = "ws:";
/// Default interval between protocol pings to each client.
pub const DEFAULT_SERVER_PING_INTERVAL: Duration = Duration::from_secs(20);
/// Default application heartbeat string (the empty string).
pub const DEFAULT_HEARTBEAT: &str = "";
/// Default time a client may stay in background mode before it is closed with 4003.
pub const DEFAULT_BACKGROUND_CLOSE_TIME: Duration = Duration::from_secs(10);
/// Default envelope size above which bodies are zstd-compressed.
pub const DEFAULT_COMPRESSION_THRESHOLD: usize = 1024;
/// Default interval between two exports of a node's metrics to the `metrics` recorder (see
/// [`NodeBuilder::metrics_interval`]).
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(1);
/// Server name used when the node runs without a broker.
pub const STANDALONE_SERVER_NAME: &str = "standalone";
/// What [`Node::bind`](crate::Node::bind) does when the socket id is already bound to
/// another connection on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DuplicateBind {
    /// The new connection takes the id; the old one is closed with code 4012 ("kicked by a
    /// newer login"). Room memberships belong to the id and stay. This is the default.
    #[default]
    Replace,
    /// The bind fails with [`Error::AlreadyBound`](crate::Error::AlreadyBound); the old
    /// connection keeps the id.
    Refuse,
}

/// Validated node settings. Built by [`NodeBuilder`].
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub(crate) server_name: String,
    pub(crate) bridge_prefix: String,
    pub(crate) ws_prefix: String,
    pub(crate) server_ping_interval: Option<Duration>,
    pub(crate) heartbeat: String,
    pub(crate) background_close_time: Duration,
    pub(crate) preset_namespaces: Vec<String>,
    pub(crate) auto_unsubscribe: bool,
    pub(crate) custom_channels: Vec<String>,
    pub(crate) duplicate_bind: DuplicateBind,
    pub(crate) compression: bool,
    pub(crate) compression_threshold: usize,
    pub(crate) cluster_key: Option<ClusterKey>,
    pub(crate) connection: ConnectionLimits,
    pub(crate) announce_interval: Duration,
    pub(crate) missed_announcements: u32,
    pub(crate) targeted_unicast: bool,
    pub(crate) metrics_interval: Option<Duration>,
    pub(crate) wire: Wire,
}

/// What a node's messages to the other nodes look like on the broker ([`NodeBuilder::wire`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Wire {
    /// crosswire's envelope (`PROTOCOL.md` §2): compression, cluster signatures, membership,
    /// targeted unicast. Every node of the cluster must be a crosswire node. Such a node also
    /// reads the package's messages (unless it has a cluster secret), so that a cluster can
    /// switch from [`Wire::JsPackage`] to this wire one node at a time.
    #[default]
    Crosswire,
    /// The messages of the Node.js package `websocket-cross-server-adapter`, so that this
    /// node joins a running cluster of the package's nodes on the same Redis (same
    /// prefixes) and clients on either kind reach each other. `msgpack` is the package's
    /// `enableRedisDataCompression` (its default, `true`: notepack's MessagePack; `false`:
    /// JSON); every node of the cluster must agree on it.
    ///
    /// What crosswire adds on top of the package needs every node on [`Wire::Crosswire`]
    /// and is off on this wire: membership ([`Node::members`](crate::Node::members) knows
    /// only this node) and with it the duplicate-login policy across nodes, targeted
    /// unicast, compression, cluster signatures (a secret is refused), and replies handed to
    /// another node ([`ReplyHandle`](crate::ReplyHandle)). The node still reads crosswire's
    /// envelopes, from nodes already switched back to [`Wire::Crosswire`].
    /// As in the package, an emit to every node waits for [`expect`](crate::CrossEmit::expect)
    /// replies (1 by default), a node without a handler for an event does not answer it,
    /// and custom channel payloads are JSON text both ways (encoded as the package does).
    JsPackage {
        /// The package's `enableRedisDataCompression`.
        msgpack: bool,
    },
}

impl NodeOptions {
    /// This node's name in the cluster.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }
    /// The application heartbeat string.
    pub fn heartbeat(&self) -> &str {
        &self.heartbeat
    }
    /// Interval between protocol pings, `None` when disabled.
    pub fn server_ping_interval(&self) -> Option<Duration> {
        self.server_ping_interval
    }
    /// Most client event handlers in flight per connection.
    pub fn max_handlers_in_flight(&self) -> usize {
        self.connection.handlers_in_flight
    }
    /// Time a connection may stay unbound, `None` when unlimited.
    pub fn auth_timeout(&self) -> Option<Duration> {
        self.connection.auth_timeout
    }
    /// Most rooms one socket id may be in on this node.
    pub fn max_rooms_per_socket(&self) -> usize {
        self.connection.rooms_per_socket
    }
    /// Longest client event name accepted, in bytes.
    pub fn max_event_name_len(&self) -> usize {
        self.connection.event_name_len
    }
    /// Most requests of one connection that may wait for their reply at once.
    pub fn max_pending_requests(&self) -> usize {
        self.connection.pending_requests
    }
    /// Interval between two exports of the metrics to the `metrics` recorder, `None` when
    /// disabled.
    pub fn metrics_interval(&self) -> Option<Duration> {
        self.metrics_interval
    }
    /// The format of this node's messages to the other nodes.
    pub fn wire(&self) -> Wire {
        self.wire
    }
}

/// Builds a [`Node`](crate::Node): `Node::builder()...build().await`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
/// use crosswire_core::Node;
/// let node = Node::builder().server_name("a").heartbeat("ping").build().await?;
/// assert_eq!(node.server_name(), "a");
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `build` is awaited"]
pub struct NodeBuilder {
    pub(crate) server_name: Option<String>,
    pub(crate) bridge_prefix: String,
    pub(crate) ws_prefix: String,
    pub(crate) server_ping_interval: Option<Duration>,
    pub(crate) heartbeat: String,
    pub(crate) background_close_time: Duration,
    pub(crate) preset_namespaces: Vec<String>,
    pub(crate) auto_unsubscribe: bool,
    pub(crate) custom_channels: Vec<String>,
    pub(crate) duplicate_bind: DuplicateBind,
    pub(crate) compression: bool,
    pub(crate) compression_threshold: usize,
    pub(crate) cluster_secret: Option<Vec<u8>>,
    pub(crate) connection: ConnectionLimits,
    pub(crate) announce_interval: Duration,
    pub(crate) missed_announcements: u32,
    pub(crate) targeted_unicast: bool,
    pub(crate) metrics_interval: Option<Duration>,
    pub(crate) wire: Wire,
    pub(crate) broker: Option<Arc<dyn Broker>>,
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("server_name", &self.server_name)
            .field("has_broker", &self.broker.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for NodeBuilder {
    fn default() -> Self {
        NodeBuilder {
            server_name: None,
            bridge_prefix: DEFAULT_BRIDGE_PREFIX.to_owned(),
            ws_prefix: DEFAULT_WS_PREFIX.to_owned(),
            server_ping_interval: Some(DEFAULT_SERVER_PING_INTERVAL),
            heartbeat: DEFAULT_HEARTBEAT.to_owned(),
            background_close_time: DEFAULT_BACKGROUND_CLOSE_TIME,
            preset_namespaces: Vec::new(),
            auto_unsubscribe: true,
            custom_channels: Vec::new(),
            duplicate_bind: DuplicateBind::Replace,
            compression: true,
            compression_threshold: DEFAULT_COMPRESSION_THRESHOLD,
            cluster_secret: None,
            connection: ConnectionLimits::default(),
            announce_interval: DEFAULT_ANNOUNCE_INTERVAL,
            missed_announcements: DEFAULT_MISSED_ANNOUNCEMENTS,
            targeted_unicast: true,
            metrics_interval: Some(DEFAULT_METRICS_INTERVAL),
            wire: Wire::Crosswire,
            broker: None,
        }
    }
}

impl NodeBuilder {
    /// This node's name, unique in the cluster (keep it short: it travels in every message).
    ///
    /// Default: none; required when a broker is set, `"standalone"` otherwise.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// The broker connecting this node to the others. Without one, the node is standalone:
    /// deliveries and cross-server events stay on this node.
    ///
    /// Default: none.
    pub fn broker(mut self, broker: Arc<dyn Broker>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// Prefix of the cross-server channel. Must differ from the ws prefix.
    ///
    /// Default: `"csbp:"`.
    pub fn bridge_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.bridge_prefix = prefix.into();
        self
    }

    /// Prefix of the client-delivery channels. Must differ from the bridge prefix.
    ///
    /// Default: `"ws:"`.
    pub fn ws_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.ws_prefix = prefix.into();
        self
    }

    /// Interval between protocol ping frames; a client that did not answer the previous ping
    /// is terminated. `None` disables pings. Each connection is pinged once an interval; the
    /// node spreads its connections over the interval in 16 slices rather than pinging them
    /// all at once.
    ///
    /// Default: 20 s.
    pub fn server_ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.server_ping_interval = interval;
        self
    }

    /// The application heartbeat string, echoed back as-is. Must match the clients'.
    ///
    /// Default: `""`.
    pub fn heartbeat(mut self, heartbeat: impl Into<String>) -> Self {
        self.heartbeat = heartbeat.into();
        self
    }

    /// How long a client may stay in background mode before it is closed with 4003.
    ///
    /// Default: 10 s.
    pub fn background_close_time(mut self, time: Duration) -> Self {
        self.background_close_time = time;
        self
    }

    /// Room namespaces whose channels are subscribed at start and never unsubscribed.
    ///
    /// Default: none (namespaces are subscribed on first join).
    pub fn preset_namespaces<I, S>(mut self, namespaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.preset_namespaces = namespaces.into_iter().map(Into::into).collect();
        self
    }

    /// Unsubscribe a namespace channel when its last local member leaves (preset namespaces
    /// are never unsubscribed).
    ///
    /// Default: `true`.
    pub fn auto_unsubscribe(mut self, enabled: bool) -> Self {
        self.auto_unsubscribe = enabled;
        self
    }

    /// Application channels subscribed at start; their messages go to the custom-channel
    /// handler. Names must not be empty nor start with the bridge or ws prefix (those are
    /// crosswire's own channels): [`validate`](Self::validate) refuses them with
    /// [`OptionsError::EmptyCustomChannel`] or [`OptionsError::ReservedCustomChannel`].
    ///
    /// Default: none.
    pub fn custom_channels<I, S>(mut self, channels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.custom_channels = channels.into_iter().map(Into::into).collect();
        self
    }

    /// What binding an already-bound socket id does.
    ///
    /// Default: [`DuplicateBind::Replace`].
    pub fn duplicate_bind(mut self, policy: DuplicateBind) -> Self {
        self.duplicate_bind = policy;
        self
    }

    /// Compress node-to-node envelopes larger than the threshold with zstd. Nodes with
    /// different settings still understand each other.
    ///
    /// Default: `true`, threshold 1024 bytes.
    pub fn compression(mut self, enabled: bool, threshold: usize) -> Self {
        self.compression = enabled;
        self.compression_threshold = threshold;
        self
    }

    /// A secret shared by every node of the cluster: each node-to-node envelope then carries
    /// an HMAC-SHA-256 tag keyed by it, and a node drops every envelope whose tag is missing
    /// or wrong.
    ///
    /// **What it protects.** Without a secret, anyone who can publish on the broker's channels
    /// (a Redis server, say) can push frames to every client, fill or destroy rooms, run
    /// cross-server handlers, and announce nodes that do not exist (up to
    /// [`MAX_MEMBERS`](crate::MAX_MEMBERS); requests to all nodes wait for them until they
    /// expire). With one, a node acts only on envelopes signed with the same
    /// secret. The others are dropped before they are decompressed or decoded, counted in
    /// [`MetricsSnapshot::bad_signatures`](crate::MetricsSnapshot::bad_signatures), and
    /// reported by a warning (at most one line a second). A node without a secret drops and
    /// counts signed envelopes too: nodes whose secrets differ, or of which one has none, do
    /// not hear each other. Every node needs the same secret, and a version of crosswire that
    /// knows signed envelopes.
    ///
    /// **What it does not protect.**
    /// - Confidentiality: envelopes are signed, not encrypted; whoever can read the broker
    ///   reads them (use TLS to the broker for the link, e.g. `rediss://`).
    /// - Replay: an envelope captured from the broker can be published again, and is accepted
    ///   again (it is the same push, event or reply a second time).
    /// - Custom channels: [`Node::publish`](crate::Node::publish) sends raw application bytes
    ///   without an envelope; they are neither signed nor checked.
    /// - Any holder of the secret can sign as any node (the server name is not authenticated
    ///   separately).
    ///
    /// **Cost.** 32 bytes more per envelope, and one HMAC-SHA-256 over the envelope as sent
    /// (compressed when it is) on the sending node and on every node that receives it; the
    /// key is prepared once, when the node is built. `BENCHMARKS.md` ("Cluster secret") has
    /// the figures.
    ///
    /// The secret is never logged, and no `Debug` output shows it. An empty secret, or one
    /// shorter than 16 bytes, makes [`validate`](Self::validate) and `build` fail with
    /// [`OptionsError::ClusterSecretTooShort`]; use 32 random bytes.
    ///
    /// Default: none (envelopes are neither signed nor checked).
    pub fn cluster_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.cluster_secret = Some(secret.into());
        self
    }

    /// Most client event handlers of one connection that may be in flight (started and not
    /// finished) at once. At the limit the transport stops reading from that connection until
    /// one finishes, so a client flooding requests whose handlers wait slows down instead of
    /// spawning without bound; nothing it sent is dropped. A handler counts only once it has
    /// to wait: one that finishes in its first poll costs nothing. At least 1.
    ///
    /// Default: 64 ([`DEFAULT_MAX_HANDLERS_IN_FLIGHT`](crate::DEFAULT_MAX_HANDLERS_IN_FLIGHT)).
    pub fn max_handlers_in_flight(mut self, handlers: usize) -> Self {
        self.connection.handlers_in_flight = handlers.max(1);
        self
    }

    /// How long a connection may stay without a bound socket id, from the moment it is
    /// registered: then it is closed with 4011 ("authentication timeout") and counted in
    /// [`MetricsSnapshot::auth_timeouts`](crate::MetricsSnapshot::auth_timeouts). Connections
    /// bound before the upgrade (`Accept::socket_id`) are bound from the start. `None` lets
    /// unbound connections stay (for applications whose clients never bind, such as
    /// anonymous viewers of broadcasts).
    ///
    /// Default: 10 s ([`DEFAULT_AUTH_TIMEOUT`](crate::DEFAULT_AUTH_TIMEOUT)).
    pub fn auth_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connection.auth_timeout = timeout;
        self
    }

    /// How long the [`system::Connection`](crate::system::Connection) handlers of one
    /// connection may run. Past it they are aborted, the connection is closed with 1011
    /// ("connection handler timed out") and counted in
    /// [`MetricsSnapshot::connection_handler_timeouts`](crate::MetricsSnapshot::connection_handler_timeouts);
    /// no message of that connection is read before its handlers are done.
    ///
    /// Default: 10 s ([`DEFAULT_CONNECTION_HANDLER_TIMEOUT`](crate::DEFAULT_CONNECTION_HANDLER_TIMEOUT)).
    pub fn connection_handler_timeout(mut self, timeout: Duration) -> Self {
        self.connection.handler_timeout = timeout;
        self
    }

    /// Most rooms one socket id may be in on this node, over all namespaces. A
    /// [`join_room`](crate::Node::join_room) that would go past it fails with
    /// [`Error::TooManyRooms`](crate::Error::TooManyRooms) and is counted in
    /// [`MetricsSnapshot::limit_rooms`](crate::MetricsSnapshot::limit_rooms) (joining a room
    /// the id is already in always works); a warning is logged once per connection. At least 1.
    ///
    /// Default: 1024 ([`DEFAULT_MAX_ROOMS_PER_SOCKET`](crate::DEFAULT_MAX_ROOMS_PER_SOCKET)).
    pub fn max_rooms_per_socket(mut self, rooms: usize) -> Self {
        self.connection.rooms_per_socket = rooms;
        self
    }

    /// Longest client event name accepted, in bytes. A client frame whose event name is
    /// longer is dropped without running any handler (no reply either) and counted in
    /// [`MetricsSnapshot::limit_event_name`](crate::MetricsSnapshot::limit_event_name); a
    /// warning is logged once per connection, which stays open. At least 1.
    ///
    /// Default: 128 bytes ([`DEFAULT_MAX_EVENT_NAME_LEN`](crate::DEFAULT_MAX_EVENT_NAME_LEN)).
    pub fn max_event_name_len(mut self, bytes: usize) -> Self {
        self.connection.event_name_len = bytes;
        self
    }

    /// Most requests (events with a `callbackId`) of one connection that may wait for their
    /// reply at once: a request waits from the moment its handlers start until it is answered
    /// or every handle on it ([`ClientEvent`](crate::ClientEvent) clones) is dropped. A request
    /// past the limit is dropped without running any handler (the client's callback times out)
    /// and counted in
    /// [`MetricsSnapshot::limit_pending_requests`](crate::MetricsSnapshot::limit_pending_requests);
    /// a warning is logged once per connection, which stays open. Plain events are not
    /// limited. At least 1.
    ///
    /// Default: 256 ([`DEFAULT_MAX_PENDING_REQUESTS`](crate::DEFAULT_MAX_PENDING_REQUESTS)).
    pub fn max_pending_requests(mut self, requests: usize) -> Self {
        self.connection.pending_requests = requests;
        self
    }

    /// How often this node announces itself to the others (it also does when it starts and
    /// when it shuts down). See [`Node::members`](crate::Node::members).
    ///
    /// Default: 5 s ([`DEFAULT_ANNOUNCE_INTERVAL`](crate::DEFAULT_ANNOUNCE_INTERVAL)).
    pub fn announce_interval(mut self, interval: Duration) -> Self {
        self.announce_interval = interval;
        self
    }

    /// How many announcements another node may miss before this one forgets it: it leaves
    /// the member table ([`system::NodeLeft`](crate::system::NodeLeft)), its socket ids leave
    /// the directory, and reply collections stop waiting for it. Nodes of one cluster should
    /// share this and [`announce_interval`](Self::announce_interval). At least 1.
    ///
    /// Default: 3 ([`DEFAULT_MISSED_ANNOUNCEMENTS`](crate::DEFAULT_MISSED_ANNOUNCEMENTS)).
    pub fn missed_announcements(mut self, missed: u32) -> Self {
        self.missed_announcements = missed;
        self
    }

    /// Whether a push to socket ids bound on other nodes goes to the inbox of the node the
    /// directory names (so only that node handles it) rather than to the channel every node
    /// receives. Ids whose node is not known yet go to the shared channel either way.
    ///
    /// Default: `true`. `false` is what the JavaScript package does; it exists for
    /// measuring the difference.
    pub fn targeted_unicast(mut self, enabled: bool) -> Self {
        self.targeted_unicast = enabled;
        self
    }

    /// The format of this node's messages to the other nodes: crosswire's own, or the
    /// Node.js package's, to join a cluster of its nodes (see [`Wire::JsPackage`] for what
    /// that turns off).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use crosswire_core::{Node, Wire};
    ///
    /// let node = Node::builder()
    ///     .server_name("rust-1")
    ///     .wire(Wire::JsPackage { msgpack: true })
    ///     .build()
    ///     .await?;
    /// assert_eq!(node.options().wire(), Wire::JsPackage { msgpack: true });
    /// # Ok(()) }
    /// ```
    ///
    /// Default: [`Wire::Crosswire`].
    pub fn wire(mut self, wire: Wire) -> Self {
        self.wire = wire;
        self
    }

    /// How often a background task exports this node's counters and gauges to the recorder
    /// of the [`metrics`](https://docs.rs/metrics) facade (see
    /// [`Node::record_metrics`](crate::Node::record_metrics)). Without a recorder installed,
    /// an export costs next to nothing. `None` or zero disables the task (an application can
    /// still call `record_metrics` itself, e.g. just before each scrape).
    ///
    /// Default: 1 s ([`DEFAULT_METRICS_INTERVAL`]).
    pub fn metrics_interval(mut self, interval: Option<Duration>) -> Self {
        self.metrics_interval = interval;
        self
    }

    /// Checks every setting and freezes them.
    ///
    /// # Errors
    /// The first [`OptionsError`] found.
    pub fn validate(&self) -> Result<NodeOptions, OptionsError> {
        let b = &self.bridge_prefix;
        let w = &self.ws_prefix;
        if b.is_empty() || w.is_empty() {
            return Err(OptionsError::EmptyPrefix);
        }
        if b == w {
            return Err(OptionsError::SamePrefixes(b.clone()));
        }
        if b.starts_with(w.as_str()) || w.starts_with(b.as_str()) {
            return Err(OptionsError::OverlappingPrefixes {
                bridge: b.clone(),
                ws: w.clone(),
            });
        }
        let server_name = match (&self.server_name, &self.broker) {
            (Some(name), _) => name.clone(),
            (None, Some(_)) => return Err(OptionsError::MissingServerName),
            (None, None) => STANDALONE_SERVER_NAME.to_owned(),
        };
        if server_name.is_empty() || server_name.len() > 64 {
            return Err(OptionsError::InvalidServerName);
        }
        if let Some(ns) = self
            .preset_namespaces
            .iter()
            .find(|ns| crate::channels::check_namespace(ns).is_err())
        {
            return Err(OptionsError::InvalidNamespace(ns.clone()));
        }
        let names = ChannelNames::new(b, w, &server_name);
        for channel in &self.custom_channels {
            if channel.is_empty() {
                return Err(OptionsError::EmptyCustomChannel);
            }
            if let Some(prefix) = names.reserved_prefix(channel) {
                return Err(OptionsError::ReservedCustomChannel {
                    channel: channel.clone(),
                    prefix: prefix.to_owned(),
                });
            }
        }
        if self.server_ping_interval == Some(Duration::ZERO) {
            return Err(OptionsError::ZeroDuration("server_ping_interval"));
        }
        if self.background_close_time.is_zero() {
            return Err(OptionsError::ZeroDuration("background_close_time"));
        }
        if self.connection.auth_timeout == Some(Duration::ZERO) {
            return Err(OptionsError::ZeroDuration("auth_timeout"));
        }
        if self.announce_interval.is_zero() {
            return Err(OptionsError::ZeroDuration("announce_interval"));
        }
        if self.missed_announcements == 0 {
            return Err(OptionsError::ZeroLimit("missed_announcements"));
        }
        if self.connection.handler_timeout.is_zero() {
            return Err(OptionsError::ZeroDuration("connection_handler_timeout"));
        }
        let limits = &self.connection;
        for (name, value) in [
            ("max_rooms_per_socket", limits.rooms_per_socket),
            ("max_event_name_len", limits.event_name_len),
            ("max_pending_requests", limits.pending_requests),
        ] {
            if value == 0 {
                return Err(OptionsError::ZeroLimit(name));
            }
        }
        if self.wire != Wire::Crosswire && self.cluster_secret.is_some() {
            return Err(OptionsError::SignedJsWire);
        }
        let cluster_key = match &self.cluster_secret {
            Some(secret) => {
                Some(ClusterKey::new(secret).ok_or(OptionsError::ClusterSecretTooShort)?)
            }
            None => None,
        };
        Ok(NodeOptions {
            server_name,
            bridge_prefix: b.clone(),
            ws_prefix: w.clone(),
            server_ping_interval: self.server_ping_interval,
            heartbeat: self.heartbeat.clone(),
            background_close_time: self.background_close_time,
            preset_namespaces: self.preset_namespaces.clone(),
            auto_unsubscribe: self.auto_unsubscribe,
            custom_channels: self.custom_channels.clone(),
            duplicate_bind: self.duplicate_bind,
            compression: self.compression,
            compression_threshold: self.compression_threshold,
            cluster_key,
            connection: self.connection,
            announce_interval: self.announce_interval,
            missed_announcements: self.missed_announcements,
            targeted_unicast: self.targeted_unicast,
            metrics_interval: self.metrics_interval.filter(|interval| !interval.is_zero()),
            wire: self.wire,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Node;

    #[test]
    fn defaults_match_the_js_package() {
        let o = Node::builder().validate().unwrap();
        assert_eq!(o.bridge_prefix, "csbp:");
        assert_eq!(o.ws_prefix, "ws:");
        assert_eq!(o.server_ping_interval, Some(Duration::from_secs(20)));
        assert_eq!(o.heartbeat, "");
        assert_eq!(o.background_close_time, Duration::from_secs(10));
        assert!(o.auto_unsubscribe);
        assert!(o.compression);
        assert_eq!(o.server_name, STANDALONE_SERVER_NAME);
    }

    #[test]
    fn invalid_settings_are_typed_errors() {
        let same = Node::builder()
            .bridge_prefix("x:")
            .ws_prefix("x:")
            .validate();
        assert_eq!(same.unwrap_err(), OptionsError::SamePrefixes("x:".into()));
        let overlap = Node::builder().bridge_prefix("ws:bridge:").validate();
        assert!(matches!(
            overlap,
            Err(OptionsError::OverlappingPrefixes { .. })
        ));
        assert_eq!(
            Node::builder().ws_prefix("").validate().unwrap_err(),
            OptionsError::EmptyPrefix
        );
        assert_eq!(
            Node::builder().server_name("").validate().unwrap_err(),
            OptionsError::InvalidServerName
        );
        assert_eq!(
            Node::builder()
                .preset_namespaces(["broadcast"])
                .validate()
                .unwrap_err(),
            OptionsError::InvalidNamespace("broadcast".into())
        );
        assert_eq!(
            Node::builder()
                .background_close_time(Duration::ZERO)
                .validate()
                .unwrap_err(),
            OptionsError::ZeroDuration("background_close_time")
        );
    }

    #[test]
    fn cluster_secret_is_off_by_default_at_least_16_bytes_and_hidden() {
        assert!(Node::builder().validate().unwrap().cluster_key.is_none());
        for short in [&b""[..], b"fifteen bytes!!"] {
            assert_eq!(
                Node::builder()
                    .cluster_secret(short)
                    .validate()
                    .unwrap_err(),
                OptionsError::ClusterSecretTooShort
            );
        }
        let builder = Node::builder().cluster_secret("sixteen bytes!!!");
        let options = builder.validate().unwrap();
        assert!(options.cluster_key.is_some());
        for shown in [format!("{builder:?}"), format!("{options:?}")] {
            assert!(!shown.contains("sixteen"), "{shown}");
        }
    }

    #[test]
    fn custom_channels_must_not_be_empty_or_reserved() {
        let refused = |builder: NodeBuilder| builder.validate().unwrap_err();
        assert_eq!(
            refused(Node::builder().custom_channels(["app", "ws:chat"])),
            OptionsError::ReservedCustomChannel {
                channel: "ws:chat".into(),
                prefix: "ws:".into()
            }
        );
        assert_eq!(
            refused(Node::builder().custom_channels(["csbp:server_bridge"])),
            OptionsError::ReservedCustomChannel {
                channel: "csbp:server_bridge".into(),
                prefix: "csbp:".into()
            }
        );
        // The node's own prefixes count, not the defaults.
        assert_eq!(
            refused(
                Node::builder()
                    .ws_prefix("client/")
                    .custom_channels(["client/chat"])
            ),
            OptionsError::ReservedCustomChannel {
                channel: "client/chat".into(),
                prefix: "client/".into()
            }
        );
        assert_eq!(
            refused(Node::builder().custom_channels(["app", ""])),
            OptionsError::EmptyCustomChannel
        );
        let message = refused(Node::builder().custom_channels(["ws:chat"])).to_string();
        assert!(
            message.contains("ws:chat") && message.contains("`ws:`"),
            "{message}"
        );
        let ok = Node::builder()
            .ws_prefix("client/")
            .custom_channels(["ws:chat", "app-events"])
            .validate()
            .unwrap();
        assert_eq!(ok.custom_channels, ["ws:chat", "app-events"]);
    }

    #[test]
    fn client_limits_have_defaults_and_must_be_at_least_one() {
        let o = Node::builder().validate().unwrap();
        assert_eq!(
            (
                o.max_rooms_per_socket(),
                o.max_event_name_len(),
                o.max_pending_requests()
            ),
            (1024, 128, 256)
        );
        let o = Node::builder()
            .max_rooms_per_socket(1)
            .max_event_name_len(2)
            .max_pending_requests(3)
            .validate()
            .unwrap();
        assert_eq!(
            (
                o.max_rooms_per_socket(),
                o.max_event_name_len(),
                o.max_pending_requests()
            ),
            (1, 2, 3)
        );
        let refused = |builder: NodeBuilder| builder.validate().unwrap_err();
        assert_eq!(
            refused(Node::builder().max_rooms_per_socket(0)),
            OptionsError::ZeroLimit("max_rooms_per_socket")
        );
        assert_eq!(
            refused(Node::builder().max_event_name_len(0)),
            OptionsError::ZeroLimit("max_event_name_len")
        );
        assert_eq!(
            refused(Node::builder().max_pending_requests(0)),
            OptionsError::ZeroLimit("max_pending_requests")
        );
    }

    #[tokio::test]
    async fn a_node_with_a_reserved_custom_channel_is_not_built() {
        let built = Node::builder().custom_channels(["ws:chat"]).build().await;
        assert!(matches!(
            built,
            Err(crate::Error::Options(
                OptionsError::ReservedCustomChannel { .. }
            ))
        ));
    }
}
