//! Room bookkeeping on one node: namespace → room → member socket ids (each with the connection
//! it is bound to, so that a room push goes straight to the connections), and the reverse index.
//!
//! Pure data, no I/O. Empty rooms and empty namespaces are removed as soon as they empty, so the
//! maps only ever hold live memberships.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::Socket;

/// An application socket id, shared between the indexes.
pub(crate) type SocketId = Arc<str>;

/// How a room id or namespace argument is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Match {
    /// The name must be equal. This is the default.
    #[default]
    Exact,
    /// The name must start with the given text.
    Prefix,
}

impl Match {
    fn accepts(self, name: &str, pattern: &str) -> bool {
        match self {
            Match::Exact => name == pattern,
            Match::Prefix => name.starts_with(pattern),
        }
    }
}

/// Local room memberships.
///
/// A member is a bound socket id: the caller keeps each member's connection up to date
/// ([`rebind`](Self::rebind)) and removes an id's memberships when it is unbound.
#[derive(Debug, Default)]
pub(crate) struct Rooms {
    namespaces: HashMap<String, HashMap<String, HashMap<SocketId, Socket>>>,
    by_socket: HashMap<SocketId, HashMap<String, HashSet<String>>>,
}

impl Rooms {
    /// Adds `id`, bound to `socket`, to a room. Returns `true` if the namespace had no local
    /// member before.
    pub(crate) fn join(
        &mut self,
        namespace: &str,
        room: &str,
        id: &SocketId,
        socket: &Socket,
    ) -> bool {
        let created = !self.namespaces.contains_key(namespace);
        self.namespaces
            .entry(namespace.to_owned())
            .or_default()
            .entry(room.to_owned())
            .or_default()
            .insert(id.clone(), socket.clone());
        self.by_socket
            .entry(id.clone())
            .or_default()
            .entry(namespace.to_owned())
            .or_default()
            .insert(room.to_owned());
        created
    }

    /// `id` is now bound to `socket` (a newer connection took it over): its memberships
    /// deliver there.
    pub(crate) fn rebind(&mut self, id: &str, socket: &Socket) {
        let Some(joined) = self.by_socket.get(id) else {
            return;
        };
        for (namespace, rooms) in joined {
            let Some(in_namespace) = self.namespaces.get_mut(namespace) else {
                continue;
            };
            for room in rooms {
                if let Some(member) = in_namespace.get_mut(room).and_then(|m| m.get_mut(id)) {
                    *member = socket.clone();
                }
            }
        }
    }

    /// Removes `id` from a room. Returns `true` if that emptied the namespace.
    pub(crate) fn leave(&mut self, namespace: &str, room: &str, id: &str) -> bool {
        if let Some(joined) = self.by_socket.get_mut(id) {
            if let Some(rooms) = joined.get_mut(namespace) {
                rooms.remove(room);
                if rooms.is_empty() {
                    joined.remove(namespace);
                }
            }
            if joined.is_empty() {
                self.by_socket.remove(id);
            }
        }
        self.remove_member(namespace, room, id)
    }

    fn remove_member(&mut self, namespace: &str, room: &str, id: &str) -> bool {
        let Some(rooms) = self.namespaces.get_mut(namespace) else {
            return false;
        };
        if let Some(members) = rooms.get_mut(room) {
            members.remove(id);
            if members.is_empty() {
                rooms.remove(room);
            }
        }
        if rooms.is_empty() {
            self.namespaces.remove(namespace);
            return true;
        }
        false
    }

    /// Deletes a room and every membership in it. Returns the members it had and whether the
    /// namespace is now empty.
    pub(crate) fn remove_room(&mut self, namespace: &str, room: &str) -> (Vec<SocketId>, bool) {
        let Some(rooms) = self.namespaces.get_mut(namespace) else {
            return (Vec::new(), false);
        };
        let members: Vec<SocketId> = rooms
            .remove(room)
            .into_iter()
            .flatten()
            .map(|(id, _)| id)
            .collect();
        let emptied = rooms.is_empty();
        if emptied {
            self.namespaces.remove(namespace);
        }
        for id in &members {
            if let Some(joined) = self.by_socket.get_mut(id) {
                if let Some(set) = joined.get_mut(namespace) {
                    set.remove(room);
                    if set.is_empty() {
                        joined.remove(namespace);
                    }
                }
                if joined.is_empty() {
                    self.by_socket.remove(id);
                }
            }
        }
        (members, emptied)
    }

    /// Removes every membership of `id`. Returns the namespaces this emptied.
    pub(crate) fn remove_socket(&mut self, id: &str) -> Vec<String> {
        let Some(joined) = self.by_socket.remove(id) else {
            return Vec::new();
        };
        let mut emptied = Vec::new();
        for (namespace, rooms) in joined {
            for room in rooms {
                if self.remove_member(&namespace, &room, id) {
                    emptied.push(namespace.clone());
                }
            }
        }
        emptied
    }

    /// Rooms with local members, over every namespace.
    pub(crate) fn total(&self) -> usize {
        self.namespaces.values().map(HashMap::len).sum()
    }

    /// Whether any local socket is in a room of `namespace`.
    pub(crate) fn has_namespace(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(namespace)
    }

    /// Calls `f` for each member of one room, with the connection it is bound to.
    pub(crate) fn for_each_member(
        &self,
        namespace: &str,
        room: &str,
        mut f: impl FnMut(&SocketId, &Socket),
    ) {
        if let Some(members) = self.namespaces.get(namespace).and_then(|r| r.get(room)) {
            members.iter().for_each(|(id, socket)| f(id, socket));
        }
    }

    /// Distinct socket ids in the rooms of `namespace` matched by `room` (all rooms if `None`).
    pub(crate) fn socket_ids(
        &self,
        namespace: &str,
        room: Option<&str>,
        matching: Match,
    ) -> HashSet<SocketId> {
        let Some(rooms) = self.namespaces.get(namespace) else {
            return HashSet::new();
        };
        rooms
            .iter()
            .filter(|(id, _)| room.is_none_or(|pattern| matching.accepts(id, pattern)))
            .flat_map(|(_, members)| members.keys().cloned())
            .collect()
    }

    /// Rooms joined by `id`, by namespace, optionally only namespaces starting with a prefix.
    pub(crate) fn joined(
        &self,
        id: &str,
        namespace_prefix: Option<&str>,
    ) -> HashMap<String, HashSet<String>> {
        let Some(joined) = self.by_socket.get(id) else {
            return HashMap::new();
        };
        joined
            .iter()
            .filter(|(ns, _)| namespace_prefix.is_none_or(|p| ns.starts_with(p)))
            .map(|(ns, rooms)| (ns.clone(), rooms.clone()))
            .collect()
    }

    /// Whether `id` is in `room` of `namespace`, or in any room of it when `room` is `None`.
    pub(crate) fn is_joined(&self, id: &str, namespace: &str, room: Option<&str>) -> bool {
        let Some(rooms) = self.by_socket.get(id).and_then(|j| j.get(namespace)) else {
            return false;
        };
        room.is_none_or(|room| rooms.contains(room))
    }

    /// Number of rooms `id` is in, over all namespaces.
    pub(crate) fn rooms_of(&self, id: &str) -> usize {
        self.by_socket
            .get(id)
            .map_or(0, |joined| joined.values().map(HashSet::len).sum())
    }

    /// Room ids of the namespaces matched by `namespace`.
    pub(crate) fn room_ids(&self, namespace: &str, matching: Match) -> Vec<String> {
        self.namespaces
            .iter()
            .filter(|(ns, _)| matching.accepts(ns, namespace))
            .flat_map(|(_, rooms)| rooms.keys().cloned())
            .collect()
    }

    /// Each room of `namespace` with its number of members.
    pub(crate) fn room_sizes(&self, namespace: &str) -> HashMap<String, usize> {
        self.namespaces
            .get(namespace)
            .map_or_else(HashMap::new, |rooms| {
                rooms
                    .iter()
                    .map(|(room, members)| (room.clone(), members.len()))
                    .collect()
            })
    }

    /// Number of rooms in the namespaces matched by `namespace`.
    pub(crate) fn room_count(&self, namespace: &str, matching: Match) -> usize {
        self.namespaces
            .iter()
            .filter(|(ns, _)| matching.accepts(ns, namespace))
            .map(|(_, rooms)| rooms.len())
            .sum()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.namespaces.is_empty() && self.by_socket.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SocketId {
        Arc::from(s)
    }

    /// A connection that writes nothing anywhere.
    fn socket() -> Socket {
        let request = crate::RequestInfo::default();
        let transport = Arc::new(crate::transport::Discard);
        Socket::new(0, request, transport, tracing::Span::none())
    }

    fn sorted(set: HashSet<SocketId>) -> Vec<String> {
        let mut v: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn join_reports_first_member_of_namespace() {
        let mut rooms = Rooms::default();
        assert!(rooms.join("chat", "1", &id("a"), &socket()));
        assert!(!rooms.join("chat", "2", &id("b"), &socket()));
        assert!(
            !rooms.join("chat", "1", &id("a"), &socket()),
            "joining twice is idempotent"
        );
        assert!(rooms.join("game", "1", &id("a"), &socket()));
        assert_eq!(
            sorted(rooms.socket_ids("chat", Some("1"), Match::Exact)),
            ["a"]
        );
    }

    #[test]
    fn members_deliver_to_the_connection_their_id_is_bound_to() {
        let mut rooms = Rooms::default();
        let (first, second) = (socket(), socket());
        rooms.join("chat", "1", &id("a"), &first);
        rooms.join("chat", "2", &id("a"), &first);
        rooms.join("chat", "1", &id("b"), &first);
        rooms.rebind("a", &second);
        for room in ["1", "2"] {
            rooms.for_each_member("chat", room, |member, socket| {
                let expected = if &**member == "a" { &second } else { &first };
                assert!(socket.same_connection(expected), "{member} in room {room}");
            });
        }
        rooms.rebind("nobody", &second); // not a member: nothing to do
    }

    #[test]
    fn leave_reports_last_member_and_cleans_up() {
        let mut rooms = Rooms::default();
        rooms.join("chat", "1", &id("a"), &socket());
        rooms.join("chat", "1", &id("b"), &socket());
        assert!(!rooms.leave("chat", "1", "a"));
        assert!(!rooms.leave("chat", "1", "a"), "leaving twice is harmless");
        assert!(rooms.leave("chat", "1", "b"));
        assert!(!rooms.leave("chat", "1", "zzz"));
        assert!(rooms.is_empty());
    }

    #[test]
    fn remove_socket_drops_every_membership() {
        let mut rooms = Rooms::default();
        rooms.join("chat", "1", &id("a"), &socket());
        rooms.join("chat", "2", &id("a"), &socket());
        rooms.join("game", "9", &id("a"), &socket());
        rooms.join("game", "9", &id("b"), &socket());
        let mut emptied = rooms.remove_socket("a");
        emptied.sort();
        assert_eq!(emptied, ["chat"]);
        assert!(!rooms.is_joined("a", "game", None));
        assert!(rooms.is_joined("b", "game", Some("9")));
        rooms.remove_socket("b");
        assert!(rooms.is_empty());
    }

    #[test]
    fn remove_room_returns_members() {
        let mut rooms = Rooms::default();
        rooms.join("chat", "1", &id("a"), &socket());
        rooms.join("chat", "1", &id("b"), &socket());
        rooms.join("chat", "2", &id("b"), &socket());
        let (mut members, emptied) = rooms.remove_room("chat", "1");
        members.sort();
        assert_eq!(members, [id("a"), id("b")]);
        assert!(!emptied);
        assert_eq!(rooms.joined("a", None).len(), 0);
        assert!(rooms.is_joined("b", "chat", Some("2")));
        assert!(rooms.remove_room("chat", "2").1);
        assert!(rooms.is_empty());
    }

    #[test]
    fn rooms_of_counts_rooms_over_namespaces() {
        let mut rooms = Rooms::default();
        assert_eq!(rooms.rooms_of("a"), 0);
        rooms.join("chat", "1", &id("a"), &socket());
        rooms.join("chat", "1", &id("a"), &socket());
        rooms.join("chat", "2", &id("a"), &socket());
        rooms.join("game", "1", &id("a"), &socket());
        rooms.join("game", "1", &id("b"), &socket());
        assert_eq!(rooms.rooms_of("a"), 3);
        rooms.leave("chat", "1", "a");
        assert_eq!(rooms.rooms_of("a"), 2);
        rooms.remove_room("game", "1");
        assert_eq!((rooms.rooms_of("a"), rooms.rooms_of("b")), (1, 0));
    }

    #[test]
    fn queries_with_exact_and_prefix_matching() {
        let mut rooms = Rooms::default();
        rooms.join("chat", "100", &id("a"), &socket());
        rooms.join("chat", "101", &id("b"), &socket());
        rooms.join("chat", "200", &id("a"), &socket());
        rooms.join("chat:vip", "1", &id("c"), &socket());
        assert_eq!(
            sorted(rooms.socket_ids("chat", Some("10"), Match::Prefix)),
            ["a", "b"]
        );
        assert_eq!(
            sorted(rooms.socket_ids("chat", Some("10"), Match::Exact)),
            Vec::<String>::new()
        );
        assert_eq!(
            sorted(rooms.socket_ids("chat", None, Match::Exact)),
            ["a", "b"]
        );
        assert_eq!(rooms.room_count("chat", Match::Exact), 3);
        assert_eq!(rooms.room_count("chat", Match::Prefix), 4);
        let mut ids = rooms.room_ids("chat", Match::Prefix);
        ids.sort();
        assert_eq!(ids, ["1", "100", "101", "200"]);
        assert_eq!(
            rooms
                .joined("a", Some("chat"))
                .get("chat")
                .map(HashSet::len),
            Some(2)
        );
        assert!(rooms.joined("c", Some("game")).is_empty());
        assert!(rooms.is_joined("c", "chat:vip", None));
        assert!(!rooms.is_joined("c", "chat", None));
    }
}
