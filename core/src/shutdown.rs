//! Graceful shutdown of a node: refuse new connections, close the open ones after what is
//! queued for them, fail the reply collections still waiting, leave the broker.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::envelope::AnnouncePhase;
use crate::metrics::Metrics;
use crate::{close_codes, Node};

/// What [`Node::shutdown`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Connections closed with 1001 that finished their closing handshake (or went away)
    /// before the deadline.
    pub closed: usize,
    /// Connections still open at the deadline, dropped without a closing handshake.
    pub dropped: usize,
    /// Cross-server reply collections failed with [`CrossReply::ShutDown`](crate::CrossReply::ShutDown).
    pub cross_callbacks_failed: usize,
    /// Broker channels that could not be unsubscribed (each is logged).
    pub unsubscribe_errors: usize,
}

impl Node {
    /// Whether [`shutdown`](Self::shutdown) has started.
    pub fn is_shutting_down(&self) -> bool {
        self.inner().shutting_down.load(Ordering::Acquire)
    }

    /// Shuts the node down gracefully and returns when it is done or `deadline` has passed:
    ///
    /// 1. New connections are refused: a connection registered from now on is closed with
    ///    1001 at once (and [`WsServer`-style transports](crate::Transport) stop accepting).
    /// 2. Every open connection is closed with 1001 ("server shutting down") after the frames
    ///    already queued for it, so what was accepted for delivery goes out first.
    /// 3. It waits for them to finish their closing handshake and their close events to run.
    ///    Connections still open at the deadline are dropped without one.
    /// 4. Cross-server reply collections still waiting end with
    ///    [`CrossReply::ShutDown`](crate::CrossReply::ShutDown) (and
    ///    [`Error::ShuttingDown`](crate::Error::ShuttingDown) for
    ///    [`CrossEmit::collect`](crate::CrossEmit::collect)); new cross-server emits fail
    ///    with it.
    /// 5. The node tells the others it leaves (they forget it at once), its background tasks
    ///    (broker reader, protocol pings, announcements) stop, and every broker channel is
    ///    unsubscribed. The node still answers queries about its (now empty)
    ///    state.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// use std::time::Duration;
    /// let node = crosswire_core::Node::builder().build().await?;
    /// let report = node.shutdown(Duration::from_secs(5)).await;
    /// assert_eq!(report.dropped, 0);
    /// assert!(node.is_shutting_down());
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let inner = self.inner();
        let deadline = tokio::time::Instant::now() + deadline;
        inner.shutting_down.store(true, Ordering::Release);
        let mut report = ShutdownReport::default();

        let open = self.connections();
        for socket in &open {
            socket.close(close_codes::GOING_AWAY, "server shutting down");
        }
        Metrics::add_n(&inner.metrics.shutdown_closes, open.len());
        loop {
            let emptied = inner.no_connections.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            if self.connection_count() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, emptied).await.is_err() {
                break;
            }
        }
        let left = self.connections();
        for socket in &left {
            socket.transport().terminate();
        }
        report.dropped = left.len();
        report.closed = open.len().saturating_sub(left.len());
        if report.dropped > 0 {
            tracing::warn!(
                dropped = report.dropped,
                "shutdown deadline passed; dropped the connections still open"
            );
        }

        report.cross_callbacks_failed = self.pending().fail_all();
        // Stopped before the goodbye, so no periodic announcement can follow it.
        for task in inner.tasks.lock().drain(..) {
            task.abort();
        }
        if inner.broker.is_some() {
            // The others forget this node now, not after its missed announcements.
            self.announce(AnnouncePhase::Leaving).await;
        }
        if let Some(subscriptions) = &inner.subscriptions {
            for channel in subscriptions.subscribed() {
                if let Err(error) = subscriptions.reconcile(&channel, |_| false).await {
                    tracing::warn!(channel, %error, "could not unsubscribe during shutdown");
                    report.unsubscribe_errors += 1;
                }
            }
        }
        report
    }
}
