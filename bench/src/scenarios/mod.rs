//! The scenarios. Each runs the same load against every selected server kind (baseline
//! first, each in a fresh server process; `fanout` runs them side by side, its steps
//! interleaved), prints a table on stderr and one JSON line per step on stdout, crosswire rows
//! carrying their ratio to the baseline row of the same run.

mod cluster;
mod cluster_fanout;
mod connect;
mod cross_node;
mod fanout;
mod flood;
mod measure;
mod options;
mod paced;
mod rpc;
mod sampler;
mod scale;
mod slow_consumer;
mod soak;
mod unicast;
mod unicast_targeting;

pub(crate) use options::{Cli, Options};

use std::net::SocketAddr;

use crate::load::Pool;
use crate::report::Reporter;
use crate::servers::{ServerKind, ServerProcess, ServerSpec};

/// The scenarios `all` runs, in order.
pub(crate) const ALL: [&str; 8] = [
    "connect",
    "fanout",
    "rpc",
    "unicast",
    "cross-node",
    "cluster-fanout",
    "slow-consumer",
    "flood",
];

/// Scenarios that run only when named (not part of `all`).
pub(crate) const EXTRA: [&str; 1] = ["unicast-targeting"];

/// Runs scenario `name` (or `all`) with `opts`. `soak` is not part of `all` (it runs for
/// minutes, against crosswire only), nor is `scale` (several minutes, crosswire only), nor
/// are the [`EXTRA`] ones.
pub(crate) async fn run(name: &str, opts: &Options) -> Result<(), String> {
    let mut reporter = Reporter::new();
    if name == "soak" {
        reporter.header(name);
        return soak::run(opts, &mut reporter).await;
    }
    if name == "scale" {
        reporter.header(name);
        return scale::run(opts, &mut reporter).await;
    }
    let names: Vec<&str> = match name {
        "all" => ALL.to_vec(),
        one if ALL.contains(&one) || EXTRA.contains(&one) => vec![one],
        other => return Err(format!("unknown scenario {other}; try --help")),
    };
    for name in names {
        reporter.header(name);
        if name == "fanout" {
            // Every kind at once, the steps interleaved (see `fanout`).
            if let Err(error) = fanout::run(&opts.servers, opts, &mut reporter).await {
                eprintln!("{name}: {error}");
            }
            reporter.compare(name);
            continue;
        }
        for &kind in &opts.servers {
            let result = match name {
                "connect" => connect::run(kind, opts, &mut reporter).await,
                "rpc" => rpc::run(kind, opts, &mut reporter).await,
                "unicast" => unicast::run(kind, opts, &mut reporter).await,
                "cross-node" => cross_node::run(kind, opts, &mut reporter).await,
                "cluster-fanout" => cluster_fanout::run(kind, opts, &mut reporter).await,
                "flood" => flood::run(kind, opts, &mut reporter).await,
                "unicast-targeting" => unicast_targeting::run(kind, opts, &mut reporter).await,
                _ => slow_consumer::run(kind, opts, &mut reporter).await,
            };
            if let Err(error) = result {
                eprintln!("{name} on {}: {error}", kind.name());
            }
        }
        reporter.compare(name);
    }
    Ok(())
}

/// Starts a fresh server of `kind` for a scenario.
async fn spawn(kind: ServerKind, opts: &Options) -> Result<ServerProcess, String> {
    ServerProcess::spawn(&server_spec(kind, opts)).await
}

/// A single server of `kind` with the command line's `--server-*` settings.
fn server_spec(kind: ServerKind, opts: &Options) -> ServerSpec {
    let mut spec = ServerSpec::single(kind);
    spec.threads = opts.server_threads;
    spec.sndbuf = opts.server_sndbuf;
    spec.rate_limit = opts.server_rate_limit;
    spec.prometheus = opts.server_prometheus;
    spec.ping_interval_secs = opts.server_ping_secs;
    spec
}

/// Connects `n` clients, client i to `addrs[i % addrs.len()]`; the result is an error
/// unless all of them did (the pool is returned either way, to be shut down after the
/// servers).
async fn connect(
    addrs: &[SocketAddr],
    n: usize,
    opts: &Options,
    kind: ServerKind,
) -> (Pool, Result<(), String>) {
    let (pool, connected) = Pool::connect(addrs, n, &opts.pool).await;
    if connected.connected < n {
        let error = format!(
            "only {} of {n} clients connected: {}",
            connected.connected,
            connected.first_error.unwrap_or_default()
        );
        return (pool, Err(error));
    }
    eprintln!(
        "{}: {n} clients connected to {} node(s) in {:.2} s",
        kind.name(),
        addrs.len(),
        connected.elapsed.as_secs_f64()
    );
    (pool, Ok(()))
}

/// Stops the server first (its side then holds the TIME_WAIT states, not our source
/// ports), then drops the clients.
async fn stop(server: ServerProcess, pool: &Pool) {
    server.stop().await;
    pool.shutdown();
}
