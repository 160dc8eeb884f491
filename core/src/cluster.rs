//! Cluster-wide queries and actions: each one is a cross-server request of crosswire's own
//! (event `$cw.<name>`), answered by every node from its local state and collected with the
//! automatic reply count, so the answer covers every live node.
//!
//! The examples of the methods connect clients through `TestTransport`, a minimal
//! [`Transport`](crate::Transport) defined in their hidden lines.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
//! use std::time::Duration;
//! let node = crosswire_core::Node::builder().build().await?;
//! let total = node.cluster().timeout(Duration::from_secs(2)).client_count().await?;
//! assert_eq!(total.value, 0);
//! assert!(total.is_complete());
//! assert_eq!(total.answered, ["standalone"]);
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bridge::{CrossEmit, DEFAULT_CROSS_TIMEOUT};
use crate::events::{CrossReplyTo, ReplyId};
use crate::frame::Payload;
use crate::listeners::drive;
use crate::room_index::Match;
use crate::{CrossReply, Error, Node};

/// A cluster-wide answer, and which nodes it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Answer<T> {
    /// The answer, merged over the nodes that answered.
    pub value: T,
    /// The nodes that answered, sorted.
    pub answered: Vec<String>,
    /// The live nodes that did not answer in time or left meanwhile, sorted. Empty when the
    /// answer is complete, or when one node's answer settled it (a socket id was found).
    pub missing: Vec<String>,
}

impl<T> Answer<T> {
    /// Whether every node that was asked answered (or one answer settled the question).
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Cluster-wide queries and actions of a node ([`Node::cluster`]). Every call asks every live
/// node (this one included) and waits for their answers, at most the
/// [`timeout`](Self::timeout).
#[derive(Debug, Clone, Copy)]
pub struct Cluster<'a> {
    node: &'a Node,
    timeout: Duration,
}

impl Node {
    /// Cluster-wide queries and actions: client and room counts, where a socket id is,
    /// disconnecting it or moving it between rooms wherever it is connected.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use crosswire_core::Node;
    ///
    /// let node = Node::builder().build().await?;
    /// let answer = node.cluster().client_count().await?;
    /// assert_eq!(answer.value, 0);
    /// assert_eq!(answer.answered, ["standalone"]); // every live node answers; here, this one
    /// # Ok(()) }
    /// ```
    pub fn cluster(&self) -> Cluster<'_> {
        Cluster {
            node: self,
            timeout: DEFAULT_CROSS_TIMEOUT,
        }
    }
}

/// Arguments of the queries that name a room.
#[derive(Debug, Serialize, Deserialize)]
struct RoomArgs {
    namespace: String,
    room: Option<String>,
    prefix: bool,
    ids: bool,
}

/// Arguments of the queries and actions that name a socket id.
#[derive(Debug, Serialize, Deserialize)]
struct SocketArgs {
    socket_id: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    reason: Option<String>,
}

impl SocketArgs {
    fn id(socket_id: &str) -> Self {
        SocketArgs {
            socket_id: socket_id.to_owned(),
            namespace: None,
            room: None,
            code: None,
            reason: None,
        }
    }
}

/// The replies of one query, before they are merged.
struct Replies {
    by_node: Vec<(String, Value)>,
    missing: Vec<String>,
}

impl Replies {
    fn answer<T>(self, value: T) -> Answer<T> {
        let mut answered: Vec<String> = self.by_node.into_iter().map(|(node, _)| node).collect();
        answered.sort();
        Answer {
            value,
            answered,
            missing: self.missing,
        }
    }

    /// Each reply decoded as `T`; replies that do not decode are left out (and logged).
    fn decoded<T: DeserializeOwned>(&self) -> impl Iterator<Item = (&str, T)> {
        self.by_node.iter().filter_map(|(node, value)| {
            match serde_json::from_value(value.clone()) {
                Ok(decoded) => Some((node.as_str(), decoded)),
                Err(error) => {
                    tracing::debug!(node, %error, "left out a cluster answer that did not decode");
                    None
                }
            }
        })
    }
}

impl<'a> Cluster<'a> {
    /// How long to wait for the nodes' answers. Default: 5 s.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use std::time::Duration;
    /// use crosswire_core::Node;
    ///
    /// let node = Node::builder().build().await?;
    /// let answer = node.cluster().timeout(Duration::from_millis(500)).client_count().await?;
    /// assert!(answer.is_complete());
    /// # Ok(()) }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Bound clients on the whole cluster.
    ///
    /// # Errors
    /// A broker error when the question could not be published; [`Error::ShuttingDown`].
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
    /// // A connection not bound to a socket id is not counted.
    /// let _client = node.connect(RequestInfo::default(), Arc::new(TestTransport)).await;
    /// assert_eq!(node.cluster().client_count().await?.value, 1);
    /// # Ok(()) }
    /// ```
    pub async fn client_count(&self) -> Result<Answer<usize>, Error> {
        let by_node = self.clients_by_node().await?;
        Ok(Answer {
            value: by_node.value.values().sum(),
            answered: by_node.answered,
            missing: by_node.missing,
        })
    }

    /// Bound clients of each node that answered, by server name.
    ///
    /// # Errors
    /// As [`client_count`](Self::client_count).
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
    /// let node = Node::builder().server_name("a").build().await?;
    /// let _alice = node.connect_bound(RequestInfo::default(), Arc::new(TestTransport), "alice").await;
    /// let answer = node.cluster().clients_by_node().await?;
    /// assert_eq!(answer.value["a"], 1);
    /// # Ok(()) }
    /// ```
    pub async fn clients_by_node(&self) -> Result<Answer<BTreeMap<String, usize>>, Error> {
        let replies = self.ask("clients", &(), |_| false).await?;
        let counts = replies
            .decoded::<usize>()
            .map(|(node, n)| (node.to_owned(), n))
            .collect();
        Ok(replies.answer(counts))
    }

    /// Distinct socket ids in `room` of `namespace` on the whole cluster (all rooms of it
    /// when `room` is `None`; rooms whose id starts with `room` under [`Match::Prefix`]).
    ///
    /// # Errors
    /// As [`client_count`](Self::client_count).
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
    /// let answer = node.cluster().room_socket_ids("chat", Some("lobby"), Match::Exact).await?;
    /// assert!(answer.value.contains("alice"));
    /// assert!(answer.is_complete());
    /// # Ok(()) }
    /// ```
    pub async fn room_socket_ids(
        &self,
        namespace: &str,
        room: Option<&str>,
        matching: Match,
    ) -> Result<Answer<HashSet<String>>, Error> {
        let replies = self.ask_room(namespace, room, matching, true).await?;
        let ids = replies
            .decoded::<Vec<String>>()
            .flat_map(|(_, ids)| ids)
            .collect();
        Ok(replies.answer(ids))
    }

    /// Number of socket ids in the matched rooms on the whole cluster (see
    /// [`room_socket_ids`](Self::room_socket_ids)). A socket id is bound on one node at a
    /// time, so the nodes' counts add up.
    ///
    /// # Errors
    /// As [`client_count`](Self::client_count).
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
    /// for (id, room) in [("alice", "lobby-1"), ("bob", "lobby-2")] {
    ///     clients.push(node.connect_bound(RequestInfo::default(), Arc::new(TestTransport), id).await);
    ///     node.join_room("chat", room, id).await?;
    /// }
    /// let answer = node.cluster().room_socket_count("chat", Some("lobby-"), Match::Prefix).await?;
    /// assert_eq!(answer.value, 2);
    /// # Ok(()) }
    /// ```
    pub async fn room_socket_count(
        &self,
        namespace: &str,
        room: Option<&str>,
        matching: Match,
    ) -> Result<Answer<usize>, Error> {
        let replies = self.ask_room(namespace, room, matching, false).await?;
        let count = replies.decoded::<usize>().map(|(_, n)| n).sum();
        Ok(replies.answer(count))
    }

    /// Every room of `namespace` on the cluster with its number of members.
    ///
    /// # Errors
    /// As [`client_count`](Self::client_count).
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
    /// let answer = node.cluster().room_sizes("chat").await?;
    /// assert_eq!(answer.value["lobby"], 1);
    /// # Ok(()) }
    /// ```
    pub async fn room_sizes(
        &self,
        namespace: &str,
    ) -> Result<Answer<BTreeMap<String, usize>>, Error> {
        let replies = self.ask("room_sizes", &namespace, |_| false).await?;
        let mut sizes = BTreeMap::new();
        for (_, rooms) in replies.decoded::<HashMap<String, usize>>() {
            for (room, members) in rooms {
                *sizes.entry(room).or_default() += members;
            }
        }
        Ok(replies.answer(sizes))
    }

    /// The rooms `socket_id` is in, by namespace, wherever it is connected; only namespaces
    /// starting with `namespace_prefix` when given.
    ///
    /// # Errors
    /// As [`client_count`](Self::client_count).
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
    /// let answer = node.cluster().joined_rooms("alice", None).await?;
    /// assert!(answer.value["chat"].contains("lobby"));
    /// # Ok(()) }
    /// ```
    pub async fn joined_rooms(
        &self,
        socket_id: &str,
        namespace_prefix: Option<&str>,
    ) -> Result<Answer<HashMap<String, HashSet<String>>>, Error> {
        let args = SocketArgs {
            namespace: namespace_prefix.map(str::to_owned),
            ..SocketArgs::id(socket_id)
        };
        let replies = self.ask("rooms_of", &args, |_| false).await?;
        let mut joined: HashMap<String, HashSet<String>> = HashMap::new();
        for (_, rooms) in replies.decoded::<HashMap<String, HashSet<String>>>() {
            for (namespace, ids) in rooms {
                joined.entry(namespace).or_default().extend(ids);
            }
        }
        Ok(replies.answer(joined))
    }

    /// The node `socket_id` is connected to, or `None`. Returns as soon as that node answers.
    ///
    /// # Errors
    /// As [`client_count`](Self::client_count).
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
    /// let node = Node::builder().server_name("a").build().await?;
    /// let _alice = node.connect_bound(RequestInfo::default(), Arc::new(TestTransport), "alice").await;
    /// assert_eq!(node.cluster().node_of("alice").await?.value.as_deref(), Some("a"));
    /// assert_eq!(node.cluster().node_of("bob").await?.value, None);
    /// # Ok(()) }
    /// ```
    pub async fn node_of(&self, socket_id: &str) -> Result<Answer<Option<String>>, Error> {
        let args = SocketArgs::id(socket_id);
        let replies = self.ask("locate", &args, is_true).await?;
        let found = replies
            .decoded::<bool>()
            .find(|(_, here)| *here)
            .map(|(node, _)| node.to_owned());
        Ok(replies.answer(found))
    }

    /// Whether `socket_id` is connected anywhere in the cluster. Returns as soon as its node
    /// answers.
    ///
    /// # Errors
    /// As [`client_count`](Self::client_count).
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
    /// assert!(node.cluster().is_online("alice").await?.value);
    /// assert!(!node.cluster().is_online("bob").await?.value);
    /// # Ok(()) }
    /// ```
    pub async fn is_online(&self, socket_id: &str) -> Result<Answer<bool>, Error> {
        let node = self.node_of(socket_id).await?;
        Ok(Answer {
            value: node.value.is_some(),
            answered: node.answered,
            missing: node.missing,
        })
    }

    /// Closes the connection of `socket_id` with `code` and `reason`, wherever it is. The
    /// value says whether it was found.
    ///
    /// # Errors
    /// As [`client_count`](Self::client_count).
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
    /// use crosswire_core::{close_codes, Node, RequestInfo};
    ///
    /// let node = Node::builder().build().await?;
    /// let _alice = node.connect_bound(RequestInfo::default(), Arc::new(TestTransport), "alice").await;
    /// assert!(node.cluster().disconnect("alice", close_codes::FORCED_LOGOUT, "bye").await?.value);
    /// assert!(!node.cluster().disconnect("bob", close_codes::FORCED_LOGOUT, "bye").await?.value); // not found
    /// # Ok(()) }
    /// ```
    pub async fn disconnect(
        &self,
        socket_id: &str,
        code: u16,
        reason: &str,
    ) -> Result<Answer<bool>, Error> {
        let args = SocketArgs {
            code: Some(code),
            reason: Some(reason.to_owned()),
            ..SocketArgs::id(socket_id)
        };
        self.act("disconnect", &args).await
    }

    /// Makes `socket_id` join `room` of `namespace` on the node it is connected to. The value
    /// says whether it was found (and joined).
    ///
    /// # Errors
    /// As [`client_count`](Self::client_count).
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
    /// assert!(node.cluster().join_room("chat", "lobby", "alice").await?.value);
    /// assert!(node.is_joined("alice", "chat", Some("lobby")));
    /// # Ok(()) }
    /// ```
    pub async fn join_room(
        &self,
        namespace: &str,
        room: &str,
        socket_id: &str,
    ) -> Result<Answer<bool>, Error> {
        self.act("join", &room_action(namespace, room, socket_id))
            .await
    }

    /// Makes `socket_id` leave `room` of `namespace` on the node it is connected to. The value
    /// says whether it was found (and was in the room).
    ///
    /// # Errors
    /// As [`client_count`](Self::client_count).
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
    /// assert!(node.cluster().leave_room("chat", "lobby", "alice").await?.value);
    /// assert!(!node.is_joined("alice", "chat", None));
    /// # Ok(()) }
    /// ```
    pub async fn leave_room(
        &self,
        namespace: &str,
        room: &str,
        socket_id: &str,
    ) -> Result<Answer<bool>, Error> {
        self.act("leave", &room_action(namespace, room, socket_id))
            .await
    }

    async fn ask_room(
        &self,
        namespace: &str,
        room: Option<&str>,
        matching: Match,
        ids: bool,
    ) -> Result<Replies, Error> {
        let args = RoomArgs {
            namespace: namespace.to_owned(),
            room: room.map(str::to_owned),
            prefix: matching == Match::Prefix,
            ids,
        };
        self.ask("room", &args, |_| false).await
    }

    /// An action done by the node where `socket_id` is: asked of all, settled by the first
    /// node that did it.
    async fn act(&self, action: &str, args: &SocketArgs) -> Result<Answer<bool>, Error> {
        let replies = self.ask(action, args, is_true).await?;
        let done = replies.decoded::<bool>().any(|(_, done)| done);
        Ok(replies.answer(done))
    }

    /// Asks every live node `query` and gathers their answers, stopping early at the first
    /// answer for which `settles` is true.
    async fn ask<Q: Serialize + ?Sized>(
        &self,
        query: &str,
        args: &Q,
        settles: fn(&Value) -> bool,
    ) -> Result<Replies, Error> {
        let event = format!("{}{query}", crate::bridge::INTERNAL_EVENT_PREFIX);
        let mut stream = CrossEmit::internal(self.node, &event, args)
            .timeout(self.timeout)
            .replies()
            .await?;
        let mut by_node = Vec::new();
        while let Some(item) = stream.recv().await {
            match item {
                CrossReply::Reply { server, data, .. } => {
                    let settled = settles(&data);
                    by_node.push((server, data));
                    if settled {
                        return Ok(Replies {
                            by_node,
                            missing: Vec::new(),
                        });
                    }
                }
                CrossReply::ShutDown { .. } => return Err(Error::ShuttingDown),
                CrossReply::NoHandler { .. }
                | CrossReply::Left { .. }
                | CrossReply::TimedOut { .. } => {}
            }
        }
        Ok(Replies {
            by_node,
            missing: stream.missing(),
        })
    }
}

fn is_true(value: &Value) -> bool {
    value.as_bool() == Some(true)
}

fn room_action(namespace: &str, room: &str, socket_id: &str) -> SocketArgs {
    SocketArgs {
        namespace: Some(namespace.to_owned()),
        room: Some(room.to_owned()),
        ..SocketArgs::id(socket_id)
    }
}

impl Node {
    /// Answers a query of [`Cluster`] from this node's state.
    pub(crate) fn answer_cluster_query(
        &self,
        sender: Arc<str>,
        query: &str,
        payload: Payload,
        callback: Option<ReplyId>,
    ) {
        let Some(callback) = callback else {
            return;
        };
        let to = CrossReplyTo::new(sender, callback);
        let node = self.clone();
        let query = query.to_owned();
        drive(Box::pin(async move {
            let answer = node.cluster_answer(&query, &payload).await;
            if answer.is_none() {
                tracing::debug!(
                    query,
                    "a cluster query this node does not know, or malformed"
                );
            }
            let answer = answer.and_then(|value| Payload::encode(&value).ok());
            let _ = node.send_cross_reply(&to, answer).await;
        }));
    }

    /// This node's answer to `query`; `None` for a query it does not know or malformed
    /// arguments (the asking node then stops waiting for this one).
    async fn cluster_answer(&self, query: &str, payload: &Payload) -> Option<Value> {
        let answer = match query {
            "clients" => Value::from(self.local_client_count()),
            "room" => {
                let args: RoomArgs = payload.json().ok()?;
                let matching = if args.prefix {
                    Match::Prefix
                } else {
                    Match::Exact
                };
                let ids = self.room_socket_ids(&args.namespace, args.room.as_deref(), matching);
                if args.ids {
                    Value::from(ids.into_iter().collect::<Vec<_>>())
                } else {
                    Value::from(ids.len())
                }
            }
            "room_sizes" => {
                let namespace: String = payload.json().ok()?;
                serde_json::to_value(self.room_sizes(&namespace)).ok()?
            }
            "rooms_of" => {
                let args: SocketArgs = payload.json().ok()?;
                let joined = self.joined_rooms(&args.socket_id, args.namespace.as_deref());
                serde_json::to_value(joined).ok()?
            }
            "locate" => {
                let args: SocketArgs = payload.json().ok()?;
                Value::from(self.socket(&args.socket_id).is_some_and(|s| s.is_open()))
            }
            "disconnect" => {
                let args: SocketArgs = payload.json().ok()?;
                let socket = self.socket(&args.socket_id).filter(|s| s.is_open());
                if let Some(socket) = &socket {
                    let code = args.code.unwrap_or(crate::close_codes::KICKED);
                    socket.close(code, args.reason.as_deref().unwrap_or(""));
                }
                Value::from(socket.is_some())
            }
            "join" | "leave" => {
                let args: SocketArgs = payload.json().ok()?;
                let (namespace, room) = (args.namespace?, args.room?);
                if self.socket(&args.socket_id).is_none() {
                    return Some(Value::from(false));
                }
                let done = if query == "join" {
                    self.join_room(&namespace, &room, &args.socket_id)
                        .await
                        .is_ok()
                } else {
                    let was_in = self.is_joined(&args.socket_id, &namespace, Some(&room));
                    self.leave_room(&namespace, &room, &args.socket_id)
                        .await
                        .is_ok()
                        && was_in
                };
                Value::from(done)
            }
            _ => return None,
        };
        Some(answer)
    }

    /// Every local room of `namespace` with its number of local members.
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
    /// let mut clients = Vec::new();
    /// for id in ["alice", "bob"] {
    ///     clients.push(node.connect_bound(RequestInfo::default(), Arc::new(TestTransport), id).await);
    ///     node.join_room("chat", "lobby", id).await?;
    /// }
    /// node.join_room("chat", "help", "alice").await?;
    /// let sizes = node.room_sizes("chat");
    /// assert_eq!((sizes["lobby"], sizes["help"]), (2, 1));
    /// # Ok(()) }
    /// ```
    pub fn room_sizes(&self, namespace: &str) -> HashMap<String, usize> {
        self.inner().state.read().rooms.room_sizes(namespace)
    }
}
