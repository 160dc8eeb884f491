//! The scenarios. Each runs the same load against every selected server kind (baseline
//! first, each in a fresh server process), prints a table on stderr and one JSON line per
//! step on stdout, crosswire rows carrying their ratio to the baseline row of the same run.

mod connect;
mod fanout;
mod measure;
mod options;
mod paced;
mod rpc;

pub(crate) use options::Options;

use crate::load::Pool;
use crate::report::Reporter;
use crate::servers::{ServerKind, ServerProcess, ServerSpec};

/// The scenarios `all` runs, in order.
pub(crate) const ALL: [&str; 3] = ["connect", "fanout", "rpc"];

/// Runs scenario `name` (or `all`) with `opts`.
pub(crate) async fn run(name: &str, opts: &Options) -> Result<(), String> {
    let mut reporter = Reporter::new();
    let names: Vec<&str> = match name {
        "all" => ALL.to_vec(),
        one if ALL.contains(&one) => vec![one],
        other => return Err(format!("unknown scenario {other}; try --help")),
    };
    for name in names {
        reporter.header(name);
        for &kind in &opts.servers {
            let result = match name {
                "connect" => connect::run(kind, opts, &mut reporter).await,
                "fanout" => fanout::run(kind, opts, &mut reporter).await,
                _ => rpc::run(kind, opts, &mut reporter).await,
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
    let mut spec = ServerSpec::single(kind);
    spec.threads = opts.server_threads;
    ServerProcess::spawn(&spec).await
}

/// Stops the server first (its side then holds the TIME_WAIT states, not our source
/// ports), then drops the clients.
async fn stop(server: ServerProcess, pool: &Pool) {
    server.stop().await;
    pool.shutdown();
}
