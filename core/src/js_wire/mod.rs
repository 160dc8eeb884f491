//! The Node.js package's node-to-node messages on Redis (`websocket-cross-server-adapter`),
//! typed: [`decode`] turns a message published on one of its channels into a [`JsMessage`],
//! [`encode`] gives back exactly the bytes the package itself would publish.
//!
//! # The package's messages
//! The package publishes `notepack.encode(obj)` (`enableRedisDataCompression: true`, its
//! default: [`JsFormat::Msgpack`]) or `JSON.stringify(obj)` ([`JsFormat::Json`]) of:
//!
//! | channel | object (keys in the package's order) |
//! |---|---|
//! | `<bridgePrefix>server_bridge`, `emitCrossServer` | `{data:{event, senderServer, payload, targetServer, callbackId?}}` |
//! | same, `emitCrossServerWithPromise` | `{data:{payload, event, senderServer, targetServer, callbackId}}` |
//! | same, a reply (event `_Cs_Cb_`) | `{data:{event, senderServer, targetServer: [], callbackId, isCallback: true, payload?}}` |
//! | `<wsPrefix>private_socket`, `toSocketId` | `{data, socketId, senderServer}` |
//! | same, `toSocketIds` | `{data, socketIds, senderServer}` |
//! | `<wsPrefix>broadcast` | `{data, senderServer}` |
//! | `<wsPrefix><namespace>` | `{data, roomNamespace, roomId, senderServer, excludeSocketIds}` |
//!
//! On ws channels `data` is the client frame text (`{"event":..,"payload":..}`), sent to
//! clients as is. A reply's `targetServer` is always `[]`: the package overwrites the
//! `[asker]` it builds with `emitCrossServer`'s default, so replies reach every node and
//! are matched by `callbackId` alone (`<last 6 chars of the server name>-<ms base36>-
//! <4 random base36>-<counter base36>`).
//!
//! # What is accepted
//! [`decode`] mirrors what the package acts on: what it would ignore or throw on is a
//! [`JsWireError`]; what it skips silently inside a message (non-string socket ids,
//! targets or excluded ids) is skipped here too. Payloads are [`JsValue`]s, kept as the
//! package would see and re-send them.

mod json;
mod msgpack;
mod value;

#[cfg(test)]
mod compat_tests;
#[cfg(test)]
mod tests;

pub(crate) use value::{JsObject, JsValue};

/// Largest message [`decode`] accepts, in bytes.
pub(crate) const MAX_MESSAGE_LEN: usize = 16 << 20;

/// Deepest nesting [`decode`] accepts (the message object itself is depth 0).
pub(crate) const MAX_DEPTH: usize = 128;

/// Most values (map keys included) one message may hold: each costs a 32-byte
/// [`JsValue`], so this bounds a message's memory to about 64 MiB whatever its length.
pub(crate) const MAX_VALUES: usize = 1 << 21;

/// The event name of the package's replies to cross-server events.
pub(crate) const REPLY_EVENT: &str = "_Cs_Cb_";

/// Which serialization the package uses on Redis (`enableRedisDataCompression`: true is
/// msgpack, false is JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsFormat {
    /// notepack.io's MessagePack (the package's default).
    Msgpack,
    /// `JSON.stringify` text.
    Json,
}

/// What a channel carries, by the package's routing rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChannelKind {
    /// `<bridgePrefix>server_bridge`.
    Bridge,
    /// `<wsPrefix>private_socket`.
    Private,
    /// `<wsPrefix>broadcast`.
    Broadcast,
    /// Any other channel starting with the ws prefix: a room namespace.
    Room,
    /// Anything else: the application's custom channels.
    Custom,
}

/// The package's channel names, from its prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsChannels {
    /// `wsPrefix` (default `ws:`).
    ws_prefix: String,
    /// `<bridgePrefix>server_bridge`.
    bridge: String,
    /// `<wsPrefix>private_socket`.
    private: String,
    /// `<wsPrefix>broadcast`.
    broadcast: String,
}

impl JsChannels {
    /// The channels for `bridgePrefix` (the package's default is `csbp:`) and `wsPrefix`
    /// (default `ws:`).
    pub(crate) fn new(bridge_prefix: &str, ws_prefix: &str) -> Self {
        Self {
            ws_prefix: ws_prefix.to_owned(),
            bridge: format!("{bridge_prefix}server_bridge"),
            private: format!("{ws_prefix}private_socket"),
            broadcast: format!("{ws_prefix}broadcast"),
        }
    }

    /// The cross-server channel.
    #[cfg(test)]
    pub(crate) fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The channel for pushes to socket ids.
    #[cfg(test)]
    pub(crate) fn private(&self) -> &str {
        &self.private
    }

    /// The channel for pushes to every connection.
    #[cfg(test)]
    pub(crate) fn broadcast(&self) -> &str {
        &self.broadcast
    }

    /// The channel of a room namespace: the namespace itself when it already starts with
    /// the ws prefix, else the prefix and the namespace.
    #[cfg(test)]
    pub(crate) fn room(&self, namespace: &str) -> String {
        if namespace.starts_with(&self.ws_prefix) {
            namespace.to_owned()
        } else {
            format!("{}{namespace}", self.ws_prefix)
        }
    }

    /// What `channel` carries (the package checks the bridge channel first).
    pub(crate) fn classify(&self, channel: &str) -> ChannelKind {
        if channel == self.bridge {
            ChannelKind::Bridge
        } else if !channel.starts_with(&self.ws_prefix) {
            ChannelKind::Custom
        } else if channel == self.private {
            ChannelKind::Private
        } else if channel == self.broadcast {
            ChannelKind::Broadcast
        } else {
            ChannelKind::Room
        }
    }
}

/// One package message, typed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JsMessage {
    /// On the bridge channel: a cross-server event or a reply.
    Bridge(BridgeMessage),
    /// On the private channel: a client frame for socket ids.
    Sockets {
        /// `socketIds` (several), or `[socketId]`; ids that are not non-empty strings are
        /// skipped, as the package skips them.
        ids: Vec<String>,
        /// Whether the message names one id in `socketId` (`toSocketId`) rather than a
        /// list in `socketIds` (`toSocketIds`).
        single: bool,
        /// `data`: the client frame text, sent as is.
        data: String,
        /// `senderServer` (`""` when absent).
        sender: String,
    },
    /// On the broadcast channel: a client frame for every open connection.
    Broadcast {
        /// `data`: the client frame text.
        data: String,
        /// `senderServer` (`""` when absent).
        sender: String,
    },
    /// On a room channel: a client frame for a room's members.
    Room {
        /// `roomNamespace` (the package routes by it, not by the channel).
        namespace: String,
        /// `roomId`: always a string (the package's rooms are keyed by strings, so a
        /// number could never match one; it is refused).
        room: String,
        /// `excludeSocketIds` (empty when absent; non-string entries skipped).
        exclude: Vec<String>,
        /// `data`: the client frame text.
        data: String,
        /// `senderServer` (`""` when absent).
        sender: String,
    },
    /// On any other channel: the application's value, as its `customChannelHandler`
    /// receives it.
    Custom(JsValue),
}

/// Which of the package's calls built a bridge message: it fixes the key order (and so
/// the bytes) and whether it is a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BridgeKind {
    /// `emitCrossServer`: `event, senderServer, payload, targetServer, callbackId?`.
    Event,
    /// `emitCrossServerWithPromise`: `payload, event, senderServer, targetServer, callbackId`.
    PromiseEvent,
    /// A reply (`isCallback` truthy): `event, senderServer, targetServer, callbackId,
    /// isCallback: true, payload`.
    Reply,
}

/// The `data` of a message on the bridge channel.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BridgeMessage {
    /// Which call built it (see [`BridgeKind`]); `isCallback` is `kind == Reply`.
    pub(crate) kind: BridgeKind,
    /// `event` (`_Cs_Cb_` for replies; `""` when a reply has none).
    pub(crate) event: String,
    /// `senderServer` (`""` when an event has none; a reply must have one).
    pub(crate) sender: String,
    /// `targetServer`: empty is every node; non-string entries skipped.
    pub(crate) targets: Vec<String>,
    /// `callbackId`: set when the sender waits for replies (a falsy id counts as none).
    pub(crate) callback_id: Option<String>,
    /// `payload`: `None` when absent or `undefined` (a reply with no value).
    pub(crate) payload: Option<JsValue>,
}

/// Why a message cannot be used; the package would ignore it or throw on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JsWireError {
    /// The message is longer than [`MAX_MESSAGE_LEN`].
    #[error("message of {0} bytes is over the limit of {MAX_MESSAGE_LEN}")]
    TooLarge(usize),
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("message nested deeper than {MAX_DEPTH}")]
    TooDeep,
    /// More than [`MAX_VALUES`] values.
    #[error("message holds more than {MAX_VALUES} values")]
    TooManyValues,
    /// Not MessagePack notepack can decode.
    #[error("bad msgpack: {0}")]
    Msgpack(&'static str),
    /// Not JSON `JSON.parse` accepts (or a lone surrogate escape).
    #[error("bad JSON at byte {at}: {what}")]
    Json {
        /// Byte offset of the problem.
        at: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// A msgpack map key that is an object, array, buffer or date.
    #[error("msgpack map key of an unsupported type")]
    UnsupportedKey,
    /// The message (or the bridge message's `data`) is not an object.
    #[error("message is not an object")]
    NotAnObject,
    /// A field the package needs is absent or falsy.
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    /// A field has a type the package cannot use.
    #[error("field `{0}` has the wrong type")]
    WrongType(&'static str),
    /// `targetServer` lists entries but no string: the package's nodes all ignore it.
    #[error("targetServer names no server")]
    NoTarget,
}

/// Limits shared by the msgpack and JSON decoders.
#[derive(Debug)]
pub(crate) struct Budget {
    /// Values still allowed.
    values_left: usize,
}

impl Budget {
    /// A fresh budget of [`MAX_VALUES`].
    fn new() -> Self {
        Self {
            values_left: MAX_VALUES,
        }
    }

    /// Accounts for one value at `depth`.
    fn spend(&mut self, depth: usize) -> Result<(), JsWireError> {
        if depth > MAX_DEPTH {
            return Err(JsWireError::TooDeep);
        }
        self.values_left = self
            .values_left
            .checked_sub(1)
            .ok_or(JsWireError::TooManyValues)?;
        Ok(())
    }
}

/// Decodes `bytes` received on `channel`.
///
/// Custom channels give [`JsMessage::Custom`] with whatever value was published; the caller
/// routes it to the application's custom channel handler.
///
/// # Errors
/// The [`JsWireError`] for bytes that do not decode or a message the package would not
/// act on.
pub(crate) fn decode(
    channels: &JsChannels,
    channel: &str,
    bytes: &[u8],
    format: JsFormat,
) -> Result<JsMessage, JsWireError> {
    let value = decode_value(bytes, format)?;
    let kind = channels.classify(channel);
    if kind == ChannelKind::Custom {
        return Ok(JsMessage::Custom(value));
    }
    let JsValue::Object(message) = value else {
        return Err(JsWireError::NotAnObject);
    };
    match kind {
        ChannelKind::Bridge => bridge_from(&message).map(JsMessage::Bridge),
        ChannelKind::Private => sockets_from(&message),
        ChannelKind::Broadcast => Ok(JsMessage::Broadcast {
            data: frame_of(&message)?,
            sender: sender_of(&message)?,
        }),
        ChannelKind::Room | ChannelKind::Custom => room_from(&message),
    }
}

/// Decodes one value in `format`, within the size, depth and value limits.
fn decode_value(bytes: &[u8], format: JsFormat) -> Result<JsValue, JsWireError> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(JsWireError::TooLarge(bytes.len()));
    }
    let mut budget = Budget::new();
    match format {
        JsFormat::Msgpack => msgpack::decode(bytes, &mut budget),
        // ioredis hands the package the message as `Buffer#toString()`: lossy UTF-8.
        JsFormat::Json => json::parse(&String::from_utf8_lossy(bytes), &mut budget),
    }
}

/// Parses JSON text as `JSON.parse` would, keeping JavaScript's key order (a payload of
/// this node's, before it is encoded for the package), within the decoder's limits.
///
/// # Errors
/// [`JsWireError`] for text that is not JSON or is over the limits.
pub(crate) fn parse_json(text: &str) -> Result<JsValue, JsWireError> {
    if text.len() > MAX_MESSAGE_LEN {
        return Err(JsWireError::TooLarge(text.len()));
    }
    json::parse(text, &mut Budget::new())
}

/// Encodes `message` as the package would publish it (on the channel [`JsChannels`]
/// names for it).
pub(crate) fn encode(message: &JsMessage, format: JsFormat) -> Vec<u8> {
    let value = to_value(message);
    match format {
        JsFormat::Msgpack => msgpack::encode(&value),
        JsFormat::Json => value.to_json().into_bytes(),
    }
}

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
fn to_value(message: &JsMessage) -> JsValue {
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
fn sender_of(object: &JsObject) -> Result<String, JsWireError> {
    Ok(optional_text(object, "senderServer")?
        .unwrap_or_default()
        .to_owned())
}

/// A ws message's `data`: a non-empty string (the package throws otherwise).
fn frame_of(message: &JsObject) -> Result<String, JsWireError> {
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
fn sockets_from(message: &JsObject) -> Result<JsMessage, JsWireError> {
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
fn room_from(message: &JsObject) -> Result<JsMessage, JsWireError> {
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
fn bridge_from(message: &JsObject) -> Result<BridgeMessage, JsWireError> {
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
