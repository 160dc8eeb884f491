//! The servers under test, each run in a child process of its own so that its CPU time and
//! memory can be read from `/proc/PID/stat` apart from the load generator's.
//!
//! The parent calls [`ServerProcess::spawn`]; the child is this same binary run as
//! `crosswire-bench serve ...` ([`serve_main`]). The child prints one line
//! `listening 127.0.0.1:PORT` on stdout once it accepts connections, then answers every line
//! `stats` on its stdin with one JSON line of its counters (see [`ServerProcess::counters`]).

mod baseline;
mod crosswire_node;
pub mod nats;
pub mod procstat;
pub mod redis;
mod sndbuf;
pub mod tcp_queues;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;

pub use procstat::ProcStats;

/// Which server a child process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// A crosswire node serving `crosswire::demo`.
    Crosswire,
    /// The bare fastwebsockets + hyper server of [`baseline`], same demo events, one node only.
    Baseline,
    /// The reference bare server `floor` (`../shared/floor`, built by `bench/run.sh` into
    /// `target/floor`; another binary with `CROSSWIRE_BENCH_FLOOR=PATH`), same demo events,
    /// one node only. It has no `stats` pipe: its counters read as empty.
    Floor,
}

impl ServerKind {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Crosswire => "crosswire",
            ServerKind::Baseline => "baseline",
            ServerKind::Floor => "floor",
        }
    }

    fn parse(name: &str) -> Option<ServerKind> {
        match name {
            "crosswire" => Some(ServerKind::Crosswire),
            "baseline" => Some(ServerKind::Baseline),
            "floor" => Some(ServerKind::Floor),
            _ => None,
        }
    }
}

/// The broker a multi-node crosswire cluster runs on (`--brokers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    /// One `redis-server` ([`redis::RedisProcess`]).
    Redis,
    /// One `nats-server` ([`nats::NatsProcess`]).
    Nats,
}

impl Broker {
    /// The name used on the command line and in reports (`redis`, `nats`).
    pub fn name(self) -> &'static str {
        match self {
            Broker::Redis => "redis",
            Broker::Nats => "nats",
        }
    }

    /// Parses a `--brokers` item.
    pub fn parse(name: &str) -> Option<Broker> {
        match name {
            "redis" => Some(Broker::Redis),
            "nats" => Some(Broker::Nats),
            _ => None,
        }
    }

    /// The `server` of crosswire rows measured on this broker: `crosswire` on Redis (as
    /// before NATS existed, so that Redis rows read as they always did), `crosswire-nats`
    /// on NATS.
    pub fn crosswire_label(self) -> &'static str {
        match self {
            Broker::Redis => "crosswire",
            Broker::Nats => "crosswire-nats",
        }
    }
}

/// A running broker process of either kind; killed when dropped.
#[derive(Debug)]
pub(crate) enum BrokerProcess {
    /// A `redis-server`.
    Redis(redis::RedisProcess),
    /// A `nats-server`.
    Nats(nats::NatsProcess),
}

impl BrokerProcess {
    /// Starts a broker of kind `broker` on a free port and waits until it answers.
    pub(crate) async fn start(broker: Broker) -> Result<BrokerProcess, String> {
        Ok(match broker {
            Broker::Redis => BrokerProcess::Redis(redis::RedisProcess::start().await?),
            Broker::Nats => BrokerProcess::Nats(nats::NatsProcess::start().await?),
        })
    }

    /// Which broker this is.
    pub(crate) fn kind(&self) -> Broker {
        match self {
            BrokerProcess::Redis(_) => Broker::Redis,
            BrokerProcess::Nats(_) => Broker::Nats,
        }
    }

    /// Its URL (`redis://...` or `nats://...`).
    pub(crate) fn url(&self) -> String {
        match self {
            BrokerProcess::Redis(p) => p.url(),
            BrokerProcess::Nats(p) => p.url(),
        }
    }

    /// Its process id, for `/proc/PID/stat`.
    pub(crate) fn pid(&self) -> u32 {
        match self {
            BrokerProcess::Redis(p) => p.pid(),
            BrokerProcess::Nats(p) => p.pid(),
        }
    }

    /// Stops it (SIGKILL) and waits for it.
    pub(crate) async fn stop(self) {
        match self {
            BrokerProcess::Redis(p) => p.stop().await,
            BrokerProcess::Nats(p) => p.stop().await,
        }
    }
}

/// How to start one server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// What to run.
    pub kind: ServerKind,
    /// Node name (crosswire only; must differ between nodes of one cluster).
    pub name: String,
    /// Redis URLs; empty means no broker (a single node). Crosswire only.
    pub redis: Vec<String>,
    /// A NATS URL: the node runs on NATS (`crosswire::nats::NatsBroker`) instead of Redis.
    /// Crosswire only; not together with `redis`.
    pub nats: Option<String>,
    /// Tokio worker threads of the server; 0 = one per core.
    pub threads: usize,
    /// Server-initiated protocol ping interval in seconds; 0 = off. Crosswire and the baseline
    /// (floor never pings).
    pub ping_interval_secs: u64,
    /// Per-connection outbound queue, in frames.
    pub outbound_queue: usize,
    /// `SO_SNDBUF` of accepted connections, bytes; 0 = the kernel's default (autotuned).
    pub sndbuf: u32,
    /// Crosswire's stall timeout (`WsConfig::stall_timeout`), seconds; 0 = its default.
    pub stall_timeout_secs: f64,
    /// Crosswire's per-connection message rate limit: `None` = its default (1,000/s,
    /// throttled), `Some(0)` = none, `Some(n)` = n messages a second, throttled.
    pub rate_limit: Option<u32>,
    /// Crosswire's `NodeBuilder::targeted_unicast`: pushes to socket ids bound on other nodes
    /// go to the owning node's inbox (`true`, crosswire's default) or to the shared channel
    /// every node receives (`false`).
    pub targeted_unicast: bool,
    /// Crosswire only: install the Prometheus recorder of `metrics-exporter-prometheus`
    /// before building the node, and render a scrape every second (no HTTP listener), to
    /// measure what exporting metrics costs.
    pub prometheus: bool,
}

impl ServerSpec {
    /// A single node of `kind` with default settings.
    pub fn single(kind: ServerKind) -> Self {
        ServerSpec {
            kind,
            name: "node1".into(),
            redis: Vec::new(),
            nats: None,
            threads: 0,
            ping_interval_secs: 30,
            outbound_queue: 1024,
            sndbuf: 0,
            stall_timeout_secs: 0.0,
            rate_limit: None,
            targeted_unicast: true,
            prometheus: false,
        }
    }

    fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "serve".into(),
            "--kind".into(),
            self.kind.name().into(),
            "--name".into(),
            self.name.clone(),
            "--threads".into(),
            self.threads.to_string(),
            "--ping-interval".into(),
            self.ping_interval_secs.to_string(),
            "--outbound-queue".into(),
            self.outbound_queue.to_string(),
            "--sndbuf".into(),
            self.sndbuf.to_string(),
            "--stall-timeout".into(),
            self.stall_timeout_secs.to_string(),
            "--rate-limit".into(),
            self.rate_limit
                .map_or_else(|| "default".into(), |n| n.to_string()),
            "--targeted-unicast".into(),
            self.targeted_unicast.to_string(),
            "--prometheus".into(),
            self.prometheus.to_string(),
        ];
        for url in &self.redis {
            args.push("--redis".into());
            args.push(url.clone());
        }
        if let Some(url) = &self.nats {
            args.push("--nats".into());
            args.push(url.clone());
        }
        args
    }

    fn from_args(args: &[String]) -> Result<ServerSpec, String> {
        let mut spec = ServerSpec::single(ServerKind::Crosswire);
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                "--kind" => {
                    let v = value()?;
                    spec.kind = ServerKind::parse(v).ok_or(format!("unknown --kind {v}"))?;
                }
                "--name" => spec.name = value()?.clone(),
                "--redis" => spec.redis.push(value()?.clone()),
                "--nats" => spec.nats = Some(value()?.clone()),
                "--threads" => spec.threads = number(flag, value()?)?,
                "--ping-interval" => spec.ping_interval_secs = number(flag, value()?)?,
                "--outbound-queue" => spec.outbound_queue = number(flag, value()?)?,
                "--sndbuf" => spec.sndbuf = number(flag, value()?)?,
                "--stall-timeout" => spec.stall_timeout_secs = number(flag, value()?)?,
                "--targeted-unicast" => spec.targeted_unicast = number(flag, value()?)?,
                "--prometheus" => spec.prometheus = number(flag, value()?)?,
                "--rate-limit" => {
                    spec.rate_limit = match value()?.as_str() {
                        "default" => None,
                        n => Some(number(flag, n)?),
                    }
                }
                other => return Err(format!("serve: unknown flag {other}")),
            }
        }
        if spec.nats.is_some() && !spec.redis.is_empty() {
            return Err("serve: --nats and --redis exclude each other".into());
        }
        Ok(spec)
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e| format!("{flag}: {e}"))
}

/// A server running in a child process; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    /// What runs there.
    pub kind: ServerKind,
    /// Where it accepts WebSocket connections (`ws://ADDR/?id=...`).
    pub addr: SocketAddr,
    /// Its process id, for `/proc/PID/stat`.
    pub pid: u32,
    child: Child,
    /// `None` for a server without the `stats` pipe (`floor`).
    pipe: Option<Arc<Mutex<StatsPipe>>>,
}

/// The `stats` request/answer pipe of a server process (its stdin and stdout).
#[derive(Debug)]
struct StatsPipe {
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

/// A handle that reads a running server's counters and `/proc` figures from any task (e.g.
/// a sampler running beside a step), sharing the `stats` pipe with its [`ServerProcess`].
#[derive(Debug, Clone)]
pub struct ServerProbe {
    /// The server's process id.
    pub pid: u32,
    pipe: Option<Arc<Mutex<StatsPipe>>>,
}

impl ServerProbe {
    /// CPU time and resident memory of the server process now.
    pub fn stats(&self) -> std::io::Result<ProcStats> {
        ProcStats::of(self.pid)
    }

    /// The server's own counters (see [`ServerProcess::counters`]).
    pub async fn counters(&self) -> Result<serde_json::Value, String> {
        let Some(pipe) = &self.pipe else {
            return Ok(serde_json::json!({}));
        };
        let mut pipe = pipe.lock().await;
        pipe.stdin
            .write_all(b"stats\n")
            .await
            .map_err(|e| format!("asking the server for stats: {e}"))?;
        let line = tokio::time::timeout(Duration::from_secs(10), pipe.stdout.next_line())
            .await
            .map_err(|_| "the server did not answer `stats` within 10 s".to_string())?
            .map_err(|e| format!("reading the server's stats: {e}"))?
            .ok_or("the server exited")?;
        serde_json::from_str(&line).map_err(|e| format!("bad stats line {line:?}: {e}"))
    }
}

/// The first line a starting server prints (its `listening` line), within 30 s.
async fn first_line(
    stdout: &mut Lines<BufReader<ChildStdout>>,
    kind: ServerKind,
) -> Result<String, String> {
    let name = kind.name();
    tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
        .await
        .map_err(|_| format!("{name} did not start within 30 s"))?
        .map_err(|e| format!("reading {name}'s stdout: {e}"))?
        .ok_or(format!("{name} exited before listening"))
}

impl ServerProcess {
    /// Starts `spec` in a child process and waits until it listens.
    pub async fn spawn(spec: &ServerSpec) -> Result<ServerProcess, String> {
        if spec.kind == ServerKind::Floor {
            return ServerProcess::spawn_floor(spec).await;
        }
        let SelfChild {
            child,
            pid,
            stdin,
            mut stdout,
        } = SelfChild::spawn(&spec.to_args(), "server")?;
        let line = first_line(&mut stdout, spec.kind).await?;
        let addr = line
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .ok_or(format!("unexpected first line from the server: {line:?}"))?;
        Ok(ServerProcess {
            kind: spec.kind,
            addr,
            pid,
            child,
            pipe: Some(Arc::new(Mutex::new(StatsPipe { stdin, stdout }))),
        })
    }

    /// Starts the `floor` binary on a free port and waits for its `listening` line.
    async fn spawn_floor(spec: &ServerSpec) -> Result<ServerProcess, String> {
        let exe = std::env::var("CROSSWIRE_BENCH_FLOOR")
            .unwrap_or_else(|_| "target/floor/release/floor".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| format!("no free port for floor: {e}"))?
            .port();
        let mut command = Command::new(&exe);
        command.args(["--port", &port.to_string()]);
        command.args(["--queue", &spec.outbound_queue.to_string()]);
        if spec.threads > 0 {
            command.args(["--threads", &spec.threads.to_string()]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("could not start {exe} (bench/run.sh builds it): {e}"))?;
        let pid = child.id().ok_or("floor ended at once")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut stdout = BufReader::new(stdout).lines();
        let line = first_line(&mut stdout, spec.kind).await?;
        if !line.contains(" listening ") {
            return Err(format!("unexpected first line from floor: {line:?}"));
        }
        // What it prints later is read and dropped, so that a full pipe never blocks it.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        Ok(ServerProcess {
            kind: ServerKind::Floor,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            pid,
            child,
            pipe: None,
        })
    }

    /// CPU time and resident memory of the server process now.
    pub fn stats(&self) -> std::io::Result<ProcStats> {
        ProcStats::of(self.pid)
    }

    /// The server's own counters as a JSON object: `connections` (open WebSocket connections)
    /// for every kind, plus every field of crosswire's `MetricsSnapshot`
    /// (`slow_consumer_closes`, `read_pauses`, `unicast_envelopes`, ...) and crosswire's
    /// `directory_len` (socket ids bound on other nodes that the node knows of).
    pub async fn counters(&mut self) -> Result<serde_json::Value, String> {
        self.probe().counters().await
    }

    /// A handle on this server's counters and `/proc` figures for another task.
    pub fn probe(&self) -> ServerProbe {
        ServerProbe {
            pid: self.pid,
            pipe: self.pipe.clone(),
        }
    }

    /// Stops the server (SIGKILL) and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// This bench binary started again as a child (a server or a generator process, per its
/// first argument): killed when dropped, stdin and stdout piped, stderr shared.
pub(crate) struct SelfChild {
    /// The process.
    pub(crate) child: Child,
    /// Its process id, for `/proc/PID/stat`.
    pub(crate) pid: u32,
    /// Where its commands go.
    pub(crate) stdin: ChildStdin,
    /// Its lines.
    pub(crate) stdout: Lines<BufReader<ChildStdout>>,
}

impl SelfChild {
    /// Starts `crosswire-bench ARGS...`; `what` names it in errors.
    pub(crate) fn spawn(args: &[String], what: &str) -> Result<SelfChild, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("could not start the {what} process: {e}"))?;
        let pid = child
            .id()
            .ok_or(format!("the {what} process ended at once"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        Ok(SelfChild {
            child,
            pid,
            stdin,
            stdout,
        })
    }
}

/// The child side: `crosswire-bench serve --kind K ...`. Never returns on success.
pub fn serve_main(args: &[String]) -> Result<(), String> {
    let spec = ServerSpec::from_args(args)?;
    // Warnings from the server under test (health changes, failed publishes) go to stderr;
    // RUST_LOG overrides the level.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if spec.threads > 0 {
        runtime.worker_threads(spec.threads);
    }
    let runtime = runtime.build().map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async move {
        let counters: Box<dyn Fn() -> serde_json::Value + Send> = match spec.kind {
            ServerKind::Crosswire => crosswire_node::start(&spec).await?,
            ServerKind::Baseline => baseline::start(&spec).await?,
            ServerKind::Floor => return Err("floor runs as its own binary, not `serve`".into()),
        };
        answer_stats(counters).await
    })
}

/// Prints the `listening` line (the server's first stdout line), after capping the send
/// buffer of the connections to come when `spec` asks for it.
fn announce(spec: &ServerSpec, addr: SocketAddr) -> Result<(), String> {
    if spec.sndbuf > 0 {
        sndbuf::cap_listener(addr, spec.sndbuf)?;
    }
    println!("listening {addr}");
    Ok(())
}

/// Answers `stats` lines on stdin until stdin closes (the parent died), then exits.
async fn answer_stats(counters: Box<dyn Fn() -> serde_json::Value + Send>) -> Result<(), String> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim() == "stats" {
            let mut reply = counters().to_string();
            reply.push('\n');
            if stdout.write_all(reply.as_bytes()).await.is_err() {
                break;
            }
            let _ = stdout.flush().await;
        }
    }
    std::process::exit(0);
}
