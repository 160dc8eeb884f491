//! The command line ([`Cli`]) and the options every scenario reads ([`Options`]).

use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::load::PoolConfig;
use crate::servers::{Broker, ServerKind};

/// Runs real WebSocket clients over loopback against a server in a child process: the bare
/// fastwebsockets baseline first, then crosswire (fresh process each), with the same load.
///
/// One JSON line per step on stdout, tables on stderr; crosswire rows carry
/// crosswire/baseline ratios of deliveries_per_cpu_s and p99_ms. See BENCHMARKS.md for the
/// scenarios and figures. (`crosswire-bench serve --kind K ...` is the internal command
/// that runs one server process under test.)
#[derive(Debug, Parser)]
#[command(
    name = "crosswire-bench",
    args_override_self = true,
    after_help = "A step is `saturated` (generator-limited) when more than 1 % of its sends \
                  left more than 10 ms behind schedule, or the generator used more than \
                  --cpu-limit cores while sending."
)]
pub(crate) struct Cli {
    /// The scenario to run
    #[arg(value_enum, value_name = "SCENARIO")]
    pub(crate) scenario: Scenario,

    /// Servers to run
    #[arg(long, value_enum, default_value_t = ServerChoice::Both)]
    server: ServerChoice,
    /// unicast, cross-node, cluster-fanout, unicast-targeting: brokers of crosswire's
    /// cluster, redis and/or nats, run in that order in the same run
    #[arg(long, value_name = "B,...", default_value = "redis")]
    brokers: Brokers,
    /// Sending window of each paced step, seconds
    #[arg(long, value_name = "S", default_value = "10", value_parser = seconds)]
    duration: Duration,
    /// Loss deadline after a step's last send, seconds
    #[arg(long, value_name = "S", default_value = "3", value_parser = seconds)]
    drain: Duration,
    /// connect: connection counts
    #[arg(long, value_name = "N,N,...", default_value = "10000")]
    steps: List<usize>,
    /// connect: hold with heartbeats before the second RSS reading, seconds
    #[arg(long, value_name = "S", default_value = "30", value_parser = seconds)]
    hold: Duration,
    /// fanout: an unmeasured broadcast at 10/s before the first step, seconds (a server
    /// process that has just started pays once for caches, page faults and what it
    /// allocates on first use); 0 = none
    #[arg(long, value_name = "S", default_value = "2", value_parser = seconds)]
    warm_up: Duration,
    /// fanout and cluster-fanout clients
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    clients: usize,
    /// fanout broadcast rates per second
    #[arg(long, value_name = "R,...", default_value = "10,25,50,75,100")]
    broadcast_rates: List<f64>,
    /// fanout toRoom rates per second
    #[arg(long, value_name = "R,...", default_value = "100,250,500,1000")]
    room_rates: List<f64>,
    /// fanout and cluster-fanout rooms
    #[arg(long, value_name = "N", default_value_t = 10)]
    rooms: usize,
    /// cluster-fanout broadcast rates per second
    #[arg(long, value_name = "R,...", default_value = "10,50")]
    cluster_broadcast_rates: List<f64>,
    /// cluster-fanout toRoom rates per second
    #[arg(long, value_name = "R,...", default_value = "100")]
    cluster_room_rates: List<f64>,
    /// rpc clients
    #[arg(long, value_name = "N", default_value_t = 100)]
    rpc_clients: usize,
    /// rpc open-loop rates per second
    #[arg(long, value_name = "R,...", default_value = "5000,10000,20000")]
    rpc_rates: List<f64>,
    /// unicast clients, spread over the crosswire nodes
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    unicast_clients: usize,
    /// unicast and cluster-fanout: crosswire node processes of the cluster (2 to 26)
    #[arg(long, value_name = "N", default_value_t = 3)]
    cluster_nodes: usize,
    /// unicast toPlayer rates per second
    #[arg(
        long,
        value_name = "R,...",
        default_value = "10000,20000,30000,40000,60000"
    )]
    unicast_rates: List<f64>,
    /// unicast-targeting: cluster sizes
    #[arg(long, value_name = "N,...", default_value = "3,5")]
    targeting_nodes: List<usize>,
    /// unicast-targeting: clients per cluster, spread over its nodes
    #[arg(long, value_name = "N", default_value_t = 600)]
    targeting_clients: usize,
    /// unicast-targeting: toPlayer/s of the paced step
    #[arg(long, value_name = "R", default_value_t = 2_000.0)]
    targeting_rate: f64,
    /// unicast-targeting: sending window of each paced step, seconds
    #[arg(long, value_name = "S", default_value = "2", value_parser = seconds)]
    targeting_duration: Duration,
    /// unicast-targeting: toPlayer of each burst, sent at once
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    targeting_burst: u64,
    /// scale: clients in all, spread over --scale-generators processes and the nodes
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    scale_clients: usize,
    /// scale: crosswire node processes on one broker
    #[arg(long, value_name = "N", default_value_t = 6)]
    scale_nodes: usize,
    /// scale: load-generator processes (each holds at most about 19,800 clients)
    #[arg(long, value_name = "N", default_value_t = 6)]
    scale_generators: usize,
    /// scale: broadcasts to every client per second
    #[arg(long, value_name = "R", default_value_t = 1.0)]
    scale_rate: f64,
    /// scale: sending window of the broadcast step, seconds
    #[arg(long, value_name = "S", default_value = "60", value_parser = seconds)]
    scale_duration: Duration,
    /// scale: idle hold with heartbeats before the broadcast step (its CPU is the floor under
    /// the step's), seconds
    #[arg(long, value_name = "S", default_value = "10", value_parser = seconds)]
    scale_hold: Duration,
    /// cross-node probe rate per second, each probe --duration long
    #[arg(long, value_name = "R", default_value_t = 1_000.0)]
    probe_rate: f64,
    /// slow-consumer reading clients
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    slow_clients: usize,
    /// slow-consumer broadcast rate per second
    #[arg(long, value_name = "R", default_value_t = 50.0)]
    slow_rate: f64,
    /// slow-consumer: sending window of the step with the slow client, seconds
    #[arg(long, value_name = "S", default_value = "40", value_parser = seconds)]
    slow_duration: Duration,
    /// slow-consumer: SO_RCVBUF of the slow client, bytes
    #[arg(long, value_name = "B", default_value_t = 4096)]
    slow_rcvbuf: u32,
    /// SO_SNDBUF of the servers' connections, bytes; 0 = kernel default
    #[arg(long, value_name = "B", default_value_t = 0)]
    server_sndbuf: u32,
    /// flood: clients receiving the measured broadcast
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    flood_clients: usize,
    /// flood: their broadcasts per second
    #[arg(long, value_name = "R", default_value_t = 10.0)]
    flood_rate: f64,
    /// flood: messages the flooding client sends
    #[arg(long, value_name = "N", default_value_t = 60_000)]
    flood_messages: u64,
    /// flood: size of each flood message, bytes
    #[arg(long, value_name = "B", default_value_t = 2_048)]
    flood_bytes: usize,
    /// flood: bytes per second the flooding client reads
    #[arg(long, value_name = "B", default_value_t = 5_000_000)]
    flood_read_rate: u64,
    /// flood: the server's stall timeout, seconds; 0 = crosswire's 30 s
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    flood_stall_timeout: f64,
    /// flood: the server's messages/s per connection, 0 = none, `default` = crosswire's
    #[arg(long, value_name = "N|default", default_value = "0")]
    flood_rate_limit: RateLimit,
    /// soak: connections held
    #[arg(long, value_name = "N", default_value_t = 15_000)]
    soak_clients: usize,
    /// soak: seconds of broadcast and churn
    #[arg(long, value_name = "S", default_value = "300", value_parser = seconds)]
    soak_duration: Duration,
    /// soak: connections closed and reconnected per second
    #[arg(long, value_name = "R", default_value_t = 25.0)]
    churn_rate: f64,
    /// soak: share of those closing cleanly, the rest drop TCP
    #[arg(long, value_name = "F", default_value_t = 0.5)]
    churn_clean: f64,
    /// soak: broadcasts per second to everyone
    #[arg(long, value_name = "R", default_value_t = 5.0)]
    soak_rate: f64,
    /// soak: size of each broadcast's msg, bytes; the push is 57 B more
    #[arg(long, value_name = "B", default_value_t = 143)]
    soak_bytes: usize,
    /// soak: the server's protocol ping interval, seconds
    #[arg(long, value_name = "S", default_value = "10", value_parser = seconds)]
    soak_ping: Duration,
    /// Connections per source address 127.0.0.x
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    per_addr: usize,
    /// Handshakes in flight
    #[arg(long, value_name = "N", default_value_t = 100)]
    concurrency: usize,
    /// Client heartbeat period, seconds; 0 = off
    #[arg(long, value_name = "S", default_value = "10", value_parser = seconds)]
    heartbeat: Duration,
    /// Server worker threads, 0 = one per core
    #[arg(long, value_name = "N", default_value_t = 0)]
    server_threads: usize,
    /// crosswire's messages/s per connection, 0 = none, `default` = crosswire's default
    /// (1000/s throttled, which caps rpc's closed-loop step near 1000/s per client); every
    /// scenario but flood
    #[arg(long, value_name = "N|default", default_value = "default")]
    server_rate_limit: RateLimit,
    /// Every crosswire node installs the Prometheus recorder (metrics-exporter-prometheus)
    /// before it is built and renders a scrape every second, with no HTTP listener
    #[arg(long)]
    server_prometheus: bool,
    /// Protocol ping interval of crosswire and the baseline (floor never pings): each connection
    /// is pinged once an interval; seconds, 0 = no pings; every scenario but soak (--soak-ping)
    #[arg(long, value_name = "S", default_value_t = 30)]
    server_ping: u64,
    /// Generator worker threads, 0 = one per core
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) gen_threads: usize,
    /// Generator cores above which a step is marked saturated
    #[arg(long, value_name = "F", default_value_t = 0.9)]
    cpu_limit: f64,
}

/// The scenarios of the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    /// Connection counts of --steps: connect time, memory per connection after --hold
    Connect,
    /// broadcast and toRoom to --clients clients at --broadcast-rates and --room-rates
    Fanout,
    /// Request/reply: a closed-loop step, then open-loop at --rpc-rates
    Rpc,
    /// toPlayer: crosswire as 3 nodes on one redis-server (clients spread evenly), the
    /// baseline as one node holding every client (a single-node reference, not a
    /// like-for-like cluster); with --brokers redis,nats on each broker in turn (rows
    /// `crosswire` on Redis, `crosswire-nats` on NATS)
    Unicast,
    /// crosswire only: the latency added over raw Redis pub/sub (over raw NATS pub/sub on
    /// NATS, with --brokers redis,nats)
    CrossNode,
    /// crosswire only: broadcast and toRoom on 3 nodes on one broker, --clients spread
    /// evenly, every message sent by a client of the first node (so 2/3 of each fan-out's
    /// recipients are on the other nodes); with --brokers redis,nats on each broker in turn
    ClusterFanout,
    /// A client that never reads is added; reports when the server drops it
    SlowConsumer,
    /// crosswire only: flow control, a client that sends much faster than it reads, then one
    /// that sends and never reads, against the latency of the other clients
    Flood,
    /// Every scenario above, in order
    All,
    /// crosswire only, not part of `all` (see scripts/soak.sh): holds many connections for a
    /// long time with heartbeats, pings, churn and a steady broadcast, and checks for leaks
    Soak,
    /// crosswire only, not part of `all`, about a minute: compares targeted_unicast(false)
    /// (before: every push to a socket id on the shared channel every node receives) with
    /// (true) (after: to the owning node's inbox) in one run. Per cluster size of
    /// --targeting-nodes, one cluster of each side by side, each on its own broker (Redis;
    /// --brokers), clients spread evenly, every toPlayer sent by a client of node a to a
    /// client of another node; the two are measured in turn, 4 visits each in ABBA order. A
    /// paced step per visit gives the nodes that handled each unicast (their
    /// unicast_envelopes / sent) and the nodes' and broker's CPU per 1000 unicasts; a burst
    /// per visit gives pushes delivered per second (median); a summary prints the
    /// after/before ratios
    UnicastTargeting,
    /// crosswire only, not part of `all`, a few minutes: --scale-clients clients (100,000)
    /// held by --scale-nodes node processes on one broker (Redis; --brokers) and connected
    /// from --scale-generators generator processes on their own source addresses; reports
    /// the connect rate, server memory per connection, the idle CPU of the heartbeats, then
    /// broadcasts to every client at --scale-rate for --scale-duration (every delivery
    /// accounted for)
    Scale,
}

impl Scenario {
    /// The name on the command line (`cross-node`, `all`, ...).
    pub(crate) fn name(self) -> String {
        self.to_possible_value()
            .map(|value| value.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// `--server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ServerChoice {
    /// crosswire only
    Crosswire,
    /// The bare fastwebsockets baseline only
    Baseline,
    /// The baseline, then crosswire
    Both,
    /// The reference bare server `floor` only (`../shared/floor`)
    Floor,
    /// The baseline, the floor, then crosswire
    All,
}

/// A comma-separated list (`10,25,50`; empty items are skipped).
#[derive(Debug, Clone)]
struct List<T>(Vec<T>);

impl<T: FromStr> FromStr for List<T>
where
    T::Err: std::fmt::Display,
{
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| item.parse().map_err(|e| format!("{item}: {e}")))
            .collect::<Result<_, _>>()
            .map(List)
    }
}

/// `--brokers`: at least one of redis, nats, comma-separated.
#[derive(Debug, Clone)]
struct Brokers(Vec<Broker>);

impl FromStr for Brokers {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        let brokers = value
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(|b| Broker::parse(b).ok_or(format!("unknown broker {b}")))
            .collect::<Result<Vec<_>, _>>()?;
        if brokers.is_empty() {
            return Err("needs at least one of redis, nats".into());
        }
        Ok(Brokers(brokers))
    }
}

/// A per-connection message rate limit: a number (0 = none) or `default` (crosswire's).
#[derive(Debug, Clone, Copy)]
struct RateLimit(Option<u32>);

impl FromStr for RateLimit {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "default" => Ok(RateLimit(None)),
            n => n
                .parse()
                .map(|n| RateLimit(Some(n)))
                .map_err(|e| format!("{e}")),
        }
    }
}

/// Parses a duration in (fractional) seconds.
fn seconds(value: &str) -> Result<Duration, String> {
    let s: f64 = value.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(s).map_err(|e| format!("{e}"))
}

impl Cli {
    /// The scenarios' options, or why the flags do not go together.
    pub(crate) fn options(&self) -> Result<Options, String> {
        if self.clients == 0
            || self.rpc_clients == 0
            || self.slow_clients == 0
            || self.flood_clients == 0
        {
            return Err(
                "--clients, --rpc-clients, --slow-clients and --flood-clients must be at least 1"
                    .into(),
            );
        }
        if self.soak_clients < 2 {
            return Err("--soak-clients must be at least 2 (client 0 sends the broadcasts)".into());
        }
        if !(0.0..=1.0).contains(&self.churn_clean) {
            return Err("--churn-clean must be between 0 and 1".into());
        }
        if !(2..=26).contains(&self.cluster_nodes) {
            return Err("--cluster-nodes must be between 2 and 26".into());
        }
        if self.scale_nodes == 0 || self.scale_generators == 0 {
            return Err("--scale-nodes and --scale-generators must be at least 1".into());
        }
        if self.unicast_clients < self.cluster_nodes {
            return Err("--unicast-clients must be at least one per node".into());
        }
        Ok(Options {
            servers: match self.server {
                ServerChoice::Both => vec![ServerKind::Baseline, ServerKind::Crosswire],
                ServerChoice::Crosswire => vec![ServerKind::Crosswire],
                ServerChoice::Baseline => vec![ServerKind::Baseline],
                ServerChoice::Floor => vec![ServerKind::Floor],
                ServerChoice::All => {
                    vec![
                        ServerKind::Baseline,
                        ServerKind::Floor,
                        ServerKind::Crosswire,
                    ]
                }
            },
            brokers: self.brokers.0.clone(),
            duration: self.duration,
            drain: self.drain,
            connect_steps: self.steps.0.clone(),
            hold: self.hold,
            warm_up: self.warm_up,
            fanout_clients: self.clients,
            broadcast_rates: self.broadcast_rates.0.clone(),
            room_rates: self.room_rates.0.clone(),
            rooms: self.rooms,
            cluster_broadcast_rates: self.cluster_broadcast_rates.0.clone(),
            cluster_room_rates: self.cluster_room_rates.0.clone(),
            rpc_clients: self.rpc_clients,
            rpc_rates: self.rpc_rates.0.clone(),
            unicast_clients: self.unicast_clients,
            cluster_nodes: self.cluster_nodes,
            unicast_rates: self.unicast_rates.0.clone(),
            probe_rate: self.probe_rate,
            slow_clients: self.slow_clients,
            slow_rate: self.slow_rate,
            slow_duration: self.slow_duration,
            slow_rcvbuf: self.slow_rcvbuf,
            pool: PoolConfig {
                per_addr: self.per_addr,
                concurrency: self.concurrency,
                heartbeat: (!self.heartbeat.is_zero()).then_some(self.heartbeat),
                ..PoolConfig::default()
            },
            server_sndbuf: self.server_sndbuf,
            server_threads: self.server_threads,
            server_rate_limit: self.server_rate_limit.0,
            server_prometheus: self.server_prometheus,
            server_ping_secs: self.server_ping,
            cpu_limit: self.cpu_limit,
            soak: SoakOptions {
                clients: self.soak_clients,
                duration: self.soak_duration,
                churn_rate: self.churn_rate,
                churn_clean: self.churn_clean,
                broadcast_rate: self.soak_rate,
                message_bytes: self.soak_bytes,
                ping: self.soak_ping,
            },
            flood: FloodOptions {
                clients: self.flood_clients,
                rate: self.flood_rate,
                messages: self.flood_messages,
                message_bytes: self.flood_bytes,
                read_rate: self.flood_read_rate,
                stall_timeout: self.flood_stall_timeout,
                rate_limit: self.flood_rate_limit.0,
            },
            targeting: TargetingOptions {
                nodes: self.targeting_nodes.0.clone(),
                clients: self.targeting_clients,
                rate: self.targeting_rate,
                duration: self.targeting_duration,
                burst: self.targeting_burst,
            },
            scale: ScaleOptions {
                clients: self.scale_clients,
                nodes: self.scale_nodes,
                generators: self.scale_generators,
                rate: self.scale_rate,
                duration: self.scale_duration,
                hold: self.scale_hold,
            },
        })
    }
}

/// Scenario settings (see `crosswire-bench --help`).
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Server kinds to run, in order (baseline first so crosswire rows can carry ratios).
    pub(crate) servers: Vec<ServerKind>,
    /// `unicast`, `cross-node` and `cluster-fanout`: the brokers crosswire's cluster runs on, one after the
    /// other in the same run (default Redis only).
    pub(crate) brokers: Vec<Broker>,
    /// Sending window of each paced step.
    pub(crate) duration: Duration,
    /// Loss deadline after a paced step's last send.
    pub(crate) drain: Duration,
    /// `connect`: connection counts, one step each.
    pub(crate) connect_steps: Vec<usize>,
    /// `connect`: how long the connections are held (with heartbeats) before the second
    /// memory reading.
    pub(crate) hold: Duration,
    /// `fanout`: the unmeasured broadcast before the first step (zero: none).
    pub(crate) warm_up: Duration,
    /// `fanout`: clients.
    pub(crate) fanout_clients: usize,
    /// `fanout`: `broadcast` rates per second.
    pub(crate) broadcast_rates: Vec<f64>,
    /// `fanout`: `toRoom` rates per second.
    pub(crate) room_rates: Vec<f64>,
    /// `fanout`: rooms (client i joins room `i % rooms`).
    pub(crate) rooms: usize,
    /// `cluster-fanout`: `broadcast` rates per second (clients: `fanout_clients`, rooms:
    /// `rooms`).
    pub(crate) cluster_broadcast_rates: Vec<f64>,
    /// `cluster-fanout`: `toRoom` rates per second.
    pub(crate) cluster_room_rates: Vec<f64>,
    /// `rpc`: clients.
    pub(crate) rpc_clients: usize,
    /// `rpc`: open-loop rates per second (a closed-loop step runs first).
    pub(crate) rpc_rates: Vec<f64>,
    /// `unicast`: clients, spread evenly over the nodes.
    pub(crate) unicast_clients: usize,
    /// `unicast`, `cluster-fanout`: node processes of the cluster.
    pub(crate) cluster_nodes: usize,
    /// `unicast`: `toPlayer` rates per second.
    pub(crate) unicast_rates: Vec<f64>,
    /// `cross-node`: messages per second of each probe (raw Redis, same-node, cross-node).
    pub(crate) probe_rate: f64,
    /// `slow-consumer`: clients that read (besides the slow one).
    pub(crate) slow_clients: usize,
    /// `slow-consumer`: broadcasts per second.
    pub(crate) slow_rate: f64,
    /// `slow-consumer`: sending window of the step with the slow client (long enough for its
    /// outbound queue to fill).
    pub(crate) slow_duration: Duration,
    /// `slow-consumer`: `SO_RCVBUF` asked for the slow client's socket, bytes.
    pub(crate) slow_rcvbuf: u32,
    /// How clients connect (source addresses, concurrency, heartbeat).
    pub(crate) pool: PoolConfig,
    /// `SO_SNDBUF` of the servers' accepted connections, bytes (0 = kernel default,
    /// autotuned up to `tcp_wmem`'s maximum).
    pub(crate) server_sndbuf: u32,
    /// Server worker threads (0 = one per core).
    pub(crate) server_threads: usize,
    /// crosswire's per-connection message rate limit in every scenario but `flood`: `None` =
    /// its default (1,000/s, throttled), `Some(0)` = none.
    pub(crate) server_rate_limit: Option<u32>,
    /// Every crosswire node installs the Prometheus recorder and renders a scrape every second.
    pub(crate) server_prometheus: bool,
    /// Protocol ping interval of crosswire and the baseline in seconds, 0 = no pings (every
    /// scenario but `soak`).
    pub(crate) server_ping_secs: u64,
    /// Generator CPU, in cores, above which a step is marked saturated.
    pub(crate) cpu_limit: f64,
    /// `soak` settings.
    pub(crate) soak: SoakOptions,
    /// `flood` settings.
    pub(crate) flood: FloodOptions,
    /// `unicast-targeting` settings.
    pub(crate) targeting: TargetingOptions,
    /// `scale`.
    pub(crate) scale: ScaleOptions,
}

/// Settings of the `scale` scenario (many clients over several node and generator
/// processes).
#[derive(Debug, Clone)]
pub(crate) struct ScaleOptions {
    /// Clients in all.
    pub(crate) clients: usize,
    /// Node processes.
    pub(crate) nodes: usize,
    /// Generator processes.
    pub(crate) generators: usize,
    /// Broadcasts per second.
    pub(crate) rate: f64,
    /// Sending window of the broadcast step.
    pub(crate) duration: Duration,
    /// Idle hold before it.
    pub(crate) hold: Duration,
}

/// Settings of the `unicast-targeting` scenario (a cluster with targeted unicast off beside
/// one with it on, per cluster size).
#[derive(Debug, Clone)]
pub(crate) struct TargetingOptions {
    /// Cluster sizes, one pair of clusters (off, on) each.
    pub(crate) nodes: Vec<usize>,
    /// Clients of each cluster, spread evenly over its nodes.
    pub(crate) clients: usize,
    /// `toPlayer` per second of the paced step (the CPU figure).
    pub(crate) rate: f64,
    /// Sending window of the paced step.
    pub(crate) duration: Duration,
    /// `toPlayer` commands of the burst step (the throughput figure), sent at once.
    pub(crate) burst: u64,
}

/// Settings of the `soak` scenario (one crosswire server, many connections held for a long
/// time with heartbeats, pings, churn and a steady broadcast).
#[derive(Debug, Clone)]
pub(crate) struct SoakOptions {
    /// Connections held (client 0 sends the broadcasts and never churns).
    pub(crate) clients: usize,
    /// How long the broadcast and the churn run.
    pub(crate) duration: Duration,
    /// Connections closed and connected again per second.
    pub(crate) churn_rate: f64,
    /// Share of those that leave cleanly (close frame 1000); the others drop the TCP
    /// connection without a close frame.
    pub(crate) churn_clean: f64,
    /// Broadcasts per second (to every client).
    pub(crate) broadcast_rate: f64,
    /// Size of each broadcast's `msg`, bytes (the push frame is 57 bytes more).
    pub(crate) message_bytes: usize,
    /// The server's protocol ping interval.
    pub(crate) ping: Duration,
}

/// Settings of the `flood` scenario (flow control: a client that sends faster than it reads,
/// one that sends and never reads, and the latency of everyone else meanwhile).
#[derive(Debug, Clone)]
pub(crate) struct FloodOptions {
    /// Other clients, receiving the broadcast whose latency is compared.
    pub(crate) clients: usize,
    /// Their broadcasts per second.
    pub(crate) rate: f64,
    /// Messages the flooding client sends (each asks for a push of `message_bytes` to itself).
    pub(crate) messages: u64,
    /// Size of each flood message's `msg`, bytes.
    pub(crate) message_bytes: usize,
    /// Bytes per second the flooding client reads.
    pub(crate) read_rate: u64,
    /// The server's stall timeout, seconds (0 = crosswire's default, 30 s).
    pub(crate) stall_timeout: f64,
    /// The server's per-connection rate limit: `None` = crosswire's default (1,000/s,
    /// throttled), `Some(0)` = none.
    pub(crate) rate_limit: Option<u32>,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    fn options(args: &[&str]) -> Options {
        Cli::try_parse_from(["crosswire-bench"].iter().chain(args))
            .expect("flags parse")
            .options()
            .expect("flags go together")
    }

    #[test]
    fn command_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let opts = options(&["all"]);
        assert_eq!(
            opts.servers,
            vec![ServerKind::Baseline, ServerKind::Crosswire]
        );
        assert_eq!(opts.brokers, vec![Broker::Redis]);
        assert_eq!(opts.duration, Duration::from_secs(10));
        assert_eq!(opts.connect_steps, vec![10_000]);
        assert_eq!(opts.broadcast_rates, vec![10.0, 25.0, 50.0, 75.0, 100.0]);
        assert_eq!(opts.pool.heartbeat, Some(Duration::from_secs(10)));
        assert_eq!(opts.pool.per_addr, PoolConfig::default().per_addr);
        assert_eq!(opts.pool.concurrency, PoolConfig::default().concurrency);
        assert_eq!(opts.server_rate_limit, None);
        assert_eq!(opts.flood.rate_limit, Some(0));
        assert_eq!(opts.soak.duration, Duration::from_secs(300));
        assert_eq!(opts.targeting.nodes, vec![3, 5]);
        assert_eq!(opts.cpu_limit, 0.9);
    }

    #[test]
    fn flags() {
        let opts = options(&[
            "soak",
            "--soak-duration",
            "300",
            "--soak-duration",
            "1.5",
            "--brokers",
            " nats, redis,",
            "--steps",
            "10,20",
            "--heartbeat",
            "0",
            "--server",
            "crosswire",
            "--server-rate-limit",
            "7",
            "--flood-rate-limit",
            "default",
        ]);
        assert_eq!(opts.soak.duration, Duration::from_millis(1_500));
        assert_eq!(opts.brokers, vec![Broker::Nats, Broker::Redis]);
        assert_eq!(opts.connect_steps, vec![10, 20]);
        assert_eq!(opts.pool.heartbeat, None);
        assert_eq!(opts.servers, vec![ServerKind::Crosswire]);
        assert_eq!(opts.server_rate_limit, Some(7));
        assert_eq!(opts.flood.rate_limit, None);
    }

    #[test]
    fn scenario_names() {
        let cli = Cli::try_parse_from(["crosswire-bench", "unicast-targeting"]).expect("parses");
        assert_eq!(cli.scenario.name(), "unicast-targeting");
        assert!(Cli::try_parse_from(["crosswire-bench", "nope"]).is_err());
    }
}
