//! The tokens that make accounting exact, and a scanner that finds them in a frame without
//! parsing its JSON.
//!
//! - `d<step>:<seq>:<nanos>`: an accounted message: a push's `msg` or an RPC's `callbackId`;
//!   `nanos` is [`super::clock::now_nanos`] when it was sent. It may be followed by `~` and
//!   padding ([`padded`]), to give a message a realistic size.
//! - any other `callbackId` (e.g. `c17`, `j3`): a reply that is only counted.
//! - an empty text frame: the application heartbeat's reply (default heartbeat string).

/// Formats the token of message `seq` of step `step`, sent at `nanos`.
pub(crate) fn delivery(step: u32, seq: u64, nanos: u64) -> String {
    format!("d{step}:{seq}:{nanos}")
}

/// Like [`delivery`], followed by `~` and `x`s up to `len` bytes in all (never shorter than
/// the bare token): a push of a chosen size that the scanner still finds.
pub(crate) fn padded(step: u32, seq: u64, nanos: u64, len: usize) -> String {
    let mut token = delivery(step, seq, nanos);
    if len > token.len() {
        token.push('~');
        let pad = len.saturating_sub(token.len());
        token.extend(std::iter::repeat_n('x', pad));
    }
    token
}

/// What a received text frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// An accounted message (push `msg` or reply `callbackId` starting with `d`).
    Delivery {
        /// The step id it belongs to.
        step: u32,
        /// Its sequence number in that step.
        seq: u64,
        /// When it was sent, in generator-clock nanoseconds.
        sent_nanos: u64,
        /// It came as the reply to a request (`callbackId`), not as a push.
        reply: bool,
    },
    /// A reply whose `callbackId` is not a delivery token.
    Reply {
        /// The first byte of the `callbackId` (`c` command, `j` join, ...).
        kind: u8,
        /// Its `msg` says it failed (`Failed ...`, `Missing ...`, `Unknown ...`).
        failed: bool,
    },
    /// The heartbeat reply (empty text frame).
    Heartbeat,
    /// Anything else (a push without a token, a foreign frame).
    Other,
}

/// Classifies a text frame by scanning for `"callbackId"` and `"msg"`.
pub(crate) fn classify(frame: &[u8]) -> Received {
    if frame.is_empty() {
        return Received::Heartbeat;
    }
    if let Some(id) = string_field(frame, b"\"callbackId\"") {
        if let Some(d) = parse_delivery(id, true) {
            return d;
        }
        let failed = string_field(frame, b"\"msg\"").is_some_and(|m| {
            m.starts_with(b"Failed") || m.starts_with(b"Missing") || m.starts_with(b"Unknown")
        });
        return Received::Reply {
            kind: id.first().copied().unwrap_or(b'?'),
            failed,
        };
    }
    match string_field(frame, b"\"msg\"").and_then(|m| parse_delivery(m, false)) {
        Some(d) => d,
        None => Received::Other,
    }
}

fn parse_delivery(token: &[u8], reply: bool) -> Option<Received> {
    let token = token.split(|&b| b == b'~').next()?;
    let rest = token.strip_prefix(b"d")?;
    let mut parts = rest.split(|&b| b == b':');
    let step = number(parts.next()?)?;
    let seq = number(parts.next()?)?;
    let sent_nanos = number(parts.next()?)?;
    if parts.next().is_some() {
        return None;
    }
    Some(Received::Delivery {
        step: u32::try_from(step).ok()?,
        seq,
        sent_nanos,
        reply,
    })
}

fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

/// The raw content of the first JSON string value after `key` (a quoted key), without
/// unescaping: tokens never contain escapes.
fn string_field<'a>(frame: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = find(frame, key)? + key.len();
    let rest = skip_ws(&frame[at..]);
    let rest = skip_ws(rest.strip_prefix(b":")?);
    let rest = rest.strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    Some(&rest[..end])
}

fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(i) = hay[from..].iter().position(|&b| b == first) {
        let at = from + i;
        if hay[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_pushes_replies_and_heartbeats() {
        let push = br#"{"event":"say","payload":{"action":"broadcast","msg":"d3:17:123"}}"#;
        assert_eq!(
            classify(push),
            Received::Delivery {
                step: 3,
                seq: 17,
                sent_nanos: 123,
                reply: false
            }
        );
        let rpc = br#"{"callbackId": "d1:2:3","payload":{"msg":"I am","echo":{"msg":"d9:9:9"}}}"#;
        assert!(matches!(
            classify(rpc),
            Received::Delivery {
                step: 1,
                reply: true,
                ..
            }
        ));
        let cmd = br#"{"callbackId":"c5","payload":{"msg":"Message sent successfully"}}"#;
        assert_eq!(
            classify(cmd),
            Received::Reply {
                kind: b'c',
                failed: false
            }
        );
        let join = br#"{"callbackId":"j5","payload":{"msg":"Failed to join the room"}}"#;
        assert_eq!(
            classify(join),
            Received::Reply {
                kind: b'j',
                failed: true
            }
        );
        assert_eq!(classify(b""), Received::Heartbeat);
        assert_eq!(
            classify(br#"{"event":"x","payload":{"msg":"hi"}}"#),
            Received::Other
        );
        assert_eq!(classify(br#"{"msg":"d1:x:3"}"#), Received::Other);
        assert_eq!(delivery(1, 2, 3), "d1:2:3");
        let long = padded(4, 5, 6, 200);
        assert_eq!(long.len(), 200);
        let push =
            format!(r#"{{"event":"say","payload":{{"action":"broadcast","msg":"{long}"}}}}"#);
        assert_eq!(
            classify(push.as_bytes()),
            Received::Delivery {
                step: 4,
                seq: 5,
                sent_nanos: 6,
                reply: false
            }
        );
        assert_eq!(padded(1, 2, 3, 0), "d1:2:3");
    }
}
