//! What handlers receive: client events, cross-server events and system events.

use std::any::{Any, TypeId};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use foldhash::{HashMap, HashMapExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::frame::{encode_reply, Payload};
use crate::listeners::Listeners;
use crate::membership::Member;
use crate::{Error, Node, Socket};

/// Marks a request answered; a second reply is refused.
#[derive(Debug)]
struct Once(AtomicBool);

impl Once {
    fn take(&self) -> Result<(), Error> {
        if self.0.swap(true, Ordering::AcqRel) {
            Err(Error::NoReplyExpected)
        } else {
            Ok(())
        }
    }
}

/// The reply handle of a client request. From its creation until it is answered or dropped
/// (whichever comes first, counted once) it is one of its connection's pending requests,
/// limited by [`NodeBuilder::max_pending_requests`](crate::NodeBuilder::max_pending_requests).
#[derive(Debug)]
pub(crate) struct ClientReply {
    callback_id: String,
    answered: Once,
    socket: Socket,
}

impl ClientReply {
    /// The reply handle of a new request on `socket`; `None` when `max_pending` requests of
    /// that connection already wait for their reply.
    pub(crate) fn begin(socket: &Socket, callback_id: String, max_pending: usize) -> Option<Self> {
        socket.begin_request(max_pending).then(|| ClientReply {
            callback_id,
            answered: Once(AtomicBool::new(false)),
            socket: socket.clone(),
        })
    }

    /// Marks the request answered (it no longer counts as pending); fails if it already was.
    fn answer(&self) -> Result<(), Error> {
        self.answered.take()?;
        self.socket.end_request();
        Ok(())
    }
}

impl Drop for ClientReply {
    fn drop(&mut self) {
        if !*self.answered.0.get_mut() {
            self.socket.end_request();
        }
    }
}

/// An event sent by a client: `{"event": E, "payload": P, "callbackId"?: C}`.
#[derive(Debug, Clone)]
pub struct ClientEvent {
    node: Node,
    socket: Socket,
    event: Arc<str>,
    payload: Payload,
    reply: Option<Arc<ClientReply>>,
}

impl ClientEvent {
    pub(crate) fn new(
        node: Node,
        socket: Socket,
        event: Arc<str>,
        payload: Payload,
        reply: Option<ClientReply>,
    ) -> Self {
        ClientEvent {
            node,
            socket,
            event,
            payload,
            reply: reply.map(Arc::new),
        }
    }

    /// The node that received it (to deliver, join rooms or query the cluster from a handler
    /// without capturing a clone of the node).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// let node = crosswire_core::Node::builder().build().await?;
    /// node.on("joinRoom", |ev| async move {
    ///     let room: String = ev.json()?;
    ///     let id = ev.socket().socket_id().ok_or(crosswire_core::Error::Closed)?;
    ///     ev.node().join_room("chat", &room, &id).await?;
    ///     ev.reply(&"joined")
    /// });
    /// # Ok(()) }
    /// ```
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Marks the request answered elsewhere and returns its callback id.
    pub(crate) fn take_reply(&self) -> Result<String, Error> {
        let reply = self.reply.as_ref().ok_or(Error::NoReplyExpected)?;
        reply.answer()?;
        Ok(reply.callback_id.clone())
    }

    /// The connection that sent it.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// The event name.
    pub fn event(&self) -> &str {
        &self.event
    }

    /// The raw payload.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// The payload decoded into `T`.
    ///
    /// # Errors
    /// [`Error::Decode`] when it does not fit `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        self.payload.json()
    }

    /// The payload as a `serde_json::Value`.
    pub fn value(&self) -> serde_json::Value {
        self.payload.value()
    }

    /// Whether the client asked for a reply (sent a `callbackId`).
    pub fn wants_reply(&self) -> bool {
        self.reply.is_some()
    }

    /// Replies `{"callbackId": C, "payload": value}` to the asking connection only.
    ///
    /// # Errors
    /// [`Error::NoReplyExpected`] if the client asked for none or it was already answered;
    /// [`Error::Closed`] / [`Error::SlowConsumer`] if it could not be queued.
    pub fn reply<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let reply = self.reply.as_ref().ok_or(Error::NoReplyExpected)?;
        reply.answer()?;
        self.socket
            .send_frame(encode_reply(&reply.callback_id, value)?)
    }
}

/// Where a cross-server reply goes.
#[derive(Debug)]
pub(crate) struct CrossReplyTo {
    pub(crate) server: Arc<str>,
    pub(crate) callback: ReplyId,
    answered: Once,
}

/// The callback id a cross-server reply answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReplyId {
    /// A crosswire node's collection.
    Node(u64),
    /// A `callbackId` on the Node.js package's wire (`Wire::JsPackage`): the asking node's
    /// own string, sent back as it came.
    JsPackage(Arc<str>),
}

/// A cross-server event, received from another node or from this one.
#[derive(Debug, Clone)]
pub struct CrossEvent {
    node: Node,
    sender: Arc<str>,
    event: Arc<str>,
    payload: Payload,
    reply_to: Option<Arc<CrossReplyTo>>,
}

impl CrossReplyTo {
    pub(crate) fn new(server: Arc<str>, callback: ReplyId) -> Self {
        CrossReplyTo {
            server,
            callback,
            answered: Once(AtomicBool::new(false)),
        }
    }
}

impl CrossEvent {
    pub(crate) fn new(
        node: Node,
        sender: Arc<str>,
        event: Arc<str>,
        payload: Payload,
        callback: Option<ReplyId>,
    ) -> Self {
        let reply_to =
            callback.map(|callback| Arc::new(CrossReplyTo::new(sender.clone(), callback)));
        CrossEvent {
            node,
            sender,
            event,
            payload,
            reply_to,
        }
    }

    /// The node that received it (to deliver, query or reply from a handler without
    /// capturing a clone of the node).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The server name of the node that emitted it.
    pub fn sender(&self) -> &str {
        &self.sender
    }

    /// The event name.
    pub fn event(&self) -> &str {
        &self.event
    }

    /// The raw payload.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// The payload decoded into `T`.
    ///
    /// # Errors
    /// [`Error::Decode`] when it does not fit `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        self.payload.json()
    }

    /// The payload as a `serde_json::Value`.
    pub fn value(&self) -> serde_json::Value {
        self.payload.value()
    }

    /// Whether the sender collects replies.
    pub fn wants_reply(&self) -> bool {
        self.reply_to.is_some()
    }

    /// Sends this node's reply to the emitting node (directly, if that is this node).
    ///
    /// # Errors
    /// [`Error::NoReplyExpected`] if no reply is collected or it was already sent; a broker
    /// error if the reply could not be published.
    pub async fn reply<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let reply_to = self.reply_to.as_ref().ok_or(Error::NoReplyExpected)?;
        reply_to.answered.take()?;
        let payload = Payload::encode(value)?;
        self.node.send_cross_reply(reply_to, Some(payload)).await
    }
}

/// A client connection closed.
#[derive(Debug, Clone)]
pub struct CloseEvent {
    /// The connection (its binding and rooms are already removed).
    pub socket: Socket,
    /// The socket id it was bound to, if any.
    pub socket_id: Option<Arc<str>>,
    /// The close code (1006 when the connection dropped without a close frame).
    pub code: u16,
    /// The close reason.
    pub reason: Arc<str>,
}

/// A client connection failed (protocol violation, I/O error).
#[derive(Debug, Clone)]
pub struct ErrorEvent {
    /// The connection.
    pub socket: Socket,
    /// What went wrong.
    pub error: Arc<str>,
}

/// A raw text message from a client, before it is parsed.
#[derive(Debug, Clone)]
pub struct MessageEvent {
    /// The connection.
    pub socket: Socket,
    /// The message text.
    pub text: Bytes,
}

/// A system event kind, used with [`Node::on_system`](crate::Node::on_system).
///
/// The kinds are the unit structs of [`system`]; each names the argument its handlers get.
pub trait SystemEvent: sealed::Sealed + Copy + 'static {
    /// What handlers of this event receive.
    type Args: Clone + Send + 'static;
}

mod sealed {
    pub trait Sealed {}
}

/// Listeners of every system event, one registry per kind.
pub(crate) struct SystemListeners {
    by_kind: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl SystemListeners {
    /// The registry of kind `E`.
    pub(crate) fn of<E: SystemEvent>(&self) -> &Listeners<E::Args> {
        match self
            .by_kind
            .get(&TypeId::of::<E>())
            .and_then(|l| l.downcast_ref::<Listeners<E::Args>>())
        {
            Some(listeners) => listeners,
            None => unreachable!("every system event kind is registered in SystemListeners::new"),
        }
    }
}

impl std::fmt::Debug for SystemListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemListeners").finish_non_exhaustive()
    }
}

macro_rules! system_events {
    ($($(#[$doc:meta])* $kind:ident: $args:ty,)*) => {
        /// The system events of a node and their handlers' arguments.
        pub mod system {
            use super::*;
            $(
                $(#[$doc])*
                #[derive(Debug, Clone, Copy)]
                pub struct $kind;
                impl sealed::Sealed for $kind {}
                impl SystemEvent for $kind {
                    type Args = $args;
                }
            )*
        }

        impl SystemListeners {
            pub(crate) fn new(ids: &Arc<crate::listeners::Registry>) -> Self {
                let mut by_kind: HashMap<TypeId, Box<dyn Any + Send + Sync>> = HashMap::new();
                $(by_kind.insert(TypeId::of::<system::$kind>(), Box::new(Listeners::<$args>::new(ids.clone())));)*
                SystemListeners { by_kind }
            }
        }
    };
}

system_events! {
    /// A client connected; handlers receive its [`Socket`]. The node reads no message from it
    /// until every connection handler has finished, so binding here is race-free.
    Connection: Socket,
    /// A client disconnected; handlers receive a [`CloseEvent`].
    Close: CloseEvent,
    /// A client connection failed; handlers receive an [`ErrorEvent`].
    ConnectionError: ErrorEvent,
    /// A client answered a protocol ping.
    Pong: Socket,
    /// A client sent a text message (raw, before parsing).
    Message: MessageEvent,
    /// A client sent the application heartbeat (it was echoed).
    ClientPing: Socket,
    /// The server transport hit an error (e.g. accept failed).
    ServerError: Arc<str>,
    /// The server transport is listening.
    Listening: SocketAddr,
    /// The server transport closed.
    ServerClose: (),
    /// A node joined the cluster (or restarted); handlers receive its [`Member`] entry.
    NodeJoined: Member,
    /// A node left the cluster: it shut down, restarted, or missed too many announcements.
    NodeLeft: Member,
    /// Another live node announced this node's server name, or two live nodes share one;
    /// handlers receive the name (also logged as an error and counted).
    DuplicateServerName: String,
}
