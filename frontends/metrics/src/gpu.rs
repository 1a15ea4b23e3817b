//! The GPUs' utilization, memory, power and energy, read from NVML (`libnvidia-ml.so`, which
//! the driver installs; opened at run time, so nothing of CUDA is needed to build or run) by
//! a background task every `--metrics-interval-ms`, as the CPU is; a scrape only reads the
//! last sample. Without the library or a driver there are simply no GPU families.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

use crate::render::GpuSample;

/// Joules used between two readings of NVML's energy counter (millijoules since the driver
/// loaded); 0 if the counter went back (the driver was reloaded).
pub fn energy_joules(start_mj: u64, now_mj: u64) -> f64 {
    now_mj.saturating_sub(start_mj) as f64 / 1000.0
}

/// NVML, and each GPU's energy counter when it was first read (by UUID).
struct Sampler {
    nvml: Nvml,
    energy_start: HashMap<String, u64>,
}

impl Sampler {
    /// Opens NVML (an error when the library or the driver is absent) and takes a first
    /// sample, which records the energy counters' starting points.
    fn init() -> Result<(Sampler, Vec<GpuSample>), NvmlError> {
        let mut sampler = Sampler {
            nvml: Nvml::init()?,
            energy_start: HashMap::new(),
        };
        let gpus = sampler.sample();
        Ok((sampler, gpus))
    }

    /// Every GPU NVML sees. A GPU whose UUID cannot be read is left out; a reading that fails
    /// (power on a GPU without power readings) leaves only that value out.
    fn sample(&mut self) -> Vec<GpuSample> {
        let count = match self.nvml.device_count() {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!("GPU metrics: NVML device count failed: {e}");
                return Vec::new();
            }
        };
        let mut gpus = Vec::with_capacity(count as usize);
        for index in 0..count {
            let Some((device, uuid)) = self
                .nvml
                .device_by_index(index)
                .and_then(|d| d.uuid().map(|uuid| (d, uuid)))
                .inspect_err(|e| tracing::debug!("GPU metrics: GPU {index} left out: {e}"))
                .ok()
            else {
                continue;
            };
            let memory = device.memory_info().ok();
            let energy = device.total_energy_consumption().ok().map(|now| {
                let start = *self.energy_start.entry(uuid.clone()).or_insert(now);
                energy_joules(start, now)
            });
            gpus.push(GpuSample {
                utilization: device
                    .utilization_rates()
                    .ok()
                    .map(|u| f64::from(u.gpu) / 100.0),
                memory_total_bytes: memory.as_ref().map(|m| m.total),
                memory_used_bytes: memory.as_ref().map(|m| m.used),
                power_usage_watts: device.power_usage().ok().map(milliwatts),
                power_limit_watts: device.power_management_limit().ok().map(milliwatts),
                energy_joules: energy,
                uuid,
            });
        }
        gpus
    }
}

fn milliwatts(mw: u32) -> f64 {
    f64::from(mw) / 1000.0
}

/// The last sample, shared by the sampling task and the scrapes; empty until NVML answered,
/// and for good when it is not there.
#[derive(Clone, Default)]
pub struct GpuMetrics(Arc<Mutex<Vec<GpuSample>>>);

impl GpuMetrics {
    pub fn get(&self) -> Vec<GpuSample> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, gpus: Vec<GpuSample>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = gpus;
    }

    /// Opens NVML (here, once, at startup: the server's first scrape then already has the
    /// GPUs) and spawns the task that samples every `interval`; abort the task to stop it.
    /// When NVML cannot be opened, this logs why, the task ends at once and the metrics stay
    /// empty. A sample is a few microseconds of NVML queries, taken on the task itself rather
    /// than on a blocking thread that would come and go.
    pub fn start(interval: Duration) -> (GpuMetrics, tokio::task::JoinHandle<()>) {
        let metrics = GpuMetrics::default();
        let shared = metrics.clone();
        let interval = interval.max(Duration::from_millis(10));
        let mut sampler = match Sampler::init() {
            Ok((sampler, gpus)) => {
                tracing::info!("GPU metrics on: {} GPU(s) seen by NVML", gpus.len());
                metrics.set(gpus);
                sampler
            }
            Err(e) => {
                tracing::info!("GPU metrics off: NVML not available ({e})");
                return (metrics, tokio::spawn(async {}));
            }
        };
        let task = tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                shared.set(sampler.sample());
            }
        });
        (metrics, task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_since_start_in_joules() {
        assert_eq!(energy_joules(1_000_000, 1_000_000), 0.0);
        assert_eq!(energy_joules(1_000_000, 2_474_042), 1474.042);
        assert_eq!(energy_joules(0, 1), 0.001);
        // A driver reload resets the counter: no negative energy.
        assert_eq!(energy_joules(5_000, 10), 0.0);
        assert_eq!(energy_joules(0, u64::MAX), u64::MAX as f64 / 1000.0);
        assert_eq!(milliwatts(33_246), 33.246);
        assert_eq!(milliwatts(700_000), 700.0);
    }

    /// A real `Nvml::init`: on a machine without the NVIDIA driver it fails, and the sampler
    /// gives no GPU families, without a panic; where a driver is there, each GPU has a UUID.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn this_machine_without_nvml_has_no_gpu_families() {
        let available = Nvml::init().is_ok();
        let (metrics, task) = GpuMetrics::start(Duration::from_millis(20));
        if available {
            tokio::time::sleep(Duration::from_millis(500)).await;
            task.abort();
            let gpus = metrics.get();
            assert!(gpus.iter().all(|g| g.uuid.starts_with("GPU-")), "{gpus:?}");
        } else {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("the task ends when NVML is absent")
                .expect("no panic");
            assert_eq!(metrics.get(), Vec::new());
            let text = crate::render(&[], &metrics.get(), None);
            assert_eq!(text, "");
            assert!(Sampler::init().is_err());
        }
    }
}
