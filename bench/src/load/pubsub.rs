//! The raw broker pub/sub probe (Redis or NATS): one connection subscribes to a channel
//! (subject), another publishes timestamped messages to it on an open-loop schedule;
//! publish-to-receive latency and exact loss accounting, with the same tokens, pacer and
//! histograms as the WebSocket steps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::AsyncCommands;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::task::JoinHandle;

use crate::servers::Broker;

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

/// Publishes `rate` messages per second for `duration` on a fresh channel of the `broker`
/// at `url` and receives them on a second connection; waits at most `drain` after the last.
pub(crate) async fn probe(
    broker: Broker,
    url: &str,
    rate: f64,
    duration: Duration,
    drain: Duration,
) -> Result<ProbeReport, String> {
    let ctx = StepCtx::new(Audience::All);
    let errors = Arc::new(AtomicU64::new(0));
    let (queue, queued) = unbounded_channel::<String>();
    let (messages, sender) = match broker {
        Broker::Redis => {
            let channel = format!("crosswire-bench:probe:{}", ctx.id);
            redis_ends(url, channel, queued, errors.clone()).await?
        }
        Broker::Nats => {
            let subject = format!("crosswire-bench.probe.{}", ctx.id);
            nats_ends(url, subject, queued, errors.clone()).await?
        }
    };

    let rec = Arc::new(Mutex::new(Recorder::default()));
    rec.lock().begin(&ctx);
    let foreign = Arc::new(AtomicU64::new(0));
    let receiver = {
        let (rec, foreign) = (rec.clone(), foreign.clone());
        let mut messages = messages;
        tokio::spawn(async move {
            while let Some(payload) = messages.next().await {
                match classify(&payload) {
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

/// The received payloads of a probe, and the task that publishes what is queued.
type Ends = (BoxStream<'static, Vec<u8>>, JoinHandle<()>);

/// Redis: a SUBSCRIBE connection on `channel`, and a multiplexed connection that PUBLISHes
/// every queued payload (one task each, so that the schedule stays open-loop; the
/// connection pipelines them).
async fn redis_ends(
    url: &str,
    channel: String,
    mut queued: UnboundedReceiver<String>,
    errors: Arc<AtomicU64>,
) -> Result<Ends, String> {
    let client = redis::Client::open(url).map_err(|e| format!("redis url {url}: {e}"))?;
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
    let messages = subscriber
        .into_on_message()
        .map(|message| message.get_payload_bytes().to_vec())
        .boxed();
    let sender = tokio::spawn(async move {
        while let Some(payload) = queued.recv().await {
            let (mut conn, errors, channel) = (publisher.clone(), errors.clone(), channel.clone());
            tokio::spawn(async move {
                let published: redis::RedisResult<u64> = conn.publish(channel, payload).await;
                if published.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    Ok((messages, sender))
}

/// NATS: one client subscribed to `subject` (flushed, so the server has the subscription
/// before the first publish), and a second client that publishes every queued payload
/// (async-nats buffers publishes and writes them out in order, unconfirmed, as crosswire's
/// NATS broker does).
async fn nats_ends(
    url: &str,
    subject: String,
    mut queued: UnboundedReceiver<String>,
    errors: Arc<AtomicU64>,
) -> Result<Ends, String> {
    let connect = async {
        let subscriber_client = async_nats::connect(url).await.map_err(|e| e.to_string())?;
        let subscriber = subscriber_client
            .subscribe(subject.clone())
            .await
            .map_err(|e| e.to_string())?;
        subscriber_client.flush().await.map_err(|e| e.to_string())?;
        let publisher = async_nats::connect(url).await.map_err(|e| e.to_string())?;
        Ok::<_, String>((subscriber_client, subscriber, publisher))
    };
    let (subscriber_client, subscriber, publisher) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| format!("nats: no connection within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("nats {url}: {e}"))?;
    let messages = subscriber
        .map(move |message| {
            // The subscriber's client lives as long as its stream.
            let _keep = &subscriber_client;
            message.payload.to_vec()
        })
        .boxed();
    let sender = tokio::spawn(async move {
        while let Some(payload) = queued.recv().await {
            if publisher
                .publish(subject.clone(), payload.into())
                .await
                .is_err()
            {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Dropping the last handle of a client may discard what it has not written out yet:
        // flush the last publishes first.
        if publisher.flush().await.is_err() {
            errors.fetch_add(1, Ordering::Relaxed);
        }
    });
    Ok((messages, sender))
}
