//! The `Server` facade: the one door every frontend goes through (health, metadata,
//! configuration, inference, repository index, statistics), so HTTP and gRPC cannot drift
//! apart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferrite_driver_abi as abi;
use parking_lot::RwLock;

use crate::config::{self, ModelConfig};
use crate::driver::DriverRegistry;
use crate::lifecycle::{ModelControlMode, ModelRecord, OpLocks, Slots, StartupModels, UNLOADED};
use crate::logsettings::{LogControl, LogSettings, LogUpdate};
use crate::model::{LoadedModel, ResponseStream};
use crate::request::{InferenceRequest, InferenceResponse};
use crate::shm::SharedMemory;
use crate::stats::ModelStats;
use crate::tensor::DataType;
use crate::{Error, Result, clock};

/// Ferrite's version, reported as the server version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The protocol extensions Ferrite implements (server metadata's `extensions`): Triton's
/// list, in Triton's order.
pub const EXTENSIONS: &[&str] = &[
    "classification",
    "sequence",
    "model_repository",
    "model_repository(unload_dependents)",
    "schedule_policy",
    "model_configuration",
    "system_shared_memory",
    "cuda_shared_memory",
    "binary_tensor_data",
    "parameters",
    "statistics",
    "trace",
    "logging",
];

/// What the runtime needs to know (the binary builds it from flags, file and environment).
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Server metadata `name` (`--id`).
    pub id: String,
    pub model_repositories: Vec<PathBuf>,
    pub backend_directory: PathBuf,
    /// `--backend-config=<driver or backend>,<key>=<value>` settings.
    pub backend_config: BTreeMap<String, BTreeMap<String, String>>,
    /// `--strict-model-config`: no auto-complete; config.pbtxt must say everything.
    pub strict_model_config: bool,
    /// `--strict-readiness`: the server is ready only when every model is.
    pub strict_readiness: bool,
    /// Models loaded at once (at startup, by polling, through the API).
    pub model_load_threads: usize,
    /// `--model-control-mode`.
    pub model_control_mode: ModelControlMode,
    /// `--load-model`: what explicit mode loads at startup.
    pub startup_models: StartupModels,
    /// How long one model version may take to load before the load fails.
    pub load_timeout: Duration,
    /// The trace extension's global settings (`--trace-config`, `--trace-file`, ...).
    pub trace: crate::trace::TraceSettings,
    /// Bucket bounds of the statistics' histograms (`None`: no histograms).
    pub histograms: Option<Arc<crate::stats::HistogramBounds>>,
    /// `--allow-client-shm`: whether clients may register, unregister and use system and
    /// CUDA shared memory regions (Triton >= 2.69; off by default, as there).
    pub allow_client_shm: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            id: "triton".into(),
            model_repositories: Vec::new(),
            backend_directory: PathBuf::from("."),
            backend_config: BTreeMap::new(),
            strict_model_config: false,
            strict_readiness: true,
            model_load_threads: 4,
            model_control_mode: ModelControlMode::None,
            startup_models: StartupModels::None,
            load_timeout: Duration::from_secs(300),
            histograms: Some(Arc::default()),
            trace: crate::trace::TraceSettings::default(),
            allow_client_shm: false,
        }
    }
}

/// A model version's state, with Triton's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelState {
    Ready,
    Unavailable,
    Loading,
    Unloading,
}

impl ModelState {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Ready => "READY",
            ModelState::Unavailable => "UNAVAILABLE",
            ModelState::Loading => "LOADING",
            ModelState::Unloading => "UNLOADING",
        }
    }
}

/// A row of the repository index (and of the startup table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    /// `None` when the model failed before any version could be named, or was never loaded.
    pub version: Option<i64>,
    /// `None` for a model of the repository that was never loaded (explicit mode).
    pub state: Option<ModelState>,
    /// Why it is not ready ("" when it is).
    pub reason: String,
}

/// Server metadata.
#[derive(Clone, Debug)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
}

/// A tensor as model metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// Model metadata.
#[derive(Clone, Debug)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

pub(crate) struct Inner {
    pub(crate) options: ServerOptions,
    pub(crate) drivers: DriverRegistry,
    shared_memory: SharedMemory,
    pub(crate) models: RwLock<BTreeMap<String, ModelRecord>>,
    pub(crate) ops: OpLocks,
    pub(crate) load_slots: Slots,
    pub(crate) gpu_available: bool,
    live: AtomicBool,
    /// Shutting down: not ready any more, requests in flight finishing.
    draining: AtomicBool,
    pub(crate) tracer: Arc<crate::trace::Tracer>,
    /// The binary's logger, for the logging extension.
    log_control: std::sync::OnceLock<Arc<dyn LogControl>>,
}

/// The runtime behind every frontend. Cheap to clone.
#[derive(Clone)]
pub struct Server {
    pub(crate) inner: Arc<Inner>,
}

impl Server {
    /// Finds the drivers and loads the models startup should load (every model of the
    /// repositories, or in explicit mode the `--load-model` ones), in parallel; one model
    /// failing never stops another. Check [`Server::index`] for failures.
    pub fn start(options: ServerOptions) -> Result<Server> {
        let drivers =
            DriverRegistry::discover(&options.backend_directory, &options.backend_config)?;
        // The repositories must be readable now (a model's own problems are its own).
        crate::repository::scan(&options.model_repositories)?;
        let gpu_available = drivers
            .drivers()
            .iter()
            .any(|d| d.instance_kinds & abi::INSTANCE_KIND_GPU != 0);
        let shared_memory =
            SharedMemory::new(options.allow_client_shm).with_drivers(drivers.drivers());
        let load_slots = Slots::new(options.model_load_threads);
        let tracer = crate::trace::Tracer::new(options.trace.clone())?;
        let server = Server {
            inner: Arc::new(Inner {
                options,
                drivers,
                shared_memory,
                models: RwLock::new(BTreeMap::new()),
                ops: OpLocks::default(),
                load_slots,
                gpu_available,
                live: AtomicBool::new(true),
                draining: AtomicBool::new(false),
                log_control: std::sync::OnceLock::new(),
                tracer,
            }),
        };
        server.load_startup_models();
        Ok(server)
    }

    pub fn options(&self) -> &ServerOptions {
        &self.inner.options
    }

    pub fn drivers(&self) -> &DriverRegistry {
        &self.inner.drivers
    }

    /// The shared memory regions clients registered (both frontends use the same ones).
    pub fn shared_memory(&self) -> &SharedMemory {
        &self.inner.shared_memory
    }

    pub fn is_live(&self) -> bool {
        self.inner.live.load(Ordering::Acquire)
    }

    /// Whether every model version that should be loaded is ready: versions unloaded on
    /// purpose and repository models never asked for (explicit mode) do not count.
    pub fn all_models_ready(&self) -> bool {
        self.index(false).iter().all(|e| match e.state {
            None => true,
            Some(ModelState::Ready) => true,
            Some(ModelState::Unavailable) => e.reason == UNLOADED,
            Some(_) => false,
        })
    }

    /// Live, not shutting down, and (with strict readiness) every model ready.
    pub fn is_ready(&self) -> bool {
        self.is_live()
            && !self.inner.draining.load(Ordering::Acquire)
            && (!self.inner.options.strict_readiness || self.all_models_ready())
    }

    /// The trace settings of a model (its overrides over the global ones), or the global ones.
    pub fn trace_settings(&self, model: Option<&str>) -> Result<crate::trace::TraceSettings> {
        if let Some(m) = model {
            self.model(m, None)?;
        }
        Ok(self.inner.tracer.settings(model))
    }

    /// Changes the global trace settings or a model's; returns the scope's settings.
    pub fn update_trace_settings(
        &self,
        model: Option<&str>,
        update: &crate::trace::TraceUpdate,
    ) -> Result<crate::trace::TraceSettings> {
        if let Some(m) = model {
            self.model(m, None)?;
        }
        self.inner.tracer.update(model, update)
    }

    /// Installs the logger the logging extension reads and changes (once).
    pub fn set_log_control(&self, control: Arc<dyn LogControl>) {
        let _ = self.inner.log_control.set(control);
    }

    fn log_control(&self) -> Result<&Arc<dyn LogControl>> {
        self.inner
            .log_control
            .get()
            .ok_or_else(|| Error::unavailable("the server does not support dynamic logging"))
    }

    /// The logging extension's settings.
    pub fn log_settings(&self) -> Result<LogSettings> {
        Ok(self.log_control()?.settings())
    }

    /// Changes the log settings at once; returns the new ones.
    pub fn update_log_settings(&self, update: &LogUpdate) -> Result<LogSettings> {
        let control = self.log_control()?;
        update.check(&control.settings())?;
        control.update(update)
    }

    /// The first step of a graceful shutdown: readiness turns false (so load balancers stop
    /// sending), while liveness and the requests in flight go on.
    pub fn begin_shutdown(&self) {
        self.inner.draining.store(true, Ordering::Release);
    }

    pub fn metadata(&self) -> ServerMetadata {
        ServerMetadata {
            name: self.inner.options.id.clone(),
            version: VERSION.to_string(),
            extensions: EXTENSIONS.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The ready model version a request names (`None`: the newest ready one).
    pub fn model(&self, name: &str, version: Option<i64>) -> Result<Arc<LoadedModel>> {
        let models = self.inner.models.read();
        let record = models.get(name).ok_or_else(|| {
            Error::not_found(format!("Request for unknown model: '{name}' is not found"))
        })?;
        match version {
            Some(v) => {
                let rec = record
                    .versions
                    .iter()
                    .find(|r| r.version == v)
                    .ok_or_else(|| {
                        Error::not_found(format!(
                            "Request for unknown model: '{name}' version {v} is not found"
                        ))
                    })?;
                rec.model.clone().ok_or_else(|| {
                    Error::unavailable(format!(
                        "Request for unknown model: '{name}' version {v} is not at ready state"
                    ))
                })
            }
            None => record
                .versions
                .iter()
                .rev()
                .find_map(|r| r.model.clone())
                .ok_or_else(|| {
                    Error::unavailable(format!(
                        "Request for unknown model: '{name}' has no available versions"
                    ))
                }),
        }
    }

    pub fn model_ready(&self, name: &str, version: Option<i64>) -> bool {
        self.is_live() && self.model(name, version).is_ok()
    }

    pub fn model_metadata(&self, name: &str, version: Option<i64>) -> Result<ModelMetadata> {
        let model = self.model(name, version)?;
        let versions = {
            let models = self.inner.models.read();
            models
                .get(name)
                .map(|r| {
                    r.versions
                        .iter()
                        .filter(|v| v.state == ModelState::Ready)
                        .map(|v| v.version.to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let config = model.config();
        let tensor = |name: &str, data_type: i32, dims: &[i64]| TensorMetadata {
            name: name.to_string(),
            datatype: config::datatype(data_type)
                .map(DataType::wire_name)
                .unwrap_or("INVALID")
                .to_string(),
            shape: config::full_shape(config, dims),
        };
        Ok(ModelMetadata {
            name: name.to_string(),
            versions,
            platform: if config.platform.is_empty() {
                config.backend.clone()
            } else {
                config.platform.clone()
            },
            inputs: config
                .input
                .iter()
                .map(|i| tensor(&i.name, i.data_type, &i.dims))
                .collect(),
            outputs: config
                .output
                .iter()
                .map(|o| tensor(&o.name, o.data_type, &o.dims))
                .collect(),
        })
    }

    /// The effective configuration of a model version.
    pub fn model_config(&self, name: &str, version: Option<i64>) -> Result<ModelConfig> {
        Ok(self.model(name, version)?.config().clone())
    }

    /// The effective configuration as Triton's HTTP API shows it.
    pub fn model_config_json(&self, name: &str, version: Option<i64>) -> Result<serde_json::Value> {
        Ok(self.model(name, version)?.config_json().clone())
    }

    /// Queues a request; its responses arrive on the stream.
    pub fn infer(&self, request: InferenceRequest) -> Result<ResponseStream> {
        let received = clock::now_ns();
        let model = self.model(&request.model_name, request.model_version)?;
        let trace =
            self.inner
                .tracer
                .sample(&request.model_name, model.version(), &request.id, received);
        model.enqueue(request, received, trace)
    }

    /// Runs a request and waits for its final response (a decoupled model's last one).
    pub async fn infer_one(&self, request: InferenceRequest) -> Result<InferenceResponse> {
        let mut stream = self.infer(request)?;
        let mut last = None;
        while let Some(message) = stream.recv().await {
            if let Some(response) = message.response {
                last = Some(response?);
            }
        }
        last.ok_or_else(|| Error::internal("the model sent no response"))
    }

    /// Every model version and its state, sorted by name then version. In explicit mode the
    /// models of the repositories that were never loaded are listed by name alone.
    pub fn index(&self, ready_only: bool) -> Vec<IndexEntry> {
        let mut out = Vec::new();
        {
            let models = self.inner.models.read();
            for (name, record) in models.iter() {
                if let Some(reason) = &record.reason {
                    out.push(IndexEntry {
                        name: name.clone(),
                        version: None,
                        state: Some(ModelState::Unavailable),
                        reason: reason.clone(),
                    });
                }
                if record.versions.is_empty() && record.reason.is_none() {
                    out.push(IndexEntry {
                        name: name.clone(),
                        version: None,
                        state: Some(ModelState::Loading),
                        reason: String::new(),
                    });
                }
                for v in &record.versions {
                    out.push(IndexEntry {
                        name: name.clone(),
                        version: Some(v.version),
                        state: Some(v.state),
                        reason: v.reason.clone(),
                    });
                }
            }
        }
        if self.inner.options.model_control_mode == ModelControlMode::Explicit
            && let Ok(dirs) = crate::repository::scan(&self.inner.options.model_repositories)
        {
            for name in dirs.into_keys() {
                if !out.iter().any(|e| e.name == name) {
                    out.push(IndexEntry {
                        name,
                        version: None,
                        state: None,
                        reason: String::new(),
                    });
                }
            }
            out.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        }
        if ready_only {
            out.retain(|e| e.state == Some(ModelState::Ready));
        }
        out
    }

    /// Every loaded model version, by name then version (what the metrics endpoint reads:
    /// statistics and pending requests together).
    pub fn loaded_models(&self) -> Vec<Arc<LoadedModel>> {
        let models = self.inner.models.read();
        models
            .values()
            .flat_map(|r| r.versions.iter().filter_map(|v| v.model.clone()))
            .collect()
    }

    /// Statistics of every ready model version, one model, or one version.
    pub fn statistics(&self, name: Option<&str>, version: Option<i64>) -> Result<Vec<ModelStats>> {
        let models = self.inner.models.read();
        let mut out = Vec::new();
        match name {
            None => {
                for record in models.values() {
                    out.extend(
                        record
                            .versions
                            .iter()
                            .filter_map(|v| v.model.as_ref())
                            .map(|m| m.stats()),
                    );
                }
            }
            Some(name) => {
                let record = models
                    .get(name)
                    .filter(|r| r.versions.iter().any(|v| v.model.is_some()));
                let Some(record) = record else {
                    return Err(Error::invalid_arg(format!(
                        "requested model '{name}' is not available"
                    )));
                };
                let loaded = record.versions.iter().filter_map(|v| v.model.as_ref());
                match version {
                    None => out.extend(loaded.map(|m| m.stats())),
                    Some(v) => {
                        let m = loaded
                            .into_iter()
                            .find(|m| m.version() == v)
                            .ok_or_else(|| crate::texts::version_not_available(name))?;
                        out.push(m.stats());
                    }
                }
            }
        }
        Ok(out)
    }

    /// Stops taking requests and unloads every model, letting queued requests finish.
    pub fn shutdown(&self) {
        self.inner.draining.store(true, Ordering::Release);
        self.inner.live.store(false, Ordering::Release);
        self.unload_all();
        self.inner.tracer.flush();
    }
}
