//! `connect`: N idle connections. Connects per second, handshake latency, server memory per
//! connection once settled and again after a hold with client heartbeats, and connections
//! dropped on the way.

use std::time::Duration;

use tokio::time::Instant;

use crate::load::{limits, Pool};
use crate::report::{round, Reporter, Step};
use crate::servers::{ServerKind, ServerProcess};

use super::measure::{saturation, server_stats, Meter};
use super::Options;

const SCENARIO: &str = "connect";
/// How long the server may take to count every connection after the last handshake.
const SETTLE: Duration = Duration::from_secs(15);

/// Runs every connect step against `kind`, a fresh server per step.
pub(super) async fn run(
    kind: ServerKind,
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    for &n in &opts.connect_steps {
        if let Err(reason) = sockets_free(n as u64).await {
            eprintln!(
                "{}: connect {n}: skipped: {reason} (this process and the server each need one descriptor per connection)",
                kind.name()
            );
            let mut row = Step::new(SCENARIO, kind.name(), &n.to_string());
            row.sent = n as u64;
            row.skipped = Some(reason);
            out.emit(row);
            continue;
        }
        out.emit(one(kind, n, opts).await?);
    }
    Ok(())
}

/// Whether `n` client sockets fit under the descriptor limit, once the sockets of the previous
/// step are closed: their aborted tasks drop them a moment later, and the kernel has no event
/// for it, so the descriptor count is polled for at most [`SETTLE`].
pub(super) async fn sockets_free(n: u64) -> Result<(), String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        match limits::check_sockets(n) {
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            result => return result,
        }
    }
}

async fn one(kind: ServerKind, n: usize, opts: &Options) -> Result<Step, String> {
    let mut server = super::spawn(kind, opts).await?;
    let rss_before = server_stats(&server)?.rss_bytes;
    let meter = Meter::start(&server)?;
    let (pool, report) = Pool::connect(&[server.addr], n, &opts.pool).await;
    let connecting = meter.used(&server)?;
    let settled = settle(&mut server, report.connected).await;
    let rss_settled = server_stats(&server)?.rss_bytes;

    let hold = Meter::start(&server)?;
    let beats_before = pool.heartbeats();
    // The hold is the measurement itself (idle connections over time), not a wait for an
    // event.
    tokio::time::sleep(opts.hold).await;
    let held = hold.used(&server)?;
    let counters = server.counters().await.unwrap_or_default();
    let server_connections = counters.get("connections").and_then(|v| v.as_u64());

    let connected = report.connected as u64;
    let elapsed = report.elapsed.as_secs_f64().max(1e-9);
    let per_conn = |rss: u64| (connected > 0).then(|| (rss.saturating_sub(rss_before)) / connected);
    let mut step = Step::new(SCENARIO, kind.name(), &n.to_string());
    step.duration_s = round(elapsed, 3);
    step.sent = n as u64;
    step.deliveries = connected;
    step.deliveries_per_s = round(connected as f64 / elapsed, 1);
    step.server_cpu_s = round(connecting.server_cpu_s, 2);
    step.deliveries_per_cpu_s = (connecting.server_cpu_s > 0.0)
        .then(|| round(connected as f64 / connecting.server_cpu_s, 0));
    step.p50_ms = report.handshake.p50_ms;
    step.p99_ms = report.handshake.p99_ms;
    step.p999_ms = report.handshake.p999_ms;
    step.lost = (n - report.connected) as u64;
    step.generator_cpu_s = round(connecting.generator_cpu_s + held.generator_cpu_s, 2);
    step.saturated_reason = saturation(None, &connecting, opts.cpu_limit);
    step.saturated = step.saturated_reason.is_some();
    step.server_rss_bytes = held.server_rss;
    step.set("connects_per_s", step.deliveries_per_s);
    step.set("machine_cpu_share", connecting.machine_share());
    step.set("failed_connects", step.lost);
    step.set("first_error", report.first_error.clone());
    step.set("server_rss_before_bytes", rss_before);
    step.set("settled", settled);
    step.set("rss_per_conn_bytes", per_conn(rss_settled));
    step.set("rss_per_conn_after_hold_bytes", per_conn(held.server_rss));
    step.set("hold_s", opts.hold.as_secs_f64());
    step.set("hold_server_cpu_s", round(held.server_cpu_s, 2));
    step.set("hold_generator_cpu_s", round(held.generator_cpu_s, 2));
    step.set("heartbeat_replies", pool.heartbeats() - beats_before);
    step.set("client_closes", pool.closed());
    step.set("client_open", pool.open());
    step.set("closed_by_server", pool.closed_by_server());
    step.set("server_connections", server_connections);
    step.set(
        "dropped",
        server_connections.map(|s| connected.saturating_sub(s).max(pool.closed())),
    );
    super::stop(server, &pool).await;
    Ok(step)
}

/// Waits until the server counts `n` open connections (polled: the server has no push for
/// it), at most [`SETTLE`]; returns whether it did.
async fn settle(server: &mut ServerProcess, n: usize) -> bool {
    let deadline = Instant::now() + SETTLE;
    while Instant::now() < deadline {
        let count = server
            .counters()
            .await
            .ok()
            .and_then(|c| c.get("connections").and_then(|v| v.as_u64()));
        if count.is_some_and(|c| c >= n as u64) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
