//! A crosswire cluster for the multi-node scenarios: one broker (`redis-server` or
//! `nats-server`) and N crosswire nodes joined over it, each a child process; and the
//! readiness check that every node reaches every other one through the broker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::load::{Audience, Pool, StepCtx};
use crate::servers::{Broker, BrokerProcess, ProcStats, ServerKind, ServerProcess, ServerSpec};

use super::Options;

/// Longest one readiness round waits for its messages.
const ROUND: Duration = Duration::from_secs(1);

/// A broker and the crosswire nodes on it.
#[derive(Debug)]
pub(super) struct Cluster {
    /// The broker.
    pub(super) broker: BrokerProcess,
    /// The nodes, in the order of the names given to [`Cluster::start`].
    pub(super) nodes: Vec<ServerProcess>,
}

impl Cluster {
    /// Starts a broker of kind `broker`, then one crosswire node per name, all joined over
    /// that broker.
    pub(super) async fn start(
        names: &[&str],
        opts: &Options,
        broker: Broker,
    ) -> Result<Cluster, String> {
        Self::start_with(names, opts, broker, |_| {}).await
    }

    /// Like [`Cluster::start`], with `configure` applied to every node's spec last.
    pub(super) async fn start_with(
        names: &[&str],
        opts: &Options,
        broker: Broker,
        configure: impl Fn(&mut ServerSpec),
    ) -> Result<Cluster, String> {
        let process = BrokerProcess::start(broker).await?;
        let mut nodes = Vec::with_capacity(names.len());
        for name in names {
            let mut spec = super::server_spec(ServerKind::Crosswire, opts);
            spec.name = (*name).to_owned();
            match broker {
                Broker::Redis => spec.redis = vec![process.url()],
                Broker::Nats => spec.nats = Some(process.url()),
            }
            configure(&mut spec);
            match ServerProcess::spawn(&spec).await {
                Ok(node) => nodes.push(node),
                Err(error) => {
                    for node in nodes {
                        node.stop().await;
                    }
                    process.stop().await;
                    return Err(format!("node {name}: {error}"));
                }
            }
        }
        Ok(Cluster {
            broker: process,
            nodes,
        })
    }

    /// The nodes' WebSocket addresses (a pool connects client i to node `i % nodes`).
    pub(super) fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|node| node.addr).collect()
    }

    /// The broker's CPU and memory now.
    pub(super) fn broker_stats(&self) -> Result<ProcStats, String> {
        let pid = self.broker.pid();
        let name = self.broker.kind().name();
        ProcStats::of(pid).map_err(|e| format!("/proc/{pid} ({name}): {e}"))
    }

    /// Stops the nodes (their side holds the TIME_WAIT states), drops the clients, then
    /// stops the broker.
    pub(super) async fn stop(self, pool: &Pool) {
        for node in self.nodes {
            node.stop().await;
        }
        pool.shutdown();
        self.broker.stop().await;
    }
}

/// Waits until a `toPlayer` from a client on each node reaches a client on every other node
/// (clients `0..nodes`, client i being on node i), in rounds of [`ROUND`], at most `timeout`:
/// the nodes have subscribed on the broker and route to each other.
pub(super) async fn wait_routed(
    pool: &Pool,
    nodes: usize,
    timeout: Duration,
) -> Result<(), String> {
    if pool.len() < nodes {
        return Err(format!("{} clients cannot cover {nodes} nodes", pool.len()));
    }
    let pairs: Vec<(usize, usize)> = (0..nodes)
        .flat_map(|s| (0..nodes).filter(move |&t| t != s).map(move |t| (s, t)))
        .collect();
    let targets: Arc<Vec<usize>> = Arc::new(pairs.iter().map(|&(_, t)| t).collect());
    let deadline = Instant::now() + timeout;
    loop {
        let to = targets.clone();
        let ctx = StepCtx::new(Audience::One(Arc::new(move |seq| {
            to.get(seq as usize).copied().unwrap_or(usize::MAX)
        })));
        pool.begin_step(&ctx);
        for (seq, &(sender, target)) in pairs.iter().enumerate() {
            let token = crate::load::token::delivery(ctx.id, seq as u64, 0);
            pool.send(
                sender,
                super::unicast::to_player(target, &token, seq as u64),
            );
        }
        let all = ctx.wait_for(pairs.len() as u64, ROUND).await;
        let _ = pool.finish_step(|_| 0);
        if all {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the {nodes} nodes did not route toPlayer to each other within {timeout:?}"
            ));
        }
    }
}

/// Names of the `n` nodes of a cluster: `a`, `b`, `c`, ...
pub(super) fn node_names(n: usize) -> Vec<String> {
    (b'a'..=b'z')
        .take(n)
        .map(|c| char::from(c).to_string())
        .collect()
}
