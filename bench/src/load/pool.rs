//! A pool of connected clients: connect N of them in parallel (bounded), send frames through
//! any of them, and install/collect the per-step accounting of every client.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::client::{self, Client, ClientOptions, Heartbeat, PoolCounters};
use super::latency::Percentiles;
use super::record::{StepCtx, Tally};

/// How a pool connects.
#[derive(Debug, Clone)]
pub(crate) struct PoolConfig {
    /// Connections per source address (127.0.0.2, 127.0.0.3, ...); ~28k ports exist per
    /// address.
    pub(crate) per_addr: usize,
    /// Handshakes in flight at once.
    pub(crate) concurrency: usize,
    /// Application heartbeat period (empty text frame), `None` = off. Phases are spread
    /// evenly over one period.
    pub(crate) heartbeat: Option<Duration>,
    /// Give up on one connection attempt after this long.
    pub(crate) connect_timeout: Duration,
    /// Most bytes per second each client reads (`None`: as fast as frames come).
    pub(crate) read_rate: Option<u64>,
    /// Client i connects with `?id=<id_base + i>`.
    pub(crate) id_base: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            per_addr: 20_000,
            concurrency: 100,
            heartbeat: Some(Duration::from_secs(10)),
            connect_timeout: Duration::from_secs(15),
            read_rate: None,
            id_base: 0,
        }
    }
}

/// How connecting a pool went.
#[derive(Debug, Clone)]
pub(crate) struct ConnectReport {
    /// Connections that completed the WebSocket handshake.
    pub(crate) connected: usize,
    /// The first error seen, if any failed.
    pub(crate) first_error: Option<String>,
    /// Wall time from the first connect to the last handshake.
    pub(crate) elapsed: Duration,
    /// TCP connect + handshake time per connection.
    pub(crate) handshake: Percentiles,
}

/// Connected clients, indexed `0..n` (client i connects with `?id=<id_base + i>`).
#[derive(Debug)]
pub(crate) struct Pool {
    clients: Vec<Option<Client>>,
    counters: Arc<PoolCounters>,
    /// Offset of the first source address of this pool (see [`source_addr`]).
    first_source: u32,
    /// Clients per source address.
    per_addr: usize,
}

/// What a [`Pool`] is made of, for a pool that manages its clients itself
/// ([`super::churn::ChurnPool`]).
#[derive(Debug)]
pub(crate) struct PoolParts {
    /// The clients, by index.
    pub(crate) clients: Vec<Option<Client>>,
    /// Their shared counters.
    pub(crate) counters: Arc<PoolCounters>,
    /// The source address of client `index`.
    pub(crate) sources: Vec<Ipv4Addr>,
}

/// Next source address to hand out (see [`source_addr`]; offset 1 is 127.0.0.2). Every pool takes fresh ones, so
/// that ports still in TIME_WAIT from an earlier pool never get in the way.
static NEXT_SOURCE: AtomicU32 = AtomicU32::new(0);

/// Reserves `n` fresh source addresses; returns the offset of the first (see
/// [`source_addr`]).
fn reserve_sources(n: u32) -> u32 {
    NEXT_SOURCE.fetch_add(n, Ordering::Relaxed) + 1
}

/// Makes this process's pools start at source offset `first` (at least 1): generator
/// processes of one run take disjoint ranges, so that their source ports never collide.
pub(crate) fn start_sources_at(first: u32) {
    NEXT_SOURCE.store(first.max(1) - 1, Ordering::Relaxed);
}

/// The source address at `offset` (offset 1 is 127.0.0.2).
fn source_addr(offset: u32) -> Ipv4Addr {
    // 127.0.0.2 upwards, skipping last octets 0 and 255.
    let per_block = 254u32;
    let block = offset / per_block;
    let last = 1 + offset % per_block; // 1..=254
    let host = (127u32 << 24) | ((block & 0xffff) << 8) | last;
    Ipv4Addr::from(host)
}

impl Pool {
    /// Connects `n` clients, client i to `servers[i % servers.len()]`.
    pub(crate) async fn connect(
        servers: &[SocketAddr],
        n: usize,
        config: &PoolConfig,
    ) -> (Pool, ConnectReport) {
        let counters = Arc::new(PoolCounters::default());
        let per_addr = config.per_addr.max(1);
        let addrs = n.div_ceil(per_addr) as u32 + 1;
        let first = reserve_sources(addrs);
        let gate = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let start = Instant::now();
        let mut tasks = JoinSet::new();
        for index in 0..n {
            let server = servers[index % servers.len()];
            let source = source_addr(first + (index / per_addr) as u32);
            let options = ClientOptions {
                heartbeat: config.heartbeat.map(|every| Heartbeat {
                    first: start + every.mul_f64((index + 1) as f64 / n as f64),
                    every,
                }),
                read_rate: config.read_rate,
                id_base: config.id_base,
            };
            let gate = gate.clone();
            let counters = counters.clone();
            let timeout = config.connect_timeout;
            tasks.spawn(async move {
                let _permit = gate.acquire_owned().await;
                let began = Instant::now();
                let connect = client::connect(index, source, server, counters, options);
                let result = match tokio::time::timeout(timeout, connect).await {
                    Ok(result) => result,
                    Err(_) => Err(format!("no handshake within {timeout:?}")),
                };
                (index, result, began.elapsed())
            });
        }
        let mut clients: Vec<Option<Client>> = (0..n).map(|_| None).collect();
        let mut handshake =
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("constant, valid bounds");
        let mut first_error = None;
        let mut connected = 0;
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok((index, Ok(client), took)) => {
                    handshake.saturating_record((took.as_micros() as u64).max(1));
                    clients[index] = Some(client);
                    connected += 1;
                }
                Ok((_, Err(error), _)) => {
                    first_error.get_or_insert(error);
                }
                Err(error) => {
                    first_error.get_or_insert(format!("connect task: {error}"));
                }
            }
        }
        let report = ConnectReport {
            connected,
            first_error,
            elapsed: start.elapsed(),
            handshake: Percentiles::of(&handshake),
        };
        let pool = Pool {
            clients,
            counters,
            first_source: first,
            per_addr,
        };
        (pool, report)
    }

    /// A pool without clients (nothing to send through or shut down).
    pub(crate) fn empty() -> Pool {
        Pool {
            clients: Vec::new(),
            counters: Arc::default(),
            first_source: 1,
            per_addr: 1,
        }
    }

    /// Takes the pool apart (its clients stay connected).
    pub(crate) fn into_parts(self) -> PoolParts {
        let sources = (0..self.clients.len())
            .map(|i| source_addr(self.first_source + (i / self.per_addr) as u32))
            .collect();
        PoolParts {
            clients: self.clients,
            counters: self.counters,
            sources,
        }
    }

    /// Number of client slots (connected or not).
    pub(crate) fn len(&self) -> usize {
        self.clients.len()
    }

    /// Queues a text frame on client `index`; false if it is not connected (any more).
    pub(crate) fn send(&self, index: usize, text: impl Into<Vec<u8>>) -> bool {
        match self.clients.get(index) {
            Some(Some(client)) => client.send(text.into()),
            _ => false,
        }
    }

    /// Makes every client record receipts for `ctx` (and forget the previous step).
    pub(crate) fn begin_step(&self, ctx: &Arc<StepCtx>) {
        for client in self.clients.iter().flatten() {
            client.shared.rec.lock().begin(ctx);
        }
    }

    /// Ends the step on every client and adds up the totals; `expected(i)` is how many
    /// messages client i had to receive (missing clients lose all of theirs).
    pub(crate) fn finish_step(&self, expected: impl Fn(usize) -> u64) -> Tally {
        let mut tally = Tally::default();
        for (index, slot) in self.clients.iter().enumerate() {
            match slot {
                Some(client) => tally += client.shared.rec.lock().finish(expected(index)),
                None => tally.lost += expected(index),
            }
        }
        tally
    }

    /// Waits until the next delivery that comes as a reply on client `index`, at most
    /// `timeout`; false on timeout or if the client is not connected.
    pub(crate) async fn wait_reply(&self, index: usize, timeout: Duration) -> bool {
        match self.clients.get(index) {
            Some(Some(client)) => tokio::time::timeout(timeout, client.shared.replied.notified())
                .await
                .is_ok(),
            _ => false,
        }
    }

    /// Non-delivery replies received so far whose callbackId starts with `kind` (`b'c'` for
    /// commands, `b'j'` for joins, ...).
    pub(crate) fn replies(&self, kind: u8) -> u64 {
        self.counters.replies.get(kind)
    }

    /// Of those, replies saying the request failed.
    pub(crate) fn failed_replies(&self, kind: u8) -> u64 {
        self.counters.failed_replies.get(kind)
    }

    /// Waits until [`Pool::replies`] of `kind` reaches `target`, at most `timeout`; returns
    /// whether it did.
    pub(crate) async fn wait_replies(&self, kind: u8, target: u64, timeout: Duration) -> bool {
        let wait = async {
            while self.replies(kind) < target {
                self.counters.reply_notify.notified().await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// Heartbeat replies received so far.
    pub(crate) fn heartbeats(&self) -> u64 {
        self.counters.heartbeats.load(Ordering::Relaxed)
    }

    /// Text frames without a token received so far.
    pub(crate) fn other_frames(&self) -> u64 {
        self.counters.other_frames.load(Ordering::Relaxed)
    }

    /// Connections that ended after their handshake (close frame, EOF or error).
    pub(crate) fn closed(&self) -> u64 {
        self.counters.closed.load(Ordering::Relaxed)
    }

    /// Of those, closed by a close frame from the server.
    pub(crate) fn closed_by_server(&self) -> u64 {
        self.counters.closed_by_server.load(Ordering::Relaxed)
    }

    /// Pongs sent in answer to the server's protocol pings so far.
    pub(crate) fn pongs(&self) -> u64 {
        self.counters.pongs.load(Ordering::Relaxed)
    }

    /// Whether client `index` is connected and open.
    pub(crate) fn is_open(&self, index: usize) -> bool {
        matches!(self.clients.get(index), Some(Some(c)) if !c.shared.closed.load(Ordering::Acquire))
    }

    /// How connections ended so far, by kind (see [`PoolCounters::ends`]).
    pub(crate) fn ends(&self) -> std::collections::BTreeMap<String, u64> {
        self.counters.ends.lock().clone()
    }

    /// Connected clients that are still open.
    pub(crate) fn open(&self) -> usize {
        self.clients
            .iter()
            .flatten()
            .filter(|c| !c.shared.closed.load(Ordering::Acquire))
            .count()
    }

    /// Drops every connection at once (tasks aborted, sockets closed). Stop the server
    /// first, so that the server side, not ours, holds the TIME_WAIT states.
    pub(crate) fn shutdown(&self) {
        for client in self.clients.iter().flatten() {
            client.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_stay_in_loopback_and_skip_dot_zero_and_255() {
        assert_eq!(source_addr(1), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_addr(253), Ipv4Addr::new(127, 0, 0, 254));
        assert_eq!(source_addr(254), Ipv4Addr::new(127, 0, 1, 1));
    }
}
