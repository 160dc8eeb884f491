//! One WebSocket connection: one task that reads, writes and closes.
//!
//! A message from a client goes [`reader`] → `Node::handle_text`; a push to it goes
//! `Node` → [`outbox`] (queued by any task) → [`writer`] (written by this connection's task).
//!
//! The task holds no read or write buffer while the connection is idle: reads land on the
//! stack of the poll that makes them, writes go out as vectored writes of the queued frames'
//! shared bytes. Its connection handlers run in a task of their own: if the connection ends
//! while they still run, they finish anyway and the disconnect is reported after them, so the
//! node never keeps a dead connection.

mod outbox;
mod reader;
mod writer;

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use crosswire_core::close_codes;
use crosswire_core::{Node, RequestInfo, Socket};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use crate::WsConfig;
use outbox::{Outbox, Taken, WsTransport, ABNORMAL};
use reader::{FrameReader, Message, ReadEnd};
use writer::{FrameWriter, Written};

/// Starts serving the upgraded connection `io` for `node` in a task of its own.
/// `early_bytes` are what the client sent after its upgrade request and was read with it.
///
/// The task's future is only the connection's state: everything else is moved out before it
/// is spawned, so an idle connection costs as little as possible.
pub(crate) fn spawn<IO>(
    node: Node,
    request: RequestInfo,
    bind_as: Option<String>,
    io: IO,
    early_bytes: &[u8],
    config: &WsConfig,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let outbox = Arc::new(Outbox::new(config.outbound_queue, config.outbound_bytes));
    let transport = Box::new(WsTransport {
        outbox: outbox.clone(),
    });
    let registration = tokio::spawn({
        let outbox = outbox.clone();
        async move {
            let socket = match bind_as {
                Some(id) => node.connect_bound(request, transport, &id).await,
                None => node.connect(request, transport).await,
            };
            DisconnectGuard {
                node,
                socket,
                outbox,
            }
        }
    });
    let mut connection = Connection {
        io,
        outbox,
        registration: Some(registration),
        guard: None,
        reader: FrameReader::new(config.max_message_size, early_bytes),
        writer: FrameWriter::default(),
        close_timeout: config.close_timeout,
        closing: None,
        reading: true,
    };
    tokio::spawn(async move {
        poll_fn(|cx| connection.poll_run(cx)).await;
        // Report the disconnect before the (possibly slow) shutdown.
        drop(connection.guard.take());
        let close_timeout = connection.close_timeout;
        let _ = tokio::time::timeout(close_timeout, connection.io.shutdown()).await;
    });
}

/// The state of one connection's task.
struct Connection<IO> {
    io: IO,
    outbox: Arc<Outbox>,
    /// The connection handlers, until they have run.
    registration: Option<JoinHandle<DisconnectGuard>>,
    /// The registered socket; dropping it reports the disconnect.
    guard: Option<DisconnectGuard>,
    reader: FrameReader,
    writer: FrameWriter,
    close_timeout: Duration,
    /// Runs once our close frame is written: the peer has this long to answer it.
    closing: Option<Pin<Box<Sleep>>>,
    /// Whether frames are still read (until the peer's close frame or an error).
    reading: bool,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Connection<IO> {
    /// Drives the connection; `Ready` when it is over.
    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(registration) = self.registration.as_mut() {
            match Pin::new(registration).poll(cx) {
                Poll::Ready(Ok(guard)) => {
                    self.registration = None;
                    self.guard = Some(guard);
                }
                Poll::Ready(Err(_)) => return Poll::Ready(()), // the runtime is shutting down
                Poll::Pending => {}
            }
        }
        if self.reading && self.guard.is_some() && self.poll_read(cx).is_ready() {
            self.reading = false;
            // Reading is over: report the disconnect now; queued frames still go out.
            self.guard = None;
        }
        loop {
            if self.writer.is_idle() {
                match self.outbox.poll_take(cx) {
                    Poll::Ready(Taken::Batch(batch)) => self.writer.start(batch),
                    Poll::Ready(Taken::Killed) => return Poll::Ready(()),
                    Poll::Pending => break,
                }
            }
            match self.writer.poll_write(&mut self.io, cx) {
                Poll::Ready(Ok(Written::Frames)) => {}
                Poll::Ready(Ok(Written::Close)) => {
                    if !self.reading {
                        return Poll::Ready(()); // our close frame answered the peer's
                    }
                    let timer = tokio::time::sleep(self.close_timeout);
                    self.closing = Some(Box::pin(timer));
                    break;
                }
                Poll::Ready(Err(_)) => {
                    self.outbox.kill(ABNORMAL, "");
                    return Poll::Ready(());
                }
                Poll::Pending => break,
            }
        }
        if self.outbox.poll_killed(cx) {
            return Poll::Ready(());
        }
        if let Some(timer) = self.closing.as_mut() {
            // Our close frame is out: wait for the peer's, or give up.
            if !self.reading || timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }

    /// Reads and handles what the peer sent; `Ready` once reading is over.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(guard) = self.guard.as_ref() else {
            return Poll::Pending;
        };
        let (node, socket, outbox) = (&guard.node, &guard.socket, &self.outbox);
        let mut on_message = |message: Message<'_>| match message {
            Message::Text(text) => node.handle_text(socket, text),
            Message::Binary => {
                node.metrics().binary_frames.fetch_add(1, Ordering::Relaxed);
            }
            Message::Ping(payload) => outbox.push_pong(Bytes::copy_from_slice(payload)),
            Message::Pong => node.handle_pong(socket),
            Message::Close(code, reason) => {
                // Records the peer's close and echoes it (RFC 6455 5.5.1), unless ours went
                // first.
                outbox.close(code, reason);
            }
        };
        let end = match self.reader.poll_read(&mut self.io, cx, &mut on_message) {
            Poll::Ready(end) => end,
            Poll::Pending => return Poll::Pending,
        };
        match end {
            ReadEnd::Closed => {}
            ReadEnd::Gone(error) => {
                if let Some(error) = error {
                    tracing::debug!(conn = socket.conn_id(), %error, "connection read failed");
                }
                outbox.kill(ABNORMAL, "");
            }
            ReadEnd::Violation(code, reason) => {
                if code == close_codes::TOO_BIG {
                    node.metrics()
                        .oversized_frames
                        .fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(
                    conn = socket.conn_id(),
                    code,
                    reason,
                    "closing a connection that broke the protocol"
                );
                node.handle_error(socket, reason);
                outbox.close(code, reason);
            }
        }
        Poll::Ready(())
    }
}

/// Reports the disconnect to the node when dropped: when reading ends, when the connection
/// task ends, or, if the connection ended while its handlers ran, when they finish.
struct DisconnectGuard {
    node: Node,
    socket: Socket,
    outbox: Arc<Outbox>,
}

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        let (code, reason) = self.outbox.finish();
        let node = self.node.clone();
        let socket = self.socket.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { node.disconnect(&socket, code, &reason).await });
        }
    }
}
