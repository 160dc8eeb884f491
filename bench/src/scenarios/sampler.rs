//! Samples a server at a fixed period beside a step: its peak resident memory, and the moment
//! a watched counter (`slow_consumer_closes` unless told otherwise) first rose (the server has
//! no push for either).

use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::servers::ServerProbe;

/// What the sampler saw.
#[derive(Debug, Clone, Default)]
pub(super) struct Samples {
    /// Readings taken.
    pub(super) count: u64,
    /// The largest RSS read, bytes.
    pub(super) max_rss: u64,
    /// Time from the start to the first reading where the watched counter was above its
    /// value at the start.
    pub(super) first_rise: Option<Duration>,
    /// The watched counter at the start.
    pub(super) watched_before: Option<u64>,
}

/// A running sampler; [`Sampler::finish`] stops it.
#[derive(Debug)]
pub(super) struct Sampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Samples>,
}

impl Sampler {
    /// Starts reading `server` now and every `every` after, watching `slow_consumer_closes`.
    pub(super) fn start(server: ServerProbe, every: Duration) -> Sampler {
        Self::watching(server, every, "slow_consumer_closes")
    }

    /// Like [`Sampler::start`], watching the counter `watched`.
    pub(super) fn watching(server: ServerProbe, every: Duration, watched: &'static str) -> Sampler {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut samples = Samples::default();
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = ticks.tick() => sample(&server, watched, start, &mut samples).await,
                }
            }
            samples
        });
        Sampler { stop, task }
    }

    /// Stops sampling and returns what was seen.
    pub(super) async fn finish(self) -> Samples {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

async fn sample(server: &ServerProbe, watched: &str, start: Instant, samples: &mut Samples) {
    samples.count += 1;
    if let Ok(stats) = server.stats() {
        samples.max_rss = samples.max_rss.max(stats.rss_bytes);
    }
    let value = server
        .counters()
        .await
        .ok()
        .and_then(|c| c.get(watched).and_then(Value::as_u64));
    let Some(value) = value else { return };
    match samples.watched_before {
        None => samples.watched_before = Some(value),
        Some(before) if value > before && samples.first_rise.is_none() => {
            samples.first_rise = Some(start.elapsed());
        }
        Some(_) => {}
    }
}
