//! The command-line options every scenario reads.

use std::time::Duration;

use crate::load::PoolConfig;
use crate::servers::ServerKind;

/// Scenario settings (see `crosswire-bench --help`).
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Server kinds to run, in order (baseline first so crosswire rows can carry ratios).
    pub(crate) servers: Vec<ServerKind>,
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
    /// `rpc`: clients.
    pub(crate) rpc_clients: usize,
    /// `rpc`: open-loop rates per second (a closed-loop step runs first).
    pub(crate) rpc_rates: Vec<f64>,
    /// How clients connect (source addresses, concurrency, heartbeat).
    pub(crate) pool: PoolConfig,
    /// Server worker threads (0 = one per core).
    pub(crate) server_threads: usize,
    /// Generator CPU, in cores, above which a step is marked saturated.
    pub(crate) cpu_limit: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            servers: vec![ServerKind::Baseline, ServerKind::Crosswire],
            duration: Duration::from_secs(10),
            drain: Duration::from_secs(3),
            connect_steps: vec![10_000],
            hold: Duration::from_secs(30),
            fanout_clients: 2_000,
            broadcast_rates: vec![10.0, 25.0, 50.0, 75.0, 100.0],
            room_rates: vec![100.0, 250.0, 500.0, 1000.0],
            rooms: 10,
            rpc_clients: 100,
            rpc_rates: vec![5_000.0, 10_000.0, 20_000.0],
            pool: PoolConfig::default(),
            server_threads: 0,
            cpu_limit: 0.9,
        }
    }
}
