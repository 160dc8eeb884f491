//! Rooms as the application uses them: joining, leaving and querying the rooms of this node,
//! and keeping each namespace's broker channel subscribed while it has local members. The
//! bookkeeping itself is in `room_index`.
//!
//! The examples connect clients through `TestTransport`, a minimal [`Transport`](crate::Transport)
//! defined in their hidden lines.

use std::collections::{HashMap, HashSet};

use crate::channels::check_namespace;
use crate::limits::ConnectionLimits;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::room_index::Match;
use crate::Error;

impl Node {
    /// Adds a bound socket id to a room, subscribing the namespace's channel if this is its
    /// first local member.
    ///
    /// # Errors
    /// [`Error::NotBound`] if the id is not bound on this node; [`Error::InvalidName`] for an
    /// empty or reserved namespace or an empty room; [`Error::TooManyRooms`] if the id is
    /// already in [`max_rooms_per_socket`](crate::NodeBuilder::max_rooms_per_socket) rooms (and not
    /// in this one); a broker error if the namespace channel
    /// could not be subscribed (the membership stands and local delivery works; the next join
    /// retries the subscription).
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
    /// use crosswire_core::{Error, Node, RequestInfo};
    ///
    /// let node = Node::builder().build().await?;
    /// let _alice = node.connect_bound(RequestInfo::default(), Arc::new(TestTransport), "alice").await;
    /// node.join_room("chat", "lobby", "alice").await?;
    /// assert!(node.is_joined("alice", "chat", Some("lobby")));
    /// // Only socket ids bound on this node can join.
    /// let refused = node.join_room("chat", "lobby", "bob").await;
    /// assert!(matches!(refused, Err(Error::NotBound(_))));
    /// # Ok(()) }
    /// ```
    pub async fn join_room(
        &self,
        namespace: &str,
        room: &str,
        socket_id: &str,
    ) -> Result<(), Error> {
        check_namespace(namespace)?;
        if room.is_empty() {
            return Err(Error::invalid("room id", "it is empty"));
        }
        {
            let mut state = self.inner.state.write();
            let Some((id, socket)) = state.bound.get_key_value(socket_id) else {
                return Err(Error::NotBound(socket_id.to_owned()));
            };
            let (id, socket) = (id.clone(), socket.clone());
            let limit = self.inner.options.connection.rooms_per_socket;
            if state.rooms.rooms_of(&id) >= limit
                && !state.rooms.is_joined(&id, namespace, Some(room))
            {
                drop(state);
                Metrics::add(&self.inner.metrics.limit_rooms);
                let flag = ConnectionLimits::ROOMS_LOGGED;
                if socket.limit_logged_once(flag) {
                    tracing::warn!(
                        conn = socket.conn_id(),
                        socket_id,
                        limit,
                        "a socket id reached max_rooms_per_socket; its further joins are \
                         refused (logged once per connection)"
                    );
                }
                return Err(Error::TooManyRooms {
                    socket_id: socket_id.to_owned(),
                    limit,
                });
            }
            state.rooms.join(namespace, room, &id, &socket);
        }
        self.reconcile_namespace(namespace).await
    }

    /// Removes a socket id from a room, unsubscribing the namespace's channel when its last
    /// local member leaves (unless preset or auto-unsubscribe is off).
    ///
    /// # Errors
    /// A broker error if the channel could not be unsubscribed.
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
    /// let _alice = node.connect_bound(RequestInfo::default(), Arc::new(TestTransport), "alice").await;
    /// node.join_room("chat", "lobby", "alice").await?;
    /// node.leave_room("chat", "lobby", "alice").await?;
    /// assert!(!node.is_joined("alice", "chat", None));
    /// # Ok(()) }
    /// ```
    pub async fn leave_room(
        &self,
        namespace: &str,
        room: &str,
        socket_id: &str,
    ) -> Result<(), Error> {
        let emptied = self
            .inner
            .state
            .write()
            .rooms
            .leave(namespace, room, socket_id);
        if emptied {
            self.reconcile_namespace(namespace).await?;
        }
        Ok(())
    }

    /// Deletes a room on this node and every local membership in it.
    ///
    /// # Errors
    /// A broker error if the namespace channel could not be unsubscribed.
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
    /// use crosswire_core::{Match, Node, RequestInfo};
    ///
    /// let node = Node::builder().build().await?;
    /// let _alice = node.connect_bound(RequestInfo::default(), Arc::new(TestTransport), "alice").await;
    /// node.join_room("chat", "lobby", "alice").await?;
    /// node.remove_room("chat", "lobby").await?;
    /// assert!(!node.is_joined("alice", "chat", Some("lobby")));
    /// assert!(node.room_ids("chat", Match::Exact).is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn remove_room(&self, namespace: &str, room: &str) -> Result<(), Error> {
        let (_, emptied) = self.inner.state.write().rooms.remove_room(namespace, room);
        if emptied {
            self.reconcile_namespace(namespace).await?;
        }
        Ok(())
    }

    /// Distinct local socket ids in `room` of `namespace` (all rooms of it if `room` is
    /// `None`; rooms whose id starts with `room` under [`Match::Prefix`]).
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
    /// use std::collections::HashSet;
    /// use crosswire_core::{Match, Node, RequestInfo};
    ///
    /// let node = Node::builder().build().await?;
    /// let mut clients = Vec::new();
    /// for (id, room) in [("alice", "game-1"), ("bob", "game-2")] {
    ///     clients.push(node.connect_bound(RequestInfo::default(), Arc::new(TestTransport), id).await);
    ///     node.join_room("play", room, id).await?;
    /// }
    /// let in_game_1 = node.room_socket_ids("play", Some("game-1"), Match::Exact);
    /// assert_eq!(in_game_1, HashSet::from(["alice".to_owned()]));
    /// assert_eq!(node.room_socket_ids("play", Some("game-"), Match::Prefix).len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn room_socket_ids(
        &self,
        namespace: &str,
        room: Option<&str>,
        matching: Match,
    ) -> HashSet<String> {
        self.inner
            .state
            .read()
            .rooms
            .socket_ids(namespace, room, matching)
            .iter()
            .map(|id| id.to_string())
            .collect()
    }

    /// Number of distinct local sockets in the matched rooms (see [`Node::room_socket_ids`]).
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
    /// use crosswire_core::{Match, Node, RequestInfo};
    ///
    /// let node = Node::builder().build().await?;
    /// let mut clients = Vec::new();
    /// for (id, room) in [("alice", "game-1"), ("bob", "game-2")] {
    ///     clients.push(node.connect_bound(RequestInfo::default(), Arc::new(TestTransport), id).await);
    ///     node.join_room("play", room, id).await?;
    /// }
    /// assert_eq!(node.socket_count_in_room("play", Some("game-1"), Match::Exact), 1);
    /// assert_eq!(node.socket_count_in_room("play", None, Match::Exact), 2);
    /// # Ok(()) }
    /// ```
    pub fn socket_count_in_room(
        &self,
        namespace: &str,
        room: Option<&str>,
        matching: Match,
    ) -> usize {
        self.inner
            .state
            .read()
            .rooms
            .socket_ids(namespace, room, matching)
            .len()
    }

    /// Rooms joined by `socket_id` on this node, by namespace; only namespaces starting with
    /// `namespace_prefix` when given.
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
    /// use std::collections::HashSet;
    /// use crosswire_core::{Node, RequestInfo};
    ///
    /// let node = Node::builder().build().await?;
    /// let _alice = node.connect_bound(RequestInfo::default(), Arc::new(TestTransport), "alice").await;
    /// for (namespace, room) in [("chat", "lobby"), ("chat", "help"), ("game", "g1")] {
    ///     node.join_room(namespace, room, "alice").await?;
    /// }
    /// let rooms = node.joined_rooms("alice", None);
    /// assert_eq!(rooms["chat"], HashSet::from(["lobby".to_owned(), "help".to_owned()]));
    /// assert_eq!(node.joined_rooms("alice", Some("ga")).len(), 1); // "game" only
    /// # Ok(()) }
    /// ```
    pub fn joined_rooms(
        &self,
        socket_id: &str,
        namespace_prefix: Option<&str>,
    ) -> HashMap<String, HashSet<String>> {
        self.inner
            .state
            .read()
            .rooms
            .joined(socket_id, namespace_prefix)
    }

    /// Whether `socket_id` is in `room` of `namespace` (in any room of it if `room` is `None`).
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
    /// let _alice = node.connect_bound(RequestInfo::default(), Arc::new(TestTransport), "alice").await;
    /// node.join_room("chat", "lobby", "alice").await?;
    /// assert!(node.is_joined("alice", "chat", Some("lobby")));
    /// assert!(node.is_joined("alice", "chat", None));
    /// assert!(!node.is_joined("alice", "chat", Some("help")));
    /// # Ok(()) }
    /// ```
    pub fn is_joined(&self, socket_id: &str, namespace: &str, room: Option<&str>) -> bool {
        self.inner
            .state
            .read()
            .rooms
            .is_joined(socket_id, namespace, room)
    }

    /// Number of local rooms in the namespaces matched by `namespace`.
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
    /// use crosswire_core::{Match, Node, RequestInfo};
    ///
    /// let node = Node::builder().build().await?;
    /// let _alice = node.connect_bound(RequestInfo::default(), Arc::new(TestTransport), "alice").await;
    /// for (namespace, room) in [("game:eu", "g1"), ("game:eu", "g2"), ("game:us", "g3")] {
    ///     node.join_room(namespace, room, "alice").await?;
    /// }
    /// assert_eq!(node.room_count("game:eu", Match::Exact), 2);
    /// assert_eq!(node.room_count("game:", Match::Prefix), 3);
    /// # Ok(()) }
    /// ```
    pub fn room_count(&self, namespace: &str, matching: Match) -> usize {
        self.inner
            .state
            .read()
            .rooms
            .room_count(namespace, matching)
    }

    /// Ids of local rooms in the namespaces matched by `namespace`.
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
    /// use crosswire_core::{Match, Node, RequestInfo};
    ///
    /// let node = Node::builder().build().await?;
    /// let _alice = node.connect_bound(RequestInfo::default(), Arc::new(TestTransport), "alice").await;
    /// for (namespace, room) in [("game:eu", "g1"), ("game:eu", "g2"), ("game:us", "g3")] {
    ///     node.join_room(namespace, room, "alice").await?;
    /// }
    /// let mut ids = node.room_ids("game:", Match::Prefix);
    /// ids.sort();
    /// assert_eq!(ids, ["g1", "g2", "g3"]);
    /// # Ok(()) }
    /// ```
    pub fn room_ids(&self, namespace: &str, matching: Match) -> Vec<String> {
        self.inner.state.read().rooms.room_ids(namespace, matching)
    }

    /// Keeps the namespace channel subscribed exactly while it is preset or has local members
    /// (or, with auto-unsubscribe off, once it was ever subscribed).
    pub(crate) async fn reconcile_namespace(&self, namespace: &str) -> Result<(), Error> {
        let Some(subs) = &self.inner.subscriptions else {
            return Ok(());
        };
        let channel = self.inner.names.namespace(namespace);
        let inner = &self.inner;
        subs.reconcile(&channel, |subscribed| {
            inner
                .options
                .preset_namespaces
                .iter()
                .any(|ns| ns == namespace)
                || (subscribed && !inner.options.auto_unsubscribe)
                || inner.state.read().rooms.has_namespace(namespace)
        })
        .await
        .map_err(Error::from)
    }

    pub(crate) fn reconcile_namespaces_later(&self, namespaces: Vec<String>) {
        if namespaces.is_empty() || self.inner.subscriptions.is_none() {
            return;
        }
        let node = self.clone();
        tokio::spawn(async move {
            for namespace in namespaces {
                node.log_reconcile(&namespace, node.reconcile_namespace(&namespace).await);
            }
        });
    }

    pub(crate) fn log_reconcile(&self, namespace: &str, result: Result<(), Error>) {
        if let Err(error) = result {
            tracing::warn!(namespace, %error, "could not update the namespace channel subscription");
        }
    }
}
