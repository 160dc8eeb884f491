//! Churn: at a fixed rate, a pseudo-random slot (never slot 0, the broadcaster) leaves, cleanly
//! or by dropping its TCP connection, and connects again. Each churn runs in a task of its
//! own, so a slow reconnect never delays the next one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::MissedTickBehavior;

use crate::load::churn::{ChurnPool, Leave};
use crate::load::pick::pick;

/// Salts of the two pseudo-random choices.
const SLOT_SALT: u64 = 0x50a4;
const LEAVE_SALT: u64 = 0x1ea7e;
/// Longest the churns still under way may take to finish once stopped.
const FINISH: Duration = Duration::from_secs(30);

/// What the churner did.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Churned {
    /// Churns started (each a leave followed by a reconnect).
    pub(super) started: u64,
    /// Of those, clean leaves.
    pub(super) clean: u64,
    /// Of those, TCP drops.
    pub(super) dropped: u64,
    /// Picks skipped because the slot was still being churned.
    pub(super) busy: u64,
    /// Churns still unfinished when the churner gave up waiting.
    pub(super) unfinished: u64,
}

/// A running churner; [`Churner::finish`] stops it.
#[derive(Debug)]
pub(super) struct Churner {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Churned>,
}

impl Churner {
    /// Churns `rate` slots a second of `pool`; a share `clean` of them leave cleanly.
    pub(super) fn start(pool: Arc<ChurnPool>, rate: f64, clean: f64) -> Churner {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut churned = Churned::default();
            let mut running = JoinSet::new();
            let slots = pool.len().saturating_sub(1);
            if rate > 0.0 && slots > 0 {
                let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
                ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
                ticks.tick().await;
                for k in 0u64.. {
                    tokio::select! {
                        _ = &mut stopped => break,
                        _ = ticks.tick() => {}
                    }
                    let index = 1 + pick(k, SLOT_SALT, slots);
                    let clean = (pick(k, LEAVE_SALT, 1_000_000) as f64) < clean * 1e6;
                    let leave = if clean { Leave::Clean } else { Leave::Drop };
                    let pool = pool.clone();
                    running.spawn(async move { (pool.churn(index, leave).await, leave) });
                    while let Some(done) = running.try_join_next() {
                        count(&mut churned, done.ok());
                    }
                }
            }
            let finish = async {
                while let Some(done) = running.join_next().await {
                    count(&mut churned, done.ok());
                }
            };
            let timed_out = tokio::time::timeout(FINISH, finish).await.is_err();
            if timed_out {
                churned.unfinished = running.len() as u64;
            }
            churned
        });
        Churner { stop, task }
    }

    /// Stops churning, waits for the churns under way (at most 30 s) and says what was done.
    pub(super) async fn finish(self) -> Churned {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

fn count(churned: &mut Churned, done: Option<(bool, Leave)>) {
    match done {
        Some((true, leave)) => {
            churned.started += 1;
            match leave {
                Leave::Clean => churned.clean += 1,
                Leave::Drop => churned.dropped += 1,
            }
        }
        Some((false, _)) => churned.busy += 1,
        None => churned.unfinished += 1,
    }
}
