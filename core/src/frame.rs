//! Client frames (`PROTOCOL.md` §1): parsing what clients send, encoding what they receive.
//!
//! Outgoing frames are encoded once into [`Bytes`] and the same bytes are written to every
//! recipient. Incoming frames are validated without building a `serde_json::Value`: the payload
//! stays raw JSON until a handler asks for it.

use std::borrow::Cow;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::Error;

/// The longest `callbackId` the protocol accepts.
pub const MAX_CALLBACK_ID_LEN: usize = 64;

/// A JSON payload kept as its raw text until a handler decodes it.
#[derive(Clone, PartialEq, Eq)]
pub struct Payload(Bytes);

impl Payload {
    /// Wraps bytes that are known to hold one valid JSON value.
    pub(crate) fn from_json_bytes(bytes: Bytes) -> Self {
        Payload(bytes)
    }

    /// The payload of raw JSON that serde has already validated, copied as is.
    pub fn from_raw(raw: &RawValue) -> Self {
        Payload(Bytes::copy_from_slice(raw.get().as_bytes()))
    }

    /// Encodes any serializable value.
    ///
    /// # Errors
    /// [`Error::Encode`] if `value` cannot be represented as JSON.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        serde_json::to_vec(value)
            .map(|v| Payload(Bytes::from(v)))
            .map_err(Error::Encode)
    }

    /// Decodes the payload into `T`.
    ///
    /// # Errors
    /// [`Error::Decode`] if the JSON does not fit `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.0).map_err(Error::Decode)
    }

    /// The payload as a `serde_json::Value` (`Null` if it cannot be decoded).
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_slice(&self.0).unwrap_or(serde_json::Value::Null)
    }

    /// The raw JSON text.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

/// Serializes as the JSON value it holds, unchanged: a handler can put a payload into its
/// reply or forward it without decoding it. (It serializes as serde_json's `RawValue` does:
/// formats other than JSON get a struct of one field, the JSON text.)
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use crosswire_core::Payload;
///
/// #[derive(serde::Serialize)]
/// struct Echo<'a> {
///     msg: &'static str,
///     echo: &'a Payload,
/// }
///
/// let node = crosswire_core::Node::builder().build().await?;
/// node.on("say", |ev| async move {
///     ev.reply(&Echo { msg: "got it", echo: ev.payload() })
/// });
/// let payload = Payload::encode(&[1, 2])?;
/// let reply = serde_json::to_string(&Echo { msg: "got it", echo: &payload })?;
/// assert_eq!(reply, r#"{"msg":"got it","echo":[1,2]}"#);
/// # Ok(()) }
/// ```
impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Checked again (a scan, no allocation): a client's payload was checked with its frame,
        // but one from another node comes as the broker carried it, and is an error if bad.
        let raw: &RawValue = serde_json::from_slice(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// Why a client frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The text is not valid JSON.
    #[error("not valid JSON")]
    NotJson,
    /// The JSON is not an object.
    #[error("not a JSON object")]
    NotObject,
    /// The object has no string `event`, or it is empty.
    #[error("missing or empty `event`")]
    MissingEvent,
}

/// A parsed client frame.
#[derive(Debug, PartialEq)]
pub(crate) enum Incoming<'a> {
    /// The application heartbeat string.
    Heartbeat,
    /// `{"event": E, "payload": P, "callbackId"?: C}`.
    Event {
        event: Cow<'a, str>,
        payload: &'a str,
        callback_id: Option<String>,
    },
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "callbackId")]
    callback_id: Option<&'a RawValue>,
}

/// An optional string that borrows from the frame unless it has escapes. (Serde borrows a bare
/// `Cow<str>` field marked `borrow`, but always copies one inside an `Option`.)
fn borrowed_str<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'de, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'de>>::deserialize(deserializer)?.map(|b| b.0))
}

/// Parses a frame's JSON object into `T`, telling text that is not JSON from JSON that is not
/// an object, and from an object without the fields `T` needs.
fn parse_object<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, FrameError> {
    if !text.trim_start().starts_with('{') {
        return Err(if serde_json::from_str::<&RawValue>(text).is_ok() {
            FrameError::NotObject
        } else {
            FrameError::NotJson
        });
    }
    serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            FrameError::MissingEvent
        } else {
            FrameError::NotJson
        }
    })
}

/// Parses one text frame. `heartbeat` is the configured heartbeat string.
pub(crate) fn parse<'a>(text: &'a str, heartbeat: &str) -> Result<Incoming<'a>, FrameError> {
    if text == heartbeat {
        return Ok(Incoming::Heartbeat);
    }
    let raw: RawFrame<'a> = parse_object(text)?;
    let event = match raw.event {
        Some(event) if !event.is_empty() => event,
        _ => return Err(FrameError::MissingEvent),
    };
    let payload = raw.payload.map_or("null", RawValue::get);
    let callback_id = raw
        .callback_id
        .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
        .filter(|id| !id.is_empty() && id.chars().count() <= MAX_CALLBACK_ID_LEN);
    Ok(Incoming::Event {
        event,
        payload,
        callback_id,
    })
}

/// A frame from a server, as a client sees it.
#[derive(Debug)]
pub enum ServerFrame<'a> {
    /// The heartbeat echo: the whole text equals the heartbeat string.
    Heartbeat,
    /// `{"callbackId": C, "payload": R}`: the reply to request `C`.
    Reply {
        /// The request's callback id.
        callback_id: Cow<'a, str>,
        /// The reply (`null` when absent).
        payload: &'a RawValue,
    },
    /// `{"event": E, "payload": P}`: a push.
    Push {
        /// The event name.
        event: Cow<'a, str>,
        /// The payload (`null` when absent).
        payload: &'a RawValue,
    },
}

#[derive(Deserialize)]
struct RawServerFrame<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(
        borrow,
        default,
        rename = "callbackId",
        deserialize_with = "borrowed_str"
    )]
    callback_id: Option<Cow<'a, str>>,
}

/// Parses one text frame a server sent. `heartbeat` is the configured heartbeat string.
///
/// # Errors
/// [`FrameError`] when the text is not a JSON object with a string `event` or `callbackId`.
pub fn parse_server_frame<'a>(
    text: &'a str,
    heartbeat: &str,
) -> Result<ServerFrame<'a>, FrameError> {
    if text == heartbeat {
        return Ok(ServerFrame::Heartbeat);
    }
    let raw: RawServerFrame<'a> = parse_object(text)?;
    let payload = raw.payload.unwrap_or(RawValue::NULL);
    match (raw.callback_id, raw.event) {
        (Some(callback_id), _) => Ok(ServerFrame::Reply {
            callback_id,
            payload,
        }),
        (None, Some(event)) if !event.is_empty() => Ok(ServerFrame::Push { event, payload }),
        _ => Err(FrameError::MissingEvent),
    }
}

#[derive(Serialize)]
struct ClientFrame<'a, T: ?Sized> {
    event: &'a str,
    payload: &'a T,
    #[serde(rename = "callbackId", skip_serializing_if = "Option::is_none")]
    callback_id: Option<&'a str>,
}

/// Encodes a client frame: `{"event": E, "payload": P}`, with `"callbackId": C` for a request,
/// exactly as the JavaScript connector writes it.
///
/// # Errors
/// [`Error::Encode`] if `payload` cannot be represented as JSON.
pub fn encode_client_event<T: Serialize + ?Sized>(
    event: &str,
    payload: &T,
    callback_id: Option<&str>,
) -> Result<Bytes, Error> {
    serde_json::to_vec(&ClientFrame {
        event,
        payload,
        callback_id,
    })
    .map(Bytes::from)
    .map_err(Error::Encode)
}

#[derive(Serialize)]
struct PushFrame<'a, T: ?Sized> {
    event: &'a str,
    payload: &'a T,
}

#[derive(Serialize)]
struct ReplyFrame<'a, T: ?Sized> {
    #[serde(rename = "callbackId")]
    callback_id: &'a str,
    payload: &'a T,
}

/// Encodes a push `{"event": E, "payload": P}` once, for any number of recipients.
///
/// # Errors
/// [`Error::Encode`] if `payload` cannot be represented as JSON.
pub fn encode_push<T: Serialize + ?Sized>(event: &str, payload: &T) -> Result<Bytes, Error> {
    serde_json::to_vec(&PushFrame { event, payload })
        .map(Bytes::from)
        .map_err(Error::Encode)
}

/// Encodes a reply `{"callbackId": C, "payload": R}`.
pub(crate) fn encode_reply<T: Serialize + ?Sized>(
    callback_id: &str,
    payload: &T,
) -> Result<Bytes, Error> {
    serde_json::to_vec(&ReplyFrame {
        callback_id,
        payload,
    })
    .map(Bytes::from)
    .map_err(Error::Encode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(text: &str) -> (String, String, Option<String>) {
        match parse(text, "").expect("valid frame") {
            Incoming::Event {
                event,
                payload,
                callback_id,
            } => (event.into_owned(), payload.to_owned(), callback_id),
            Incoming::Heartbeat => panic!("not an event"),
        }
    }

    #[test]
    fn heartbeat_is_the_exact_configured_string() {
        assert_eq!(parse("", ""), Ok(Incoming::Heartbeat));
        assert_eq!(parse("ping", "ping"), Ok(Incoming::Heartbeat));
        assert_eq!(parse(" ", ""), Err(FrameError::NotJson));
    }

    #[test]
    fn event_with_and_without_callback() {
        assert_eq!(
            event(r#"{"event":"say","payload":{"a":1}}"#),
            ("say".into(), r#"{"a":1}"#.into(), None)
        );
        assert_eq!(
            event(r#"{"event":"say","payload":[1],"callbackId":"c1"}"#),
            ("say".into(), "[1]".into(), Some("c1".into()))
        );
        assert_eq!(event(r#"{"event":"x"}"#).1, "null");
        assert_eq!(event(r#"{"event":"caf\u00e9"}"#).0, "café");
    }

    #[test]
    fn bad_callback_ids_make_a_plain_event() {
        assert_eq!(event(r#"{"event":"e","callbackId":""}"#).2, None);
        assert_eq!(event(r#"{"event":"e","callbackId":7}"#).2, None);
        let long = "x".repeat(65);
        assert_eq!(
            event(&format!(r#"{{"event":"e","callbackId":"{long}"}}"#)).2,
            None
        );
        let max = "x".repeat(64);
        assert_eq!(
            event(&format!(r#"{{"event":"e","callbackId":"{max}"}}"#)).2,
            Some(max)
        );
    }

    #[test]
    fn malformed_frames_are_rejected() {
        assert_eq!(parse("{", ""), Err(FrameError::NotJson));
        assert_eq!(parse("hello", ""), Err(FrameError::NotJson));
        assert_eq!(parse("[1,2]", ""), Err(FrameError::NotObject));
        assert_eq!(parse("42", ""), Err(FrameError::NotObject));
        assert_eq!(parse(r#"["say",1]"#, ""), Err(FrameError::NotObject));
        assert_eq!(parse(r#"{"payload":1}"#, ""), Err(FrameError::MissingEvent));
        assert_eq!(parse(r#"{"event":""}"#, ""), Err(FrameError::MissingEvent));
        assert_eq!(parse(r#"{"event":5}"#, ""), Err(FrameError::MissingEvent));
        assert_eq!(
            parse(r#"{"event":"a"} trailing"#, ""),
            Err(FrameError::NotJson)
        );
    }

    #[test]
    fn push_and_reply_shapes() {
        let push = encode_push("say", &serde_json::json!({"msg": "hi"})).unwrap();
        assert_eq!(&push[..], br#"{"event":"say","payload":{"msg":"hi"}}"#);
        let reply = encode_reply("c1", &serde_json::json!(1)).unwrap();
        assert_eq!(&reply[..], br#"{"callbackId":"c1","payload":1}"#);
    }

    #[test]
    fn names_borrow_from_the_frame_unless_escaped() {
        let Ok(Incoming::Event { event, .. }) = parse(r#"{"event":"say"}"#, "") else {
            panic!("valid frame")
        };
        assert!(matches!(event, Cow::Borrowed("say")));
        let Ok(Incoming::Event { event, .. }) = parse(r#"{"event":"s\u00e9"}"#, "") else {
            panic!("valid frame")
        };
        assert_eq!(event, "sé");
        let frame = r#"{"callbackId":"c1","payload":1}"#;
        let Ok(ServerFrame::Reply { callback_id, .. }) = parse_server_frame(frame, "") else {
            panic!("valid reply")
        };
        assert!(matches!(callback_id, Cow::Borrowed("c1")));
    }

    #[test]
    fn a_payload_serializes_as_the_json_it_holds() {
        let frame = r#"{"event":"e","payload":{"b" : [1.50, "\u00e9"], "a":null}}"#;
        let Ok(Incoming::Event { payload, .. }) = parse(frame, "") else {
            panic!("valid frame")
        };
        let payload = Payload::from_json_bytes(Bytes::copy_from_slice(payload.as_bytes()));
        let reply = encode_reply("1", &payload).unwrap();
        let expected = r#"{"callbackId":"1","payload":{"b" : [1.50, "\u00e9"], "a":null}}"#;
        assert_eq!(std::str::from_utf8(&reply).unwrap(), expected);
        // A payload that is not JSON (another node's, as the broker carried it) is an error.
        let bad = Payload::from_json_bytes(Bytes::from_static(b"{\"a\":"));
        assert!(matches!(encode_reply("1", &bad), Err(Error::Encode(_))));
    }
}
