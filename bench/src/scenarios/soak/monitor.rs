//! Reads the server (resident memory, open descriptors, its `connections` counter) and the
//! pool (open connections, leaves and reconnects under way) at a fixed period while the soak
//! runs; keeps the extremes and prints a progress line now and then.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::load::churn::ChurnPool;
use crate::servers::{procstat, ServerProbe};

/// One reading of the server process.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Reading {
    /// Resident memory, bytes.
    pub(super) rss: u64,
    /// Open file descriptors.
    pub(super) fds: u64,
    /// Its `connections` counter (open WebSocket connections), if it answered.
    pub(super) connections: Option<u64>,
}

/// Reads `server` now.
pub(super) async fn read(server: &ServerProbe) -> Result<Reading, String> {
    let rss = server
        .stats()
        .map_err(|e| format!("/proc/{}: {e}", server.pid))?
        .rss_bytes;
    let fds =
        procstat::open_fds(server.pid).map_err(|e| format!("/proc/{}/fd: {e}", server.pid))?;
    let connections = server
        .counters()
        .await
        .ok()
        .and_then(|c| c.get("connections").and_then(Value::as_u64));
    Ok(Reading {
        rss,
        fds,
        connections,
    })
}

/// The extremes seen while monitoring.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Extremes {
    /// Readings taken.
    pub(super) samples: u64,
    /// Largest server RSS, bytes.
    pub(super) peak_rss: u64,
    /// Most server descriptors.
    pub(super) peak_fds: u64,
    /// Fewest and most connections the server counted.
    pub(super) server_connections: (u64, u64),
    /// Fewest connections open on the client side.
    pub(super) min_client_open: u64,
    /// Most slots leaving or reconnecting at one reading.
    pub(super) max_in_transit: u64,
}

/// A running monitor; [`Monitor::finish`] stops it.
#[derive(Debug)]
pub(super) struct Monitor {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Extremes>,
}

impl Monitor {
    /// Reads `server` and `pool` now and every `every`; prints a line every `progress`.
    pub(super) fn start(
        server: ServerProbe,
        pool: Arc<ChurnPool>,
        every: Duration,
        progress: Duration,
    ) -> Monitor {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut next_line = start + progress;
            let mut ext = Extremes {
                server_connections: (u64::MAX, 0),
                min_client_open: u64::MAX,
                ..Extremes::default()
            };
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = ticks.tick() => {}
                }
                let Ok(now) = read(&server).await else {
                    continue;
                };
                let open = pool.open() as u64;
                let in_transit = pool.in_transit();
                ext.samples += 1;
                ext.peak_rss = ext.peak_rss.max(now.rss);
                ext.peak_fds = ext.peak_fds.max(now.fds);
                if let Some(c) = now.connections {
                    ext.server_connections.0 = ext.server_connections.0.min(c);
                    ext.server_connections.1 = ext.server_connections.1.max(c);
                }
                ext.min_client_open = ext.min_client_open.min(open);
                ext.max_in_transit = ext.max_in_transit.max(in_transit);
                if Instant::now() >= next_line {
                    next_line += progress;
                    eprintln!(
                        "soak {:>4.0} s: server RSS {:.1} MiB, {} fds, {} connections; clients open {open}, leaving/reconnecting {in_transit}, reconnects {}",
                        start.elapsed().as_secs_f64(),
                        now.rss as f64 / (1 << 20) as f64,
                        now.fds,
                        now.connections.map_or("?".into(), |c| c.to_string()),
                        pool.reconnects(),
                    );
                }
            }
            if ext.samples == 0 {
                ext.server_connections = (0, 0);
                ext.min_client_open = 0;
            }
            ext
        });
        Monitor { stop, task }
    }

    /// Stops monitoring and returns the extremes.
    pub(super) async fn finish(self) -> Extremes {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}
