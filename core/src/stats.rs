//! Per model-version statistics, in the shape of Triton's statistics extension.

use std::collections::BTreeMap;

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

/// A snapshot of one model version's statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelStats {
    pub name: String,
    pub version: i64,
    /// Milliseconds since the epoch of the last inference (0 if none).
    pub last_inference: u64,
    pub inference_count: u64,
    pub execution_count: u64,
    pub inference_stats: InferStats,
    pub batch_stats: Vec<BatchStats>,
}

#[derive(Default)]
struct Inner {
    last_inference: u64,
    inference_count: u64,
    execution_count: u64,
    stats: InferStats,
    batches: BTreeMap<u64, BatchStats>,
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
    pub input_ns: u64,
    pub infer_ns: u64,
    pub output_ns: u64,
}

impl StatsCollector {
    /// A request left the queue after `queue_ns`.
    pub fn record_queue(&self, queue_ns: u64) {
        self.inner.lock().stats.queue.add(1, queue_ns);
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
        let b = inner
            .batches
            .entry(e.batch_size)
            .or_insert_with(|| BatchStats {
                batch_size: e.batch_size,
                ..Default::default()
            });
        b.compute_input.add(1, e.input_ns);
        b.compute_infer.add(1, e.infer_ns);
        b.compute_output.add(1, e.output_ns);
    }

    /// A request finished, successfully or not, `ns` after it arrived.
    pub fn record_request(&self, success: bool, ns: u64) {
        let mut inner = self.inner.lock();
        if success {
            inner.stats.success.add(1, ns);
        } else {
            inner.stats.fail.add(1, ns);
        }
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executions_and_requests_add_up() {
        let s = StatsCollector::default();
        s.record_queue(10);
        s.record_execution(Execution {
            requests: 2,
            batch_size: 3,
            input_ns: 1,
            infer_ns: 5,
            output_ns: 2,
        });
        s.record_request(true, 100);
        s.record_request(false, 7);
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
    }
}
