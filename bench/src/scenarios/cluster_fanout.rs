//! `cluster-fanout`: fan-out across nodes. crosswire runs as `--cluster-nodes` nodes (3 by
//! default) on one broker (Redis, and/or NATS with `--brokers`, one fresh cluster after the
//! other) with `--clients` clients spread evenly over them (client i on node `i % nodes`);
//! every `broadcast` and `toRoom` is sent by a client of node `a`, so all but one node's share
//! of each fan-out's recipients are on the other nodes. Client i joins room `i % rooms`, so every room has members on every node. Every
//! client counts what it receives (lost / duplicated / misdelivered as in `fanout`);
//! deliveries per server CPU-second is over the nodes' CPU summed, the broker's CPU
//! apart. crosswire only (the baseline has no second node). Rows on Redis are `crosswire`,
//! rows on NATS `crosswire-nats`.

use std::time::Duration;

use crate::load::{Audience, Pool};
use crate::report::{round, Reporter, Step};
use crate::servers::{Broker, ProcStats, ServerKind, ServerProcess};

use super::cluster::{self, Cluster};
use super::paced::{self, Paced};
use super::Options;

const SCENARIO: &str = "cluster-fanout";
/// Node names of the crosswire cluster; the senders are on the first.
/// Longest the nodes may take to route to each other after they start.
const ROUTE_WAIT: Duration = Duration::from_secs(15);

/// Runs the steps on a 3-node cluster per broker (crosswire only).
pub(super) async fn run(
    kind: ServerKind,
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    if kind != ServerKind::Crosswire {
        eprintln!(
            "{}: skipped (a single node; cross-node fan-out needs a cluster)",
            kind.name()
        );
        return Ok(());
    }
    let n = opts.fanout_clients;
    let nodes = opts.cluster_nodes;
    if n < nodes {
        return Err(format!(
            "--clients {n}: at least one client per node needed"
        ));
    }
    crate::load::limits::check_sockets(n as u64)?;
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

/// The steps on a fresh crosswire cluster of `--cluster-nodes` nodes on `broker`.
async fn on_cluster(broker: Broker, opts: &Options, out: &mut Reporter) -> Result<(), String> {
    let n = opts.fanout_clients;
    let nodes = opts.cluster_nodes;
    let names = cluster::node_names(nodes);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut cluster = Cluster::start(&names, opts, broker).await?;
    let (pool, connected) = super::connect(&cluster.addrs(), n, opts, ServerKind::Crosswire).await;
    let result = match connected {
        Ok(()) => match cluster::wait_routed(&pool, nodes, ROUTE_WAIT).await {
            Ok(()) => {
                let pid = cluster.broker.pid();
                steps(&mut cluster.nodes, broker, pid, &pool, opts, out).await
            }
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    cluster.stop(&pool).await;
    result
}

/// The client that sends message `seq` of `clients` spread over `nodes`: the clients of node
/// `a` (indices `0, nodes, 2 × nodes, ...`) in turn.
fn sender(seq: u64, clients: usize, nodes: usize) -> usize {
    let on_first = clients.div_ceil(nodes) as u64;
    (seq % on_first) as usize * nodes
}

async fn steps(
    nodes: &mut [ServerProcess],
    broker: Broker,
    broker_pid: u32,
    pool: &Pool,
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    let n = pool.len();
    let node_count = nodes.len();
    for &rate in &opts.cluster_broadcast_rates {
        let step = Paced {
            scenario: SCENARIO,
            label: format!("broadcast@{rate}"),
            rate,
            audience: Audience::All,
        };
        let before = ProcStats::of(broker_pid);
        let mut row = paced::run_all(nodes, pool, opts, step, |seq, token| {
            let text = format!(
                r#"{{"event":"command","payload":{{"action":"broadcast","msg":"{token}"}},"callbackId":"c{seq}"}}"#
            );
            (sender(seq, n, node_count), text)
        })
        .await?;
        label(&mut row, broker, broker_pid, before, nodes.len());
        out.emit(row);
    }
    if opts.cluster_room_rates.is_empty() {
        return Ok(());
    }
    let rooms = opts.rooms.max(1);
    super::fanout::join_rooms(pool, rooms).await?;
    for &rate in &opts.cluster_room_rates {
        let step = Paced {
            scenario: SCENARIO,
            label: format!("toRoom@{rate}"),
            rate,
            audience: Audience::Group { groups: rooms },
        };
        let before = ProcStats::of(broker_pid);
        let mut row = paced::run_all(nodes, pool, opts, step, |seq, token| {
            let room = seq % rooms as u64;
            let text = format!(
                r#"{{"event":"command","payload":{{"action":"toRoom","roomId":"room{room}","msg":"{token}"}},"callbackId":"c{seq}"}}"#
            );
            (sender(seq, n, node_count), text)
        })
        .await?;
        row.set("rooms", rooms);
        label(&mut row, broker, broker_pid, before, nodes.len());
        out.emit(row);
    }
    Ok(())
}

/// Names the row after its broker and adds the broker's CPU since `before`.
fn label(
    row: &mut Step,
    broker: Broker,
    pid: u32,
    before: std::io::Result<ProcStats>,
    nodes: usize,
) {
    let name = broker.name();
    row.server = broker.crosswire_label().into();
    row.set("broker", name);
    row.set("nodes", nodes);
    row.set("topology", format!("{nodes} nodes + {name}"));
    row.set("senders", "clients of node a");
    if let (Ok(before), Ok(after)) = (before, ProcStats::of(pid)) {
        row.set(
            &format!("{name}_cpu_s"),
            round(after.cpu_seconds - before.cpu_seconds, 2),
        );
        row.set(&format!("{name}_rss_bytes"), after.rss_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_are_on_the_first_node() {
        for nodes in [2, 3, 5] {
            for n in [nodes, nodes + 1, 5, 2000] {
                for seq in 0..5000 {
                    let s = sender(seq, n, nodes);
                    assert!(s < n, "n {n} seq {seq} -> {s}");
                    assert_eq!(s % nodes, 0);
                }
            }
        }
    }
}
