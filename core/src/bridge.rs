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

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::frame::Payload;
use crate::{Error, Node};

/// Default time to wait for cross-server replies.
pub const DEFAULT_CROSS_TIMEOUT: Duration = Duration::from_secs(5);

/// Identifies a pending reply collection, for [`Node::cancel_cross_callback`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackId(pub(crate) u64);

/// One step of a reply collection.
#[derive(Debug, Clone, PartialEq)]
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
    /// Every expected reply arrived in time.
    pub success: bool,
    /// Replies by server name.
    pub responses: HashMap<String, serde_json::Value>,
    /// Expected replies that did not arrive (0 on success).
    pub unresponded: usize,
}

struct Pending {
    tx: mpsc::UnboundedSender<CrossReply>,
    remaining: usize,
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
    fn register(self: &Arc<Self>, expected: usize, timeout: Duration) -> ReplyStream {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let mut map = self.map.lock();
        let this = Arc::downgrade(self);
        let timer = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(this) = this.upgrade() {
                this.expire(id);
            }
        });
        map.insert(
            id,
            Pending {
                tx,
                remaining: expected,
                timer: Some(timer.abort_handle()),
            },
        );
        ReplyStream {
            id: CallbackId(id),
            rx,
            pending: self.clone(),
        }
    }

    /// Delivers one reply; returns `false` when no collection waits for it.
    pub(crate) fn deliver(&self, id: u64, server: &str, payload: &Payload) -> bool {
        let mut map = self.map.lock();
        let Some(pending) = map.get_mut(&id) else {
            return false;
        };
        pending.remaining = pending.remaining.saturating_sub(1);
        let remaining = pending.remaining;
        let _ = pending.tx.send(CrossReply::Reply {
            server: server.to_owned(),
            data: payload.value(),
            remaining,
        });
        if remaining == 0 {
            if let Some(done) = map.remove(&id) {
                done.stop_timer();
            }
        }
        true
    }

    fn expire(&self, id: u64) {
        if let Some(pending) = self.map.lock().remove(&id) {
            let _ = pending.tx.send(CrossReply::TimedOut {
                unresponded: pending.remaining,
            });
        }
    }

    /// Ends every collection with [`CrossReply::ShutDown`]; returns how many there were.
    pub(crate) fn fail_all(&self) -> usize {
        let all: Vec<Pending> = self.map.lock().drain().map(|(_, p)| p).collect();
        let count = all.len();
        for pending in all {
            let _ = pending.tx.send(CrossReply::ShutDown {
                unresponded: pending.remaining,
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
    pending: Arc<PendingReplies>,
}

impl ReplyStream {
    /// The id of this collection, for [`Node::cancel_cross_callback`].
    pub fn callback_id(&self) -> CallbackId {
        self.id
    }

    /// The next reply; `None` after the last reply, the timeout item, or a cancellation.
    pub async fn recv(&mut self) -> Option<CrossReply> {
        self.rx.recv().await
    }

    /// Waits for every reply or the timeout and gathers them. A collection ended by the
    /// node's shutdown is gathered like a timeout (`success: false`).
    pub async fn collect(self) -> CrossResult {
        self.gather().await.0
    }

    /// [`collect`](Self::collect), and whether the node's shutdown ended it.
    async fn gather(mut self) -> (CrossResult, bool) {
        let mut shut_down = false;
        let mut result = CrossResult {
            success: false,
            responses: HashMap::new(),
            unresponded: 0,
        };
        while let Some(item) = self.recv().await {
            match item {
                CrossReply::Reply {
                    server,
                    data,
                    remaining,
                } => {
                    result.responses.insert(server, data);
                    if remaining == 0 {
                        result.success = true;
                    }
                }
                CrossReply::TimedOut { unresponded } => result.unresponded = unresponded,
                CrossReply::ShutDown { unresponded } => {
                    result.unresponded = unresponded;
                    shut_down = true;
                }
            }
        }
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
}

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
        }
    }

    /// Sends to these nodes only (by server name). Default: every node.
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
    pub fn except_self(mut self, except: bool) -> Self {
        self.except_self = except;
        self
    }

    /// How many replies complete the collection. `0` counts as 1, as in the JavaScript
    /// package (which treats any value ≤ 0 as 1): a collection always waits for at least one
    /// reply, and reports it missing on timeout. Default: the number of named targets, or 1
    /// when sending to every node (the cluster size is not known in advance).
    pub fn expect(mut self, replies: usize) -> Self {
        self.expected = Some(replies.max(1));
        self
    }

    /// How long to wait for replies. Default: 5 s.
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

    fn expected(&self) -> usize {
        self.expected.unwrap_or(if self.targets.is_empty() {
            1
        } else {
            self.targets.len()
        })
    }

    async fn dispatch(self, collect: bool) -> Result<Option<ReplyStream>, Error> {
        if self.event.is_empty() {
            return Err(Error::invalid("event name", "it is empty"));
        }
        if self.node.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        let route = self.route();
        let expected = self.expected();
        let payload = self.payload?;
        let stream = collect.then(|| self.node.pending().register(expected, self.timeout));
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
    pub async fn send(self) -> Result<(), Error> {
        self.dispatch(false).await.map(|_| ())
    }

    /// Sends and returns the replies as they come.
    ///
    /// # Errors
    /// As [`send`](Self::send); on error nothing stays pending.
    pub async fn replies(self) -> Result<ReplyStream, Error> {
        self.dispatch(true).await?.ok_or(Error::NoReplyExpected)
    }

    /// Sends and waits for every expected reply or the timeout.
    ///
    /// # Errors
    /// As [`send`](Self::send), and [`Error::ShuttingDown`] when the node shuts down before
    /// the collection ends. A timeout is not an error: it is `success: false`.
    pub async fn collect(self) -> Result<CrossResult, Error> {
        match self.replies().await?.gather().await {
            (_, true) => Err(Error::ShuttingDown),
            (result, false) => Ok(result),
        }
    }

    /// Sends and calls `callback` for each reply, then once more with
    /// [`CrossReply::TimedOut`] if the timeout passes first. Returns at once.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub async fn on_reply<F, Fut>(self, mut callback: F) -> Result<CallbackId, Error>
    where
        F: FnMut(CrossReply) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut stream = self.replies().await?;
        let id = stream.callback_id();
        tokio::spawn(async move {
            while let Some(item) = stream.recv().await {
                callback(item).await;
            }
        });
        Ok(id)
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
