//! Flow control of one connection: when to stop reading from a client, and when a client is
//! stalled for good.
//!
//! - **Output water marks.** While what waits to be written to a client (its outbound queue
//!   plus the batch being written) is above the high-water mark, nothing more is read from it,
//!   until it drains below the low-water mark. A client that sends faster than it reads its
//!   replies is slowed down to the pace it reads at; nothing it sent is dropped.
//! - **Message rate.** A token bucket per connection; over the rate a message is throttled
//!   (reading waits for the next token), dropped or answered with a close, as configured.
//! - **Stall.** A connection whose writes make no progress at all for the stall timeout is
//!   dropped: a peer that stopped reading altogether.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::config::{OverRate, RateLimit};
use crate::WsConfig;

/// The settings every connection of one acceptor shares.
#[derive(Debug)]
pub(crate) struct FlowSettings {
    pub(crate) max_message: usize,
    /// Bounds of each outbound queue: frames and payload bytes.
    pub(crate) outbound_frames: usize,
    pub(crate) outbound_bytes: usize,
    pub(crate) high_bytes: usize,
    pub(crate) low_bytes: usize,
    pub(crate) high_frames: usize,
    pub(crate) low_frames: usize,
    pub(crate) stall_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) rate: Option<RateLimit>,
}

impl FlowSettings {
    pub(crate) fn new(config: &WsConfig) -> Self {
        let high_bytes = config.high_water.min(config.outbound_bytes);
        let high_frames = (config.outbound_queue / 2).max(1);
        FlowSettings {
            max_message: config.max_message_size,
            outbound_frames: config.outbound_queue,
            outbound_bytes: config.outbound_bytes,
            high_bytes,
            low_bytes: high_bytes / 2,
            high_frames,
            low_frames: high_frames / 2,
            stall_timeout: config.stall_timeout,
            close_timeout: config.close_timeout,
            rate: config.rate_limit,
        }
    }

    /// Whether `pending` (frames, bytes) is above the high-water mark.
    pub(crate) fn above_high(&self, (frames, bytes): (usize, usize)) -> bool {
        frames > self.high_frames || bytes > self.high_bytes
    }

    /// Whether `pending` (frames, bytes) is at or below the low-water mark.
    pub(crate) fn at_or_below_low(&self, (frames, bytes): (usize, usize)) -> bool {
        frames <= self.low_frames && bytes <= self.low_bytes
    }
}

/// A token bucket: `per_second` tokens a second, at most `burst` saved.
#[derive(Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// What the rate limit says of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateVerdict {
    /// Handle it.
    Pass,
    /// Handle it, then read nothing more until the next token.
    PassThenWait,
    /// Over the rate: drop it.
    Drop,
    /// Over the rate: close the connection.
    Close,
}

impl Bucket {
    pub(crate) fn full(limit: &RateLimit) -> Self {
        Bucket {
            tokens: f64::from(limit.burst),
            updated: Instant::now(),
        }
    }

    fn refill(&mut self, limit: &RateLimit, now: Instant) {
        let earned = now.duration_since(self.updated).as_secs_f64() * f64::from(limit.per_second);
        self.tokens = (self.tokens + earned).min(f64::from(limit.burst));
        self.updated = now;
    }

    /// Takes a token for one message.
    pub(crate) fn take(&mut self, limit: &RateLimit) -> RateVerdict {
        self.refill(limit, Instant::now());
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            if self.tokens < 1.0 && limit.over == OverRate::Throttle {
                return RateVerdict::PassThenWait;
            }
            return RateVerdict::Pass;
        }
        match limit.over {
            // Reading waits for a token before a message is read, so this is rare: a message
            // read together with the one that took the last token.
            OverRate::Throttle => RateVerdict::PassThenWait,
            OverRate::Drop => RateVerdict::Drop,
            OverRate::Close => RateVerdict::Close,
        }
    }

    /// When the next token is earned; `None` if one is there now.
    pub(crate) fn next_token_at(&mut self, limit: &RateLimit) -> Option<Instant> {
        if self.tokens >= 1.0 {
            return None; // no need to read the clock: `take` refills
        }
        let now = Instant::now();
        self.refill(limit, now);
        if self.tokens >= 1.0 {
            return None;
        }
        let wait = (1.0 - self.tokens) / f64::from(limit.per_second.max(1));
        Some(now + Duration::from_secs_f64(wait))
    }
}

/// A timer allocated only while it is needed.
#[derive(Debug, Default)]
pub(crate) struct Timer(Option<Pin<Box<Sleep>>>);

impl Timer {
    /// Whether `deadline` has passed; if not, the task is woken when it does. A deadline that
    /// moved later is followed lazily (the timer is moved only when it fires early), so a
    /// deadline pushed back on every write costs no timer update.
    pub(crate) fn poll_deadline(&mut self, deadline: Instant, cx: &mut Context<'_>) -> bool {
        loop {
            let sleep = self
                .0
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if sleep.deadline() > deadline {
                sleep.as_mut().reset(deadline);
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            if Instant::now() >= deadline {
                self.0 = None;
                return true;
            }
            sleep.as_mut().reset(deadline);
        }
    }

    /// Frees the timer.
    pub(crate) fn clear(&mut self) {
        self.0 = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_bucket_passes_a_burst_then_the_rate() {
        let limit = RateLimit::per_second(10).burst(3);
        let mut bucket = Bucket::full(&limit);
        assert_eq!(bucket.take(&limit), RateVerdict::Pass);
        assert_eq!(bucket.take(&limit), RateVerdict::Pass);
        assert_eq!(bucket.take(&limit), RateVerdict::PassThenWait);
        let next = bucket.next_token_at(&limit).expect("empty");
        assert_eq!(next - Instant::now(), Duration::from_millis(100));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(bucket.next_token_at(&limit), None);
        assert_eq!(bucket.take(&limit), RateVerdict::PassThenWait);

        let drop = RateLimit::per_second(10).burst(1).over(OverRate::Drop);
        let mut bucket = Bucket::full(&drop);
        assert_eq!(bucket.take(&drop), RateVerdict::Pass);
        assert_eq!(bucket.take(&drop), RateVerdict::Drop);
        let close = RateLimit::per_second(10).burst(1).over(OverRate::Close);
        let mut bucket = Bucket::full(&close);
        assert_eq!(bucket.take(&close), RateVerdict::Pass);
        assert_eq!(bucket.take(&close), RateVerdict::Close);
    }
}
