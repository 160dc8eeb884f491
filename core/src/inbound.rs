//! Messages arriving from the broker: decoded, checked, and handed to local delivery,
//! cross-server handlers, or the custom-channel handler.

use std::sync::{Arc, Weak};

use crate::bridge::INTERNAL_EVENT_PREFIX;
use crate::broker::{BrokerMessage, Inbound};
use crate::custom_channels::CustomMessage;
use crate::envelope::{self, Body};
use crate::events::{CrossEvent, CrossReplyTo, ReplyId};
use crate::frame::Payload;
use crate::listeners::{drive, drive_all};
use crate::metrics::Metrics;
use crate::node::NodeInner;
use crate::Node;

/// Drains the broker's inbound queue until the node is dropped.
pub(crate) async fn run(node: Weak<NodeInner>, mut inbound: Inbound) {
    while let Some(message) = inbound.recv().await {
        let Some(inner) = node.upgrade() else { return };
        Node::from_inner(inner).handle_broker_message(message);
    }
}

impl Node {
    fn handle_broker_message(&self, message: BrokerMessage) {
        let inner = self.inner();
        let is_custom = inner.custom_channels.read().contains(&message.channel);
        if is_custom {
            self.handle_custom(message);
            return;
        }
        if !inner.names.is_reserved(&message.channel) {
            Metrics::add(&inner.metrics.unknown_channel_messages);
            return;
        }
        // Both wires are read, whichever this node writes, so that nodes writing either
        // coexist while a cluster switches from one to the other. The package's messages
        // carry no signature: with a cluster secret, only envelopes are accepted.
        let foreign = !envelope::is_envelope(&message.payload);
        if foreign && inner.options.cluster_key.is_none() {
            if let Err(error) = self.handle_js_message(&inner.js_wire, &message) {
                self.count_bad_message(&message.channel, &error);
            }
            return;
        }
        match self.handle_envelope(&message) {
            Ok(()) => {}
            Err(error) if error.is_signature() => {
                Metrics::add(&inner.metrics.bad_signatures);
                if let Some(held_back) = inner.bad_signature_log.allow() {
                    tracing::warn!(
                        channel = %message.channel,
                        %error,
                        held_back,
                        "dropped an envelope for its cluster signature"
                    );
                }
            }
            Err(error) => self.count_bad_message(&message.channel, &error),
        }
    }

    /// Counts and logs (at most a line a second) a message that could not be decoded.
    fn count_bad_message(&self, channel: &str, error: &dyn std::fmt::Display) {
        let inner = self.inner();
        Metrics::add(&inner.metrics.bad_envelopes);
        if let Some(held_back) = inner.bad_envelope_log.allow() {
            tracing::warn!(
                channel = %channel,
                %error,
                held_back,
                "dropped an undecodable envelope"
            );
        }
    }

    /// Hands a custom channel's message to the application's handler (as JSON text on the
    /// Node.js package's wire).
    fn handle_custom(&self, message: BrokerMessage) {
        let inner = self.inner();
        let Some(handler) = inner.custom_handler.read().clone() else {
            Metrics::add(&inner.metrics.unknown_channel_messages);
            return;
        };
        let payload = match inner.js() {
            Some(js) => match js.decode_custom(&message.channel, &message.payload) {
                Ok(json) => json,
                Err(error) => return self.count_bad_message(&message.channel, &error),
            },
            None => message.payload,
        };
        drive(handler(CustomMessage {
            channel: message.channel,
            payload,
        }));
    }

    fn handle_envelope(&self, message: &BrokerMessage) -> Result<(), envelope::EnvelopeError> {
        let key = self.inner().options.cluster_key.as_ref();
        let body_bytes = envelope::open(&message.payload, key)?;
        let envelope = envelope::decode(&body_bytes)?;
        if let Body::Announce(announce) = envelope.body {
            self.handle_announce(envelope.sender, announce);
            return Ok(());
        }
        let me = self.server_name();
        if envelope.sender == me {
            return Ok(());
        }
        match envelope.body {
            Body::Broadcast { frame } => {
                self.deliver_to_all(&body_bytes.slice_ref(frame));
            }
            Body::Sockets {
                ids,
                forwarded,
                frame,
            } => {
                Metrics::add(&self.inner().metrics.unicast_envelopes);
                let frame = body_bytes.slice_ref(frame);
                let in_inbox = message.channel == self.inner().names.own_inbox;
                self.deliver_unicast(&ids, &frame, in_inbox && !forwarded);
            }
            Body::Room {
                namespace,
                room,
                exclude,
                destroy,
                frame,
            } => {
                self.deliver_to_room(namespace, room, &exclude, &body_bytes.slice_ref(frame));
                if destroy {
                    let (_, emptied) = self
                        .inner()
                        .state
                        .write()
                        .rooms
                        .remove_room(namespace, room);
                    if emptied {
                        self.reconcile_namespaces_later(vec![namespace.to_owned()]);
                    }
                }
            }
            Body::CrossEvent {
                event,
                targets,
                except_self: _,
                callback,
                payload,
            } => {
                if targets.is_empty() || targets.contains(&me) {
                    let payload = Payload::from_json_bytes(body_bytes.slice_ref(payload));
                    let reply_to = callback.map(ReplyId::Node);
                    self.run_cross_handlers(Arc::from(envelope.sender), event, payload, reply_to);
                }
            }
            Body::CrossReply {
                target,
                callback,
                payload,
            } => {
                if target == me {
                    let payload =
                        payload.map(|p| Payload::from_json_bytes(body_bytes.slice_ref(p)));
                    if !self
                        .pending()
                        .deliver(callback, envelope.sender, payload.as_ref())
                    {
                        Metrics::add(&self.inner().metrics.late_replies);
                    }
                }
            }
            Body::Announce(_) => {}
            Body::Bindings { bound, unbound } => {
                self.handle_bindings(envelope.sender, &bound, &unbound);
            }
            Body::ClientReply {
                instance,
                conn,
                frame,
            } => {
                self.deliver_client_reply(instance, conn, body_bytes.slice_ref(frame));
            }
        }
        Ok(())
    }

    pub(crate) fn run_cross_handlers(
        &self,
        sender: Arc<str>,
        event: &str,
        payload: Payload,
        callback: Option<ReplyId>,
    ) {
        // The handlers run in this span (`drive` spawns those that wait in it).
        let span = tracing::info_span!(
            "cross",
            node = %self.server_name(),
            event = %event,
            %sender,
            callback = ?callback,
        );
        let _span = span.enter();
        if let Some(query) = event.strip_prefix(INTERNAL_EVENT_PREFIX) {
            self.answer_cluster_query(sender, query, payload, callback);
            return;
        }
        let ev = CrossEvent::new(
            self.clone(),
            sender.clone(),
            Arc::from(event),
            payload,
            callback.clone(),
        );
        let handlers = self.inner().cross_listeners.start(event, ev);
        if handlers.is_empty() {
            Metrics::add(&self.inner().metrics.unhandled_events);
            // The package's nodes do not answer events they have no handler for, and count
            // any answer as a reply: on its wire, a node without a handler stays silent too.
            if let Some(callback @ ReplyId::Node(_)) = callback {
                // The asking node stops waiting for this one.
                let to = CrossReplyTo::new(sender, callback);
                let node = self.clone();
                drive(Box::pin(async move {
                    let _ = node.send_cross_reply(&to, None).await;
                }));
            }
        }
        drive_all(handlers);
    }
}
