//! What is left to discard after this side sent its close frame while the peer was still
//! sending: the peer's frames are skipped without being kept or decoded, until its close
//! frame. Only a frame header's bytes are ever held.
//!
//! Why: closing the TCP socket while the peer's bytes still arrive makes the kernel answer
//! with a reset, and the peer's stack then drops our close frame unread (a client sending a
//! message over the size limit saw 1006 instead of 1009).

use super::reader::{head_len, MAX_HEAD};

/// Close frame opcode.
const CLOSE: u8 = 0x8;

/// The extent of the frame whose header starts `head`, read leniently: reserved bits, unknown
/// opcodes and a missing mask do not matter here, only where the frame ends. `Ok(None)` while
/// the header is incomplete, `Err(())` for a 64-bit length with its top bit set (the stream is
/// not frames any more). Gives (opcode, header length, payload length).
fn frame_extent(head: &[u8]) -> Result<Option<(u8, usize, u64)>, ()> {
    let [b0, b1, ..] = *head else {
        return Ok(None);
    };
    let payload_len = match (b1 & 0x7F, head.get(2..4), head.get(2..10)) {
        (126, Some(&[hi, lo]), _) => u64::from(u16::from_be_bytes([hi, lo])),
        (127, _, Some(len)) => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(len);
            let len = u64::from_be_bytes(bytes);
            if len >> 63 != 0 {
                return Err(());
            }
            len
        }
        (126 | 127, _, _) => return Ok(None),
        (short, _, _) => u64::from(short),
    };
    let head_len = head_len(b1);
    if head.len() < head_len {
        return Ok(None);
    }
    Ok(Some((b0 & 0x0F, head_len, payload_len)))
}

/// The drain's position in the peer's byte stream.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    /// The start of a frame header not complete yet.
    head: [u8; MAX_HEAD],
    head_len: usize,
    /// Payload bytes of the current frame still to skip.
    skip: u64,
    /// The stream no longer parses as frames: everything is discarded until it ends.
    raw: bool,
    /// The peer's close frame was seen.
    done: bool,
}

impl Drain {
    /// Whether the peer's close frame has been seen.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Skips through `data`, frame by frame.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.done && !self.raw {
            if self.skip > 0 {
                let n = usize::try_from(self.skip).map_or(data.len(), |s| s.min(data.len()));
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            let had = self.head_len;
            let take = (MAX_HEAD - had).min(data.len());
            self.head[had..had + take].copy_from_slice(&data[..take]);
            self.head_len += take;
            match frame_extent(&self.head[..self.head_len]) {
                Ok(None) => data = &data[take..],
                Ok(Some((opcode, head_len, payload_len))) => {
                    // Bytes copied past the header belong to the payload.
                    data = &data[head_len - had..];
                    self.head_len = 0;
                    self.done = opcode == CLOSE;
                    self.skip = payload_len;
                }
                Err(()) => self.raw = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame header for a payload of `len` bytes, and the payload.
    fn frame(opcode: u8, len: usize) -> Vec<u8> {
        let mut out = vec![0x80 | opcode];
        match len {
            0..=125 => out.push(0x80 | len as u8),
            126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&[9, 9, 9, 9]);
        out.extend(std::iter::repeat_n(0x55, len));
        out
    }

    #[test]
    fn the_close_frame_is_found_behind_a_large_frame_whatever_the_chunks() {
        let mut stream = frame(0x1, 200_000);
        stream.extend(frame(0x9, 3));
        stream.extend(frame(0x0, 70));
        // Binary frames are skipped like text ones, their bytes never decoded.
        stream.extend(frame(0x2, 70_000));
        stream.extend(frame(0x2, 0));
        let close_at = stream.len();
        stream.extend(frame(CLOSE, 2));
        for chunk in [1, 2, 13, 14, 15, 4096, 1 << 20] {
            let mut drain = Drain::default();
            let mut fed = 0;
            for piece in stream.chunks(chunk) {
                drain.feed(piece);
                fed += piece.len();
                if fed <= close_at {
                    assert!(!drain.is_done(), "chunk {chunk}: done after {fed} bytes");
                }
            }
            assert!(drain.is_done(), "chunk {chunk}");
        }
    }

    #[test]
    fn a_claimed_length_is_skipped_not_kept() {
        let mut drain = Drain::default();
        let mut head = vec![0x81, 0xFF];
        head.extend_from_slice(&(1u64 << 62).to_be_bytes());
        head.extend_from_slice(&[1, 2, 3, 4]);
        drain.feed(&head);
        drain.feed(&[0u8; 10_000]);
        assert!(!drain.is_done());
        assert_eq!(drain.skip, (1 << 62) - 10_000);
    }

    #[test]
    fn frames_the_reader_refuses_are_still_skipped_to_the_close() {
        // Reserved bits and an unknown opcode; an unmasked frame; then the close.
        let mut stream = vec![0xF3, 0x82, 1, 2, 3, 4, b'a', b'b', 0x81, 0x01, b'c'];
        stream.extend(frame(CLOSE, 2));
        let mut drain = Drain::default();
        drain.feed(&stream);
        assert!(drain.is_done());
    }

    #[test]
    fn a_length_with_the_top_bit_set_is_garbage_until_the_stream_ends() {
        let mut drain = Drain::default();
        let mut head = vec![0x81, 0xFF];
        head.extend_from_slice(&(1u64 << 63).to_be_bytes());
        drain.feed(&head);
        assert!(drain.raw);
        drain.feed(&frame(CLOSE, 0));
        assert!(
            !drain.is_done(),
            "a close frame is not looked for in garbage"
        );
    }
}
