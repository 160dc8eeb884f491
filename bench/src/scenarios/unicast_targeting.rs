//! `unicast-targeting`: what routing `to_socket_id` pushes to the owning node's inbox saves,
//! against the shared `ws:private_socket` channel every node receives. For each cluster size
//! of `--targeting-nodes` (default 3 and 5) and each broker of `--brokers` (default Redis),
//! two fresh clusters run side by side in the same run, each on its own broker process:
//! every node of one built with `targeted_unicast(false)` ("before"), of the other with
//! `targeted_unicast(true)` ("after", crosswire's default). Nodes are child processes (as in
//! `unicast`); `--targeting-clients` real WebSocket clients per cluster are spread evenly
//! over its nodes (client i on node `i % N`, bound by `?id=i`), and every message is a demo
//! `command toPlayer` sent by a client of node `a` to a client of another node, so every push
//! crosses nodes. Before measuring, the scenario waits until node `a`'s directory knows every
//! remote client (`Node::directory_len`).
//!
//! The two clusters are then visited in turn, [`ROUNDS`] times each in ABBA order (the idle
//! one only answers heartbeats), each visit two steps:
//! - a paced step (`--targeting-rate` per second for `--targeting-duration`): the nodes
//!   that handled each unicast (the nodes' `unicast_envelopes` summed, over the unicasts
//!   sent; expected N−1 before, 1 after) and the CPU per 1,000 unicasts of the nodes
//!   (summed, from `/proc`) and of the broker, totals over the visits;
//! - a burst (`--targeting-burst` commands queued at once): pushes delivered per second,
//!   from the first send to the last delivery; the median over the visits.
//!
//! Every client counts what it receives (lost / duplicated / misdelivered as in `unicast`).
//! A summary table gives after/before ratios per cluster size. crosswire only; not part of
//! `all` (about a minute).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::load::pick::pick;
use crate::load::{Audience, Pool};
use crate::report::{round, Reporter, Step};
use crate::servers::{Broker, ServerKind, ServerProcess};

use super::cluster::{self, Cluster};
use super::paced::{self, Paced};
use super::Options;

const SCENARIO: &str = "unicast-targeting";
/// Node names; the senders are the clients of the first.
const NAMES: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];
/// Longest the nodes may take to route to each other after they start.
const ROUTE_WAIT: Duration = Duration::from_secs(15);
/// Longest node `a`'s directory may take to learn every remote client.
const DIRECTORY_WAIT: Duration = Duration::from_secs(15);
/// Send rate of the burst: high enough that the pacer never sleeps (all queued at once).
const BURST_RATE: f64 = 1e7;
/// Shortest loss deadline of the burst (it drains a queue of `--targeting-burst` pushes).
const BURST_DRAIN: Duration = Duration::from_secs(15);
/// Visits of each cluster (ABBA order over pairs of rounds).
const ROUNDS: usize = 4;
/// Salt of the recipients.
const TARGET_SALT: u64 = 0x7a26_e7ed_0000_0001;

/// One cluster's figures.
#[derive(Debug, Clone)]
struct Cell {
    broker: Broker,
    nodes: usize,
    targeted: bool,
    /// Nodes' `unicast_envelopes` (summed) per unicast sent, paced step.
    handled: f64,
    /// Nodes' CPU (summed) per 1,000 unicasts, ms, paced step.
    node_cpu_ms_per_1k: f64,
    /// Broker CPU per 1,000 unicasts, ms, paced step.
    broker_cpu_ms_per_1k: Option<f64>,
    /// Pushes delivered per second in the bursts, median.
    burst_per_s: f64,
    /// Whether every expected push arrived, in both steps.
    complete: bool,
}

/// Runs the pairs of clusters (crosswire only).
pub(super) async fn run(
    kind: ServerKind,
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    if kind != ServerKind::Crosswire {
        eprintln!(
            "{}: skipped (a single node; targeted unicast needs a cluster)",
            kind.name()
        );
        return Ok(());
    }
    let t = &opts.targeting;
    for &nodes in &t.nodes {
        if !(2..=NAMES.len()).contains(&nodes) {
            return Err(format!(
                "--targeting-nodes {nodes}: between 2 and {} nodes",
                NAMES.len()
            ));
        }
        if t.clients < 2 * nodes {
            return Err(format!(
                "--targeting-clients {}: at least two per node for {nodes} nodes",
                t.clients
            ));
        }
    }
    crate::load::limits::check_sockets(2 * t.clients as u64)?;
    let mut cells = Vec::new();
    let mut failures = Vec::new();
    for &broker in &opts.brokers {
        for &nodes in &t.nodes {
            match pair(broker, nodes, opts, out).await {
                Ok(pair) => cells.extend(pair),
                Err(error) => failures.push(format!("{} {nodes} nodes: {error}", broker.name())),
            }
        }
    }
    summary(&cells);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

fn mode(targeted: bool) -> &'static str {
    if targeted {
        "after"
    } else {
        "before"
    }
}

/// The client that sends message `seq`: the clients of node `a` (indices `0, N, 2N, ...`)
/// in turn.
fn sender(seq: u64, clients: usize, nodes: usize) -> usize {
    let on_first = clients.div_ceil(nodes) as u64;
    (seq % on_first) as usize * nodes
}

/// Clients not on node `a` (client i is on node `i % nodes`).
fn remote_count(clients: usize, nodes: usize) -> usize {
    clients - clients.div_ceil(nodes)
}

/// The `r`-th client (in index order) that is not on node `a`.
fn remote(r: usize, nodes: usize) -> usize {
    r / (nodes - 1) * nodes + 1 + r % (nodes - 1)
}

/// One cluster with its clients, ready to measure, and what was measured on it so far.
struct Arm {
    targeted: bool,
    cluster: Cluster,
    pool: Pool,
    /// Node `a`'s directory size when measuring started.
    directory: u64,
    /// Unicasts sent in the paced steps.
    sent: u64,
    /// `unicast_envelopes` of the nodes over the paced steps.
    envelopes: u64,
    /// The nodes' CPU over the paced steps, seconds.
    node_cpu_s: f64,
    /// The broker's CPU over the paced steps, seconds.
    broker_cpu_s: Option<f64>,
    /// Pushes per second of each burst.
    bursts: Vec<f64>,
    /// Every expected push arrived, once, at its recipient only.
    complete: bool,
}

/// Starts a cluster of `nodes` nodes with `targeted_unicast(targeted)` and its clients, and
/// waits until it routes and node `a`'s directory knows every remote client.
async fn start_arm(
    broker: Broker,
    nodes: usize,
    targeted: bool,
    opts: &Options,
) -> Result<Arm, String> {
    let n = opts.targeting.clients;
    let cluster = Cluster::start_with(&NAMES[..nodes], opts, broker, |spec| {
        spec.targeted_unicast = targeted;
    })
    .await?;
    let (pool, connected) = super::connect(&cluster.addrs(), n, opts, ServerKind::Crosswire).await;
    let mut arm = Arm {
        targeted,
        cluster,
        pool,
        directory: 0,
        sent: 0,
        envelopes: 0,
        node_cpu_s: 0.0,
        broker_cpu_s: Some(0.0),
        bursts: Vec::new(),
        complete: true,
    };
    let ready = match connected {
        Ok(()) => match cluster::wait_routed(&arm.pool, nodes, ROUTE_WAIT).await {
            Ok(()) => {
                let remotes = remote_count(n, nodes);
                wait_directory(&mut arm.cluster.nodes[0], remotes, DIRECTORY_WAIT).await
            }
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    match ready {
        Ok(len) => {
            arm.directory = len;
            Ok(arm)
        }
        Err(error) => {
            arm.cluster.stop(&arm.pool).await;
            Err(format!("{}: {error}", mode(targeted)))
        }
    }
}

/// Both clusters of `nodes` nodes (before, after) up at once, measured in turn in
/// [`ROUNDS`] rounds, before-after then after-before (ABBA), so that a drift of the
/// machine's load weighs on both alike.
async fn pair(
    broker: Broker,
    nodes: usize,
    opts: &Options,
    out: &mut Reporter,
) -> Result<Vec<Cell>, String> {
    let before = start_arm(broker, nodes, false, opts).await?;
    let after = match start_arm(broker, nodes, true, opts).await {
        Ok(arm) => arm,
        Err(error) => {
            before.cluster.stop(&before.pool).await;
            return Err(error);
        }
    };
    let mut arms = [before, after];
    let mut result = Ok(());
    'rounds: for round in 0..ROUNDS {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            if let Err(error) = visit(&mut arms[i], broker, round, opts, out).await {
                result = Err(format!("{}: {error}", mode(arms[i].targeted)));
                break 'rounds;
            }
        }
    }
    let cells = arms
        .iter()
        .map(|arm| Cell {
            broker,
            nodes,
            targeted: arm.targeted,
            handled: arm.envelopes as f64 / arm.sent.max(1) as f64,
            node_cpu_ms_per_1k: arm.node_cpu_s * 1e6 / arm.sent.max(1) as f64,
            broker_cpu_ms_per_1k: arm
                .broker_cpu_s
                .map(|cpu| round(cpu * 1e6 / arm.sent.max(1) as f64, 1)),
            burst_per_s: median(&arm.bursts),
            complete: arm.complete,
        })
        .collect();
    for arm in arms {
        arm.cluster.stop(&arm.pool).await;
    }
    result.map(|()| cells)
}

/// The median of `xs`, the upper of the two middle values for an even count (0 if empty).
fn median(xs: &[f64]) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

/// One visit of `arm` in round `round`: a paced step (handled per unicast, CPU), then a
/// burst (throughput).
async fn visit(
    arm: &mut Arm,
    broker: Broker,
    round_no: usize,
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    let n = arm.pool.len();
    let nodes = arm.cluster.nodes.len();
    let remotes = remote_count(n, nodes);
    let t = &opts.targeting;
    let salt = TARGET_SALT ^ (nodes as u64) << 8 ^ round_no as u64;
    let target = move |seq: u64| remote(pick(seq, salt, remotes), nodes);
    let tag = format!("{nodes}n-{}-r{}", mode(arm.targeted), round_no + 1);

    // Paced: handled per unicast and CPU per 1,000.
    let step = Paced {
        scenario: SCENARIO,
        label: format!("{tag}@{}", t.rate),
        rate: t.rate,
        audience: Audience::One(Arc::new(target)),
    };
    let mut paced_opts = opts.clone();
    paced_opts.duration = t.duration;
    let (mut row, counts) =
        step_with_counts(&mut arm.cluster, &arm.pool, &paced_opts, step, n, target).await?;
    arm.sent += row.sent;
    arm.envelopes += counts.envelopes;
    arm.node_cpu_s += row.server_cpu_s;
    arm.broker_cpu_s = match (arm.broker_cpu_s, counts.broker_cpu_s) {
        (Some(sum), Some(cpu)) => Some(sum + cpu),
        _ => None,
    };
    row.set(
        "node_cpu_ms_per_1k",
        round(row.server_cpu_s * 1e6 / row.sent.max(1) as f64, 1),
    );
    if let Some(cpu) = counts.broker_cpu_s {
        row.set(
            &format!("{}_cpu_ms_per_1k", broker.name()),
            round(cpu * 1e6 / row.sent.max(1) as f64, 1),
        );
    }
    label(
        &mut row,
        broker,
        nodes,
        arm.targeted,
        arm.directory,
        &counts,
    );
    arm.complete &= row.lost == 0 && row.duplicated == 0 && row.misdelivered == 0;
    out.emit(row);

    // Burst: throughput.
    let step = Paced {
        scenario: SCENARIO,
        label: format!("{tag}-burst"),
        rate: BURST_RATE,
        audience: Audience::One(Arc::new(target)),
    };
    let mut burst_opts = opts.clone();
    burst_opts.duration = Duration::from_secs_f64(t.burst as f64 / BURST_RATE);
    burst_opts.drain = opts.drain.max(BURST_DRAIN);
    let (mut row, counts) =
        step_with_counts(&mut arm.cluster, &arm.pool, &burst_opts, step, n, target).await?;
    let wall = row
        .extra
        .get("step_wall_s")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0);
    let burst_per_s = row.deliveries as f64 / wall.max(1e-9);
    arm.bursts.push(burst_per_s);
    // The pacer's lateness is meaningless here (everything is due at once); the burst is
    // limited by the whole machine by design.
    row.rate = None;
    row.saturated = false;
    row.saturated_reason = None;
    row.deliveries_per_s = round(burst_per_s, 1);
    row.set(
        "burst_note",
        "all sends queued at once; deliveries_per_s = deliveries / (first send .. last delivery)",
    );
    label(
        &mut row,
        broker,
        nodes,
        arm.targeted,
        arm.directory,
        &counts,
    );
    arm.complete &= row.lost == 0 && row.duplicated == 0 && row.misdelivered == 0;
    out.emit(row);
    Ok(())
}

/// Counters read around a step.
#[derive(Debug, Clone, Default)]
struct Counts {
    /// `unicast_envelopes` received by each node during the step.
    envelopes_per_node: Vec<u64>,
    /// Their sum.
    envelopes: u64,
    /// `unicast_forwards` of the nodes, summed.
    forwards: u64,
    /// The broker's CPU over the step, seconds.
    broker_cpu_s: Option<f64>,
}

/// Runs `step` (a `toPlayer` from a client of node `a` to `target(seq)`) and reads the
/// nodes' unicast counters and the broker's CPU around it.
async fn step_with_counts(
    cluster: &mut Cluster,
    pool: &Pool,
    opts: &Options,
    step: Paced,
    clients: usize,
    target: impl Fn(u64) -> usize,
) -> Result<(Step, Counts), String> {
    let nodes = cluster.nodes.len();
    let broker_before = cluster.broker_stats();
    let before = node_counters(&mut cluster.nodes).await?;
    let row = paced::run_all(&mut cluster.nodes, pool, opts, step, |seq, token| {
        (
            sender(seq, clients, nodes),
            super::unicast::to_player(target(seq), token, seq),
        )
    })
    .await?;
    let after = node_counters(&mut cluster.nodes).await?;
    let broker_after = cluster.broker_stats();
    let envelopes_per_node: Vec<u64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.0.saturating_sub(b.0))
        .collect();
    let counts = Counts {
        envelopes: envelopes_per_node.iter().sum(),
        envelopes_per_node,
        forwards: before
            .iter()
            .zip(&after)
            .map(|(b, a)| a.1.saturating_sub(b.1))
            .sum(),
        broker_cpu_s: match (broker_before, broker_after) {
            (Ok(b), Ok(a)) => Some(a.cpu_seconds - b.cpu_seconds),
            _ => None,
        },
    };
    Ok((row, counts))
}

/// `(unicast_envelopes, unicast_forwards)` of each node.
async fn node_counters(nodes: &mut [ServerProcess]) -> Result<Vec<(u64, u64)>, String> {
    let mut out = Vec::with_capacity(nodes.len());
    for node in nodes.iter_mut() {
        let counters = node.counters().await?;
        let field = |key: &str| {
            counters
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .ok_or(format!("the node's counters have no {key}: {counters}"))
        };
        out.push((field("unicast_envelopes")?, field("unicast_forwards")?));
    }
    Ok(out)
}

/// Waits until `node`'s directory knows at least `expected` remote socket ids; returns its
/// size then.
async fn wait_directory(
    node: &mut ServerProcess,
    expected: usize,
    timeout: Duration,
) -> Result<u64, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let counters = node.counters().await?;
        let len = counters
            .get("directory_len")
            .and_then(serde_json::Value::as_u64)
            .ok_or("the node's counters have no directory_len")?;
        if len >= expected as u64 {
            return Ok(len);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "node a's directory knew {len} of {expected} remote socket ids after {timeout:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Names the row after its broker and mode, and adds the unicast counters.
fn label(
    row: &mut Step,
    broker: Broker,
    nodes: usize,
    targeted: bool,
    directory: u64,
    counts: &Counts,
) {
    row.server = broker.crosswire_label().into();
    row.set("broker", broker.name());
    row.set("nodes", nodes);
    row.set("topology", format!("{nodes} nodes + {}", broker.name()));
    row.set("targeted_unicast", targeted);
    row.set("mode", mode(targeted));
    row.set(
        "senders",
        "clients of node a, to clients of the other nodes",
    );
    row.set("directory_len_node_a", directory);
    row.set("unicast_envelopes", counts.envelopes);
    row.set(
        "unicast_envelopes_per_node",
        counts.envelopes_per_node.clone(),
    );
    row.set("unicast_forwards", counts.forwards);
    row.set(
        "nodes_handling_each_unicast",
        round(counts.envelopes as f64 / row.sent.max(1) as f64, 3),
    );
    if let Some(cpu) = counts.broker_cpu_s {
        row.set(&format!("{}_cpu_s", broker.name()), round(cpu, 2));
    }
}

/// Prints the after/before comparison per broker and cluster size on stderr, and one JSON
/// line each on stdout.
fn summary(cells: &[Cell]) {
    let pairs: Vec<(&Cell, &Cell)> = cells
        .iter()
        .filter(|c| !c.targeted)
        .filter_map(|before| {
            cells
                .iter()
                .find(|c| c.targeted && c.nodes == before.nodes && c.broker == before.broker)
                .map(|after| (before, after))
        })
        .collect();
    if pairs.is_empty() {
        return;
    }
    eprintln!("-- {SCENARIO}: before = targeted_unicast(false), after = (true); same run --");
    eprintln!(
        "{:<7} {:>5} {:>15} {:>26} {:>26} {:>27} {:>8}",
        "broker",
        "nodes",
        "handled/unicast",
        "node CPU ms/1k unicasts",
        "broker CPU ms/1k unicasts",
        "burst pushes/s",
        "complete"
    );
    eprintln!(
        "{:<7} {:>5} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>7} {:>8}",
        "",
        "",
        "before",
        "after",
        "before",
        "after",
        "a/b",
        "before",
        "after",
        "a/b",
        "before",
        "after",
        "a/b",
        ""
    );
    for (before, after) in pairs {
        let ratio = |a: f64, b: f64| (b > 0.0).then(|| round(a / b, 3));
        let cpu_ratio = ratio(after.node_cpu_ms_per_1k, before.node_cpu_ms_per_1k);
        let broker_ratio = match (after.broker_cpu_ms_per_1k, before.broker_cpu_ms_per_1k) {
            (Some(a), Some(b)) => ratio(a, b),
            _ => None,
        };
        let burst_ratio = ratio(after.burst_per_s, before.burst_per_s);
        let complete = before.complete && after.complete;
        let fmt = |x: Option<f64>, d: usize| x.map_or_else(|| "-".into(), |x| format!("{x:.d$}"));
        eprintln!(
            "{:<7} {:>5} {:>7.2} {:>7.2} {:>8.1} {:>8.1} {:>8} {:>8} {:>8} {:>8} {:>9.0} {:>9.0} {:>7} {:>8}",
            before.broker.name(),
            before.nodes,
            before.handled,
            after.handled,
            before.node_cpu_ms_per_1k,
            after.node_cpu_ms_per_1k,
            fmt(cpu_ratio, 2),
            fmt(before.broker_cpu_ms_per_1k, 1),
            fmt(after.broker_cpu_ms_per_1k, 1),
            fmt(broker_ratio, 2),
            before.burst_per_s,
            after.burst_per_s,
            fmt(burst_ratio, 2),
            if complete { "yes" } else { "NO" },
        );
        let line = serde_json::json!({
            "scenario": SCENARIO,
            "server": before.broker.crosswire_label(),
            "step": format!("{}n-after/before", before.nodes),
            "broker": before.broker.name(),
            "nodes": before.nodes,
            "handled_per_unicast_before": round(before.handled, 3),
            "handled_per_unicast_after": round(after.handled, 3),
            "node_cpu_ms_per_1k_before": round(before.node_cpu_ms_per_1k, 1),
            "node_cpu_ms_per_1k_after": round(after.node_cpu_ms_per_1k, 1),
            "ratio_node_cpu_per_unicast": cpu_ratio,
            "broker_cpu_ms_per_1k_before": before.broker_cpu_ms_per_1k,
            "broker_cpu_ms_per_1k_after": after.broker_cpu_ms_per_1k,
            "ratio_broker_cpu_per_unicast": broker_ratio,
            "burst_pushes_per_s_before": round(before.burst_per_s, 0),
            "burst_pushes_per_s_after": round(after.burst_per_s, 0),
            "ratio_burst_pushes_per_s": burst_ratio,
            "complete": complete,
        });
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_are_on_node_a_and_targets_elsewhere() {
        for nodes in [2, 3, 5] {
            for clients in [2 * nodes, 600, 601, 1003] {
                let remotes = remote_count(clients, nodes);
                let all: Vec<usize> = (0..remotes).map(|r| remote(r, nodes)).collect();
                let expected: Vec<usize> = (0..clients).filter(|i| i % nodes != 0).collect();
                assert_eq!(all, expected, "{nodes} nodes, {clients} clients");
                for seq in 0..2000 {
                    let s = sender(seq, clients, nodes);
                    assert!(s < clients);
                    assert_eq!(s % nodes, 0);
                }
            }
        }
    }
}
