//! The fastwebsockets side of the differential target: its server-side frame reader, with the
//! RFC 6455 rules it leaves to the application applied on top, reporting in crosswire's terms.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use crosswire_ws::fuzzing::{ChunkedInput, End, Msg};
use fastwebsockets::{OpCode, Role, WebSocket, WebSocketError};

use crate::normalize::{fastwebsockets_limit, Cut};

/// Reads `stream` (normalized) with fastwebsockets, served in pieces of `chunks`, up to `cut`.
pub fn read_messages(
    stream: &[u8],
    chunks: &[usize],
    max_message: usize,
    cut: Option<Cut>,
) -> (Vec<Msg>, End) {
    let mut ws = WebSocket::after_handshake(ChunkedInput::new(stream, chunks), Role::Server);
    ws.set_auto_close(false);
    ws.set_auto_pong(false);
    ws.set_max_message_size(fastwebsockets_limit(max_message));
    let mut messages = Vec::new();
    let mut rules = Rules {
        max_message,
        text: None,
        binary: None,
    };
    let end = block_on(async {
        let mut frame_index = 0;
        loop {
            if let Some(cut) = cut.filter(|cut| cut.frame == frame_index) {
                return End::Violation(cut.code, "cut");
            }
            frame_index += 1;
            let frame = match ws.read_frame().await {
                Ok(frame) => frame,
                // fastwebsockets checks an unfragmented text frame's UTF-8 before its caller
                // sees the frame; inside a fragmented message, the frame is out of place first.
                Err(WebSocketError::InvalidUTF8) if rules.in_message() => {
                    return End::Violation(1002, "rule")
                }
                Err(error) => return end_of(error),
            };
            match rules.on_frame(frame.fin, frame.opcode, &frame.payload) {
                Ok(Some(Step::Message(message))) => messages.push(message),
                Ok(Some(Step::Close(message))) => {
                    messages.push(message);
                    return End::Closed;
                }
                Ok(None) => {}
                Err(code) => return End::Violation(code, "rule"),
            }
        }
    });
    (messages, end)
}

fn end_of(error: WebSocketError) -> End {
    match error {
        WebSocketError::UnexpectedEOF => End::Eof,
        WebSocketError::IoError(e) => End::Io(e.to_string()),
        WebSocketError::FrameTooLarge => End::Violation(1009, "FrameTooLarge"),
        WebSocketError::InvalidUTF8 => End::Violation(1007, "InvalidUTF8"),
        WebSocketError::ReservedBitsNotZero
        | WebSocketError::InvalidValue
        | WebSocketError::ControlFrameFragmented
        | WebSocketError::PingFrameTooLarge => End::Violation(1002, "protocol"),
        // Not expected from the plain frame reader with auto-close and auto-pong off.
        _ => End::Violation(0, "unexpected fastwebsockets error"),
    }
}

enum Step {
    Message(Msg),
    Close(Msg),
}

/// What RFC 6455 asks of a server and fastwebsockets' frame reader leaves to its caller.
struct Rules {
    max_message: usize,
    /// The fragmented text message being assembled.
    text: Option<Vec<u8>>,
    /// The fragmented binary message being assembled (like text, with no UTF-8 rule).
    binary: Option<Vec<u8>>,
}

impl Rules {
    fn in_message(&self) -> bool {
        self.text.is_some() || self.binary.is_some()
    }

    fn on_frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) -> Result<Option<Step>, u16> {
        let in_message = self.in_message();
        Ok(Some(Step::Message(match opcode {
            OpCode::Text | OpCode::Binary if in_message => return Err(1002),
            // fastwebsockets checked the UTF-8 of a whole (fin) text frame.
            OpCode::Text if fin => Msg::Text(payload.to_vec()),
            OpCode::Text => {
                fail_fast_utf8(payload, false)?;
                self.text = Some(payload.to_vec());
                return Ok(None);
            }
            OpCode::Binary if fin => Msg::Binary(payload.to_vec()),
            OpCode::Binary => {
                self.binary = Some(payload.to_vec());
                return Ok(None);
            }
            OpCode::Continuation => {
                if let Some(binary) = self.binary.as_mut() {
                    binary.extend_from_slice(payload);
                    if binary.len() > self.max_message {
                        return Err(1009); // normalize::Cut predicts this one
                    }
                    if !fin {
                        return Ok(None);
                    }
                    return Ok(Some(Step::Message(Msg::Binary(
                        self.binary.take().unwrap_or_default(),
                    ))));
                }
                let text = self.text.as_mut().ok_or(1002u16)?;
                text.extend_from_slice(payload);
                if text.len() > self.max_message {
                    return Err(1009); // normalize::Cut predicts this one
                }
                fail_fast_utf8(text, fin)?;
                if !fin {
                    return Ok(None);
                }
                Msg::Text(self.text.take().unwrap_or_default())
            }
            OpCode::Close => return close(payload).map(|m| Some(Step::Close(m))),
            OpCode::Ping => Msg::Ping(payload.to_vec()),
            OpCode::Pong => Msg::Pong,
        })))
    }
}

/// Fails a text message as soon as it cannot be UTF-8 (RFC 6455 §8.1): before its last
/// fragment, only a code point left unfinished at the end is allowed.
fn fail_fast_utf8(text: &[u8], last: bool) -> Result<(), u16> {
    match std::str::from_utf8(text) {
        Err(e) if last || e.error_len().is_some() => Err(1007),
        _ => Ok(()),
    }
}

/// A close frame's code and reason, checked as RFC 6455 §5.5.1 and §7.4 ask.
fn close(payload: &[u8]) -> Result<Msg, u16> {
    match payload {
        [] => Ok(Msg::Close(1005, String::new())),
        [_] => Err(1002),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close_code_allowed(code) {
                return Err(1002);
            }
            let reason = std::str::from_utf8(reason).map_err(|_| 1007u16)?;
            Ok(Msg::Close(code, reason.to_owned()))
        }
    }
}

/// Close codes a peer may send: RFC 6455 §7.4.1 and the IANA registry (1012-1014), minus
/// those that must not be sent (1005, 1006, 1015), plus the 3000-4999 application ranges.
///
/// 1014 (Bad Gateway, IANA) is left out: crosswire uses fastwebsockets' `CloseCode`, which
/// refuses it (a listed difference).
fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999)
}

/// Runs `future` to completion; [`ChunkedInput`] is `Pending` at most once in a row.
fn block_on<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
    }
}
