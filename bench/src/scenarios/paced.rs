//! One open-loop step: send `rate` messages per second for the step's duration through the
//! pool, wait for the expected receipts (up to the drain deadline), then account and measure.
//! Shared by every paced scenario.

use crate::load::pace::pace;
use crate::load::{clock, token, Audience, Pool, StepCtx};
use crate::report::{round, Step};
use crate::servers::ServerProcess;

use super::measure::{saturation, Meter};
use super::Options;

/// What to send in one paced step.
#[derive(Debug, Clone)]
pub(super) struct Paced {
    /// Scenario name.
    pub(super) scenario: &'static str,
    /// Step label (unique within the scenario).
    pub(super) label: String,
    /// Messages per second.
    pub(super) rate: f64,
    /// Who must receive message `seq`.
    pub(super) audience: Audience,
}

/// Runs `paced` against `server` through `pool`. `frame(seq, token)` returns the client that
/// sends message `seq` and the text frame that carries `token`.
pub(super) async fn run(
    server: &mut ServerProcess,
    pool: &Pool,
    opts: &Options,
    paced: Paced,
    frame: impl FnMut(u64, &str) -> (usize, String),
) -> Result<Step, String> {
    run_all(std::slice::from_mut(server), pool, opts, paced, frame).await
}

/// Like [`run`] against several server processes of one kind (a cluster; `servers` must not
/// be empty): server CPU and RSS are their sums, and so are their counters.
pub(super) async fn run_all(
    servers: &mut [ServerProcess],
    pool: &Pool,
    opts: &Options,
    paced: Paced,
    mut frame: impl FnMut(u64, &str) -> (usize, String),
) -> Result<Step, String> {
    let kind = servers.first().ok_or("no server to measure")?.kind;
    let ctx = StepCtx::new(paced.audience.clone());
    pool.begin_step(&ctx);
    let replies = pool.replies(b'c');
    let failed = pool.failed_replies(b'c');
    let meter = Meter::start_all(servers)?;
    let mut unsent = 0u64;
    let report = pace(paced.rate, opts.duration, |seq| {
        let token = token::delivery(ctx.id, seq, clock::now_nanos());
        let (client, text) = frame(seq, &token);
        if !pool.send(client, text) {
            unsent += 1;
        }
    });
    let sending = meter.used_all(servers)?;
    let expected = paced.audience.expected_counts(pool.len(), report.sent);
    let expected_total: u64 = expected.iter().sum();
    let all_in = ctx.wait_for(expected_total, opts.drain).await;
    let used = meter.used_all(servers)?;
    let tally = pool.finish_step(|i| expected[i]);
    let lat = ctx.latencies.percentiles();
    let counters = counters_all(servers).await;

    let mut step = Step::new(paced.scenario, kind.name(), &paced.label);
    step.rate = Some(paced.rate);
    step.duration_s = round(report.elapsed.as_secs_f64(), 3);
    step.sent = report.sent;
    step.deliveries = tally.deliveries;
    step.deliveries_per_s = round(
        tally.deliveries as f64 / report.elapsed.as_secs_f64().max(1e-9),
        1,
    );
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
    step.saturated_reason = saturation(Some(&report), &sending, opts.cpu_limit);
    step.saturated = step.saturated_reason.is_some();
    step.server_rss_bytes = used.server_rss;
    step.set("clients", pool.len());
    step.set("machine_cpu_share", used.machine_share());
    step.set("expected", expected_total);
    step.set("all_delivered", all_in);
    step.set("step_wall_s", round(used.wall.as_secs_f64(), 3));
    step.set("max_ms", lat.max_ms);
    step.set("late_sends", report.late);
    step.set(
        "max_send_lag_ms",
        round(report.max_lag.as_secs_f64() * 1e3, 2),
    );
    step.set("unsent", unsent);
    step.set("stale", tally.stale);
    step.set("command_replies", pool.replies(b'c') - replies);
    step.set("failed_command_replies", pool.failed_replies(b'c') - failed);
    step.set("other_frames", pool.other_frames());
    step.set("client_closes", pool.closed());
    add_counters(&mut step, &counters);
    Ok(step)
}

/// The counters of `servers`: the one server's as they are, or the numeric fields of
/// several summed. A server that does not answer contributes nothing.
pub(super) async fn counters_all(servers: &mut [ServerProcess]) -> serde_json::Value {
    if let [one] = servers {
        return one.counters().await.unwrap_or_default();
    }
    let mut sum = serde_json::Map::new();
    for server in servers.iter_mut() {
        let Ok(serde_json::Value::Object(fields)) = server.counters().await else {
            continue;
        };
        for (key, value) in fields {
            let Some(v) = value.as_u64() else { continue };
            let total = sum
                .get(&key)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            sum.insert(key, (total + v).into());
        }
    }
    serde_json::Value::Object(sum)
}

/// Copies the server's `connections` and `slow_consumer_closes` counters into `step`.
pub(super) fn add_counters(step: &mut Step, counters: &serde_json::Value) {
    for key in ["connections", "slow_consumer_closes"] {
        if let Some(v) = counters.get(key) {
            step.set(&format!("server_{key}"), v.clone());
        }
    }
}
