//! Making a byte stream comparable between crosswire's reader and fastwebsockets'.
//!
//! fastwebsockets' reader checks less than RFC 6455 asks of a server (see the list at the top
//! of `fuzz_targets/frame_differential.rs`). The checks it lacks that can be made on the
//! fastwebsockets frames themselves are made in [`crate::oracle`]; the ones that crosswire
//! makes on a frame's header, before its payload arrives, are predicted here by walking the
//! frame headers the way both readers do:
//!
//! - every frame is made masked (fastwebsockets accepts unmasked client frames);
//! - the first frame that only crosswire refuses at its header ends the comparison there: a
//!   64-bit length with its top bit set (fastwebsockets refuses it as too large, 1009;
//!   crosswire as a protocol error, 1002), a close or pong longer than 125 bytes, a data frame
//!   over a limit below fastwebsockets' (see [`fastwebsockets_limit`]), and a continuation
//!   that takes its (text or binary) message over the limit.
//!
//! The walk stops at the first frame both readers stop at (a close frame, or one both refuse):
//! what follows is never read.

/// The limit fastwebsockets gets for crosswire's `max_message`. fastwebsockets refuses a frame
/// of its limit or more, control frames included; crosswire a data message of more than its
/// limit, and never a control frame for its size (those are 125 bytes at most). So it gets one
/// more than crosswire's limit, and at least 126.
pub fn fastwebsockets_limit(max_message: usize) -> usize {
    max_message.saturating_add(1).max(126)
}

/// The first frame crosswire refuses at its header and fastwebsockets does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Index of the frame in the stream (0 for the first).
    pub frame: usize,
    /// The close code crosswire refuses it with.
    pub code: u16,
}

/// `stream` with every frame masked, and where crosswire alone refuses a frame.
pub fn normalize(stream: &[u8], max_message: usize) -> (Vec<u8>, Option<Cut>) {
    let mut out = stream.to_vec();
    let cut = walk(&mut out, max_message);
    (out, cut)
}

fn walk(out: &mut [u8], max_message: usize) -> Option<Cut> {
    let mut at = 0;
    let mut frame = 0;
    // The length so far of the fragmented text or binary message being received.
    let mut text: Option<usize> = None;
    let mut binary: Option<usize> = None;
    loop {
        let rest = out.get_mut(at..)?;
        if rest.len() < 2 {
            return None;
        }
        rest[1] |= 0x80;
        let (b0, b1) = (rest[0], rest[1]);
        let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0F);
        if b0 & 0x70 != 0 || !matches!(opcode, 0x0 | 0x1 | 0x2 | 0x8 | 0x9 | 0xA) {
            return None; // both refuse it
        }
        let extra = match b1 & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let head = 2 + extra + 4;
        if rest.len() < head {
            return None; // both wait for the rest of the header
        }
        let len = match extra {
            0 => u64::from(b1 & 0x7F),
            2 => u64::from(u16::from_be_bytes([rest[2], rest[3]])),
            _ => u64::from_be_bytes(rest[2..10].try_into().ok()?),
        };
        if len >> 63 != 0 {
            return Some(Cut { frame, code: 1002 });
        }
        let control = opcode >= 0x8;
        if control && !fin {
            return None; // both refuse it
        }
        if control && len > 125 {
            // fastwebsockets refuses long pings only.
            return (opcode != 0x9).then_some(Cut { frame, code: 1002 });
        }
        let len = usize::try_from(len).ok()?;
        if !control && len > max_message {
            // crosswire refuses it as too big; fastwebsockets only from its own limit on.
            let both = len >= fastwebsockets_limit(max_message);
            return (!both).then_some(Cut { frame, code: 1009 });
        }
        let assembled = if opcode == 0x0 { text.or(binary) } else { None };
        if assembled.is_some_and(|a| a.saturating_add(len) > max_message) {
            return Some(Cut { frame, code: 1009 });
        }
        if rest.len() - head < len {
            return None; // both wait for the payload
        }
        let next = |so_far: usize| (!fin).then_some(so_far + len);
        match opcode {
            0x1 | 0x2 if text.is_some() || binary.is_some() => return None, // both refuse it
            0x1 => text = next(0),
            0x2 => binary = next(0),
            0x0 => match (text, binary) {
                (Some(t), _) => text = next(t),
                (None, Some(b)) => binary = next(b),
                (None, None) => return None, // both refuse it
            },
            0x8 => return None, // both stop after a close frame
            _ => {}
        }
        at += head + len;
        frame += 1;
    }
}
