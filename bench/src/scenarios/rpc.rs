//! `rpc`: `say` requests with a callbackId, each answered by its reply. A closed-loop step
//! (every client waits for its reply before the next request) then open-loop steps at fixed
//! rates. Round trips per server CPU-second and round-trip latency are the figures.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::load::{clock, token, Audience, Pool, StepCtx};
use crate::report::{round, Reporter, Step};
use crate::servers::{ServerKind, ServerProcess};

use super::measure::{saturation, Meter};
use super::paced::{self, Paced};
use super::Options;

const SCENARIO: &str = "rpc";
/// A closed-loop client gives up waiting for one reply after this long (counted).
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the rpc steps against a fresh server of `kind`.
pub(super) async fn run(
    kind: ServerKind,
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    let c = opts.rpc_clients.max(1);
    crate::load::limits::check_sockets(c as u64)?;
    let mut server = super::spawn(kind, opts).await?;
    let (pool, connected) = Pool::connect(&[server.addr], c, &opts.pool).await;
    let pool = Arc::new(pool);
    if connected.connected < c {
        super::stop(server, &pool).await;
        return Err(format!(
            "only {} of {c} clients connected: {}",
            connected.connected,
            connected.first_error.unwrap_or_default()
        ));
    }
    let result = steps(&mut server, &pool, opts, out).await;
    super::stop(server, &pool).await;
    result
}

async fn steps(
    server: &mut ServerProcess,
    pool: &Arc<Pool>,
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    out.emit(closed_loop(server, pool, opts).await?);
    let c = pool.len() as u64;
    for &rate in &opts.rpc_rates {
        let step = Paced {
            scenario: SCENARIO,
            label: format!("open@{rate}"),
            rate,
            audience: Audience::Group { groups: pool.len() },
        };
        let row = paced::run(server, pool, opts, step, |seq, token| {
            let text =
                format!(r#"{{"event":"say","payload":{{"n":{seq}}},"callbackId":"{token}"}}"#);
            ((seq % c) as usize, text)
        })
        .await?;
        out.emit(row);
    }
    Ok(())
}

/// Every client sends a request, waits for its reply, and repeats, for the step duration.
/// Request k of client i has sequence number `k * clients + i`.
async fn closed_loop(
    server: &mut ServerProcess,
    pool: &Arc<Pool>,
    opts: &Options,
) -> Result<Step, String> {
    let c = pool.len();
    let audience = Audience::Group { groups: c };
    let ctx = StepCtx::new(audience);
    pool.begin_step(&ctx);
    let meter = Meter::start(server)?;
    let end = Instant::now() + opts.duration;
    let mut clients = JoinSet::new();
    for i in 0..c {
        let pool = pool.clone();
        let step = ctx.id;
        clients.spawn(async move {
            let (mut sent, mut timeouts) = (0u64, 0u64);
            while Instant::now() < end {
                let seq = sent * c as u64 + i as u64;
                let token = token::delivery(step, seq, clock::now_nanos());
                let text =
                    format!(r#"{{"event":"say","payload":{{"n":{seq}}},"callbackId":"{token}"}}"#);
                if !pool.send(i, text) {
                    break;
                }
                sent += 1;
                if !pool.wait_reply(i, REPLY_TIMEOUT).await {
                    timeouts += 1;
                }
            }
            (i, sent, timeouts)
        });
    }
    let mut per_client = vec![0u64; c];
    let mut timeouts = 0;
    while let Some(done) = clients.join_next().await {
        let (i, sent, t) = done.map_err(|e| format!("rpc client task: {e}"))?;
        per_client[i] = sent;
        timeouts += t;
    }
    let used = meter.used(server)?;
    let tally = pool.finish_step(|i| per_client[i]);
    let lat = ctx.latencies.percentiles();
    let counters = server.counters().await.unwrap_or_default();
    let sent: u64 = per_client.iter().sum();
    let wall = used.wall.as_secs_f64().max(1e-9);

    let mut step = Step::new(SCENARIO, server.kind.name(), &format!("closed@{c}"));
    step.duration_s = round(wall, 3);
    step.sent = sent;
    step.deliveries = tally.deliveries;
    step.deliveries_per_s = round(tally.deliveries as f64 / wall, 1);
    step.server_cpu_s = round(used.server_cpu_s, 2);
    step.deliveries_per_cpu_s =
        (used.server_cpu_s > 0.0).then(|| round(tally.deliveries as f64 / used.server_cpu_s, 0));
    step.p50_ms = lat.p50_ms;
    step.p99_ms = lat.p99_ms;
    step.p999_ms = lat.p999_ms;
    step.lost = tally.lost;
    step.duplicated = tally.duplicated;
    step.misdelivered = tally.misdelivered;
    step.generator_cpu_s = round(used.generator_cpu_s, 2);
    step.saturated_reason = saturation(None, &used, opts.cpu_limit);
    step.saturated = step.saturated_reason.is_some();
    step.server_rss_bytes = used.server_rss;
    step.set("clients", c);
    step.set("machine_cpu_share", used.machine_share());
    step.set("reply_timeouts", timeouts);
    step.set("max_ms", lat.max_ms);
    step.set("stale", tally.stale);
    paced::add_counters(&mut step, &counters);
    Ok(step)
}
