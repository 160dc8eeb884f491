//! The load generator: real WebSocket clients over loopback, open-loop pacing, latency
//! histograms and exact per-message accounting.
//!
//! - [`Pool`] connects N clients (spread over source addresses 127.0.0.2, 127.0.0.3, ...),
//!   runs one reader and one writer task per client and answers the server's pings.
//! - [`StepCtx`] is one measured step: who must receive which sequence number
//!   ([`Audience`]), the latency histogram, and the count of deliveries so far.
//! - [`pace`] sends at fixed times `t0 + k / rate`, never waiting for replies.
//! - [`token`] formats and finds the `d<step>:<seq>:<nanos>` tokens that every accounted
//!   message carries, by scanning the frame (no JSON parsing on the receive path).
//! - [`pick`] chooses reproducible pseudo-random clients for message `seq`.
//! - [`stalled`] is a hand-made WebSocket client that never reads (a slow consumer), and may
//!   keep sending.
//! - [`churn`] is a pool whose clients leave (cleanly or not) and come back, keeping every
//!   connection's life for the accounting.
//! - [`pubsub`] measures raw Redis pub/sub latency, the floor under cross-node delivery.

pub(crate) mod churn;
mod client;
pub(crate) mod clock;
pub(crate) mod latency;
pub(crate) mod limits;
pub(crate) mod pace;
pub(crate) mod pick;
mod pool;
pub(crate) mod pubsub;
pub(crate) mod record;
pub(crate) mod stalled;
pub(crate) mod token;

pub(crate) use pool::{start_sources_at, Pool, PoolConfig};
pub(crate) use record::{Audience, StepCtx};
