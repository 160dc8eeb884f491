//! Who a push goes to, said in one fluent chain: [`Node::broadcast`], [`Node::to`] and
//! [`Node::to_room`] name the recipients, the chain narrows them, and `emit` sends.
//!
//! ```text
//! node.broadcast().emit("news", &data)                           every connection of the cluster
//! node.broadcast().local().emit("news", &data)                   every connection of this node
//! node.to("42").emit("private", &data)                           one socket id, on any node
//! node.to(["1", "2"]).emit("group", &data)                       several socket ids
//! node.to_room("chat", "1000").except("42").emit("say", &data)   a room, on every node
//! ```
//!
//! The sending itself (encode once, queue locally, publish one envelope) is in `delivery`.
//!
//! The examples connect clients through `TestTransport`, a minimal [`Transport`](crate::Transport)
//! defined in their hidden lines, which drops (or records) the frames a real transport would
//! write.

use std::borrow::Cow;

use serde::Serialize;

use crate::delivery::{Delivery, RoomOptions};
use crate::{Error, Node};

impl Node {
    /// Addresses every open connection of the cluster, bound to a socket id or not (anonymous
    /// viewers too), as the JavaScript package's `broadcast` did; [`Broadcast::local`] narrows
    /// it to this node's.
    ///
    /// ```
    /// # use crosswire_core::{SendError, Transport};
    /// # use std::sync::Arc;
    /// # struct TestTransport;
    /// # impl Transport for TestTransport {
    /// #     fn send(&self, _: bytes::Bytes) -> Result<(), SendError> { Ok(()) }
    /// #     fn ping(&self) {}
    /// #     fn close(&self, _: u16, _: &str) {}
    /// #     fn terminate(&self) {}
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use crosswire_core::{Node, RequestInfo};
    ///
    /// let node = Node::builder().build().await?;
    /// let _client = node.connect(RequestInfo::default(), Arc::new(TestTransport)).await; // not bound
    /// let delivery = node.broadcast().emit("news", &"hello").await?;
    /// // Queued on the one connection; a standalone node has no broker to publish to.
    /// assert_eq!((delivery.local, delivery.published), (1, false));
    /// # Ok(()) }
    /// ```
    pub fn broadcast(&self) -> Broadcast<'_> {
        Broadcast {
            node: self,
            local: false,
        }
    }

    /// Addresses the clients bound to one socket id (`"42"`) or several (`["1", "2"]`, a
    /// `Vec` or a slice of ids), wherever in the cluster they are.
    ///
    /// ```
    /// # use crosswire_core::{SendError, Transport};
    /// # use std::sync::Arc;
    /// # struct TestTransport(std::sync::mpsc::Sender<bytes::Bytes>);
    /// # impl Transport for TestTransport {
    /// #     fn send(&self, frame: bytes::Bytes) -> Result<(), SendError> {
    /// #         self.0.send(frame).map_err(|_| SendError::Closed)
    /// #     }
    /// #     fn ping(&self) {}
    /// #     fn close(&self, _: u16, _: &str) {}
    /// #     fn terminate(&self) {}
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use crosswire_core::{Node, RequestInfo};
    ///
    /// let node = Node::builder().build().await?;
    /// let (tx, frames) = std::sync::mpsc::channel();
    /// let _alice = node.connect_bound(RequestInfo::default(), Arc::new(TestTransport(tx)), "alice").await;
    ///
    /// let delivery = node.to("alice").emit("chat", &"hi").await?;
    /// assert_eq!(delivery.local, 1);
    /// assert_eq!(frames.try_recv()?, r#"{"event":"chat","payload":"hi"}"#);
    ///
    /// // carol is bound nowhere; a node with a broker would publish the push for her.
    /// let delivery = node.to(["alice", "carol"]).emit("chat", &"hello").await?;
    /// assert_eq!(delivery.local, 1);
    /// # Ok(()) }
    /// ```
    pub fn to<'a>(&'a self, socket_ids: impl SocketIds<'a>) -> ToSockets<'a> {
        ToSockets {
            node: self,
            ids: socket_ids.into_socket_ids(),
        }
    }

    /// Addresses the members of `room` in `namespace`, on every node; [`ToRoom::except`],
    /// [`ToRoom::local`] and [`ToRoom::destroy`] refine it.
    ///
    /// ```
    /// # use crosswire_core::{SendError, Transport};
    /// # use std::sync::Arc;
    /// # struct TestTransport(std::sync::mpsc::Sender<bytes::Bytes>);
    /// # impl Transport for TestTransport {
    /// #     fn send(&self, frame: bytes::Bytes) -> Result<(), SendError> {
    /// #         self.0.send(frame).map_err(|_| SendError::Closed)
    /// #     }
    /// #     fn ping(&self) {}
    /// #     fn close(&self, _: u16, _: &str) {}
    /// #     fn terminate(&self) {}
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use crosswire_core::{Node, RequestInfo};
    ///
    /// let node = Node::builder().build().await?;
    /// let (tx, frames) = std::sync::mpsc::channel();
    /// let mut clients = Vec::new();
    /// for id in ["alice", "bob"] {
    ///     let transport = Arc::new(TestTransport(tx.clone()));
    ///     clients.push(node.connect_bound(RequestInfo::default(), transport, id).await);
    ///     node.join_room("chat", "lobby", id).await?;
    /// }
    /// let delivery = node.to_room("chat", "lobby").except("bob").emit("say", &"hi").await?;
    /// assert_eq!((delivery.local, frames.try_iter().count()), (1, 1)); // alice only
    /// # Ok(()) }
    /// ```
    pub fn to_room<'a>(&'a self, namespace: &'a str, room: &'a str) -> ToRoom<'a> {
        ToRoom {
            node: self,
            namespace,
            room,
            options: RoomOptions::default(),
        }
    }
}

/// Every open connection of the cluster, or of this node ([`Node::broadcast`]).
#[derive(Debug)]
#[must_use = "nothing is sent until `emit`"]
pub struct Broadcast<'a> {
    node: &'a Node,
    local: bool,
}

impl Broadcast<'_> {
    /// This node's connections only: nothing is published.
    pub fn local(mut self) -> Self {
        self.local = true;
        self
    }

    /// Pushes `event` with `payload`: queued on the local connections, then published once
    /// for the other nodes.
    ///
    /// # Errors
    /// [`Error::Encode`] for an unserializable payload; a broker error if it could not be
    /// published (local clients have it already).
    pub async fn emit<T: Serialize + ?Sized>(
        self,
        event: &str,
        payload: &T,
    ) -> Result<Delivery, Error> {
        self.node.push_to_all(event, payload, self.local).await
    }
}

/// The clients bound to some socket ids, wherever they are ([`Node::to`]).
#[derive(Debug)]
#[must_use = "nothing is sent until `emit`"]
pub struct ToSockets<'a> {
    node: &'a Node,
    ids: Vec<Cow<'a, str>>,
}

impl ToSockets<'_> {
    /// Pushes `event` with `payload`: queued on the ids bound here, published for the rest
    /// (to the inbox of each id's node when the directory knows it).
    ///
    /// # Errors
    /// [`Error::Encode`]; a broker error when remote ids could not be published.
    pub async fn emit<T: Serialize + ?Sized>(
        self,
        event: &str,
        payload: &T,
    ) -> Result<Delivery, Error> {
        let ids = self.ids.iter().map(|id| &**id);
        self.node.push_to_ids(ids, event, payload).await
    }
}

/// The members of a room ([`Node::to_room`]).
#[derive(Debug)]
#[must_use = "nothing is sent until `emit`"]
pub struct ToRoom<'a> {
    node: &'a Node,
    namespace: &'a str,
    room: &'a str,
    options: RoomOptions<'a>,
}

impl<'a> ToRoom<'a> {
    /// Skips these socket ids (one id, or a list), on every node.
    pub fn except(mut self, socket_ids: impl SocketIds<'a>) -> Self {
        self.options.exclude = socket_ids.into_socket_ids();
        self
    }

    /// This node's members only: nothing is published.
    pub fn local(mut self) -> Self {
        self.options.local_only = true;
        self
    }

    /// Removes the room after delivering, on every node that has it.
    pub fn destroy(mut self) -> Self {
        self.options.destroy = true;
        self
    }

    /// Pushes `event` with `payload` to the members.
    ///
    /// # Errors
    /// [`Error::Encode`]; [`Error::InvalidName`] for a reserved namespace; a broker error if it
    /// could not be published (local members have it already).
    pub async fn emit<T: Serialize + ?Sized>(
        self,
        event: &str,
        payload: &T,
    ) -> Result<Delivery, Error> {
        self.node
            .push_to_room(self.namespace, self.room, event, payload, self.options)
            .await
    }
}

/// One socket id or several, as [`Node::to`] and [`ToRoom::except`] take them: `&str`,
/// `String`, or an array, `Vec` or slice of either.
pub trait SocketIds<'a> {
    /// The ids, borrowed where they can be.
    fn into_socket_ids(self) -> Vec<Cow<'a, str>>;
}

impl<'a> SocketIds<'a> for &'a str {
    fn into_socket_ids(self) -> Vec<Cow<'a, str>> {
        vec![Cow::Borrowed(self)]
    }
}

impl<'a> SocketIds<'a> for &'a String {
    fn into_socket_ids(self) -> Vec<Cow<'a, str>> {
        vec![Cow::Borrowed(self.as_str())]
    }
}

impl<'a> SocketIds<'a> for String {
    fn into_socket_ids(self) -> Vec<Cow<'a, str>> {
        vec![Cow::Owned(self)]
    }
}

impl<'a, S: Into<Cow<'a, str>>, const N: usize> SocketIds<'a> for [S; N] {
    fn into_socket_ids(self) -> Vec<Cow<'a, str>> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<'a, S: Into<Cow<'a, str>>> SocketIds<'a> for Vec<S> {
    fn into_socket_ids(self) -> Vec<Cow<'a, str>> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<'a, S: AsRef<str>> SocketIds<'a> for &'a [S] {
    fn into_socket_ids(self) -> Vec<Cow<'a, str>> {
        self.iter().map(|id| Cow::Borrowed(id.as_ref())).collect()
    }
}

impl<'a, S: AsRef<str>> SocketIds<'a> for &'a Vec<S> {
    fn into_socket_ids(self) -> Vec<Cow<'a, str>> {
        self.as_slice().into_socket_ids()
    }
}
