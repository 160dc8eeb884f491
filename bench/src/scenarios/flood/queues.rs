//! Watches the kernel queues of one connection (both ends, from `/proc/net/tcp`) at a fixed
//! period: their peaks, and when the server's send queue last grew (when the server's writes
//! stopped making progress, for a peer that does not read).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::servers::tcp_queues;

/// The peaks seen, bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct QueuePeaks {
    /// The server's send queue (written by the server, not taken by the client).
    pub(super) server_send: u64,
    /// The server's receive queue (sent by the client, not read by the server).
    pub(super) server_recv: u64,
    /// The client's receive queue (arrived, never read).
    pub(super) client_recv: u64,
    /// The client's send queue (written by the client, not taken by the server).
    pub(super) client_send: u64,
    /// Time from the start to the last reading where the server's send queue grew.
    pub(super) server_send_last_grew: Option<Duration>,
}

/// A running watcher; [`QueueWatch::finish`] stops it.
#[derive(Debug)]
pub(super) struct QueueWatch {
    stop: oneshot::Sender<()>,
    task: JoinHandle<QueuePeaks>,
}

impl QueueWatch {
    /// Watches the connection between `server` and `client` every `every`.
    pub(super) fn start(server: SocketAddr, client: SocketAddr, every: Duration) -> QueueWatch {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut peaks = QueuePeaks::default();
            let mut last_send = 0;
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = ticks.tick() => {}
                }
                let Ok((at_server, at_client)) = tcp_queues::connection(server, client) else {
                    continue;
                };
                if let Some(q) = at_server {
                    if q.send > last_send {
                        peaks.server_send_last_grew = Some(start.elapsed());
                    }
                    last_send = q.send;
                    peaks.server_send = peaks.server_send.max(q.send);
                    peaks.server_recv = peaks.server_recv.max(q.recv);
                }
                if let Some(q) = at_client {
                    peaks.client_recv = peaks.client_recv.max(q.recv);
                    peaks.client_send = peaks.client_send.max(q.send);
                }
            }
            peaks
        });
        QueueWatch { stop, task }
    }

    /// Stops watching and returns the peaks.
    pub(super) async fn finish(self) -> QueuePeaks {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}
