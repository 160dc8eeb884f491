//! A pool whose clients come and go: one slot per client index, each holding at most one
//! connection. A slot can be closed (cleanly, with the closing handshake, or by dropping the
//! TCP connection without a close frame) and connected again with the same socket id (a user
//! reconnecting), while the life of every connection is kept for the accounting: when it
//! opened and ended, what it received, its heartbeats sent and answered.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::client::{self, Client, ClientOptions, Heartbeat, PoolCounters};
use super::pool::PoolParts;
use super::record::Recorder;
use super::{clock, pick, Pool, PoolConfig, StepCtx};

/// Close code of a clean leave (normal closure).
const NORMAL: u16 = 1000;
/// Longest a clean leave waits for the server's answer to its close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// Connection attempts of one reconnect before the slot stays empty.
const ATTEMPTS: u32 = 5;
/// Pause between two attempts.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How a client leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leave {
    /// Close frame 1000, wait for the server's answer, then close the socket.
    Clean,
    /// Close the socket at once, without a close frame (a vanished client).
    Drop,
}

/// How a connection's life ended, for the accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Still open when the lives were collected.
    Open,
    /// Left on purpose (the generator closed it).
    Left(Leave),
    /// Ended by itself before the generator closed it: closed by the server or broken.
    Lost,
}

/// One connection's life.
#[derive(Debug)]
pub(crate) struct Life {
    /// Slot (client index, socket id).
    pub(crate) index: usize,
    /// Generator-clock nanoseconds when its handshake completed.
    pub(crate) connected_nanos: u64,
    /// When it ended, or when the generator started closing it; `None` while open.
    pub(crate) ended_nanos: Option<u64>,
    /// How it ended.
    pub(crate) ending: Ending,
    /// What it received of the pool's step.
    pub(crate) rec: Recorder,
    /// Heartbeats it sent.
    pub(crate) beats_sent: u64,
    /// Heartbeat replies it received.
    pub(crate) beats_answered: u64,
}

/// Connection attempts that failed, and how.
#[derive(Debug, Clone, Default)]
pub(crate) struct Failures {
    /// Failed attempts by error text.
    pub(crate) by_error: BTreeMap<String, u64>,
    /// Slots left empty after every attempt failed.
    pub(crate) given_up: u64,
}

#[derive(Debug, Default)]
struct Slot {
    client: Option<Client>,
    /// A leave or reconnect of this slot is under way.
    busy: bool,
}

/// Clients that can leave and come back; see the module documentation.
#[derive(Debug)]
pub(crate) struct ChurnPool {
    server: SocketAddr,
    config: PoolConfig,
    sources: Vec<Ipv4Addr>,
    counters: Arc<PoolCounters>,
    slots: Vec<Mutex<Slot>>,
    ctx: Arc<StepCtx>,
    lives: Mutex<Vec<Life>>,
    failures: Mutex<Failures>,
    reconnects: AtomicU64,
    in_transit: AtomicU64,
}

impl ChurnPool {
    /// Takes over the clients of `pool` (connected to `server` with `config`); every client,
    /// present and future, records its receipts for `ctx`.
    pub(crate) fn new(
        pool: Pool,
        server: SocketAddr,
        config: PoolConfig,
        ctx: Arc<StepCtx>,
    ) -> ChurnPool {
        let PoolParts {
            clients,
            counters,
            sources,
        } = pool.into_parts();
        let slots = clients
            .into_iter()
            .map(|client| {
                if let Some(client) = &client {
                    client.shared.rec.lock().begin(&ctx);
                }
                Mutex::new(Slot {
                    client,
                    busy: false,
                })
            })
            .collect();
        ChurnPool {
            server,
            config,
            sources,
            counters,
            slots,
            ctx,
            lives: Mutex::new(Vec::new()),
            failures: Mutex::new(Failures::default()),
            reconnects: AtomicU64::new(0),
            in_transit: AtomicU64::new(0),
        }
    }

    /// Number of slots.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The counters shared by every connection of the pool.
    pub(crate) fn counters(&self) -> &PoolCounters {
        &self.counters
    }

    /// Queues a text frame on slot `index`'s connection; false if it has none (any more).
    pub(crate) fn send(&self, index: usize, text: impl Into<Vec<u8>>) -> bool {
        match self.slots.get(index).map(|s| s.lock()) {
            Some(slot) => slot.client.as_ref().is_some_and(|c| c.send(text.into())),
            None => false,
        }
    }

    /// Connections that are open now.
    pub(crate) fn open(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| {
                s.lock()
                    .client
                    .as_ref()
                    .is_some_and(|c| !c.shared.closed.load(Ordering::Acquire))
            })
            .count()
    }

    /// Folds `f(acc, connected_nanos, receipts)` over the connections open now.
    pub(crate) fn fold_open<T>(&self, init: T, mut f: impl FnMut(T, u64, &Recorder) -> T) -> T {
        let mut acc = init;
        for slot in &self.slots {
            let slot = slot.lock();
            let Some(client) = &slot.client else { continue };
            if client.shared.closed.load(Ordering::Acquire) {
                continue;
            }
            acc = f(
                acc,
                client.shared.connected_nanos,
                &client.shared.rec.lock(),
            );
        }
        acc
    }

    /// Slots being closed or reconnected now.
    pub(crate) fn in_transit(&self) -> u64 {
        self.in_transit.load(Ordering::Acquire)
    }

    /// Successful reconnects so far.
    pub(crate) fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Failed connection attempts so far.
    pub(crate) fn failures(&self) -> Failures {
        self.failures.lock().clone()
    }

    /// Closes slot `index`'s connection as `leave` says (a connection that already ended is
    /// just collected), then connects it again with the same socket id. Returns false, doing
    /// nothing, when the slot is already being churned.
    pub(crate) async fn churn(&self, index: usize, leave: Leave) -> bool {
        let Some(slot) = self.slots.get(index) else {
            return false;
        };
        let old = {
            let mut slot = slot.lock();
            if slot.busy {
                return false;
            }
            slot.busy = true;
            slot.client.take()
        };
        self.in_transit.fetch_add(1, Ordering::AcqRel);
        if let Some(old) = old {
            self.leave(old, leave).await;
        }
        let new = self.reconnect(index).await;
        {
            let mut slot = slot.lock();
            slot.client = new;
            slot.busy = false;
        }
        self.in_transit.fetch_sub(1, Ordering::AcqRel);
        true
    }

    /// Closes `client` as `leave` says and keeps its life.
    async fn leave(&self, mut client: Client, leave: Leave) {
        let began = clock::now_nanos();
        let ended = client.shared.ended_nanos.load(Ordering::Acquire);
        let (ending, ended_nanos) = if ended != 0 {
            (Ending::Lost, ended)
        } else {
            (Ending::Left(leave), began)
        };
        if ending != Ending::Lost && leave == Leave::Clean && client.close(NORMAL) {
            client.wait_ended(CLOSE_WAIT).await;
        }
        client.abort();
        let life = life_of(&client, Some(ended_nanos), ending);
        self.lives.lock().push(life);
    }

    /// Connects slot `index` again (same source address and socket id), retrying a few times.
    async fn reconnect(&self, index: usize) -> Option<Client> {
        for attempt in 1..=ATTEMPTS {
            let options = ClientOptions {
                heartbeat: self.config.heartbeat.map(|every| {
                    // A reconnected client starts its heartbeats at a random phase.
                    let phase = pick::pick(index as u64, self.reconnects() + 1, 1000);
                    Heartbeat {
                        first: Instant::now() + every.mul_f64((phase + 1) as f64 / 1000.0),
                        every,
                    }
                }),
                read_rate: self.config.read_rate,
                id_base: self.config.id_base,
            };
            let connect = client::connect(
                index,
                self.sources[index],
                self.server,
                self.counters.clone(),
                options,
            );
            let result = match tokio::time::timeout(self.config.connect_timeout, connect).await {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "no handshake within {:?}",
                    self.config.connect_timeout
                )),
            };
            match result {
                Ok(client) => {
                    client.shared.rec.lock().begin(&self.ctx);
                    self.reconnects.fetch_add(1, Ordering::Relaxed);
                    return Some(client);
                }
                Err(error) => {
                    let mut failures = self.failures.lock();
                    *failures.by_error.entry(error).or_default() += 1;
                    if attempt == ATTEMPTS {
                        failures.given_up += 1;
                    }
                }
            }
            tokio::time::sleep(RETRY_AFTER).await;
        }
        None
    }

    /// Every life so far: the ended ones, then one for each connection still there (open, or
    /// ended by itself). Takes their receipts: call it once, when the measurement is over.
    pub(crate) fn collect(&self) -> Vec<Life> {
        let mut lives = std::mem::take(&mut *self.lives.lock());
        for slot in &self.slots {
            let slot = slot.lock();
            let Some(client) = &slot.client else { continue };
            let ended = client.shared.ended_nanos.load(Ordering::Acquire);
            lives.push(if ended == 0 {
                life_of(client, None, Ending::Open)
            } else {
                life_of(client, Some(ended), Ending::Lost)
            });
        }
        lives
    }

    /// Makes every connection leave at once: client i cleanly when `clean(i)`, else by
    /// dropping its socket; waits for the clean ones' closing handshakes (at most a few
    /// seconds) and returns how many of those completed.
    pub(crate) async fn leave_all(&self, clean: impl Fn(usize) -> bool) -> u64 {
        let mut closing = JoinSet::new();
        for (index, slot) in self.slots.iter().enumerate() {
            let Some(mut client) = slot.lock().client.take() else {
                continue;
            };
            if clean(index) && client.close(NORMAL) {
                closing.spawn(async move {
                    let done = client.wait_ended(CLOSE_WAIT).await;
                    client.abort();
                    done
                });
            } else {
                client.abort();
            }
        }
        let mut completed = 0;
        while let Some(done) = closing.join_next().await {
            completed += u64::from(done.unwrap_or(false));
        }
        completed
    }
}

impl Drop for ChurnPool {
    fn drop(&mut self) {
        for slot in &self.slots {
            if let Some(client) = &slot.lock().client {
                client.abort();
            }
        }
    }
}

/// The life of `client`, taking its receipts.
fn life_of(client: &Client, ended_nanos: Option<u64>, ending: Ending) -> Life {
    let shared = &client.shared;
    Life {
        index: shared.index,
        connected_nanos: shared.connected_nanos,
        ended_nanos,
        ending,
        rec: std::mem::take(&mut *shared.rec.lock()),
        beats_sent: shared.beats_sent.load(Ordering::Relaxed),
        beats_answered: shared.beats_answered.load(Ordering::Relaxed),
    }
}
