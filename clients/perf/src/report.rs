//! Measurement windows into step results; the console report, CSV and JSON.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use ferrite_client::ModelStats;
use serde_json::{Value, json};

use crate::load::Window;

/// One measured window: what completed in it and the server's statistics delta over it.
pub struct Measured {
    pub duration: Duration,
    pub window: Window,
    pub server: Option<ModelStats>,
}

/// Percentiles perf_analyzer always reports.
pub const PERCENTILES: [u32; 4] = [50, 90, 95, 99];

/// The nearest-rank percentile `p` of sorted `values`.
pub fn percentile(sorted: &[u64], p: u32) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (f64::from(p) / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Measured {
    pub fn throughput(&self, batch: u32) -> f64 {
        let secs = self.duration.as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        self.window.latencies_ns.len() as f64 * f64::from(batch) / secs
    }

    /// Average latency, or percentile `p`, in ns.
    pub fn latency_ns(&self, p: Option<u32>) -> u64 {
        let l = &self.window.latencies_ns;
        if l.is_empty() {
            return 0;
        }
        match p {
            None => l.iter().sum::<u64>() / l.len() as u64,
            Some(p) => {
                let mut sorted = l.clone();
                sorted.sort_unstable();
                percentile(&sorted, p)
            }
        }
    }
}

/// perf_analyzer's stability rule: the last `n` windows' throughputs and latencies each
/// within `pct` percent of their average, and no window without completed requests.
pub fn stable(windows: &[Measured], n: usize, pct: f64, batch: u32, p: Option<u32>) -> bool {
    if windows.len() < n {
        return false;
    }
    let last = &windows[windows.len() - n..];
    let within = |values: &[f64]| {
        let avg = values.iter().sum::<f64>() / values.len() as f64;
        avg > 0.0
            && values
                .iter()
                .all(|v| *v > 0.0 && (v / avg - 1.0).abs() <= pct / 100.0)
    };
    let ips: Vec<f64> = last.iter().map(|w| w.throughput(batch)).collect();
    let lat: Vec<f64> = last.iter().map(|w| w.latency_ns(p) as f64).collect();
    within(&ips) && within(&lat)
}

/// The server-side split of a step, in microseconds per request.
#[derive(Debug, Clone, Default)]
pub struct ServerSplit {
    pub request_count: u64,
    pub inference_count: u64,
    pub execution_count: u64,
    pub avg_request_us: u64,
    pub overhead_us: u64,
    pub queue_us: u64,
    pub compute_input_us: u64,
    pub compute_infer_us: u64,
    pub compute_output_us: u64,
}

/// The client's CPU time over a step.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub user: Duration,
    pub system: Duration,
    pub requests: u64,
}

impl Cpu {
    pub fn per_request_us(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        (self.user + self.system).as_secs_f64() * 1e6 / self.requests as f64
    }
}

/// One step of the sweep (a concurrency or a request rate).
#[derive(Debug, Clone)]
pub struct Step {
    pub concurrency: Option<u32>,
    pub request_rate: Option<f64>,
    pub stable: bool,
    pub windows: usize,
    pub truncated: bool,
    pub request_count: u64,
    pub duration_s: f64,
    pub throughput: f64,
    pub avg_us: u64,
    /// (percentile, usec), sorted, including --percentile.
    pub percentiles: Vec<(u32, u64)>,
    pub stabilizing_us: u64,
    pub client_send_us: u64,
    pub client_recv_us: u64,
    pub response_wait_us: u64,
    pub network_us: u64,
    pub server: Option<ServerSplit>,
    pub cpu: Cpu,
}

fn sum_stats(a: &ModelStats, b: &ModelStats) -> ModelStats {
    let add = |x: ferrite_client::StatDuration, y: ferrite_client::StatDuration| {
        ferrite_client::StatDuration {
            count: x.count + y.count,
            ns: x.ns + y.ns,
        }
    };
    ModelStats {
        name: a.name.clone(),
        version: a.version.clone(),
        last_inference: a.last_inference.max(b.last_inference),
        inference_count: a.inference_count + b.inference_count,
        execution_count: a.execution_count + b.execution_count,
        success: add(a.success, b.success),
        fail: add(a.fail, b.fail),
        queue: add(a.queue, b.queue),
        compute_input: add(a.compute_input, b.compute_input),
        compute_infer: add(a.compute_infer, b.compute_infer),
        compute_output: add(a.compute_output, b.compute_output),
        cache_hit: add(a.cache_hit, b.cache_hit),
        cache_miss: add(a.cache_miss, b.cache_miss),
    }
}

/// The statistics of every version in `stats` added up.
pub fn total_stats(stats: &[ModelStats]) -> ModelStats {
    stats
        .iter()
        .fold(ModelStats::default(), |acc, s| sum_stats(&acc, s))
}

pub struct StepInput<'a> {
    pub concurrency: Option<u32>,
    pub request_rate: Option<f64>,
    pub windows: &'a [Measured],
    pub stable: bool,
    pub truncated: bool,
    pub batch: u32,
    pub percentile: Option<u32>,
    pub cpu: Cpu,
}

/// Merges the last (up to) 3 windows into the step's result.
pub fn summarize(input: StepInput<'_>) -> Step {
    let n = input.windows.len().min(3);
    let last = &input.windows[input.windows.len() - n..];
    let mut latencies: Vec<u64> = last
        .iter()
        .flat_map(|w| w.window.latencies_ns.iter().copied())
        .collect();
    latencies.sort_unstable();
    let count = latencies.len() as u64;
    let duration: Duration = last.iter().map(|w| w.duration).sum();
    let send_ns: u64 = last.iter().map(|w| w.window.send_ns).sum();
    let recv_ns: u64 = last.iter().map(|w| w.window.recv_ns).sum();
    let per = |ns: u64| ns.checked_div(count).unwrap_or(0) / 1000;
    let avg_us = per(latencies.iter().sum());
    let mut ps: Vec<u32> = PERCENTILES.to_vec();
    if let Some(p) = input.percentile
        && !ps.contains(&p)
    {
        ps.push(p);
        ps.sort_unstable();
    }
    let percentiles: Vec<(u32, u64)> = ps
        .iter()
        .map(|&p| (p, percentile(&latencies, p) / 1000))
        .collect();
    let stabilizing_us = match input.percentile {
        Some(p) => percentile(&latencies, p) / 1000,
        None => avg_us,
    };
    let client_send_us = per(send_ns);
    let client_recv_us = per(recv_ns);
    let response_wait_us = avg_us.saturating_sub(client_send_us + client_recv_us);

    let server = if last.iter().all(|w| w.server.is_some()) && n > 0 {
        let s = last
            .iter()
            .filter_map(|w| w.server.as_ref())
            .fold(ModelStats::default(), |acc, s| sum_stats(&acc, s));
        let requests = s.success.count;
        let avg = |ns: u64| ns.checked_div(requests).unwrap_or(0) / 1000;
        let queue_us = avg(s.queue.ns);
        let compute_input_us = avg(s.compute_input.ns);
        let compute_infer_us = avg(s.compute_infer.ns);
        let compute_output_us = avg(s.compute_output.ns);
        let avg_request_us = avg(s.success.ns);
        Some(ServerSplit {
            request_count: requests,
            inference_count: s.inference_count,
            execution_count: s.execution_count,
            avg_request_us,
            overhead_us: avg_request_us
                .saturating_sub(queue_us + compute_input_us + compute_infer_us + compute_output_us),
            queue_us,
            compute_input_us,
            compute_infer_us,
            compute_output_us,
        })
    } else {
        None
    };
    // perf_analyzer: what the client waited for that the server does not account for.
    let network_us = match &server {
        Some(s) => response_wait_us.saturating_sub(
            s.queue_us + s.compute_input_us + s.compute_infer_us + s.compute_output_us,
        ),
        None => response_wait_us,
    };
    let secs = duration.as_secs_f64();
    Step {
        concurrency: input.concurrency,
        request_rate: input.request_rate,
        stable: input.stable,
        windows: input.windows.len(),
        truncated: input.truncated,
        request_count: count,
        duration_s: secs,
        throughput: if secs > 0.0 {
            count as f64 * f64::from(input.batch) / secs
        } else {
            0.0
        },
        avg_us,
        percentiles,
        stabilizing_us,
        client_send_us,
        client_recv_us,
        response_wait_us,
        network_us,
        server,
        cpu: input.cpu,
    }
}

fn fmt_rate(r: f64) -> String {
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r}")
    }
}

fn fmt_throughput(t: f64) -> String {
    let s = format!("{t:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

impl Step {
    pub fn label(&self) -> String {
        match (self.concurrency, self.request_rate) {
            (Some(c), _) => format!("Concurrency: {c}"),
            (None, Some(r)) => format!("Request Rate: {}", fmt_rate(r)),
            _ => String::new(),
        }
    }

    /// perf_analyzer's block for one step.
    pub fn console(&self, protocol: &str, streaming: bool) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "  Client: ");
        let _ = writeln!(o, "    Request count: {}", self.request_count);
        let _ = writeln!(
            o,
            "    Throughput: {} infer/sec",
            fmt_throughput(self.throughput)
        );
        for (p, us) in &self.percentiles {
            let _ = writeln!(o, "    p{p} latency: {us} usec");
        }
        if streaming {
            let _ = writeln!(
                o,
                "    Avg latency: {} usec (standard deviation n/a)",
                self.avg_us
            );
        } else if protocol == "grpc" {
            let _ = writeln!(
                o,
                "    Avg gRPC time: {} usec ((un)marshal request/response {} usec + response wait {} usec)",
                self.avg_us,
                self.client_send_us + self.client_recv_us,
                self.response_wait_us
            );
        } else {
            let _ = writeln!(
                o,
                "    Avg HTTP time: {} usec (send {} usec + response wait {} usec + receive {} usec)",
                self.avg_us, self.client_send_us, self.response_wait_us, self.client_recv_us
            );
        }
        let _ = writeln!(
            o,
            "    Client CPU: {:.1} usec/request (user {:.3} s + system {:.3} s over {} requests)",
            self.cpu.per_request_us(),
            self.cpu.user.as_secs_f64(),
            self.cpu.system.as_secs_f64(),
            self.cpu.requests
        );
        let _ = writeln!(o, "  Server: ");
        match &self.server {
            Some(s) => {
                let _ = writeln!(o, "    Inference count: {}", s.inference_count);
                let _ = writeln!(o, "    Execution count: {}", s.execution_count);
                let _ = writeln!(o, "    Successful request count: {}", s.request_count);
                let _ = writeln!(
                    o,
                    "    Avg request latency: {} usec (overhead {} usec + queue {} usec + compute input {} usec + compute infer {} usec + compute output {} usec)",
                    s.avg_request_us,
                    s.overhead_us,
                    s.queue_us,
                    s.compute_input_us,
                    s.compute_infer_us,
                    s.compute_output_us
                );
            }
            None => {
                let _ = writeln!(o, "    (statistics not available)");
            }
        }
        o
    }
}

/// perf_analyzer's `-f` CSV: one row per step, in increasing throughput.
pub fn csv(steps: &[Step], verbose: bool) -> String {
    let mut o = String::new();
    let first = if steps.first().is_some_and(|s| s.concurrency.is_none()) {
        "Request Rate"
    } else {
        "Concurrency"
    };
    o.push_str(first);
    o.push_str(",Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv");
    if let Some(s) = steps.first() {
        for (p, _) in &s.percentiles {
            let _ = write!(o, ",p{p} latency");
        }
    }
    if verbose {
        o.push_str(",Avg latency,request/response,response wait");
    }
    o.push('\n');
    let mut sorted: Vec<&Step> = steps.iter().collect();
    sorted.sort_by(|a, b| a.throughput.total_cmp(&b.throughput));
    for s in sorted {
        let server = s.server.clone().unwrap_or_default();
        let _ = write!(
            o,
            "{},{},{},{},{},{},{},{},{}",
            match (s.concurrency, s.request_rate) {
                (Some(c), _) => c.to_string(),
                (None, Some(r)) => fmt_rate(r),
                _ => String::new(),
            },
            fmt_throughput(s.throughput),
            s.client_send_us,
            s.network_us,
            server.queue_us,
            server.compute_input_us,
            server.compute_infer_us,
            server.compute_output_us,
            s.client_recv_us
        );
        for (_, us) in &s.percentiles {
            let _ = write!(o, ",{us}");
        }
        if verbose {
            let _ = write!(
                o,
                ",{},{},{}",
                s.avg_us,
                s.client_send_us + s.client_recv_us,
                s.response_wait_us
            );
        }
        o.push('\n');
    }
    o
}

pub fn step_json(s: &Step) -> Value {
    let mut latency = serde_json::Map::new();
    latency.insert("avg".into(), s.avg_us.into());
    for (p, us) in &s.percentiles {
        latency.insert(format!("p{p}"), (*us).into());
    }
    json!({
        "concurrency": s.concurrency,
        "request_rate": s.request_rate,
        "stable": s.stable,
        "windows": s.windows,
        "truncated": s.truncated,
        "request_count": s.request_count,
        "duration_s": s.duration_s,
        "throughput_infer_per_sec": s.throughput,
        "latency_us": latency,
        "stabilizing_latency_us": s.stabilizing_us,
        "client_send_us": s.client_send_us,
        "client_recv_us": s.client_recv_us,
        "response_wait_us": s.response_wait_us,
        "network_server_send_recv_us": s.network_us,
        "server": s.server.as_ref().map(|v| json!({
            "request_count": v.request_count,
            "inference_count": v.inference_count,
            "execution_count": v.execution_count,
            "avg_request_latency_us": v.avg_request_us,
            "overhead_us": v.overhead_us,
            "queue_us": v.queue_us,
            "compute_input_us": v.compute_input_us,
            "compute_infer_us": v.compute_infer_us,
            "compute_output_us": v.compute_output_us,
        })),
        "client_cpu": {
            "user_s": s.cpu.user.as_secs_f64(),
            "system_s": s.cpu.system.as_secs_f64(),
            "requests": s.cpu.requests,
            "us_per_request": s.cpu.per_request_us(),
        },
    })
}

pub fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(latencies_us: &[u64], ms: u64) -> Measured {
        Measured {
            duration: Duration::from_millis(ms),
            window: Window {
                latencies_ns: latencies_us.iter().map(|u| u * 1000).collect(),
                send_ns: 0,
                recv_ns: 0,
            },
            server: None,
        }
    }

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 99), 99);
        assert_eq!(percentile(&[7], 90), 7);
        assert_eq!(percentile(&[], 90), 0);
    }

    #[test]
    fn stability() {
        let w = |lat: u64, n: usize| window(&vec![lat; n], 1000);
        assert!(!stable(&[w(100, 10), w(100, 10)], 3, 10.0, 1, None));
        assert!(stable(
            &[w(100, 10), w(105, 10), w(98, 11)],
            3,
            10.0,
            1,
            None
        ));
        assert!(!stable(
            &[w(100, 10), w(150, 10), w(98, 10)],
            3,
            10.0,
            1,
            None
        ));
        assert!(!stable(
            &[w(100, 10), w(100, 20), w(100, 10)],
            3,
            10.0,
            1,
            None
        ));
        assert!(!stable(
            &[w(100, 0), w(100, 0), w(100, 0)],
            3,
            10.0,
            1,
            None
        ));
    }

    #[test]
    fn csv_header_and_order() {
        let windows = [window(&[100, 200], 1000)];
        let step = |c, ips: u64| {
            let mut s = summarize(StepInput {
                concurrency: Some(c),
                request_rate: None,
                windows: &windows,
                stable: true,
                truncated: false,
                batch: 1,
                percentile: None,
                cpu: Cpu::default(),
            });
            s.throughput = ips as f64;
            s
        };
        let text = csv(&[step(1, 20), step(2, 10)], false);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency"
        );
        assert!(lines.next().unwrap().starts_with("2,10,"));
        assert!(lines.next().unwrap().starts_with("1,20,"));
    }
}
