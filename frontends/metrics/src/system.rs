//! The host's CPU utilization and memory, from `/proc/stat` and `/proc/meminfo`, sampled by a
//! background task every `--metrics-interval-ms` (as Triton does); a scrape only reads the
//! last sample.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::render::CpuSample;

/// Cumulative CPU time of all cores, in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub busy: u64,
    pub total: u64,
}

/// The aggregate `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq steal
/// (guest time is already inside user and nice). Idle is idle + iowait.
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 4 {
        return None;
    }
    let total: u64 = fields.iter().sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total.saturating_sub(idle),
        total,
    })
}

/// `(MemTotal, MemTotal - MemAvailable)` in bytes from `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    let total = field("MemTotal:")?;
    let available = field("MemAvailable:")?;
    Some((total, total.saturating_sub(available)))
}

/// The busy share between two readings (0 when no time passed).
pub fn utilization(before: CpuTimes, after: CpuTimes) -> f64 {
    let total = after.total.saturating_sub(before.total);
    if total == 0 {
        return 0.0;
    }
    let busy = after.busy.saturating_sub(before.busy);
    (busy as f64 / total as f64).clamp(0.0, 1.0)
}

fn read_cpu_times() -> Option<CpuTimes> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn read_memory() -> Option<(u64, u64)> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// The last sample, shared by the sampling task and the scrapes.
#[derive(Clone, Default)]
pub struct CpuMetrics(Arc<Mutex<CpuSample>>);

impl CpuMetrics {
    pub fn get(&self) -> CpuSample {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, sample: CpuSample) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = sample;
    }

    /// Takes a first reading now (memory; utilization 0 until one interval has passed) and
    /// spawns the task that samples every `interval`; abort the task to stop it.
    pub fn start(interval: Duration) -> (CpuMetrics, tokio::task::JoinHandle<()>) {
        let metrics = CpuMetrics::default();
        let mut last = read_cpu_times();
        let mut sample = CpuSample::default();
        if let Some((total, used)) = read_memory() {
            sample.memory_total_bytes = total;
            sample.memory_used_bytes = used;
        }
        metrics.set(sample);
        let shared = metrics.clone();
        let interval = interval.max(Duration::from_millis(10));
        let task = tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let mut sample = shared.get();
                let now = read_cpu_times();
                if let (Some(before), Some(after)) = (last, now) {
                    sample.utilization = utilization(before, after);
                }
                last = now;
                if let Some((total, used)) = read_memory() {
                    sample.memory_total_bytes = total;
                    sample.memory_used_bytes = used;
                }
                shared.set(sample);
            }
        });
        (metrics, task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_busy_and_total() {
        let text = "cpu  100 5 50 800 20 3 2 1 7 0\ncpu0 50 2 25 400 10 1 1 0 0 0\nintr 1\n";
        let t = parse_proc_stat(text).unwrap();
        assert_eq!(t.total, 100 + 5 + 50 + 800 + 20 + 3 + 2 + 1);
        assert_eq!(t.busy, 100 + 5 + 50 + 3 + 2 + 1);
        assert_eq!(parse_proc_stat("nothing"), None);
        let later = CpuTimes {
            busy: t.busy + 30,
            total: t.total + 120,
        };
        assert_eq!(utilization(t, later), 0.25);
        assert_eq!(utilization(t, t), 0.0);
    }

    #[test]
    fn meminfo_total_and_used() {
        let text = "MemTotal:       16000 kB\nMemFree:         1000 kB\nMemAvailable:    4000 kB\n";
        assert_eq!(parse_meminfo(text), Some((16000 * 1024, 12000 * 1024)));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn this_machine_reads() {
        if std::path::Path::new("/proc/stat").exists() {
            let t = read_cpu_times().unwrap();
            assert!(t.total >= t.busy);
            let (total, used) = read_memory().unwrap();
            assert!(total > 0 && used <= total);
        }
    }
}
