//! What the soak measured, printed for people (stderr) and as one JSON line (stdout).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::load::churn::Failures;
use crate::load::latency::Percentiles;
use crate::load::pace::PaceReport;
use crate::report::{round, Step};

use super::super::measure::{saturation, Used};
use super::super::Options;
use super::account::{Beats, Broadcasts, Guards};
use super::churner::Churned;
use super::monitor::{Extremes, Reading};

/// Bytes of the demo's broadcast push around its `msg`:
/// `{"event":"say","payload":{"action":"broadcast","msg":"..."}}`.
const PUSH_ENVELOPE: usize = 57;

/// The second round: fresh clients connect once more after everyone left, then leave.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Rejoin {
    /// Clients that connected.
    pub(super) connected: u64,
    /// The server with them connected.
    pub(super) held: Reading,
    /// The server got back to no connection and its starting descriptors.
    pub(super) left: bool,
    /// The server after they left.
    pub(super) after: Reading,
}

/// Everything the soak reports.
#[derive(Debug, Default)]
pub(super) struct Summary {
    pub(super) clients: u64,
    pub(super) duration: Duration,
    pub(super) churn_rate: f64,
    pub(super) churn_clean: f64,
    pub(super) broadcast_rate: f64,
    pub(super) message_bytes: usize,
    pub(super) ping: Duration,
    pub(super) heartbeat: Option<Duration>,
    /// Generator cores above which the run is marked saturated.
    pub(super) cpu_limit: f64,
    /// The server before any client, once all were connected, at the end, after all left.
    pub(super) start: Reading,
    pub(super) connected: Reading,
    pub(super) end: Reading,
    pub(super) after: Reading,
    /// The server counted every client before the broadcast started.
    pub(super) settled: bool,
    pub(super) extremes: Extremes,
    pub(super) client_open_end: u64,
    pub(super) churned: Churned,
    pub(super) reconnects: u64,
    pub(super) failures: Failures,
    pub(super) pace: PaceReport,
    pub(super) unsent: u64,
    pub(super) command_replies: u64,
    pub(super) failed_command_replies: u64,
    /// Every open connection had all its broadcasts before the drain deadline.
    pub(super) drained: bool,
    pub(super) broadcasts: Broadcasts,
    /// The guard times of the broadcast accounting.
    pub(super) guards: Option<Guards>,
    pub(super) latency: Percentiles,
    pub(super) beats: Beats,
    pub(super) pongs: u64,
    /// Lives: open at the end, left cleanly, dropped, ended by themselves.
    pub(super) endings: [u64; 4],
    /// How connections ended during the run, as the clients saw it.
    pub(super) ends_during: BTreeMap<String, u64>,
    pub(super) clean_leaves_completed: u64,
    /// The server got back to no connection and its starting descriptors after all left.
    pub(super) left: bool,
    pub(super) left_after: Duration,
    pub(super) used: Option<Used>,
    pub(super) rejoin: Option<Rejoin>,
    /// The server's counters after all left.
    pub(super) metrics: Value,
}

impl Summary {
    /// An empty summary of the soak `opts` describe.
    pub(super) fn new(opts: &Options) -> Summary {
        let soak = &opts.soak;
        Summary {
            clients: soak.clients as u64,
            duration: soak.duration,
            churn_rate: soak.churn_rate,
            churn_clean: soak.churn_clean,
            broadcast_rate: soak.broadcast_rate,
            message_bytes: soak.message_bytes,
            ping: soak.ping,
            heartbeat: opts.pool.heartbeat,
            cpu_limit: opts.cpu_limit,
            ..Summary::default()
        }
    }

    fn per_conn(&self, rss: u64) -> u64 {
        rss.saturating_sub(self.start.rss) / self.clients.max(1)
    }

    /// Prints the summary on stderr.
    pub(super) fn print(&self) {
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1 << 20) as f64);
        let conns = |r: &Reading| r.connections.map_or("?".into(), |c| c.to_string());
        let b = &self.broadcasts;
        let e = &self.extremes;
        let secs = |nanos: u64| nanos as f64 / 1e9;
        let (after_connect, before_leave) = self.guards.map_or((0.0, 0.0), |g| {
            (secs(g.after_connect), secs(g.before_leave))
        });
        eprintln!(
            "\n-- soak: {} connections, {:.0} s, broadcast {}/s of a {} B push, churn {}/s ({:.0} % clean), heartbeat {:?}, server ping {:?} --",
            self.clients,
            self.duration.as_secs_f64(),
            self.broadcast_rate,
            self.message_bytes + PUSH_ENVELOPE,
            self.churn_rate,
            self.churn_clean * 100.0,
            self.heartbeat,
            self.ping
        );
        eprintln!(
            "server RSS      start {} | all connected {} | peak {} | end {} | after all left {}",
            mib(self.start.rss),
            mib(self.connected.rss),
            mib(e.peak_rss),
            mib(self.end.rss),
            mib(self.after.rss)
        );
        eprintln!(
            "RSS per conn    all connected {} B | peak {} B | end {} B",
            self.per_conn(self.connected.rss),
            self.per_conn(e.peak_rss),
            self.per_conn(self.end.rss)
        );
        eprintln!(
            "server fds      start {} | all connected {} | peak {} | end {} | after all left {} ({}, {:.1} s after the leave)",
            self.start.fds,
            self.connected.fds,
            e.peak_fds,
            self.end.fds,
            self.after.fds,
            if self.left { "back to the start: no leak" } else { "NOT back to the start" },
            self.left_after.as_secs_f64()
        );
        eprintln!(
            "connections     expected {}; server counted {}..{} during the run (at most {} leaving/reconnecting at a reading); at the end server {}, clients open {}; after all left server {}",
            self.clients,
            e.server_connections.0,
            e.server_connections.1,
            e.max_in_transit,
            conns(&self.end),
            self.client_open_end,
            conns(&self.after)
        );
        eprintln!(
            "churn           {} leaves ({} clean, {} TCP drops), {} reconnects; failed attempts {:?}, slots given up {}; picks of a busy slot {}; unfinished {}",
            self.churned.started,
            self.churned.clean,
            self.churned.dropped,
            self.reconnects,
            self.failures.by_error,
            self.failures.given_up,
            self.churned.busy,
            self.churned.unfinished
        );
        eprintln!(
            "broadcasts      {} sent ({} unsent, {} late sends), {} command replies ({} failed)",
            self.pace.sent,
            self.unsent,
            self.pace.late,
            self.command_replies,
            self.failed_command_replies
        );
        eprintln!(
            "                {} connection lives had to receive {} broadcasts (those sent from {:.1} s after connecting to {:.2} s before leaving): {} received, {} MISSING ({} lives missing some); {} more received in those guard times; {} duplicated, {} stale",
            b.lives,
            b.expected,
            after_connect,
            before_leave,
            b.received,
            b.missing,
            b.lives_missing,
            b.outside_window,
            b.duplicated,
            b.stale
        );
        for m in &b.missed {
            eprintln!(
                "                  e.g. client {} ({:?}): {} of {}",
                m.index, m.ending, m.received, m.expected
            );
        }
        eprintln!(
            "                {} connections held throughout: each received {}..{} of {}; all in after the drain: {}",
            b.throughout.0, b.throughout.1, b.throughout.2, self.pace.sent, self.drained
        );
        let ms = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.2}"));
        eprintln!(
            "                latency p50 {} / p99 {} / p999 {} / max {} ms",
            ms(self.latency.p50_ms),
            ms(self.latency.p99_ms),
            ms(self.latency.p999_ms),
            ms(self.latency.max_ms)
        );
        eprintln!(
            "heartbeats      {} sent, {} answered; unanswered: {} on connections open at the end, {} on connections that left (sent just before), {} on connections lost",
            self.beats.sent,
            self.beats.answered,
            self.beats.unanswered_open,
            self.beats.unanswered_left,
            self.beats.unanswered_lost
        );
        eprintln!(
            "server pings    {} answered by the clients (pongs)",
            self.pongs
        );
        eprintln!(
            "lives           {} open at the end, {} left cleanly, {} dropped, {} ended by themselves",
            self.endings[0], self.endings[1], self.endings[2], self.endings[3]
        );
        eprintln!(
            "client-seen ends {:?} (until the final leave); final leave: {} clean closes answered",
            self.ends_during, self.clean_leaves_completed
        );
        if let Some(used) = &self.used {
            eprintln!(
                "CPU             server {:.1} s, generator {:.1} s over {:.0} s ({:.0} % of the machine); saturated: {}",
                used.server_cpu_s,
                used.generator_cpu_s,
                used.wall.as_secs_f64(),
                used.machine_share() * 100.0,
                saturation(Some(&self.pace), used, self.cpu_limit).unwrap_or_else(|| "no".into())
            );
        }
        if let Some(r) = &self.rejoin {
            eprintln!(
                "rejoin          {} fresh clients connected: server RSS {} ({} at the soak's peak), {} fds; after they left: RSS {}, {} fds ({})",
                r.connected,
                mib(r.held.rss),
                mib(e.peak_rss),
                r.held.fds,
                mib(r.after.rss),
                r.after.fds,
                if r.left { "back to the start" } else { "NOT back to the start" },
            );
        }
        eprintln!("server metrics  {}", self.metrics);
    }

    /// The checks that failed: descriptors not back to the start, missing broadcasts,
    /// unanswered heartbeats on open connections, connections lost or not held, reconnects
    /// given up, broadcast requests not answered.
    pub(super) fn failed_checks(&self) -> Vec<String> {
        let mut failed = Vec::new();
        if !self.left {
            failed.push(format!(
                "server descriptors {} after all clients left, {} at the start",
                self.after.fds, self.start.fds
            ));
        }
        if self.broadcasts.missing > 0 {
            failed.push(format!("{} broadcasts missing", self.broadcasts.missing));
        }
        if self.beats.unanswered_open > 0 {
            failed.push(format!(
                "{} heartbeats unanswered on open connections",
                self.beats.unanswered_open
            ));
        }
        if self.endings[3] > 0 {
            failed.push(format!(
                "{} connections ended without the generator closing them",
                self.endings[3]
            ));
        }
        let held = self.end.connections.unwrap_or(0);
        if held != self.clients || self.client_open_end != self.clients {
            failed.push(format!(
                "{held} connections held by the server and {} open clients at the end, {} expected",
                self.client_open_end, self.clients
            ));
        }
        if let Some(r) = self
            .rejoin
            .filter(|r| !r.left || r.connected != self.clients)
        {
            failed.push(format!(
                "rejoin: {} of {} connected; server descriptors {} after they left, {} at the start",
                r.connected, self.clients, r.after.fds, self.start.fds
            ));
        }
        if self.failures.given_up > 0 {
            failed.push(format!("{} reconnects given up", self.failures.given_up));
        }
        if self.command_replies != self.pace.sent || self.failed_command_replies > 0 {
            failed.push(format!(
                "{} broadcast requests sent, {} answered ({} failed)",
                self.pace.sent, self.command_replies, self.failed_command_replies
            ));
        }
        failed
    }

    /// The JSON line.
    pub(super) fn step(&self) -> Step {
        let b = &self.broadcasts;
        let e = &self.extremes;
        let label = format!(
            "{}@{}/s+churn{}/s",
            self.clients, self.broadcast_rate, self.churn_rate
        );
        let mut step = Step::new("soak", "crosswire", &label);
        step.rate = Some(self.broadcast_rate);
        step.duration_s = round(self.pace.elapsed.as_secs_f64(), 3);
        step.sent = self.pace.sent;
        step.deliveries = b.received;
        step.p50_ms = self.latency.p50_ms;
        step.p99_ms = self.latency.p99_ms;
        step.p999_ms = self.latency.p999_ms;
        step.lost = b.missing;
        step.duplicated = b.duplicated;
        step.server_rss_bytes = self.end.rss;
        if let Some(used) = &self.used {
            step.server_cpu_s = round(used.server_cpu_s, 2);
            step.generator_cpu_s = round(used.generator_cpu_s, 2);
            step.deliveries_per_s = round(b.received as f64 / used.wall.as_secs_f64(), 1);
            step.saturated_reason = saturation(Some(&self.pace), used, self.cpu_limit);
            step.saturated = step.saturated_reason.is_some();
            step.set("machine_cpu_share", used.machine_share());
        }
        let reading =
            |r: &Reading| json!({"rss": r.rss, "fds": r.fds, "connections": r.connections});
        step.set("clients", self.clients);
        step.set("churn_rate", self.churn_rate);
        step.set("churn_clean", self.churn_clean);
        step.set("message_bytes", self.message_bytes);
        step.set("push_bytes", self.message_bytes + PUSH_ENVELOPE);
        step.set("server_start", reading(&self.start));
        step.set("server_connected", reading(&self.connected));
        step.set("server_end", reading(&self.end));
        step.set("server_after_leave", reading(&self.after));
        step.set("server_peak_rss", e.peak_rss);
        step.set("server_peak_fds", e.peak_fds);
        step.set("rss_per_conn_bytes", self.per_conn(self.connected.rss));
        step.set("rss_per_conn_end_bytes", self.per_conn(self.end.rss));
        step.set("fds_back_to_start", self.left);
        step.set("server_connections_min", e.server_connections.0);
        step.set("server_connections_max", e.server_connections.1);
        step.set("client_open_end", self.client_open_end);
        step.set("leaves", self.churned.started);
        step.set("clean_leaves", self.churned.clean);
        step.set("dropped_leaves", self.churned.dropped);
        step.set("reconnects", self.reconnects);
        step.set("failed_connects", json!(self.failures.by_error));
        step.set("lives", b.lives);
        step.set("expected", b.expected);
        step.set("lives_missing", b.lives_missing);
        step.set("outside_window", b.outside_window);
        step.set("all_delivered", self.drained);
        step.set("command_replies", self.command_replies);
        step.set("heartbeats_sent", self.beats.sent);
        step.set("heartbeats_answered", self.beats.answered);
        step.set("heartbeats_unanswered_open", self.beats.unanswered_open);
        step.set("pongs", self.pongs);
        step.set("client_ends", json!(self.ends_during));
        if let Some(r) = &self.rejoin {
            step.set("rejoin_connected", r.connected);
            step.set("rejoin_server", reading(&r.held));
            step.set("rejoin_server_after_leave", reading(&r.after));
        }
        if let Some(g) = &self.guards {
            step.set("guard_after_connect_ns", g.after_connect);
            step.set("guard_before_leave_ns", g.before_leave);
        }
        step.set("server_counters", self.metrics.clone());
        step.set("failed_checks", self.failed_checks());
        step
    }
}
