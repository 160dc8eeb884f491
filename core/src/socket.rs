//! [`Socket`]: one client connection on this node, as the application holds it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::task::AbortHandle;

use crate::close_codes;
use crate::frame::encode_push;
use crate::transport::{RequestInfo, SendError, Transport};
use crate::Error;

/// A client connection on this node. Cheap to clone; every clone is the same connection.
///
/// Most applications address clients by socket id through the [`Node`](crate::Node)
/// (`node.to(id)`, rooms); a `Socket` is what handlers receive, to bind, reply or close.
#[derive(Clone)]
pub struct Socket {
    inner: Arc<SocketInner>,
}

struct SocketInner {
    conn_id: u64,
    request: RequestInfo,
    transport: Arc<dyn Transport>,
    socket_id: Mutex<Option<Arc<str>>>,
    alive: AtomicBool,
    /// Client event handlers of this connection still running (see `limits`).
    in_flight: AtomicU32,
    background: Mutex<Option<AbortHandle>>,
    /// Limits already logged for this connection (`ConnectionLimits::*_LOGGED` flags).
    limits_logged: AtomicU8,
    /// Requests of this connection waiting for their reply (see `ClientReply`).
    pending_requests: AtomicUsize,
    /// The directory stamp of its current binding (see `directory`).
    bind_stamp: AtomicU64,
    /// The `conn` span everything done for this connection runs in; `None` when it is
    /// disabled (no subscriber, or its level filtered out), so that an idle connection then
    /// pays one pointer for it.
    span: Option<Box<tracing::Span>>,
}

/// What [`Socket::span`] returns for a disabled span.
static NO_SPAN: tracing::Span = tracing::Span::none();

impl Socket {
    pub(crate) fn new(
        conn_id: u64,
        request: RequestInfo,
        transport: Arc<dyn Transport>,
        span: tracing::Span,
    ) -> Self {
        Socket {
            inner: Arc::new(SocketInner {
                conn_id,
                request,
                transport,
                socket_id: Mutex::new(None),
                alive: AtomicBool::new(true),
                in_flight: AtomicU32::new(0),
                background: Mutex::new(None),
                limits_logged: AtomicU8::new(0),
                pending_requests: AtomicUsize::new(0),
                bind_stamp: AtomicU64::new(0),
                span: (!span.is_disabled()).then(|| Box::new(span)),
            }),
        }
    }

    /// This connection's number, unique on this node.
    pub fn conn_id(&self) -> u64 {
        self.inner.conn_id
    }

    /// The opening request: path and query parameters.
    pub fn request(&self) -> &RequestInfo {
        &self.inner.request
    }

    /// The `conn` span of this connection (fields `node`, `conn`, `peer` and, once bound,
    /// `socket_id`): the node runs this connection's handlers in it, and a transport enters it
    /// while it works for the connection, so that filtering logs by socket id shows everything
    /// that happened to one client.
    pub fn span(&self) -> &tracing::Span {
        self.inner.span.as_deref().unwrap_or(&NO_SPAN)
    }

    /// The application socket id bound to this connection, if any.
    pub fn socket_id(&self) -> Option<Arc<str>> {
        self.inner.socket_id.lock().clone()
    }

    pub(crate) fn set_socket_id(&self, id: Option<Arc<str>>) -> Option<Arc<str>> {
        std::mem::replace(&mut *self.inner.socket_id.lock(), id)
    }

    pub(crate) fn bind_stamp(&self) -> u64 {
        self.inner.bind_stamp.load(Ordering::Acquire)
    }

    pub(crate) fn set_bind_stamp(&self, stamp: u64) {
        self.inner.bind_stamp.store(stamp, Ordering::Release);
    }

    /// Whether frames are still accepted: the connection is neither closing nor closed.
    pub fn is_open(&self) -> bool {
        self.inner.transport.is_open()
    }

    /// Clears the binding only if it is still `id`; returns whether it was.
    pub(crate) fn clear_socket_id_if(&self, id: &str) -> bool {
        let mut bound = self.inner.socket_id.lock();
        if bound.as_deref() == Some(id) {
            *bound = None;
            true
        } else {
            false
        }
    }

    /// Sends a push `{"event": E, "payload": P}` to this connection only.
    ///
    /// # Errors
    /// [`Error::Encode`] for an unserializable payload; [`Error::Closed`] or
    /// [`Error::SlowConsumer`] when the frame could not be queued.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, payload: &T) -> Result<(), Error> {
        self.send_frame(encode_push(event, payload)?)
    }

    /// Queues an already-encoded text frame.
    ///
    /// # Errors
    /// [`Error::Closed`] or [`Error::SlowConsumer`] when the frame could not be queued.
    pub fn send_frame(&self, frame: Bytes) -> Result<(), Error> {
        self.inner.transport.send(frame).map_err(|e| match e {
            SendError::SlowConsumer => Error::SlowConsumer,
            _ => Error::Closed,
        })
    }

    /// Client event handlers of this connection that are still running.
    pub fn handlers_in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire) as usize
    }

    pub(crate) fn in_flight(&self) -> &AtomicU32 {
        &self.inner.in_flight
    }

    pub(crate) fn transport(&self) -> &dyn Transport {
        &*self.inner.transport
    }

    /// Closes the connection with `code` (see [`close_codes`]) and `reason`.
    pub fn close(&self, code: u16, reason: &str) {
        self.inner.transport.close(code, reason);
    }

    /// Marks a pong as received; returns whether the previous ping had been answered.
    pub(crate) fn mark_alive(&self) {
        self.inner.alive.store(true, Ordering::Relaxed);
    }

    /// Clears the alive flag before a ping; returns whether the last ping was answered.
    pub(crate) fn take_alive(&self) -> bool {
        self.inner.alive.swap(false, Ordering::Relaxed)
    }

    /// Enters (`true`) or leaves (`false`) background mode. In background mode the
    /// connection is closed with 4003 once `close_after` has passed.
    pub(crate) fn set_background(
        &self,
        on: bool,
        close_after: Duration,
        on_close: impl FnOnce() + Send + 'static,
    ) {
        let mut timer = self.inner.background.lock();
        match (on, timer.is_some()) {
            (true, false) => {
                let socket = self.clone();
                let task = tokio::spawn(async move {
                    tokio::time::sleep(close_after).await;
                    on_close();
                    socket.close(close_codes::BACKGROUND_TIMEOUT, "background timeout");
                });
                *timer = Some(task.abort_handle());
            }
            (false, true) => {
                if let Some(task) = timer.take() {
                    task.abort();
                }
            }
            _ => {}
        }
    }

    /// Stops background timers; called when the connection ends.
    pub(crate) fn stop_timers(&self) {
        if let Some(task) = self.inner.background.lock().take() {
            task.abort();
        }
    }

    /// Whether two handles are the same connection.
    pub fn same_connection(&self, other: &Socket) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// `true` the first time it is called with flag `which` (one bit) on this connection,
    /// `false` ever after: a limit hit is logged once per connection.
    pub(crate) fn limit_logged_once(&self, which: u8) -> bool {
        self.inner.limits_logged.fetch_or(which, Ordering::Relaxed) & which == 0
    }

    /// Counts one more request waiting for its reply, unless `max` already are; returns
    /// whether it was counted. Each counted request is ended once with
    /// [`end_request`](Self::end_request).
    pub(crate) fn begin_request(&self, max: usize) -> bool {
        self.inner
            .pending_requests
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Ends a request counted by [`begin_request`](Self::begin_request).
    pub(crate) fn end_request(&self) {
        self.inner.pending_requests.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("conn_id", &self.inner.conn_id)
            .field("socket_id", &self.socket_id())
            .field("path", &self.inner.request.path())
            .finish()
    }
}
