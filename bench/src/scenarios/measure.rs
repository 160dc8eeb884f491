//! Resource readings around a step: server and generator CPU, server memory, wall time; and
//! the rule that marks a step as limited by the generator.

use std::time::Duration;

use tokio::time::Instant;

use crate::load::pace::{PaceReport, LATE};
use crate::servers::{ProcStats, ServerProcess};

/// Readings taken when a step starts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Meter {
    start: Instant,
    server: ProcStats,
    generator: ProcStats,
}

/// Resource use since [`Meter::start`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Used {
    /// Wall time.
    pub(super) wall: Duration,
    /// Server CPU seconds.
    pub(super) server_cpu_s: f64,
    /// Generator CPU seconds.
    pub(super) generator_cpu_s: f64,
    /// Server RSS now.
    pub(super) server_rss: u64,
}

impl Used {
    /// Server + generator CPU as a share of the whole machine (all cores) over the wall
    /// time. Near 1.0 the two processes are fighting for the CPU: a server then spends
    /// whatever CPU it gets (larger batches when starved), so `deliveries_per_cpu_s` ratios
    /// drift towards 1 and latency is the figure that still discriminates.
    pub(super) fn machine_share(&self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let wall = self.wall.as_secs_f64().max(1e-9);
        crate::report::round(
            (self.server_cpu_s + self.generator_cpu_s) / (wall * cores),
            2,
        )
    }
}

impl Meter {
    /// Reads the server's and this process's counters now.
    pub(super) fn start(server: &ServerProcess) -> Result<Meter, String> {
        Self::start_all(std::slice::from_ref(server))
    }

    /// Like [`Meter::start`] for several server processes (a cluster): their CPU and RSS
    /// are summed.
    pub(super) fn start_all(servers: &[ServerProcess]) -> Result<Meter, String> {
        Ok(Meter {
            start: Instant::now(),
            server: servers_stats(servers)?,
            generator: ProcStats::current().map_err(|e| format!("/proc/self: {e}"))?,
        })
    }

    /// What was used since the start.
    pub(super) fn used(&self, server: &ServerProcess) -> Result<Used, String> {
        self.used_all(std::slice::from_ref(server))
    }

    /// What `servers` (the same ones as at the start) used since the start, summed.
    pub(super) fn used_all(&self, servers: &[ServerProcess]) -> Result<Used, String> {
        let now = servers_stats(servers)?;
        let generator = ProcStats::current().map_err(|e| format!("/proc/self: {e}"))?;
        Ok(Used {
            wall: self.start.elapsed(),
            server_cpu_s: now.cpu_seconds - self.server.cpu_seconds,
            generator_cpu_s: generator.cpu_seconds - self.generator.cpu_seconds,
            server_rss: now.rss_bytes,
        })
    }
}

/// The server's `/proc` reading.
pub(super) fn server_stats(server: &ServerProcess) -> Result<ProcStats, String> {
    server
        .stats()
        .map_err(|e| format!("/proc/{}: {e}", server.pid))
}

/// The `/proc` readings of `servers`, CPU and RSS summed.
pub(super) fn servers_stats(servers: &[ServerProcess]) -> Result<ProcStats, String> {
    servers
        .iter()
        .try_fold(ProcStats::default(), |sum, server| {
            let one = server_stats(server)?;
            Ok(ProcStats {
                cpu_seconds: sum.cpu_seconds + one.cpu_seconds,
                rss_bytes: sum.rss_bytes + one.rss_bytes,
            })
        })
}

/// The saturation rule. A step is generator-limited when
/// - the pacer fell behind: more than [`crate::load::pace::LATE_FRACTION`] of the sends left more than [`LATE`]
///   after their scheduled time (open loop no longer holds), or
/// - the generator used more than `cpu_limit` cores during the sending window: on this
///   2-core machine the generator then takes CPU the server needs, and its own receive
///   queueing starts to show in the latencies.
///
/// Returns the reason, if any.
pub(super) fn saturation(pace: Option<&PaceReport>, used: &Used, cpu_limit: f64) -> Option<String> {
    let mut reasons = Vec::new();
    if let Some(pace) = pace.filter(|p| p.behind()) {
        reasons.push(format!(
            "pacer behind schedule: {} of {} sends more than {} ms late (max {:.1} ms)",
            pace.late,
            pace.sent,
            LATE.as_millis(),
            pace.max_lag.as_secs_f64() * 1e3
        ));
    }
    let wall = used.wall.as_secs_f64();
    if wall > 0.0 && used.generator_cpu_s / wall > cpu_limit {
        reasons.push(format!(
            "generator used {:.2} cores (limit {cpu_limit})",
            used.generator_cpu_s / wall
        ));
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}
