//! A node on the Node.js package's wire ([`Wire::JsPackage`](crate::Wire::JsPackage)): what it
//! publishes, translated from crosswire's envelope bodies, and what it receives, turned
//! into the same local deliveries and handler calls an envelope would give.
//!
//! The channels are the same on both wires (`csbp:server_bridge`, `ws:broadcast`,
//! `ws:private_socket`, `ws:<namespace>`); only the bytes differ. The formats themselves are
//! in [`crate::js_wire`].

use std::sync::Arc;

use bytes::Bytes;

use crate::broker::BrokerMessage;
use crate::envelope::Body;
use crate::events::ReplyId;
use crate::frame::Payload;
use crate::js_wire::{
    self, BridgeKind, BridgeMessage, JsChannels, JsFormat, JsMessage, JsValue, JsWireError,
    REPLY_EVENT,
};
use crate::metrics::Metrics;
use crate::{Error, Node};

/// The package's wire as one node speaks it.
#[derive(Debug)]
pub(crate) struct JsWire {
    channels: JsChannels,
    format: JsFormat,
    /// Starts every `callbackId` this node sends: unique to this process, so that a reply
    /// (which the package publishes to every node) is recognised by the node that asked.
    callback_prefix: String,
}

impl JsWire {
    /// The wire for a node with these prefixes; `msgpack` is the package's
    /// `enableRedisDataCompression`.
    pub(crate) fn new(bridge_prefix: &str, ws_prefix: &str, msgpack: bool) -> Self {
        JsWire {
            channels: JsChannels::new(bridge_prefix, ws_prefix),
            format: if msgpack {
                JsFormat::Msgpack
            } else {
                JsFormat::Json
            },
            callback_prefix: format!("cw-{:x}-", fastrand::u64(..)),
        }
    }

    /// The `callbackId` of this node's collection `id`.
    fn callback_id(&self, id: u64) -> String {
        format!("{}{id:x}", self.callback_prefix)
    }

    /// The collection a `callbackId` names, if this node sent it.
    fn own_callback(&self, callback_id: &str) -> Option<u64> {
        let hex = callback_id.strip_prefix(&self.callback_prefix)?;
        u64::from_str_radix(hex, 16).ok()
    }

    /// The bytes the package would publish for `body` sent by `sender`; `None` for what it
    /// has no message for (membership announcements and binding lists: not published).
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a reply handed to another node; [`Error::Encode`] for a
    /// payload that is not JSON (never for payloads crosswire encoded).
    pub(crate) fn encode_body(
        &self,
        sender: &str,
        body: &Body<'_>,
    ) -> Result<Option<Vec<u8>>, Error> {
        let sender = sender.to_owned();
        let message = match body {
            Body::Broadcast { frame } => JsMessage::Broadcast {
                data: frame_text(frame)?,
                sender,
            },
            Body::Sockets { ids, frame, .. } => JsMessage::Sockets {
                single: ids.len() == 1,
                ids: ids.iter().map(|id| (*id).to_owned()).collect(),
                data: frame_text(frame)?,
                sender,
            },
            Body::Room {
                namespace,
                room,
                exclude,
                frame,
                destroy: _,
            } => JsMessage::Room {
                namespace: (*namespace).to_owned(),
                room: (*room).to_owned(),
                exclude: exclude.iter().map(|id| (*id).to_owned()).collect(),
                data: frame_text(frame)?,
                sender,
            },
            Body::CrossEvent {
                event,
                targets,
                callback,
                payload,
                except_self: _,
            } => JsMessage::Bridge(BridgeMessage {
                kind: BridgeKind::Event,
                event: (*event).to_owned(),
                sender,
                targets: targets.iter().map(|t| (*t).to_owned()).collect(),
                callback_id: callback.map(|id| self.callback_id(id)),
                payload: Some(json_value(payload)?),
            }),
            Body::CrossReply { .. } => {
                // Replies on this wire carry the asker's string id: see `encode_reply`.
                return Err(Error::Unsupported(
                    "a crosswire reply id on the Node.js package's wire",
                ));
            }
            Body::Announce(_) | Body::Bindings { .. } => return Ok(None),
            Body::ClientReply { .. } => {
                return Err(Error::Unsupported(
                    "handing a client's reply to another node on the Node.js package's wire",
                ))
            }
        };
        Ok(Some(js_wire::encode(&message, self.format)))
    }

    /// The bytes of a reply to the package's `callbackId`, as its `_Cs_Cb_` event.
    pub(crate) fn encode_reply(
        &self,
        sender: &str,
        callback_id: &str,
        payload: Option<&Payload>,
    ) -> Result<Vec<u8>, Error> {
        let payload = payload.map(|p| json_value(p.as_bytes())).transpose()?;
        let message = JsMessage::Bridge(BridgeMessage {
            kind: BridgeKind::Reply,
            event: REPLY_EVENT.to_owned(),
            sender: sender.to_owned(),
            // The package publishes every reply to all nodes (see `js_wire`).
            targets: Vec::new(),
            callback_id: Some(callback_id.to_owned()),
            payload,
        });
        Ok(js_wire::encode(&message, self.format))
    }

    /// A custom channel payload (JSON text) as the package publishes its values.
    pub(crate) fn encode_custom(&self, json: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(js_wire::encode(
            &JsMessage::Custom(json_value(json)?),
            self.format,
        ))
    }

    /// A custom channel message as JSON text.
    pub(crate) fn decode_custom(&self, channel: &str, bytes: &[u8]) -> Result<Bytes, JsWireError> {
        match js_wire::decode(&self.channels, channel, bytes, self.format)? {
            JsMessage::Custom(value) => Ok(Bytes::from(value.to_json())),
            _ => Err(JsWireError::WrongType("custom channel")),
        }
    }
}

/// A client frame as the package's `data` string.
fn frame_text(frame: &[u8]) -> Result<String, Error> {
    String::from_utf8(frame.to_vec()).map_err(|_| Error::invalid("push", "it is not UTF-8 text"))
}

/// A JSON payload as the package's value.
fn json_value(json: &[u8]) -> Result<JsValue, Error> {
    let text =
        std::str::from_utf8(json).map_err(|_| Error::invalid("payload", "it is not UTF-8"))?;
    js_wire::parse_json(text).map_err(|e| {
        tracing::error!(error = %e, "a payload could not be put on the Node.js package's wire");
        Error::invalid("payload", "it is not JSON the package can carry")
    })
}

impl Node {
    /// Handles a message on one of the package's channels: the counterpart of
    /// `handle_envelope`.
    pub(crate) fn handle_js_message(
        &self,
        wire: &JsWire,
        message: &BrokerMessage,
    ) -> Result<(), JsWireError> {
        // Read in whichever encoding it came: JSON is an object, msgpack a map.
        let format = if message.payload.first() == Some(&b'{') {
            JsFormat::Json
        } else {
            JsFormat::Msgpack
        };
        let decoded = js_wire::decode(&wire.channels, &message.channel, &message.payload, format)?;
        let me = self.server_name();
        match decoded {
            JsMessage::Broadcast { data, sender } if sender != me => {
                self.deliver_to_all(&Bytes::from(data));
            }
            JsMessage::Sockets {
                ids, data, sender, ..
            } if sender != me => {
                Metrics::add(&self.inner().metrics.unicast_envelopes);
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                self.deliver_unicast(&ids, &Bytes::from(data), false);
            }
            JsMessage::Room {
                namespace,
                room,
                exclude,
                data,
                sender,
            } if sender != me => {
                let exclude: Vec<&str> = exclude.iter().map(String::as_str).collect();
                self.deliver_to_room(&namespace, &room, &exclude, &Bytes::from(data));
            }
            JsMessage::Bridge(bridge) if bridge.sender != me => self.handle_js_bridge(wire, bridge),
            // Its own messages come back to a node (the package skips them too); a custom
            // channel never gets here.
            _ => {}
        }
        Ok(())
    }

    fn handle_js_bridge(&self, wire: &JsWire, bridge: BridgeMessage) {
        let me = self.server_name();
        let reply_for = if bridge.kind == BridgeKind::Reply {
            // Every node gets every reply; only the asker knows the id.
            let own = bridge
                .callback_id
                .as_deref()
                .and_then(|id| wire.own_callback(id));
            let Some(collection) = own else { return };
            Some(collection)
        } else {
            if !bridge.targets.is_empty() && !bridge.targets.iter().any(|t| t == me) {
                return;
            }
            None
        };
        // An absent payload is `null`: a reply without a value still counts as one, as in
        // the package.
        let payload = Payload::from_json_bytes(match &bridge.payload {
            Some(value) => Bytes::from(value.to_json()),
            None => Bytes::from_static(b"null"),
        });
        if let Some(collection) = reply_for {
            if !self
                .pending()
                .deliver(collection, &bridge.sender, Some(&payload))
            {
                Metrics::add(&self.inner().metrics.late_replies);
            }
            return;
        }
        let reply_to = bridge
            .callback_id
            .map(|id| ReplyId::JsPackage(Arc::from(id)));
        self.run_cross_handlers(Arc::from(bridge.sender), &bridge.event, payload, reply_to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_nodes_callback_ids_are_recognised() {
        let a = JsWire::new("csbp:", "ws:", true);
        let b = JsWire::new("csbp:", "ws:", true);
        let id = a.callback_id(0x2a);
        assert_eq!(a.own_callback(&id), Some(0x2a));
        assert_eq!(b.own_callback(&id), None);
        assert_eq!(
            a.own_callback("node-1-lx2k-ab12-1"),
            None,
            "a package node's id"
        );
        assert!(id.len() <= 64, "the package's limit for callback ids: {id}");
    }

    #[test]
    fn membership_is_not_published_and_handoff_is_refused() {
        let wire = JsWire::new("csbp:", "ws:", false);
        let announce = Body::Bindings {
            bound: vec![("1", 1)],
            unbound: vec![],
        };
        assert_eq!(wire.encode_body("a", &announce).unwrap(), None);
        let handoff = Body::ClientReply {
            instance: 1,
            conn: 1,
            frame: b"{}",
        };
        assert!(matches!(
            wire.encode_body("a", &handoff),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn a_push_is_the_package_object_with_the_frame_as_text() {
        let wire = JsWire::new("csbp:", "ws:", false);
        let body = Body::Room {
            namespace: "chat",
            room: "r",
            exclude: vec!["4"],
            destroy: false,
            frame: br#"{"event":"say","payload":1}"#,
        };
        let bytes = wire.encode_body("rust-1", &body).unwrap().unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"data":"{\"event\":\"say\",\"payload\":1}","roomNamespace":"chat","roomId":"r","senderServer":"rust-1","excludeSocketIds":["4"]}"#
        );
    }
}
