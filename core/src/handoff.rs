//! Replying to a client from another node: a handler of a client request hands it off with a
//! [`ReplyHandle`], sends the handle to another node (in a cross-server event, say, to a
//! game-logic node without WebSocket clients), and that node replies with
//! [`Node::reply_to`]. The reply goes to the inbox of the node holding the connection, which
//! writes it to the client with the request's callback id; no relay code on either side.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::envelope::Body;
use crate::events::ClientEvent;
use crate::frame::encode_reply;
use crate::metrics::Metrics;
use crate::{Error, Node};

/// Where the reply to a client request goes: the node holding the connection, the connection,
/// and the request's callback id. Serializable, to travel in a payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyHandle {
    node: String,
    instance: u64,
    conn: u64,
    callback_id: String,
    socket_id: Option<String>,
}

impl ReplyHandle {
    /// The server name of the node holding the client's connection.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The client's socket id when the request came, if it was bound (for pushes with
    /// [`Node::to`]).
    pub fn socket_id(&self) -> Option<&str> {
        self.socket_id.as_deref()
    }
}

impl ClientEvent {
    /// Hands the reply to this request over to whichever node will answer it: the returned
    /// handle goes to that node (in a cross-server event's payload), which answers with
    /// [`Node::reply_to`]. This event can no longer [`reply`](Self::reply) itself, and the
    /// request stops counting against
    /// [`max_pending_requests`](crate::NodeBuilder::max_pending_requests).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use crosswire_core::{Node, ReplyHandle};
    /// let node = Node::builder().build().await?;
    /// // The WebSocket node passes the request on to a logic node ...
    /// let n = node.clone();
    /// node.on("move", move |ev| {
    ///     let n = n.clone();
    ///     async move {
    ///         if let Ok(handle) = ev.hand_off() {
    ///             let job = serde_json::json!({"reply": handle, "move": ev.value()});
    ///             let _ = n.emit_cross("game.move", &job).to(["logic"]).send().await;
    ///         }
    ///     }
    /// });
    /// // ... which answers the client itself.
    /// let logic = node.clone();
    /// node.on_cross("game.move", move |ev| {
    ///     let logic = logic.clone();
    ///     async move {
    ///         let Some(handle) = ev.value().get("reply").cloned() else { return };
    ///         let Ok(handle) = serde_json::from_value::<ReplyHandle>(handle) else { return };
    ///         let _ = logic.reply_to(&handle, &serde_json::json!({"ok": true})).await;
    ///     }
    /// });
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NoReplyExpected`] if the client asked for no reply or it was already answered
    /// or handed off.
    pub fn hand_off(&self) -> Result<ReplyHandle, Error> {
        let callback_id = self.take_reply()?;
        let node = self.node();
        Ok(ReplyHandle {
            node: node.server_name().to_owned(),
            instance: node.inner().membership.instance,
            conn: self.socket().conn_id(),
            callback_id,
            socket_id: self.socket().socket_id().map(|id| id.to_string()),
        })
    }
}

impl Node {
    /// Replies to a client request handed off with [`ClientEvent::hand_off`], from any node:
    /// the reply is written to the client's connection with the request's callback id,
    /// directly when the connection is on this node, through the broker otherwise. A
    /// connection that closed meanwhile gets nothing (counted in
    /// [`MetricsSnapshot::client_replies_lost`](crate::MetricsSnapshot::client_replies_lost)).
    ///
    /// # Errors
    /// [`Error::Encode`] for an unserializable value; a broker error when it could not be
    /// published.
    pub async fn reply_to<T: Serialize + ?Sized>(
        &self,
        handle: &ReplyHandle,
        value: &T,
    ) -> Result<(), Error> {
        let frame = encode_reply(&handle.callback_id, value)?;
        if handle.node == self.server_name() {
            self.deliver_client_reply(handle.instance, handle.conn, frame);
            return Ok(());
        }
        let channel = self.inner().names.inbox(&handle.node);
        let body = Body::ClientReply {
            instance: handle.instance,
            conn: handle.conn,
            frame: &frame,
        };
        self.publish_envelope(&channel, body).await.map(|_| ())
    }

    /// Writes a handed-off reply to connection `conn` of this node's `instance`.
    pub(crate) fn deliver_client_reply(&self, instance: u64, conn: u64, frame: Bytes) {
        let socket = (instance == self.inner().membership.instance)
            .then(|| self.connection(conn))
            .flatten();
        let sent = socket.is_some_and(|socket| socket.send_frame(frame).is_ok());
        if !sent {
            Metrics::add(&self.inner().metrics.client_replies_lost);
        }
    }
}
