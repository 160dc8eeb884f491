//! The [`Connector`] handle and its driver task: connect, run the connection, reconnect on
//! errors with the backoff schedule, stop on manual close.

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crosswire_core::frame::{parse_server_frame, ServerFrame};
use crosswire_core::{Listen, ListenerId, Off, Payload};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::backoff;
use super::events::{CloseInfo, ConnectorEvent, Events, ReconnectInfo};
use super::options::{ConnectorBuilder, ConnectorOptions};
use super::request::{PendingReplies, Request, RequestError};
use super::session::{self, End};
use super::system;
use crosswire_core::close_codes;

/// What the application asks of the driver.
#[derive(Debug)]
pub(crate) enum Command {
    Reconnect { reset: bool },
    ManualClose,
    PingIntervalChanged { immediate: bool },
}

/// Where the connection stands.
#[derive(Debug)]
enum Link {
    /// Not connected, no attempt under way.
    Idle,
    /// Connecting, or waiting for the next attempt.
    Connecting,
    /// Open; frames go to this queue.
    Open(mpsc::Sender<String>),
    /// Stopped for good by a manual close.
    Stopped,
}

/// State shared by the handles and the driver.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) options: ConnectorOptions,
    pub(crate) events: Events,
    pub(crate) pending: PendingReplies,
    ping_interval: Mutex<Duration>,
    link: Mutex<Link>,
    repeat: AtomicU32,
    next_callback_id: AtomicU64,
}

impl Inner {
    pub(crate) fn ping_interval(&self) -> Duration {
        *self.ping_interval.lock()
    }

    pub(crate) fn next_callback_id(&self) -> String {
        self.next_callback_id
            .fetch_add(1, Ordering::Relaxed)
            .to_string()
    }

    /// Queues a text frame on the open connection.
    pub(crate) fn send(&self, frame: Bytes) -> Result<(), RequestError> {
        let Link::Open(queue) = &*self.link.lock() else {
            return Err(RequestError::NotOpen);
        };
        // Frames are encoded by serde_json from `&str`s and JSON values: always UTF-8.
        let text = String::from_utf8(frame.into()).map_err(|_| RequestError::NotOpen)?;
        queue.try_send(text).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => RequestError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => RequestError::NotOpen,
        })
    }

    /// Handles a text frame from the server: a reply, a push, or neither.
    pub(crate) fn on_text(&self, text: String) {
        let heartbeat = self.options.ping_message.as_str();
        match parse_server_frame(&text, heartbeat) {
            Ok(ServerFrame::Heartbeat) => {}
            Ok(ServerFrame::Reply {
                callback_id,
                payload,
            }) => {
                if !self
                    .pending
                    .resolve(&callback_id, Payload::from_raw(payload))
                {
                    tracing::debug!(%callback_id, "a reply came for no waiting request (late, or timed out)");
                }
            }
            Ok(ServerFrame::Push { event, payload }) => {
                self.events.pushes.emit(&event, Payload::from_raw(payload));
            }
            Err(error) => tracing::debug!(%error, "ignored a server frame"),
        }
        self.events.fire(system::Message, Bytes::from(text));
    }
}

/// A WebSocket client speaking crosswire's protocol (and the JavaScript package's): the Rust
/// counterpart of the JavaScript `WebSocketConnector`.
///
/// It keeps one connection: sends the heartbeat and measures its latency, reconnects after
/// errors (fast attempts, then exponential backoff with jitter), and matches replies to
/// requests. A close is reported, not retried: the application decides from its code and
/// calls [`reconnect`](Self::reconnect), as with the JavaScript connector.
///
/// Handles are cheap to clone. Listeners run on the connector's task, in order; a listener
/// that must wait should spawn. Call [`manual_close`](Self::manual_close) to stop it: a
/// connector whose handles are all dropped stops too, unless its own listeners hold a handle.
///
/// ```no_run
/// use crosswire_ws::client::{system, Connector};
/// use serde_json::json;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Connector::builder("ws://127.0.0.1:9000").param("id", 7).build()?;
/// client.on("roomSay", |payload| async move { println!("room says {payload:?}") });
/// client.on_system(system::Pong, |latency| async move { println!("latency {latency:?}") });
/// client.connect();
/// client.opened().await;
///
/// let reply = client.request("say", &json!({"msg": "hi"})).await?;
/// println!("server replied {reply:?}");
/// client.manual_close();
/// client.closed().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Connector {
    pub(crate) inner: Arc<Inner>,
    control: Arc<Control>,
}

/// The handles' controls. Only handles own it: dropping the last handle drops the command
/// sender, which stops the driver.
#[derive(Debug)]
struct Control {
    commands: mpsc::UnboundedSender<Command>,
    /// The driver's end, until [`Connector::connect`] starts it.
    unstarted: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
    status: Arc<Status>,
}

/// What the driver tells the handles.
#[derive(Debug)]
struct Status {
    /// Whether the connection is open.
    open: watch::Sender<bool>,
    /// Set once the driver has stopped.
    stopped: watch::Sender<bool>,
}

impl Connector {
    /// Starts building a connector for `url` (`ws://` or `wss://`).
    pub fn builder(url: impl Into<String>) -> ConnectorBuilder {
        ConnectorBuilder::new(url)
    }

    pub(crate) fn new(options: ConnectorOptions) -> Self {
        let (commands, unstarted) = mpsc::unbounded_channel();
        Connector {
            inner: Arc::new(Inner {
                ping_interval: Mutex::new(options.ping_interval),
                options,
                events: Events::new(),
                pending: PendingReplies::default(),
                link: Mutex::new(Link::Idle),
                repeat: AtomicU32::new(0),
                next_callback_id: AtomicU64::new(1),
            }),
            control: Arc::new(Control {
                commands,
                unstarted: Mutex::new(Some(unstarted)),
                status: Arc::new(Status {
                    open: watch::Sender::new(false),
                    stopped: watch::Sender::new(false),
                }),
            }),
        }
    }

    /// The options it was built with.
    pub fn options(&self) -> &ConnectorOptions {
        &self.inner.options
    }

    /// Starts connecting, on a task of the current Tokio runtime. Register listeners first, so
    /// none misses `open`. Calling it again does nothing.
    pub fn connect(&self) {
        let Some(commands) = self.control.unstarted.lock().take() else {
            return;
        };
        *self.inner.link.lock() = Link::Connecting;
        let inner = self.inner.clone();
        let status = self.control.status.clone();
        tokio::spawn(drive(inner, commands, status));
    }

    /// Whether the connection is open now.
    pub fn is_open(&self) -> bool {
        matches!(*self.inner.link.lock(), Link::Open(_))
    }

    /// Waits until the connection is open (`true`; at once if it is) or the connector has
    /// stopped (`false`).
    pub async fn opened(&self) -> bool {
        let mut open = self.control.status.open.subscribe();
        let mut stopped = self.control.status.stopped.subscribe();
        tokio::select! {
            result = open.wait_for(|open| *open) => result.is_ok(),
            _ = stopped.wait_for(|stopped| *stopped) => self.is_open(),
        }
    }

    /// Waits until the connector has stopped after [`manual_close`](Self::manual_close): its
    /// task has ended, its timers are gone and every pending request has failed.
    pub async fn closed(&self) {
        let mut stopped = self.control.status.stopped.subscribe();
        let _ = stopped.wait_for(|stopped| *stopped).await;
    }

    /// Sends an event without waiting for a reply (`emit(event, data)`).
    ///
    /// # Errors
    /// [`RequestError::NotOpen`] when not connected, [`RequestError::QueueFull`] when the
    /// send queue is full, [`RequestError::Encode`] when `payload` is not JSON.
    pub fn emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        payload: &T,
    ) -> Result<(), RequestError> {
        let frame = crosswire_core::frame::encode_client_event(event, payload, None).map_err(
            |e| match e {
                crosswire_core::Error::Encode(e) => RequestError::Encode(Arc::new(e)),
                other => RequestError::Encode(Arc::new(serde::ser::Error::custom(other))),
            },
        )?;
        self.inner.send(frame)
    }

    /// Prepares a request: an event whose handler on the server replies once. `.await` it for
    /// the reply (`emitWithPromise`), or give it a [`callback`](Request::callback)
    /// (`emit(event, data, callback)`); set a timeout or a pending notice on it first.
    pub fn request<T: Serialize + ?Sized>(&self, event: &str, payload: &T) -> Request {
        Request::new(self.clone(), event, payload)
    }

    /// Requests waiting for their reply.
    pub fn pending_requests(&self) -> usize {
        self.inner.pending.len()
    }

    /// Schedules a reconnection (`reconnect(repeatReset)`), e.g. from a close listener.
    /// `reset` restarts the attempt count, and with it the fast attempts. Does nothing while
    /// the connection is open or an attempt is already scheduled, or after a manual close.
    pub fn reconnect(&self, reset: bool) {
        let _ = self.control.commands.send(Command::Reconnect { reset });
    }

    /// Whether reconnection attempts are under way (`reconnecting()`): an attempt is scheduled
    /// or connecting after a failure.
    pub fn reconnecting(&self) -> bool {
        self.inner.repeat.load(Ordering::Acquire) > 0
            && matches!(*self.inner.link.lock(), Link::Connecting)
    }

    /// Changes the heartbeat interval (`setPingInterval`). With `immediate`, the next
    /// heartbeat is rescheduled from now; otherwise the change applies after the next one.
    pub fn set_ping_interval(&self, interval: Duration, immediate: bool) {
        if interval.is_zero() {
            return;
        }
        *self.inner.ping_interval.lock() = interval;
        let _ = self
            .control
            .commands
            .send(Command::PingIntervalChanged { immediate });
    }

    /// The heartbeat interval (`getPingInterval`).
    pub fn ping_interval(&self) -> Duration {
        self.inner.ping_interval()
    }

    /// Closes the connection with 4001 and stops for good (`manualClose`): no reconnection,
    /// no timers, the task ends. Await [`closed`](Self::closed) to know it has.
    pub fn manual_close(&self) {
        let started = self.control.unstarted.lock().take().is_none();
        if started {
            let _ = self.control.commands.send(Command::ManualClose);
        } else {
            *self.inner.link.lock() = Link::Stopped;
            self.control.status.stopped.send_replace(true);
        }
    }

    /// Listens to pushes of `event` from the server; handlers get the payload.
    pub fn on<F, Fut>(&self, event: &str, handler: F) -> ListenerId
    where
        F: Fn(Payload) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.inner.events.pushes.add(event, Listen::new(), handler)
    }

    /// Listens to the next push of `event` only.
    pub fn once<F, Fut>(&self, event: &str, handler: F) -> ListenerId
    where
        F: Fn(Payload) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.inner
            .events
            .pushes
            .add(event, Listen::new().once(), handler)
    }

    /// Listens to pushes of `event` with a tag or as one-shot.
    pub fn on_with<F, Fut>(&self, event: &str, listen: Listen, handler: F) -> ListenerId
    where
        F: Fn(Payload) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.inner.events.pushes.add(event, listen, handler)
    }

    /// Removes push listeners of `event`: all, by tag or by id. Returns how many.
    pub fn off<'a>(&self, event: &str, which: impl Into<Off<'a>>) -> usize {
        self.inner.events.pushes.remove(event, which.into())
    }

    /// Listens to one of the connector's own events (open, close, pong, …; see [`system`]).
    pub fn on_system<K, F, Fut>(&self, kind: K, handler: F) -> ListenerId
    where
        K: ConnectorEvent,
        F: Fn(K::Args) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_system_with(kind, Listen::new(), handler)
    }

    /// Listens to one of the connector's own events with a tag or as one-shot.
    pub fn on_system_with<K, F, Fut>(&self, _kind: K, listen: Listen, handler: F) -> ListenerId
    where
        K: ConnectorEvent,
        F: Fn(K::Args) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        K::listeners(&self.inner.events).add("", listen, handler)
    }

    /// Removes listeners of one of the connector's own events. Returns how many.
    pub fn off_system<'a, K: ConnectorEvent>(&self, _kind: K, which: impl Into<Off<'a>>) -> usize {
        K::listeners(&self.inner.events).remove("", which.into())
    }
}

/// What the driver does next.
enum Next {
    Connect,
    Retry,
    Idle,
    Stop,
}

/// The connector's task: one loop through connect, run, retry or wait, until stopped.
async fn drive(
    inner: Arc<Inner>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    status: Arc<Status>,
) {
    let mut next = Next::Connect;
    loop {
        next = match next {
            Next::Connect => connect_and_run(&inner, &mut commands, &status).await,
            Next::Retry => retry(&inner, &mut commands).await,
            Next::Idle => idle(&inner, &mut commands).await,
            Next::Stop => break,
        };
    }
    *inner.link.lock() = Link::Stopped;
    inner.pending.fail_all();
    status.stopped.send_replace(true);
}

async fn connect_and_run(
    inner: &Inner,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    status: &Status,
) -> Next {
    *inner.link.lock() = Link::Connecting;
    let attempt =
        tokio::time::timeout(inner.options.connect_timeout, session::open(&inner.options));
    tokio::pin!(attempt);
    let opened = loop {
        tokio::select! {
            result = &mut attempt => break result,
            command = commands.recv() => match command {
                None | Some(Command::ManualClose) => return Next::Stop,
                Some(_) => {}
            },
        }
    };
    let socket = match opened {
        Ok(Ok(socket)) => socket,
        Ok(Err(error)) => return failed(inner, error),
        Err(_) => return failed(inner, "connecting timed out".to_owned()),
    };
    let (queue, outbound) = mpsc::channel(inner.options.send_queue);
    *inner.link.lock() = Link::Open(queue);
    inner.repeat.store(0, Ordering::Release);
    status.open.send_replace(true);
    inner.events.fire(system::Open, ());

    let end = session::run(inner, socket, outbound, commands).await;

    *inner.link.lock() = Link::Connecting;
    status.open.send_replace(false);
    inner.pending.fail_all();
    let close = |code: u16, reason: &str| {
        inner.events.fire(
            system::Close,
            CloseInfo {
                code,
                reason: reason.into(),
            },
        );
    };
    match end {
        End::Closed {
            code,
            reason,
            error: Some(error),
        } => {
            inner.events.fire(system::Error, error.into());
            close(code, &reason);
            Next::Retry
        }
        End::Closed {
            code,
            reason,
            error: None,
        } => {
            close(code, &reason);
            Next::Idle
        }
        End::PongTimeout => {
            inner.events.fire(system::PongTimeout, ());
            close(close_codes::PONG_TIMEOUT, "pong timeout");
            Next::Idle
        }
        End::Manual => {
            close(close_codes::CLIENT_MANUAL, "manual close");
            Next::Stop
        }
    }
}

/// A failed attempt: reported as an error, then retried.
fn failed(inner: &Inner, error: String) -> Next {
    tracing::debug!(url = %inner.options.redacted_url(), %error, "connecting failed");
    inner.events.fire(system::Error, error.into());
    Next::Retry
}

/// Waits for the next attempt of the schedule, or gives up at the repeat limit.
async fn retry(inner: &Inner, commands: &mut mpsc::UnboundedReceiver<Command>) -> Next {
    *inner.link.lock() = Link::Connecting;
    let done = inner.repeat.load(Ordering::Acquire);
    if let Some(limit) = inner.options.repeat_limit {
        if done >= limit {
            inner.events.fire(system::RepeatLimit, limit);
            return Next::Idle;
        }
    }
    let repeat = done + 1;
    inner.repeat.store(repeat, Ordering::Release);
    let timeout = backoff::schedule(&inner.options).delay(repeat);
    inner
        .events
        .fire(system::Reconnect, ReconnectInfo { repeat, timeout });
    let wake = tokio::time::sleep(timeout);
    tokio::pin!(wake);
    loop {
        tokio::select! {
            _ = &mut wake => return Next::Connect,
            command = commands.recv() => match command {
                None | Some(Command::ManualClose) => return Next::Stop,
                Some(_) => {} // already scheduled
            },
        }
    }
}

/// Not connected and not retrying: waits for the application's decision.
async fn idle(inner: &Inner, commands: &mut mpsc::UnboundedReceiver<Command>) -> Next {
    *inner.link.lock() = Link::Idle;
    loop {
        match commands.recv().await {
            None | Some(Command::ManualClose) => return Next::Stop,
            Some(Command::Reconnect { reset }) => {
                if reset {
                    inner.repeat.store(0, Ordering::Release);
                }
                return Next::Retry;
            }
            Some(Command::PingIntervalChanged { .. }) => {}
        }
    }
}
