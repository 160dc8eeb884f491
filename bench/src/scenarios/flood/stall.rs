//! (b) A client that sends and never reads: a hand-made connection with a small receive
//! buffer that writes requests (`command toPlayer` its own id, `--flood-bytes` each) as fast
//! as the kernel takes them. The server's output for it fills the kernel buffers, then its
//! queue up to the high-water mark, where the server stops reading from it; its writes then
//! make no progress and after the stall timeout it is dropped (`stalled_closes`). Reported:
//! the server's RSS growth meanwhile against the configured bounds, the kernel's queues of
//! the connection (which the RSS does not show), and when it was dropped.

use std::time::Duration;

use serde_json::Value;

use crosswire::ws::{DEFAULT_HIGH_WATER, DEFAULT_OUTBOUND_BYTES, DEFAULT_STALL_TIMEOUT};

use crate::load::stalled::StalledClient;
use crate::report::{round, Step};
use crate::servers::ServerProcess;

use super::super::sampler::Sampler;
use super::super::Options;
use super::queues::QueueWatch;
use super::SAMPLE_EVERY;

/// The stalled client's socket id.
const STALLED_ID: &str = "stalled-sender";
/// The step lasts this much longer than the stall timeout.
const AFTER_STALL: Duration = Duration::from_secs(8);
/// Kernel queue sampling period.
const QUEUES_EVERY: Duration = Duration::from_millis(200);

/// Runs step (b); the row is the other clients' broadcast step with the stalled client's
/// figures.
pub(super) async fn step(
    server: &mut ServerProcess,
    pool: &crate::load::Pool,
    opts: &Options,
) -> Result<Step, String> {
    let f = &opts.flood;
    let stall_timeout = match Duration::try_from_secs_f64(f.stall_timeout) {
        Ok(t) if !t.is_zero() => t,
        _ => DEFAULT_STALL_TIMEOUT,
    };
    let before = server.counters().await.unwrap_or_default();
    let rss_before = super::super::measure::server_stats(server)?.rss_bytes;
    let sampler = Sampler::watching(server.probe(), SAMPLE_EVERY, "stalled_closes");
    let client = StalledClient::connect(server.addr, STALLED_ID, opts.slow_rcvbuf).await?;
    let watch = QueueWatch::start(server.addr, client.local, QUEUES_EVERY);
    let pad = "x".repeat(f.message_bytes);
    let sender = client.keep_sending(move |k| {
        Some(format!(
            r#"{{"event":"command","payload":{{"action":"toPlayer","toPlayerId":"{STALLED_ID}","msg":"{pad}"}},"callbackId":"c{k}"}}"#
        ))
    });
    let label = format!("broadcast@{}+stalled", f.rate);
    let row = super::others(server, pool, opts, &label, stall_timeout + AFTER_STALL).await;
    let samples = sampler.finish().await;
    let peaks = watch.finish().await;
    let after = server.counters().await.unwrap_or_default();
    let written = sender.written();
    let write_end = sender.ended();
    let rcvbuf = sender.rcvbuf;
    drop(sender);
    let mut row = row?;
    let delta = |key: &str| counter(&after, key).saturating_sub(counter(&before, key));
    let secs = |d: Option<Duration>| d.map(|d| round(d.as_secs_f64(), 2));
    row.set("stalled_rcvbuf_bytes", rcvbuf);
    row.set("stalled_frames_written", written);
    row.set("stall_timeout_s", stall_timeout.as_secs_f64());
    row.set("stalled_dropped", samples.first_rise.is_some());
    row.set("stalled_dropped_after_s", secs(samples.first_rise));
    row.set(
        "server_send_queue_last_grew_s",
        secs(peaks.server_send_last_grew),
    );
    row.set(
        "stalled_write_error",
        write_end
            .as_ref()
            .map(|(t, e)| format!("{e} after {:.2} s", t.as_secs_f64())),
    );
    row.set("stalled_closes", delta("stalled_closes"));
    row.set("slow_consumer_closes", delta("slow_consumer_closes"));
    row.set("read_pauses", delta("read_pauses"));
    row.set("server_rss_before_bytes", rss_before);
    row.set("server_rss_max_bytes", samples.max_rss);
    row.set(
        "server_rss_growth_bytes",
        samples.max_rss.saturating_sub(rss_before),
    );
    row.set("high_water_bytes", DEFAULT_HIGH_WATER);
    row.set("outbound_bytes", DEFAULT_OUTBOUND_BYTES);
    row.set("server_send_queue_max_bytes", peaks.server_send);
    row.set("server_recv_queue_max_bytes", peaks.server_recv);
    row.set("client_recv_queue_max_bytes", peaks.client_recv);
    row.set("client_send_queue_max_bytes", peaks.client_send);
    Ok(row)
}

fn counter(counters: &Value, key: &str) -> u64 {
    counters.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Prints step (b)'s outcome on stderr, with the reference step's own RSS swing for scale.
pub(super) fn print(row: &Step, reference: &Step) {
    let get = |key: &str| row.extra.get(key).cloned().unwrap_or(Value::Null);
    let kib = |v: Value| {
        v.as_u64()
            .map_or("?".into(), |b| format!("{} KiB", b / 1024))
    };
    let reference_swing = match (
        reference
            .extra
            .get("server_rss_max_bytes")
            .and_then(Value::as_u64),
        reference
            .extra
            .get("server_rss_before_bytes")
            .and_then(Value::as_u64),
    ) {
        (Some(max), Some(before)) => format!("{} KiB", max.saturating_sub(before) / 1024),
        _ => "?".into(),
    };
    eprintln!(
        "(b) stalled client: server RSS +{} at peak (reference step: +{}; bounds: high water {}, queue {}); kernel: server send queue {}, server receive queue {}, client receive queue {} (SO_RCVBUF {}), client send queue {}; dropped: {} after {} s (send queue last grew at {} s, stall timeout {} s), stalled closes {}, its writes: {} frames, then {}",
        kib(get("server_rss_growth_bytes")),
        reference_swing,
        kib(get("high_water_bytes")),
        kib(get("outbound_bytes")),
        kib(get("server_send_queue_max_bytes")),
        kib(get("server_recv_queue_max_bytes")),
        kib(get("client_recv_queue_max_bytes")),
        get("stalled_rcvbuf_bytes"),
        kib(get("client_send_queue_max_bytes")),
        get("stalled_dropped"),
        get("stalled_dropped_after_s"),
        get("server_send_queue_last_grew_s"),
        get("stall_timeout_s"),
        get("stalled_closes"),
        get("stalled_frames_written"),
        get("stalled_write_error"),
    );
}
