//! Writing a connection's queued frames: each frame's header is formatted on the stack and
//! its payload is the shared `Bytes` every recipient got, so many frames go out in one vectored
//! write with no copy and no write buffer.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;

use super::outbox::Batch;

/// Most frames handed to one vectored write (two slices each).
const FRAMES_PER_WRITE: usize = 64;

/// A batch's emptied queue with room for at most this many frames is kept for the next
/// pushes; a larger one (after a burst) is freed.
const RECYCLE_UP_TO: usize = 4;

/// A lone frame up to this size (header included) is copied into one stack buffer and written
/// with a plain write: a socket's `send` costs the kernel less than a two-slice `writev`, which
/// goes through the file layer, and the copy of a small frame costs less than that difference.
const COPY_UP_TO: usize = 512;

const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// The batch being written and how far it got.
#[derive(Debug, Default)]
pub(crate) struct FrameWriter {
    batch: Batch,
    /// Bytes of the first frame of `batch` already written.
    written: usize,
    /// Payload bytes of the text frames of `batch` not fully written yet.
    text_bytes: usize,
    /// Bytes written since the connection started.
    bytes_out: u64,
}

/// What a finished batch held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// Frames, none of them a close frame.
    Frames,
    /// A close frame, which is the last thing a connection writes.
    Close,
}

impl FrameWriter {
    /// Whether everything handed over has been written.
    pub(crate) fn is_idle(&self) -> bool {
        self.batch.is_empty()
    }

    /// Hands over a batch; the writer must be idle.
    pub(crate) fn start(&mut self, batch: Batch) {
        debug_assert!(self.is_idle());
        self.text_bytes = batch.texts.iter().map(|t| t.len()).sum();
        self.batch = batch;
        self.written = 0;
    }

    /// The emptied queue of the last batch, for [`Outbox::take`](super::outbox::Outbox::take)
    /// (only called when idle).
    pub(crate) fn spare(&mut self) -> &mut VecDeque<Bytes> {
        debug_assert!(self.is_idle());
        &mut self.batch.texts
    }

    /// Bytes written since the connection started (it grows with every write that progressed).
    pub(crate) fn bytes_out(&self) -> u64 {
        self.bytes_out
    }

    /// Text frames and payload bytes of the batch not fully written yet.
    pub(crate) fn pending(&self) -> (usize, usize) {
        (self.batch.texts.len(), self.text_bytes)
    }

    /// Writes until the batch is out (`Ready(Ok(_))`, the batch's memory freed) or `io` is not
    /// ready.
    pub(crate) fn poll_write<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Written>> {
        let has_close = self.batch.close.is_some();
        while !self.is_idle() {
            // Most batches hold one frame: small, it goes out in one plain write; larger, its
            // two slices need no 64-frame arrays to set up.
            let written = if self.frame_count() == 1 {
                self.poll_write_one(io, cx)
            } else {
                self.poll_write_some::<FRAMES_PER_WRITE, W>(io, cx)
            };
            match written {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        match Pin::new(&mut *io).poll_flush(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        // The emptied queue goes back to the outbox for the next pushes (`spare`), unless a
        // burst made it large.
        let texts = std::mem::take(&mut self.batch.texts);
        self.batch = Batch::default();
        if texts.capacity() <= RECYCLE_UP_TO {
            self.batch.texts = texts;
        }
        Poll::Ready(Ok(if has_close {
            Written::Close
        } else {
            Written::Frames
        }))
    }

    /// Writes the batch's only frame, from where the last write stopped.
    fn poll_write_one<W: AsyncWrite + Unpin>(
        &self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        let Some((opcode, payload)) = self.frames().next() else {
            return Poll::Ready(Ok(0));
        };
        let mut head = [0u8; 10];
        let head_len = format_head(opcode, payload.len(), &mut head);
        let size = head_len + payload.len();
        if size > COPY_UP_TO {
            return self.poll_write_some::<1, W>(io, cx);
        }
        let mut frame = [0u8; COPY_UP_TO];
        frame[..head_len].copy_from_slice(&head[..head_len]);
        frame[head_len..size].copy_from_slice(payload);
        Pin::new(&mut *io).poll_write(cx, &frame[self.written..size])
    }

    /// One vectored write of up to `N` frames of the batch, from where the last one stopped.
    fn poll_write_some<const N: usize, W: AsyncWrite + Unpin>(
        &self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        let mut heads = [[0u8; 10]; N];
        let mut pairs = [[IoSlice::new(&[]); 2]; N];
        let slices = pairs.as_flattened_mut();
        let mut count = 0;
        let mut skip = self.written;
        for ((opcode, payload), head) in self.frames().take(N).zip(heads.iter_mut()) {
            let len = format_head(opcode, payload.len(), head);
            let (head, payload) = skip_prefix(&head[..len], payload, &mut skip);
            for part in [head, payload] {
                if !part.is_empty() {
                    slices[count] = IoSlice::new(part);
                    count += 1;
                }
            }
        }
        Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count])
    }

    /// How many frames the batch holds.
    fn frame_count(&self) -> usize {
        let batch = &self.batch;
        usize::from(batch.pong.is_some())
            + usize::from(batch.ping)
            + batch.texts.len()
            + usize::from(batch.close.is_some())
    }

    /// The frames of the batch in write order: pong, ping, texts, close.
    fn frames(&self) -> impl Iterator<Item = (u8, &[u8])> {
        let batch = &self.batch;
        let pong = batch.pong.iter().map(|p| (PONG, &p[..]));
        let ping = batch.ping.then_some((PING, &[][..]));
        let texts = batch.texts.iter().map(|t| (TEXT, &t[..]));
        let close = batch.close.iter().map(|c| (CLOSE, &c[..]));
        pong.chain(ping).chain(texts).chain(close)
    }

    /// Drops the first frames as `n` more bytes went out.
    fn advance(&mut self, mut n: usize) {
        self.bytes_out += n as u64;
        while n > 0 {
            let Some((opcode, payload)) = self.frames().next() else {
                return;
            };
            let size = head_len(payload.len()) + payload.len();
            let left = size - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.written = 0;
            let batch = &mut self.batch;
            match opcode {
                PONG if batch.pong.is_some() => batch.pong = None,
                PING if batch.ping => batch.ping = false,
                TEXT => {
                    let len = batch.texts.pop_front().map_or(0, |t| t.len());
                    self.text_bytes -= len;
                }
                _ => batch.close = None,
            }
        }
    }
}

/// The parts of `head` and `payload` left after skipping `skip` bytes (consumed from it).
fn skip_prefix<'a>(head: &'a [u8], payload: &'a [u8], skip: &mut usize) -> (&'a [u8], &'a [u8]) {
    let from_head = (*skip).min(head.len());
    let from_payload = (*skip - from_head).min(payload.len());
    *skip -= from_head + from_payload;
    (&head[from_head..], &payload[from_payload..])
}

/// Length of a server frame header for a payload of `len` bytes.
fn head_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// Writes the header of an unmasked, final frame into `out`; returns its length.
fn format_head(opcode: u8, len: usize, out: &mut [u8; 10]) -> usize {
    out[0] = 0x80 | opcode;
    match len {
        0..=125 => {
            out[1] = len as u8;
            2
        }
        126..=0xFFFF => {
            out[1] = 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = 127;
            out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    }
}

/// A single text frame as bytes, for tests.
#[cfg(test)]
pub(crate) fn text_frame(payload: &[u8]) -> bytes::Bytes {
    let mut head = [0u8; 10];
    let len = format_head(TEXT, payload.len(), &mut head);
    [&head[..len], payload].concat().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio::io::AsyncReadExt;

    /// Writes `batch` through a pipe that accepts `window` bytes per write.
    async fn write_all(batch: Batch, window: usize) -> (Vec<u8>, Written) {
        let (mut server, mut client) = tokio::io::duplex(window);
        let reader = tokio::spawn(async move {
            let mut out = Vec::new();
            client.read_to_end(&mut out).await.map(|_| out)
        });
        let mut writer = FrameWriter::default();
        writer.start(batch);
        let written = std::future::poll_fn(|cx| writer.poll_write(&mut server, cx))
            .await
            .unwrap();
        assert!(writer.is_idle());
        drop(server);
        (reader.await.unwrap().unwrap(), written)
    }

    #[tokio::test]
    async fn a_batch_is_written_in_order_through_any_window() {
        let big = Bytes::from(vec![b'b'; 70_000]);
        let mid = Bytes::from(vec![b'm'; 300]);
        let batch = || Batch {
            pong: Some(Bytes::from_static(b"p")),
            ping: true,
            texts: (0..12)
                .map(|i| [mid.clone(), big.clone(), Bytes::from(format!("t{i}"))][i % 3].clone())
                .collect(),
            close: Some(Bytes::from_static(&[0x03, 0xE8])),
        };
        let mut expected = vec![0x8A, 1, b'p', 0x89, 0];
        for text in &batch().texts {
            expected.extend_from_slice(&text_frame(text));
        }
        expected.extend_from_slice(&[0x88, 2, 0x03, 0xE8]);
        for window in [7, 4096, 1 << 20] {
            let (bytes, written) = write_all(batch(), window).await;
            assert_eq!(written, Written::Close);
            assert!(bytes == expected, "window {window}");
        }
    }

    #[tokio::test]
    async fn a_lone_frame_is_written_whole_through_any_window() {
        // Around the copy limit: copied into one write below it, two slices above it.
        for len in [
            0,
            1,
            100,
            COPY_UP_TO - 4,
            COPY_UP_TO - 3,
            COPY_UP_TO,
            70_000,
        ] {
            let payload = Bytes::from(vec![b'x'; len]);
            let batch = || Batch {
                texts: [payload.clone()].into(),
                ..Batch::default()
            };
            for window in [1, 7, 4096] {
                let (bytes, written) = write_all(batch(), window).await;
                assert_eq!(written, Written::Frames);
                assert!(bytes == text_frame(&payload), "len {len}, window {window}");
            }
        }
    }

    #[test]
    fn headers_use_the_shortest_length_form() {
        let mut head = [0u8; 10];
        assert_eq!(format_head(TEXT, 125, &mut head), 2);
        assert_eq!(&head[..2], &[0x81, 125]);
        assert_eq!(format_head(TEXT, 126, &mut head), 4);
        assert_eq!(&head[..4], &[0x81, 126, 0, 126]);
        assert_eq!(format_head(TEXT, 65_536, &mut head), 10);
        assert_eq!(&head[..10], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(head_len(65_535), 4);
    }
}
