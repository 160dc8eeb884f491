//! A crosswire cluster for the multi-node scenarios: one `redis-server` and N crosswire nodes
//! joined over it, each a child process; and the readiness check that every node reaches
//! every other one through Redis.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::load::{Audience, Pool, StepCtx};
use crate::servers::redis::RedisProcess;
use crate::servers::{ProcStats, ServerKind, ServerProcess, ServerSpec};

use super::Options;

/// Longest one readiness round waits for its messages.
const ROUND: Duration = Duration::from_secs(1);

/// Redis and the crosswire nodes on it.
#[derive(Debug)]
pub(super) struct Cluster {
    /// The broker.
    pub(super) redis: RedisProcess,
    /// The nodes, in the order of the names given to [`Cluster::start`].
    pub(super) nodes: Vec<ServerProcess>,
}

impl Cluster {
    /// Starts Redis, then one crosswire node per name, all joined over that Redis.
    pub(super) async fn start(names: &[&str], opts: &Options) -> Result<Cluster, String> {
        let redis = RedisProcess::start().await?;
        let mut nodes = Vec::with_capacity(names.len());
        for name in names {
            let mut spec = ServerSpec::single(ServerKind::Crosswire);
            spec.name = (*name).to_owned();
            spec.redis = vec![redis.url()];
            spec.threads = opts.server_threads;
            spec.sndbuf = opts.server_sndbuf;
            spec.rate_limit = opts.server_rate_limit;
            match ServerProcess::spawn(&spec).await {
                Ok(node) => nodes.push(node),
                Err(error) => {
                    for node in nodes {
                        node.stop().await;
                    }
                    redis.stop().await;
                    return Err(format!("node {name}: {error}"));
                }
            }
        }
        Ok(Cluster { redis, nodes })
    }

    /// The nodes' WebSocket addresses (a pool connects client i to node `i % nodes`).
    pub(super) fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|node| node.addr).collect()
    }

    /// Redis's CPU and memory now.
    pub(super) fn redis_stats(&self) -> Result<ProcStats, String> {
        let pid = self.redis.pid();
        ProcStats::of(pid).map_err(|e| format!("/proc/{pid} (redis): {e}"))
    }

    /// Stops the nodes (their side holds the TIME_WAIT states), drops the clients, then
    /// stops Redis.
    pub(super) async fn stop(self, pool: &Pool) {
        for node in self.nodes {
            node.stop().await;
        }
        pool.shutdown();
        self.redis.stop().await;
    }
}

/// Waits until a `toPlayer` from a client on each node reaches a client on every other node
/// (clients `0..nodes`, client i being on node i), in rounds of [`ROUND`], at most `timeout`:
/// the nodes have subscribed on Redis and route to each other.
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
