//! (a) A client that sends much faster than it reads: it queues `--flood-messages` requests at
//! once (200 every 2 ms), each asking the server to push a `--flood-bytes` message to itself
//! (`command toPlayer` its own id), and reads at `--flood-read-rate` bytes a second. Every
//! push must come back (exact count, no duplicates) and the client must stay connected: the
//! server pauses reading from it (`read_pauses`) instead of dropping anything.
//!
//! The pushes go to the flooder only: a `broadcast` of this flood would go to every other
//! client too, making them slow consumers of it rather than measuring the flooder's flow
//! control.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::load::{clock, token, Audience, Pool, PoolConfig, StepCtx};
use crate::report::{round, Step};
use crate::servers::ServerProcess;

use super::super::sampler::Sampler;
use super::super::Options;
use super::SAMPLE_EVERY;

/// The flooding client's socket id (its pool's id base; the other clients use 0..n).
const FLOODER_ID: usize = 1_000_000;
/// Messages queued per tick, and the tick.
const BATCH: u64 = 200;
const EVERY: Duration = Duration::from_millis(2);
/// Bytes the server sends back per request besides the message itself (push envelope and
/// reply), for the estimate of how long reading takes.
const OVERHEAD: u64 = 160;
/// Extra time allowed after the estimate for every push to come back.
const SLACK: Duration = Duration::from_secs(60);

/// Runs step (a); the row is the other clients' broadcast step with the flood's figures.
pub(super) async fn step(
    server: &mut ServerProcess,
    pool: &Pool,
    opts: &Options,
) -> Result<Step, String> {
    let f = &opts.flood;
    let config = PoolConfig {
        read_rate: Some(f.read_rate),
        id_base: FLOODER_ID,
        ..opts.pool.clone()
    };
    let (flooder, connected) = Pool::connect(&[server.addr], 1, &config).await;
    if connected.connected < 1 {
        return Err(format!(
            "the flooding client did not connect: {}",
            connected.first_error.unwrap_or_default()
        ));
    }
    let flooder = Arc::new(flooder);
    let ctx = StepCtx::new(Audience::All);
    flooder.begin_step(&ctx);
    let bytes = (f.message_bytes as u64 + OVERHEAD) * f.messages;
    let estimate = Duration::from_secs_f64(bytes as f64 / f.read_rate.max(1) as f64);
    let window = opts.duration.max(estimate + Duration::from_secs(3));
    let before = server.counters().await.unwrap_or_default();
    let rss_before = super::super::measure::server_stats(server)?.rss_bytes;
    let sampler = Sampler::watching(server.probe(), SAMPLE_EVERY, "read_pauses");
    let started = Instant::now();
    let sending = tokio::spawn(flood(flooder.clone(), ctx.id, f.messages, f.message_bytes));
    let label = format!("broadcast@{}+flooding", f.rate);
    let row = super::others(server, pool, opts, &label, window).await;
    let all_back = ctx
        .wait_for(
            f.messages,
            (estimate + SLACK).saturating_sub(started.elapsed()),
        )
        .await;
    let took = started.elapsed();
    let queued = sending.await.unwrap_or(0);
    let samples = sampler.finish().await;
    let after = server.counters().await.unwrap_or_default();
    let mut row = row?;
    let tally = flooder.finish_step(|_| f.messages);
    let lat = ctx.latencies.percentiles();
    let delta = |key: &str| counter(&after, key).saturating_sub(counter(&before, key));
    row.set("flood_messages", f.messages);
    row.set("flood_bytes", f.message_bytes);
    row.set("flood_read_rate", f.read_rate);
    row.set("flood_queued", queued);
    row.set("flood_received", tally.deliveries);
    row.set("flood_lost", tally.lost);
    row.set("flood_duplicated", tally.duplicated);
    row.set("flood_replies", flooder.replies(b'c'));
    row.set("flood_failed_replies", flooder.failed_replies(b'c'));
    row.set("flood_all_back", all_back);
    row.set("flood_took_s", round(took.as_secs_f64(), 1));
    row.set("flood_window_s", round(window.as_secs_f64(), 1));
    row.set("flood_p50_ms", lat.p50_ms);
    row.set("flood_max_ms", lat.max_ms);
    row.set("flooder_open", flooder.is_open(0));
    row.set("flooder_ends", serde_json::json!(flooder.ends()));
    row.set("flooder_pongs", flooder.pongs());
    row.set("read_pauses", delta("read_pauses"));
    row.set(
        "first_read_pause_s",
        samples.first_rise.map(|t| round(t.as_secs_f64(), 2)),
    );
    row.set("limit_rate", delta("limit_rate"));
    row.set("slow_consumer_closes", delta("slow_consumer_closes"));
    row.set("stalled_closes", delta("stalled_closes"));
    row.set("dead_connections", delta("dead_connections"));
    row.set("server_rss_before_bytes", rss_before);
    row.set("server_rss_max_bytes", samples.max_rss);
    flooder.shutdown();
    Ok(row)
}

/// Queues the flood on the flooder (client 0 of `pool`): `BATCH` requests every `EVERY`,
/// `messages` in all; returns how many were queued.
async fn flood(pool: Arc<Pool>, step: u32, messages: u64, bytes: usize) -> u64 {
    let mut ticks = tokio::time::interval(EVERY);
    let mut seq = 0;
    while seq < messages {
        ticks.tick().await;
        for _ in 0..BATCH.min(messages - seq) {
            let msg = token::padded(step, seq, clock::now_nanos(), bytes);
            let text = format!(
                r#"{{"event":"command","payload":{{"action":"toPlayer","toPlayerId":"{FLOODER_ID}","msg":"{msg}"}},"callbackId":"c{seq}"}}"#
            );
            if !pool.send(0, text) {
                return seq;
            }
            seq += 1;
        }
    }
    seq
}

fn counter(counters: &Value, key: &str) -> u64 {
    counters.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Prints step (a)'s outcome on stderr.
pub(super) fn print(row: &Step) {
    let get = |key: &str| row.extra.get(key).cloned().unwrap_or(Value::Null);
    eprintln!(
        "(a) flooding client: {} of {} pushes back ({} lost, {} duplicated, {} replies, {} failed) in {} s (others measured over {} s); still open: {}, ends {}; server read pauses {} (first after {} s), rate-limited {}, slow-consumer closes {}, stalled closes {}, dead {}",
        get("flood_received"),
        get("flood_messages"),
        get("flood_lost"),
        get("flood_duplicated"),
        get("flood_replies"),
        get("flood_failed_replies"),
        get("flood_took_s"),
        get("flood_window_s"),
        get("flooder_open"),
        get("flooder_ends"),
        get("read_pauses"),
        get("first_read_pause_s"),
        get("limit_rate"),
        get("slow_consumer_closes"),
        get("stalled_closes"),
        get("dead_connections"),
    );
}
