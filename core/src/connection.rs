//! [`Connection`]: what a transport holds for one client connection, from
//! [`Node::connect`] to [`Connection::finish`].
//!
//! The handle is the whole transport boundary on the input side: everything a transport reads
//! goes in through it, and finishing consumes it, so a connection is removed from its node
//! exactly once. A handle dropped without `finish` (a transport task that panicked or was
//! cancelled) still removes its connection, reported as closed abnormally (1006).

use crate::{close_codes, Node, Socket};

/// One client connection registered with a node, as its transport drives it.
///
/// Returned by [`Node::connect`] and [`Node::connect_bound`] after the
/// [`system::Connection`](crate::system::Connection) handlers ran. A transport passes every text message it reads to
/// [`text`](Self::text) (binary ones to [`binary`](Self::binary), pongs to [`pong`](Self::pong)), asks
/// [`ready_for_input`](Self::ready_for_input) before reading more, and calls
/// [`finish`](Self::finish) after its last read.
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
/// use crosswire_core::{close_codes, ClientEvent, Node, RequestInfo};
///
/// let node = Node::builder().build().await?;
/// node.on("echo", |ev: ClientEvent| async move {
///     let text: String = ev.json()?;
///     ev.reply(&text)
/// });
/// let (tx, frames) = std::sync::mpsc::channel();
/// let connection = node.connect(RequestInfo::default(), Arc::new(TestTransport(tx))).await;
/// connection.text(r#"{"event":"echo","payload":"hi","callbackId":"c1"}"#);
/// assert_eq!(frames.try_recv()?, r#"{"callbackId":"c1","payload":"hi"}"#);
///
/// connection.finish(close_codes::NORMAL, "bye").await;
/// assert_eq!(node.connection_count(), 0);
/// # Ok(()) }
/// ```
#[must_use = "dropping a Connection disconnects it"]
pub struct Connection {
    node: Node,
    socket: Socket,
    finished: bool,
}

impl Connection {
    pub(crate) fn new(node: Node, socket: Socket) -> Self {
        Connection {
            node,
            socket,
            finished: false,
        }
    }

    /// The connection as the application sees it.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// The node it is registered with.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Whether the node can take another message now. A transport asks before reading and
    /// stops reading while it says no (the connection's client event handlers in flight are at
    /// [`max_handlers_in_flight`](crate::NodeBuilder::max_handlers_in_flight)); it is told with
    /// [`Transport::resume`](crate::Transport::resume) when that changes.
    pub fn ready_for_input(&self) -> bool {
        self.node.ready_for_input(&self.socket)
    }

    /// Handles one text message from the client: heartbeat, protocol events, application
    /// events. Malformed frames are counted and dropped.
    pub fn text(&self, message: &str) {
        self.node.handle_text(&self.socket, message);
    }

    /// Handles a binary message from the client as the same JSON protocol as
    /// [`text`](Self::text); one that is not UTF-8 is counted malformed and dropped.
    pub fn binary(&self, message: &[u8]) {
        self.node.handle_binary(&self.socket, message);
    }

    /// Records a protocol pong from the client.
    pub fn pong(&self) {
        self.node.handle_pong(&self.socket);
    }

    /// Reports a connection error, such as a protocol violation (the transport then closes
    /// the connection): the [`system::ConnectionError`](crate::system::ConnectionError) handlers run.
    pub fn error(&self, error: &str) {
        self.node.handle_error(&self.socket, error);
    }

    /// Removes the closed connection from its node (its binding, rooms and timers), then runs
    /// the [`system::Close`](crate::system::Close) handlers with `code` and `reason`. A transport calls this after
    /// its last read.
    pub async fn finish(mut self, code: u16, reason: &str) {
        self.finished = true;
        self.node.disconnect(&self.socket, code, reason).await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let node = self.node.clone();
        let socket = self.socket.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                node.disconnect(&socket, close_codes::ABNORMAL, "").await;
            });
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("node", &self.node.server_name())
            .field("conn_id", &self.socket.conn_id())
            .field("socket_id", &self.socket.socket_id())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::transport::Discard;
    use crate::{system, CloseEvent, Node, RequestInfo};

    /// Runs `connection`'s end and returns the close code the Close handlers saw.
    async fn close_code_after(node: &Node, end: impl FnOnce(super::Connection)) -> u16 {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = parking_lot::Mutex::new(Some(tx));
        node.on_system(system::Close, move |close: CloseEvent| {
            if let Some(tx) = tx.lock().take() {
                let _ = tx.send(close.code);
            }
            async {}
        });
        let connection = node
            .connect(RequestInfo::default(), std::sync::Arc::new(Discard))
            .await;
        assert_eq!(node.connection_count(), 1);
        end(connection);
        let code = rx.await.expect("the Close handlers ran");
        assert_eq!(node.connection_count(), 0);
        code
    }

    #[tokio::test]
    async fn a_finished_connection_reports_its_close_code() {
        let node = Node::builder().build().await.expect("node");
        let code = close_code_after(&node, |connection| {
            tokio::spawn(connection.finish(4000, "bye"));
        })
        .await;
        assert_eq!(code, 4000);
    }

    #[tokio::test]
    async fn a_connection_dropped_unfinished_is_removed_as_abnormal() {
        let node = Node::builder().build().await.expect("node");
        let code = close_code_after(&node, drop).await;
        assert_eq!(code, crate::close_codes::ABNORMAL);
    }
}
