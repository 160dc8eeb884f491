//! The raw Redis pub/sub probe: one connection SUBSCRIBEs a channel, another PUBLISHes
//! timestamped messages to it on an open-loop schedule; publish-to-receive latency and exact
//! loss accounting, with the same tokens, pacer and histograms as the WebSocket steps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::AsyncCommands;
use tokio::sync::mpsc::unbounded_channel;

use super::latency::Percentiles;
use super::pace::{pace, PaceReport};
use super::record::{Recorder, Tally};
use super::token::{classify, Received};
use super::{clock, token, Audience, StepCtx};

/// Longest connecting and subscribing may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What one probe measured.
#[derive(Debug, Clone)]
pub(crate) struct ProbeReport {
    /// How the publish schedule was kept.
    pub(crate) pace: PaceReport,
    /// Receipts on the subscriber: deliveries, lost, duplicated, ...
    pub(crate) tally: Tally,
    /// Publish-to-receive latency.
    pub(crate) latency: Percentiles,
    /// Every message arrived before the drain deadline.
    pub(crate) all_in: bool,
    /// PUBLISH commands that failed.
    pub(crate) publish_errors: u64,
    /// Messages on the channel that carried no token of this probe.
    pub(crate) foreign: u64,
}

/// Publishes `rate` messages per second for `duration` on a fresh channel of the Redis at
/// `url` and receives them on a second connection; waits at most `drain` after the last.
pub(crate) async fn probe(
    url: &str,
    rate: f64,
    duration: Duration,
    drain: Duration,
) -> Result<ProbeReport, String> {
    let client = redis::Client::open(url).map_err(|e| format!("redis url {url}: {e}"))?;
    let ctx = StepCtx::new(Audience::All);
    let channel = format!("crosswire-bench:probe:{}", ctx.id);
    let connect = async {
        let mut subscriber = client.get_async_pubsub().await?;
        subscriber.subscribe(&channel).await?;
        let publisher = client.get_multiplexed_async_connection().await?;
        Ok::<_, redis::RedisError>((subscriber, publisher))
    };
    let (subscriber, publisher) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| format!("redis: no connection within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("redis: {e}"))?;

    let rec = Arc::new(Mutex::new(Recorder::default()));
    rec.lock().begin(&ctx);
    let foreign = Arc::new(AtomicU64::new(0));
    let receiver = {
        let (rec, foreign) = (rec.clone(), foreign.clone());
        let mut messages = subscriber.into_on_message();
        tokio::spawn(async move {
            while let Some(message) = messages.next().await {
                match classify(message.get_payload_bytes()) {
                    Received::Delivery {
                        step,
                        seq,
                        sent_nanos,
                        ..
                    } => rec.lock().on_delivery(0, step, seq, sent_nanos),
                    _ => {
                        foreign.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let errors = Arc::new(AtomicU64::new(0));
    let (queue, mut queued) = unbounded_channel::<String>();
    let sender = {
        let (errors, channel) = (errors.clone(), channel.clone());
        tokio::spawn(async move {
            // One task per PUBLISH keeps the schedule open-loop: the multiplexed connection
            // pipelines them.
            while let Some(payload) = queued.recv().await {
                let (mut conn, errors, channel) =
                    (publisher.clone(), errors.clone(), channel.clone());
                tokio::spawn(async move {
                    let published: redis::RedisResult<u64> = conn.publish(channel, payload).await;
                    if published.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        })
    };

    let report = pace(rate, duration, |seq| {
        let token = token::delivery(ctx.id, seq, clock::now_nanos());
        let _ = queue.send(format!(r#"{{"msg":"{token}"}}"#));
    });
    drop(queue);
    let all_in = ctx.wait_for(report.sent, drain).await;
    let tally = rec.lock().finish(report.sent);
    receiver.abort();
    sender.abort();
    Ok(ProbeReport {
        pace: report,
        tally,
        latency: ctx.latencies.percentiles(),
        all_in,
        publish_errors: errors.load(Ordering::Relaxed),
        foreign: foreign.load(Ordering::Relaxed),
    })
}
