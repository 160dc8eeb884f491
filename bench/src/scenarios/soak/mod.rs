//! `soak`: one crosswire server holds many connections for minutes, with the client heartbeat
//! (the empty text frame) and the server's protocol pings, churn (connections leaving,
//! cleanly or by dropping TCP, and coming back), and a steady broadcast to everyone. At the
//! end: the server's memory and descriptors (start, peak, end, and after every client left:
//! back to the start, or a leak), connections held, every broadcast each connection had to
//! receive, heartbeats answered, how connections ended, and the server's own counters. Then
//! as many fresh clients connect once more and leave: the server's memory must not grow past
//! the soak's peak (what the first round freed is reused) and its descriptors must come back
//! again.
//!
//! Not part of `all`: run it with `scripts/soak.sh [SECONDS]`.

mod account;
mod churner;
mod monitor;
mod summary;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::load::churn::ChurnPool;
use crate::load::pace::{pace, PaceReport};
use crate::load::{clock, pick, token, Audience, Pool, StepCtx};
use crate::report::Reporter;
use crate::servers::{ServerKind, ServerProbe, ServerProcess, ServerSpec};

use super::measure::Meter;
use super::Options;
use churner::Churner;
use monitor::{Monitor, Reading};
use summary::Summary;

/// Descriptors this process needs besides one per connection (reconnects under way, ...).
const HEADROOM: u64 = 500;
/// Monitor period, and progress line period.
const MONITOR_EVERY: Duration = Duration::from_secs(1);
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// Longest wait for the server to count every connection, and for it to let go of them.
const SETTLE: Duration = Duration::from_secs(30);
/// Time given to the last heartbeats' replies once heartbeats are paused.
const BEAT_REPLIES: Duration = Duration::from_secs(3);
/// Salt of the choice of the clients that leave cleanly at the end.
const LEAVE_SALT: u64 = 0x90d;

/// Runs the soak against a fresh crosswire server.
pub(super) async fn run(opts: &Options, out: &mut Reporter) -> Result<(), String> {
    let soak = &opts.soak;
    crate::load::limits::check_sockets(soak.clients as u64 + HEADROOM)?;
    let mut spec = ServerSpec::single(ServerKind::Crosswire);
    spec.threads = opts.server_threads;
    spec.sndbuf = opts.server_sndbuf;
    spec.rate_limit = opts.server_rate_limit;
    spec.ping_interval_secs = soak.ping.as_secs().max(1);
    let mut server = ServerProcess::spawn(&spec).await?;
    let result = soak_on(&mut server, opts, out).await;
    server.stop().await;
    result
}

async fn soak_on(
    server: &mut ServerProcess,
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    let soak = &opts.soak;
    let n = soak.clients;
    let probe = server.probe();
    let mut s = Summary::new(opts);
    s.start = monitor::read(&probe).await?;
    let ctx = StepCtx::new(Audience::All);
    let (pool, connected) = Pool::connect(&[server.addr], n, &opts.pool).await;
    if connected.connected < n {
        pool.shutdown();
        return Err(format!(
            "only {} of {n} clients connected: {}",
            connected.connected,
            connected.first_error.unwrap_or_default()
        ));
    }
    eprintln!(
        "soak: {n} clients connected in {:.1} s; broadcasting {}/s for {:.0} s, churning {}/s",
        connected.elapsed.as_secs_f64(),
        soak.broadcast_rate,
        soak.duration.as_secs_f64(),
        soak.churn_rate
    );
    let pool = Arc::new(ChurnPool::new(
        pool,
        server.addr,
        opts.pool.clone(),
        ctx.clone(),
    ));
    s.settled = settle(&probe, |c| c >= n as u64).await;
    s.connected = monitor::read(&probe).await?;

    let meter = Meter::start(server)?;
    let monitor = Monitor::start(probe.clone(), pool.clone(), MONITOR_EVERY, PROGRESS_EVERY);
    let churner = Churner::start(pool.clone(), soak.churn_rate, soak.churn_clean);
    let (pace_report, sent_at, unsent) = broadcast(&pool, &ctx, opts);
    s.churned = churner.finish().await;
    s.pace = pace_report;
    s.unsent = unsent;

    // Pause heartbeats, so that every one sent gets its reply before counting; let the last
    // broadcasts arrive.
    pool.counters()
        .heartbeats_paused
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let paused = Instant::now();
    let deadline = opts.drain.max(Duration::from_secs(5));
    s.drained = drain(&pool, &sent_at, deadline).await;
    tokio::time::sleep_until(paused + BEAT_REPLIES).await;
    s.used = Some(meter.used(server)?);
    s.extremes = monitor.finish().await;
    s.end = monitor::read(&probe).await?;
    s.client_open_end = pool.open() as u64;
    s.latency = ctx.latencies.percentiles();
    let max_latency = Duration::from_secs_f64(s.latency.max_ms.unwrap_or(0.0) / 1e3);
    s.guards = Some(account::Guards::new(max_latency));
    let mut lives = pool.collect();
    s.broadcasts = account::broadcasts(&mut lives, &sent_at, account::Guards::new(max_latency));
    s.beats = account::heartbeats(&lives);
    s.endings = account::endings(&lives);
    drop(lives);
    s.reconnects = pool.reconnects();
    s.failures = pool.failures();
    s.pongs = pool
        .counters()
        .pongs
        .load(std::sync::atomic::Ordering::Relaxed);
    s.command_replies = pool.counters().replies.get(b'c');
    s.failed_command_replies = pool.counters().failed_replies.get(b'c');
    s.ends_during = pool.counters().ends.lock().clone();

    // Everyone leaves; the server must let go of every descriptor.
    let clean_share = soak.churn_clean;
    let leaving = Instant::now();
    s.clean_leaves_completed = pool
        .leave_all(|i| (pick::pick(i as u64, LEAVE_SALT, 1_000_000) as f64) < clean_share * 1e6)
        .await;
    let start_fds = s.start.fds;
    s.left = settle_fds(&probe, start_fds).await;
    s.left_after = leaving.elapsed();
    s.after = monitor::read(&probe).await?;
    drop(pool);
    s.rejoin = Some(rejoin(&probe, server.addr, n, opts, start_fds).await?);
    s.metrics = probe.counters().await.unwrap_or_default();
    s.print();
    out.emit(s.step());
    let failed = s.failed_checks();
    if failed.is_empty() {
        eprintln!("soak: every check passed");
        Ok(())
    } else {
        Err(format!("soak checks failed: {}", failed.join("; ")))
    }
}

/// Client 0 asks the server to broadcast a padded token at the soak's rate for its duration.
/// Returns how the schedule was kept, the send time of every broadcast, and how many could not
/// be queued (client 0 gone).
fn broadcast(pool: &ChurnPool, ctx: &StepCtx, opts: &Options) -> (PaceReport, Vec<u64>, u64) {
    let soak = &opts.soak;
    let mut sent_at = Vec::new();
    let mut unsent = 0;
    let report = pace(soak.broadcast_rate, soak.duration, |seq| {
        let nanos = clock::now_nanos();
        let msg = token::padded(ctx.id, seq, nanos, soak.message_bytes);
        let text = format!(
            r#"{{"event":"command","payload":{{"action":"broadcast","msg":"{msg}"}},"callbackId":"c{seq}"}}"#
        );
        if !pool.send(0, text) {
            unsent += 1;
        }
        sent_at.push(nanos);
    });
    (report, sent_at, unsent)
}

/// Waits until every open connection has every broadcast it had to receive, at most
/// `deadline`; returns whether they all did.
async fn drain(pool: &ChurnPool, sent_at: &[u64], deadline: Duration) -> bool {
    let until = Instant::now() + deadline;
    let guards = account::Guards::new(Duration::ZERO);
    loop {
        let missing = pool.fold_open(0u64, |sum, connected, rec| {
            let (lo, hi) = account::window(sent_at, connected, None, guards);
            sum + (hi - lo - rec.count_between(lo, hi))
        });
        if missing == 0 {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The second round: `n` fresh clients (no heartbeat) connect, the server is read, they
/// leave at once (TCP dropped) and the server is read again once it let go of them.
async fn rejoin(
    server: &ServerProbe,
    addr: std::net::SocketAddr,
    n: usize,
    opts: &Options,
    start_fds: u64,
) -> Result<summary::Rejoin, String> {
    super::connect::sockets_free(n as u64).await?;
    let mut config = opts.pool.clone();
    config.heartbeat = None;
    let (pool, report) = Pool::connect(&[addr], n, &config).await;
    settle(server, |c| c >= report.connected as u64).await;
    let held = monitor::read(server).await?;
    pool.shutdown();
    let left = settle_fds(server, start_fds).await;
    let after = monitor::read(server).await?;
    Ok(summary::Rejoin {
        connected: report.connected as u64,
        held,
        left,
        after,
    })
}

/// Polls the server's `connections` counter until `done` holds, at most [`SETTLE`].
async fn settle(server: &ServerProbe, done: impl Fn(u64) -> bool) -> bool {
    let until = Instant::now() + SETTLE;
    while Instant::now() < until {
        let reading = monitor::read(server).await;
        if reading.is_ok_and(|r| r.connections.is_some_and(&done)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Polls until the server counts no connection and holds no more descriptors than
/// `start_fds`, at most [`SETTLE`]; returns whether it got there.
async fn settle_fds(server: &ServerProbe, start_fds: u64) -> bool {
    let until = Instant::now() + SETTLE;
    while Instant::now() < until {
        if let Ok(Reading {
            fds,
            connections: Some(0),
            ..
        }) = monitor::read(server).await
        {
            if fds <= start_fds {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}
