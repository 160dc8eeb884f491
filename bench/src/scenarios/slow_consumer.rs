//! `slow-consumer`: one node, many clients, broadcasts at a fixed rate; in the second step
//! one extra client stops reading from the start (a hand-made WebSocket connection with a
//! small receive buffer that never reads). The other clients' latency against the step
//! without it, their losses (must be none), the server's memory, and whether and when the
//! server drops the slow client once its outbound queue is full.

use std::time::Duration;

use serde_json::Value;

use crate::load::stalled::StalledClient;
use crate::load::{Audience, Pool};
use crate::report::{ratio, round, Reporter, Step};
use crate::servers::{ServerKind, ServerProcess, ServerSpec};

use super::paced::{self, Paced};
use super::sampler::{Sampler, Samples};
use super::Options;

const SCENARIO: &str = "slow-consumer";
/// Memory and counters sampling period.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// Sending window of the unmeasured warm-up step (the first step after connecting runs
/// slower than the later ones on both servers).
const WARM_UP: Duration = Duration::from_secs(3);
/// The slow client's socket id.
const SLOW_ID: &str = "slow-consumer";

/// Runs the step without, then with, the slow client against a fresh server of `kind`.
pub(super) async fn run(
    kind: ServerKind,
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    let n = opts.slow_clients;
    crate::load::limits::check_sockets(n as u64 + 1)?;
    let mut server = super::spawn(kind, opts).await?;
    let (pool, connected) = super::connect(&[server.addr], n, opts, kind).await;
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
    let rate = opts.slow_rate;
    let mut warm_opts = opts.clone();
    warm_opts.duration = WARM_UP;
    let warm = broadcast(server, pool, &warm_opts, format!("warm-up@{rate}")).await?;
    out.emit(warm);
    let sampler = Sampler::start(server.probe(), SAMPLE_EVERY);
    let mut reference = broadcast(server, pool, opts, format!("broadcast@{rate}")).await?;
    let samples = sampler.finish().await;
    reference.set("slow_client", false);
    reference.set("server_rss_max_bytes", samples.max_rss);
    out.emit(reference.clone());

    let stalled = StalledClient::connect(server.addr, SLOW_ID, opts.slow_rcvbuf).await?;
    let sampler = Sampler::start(server.probe(), SAMPLE_EVERY);
    let mut slow_opts = opts.clone();
    slow_opts.duration = opts.slow_duration;
    let row = broadcast(server, pool, &slow_opts, format!("broadcast@{rate}+slow")).await;
    let samples = sampler.finish().await;
    let counters = server.counters().await.unwrap_or_default();
    let mut row = row?;
    slow_figures(&mut row, &reference, &samples, &counters, stalled.rcvbuf);
    row.set("server_sndbuf_bytes", opts.server_sndbuf);
    drop(stalled);
    report_drop(&row);
    out.emit(row);
    Ok(())
}

/// One paced broadcast step; client `seq % n` sends message `seq`.
async fn broadcast(
    server: &mut ServerProcess,
    pool: &Pool,
    opts: &Options,
    label: String,
) -> Result<Step, String> {
    let n = pool.len() as u64;
    let step = Paced {
        scenario: SCENARIO,
        label,
        rate: opts.slow_rate,
        audience: Audience::All,
    };
    paced::run(server, pool, opts, step, |seq, token| {
        let text = format!(
            r#"{{"event":"command","payload":{{"action":"broadcast","msg":"{token}"}},"callbackId":"c{seq}"}}"#
        );
        ((seq % n) as usize, text)
    })
    .await
}

/// Adds the slow step's own figures to `row`.
fn slow_figures(
    row: &mut Step,
    reference: &Step,
    samples: &Samples,
    counters: &Value,
    rcvbuf: u32,
) {
    let queue = ServerSpec::single(ServerKind::Baseline).outbound_queue;
    row.set("slow_client", true);
    row.set("slow_client_rcvbuf_bytes", rcvbuf);
    row.set("outbound_queue_frames", queue);
    row.set("reference_p99_ms", reference.p99_ms);
    row.set("p99_vs_reference", ratio(row.p99_ms, reference.p99_ms));
    row.set("server_rss_max_bytes", samples.max_rss);
    row.set("server_rss_end_bytes", row.server_rss_bytes);
    row.set("rss_samples", samples.count);
    row.set("slow_client_dropped", samples.first_rise.is_some());
    row.set(
        "slow_client_dropped_after_s",
        samples.first_rise.map(|t| round(t.as_secs_f64(), 1)),
    );
    row.set("server_counters", counters.clone());
}

/// Says on stderr whether and when the slow client was dropped.
fn report_drop(row: &Step) {
    let after = row
        .extra
        .get("slow_client_dropped_after_s")
        .and_then(Value::as_f64);
    match after {
        Some(s) => eprintln!(
            "{}: slow client dropped {s:.1} s into the step; others lost {}, p99 {:?} ms vs {:?} ms without it",
            row.server,
            row.lost,
            row.p99_ms,
            row.extra.get("reference_p99_ms").and_then(Value::as_f64),
        ),
        None => eprintln!(
            "{}: slow client NOT dropped within the {:.0} s step; others lost {}",
            row.server, row.duration_s, row.lost
        ),
    }
}
