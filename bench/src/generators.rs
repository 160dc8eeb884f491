//! Load-generator processes, for loads one process cannot hold: a process may open about
//! 20,000 descriptors here, so 100,000 clients (the `scale` scenario) live in several.
//!
//! The parent calls [`GeneratorProcess::spawn`]; the child is this same binary run as
//! `crosswire-bench generate ...` ([`generate_main`]). The child connects its clients, prints
//! one JSON line ([`Connected`]), then answers commands on its stdin, one JSON line each:
//!
//! - `begin STEP`: every client records the tokens of step `STEP` (sent by the parent,
//!   stamped with [`crate::load::clock`], which every process shares); answers `{}`.
//! - `finish SENT DRAIN_MS`: waits until every client has received messages `0..SENT` of the
//!   step (each client must receive all of them: a broadcast), at most `DRAIN_MS`, then
//!   answers a [`Finished`].
//!
//! The child exits when its stdin closes (the parent ended).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::load::{self, Audience, Pool, PoolConfig, StepCtx};
use crate::servers::{ProcStats, SelfChild};

/// What one generator process runs.
#[derive(Debug, Clone)]
pub(crate) struct GeneratorSpec {
    /// The nodes; client i connects to `servers[i % servers.len()]`.
    pub(crate) servers: Vec<SocketAddr>,
    /// Clients to connect.
    pub(crate) clients: usize,
    /// Client i connects with `?id=<id_base + i>` (socket ids unique across processes).
    pub(crate) id_base: usize,
    /// First source address offset (127.0.0.2 is 1); processes take disjoint ranges.
    pub(crate) first_source: u32,
    /// Handshakes in flight at once.
    pub(crate) concurrency: usize,
    /// Application heartbeat period of every client, `None` = off.
    pub(crate) heartbeat: Option<Duration>,
}

impl GeneratorSpec {
    fn to_args(&self) -> Vec<String> {
        let servers: Vec<String> = self.servers.iter().map(ToString::to_string).collect();
        vec![
            "generate".into(),
            "--servers".into(),
            servers.join(","),
            "--clients".into(),
            self.clients.to_string(),
            "--id-base".into(),
            self.id_base.to_string(),
            "--first-source".into(),
            self.first_source.to_string(),
            "--concurrency".into(),
            self.concurrency.to_string(),
            "--heartbeat-ms".into(),
            self.heartbeat.map_or(0, |d| d.as_millis()).to_string(),
        ]
    }

    fn from_args(args: &[String]) -> Result<GeneratorSpec, String> {
        let mut spec = GeneratorSpec {
            servers: Vec::new(),
            clients: 0,
            id_base: 0,
            first_source: 1,
            concurrency: 100,
            heartbeat: None,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().ok_or(format!("{flag} needs a value"))?;
            let number = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
            match flag.as_str() {
                "--servers" => {
                    spec.servers = value
                        .split(',')
                        .map(|a| a.parse().map_err(|e| format!("--servers {a}: {e}")))
                        .collect::<Result<_, _>>()?;
                }
                "--clients" => spec.clients = number(value)? as usize,
                "--id-base" => spec.id_base = number(value)? as usize,
                "--first-source" => spec.first_source = number(value)? as u32,
                "--concurrency" => spec.concurrency = number(value)? as usize,
                "--heartbeat-ms" => {
                    let ms = number(value)?;
                    spec.heartbeat = (ms > 0).then(|| Duration::from_millis(ms));
                }
                other => return Err(format!("generate: unknown flag {other}")),
            }
        }
        if spec.servers.is_empty() {
            return Err("generate: --servers is required".into());
        }
        Ok(spec)
    }
}

/// How a generator process's connecting went (its first line).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Connected {
    /// Clients that completed the handshake.
    pub(crate) connected: usize,
    /// Wall time from its first connect to its last handshake, seconds.
    pub(crate) elapsed_s: f64,
    /// Median TCP connect + handshake, ms.
    pub(crate) handshake_p50_ms: Option<f64>,
    /// 99th percentile of the same, ms.
    pub(crate) handshake_p99_ms: Option<f64>,
    /// The first error, if any client failed.
    pub(crate) first_error: Option<String>,
}

/// What a generator process's clients received in a step.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Finished {
    /// First receipts of expected messages.
    pub(crate) deliveries: u64,
    /// Expected receipts missing after the drain.
    pub(crate) lost: u64,
    /// Second receipts of a message.
    pub(crate) duplicated: u64,
    /// Receipts of a message the client was not meant to get.
    pub(crate) misdelivered: u64,
    /// Whether every expected receipt arrived before the drain deadline.
    pub(crate) all_delivered: bool,
    /// Connections closed so far (by either side).
    pub(crate) closed: u64,
    /// Heartbeat replies received so far.
    pub(crate) heartbeats: u64,
    /// The latency histogram, microseconds: `[value, count]` per recorded value.
    pub(crate) latency_us: Vec<(u64, u64)>,
}

/// A generator running in a child process; killed when dropped.
#[derive(Debug)]
pub(crate) struct GeneratorProcess {
    /// Its process id, for `/proc/PID/stat`.
    pub(crate) pid: u32,
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl GeneratorProcess {
    /// Starts `spec` in a child process; it starts connecting at once.
    pub(crate) fn spawn(spec: &GeneratorSpec) -> Result<GeneratorProcess, String> {
        let SelfChild {
            child,
            pid,
            stdin,
            stdout,
        } = SelfChild::spawn(&spec.to_args(), "generator")?;
        Ok(GeneratorProcess {
            pid,
            child,
            stdin,
            stdout,
        })
    }

    /// Waits for its [`Connected`] line, at most `timeout`.
    pub(crate) async fn connected(&mut self, timeout: Duration) -> Result<Connected, String> {
        self.answer(timeout).await
    }

    /// Makes its clients record step `step`.
    pub(crate) async fn begin(&mut self, step: u32) -> Result<(), String> {
        self.command(&format!("begin {step}")).await?;
        self.answer::<serde_json::Value>(Duration::from_secs(30))
            .await
            .map(drop)
    }

    /// Ends the step after `sent` broadcasts, waiting at most `drain` for missing receipts.
    pub(crate) async fn finish(&mut self, sent: u64, drain: Duration) -> Result<Finished, String> {
        self.command(&format!("finish {sent} {}", drain.as_millis()))
            .await?;
        self.answer(drain + Duration::from_secs(30)).await
    }

    /// CPU time and resident memory of the process now.
    pub(crate) fn stats(&self) -> std::io::Result<ProcStats> {
        ProcStats::of(self.pid)
    }

    /// Stops it (SIGKILL) and waits for it.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    async fn command(&mut self, line: &str) -> Result<(), String> {
        let line = format!("{line}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("generator {}: {e}", self.pid))
    }

    async fn answer<T: for<'de> Deserialize<'de>>(
        &mut self,
        timeout: Duration,
    ) -> Result<T, String> {
        let pid = self.pid;
        let line = tokio::time::timeout(timeout, self.stdout.next_line())
            .await
            .map_err(|_| format!("generator {pid} did not answer within {timeout:?}"))?
            .map_err(|e| format!("generator {pid}: {e}"))?
            .ok_or(format!("generator {pid} exited"))?;
        serde_json::from_str(&line).map_err(|e| format!("generator {pid}: bad line {line:?}: {e}"))
    }
}

/// The child side: `crosswire-bench generate ...`. Returns when stdin closes.
pub(crate) fn generate_main(args: &[String]) -> Result<(), String> {
    let spec = GeneratorSpec::from_args(args)?;
    load::limits::raise_nofile().map_err(|e| format!("RLIMIT_NOFILE: {e}"))?;
    load::start_sources_at(spec.first_source);
    // One worker thread: the receivers are light, and the processes share two cores with
    // the nodes under test.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(serve(spec))
}

async fn serve(spec: GeneratorSpec) -> Result<(), String> {
    let config = PoolConfig {
        concurrency: spec.concurrency,
        heartbeat: spec.heartbeat,
        id_base: spec.id_base,
        ..PoolConfig::default()
    };
    let (pool, report) = Pool::connect(&spec.servers, spec.clients, &config).await;
    let mut out = tokio::io::stdout();
    write_line(
        &mut out,
        &Connected {
            connected: report.connected,
            elapsed_s: report.elapsed.as_secs_f64(),
            handshake_p50_ms: report.handshake.p50_ms,
            handshake_p99_ms: report.handshake.p99_ms,
            first_error: report.first_error,
        },
    )
    .await?;
    let mut step: Option<Arc<StepCtx>> = None;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["begin", id] => {
                let id = id.parse().map_err(|e| format!("begin {id}: {e}"))?;
                let ctx = StepCtx::with_id(id, Audience::All);
                pool.begin_step(&ctx);
                step = Some(ctx);
                write_line(&mut out, &serde_json::json!({})).await?;
            }
            ["finish", sent, drain_ms] => {
                let sent: u64 = sent.parse().map_err(|e| format!("finish {sent}: {e}"))?;
                let drain: u64 = drain_ms.parse().map_err(|e| format!("finish: {e}"))?;
                let ctx = step.take().ok_or("finish before begin")?;
                let finished = finish(&pool, &ctx, sent, Duration::from_millis(drain)).await;
                write_line(&mut out, &finished).await?;
            }
            _ => return Err(format!("generate: unknown command {line:?}")),
        }
    }
    pool.shutdown();
    Ok(())
}

async fn finish(pool: &Pool, ctx: &StepCtx, sent: u64, drain: Duration) -> Finished {
    let expected = sent * pool.len() as u64;
    let all_delivered = ctx.wait_for(expected, drain).await;
    let tally = pool.finish_step(|_| sent);
    let latency_us = ctx
        .latencies
        .merged()
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect();
    Finished {
        deliveries: tally.deliveries,
        lost: tally.lost,
        duplicated: tally.duplicated,
        misdelivered: tally.misdelivered,
        all_delivered,
        closed: pool.closed(),
        heartbeats: pool.heartbeats(),
        latency_us,
    }
}

async fn write_line(out: &mut tokio::io::Stdout, value: &impl Serialize) -> Result<(), String> {
    let mut line = serde_json::to_string(value).map_err(|e| format!("encoding a line: {e}"))?;
    line.push('\n');
    out.write_all(line.as_bytes())
        .await
        .map_err(|e| format!("stdout: {e}"))?;
    out.flush().await.map_err(|e| format!("stdout: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_survives_its_command_line() {
        let spec = GeneratorSpec {
            servers: vec![
                "127.0.0.1:9000".parse().unwrap(),
                "127.0.0.1:9001".parse().unwrap(),
            ],
            clients: 17_000,
            id_base: 34_000,
            first_source: 108,
            concurrency: 50,
            heartbeat: Some(Duration::from_secs(10)),
        };
        let args = spec.to_args();
        let back = GeneratorSpec::from_args(&args[1..]).unwrap();
        assert_eq!(back.servers, spec.servers);
        assert_eq!(
            (
                back.clients,
                back.id_base,
                back.first_source,
                back.concurrency,
                back.heartbeat
            ),
            (17_000, 34_000, 108, 50, Some(Duration::from_secs(10)))
        );
    }
}
