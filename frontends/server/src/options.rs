//! Server options: tritonserver's flag names, a TOML config file and `FERRITE_*` environment
//! variables, merged with figment (defaults < file < environment < flags) into one [`Options`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ferrite_core::{ModelControlMode, StartupModels};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

/// tritonserver flags Ferrite recognises but whose feature is not built yet: accepted, with a
/// startup warning, instead of an unknown-flag error.
const NOT_YET: &[&str] = &[
    "grpc-infer-allocation-pool-size",
    "grpc-max-response-pool-size",
    "grpc-use-ssl",
    "grpc-use-ssl-mutual",
    "grpc-server-cert",
    "grpc-server-key",
    "grpc-root-cert",
    "grpc-keepalive-permit-without-calls",
    "grpc-http2-max-pings-without-data",
    "grpc-http2-min-recv-ping-interval-without-data",
    "grpc-http2-max-ping-strikes",
    "grpc-restricted-protocol",
    "model-load-retry-count",
    "http-restricted-api",
    "reuse-http-port",
    "reuse-grpc-port",
    "allow-sagemaker",
    "sagemaker-port",
    "sagemaker-safe-port-range",
    "sagemaker-thread-count",
    "allow-vertex-ai",
    "vertex-ai-port",
    "vertex-ai-thread-count",
    "vertex-ai-default-model",
    "pinned-memory-pool-byte-size",
    "cuda-memory-pool-byte-size",
    "cuda-virtual-address-size",
    "response-cache-byte-size",
    "cache-config",
    "cache-directory",
    "min-supported-compute-capability",
    "buffer-manager-thread-count",
    "host-policy",
    "model-config-name",
    "model-namespacing",
    "rate-limit",
    "rate-limit-resource",
    "repoagent-directory",
    "enable-peer-access",
    "backend-config-default",
];

/// Parses tritonserver-style booleans.
fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("'{s}' is not a boolean (true/false)")),
    }
}

#[derive(Parser, Debug, Default, Serialize)]
#[command(
    name = "ferrite",
    version,
    about = "Ferrite: a Triton-compatible inference server",
    long_about = "Serves a Triton model repository over the KServe v2 protocol. Flags keep tritonserver's names; every option can also come from a TOML file (--config-file) or FERRITE_<NAME> environment variables (flags win over environment, environment over the file)."
)]
struct Flags {
    /// TOML file with options (keys as the flags, with '_' for '-').
    #[arg(long, env = "FERRITE_CONFIG_FILE")]
    #[serde(skip)]
    config_file: Option<PathBuf>,
    /// Model repository path (repeatable).
    #[arg(long = "model-repository", alias = "model-store", value_name = "PATH")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    model_repository: Vec<PathBuf>,
    /// Directory holding driver libraries (libferrite_driver_*.so), default: beside the binary.
    #[arg(long, value_name = "PATH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    backend_directory: Option<PathBuf>,
    /// Driver setting: <driver or backend>,<setting>=<value> (repeatable).
    #[arg(long, value_name = "BACKEND,KEY=VALUE")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    backend_config: Vec<String>,
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_http: Option<bool>,
    #[arg(long, value_name = "PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    http_port: Option<u16>,
    #[arg(long, value_name = "ADDRESS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    http_address: Option<String>,
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_grpc: Option<bool>,
    /// gRPC port; the same as --http-port serves both protocols on one port.
    #[arg(long, value_name = "PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_port: Option<u16>,
    #[arg(long, value_name = "ADDRESS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_address: Option<String>,
    /// Milliseconds between HTTP/2 keepalive pings on gRPC connections.
    #[arg(long, value_name = "MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_keepalive_time: Option<u64>,
    /// Milliseconds a keepalive ping may go unanswered.
    #[arg(long, value_name = "MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_keepalive_timeout: Option<u64>,
    /// Compression of gRPC infer responses: none, low, medium or high (gzip).
    #[arg(long, value_name = "LEVEL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_infer_response_compression_level: Option<String>,
    /// HTTP headers whose names match this regular expression are forwarded to the model as
    /// request parameters.
    #[arg(long, value_name = "REGEX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    http_header_forward_pattern: Option<String>,
    /// gRPC metadata whose names match this regular expression are forwarded to the model as
    /// request parameters.
    #[arg(long, value_name = "REGEX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_header_forward_pattern: Option<String>,
    /// Let clients register system (and CUDA) shared memory regions.
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_client_shm: Option<bool>,
    /// Serve Prometheus metrics (GET /metrics on --metrics-port).
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_metrics: Option<bool>,
    /// Include CPU utilization and memory in the metrics.
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_cpu_metrics: Option<bool>,
    /// Include GPU utilization, memory, power and energy in the metrics (from NVML, where the
    /// NVIDIA driver is installed).
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_gpu_metrics: Option<bool>,
    /// Port of the metrics endpoint (0: any free port).
    #[arg(long, value_name = "PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_port: Option<u16>,
    /// Address of the metrics endpoint (default: --http-address).
    #[arg(long, value_name = "ADDRESS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_address: Option<String>,
    /// How often the CPU and GPU metrics are sampled, in milliseconds.
    #[arg(long, value_name = "MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_interval_ms: Option<u64>,
    /// Metrics setting KEY=VALUE (repeatable): histogram_latencies=true|false,
    /// duration_buckets_us=B1,B2,..., batch_size_buckets=B1,B2,...
    #[arg(long, value_name = "KEY=VALUE")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    metrics_config: Vec<String>,
    /// Threads serving the network frontends (default: half the cores, at least one; model
    /// instances run on threads of their own).
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    http_thread_count: Option<usize>,
    /// Refuse models whose config.pbtxt is incomplete (no auto-complete).
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    strict_model_config: Option<bool>,
    /// Same as --strict-model-config=true.
    #[arg(long, num_args = 0..=1, value_parser = parse_bool, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_auto_complete_config: Option<bool>,
    /// Exit at startup when a model fails to load.
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_on_error: Option<bool>,
    /// /v2/health/ready is 200 only when every model is ready.
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    strict_readiness: Option<bool>,
    /// Seconds to wait for requests in flight at shutdown.
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_timeout_secs: Option<u64>,
    /// Server id (server metadata "name").
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    /// Model control mode: none (load everything at startup), poll (and follow the
    /// repositories' changes) or explicit (load what --load-model and the repository API say).
    #[arg(long, value_name = "MODE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    model_control_mode: Option<String>,
    /// Explicit mode: a model to load at startup (repeatable; `*` alone for all).
    #[arg(long = "load-model", value_name = "NAME")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    load_model: Vec<String>,
    /// Poll mode: seconds between looks at the repositories (0: never).
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    repository_poll_secs: Option<u64>,
    /// Seconds one model version may take to load before its load fails (Ferrite's own).
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    model_load_timeout_secs: Option<u64>,
    /// Models loaded in parallel at startup.
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    model_load_thread_count: Option<usize>,
    /// Verbose logging level (0 = off).
    #[arg(long, value_name = "LEVEL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_verbose: Option<u32>,
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_info: Option<bool>,
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_warning: Option<bool>,
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_error: Option<bool>,
    /// Trace setting [triton,]KEY=VALUE (repeatable): file, level, rate, count,
    /// log_frequency.
    #[arg(long, value_name = "[MODE,]KEY=VALUE")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    trace_config: Vec<String>,
    /// Trace file (same as --trace-config triton,file=PATH).
    #[arg(long, value_name = "PATH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_file: Option<String>,
    /// Trace level: OFF or TIMESTAMPS (repeatable).
    #[arg(long, value_name = "LEVEL")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    trace_level: Vec<String>,
    /// Trace one request in N.
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_rate: Option<u64>,
    /// Traces to take (-1: no limit).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_count: Option<i64>,
    /// Write traces every N traces to <file>.<index> (0: all to <file> at exit).
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_log_frequency: Option<u64>,
    /// Append log lines to this file instead of stderr.
    #[arg(long, value_name = "PATH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_file: Option<PathBuf>,
    /// Log line format: default, ISO8601 or json.
    #[arg(long, value_name = "FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<String>,
}

/// A list given as one value or many (`model_repository = "/m"` or `["/a", "/b"]`; a single
/// FERRITE_* variable).
fn one_or_many<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(p) => vec![p],
        OneOrMany::Many(v) => v,
    })
}

/// The merged options.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    #[serde(deserialize_with = "one_or_many")]
    pub model_repository: Vec<PathBuf>,
    pub backend_directory: Option<PathBuf>,
    #[serde(deserialize_with = "one_or_many")]
    pub backend_config: Vec<String>,
    pub allow_http: bool,
    pub http_port: u16,
    pub http_address: String,
    pub http_thread_count: usize,
    pub allow_grpc: bool,
    pub grpc_port: u16,
    pub grpc_address: String,
    pub grpc_keepalive_time: u64,
    pub grpc_keepalive_timeout: u64,
    pub grpc_infer_response_compression_level: String,
    pub allow_client_shm: bool,
    pub allow_metrics: bool,
    pub allow_cpu_metrics: bool,
    pub allow_gpu_metrics: bool,
    pub metrics_port: u16,
    pub metrics_address: Option<String>,
    pub metrics_interval_ms: u64,
    #[serde(deserialize_with = "one_or_many")]
    pub metrics_config: Vec<String>,
    pub http_header_forward_pattern: Option<String>,
    pub grpc_header_forward_pattern: Option<String>,
    pub strict_model_config: bool,
    pub disable_auto_complete_config: bool,
    pub exit_on_error: bool,
    pub strict_readiness: bool,
    pub exit_timeout_secs: u64,
    pub id: String,
    pub model_control_mode: String,
    #[serde(deserialize_with = "one_or_many")]
    pub load_model: Vec<String>,
    pub repository_poll_secs: u64,
    pub model_load_timeout_secs: u64,
    pub model_load_thread_count: usize,
    pub log_verbose: u32,
    pub log_info: bool,
    pub log_warning: bool,
    pub log_error: bool,
    pub log_file: Option<PathBuf>,
    pub log_format: String,
    #[serde(deserialize_with = "one_or_many")]
    pub trace_config: Vec<String>,
    pub trace_file: Option<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub trace_level: Vec<String>,
    pub trace_rate: u64,
    pub trace_count: i64,
    pub trace_log_frequency: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            model_repository: Vec::new(),
            backend_directory: None,
            backend_config: Vec::new(),
            allow_http: true,
            http_port: 8000,
            http_address: "0.0.0.0".into(),
            http_thread_count: default_io_threads(),
            allow_grpc: true,
            grpc_port: 8001,
            grpc_address: "0.0.0.0".into(),
            grpc_keepalive_time: 7_200_000,
            grpc_keepalive_timeout: 20_000,
            grpc_infer_response_compression_level: "none".into(),
            allow_client_shm: false,
            allow_metrics: true,
            allow_cpu_metrics: true,
            allow_gpu_metrics: true,
            metrics_port: 8002,
            metrics_address: None,
            metrics_interval_ms: 2000,
            metrics_config: Vec::new(),
            http_header_forward_pattern: None,
            grpc_header_forward_pattern: None,
            strict_model_config: false,
            disable_auto_complete_config: false,
            exit_on_error: true,
            strict_readiness: true,
            exit_timeout_secs: 30,
            id: "triton".into(),
            model_control_mode: "none".into(),
            load_model: Vec::new(),
            repository_poll_secs: 15,
            model_load_timeout_secs: 300,
            model_load_thread_count: 4,
            log_verbose: 0,
            log_info: true,
            log_warning: true,
            log_error: true,
            log_file: None,
            log_format: "default".into(),
            trace_config: Vec::new(),
            trace_file: None,
            trace_level: Vec::new(),
            trace_rate: 1000,
            trace_count: -1,
            trace_log_frequency: 0,
        }
    }
}

/// Half the cores, at least one: the frontends only decode and encode; the model instances,
/// on their own threads, do the work. (On a 2-core machine a second I/O thread measurably
/// slows requests down: each request would wake both.)
fn default_io_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

fn forward(pattern: &Option<String>) -> Result<Option<ferrite_core::HeaderForward>, String> {
    pattern
        .as_deref()
        .map(ferrite_core::HeaderForward::new)
        .transpose()
        .map_err(|e| e.message().to_string())
}

#[derive(Debug)]
pub enum OptionsError {
    Clap(clap::Error),
    Config(String),
}

/// Removes the flags of [`NOT_YET`] from the command line, returning a warning for each.
fn strip_not_yet(args: &[String]) -> (Vec<String>, Vec<String>) {
    let mut kept = Vec::with_capacity(args.len());
    let mut warnings = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let name = arg
            .strip_prefix("--")
            .map(|a| a.split('=').next().unwrap_or(a));
        if let Some(name) = name.filter(|n| NOT_YET.contains(n)) {
            let mut value = arg.split_once('=').map(|(_, v)| v.to_string());
            if value.is_none() && args.get(i + 1).is_some_and(|next| !next.starts_with("--")) {
                value = args.get(i + 1).cloned();
                i += 1;
            }
            warnings.push(format!(
                "--{name}{} is a tritonserver flag whose feature Ferrite does not have yet; it has no effect",
                value.map(|v| format!("={v}")).unwrap_or_default()
            ));
        } else {
            kept.push(arg.clone());
        }
        i += 1;
    }
    (kept, warnings)
}

impl Options {
    /// Parses the command line (with the program name first), the config file and the
    /// environment. Returns the options and startup warnings.
    pub fn load(args: &[String]) -> Result<(Options, Vec<String>), OptionsError> {
        let (args, mut warnings) = strip_not_yet(args);
        let flags = Flags::try_parse_from(&args).map_err(OptionsError::Clap)?;
        let mut figment = Figment::from(Serialized::defaults(Options::default()));
        if let Some(file) = &flags.config_file {
            if !file.is_file() {
                return Err(OptionsError::Config(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment
            .merge(
                Env::prefixed("FERRITE_")
                    .filter(|key| Options::keys().iter().any(|k| key == k.as_str())),
            )
            .merge(Serialized::defaults(&flags));
        let options: Options = figment
            .extract()
            .map_err(|e| OptionsError::Config(format!("invalid options: {e}")))?;
        if options.model_repository.is_empty() {
            return Err(OptionsError::Config(
                "--model-repository must be given (or model_repository in the config file, or FERRITE_MODEL_REPOSITORY)".into(),
            ));
        }
        let mode = options.control_mode().map_err(OptionsError::Config)?;
        if !options.load_model.is_empty() {
            if mode != ModelControlMode::Explicit {
                warnings
                    .push("--load-model has no effect unless --model-control-mode=explicit".into());
            }
            if options.load_model.iter().any(|m| m == "*") && options.load_model.len() > 1 {
                return Err(OptionsError::Config(
                    "--load-model=* must be the only --load-model argument".into(),
                ));
            }
        }
        if mode == ModelControlMode::Poll && options.repository_poll_secs == 0 {
            warnings.push(
                "--repository-poll-secs=0: the repositories are not polled in mode poll".into(),
            );
        }
        Ok((options, warnings))
    }

    /// The option names (the keys of the file and, upper-cased, of `FERRITE_*` variables);
    /// other `FERRITE_*` variables belong to other tools and are not options.
    fn keys() -> Vec<String> {
        match serde_json::to_value(Options::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Parses `--backend-config` values (`backend,key=value`).
    pub fn backend_settings(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>, String> {
        let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for item in &self.backend_config {
            let (backend, setting) = item.split_once(',').ok_or_else(|| {
                format!("--backend-config '{item}' must look like <backend>,<setting>=<value>")
            })?;
            let (key, value) = setting.split_once('=').ok_or_else(|| {
                format!("--backend-config '{item}' must look like <backend>,<setting>=<value>")
            })?;
            out.entry(backend.to_string())
                .or_default()
                .insert(key.to_string(), value.to_string());
        }
        Ok(out)
    }

    /// The drivers directory: the flag, or the directory holding the binary.
    pub fn backend_directory(&self) -> PathBuf {
        self.backend_directory.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("."))
        })
    }

    pub fn core_options(&self) -> Result<ferrite_core::ServerOptions, String> {
        Ok(ferrite_core::ServerOptions {
            id: self.id.clone(),
            model_repositories: self.model_repository.clone(),
            backend_directory: self.backend_directory(),
            backend_config: self.backend_settings()?,
            strict_model_config: self.strict_model_config || self.disable_auto_complete_config,
            strict_readiness: self.strict_readiness,
            model_load_threads: self.model_load_thread_count.max(1),
            model_control_mode: self.control_mode()?,
            startup_models: match self.load_model.as_slice() {
                [] => StartupModels::None,
                [all] if all == "*" => StartupModels::All,
                names => StartupModels::Named(names.to_vec()),
            },
            load_timeout: Duration::from_secs(self.model_load_timeout_secs.max(1)),
            histograms: self.histograms()?.map(std::sync::Arc::new),
            trace: self.trace()?,
            allow_client_shm: self.allow_client_shm,
        })
    }

    /// The statistics' histograms: on with the metrics (`--metrics-config
    /// histogram_latencies=false` turns them off), with the bucket bounds of
    /// `duration_buckets_us` and `batch_size_buckets`.
    pub fn histograms(&self) -> Result<Option<ferrite_core::stats::HistogramBounds>, String> {
        let mut on = self.allow_metrics;
        let mut bounds = ferrite_core::stats::HistogramBounds::default();
        for item in &self.metrics_config {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("--metrics-config '{item}' must look like <key>=<value>"))?;
            let list = |value: &str| -> Result<Vec<f64>, String> {
                let v: Vec<f64> = value
                    .split(',')
                    .map(|b| b.trim().parse::<f64>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| {
                        format!("--metrics-config {key}: '{value}' is not a list of numbers ({e})")
                    })?;
                if v.is_empty()
                    || v.windows(2).any(|w| w[0] >= w[1])
                    || v.iter().any(|b| !b.is_finite())
                {
                    return Err(format!(
                        "--metrics-config {key}: bucket bounds must be finite and increasing, got '{value}'"
                    ));
                }
                Ok(v)
            };
            match key {
                "histogram_latencies" => on = on && parse_bool(value)?,
                "duration_buckets_us" => bounds.duration_us = list(value)?,
                "batch_size_buckets" => bounds.batch_size = list(value)?,
                // Triton's summary settings: Ferrite has histograms instead.
                "summary_latencies" | "summary_quantiles" | "counter_latencies" => {}
                other => {
                    return Err(format!(
                        "--metrics-config: unknown key '{other}' (histogram_latencies, duration_buckets_us, batch_size_buckets)"
                    ));
                }
            }
        }
        Ok(on.then_some(bounds))
    }

    /// The global trace settings: the --trace-* flags, then --trace-config (which wins).
    pub fn trace(&self) -> Result<ferrite_core::TraceSettings, String> {
        let mut t = ferrite_core::TraceSettings {
            trace_file: self.trace_file.clone().unwrap_or_default(),
            trace_rate: self.trace_rate,
            trace_count: self.trace_count,
            log_frequency: self.trace_log_frequency,
            ..Default::default()
        };
        if !self.trace_level.is_empty() {
            t.trace_level = self.trace_level.clone();
        }
        for item in &self.trace_config {
            let setting = match item.split_once(',') {
                Some((mode, rest)) if !mode.contains('=') => {
                    if mode != "triton" {
                        return Err(format!(
                            "--trace-config '{item}': trace mode '{mode}' is not supported (triton)"
                        ));
                    }
                    rest
                }
                _ => item.as_str(),
            };
            let (key, value) = setting.split_once('=').ok_or_else(|| {
                format!("--trace-config '{item}' must look like [triton,]<key>=<value>")
            })?;
            let number = |v: &str| {
                v.parse::<i64>()
                    .map_err(|_| format!("--trace-config {key}: '{v}' is not a number"))
            };
            match key {
                "file" => t.trace_file = value.to_string(),
                "level" => t.trace_level = vec![value.to_uppercase()],
                "rate" => t.trace_rate = number(value)?.max(1) as u64,
                "count" => t.trace_count = number(value)?,
                "log_frequency" | "log-frequency" => t.log_frequency = number(value)?.max(0) as u64,
                other => {
                    return Err(format!(
                        "--trace-config: unknown key '{other}' (file, level, rate, count, log_frequency)"
                    ));
                }
            }
        }
        let on = t.trace_level.iter().any(|l| l == "TIMESTAMPS");
        if on && t.trace_file.is_empty() {
            return Err("tracing is on (--trace-level TIMESTAMPS) but no trace file is set (--trace-file or --trace-config triton,file=PATH)".into());
        }
        Ok(t)
    }

    /// `--model-control-mode`.
    pub fn control_mode(&self) -> Result<ModelControlMode, String> {
        ModelControlMode::parse(&self.model_control_mode).ok_or_else(|| {
            format!(
                "unexpected value for --model-control-mode: '{}' (none, poll or explicit)",
                self.model_control_mode
            )
        })
    }

    /// The gRPC frontend's settings.
    pub fn grpc_options(&self) -> Result<ferrite_grpc::GrpcOptions, String> {
        let response_compression = match self.grpc_infer_response_compression_level.as_str() {
            "none" => None,
            "low" | "medium" | "high" => Some(tonic::codec::CompressionEncoding::Gzip),
            other => {
                return Err(format!(
                    "unexpected value for --grpc-infer-response-compression-level: '{other}' (none, low, medium or high)"
                ));
            }
        };
        Ok(ferrite_grpc::GrpcOptions {
            header_forward: forward(&self.grpc_header_forward_pattern)?,
            response_compression,
            keepalive_time: Some(std::time::Duration::from_millis(self.grpc_keepalive_time)),
            keepalive_timeout: std::time::Duration::from_millis(self.grpc_keepalive_timeout),
            ..Default::default()
        })
    }

    /// The HTTP frontend's settings.
    pub fn http_options(&self) -> Result<ferrite_http::HttpOptions, String> {
        Ok(ferrite_http::HttpOptions {
            header_forward: forward(&self.http_header_forward_pattern)?,
            ..Default::default()
        })
    }

    /// The metrics endpoint's address: `--metrics-address`, else `--http-address`.
    pub fn metrics_address(&self) -> &str {
        self.metrics_address
            .as_deref()
            .unwrap_or(&self.http_address)
    }

    /// The metrics endpoint's settings.
    pub fn metrics_options(&self) -> ferrite_metrics::MetricsOptions {
        ferrite_metrics::MetricsOptions {
            cpu_metrics: self.allow_cpu_metrics,
            gpu_metrics: self.allow_gpu_metrics,
            interval: Duration::from_millis(self.metrics_interval_ms.max(1)),
        }
    }

    /// REST and gRPC on the same port (both enabled, same port and address).
    pub fn one_port(&self) -> bool {
        self.allow_http
            && self.allow_grpc
            && self.http_port == self.grpc_port
            && self.http_port != 0
            && self.http_address == self.grpc_address
    }

    /// The startup "Option | Value" table.
    pub fn table_rows(&self, server: &ferrite_core::Server) -> Vec<Vec<String>> {
        let meta = server.metadata();
        let mut rows = vec![
            vec!["server_id".into(), meta.name],
            vec!["server_version".into(), meta.version],
            vec!["server_extensions".into(), meta.extensions.join(" ")],
        ];
        for (i, p) in self.model_repository.iter().enumerate() {
            rows.push(vec![
                format!("model_repository_path[{i}]"),
                p.display().to_string(),
            ]);
        }
        rows.extend([
            vec![
                "model_control_mode".into(),
                self.control_mode()
                    .map_or("?", |m| m.triton_name())
                    .to_string(),
            ],
            vec![
                "strict_model_config".into(),
                u8::from(self.strict_model_config || self.disable_auto_complete_config).to_string(),
            ],
            vec![
                "backend_directory".into(),
                self.backend_directory().display().to_string(),
            ],
            vec![
                "http_address".into(),
                format!("{}:{}", self.http_address, self.http_port),
            ],
            vec![
                "http_thread_count".into(),
                self.http_thread_count.to_string(),
            ],
            vec![
                "grpc_address".into(),
                format!("{}:{}", self.grpc_address, self.grpc_port),
            ],
            vec![
                "allow_metrics".into(),
                u8::from(self.allow_metrics).to_string(),
            ],
            vec![
                "metrics_address".into(),
                format!("{}:{}", self.metrics_address(), self.metrics_port),
            ],
            vec![
                "metrics_interval_ms".into(),
                self.metrics_interval_ms.to_string(),
            ],
            vec![
                "allow_client_shm".into(),
                u8::from(self.allow_client_shm).to_string(),
            ],
            vec![
                "exit_on_error".into(),
                u8::from(self.exit_on_error).to_string(),
            ],
            vec![
                "strict_readiness".into(),
                u8::from(self.strict_readiness).to_string(),
            ],
            vec!["exit_timeout".into(), self.exit_timeout_secs.to_string()],
        ]);
        let drivers: Vec<String> = server
            .drivers()
            .drivers()
            .iter()
            .map(|d| format!("{} {} ({})", d.name, d.version, d.path.display()))
            .collect();
        rows.push(vec!["drivers".into(), drivers.join(", ")]);
        rows
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail fixes its closure's error type
mod tests {
    use super::*;

    /// Runs `f` in figment's Jail: tests that read the environment are serialised and see
    /// only the variables they set, so one test's FERRITE_* never leaks into another.
    fn jailed(f: impl FnOnce(&mut figment::Jail)) {
        figment::Jail::expect_with(|jail| {
            f(jail);
            Ok(())
        });
    }

    fn args(a: &[&str]) -> Vec<String> {
        std::iter::once("ferrite")
            .chain(a.iter().copied())
            .map(String::from)
            .collect()
    }

    #[test]
    fn triton_flags_parse() {
        jailed(|_| {
            let (o, w) = Options::load(&args(&[
                "--model-repository=/models",
                "--model-repository",
                "/more",
                "--http-port=0",
                "--exit-on-error=false",
                "--strict-readiness",
                "false",
                "--strict-model-config=true",
                "--backend-config=onnxruntime,library=/x.so",
                "--id",
                "myserver",
            ]))
            .unwrap();
            assert!(w.is_empty(), "{w:?}");
            assert_eq!(
                o.model_repository,
                vec![PathBuf::from("/models"), PathBuf::from("/more")]
            );
            assert_eq!(o.http_port, 0);
            assert!(!o.exit_on_error);
            assert!(!o.strict_readiness);
            assert!(o.strict_model_config);
            assert_eq!(o.id, "myserver");
            assert_eq!(
                o.backend_settings().unwrap()["onnxruntime"]["library"],
                "/x.so"
            );
        });
    }

    #[test]
    fn metrics_config_sets_the_histograms() {
        jailed(|_| {
            let (o, _) = Options::load(&args(&[
                "--model-repository=/m",
                "--metrics-config",
                "duration_buckets_us=10,100",
                "--metrics-config=batch_size_buckets=1,2",
            ]))
            .unwrap();
            let h = o.histograms().unwrap().unwrap();
            assert_eq!(h.duration_us, vec![10.0, 100.0]);
            assert_eq!(h.batch_size, vec![1.0, 2.0]);
            for off in [
                &["--allow-metrics=false"][..],
                &["--metrics-config=histogram_latencies=false"][..],
            ] {
                let mut a = vec!["--model-repository=/m"];
                a.extend_from_slice(off);
                let (o, _) = Options::load(&args(&a)).unwrap();
                assert_eq!(o.histograms().unwrap(), None);
            }
            for bad in [
                "duration_buckets_us=100,10",
                "nope=1",
                "batch_size_buckets=x",
            ] {
                let (o, _) =
                    Options::load(&args(&["--model-repository=/m", "--metrics-config", bad]))
                        .unwrap();
                assert!(o.histograms().is_err(), "{bad}");
            }
        });
    }

    #[test]
    fn gpu_and_cpu_metrics_flags() {
        jailed(|jail| {
            let (o, w) = Options::load(&args(&["--model-repository=/m"])).unwrap();
            assert!(w.is_empty(), "{w:?}");
            let m = o.metrics_options();
            assert!(m.gpu_metrics && m.cpu_metrics);
            assert_eq!(m.interval, Duration::from_millis(2000));
            let (o, w) = Options::load(&args(&[
                "--model-repository=/m",
                "--allow-gpu-metrics=false",
                "--metrics-interval-ms",
                "500",
            ]))
            .unwrap();
            assert!(w.is_empty(), "no longer a not-yet flag: {w:?}");
            let m = o.metrics_options();
            assert!(!m.gpu_metrics && m.cpu_metrics);
            assert_eq!(m.interval, Duration::from_millis(500));
            let (o, _) = Options::load(&args(&[
                "--model-repository=/m",
                "--allow-cpu-metrics=false",
                "--allow-gpu-metrics",
            ]))
            .unwrap();
            let m = o.metrics_options();
            assert!(m.gpu_metrics && !m.cpu_metrics);
            jail.set_env("FERRITE_ALLOW_GPU_METRICS", "false");
            let (o, _) = Options::load(&args(&["--model-repository=/m"])).unwrap();
            assert!(!o.allow_gpu_metrics);
        });
    }

    #[test]
    fn not_yet_flags_warn_instead_of_failing() {
        jailed(|_| {
            let (o, w) = Options::load(&args(&[
                "--model-repository=/m",
                "--rate-limit",
                "execution_count",
                "--allow-sagemaker",
                "--grpc-port",
                "9001",
            ]))
            .unwrap();
            assert_eq!(o.http_port, 8000);
            assert_eq!(o.grpc_port, 9001);
            assert_eq!(w.len(), 2, "{w:?}");
            assert!(w[0].contains("--rate-limit=execution_count"));
        });
    }

    #[test]
    fn one_port_when_grpc_and_http_ports_match() {
        jailed(|_| {
            let (o, _) = Options::load(&args(&[
                "--model-repository=/m",
                "--http-port=9000",
                "--grpc-port=9000",
            ]))
            .unwrap();
            assert!(o.one_port());
            let (o, _) = Options::load(&args(&[
                "--model-repository=/m",
                "--http-port=0",
                "--grpc-port=0",
            ]))
            .unwrap();
            assert!(!o.one_port(), "port 0 binds two free ports");
            let (o, _) = Options::load(&args(&[
                "--model-repository=/m",
                "--http-port=9000",
                "--grpc-port=9000",
                "--allow-grpc=false",
            ]))
            .unwrap();
            assert!(!o.one_port());
            let (o, _) = Options::load(&args(&[
                "--model-repository=/m",
                "--grpc-infer-response-compression-level=high",
                "--grpc-keepalive-time=1000",
            ]))
            .unwrap();
            let g = o.grpc_options().unwrap();
            assert!(g.response_compression.is_some());
            assert!(g.header_forward.is_none());
            let (o, _) = Options::load(&args(&[
                "--model-repository=/m",
                "--http-header-forward-pattern=^x-",
                "--grpc-header-forward-pattern=(",
            ]))
            .unwrap();
            assert!(o.http_options().unwrap().header_forward.is_some());
            let e = o.grpc_options().unwrap_err();
            assert!(e.contains("invalid header forward pattern '('"), "{e}");
            assert_eq!(g.keepalive_time, Some(std::time::Duration::from_secs(1)));
        });
    }

    #[test]
    fn unknown_flags_and_missing_repository_fail() {
        jailed(|_| {
            assert!(matches!(
                Options::load(&args(&["--no-such-flag"])),
                Err(OptionsError::Clap(_))
            ));
            assert!(matches!(
                Options::load(&args(&[])),
                Err(OptionsError::Config(_))
            ));
        });
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ferrite.toml");
        std::fs::write(
            &file,
            "model_repository = \"/from-file\"\nhttp_port = 9000\nid = \"file\"\n",
        )
        .unwrap();
        jailed(|jail| {
            jail.set_env("FERRITE_HTTP_PORT", "9100");
            let (o, _) = Options::load(&args(&[
                "--config-file",
                file.to_str().unwrap(),
                "--id",
                "flag",
            ]))
            .unwrap();
            assert_eq!(o.model_repository, vec![PathBuf::from("/from-file")]);
            assert_eq!(o.http_port, 9100);
            assert_eq!(o.id, "flag");
        });
    }
}
