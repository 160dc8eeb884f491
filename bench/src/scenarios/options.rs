//! The command-line options every scenario reads.

use std::time::Duration;

use crate::load::PoolConfig;
use crate::servers::{Broker, ServerKind};

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
    /// Generator CPU, in cores, above which a step is marked saturated.
    pub(crate) cpu_limit: f64,
    /// `soak` settings.
    pub(crate) soak: SoakOptions,
    /// `flood` settings.
    pub(crate) flood: FloodOptions,
    /// `unicast-targeting` settings.
    pub(crate) targeting: TargetingOptions,
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

impl Default for TargetingOptions {
    fn default() -> Self {
        TargetingOptions {
            nodes: vec![3, 5],
            clients: 600,
            rate: 2_000.0,
            duration: Duration::from_secs(2),
            burst: 20_000,
        }
    }
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

impl Default for SoakOptions {
    fn default() -> Self {
        SoakOptions {
            clients: 15_000,
            duration: Duration::from_secs(300),
            churn_rate: 25.0,
            churn_clean: 0.5,
            broadcast_rate: 5.0,
            message_bytes: 143,
            ping: Duration::from_secs(10),
        }
    }
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

impl Default for FloodOptions {
    fn default() -> Self {
        FloodOptions {
            clients: 2_000,
            rate: 10.0,
            messages: 60_000,
            message_bytes: 2_048,
            read_rate: 5_000_000,
            stall_timeout: 10.0,
            rate_limit: Some(0),
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            servers: vec![ServerKind::Baseline, ServerKind::Crosswire],
            brokers: vec![Broker::Redis],
            duration: Duration::from_secs(10),
            drain: Duration::from_secs(3),
            connect_steps: vec![10_000],
            hold: Duration::from_secs(30),
            fanout_clients: 2_000,
            broadcast_rates: vec![10.0, 25.0, 50.0, 75.0, 100.0],
            room_rates: vec![100.0, 250.0, 500.0, 1000.0],
            rooms: 10,
            cluster_broadcast_rates: vec![10.0, 50.0],
            cluster_room_rates: vec![100.0],
            rpc_clients: 100,
            rpc_rates: vec![5_000.0, 10_000.0, 20_000.0],
            unicast_clients: 2_000,
            unicast_rates: vec![10_000.0, 20_000.0, 30_000.0, 40_000.0, 60_000.0],
            probe_rate: 1_000.0,
            slow_clients: 2_000,
            slow_rate: 50.0,
            slow_duration: Duration::from_secs(40),
            slow_rcvbuf: 4096,
            pool: PoolConfig::default(),
            server_sndbuf: 0,
            server_threads: 0,
            server_rate_limit: None,
            cpu_limit: 0.9,
            soak: SoakOptions::default(),
            flood: FloodOptions::default(),
            targeting: TargetingOptions::default(),
        }
    }
}
