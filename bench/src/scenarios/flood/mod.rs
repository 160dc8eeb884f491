//! `flood` (crosswire only): the figures of flow control. Many clients receive a broadcast at
//! a fixed rate throughout; their latency is measured in four steps of one run:
//!
//! 1. reference: nothing else happens;
//! 2. (a) one more client sends requests much faster than it reads their results
//!    ([`flooder`]): it must get every one back and stay connected, with reading paused by the
//!    server;
//! 3. (b) one more client sends and never reads ([`stall`]): the server's memory must stay
//!    bounded and the client be dropped after the stall timeout;
//! 4. reference again (drift check).
//!
//! Rows (a) and (b) carry the other clients' p50/p99 as ratios to the first reference.

mod flooder;
mod queues;
mod stall;

use std::time::Duration;

use crate::load::{Audience, Pool};
use crate::report::{ratio, Reporter, Step};
use crate::servers::{ServerKind, ServerProcess, ServerSpec};

use super::paced::{self, Paced};
use super::sampler::Sampler;
use super::Options;

const SCENARIO: &str = "flood";
/// Memory and counter sampling period.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Sending window of the unmeasured warm-up step.
const WARM_UP: Duration = Duration::from_secs(3);

/// Runs the four steps against a fresh crosswire server; other kinds are skipped (the
/// baseline has no flow control).
pub(super) async fn run(
    kind: ServerKind,
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    if kind != ServerKind::Crosswire {
        eprintln!("flood: crosswire only; skipped on {}", kind.name());
        return Ok(());
    }
    let f = &opts.flood;
    crate::load::limits::check_sockets(f.clients as u64 + 2)?;
    let mut spec = ServerSpec::single(kind);
    spec.threads = opts.server_threads;
    spec.sndbuf = opts.server_sndbuf;
    spec.stall_timeout_secs = f.stall_timeout;
    spec.rate_limit = f.rate_limit;
    spec.ping_interval_secs = opts.server_ping_secs;
    let mut server = ServerProcess::spawn(&spec).await?;
    let (pool, connected) = super::connect(&[server.addr], f.clients, opts, kind).await;
    let result = match connected {
        Ok(()) => steps(&mut server, &pool, opts, out).await,
        Err(error) => Err(error),
    };
    super::stop(server, &pool).await;
    result
}

async fn steps(
    server: &mut ServerProcess,
    pool: &Pool,
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    let rate = opts.flood.rate;
    out.emit(others(server, pool, opts, &format!("warm-up@{rate}"), WARM_UP).await?);

    let sampler = Sampler::start(server.probe(), SAMPLE_EVERY);
    let rss_before = super::measure::server_stats(server)?.rss_bytes;
    let mut reference = others(
        server,
        pool,
        opts,
        &format!("broadcast@{rate}"),
        opts.duration,
    )
    .await?;
    let samples = sampler.finish().await;
    reference.set("server_rss_before_bytes", rss_before);
    reference.set("server_rss_max_bytes", samples.max_rss);
    out.emit(reference.clone());

    let mut flood = flooder::step(server, pool, opts).await?;
    compare(&mut flood, &reference);
    out.emit(flood.clone());

    let mut stalled = stall::step(server, pool, opts).await?;
    compare(&mut stalled, &reference);
    out.emit(stalled.clone());

    let label = format!("broadcast@{rate}-again");
    let mut again = others(server, pool, opts, &label, opts.duration).await?;
    compare(&mut again, &reference);
    out.emit(again.clone());

    flooder::print(&flood);
    stall::print(&stalled, &reference);
    eprintln!(
        "(c) others' latency vs the reference step, p50 / p99: flooding {} / {}, stalled {} / {}, reference again {} / {}",
        field(&flood, "p50_vs_reference"),
        field(&flood, "p99_vs_reference"),
        field(&stalled, "p50_vs_reference"),
        field(&stalled, "p99_vs_reference"),
        field(&again, "p50_vs_reference"),
        field(&again, "p99_vs_reference"),
    );
    Ok(())
}

/// One paced step of the measured broadcast to the other clients, `window` long: client
/// `seq % n` asks the server to broadcast message `seq` to everyone.
async fn others(
    server: &mut ServerProcess,
    pool: &Pool,
    opts: &Options,
    label: &str,
    window: Duration,
) -> Result<Step, String> {
    let n = pool.len() as u64;
    let mut step_opts = opts.clone();
    step_opts.duration = window;
    let step = Paced {
        scenario: SCENARIO,
        label: label.into(),
        rate: opts.flood.rate,
        audience: Audience::All,
    };
    paced::run(server, pool, &step_opts, step, |seq, token| {
        let text = format!(
            r#"{{"event":"command","payload":{{"action":"broadcast","msg":"{token}"}},"callbackId":"c{seq}"}}"#
        );
        ((seq % n) as usize, text)
    })
    .await
}

/// Adds the other clients' latency ratios to `reference` to `row`.
fn compare(row: &mut Step, reference: &Step) {
    row.set("reference_p50_ms", reference.p50_ms);
    row.set("reference_p99_ms", reference.p99_ms);
    row.set("p50_vs_reference", ratio(row.p50_ms, reference.p50_ms));
    row.set("p99_vs_reference", ratio(row.p99_ms, reference.p99_ms));
}

/// A field of `row`, for printing (`-` when absent).
fn field(row: &Step, key: &str) -> String {
    row.extra
        .get(key)
        .filter(|v| !v.is_null())
        .map_or_else(|| "-".into(), ToString::to_string)
}
