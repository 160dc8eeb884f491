//! Socket-id binding: which connection of this node an application id names, and the
//! announcements that keep the cluster's directory in step.

use std::sync::Arc;

use crate::node::Node;
use crate::options::DuplicateBind;
use crate::room_index::SocketId;
use crate::{close_codes, Error, Socket};

/// The longest socket id [`Node::bind`] accepts, in bytes. Every node keeps the ids bound
/// anywhere in the cluster and each binding is announced to all of them, so an id taken from
/// a client's request must not be allowed to grow without bound.
pub const MAX_SOCKET_ID_LEN: usize = 256;

impl Node {
    /// Binds an (authenticated) connection to an application socket id. Deliveries by id and
    /// rooms work only for bound connections; the binding and its rooms go away by themselves
    /// when the connection closes. Binding an id bound to another connection follows the
    /// node's [`DuplicateBind`] policy.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for an empty id or one longer than [`MAX_SOCKET_ID_LEN`] bytes,
    /// [`Error::AlreadyBound`] under [`DuplicateBind::Refuse`].
    pub fn bind(&self, socket: &Socket, socket_id: &str) -> Result<(), Error> {
        if socket_id.is_empty() {
            return Err(Error::invalid("socket id", "it is empty"));
        }
        if socket_id.len() > MAX_SOCKET_ID_LEN {
            return Err(Error::invalid(
                "socket id",
                "it is longer than MAX_SOCKET_ID_LEN (256 bytes)",
            ));
        }
        let refuse = self.inner.options.duplicate_bind == DuplicateBind::Refuse;
        if refuse && self.bound_elsewhere(socket_id) {
            return Err(Error::AlreadyBound(socket_id.to_owned()));
        }
        let id: SocketId = Arc::from(socket_id);
        let stamp = self.inner.directory.stamp();
        let mut left_namespaces = Vec::new();
        let mut previous_id = None;
        let replaced = {
            let mut state = self.inner.state.write();
            if let Some(existing) = state.bound.get(&id) {
                if existing.same_connection(socket) {
                    return Ok(());
                }
                if refuse {
                    return Err(Error::AlreadyBound(socket_id.to_owned()));
                }
            }
            if let Some(previous) = socket.set_socket_id(Some(id.clone())) {
                state.bound.remove(&previous);
                left_namespaces = state.rooms.remove_socket(&previous);
                previous_id = Some(previous);
            }
            socket.set_bind_stamp(stamp);
            let replaced = state.bound.insert(id.clone(), socket.clone());
            if let Some(old) = &replaced {
                old.clear_socket_id_if(&id);
                // The id's rooms are kept: they deliver to the new connection.
                state.rooms.rebind(&id, socket);
            }
            replaced
        };
        socket.span().record("socket_id", socket_id);
        if let Some(previous) = previous_id {
            self.announce_binding(previous, stamp, false);
        }
        self.announce_binding(id, stamp, true);
        if let Some(old) = replaced {
            old.close(close_codes::KICKED, "replaced by a newer connection");
        }
        self.reconcile_namespaces_later(left_namespaces);
        Ok(())
    }

    /// Whether another live node announced a binding of `socket_id`.
    fn bound_elsewhere(&self, socket_id: &str) -> bool {
        self.inner
            .directory
            .owner(socket_id)
            .is_some_and(|owner| self.inner.membership.is_alive(&owner.node))
    }

    /// Queues the announcement of a binding change for the other nodes (none without a
    /// broker, nor on the Node.js package's wire, which has no such message).
    fn announce_binding(&self, id: SocketId, stamp: u64, bound: bool) {
        if self.announces_bindings() {
            self.inner.directory.queue(id, stamp, bound);
        }
    }

    /// Whether binding changes are announced to the other nodes.
    pub(crate) fn announces_bindings(&self) -> bool {
        self.inner.broker.is_some() && !self.inner.writes_js()
    }

    /// Removes the binding of `socket_id` and all its room memberships; the connection stays
    /// open. Returns whether the id was bound.
    pub async fn unbind(&self, socket_id: &str) -> bool {
        let socket = self.inner.state.read().bound.get(socket_id).cloned();
        let Some(emptied) = socket.and_then(|socket| self.unbind_connection(socket_id, &socket))
        else {
            return false;
        };
        for namespace in emptied {
            self.log_reconcile(&namespace, self.reconcile_namespace(&namespace).await);
        }
        true
    }

    /// Removes the binding of `socket_id` to `socket` and its room memberships, at once, and
    /// announces it. Returns the namespaces this emptied (their channels are the caller's to
    /// reconcile), or `None` when the id was not bound to `socket`.
    pub(crate) fn unbind_connection(
        &self,
        socket_id: &str,
        socket: &Socket,
    ) -> Option<Vec<String>> {
        let emptied = self.unbind_connection_quietly(socket_id, socket)?;
        let stamp = self.inner.directory.stamp();
        self.announce_binding(Arc::from(socket_id), stamp, false);
        Some(emptied)
    }

    /// [`unbind_connection`](Self::unbind_connection) without the announcement, for an id
    /// that another node took over (the others know already).
    pub(crate) fn unbind_connection_quietly(
        &self,
        socket_id: &str,
        socket: &Socket,
    ) -> Option<Vec<String>> {
        let mut state = self.inner.state.write();
        match state.bound.get(socket_id) {
            Some(bound) if bound.same_connection(socket) => {
                state.bound.remove(socket_id);
                socket.clear_socket_id_if(socket_id);
                Some(state.rooms.remove_socket(socket_id))
            }
            _ => None,
        }
    }

    /// The connection bound to `socket_id` on this node.
    pub fn socket(&self, socket_id: &str) -> Option<Socket> {
        self.inner.state.read().bound.get(socket_id).cloned()
    }

    /// Number of connections bound to a socket id on this node.
    pub fn local_client_count(&self) -> usize {
        self.inner.state.read().bound.len()
    }
}
