//! The Prometheus text exposition format, written by hand into one `String`: Triton's
//! families, HELP and TYPE texts and label order (`model`, then `reason`, then `version`, as
//! prometheus-cpp sorts them), then Ferrite's histograms, the GPU families (label `gpu_uuid`)
//! and the CPU families.

use std::fmt::Write as _;

use ferrite_core::stats::{FailureReason, Histogram, ModelStats};

/// What one model version contributes to a scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelSample {
    pub stats: ModelStats,
    /// Requests accepted and waiting for an instance (`nv_inference_pending_request_count`).
    pub pending: u64,
}

/// The host's CPU and memory, as last sampled.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuSample {
    /// Busy share of all cores over the last sampling interval, 0.0 to 1.0.
    pub utilization: f64,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
}

/// One GPU, as last sampled. A reading the GPU did not give (power on a GPU without power
/// readings, energy before Volta) is `None`: that GPU's line is left out of that family.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GpuSample {
    /// NVML's UUID (`GPU-...`): the `gpu_uuid` label.
    pub uuid: String,
    /// Busy share over the driver's last sample period, 0.0 to 1.0.
    pub utilization: Option<f64>,
    pub memory_total_bytes: Option<u64>,
    pub memory_used_bytes: Option<u64>,
    pub power_usage_watts: Option<f64>,
    /// The power management limit.
    pub power_limit_watts: Option<f64>,
    /// Energy used since the metrics started, in joules.
    pub energy_joules: Option<f64>,
}

/// One GPU reading: a gauge, or the energy counter.
type GpuRead = fn(&GpuSample) -> Option<f64>;

/// Triton's GPU families, in its order: name, HELP, TYPE, which reading. Memory sizes are
/// below 2^53 bytes, so exact as `f64`.
const GPU_FAMILIES: [(&str, &str, &str, GpuRead); 6] = [
    (
        "nv_gpu_utilization",
        "GPU utilization rate [0.0 - 1.0)",
        "gauge",
        |g| g.utilization,
    ),
    (
        "nv_gpu_memory_total_bytes",
        "GPU total memory, in bytes",
        "gauge",
        |g| g.memory_total_bytes.map(|b| b as f64),
    ),
    (
        "nv_gpu_memory_used_bytes",
        "GPU used memory, in bytes",
        "gauge",
        |g| g.memory_used_bytes.map(|b| b as f64),
    ),
    (
        "nv_gpu_power_usage",
        "GPU power usage in watts",
        "gauge",
        |g| g.power_usage_watts,
    ),
    (
        "nv_gpu_power_limit",
        "GPU power management limit in watts",
        "gauge",
        |g| g.power_limit_watts,
    ),
    (
        "nv_energy_consumption",
        "GPU energy consumption in joules since the Triton Server started",
        "counter",
        |g| g.energy_joules,
    ),
];

/// A counter of the statistics, in microseconds or a plain count.
type Read = fn(&ModelStats) -> u64;

/// Triton's per-model counters after `nv_inference_request_failure`, in its order.
const COUNTERS: [(&str, &str, Read); 7] = [
    (
        "nv_inference_count",
        "Number of inferences performed (does not include cached requests)",
        |s| s.inference_count,
    ),
    (
        "nv_inference_exec_count",
        "Number of model executions performed (does not include cached requests)",
        |s| s.execution_count,
    ),
    (
        "nv_inference_request_duration_us",
        "Cumulative inference request duration in microseconds (includes cached requests)",
        |s| s.inference_stats.success.ns / 1000,
    ),
    (
        "nv_inference_queue_duration_us",
        "Cumulative inference queuing duration in microseconds (includes cached requests)",
        |s| s.inference_stats.queue.ns / 1000,
    ),
    (
        "nv_inference_compute_input_duration_us",
        "Cumulative compute input duration in microseconds (does not include cached requests)",
        |s| s.inference_stats.compute_input.ns / 1000,
    ),
    (
        "nv_inference_compute_infer_duration_us",
        "Cumulative compute inference duration in microseconds (does not include cached requests)",
        |s| s.inference_stats.compute_infer.ns / 1000,
    ),
    (
        "nv_inference_compute_output_duration_us",
        "Cumulative inference compute output duration in microseconds (does not include cached requests)",
        |s| s.inference_stats.compute_output.ns / 1000,
    ),
];

type Pick = fn(&ferrite_core::stats::Histograms) -> &Histogram;

/// Ferrite's histograms (Triton has none of these): name, HELP, which one.
const HISTOGRAMS: [(&str, &str, Pick); 3] = [
    (
        "nv_inference_request_duration_histogram_us",
        "Histogram of successful inference request durations (arrival to final response) in microseconds",
        |h| &h.request_duration_us,
    ),
    (
        "nv_inference_queue_duration_histogram_us",
        "Histogram of inference queuing durations in microseconds",
        |h| &h.queue_duration_us,
    ),
    (
        "nv_inference_batch_size_histogram",
        "Histogram of the batch sizes of model executions",
        |h| &h.batch_size,
    ),
];

/// One model version's label parts, escaped once per scrape.
struct Labels<'a> {
    /// `model="..."`
    model: String,
    /// `version="..."`
    version: String,
    sample: &'a ModelSample,
}

/// The scrape's body. `gpus`: one sample per GPU (a family with no GPU's value is left out);
/// `cpu`: the CPU families (left out when `None`).
pub fn render(models: &[ModelSample], gpus: &[GpuSample], cpu: Option<&CpuSample>) -> String {
    let mut out = String::with_capacity(2048 + models.len() * 3072);
    let labels: Vec<Labels> = models
        .iter()
        .map(|m| {
            let mut model = String::with_capacity(m.stats.name.len() + 8);
            model.push_str("model=\"");
            escape_into(&mut model, &m.stats.name);
            model.push('"');
            let mut version = String::with_capacity(16);
            version.push_str("version=\"");
            push_i64(&mut version, m.stats.version);
            version.push('"');
            Labels {
                model,
                version,
                sample: m,
            }
        })
        .collect();

    if !labels.is_empty() {
        let success = "nv_inference_request_success";
        header(
            &mut out,
            success,
            "Number of successful inference requests, all batch sizes",
            "counter",
        );
        for l in &labels {
            sample(
                &mut out,
                success,
                l,
                None,
                l.sample.stats.inference_stats.success.count,
            );
        }
        let failure = "nv_inference_request_failure";
        header(
            &mut out,
            failure,
            "Number of failed inference requests, all batch sizes",
            "counter",
        );
        for l in &labels {
            for reason in FailureReason::ALL {
                let n = l.sample.stats.failures(reason);
                sample(&mut out, failure, l, Some(reason.label()), n);
            }
        }
        for (name, help, read) in COUNTERS {
            header(&mut out, name, help, "counter");
            for l in &labels {
                sample(&mut out, name, l, None, read(&l.sample.stats));
            }
        }
        let pending = "nv_inference_pending_request_count";
        header(
            &mut out,
            pending,
            "Instantaneous number of pending requests awaiting execution per-model.",
            "gauge",
        );
        for l in &labels {
            sample(&mut out, pending, l, None, l.sample.pending);
        }
    }

    if labels.iter().any(|l| l.sample.stats.histograms.is_some()) {
        for (name, help, pick) in HISTOGRAMS {
            header(&mut out, name, help, "histogram");
            for l in &labels {
                if let Some(h) = &l.sample.stats.histograms {
                    histogram(&mut out, name, l, pick(h));
                }
            }
        }
    }

    render_gpus(&mut out, gpus);

    if let Some(cpu) = cpu {
        let name = "nv_cpu_utilization";
        header(&mut out, name, "CPU utilization rate [0.0 - 1.0]", "gauge");
        out.push_str(name);
        out.push(' ');
        push_f64(&mut out, cpu.utilization);
        out.push('\n');
        for (name, help, value) in [
            (
                "nv_cpu_memory_total_bytes",
                "CPU total memory (RAM), in bytes",
                cpu.memory_total_bytes,
            ),
            (
                "nv_cpu_memory_used_bytes",
                "CPU used memory (RAM), in bytes",
                cpu.memory_used_bytes,
            ),
        ] {
            header(&mut out, name, help, "gauge");
            out.push_str(name);
            out.push(' ');
            push_u64(&mut out, value);
            out.push('\n');
        }
    }
    out
}

/// The GPU families: `name{gpu_uuid="..."} value` per GPU that has the reading; a family is
/// printed only when one GPU at least has it.
fn render_gpus(out: &mut String, gpus: &[GpuSample]) {
    if gpus.is_empty() {
        return;
    }
    let labels: Vec<String> = gpus
        .iter()
        .map(|g| {
            let mut label = String::with_capacity(g.uuid.len() + 12);
            label.push_str("gpu_uuid=\"");
            escape_into(&mut label, &g.uuid);
            label.push('"');
            label
        })
        .collect();
    for (name, help, kind, read) in GPU_FAMILIES {
        if gpus.iter().all(|g| read(g).is_none()) {
            continue;
        }
        header(out, name, help, kind);
        for (g, label) in gpus.iter().zip(&labels) {
            if let Some(value) = read(g) {
                out.push_str(name);
                out.push('{');
                out.push_str(label);
                out.push_str("} ");
                push_f64(out, value);
                out.push('\n');
            }
        }
    }
}

/// Appends the drivers' own families (`HostApi::metric`, Triton's custom metrics), after
/// Ferrite's.
pub fn render_custom(out: &mut String, families: &[ferrite_core::custom_metrics::Family]) {
    for family in families {
        // HELP text escapes backslash and newline (the exposition format).
        let help = family.help.replace('\\', "\\\\").replace('\n', "\\n");
        header(out, &family.name, &help, family.kind.as_str());
        for (labels, value) in &family.samples {
            out.push_str(&family.name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (name, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(name);
                    out.push_str("=\"");
                    escape_into(out, v);
                    out.push('"');
                }
                out.push('}');
            }
            out.push(' ');
            push_f64(out, *value);
            out.push('\n');
        }
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    out.push_str(help);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

/// `name{model="m",[reason="R",]version="v"} value`
fn sample(out: &mut String, name: &str, l: &Labels, reason: Option<&str>, value: u64) {
    out.push_str(name);
    out.push('{');
    out.push_str(&l.model);
    if let Some(reason) = reason {
        out.push_str(",reason=\"");
        out.push_str(reason);
        out.push('"');
    }
    out.push(',');
    out.push_str(&l.version);
    out.push_str("} ");
    push_u64(out, value);
    out.push('\n');
}

/// `name_bucket{model,version,le}` per bound and `+Inf`, then `name_sum` and `name_count`.
fn histogram(out: &mut String, name: &str, l: &Labels, h: &Histogram) {
    let cumulative = h.cumulative();
    for (i, count) in cumulative.iter().enumerate() {
        out.push_str(name);
        out.push_str("_bucket{");
        out.push_str(&l.model);
        out.push(',');
        out.push_str(&l.version);
        out.push_str(",le=\"");
        match h.bounds.get(i) {
            Some(&bound) => push_f64(out, bound),
            None => out.push_str("+Inf"),
        }
        out.push_str("\"} ");
        push_u64(out, *count);
        out.push('\n');
    }
    for (suffix, value) in [("_sum", None), ("_count", Some(h.count))] {
        out.push_str(name);
        out.push_str(suffix);
        out.push('{');
        out.push_str(&l.model);
        out.push(',');
        out.push_str(&l.version);
        out.push_str("} ");
        match value {
            Some(v) => push_u64(out, v),
            None => push_f64(out, h.sum),
        }
        out.push('\n');
    }
}

/// A label value in the exposition format: `\`, `"` and newlines escaped.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

fn push_i64(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    push_u64(out, v.unsigned_abs());
}

/// A float as Prometheus writes one: the shortest text that reads back the same (`100`,
/// `0.25`), `+Inf`, `-Inf`, `NaN`.
fn push_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v == v.trunc() && v.abs() < 1e15 {
        push_i64(out, v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrite_core::stats::{Duration, Execution, HistogramBounds, InferStats, StatsCollector};

    fn known() -> ModelStats {
        ModelStats {
            name: "add_sub".into(),
            version: 1,
            last_inference: 1,
            inference_count: 6,
            execution_count: 5,
            inference_stats: InferStats {
                success: Duration {
                    count: 6,
                    ns: 36_706_999,
                },
                fail: Duration { count: 3, ns: 10 },
                queue: Duration {
                    count: 6,
                    ns: 150_400,
                },
                compute_input: Duration {
                    count: 6,
                    ns: 238_000,
                },
                compute_infer: Duration {
                    count: 6,
                    ns: 35_974_500,
                },
                compute_output: Duration {
                    count: 6,
                    ns: 321_999,
                },
                ..Default::default()
            },
            batch_stats: Vec::new(),
            failures: [1, 0, 2, 0],
            histograms: None,
        }
    }

    #[test]
    fn triton_families_exactly() {
        let text = render(
            &[ModelSample {
                stats: known(),
                pending: 2,
            }],
            &[],
            Some(&CpuSample {
                utilization: 0.9646464646464646,
                memory_total_bytes: 25_276_502_016,
                memory_used_bytes: 733_888_512,
            }),
        );
        let expected = r#"# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="add_sub",version="1"} 6
# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="add_sub",reason="OTHER",version="1"} 1
nv_inference_request_failure{model="add_sub",reason="BACKEND",version="1"} 0
nv_inference_request_failure{model="add_sub",reason="REJECTED",version="1"} 2
nv_inference_request_failure{model="add_sub",reason="CANCELED",version="1"} 0
# HELP nv_inference_count Number of inferences performed (does not include cached requests)
# TYPE nv_inference_count counter
nv_inference_count{model="add_sub",version="1"} 6
# HELP nv_inference_exec_count Number of model executions performed (does not include cached requests)
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="add_sub",version="1"} 5
# HELP nv_inference_request_duration_us Cumulative inference request duration in microseconds (includes cached requests)
# TYPE nv_inference_request_duration_us counter
nv_inference_request_duration_us{model="add_sub",version="1"} 36706
# HELP nv_inference_queue_duration_us Cumulative inference queuing duration in microseconds (includes cached requests)
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="add_sub",version="1"} 150
# HELP nv_inference_compute_input_duration_us Cumulative compute input duration in microseconds (does not include cached requests)
# TYPE nv_inference_compute_input_duration_us counter
nv_inference_compute_input_duration_us{model="add_sub",version="1"} 238
# HELP nv_inference_compute_infer_duration_us Cumulative compute inference duration in microseconds (does not include cached requests)
# TYPE nv_inference_compute_infer_duration_us counter
nv_inference_compute_infer_duration_us{model="add_sub",version="1"} 35974
# HELP nv_inference_compute_output_duration_us Cumulative inference compute output duration in microseconds (does not include cached requests)
# TYPE nv_inference_compute_output_duration_us counter
nv_inference_compute_output_duration_us{model="add_sub",version="1"} 321
# HELP nv_inference_pending_request_count Instantaneous number of pending requests awaiting execution per-model.
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="add_sub",version="1"} 2
# HELP nv_cpu_utilization CPU utilization rate [0.0 - 1.0]
# TYPE nv_cpu_utilization gauge
nv_cpu_utilization 0.9646464646464646
# HELP nv_cpu_memory_total_bytes CPU total memory (RAM), in bytes
# TYPE nv_cpu_memory_total_bytes gauge
nv_cpu_memory_total_bytes 25276502016
# HELP nv_cpu_memory_used_bytes CPU used memory (RAM), in bytes
# TYPE nv_cpu_memory_used_bytes gauge
nv_cpu_memory_used_bytes 733888512
"#;
        assert_eq!(text, expected);
    }

    #[test]
    fn every_model_version_in_each_family() {
        let mut a = known();
        a.name = "a".into();
        let mut b = known();
        b.name = "b".into();
        b.version = 3;
        let samples = [a, b].map(|stats| ModelSample { stats, pending: 0 });
        let text = render(&samples, &[], None);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("nv_inference_count{"))
            .collect();
        assert_eq!(
            lines,
            [
                r#"nv_inference_count{model="a",version="1"} 6"#,
                r#"nv_inference_count{model="b",version="3"} 6"#
            ]
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("nv_inference_request_failure{"))
                .count(),
            8
        );
        assert!(!text.contains("nv_cpu"), "{text}");
        assert!(!text.contains("histogram"), "histograms are off: {text}");
    }

    #[test]
    fn nothing_loaded_and_no_cpu_is_empty() {
        assert_eq!(render(&[], &[], None), "");
        let text = render(&[], &[], Some(&CpuSample::default()));
        assert!(text.starts_with("# HELP nv_cpu_utilization "), "{text}");
        assert!(text.contains("\nnv_cpu_utilization 0\n"), "{text}");
    }

    #[test]
    fn histograms_with_inf_bucket_sum_and_count() {
        let bounds = HistogramBounds {
            duration_us: vec![0.5, 100.0, 2500.0],
            batch_size: vec![1.0, 2.0],
        };
        let collector = StatsCollector::new(Some(&bounds));
        collector.record_success(50_000); // 50 us
        collector.record_success(3_000_000); // 3000 us: only +Inf
        collector.record_queue(1_500); // 1.5 us
        collector.record_execution(Execution {
            requests: 1,
            batch_size: 3,
            padding: 0,
            input_ns: 0,
            infer_ns: 0,
            output_ns: 0,
        });
        let stats = collector.snapshot("m", 2);
        let text = render(&[ModelSample { stats, pending: 0 }], &[], None);
        let tail = &text[text
            .find("# HELP nv_inference_request_duration_histogram_us")
            .unwrap()..];
        let expected = r#"# HELP nv_inference_request_duration_histogram_us Histogram of successful inference request durations (arrival to final response) in microseconds
# TYPE nv_inference_request_duration_histogram_us histogram
nv_inference_request_duration_histogram_us_bucket{model="m",version="2",le="0.5"} 0
nv_inference_request_duration_histogram_us_bucket{model="m",version="2",le="100"} 1
nv_inference_request_duration_histogram_us_bucket{model="m",version="2",le="2500"} 1
nv_inference_request_duration_histogram_us_bucket{model="m",version="2",le="+Inf"} 2
nv_inference_request_duration_histogram_us_sum{model="m",version="2"} 3050
nv_inference_request_duration_histogram_us_count{model="m",version="2"} 2
# HELP nv_inference_queue_duration_histogram_us Histogram of inference queuing durations in microseconds
# TYPE nv_inference_queue_duration_histogram_us histogram
nv_inference_queue_duration_histogram_us_bucket{model="m",version="2",le="0.5"} 0
nv_inference_queue_duration_histogram_us_bucket{model="m",version="2",le="100"} 1
nv_inference_queue_duration_histogram_us_bucket{model="m",version="2",le="2500"} 1
nv_inference_queue_duration_histogram_us_bucket{model="m",version="2",le="+Inf"} 1
nv_inference_queue_duration_histogram_us_sum{model="m",version="2"} 1.5
nv_inference_queue_duration_histogram_us_count{model="m",version="2"} 1
# HELP nv_inference_batch_size_histogram Histogram of the batch sizes of model executions
# TYPE nv_inference_batch_size_histogram histogram
nv_inference_batch_size_histogram_bucket{model="m",version="2",le="1"} 0
nv_inference_batch_size_histogram_bucket{model="m",version="2",le="2"} 0
nv_inference_batch_size_histogram_bucket{model="m",version="2",le="+Inf"} 1
nv_inference_batch_size_histogram_sum{model="m",version="2"} 3
nv_inference_batch_size_histogram_count{model="m",version="2"} 1
"#;
        assert_eq!(tail, expected);
    }

    #[test]
    fn driver_families_render_as_prometheus_text() {
        use ferrite_core::custom_metrics::{Family, MetricKind};
        let mut samples = std::collections::BTreeMap::new();
        let labels = |core: &str| {
            vec![
                ("core".to_string(), core.to_string()),
                ("model".to_string(), "m\"1".to_string()),
            ]
        };
        samples.insert(labels("0"), 4.0);
        samples.insert(labels("1"), 2.5);
        let mut gauge = std::collections::BTreeMap::new();
        gauge.insert(Vec::new(), 7.0);
        let families = [
            Family {
                name: "x_total".into(),
                help: "Runs\nper core".into(),
                kind: MetricKind::Counter,
                samples,
            },
            Family {
                name: "y".into(),
                help: "A gauge".into(),
                kind: MetricKind::Gauge,
                samples: gauge,
            },
        ];
        let mut out = String::new();
        render_custom(&mut out, &families);
        assert_eq!(
            out,
            "# HELP x_total Runs\\nper core\n# TYPE x_total counter\n\
             x_total{core=\"0\",model=\"m\\\"1\"} 4\n\
             x_total{core=\"1\",model=\"m\\\"1\"} 2.5\n\
             # HELP y A gauge\n# TYPE y gauge\ny 7\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut stats = known();
        stats.name = "we\"ird\\na\nme".into();
        let text = render(&[ModelSample { stats, pending: 0 }], &[], None);
        assert!(
            text.contains(
                "nv_inference_request_success{model=\"we\\\"ird\\\\na\\nme\",version=\"1\"} 6\n"
            ),
            "{text}"
        );
        // Every sample stays on one line.
        assert!(
            text.lines()
                .all(|l| l.starts_with('#') || l.starts_with("nv_")),
            "{text}"
        );
    }

    fn gpu(uuid: &str) -> GpuSample {
        GpuSample {
            uuid: uuid.into(),
            utilization: Some(0.37),
            memory_total_bytes: Some(85_899_345_920),
            memory_used_bytes: Some(554_696_704),
            power_usage_watts: Some(33.246),
            power_limit_watts: Some(700.0),
            energy_joules: Some(1474.042),
        }
    }

    #[test]
    fn gpu_families_exactly_and_a_gpu_without_power_left_out() {
        let a = gpu("GPU-a07dfe08-b87f-1f96-7083-07a26d0fa83e");
        let b = GpuSample {
            uuid: "GPU-4bb61721-0ae2-9004-636f-e73bab9ef8e0".into(),
            utilization: Some(0.0),
            memory_total_bytes: Some(16_944_988_160),
            memory_used_bytes: Some(0),
            power_usage_watts: None,
            power_limit_watts: None,
            energy_joules: None,
        };
        let text = render(&[], &[a, b], Some(&CpuSample::default()));
        let expected = r#"# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{gpu_uuid="GPU-a07dfe08-b87f-1f96-7083-07a26d0fa83e"} 0.37
nv_gpu_utilization{gpu_uuid="GPU-4bb61721-0ae2-9004-636f-e73bab9ef8e0"} 0
# HELP nv_gpu_memory_total_bytes GPU total memory, in bytes
# TYPE nv_gpu_memory_total_bytes gauge
nv_gpu_memory_total_bytes{gpu_uuid="GPU-a07dfe08-b87f-1f96-7083-07a26d0fa83e"} 85899345920
nv_gpu_memory_total_bytes{gpu_uuid="GPU-4bb61721-0ae2-9004-636f-e73bab9ef8e0"} 16944988160
# HELP nv_gpu_memory_used_bytes GPU used memory, in bytes
# TYPE nv_gpu_memory_used_bytes gauge
nv_gpu_memory_used_bytes{gpu_uuid="GPU-a07dfe08-b87f-1f96-7083-07a26d0fa83e"} 554696704
nv_gpu_memory_used_bytes{gpu_uuid="GPU-4bb61721-0ae2-9004-636f-e73bab9ef8e0"} 0
# HELP nv_gpu_power_usage GPU power usage in watts
# TYPE nv_gpu_power_usage gauge
nv_gpu_power_usage{gpu_uuid="GPU-a07dfe08-b87f-1f96-7083-07a26d0fa83e"} 33.246
# HELP nv_gpu_power_limit GPU power management limit in watts
# TYPE nv_gpu_power_limit gauge
nv_gpu_power_limit{gpu_uuid="GPU-a07dfe08-b87f-1f96-7083-07a26d0fa83e"} 700
# HELP nv_energy_consumption GPU energy consumption in joules since the Triton Server started
# TYPE nv_energy_consumption counter
nv_energy_consumption{gpu_uuid="GPU-a07dfe08-b87f-1f96-7083-07a26d0fa83e"} 1474.042
# HELP nv_cpu_utilization CPU utilization rate [0.0 - 1.0]
"#;
        assert!(text.starts_with(expected), "{text}");
    }

    #[test]
    fn gpu_families_after_the_models_and_only_with_values() {
        // No GPU: no GPU family.
        let models = [ModelSample {
            stats: known(),
            pending: 0,
        }];
        assert!(!render(&models, &[], None).contains("gpu"));
        // The GPU families come after the model families.
        let text = render(&models, &[gpu("GPU-1")], None);
        let pending = text
            .find("# HELP nv_inference_pending_request_count")
            .unwrap();
        let gpus = text.find("# HELP nv_gpu_utilization").unwrap();
        assert!(pending < gpus, "{text}");
        // A family that no GPU has a value for is left out, HELP and TYPE too.
        let bare = GpuSample {
            uuid: "GPU-2".into(),
            memory_total_bytes: Some(1024),
            ..Default::default()
        };
        let text = render(&[], &[bare.clone(), bare], None);
        assert_eq!(
            text,
            "# HELP nv_gpu_memory_total_bytes GPU total memory, in bytes\n\
             # TYPE nv_gpu_memory_total_bytes gauge\n\
             nv_gpu_memory_total_bytes{gpu_uuid=\"GPU-2\"} 1024\n\
             nv_gpu_memory_total_bytes{gpu_uuid=\"GPU-2\"} 1024\n"
        );
        // A GPU with no reading at all adds nothing.
        let empty = GpuSample {
            uuid: "GPU-3".into(),
            ..Default::default()
        };
        assert_eq!(render(&[], &[empty], None), "");
    }

    #[test]
    fn gpu_uuid_label_is_escaped() {
        let text = render(&[], &[gpu("GPU-\"x\\y\nz")], None);
        assert!(
            text.contains("nv_gpu_power_limit{gpu_uuid=\"GPU-\\\"x\\\\y\\nz\"} 700\n"),
            "{text}"
        );
        assert!(
            text.lines()
                .all(|l| l.starts_with('#') || l.starts_with("nv_")),
            "{text}"
        );
    }

    #[test]
    fn numbers() {
        let f = |v: f64| {
            let mut s = String::new();
            push_f64(&mut s, v);
            s
        };
        assert_eq!(f(100.0), "100");
        assert_eq!(f(2500.0), "2500");
        assert_eq!(f(5_000_000.0), "5000000");
        assert_eq!(f(0.25), "0.25");
        assert_eq!(f(0.0), "0");
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NAN), "NaN");
        let mut s = String::new();
        push_u64(&mut s, 0);
        push_u64(&mut s, u64::MAX);
        push_i64(&mut s, -7);
        assert_eq!(s, "018446744073709551615-7");
    }
}
