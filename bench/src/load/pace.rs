//! Open-loop pacing: message k is sent at `t0 + k / rate`, whether or not replies came back,
//! so a slow server shows up as latency and loss, never as a lower send rate.

use std::time::Duration;

use std::time::Instant;

/// A send more than this late counts as late.
pub(crate) const LATE: Duration = Duration::from_millis(10);
/// More than this fraction of late sends marks the step as generator-limited.
pub(crate) const LATE_FRACTION: f64 = 0.01;

/// Sends due within one tick of each other go out together (the sender thread wakes at
/// most once per tick); a send is never early and at most about one tick late.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// How the schedule was kept.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PaceReport {
    /// Messages sent.
    pub(crate) sent: u64,
    /// Wall time from t0 to the last send.
    pub(crate) elapsed: Duration,
    /// Sends more than [`LATE`] behind their scheduled time.
    pub(crate) late: u64,
    /// The largest lag behind schedule.
    pub(crate) max_lag: Duration,
}

impl PaceReport {
    /// The generator could not keep the schedule: more than [`LATE_FRACTION`] of the sends
    /// were more than [`LATE`] late.
    pub(crate) fn behind(&self) -> bool {
        self.sent > 0 && self.late as f64 > self.sent as f64 * LATE_FRACTION
    }
}

/// Calls `send(k)` for k in `0..rate*duration` at `t0 + k / rate`.
///
/// The schedule runs on an OS thread of its own (`block_in_place`: the calling worker turns
/// into a blocking thread and the runtime starts another worker), sleeping with the kernel's
/// high-resolution timers, so the generator's receive work never delays a send. `send` must
/// not block (queue the frame). Needs the multi-thread runtime.
pub(crate) fn pace(rate: f64, duration: Duration, send: impl FnMut(u64)) -> PaceReport {
    tokio::task::block_in_place(|| pace_blocking(rate, duration, send))
}

fn pace_blocking(rate: f64, duration: Duration, mut send: impl FnMut(u64)) -> PaceReport {
    let mut report = PaceReport::default();
    if rate <= 0.0 {
        return report;
    }
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let t0 = Instant::now();
    let mut woke = t0;
    for k in 0..total {
        let due = t0 + Duration::from_secs_f64(k as f64 / rate);
        let mut now = Instant::now();
        if due > now {
            // Never early; at most one wake per TICK: each wake of the sender thread wakes
            // runtime workers, and waking them per message costs the generator more CPU
            // than the messages themselves at high rates.
            let until = due.max(woke + TICK);
            std::thread::sleep(until - now);
            now = Instant::now();
            woke = now;
        }
        let lag = now.saturating_duration_since(due);
        if lag > LATE {
            report.late += 1;
        }
        report.max_lag = report.max_lag.max(lag);
        send(k);
        report.sent += 1;
    }
    report.elapsed = t0.elapsed();
    report
}
