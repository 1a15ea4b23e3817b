//! Command line: perf_analyzer's option names and meanings, where ferrite-perf has them.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Load generator for Ferrite and Triton (KServe v2 over HTTP or gRPC), in the manner of
/// Triton's perf_analyzer: sweeps a concurrency or request-rate range, measures each step in
/// windows until throughput and latency are stable, and reports latency percentiles, the
/// server-side split (from the statistics API) and the client's own CPU time per request.
#[derive(Parser, Debug, Clone)]
#[command(name = "ferrite-perf", version, about, long_about = None)]
pub struct Args {
    /// Model to profile.
    #[arg(short = 'm', long = "model-name", value_name = "MODEL")]
    pub model: String,

    /// Model version; default: the one the model's version policy serves.
    #[arg(
        short = 'x',
        long = "model-version",
        value_name = "VERSION",
        default_value = ""
    )]
    pub model_version: String,

    /// Server URL, host:port [default: localhost:8000 for http, localhost:8001 for grpc].
    #[arg(short = 'u', long = "url", value_name = "URL")]
    pub url: Option<String>,

    /// Protocol.
    #[arg(short = 'i', long = "protocol", value_enum, default_value_t = ProtocolArg::Http, ignore_case = true)]
    pub protocol: ProtocolArg,

    /// Batch size of each request (prepended to the inputs' shapes of batching models).
    #[arg(short = 'b', long = "batch-size", value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,

    /// Shape of an input with variable dimensions, without the batch dimension:
    /// NAME:d1,d2,... (repeatable).
    #[arg(long = "shape", value_name = "NAME:DIMS", value_parser = parse_shape)]
    pub shapes: Vec<(String, Vec<i64>)>,

    /// Input data: "random", "zero", or a JSON file in perf_analyzer's format
    /// ({"data": [{"INPUT0": [...], ...}, ...]}; entries are sent in turn).
    #[arg(
        long = "input-data",
        value_name = "random|zero|FILE",
        default_value = "random"
    )]
    pub input_data: String,

    /// Use this string for every element of BYTES inputs (random/zero data).
    #[arg(long = "string-data", value_name = "STRING")]
    pub string_data: Option<String>,

    /// Concurrency sweep START[:END[:STEP]]: the number of outstanding requests.
    #[arg(long = "concurrency-range", value_name = "START:END:STEP", value_parser = parse_concurrency_range, conflicts_with = "request_rate_range")]
    pub concurrency_range: Option<Range<u32>>,

    /// Request-rate sweep START[:END[:STEP]] in requests/second (open loop).
    #[arg(long = "request-rate-range", value_name = "START:END:STEP", value_parser = parse_rate_range)]
    pub request_rate_range: Option<Range<f64>>,

    /// How requests are spread in request-rate mode.
    #[arg(long = "request-distribution", value_enum, default_value_t = Distribution::Constant)]
    pub request_distribution: Distribution,

    /// Measurement window in milliseconds.
    #[arg(short = 'p', long = "measurement-interval", value_name = "MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub measurement_interval_ms: u64,

    /// Allowed spread (in percent) of throughput and latency over the last 3 windows for a
    /// measurement to be stable.
    #[arg(
        short = 's',
        long = "stability-percentage",
        value_name = "PCT",
        default_value_t = 10.0
    )]
    pub stability_percentage: f64,

    /// Most measurement windows per step before reporting it as unstable.
    #[arg(short = 'r', long = "max-trials", value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_trials: u32,

    /// Stabilize on and report this latency percentile instead of the average.
    #[arg(long = "percentile", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=99))]
    pub percentile: Option<u32>,

    /// Place inputs and outputs in system shared memory.
    #[arg(long = "shared-memory", value_enum, default_value_t = SharedMemory::None)]
    pub shared_memory: SharedMemory,

    /// Bytes of shared memory for each output (with --shared-memory system).
    #[arg(
        long = "output-shared-memory-size",
        value_name = "BYTES",
        default_value_t = 102_400
    )]
    pub output_shared_memory_size: u64,

    /// Send the requests on one gRPC ModelStreamInfer stream.
    #[arg(long = "streaming")]
    pub streaming: bool,

    /// Asynchronous requests. ferrite-perf always keeps the requests in flight on one async
    /// event loop, so this changes nothing: concurrency is the number of outstanding
    /// requests in both modes.
    #[arg(short = 'a', long = "async", conflicts_with = "sync")]
    pub async_mode: bool,

    /// Synchronous requests (perf_analyzer's default; see --async).
    #[arg(long = "sync")]
    pub sync: bool,

    /// Write the results as CSV (perf_analyzer's columns).
    #[arg(short = 'f', long = "filename", value_name = "FILE.csv")]
    pub csv: Option<PathBuf>,

    /// Add "Avg latency", "request/response" and "response wait" columns to the CSV.
    #[arg(long = "verbose-csv")]
    pub verbose_csv: bool,

    /// Write the results as JSON.
    #[arg(long = "json", value_name = "FILE.json")]
    pub json: Option<PathBuf>,

    /// Stop after this many seconds in all, whatever is left of the sweep.
    #[arg(long = "max-duration-secs", value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_duration_secs: u64,

    /// Print every measurement window.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
}

/// `-i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    /// HTTP/REST.
    Http,
    /// gRPC.
    Grpc,
}

/// `--shared-memory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SharedMemory {
    /// Data in the requests.
    None,
    /// POSIX system shared memory.
    System,
}

/// `--request-distribution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Distribution {
    /// Evenly spaced requests.
    Constant,
    /// Exponentially distributed gaps (a Poisson process).
    Poisson,
}

/// A START:END:STEP sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range<T> {
    pub start: T,
    pub end: T,
    pub step: T,
}

impl Range<u32> {
    pub fn values(&self) -> Vec<u32> {
        (self.start..=self.end)
            .step_by(self.step as usize)
            .collect()
    }
}

impl Range<f64> {
    pub fn values(&self) -> Vec<f64> {
        let mut out = Vec::new();
        let mut i = 0u32;
        loop {
            let v = self.start + self.step * f64::from(i);
            if v > self.end + 1e-9 || out.len() >= 100_000 {
                break;
            }
            out.push(v);
            i += 1;
        }
        out
    }
}

fn parse_range<T>(s: &str, one: T) -> Result<Range<T>, String>
where
    T: std::str::FromStr + PartialOrd + Copy + Default,
{
    let parts: Vec<&str> = s.split(':').collect();
    if parts.is_empty() || parts.len() > 3 {
        return Err(format!("'{s}' is not START[:END[:STEP]]"));
    }
    let num = |p: &str| {
        p.trim()
            .parse::<T>()
            .map_err(|_| format!("'{p}' in '{s}' is not a valid number"))
    };
    let start = num(parts[0])?;
    let end = match parts.get(1) {
        Some(p) => num(p)?,
        None => start,
    };
    let step = match parts.get(2) {
        Some(p) => num(p)?,
        None => one,
    };
    let zero = T::default();
    if start.partial_cmp(&zero) != Some(std::cmp::Ordering::Greater) {
        return Err(format!("the start of '{s}' must be greater than 0"));
    }
    if end < start {
        return Err(format!("the end of '{s}' is below its start"));
    }
    if step.partial_cmp(&zero) != Some(std::cmp::Ordering::Greater) {
        return Err(format!("the step of '{s}' must be greater than 0"));
    }
    Ok(Range { start, end, step })
}

fn parse_concurrency_range(s: &str) -> Result<Range<u32>, String> {
    let r = parse_range(s, 1u32)?;
    if r.end > 100_000 {
        return Err(format!("a concurrency of {} is too much", r.end));
    }
    Ok(r)
}

fn parse_rate_range(s: &str) -> Result<Range<f64>, String> {
    let r = parse_range(s, 1.0f64)?;
    if !r.end.is_finite() || r.end > 1e7 {
        return Err(format!("a request rate of {} is too much", r.end));
    }
    Ok(r)
}

fn parse_shape(s: &str) -> Result<(String, Vec<i64>), String> {
    let (name, dims) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("'{s}' is not NAME:d1,d2,..."))?;
    if name.is_empty() {
        return Err(format!("'{s}' has no input name"));
    }
    let dims = dims
        .split(',')
        .map(|d| match d.trim().parse::<i64>() {
            Ok(v) if v >= 0 => Ok(v),
            _ => Err(format!(
                "'{d}' in '{s}' is not a dimension (an integer >= 0)"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name.to_string(), dims))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(
            parse_concurrency_range("1:4:2").unwrap().values(),
            vec![1, 3]
        );
        assert_eq!(parse_concurrency_range("3").unwrap().values(), vec![3]);
        assert_eq!(
            parse_concurrency_range("2:5").unwrap().values(),
            vec![2, 3, 4, 5]
        );
        assert!(parse_concurrency_range("0:2").is_err());
        assert!(parse_concurrency_range("4:2").is_err());
        assert!(parse_concurrency_range("1:2:0").is_err());
        assert!(parse_concurrency_range("a").is_err());
        assert_eq!(
            parse_rate_range("10:20:5").unwrap().values(),
            vec![10.0, 15.0, 20.0]
        );
    }

    #[test]
    fn command_is_valid() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    #[test]
    fn shapes() {
        assert_eq!(
            parse_shape("IN:3,224").unwrap(),
            ("IN".into(), vec![3, 224])
        );
        assert!(parse_shape("IN").is_err());
        assert!(parse_shape("IN:-1").is_err());
    }
}
