//! `scale`: many connections on one machine. A process may open about 20,000 descriptors
//! here, so `--scale-clients` (100,000) clients are held by `--scale-nodes` crosswire node
//! processes (6) on one broker, and connected from `--scale-generators` generator processes
//! (6, [`crate::generators`]), each on its own source addresses; generator g's client i
//! connects to node `i % nodes`.
//!
//! Three phases, one row each:
//! 1. `connect N`: every generator connects at once; connect rate over the whole wall time,
//!    handshake latency, the nodes' memory per connection once they count every connection.
//! 2. `idle N`: a hold with the clients' heartbeats (`--heartbeat`) and the nodes' pings; its
//!    CPU per second is what the step below would cost without a single broadcast.
//! 3. `broadcast@R to N`: a client of node `a` (in this process) sends `broadcast` commands at
//!    `--scale-rate` for `--scale-duration`; every generator accounts for every receipt of
//!    every client (lost, duplicated, misdelivered) and records its latency on the clock all
//!    processes share.
//!
//! crosswire only (the baseline has no cluster).

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::join_all;
use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::generators::{Connected, Finished, GeneratorProcess, GeneratorSpec};
use crate::load::latency::Percentiles;
use crate::load::pace::pace;
use crate::load::{clock, limits, token, Audience, Pool, PoolConfig, StepCtx};
use crate::report::{round, Reporter, Step};
use crate::servers::{Broker, BrokerProcess, ProcStats, ServerKind, ServerProcess, ServerSpec};

use super::cluster::{self, Cluster};
use super::measure::{servers_stats, Meter};
use super::paced::counters_all;
use super::Options;

const SCENARIO: &str = "scale";
/// Longest the generators may take to connect all their clients.
const CONNECT_WAIT: Duration = Duration::from_secs(900);
/// Longest the nodes may take to count every connection after the last handshake.
const SETTLE: Duration = Duration::from_secs(60);
/// Source address offsets of the generators start here (the parent's own pool takes the
/// first few), `SOURCE_STRIDE` apart.
const FIRST_SOURCE: u32 = 100;

/// Runs the scenario against every kind of `--server`: crosswire on a fresh cluster per
/// broker of `--brokers`; a bare server (the floor, the baseline) as `--scale-nodes`
/// independent processes, each broadcast sent once to each by a client of its own (they
/// have no cluster), which gives the cost of the same deliveries without one.
pub(super) async fn run(opts: &Options, out: &mut Reporter) -> Result<(), String> {
    let scale = &opts.scale;
    if scale.nodes > 26 {
        return Err("--scale-nodes: at most 26 nodes (a to z)".into());
    }
    let per_generator = scale.clients.div_ceil(scale.generators) as u64;
    let per_node = scale.clients.div_ceil(scale.nodes) as u64 + 1;
    let limit = limits::raise_nofile().map_err(|e| format!("RLIMIT_NOFILE: {e}"))?;
    if per_generator.max(per_node) + limits::RESERVE > limit.soft {
        return Err(format!(
            "{per_generator} clients per generator and {per_node} per node do not fit under \
             RLIMIT_NOFILE {}: raise --scale-generators / --scale-nodes",
            limit.soft
        ));
    }
    let mut failures = Vec::new();
    for &kind in &opts.servers {
        let setups: Vec<Option<Broker>> = match kind {
            ServerKind::Crosswire => opts.brokers.iter().copied().map(Some).collect(),
            _ => vec![None],
        };
        for broker in setups {
            if let Err(error) = on_servers(kind, broker, opts, out).await {
                let on = broker.map_or(String::new(), |b| format!(" on {}", b.name()));
                failures.push(format!("{}{on}: {error}", kind.name()));
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// The node processes of one run: a crosswire cluster, or independent bare servers.
struct Servers {
    /// The row label: `crosswire`, `crosswire-nats`, `floor`, `baseline`.
    label: &'static str,
    nodes: Vec<ServerProcess>,
    /// The broker of a crosswire cluster.
    broker: Option<BrokerProcess>,
}

impl Servers {
    async fn start(
        kind: ServerKind,
        broker: Option<Broker>,
        opts: &Options,
    ) -> Result<Servers, String> {
        if let Some(broker) = broker {
            let names = cluster::node_names(opts.scale.nodes);
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let cluster = Cluster::start(&names, opts, broker).await?;
            return Ok(Servers {
                label: broker.crosswire_label(),
                nodes: cluster.nodes,
                broker: Some(cluster.broker),
            });
        }
        let mut nodes = Vec::with_capacity(opts.scale.nodes);
        for _ in 0..opts.scale.nodes {
            let mut spec = ServerSpec::single(kind);
            spec.threads = opts.server_threads;
            spec.ping_interval_secs = opts.server_ping_secs;
            match ServerProcess::spawn(&spec).await {
                Ok(node) => nodes.push(node),
                Err(error) => {
                    for node in nodes {
                        node.stop().await;
                    }
                    return Err(error);
                }
            }
        }
        Ok(Servers {
            label: kind.name(),
            nodes,
            broker: None,
        })
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|node| node.addr).collect()
    }

    /// The clients that send the broadcasts: one on the first node of a cluster (the
    /// cluster delivers to every node), one per node of independent servers.
    fn senders(&self) -> usize {
        if self.broker.is_some() {
            1
        } else {
            self.nodes.len()
        }
    }

    /// The broker's CPU seconds so far (0 without a broker).
    fn broker_cpu(&self) -> Result<f64, String> {
        let Some(broker) = &self.broker else {
            return Ok(0.0);
        };
        let pid = broker.pid();
        ProcStats::of(pid)
            .map(|s| s.cpu_seconds)
            .map_err(|e| format!("/proc/{pid} (broker): {e}"))
    }

    /// Stops the nodes, then the clients, then the broker.
    async fn stop(self, senders: &Pool, generators: Vec<GeneratorProcess>) {
        for node in self.nodes {
            node.stop().await;
        }
        senders.shutdown();
        for generator in generators {
            generator.stop().await;
        }
        if let Some(broker) = self.broker {
            broker.stop().await;
        }
    }
}

async fn on_servers(
    kind: ServerKind,
    broker: Option<Broker>,
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    let mut servers = Servers::start(kind, broker, opts).await?;
    let mut generators = Vec::new();
    let mut senders = None;
    let result = phases(&mut servers, &mut generators, &mut senders, opts, out).await;
    let senders = senders.unwrap_or_else(Pool::empty);
    servers.stop(&senders, generators).await;
    result
}

async fn phases(
    servers: &mut Servers,
    generators: &mut Vec<GeneratorProcess>,
    senders: &mut Option<Pool>,
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    let scale = &opts.scale;
    let before = servers_stats(&servers.nodes)?;
    let meter = Meter::start_all(&servers.nodes)?;
    let started = Instant::now();
    *generators = spawn_generators(&servers.addrs(), opts)?;
    let reports = join_all(generators.iter_mut().map(|g| g.connected(CONNECT_WAIT))).await;
    let wall = started.elapsed();
    let connecting = meter.used_all(&servers.nodes)?;
    let reports: Vec<Connected> = reports.into_iter().collect::<Result<_, _>>()?;
    let connected: usize = reports.iter().map(|r| r.connected).sum();

    let sender_config = PoolConfig {
        id_base: scale.clients,
        heartbeat: None,
        ..opts.pool.clone()
    };
    let count = servers.senders();
    let (pool, report) = Pool::connect(&servers.addrs(), count, &sender_config).await;
    let pool = senders.insert(pool);
    if report.connected != count {
        return Err(format!(
            "the sending clients did not connect: {}",
            report.first_error.unwrap_or_default()
        ));
    }
    let settled = settle(&mut servers.nodes, (connected + count) as u64).await;
    let after = servers_stats(&servers.nodes)?;
    let counters = counters_all(&mut servers.nodes).await;

    let mut row = Step::new(
        SCENARIO,
        servers.label,
        &format!("connect {}", scale.clients),
    );
    row.duration_s = round(wall.as_secs_f64(), 2);
    row.sent = scale.clients as u64;
    row.deliveries = connected as u64;
    row.deliveries_per_s = round(connected as f64 / wall.as_secs_f64().max(1e-9), 1);
    row.server_cpu_s = round(connecting.server_cpu_s, 2);
    row.lost = (scale.clients - connected) as u64;
    // Each generator's own percentiles; the worst of them is the row's.
    row.p50_ms = reports
        .iter()
        .filter_map(|r| r.handshake_p50_ms)
        .reduce(f64::max);
    row.p99_ms = reports
        .iter()
        .filter_map(|r| r.handshake_p99_ms)
        .reduce(f64::max);
    row.server_rss_bytes = after.rss_bytes;
    row.generator_cpu_s = round(generator_cpu(generators)?, 2);
    row.set("connects_per_s", row.deliveries_per_s);
    row.set("nodes", scale.nodes);
    row.set("generators", scale.generators);
    row.set(
        "first_error",
        reports.iter().find_map(|r| r.first_error.clone()),
    );
    row.set("settled", settled);
    row.set("node_rss_before_bytes", before.rss_bytes);
    row.set(
        "rss_per_conn_bytes",
        (connected > 0)
            .then(|| after.rss_bytes.saturating_sub(before.rss_bytes) / connected as u64),
    );
    row.set(
        "generator_rss_bytes",
        generator_stats(generators)?.rss_bytes,
    );
    for key in ["connections", "directory_len"] {
        if let Some(v) = counters.get(key) {
            row.set(&format!("server_{key}"), v.clone());
        }
    }
    let connect_failed = row.lost > 0;
    out.emit(row);
    if connect_failed {
        return Err(format!(
            "only {connected} of {} clients connected",
            scale.clients
        ));
    }
    let idle_cores = idle(servers, generators, opts, out).await?;
    broadcast(servers, generators, pool, idle_cores, opts, out).await
}

/// Starts the generator processes, each with its share of the clients, its own socket ids
/// and its own source addresses.
fn spawn_generators(
    servers: &[std::net::SocketAddr],
    opts: &Options,
) -> Result<Vec<GeneratorProcess>, String> {
    let scale = &opts.scale;
    let per_generator = scale.clients.div_ceil(scale.generators);
    let stride = per_generator.div_ceil(opts.pool.per_addr.max(1)) as u32 + 1;
    (0..scale.generators)
        .map(|g| {
            let first = g * per_generator;
            let spec = GeneratorSpec {
                servers: servers.to_vec(),
                clients: per_generator.min(scale.clients.saturating_sub(first)),
                id_base: first,
                first_source: FIRST_SOURCE + g as u32 * stride,
                concurrency: opts.pool.concurrency,
                heartbeat: opts.pool.heartbeat,
            };
            GeneratorProcess::spawn(&spec)
        })
        .collect()
}

/// Waits until the nodes count `n` open connections between them (polled: the nodes have no
/// push for it), at most [`SETTLE`]; returns whether they did (false at once for servers
/// without counters).
async fn settle(nodes: &mut [ServerProcess], n: u64) -> bool {
    let deadline = Instant::now() + SETTLE;
    while Instant::now() < deadline {
        let counters = counters_all(nodes).await;
        // A server without counters (the floor) has nothing to wait for.
        let Some(count) = counters
            .get("connections")
            .and_then(serde_json::Value::as_u64)
        else {
            return false;
        };
        if count >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

/// The idle hold: returns the nodes' CPU in cores (CPU seconds per second) over it.
async fn idle(
    servers: &mut Servers,
    generators: &[GeneratorProcess],
    opts: &Options,
    out: &mut Reporter,
) -> Result<f64, String> {
    let scale = &opts.scale;
    let meter = Meter::start_all(&servers.nodes)?;
    let generators_before = generator_cpu(generators)?;
    let broker_before = servers.broker_cpu()?;
    // The hold is the measurement itself (idle connections over time), not a wait.
    tokio::time::sleep(scale.hold).await;
    let used = meter.used_all(&servers.nodes)?;
    let seconds = used.wall.as_secs_f64().max(1e-9);
    let idle_cores = used.server_cpu_s / seconds;
    let mut row = Step::new(SCENARIO, servers.label, &format!("idle {}", scale.clients));
    row.duration_s = round(seconds, 2);
    row.server_cpu_s = round(used.server_cpu_s, 2);
    row.server_rss_bytes = used.server_rss;
    row.generator_cpu_s = round(generator_cpu(generators)? - generators_before, 2);
    row.set("node_cores", round(idle_cores, 3));
    row.set(
        "heartbeats_per_s",
        opts.pool
            .heartbeat
            .map(|every| round(scale.clients as f64 / every.as_secs_f64(), 0)),
    );
    row.set(
        "broker_cpu_s",
        round(servers.broker_cpu()? - broker_before, 2),
    );
    out.emit(row);
    Ok(idle_cores)
}

/// The broadcast step.
async fn broadcast(
    servers: &mut Servers,
    generators: &mut [GeneratorProcess],
    senders: &Pool,
    idle_cores: f64,
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    let scale = &opts.scale;
    let ctx = StepCtx::new(Audience::All);
    for generator in generators.iter_mut() {
        generator.begin(ctx.id).await?;
    }
    let broker_before = servers.broker_cpu()?;
    let generators_before = generator_cpu(generators)?;
    let meter = Meter::start_all(&servers.nodes)?;
    let mut unsent = 0u64;
    let report = pace(scale.rate, scale.duration, |seq| {
        let token = token::delivery(ctx.id, seq, clock::now_nanos());
        let text = format!(
            r#"{{"event":"command","payload":{{"action":"broadcast","msg":"{token}"}},"callbackId":"c{seq}"}}"#
        );
        for sender in 0..senders.len() {
            if !senders.send(sender, text.clone()) {
                unsent += 1;
            }
        }
    });
    let finished: Vec<Finished> = join_all(
        generators
            .iter_mut()
            .map(|g| g.finish(report.sent, opts.drain)),
    )
    .await
    .into_iter()
    .collect::<Result<_, _>>()?;
    let used = meter.used_all(&servers.nodes)?;
    let broker_cpu = servers.broker_cpu()? - broker_before;
    let generator_cpu_s = generator_cpu(generators)? - generators_before;

    let sum = |f: fn(&Finished) -> u64| finished.iter().map(f).sum::<u64>();
    let deliveries = sum(|f| f.deliveries);
    let latency = merged_latency(&finished);
    let seconds = report.elapsed.as_secs_f64().max(1e-9);
    let cpu = used.server_cpu_s;
    let net_cpu = (cpu - idle_cores * used.wall.as_secs_f64()).max(0.0);
    let per_delivery_us =
        |cpu: f64| (deliveries > 0).then(|| round(cpu * 1e6 / deliveries as f64, 2));

    let mut row = Step::new(
        SCENARIO,
        servers.label,
        &format!("broadcast@{} to {}", scale.rate, scale.clients),
    );
    row.rate = Some(scale.rate);
    row.duration_s = round(seconds, 2);
    row.sent = report.sent;
    row.deliveries = deliveries;
    row.deliveries_per_s = round(deliveries as f64 / seconds, 1);
    row.server_cpu_s = round(cpu, 2);
    row.deliveries_per_cpu_s = (cpu > 0.0).then(|| round(deliveries as f64 / cpu, 0));
    row.p50_ms = latency.p50_ms;
    row.p99_ms = latency.p99_ms;
    row.p999_ms = latency.p999_ms;
    row.lost = sum(|f| f.lost);
    row.duplicated = sum(|f| f.duplicated);
    row.misdelivered = sum(|f| f.misdelivered);
    row.generator_cpu_s = round(generator_cpu_s, 2);
    row.server_rss_bytes = used.server_rss;
    row.set("expected", report.sent * scale.clients as u64);
    row.set("all_delivered", finished.iter().all(|f| f.all_delivered));
    row.set("max_ms", latency.max_ms);
    row.set("cpu_us_per_delivery", per_delivery_us(cpu));
    row.set("cpu_us_per_delivery_net_of_idle", per_delivery_us(net_cpu));
    row.set("idle_node_cores", round(idle_cores, 3));
    row.set("broker_cpu_s", round(broker_cpu, 2));
    row.set("late_sends", report.late);
    row.set("unsent", unsent);
    row.set("client_closes", sum(|f| f.closed));
    row.set("step_wall_s", round(used.wall.as_secs_f64(), 2));
    row.set("senders", senders.len());
    let counters = counters_all(&mut servers.nodes).await;
    for key in ["connections", "slow_consumer_closes", "stalled_closes"] {
        if let Some(v) = counters.get(key) {
            row.set(&format!("server_{key}"), v.clone());
        }
    }
    out.emit(row);
    Ok(())
}

/// The generators' latency histograms merged.
fn merged_latency(finished: &[Finished]) -> Percentiles {
    let mut all =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("constant, valid bounds");
    for (value, count) in finished.iter().flat_map(|f| f.latency_us.iter()) {
        all.saturating_record_n(*value, *count);
    }
    Percentiles::of(&all)
}

/// The generators' CPU and memory summed.
fn generator_stats(generators: &[GeneratorProcess]) -> Result<ProcStats, String> {
    generators.iter().try_fold(ProcStats::default(), |sum, g| {
        let one = g.stats().map_err(|e| format!("/proc/{}: {e}", g.pid))?;
        Ok(ProcStats {
            cpu_seconds: sum.cpu_seconds + one.cpu_seconds,
            rss_bytes: sum.rss_bytes + one.rss_bytes,
        })
    })
}

fn generator_cpu(generators: &[GeneratorProcess]) -> Result<f64, String> {
    Ok(generator_stats(generators)?.cpu_seconds)
}
