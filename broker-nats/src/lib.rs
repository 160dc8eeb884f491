//! A NATS broker for crosswire: nodes in different processes and on different machines form
//! one cluster through one NATS server or one NATS cluster (servers joined by routes).
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use crosswire_core::Node;
//! use crosswire_nats::NatsBroker;
//!
//! let broker = NatsBroker::builder()
//!     .url("nats://127.0.0.1:4222")
//!     .url("nats://127.0.0.1:4223")
//!     .server_name("serverA")
//!     .on_health_change(|e| println!("{} {} healthy={}", e.server, e.event, e.healthy))
//!     .build()
//!     .await?;
//! let node = Node::builder().server_name("serverA").broker(broker.clone()).build().await?;
//! # let _ = node;
//! # Ok(()) }
//! ```
//!
//! # How it works
//! Each crosswire node keeps **one** connection (an [`async_nats::Client`]) to one server of
//! the NATS cluster given by the [`url`](NatsBrokerBuilder::url)s. The client fails over to
//! another server (configured or announced by the cluster) when its server goes away, and
//! re-subscribes every subscription on the new connection by itself.
//!
//! - **Subscribing.** Every crosswire channel the node subscribes to is one NATS
//!   subscription on its own subject (see [Wire](#wire)), with a task that forwards its
//!   messages into the node's inbound queue; when the queue is full the task waits (nothing
//!   is dropped by crosswire). `subscribe` returns once the server has processed the
//!   subscription: the broker then publishes a probe on a private inbox of its connection and
//!   waits for it to come back, and as a server handles one connection's commands in order,
//!   the subscription is in place by then. Subscribing twice is a no-op; `unsubscribe` drops
//!   the subscription, after which nothing more is delivered on that channel.
//! - **Publishing.** A message bigger than the server's `max_payload` (1 MiB unless the
//!   server is configured otherwise; see [`NatsBroker::max_payload`]) fails at once with
//!   [`BrokerErrorKind::Rejected`], naming the limit. While the connection is down, publishes
//!   fail with [`BrokerErrorKind::Unavailable`] instead of queuing. Otherwise the message is
//!   handed to the client, which writes it out in order (publishes are buffered, not
//!   confirmed: NATS core is at-most-once).
//! - **Health.** The client's connection events become [`NatsHealthEvent`]s
//!   ([`on_health_change`](NatsBrokerBuilder::on_health_change)) and the
//!   [`is_healthy`](NatsBroker::is_healthy) flag: `disconnected` when the connection is
//!   lost, `reconnecting` before each try to get it back (with the attempt number and the
//!   client's backoff delay), and `connected` once it is back **and** the subscriptions are.
//!   async-nats raises its own `Connected` event as soon as the new connection's handshake
//!   is done, *before* it queues the `SUB`s again (async-nats 0.51, `src/connector.rs`,
//!   `Connector::try_connect_to_server`, then `src/lib.rs`,
//!   `ConnectionHandler::handle_reconnect`), so the broker does not trust it: it publishes a
//!   probe on the new connection (the client sends it after the `SUB`s, since it reads no
//!   command while it reconnects) and reports `connected` and healthy when the probe comes
//!   back, by which time the server has processed every `SUB`. Until then publishes fail
//!   with [`BrokerErrorKind::Unavailable`]. When the client falls behind on a
//!   subscription (its per-subscription buffer is full because the node does not drain its
//!   inbound queue fast enough), NATS drops messages for it: each such event is counted
//!   ([`slow_consumer_events`](NatsBroker::slow_consumer_events)) and logged, at most once a
//!   second.
//!
//! # Behaviour
//! - A node receives its own publishes on channels it is subscribed to.
//! - Messages of one publisher on one channel arrive in order. Messages on *different*
//!   channels travel through different subscriptions and may be interleaved differently
//!   than they were published.
//! - In a NATS cluster, a subscription made on one server reaches the other servers over
//!   the routes shortly after `subscribe` returns; a publish through another server in that
//!   instant may miss it.
//! - During a reconnect, messages published meanwhile are not delivered to this node (NATS
//!   core keeps no history).
//!
//! # Wire
//! Channels are the node's (see PROTOCOL.md section 2): `csbp:server_bridge`,
//! `ws:broadcast`, `ws:private_socket`, `ws:{namespace}`, and custom channels. Each channel
//! is the subject `{prefix}.{token}`, prefix [`subject_prefix`](NatsBrokerBuilder::subject_prefix)
//! (default `crosswire`), where `token` keeps the bytes `A`-`Z`, `a`-`z`, `0`-`9`, `_` and
//! `-` of the channel name and writes every other byte as `~` and two uppercase hex digits;
//! the empty name is `~`. So `ws:chat` is `crosswire.ws~3Achat`, and `a.b`, `*`, `>` or
//! names with spaces stay one literal token, never a wildcard. The encoding is injective:
//! distinct channels never share a subject. Payloads are the node's envelopes, moved
//! unchanged, without NATS headers. All crosswire nodes of one cluster must use the same
//! prefix; different prefixes keep clusters on one NATS apart.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod config;
mod health;
mod subject;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::client::PublishErrorKind;
use async_nats::connection::State;
use async_nats::{Client, ConnectOptions, Event, ServerAddr, Subscriber};
use async_trait::async_trait;
use bytes::Bytes;
use crosswire_core::{
    inbound_channel, Backoff, Broker, BrokerError, BrokerErrorKind, BrokerHealth, BrokerMessage,
    Inbound, InboundSender, LogLimiter,
};
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{NatsBrokerError, DEFAULT_NATS_URL, DEFAULT_SUBJECT_PREFIX};
pub use health::{NatsHealth, NatsHealthEvent};

use config::{mask_url, Auth};
use health::Callbacks;

/// Default time the first connection may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time a publish or a subscription may take before it fails.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// A crosswire [`Broker`] on one NATS server or cluster. One per crosswire node; build it
/// with [`NatsBroker::builder`] inside a Tokio runtime. Dropping it (with its node) closes
/// the connection.
pub struct NatsBroker {
    shared: Arc<Shared>,
    status: Arc<Status>,
    subscriptions: tokio::sync::Mutex<HashMap<String, JoinHandle<()>>>,
    inbound: Mutex<Option<Inbound>>,
    probe_task: JoinHandle<()>,
    /// Runs [`confirm_reconnects`].
    confirm_task: JoinHandle<()>,
}

/// What the broker's tasks share.
struct Shared {
    client: Client,
    settings: Settings,
    inbound: InboundSender,
    /// The private inbox probes are published on.
    probe_subject: String,
    /// The last probe number handed out.
    probe_next: AtomicU64,
    /// The highest probe number that came back.
    probe_seen: watch::Sender<u64>,
}

/// What the connection event callback updates.
struct Status {
    settings_server_name: String,
    configured: String,
    healthy: AtomicBool,
    slow_consumers: AtomicU64,
    slow_log: LogLimiter,
    /// Where the connection stands; events are raised while it is locked, so they keep
    /// their order whichever client task raises them.
    link: Mutex<Link>,
    /// Bumped on every reconnect; the confirmation task waits for it.
    reconnects: watch::Sender<u64>,
    /// The client, to read the current server from; cleared on drop (it would keep the
    /// connection alive otherwise: the connection owns the callback that owns this).
    client: Mutex<Option<Client>>,
    /// The last server connected to, `host:port`.
    server: Mutex<String>,
    callbacks: Callbacks,
}

/// Where the connection stands, as the broker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `build` has not connected yet.
    Starting,
    /// Connected, and every subscription is in place.
    Up,
    /// The connection is lost; the client is reconnecting.
    Down,
    /// Reconnected (reconnect number): waiting for the probe that confirms the subscriptions.
    Confirming(u64),
}

struct Link {
    phase: Phase,
    /// Whether the client's `Connected` event of the first connection was seen.
    first_connected_seen: bool,
}

/// The delay before reconnect try `attempt`, as async-nats 0.51's default
/// (`connector::reconnect_delay_callback_default`, not public): none for the first try, then
/// 2^(attempt - 1) ms, at most 4 s, without jitter.
fn reconnect_delay(attempt: usize) -> Duration {
    Backoff::new(Duration::from_millis(2), Duration::from_secs(4))
        .fast_attempts(1, Duration::ZERO)
        .jitter(false)
        .delay(u32::try_from(attempt).unwrap_or(u32::MAX))
}

impl Status {
    fn current_server(&self) -> String {
        if let Some(client) = self.client.lock().as_ref() {
            let info = client.server_info();
            if !info.host.is_empty() {
                let server = format!("{}:{}", info.host, info.port);
                self.server.lock().clone_from(&server);
                return server;
            }
        }
        let last = self.server.lock().clone();
        if last.is_empty() {
            self.configured.clone()
        } else {
            last
        }
    }

    /// `build` connected: the broker is up (it has no subscriptions yet).
    fn started(&self) {
        let mut link = self.link.lock();
        if link.phase == Phase::Starting {
            link.phase = Phase::Up;
            self.healthy.store(true, Ordering::SeqCst);
        }
    }

    /// The client is about to try to reconnect (called by its reconnect delay callback, on
    /// its connection task, before the `Connected` event of the new connection is sent).
    fn on_reconnect_attempt(&self, attempt: usize, delay: Duration) {
        let mut link = self.link.lock();
        match link.phase {
            Phase::Starting => return, // the first connection's tries
            Phase::Up => {
                // The client's `Disconnected` event may still be on its way: raise it now,
                // so that it comes first (it is not raised twice: see `on_event`).
                link.phase = Phase::Down;
                self.healthy.store(false, Ordering::SeqCst);
                self.log(&NatsHealth::Disconnected);
                self.emit(NatsHealth::Disconnected, None);
            }
            Phase::Down | Phase::Confirming(_) => link.phase = Phase::Down,
        }
        tracing::debug!(
            server_name = %self.settings_server_name,
            attempt,
            ?delay,
            "NATS reconnecting"
        );
        self.emit(NatsHealth::Reconnecting { attempt, delay }, None);
    }

    /// The probe sent for reconnect `reconnect` came back: every subscription is in place.
    fn confirmed(&self, reconnect: u64) {
        let mut link = self.link.lock();
        if link.phase == Phase::Confirming(reconnect) {
            link.phase = Phase::Up;
            self.healthy.store(true, Ordering::SeqCst);
            self.log(&NatsHealth::Connected);
            self.emit(NatsHealth::Connected, None);
        }
    }

    /// Whether the broker still waits for the confirmation of reconnect `reconnect`.
    fn confirming(&self, reconnect: u64) -> bool {
        self.link.lock().phase == Phase::Confirming(reconnect)
    }

    fn log(&self, kind: &NatsHealth) {
        tracing::info!(
            server_name = %self.settings_server_name,
            event = %kind,
            "NATS connection {kind}"
        );
    }

    fn emit(&self, kind: NatsHealth, error: Option<String>) {
        let health = NatsHealthEvent {
            event: kind,
            healthy: self.healthy.load(Ordering::SeqCst),
            server: self.current_server(),
            server_name: self.settings_server_name.clone(),
            error,
        };
        for callback in &self.callbacks.health {
            callback(health.clone());
        }
    }

    fn on_event(&self, event: Event) {
        let mut link = self.link.lock();
        let (kind, error) = match event {
            Event::Connected if !link.first_connected_seen => {
                // The first connection, made by `build`.
                link.first_connected_seen = true;
                if link.phase == Phase::Starting {
                    link.phase = Phase::Up;
                    self.healthy.store(true, Ordering::SeqCst);
                }
                (NatsHealth::Connected, None)
            }
            Event::Connected => {
                // A reconnect: the client has not even queued the `SUB`s again yet. Healthy
                // once the confirmation task's probe comes back.
                let mut reconnect = 0;
                self.reconnects.send_modify(|n| {
                    *n += 1;
                    reconnect = *n;
                });
                link.phase = Phase::Confirming(reconnect);
                self.healthy.store(false, Ordering::SeqCst);
                return;
            }
            Event::Disconnected => {
                let was_up = link.phase == Phase::Up;
                link.phase = Phase::Down;
                self.healthy.store(false, Ordering::SeqCst);
                if !was_up {
                    return; // already raised (by the reconnect callback), or never up again
                }
                (NatsHealth::Disconnected, None)
            }
            Event::Closed => {
                link.phase = Phase::Down;
                self.healthy.store(false, Ordering::SeqCst);
                (NatsHealth::Closed, None)
            }
            Event::LameDuckMode => (NatsHealth::LameDuckMode, None),
            Event::SlowConsumer(sid) => {
                let total = self.slow_consumers.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(suppressed) = self.slow_log.allow() {
                    tracing::warn!(
                        server_name = %self.settings_server_name,
                        sid,
                        total,
                        suppressed,
                        "NATS slow consumer: messages were dropped for a subscription \
                         because the node does not drain its inbound queue fast enough"
                    );
                }
                (
                    NatsHealth::SlowConsumer,
                    Some(format!("slow consumer on subscription {sid}")),
                )
            }
            Event::ServerError(e) => {
                tracing::warn!(server_name = %self.settings_server_name, "NATS server error: {e}");
                (NatsHealth::ServerError, Some(e.to_string()))
            }
            Event::ClientError(e) => {
                tracing::warn!(server_name = %self.settings_server_name, "NATS client error: {e}");
                (NatsHealth::ClientError, Some(e.to_string()))
            }
            // Draining is only started by this crate's own shutdown, which it never does.
            _ => return,
        };
        if kind != NatsHealth::SlowConsumer {
            self.log(&kind);
        }
        self.emit(kind, error);
    }
}

#[derive(Debug, Clone)]
struct Settings {
    server_name: String,
    prefix: String,
    auth: Auth,
    require_tls: bool,
    root_certificates: Option<PathBuf>,
    connect_timeout: Duration,
    command_timeout: Duration,
}

impl NatsBroker {
    /// Starts configuring a broker.
    pub fn builder() -> NatsBrokerBuilder {
        NatsBrokerBuilder::default()
    }

    /// Whether the connection to NATS is up. After a reconnect, only once every subscription
    /// is confirmed back (see [`NatsHealth::Connected`]).
    pub fn is_healthy(&self) -> bool {
        self.status.healthy.load(Ordering::SeqCst)
    }

    /// How many times NATS dropped messages for one of this broker's subscriptions because
    /// the client fell behind (slow consumer events) since the broker was built.
    pub fn slow_consumer_events(&self) -> u64 {
        self.status.slow_consumers.load(Ordering::Relaxed)
    }

    /// The largest payload the connected server accepts, in bytes (its `max_payload`).
    pub fn max_payload(&self) -> usize {
        self.shared.client.server_info().max_payload
    }

    /// The NATS server currently (or last) connected to, `host:port`.
    pub fn server(&self) -> String {
        self.status.current_server()
    }

    /// The channels this broker is subscribed to.
    pub async fn channels(&self) -> Vec<String> {
        let mut channels: Vec<String> = self.subscriptions.lock().await.keys().cloned().collect();
        channels.sort();
        channels
    }

    /// The NATS subject a channel travels on: `{prefix}.{token}` (see [Wire](crate#wire)).
    pub fn subject_for(&self, channel: &str) -> String {
        subject::subject(&self.shared.settings.prefix, channel)
    }

    /// Waits until the server has processed every command this connection sent so far (see
    /// [`probe`]).
    async fn sync(&self) -> Result<(), BrokerError> {
        match probe(&self.shared).await {
            Probe::Back => Ok(()),
            Probe::PublishFailed(e) => Err(BrokerError::new(
                BrokerErrorKind::Unavailable,
                "NATS connection is closed: cannot confirm the subscription",
            )
            .with_source(e)),
            Probe::ShuttingDown => Err(BrokerError::new(
                BrokerErrorKind::Closed,
                "the NATS broker is shutting down",
            )),
            Probe::TimedOut => Err(BrokerError::new(
                if self.is_healthy() {
                    BrokerErrorKind::TimedOut
                } else {
                    BrokerErrorKind::Unavailable
                },
                format!(
                    "the NATS server did not confirm the subscription within {:?}",
                    self.shared.settings.command_timeout
                ),
            )),
        }
    }
}

/// How a [`probe`] ended.
enum Probe {
    Back,
    TimedOut,
    PublishFailed(async_nats::PublishError),
    ShuttingDown,
}

/// Publishes a probe on the broker's private inbox and waits (at most the command timeout)
/// for it to come back. A server handles one connection's commands in order, and the client
/// writes them in order, re-sending every `SUB` after a reconnect before any command queued
/// meanwhile: when the probe is back, the server has processed every subscription made before
/// it was published.
async fn probe(shared: &Shared) -> Probe {
    let mut seen = shared.probe_seen.subscribe();
    let n = shared.probe_next.fetch_add(1, Ordering::SeqCst) + 1;
    if let Err(e) = shared
        .client
        .publish(
            shared.probe_subject.clone(),
            Bytes::copy_from_slice(&n.to_be_bytes()),
        )
        .await
    {
        return Probe::PublishFailed(e);
    }
    let back = tokio::time::timeout(
        shared.settings.command_timeout,
        seen.wait_for(|seen| *seen >= n),
    )
    .await
    .map(|r| r.map(|_| ()));
    match back {
        Ok(Ok(())) => Probe::Back,
        Ok(Err(_)) => Probe::ShuttingDown,
        Err(_) => Probe::TimedOut,
    }
}

/// After each reconnect, confirms the subscriptions with a probe round trip and only then
/// reports the broker connected and healthy.
async fn confirm_reconnects(
    shared: Arc<Shared>,
    status: Arc<Status>,
    mut reconnects: watch::Receiver<u64>,
) {
    while reconnects.changed().await.is_ok() {
        let reconnect = *reconnects.borrow_and_update();
        loop {
            match probe(&shared).await {
                Probe::Back => {
                    status.confirmed(reconnect);
                    break;
                }
                Probe::PublishFailed(_) | Probe::ShuttingDown => return, // closed for good
                Probe::TimedOut => {
                    // Lost again (the next reconnect starts over), or only slow: try again.
                    if !status.confirming(reconnect) || reconnects.has_changed().unwrap_or(true) {
                        break;
                    }
                    tracing::warn!(
                        server_name = %shared.settings.server_name,
                        "NATS reconnected, but the server did not confirm the subscriptions within {:?}; probing again",
                        shared.settings.command_timeout
                    );
                }
            }
        }
    }
}

impl Drop for NatsBroker {
    fn drop(&mut self) {
        self.probe_task.abort();
        self.confirm_task.abort();
        if let Ok(subscriptions) = self.subscriptions.try_lock() {
            for task in subscriptions.values() {
                task.abort();
            }
        }
        self.status.client.lock().take();
    }
}

impl fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBroker")
            .field("settings", &self.shared.settings)
            .field("server", &self.server())
            .field("healthy", &self.is_healthy())
            .field("slow_consumer_events", &self.slow_consumer_events())
            .finish()
    }
}

/// Forwards one subscription's messages into the node's inbound queue, waiting when it is
/// full. The channel comes from the subscription, never from the message.
async fn forward(mut subscriber: Subscriber, channel: String, inbound: InboundSender) {
    while let Some(message) = subscriber.next().await {
        let message = BrokerMessage {
            channel: channel.clone(),
            payload: message.payload,
        };
        if inbound.send(message).await.is_err() {
            break; // the node is gone
        }
    }
}

/// Reads the probes that come back and publishes the highest number seen.
async fn read_probes(mut subscriber: Subscriber, seen: watch::Sender<u64>) {
    while let Some(message) = subscriber.next().await {
        let Ok(bytes) = <[u8; 8]>::try_from(message.payload.as_ref()) else {
            continue;
        };
        let n = u64::from_be_bytes(bytes);
        seen.send_if_modified(|seen| {
            let newer = n > *seen;
            if newer {
                *seen = n;
            }
            newer
        });
    }
}

fn publish_error(e: async_nats::PublishError) -> BrokerError {
    let kind = match e.kind() {
        PublishErrorKind::MaxPayloadExceeded | PublishErrorKind::InvalidSubject => {
            BrokerErrorKind::Rejected
        }
        PublishErrorKind::Send => BrokerErrorKind::Unavailable,
    };
    BrokerError::new(kind, "NATS publish failed").with_source(e)
}

#[async_trait]
impl Broker for NatsBroker {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BrokerError> {
        let max = self.max_payload();
        if max > 0 && payload.len() > max {
            return Err(BrokerError::new(
                BrokerErrorKind::Rejected,
                format!(
                    "payload of {} bytes exceeds the NATS server's max_payload of {max} bytes",
                    payload.len()
                ),
            ));
        }
        if !self.is_healthy() || self.shared.client.connection_state() != State::Connected {
            return Err(BrokerError::new(
                BrokerErrorKind::Unavailable,
                format!("not connected to NATS (last server {})", self.server()),
            ));
        }
        let subject = self.subject_for(channel);
        match tokio::time::timeout(
            self.shared.settings.command_timeout,
            self.shared.client.publish(subject, payload),
        )
        .await
        {
            Ok(result) => result.map_err(publish_error),
            Err(_) => Err(BrokerError::new(
                BrokerErrorKind::TimedOut,
                format!(
                    "the NATS client did not take the message within {:?} (its outgoing queue is full)",
                    self.shared.settings.command_timeout
                ),
            )),
        }
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        let mut subscriptions = self.subscriptions.lock().await;
        if subscriptions.contains_key(channel) {
            return Ok(());
        }
        let subject = self.subject_for(channel);
        let subscriber = self
            .shared
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|e| {
                BrokerError::new(
                    BrokerErrorKind::Unavailable,
                    format!("NATS subscription to `{subject}` failed"),
                )
                .with_source(e)
            })?;
        let task = tokio::spawn(forward(
            subscriber,
            channel.to_owned(),
            self.shared.inbound.clone(),
        ));
        subscriptions.insert(channel.to_owned(), task);
        drop(subscriptions);
        if let Err(e) = self.sync().await {
            if let Some(task) = self.subscriptions.lock().await.remove(channel) {
                task.abort();
            }
            return Err(e);
        }
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        let task = self.subscriptions.lock().await.remove(channel);
        if let Some(task) = task {
            // Dropping the subscriber (with the task) closes its queue at once, so nothing
            // more is delivered, and sends `UNSUB` to the server.
            task.abort();
            let _ = task.await;
        }
        Ok(())
    }

    fn take_inbound(&self) -> Option<Inbound> {
        self.inbound.lock().take()
    }

    /// One client connection (to one server of the NATS cluster at a time), healthy as
    /// [`NatsBroker::is_healthy`] says.
    fn health(&self) -> BrokerHealth {
        BrokerHealth::new(1, usize::from(self.is_healthy()))
    }
}

/// Configures a [`NatsBroker`]: `NatsBroker::builder()...build().await`.
#[must_use = "a builder does nothing until `build` is awaited"]
pub struct NatsBrokerBuilder {
    urls: Vec<String>,
    settings: Settings,
    callbacks: Callbacks,
}

impl Default for NatsBrokerBuilder {
    fn default() -> Self {
        NatsBrokerBuilder {
            urls: Vec::new(),
            settings: Settings {
                server_name: String::new(),
                prefix: DEFAULT_SUBJECT_PREFIX.to_owned(),
                auth: Auth::None,
                require_tls: false,
                root_certificates: None,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                command_timeout: DEFAULT_COMMAND_TIMEOUT,
            },
            callbacks: Callbacks::default(),
        }
    }
}

impl fmt::Debug for NatsBrokerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| mask_url(u)).collect();
        f.debug_struct("NatsBrokerBuilder")
            .field("urls", &urls)
            .field("settings", &self.settings)
            .field("callbacks", &self.callbacks)
            .finish()
    }
}

impl NatsBrokerBuilder {
    /// Adds a server of the NATS cluster: `nats://[user:password@]host[:port]` (or
    /// `tls://`). Repeat it for several servers of **one** cluster; the client connects to
    /// one and fails over to the others. Default: [`DEFAULT_NATS_URL`] when none is given.
    pub fn url(mut self, url: &str) -> Self {
        self.urls.push(url.to_owned());
        self
    }

    /// The crosswire server name, also sent to NATS as the connection name (shown by the
    /// server's monitoring). Default: empty (the connection is named `crosswire`).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.settings.server_name = name.into();
        self
    }

    /// The first token(s) of every subject (see [Wire](crate#wire)). All crosswire nodes of
    /// one cluster must use the same prefix. Default: `crosswire`.
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.prefix = prefix.into();
        self
    }

    /// Authenticates with a token. Default: no authentication.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.settings.auth = Auth::Token(token.into());
        self
    }

    /// Authenticates with a user name and password. Default: no authentication.
    pub fn user_password(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.settings.auth = Auth::UserPassword(user.into(), password.into());
        self
    }

    /// Authenticates with a NATS credentials file (a user JWT and its NKey seed), read when
    /// the broker is built. Default: no authentication.
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.settings.auth = Auth::CredentialsFile(path.into());
        self
    }

    /// Refuses to talk to a server without TLS. Default: `false` (TLS only when the URL is
    /// `tls://` or the server requires it).
    pub fn require_tls(mut self, required: bool) -> Self {
        self.settings.require_tls = required;
        self
    }

    /// Trusts the certificates in this PEM file (for servers whose certificate is not signed
    /// by a public authority, such as a private CA), in place of the default roots.
    /// Default: the webpki roots.
    pub fn root_certificates(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.settings.root_certificates = Some(pem_file.into());
        self
    }

    /// Longest the first connection may take. Default: 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// Longest a publish may wait for room in the client's outgoing queue, and a subscribe
    /// for the server's confirmation. Default: 5 s.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.settings.command_timeout = timeout;
        self
    }

    /// Calls `callback` on every connection event (connected, disconnected, reconnecting,
    /// lame duck, slow consumer, errors; see [`NatsHealth`]). It runs on the client's tasks
    /// (`reconnecting` on its connection task, which waits for it): keep it short and
    /// non-blocking. Default: none.
    pub fn on_health_change(
        mut self,
        callback: impl Fn(NatsHealthEvent) + Send + Sync + 'static,
    ) -> Self {
        self.callbacks.health.push(Arc::new(callback));
        self
    }

    /// Connects to one of the servers and subscribes the broker's probe inbox.
    ///
    /// # Errors
    /// [`NatsBrokerError`] for an invalid configuration (bad URL or prefix, unreadable
    /// credentials file, zero duration) or when no server accepts the first connection
    /// within the connect timeout.
    pub async fn build(self) -> Result<Arc<NatsBroker>, NatsBrokerError> {
        let settings = self.settings;
        for (value, name) in [
            (settings.connect_timeout, "connect_timeout"),
            (settings.command_timeout, "command_timeout"),
        ] {
            if value.is_zero() {
                return Err(NatsBrokerError::ZeroDuration(name));
            }
        }
        if let Some(reason) = subject::prefix_problem(&settings.prefix) {
            return Err(NatsBrokerError::InvalidPrefix {
                prefix: settings.prefix.clone(),
                reason,
            });
        }
        let urls = if self.urls.is_empty() {
            vec![DEFAULT_NATS_URL.to_owned()]
        } else {
            self.urls
        };
        let mut addrs = Vec::with_capacity(urls.len());
        for url in &urls {
            let addr: ServerAddr =
                url.parse()
                    .map_err(|e: std::io::Error| NatsBrokerError::InvalidUrl {
                        url: mask_url(url),
                        reason: e.to_string(),
                    })?;
            addrs.push(addr);
        }
        let configured = urls
            .iter()
            .map(|u| mask_url(u))
            .collect::<Vec<_>>()
            .join(",");

        let status = Arc::new(Status {
            settings_server_name: settings.server_name.clone(),
            configured: configured.clone(),
            healthy: AtomicBool::new(false),
            slow_consumers: AtomicU64::new(0),
            slow_log: LogLimiter::new(),
            link: Mutex::new(Link {
                phase: Phase::Starting,
                first_connected_seen: false,
            }),
            reconnects: watch::channel(0).0,
            client: Mutex::new(None),
            server: Mutex::new(String::new()),
            callbacks: self.callbacks,
        });
        let name = if settings.server_name.is_empty() {
            "crosswire".to_owned()
        } else {
            settings.server_name.clone()
        };
        let events = status.clone();
        let attempts = status.clone();
        let mut options = ConnectOptions::new()
            .name(name)
            .connection_timeout(settings.connect_timeout)
            .max_reconnects(None)
            .require_tls(settings.require_tls)
            .event_callback(move |event| {
                events.on_event(event);
                std::future::ready(())
            })
            .reconnect_delay_callback(move |attempt| {
                let delay = reconnect_delay(attempt);
                attempts.on_reconnect_attempt(attempt, delay);
                delay
            });
        if let Some(roots) = &settings.root_certificates {
            options = options.add_root_certificates(roots.clone());
        }
        options = match &settings.auth {
            Auth::None => options,
            Auth::Token(token) => options.token(token.clone()),
            Auth::UserPassword(user, password) => {
                options.user_and_password(user.clone(), password.clone())
            }
            Auth::CredentialsFile(path) => {
                options
                    .credentials_file(path)
                    .await
                    .map_err(|e| NatsBrokerError::Credentials {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?
            }
        };
        let connect_error = |reason: String| NatsBrokerError::Connect {
            servers: configured.clone(),
            reason,
        };
        let client =
            match tokio::time::timeout(settings.connect_timeout, options.connect(addrs)).await {
                Ok(Ok(client)) => client,
                Ok(Err(e)) => return Err(connect_error(e.to_string())),
                Err(_) => {
                    return Err(connect_error(format!(
                        "no server answered within {:?}",
                        settings.connect_timeout
                    )))
                }
            };
        *status.client.lock() = Some(client.clone());
        status.started();
        let _ = status.current_server();

        let probe_subject = client.new_inbox();
        let probes = client
            .subscribe(probe_subject.clone())
            .await
            .map_err(|e| NatsBrokerError::Subscribe(e.to_string()))?;
        let (seen, _) = watch::channel(0);
        let probe_task = tokio::spawn(read_probes(probes, seen.clone()));
        let (sender, inbound) = inbound_channel();
        let shared = Arc::new(Shared {
            client,
            settings,
            inbound: sender,
            probe_subject,
            probe_next: AtomicU64::new(0),
            probe_seen: seen,
        });
        let confirm_task = tokio::spawn(confirm_reconnects(
            shared.clone(),
            status.clone(),
            status.reconnects.subscribe(),
        ));
        let broker = Arc::new(NatsBroker {
            shared,
            status,
            subscriptions: tokio::sync::Mutex::new(HashMap::new()),
            inbound: Mutex::new(Some(inbound)),
            probe_task,
            confirm_task,
        });
        Ok(broker)
    }
}

#[cfg(test)]
mod tests {
    use super::reconnect_delay;
    use std::time::Duration;

    #[test]
    fn reconnect_delays_are_the_async_nats_defaults() {
        // The values of async-nats 0.51's own test of its default delay callback.
        for (attempt, ms) in [
            (0, 0),
            (1, 0),
            (2, 2),
            (4, 8),
            (12, 2048),
            (13, 4000),
            (50, 4000),
        ] {
            assert_eq!(
                reconnect_delay(attempt),
                Duration::from_millis(ms),
                "attempt {attempt}"
            );
        }
        assert_eq!(reconnect_delay(usize::MAX), Duration::from_secs(4));
    }
}
