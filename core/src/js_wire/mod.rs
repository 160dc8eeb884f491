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
mod messages;
mod msgpack;
mod value;

#[cfg(test)]
mod compat_tests;
#[cfg(test)]
mod tests;

use messages::{bridge_from, frame_of, room_from, sender_of, sockets_from, to_value};
pub(crate) use value::JsValue;

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
