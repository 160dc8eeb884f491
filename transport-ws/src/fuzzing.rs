//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`; not a stable API).
//!
//! The connection's own frame reader (`connection/reader.rs`), driven here without a socket or
//! a runtime. All use of the reader's internals is in this file, the one place to adapt when
//! they change.

use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::connection::reader::{self, FrameReader, Message, ReadEnd};

/// The longest client frame header: 2 bytes, 8 of length, 4 of mask.
pub const MAX_HEAD: usize = reader::MAX_HEAD;
/// The most the reader takes from the socket in one read into its stack buffer (the reader's
/// `STACK_READ`).
pub const STACK_READ: usize = reader::STACK_READ;

/// One message the reader handed on, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// A whole text message (the reader promises valid UTF-8; kept as bytes to check it).
    Text(Vec<u8>),
    /// A whole binary message (any bytes, within the limit).
    Binary(Vec<u8>),
    /// A ping and its payload.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// The peer's close frame: code (1005 when it had none) and reason.
    Close(u16, String),
}

/// Why reading stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// After the peer's close frame ([`Msg::Close`]).
    Closed,
    /// The input ran out.
    Eof,
    /// The input failed with this error (never, with [`ChunkedInput`]).
    Io(String),
    /// The peer broke the protocol: the close code and reason the server answers with.
    Violation(u16, &'static str),
}

impl From<Message<'_>> for Msg {
    fn from(message: Message<'_>) -> Self {
        match message {
            Message::Text(text) => Msg::Text(text.as_bytes().to_vec()),
            Message::Binary(bytes) => Msg::Binary(bytes.to_vec()),
            Message::Ping(payload) => Msg::Ping(payload.to_vec()),
            Message::Pong => Msg::Pong,
            Message::Close(code, reason) => Msg::Close(code, reason.to_owned()),
        }
    }
}

impl From<ReadEnd> for End {
    fn from(end: ReadEnd) -> Self {
        match end {
            ReadEnd::Closed => End::Closed,
            ReadEnd::Gone(None) => End::Eof,
            ReadEnd::Gone(Some(error)) => End::Io(error.to_string()),
            ReadEnd::Violation(code, reason) => End::Violation(code, reason),
        }
    }
}

/// A byte stream that serves `data` in pieces of the sizes in `chunks` (in turn, over and
/// over), then end of file. A size of 0 makes one read return `Pending` instead; no sizes at
/// all serve as much as each read asks for. Writes are accepted and dropped.
#[derive(Debug)]
pub struct ChunkedInput<'a> {
    data: &'a [u8],
    chunks: &'a [usize],
    next: usize,
    pended: bool,
}

impl<'a> ChunkedInput<'a> {
    /// Serves `data` in pieces of the sizes in `chunks`.
    pub fn new(data: &'a [u8], chunks: &'a [usize]) -> Self {
        ChunkedInput {
            data,
            chunks,
            next: 0,
            pended: false,
        }
    }
}

impl AsyncRead for ChunkedInput<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let size = match this.chunks {
            [] => usize::MAX,
            chunks => chunks[this.next % chunks.len()],
        };
        this.next = this.next.wrapping_add(1);
        if size == 0 && !this.pended && !this.data.is_empty() {
            // Never twice in a row, so that a reader polled again always makes progress.
            this.pended = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.pended = false;
        let n = size.max(1).min(this.data.len()).min(buf.remaining());
        let (piece, rest) = this.data.split_at(n);
        buf.put_slice(piece);
        this.data = rest;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ChunkedInput<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// How the bytes reach the reader, and how its message handler behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Feed<'a> {
    /// Bytes read with the upgrade request, decoded first.
    pub early_bytes: &'a [u8],
    /// The rest of the stream, served by [`ChunkedInput`].
    pub input: &'a [u8],
    /// Read sizes for [`ChunkedInput`].
    pub chunks: &'a [usize],
    /// The handler pauses reading after message `i` when bit `i % 64` is set (backpressure):
    /// the reader must then resume where it stopped.
    pub pauses: u64,
}

/// Runs crosswire's frame reader, limited to messages of `max_message` bytes, over `feed`;
/// hands each message to `on_message` and returns why reading stopped. After a violation, the
/// reader's drain discards the rest of the input, as a connection does before closing.
pub fn read_messages_with(
    feed: Feed<'_>,
    max_message: usize,
    on_message: &mut dyn FnMut(Msg),
) -> End {
    let mut reader = FrameReader::new(max_message, feed.early_bytes);
    let mut io = ChunkedInput::new(feed.input, feed.chunks);
    let mut cx = Context::from_waker(Waker::noop());
    let mut count = 0u32;
    let mut deliver = |message: Message<'_>| {
        on_message(Msg::from(message));
        let pause = feed.pauses.rotate_right(count) & 1 != 0;
        count = count.wrapping_add(1);
        if pause {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    // `Pending` comes from a pause or a 0-sized chunk; polling again makes progress.
    let end = loop {
        if let Poll::Ready(end) = reader.poll_read(&mut io, &mut cx, &mut deliver) {
            break End::from(end);
        }
    };
    if matches!(end, End::Violation(..)) {
        while reader.poll_drain(&mut io, &mut cx).is_pending() {}
    }
    end
}

/// [`read_messages_with`], collecting the messages.
pub fn read_messages(feed: Feed<'_>, max_message: usize) -> (Vec<Msg>, End) {
    let mut messages = Vec::new();
    let end = read_messages_with(feed, max_message, &mut |message| messages.push(message));
    (messages, end)
}
