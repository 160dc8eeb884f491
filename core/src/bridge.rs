//! Cross-server events: emitting to all or named nodes and collecting their replies.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
//! use std::time::Duration;
//! use crosswire_core::Node;
//!
//! let node = Node::builder().server_name("a").build().await?;
//! node.on_cross("status", |ev| async move {
//!     let _ = ev.reply(&serde_json::json!({"load": 0.3})).await;
//! });
//! let result = node
//!     .emit_cross("status", &())
//!     .timeout(Duration::from_secs(1))
//!     .collect()
//!     .await?;
//! assert!(result.success);
//! assert_eq!(result.responses["a"]["load"], 0.3);
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::Instrument;

use crate::envelope::Body;
use crate::events::{CrossReplyTo, ReplyId};
use crate::frame::Payload;
use crate::metrics::Metrics;
use crate::node::NodeInner;
use crate::{Error, Node};

/// Default time to wait for cross-server replies.
pub const DEFAULT_CROSS_TIMEOUT: Duration = Duration::from_secs(5);

/// Identifies a pending reply collection, for [`Node::cancel_cross_callback`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackId(pub(crate) u64);

/// One step of a reply collection.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CrossReply {
    /// A node replied.
    Reply {
        /// The replying node's server name.
        server: String,
        /// What it replied.
        data: serde_json::Value,
        /// Replies still expected after this one (0: this was the last).
        remaining: usize,
    },
    /// A node told that it has no handler for the event: it will not reply (it no longer
    /// counts as expected).
    NoHandler {
        /// Its server name.
        server: String,
        /// Replies still expected after this one (0: this was the last).
        remaining: usize,
    },
    /// An expected node left the cluster before it replied: it no longer counts as expected,
    /// and the collection's result names it as missing.
    Left {
        /// Its server name.
        server: String,
        /// Replies still expected after this one (0: this was the last).
        remaining: usize,
    },
    /// The timeout passed first; this is the last item.
    TimedOut {
        /// How many expected replies never came.
        unresponded: usize,
    },
    /// The node shut down ([`Node::shutdown`]) before every reply came; this is the last item.
    ShutDown {
        /// How many expected replies never came.
        unresponded: usize,
    },
}

/// All replies of a cross-server emit, collected.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossResult {
    /// Every node expected to reply did, in time (nodes that have no handler for the event
    /// are not expected; nodes that left are [`missing`](Self::missing)).
    pub success: bool,
    /// Replies by server name.
    pub responses: HashMap<String, serde_json::Value>,
    /// Expected replies that did not arrive: timed out, or their node left.
    pub unresponded: usize,
    /// The expected nodes that did not reply, sorted: those that left the cluster before
    /// replying, and those still silent at the timeout. Empty on success, and for a collection
    /// that expected a count ([`CrossEmit::expect`]) rather than nodes.
    pub missing: Vec<String>,
}

/// Whom a collection waits for.
#[derive(Debug)]
pub(crate) enum Expected {
    /// This many replies, from anyone (an explicit [`CrossEmit::expect`]).
    Count(usize),
    /// A reply (or a "no handler") from each of these nodes.
    Nodes(HashSet<String>),
}

impl Expected {
    fn remaining(&self) -> usize {
        match self {
            Expected::Count(n) => *n,
            Expected::Nodes(nodes) => nodes.len(),
        }
    }

    /// Takes `server` off the expectation; returns whether it was on it.
    fn take(&mut self, server: &str, replied: bool) -> bool {
        match self {
            Expected::Count(n) if replied => {
                *n = n.saturating_sub(1);
                true
            }
            Expected::Count(_) => false,
            Expected::Nodes(nodes) => nodes.remove(server),
        }
    }
}

struct Pending {
    tx: mpsc::UnboundedSender<CrossReply>,
    expected: Expected,
    /// Expected nodes that left before replying or were silent at the end; shared with the
    /// [`ReplyStream`].
    missing: Arc<Mutex<Vec<String>>>,
    timer: Option<AbortHandle>,
}

/// Reply collections waiting for replies. Every entry leaves on its last reply, its timeout,
/// its cancellation, or when its [`ReplyStream`] is dropped.
#[derive(Default)]
pub(crate) struct PendingReplies {
    next: AtomicU64,
    map: Mutex<HashMap<u64, Pending>>,
}

impl PendingReplies {
    /// Registers a reply collection; `node` counts it, and its timeout if it comes to that.
    pub(crate) fn register(
        self: &Arc<Self>,
        expected: Expected,
        timeout: Duration,
        node: Weak<NodeInner>,
    ) -> ReplyStream {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let missing: Arc<Mutex<Vec<String>>> = Arc::default();
        if let Some(node) = node.upgrade() {
            Metrics::add(&node.metrics.cross_requests);
        }
        let mut map = self.map.lock();
        let this = Arc::downgrade(self);
        let timer = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(this) = this.upgrade() {
                if this.expire(id) {
                    if let Some(node) = node.upgrade() {
                        Metrics::add(&node.metrics.cross_request_timeouts);
                    }
                }
            }
        });
        map.insert(
            id,
            Pending {
                tx,
                expected,
                missing: missing.clone(),
                timer: Some(timer.abort_handle()),
            },
        );
        ReplyStream {
            id: CallbackId(id),
            rx,
            missing,
            pending: self.clone(),
            span: tracing::Span::none(),
        }
    }

    /// Delivers one reply (`None`: the node has no handler); returns `false` when no
    /// collection waits for it.
    pub(crate) fn deliver(&self, id: u64, server: &str, payload: Option<&Payload>) -> bool {
        let mut map = self.map.lock();
        let Some(pending) = map.get_mut(&id) else {
            return false;
        };
        let expected = pending.expected.take(server, payload.is_some());
        let remaining = pending.expected.remaining();
        let server = server.to_owned();
        let item = match payload {
            Some(payload) => CrossReply::Reply {
                server,
                data: payload.value(),
                remaining,
            },
            None if expected => CrossReply::NoHandler { server, remaining },
            None => return true,
        };
        let _ = pending.tx.send(item);
        if remaining == 0 {
            if let Some(done) = map.remove(&id) {
                done.stop_timer();
            }
        }
        true
    }

    /// Stops waiting for `server` in every collection that expected it by name.
    pub(crate) fn node_left(&self, server: &str) {
        let mut map = self.map.lock();
        map.retain(|_, pending| {
            if !matches!(&pending.expected, Expected::Nodes(_))
                || !pending.expected.take(server, false)
            {
                return true;
            }
            pending.missing.lock().push(server.to_owned());
            let remaining = pending.expected.remaining();
            let _ = pending.tx.send(CrossReply::Left {
                server: server.to_owned(),
                remaining,
            });
            if remaining == 0 {
                if let Some(timer) = pending.timer.take() {
                    timer.abort();
                }
            }
            remaining > 0
        });
    }

    /// Ends collection `id` at its timeout; returns whether it was still waiting.
    fn expire(&self, id: u64) -> bool {
        let Some(pending) = self.map.lock().remove(&id) else {
            return false;
        };
        pending.record_silent();
        let _ = pending.tx.send(CrossReply::TimedOut {
            unresponded: pending.expected.remaining(),
        });
        true
    }

    /// Ends every collection with [`CrossReply::ShutDown`]; returns how many there were.
    pub(crate) fn fail_all(&self) -> usize {
        let all: Vec<Pending> = self.map.lock().drain().map(|(_, p)| p).collect();
        let count = all.len();
        for pending in all {
            pending.record_silent();
            let _ = pending.tx.send(CrossReply::ShutDown {
                unresponded: pending.expected.remaining(),
            });
            pending.stop_timer();
        }
        count
    }

    pub(crate) fn cancel(&self, id: u64) -> bool {
        let removed = self.map.lock().remove(&id);
        removed.map(Pending::stop_timer).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.lock().len()
    }
}

impl Pending {
    /// Adds the expected nodes that never replied to the missing ones.
    fn record_silent(&self) {
        if let Expected::Nodes(nodes) = &self.expected {
            self.missing.lock().extend(nodes.iter().cloned());
        }
    }

    fn stop_timer(mut self) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
    }
}

/// The replies of one cross-server emit, one by one. Dropping it cancels the collection.
#[derive(Debug)]
pub struct ReplyStream {
    id: CallbackId,
    rx: mpsc::UnboundedReceiver<CrossReply>,
    missing: Arc<Mutex<Vec<String>>>,
    pending: Arc<PendingReplies>,
    /// The `cross` span of the emit, for gathering the replies in.
    span: tracing::Span,
}

impl ReplyStream {
    /// The id of this collection, for [`Node::cancel_cross_callback`].
    pub fn callback_id(&self) -> CallbackId {
        self.id
    }

    /// The expected nodes that have not replied and no longer will, sorted: those that left
    /// the cluster, and, once the collection timed out or the node shut down, those still
    /// silent. Empty when the collection expects a count rather than nodes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use std::time::Duration;
    /// use crosswire_core::Node;
    ///
    /// let node = Node::builder().server_name("a").build().await?;
    /// node.on_cross("ping", |ev| async move { let _ = ev.reply(&"pong").await; });
    /// let emit = node.emit_cross("ping", &()).to(["a", "b"]); // there is no node "b"
    /// let mut replies = emit.timeout(Duration::from_millis(50)).replies().await?;
    /// while replies.recv().await.is_some() {}
    /// assert_eq!(replies.missing(), ["b"]);
    /// # Ok(()) }
    /// ```
    pub fn missing(&self) -> Vec<String> {
        let mut missing = self.missing.lock().clone();
        missing.sort();
        missing.dedup();
        missing
    }

    /// The next reply; `None` after the last reply, the timeout item, or a cancellation.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use crosswire_core::{CrossReply, Node};
    ///
    /// let node = Node::builder().server_name("a").build().await?; // no handler for "status"
    /// let mut replies = node.emit_cross("status", &()).replies().await?;
    /// let no_handler = CrossReply::NoHandler { server: "a".into(), remaining: 0 };
    /// assert_eq!(replies.recv().await, Some(no_handler));
    /// assert_eq!(replies.recv().await, None);
    /// # Ok(()) }
    /// ```
    pub async fn recv(&mut self) -> Option<CrossReply> {
        self.rx.recv().await
    }

    /// Waits for every reply or the timeout and gathers them. A collection ended by the
    /// node's shutdown is gathered like a timeout (`success: false`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use crosswire_core::Node;
    ///
    /// let node = Node::builder().server_name("a").build().await?;
    /// node.on_cross("ping", |ev| async move { let _ = ev.reply(&"pong").await; });
    /// let replies = node.emit_cross("ping", &()).replies().await?;
    /// let result = replies.collect().await;
    /// assert_eq!(result.responses["a"], "pong");
    /// # Ok(()) }
    /// ```
    pub async fn collect(self) -> CrossResult {
        let span = self.span.clone();
        self.gather().instrument(span).await.0
    }

    /// [`collect`](Self::collect), and whether the node's shutdown ended it.
    async fn gather(mut self) -> (CrossResult, bool) {
        let mut shut_down = false;
        let mut result = CrossResult {
            success: false,
            responses: HashMap::new(),
            unresponded: 0,
            missing: Vec::new(),
        };
        while let Some(item) = self.recv().await {
            match item {
                CrossReply::Reply {
                    server,
                    data,
                    remaining,
                } => {
                    result.responses.insert(server, data);
                    result.success = remaining == 0 && result.unresponded == 0;
                }
                CrossReply::NoHandler { remaining, .. } => {
                    result.success = remaining == 0 && result.unresponded == 0;
                }
                CrossReply::Left { .. } => {
                    result.unresponded += 1;
                    result.success = false;
                }
                CrossReply::TimedOut { unresponded } => {
                    result.unresponded += unresponded;
                }
                CrossReply::ShutDown { unresponded } => {
                    result.unresponded += unresponded;
                    shut_down = true;
                }
            }
        }
        result.missing = self.missing();
        (result, shut_down)
    }
}

impl Drop for ReplyStream {
    fn drop(&mut self) {
        self.pending.cancel(self.id.0);
    }
}

impl std::fmt::Debug for PendingReplies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingReplies")
            .field("len", &self.len())
            .finish()
    }
}

/// A cross-server emit being configured; finish it with [`send`](Self::send),
/// [`replies`](Self::replies), [`collect`](Self::collect) or [`on_reply`](Self::on_reply).
#[derive(Debug)]
#[must_use = "nothing is sent until `send`, `replies`, `collect` or `on_reply` is awaited"]
pub struct CrossEmit<'a> {
    node: &'a Node,
    event: String,
    payload: Result<Payload, Error>,
    targets: Vec<String>,
    except_self: bool,
    expected: Option<usize>,
    timeout: Duration,
    /// One of crosswire's own cluster queries (`cluster`).
    internal: bool,
}

/// Prefix of the cross-server events crosswire sends itself (cluster queries and actions).
pub(crate) const INTERNAL_EVENT_PREFIX: &str = "$cw.";

/// What a node does with its own emit, decided from the targets.
pub(crate) struct Route {
    pub(crate) local: bool,
    pub(crate) remote: bool,
}

impl<'a> CrossEmit<'a> {
    pub(crate) fn new<T: Serialize + ?Sized>(node: &'a Node, event: &str, payload: &T) -> Self {
        CrossEmit {
            node,
            event: event.to_owned(),
            payload: Payload::encode(payload),
            targets: Vec::new(),
            except_self: false,
            expected: None,
            timeout: DEFAULT_CROSS_TIMEOUT,
            internal: false,
        }
    }

    /// A cluster query or action of crosswire's own.
    pub(crate) fn internal<T: Serialize + ?Sized>(
        node: &'a Node,
        event: &str,
        payload: &T,
    ) -> Self {
        CrossEmit {
            internal: true,
            ..CrossEmit::new(node, event, payload)
        }
    }

    /// Sends to these nodes only (by server name). Default: every node.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use crosswire_core::Node;
    ///
    /// let node = Node::builder().server_name("a").build().await?;
    /// node.on_cross("ping", |ev| async move { let _ = ev.reply(&"pong").await; });
    /// let result = node.emit_cross("ping", &()).to(["a"]).collect().await?;
    /// assert_eq!(result.responses["a"], "pong");
    /// # Ok(()) }
    /// ```
    pub fn to<I, S>(mut self, servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.targets = servers.into_iter().map(Into::into).collect();
        self
    }

    /// When sending to every node, skip this one. Ignored with named targets.
    /// Default: `false`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use std::time::Duration;
    /// use crosswire_core::Node;
    ///
    /// let node = Node::builder().server_name("a").build().await?;
    /// node.on_cross("ping", |ev| async move { let _ = ev.reply(&"pong").await; });
    /// let emit = node.emit_cross("ping", &()).except_self(true);
    /// let result = emit.timeout(Duration::from_millis(50)).collect().await?;
    /// assert!(result.responses.is_empty()); // a standalone node: nobody else to answer
    /// # Ok(()) }
    /// ```
    pub fn except_self(mut self, except: bool) -> Self {
        self.except_self = except;
        self
    }

    /// How many replies complete the collection, from whichever nodes. `0` counts as 1, as in
    /// the JavaScript package (which treats any value ≤ 0 as 1): a collection always waits
    /// for at least one reply, and reports it missing on timeout.
    ///
    /// Default: a reply from each node addressed — the named targets, or every live node of
    /// the cluster when sending to all ([`Node::members`] when sent; this node too unless
    /// [`except_self`](Self::except_self)). A node that has no handler for the event says so
    /// and is not waited for; an expected node that leaves the cluster is not waited for
    /// either, and [`CrossResult::missing`] names it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use crosswire_core::Node;
    ///
    /// let node = Node::builder().server_name("a").build().await?;
    /// node.on_cross("ping", |ev| async move { let _ = ev.reply(&"pong").await; });
    /// let result = node.emit_cross("ping", &()).expect(1).collect().await?;
    /// assert!(result.success);
    /// assert_eq!(result.responses.len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn expect(mut self, replies: usize) -> Self {
        self.expected = Some(replies.max(1));
        self
    }

    /// How long to wait for replies. Default: 5 s.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use std::time::Duration;
    /// use crosswire_core::Node;
    ///
    /// let node = Node::builder().server_name("a").build().await?;
    /// node.on_cross("ping", |ev| async move { let _ = ev.reply(&"pong").await; });
    /// let emit = node.emit_cross("ping", &()).to(["a", "b"]); // there is no node "b"
    /// let result = emit.timeout(Duration::from_millis(50)).collect().await?;
    /// assert!(!result.success);
    /// assert_eq!(result.responses["a"], "pong");
    /// assert_eq!(result.missing, ["b"]);
    /// # Ok(()) }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn route(&self) -> Route {
        let me = self.node.server_name();
        if self.targets.is_empty() {
            Route {
                local: !self.except_self,
                remote: true,
            }
        } else {
            Route {
                local: self.targets.iter().any(|t| t == me),
                remote: self.targets.iter().any(|t| t != me),
            }
        }
    }

    fn expected(&self) -> Expected {
        if let Some(count) = self.expected {
            return Expected::Count(count);
        }
        if !self.targets.is_empty() {
            return Expected::Nodes(self.targets.iter().cloned().collect());
        }
        if self.node.inner().writes_js() {
            // No membership on the package's wire: as the package, one reply by default.
            return Expected::Count(1);
        }
        let membership = &self.node.inner().membership;
        let mut nodes: HashSet<String> = membership
            .other_names()
            .iter()
            .map(|name| name.to_string())
            .collect();
        if !self.except_self {
            nodes.insert(self.node.server_name().to_owned());
        }
        Expected::Nodes(nodes)
    }

    async fn dispatch(self, collect: bool) -> Result<Option<ReplyStream>, Error> {
        let span = tracing::info_span!(
            "cross",
            node = %self.node.server_name(),
            event = %self.event,
            callback = tracing::field::Empty,
            targets = %TargetList(&self.targets),
        );
        self.dispatch_in(collect, &span)
            .instrument(span.clone())
            .await
    }

    /// [`dispatch`](Self::dispatch), in the emit's `span`.
    async fn dispatch_in(
        self,
        collect: bool,
        span: &tracing::Span,
    ) -> Result<Option<ReplyStream>, Error> {
        if self.event.is_empty() {
            return Err(Error::invalid("event name", "it is empty"));
        }
        if !self.internal && self.event.starts_with(INTERNAL_EVENT_PREFIX) {
            return Err(Error::invalid(
                "event name",
                "events starting with `$cw.` are crosswire's own",
            ));
        }
        if self.node.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        let route = self.route();
        let expected = self.expected();
        let payload = self.payload?;
        let mut stream = collect.then(|| {
            let node = Arc::downgrade(&self.node.inner);
            self.node.pending().register(expected, self.timeout, node)
        });
        if let Some(stream) = stream.as_mut() {
            span.record("callback", stream.id.0);
            stream.span = span.clone();
        }
        let callback = stream.as_ref().map(|s| s.id.0);
        self.node
            .dispatch_cross(
                &self.event,
                payload,
                &self.targets,
                self.except_self,
                callback,
                route,
            )
            .await?;
        Ok(stream)
    }

    /// Sends without collecting replies.
    ///
    /// # Errors
    /// An empty event name, an unserializable payload, or a failed broker publish.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use crosswire_core::Node;
    ///
    /// let node = Node::builder().build().await?;
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// node.on_cross("reload", move |ev| {
    ///     let _ = tx.send(ev.value());
    ///     async {}
    /// });
    /// node.emit_cross("reload", &"config.toml").send().await?;
    /// assert_eq!(rx.recv().await, Some(serde_json::json!("config.toml")));
    /// # Ok(()) }
    /// ```
    pub async fn send(self) -> Result<(), Error> {
        self.dispatch(false).await.map(|_| ())
    }

    /// Sends and returns the replies as they come.
    ///
    /// # Errors
    /// As [`send`](Self::send); on error nothing stays pending.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use crosswire_core::{CrossReply, Node};
    ///
    /// let node = Node::builder().server_name("a").build().await?;
    /// node.on_cross("ping", |ev| async move { let _ = ev.reply(&"pong").await; });
    /// let mut replies = node.emit_cross("ping", &()).replies().await?;
    /// let pong = CrossReply::Reply { server: "a".into(), data: "pong".into(), remaining: 0 };
    /// assert_eq!(replies.recv().await, Some(pong));
    /// assert_eq!(replies.recv().await, None);
    /// # Ok(()) }
    /// ```
    pub async fn replies(self) -> Result<ReplyStream, Error> {
        self.dispatch(true).await?.ok_or(Error::NoReplyExpected)
    }

    /// Sends and waits for every expected reply or the timeout.
    ///
    /// # Errors
    /// As [`send`](Self::send), and [`Error::ShuttingDown`] when the node shuts down before
    /// the collection ends. A timeout is not an error: it is `success: false`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use crosswire_core::Node;
    ///
    /// let node = Node::builder().server_name("a").build().await?;
    /// node.on_cross("ping", |ev| async move { let _ = ev.reply(&"pong").await; });
    /// let result = node.emit_cross("ping", &()).collect().await?;
    /// assert_eq!(result.responses["a"], "pong");
    /// // A node without a handler for the event says so at once: it is not waited for.
    /// let result = node.emit_cross("nobody-handles-this", &()).collect().await?;
    /// assert!(result.success && result.responses.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn collect(self) -> Result<CrossResult, Error> {
        let stream = self.replies().await?;
        let span = stream.span.clone();
        match stream.gather().instrument(span).await {
            (_, true) => Err(Error::ShuttingDown),
            (result, false) => Ok(result),
        }
    }

    /// Sends and calls `callback` for each reply, then once more with
    /// [`CrossReply::TimedOut`] if the timeout passes first. Returns at once.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use crosswire_core::{CrossReply, Node};
    ///
    /// let node = Node::builder().server_name("a").build().await?;
    /// node.on_cross("ping", |ev| async move { let _ = ev.reply(&"pong").await; });
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// let emit = node.emit_cross("ping", &());
    /// emit.on_reply(move |reply| {
    ///     let _ = tx.send(reply);
    ///     async {}
    /// })
    /// .await?;
    /// assert!(matches!(rx.recv().await, Some(CrossReply::Reply { remaining: 0, .. })));
    /// # Ok(()) }
    /// ```
    pub async fn on_reply<F, Fut>(self, mut callback: F) -> Result<CallbackId, Error>
    where
        F: FnMut(CrossReply) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut stream = self.replies().await?;
        let id = stream.callback_id();
        let span = stream.span.clone();
        let replies = async move {
            while let Some(item) = stream.recv().await {
                callback(item).await;
            }
        };
        tokio::spawn(replies.instrument(span));
        Ok(id)
    }
}

/// The `targets` field of a `cross` span: the named nodes, or `*` for every node.
struct TargetList<'a>(&'a [String]);

impl std::fmt::Display for TargetList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("*");
        }
        for (i, target) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(target)?;
        }
        Ok(())
    }
}

impl Node {
    /// Runs a cross-server emit: published to the other nodes first, then this node's handlers run
    /// (without the broker). A failed publish returns its error before any handler ran.
    pub(crate) async fn dispatch_cross(
        &self,
        event: &str,
        payload: Payload,
        targets: &[String],
        except_self: bool,
        callback: Option<u64>,
        route: Route,
    ) -> Result<(), Error> {
        if route.remote && self.inner().broker.is_some() {
            let body = Body::CrossEvent {
                event,
                targets: targets.iter().map(String::as_str).collect(),
                except_self,
                callback,
                payload: payload.as_bytes(),
            };
            let channel = self.inner().names.bridge.clone();
            self.publish_envelope(&channel, body).await?;
        }
        if route.local {
            let me: Arc<str> = Arc::from(self.server_name());
            self.run_cross_handlers(me, event, payload, callback.map(ReplyId::Node));
        }
        Ok(())
    }

    /// Delivers a cross-server reply (`None`: no handler here): straight into the pending map
    /// when this node asked, otherwise through the bridge channel.
    pub(crate) async fn send_cross_reply(
        &self,
        to: &CrossReplyTo,
        payload: Option<Payload>,
    ) -> Result<(), Error> {
        let callback = match &to.callback {
            ReplyId::Node(callback) => *callback,
            ReplyId::JsPackage(callback_id) => {
                // Asked on the package's wire: answered on it, whatever this node writes.
                let js = &self.inner().js_wire;
                let bytes = js.encode_reply(self.server_name(), callback_id, payload.as_ref())?;
                let channel = self.inner().names.bridge.clone();
                return self.publish_bytes(&channel, bytes.into()).await.map(|_| ());
            }
        };
        if &*to.server == self.server_name() {
            if !self
                .pending()
                .deliver(callback, self.server_name(), payload.as_ref())
            {
                Metrics::add(&self.inner().metrics.late_replies);
            }
            return Ok(());
        }
        let body = Body::CrossReply {
            target: &to.server,
            callback,
            payload: payload.as_ref().map(|p| &p.as_bytes()[..]),
        };
        let channel = self.inner().names.bridge.clone();
        self.publish_envelope(&channel, body).await.map(|_| ())
    }

    /// Starts a cross-server emit of `event` with `payload`; configure targets, expected
    /// replies and timeout on the returned [`CrossEmit`], then send it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use crosswire_core::Node;
    ///
    /// let node = Node::builder().server_name("a").build().await?;
    /// node.on_cross("ping", |ev| async move { let _ = ev.reply(&"pong").await; });
    /// let result = node.emit_cross("ping", &()).collect().await?;
    /// assert!(result.success);
    /// assert_eq!(result.responses["a"], "pong");
    /// # Ok(()) }
    /// ```
    pub fn emit_cross<T: Serialize + ?Sized>(&self, event: &str, payload: &T) -> CrossEmit<'_> {
        CrossEmit::new(self, event, payload)
    }

    /// Stops collecting replies for `id`; later replies are ignored. Returns whether it was
    /// still pending.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use crosswire_core::Node;
    ///
    /// let node = Node::builder().server_name("a").build().await?;
    /// // Node "b" is not there: this collection would wait for its whole timeout.
    /// let mut replies = node.emit_cross("ping", &()).to(["b"]).replies().await?;
    /// assert!(node.cancel_cross_callback(replies.callback_id()));
    /// assert_eq!(replies.recv().await, None); // ended, without a timeout item
    /// # Ok(()) }
    /// ```
    pub fn cancel_cross_callback(&self, id: CallbackId) -> bool {
        self.inner.pending.cancel(id.0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{CrossReply, Node};

    /// A standalone node whose `status` handler replies at once.
    async fn replying_node() -> Node {
        let node = Node::builder().server_name("a").build().await.unwrap();
        node.on_cross("status", |ev| async move {
            let _ = ev.reply(&"up").await;
        });
        node
    }

    #[tokio::test(start_paused = true)]
    async fn expect_zero_means_one_reply() {
        let node = replying_node().await;
        let timeout = Duration::from_secs(60);
        let started = tokio::time::Instant::now();
        let result = node
            .emit_cross("status", &())
            .expect(0)
            .timeout(timeout)
            .collect()
            .await
            .unwrap();
        assert!(result.success, "{result:?}");
        assert_eq!(result.responses["a"], "up");
        assert_eq!(result.unresponded, 0);
        assert!(
            started.elapsed() < timeout,
            "completed on the reply, not on the timeout"
        );
        assert_eq!(node.pending_cross_callbacks(), 0);
    }

    fn expecting(nodes: &[&str]) -> super::Expected {
        super::Expected::Nodes(nodes.iter().map(|n| n.to_string()).collect())
    }

    #[tokio::test(start_paused = true)]
    async fn a_collection_by_node_ends_when_each_replied_declined_or_left() {
        let pending = std::sync::Arc::new(super::PendingReplies::default());
        let stream = pending.register(
            expecting(&["a", "b", "c"]),
            Duration::from_secs(60),
            std::sync::Weak::new(),
        );
        let id = stream.callback_id().0;
        let reply = crate::frame::Payload::encode(&1).unwrap();
        assert!(pending.deliver(id, "a", Some(&reply)));
        assert!(pending.deliver(id, "b", None), "b has no handler");
        pending.node_left("c");
        let result = stream.collect().await;
        assert!(!result.success, "c left without replying");
        assert_eq!(result.missing, ["c"]);
        assert_eq!(result.unresponded, 1);
        assert_eq!(result.responses.len(), 1);
        assert_eq!(pending.len(), 0);
    }

    #[tokio::test]
    async fn crosswire_own_events_cannot_be_emitted_by_the_application() {
        let node = replying_node().await;
        let refused = node.emit_cross("$cw.clients", &()).collect().await;
        assert!(
            matches!(refused, Err(crate::Error::InvalidName { .. })),
            "{refused:?}"
        );
        let answer = node.cluster().client_count().await.unwrap();
        assert_eq!((answer.value, answer.answered.len()), (0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_names_the_silent_nodes() {
        let pending = std::sync::Arc::new(super::PendingReplies::default());
        let stream = pending.register(
            expecting(&["a", "b", "c"]),
            Duration::from_secs(1),
            std::sync::Weak::new(),
        );
        let reply = crate::frame::Payload::encode(&1).unwrap();
        pending.deliver(stream.callback_id().0, "b", Some(&reply));
        let result = stream.collect().await;
        assert_eq!((result.success, result.unresponded), (false, 2));
        assert_eq!(result.missing, ["a", "c"]);
    }

    #[tokio::test(start_paused = true)]
    async fn expect_zero_without_a_reply_misses_one() {
        let node = Node::builder().server_name("a").build().await.unwrap();
        let mut replies = node
            .emit_cross("nobody", &())
            .expect(0)
            .timeout(Duration::from_secs(1))
            .replies()
            .await
            .unwrap();
        assert_eq!(
            replies.recv().await,
            Some(CrossReply::TimedOut { unresponded: 1 })
        );
        assert_eq!(replies.recv().await, None);
    }
}
