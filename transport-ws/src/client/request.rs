//! Requests: a frame with a `callbackId`, and the wait for its reply with a timeout and a
//! pending notice.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crosswire_core::Payload;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::session::later;
use super::Connector;

/// Why an emit or a request failed. [`code`](Self::code) gives the JavaScript connector's
/// `errorCode` where it has one.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The connection is not open (`WS_NOT_OPEN`).
    #[error("WebSocket is not open")]
    NotOpen,
    /// No reply within the callback timeout (`CALLBACK_TIMEOUT`).
    #[error("Is callback timeout: {callback_id}")]
    Timeout {
        /// The request's callback id.
        callback_id: String,
    },
    /// The connection closed before the reply arrived (`CONNECTION_CLOSED`).
    #[error("the connection closed before the reply arrived")]
    ConnectionClosed,
    /// The connection's send queue is full (`SEND_QUEUE_FULL`).
    #[error("the send queue is full")]
    QueueFull,
    /// The payload could not be encoded as JSON (`ENCODE_ERROR`).
    #[error("cannot encode the payload: {0}")]
    Encode(Arc<serde_json::Error>),
    /// The reply does not fit the requested type (`DECODE_ERROR`).
    #[error("cannot decode the reply: {0}")]
    Decode(Arc<serde_json::Error>),
}

impl RequestError {
    /// The error code: `WS_NOT_OPEN` and `CALLBACK_TIMEOUT` as in the JavaScript connector,
    /// `CONNECTION_CLOSED`, `SEND_QUEUE_FULL`, `ENCODE_ERROR` and `DECODE_ERROR` for the rest.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::NotOpen => "WS_NOT_OPEN",
            RequestError::Timeout { .. } => "CALLBACK_TIMEOUT",
            RequestError::ConnectionClosed => "CONNECTION_CLOSED",
            RequestError::QueueFull => "SEND_QUEUE_FULL",
            RequestError::Encode(_) => "ENCODE_ERROR",
            RequestError::Decode(_) => "DECODE_ERROR",
        }
    }
}

type ReplySender = oneshot::Sender<Result<Payload, RequestError>>;

/// Requests waiting for their reply, by callback id.
#[derive(Debug, Default)]
pub(crate) struct PendingReplies {
    waiting: Mutex<HashMap<String, ReplySender>>,
}

impl PendingReplies {
    fn insert(&self, callback_id: &str) -> oneshot::Receiver<Result<Payload, RequestError>> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(callback_id.to_owned(), tx);
        rx
    }

    fn remove(&self, callback_id: &str) {
        self.waiting.lock().remove(callback_id);
    }

    /// Hands a reply to its request; returns false when none waits for it (late or unknown).
    pub(crate) fn resolve(&self, callback_id: &str, payload: Payload) -> bool {
        match self.waiting.lock().remove(callback_id) {
            Some(tx) => tx.send(Ok(payload)).is_ok(),
            None => false,
        }
    }

    /// Fails every waiting request: the connection they were sent on is gone.
    pub(crate) fn fail_all(&self) {
        let waiting = std::mem::take(&mut *self.waiting.lock());
        for tx in waiting.into_values() {
            let _ = tx.send(Err(RequestError::ConnectionClosed));
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.waiting.lock().len()
    }
}

/// Removes a request from [`PendingReplies`] however its wait ends (reply, timeout, drop).
struct Registration {
    connector: Connector,
    callback_id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connector.inner.pending.remove(&self.callback_id);
    }
}

type PendingNotice = Box<dyn FnOnce() + Send + 'static>;

/// A request being prepared: set options, then `.await` it or hand it a
/// [`callback`](Self::callback). Created by [`Connector::request`].
///
/// The frame is sent when the request is awaited (or given its callback), not before.
#[must_use = "a request is sent when awaited or given a callback"]
pub struct Request {
    connector: Connector,
    event: String,
    payload: Result<Box<serde_json::value::RawValue>, RequestError>,
    timeout: Duration,
    pending_timeout: Duration,
    on_pending: Option<PendingNotice>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("event", &self.event)
            .field("timeout", &self.timeout)
            .field("pending_timeout", &self.pending_timeout)
            .field("on_pending", &self.on_pending.is_some())
            .finish_non_exhaustive()
    }
}

impl Request {
    pub(crate) fn new<T: serde::Serialize + ?Sized>(
        connector: Connector,
        event: &str,
        payload: &T,
    ) -> Self {
        let options = &connector.inner.options;
        Request {
            timeout: options.callback_timeout,
            pending_timeout: options.pending_timeout,
            payload: serde_json::value::to_raw_value(payload)
                .map_err(|e| RequestError::Encode(Arc::new(e))),
            event: event.to_owned(),
            on_pending: None,
            connector,
        }
    }

    /// How long to wait for the reply, from when the request is sent (default: the
    /// connector's callback timeout). `Duration::MAX` waits as long as the connection lasts.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Calls `notice` once if the reply takes longer than the pending timeout (`onPending`),
    /// e.g. to show a spinner.
    pub fn on_pending(mut self, notice: impl FnOnce() + Send + 'static) -> Self {
        self.on_pending = Some(Box::new(notice));
        self
    }

    /// How long after sending before the pending notice (default: the connector's pending
    /// timeout).
    pub fn pending_timeout(mut self, timeout: Duration) -> Self {
        self.pending_timeout = timeout;
        self
    }

    /// Waits for the reply and decodes it into `T`.
    ///
    /// # Errors
    /// As for awaiting the request, plus [`RequestError::Decode`].
    pub async fn reply_as<T: DeserializeOwned>(self) -> Result<T, RequestError> {
        self.await?.json().map_err(|e| match e {
            crosswire_core::Error::Decode(e) => RequestError::Decode(Arc::new(e)),
            other => RequestError::Decode(Arc::new(serde::de::Error::custom(other))),
        })
    }

    /// Sends the request now and calls `callback` with the reply or the error, like the
    /// JavaScript connector's `emit(event, data, callback)`. A request that cannot be sent
    /// calls `callback` at once with the error.
    pub fn callback(self, callback: impl FnOnce(Result<Payload, RequestError>) + Send + 'static) {
        match self.send() {
            Err(error) => callback(Err(error)),
            Ok(wait) => {
                tokio::spawn(async move { callback(wait.await) });
            }
        }
    }

    /// Registers the request and queues its frame; returns the wait for its reply.
    fn send(self) -> Result<impl Future<Output = Result<Payload, RequestError>>, RequestError> {
        let Request {
            connector,
            event,
            payload,
            timeout,
            pending_timeout,
            on_pending,
        } = self;
        let payload = payload?;
        let callback_id = connector.inner.next_callback_id();
        let frame =
            crosswire_core::frame::encode_client_event(&event, &payload, Some(&callback_id))
                .map_err(|e| match e {
                    crosswire_core::Error::Encode(e) => RequestError::Encode(Arc::new(e)),
                    other => RequestError::Encode(Arc::new(serde::ser::Error::custom(other))),
                })?;
        let reply = connector.inner.pending.insert(&callback_id);
        let registration = Registration {
            connector,
            callback_id,
        };
        registration.connector.inner.send(frame)?;
        // The timers run from now, when the frame is queued (as the JavaScript connector's
        // timer starts in `emit`), not from when the returned future is first polled.
        let sent = tokio::time::Instant::now();
        let pending = on_pending
            .filter(|_| pending_timeout < timeout)
            .map(|notice| (later(sent, pending_timeout), notice));
        Ok(wait(registration, reply, later(sent, timeout), pending))
    }
}

async fn wait(
    registration: Registration,
    mut reply: oneshot::Receiver<Result<Payload, RequestError>>,
    deadline: Instant,
    pending: Option<(Instant, PendingNotice)>,
) -> Result<Payload, RequestError> {
    if let Some((pending_at, notice)) = pending {
        match tokio::time::timeout_at(pending_at, &mut reply).await {
            Ok(result) => return result.unwrap_or(Err(RequestError::ConnectionClosed)),
            Err(_) => notice(),
        }
    }
    match tokio::time::timeout_at(deadline, reply).await {
        Ok(result) => result.unwrap_or(Err(RequestError::ConnectionClosed)),
        Err(_) => Err(RequestError::Timeout {
            callback_id: registration.callback_id.clone(),
        }),
    }
}

impl IntoFuture for Request {
    type Output = Result<Payload, RequestError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    /// Sends the request and waits for its reply.
    ///
    /// Fails with [`RequestError::NotOpen`] when the connection is not open,
    /// [`RequestError::Timeout`] without a reply in time, and
    /// [`RequestError::ConnectionClosed`] when the connection drops first.
    fn into_future(self) -> Self::IntoFuture {
        match self.send() {
            Ok(wait) => Box::pin(wait),
            Err(error) => Box::pin(std::future::ready(Err(error))),
        }
    }
}
