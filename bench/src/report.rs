//! Step results: one JSON line per step on stdout, a human table on stderr, and the
//! crosswire/baseline ratios of the same run.

use std::collections::HashMap;
use std::io::Write;

use serde::Serialize;
use serde_json::{Map, Value};

/// One measured step of one scenario on one server: the JSON line's fields.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Step {
    /// Scenario name (`connect`, `fanout`, `rpc`, ...).
    pub(crate) scenario: String,
    /// Server kind (`crosswire`, `baseline`; `crosswire-nats` for crosswire on NATS, `redis`
    /// or `nats` for a raw broker probe).
    pub(crate) server: String,
    /// Step label, unique within the scenario (e.g. `broadcast@100`, `10000`).
    pub(crate) step: String,
    /// Target send rate per second, for paced steps.
    pub(crate) rate: Option<f64>,
    /// Duration of the measured part, seconds (paced steps: the sending window).
    pub(crate) duration_s: f64,
    /// Messages sent (connect: connections attempted).
    pub(crate) sent: u64,
    /// Expected receipts that arrived (connect: connections established).
    pub(crate) deliveries: u64,
    /// `deliveries / duration_s`.
    pub(crate) deliveries_per_s: f64,
    /// Server CPU time over the step (user + system), seconds.
    pub(crate) server_cpu_s: f64,
    /// `deliveries / server_cpu_s`: the efficiency figure.
    pub(crate) deliveries_per_cpu_s: Option<f64>,
    /// Median latency, ms (connect: handshake).
    pub(crate) p50_ms: Option<f64>,
    /// 99th percentile latency, ms.
    pub(crate) p99_ms: Option<f64>,
    /// 99.9th percentile latency, ms.
    pub(crate) p999_ms: Option<f64>,
    /// Expected receipts missing at the end of the step (after the drain).
    pub(crate) lost: u64,
    /// Receipts of a message a client already had.
    pub(crate) duplicated: u64,
    /// Receipts by a client the message was not for.
    pub(crate) misdelivered: u64,
    /// The generator's own CPU time over the step, seconds.
    pub(crate) generator_cpu_s: f64,
    /// The generator, not the server, may have limited this step (see `saturated_reason`).
    pub(crate) saturated: bool,
    /// Why `saturated` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) saturated_reason: Option<String>,
    /// Server resident memory at the end of the step, bytes.
    pub(crate) server_rss_bytes: u64,
    /// Set when the step could not run as asked (e.g. the file limit); the figures are empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) skipped: Option<String>,
    /// crosswire ÷ baseline `deliveries_per_cpu_s`, same run (crosswire rows only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ratio_deliveries_per_cpu_s: Option<f64>,
    /// crosswire ÷ baseline `p99_ms`, same run (crosswire rows only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ratio_p99_ms: Option<f64>,
    /// Scenario-specific figures.
    #[serde(flatten)]
    pub(crate) extra: Map<String, Value>,
}

impl Step {
    /// An empty row of `scenario`/`server`/`step`.
    pub(crate) fn new(scenario: &str, server: &str, step: &str) -> Step {
        Step {
            scenario: scenario.into(),
            server: server.into(),
            step: step.into(),
            ..Step::default()
        }
    }

    /// Adds a scenario-specific field.
    pub(crate) fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.extra.insert(key.into(), value.into());
    }
}

/// `a / b` when both exist and `b` is not zero.
pub(crate) fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(round(a / b, 3)),
        _ => None,
    }
}

/// Rounds to `digits` decimals (keeps JSON lines short).
pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Scenario-specific fields that also get a crosswire ÷ baseline `ratio_<field>`.
const EXTRA_RATIOS: [&str; 2] = ["rss_per_conn_bytes", "rss_per_conn_after_hold_bytes"];

/// Emits rows and pairs crosswire rows with the baseline row (and the floor row, when the
/// reference server ran too) of the same step.
#[derive(Debug, Default)]
pub(crate) struct Reporter {
    baseline: HashMap<(String, String), Step>,
    floor: HashMap<(String, String), Step>,
    rows: Vec<Step>,
}

impl Reporter {
    /// A reporter with nothing emitted yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Prints the table header of a scenario on stderr.
    pub(crate) fn header(&self, scenario: &str) {
        eprintln!("\n== {scenario} ==");
        eprintln!(
            "{:<14} {:<16} {:>9} {:>10} {:>11} {:>7} {:>11} {:>8} {:>8} {:>8} {:>7} {:>5} {:>5} {:>6} {:>4} {:>9} {:>7}",
            "server", "step", "sent", "deliver", "deliv/s", "srv_cpu", "deliv/cpu", "p50ms", "p99ms",
            "p999ms", "lost", "dup", "mis", "gencpu", "sat", "x_d/cpu", "x_p99"
        );
    }

    /// Fills in the ratios (crosswire rows), prints the JSON line on stdout and the table
    /// row on stderr.
    pub(crate) fn emit(&mut self, mut step: Step) {
        let key = (step.scenario.clone(), step.step.clone());
        if step.server.starts_with("crosswire") {
            if let Some(floor) = self.floor.get(&key) {
                let d = ratio(step.deliveries_per_cpu_s, floor.deliveries_per_cpu_s);
                let p99 = ratio(step.p99_ms, floor.p99_ms);
                for (name, r) in [("deliveries_per_cpu_s", d), ("p99_ms", p99)] {
                    if let Some(r) = r {
                        step.set(&format!("floor_ratio_{name}"), r);
                    }
                }
            }
        }
        if step.server == "floor" {
            self.floor.insert(key.clone(), step.clone());
        }
        if step.server == "baseline" {
            self.baseline.insert(key, step.clone());
        } else if let Some(base) = self.baseline.get(&key) {
            step.ratio_deliveries_per_cpu_s =
                ratio(step.deliveries_per_cpu_s, base.deliveries_per_cpu_s);
            step.ratio_p99_ms = ratio(step.p99_ms, base.p99_ms);
            for key in EXTRA_RATIOS {
                let r = ratio(
                    step.extra.get(key).and_then(Value::as_f64),
                    base.extra.get(key).and_then(Value::as_f64),
                );
                if let Some(r) = r {
                    step.set(&format!("ratio_{key}"), r);
                }
            }
        }
        emit(&step);
        self.rows.push(step);
    }

    /// Prints the side-by-side comparison of a scenario's rows on stderr: against the
    /// baseline, and against the floor when it ran.
    pub(crate) fn compare(&self, scenario: &str) {
        self.compare_with(scenario, "baseline", &self.baseline);
        self.compare_with(scenario, "floor", &self.floor);
    }

    fn compare_with(
        &self,
        scenario: &str,
        reference: &str,
        references: &HashMap<(String, String), Step>,
    ) {
        let rows: Vec<&Step> = self
            .rows
            .iter()
            .filter(|s| s.scenario == scenario && s.server.starts_with("crosswire"))
            .filter(|s| references.contains_key(&(s.scenario.clone(), s.step.clone())))
            .collect();
        if rows.is_empty() {
            return;
        }
        eprintln!("-- {scenario}: crosswire vs {reference} (same run) --");
        eprintln!(
            "{:<14} {:<16} {:>12} {:>12} {:>7} {:>9} {:>9} {:>7}",
            "server", "step", "base d/cpu", "cw d/cpu", "ratio", "base p99", "cw p99", "ratio"
        );
        for cw in rows {
            let base = references.get(&(cw.scenario.clone(), cw.step.clone()));
            let base_d = base.and_then(|b| b.deliveries_per_cpu_s);
            let base_p99 = base.and_then(|b| b.p99_ms);
            eprintln!(
                "{:<14} {:<16} {:>12} {:>12} {:>7} {:>9} {:>9} {:>7}",
                cw.server,
                cw.step,
                opt(base_d, 0),
                opt(cw.deliveries_per_cpu_s, 0),
                opt(ratio(cw.deliveries_per_cpu_s, base_d), 2),
                opt(base_p99, 2),
                opt(cw.p99_ms, 2),
                opt(ratio(cw.p99_ms, base_p99), 2),
            );
        }
    }
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

/// Prints one step: its JSON line on stdout (flushed), its table row on stderr.
pub(crate) fn emit(step: &Step) {
    match serde_json::to_string(step) {
        Ok(line) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        Err(error) => eprintln!("could not serialize a step: {error}"),
    }
    if let Some(reason) = &step.skipped {
        eprintln!("{:<14} {:<16} skipped: {reason}", step.server, step.step);
        return;
    }
    eprintln!(
        "{:<14} {:<16} {:>9} {:>10} {:>11.0} {:>7.2} {:>11} {:>8} {:>8} {:>8} {:>7} {:>5} {:>5} {:>6.2} {:>4} {:>9} {:>7}",
        step.server,
        step.step,
        step.sent,
        step.deliveries,
        step.deliveries_per_s,
        step.server_cpu_s,
        opt(step.deliveries_per_cpu_s, 0),
        opt(step.p50_ms, 2),
        opt(step.p99_ms, 2),
        opt(step.p999_ms, 2),
        step.lost,
        step.duplicated,
        step.misdelivered,
        step.generator_cpu_s,
        if step.saturated { "YES" } else { "no" },
        opt(step.ratio_deliveries_per_cpu_s, 2),
        opt(step.ratio_p99_ms, 2),
    );
}
