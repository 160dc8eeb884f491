//! Reading client frames (RFC 6455, server side) with no buffer held while idle.
//!
//! A read lands in a buffer on the stack of the poll that made it; complete frames are handled
//! right there and only the tail of an incomplete frame is kept, in a heap buffer sized for
//! that frame and freed once it is complete. The rest of a large frame is read straight into
//! that buffer.

use std::io;
use std::mem::MaybeUninit;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll};

use fastwebsockets::CloseCode;
use tokio::io::{AsyncRead, ReadBuf};

use super::drain::Drain;

/// Size of the stack buffer one read lands in.
pub(crate) const STACK_READ: usize = 8 * 1024;
/// Longest frame header of a client frame: 2 + 8 (length) + 4 (mask).
pub(crate) const MAX_HEAD: usize = 14;

const PROTOCOL_ERROR: u16 = 1002;
const INVALID_DATA: u16 = 1007;
const TOO_BIG: u16 = 1009;

/// One complete message from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message<'a> {
    /// A whole text message.
    Text(&'a str),
    /// A whole binary message: any bytes (no UTF-8 rule applies).
    Binary(&'a [u8]),
    /// A ping with its payload, to be answered with a pong.
    Ping(&'a [u8]),
    /// A pong.
    Pong,
    /// The peer's close frame: code (1005 when it has none) and reason.
    Close(u16, &'a str),
}

/// Why reading stopped for good.
#[derive(Debug)]
pub(crate) enum ReadEnd {
    /// The peer's close frame was handled (as [`Message::Close`]).
    Closed,
    /// The peer closed the TCP connection or it failed.
    Gone(Option<io::Error>),
    /// The peer broke the protocol: close with this code and reason.
    Violation(u16, &'static str),
}

/// Incremental decoder of one connection's incoming frames.
#[derive(Debug)]
pub(crate) struct FrameReader {
    max_message: usize,
    /// Bytes of an incomplete frame; unallocated between frames.
    partial: Vec<u8>,
    /// A fragmented text or binary message being assembled.
    fragments: Option<Vec<u8>>,
    /// Whether `fragments` is a binary message (its UTF-8 is not checked).
    fragments_binary: bool,
    /// Whether `partial` holds bytes not decoded yet.
    undecoded: bool,
    /// Once reading ended on a protocol violation: what the peer still sends is discarded.
    drain: Option<Box<Drain>>,
}

/// Why decoding stopped before the end of the bytes at hand.
#[derive(Debug)]
enum Stop {
    /// Reading is over.
    End(ReadEnd),
    /// The message handler asked to pause: the rest waits, undecoded.
    Pause,
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy)]
pub(super) struct Head {
    fin: bool,
    pub(super) opcode: u8,
    mask: [u8; 4],
    pub(super) head_len: usize,
    pub(super) payload_len: usize,
}

impl FrameReader {
    /// A reader accepting messages of at most `max_message` bytes, that decodes `early_bytes`
    /// (read before the connection started) first.
    pub(crate) fn new(max_message: usize, early_bytes: &[u8]) -> Self {
        FrameReader {
            max_message,
            partial: early_bytes.to_vec(),
            fragments: None,
            fragments_binary: false,
            undecoded: !early_bytes.is_empty(),
            drain: None,
        }
    }

    /// Reads what `io` has and hands each complete message to `on_message`, until `io` has
    /// nothing more (`Pending`) or reading ends.
    ///
    /// `on_message` returns [`ControlFlow::Break`] to pause: decoding stops after that message
    /// and `Pending` is returned without reading further (the rest of what was read waits,
    /// undecoded, for the next call), so the caller must arrange its own wake-up.
    ///
    /// After a [`ReadEnd::Violation`], [`poll_drain`](Self::poll_drain) discards what the peer
    /// still sends.
    pub(crate) fn poll_read<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        cx: &mut Context<'_>,
        on_message: &mut impl FnMut(Message<'_>) -> ControlFlow<()>,
    ) -> Poll<ReadEnd> {
        let mut stop = if std::mem::take(&mut self.undecoded) {
            self.decode_partial(on_message)
        } else {
            None
        };
        loop {
            match stop {
                Some(Stop::End(end)) => return Poll::Ready(self.end(end)),
                Some(Stop::Pause) => {
                    self.undecoded = !self.partial.is_empty();
                    return Poll::Pending;
                }
                None => {}
            }
            stop = if self.partial.capacity() - self.partial.len() >= STACK_READ {
                // The rest of a large frame: read straight into its buffer.
                match read_into_spare(io, cx, &mut self.partial) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(ReadEnd::Gone(None)),
                    Poll::Ready(Ok(_)) => self.decode_partial(on_message),
                    Poll::Ready(Err(e)) => return Poll::Ready(ReadEnd::Gone(Some(e))),
                    Poll::Pending => return Poll::Pending,
                }
            } else {
                // Left uninitialized: zeroing 8 KiB for every read (and for the read that
                // finds nothing) cost more than the decoding.
                let mut stack = [MaybeUninit::<u8>::uninit(); STACK_READ];
                let mut read_buf = ReadBuf::uninit(&mut stack);
                let data = match Pin::new(&mut *io).poll_read(cx, &mut read_buf) {
                    Poll::Ready(Ok(())) if read_buf.filled().is_empty() => {
                        return Poll::Ready(ReadEnd::Gone(None))
                    }
                    Poll::Ready(Ok(())) => read_buf.filled_mut(),
                    Poll::Ready(Err(e)) => return Poll::Ready(ReadEnd::Gone(Some(e))),
                    Poll::Pending => return Poll::Pending,
                };
                self.decode_read(data, on_message)
            };
        }
    }

    /// Decodes one read. The frame started in `partial` takes only the bytes it still needs
    /// (so `partial` never grows past the frame it was sized for); what follows is decoded in
    /// place, and only the start of an incomplete frame is kept.
    fn decode_read(
        &mut self,
        mut data: &mut [u8],
        on_message: &mut impl FnMut(Message<'_>) -> ControlFlow<()>,
    ) -> Option<Stop> {
        while !self.partial.is_empty() {
            let take = self.partial_needs().min(data.len());
            let (head, rest) = data.split_at_mut(take);
            self.partial.extend_from_slice(head);
            data = rest;
            let stop = self.decode_partial(on_message);
            match &stop {
                Some(Stop::End(_)) => {
                    if let Some(drain) = self.drain.as_mut() {
                        drain.feed(data);
                    }
                    return stop;
                }
                Some(Stop::Pause) => {
                    // What follows waits, undecoded: at most one read more.
                    self.partial.reserve_exact(data.len());
                    self.partial.extend_from_slice(data);
                    return stop;
                }
                None if data.is_empty() => return None,
                None => {}
            }
        }
        let (consumed, stop) = self.decode(data, on_message);
        if !matches!(stop, Some(Stop::End(_))) {
            self.keep_tail(&data[consumed..]);
        }
        stop
    }

    /// How many more bytes the frame at the start of `partial` needs: first its header,
    /// then its payload.
    fn partial_needs(&self) -> usize {
        let partial = &self.partial;
        match parse_head(partial) {
            Ok(Some(head)) => (head.head_len + head.payload_len).saturating_sub(partial.len()),
            Ok(None) => match partial.get(1) {
                None => 2 - partial.len(),
                Some(&b1) => head_len(b1).saturating_sub(partial.len()),
            },
            Err(_) => usize::MAX, // decoding reports the violation
        }
        .max(1)
    }

    /// Frees the buffers once reading is over.
    fn end(&mut self, end: ReadEnd) -> ReadEnd {
        self.partial = Vec::new();
        self.fragments = None;
        end
    }

    /// Stops decoding: whatever the peer sends from now on (and what was read but not
    /// decoded yet) is discarded by [`poll_drain`](Self::poll_drain) until its close frame.
    /// For a close this side started while the peer was sending.
    pub(crate) fn stop_and_drain(&mut self) {
        let partial = std::mem::take(&mut self.partial);
        self.start_drain(&partial);
        self.undecoded = false;
        self.fragments = None;
    }

    fn start_drain(&mut self, rest: &[u8]) {
        let mut drain = Box::new(Drain::default());
        drain.feed(rest);
        self.drain = Some(drain);
    }

    /// Reads and throws away what the peer sends after reading ended on a violation, until
    /// its close frame or the end of the stream (`Ready`), so that closing the socket then
    /// does not reset a connection whose peer was still sending, and the peer reads our close
    /// frame (RFC 6455 7.1.1). Nothing is kept but a frame header's bytes. The caller bounds
    /// the time it takes.
    pub(crate) fn poll_drain<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let Some(drain) = self.drain.as_mut() else {
            return Poll::Ready(());
        };
        loop {
            if drain.is_done() {
                self.drain = None;
                return Poll::Ready(());
            }
            let mut stack = [MaybeUninit::<u8>::uninit(); STACK_READ];
            let mut read_buf = ReadBuf::uninit(&mut stack);
            match Pin::new(&mut *io).poll_read(cx, &mut read_buf) {
                Poll::Ready(Ok(())) if !read_buf.filled().is_empty() => {
                    drain.feed(read_buf.filled());
                }
                Poll::Ready(_) => {
                    self.drain = None;
                    return Poll::Ready(());
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Decodes the frames completed in `partial` and keeps the rest.
    fn decode_partial(
        &mut self,
        on_message: &mut impl FnMut(Message<'_>) -> ControlFlow<()>,
    ) -> Option<Stop> {
        let mut partial = std::mem::take(&mut self.partial);
        let (consumed, stop) = self.decode(&mut partial, on_message);
        if consumed == partial.len() || matches!(stop, Some(Stop::End(_))) {
            return stop; // `partial` is freed
        }
        partial.drain(..consumed);
        self.partial = partial;
        self.reserve_for_frame();
        stop
    }

    /// Keeps the start of an incomplete frame.
    fn keep_tail(&mut self, tail: &[u8]) {
        if !tail.is_empty() {
            self.partial = Vec::with_capacity(tail.len().max(MAX_HEAD));
            self.partial.extend_from_slice(tail);
            self.reserve_for_frame();
        }
    }

    /// Sizes `partial` for the whole frame it starts, once its header is known. The length
    /// a peer claims is hostile: nothing is reserved for a frame the size check refuses, and
    /// never more than the message limit plus a header.
    fn reserve_for_frame(&mut self) {
        let Ok(Some(head)) = parse_head(&self.partial) else {
            return;
        };
        if self.check_size(&head).is_err() {
            return;
        }
        let total = (head.head_len + head.payload_len).min(self.max_message + MAX_HEAD);
        self.partial
            .reserve_exact(total.saturating_sub(self.partial.len()));
    }

    /// Handles every complete frame at the start of `data`; returns how many bytes they took
    /// and why decoding stopped before the end, if it did. On a violation, what follows is
    /// handed to the drain.
    fn decode(
        &mut self,
        data: &mut [u8],
        on_message: &mut impl FnMut(Message<'_>) -> ControlFlow<()>,
    ) -> (usize, Option<Stop>) {
        let mut at = 0;
        let pause = std::cell::Cell::new(false);
        let mut handle = |message: Message<'_>| {
            if on_message(message).is_break() {
                pause.set(true);
            }
        };
        loop {
            let violation = match parse_head(&data[at..]) {
                Ok(None) => return (at, None),
                Err(end) => end,
                Ok(Some(head)) => match self.check_size(&head) {
                    Err(end) => end,
                    Ok(()) => {
                        let total = head.head_len + head.payload_len;
                        if data.len() - at < total {
                            return (at, None);
                        }
                        let payload = &mut data[at + head.head_len..at + total];
                        fastwebsockets::unmask(payload, head.mask);
                        at += total;
                        match self.on_frame(&head, payload, &mut handle) {
                            Some(end) => end,
                            None if pause.get() => return (at, Some(Stop::Pause)),
                            None => continue,
                        }
                    }
                },
            };
            if matches!(violation, ReadEnd::Violation(..)) {
                self.start_drain(&data[at..]);
            }
            return (at, Some(Stop::End(violation)));
        }
    }

    /// Refuses a frame whose message would exceed the limit, before its payload arrives.
    /// Control frames are not messages: `parse_head` holds them to 125 bytes, whatever the
    /// limit.
    fn check_size(&self, head: &Head) -> Result<(), ReadEnd> {
        if head.opcode >= 0x8 {
            return Ok(());
        }
        let assembled = match (head.opcode, &self.fragments) {
            (0x0, Some(fragments)) => fragments.len(),
            _ => 0,
        };
        if head.payload_len.saturating_add(assembled) > self.max_message {
            return Err(ReadEnd::Violation(TOO_BIG, "message too big"));
        }
        Ok(())
    }

    fn on_frame(
        &mut self,
        head: &Head,
        payload: &[u8],
        on_message: &mut impl FnMut(Message<'_>),
    ) -> Option<ReadEnd> {
        match head.opcode {
            0x1 | 0x2 if self.fragments.is_some() => {
                return Some(ReadEnd::Violation(
                    PROTOCOL_ERROR,
                    "expected a continuation frame",
                ));
            }
            0x1 if head.fin => {
                let Ok(text) = std::str::from_utf8(payload) else {
                    return Some(ReadEnd::Violation(INVALID_DATA, "invalid UTF-8"));
                };
                on_message(Message::Text(text));
            }
            0x1 => {
                // Fail fast (RFC 6455 8.1): no later fragment can repair invalid UTF-8; only
                // a code point left unfinished at the end may go on in the next one.
                if std::str::from_utf8(payload).is_err_and(|e| e.error_len().is_some()) {
                    return Some(ReadEnd::Violation(INVALID_DATA, "invalid UTF-8"));
                }
                self.fragments = Some(payload.to_vec());
                self.fragments_binary = false;
            }
            // Binary messages are assembled like text, with no UTF-8 to check.
            0x2 if head.fin => on_message(Message::Binary(payload)),
            0x2 => {
                self.fragments = Some(payload.to_vec());
                self.fragments_binary = true;
            }
            0x0 => {
                let Some(fragments) = self.fragments.as_mut() else {
                    return Some(ReadEnd::Violation(
                        PROTOCOL_ERROR,
                        "continuation frame without a message",
                    ));
                };
                if self.fragments_binary {
                    grow_within(fragments, payload.len(), self.max_message);
                    fragments.extend_from_slice(payload);
                } else {
                    // What came before is valid up to a code point it may have left unfinished
                    // (at most its last 3 bytes): check from there on, failing fast.
                    let unfinished = fragments.len().saturating_sub(3);
                    let from = (unfinished..fragments.len())
                        .find(|&i| fragments[i] & 0xC0 != 0x80)
                        .unwrap_or(fragments.len());
                    grow_within(fragments, payload.len(), self.max_message);
                    fragments.extend_from_slice(payload);
                    if let Err(e) = std::str::from_utf8(&fragments[from..]) {
                        if head.fin || e.error_len().is_some() {
                            return Some(ReadEnd::Violation(INVALID_DATA, "invalid UTF-8"));
                        }
                    }
                }
                if head.fin {
                    let message = self.fragments.take().unwrap_or_default();
                    if self.fragments_binary {
                        on_message(Message::Binary(&message));
                    } else {
                        // Checked piece by piece above; this whole-message check cannot fail
                        // (and costs one scan, on the rare fragmented message only).
                        let Ok(text) = std::str::from_utf8(&message) else {
                            return Some(ReadEnd::Violation(INVALID_DATA, "invalid UTF-8"));
                        };
                        on_message(Message::Text(text));
                    }
                }
            }
            0x8 => {
                return Some(match parse_close(payload) {
                    Ok((code, reason)) => {
                        on_message(Message::Close(code, reason));
                        ReadEnd::Closed
                    }
                    Err(end) => end,
                });
            }
            0x9 => on_message(Message::Ping(payload)),
            _ => on_message(Message::Pong), // 0xA; other opcodes are refused by parse_head
        }
        None
    }
}

/// Makes room in `buffer` for `more` bytes, doubling as `Vec` does but never past `limit`
/// (the size check guarantees the message fits it).
fn grow_within(buffer: &mut Vec<u8>, more: usize, limit: usize) {
    let needed = buffer.len() + more;
    if needed > buffer.capacity() {
        let capacity = (buffer.capacity() * 2).max(needed).min(limit.max(needed));
        buffer.reserve_exact(capacity - buffer.len());
    }
}

/// Length of the frame header whose second byte is `b1`: 2 bytes, the extended payload
/// length its 7-bit length asks for, and the mask key when its mask bit is set.
pub(super) fn head_len(b1: u8) -> usize {
    let extended = match b1 & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + extended + if b1 & 0x80 != 0 { 4 } else { 0 }
}

/// Parses the header at the start of `data`: `Ok(None)` while it is incomplete.
fn parse_head(data: &[u8]) -> Result<Option<Head>, ReadEnd> {
    let [b0, b1, ..] = *data else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(ReadEnd::Violation(PROTOCOL_ERROR, "reserved bits set"));
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    if !matches!(opcode, 0x0 | 0x1 | 0x2 | 0x8 | 0x9 | 0xA) {
        return Err(ReadEnd::Violation(PROTOCOL_ERROR, "unknown opcode"));
    }
    if b1 & 0x80 == 0 {
        return Err(ReadEnd::Violation(PROTOCOL_ERROR, "unmasked client frame"));
    }
    let (extra, short_len) = match b1 & 0x7F {
        126 => (2, 0),
        127 => (8, 0),
        len => (0, usize::from(len)),
    };
    let head_len = 2 + extra + 4;
    if data.len() < head_len {
        return Ok(None);
    }
    let payload_len = match extra {
        0 => short_len,
        2 => usize::from(u16::from_be_bytes([data[2], data[3]])),
        _ => {
            let mut len = [0u8; 8];
            len.copy_from_slice(&data[2..10]);
            let len = u64::from_be_bytes(len);
            if len >> 63 != 0 {
                // RFC 6455 5.2: the most significant bit of a 64-bit length must be 0.
                return Err(ReadEnd::Violation(PROTOCOL_ERROR, "invalid frame length"));
            }
            usize::try_from(len).unwrap_or(usize::MAX)
        }
    };
    if opcode >= 0x8 {
        if !fin {
            return Err(ReadEnd::Violation(
                PROTOCOL_ERROR,
                "fragmented control frame",
            ));
        }
        if payload_len > 125 {
            return Err(ReadEnd::Violation(PROTOCOL_ERROR, "control frame too long"));
        }
    }
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&data[head_len - 4..head_len]);
    Ok(Some(Head {
        fin,
        opcode,
        mask,
        head_len,
        payload_len,
    }))
}

/// The code and reason of a close frame's payload.
fn parse_close(payload: &[u8]) -> Result<(u16, &str), ReadEnd> {
    match payload {
        [] => Ok((1005, "")),
        [_] => Err(ReadEnd::Violation(PROTOCOL_ERROR, "truncated close code")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !CloseCode::from(code).is_allowed() {
                return Err(ReadEnd::Violation(PROTOCOL_ERROR, "invalid close code"));
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| ReadEnd::Violation(INVALID_DATA, "invalid UTF-8"))?;
            Ok((code, reason))
        }
    }
}

/// One read appended to `vec`, into its spare capacity.
fn read_into_spare<R: AsyncRead + Unpin>(
    io: &mut R,
    cx: &mut Context<'_>,
    vec: &mut Vec<u8>,
) -> Poll<io::Result<usize>> {
    let mut read_buf = ReadBuf::uninit(vec.spare_capacity_mut());
    match Pin::new(io).poll_read(cx, &mut read_buf) {
        Poll::Ready(Ok(())) => {
            let n = read_buf.filled().len();
            // SAFETY: `poll_read` initialized the first `n` bytes of the spare capacity.
            unsafe { vec.set_len(vec.len() + n) };
            Poll::Ready(Ok(n))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// What the reader reported for `input` fed in chunks of `chunk` bytes.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong,
        Close(u16, String),
        End(String),
    }

    fn run(input: &[u8], chunk: usize, max: usize) -> Vec<Seen> {
        let mut reader = FrameReader::new(max, &[]);
        let mut seen = Vec::new();
        let mut on_message = |m: Message<'_>| {
            seen.push(match m {
                Message::Text(t) => Seen::Text(t.to_owned()),
                Message::Binary(b) => Seen::Binary(b.to_vec()),
                Message::Ping(p) => Seen::Ping(p.to_vec()),
                Message::Pong => Seen::Pong,
                Message::Close(c, r) => Seen::Close(c, r.to_owned()),
            });
            ControlFlow::Continue(())
        };
        let (mut client, mut server) = tokio::io::duplex(1 << 22);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let end = runtime.block_on(async {
            use tokio::io::AsyncWriteExt;
            for piece in input.chunks(chunk) {
                client.write_all(piece).await.unwrap();
                // Let the reader see this piece on its own.
                let polled = std::future::poll_fn(|cx| {
                    match reader.poll_read(&mut server, cx, &mut on_message) {
                        Poll::Pending => Poll::Ready(None),
                        Poll::Ready(end) => Poll::Ready(Some(end)),
                    }
                })
                .await;
                if let Some(end) = polled {
                    return Some(end);
                }
            }
            drop(client);
            std::future::poll_fn(|cx| reader.poll_read(&mut server, cx, &mut on_message))
                .await
                .into()
        });
        if let Some(end) = end {
            seen.push(Seen::End(match end {
                ReadEnd::Closed => "closed".into(),
                ReadEnd::Gone(_) => "gone".into(),
                ReadEnd::Violation(code, reason) => format!("{code} {reason}"),
            }));
        }
        seen
    }

    fn text(s: &str) -> Seen {
        Seen::Text(s.into())
    }

    #[test]
    fn frames_are_decoded_whatever_the_read_boundaries() {
        let big = "x".repeat(70_000);
        let mut input = frame(true, 1, b"hello");
        input.extend(frame(true, 1, big.as_bytes()));
        input.extend(frame(true, 9, b"p"));
        input.extend(frame(true, 10, b""));
        input.extend(frame(true, 1, "é".as_bytes()));
        for chunk in [1, 2, 3, 7, 100, 8192, 1 << 20] {
            assert_eq!(
                run(&input, chunk, 1 << 20),
                vec![
                    text("hello"),
                    Seen::Text(big.clone()),
                    Seen::Ping(b"p".to_vec()),
                    Seen::Pong,
                    text("é"),
                    Seen::End("gone".into())
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn fragments_are_assembled_and_control_frames_may_come_between() {
        let mut input = frame(false, 1, b"he");
        input.extend(frame(true, 9, b""));
        input.extend(frame(false, 0, b"ll"));
        input.extend(frame(true, 0, b"o"));
        input.extend(frame(false, 2, b"bin"));
        input.extend(frame(true, 0, b"ary"));
        input.extend(frame(true, 8, &[0x03, 0xE8, b'b', b'y', b'e']));
        assert_eq!(
            run(&input, 3, 100),
            vec![
                Seen::Ping(vec![]),
                text("hello"),
                Seen::Binary(b"binary".to_vec()),
                Seen::Close(1000, "bye".into()),
                Seen::End("closed".into())
            ]
        );
    }

    #[test]
    fn a_message_of_exactly_the_limit_passes_and_one_byte_more_does_not() {
        assert_eq!(
            run(&frame(true, 1, &[b'a'; 10]), 4, 10)[0],
            text("aaaaaaaaaa")
        );
        assert_eq!(
            run(&frame(true, 1, &[b'a'; 11]), 4, 10),
            vec![Seen::End("1009 message too big".into())]
        );
        let mut fragmented = frame(false, 1, &[b'a'; 6]);
        fragmented.extend(frame(true, 0, &[b'a'; 5]));
        assert_eq!(
            run(&fragmented, 100, 10),
            vec![Seen::End("1009 message too big".into())]
        );
    }

    #[test]
    fn protocol_violations_end_reading_with_their_close_code() {
        let unmasked = vec![0x81, 0x01, b'a'];
        let mut reserved = frame(true, 1, b"a");
        reserved[0] |= 0x40;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (unmasked, "1002 unmasked client frame"),
            (reserved, "1002 reserved bits set"),
            (frame(true, 3, b""), "1002 unknown opcode"),
            (frame(false, 9, b""), "1002 fragmented control frame"),
            (frame(true, 9, &[0; 126]), "1002 control frame too long"),
            (
                frame(true, 0, b"a"),
                "1002 continuation frame without a message",
            ),
            (
                [frame(false, 1, b"a"), frame(true, 1, b"b")].concat(),
                "1002 expected a continuation frame",
            ),
            (frame(true, 1, &[0xFF]), "1007 invalid UTF-8"),
            (
                [frame(false, 1, &[0xC3]), frame(true, 0, &[0x28])].concat(),
                "1007 invalid UTF-8",
            ),
            (frame(true, 8, &[3]), "1002 truncated close code"),
            (frame(true, 8, &[0x03, 0xED]), "1002 invalid close code"),
            (frame(true, 8, &[0x03, 0xE8, 0xFF]), "1007 invalid UTF-8"),
        ];
        for (input, expected) in cases {
            assert_eq!(run(&input, 5, 100), vec![Seen::End(expected.into())]);
        }
    }

    /// A masked text frame header claiming `len` payload bytes, in the given length class.
    fn head_claiming(len: u64, class: u8) -> Vec<u8> {
        let mut out = vec![0x81];
        match class {
            7 => out.push(0x80 | len as u8),
            16 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        out.extend_from_slice(&[1, 2, 3, 4]);
        out
    }

    /// Feeds a frame header alone (its payload never comes) and returns how reading ended and
    /// the most memory the reader held for it.
    fn header_alone(head: &[u8], max: usize) -> (Option<String>, usize) {
        let mut reader = FrameReader::new(max, &[]);
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            use tokio::io::AsyncWriteExt;
            client.write_all(head).await.unwrap();
            let end = std::future::poll_fn(|cx| {
                Poll::Ready(
                    match reader.poll_read(&mut server, cx, &mut |_| ControlFlow::Continue(())) {
                        Poll::Ready(ReadEnd::Violation(code, reason)) => {
                            Some(format!("{code} {reason}"))
                        }
                        Poll::Ready(other) => Some(format!("{other:?}")),
                        Poll::Pending => None,
                    },
                )
            })
            .await;
            (end, reader.partial.capacity())
        })
    }

    #[test]
    fn a_claimed_length_never_sizes_an_allocation_past_the_limit() {
        // The 14-byte header that used to abort the process: 2^40 and 2^62 bytes claimed.
        for absurd in [1u64 << 40, 1 << 62, (1 << 63) - 1] {
            let (end, held) = header_alone(&head_claiming(absurd, 64), 1 << 20);
            assert_eq!(end.as_deref(), Some("1009 message too big"), "{absurd}");
            assert_eq!(
                held, 0,
                "nothing kept for a refused frame of {absurd} bytes"
            );
        }
        // RFC 6455 5.2: the most significant bit of a 64-bit length must be 0.
        let (end, _) = header_alone(&head_claiming(1 << 63, 64), 1 << 20);
        assert_eq!(end.as_deref(), Some("1002 invalid frame length"));
    }

    #[test]
    fn each_length_class_at_the_limit_passes_and_one_over_closes_1009_before_the_payload() {
        for (class, limit) in [(7u8, 100usize), (16, 1_000), (64, 70_000)] {
            let at = frame(true, 1, &vec![b'a'; limit]);
            assert_eq!(
                at[1] & 0x7F,
                match class {
                    7 => limit as u8,
                    16 => 126,
                    _ => 127,
                }
            );
            assert_eq!(
                run(&at, 997, limit)[0],
                Seen::Text("a".repeat(limit)),
                "class {class} at the limit"
            );
            // One over: refused from the header alone, nothing reserved for it.
            let (end, held) = header_alone(&head_claiming(limit as u64 + 1, class), limit);
            assert_eq!(
                end.as_deref(),
                Some("1009 message too big"),
                "class {class}"
            );
            assert_eq!(held, 0);
            // Under the limit but incomplete: the buffer is sized for that frame, not more.
            let (end, held) = header_alone(&head_claiming(limit as u64, class), limit);
            assert_eq!(end, None, "class {class}: waits for the payload");
            assert!(held <= limit + MAX_HEAD, "class {class}: held {held}");
        }
    }

    #[test]
    fn a_whole_binary_message_is_handed_on_with_its_payload() {
        let json = br#"{"event":"say","payload":1,"callbackId":"bin"}"#;
        let big = vec![0xA5; 70_000];
        let mut input = frame(true, 2, json);
        input.extend(frame(true, 2, b""));
        input.extend(frame(true, 2, &big));
        input.extend(frame(true, 1, b"after"));
        for chunk in [1, 3, 100, 8192, 1 << 20] {
            assert_eq!(
                run(&input, chunk, 1 << 20),
                vec![
                    Seen::Binary(json.to_vec()),
                    Seen::Binary(vec![]),
                    Seen::Binary(big.clone()),
                    text("after"),
                    Seen::End("gone".into())
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn a_fragmented_binary_message_is_assembled_around_a_ping() {
        let mut input = frame(false, 2, b"{\"ev");
        input.extend(frame(true, 9, b"p"));
        input.extend(frame(false, 0, b""));
        input.extend(frame(false, 0, b"ent\""));
        input.extend(frame(true, 10, b""));
        input.extend(frame(true, 0, b":1}"));
        input.extend(frame(true, 1, b"next"));
        for chunk in [1, 2, 5, 1000] {
            assert_eq!(
                run(&input, chunk, 100),
                vec![
                    Seen::Ping(b"p".to_vec()),
                    Seen::Pong,
                    Seen::Binary(b"{\"event\":1}".to_vec()),
                    text("next"),
                    Seen::End("gone".into())
                ],
                "chunk {chunk}"
            );
        }
        // A new message inside a fragmented binary one is refused as for text.
        let mut inside = frame(false, 2, b"a");
        inside.extend(frame(true, 2, b"b"));
        assert_eq!(
            run(&inside, 5, 100),
            vec![Seen::End("1002 expected a continuation frame".into())]
        );
    }

    #[test]
    fn binary_messages_are_not_held_to_utf8() {
        let not_utf8 = [0xFF, 0xFE, 0xC3, 0x28, 0xED, 0xA0, 0x80, 0x00];
        let mut input = frame(true, 2, &not_utf8);
        // Split inside what would be a code point, and invalid in every fragment.
        input.extend(frame(false, 2, &[0xE2, 0x82]));
        input.extend(frame(false, 0, &[0xFF]));
        input.extend(frame(true, 0, &[0xC0, 0x80]));
        input.extend(frame(true, 8, &[0x03, 0xE8]));
        assert_eq!(
            run(&input, 3, 100),
            vec![
                Seen::Binary(not_utf8.to_vec()),
                Seen::Binary(vec![0xE2, 0x82, 0xFF, 0xC0, 0x80]),
                Seen::Close(1000, String::new()),
                Seen::End("closed".into())
            ]
        );
    }

    #[test]
    fn a_binary_message_over_the_limit_closes_1009_before_its_payload_is_buffered() {
        assert_eq!(
            run(&frame(true, 2, &[0xFF; 10]), 4, 10),
            vec![Seen::Binary(vec![0xFF; 10]), Seen::End("gone".into())]
        );
        assert_eq!(
            run(&frame(true, 2, &[0xFF; 11]), 4, 10),
            vec![Seen::End("1009 message too big".into())]
        );
        let mut fragmented = frame(false, 2, &[0xFF; 6]);
        fragmented.extend(frame(true, 9, b""));
        fragmented.extend(frame(true, 0, &[0xFF; 5]));
        assert_eq!(
            run(&fragmented, 100, 10),
            vec![Seen::Ping(vec![]), Seen::End("1009 message too big".into())]
        );
        // Refused from the header alone, for every length class: nothing reserved for it.
        for (claimed, class, limit) in [
            (101u64, 7u8, 100usize),
            (1_001, 16, 1_000),
            (70_001, 64, 70_000),
            (1 << 62, 64, 1 << 20),
        ] {
            let mut head = head_claiming(claimed, class);
            head[0] = 0x82;
            let (end, held) = header_alone(&head, limit);
            assert_eq!(end.as_deref(), Some("1009 message too big"), "{claimed}");
            assert_eq!(
                held, 0,
                "nothing kept for a refused frame of {claimed} bytes"
            );
        }
        // A continuation that takes the message over: refused at its header, before its
        // payload comes.
        let mut reader = FrameReader::new(10, &[]);
        let mut seen = 0;
        let mut count = |_: Message<'_>| {
            seen += 1;
            ControlFlow::Continue(())
        };
        let mut first = frame(false, 2, &[0xFF; 6]);
        let (consumed, stop) = reader.decode(&mut first, &mut count);
        assert_eq!((consumed, stop.is_none()), (first.len(), true));
        let mut over = frame(true, 0, &[0xFF; 5]);
        over.truncate(6); // the header alone
        let (consumed, stop) = reader.decode(&mut over, &mut count);
        assert_eq!(consumed, 0);
        assert!(matches!(stop, Some(Stop::End(ReadEnd::Violation(1009, _)))));
        assert_eq!(seen, 0);
    }

    #[test]
    fn an_empty_close_frame_reports_1005() {
        assert_eq!(
            run(&frame(true, 8, b""), 1, 100),
            vec![Seen::Close(1005, String::new()), Seen::End("closed".into())]
        );
    }

    #[test]
    fn no_buffer_is_held_between_frames() {
        let mut reader = FrameReader::new(1 << 20, &[]);
        let mut noop = |_: Message<'_>| ControlFlow::Continue(());
        let mut input = frame(true, 1, &[b'a'; 100_000]);
        let (consumed, end) = reader.decode(&mut input[..50_000], &mut noop);
        assert_eq!((consumed, end.is_none()), (0, true));
        reader.keep_tail(&input[..50_000]);
        assert!(
            reader.partial.capacity() >= 100_008,
            "sized for the whole frame"
        );
        reader.partial.extend_from_slice(&input[50_000..]);
        assert!(reader.decode_partial(&mut noop).is_none());
        assert_eq!(
            reader.partial.capacity(),
            0,
            "freed once the frame is complete"
        );
    }
}
