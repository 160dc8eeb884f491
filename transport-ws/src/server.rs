//! [`WsServer`]: crosswire's own listener on a TCP port.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crosswire_core::{system, Node, ShutdownReport, TransportCount};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::Notify;

use crate::{Accept, WsAcceptor, WsConfig};

/// Default deadline of [`WsServer::shutdown`].
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// A WebSocket server listening on a port for one node. Every request path is accepted (the
/// path is in [`RequestInfo`](crosswire_core::RequestInfo)); plain HTTP requests get 426.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use crosswire_core::Node;
/// use crosswire_ws::{WsConfig, WsServer};
/// let node = Node::builder().build().await?;
/// let server = WsServer::bind("127.0.0.1:0", node, WsConfig::default()).await?;
/// println!("listening on {}", server.local_addr());
/// server.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WsServer {
    local_addr: SocketAddr,
    node: Node,
    stop: Arc<Notify>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl WsServer {
    /// Binds `addr` and starts accepting connections for `node`.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        node: Node,
        config: WsConfig,
    ) -> io::Result<WsServer> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let stop = Arc::new(Notify::new());
        let acceptor = WsAcceptor::new(node.clone(), config);
        let accept_task = tokio::spawn(accept_loop(listener, acceptor, stop.clone()));
        node.emit_system(system::Listening, local_addr);
        Ok(WsServer {
            local_addr,
            node,
            stop,
            accept_task,
        })
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// [`shutdown_within`](Self::shutdown_within) the default deadline, 5 s
    /// ([`DEFAULT_SHUTDOWN_DEADLINE`]).
    pub async fn shutdown(self) -> ShutdownReport {
        self.shutdown_within(DEFAULT_SHUTDOWN_DEADLINE).await
    }

    /// Stops accepting, then shuts the node down gracefully ([`Node::shutdown`]): every
    /// connection is closed with 1001 after what is queued for it, connections whose upgrade
    /// completes meanwhile are closed at once, pending cross-server collections fail, the
    /// broker channels are unsubscribed. Returns when done or at `deadline`, then raises
    /// [`system::ServerClose`].
    pub async fn shutdown_within(self, deadline: Duration) -> ShutdownReport {
        self.stop.notify_one();
        let _ = self.accept_task.await;
        let report = self.node.shutdown(deadline).await;
        self.node.emit_system(system::ServerClose, ());
        report
    }
}

async fn accept_loop(listener: TcpListener, acceptor: WsAcceptor, stop: Arc<Notify>) {
    loop {
        let accepted = tokio::select! {
            _ = stop.notified() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: report, breathe, go on.
                acceptor
                    .node()
                    .emit_system(system::ServerError, Arc::from(error.to_string()));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let node = acceptor.node().clone();
            let upgrade_timeout = acceptor.config().upgrade_timeout;
            let service = service_fn(move |request| {
                let response = acceptor.accept_with(request, Accept::new().remote_addr(peer));
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(upgrade_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
            if let Err(error) = served {
                if error.is_timeout() {
                    node.count(TransportCount::UpgradeTimeout);
                }
                tracing::debug!(%peer, %error, "HTTP connection ended with an error");
            }
        });
    }
}
