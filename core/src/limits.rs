//! Per-connection limits of the node: how much work one client may have in flight, how long
//! a connection may take to be set up and authenticated, and what one client may ask for
//! (rooms, event-name length, requests waiting for a reply).
//!
//! # Flow control
//! Each client event handler that has to wait (its future was not done on its first poll)
//! counts as in flight on its connection until it finishes. While a connection has
//! [`NodeBuilder::max_handlers_in_flight`](crate::NodeBuilder::max_handlers_in_flight)
//! handlers in flight, [`Connection::ready_for_input`](crate::Connection::ready_for_input) says no and
//! the transport stops reading from it (the client's frames wait in the kernel and then in the
//! client, as TCP intends); when one finishes, the node calls
//! [`Transport::resume`](crate::Transport::resume). Nothing the client sent is dropped.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::Socket;

/// Default most client event handlers in flight per connection.
pub const DEFAULT_MAX_HANDLERS_IN_FLIGHT: usize = 64;
/// Default time a connection may stay unbound before it is closed with 4011.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time the connection handlers of one connection may take.
pub const DEFAULT_CONNECTION_HANDLER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default most rooms one socket id may be in on a node.
pub const DEFAULT_MAX_ROOMS_PER_SOCKET: usize = 1024;
/// Default longest client event name accepted, in bytes.
pub const DEFAULT_MAX_EVENT_NAME_LEN: usize = 128;
/// Default most requests of one connection that may wait for their reply at once.
pub const DEFAULT_MAX_PENDING_REQUESTS: usize = 256;

/// The per-connection limits of one node (the `NodeBuilder` setters of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionLimits {
    pub(crate) handlers_in_flight: usize,
    pub(crate) auth_timeout: Option<Duration>,
    pub(crate) handler_timeout: Duration,
    pub(crate) rooms_per_socket: usize,
    pub(crate) event_name_len: usize,
    pub(crate) pending_requests: usize,
}

impl ConnectionLimits {
    /// The flag of `max_rooms_per_socket` in `Socket::limit_logged_once`.
    pub(crate) const ROOMS_LOGGED: u8 = 1;
    /// The flag of `max_event_name_len` in `Socket::limit_logged_once`.
    pub(crate) const EVENT_NAME_LOGGED: u8 = 1 << 1;
    /// The flag of `max_pending_requests` in `Socket::limit_logged_once`.
    pub(crate) const PENDING_REQUESTS_LOGGED: u8 = 1 << 2;
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            handlers_in_flight: DEFAULT_MAX_HANDLERS_IN_FLIGHT,
            auth_timeout: Some(DEFAULT_AUTH_TIMEOUT),
            handler_timeout: DEFAULT_CONNECTION_HANDLER_TIMEOUT,
            rooms_per_socket: DEFAULT_MAX_ROOMS_PER_SOCKET,
            event_name_len: DEFAULT_MAX_EVENT_NAME_LEN,
            pending_requests: DEFAULT_MAX_PENDING_REQUESTS,
        }
    }
}

/// One client event handler in flight on a connection, from the moment it has to wait until
/// it finishes (or panics, or is aborted): dropping it ends it.
pub(crate) struct InFlight {
    socket: Socket,
    limit: usize,
}

impl InFlight {
    pub(crate) fn start(socket: &Socket, limit: usize) -> Self {
        socket.in_flight().fetch_add(1, Ordering::AcqRel);
        InFlight {
            socket: socket.clone(),
            limit,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let before = self.socket.in_flight().fetch_sub(1, Ordering::AcqRel);
        if before as usize >= self.limit {
            // The transport may have paused reading at the limit: it can read again.
            self.socket.transport().resume();
        }
    }
}
