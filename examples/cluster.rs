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
//!
//! `--js-compat` (or `--js-compat-json` for the package's `enableRedisDataCompression: false`)
//! makes the node speak the Node.js package's messages on Redis, so that it joins a running
//! cluster of the package's nodes (README, "Migrating from the Node.js package").
//!
//! `--metrics ADDR` (e.g. `--metrics 127.0.0.1:9100`) installs the Prometheus recorder of
//! `metrics-exporter-prometheus` and serves every node's metrics of this process (labelled
//! `node="<name>"`) as Prometheus text at `http://ADDR/metrics`; each scrape first calls
//! `Node::record_metrics` on every node, so the figures are those of the moment.

use std::convert::Infallible;
use std::error::Error;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crosswire::memory::MemoryHub;
use crosswire::ws::{WsConfig, WsServer};
use crosswire::{system, Node, NodeBuilder, Wire};

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
    /// Serve Prometheus metrics of this process's nodes at http://ADDR/metrics
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Speak the Node.js package's node-to-node messages (msgpack, its default) to join a
    /// cluster of its nodes on the same Redis
    #[arg(long)]
    js_compat: bool,
    /// Like --js-compat, for the package's `enableRedisDataCompression: false` (JSON)
    #[arg(long, conflicts_with = "js_compat")]
    js_compat_json: bool,
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
        let builder = if self.js_compat || self.js_compat_json {
            Node::builder().wire(Wire::JsPackage {
                msgpack: !self.js_compat_json,
            })
        } else {
            Node::builder()
        };
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
    let recorder = install_recorder(&args)?;
    let hub = MemoryHub::new();
    let mut servers = Vec::new();
    let mut nodes = Vec::new();
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
        nodes.push(node.clone());
        let port = args.port + i;
        let server = WsServer::bind(("127.0.0.1", port), node, WsConfig::default()).await?;
        println!(
            "{name} listening on ws://{}/?id=<your id>",
            server.local_addr()
        );
        servers.push(server);
    }
    serve_metrics(&args, recorder, nodes).await?;
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

    let recorder = install_recorder(&args)?;
    let node_builder = args.node_builder();
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("node-{}", args.port));
    let urls = if args.redis.is_empty() {
        vec![DEFAULT_REDIS_URL.to_owned()]
    } else {
        args.redis.clone()
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
    serve_metrics(&args, recorder, vec![node.clone()]).await?;
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

    let recorder = install_recorder(&args)?;
    let node_builder = args.node_builder();
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("node-{}", args.port));
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
    serve_metrics(&args, recorder, vec![node.clone()]).await?;
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

/// With `--metrics`, installs the Prometheus recorder (before any node is built, so the
/// publish latency histogram of each node records into it).
fn install_recorder(args: &Args) -> Result<Option<PrometheusHandle>, Box<dyn Error>> {
    if args.metrics.is_none() {
        return Ok(None);
    }
    // Buckets from 50 µs to ~3 s (×2 each): a Prometheus histogram, summable over nodes.
    let buckets: Vec<f64> = (0..17).map(|i| 50e-6 * f64::from(1u32 << i)).collect();
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("crosswire_broker_publish_seconds".into()),
            &buckets,
        )?
        .install_recorder()?;
    // Without a scrape, histogram samples would pile up until the next render.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(5));
        loop {
            ticker.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(Some(handle))
}

/// With `--metrics ADDR`, serves `GET /metrics` at ADDR: every node's metrics, recorded at
/// the moment of the scrape, as Prometheus text. Other paths answer 404.
async fn serve_metrics(
    args: &Args,
    recorder: Option<PrometheusHandle>,
    nodes: Vec<Node>,
) -> Result<(), Box<dyn Error>> {
    let (Some(addr), Some(handle)) = (args.metrics, recorder) else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("metrics on http://{}/metrics", listener.local_addr()?);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (handle, nodes) = (handle.clone(), nodes.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    std::future::ready(scrape(&handle, &nodes, &request))
                });
                let served = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(error) = served {
                    tracing::debug!(%error, "metrics connection error");
                }
            });
        }
    });
    Ok(())
}

/// Answers one request of the metrics listener.
fn scrape(
    handle: &PrometheusHandle,
    nodes: &[Node],
    request: &Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = if request.uri().path() != "/metrics" {
        (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        )
    } else if request.method() != Method::GET && request.method() != Method::HEAD {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".to_owned(),
        )
    } else {
        for node in nodes {
            node.record_metrics();
        }
        (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            handle.render(),
        )
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    Ok(response)
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
