//! A Redis broker for crosswire: nodes in different processes and on different machines form
//! one cluster through one or more **independent** Redis servers (not a Redis Cluster).
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use crosswire_core::Node;
//! use crosswire_redis::{RedisBroker, RedisNode, Strategy};
//!
//! let broker = RedisBroker::builder()
//!     .url("redis://127.0.0.1:6379")
//!     .node(RedisNode::new("127.0.0.1", 6380).password("secret"))
//!     .strategy(Strategy::RoundRobin)
//!     .server_name("serverA")
//!     .on_health_change(|e| println!("{}:{} {} healthy={}", e.host, e.port, e.connection, e.healthy))
//!     .build()
//!     .await?;
//! let node = Node::builder().server_name("serverA").broker(broker.clone()).build().await?;
//! # let _ = node;
//! # Ok(()) }
//! ```
//!
//! # How it works
//! Each crosswire node keeps two connections to every Redis node: a **publisher** (a
//! multiplexed connection for `PUBLISH` and `PING`) and a **subscriber** (pub/sub). Both
//! reconnect on their own, with a delay doubling from 50 ms up to
//! [`reconnect_max_delay`](RedisBrokerBuilder::reconnect_max_delay), each drawn from the upper
//! half of that ceiling ([`crosswire_core::Backoff`]) so that the nodes of a cluster don't all
//! reconnect at once to a restarted Redis.
//!
//! - **Subscribing.** The broker keeps the set of channels its node needs (fixed channels,
//!   room namespaces, custom channels: whatever the node subscribed). Every subscriber is
//!   subscribed to the whole set; after a (re)connect it subscribes to the whole set first and
//!   only then counts as healthy, so a Redis node never takes publishes before it can deliver
//!   them to this node. Set changes and re-subscriptions are serialized: a channel is never
//!   lost or doubled. Messages from every Redis node go into the node's one inbound queue;
//!   when it is full the subscriber waits (nothing is dropped).
//! - **Publishing.** Each message goes to **one** usable Redis node (publisher and subscriber
//!   healthy), chosen by the [`Strategy`]. If the `PUBLISH` fails on a connection error, or
//!   times out while nothing else on that connection was answered either, that node is marked
//!   unhealthy (health event) and the same message is retried on the next usable node, so a
//!   Redis crash loses nothing the caller was told was published (a timed-out publish may,
//!   rarely, be delivered twice). A node that answered other commands within the
//!   [`command_timeout`](RedisBrokerBuilder::command_timeout) is slow (its replies wait
//!   behind a queue, usually this process's own backlog under load), not failed: it stays in
//!   use, the message is tried on the next node, and with none left the publish fails with
//!   [`BrokerErrorKind::TimedOut`](crosswire_core::BrokerErrorKind). With no usable node the
//!   publish fails with [`BrokerErrorKind::Unavailable`](crosswire_core::BrokerErrorKind)
//!   and [`RedisBroker::unavailable_publishes`] counts it.
//! - **Health checks.** Every [`ping_interval`](RedisBrokerBuilder::ping_interval) (5 s) both
//!   connections of each Redis node are sent a `PING` that must answer within
//!   [`ping_timeout`](RedisBrokerBuilder::ping_timeout) (2 s); the publisher's round trip is
//!   the latency the `fastest` strategy uses. They run when there is more than one Redis node
//!   and [`force_ping`](RedisBrokerBuilder::force_ping) is on (the default), or when the
//!   strategy is `fastest`. Closed connections are detected at once, without waiting for a
//!   ping.
//! - **Coming back.** A Redis node that recovers is re-subscribed, marked healthy, and then
//!   preferably not chosen for [`rejoin_delay`](RedisBrokerBuilder::rejoin_delay) (2 s), the
//!   time the *other* crosswire nodes need to re-subscribe too (unless it is the only usable
//!   node). Nodes added with [`RedisBroker::add_redis_instance`] wait the same delay.
//!
//! # Ordering
//! Messages of one publisher travelling through one Redis node arrive in order. With
//! several Redis nodes, two consecutive publishes may take different nodes and arrive in
//! either order; use a single Redis node where order across messages matters.
//!
//! # Wire
//! Channels are the node's (see PROTOCOL.md section 2): `csbp:server_bridge`,
//! `ws:broadcast`, `ws:private_socket`, `ws:{namespace}`, and custom channels; payloads are
//! the node's envelopes, moved unchanged.
//!
//! # Features
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tls` | no | `rediss://` URLs and [`RedisNode::tls`], with rustls on the `ring` provider |

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod config;
mod health;
mod instance;
mod publisher;
mod shared;
mod strategy;
mod subscriber;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use crosswire_core::{inbound_channel, Broker, BrokerError, BrokerHealth, Inbound};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

pub use config::{ConfigError, RedisNode, DEFAULT_REDIS_URL};
pub use health::{
    ConnectionKind, HealthCause, HealthEvent, SubscriptionAction, SubscriptionErrorEvent,
};
pub use strategy::{Strategy, UnknownStrategy};

use health::Callbacks;
use instance::Instance;
use shared::{Channels, Settings, Shared};
use strategy::Picker;

/// Default interval between health-check pings (`redisPingInterval`).
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(5);
/// Default time a ping may take before the connection counts as unhealthy (`redisPingTimeout`).
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Default time a connection attempt may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default time a `PUBLISH`, `SUBSCRIBE` or `UNSUBSCRIBE` may take before the node is
/// considered failed.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Default time a recovered Redis node is preferably not published to.
pub const DEFAULT_REJOIN_DELAY: Duration = Duration::from_secs(2);
/// Default longest delay between reconnection attempts.
pub const DEFAULT_RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

/// A crosswire [`Broker`] on one or more independent Redis servers. One per crosswire node;
/// build it with [`RedisBroker::builder`] inside a Tokio runtime. Dropping it (with its node)
/// closes every connection.
pub struct RedisBroker {
    shared: Arc<Shared>,
    inbound: Mutex<Option<Inbound>>,
    stop: watch::Sender<()>,
}

/// What one Redis node looks like from this crosswire node.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InstanceStatus {
    /// The Redis node's host.
    pub host: String,
    /// The Redis node's port.
    pub port: u16,
    /// Whether the publisher connection is healthy.
    pub publisher_healthy: bool,
    /// Whether the subscriber connection is healthy (subscribed to every needed channel).
    pub subscriber_healthy: bool,
    /// The last measured `PING` round trip of the publisher connection.
    pub latency: Option<Duration>,
    /// Messages published through this Redis node.
    pub published: u64,
    /// Publishes that failed on this Redis node (and were retried on another if possible).
    pub publish_failures: u64,
    /// Connections lost and re-established, publisher and subscriber together.
    pub reconnects: u64,
}

impl RedisBroker {
    /// Starts configuring a broker.
    pub fn builder() -> RedisBrokerBuilder {
        RedisBrokerBuilder::default()
    }

    /// Healthy connections of `kind`, all Redis nodes together
    /// (`getHealthyRedisInstancesCount`).
    pub fn healthy_count(&self, kind: ConnectionKind) -> usize {
        self.shared.healthy_count(kind)
    }

    /// Number of configured Redis nodes (`getRedisInstancesCount`).
    pub fn instance_count(&self) -> usize {
        self.shared.instances.read().len()
    }

    /// Publishes refused because no Redis node was usable.
    pub fn unavailable_publishes(&self) -> u64 {
        self.shared.unavailable.load(Ordering::Relaxed)
    }

    /// The state of every Redis node, in configuration order.
    pub fn instances(&self) -> Vec<InstanceStatus> {
        self.shared
            .instances()
            .iter()
            .map(|i| InstanceStatus {
                host: i.node.host().to_owned(),
                port: i.node.port(),
                publisher_healthy: i.healthy(ConnectionKind::Publisher),
                subscriber_healthy: i.healthy(ConnectionKind::Subscriber),
                latency: i.latency(),
                published: i.published.load(Ordering::Relaxed),
                publish_failures: i.publish_failures.load(Ordering::Relaxed),
                reconnects: i.reconnects.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The channels this broker is subscribed to on every Redis node.
    pub fn channels(&self) -> Vec<String> {
        self.shared.channels.set.read().iter().cloned().collect()
    }

    /// Adds a Redis node at runtime (`addRedisInstance`): it is connected and subscribed to
    /// every channel the node needs before it takes publishes, and then waits
    /// [`rejoin_delay`](RedisBrokerBuilder::rejoin_delay) so the other crosswire nodes (which
    /// must be given the same Redis node) can subscribe too.
    ///
    /// Returns whether it became usable within the connect timeout; either way it stays
    /// configured and keeps reconnecting.
    ///
    /// # Errors
    /// [`ConfigError`] when the node's settings are unusable (e.g. TLS without the feature).
    pub async fn add_redis_instance(&self, node: RedisNode) -> Result<bool, ConfigError> {
        let client = node.client()?;
        install_tls_provider(&node);
        let instance = Arc::new(Instance::new(node, client, true));
        self.start(instance.clone());
        let deadline = tokio::time::Instant::now() + self.shared.settings.connect_timeout;
        let mut changed = self.shared.changed.subscribe();
        while !instance.usable() {
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                break;
            }
        }
        Ok(instance.usable())
    }

    fn start(&self, instance: Arc<Instance>) {
        self.shared.instances.write().push(instance.clone());
        let shared = &self.shared;
        tokio::spawn(subscriber::run_subscriber(
            shared.clone(),
            instance.clone(),
            self.stop.subscribe(),
        ));
        tokio::spawn(publisher::run_publisher(
            shared.clone(),
            instance.clone(),
            self.stop.subscribe(),
        ));
        tokio::spawn(publisher::run_health_check(
            shared.clone(),
            instance,
            self.stop.subscribe(),
        ));
    }

    /// Waits until every Redis node had its first connection attempts, or `limit` passed.
    async fn first_attempts(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut changed = self.shared.changed.subscribe();
        while !self.shared.instances().iter().all(|i| i.tried()) {
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                break;
            }
        }
    }
}

impl fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBroker")
            .field("settings", &self.shared.settings)
            .field("instances", &self.instances())
            .field("channels", &self.shared.channels.set.read().len())
            .finish()
    }
}

#[async_trait]
impl Broker for RedisBroker {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BrokerError> {
        publisher::publish(&self.shared, channel, &payload).await
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        subscriber::subscribe(&self.shared, channel).await
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        subscriber::unsubscribe(&self.shared, channel).await
    }

    fn take_inbound(&self) -> Option<Inbound> {
        self.inbound.lock().take()
    }

    /// A publisher and a subscriber connection per Redis node, healthy as their last check
    /// found them.
    fn health(&self) -> BrokerHealth {
        BrokerHealth::new(
            2 * self.instance_count(),
            self.shared.healthy_count(ConnectionKind::Publisher)
                + self.shared.healthy_count(ConnectionKind::Subscriber),
        )
    }
}

/// Configures a [`RedisBroker`]: `RedisBroker::builder()...build().await`.
#[must_use = "a builder does nothing until `build` is awaited"]
pub struct RedisBrokerBuilder {
    nodes: Vec<RedisNode>,
    errors: Vec<ConfigError>,
    settings: Settings,
    callbacks: Callbacks,
}

impl Default for RedisBrokerBuilder {
    fn default() -> Self {
        RedisBrokerBuilder {
            nodes: Vec::new(),
            errors: Vec::new(),
            settings: Settings {
                server_name: String::new(),
                strategy: Strategy::default(),
                force_ping: true,
                ping_interval: DEFAULT_PING_INTERVAL,
                ping_timeout: DEFAULT_PING_TIMEOUT,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                command_timeout: DEFAULT_COMMAND_TIMEOUT,
                rejoin_delay: DEFAULT_REJOIN_DELAY,
                reconnect_max_delay: DEFAULT_RECONNECT_MAX_DELAY,
            },
            callbacks: Callbacks::default(),
        }
    }
}

impl fmt::Debug for RedisBrokerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBrokerBuilder")
            .field("nodes", &self.nodes)
            .field("settings", &self.settings)
            .field("callbacks", &self.callbacks)
            .finish()
    }
}

impl RedisBrokerBuilder {
    /// Adds a Redis node (`redisConfig` entry). Default: none; at least one is required.
    pub fn node(mut self, node: RedisNode) -> Self {
        self.nodes.push(node);
        self
    }

    /// Adds a Redis node by URL: `redis://[user][:password@]host[:port][/db]` or `rediss://`.
    /// A bad URL makes [`build`](Self::build) fail. Default: none.
    pub fn url(mut self, url: &str) -> Self {
        match RedisNode::from_url(url) {
            Ok(node) => self.nodes.push(node),
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// The crosswire server name reported in events and logs. Default: empty.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.settings.server_name = name.into();
        self
    }

    /// How publishes pick a Redis node (`selectionStrategy`). Default: [`Strategy::Random`].
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.settings.strategy = strategy;
        self
    }

    /// Runs health checks whenever there is more than one Redis node (`redisForcePing`).
    /// `fastest` always runs them. Default: `true`.
    pub fn force_ping(mut self, enabled: bool) -> Self {
        self.settings.force_ping = enabled;
        self
    }

    /// Interval between health-check pings (`redisPingInterval`). Default: 5 s.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.settings.ping_interval = interval;
        self
    }

    /// Longest a ping may take (`redisPingTimeout`). Default: 2 s.
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.settings.ping_timeout = timeout;
        self
    }

    /// Longest a connection attempt may take; `build` waits at most this long for the first
    /// attempts. Default: 2 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// Longest a `PUBLISH`, `SUBSCRIBE` or `UNSUBSCRIBE` may take. A Redis node that answers
    /// nothing for this long is considered failed; one that answered other commands
    /// meanwhile is only slow (see [Publishing](crate#how-it-works)). Default: 2 s.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.settings.command_timeout = timeout;
        self
    }

    /// How long a Redis node that recovered (or was added at runtime) is passed over by
    /// publishes while another node is usable, so every crosswire node has re-subscribed to
    /// it first. Zero disables it. Default: 2 s.
    pub fn rejoin_delay(mut self, delay: Duration) -> Self {
        self.settings.rejoin_delay = delay;
        self
    }

    /// Longest delay between reconnection attempts (the ceiling of the doubling delay; with
    /// jitter each delay is between half of it and all of it). Default: 1 s.
    pub fn reconnect_max_delay(mut self, delay: Duration) -> Self {
        self.settings.reconnect_max_delay = delay;
        self
    }

    /// Calls `callback` whenever a connection to a Redis node becomes healthy or unhealthy
    /// (`onRedisHealthChange`). It runs on the broker's tasks: keep it short and
    /// non-blocking (send to a channel for anything more). Default: none.
    pub fn on_health_change(
        mut self,
        callback: impl Fn(&HealthEvent) + Send + Sync + 'static,
    ) -> Self {
        self.callbacks.health.push(Arc::new(callback));
        self
    }

    /// Calls `callback` when subscribing or unsubscribing a channel on a Redis node fails
    /// (`onRedisSubscriptionError`). Keep it short and non-blocking. Default: none.
    pub fn on_subscription_error(
        mut self,
        callback: impl Fn(&SubscriptionErrorEvent) + Send + Sync + 'static,
    ) -> Self {
        self.callbacks.subscription_error.push(Arc::new(callback));
        self
    }

    /// Starts the connections and waits (at most the connect timeout) for the first attempt
    /// on every Redis node. Redis nodes that are down do not fail the build: they are
    /// reported unhealthy and retried until they come up.
    ///
    /// # Errors
    /// [`ConfigError`] for an invalid configuration (no node, bad URL, zero duration, TLS
    /// without the `tls` feature).
    pub async fn build(self) -> Result<Arc<RedisBroker>, ConfigError> {
        if let Some(error) = self.errors.into_iter().next() {
            return Err(error);
        }
        if self.nodes.is_empty() {
            return Err(ConfigError::NoNodes);
        }
        let s = &self.settings;
        for (value, name) in [
            (s.ping_interval, "ping_interval"),
            (s.ping_timeout, "ping_timeout"),
            (s.connect_timeout, "connect_timeout"),
            (s.command_timeout, "command_timeout"),
            (s.reconnect_max_delay, "reconnect_max_delay"),
        ] {
            if value.is_zero() {
                return Err(ConfigError::ZeroDuration(name));
            }
        }
        let mut instances = Vec::new();
        for node in self.nodes {
            let client = node.client()?;
            install_tls_provider(&node);
            instances.push(Arc::new(Instance::new(node, client, false)));
        }
        let (sender, inbound) = inbound_channel();
        let connect_timeout = self.settings.connect_timeout;
        let broker = Arc::new(RedisBroker {
            shared: Arc::new(Shared {
                settings: self.settings,
                callbacks: self.callbacks,
                instances: RwLock::new(Vec::new()),
                channels: Channels::default(),
                inbound: sender,
                picker: Picker::default(),
                unavailable: AtomicU64::new(0),
                changed: watch::channel(0).0,
            }),
            inbound: Mutex::new(Some(inbound)),
            stop: watch::channel(()).0,
        });
        for instance in instances {
            broker.start(instance);
        }
        broker.first_attempts(connect_timeout).await;
        Ok(broker)
    }
}

#[cfg(feature = "tls")]
fn install_tls_provider(node: &RedisNode) {
    if node.uses_tls() {
        // Already installed by the application (or an earlier broker): keep theirs.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(not(feature = "tls"))]
fn install_tls_provider(_node: &RedisNode) {}
