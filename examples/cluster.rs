//! The default demo: several crosswire nodes in one process on the in-memory broker, each on
//! its own port, all serving the demo event set (`crosswire::demo`). Clients on different
//! ports reach each other through the cluster.
//!
//! Run with `cargo run --example cluster` (3 nodes on 127.0.0.1:9000..9002), or
//! `cargo run --example cluster -- --nodes 5 --port 9100`.
//!
//! On Redis, one node per process (start several, each with its own name and port):
//! `cargo run --features redis --example cluster -- --broker redis --name a --port 9000`
//! (then `b` on 9001, `c` on 9002). `--redis redis://HOST:PORT` is repeatable for several
//! independent Redis servers; the default is `redis://127.0.0.1:6379`.
//!
//! On NATS likewise: `cargo run --features nats --example cluster -- --broker nats --name a
//! --port 9000` (then `b` on 9001, `c` on 9002). `--nats nats://HOST:PORT` is repeatable for
//! several servers of one NATS cluster; the default is `nats://127.0.0.1:4222`.
//!
//! Then connect clients, e.g. with websocat:
//! `websocat 'ws://127.0.0.1:9000/?id=1'` and `websocat 'ws://127.0.0.1:9001/?id=2'`, and send
//! `{"event":"command","payload":{"action":"toPlayer","toPlayerId":"2","msg":"hi"},"callbackId":"c1"}`.
//!
//! To watch the cluster from any client, send
//! `{"event":"stats","payload":{},"callbackId":"s1"}`: the reply lists every live node with its
//! clients, the total, and the sizes of the `chat` rooms, e.g.
//! `{"nodes":[{"name":"a","clients":1},{"name":"b","clients":2}],"clients":3,"rooms":{"r1":2}}`
//! (plus `"missing":["c"]` when a node did not answer within 2 s).
//!
//! `--announce-ms N` sets every node's announce interval (default 5000): a node that crashed
//! is forgotten after 3 missed announcements, so a short interval makes `stats` follow
//! nodes that come and go quickly.

use std::error::Error;
use std::io::IsTerminal;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crosswire::memory::MemoryHub;
use crosswire::ws::{WsConfig, WsServer};
use crosswire::{system, Node, NodeBuilder};

/// Several crosswire nodes serving the demo event set: in one process on the in-memory broker,
/// or one node per process on Redis or NATS.
#[derive(Parser)]
#[command(name = "cluster", args_override_self = true)]
struct Args {
    /// Nodes in this process (memory broker), on ports P, P+1, ...
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = at_least_one::<u16>)]
    nodes: u16,
    /// Port of the first node
    #[arg(long, value_name = "P", default_value_t = 9000)]
    port: u16,
    /// Broker connecting the nodes
    #[arg(long, value_enum, default_value_t = Broker::Memory)]
    broker: Broker,
    /// This process's node (redis, nats; default node-<port>)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// A Redis server (repeatable, for several independent servers; default
    /// redis://127.0.0.1:6379)
    #[arg(long = "redis", value_name = "URL")]
    redis: Vec<String>,
    /// A server of the NATS cluster (repeatable; default nats://127.0.0.1:4222)
    #[arg(long = "nats", value_name = "URL")]
    nats: Vec<String>,
    /// Announce interval of every node, in ms (default 5000); a crashed node is forgotten
    /// after 3 missed announcements
    #[arg(long = "announce-ms", value_name = "N", value_parser = at_least_one::<u64>)]
    announce_ms: Option<u64>,
}

/// The broker of `--broker`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Broker {
    /// Every node in this process, on the in-memory broker
    Memory,
    /// One node in this process on Redis (needs `--features redis`)
    Redis,
    /// One node in this process on NATS (needs `--features nats`)
    Nats,
}

/// Parses a number that must be at least 1.
fn at_least_one<T: FromStr + PartialOrd + From<u8>>(value: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    let n: T = value.parse().map_err(|e| format!("{e}"))?;
    if n < T::from(1) {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

impl Args {
    /// A node builder with the options every node of this example shares.
    fn node_builder(&self) -> NodeBuilder {
        let builder = Node::builder();
        match self.announce_ms {
            Some(ms) => builder.announce_interval(Duration::from_millis(ms)),
            None => builder,
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::stdout().is_terminal())
        .init();

    match args.broker {
        Broker::Redis => return run_on_redis(args).await,
        Broker::Nats => return run_on_nats(args).await,
        Broker::Memory => {}
    }
    let hub = MemoryHub::new();
    let mut servers = Vec::new();
    for i in 0..args.nodes {
        let name = format!("node{}", i + 1);
        let node = args
            .node_builder()
            .server_name(&name)
            .broker(hub.broker())
            .build()
            .await?;
        crosswire::demo::install(&node);
        log_connections(&node);
        let port = args.port + i;
        let server = WsServer::bind(("127.0.0.1", port), node, WsConfig::default()).await?;
        println!(
            "{name} listening on ws://{}/?id=<your id>",
            server.local_addr()
        );
        servers.push(server);
    }
    println!(
        "{} nodes on the in-memory broker; Ctrl-C to stop",
        servers.len()
    );
    tokio::signal::ctrl_c().await?;
    for server in servers {
        let report = server.shutdown().await;
        println!("shut down: {report:?}");
    }
    Ok(())
}

/// One node in this process on Redis; other processes with other names join the cluster.
#[cfg(feature = "redis")]
async fn run_on_redis(args: Args) -> Result<(), Box<dyn Error>> {
    use crosswire::redis::{RedisBroker, DEFAULT_REDIS_URL};

    let node_builder = args.node_builder();
    let name = args.name.unwrap_or_else(|| format!("node-{}", args.port));
    let urls = if args.redis.is_empty() {
        vec![DEFAULT_REDIS_URL.to_owned()]
    } else {
        args.redis
    };
    let broker = urls
        .iter()
        .fold(RedisBroker::builder(), |b, url| b.url(url))
        .server_name(&name)
        .on_health_change(|e| {
            tracing::info!(redis = %format!("{}:{}", e.host, e.port), connection = %e.connection, event = %e.event, healthy = e.healthy, error = ?e.error, "redis health changed");
        })
        .on_subscription_error(|e| {
            tracing::warn!(redis = %format!("{}:{}", e.host, e.port), channel = %e.channel, error = %e.error, "redis subscription failed");
        })
        .build()
        .await?;
    let node = node_builder
        .server_name(&name)
        .broker(broker.clone())
        .build()
        .await?;
    crosswire::demo::install(&node);
    log_connections(&node);
    let server = WsServer::bind(("127.0.0.1", args.port), node, WsConfig::default()).await?;
    println!(
        "{name} listening on ws://{}/?id=<your id>",
        server.local_addr()
    );
    println!(
        "on Redis {} ({} of {} healthy); Ctrl-C to stop",
        urls.join(", "),
        broker.healthy_count(crosswire::redis::ConnectionKind::Publisher),
        broker.instance_count()
    );
    tokio::signal::ctrl_c().await?;
    let report = server.shutdown().await;
    println!("shut down: {report:?}");
    Ok(())
}

#[cfg(not(feature = "redis"))]
async fn run_on_redis(_args: Args) -> Result<(), Box<dyn Error>> {
    eprintln!("this example was built without Redis: run it with `--features redis`");
    std::process::exit(2);
}

/// One node in this process on NATS; other processes with other names join the cluster.
#[cfg(feature = "nats")]
async fn run_on_nats(args: Args) -> Result<(), Box<dyn Error>> {
    use crosswire::nats::NatsBroker;

    let node_builder = args.node_builder();
    let name = args.name.unwrap_or_else(|| format!("node-{}", args.port));
    let broker = args
        .nats
        .iter()
        .fold(NatsBroker::builder(), |b, url| b.url(url))
        .server_name(&name)
        .on_health_change(|e| {
            tracing::info!(nats = %e.server, event = %e.event, healthy = e.healthy, error = ?e.error, "nats health changed");
        })
        .build()
        .await?;
    let node = node_builder
        .server_name(&name)
        .broker(broker.clone())
        .build()
        .await?;
    crosswire::demo::install(&node);
    log_connections(&node);
    let server = WsServer::bind(("127.0.0.1", args.port), node, WsConfig::default()).await?;
    println!(
        "{name} listening on ws://{}/?id=<your id>",
        server.local_addr()
    );
    println!(
        "on NATS {} (healthy: {}); Ctrl-C to stop",
        broker.server(),
        broker.is_healthy()
    );
    tokio::signal::ctrl_c().await?;
    let report = server.shutdown().await;
    println!("shut down: {report:?}");
    Ok(())
}

#[cfg(not(feature = "nats"))]
async fn run_on_nats(_args: Args) -> Result<(), Box<dyn Error>> {
    eprintln!("this example was built without NATS: run it with `--features nats`");
    std::process::exit(2);
}

fn log_connections(node: &Node) {
    let name = node.server_name().to_owned();
    node.on_system(system::Connection, move |socket| {
        let name = name.clone();
        async move {
            tracing::info!(node = %name, id = ?socket.socket_id(), params = ?socket.request().params(), "client connected");
        }
    });
    let name = node.server_name().to_owned();
    node.on_system(system::Close, move |close| {
        let name = name.clone();
        async move {
            tracing::info!(node = %name, id = ?close.socket_id, code = close.code, reason = %close.reason, "client disconnected");
        }
    });
}
