//! One WebSocket connection: a reader task and a writer task joined by a bounded queue.
//!
//! fastwebsockets' `read_frame` is not cancellation-safe, so the reader awaits it in a plain
//! loop, never inside `select!`. The writer owns the write half and the outbound queue; it
//! writes every queued frame of a batch with one `write_all`. Stopping a connection early
//! (slow consumer, dead peer, write failure) aborts the reader task: its pending read is
//! discarded together with the connection, and a drop guard reports the disconnect to the
//! node exactly once.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crosswire_core::close_codes;
use crosswire_core::{Node, RequestInfo, SendError, Socket, Transport};

use crate::WsConfig;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError, WebSocketRead};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;

/// Most frames written with one `write_all`.
const MAX_BATCH: usize = 64;
/// Write buffer capacity kept between batches; larger buffers are released.
const KEEP_BUFFER: usize = 16 * 1024;
/// Close code reported when a connection ends without a close frame.
const ABNORMAL: u16 = 1006;

/// Something for the writer to put on the wire.
#[derive(Debug)]
enum Outbound {
    Text(Bytes),
    Ping,
    Pong(Bytes),
    /// A close frame; the writer stops after it.
    Close(u16, Bytes),
    /// The echo of the peer's close frame, as received; the writer stops after it.
    CloseEcho(Bytes),
}

/// State shared by the node-facing [`WsTransport`], the reader and the writer.
#[derive(Debug, Default)]
struct Shared {
    /// Set once the connection is closing: no more frames are accepted.
    closing: AtomicBool,
    /// The close code and reason to report, first writer wins.
    close: Mutex<Option<(u16, String)>>,
    /// Tells the writer to stop at once, without draining.
    kill: Notify,
    /// Tells the writer the reader has finished.
    reader_done: Notify,
}

impl Shared {
    fn record_close(&self, code: u16, reason: &str) {
        let mut close = self.close.lock();
        if close.is_none() {
            *close = Some((code, reason.to_owned()));
        }
    }

    fn kill(&self, code: u16, reason: &str) {
        self.closing.store(true, Ordering::Release);
        self.record_close(code, reason);
        self.kill.notify_one();
    }
}

/// The node's handle on one WebSocket connection.
#[derive(Debug)]
pub(crate) struct WsTransport {
    tx: mpsc::Sender<Outbound>,
    shared: Arc<Shared>,
}

impl Transport for WsTransport {
    fn send(&self, frame: Bytes) -> Result<(), SendError> {
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(SendError::Closed);
        }
        match self.tx.try_send(Outbound::Text(frame)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.kill(close_codes::POLICY, "slow consumer");
                tracing::warn!(
                    "dropped a connection whose outbound queue was full (slow consumer)"
                );
                Err(SendError::SlowConsumer)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed),
        }
    }

    fn ping(&self) {
        if !self.shared.closing.load(Ordering::Acquire) {
            let _ = self.tx.try_send(Outbound::Ping);
        }
    }

    fn close(&self, code: u16, reason: &str) {
        if self.shared.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.shared.record_close(code, reason);
        let reason = Bytes::copy_from_slice(truncate_reason(reason).as_bytes());
        if self.tx.try_send(Outbound::Close(code, reason)).is_err() {
            self.shared.kill(code, "");
        }
    }

    fn terminate(&self) {
        self.shared.kill(ABNORMAL, "terminated");
    }
}

/// Close reasons are limited to 123 bytes by RFC 6455; cut on a character boundary.
fn truncate_reason(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Starts the writer and reader of an upgraded connection. The reader first registers the
/// connection with the node (running its connection handlers), then reads.
pub(crate) fn start<R, W>(
    node: Node,
    request: RequestInfo,
    bind_as: Option<String>,
    read: WebSocketRead<R>,
    write: W,
    config: &WsConfig,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(config.outbound_queue);
    let shared = Arc::new(Shared::default());
    let transport = Box::new(WsTransport {
        tx: tx.clone(),
        shared: shared.clone(),
    });
    let reader_shared = shared.clone();
    let max_message_size = config.max_message_size;
    let reader = tokio::spawn(async move {
        // Registration runs in a task of its own: if the connection is stopped while its
        // connection handlers still run (which aborts this reader), they finish anyway and the
        // guard they return reports the disconnect, so the node never keeps a dead connection.
        let registration = tokio::spawn({
            let node = node.clone();
            let shared = reader_shared.clone();
            async move {
                let socket = match bind_as {
                    Some(id) => node.connect_bound(request, transport, &id).await,
                    None => node.connect(request, transport).await,
                };
                DisconnectGuard {
                    node,
                    socket,
                    shared,
                }
            }
        });
        let Ok(guard) = registration.await else {
            return; // the runtime is shutting down
        };
        read_loop(
            &node,
            &guard.socket,
            read,
            tx,
            &reader_shared,
            max_message_size,
        )
        .await;
        drop(guard);
    });
    tokio::spawn(write_loop(
        write,
        rx,
        shared,
        reader.abort_handle(),
        config.close_timeout,
    ));
}

/// Reports the disconnect to the node when the reader ends, however it ends (finished or
/// aborted).
struct DisconnectGuard {
    node: Node,
    socket: Socket,
    shared: Arc<Shared>,
}

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        let (code, reason) = self
            .shared
            .close
            .lock()
            .take()
            .unwrap_or((ABNORMAL, String::new()));
        self.shared.reader_done.notify_one();
        let node = self.node.clone();
        let socket = self.socket.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { node.disconnect(&socket, code, &reason).await });
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    node: &Node,
    socket: &Socket,
    mut read: WebSocketRead<R>,
    tx: mpsc::Sender<Outbound>,
    shared: &Shared,
    max_message_size: usize,
) {
    // fastwebsockets refuses a frame whose payload is >= its limit; ours is the largest
    // message accepted, so a message of exactly `max_message_size` bytes must pass.
    read.set_max_message_size(max_message_size.saturating_add(1));
    let mut obligated = |frame: Frame<'_>| {
        let payload = Bytes::copy_from_slice(&frame.payload);
        let item = match frame.opcode {
            OpCode::Close => Outbound::CloseEcho(payload),
            _ => Outbound::Pong(payload),
        };
        // Control replies may exceed a full queue's capacity only by this one frame.
        let _ = tx.try_send(item);
        std::future::ready(Ok::<(), Infallible>(()))
    };
    let mut fragments: Option<Vec<u8>> = None;
    loop {
        let frame = match read.read_frame(&mut obligated).await {
            Ok(frame) => frame,
            Err(error) => {
                on_read_error(node, socket, shared, &tx, error);
                return;
            }
        };
        match frame.opcode {
            OpCode::Text | OpCode::Binary if frame.fin => {
                if frame.opcode == OpCode::Text {
                    node.handle_text(socket, &frame.payload);
                } else {
                    node.metrics().binary_frames.fetch_add(1, Ordering::Relaxed);
                }
            }
            OpCode::Text => fragments = Some(frame.payload.to_vec()),
            OpCode::Binary => {
                node.metrics().binary_frames.fetch_add(1, Ordering::Relaxed);
                fragments = None;
            }
            OpCode::Continuation => {
                let Some(buffer) = fragments.as_mut() else {
                    continue; // continuation of a dropped binary message, or stray
                };
                if buffer.len() + frame.payload.len() > max_message_size {
                    on_read_error(node, socket, shared, &tx, WebSocketError::FrameTooLarge);
                    return;
                }
                buffer.extend_from_slice(&frame.payload);
                if frame.fin {
                    if let Some(message) = fragments.take() {
                        node.handle_text(socket, &message);
                    }
                }
            }
            OpCode::Pong => node.handle_pong(socket),
            OpCode::Close => {
                let (code, reason) = parse_close(&frame.payload);
                shared.record_close(code, &reason);
                return;
            }
            OpCode::Ping => {}
        }
    }
}

fn parse_close(payload: &[u8]) -> (u16, String) {
    match payload {
        [hi, lo, reason @ ..] => (
            u16::from_be_bytes([*hi, *lo]),
            String::from_utf8_lossy(reason).into_owned(),
        ),
        _ => (1005, String::new()),
    }
}

fn on_read_error(
    node: &Node,
    socket: &Socket,
    shared: &Shared,
    tx: &mpsc::Sender<Outbound>,
    error: WebSocketError,
) {
    let (code, reason) = match &error {
        WebSocketError::UnexpectedEOF
        | WebSocketError::IoError(_)
        | WebSocketError::ConnectionClosed => {
            shared.kill(ABNORMAL, "");
            return;
        }
        WebSocketError::FrameTooLarge => {
            node.metrics()
                .oversized_frames
                .fetch_add(1, Ordering::Relaxed);
            (close_codes::TOO_BIG, "message too big")
        }
        WebSocketError::InvalidUTF8 => (1007, "invalid UTF-8"),
        _ => (1002, "protocol error"),
    };
    tracing::debug!(conn = socket.conn_id(), %error, "closing a connection after a read error");
    node.handle_error(socket, &error.to_string());
    shared.closing.store(true, Ordering::Release);
    shared.record_close(code, reason);
    let reason = Bytes::from_static(reason.as_bytes());
    if tx.try_send(Outbound::Close(code, reason)).is_err() {
        shared.kill(code, "");
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut io: W,
    mut rx: mpsc::Receiver<Outbound>,
    shared: Arc<Shared>,
    reader: AbortHandle,
    close_timeout: Duration,
) {
    let mut batch = Vec::new();
    let mut buffer = Vec::new();
    loop {
        let received = tokio::select! {
            biased;
            _ = shared.kill.notified() => break,
            n = rx.recv_many(&mut batch, MAX_BATCH) => n,
        };
        if received == 0 {
            break;
        }
        let mut finished = false;
        for item in batch.drain(..) {
            finished = encode(&item, &mut buffer);
            if finished {
                break;
            }
        }
        let written = tokio::select! {
            biased;
            _ = shared.kill.notified() => break,
            result = io.write_all(&buffer) => result,
        };
        buffer.clear();
        if buffer.capacity() > KEEP_BUFFER {
            buffer = Vec::new();
        }
        if written.is_err() {
            break;
        }
        if finished {
            let _ = io.flush().await;
            // Give the peer time to answer the close frame, then drop the connection.
            let _ = tokio::time::timeout(close_timeout, shared.reader_done.notified()).await;
            break;
        }
    }
    shared.closing.store(true, Ordering::Release);
    reader.abort();
    let _ = io.shutdown().await;
}

/// Appends one frame to `buffer`; returns whether it was a close frame (the last one).
fn encode(item: &Outbound, buffer: &mut Vec<u8>) -> bool {
    let (opcode, payload, last): (OpCode, &[u8], bool) = match item {
        Outbound::Text(bytes) => (OpCode::Text, bytes, false),
        Outbound::Ping => (OpCode::Ping, &[], false),
        Outbound::Pong(bytes) => (OpCode::Pong, bytes, false),
        Outbound::CloseEcho(bytes) => (OpCode::Close, bytes, true),
        Outbound::Close(code, reason) => {
            let mut frame = Frame::close(*code, reason);
            append(&mut frame, buffer);
            return true;
        }
    };
    let mut frame = Frame::new(true, opcode, None, Payload::Borrowed(payload));
    append(&mut frame, buffer);
    last
}

fn append(frame: &mut Frame<'_>, buffer: &mut Vec<u8>) {
    let mut head = [0u8; 14];
    let len = frame.fmt_head(&mut head);
    buffer.extend_from_slice(&head[..len]);
    buffer.extend_from_slice(&frame.payload);
}
