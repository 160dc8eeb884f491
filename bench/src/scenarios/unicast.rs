//! `unicast`: `toPlayer` from random clients to random ids. crosswire runs as a cluster of
//! `--cluster-nodes` nodes (3 by default) on one broker (Redis, and/or NATS with `--brokers`,
//! one cluster after the other) with the clients spread evenly over them (so with 3 nodes
//! about two thirds of the messages cross nodes); the baseline, a single node holding every client, is a single-node
//! reference, not a like-for-like cluster. Deliveries per server CPU-second (the nodes' CPU
//! summed; the broker's CPU apart), latency and exact per-recipient accounting. Rows on
//! Redis are `crosswire`, rows on NATS `crosswire-nats`.

use std::sync::Arc;
use std::time::Duration;

use crate::load::pick::pick;
use crate::load::{Audience, Pool};
use crate::report::{round, Reporter, Step};
use crate::servers::{Broker, ProcStats, ServerKind, ServerProcess};

use super::cluster::{self, Cluster};
use super::paced::{self, Paced};
use super::Options;

const SCENARIO: &str = "unicast";
/// Node names of the crosswire cluster.
/// Mixed into a step's salt to choose senders independently of recipients.
const SENDER_SALT: u64 = 0x5e4d_e75a_17ed_0001;
/// Longest the nodes may take to route to each other after they start.
const ROUTE_WAIT: Duration = Duration::from_secs(15);
/// What the baseline rows are.
const BASELINE_NOTE: &str =
    "single-node reference: every client on one baseline process, no broker; not a like-for-like cluster";

/// The `command toPlayer` frame that asks the server to push `token` to client `target`.
pub(super) fn to_player(target: usize, token: &str, seq: u64) -> String {
    format!(
        r#"{{"event":"command","payload":{{"action":"toPlayer","toPlayerId":"{target}","msg":"{token}"}},"callbackId":"c{seq}"}}"#
    )
}

/// Runs the unicast steps: on a 3-node cluster for crosswire, on one node for the baseline.
pub(super) async fn run(
    kind: ServerKind,
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    let n = opts.unicast_clients;
    crate::load::limits::check_sockets(n as u64)?;
    match kind {
        ServerKind::Baseline | ServerKind::Floor => {
            eprintln!("{} rows: {BASELINE_NOTE}", kind.name());
            let mut server = super::spawn(kind, opts).await?;
            let (pool, connected) = super::connect(&[server.addr], n, opts, kind).await;
            let result = match connected {
                Ok(()) => steps(std::slice::from_mut(&mut server), None, &pool, opts, out).await,
                Err(error) => Err(error),
            };
            super::stop(server, &pool).await;
            result
        }
        ServerKind::Crosswire => {
            let mut failures = Vec::new();
            for &broker in &opts.brokers {
                if let Err(error) = on_cluster(broker, opts, out).await {
                    failures.push(format!("{}: {error}", broker.name()));
                }
            }
            if failures.is_empty() {
                Ok(())
            } else {
                Err(failures.join("; "))
            }
        }
    }
}

/// The unicast steps on a fresh 3-node crosswire cluster on `broker`.
async fn on_cluster(broker: Broker, opts: &Options, out: &mut Reporter) -> Result<(), String> {
    let n = opts.unicast_clients;
    let kind = ServerKind::Crosswire;
    let names = cluster::node_names(opts.cluster_nodes);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut cluster = Cluster::start(&names, opts, broker).await?;
    let (pool, connected) = super::connect(&cluster.addrs(), n, opts, kind).await;
    let result = match connected {
        Ok(()) => match cluster::wait_routed(&pool, names.len(), ROUTE_WAIT).await {
            Ok(()) => {
                let pid = cluster.broker.pid();
                steps(&mut cluster.nodes, Some((broker, pid)), &pool, opts, out).await
            }
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    cluster.stop(&pool).await;
    result
}

/// One paced step per rate against `servers` (one node, or the cluster's nodes; `broker` is
/// the broker and its pid when there is one).
async fn steps(
    servers: &mut [ServerProcess],
    broker: Option<(Broker, u32)>,
    pool: &Pool,
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    let n = pool.len();
    let nodes = servers.len();
    for &rate in &opts.unicast_rates {
        // The same salt on every server: both get exactly the same senders and recipients.
        let salt = rate.to_bits();
        let target = move |seq: u64| pick(seq, salt, n);
        let sender = move |seq: u64| pick(seq, salt ^ SENDER_SALT, n);
        let step = Paced {
            scenario: SCENARIO,
            label: format!("toPlayer@{rate}"),
            rate,
            audience: Audience::One(Arc::new(target)),
        };
        let pid = broker.map(|(_, pid)| pid);
        let broker_before = pid.map(ProcStats::of).transpose();
        let counters_before = paced::counters_all(servers).await;
        let mut row = paced::run_all(servers, pool, opts, step, |seq, token| {
            (sender(seq), to_player(target(seq), token, seq))
        })
        .await?;
        let broker_after = pid.map(ProcStats::of).transpose();
        let counters_after = paced::counters_all(servers).await;
        for key in ["publish_failures", "sends_to_closed"] {
            let count = |c: &serde_json::Value| c.get(key).and_then(serde_json::Value::as_u64);
            if let (Some(before), Some(after)) = (count(&counters_before), count(&counters_after)) {
                row.set(&format!("server_{key}"), after.saturating_sub(before));
            }
        }
        let crossing = (0..row.sent)
            .filter(|&seq| sender(seq) % nodes != target(seq) % nodes)
            .count();
        row.set("nodes", nodes);
        row.set(
            "cross_node_share",
            round(crossing as f64 / row.sent.max(1) as f64, 3),
        );
        if let (Some((broker, _)), Ok(Some(before)), Ok(Some(after))) =
            (broker, broker_before, broker_after)
        {
            let name = broker.name();
            row.set(
                &format!("{name}_cpu_s"),
                round(after.cpu_seconds - before.cpu_seconds, 2),
            );
            row.set(&format!("{name}_rss_bytes"), after.rss_bytes);
        }
        label(&mut row, broker.map(|(broker, _)| broker), nodes);
        out.emit(row);
    }
    Ok(())
}

/// Marks what the row's topology is, so that nobody reads the ratio as like-for-like, and
/// names crosswire's rows after their broker.
fn label(row: &mut Step, broker: Option<Broker>, nodes: usize) {
    match broker {
        None => {
            row.set("topology", "1 node (reference)");
            row.set("note", BASELINE_NOTE);
        }
        Some(broker) => {
            row.server = broker.crosswire_label().into();
            row.set("broker", broker.name());
            row.set("topology", format!("{nodes} nodes + {}", broker.name()));
            row.set("ratio_note", "ratios are to the single-node reference");
        }
    }
}
