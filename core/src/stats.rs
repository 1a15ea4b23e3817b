//! Per model-version statistics, in the shape of Triton's statistics extension, plus what the
//! metrics endpoint needs beyond it: failures by reason and histograms (request duration,
//! queue wait, batch size) with fixed buckets. Everything is recorded under one short lock
//! per model version, so the statistics API and the metrics always agree.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

/// A count and a total duration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Duration {
    pub count: u64,
    pub ns: u64,
}

impl Duration {
    fn add(&mut self, count: u64, ns: u64) {
        self.count += count;
        self.ns += ns;
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InferStats {
    pub success: Duration,
    pub fail: Duration,
    pub queue: Duration,
    pub compute_input: Duration,
    pub compute_infer: Duration,
    pub compute_output: Duration,
    pub cache_hit: Duration,
    pub cache_miss: Duration,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BatchStats {
    pub batch_size: u64,
    pub compute_input: Duration,
    pub compute_infer: Duration,
    pub compute_output: Duration,
}

/// Why a request failed, with Triton's metric label values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// Refused by the scheduler: queue full, queue timeout.
    Rejected,
    /// The client went away, or the deadline passed, before it ran.
    Canceled,
    /// The driver failed it.
    Backend,
    /// Anything else (post-processing the driver's outputs). A request refused by the
    /// checks before it reaches the model is not counted at all, as in Triton.
    Other,
}

impl FailureReason {
    pub const ALL: [FailureReason; 4] = [
        FailureReason::Other,
        FailureReason::Backend,
        FailureReason::Rejected,
        FailureReason::Canceled,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FailureReason::Rejected => "REJECTED",
            FailureReason::Canceled => "CANCELED",
            FailureReason::Backend => "BACKEND",
            FailureReason::Other => "OTHER",
        }
    }

    fn index(self) -> usize {
        match self {
            FailureReason::Other => 0,
            FailureReason::Backend => 1,
            FailureReason::Rejected => 2,
            FailureReason::Canceled => 3,
        }
    }
}

/// Bucket upper bounds of the histograms (the `+Inf` bucket is implied).
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramBounds {
    /// Request duration and queue wait, in microseconds.
    pub duration_us: Vec<f64>,
    pub batch_size: Vec<f64>,
}

impl Default for HistogramBounds {
    fn default() -> Self {
        HistogramBounds {
            duration_us: vec![
                100.0,
                250.0,
                500.0,
                1_000.0,
                2_500.0,
                5_000.0,
                10_000.0,
                25_000.0,
                50_000.0,
                100_000.0,
                250_000.0,
                500_000.0,
                1_000_000.0,
                2_500_000.0,
                5_000_000.0,
            ],
            batch_size: vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
        }
    }
}

/// A fixed-bucket histogram: `counts[i]` observations <= `bounds[i]` (not cumulative; the
/// last count is the `+Inf` bucket's excess).
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub bounds: Arc<[f64]>,
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: Arc<[f64]>) -> Histogram {
        let n = bounds.len() + 1;
        Histogram {
            bounds,
            counts: vec![0; n],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let i = self.bounds.partition_point(|&b| b < value);
        self.counts[i] += 1;
        self.sum += value;
        self.count += 1;
    }

    /// Cumulative counts per bound, then the total (`+Inf`), as Prometheus prints them.
    pub fn cumulative(&self) -> Vec<u64> {
        let mut total = 0;
        self.counts
            .iter()
            .map(|c| {
                total += c;
                total
            })
            .collect()
    }
}

/// The histograms of one model version.
#[derive(Clone, Debug, PartialEq)]
pub struct Histograms {
    /// Successful requests, arrival to final response, in microseconds.
    pub request_duration_us: Histogram,
    /// Time in the queue, in microseconds.
    pub queue_duration_us: Histogram,
    /// Each execution's batch size.
    pub batch_size: Histogram,
}

/// A snapshot of one model version's statistics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelStats {
    pub name: String,
    pub version: i64,
    /// Milliseconds since the epoch of the last inference (0 if none).
    pub last_inference: u64,
    pub inference_count: u64,
    pub execution_count: u64,
    pub inference_stats: InferStats,
    pub batch_stats: Vec<BatchStats>,
    /// Failed requests by reason, in [`FailureReason::ALL`]'s order.
    pub failures: [u64; 4],
    /// `None` when histograms are off.
    pub histograms: Option<Histograms>,
}

impl ModelStats {
    pub fn failures(&self, reason: FailureReason) -> u64 {
        self.failures[reason.index()]
    }
}

#[derive(Default)]
struct Inner {
    last_inference: u64,
    inference_count: u64,
    execution_count: u64,
    stats: InferStats,
    batches: BTreeMap<u64, BatchStats>,
    failures: [u64; 4],
    histograms: Option<Histograms>,
}

/// Collects one model version's statistics.
#[derive(Default)]
pub struct StatsCollector {
    inner: Mutex<Inner>,
}

/// Timings of one execution of a batch.
#[derive(Clone, Copy, Debug)]
pub struct Execution {
    /// Requests in the batch.
    pub requests: u64,
    /// Sum of their batch sizes (1 each for models that do not batch).
    pub batch_size: u64,
    /// Batch rows of null requests beside them (the `direct` sequence batcher's idle slots):
    /// part of the execution's batch size, as in Triton, but no inference of anyone's.
    pub padding: u64,
    pub input_ns: u64,
    pub infer_ns: u64,
    pub output_ns: u64,
}

impl StatsCollector {
    /// A collector with histograms of the given bounds (`None`: no histograms).
    pub fn new(bounds: Option<&HistogramBounds>) -> StatsCollector {
        let histograms = bounds.map(|b| {
            let duration: Arc<[f64]> = b.duration_us.clone().into();
            Histograms {
                request_duration_us: Histogram::new(Arc::clone(&duration)),
                queue_duration_us: Histogram::new(duration),
                batch_size: Histogram::new(b.batch_size.clone().into()),
            }
        });
        StatsCollector {
            inner: Mutex::new(Inner {
                histograms,
                ..Default::default()
            }),
        }
    }

    /// A request left the queue after `queue_ns`.
    pub fn record_queue(&self, queue_ns: u64) {
        let mut inner = self.inner.lock();
        inner.stats.queue.add(1, queue_ns);
        if let Some(h) = &mut inner.histograms {
            h.queue_duration_us.observe(queue_ns as f64 / 1e3);
        }
    }

    /// A batch ran.
    pub fn record_execution(&self, e: Execution) {
        let mut inner = self.inner.lock();
        inner.execution_count += 1;
        inner.inference_count += e.batch_size;
        inner.last_inference = crate::clock::unix_ms();
        let s = &mut inner.stats;
        s.compute_input.add(e.requests, e.input_ns * e.requests);
        s.compute_infer.add(e.requests, e.infer_ns * e.requests);
        s.compute_output.add(e.requests, e.output_ns * e.requests);
        let rows = e.batch_size + e.padding;
        let b = inner.batches.entry(rows).or_insert_with(|| BatchStats {
            batch_size: rows,
            ..Default::default()
        });
        b.compute_input.add(1, e.input_ns);
        b.compute_infer.add(1, e.infer_ns);
        b.compute_output.add(1, e.output_ns);
        if let Some(h) = &mut inner.histograms {
            h.batch_size.observe(rows as f64);
        }
    }

    /// A request finished successfully `ns` after it arrived.
    pub fn record_success(&self, ns: u64) {
        let mut inner = self.inner.lock();
        inner.stats.success.add(1, ns);
        if let Some(h) = &mut inner.histograms {
            h.request_duration_us.observe(ns as f64 / 1e3);
        }
    }

    /// A request failed `ns` after it arrived.
    pub fn record_failure(&self, reason: FailureReason, ns: u64) {
        let mut inner = self.inner.lock();
        inner.stats.fail.add(1, ns);
        inner.failures[reason.index()] += 1;
    }

    pub fn snapshot(&self, name: &str, version: i64) -> ModelStats {
        let inner = self.inner.lock();
        ModelStats {
            name: name.to_string(),
            version,
            last_inference: inner.last_inference,
            inference_count: inner.inference_count,
            execution_count: inner.execution_count,
            inference_stats: inner.stats.clone(),
            batch_stats: inner.batches.values().cloned().collect(),
            failures: inner.failures,
            histograms: inner.histograms.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_rows_count_in_the_batch_size_only() {
        // The direct sequence batcher's null requests, as Triton counts them.
        let s = StatsCollector::new(None);
        s.record_execution(Execution {
            requests: 1,
            batch_size: 1,
            padding: 2,
            input_ns: 0,
            infer_ns: 4,
            output_ns: 0,
        });
        let snap = s.snapshot("m", 1);
        assert_eq!((snap.inference_count, snap.execution_count), (1, 1));
        assert_eq!(snap.batch_stats[0].batch_size, 3);
        assert_eq!(
            snap.inference_stats.compute_infer,
            Duration { count: 1, ns: 4 }
        );
    }

    #[test]
    fn executions_and_requests_add_up() {
        let s = StatsCollector::new(Some(&HistogramBounds::default()));
        s.record_queue(10);
        s.record_execution(Execution {
            requests: 2,
            batch_size: 3,
            padding: 0,
            input_ns: 1,
            infer_ns: 5,
            output_ns: 2,
        });
        s.record_success(100);
        s.record_failure(FailureReason::Rejected, 7);
        let snap = s.snapshot("m", 1);
        assert_eq!(snap.inference_count, 3);
        assert_eq!(snap.execution_count, 1);
        assert_eq!(
            snap.inference_stats.compute_infer,
            Duration { count: 2, ns: 10 }
        );
        assert_eq!(snap.inference_stats.success, Duration { count: 1, ns: 100 });
        assert_eq!(snap.inference_stats.fail, Duration { count: 1, ns: 7 });
        assert_eq!(snap.batch_stats[0].batch_size, 3);
        assert_eq!(
            snap.batch_stats[0].compute_infer,
            Duration { count: 1, ns: 5 }
        );
        assert!(snap.last_inference > 0);
        assert_eq!(snap.failures(FailureReason::Rejected), 1);
        assert_eq!(snap.failures(FailureReason::Backend), 0);
        let h = snap.histograms.unwrap();
        assert_eq!(h.batch_size.cumulative()[..3], [0, 0, 1]); // 3 <= 4
        assert_eq!(h.request_duration_us.count, 1);
        assert_eq!(h.queue_duration_us.cumulative()[0], 1); // 0.01 us <= 100
    }

    #[test]
    fn histogram_buckets_are_upper_bounds() {
        let mut h = Histogram::new(vec![1.0, 10.0].into());
        for v in [0.5, 1.0, 1.5, 10.0, 11.0] {
            h.observe(v);
        }
        assert_eq!(h.counts, vec![2, 2, 1]);
        assert_eq!(h.cumulative(), vec![2, 4, 5]);
        assert_eq!(h.count, 5);
        assert_eq!(h.sum, 24.0);
    }
}
