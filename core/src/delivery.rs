//! Delivering pushes to clients: everyone, one socket id, many socket ids, a room.
//!
//! Each push is encoded once. Local recipients get the same bytes queued directly (never
//! through the broker); other nodes get them inside one envelope and write them unchanged.

use bytes::Bytes;
use serde::Serialize;

use crate::envelope::{self, Body, Envelope};
use crate::frame::encode_push;
use crate::metrics::Metrics;
use crate::node::{Delivery, RoomOptions, State};
use crate::{Error, Node, Socket};

impl Node {
    /// Pushes `event` to every bound client of the cluster.
    ///
    /// # Errors
    /// [`Error::Encode`] for an unserializable payload; a broker error if it could not be
    /// published (local clients have it already).
    pub async fn broadcast<T: Serialize + ?Sized>(
        &self,
        event: &str,
        payload: &T,
    ) -> Result<Delivery, Error> {
        let frame = encode_push(event, payload)?;
        let local = self.deliver_to_all(&frame);
        let published = self
            .publish_envelope(
                &self.inner().names.broadcast,
                Body::Broadcast { frame: &frame },
            )
            .await?;
        Ok(Delivery { local, published })
    }

    /// Pushes `event` to every bound client of this node only.
    ///
    /// # Errors
    /// [`Error::Encode`] for an unserializable payload.
    pub fn broadcast_local<T: Serialize + ?Sized>(
        &self,
        event: &str,
        payload: &T,
    ) -> Result<Delivery, Error> {
        let frame = encode_push(event, payload)?;
        Ok(Delivery {
            local: self.deliver_to_all(&frame),
            published: false,
        })
    }

    /// Pushes `event` to the client bound to `socket_id`, on whichever node it is.
    ///
    /// # Errors
    /// [`Error::Encode`]; a broker error when the id is not local and could not be published.
    pub async fn to_socket_id<T: Serialize + ?Sized>(
        &self,
        socket_id: &str,
        event: &str,
        payload: &T,
    ) -> Result<Delivery, Error> {
        self.to_socket_ids([socket_id], event, payload).await
    }

    /// Pushes `event` to the clients bound to `socket_ids`, wherever they are: local ones
    /// directly, the rest in one message to the other nodes.
    ///
    /// # Errors
    /// [`Error::Encode`]; a broker error when remote ids could not be published.
    pub async fn to_socket_ids<I, S, T>(
        &self,
        socket_ids: I,
        event: &str,
        payload: &T,
    ) -> Result<Delivery, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
        T: Serialize + ?Sized,
    {
        let frame = encode_push(event, payload)?;
        let ids: Vec<S> = socket_ids.into_iter().collect();
        let mut remote: Vec<&str> = Vec::new();
        let mut local = 0;
        {
            let state = self.inner().state.read();
            for id in &ids {
                match state.bound.get(id.as_ref()) {
                    Some(socket) => local += usize::from(self.send_counted(socket, &frame)),
                    None => remote.push(id.as_ref()),
                }
            }
        }
        let published = if remote.is_empty() {
            false
        } else {
            let channel = &self.inner().names.private_socket;
            self.publish_envelope(
                channel,
                Body::Sockets {
                    ids: remote,
                    frame: &frame,
                },
            )
            .await?
        };
        Ok(Delivery { local, published })
    }

    /// Pushes `event` to the members of `room` in `namespace` on every node.
    ///
    /// # Errors
    /// [`Error::Encode`]; [`Error::InvalidName`] for a reserved namespace; a broker error if it
    /// could not be published (local members have it already).
    pub async fn broadcast_to_room<T: Serialize + ?Sized>(
        &self,
        namespace: &str,
        room: &str,
        event: &str,
        payload: &T,
        options: RoomOptions,
    ) -> Result<Delivery, Error> {
        crate::channels::check_namespace(namespace)?;
        let frame = encode_push(event, payload)?;
        let exclude: Vec<&str> = options.exclude.iter().map(String::as_str).collect();
        let local = self.deliver_to_room(namespace, room, &exclude, &frame);
        if options.destroy {
            self.remove_room(namespace, room).await?;
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
            self.publish_envelope(&channel, body).await?
        };
        Ok(Delivery { local, published })
    }

    pub(crate) fn deliver_to_all(&self, frame: &Bytes) -> usize {
        let state = self.inner().state.read();
        state
            .bound
            .values()
            .filter(|socket| self.send_counted(socket, frame))
            .count()
    }

    pub(crate) fn deliver_to_ids<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
        frame: &Bytes,
    ) -> usize {
        let state = self.inner().state.read();
        ids.into_iter()
            .filter_map(|id| state.bound.get(id))
            .filter(|socket| self.send_counted(socket, frame))
            .count()
    }

    pub(crate) fn deliver_to_room(
        &self,
        namespace: &str,
        room: &str,
        exclude: &[&str],
        frame: &Bytes,
    ) -> usize {
        let state: &State = &self.inner().state.read();
        let mut delivered = 0;
        state.rooms.for_each_member(namespace, room, |id| {
            if exclude.contains(&&**id) {
                return;
            }
            if let Some(socket) = state.bound.get(id) {
                delivered += usize::from(self.send_counted(socket, frame));
            }
        });
        delivered
    }

    /// Queues `frame` on `socket`; counts failures (the transport applied its policy).
    fn send_counted(&self, socket: &Socket, frame: &Bytes) -> bool {
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
        let Some(broker) = &inner.broker else {
            return Ok(false);
        };
        let envelope = Envelope {
            sender: self.server_name(),
            body,
        };
        let key = inner.options.cluster_key.as_ref();
        let bytes = envelope::encode(&envelope, inner.compression, key).map_err(|e| {
            tracing::error!(error = %e, "could not encode an envelope");
            Error::invalid("envelope", "it could not be encoded")
        })?;
        broker.publish(channel, bytes).await.map_err(|e| {
            Metrics::add(&inner.metrics.publish_failures);
            if let Some(held_back) = inner.publish_failure_log.allow() {
                tracing::warn!(channel, error = %e, held_back, "publish failed");
            }
            Error::from(e)
        })?;
        Ok(true)
    }
}
