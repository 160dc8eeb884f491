//! Latency histograms: sharded so that receivers on different threads rarely share a lock,
//! merged when a step ends.

use hdrhistogram::Histogram;
use parking_lot::Mutex;

/// Shards per histogram set (receivers pick one by client index).
const SHARDS: usize = 32;
/// Highest recordable latency, in microseconds (60 s); larger values are clamped.
const MAX_MICROS: u64 = 60_000_000;

/// A set of latency histograms in microseconds, one per shard.
#[derive(Debug)]
pub(crate) struct Latencies {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// Empty histograms (1 µs to 60 s, 3 significant figures).
    pub(crate) fn new() -> Self {
        Latencies {
            shards: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
        }
    }

    /// Records one latency of `nanos` in the shard of `key` (e.g. the client index).
    pub(crate) fn record(&self, key: usize, nanos: u64) {
        let micros = (nanos / 1_000).clamp(1, MAX_MICROS);
        self.shards[key % SHARDS].lock().saturating_record(micros);
    }

    /// All shards merged.
    pub(crate) fn merged(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for shard in &self.shards {
            // Same bounds on both sides: `add` cannot fail.
            let _ = all.add(&*shard.lock());
        }
        all
    }

    /// The percentiles of all shards.
    pub(crate) fn percentiles(&self) -> Percentiles {
        Percentiles::of(&self.merged())
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant, valid histogram bounds")
}

/// p50/p99/p99.9/max of a histogram, in milliseconds; `None` when it is empty.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Percentiles {
    /// Median, ms.
    pub(crate) p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub(crate) p99_ms: Option<f64>,
    /// 99.9th percentile, ms.
    pub(crate) p999_ms: Option<f64>,
    /// Largest value, ms.
    pub(crate) max_ms: Option<f64>,
}

impl Percentiles {
    /// Reads the percentiles of `h` (microseconds).
    pub(crate) fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |micros: u64| Some(micros as f64 / 1_000.0);
        Percentiles {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}
