//! `cross-node`: the latency crosswire adds to a cross-node delivery over raw broker pub/sub,
//! in one run, at one low rate: (a) raw publish → subscriber on the broker, from the
//! generator; (b) a `toPlayer` between two clients of the same node; (c) a `toPlayer` from a
//! client of node `a` to a client of node `b`. Added latency = (c) − (b) − (a), at p50 and
//! p99. With `--brokers redis,nats` the three probes run on a Redis cluster, then on a fresh
//! NATS cluster (raw reference: raw NATS pub/sub with async-nats); rows on NATS are
//! `crosswire-nats` (raw: `nats`).

use std::sync::Arc;
use std::time::Duration;

use crate::load::pubsub::{self, ProbeReport};
use crate::load::{Audience, Pool};
use crate::report::{round, Reporter, Step};
use crate::servers::{Broker, ProcStats, ServerKind};

use super::cluster::{self, Cluster};
use super::measure::{saturation, Used};
use super::paced::{self, Paced};
use super::unicast::to_player;
use super::Options;

const SCENARIO: &str = "cross-node";
/// Target of the issue: added p50 at most this, microseconds.
const TARGET_ADDED_P50_US: f64 = 100.0;
/// The sender (client 0, node `a`).
const SENDER: usize = 0;
/// The receiver on node `b` (client 1).
const OTHER_NODE: usize = 1;
/// The receiver on node `a` (client 2).
const SAME_NODE: usize = 2;
/// Longest the nodes may take to route to each other after they start.
const ROUTE_WAIT: Duration = Duration::from_secs(15);

/// Runs the three probes (crosswire only: the baseline has no second node).
pub(super) async fn run(
    kind: ServerKind,
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    if kind != ServerKind::Crosswire {
        eprintln!(
            "{}: skipped (a single node; cross-node latency needs a cluster)",
            kind.name()
        );
        return Ok(());
    }
    let mut failures = Vec::new();
    for &broker in &opts.brokers {
        if let Err(error) = on_cluster(broker, opts, out).await {
            failures.push(format!("{}: {error}", broker.name()));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// The three probes on a fresh 2-node crosswire cluster on `broker`.
async fn on_cluster(broker: Broker, opts: &Options, out: &mut Reporter) -> Result<(), String> {
    let mut cluster = Cluster::start(&["a", "b"], opts, broker).await?;
    let (pool, connected) = super::connect(&cluster.addrs(), 3, opts, ServerKind::Crosswire).await;
    let result = match connected {
        Ok(()) => probes(&mut cluster, &pool, opts, out).await,
        Err(error) => Err(error),
    };
    cluster.stop(&pool).await;
    result
}

async fn probes(
    cluster: &mut Cluster,
    pool: &Pool,
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    let rate = opts.probe_rate;
    let broker = cluster.broker.kind();
    let name = broker.name();
    cluster::wait_routed(pool, 2, ROUTE_WAIT).await?;

    let (before, generator) = (cluster.broker_stats()?, generator_stats()?);
    let started = tokio::time::Instant::now();
    let url = cluster.broker.url();
    let raw = pubsub::probe(broker, &url, rate, opts.duration, opts.drain).await?;
    let (after, generator_now) = (cluster.broker_stats()?, generator_stats()?);
    let used = Used {
        wall: started.elapsed(),
        server_cpu_s: after.cpu_seconds - before.cpu_seconds,
        generator_cpu_s: generator_now.cpu_seconds - generator.cpu_seconds,
        server_rss: after.rss_bytes,
    };
    out.emit(raw_row(broker, &raw, rate, &used, opts.cpu_limit));

    let same = to_one(cluster, pool, opts, "same-node", SAME_NODE).await?;
    out.emit(same.clone());
    let cross = to_one(cluster, pool, opts, "cross-node", OTHER_NODE).await?;
    out.emit(cross.clone());

    let added = |pick: fn(&Step) -> Option<f64>, raw: Option<f64>| {
        Some(round(pick(&cross)? - pick(&same)? - raw?, 3))
    };
    let mut row = Step::new(SCENARIO, broker.crosswire_label(), &format!("added@{rate}"));
    row.set("broker", name);
    row.rate = Some(rate);
    row.p50_ms = added(|s| s.p50_ms, raw.latency.p50_ms);
    row.p99_ms = added(|s| s.p99_ms, raw.latency.p99_ms);
    let met = row.p50_ms.map(|p50| p50 * 1e3 <= TARGET_ADDED_P50_US);
    row.set("added_p50_us", row.p50_ms.map(|ms| round(ms * 1e3, 0)));
    row.set("added_p99_us", row.p99_ms.map(|ms| round(ms * 1e3, 0)));
    row.set("target_added_p50_us", TARGET_ADDED_P50_US);
    row.set("target_met", met);
    for (name, p50, p99) in [
        (
            &*format!("raw_{name}"),
            raw.latency.p50_ms,
            raw.latency.p99_ms,
        ),
        ("same_node", same.p50_ms, same.p99_ms),
        ("cross_node", cross.p50_ms, cross.p99_ms),
    ] {
        row.set(&format!("{name}_p50_ms"), p50);
        row.set(&format!("{name}_p99_ms"), p99);
    }
    let any_loss = raw.tally.lost + same.lost + cross.lost > 0;
    row.set("probes_lost_messages", any_loss);
    out.emit(row.clone());
    let us = |ms: Option<f64>| ms.map_or_else(|| "-".into(), |ms| format!("{:.0} µs", ms * 1e3));
    eprintln!(
        "added latency on {name} (cross − same − raw {name}): p50 {} (target ≤ {TARGET_ADDED_P50_US:.0} µs: {}), p99 {}",
        us(row.p50_ms),
        match met {
            Some(true) => "MET",
            Some(false) => "NOT MET",
            None => "unknown",
        },
        us(row.p99_ms),
    );
    Ok(())
}

/// A paced `toPlayer` step from [`SENDER`] (node `a`) to client `target`.
async fn to_one(
    cluster: &mut Cluster,
    pool: &Pool,
    opts: &Options,
    name: &str,
    target: usize,
) -> Result<Step, String> {
    let rate = opts.probe_rate;
    let step = Paced {
        scenario: SCENARIO,
        label: format!("{name}@{rate}"),
        rate,
        audience: Audience::One(Arc::new(move |_| target)),
    };
    let broker = cluster.broker.kind();
    let before = cluster.broker_stats()?;
    let mut row = paced::run_all(&mut cluster.nodes, pool, opts, step, |seq, token| {
        (SENDER, to_player(target, token, seq))
    })
    .await?;
    let after = cluster.broker_stats()?;
    row.server = broker.crosswire_label().into();
    row.set("broker", broker.name());
    row.set("nodes", cluster.nodes.len());
    row.set(
        &format!("{}_cpu_s", broker.name()),
        round(after.cpu_seconds - before.cpu_seconds, 2),
    );
    Ok(row)
}

/// This process's CPU and memory now.
fn generator_stats() -> Result<ProcStats, String> {
    ProcStats::current().map_err(|e| format!("/proc/self: {e}"))
}

/// The raw broker probe as a row (server `redis` or `nats`).
fn raw_row(broker: Broker, raw: &ProbeReport, rate: f64, used: &Used, cpu_limit: f64) -> Step {
    let mut row = Step::new(SCENARIO, broker.name(), &format!("raw-pubsub@{rate}"));
    let elapsed = raw.pace.elapsed.as_secs_f64().max(1e-9);
    row.rate = Some(rate);
    row.duration_s = round(elapsed, 3);
    row.sent = raw.pace.sent;
    row.deliveries = raw.tally.deliveries;
    row.deliveries_per_s = round(raw.tally.deliveries as f64 / elapsed, 1);
    row.server_cpu_s = round(used.server_cpu_s, 2);
    row.generator_cpu_s = round(used.generator_cpu_s, 2);
    row.server_rss_bytes = used.server_rss;
    row.p50_ms = raw.latency.p50_ms;
    row.p99_ms = raw.latency.p99_ms;
    row.p999_ms = raw.latency.p999_ms;
    row.lost = raw.tally.lost;
    row.duplicated = raw.tally.duplicated;
    row.misdelivered = raw.tally.misdelivered;
    row.saturated_reason = saturation(Some(&raw.pace), used, cpu_limit);
    row.saturated = row.saturated_reason.is_some();
    row.set("max_ms", raw.latency.max_ms);
    row.set("all_delivered", raw.all_in);
    row.set("publish_errors", raw.publish_errors);
    row.set("foreign_messages", raw.foreign);
    row.set("stale", raw.tally.stale);
    row.set("late_sends", raw.pace.late);
    row
}
