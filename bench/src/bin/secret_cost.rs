//! `secret-cost`: what the cluster secret (`NodeBuilder::cluster_secret`) costs per envelope,
//! for a small (100 B) and a large (4 KiB) client push. It prints figures; nothing is asserted.
//!
//! ```text
//! cargo run --release -p crosswire-bench --bin secret-cost [-- --pushes N --rounds R]
//! ```
//!
//! 1. **Pipeline.** Two nodes on one in-process `MemoryHub`, on a single-threaded runtime, so
//!    the thread's CPU time is all the work: node `a` broadcasts N pushes (JSON frame, envelope
//!    encode, zstd above 1 KiB as by default, then signing when the secret is set, publish);
//!    both nodes receive every envelope (`b` delivers it to its sockets — none —, `a` drops its
//!    own echo, as over Redis), each checking the tag when set, then decompressing and
//!    decoding. Rounds without and with the secret alternate; the medians are printed, and
//!    their ratio is the cost of the secret against the same path without it.
//! 2. **HMAC alone.** The operations the secret adds, timed alone over envelopes of the same
//!    sizes: one tag (clone of the keyed state, update, finalize) and one check
//!    (`verify_slice`). One envelope costs one tag plus one check per receiving node.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use clap::Parser;
use crosswire::broker::{Broker, BrokerError, Inbound};
use crosswire::memory::MemoryHub;
use crosswire::Node;
use hmac::{Hmac, Mac};
use nix::time::{clock_gettime, ClockId};
use sha2::Sha256;
use tokio::sync::mpsc;

/// Prints the per-envelope CPU cost of the cluster secret (HMAC-SHA-256) for a 100 B and a
/// 4 KiB push: two nodes on an in-memory hub, rounds without and with the secret alternating
/// (medians), then the HMAC operations alone. Build with --release.
#[derive(Debug, Parser)]
#[command(name = "secret-cost")]
struct Args {
    /// Broadcasts per round.
    #[arg(long, value_name = "N", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    pushes: u32,
    /// Measured rounds per configuration.
    #[arg(long, value_name = "R", default_value_t = 15, value_parser = at_least_one)]
    rounds: usize,
}

/// A count of at least 1.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// The secret of the measured nodes (32 bytes, as recommended).
const SECRET: &[u8; 32] = b"secret-cost benchmark secret 32B";
/// The custom channel that marks the end of a round.
const DONE: &str = "bench:done";
/// The channel of `broadcast` pushes (default prefixes).
const BROADCAST: &str = "ws:broadcast";
/// Wire sizes of the client frames measured.
const FRAME_SIZES: [(usize, &str); 2] = [(100, "100 B"), (4096, "4 KiB")];
/// `{"event":"say","payload":""}` around the payload string.
const FRAME_OVERHEAD: usize = 28;
/// HMAC operations per timing of the HMAC alone.
const HMAC_ITERATIONS: u32 = 200_000;

fn main() {
    let Args { pushes, rounds } = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("secret-cost: tokio runtime: {error}");
            std::process::exit(2);
        }
    };
    if let Err(message) = runtime.block_on(run(pushes, rounds)) {
        eprintln!("secret-cost: {message}");
        std::process::exit(1);
    }
}

async fn run(pushes: u32, rounds: usize) -> Result<(), String> {
    if cfg!(debug_assertions) {
        eprintln!("secret-cost: a debug build; the figures mean little (use --release)");
    }
    println!("pipeline: {pushes} broadcasts per round, {rounds} rounds per configuration, 2 nodes, CPU time of the one runtime thread");
    println!();
    println!("| push | envelope on the wire (off / on) | no secret, µs per envelope | with secret, µs per envelope | added, µs | ratio |");
    println!("|---|---|---|---|---|---|");
    let mut wire = Vec::new();
    for (size, label) in FRAME_SIZES {
        let payload = payload(size - FRAME_OVERHEAD);
        let off = Pair::start(None).await?;
        let on = Pair::start(Some(SECRET)).await?;
        // One warm-up round each, then alternate so that drifts of the machine hit both alike.
        off.round(&payload, pushes).await?;
        on.round(&payload, pushes).await?;
        let (mut off_us, mut on_us) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            off_us.push(off.round(&payload, pushes).await? * 1e6 / f64::from(pushes));
            on_us.push(on.round(&payload, pushes).await? * 1e6 / f64::from(pushes));
        }
        let (off_us, on_us) = (median(&mut off_us), median(&mut on_us));
        let (off_len, on_len) = (off.wire_len(), on.wire_len());
        println!(
            "| {label} | {off_len} B / {on_len} B | {off_us:.2} | {on_us:.2} | {:.2} | {:.3} |",
            on_us - off_us,
            on_us / off_us
        );
        wire.push((label, on_len, off_us));
    }

    println!();
    println!("HMAC-SHA-256 alone ({HMAC_ITERATIONS} operations each), over the signed bytes of the same envelopes");
    println!();
    println!("| push | bytes covered | tag (sign), µs | check (verify), µs | sign + 2 checks, µs | against the pipeline without secret |");
    println!("|---|---|---|---|---|---|");
    for (label, on_len, off_us) in wire {
        // The tag covers the two header bytes and the body: everything but the tag itself.
        let covered = on_len.saturating_sub(32);
        let (sign_us, verify_us) = hmac_alone(covered);
        let envelope_us = sign_us + 2.0 * verify_us;
        println!(
            "| {label} | {covered} B | {sign_us:.3} | {verify_us:.3} | {envelope_us:.3} | {:.1} % |",
            envelope_us / off_us * 100.0
        );
    }
    Ok(())
}

/// A payload string of `len` pseudo-random letters and digits: JSON without escapes that
/// zstd shrinks only somewhat (about 6 bits of 8), unlike a run of one letter.
fn payload(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from(ALPHABET[(state >> 58) as usize])
        })
        .collect()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// CPU time of the calling thread, seconds.
fn thread_cpu_s() -> f64 {
    // CLOCK_THREAD_CPUTIME_ID always exists on Linux; zero should it ever fail.
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0.0, |t| Duration::from(t).as_secs_f64())
}

/// Two nodes, `a` (the sender) and `b`, on a hub of their own.
struct Pair {
    a: Node,
    _b: Node,
    counter: Arc<CountingBroker>,
    done: tokio::sync::Mutex<mpsc::UnboundedReceiver<()>>,
}

impl Pair {
    async fn start(secret: Option<&[u8]>) -> Result<Pair, String> {
        let hub = MemoryHub::new();
        let (tx, done) = mpsc::unbounded_channel();
        let counter = Arc::new(CountingBroker {
            inner: hub.broker(),
            first_len: AtomicUsize::new(0),
        });
        let mut nodes = Vec::new();
        for (name, broker) in [
            ("a", counter.clone() as Arc<dyn Broker>),
            ("b", hub.broker() as Arc<dyn Broker>),
        ] {
            let mut builder = Node::builder()
                .server_name(name)
                .broker(broker)
                .server_ping_interval(None)
                .custom_channels([DONE]);
            if let Some(secret) = secret {
                builder = builder.cluster_secret(secret);
            }
            let node = builder.build().await.map_err(|e| e.to_string())?;
            let tx = tx.clone();
            node.set_custom_channel_handler(move |_| {
                let _ = tx.send(());
                async {}
            });
            nodes.push(node);
        }
        let _b = nodes.pop().ok_or("no node b")?;
        let a = nodes.pop().ok_or("no node a")?;
        Ok(Pair {
            a,
            _b,
            counter,
            done: tokio::sync::Mutex::new(done),
        })
    }

    /// Broadcasts `pushes` times and waits until both nodes handled everything; returns the
    /// thread's CPU seconds.
    async fn round(&self, payload: &str, pushes: u32) -> Result<f64, String> {
        let mut done = self.done.lock().await;
        let start = thread_cpu_s();
        for _ in 0..pushes {
            self.a
                .broadcast()
                .emit("say", payload)
                .await
                .map_err(|e| e.to_string())?;
        }
        // Custom-channel messages queue behind the envelopes: once both nodes saw the marker,
        // they handled every envelope of the round.
        self.a
            .publish(DONE, Bytes::new())
            .await
            .map_err(|e| e.to_string())?;
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(60), done.recv())
                .await
                .map_err(|_| "a round did not finish within 60 s")?
                .ok_or("marker channel closed")?;
        }
        Ok(thread_cpu_s() - start)
    }

    /// Size of the first broadcast envelope `a` published.
    fn wire_len(&self) -> usize {
        self.counter.first_len.load(Ordering::Relaxed)
    }
}

/// Forwards to the hub and remembers the size of the first broadcast envelope published (the
/// node's membership and binding announcements go on other channels).
struct CountingBroker {
    inner: Arc<dyn Broker>,
    first_len: AtomicUsize,
}

#[async_trait]
impl Broker for CountingBroker {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BrokerError> {
        if channel == BROADCAST {
            let _ = self.first_len.compare_exchange(
                0,
                payload.len(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        self.inner.publish(channel, payload).await
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.inner.subscribe(channel).await
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.inner.unsubscribe(channel).await
    }

    fn take_inbound(&self) -> Option<Inbound> {
        self.inner.take_inbound()
    }
}

/// µs per tag and per check over `covered` bytes, with the keyed state prepared once and
/// cloned per operation, as the nodes do.
fn hmac_alone(covered: usize) -> (f64, f64) {
    let Ok(keyed) = Hmac::<Sha256>::new_from_slice(SECRET) else {
        return (f64::NAN, f64::NAN);
    };
    let bytes = payload(covered).into_bytes();
    let (header, body) = bytes.split_at(2.min(bytes.len()));
    let sign = |keyed: &Hmac<Sha256>| {
        let mut mac = keyed.clone();
        mac.update(header);
        mac.update(body);
        mac.finalize().into_bytes()
    };
    let tag = sign(&keyed);
    let start = thread_cpu_s();
    for _ in 0..HMAC_ITERATIONS {
        black_box(sign(black_box(&keyed)));
    }
    let sign_us = (thread_cpu_s() - start) * 1e6 / f64::from(HMAC_ITERATIONS);
    let start = thread_cpu_s();
    for _ in 0..HMAC_ITERATIONS {
        let mut mac = black_box(&keyed).clone();
        mac.update(header);
        mac.update(body);
        black_box(mac.verify_slice(black_box(&tag)).is_ok());
    }
    let verify_us = (thread_cpu_s() - start) * 1e6 / f64::from(HMAC_ITERATIONS);
    (sign_us, verify_us)
}
