//! One WebSocket connection: one task that reads, writes and closes.
//!
//! A message from a client goes [`reader`] → `Connection::text` (crosswire-core); a push to it goes
//! `Node` → [`outbox`] (queued by any task) → [`writer`] (written by this connection's task).
//! [`flow`] decides when reading pauses (backpressure, handlers in flight, rate limit) and when
//! a connection that makes no progress is dropped; [`drain`] discards what a peer still sends
//! after this side closed, so that the peer reads the close frame.
//!
//! The task holds no read or write buffer while the connection is idle: reads land on the
//! stack of the poll that makes them, writes go out as vectored writes of the queued frames'
//! shared bytes. Its connection handlers run in a task of their own: if the connection ends
//! while they still run, they finish anyway and the disconnect is reported after them, so the
//! node never keeps a dead connection.

mod drain;
mod flow;
mod outbox;
pub(crate) mod reader;
mod writer;

use std::future::{poll_fn, Future};
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use crosswire_core::close_codes;
use crosswire_core::{Connection as Registered, Node, RequestInfo, Socket, TransportCount};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::OverRate;
pub(crate) use flow::FlowSettings;
use flow::{Bucket, RateVerdict, Timer};
use outbox::{Killed, Outbox, Park, ABNORMAL};
use reader::{FrameReader, Message, ReadEnd};
use writer::{FrameWriter, Written};

/// Starts serving the upgraded connection `io` for `node` in a task of its own.
/// `early_bytes` are what the client sent after its upgrade request and was read with it.
///
/// The task's future is only the connection's state: everything else is moved out before it
/// is spawned, so an idle connection costs as little as possible. Watch its size: tokio aligns
/// a task's allocation to 128 bytes (on x86-64 and aarch64), so 8 bytes more in the future can cost
/// 128 per connection (`crosswire-bench connect` shows it: 1,889 B per connection with a
/// 408-byte future, 2,017 B with 432).
pub(crate) fn spawn<IO>(
    node: Node,
    request: RequestInfo,
    bind_as: Option<String>,
    io: IO,
    early_bytes: &[u8],
    settings: &Arc<FlowSettings>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let outbox = Arc::new(Outbox::new(
        settings.outbound_frames,
        settings.outbound_bytes,
    ));
    let transport: Arc<dyn crosswire_core::Transport> = outbox.clone();
    let registration = tokio::spawn({
        let outbox = outbox.clone();
        async move {
            let registered = match bind_as {
                Some(id) => node.connect_bound(request, transport, &id).await,
                None => node.connect(request, transport).await,
            };
            DisconnectGuard {
                registered: Some(registered),
                outbox,
            }
        }
    });
    let mut connection = Connection {
        io,
        read_armed: false,
        outbox,
        registration: Some(registration),
        guard: None,
        reader: FrameReader::new(settings.max_message, early_bytes),
        writer: FrameWriter::default(),
        bucket: settings.rate.as_ref().map(Bucket::full),
        settings: settings.clone(),
        reading: Reading::Open,
        paused: false,
        rate_logged: false,
        last_progress: Instant::now(),
        stall: Timer::default(),
        wait: Timer::default(),
        closing: None,
        close_timer: Timer::default(),
    };
    tokio::spawn(async move {
        // The connection's span (see `Socket::span`) is entered for every poll once the
        // registration returned the socket (the registration runs in it already). A handle of
        // the socket is kept for that, a pointer where the span would take five, and only when
        // the span is enabled: a poll then does not touch the socket at all.
        let mut traced: Option<Socket> = None;
        poll_fn(|cx| {
            // Reading waits for the connection handlers (the registration); writing does not.
            if let Some(registration) = connection.registration.as_mut() {
                match Pin::new(registration).poll(cx) {
                    Poll::Ready(Ok(guard)) => {
                        let socket = guard.socket();
                        traced = (!socket.span().is_disabled()).then(|| socket.clone());
                        connection.registration = None;
                        connection.guard = Some(guard);
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(()), // the runtime is shutting down
                    Poll::Pending => {}
                }
            }
            let _entered = traced.as_ref().map(|socket| socket.span().enter());
            connection.poll_run(cx)
        })
        .await;
        // Report the disconnect before the (possibly slow) shutdown.
        drop(connection.guard.take());
        let close_timeout = connection.settings.close_timeout;
        // Boxed: held inline, the timeout's timer would make every idle connection's task
        // larger by its size, for a step that comes once, at the end.
        let _ = Box::pin(tokio::time::timeout(
            close_timeout,
            connection.io.shutdown(),
        ))
        .await;
    });
}

/// Most rounds of writing and reading in one poll of a connection's task, before it yields
/// (see `Connection::poll_run`). Answering a message takes two.
const ROUNDS_PER_POLL: usize = 4;

/// Where reading is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Frames are read and handled.
    Open,
    /// This side closed (or the peer broke the protocol): what the peer still sends is
    /// discarded until its close frame.
    Draining,
    /// The peer's close frame arrived, or the stream ended.
    Over,
}

/// The state of one connection's task.
struct Connection<IO> {
    io: IO,
    /// The last read found nothing, and the outbox (the waker reads are polled with) waits
    /// for more: until it (or a close) wakes the task, a wake-up is for output only, and input
    /// is not polled.
    read_armed: bool,
    outbox: Arc<Outbox>,
    /// The connection handlers, until they have run.
    registration: Option<JoinHandle<DisconnectGuard>>,
    /// The registered socket; dropping it reports the disconnect.
    guard: Option<DisconnectGuard>,
    reader: FrameReader,
    writer: FrameWriter,
    settings: Arc<FlowSettings>,
    /// The message rate limit's tokens, when there is a limit.
    bucket: Option<Bucket>,
    reading: Reading,
    /// Reading paused until the pending output drains to the low-water mark.
    paused: bool,
    /// Whether the rate limit was logged for this connection already.
    rate_logged: bool,
    /// When the writer last made progress (or started on a batch).
    last_progress: Instant,
    /// Wakes the task when the writer may have stalled.
    stall: Timer,
    /// Wakes the task when the rate limit lets the next message through.
    wait: Timer,
    /// Our close frame is out: the peer has until then to answer it.
    closing: Option<Instant>,
    /// Wakes the task at `closing`.
    close_timer: Timer,
}

/// What happened to the connection in one step.
enum Step {
    /// Go on.
    Continue,
    /// The connection is over.
    Done,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Connection<IO> {
    /// Drives the connection; `Ready` when it is over. Reading waits for the registration
    /// (`guard` is set once the connection handlers have run); writing does not.
    ///
    /// The task goes round until [`Outbox::park`] finds nothing left to do and registers its
    /// waker. Until then a push does not wake it, so a reply queued by its own reader is written
    /// in the same poll: a task that woke itself would be queued again and tokio would wake an
    /// idle worker to steal it (a futex call and a context switch per heartbeat answered).
    ///
    /// Another round follows only what came in from other tasks during this one (pushes, input
    /// seen by the I/O driver); after [`ROUNDS_PER_POLL`] rounds the task yields instead, so
    /// that a connection kept that busy lets the other tasks of its thread run. (A read that
    /// finds tokio's cooperative budget spent is `Pending`, and its wake-up comes after the
    /// poll: it does not start another round.)
    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..ROUNDS_PER_POLL {
            // Writing first: what it frees may let reading go on.
            if let Step::Done = self.poll_write(cx) {
                return Poll::Ready(());
            }
            self.poll_input(cx);
            if let Some(deadline) = self.closing {
                // Our close frame is out: wait for the peer's, or give up.
                if self.reading == Reading::Over || self.close_timer.poll_deadline(deadline, cx) {
                    return Poll::Ready(());
                }
            }
            match self.outbox.park(cx, self.writer.is_idle()) {
                Park::Wait => return Poll::Pending,
                Park::Output => {}
                Park::Input => self.read_armed = false,
                Park::Killed => return Poll::Ready(()),
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Reads and handles what the peer sent while reading may go on, or discards it while
    /// draining. A task whose last read found nothing does not read again until the outbox
    /// records a wake-up for input (`read_armed`).
    fn poll_input(&mut self, cx: &mut Context<'_>) {
        while !self.read_armed && self.reading == Reading::Open && self.guard.is_some() {
            if !self.outbox.is_open() {
                // This side is closing (the application, a policy): the peer's messages are
                // no longer handled, only read until its close frame.
                self.start_draining();
                break;
            }
            // After a pause, look again: `may_read` arms what wakes the task, or reading goes
            // on at once.
            if !self.may_read(cx) || !self.poll_read() {
                break;
            }
        }
        if self.reading == Reading::Draining && self.reader.poll_drain(&mut self.io, cx).is_ready()
        {
            self.reading = Reading::Over;
        }
    }

    /// Takes what is queued if the writer is idle, and writes; drops a connection whose writes
    /// stalled. What is queued after the take is left to [`Outbox::park`].
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Step {
        // Whether a batch started or bytes went out in this call: the clock is read for it
        // only if a write is left waiting (the common batch goes out whole and needs no time).
        let mut progressed = false;
        if self.writer.is_idle() {
            match self.outbox.take(self.writer.spare()) {
                Ok(taken) => {
                    // The one lock of a wake-up also tells whether it was for input.
                    self.read_armed &= !taken.input;
                    if let Some(batch) = taken.batch {
                        self.writer.start(batch);
                        progressed = true;
                    }
                }
                Err(Killed) => return Step::Done,
            }
        }
        if !self.writer.is_idle() {
            let out_before = self.writer.bytes_out();
            let written = self.writer.poll_write(&mut self.io, cx);
            progressed |= self.writer.bytes_out() != out_before;
            match written {
                Poll::Ready(Ok(Written::Frames)) => {}
                Poll::Ready(Ok(Written::Close)) => {
                    if self.reading == Reading::Over {
                        return Step::Done; // our close frame answered the peer's
                    }
                    self.closing = Some(Instant::now() + self.settings.close_timeout);
                }
                Poll::Ready(Err(_)) => {
                    self.outbox.kill(ABNORMAL, "");
                    return Step::Done;
                }
                Poll::Pending => {}
            }
        }
        if progressed && !self.writer.is_idle() {
            self.last_progress = Instant::now();
        }
        if self.writer.is_idle() {
            self.stall.clear();
        } else if self
            .stall
            .poll_deadline(self.last_progress + self.settings.stall_timeout, cx)
        {
            if let Some(guard) = &self.guard {
                guard.node().count(TransportCount::StalledClose);
            }
            tracing::warn!(
                timeout = ?self.settings.stall_timeout,
                "dropped a connection whose writes made no progress (stalled peer)"
            );
            self.outbox.kill(close_codes::POLICY, "stalled");
            return Step::Done;
        }
        Step::Continue
    }

    /// Whether reading may go on now (see [`flow`]); if not, the task is woken when it may.
    fn may_read(&mut self, cx: &mut Context<'_>) -> bool {
        let (_, pending) = output_status(&self.outbox, &self.writer);
        if self.paused {
            if !self.settings.at_or_below_low(pending) {
                return false; // the writer wakes the task as it drains
            }
            self.paused = false;
        } else if self.settings.above_high(pending) {
            self.pause_for_output();
            return false;
        }
        if let Some(guard) = &self.guard {
            if !guard.ready_for_input() {
                // `resume` wakes the task for input; one that comes before the task sleeps is
                // seen by `Outbox::park`, so none is lost.
                return false;
            }
        }
        if let (Some(bucket), Some(limit)) = (self.bucket.as_mut(), self.settings.rate.as_ref()) {
            match bucket.next_token_at(limit) {
                Some(at) if limit.over == OverRate::Throttle => {
                    if !self.wait.poll_deadline(at, cx) {
                        return false;
                    }
                }
                _ => self.wait.clear(),
            }
        }
        true
    }

    fn pause_for_output(&mut self) {
        self.paused = true;
        if let Some(guard) = &self.guard {
            guard.node().count(TransportCount::ReadPause);
        }
    }

    /// This side closed: stop handling the peer's messages, report the disconnect, and read
    /// on only to find the peer's close frame.
    fn start_draining(&mut self) {
        self.reader.stop_and_drain();
        self.reading = Reading::Draining;
        self.guard = None;
    }

    /// Reads and handles what the peer sent, until it has nothing more, a pause, or the end;
    /// returns whether it paused (the caller looks again at whether it may read).
    fn poll_read(&mut self) -> bool {
        let Some(guard) = self.guard.as_ref() else {
            return false;
        };
        let (connection, socket, outbox) = (&**guard, guard.socket(), &self.outbox);
        let (settings, writer) = (&*self.settings, &self.writer);
        let (bucket, rate_logged) = (&mut self.bucket, &mut self.rate_logged);
        let mut paused_for_output = false;
        let mut paused = false;
        let mut handle = |message: Message<'_>| {
            let verdict = match (&message, bucket.as_mut(), settings.rate.as_ref()) {
                (Message::Text(_) | Message::Binary(_), Some(bucket), Some(limit)) => {
                    bucket.take(limit)
                }
                _ => RateVerdict::Pass,
            };
            if verdict != RateVerdict::Pass {
                connection.node().count(TransportCount::RateLimited);
                if !std::mem::replace(rate_logged, true) {
                    tracing::warn!(
                        conn = socket.conn_id(),
                        socket_id = socket.socket_id().as_deref(),
                        action = ?verdict,
                        "a client went over its message rate limit"
                    );
                }
            }
            match verdict {
                RateVerdict::Drop => return ControlFlow::Continue(()),
                RateVerdict::Close => {
                    outbox.close(close_codes::POLICY, "rate limit exceeded");
                    return ControlFlow::Break(());
                }
                RateVerdict::Pass | RateVerdict::PassThenWait => {}
            }
            match message {
                Message::Text(text) => connection.text(text),
                // The JSON protocol in a binary message: parsed like text once its UTF-8 is
                // checked (counted malformed if it is not).
                Message::Binary(bytes) => {
                    connection.node().count(TransportCount::BinaryFrame);
                    connection.binary(bytes);
                }
                Message::Ping(payload) => outbox.push_pong(Bytes::copy_from_slice(payload)),
                Message::Pong => connection.pong(),
                Message::Close(code, reason) => {
                    // Records the peer's close and echoes it (RFC 6455 5.5.1), unless ours
                    // went first.
                    outbox.close(code, reason);
                }
            }
            // Read on only while the connection may take more (see `flow`).
            let (open, pending) = output_status(outbox, writer);
            if !open {
                return ControlFlow::Break(()); // this side is closing
            }
            if settings.above_high(pending) {
                paused_for_output = true; // counted by `pause_for_output`
                return ControlFlow::Break(());
            }
            if verdict == RateVerdict::PassThenWait || !connection.ready_for_input() {
                connection.node().count(TransportCount::ReadPause);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        };
        let mut on_message = |message: Message<'_>| {
            let flow = handle(message);
            paused |= flow.is_break();
            flow
        };
        // Reads wake the task through the outbox, which records the wake-up as one for input.
        let read_waker = Waker::from(self.outbox.clone());
        let mut read_cx = Context::from_waker(&read_waker);
        let polled = self
            .reader
            .poll_read(&mut self.io, &mut read_cx, &mut on_message);
        if paused_for_output {
            self.pause_for_output();
        }
        let Poll::Ready(end) = polled else {
            // Not paused: the socket had nothing more, and wakes `read_waker` when it has.
            self.read_armed = !paused;
            return paused;
        };
        let Some(guard) = self.guard.as_ref() else {
            return false;
        };
        let socket = guard.socket();
        match end {
            ReadEnd::Closed => self.reading = Reading::Over,
            ReadEnd::Gone(error) => {
                if let Some(error) = error {
                    tracing::debug!(conn = socket.conn_id(), %error, "connection read failed");
                }
                self.outbox.kill(ABNORMAL, "");
                self.reading = Reading::Over;
            }
            ReadEnd::Violation(code, reason) => {
                if code == close_codes::TOO_BIG {
                    guard.node().count(TransportCount::OversizedFrame);
                }
                tracing::debug!(
                    conn = socket.conn_id(),
                    code,
                    reason,
                    "closing a connection that broke the protocol"
                );
                guard.error(reason);
                self.outbox.close(code, reason);
                // The reader discards what the peer still sends, until its close frame.
                self.reading = Reading::Draining;
            }
        }
        // Reading is over: report the disconnect now; queued frames still go out.
        self.guard = None;
        false
    }
}

/// Whether the outbox still takes frames, and the text frames and bytes waiting to be written:
/// queued, and in the batch being written.
fn output_status(outbox: &Outbox, writer: &FrameWriter) -> (bool, (usize, usize)) {
    let (open, queued_frames, queued_bytes) = outbox.status();
    let (writing_frames, writing_bytes) = writer.pending();
    (
        open,
        (queued_frames + writing_frames, queued_bytes + writing_bytes),
    )
}

/// The registered connection; finishes it with the close code and reason of the outbox when
/// dropped: when reading ends, when the connection task ends, or, if the connection ended
/// while its handlers ran, when they finish.
struct DisconnectGuard {
    /// `Some` until dropped.
    registered: Option<Registered>,
    outbox: Arc<Outbox>,
}

impl std::ops::Deref for DisconnectGuard {
    type Target = Registered;

    fn deref(&self) -> &Registered {
        // Taken only by `drop`.
        self.registered.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        let (code, reason) = self.outbox.finish();
        let Some(registered) = self.registered.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { registered.finish(code, &reason).await });
        }
    }
}
