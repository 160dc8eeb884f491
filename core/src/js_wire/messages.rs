//! The package's message objects: what [`decode`](super::decode) reads out of a decoded
//! value for each channel, and the object [`encode`](super::encode) builds for a message, keys
//! in the package's order.

use super::value::{JsObject, JsValue};
use super::{BridgeKind, BridgeMessage, JsMessage, JsWireError};

/// A string value.
fn text(s: &str) -> Option<JsValue> {
    Some(JsValue::String(s.to_owned()))
}

/// An array of strings.
fn texts(list: &[String]) -> Option<JsValue> {
    Some(JsValue::Array(
        list.iter().map(|s| JsValue::String(s.clone())).collect(),
    ))
}

/// An object with `entries` in this order (absent values left out).
fn object(entries: Vec<(&str, Option<JsValue>)>) -> JsValue {
    JsValue::Object(JsObject::from_entries(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    ))
}

/// The object the package builds for `message`.
pub(super) fn to_value(message: &JsMessage) -> JsValue {
    match message {
        JsMessage::Bridge(bridge) => object(vec![("data", Some(bridge_value(bridge)))]),
        JsMessage::Sockets {
            ids,
            single,
            data,
            sender,
        } => {
            let target = match (single, ids.first()) {
                (true, Some(id)) => ("socketId", text(id)),
                (true, None) => ("socketId", None),
                (false, _) => ("socketIds", texts(ids)),
            };
            object(vec![
                ("data", text(data)),
                target,
                ("senderServer", text(sender)),
            ])
        }
        JsMessage::Broadcast { data, sender } => {
            object(vec![("data", text(data)), ("senderServer", text(sender))])
        }
        JsMessage::Room {
            namespace,
            room,
            exclude,
            data,
            sender,
        } => object(vec![
            ("data", text(data)),
            ("roomNamespace", text(namespace)),
            ("roomId", text(room)),
            ("senderServer", text(sender)),
            ("excludeSocketIds", texts(exclude)),
        ]),
        JsMessage::Custom(value) => value.clone(),
    }
}

/// The `data` object of a bridge message, keys in the package's order for its kind.
fn bridge_value(bridge: &BridgeMessage) -> JsValue {
    let event = ("event", text(&bridge.event));
    let sender = ("senderServer", text(&bridge.sender));
    let payload = ("payload", bridge.payload.clone());
    let targets = ("targetServer", texts(&bridge.targets));
    let callback = ("callbackId", bridge.callback_id.as_deref().and_then(text));
    object(match bridge.kind {
        BridgeKind::Event => vec![event, sender, payload, targets, callback],
        BridgeKind::PromiseEvent => vec![payload, event, sender, targets, callback],
        BridgeKind::Reply => vec![
            event,
            sender,
            targets,
            callback,
            ("isCallback", Some(JsValue::Bool(true))),
            payload,
        ],
    })
}

/// A field that must be a string when present: `Ok(None)` when absent or `null`.
fn optional_text<'a>(
    object: &'a JsObject,
    key: &'static str,
) -> Result<Option<&'a str>, JsWireError> {
    match object.get(key) {
        None | Some(JsValue::Null) => Ok(None),
        Some(JsValue::String(s)) => Ok(Some(s)),
        Some(_) => Err(JsWireError::WrongType(key)),
    }
}

/// `senderServer`: a string, `""` when absent.
pub(super) fn sender_of(object: &JsObject) -> Result<String, JsWireError> {
    Ok(optional_text(object, "senderServer")?
        .unwrap_or_default()
        .to_owned())
}

/// A ws message's `data`: a non-empty string (the package throws otherwise).
pub(super) fn frame_of(message: &JsObject) -> Result<String, JsWireError> {
    match message.get("data") {
        Some(JsValue::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(value) if value.is_truthy() => Err(JsWireError::WrongType("data")),
        _ => Err(JsWireError::Missing("data")),
    }
}

/// The string entries of an array field (`None` when the field is absent or falsy);
/// `keep_empty` keeps `""` entries.
fn string_list(
    object: &JsObject,
    key: &'static str,
    keep_empty: bool,
) -> Result<Option<Vec<String>>, JsWireError> {
    match object.get(key) {
        Some(JsValue::Array(items)) => Ok(Some(
            items
                .iter()
                .filter_map(JsValue::as_str)
                .filter(|s| keep_empty || !s.is_empty())
                .map(str::to_owned)
                .collect(),
        )),
        Some(value) if value.is_truthy() => Err(JsWireError::WrongType(key)),
        _ => Ok(None),
    }
}

/// A private-channel message: `socketIds` when truthy, else `socketId`.
pub(super) fn sockets_from(message: &JsObject) -> Result<JsMessage, JsWireError> {
    let data = frame_of(message)?;
    let sender = sender_of(message)?;
    if let Some(ids) = string_list(message, "socketIds", false)? {
        return Ok(JsMessage::Sockets {
            ids,
            single: false,
            data,
            sender,
        });
    }
    match message.get("socketId") {
        Some(JsValue::String(id)) if !id.is_empty() => Ok(JsMessage::Sockets {
            ids: vec![id.clone()],
            single: true,
            data,
            sender,
        }),
        Some(value) if value.is_truthy() => Err(JsWireError::WrongType("socketId")),
        _ => Err(JsWireError::Missing("socketId")),
    }
}

/// A room-channel message.
pub(super) fn room_from(message: &JsObject) -> Result<JsMessage, JsWireError> {
    let data = frame_of(message)?;
    let namespace = match message.get("roomNamespace") {
        Some(JsValue::String(s)) if !s.is_empty() => s.clone(),
        Some(value) if value.is_truthy() => return Err(JsWireError::WrongType("roomNamespace")),
        _ => return Err(JsWireError::Missing("roomNamespace")),
    };
    let room = optional_text(message, "roomId")?
        .ok_or(JsWireError::Missing("roomId"))?
        .to_owned();
    // A string `excludeSocketIds` would exclude by substring (`String#includes`): refused.
    let exclude = string_list(message, "excludeSocketIds", false)?.unwrap_or_default();
    Ok(JsMessage::Room {
        namespace,
        room,
        exclude,
        data,
        sender: sender_of(message)?,
    })
}

/// A bridge message's `data`.
pub(super) fn bridge_from(message: &JsObject) -> Result<BridgeMessage, JsWireError> {
    let Some(JsValue::Object(data)) = message.get("data") else {
        return Err(JsWireError::NotAnObject);
    };
    let sender = sender_of(data)?;
    let event = optional_text(data, "event")?.unwrap_or_default().to_owned();
    let callback_id = match data.get("callbackId") {
        Some(JsValue::String(id)) if !id.is_empty() => Some(id.clone()),
        Some(value) if value.is_truthy() => return Err(JsWireError::WrongType("callbackId")),
        _ => None,
    };
    let payload = data.get("payload").cloned();
    if data.get("isCallback").is_some_and(JsValue::is_truthy) {
        if sender.is_empty() {
            return Err(JsWireError::Missing("senderServer"));
        }
        if callback_id.is_none() {
            return Err(JsWireError::Missing("callbackId"));
        }
        // The package never reads a reply's targets; keep what is usable.
        let targets = string_list(data, "targetServer", true)
            .ok()
            .flatten()
            .unwrap_or_default();
        return Ok(BridgeMessage {
            kind: BridgeKind::Reply,
            event,
            sender,
            targets,
            callback_id,
            payload,
        });
    }
    if event.is_empty() {
        return Err(JsWireError::Missing("event"));
    }
    let targets = match data.get("targetServer") {
        Some(JsValue::Array(items)) => {
            let names: Vec<String> = items
                .iter()
                .filter_map(JsValue::as_str)
                .map(str::to_owned)
                .collect();
            if names.is_empty() && !items.is_empty() {
                return Err(JsWireError::NoTarget);
            }
            names
        }
        Some(_) => return Err(JsWireError::WrongType("targetServer")),
        None => return Err(JsWireError::Missing("targetServer")),
    };
    let kind = match (data.position("payload"), data.position("event")) {
        (Some(p), Some(e)) if p < e => BridgeKind::PromiseEvent,
        _ => BridgeKind::Event,
    };
    Ok(BridgeMessage {
        kind,
        event,
        sender,
        targets,
        callback_id,
        payload,
    })
}
