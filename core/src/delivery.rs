//! Delivering pushes to clients: everyone, many socket ids, a room (addressed through
//! `recipients`: [`Node::broadcast`], [`Node::to`], [`Node::to_room`]).
//!
//! Each push is encoded once. Local recipients get the same bytes queued directly (never
//! through the broker); other nodes get them inside one envelope and write them unchanged.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::envelope::{self, Body, Envelope};
use crate::frame::encode_push;
use crate::metrics::Metrics;
use crate::node::State;
use crate::{Error, Node, Socket};

impl Node {
    /// Pushes `event` to every open connection of the cluster (or of this node only, with
    /// `local`); see [`Node::broadcast`].
    pub(crate) async fn push_to_all<T: Serialize + ?Sized>(
        &self,
        event: &str,
        payload: &T,
        local: bool,
    ) -> Result<Delivery, Error> {
        let frame = encode_push(event, payload)?;
        let delivered = self.deliver_to_all(&frame);
        let published = if local {
            false
        } else {
            // Boxed, here and in the other pushes: the publish future is most of an `emit`
            // future's size, and every application handler that awaits an `emit` holds one.
            let body = Body::Broadcast { frame: &frame };
            Box::pin(self.publish_envelope(&self.inner().names.broadcast, body)).await?
        };
        Ok(Delivery {
            local: delivered,
            published,
        })
    }

    /// Pushes `event` to the clients bound to `socket_ids`, wherever they are: local ones
    /// directly, the rest in one message per node (see [`Node::to`]).
    pub(crate) async fn push_to_ids<'a, T: Serialize + ?Sized>(
        &self,
        socket_ids: impl Iterator<Item = &'a str>,
        event: &str,
        payload: &T,
    ) -> Result<Delivery, Error> {
        let frame = encode_push(event, payload)?;
        let (local, remote) = self.deliver_to_open(socket_ids, &frame);
        let published =
            !remote.is_empty() && Box::pin(self.publish_unicast(remote, &frame, false)).await?;
        Ok(Delivery { local, published })
    }

    /// Queues `frame` on the open connections bound to `ids` here; returns how many took it,
    /// and the ids that are not here (unbound, or bound to a closing connection: such an id
    /// may be bound again elsewhere already).
    fn deliver_to_open<'a>(
        &self,
        ids: impl Iterator<Item = &'a str>,
        frame: &Bytes,
    ) -> (usize, Vec<&'a str>) {
        let mut delivered = 0;
        let mut elsewhere = Vec::new();
        {
            let state = self.inner().state.read();
            for id in ids {
                match state.bound.get(id) {
                    Some(socket) if socket.is_open() => {
                        delivered += usize::from(self.send_counted(socket, frame));
                    }
                    _ => elsewhere.push(id),
                }
            }
        }
        self.inner().metrics.count_push(delivered, frame.len());
        (delivered, elsewhere)
    }

    /// Publishes a push for socket ids not bound here: to the inbox of each id's node when
    /// the directory knows it, the rest on the shared channel. Returns whether anything was
    /// published.
    async fn publish_unicast(
        &self,
        ids: Vec<&str>,
        frame: &Bytes,
        forwarded: bool,
    ) -> Result<bool, Error> {
        if ids.is_empty() || self.inner().broker.is_none() {
            return Ok(false);
        }
        let mut shared: Vec<&str> = Vec::new();
        let mut by_node: HashMap<Arc<str>, Vec<&str>> = HashMap::new();
        for id in ids {
            match self.route_of(id) {
                Some(node) => by_node.entry(node).or_default().push(id),
                None => shared.push(id),
            }
        }
        let mut result = Ok(true);
        for (node, ids) in by_node {
            let channel = self.inner().names.inbox(&node);
            let body = Body::Sockets {
                ids,
                forwarded,
                frame,
            };
            if let Err(error) = self.publish_envelope(&channel, body).await {
                result = Err(error);
            }
        }
        if !shared.is_empty() {
            let channel = &self.inner().names.private_socket;
            let body = Body::Sockets {
                ids: shared,
                forwarded,
                frame,
            };
            if let Err(error) = self.publish_envelope(channel, body).await {
                result = Err(error);
            }
        }
        result
    }

    /// The node whose inbox a push for `socket_id` goes to: the one the directory names, when
    /// targeting is on and that node is alive and not this one.
    fn route_of(&self, socket_id: &str) -> Option<Arc<str>> {
        let inner = self.inner();
        // On the package's wire there are no inboxes: every push goes to the shared channel.
        if !inner.options.targeted_unicast || inner.writes_js() {
            return None;
        }
        let owner = inner.directory.owner(socket_id)?;
        let elsewhere = &*owner.node != self.server_name();
        (elsewhere && inner.membership.is_alive(&owner.node)).then_some(owner.node)
    }

    /// Delivers a push for socket ids received from another node. With `forward` (it came to
    /// this node's inbox and was not forwarded before), the ids not bound here any more are
    /// sent on to where they are now.
    pub(crate) fn deliver_unicast(&self, ids: &[&str], frame: &Bytes, forward: bool) {
        let (_, moved) = self.deliver_to_open(ids.iter().copied(), frame);
        if !forward || moved.is_empty() {
            return;
        }
        let moved: Vec<String> = moved.into_iter().map(str::to_owned).collect();
        Metrics::add_n(&self.inner().metrics.unicast_forwards, moved.len());
        let node = self.clone();
        let frame = frame.clone();
        tokio::spawn(async move {
            let ids = moved.iter().map(String::as_str).collect();
            // A failure is counted and logged by `publish_envelope`.
            let _ = node.publish_unicast(ids, &frame, true).await;
        });
    }

    /// Pushes `event` to the members of `room` in `namespace` (see [`Node::to_room`]).
    pub(crate) async fn push_to_room<T: Serialize + ?Sized>(
        &self,
        namespace: &str,
        room: &str,
        event: &str,
        payload: &T,
        options: RoomOptions<'_>,
    ) -> Result<Delivery, Error> {
        crate::channels::check_namespace(namespace)?;
        let frame = encode_push(event, payload)?;
        let exclude: Vec<&str> = options.exclude.iter().map(|id| &**id).collect();
        let local = self.deliver_to_room(namespace, room, &exclude, &frame);
        if options.destroy {
            Box::pin(self.remove_room(namespace, room)).await?;
        }
        let published = if options.local_only {
            false
        } else {
            let channel = self.inner().names.namespace(namespace);
            let body = Body::Room {
                namespace,
                room,
                exclude,
                destroy: options.destroy,
                frame: &frame,
            };
            Box::pin(self.publish_envelope(&channel, body)).await?
        };
        Ok(Delivery { local, published })
    }

    pub(crate) fn deliver_to_all(&self, frame: &Bytes) -> usize {
        let delivered =
            self.for_each_connection(|socket| usize::from(self.send_counted(socket, frame)));
        self.inner().metrics.count_push(delivered, frame.len());
        delivered
    }

    pub(crate) fn deliver_to_room(
        &self,
        namespace: &str,
        room: &str,
        exclude: &[&str],
        frame: &Bytes,
    ) -> usize {
        let mut delivered = 0;
        {
            let state: &State = &self.inner().state.read();
            state.rooms.for_each_member(namespace, room, |id, socket| {
                if !exclude.contains(&&**id) {
                    delivered += usize::from(self.send_counted(socket, frame));
                }
            });
        }
        self.inner().metrics.count_push(delivered, frame.len());
        delivered
    }

    /// Queues `frame` on `socket`; counts failures (the transport applied its policy).
    pub(crate) fn send_counted(&self, socket: &Socket, frame: &Bytes) -> bool {
        match socket.send_frame(frame.clone()) {
            Ok(()) => true,
            Err(Error::SlowConsumer) => {
                Metrics::add(&self.inner().metrics.slow_consumer_closes);
                false
            }
            Err(_) => {
                Metrics::add(&self.inner().metrics.sends_to_closed);
                false
            }
        }
    }

    /// Publishes an envelope from this node, signed when the node has a cluster secret;
    /// `Ok(false)` when there is no broker.
    pub(crate) async fn publish_envelope(
        &self,
        channel: &str,
        body: Body<'_>,
    ) -> Result<bool, Error> {
        let inner = self.inner();
        if inner.broker.is_none() {
            return Ok(false);
        }
        let js = inner.js().filter(|_| {
            // A reply to a crosswire node's request goes back in its envelope: only a node
            // writing crosswire's wire asks with a numeric id (while a cluster switches).
            !matches!(body, Body::CrossReply { .. })
        });
        let bytes = match js {
            Some(js) => match js.encode_body(self.server_name(), &body)? {
                Some(bytes) => Bytes::from(bytes),
                None => return Ok(false),
            },
            None => {
                let envelope = Envelope {
                    sender: self.server_name(),
                    body,
                };
                let key = inner.options.cluster_key.as_ref();
                envelope::encode(&envelope, inner.compression, key).map_err(|e| {
                    tracing::error!(error = %e, "could not encode an envelope");
                    Error::invalid("envelope", "it could not be encoded")
                })?
            }
        };
        self.publish_bytes(channel, bytes).await
    }

    /// Publishes bytes already encoded for this node's wire on `channel`, timing and
    /// counting the publish.
    pub(crate) async fn publish_bytes(&self, channel: &str, bytes: Bytes) -> Result<bool, Error> {
        let inner = self.inner();
        let Some(broker) = &inner.broker else {
            return Ok(false);
        };
        let started = std::time::Instant::now();
        let published = broker.publish(channel, bytes).await;
        inner
            .publish_seconds
            .record(started.elapsed().as_secs_f64());
        published.map_err(|e| {
            Metrics::add(&inner.metrics.publish_failures);
            if let Some(held_back) = inner.publish_failure_log.allow() {
                tracing::warn!(channel, error = %e, held_back, "publish failed");
            }
            Error::from(e)
        })?;
        Ok(true)
    }
}

/// How a room push is narrowed ([`ToRoom`](crate::ToRoom) fills it in).
#[derive(Debug, Default)]
pub(crate) struct RoomOptions<'a> {
    /// Socket ids skipped on every node.
    pub(crate) exclude: Vec<Cow<'a, str>>,
    /// This node's members only.
    pub(crate) local_only: bool,
    /// Remove the room after delivering, on every node that has it.
    pub(crate) destroy: bool,
}

/// What a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Delivery {
    /// Local connections the frame was queued on.
    pub local: usize,
    /// Whether it was also published for other nodes.
    pub published: bool,
}
