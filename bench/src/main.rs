//! `crosswire-bench`: crosswire's benchmark. See `BENCHMARKS.md` for the scenarios and figures.
//!
//! ```text
//! crosswire-bench <scenario> [flags]   run a scenario against crosswire and the baseline
//! crosswire-bench serve --kind K ...   (internal) one server process under test
//! ```

mod load;
mod report;
mod scenarios;
pub mod servers;

use std::time::Duration;

use scenarios::Options;
use servers::{Broker, ServerKind};

const USAGE: &str = "\
usage: crosswire-bench <connect|fanout|rpc|unicast|cross-node|cluster-fanout|slow-consumer|flood|all|
                       soak|unicast-targeting> [flags]

Runs real WebSocket clients over loopback against a server in a child process: the bare
fastwebsockets baseline first, then crosswire (fresh process each), with the same load.
One JSON line per step on stdout, tables on stderr; crosswire rows carry crosswire/baseline
ratios of deliveries_per_cpu_s and p99_ms.

unicast runs crosswire as 3 nodes on one redis-server (clients spread evenly) and the
baseline as one node holding every client: a single-node reference, not a like-for-like
cluster. cross-node (crosswire only) reports the latency added over raw Redis pub/sub.
With --brokers redis,nats, unicast and cross-node run crosswire's cluster on each broker
in turn (rows `crosswire` on Redis, `crosswire-nats` on NATS; cross-node on NATS measures
the added latency over raw NATS pub/sub).
cluster-fanout (crosswire only) runs broadcast and toRoom on 3 nodes on one broker, --clients
spread evenly, every message sent by a client of the first node (so 2/3 of each fan-out's
recipients are on the other nodes); with --brokers redis,nats on each broker in turn.
slow-consumer adds a client that never reads and reports when the server drops it.
flood (crosswire only) measures flow control: a client that sends much faster than it
reads, then one that sends and never reads, against the latency of the other clients.
unicast-targeting (crosswire only, not part of `all`, about a minute) compares
targeted_unicast(false) (before: every push to a socket id on the shared channel every
node receives) with (true) (after: to the owning node's inbox) in one run: per cluster
size of --targeting-nodes, one cluster of each side by side, each on its own broker
(Redis; --brokers), clients spread evenly, every toPlayer sent by a client of node a to a
client of another node; the two are measured in turn, 4 visits each in ABBA order. A paced
step per visit gives the nodes that handled each unicast (their unicast_envelopes / sent)
and the nodes' and broker's CPU per 1000 unicasts; a burst per visit gives pushes
delivered per second (median); a summary prints the after/before ratios.
soak (crosswire only, not part of `all`; see scripts/soak.sh) holds many connections for a
long time with heartbeats, pings, churn and a steady broadcast, and checks for leaks.

flags:
  --server crosswire|baseline|both   servers to run (default both)
  --brokers B,...       unicast, cross-node, cluster-fanout, unicast-targeting: brokers of
                        crosswire's cluster, redis and/or nats, run in that order in the same
                        run (default redis)
  --duration S          sending window of each paced step, seconds (default 10)
  --drain S             loss deadline after a step's last send, seconds (default 3)
  --steps N,N,...       connect: connection counts (default 10000)
  --hold S              connect: hold with heartbeats before the second RSS reading (default 30)
  --clients N           fanout and cluster-fanout clients (default 2000)
  --broadcast-rates R,...  fanout broadcast rates per second (default 10,25,50,75,100)
  --room-rates R,...    fanout toRoom rates per second (default 100,250,500,1000)
  --rooms N             fanout and cluster-fanout rooms (default 10)
  --cluster-broadcast-rates R,...  cluster-fanout broadcast rates per second (default 10,50)
  --cluster-room-rates R,...  cluster-fanout toRoom rates per second (default 100)
  --rpc-clients N       rpc clients (default 100)
  --rpc-rates R,...     rpc open-loop rates per second (default 5000,10000,20000)
  --unicast-clients N   unicast clients, spread over 3 crosswire nodes (default 2000)
  --unicast-rates R,... unicast toPlayer rates per second (default 10000,20000,30000,40000,60000)
  --targeting-nodes N,...  unicast-targeting: cluster sizes (default 3,5)
  --targeting-clients N    unicast-targeting: clients per cluster, spread over its nodes (default 600)
  --targeting-rate R       unicast-targeting: toPlayer/s of the paced step (default 2000)
  --targeting-duration S   unicast-targeting: sending window of each paced step (default 2)
  --targeting-burst N      unicast-targeting: toPlayer of each burst, sent at once
                        (default 20000)
  --probe-rate R        cross-node probe rate per second, each probe --duration long (default 1000)
  --slow-clients N      slow-consumer reading clients (default 2000)
  --slow-rate R         slow-consumer broadcast rate per second (default 50)
  --slow-duration S     slow-consumer: sending window of the step with the slow client (default 40)
  --slow-rcvbuf B       slow-consumer: SO_RCVBUF of the slow client, bytes (default 4096)
  --server-sndbuf B     SO_SNDBUF of the servers' connections, bytes; 0 = kernel default (default 0)
  --flood-clients N     flood: clients receiving the measured broadcast (default 2000)
  --flood-rate R        flood: their broadcasts per second (default 10)
  --flood-messages N    flood: messages the flooding client sends (default 60000)
  --flood-bytes B       flood: size of each flood message (default 2048)
  --flood-read-rate B   flood: bytes per second the flooding client reads (default 5000000)
  --flood-stall-timeout S  flood: the server's stall timeout, 0 = crosswire's 30 s (default 10)
  --flood-rate-limit N|default  flood: the server's messages/s per connection, 0 = none (default 0)
  --soak-clients N      soak: connections held (default 15000)
  --soak-duration S     soak: seconds of broadcast and churn (default 300)
  --churn-rate R        soak: connections closed and reconnected per second (default 25)
  --churn-clean F       soak: share of those closing cleanly, the rest drop TCP (default 0.5)
  --soak-rate R         soak: broadcasts per second to everyone (default 5)
  --soak-bytes B        soak: size of each broadcast's msg; the push is 57 B more (default 143)
  --soak-ping S         soak: the server's protocol ping interval (default 10)
  --per-addr N          connections per source address 127.0.0.x (default 20000)
  --concurrency N       handshakes in flight (default 100)
  --heartbeat S         client heartbeat period, 0 = off (default 10)
  --server-threads N    server worker threads, 0 = one per core (default 0)
  --server-rate-limit N|default  crosswire's messages/s per connection, 0 = none; every
                        scenario but flood (default: crosswire's default, 1000/s throttled,
                        which caps rpc's closed-loop step near 1000/s per client)
  --gen-threads N       generator worker threads, 0 = one per core (default 0)
  --cpu-limit F         generator cores above which a step is marked saturated (default 0.9)
  -h, --help            this text

A step is `saturated` (generator-limited) when more than 1 % of its sends left more than
10 ms behind schedule, or the generator used more than --cpu-limit cores while sending.";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => servers::serve_main(&args[1..]),
        Some("-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(scenario) => bench(scenario, &args[1..]),
    };
    if let Err(message) = result {
        eprintln!("crosswire-bench: {message}");
        std::process::exit(2);
    }
}

/// The parent side: raises the file limit, then runs the scenario.
fn bench(scenario: &str, args: &[String]) -> Result<(), String> {
    let (opts, gen_threads) = parse(args)?;
    load::clock::start();
    match load::limits::raise_nofile() {
        Ok(limit) => eprintln!(
            "RLIMIT_NOFILE: soft {} hard {} (the servers inherit it)",
            limit.soft, limit.hard
        ),
        Err(error) => eprintln!("could not raise RLIMIT_NOFILE: {error}"),
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if gen_threads > 0 {
        runtime.worker_threads(gen_threads);
    }
    let runtime = runtime.build().map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(scenarios::run(scenario, &opts))
}

fn parse(args: &[String]) -> Result<(Options, usize), String> {
    let mut opts = Options::default();
    let mut gen_threads = 0;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--server" => {
                opts.servers = match value()?.as_str() {
                    "both" => vec![ServerKind::Baseline, ServerKind::Crosswire],
                    "crosswire" => vec![ServerKind::Crosswire],
                    "baseline" => vec![ServerKind::Baseline],
                    other => return Err(format!("--server: unknown server {other}")),
                }
            }
            "--brokers" => {
                opts.brokers = value()?
                    .split(',')
                    .filter(|b| !b.trim().is_empty())
                    .map(|b| {
                        Broker::parse(b.trim()).ok_or(format!("--brokers: unknown broker {b}"))
                    })
                    .collect::<Result<_, _>>()?;
                if opts.brokers.is_empty() {
                    return Err("--brokers needs at least one of redis, nats".into());
                }
            }
            "--duration" => opts.duration = seconds(flag, value()?)?,
            "--drain" => opts.drain = seconds(flag, value()?)?,
            "--steps" => opts.connect_steps = list(flag, value()?)?,
            "--hold" => opts.hold = seconds(flag, value()?)?,
            "--clients" => opts.fanout_clients = number(flag, value()?)?,
            "--broadcast-rates" => opts.broadcast_rates = list(flag, value()?)?,
            "--room-rates" => opts.room_rates = list(flag, value()?)?,
            "--rooms" => opts.rooms = number(flag, value()?)?,
            "--cluster-broadcast-rates" => opts.cluster_broadcast_rates = list(flag, value()?)?,
            "--cluster-room-rates" => opts.cluster_room_rates = list(flag, value()?)?,
            "--rpc-clients" => opts.rpc_clients = number(flag, value()?)?,
            "--rpc-rates" => opts.rpc_rates = list(flag, value()?)?,
            "--unicast-clients" => opts.unicast_clients = number(flag, value()?)?,
            "--unicast-rates" => opts.unicast_rates = list(flag, value()?)?,
            "--targeting-nodes" => opts.targeting.nodes = list(flag, value()?)?,
            "--targeting-clients" => opts.targeting.clients = number(flag, value()?)?,
            "--targeting-rate" => opts.targeting.rate = number(flag, value()?)?,
            "--targeting-duration" => opts.targeting.duration = seconds(flag, value()?)?,
            "--targeting-burst" => opts.targeting.burst = number(flag, value()?)?,
            "--probe-rate" => opts.probe_rate = number(flag, value()?)?,
            "--slow-clients" => opts.slow_clients = number(flag, value()?)?,
            "--slow-rate" => opts.slow_rate = number(flag, value()?)?,
            "--slow-duration" => opts.slow_duration = seconds(flag, value()?)?,
            "--slow-rcvbuf" => opts.slow_rcvbuf = number(flag, value()?)?,
            "--server-sndbuf" => opts.server_sndbuf = number(flag, value()?)?,
            "--per-addr" => opts.pool.per_addr = number(flag, value()?)?,
            "--concurrency" => opts.pool.concurrency = number(flag, value()?)?,
            "--heartbeat" => {
                let every = seconds(flag, value()?)?;
                opts.pool.heartbeat = (!every.is_zero()).then_some(every);
            }
            "--server-threads" => opts.server_threads = number(flag, value()?)?,
            "--server-rate-limit" => {
                opts.server_rate_limit = match value()?.as_str() {
                    "default" => None,
                    n => Some(number(flag, n)?),
                }
            }
            "--gen-threads" => gen_threads = number(flag, value()?)?,
            "--cpu-limit" => opts.cpu_limit = number(flag, value()?)?,
            "--flood-clients" => opts.flood.clients = number(flag, value()?)?,
            "--flood-rate" => opts.flood.rate = number(flag, value()?)?,
            "--flood-messages" => opts.flood.messages = number(flag, value()?)?,
            "--flood-bytes" => opts.flood.message_bytes = number(flag, value()?)?,
            "--flood-read-rate" => opts.flood.read_rate = number(flag, value()?)?,
            "--flood-stall-timeout" => opts.flood.stall_timeout = number(flag, value()?)?,
            "--flood-rate-limit" => {
                opts.flood.rate_limit = match value()?.as_str() {
                    "default" => None,
                    n => Some(number(flag, n)?),
                }
            }
            "--soak-clients" => opts.soak.clients = number(flag, value()?)?,
            "--soak-duration" => opts.soak.duration = seconds(flag, value()?)?,
            "--churn-rate" => opts.soak.churn_rate = number(flag, value()?)?,
            "--churn-clean" => opts.soak.churn_clean = number(flag, value()?)?,
            "--soak-rate" => opts.soak.broadcast_rate = number(flag, value()?)?,
            "--soak-bytes" => opts.soak.message_bytes = number(flag, value()?)?,
            "--soak-ping" => opts.soak.ping = seconds(flag, value()?)?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}; try --help")),
        }
    }
    if opts.fanout_clients == 0
        || opts.rpc_clients == 0
        || opts.slow_clients == 0
        || opts.flood.clients == 0
    {
        return Err(
            "--clients, --rpc-clients, --slow-clients and --flood-clients must be at least 1"
                .into(),
        );
    }
    if opts.soak.clients < 2 {
        return Err("--soak-clients must be at least 2 (client 0 sends the broadcasts)".into());
    }
    if !(0.0..=1.0).contains(&opts.soak.churn_clean) {
        return Err("--churn-clean must be between 0 and 1".into());
    }
    if opts.unicast_clients < 3 {
        return Err("--unicast-clients must be at least 3 (one per node)".into());
    }
    Ok((opts, gen_threads))
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e| format!("{flag}: {e}"))
}

fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    let s: f64 = number(flag, value)?;
    Duration::try_from_secs_f64(s).map_err(|e| format!("{flag}: {e}"))
}

fn list<T: std::str::FromStr>(flag: &str, value: &str) -> Result<Vec<T>, String>
where
    T::Err: std::fmt::Display,
{
    value
        .split(',')
        .filter(|v| !v.trim().is_empty())
        .map(|v| number(flag, v.trim()))
        .collect()
}
