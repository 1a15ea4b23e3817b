//! The `Server` facade: the one door every frontend goes through (health, metadata,
//! configuration, inference, repository index, statistics), so HTTP and gRPC cannot drift
//! apart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ferrite_driver_abi as abi;
use parking_lot::RwLock;

use crate::config::{self, ModelConfig};
use crate::driver::DriverRegistry;
use crate::model::{LoadOptions, LoadedModel, ResponseStream};
use crate::repository::{self, ModelDir};
use crate::request::{InferenceRequest, InferenceResponse};
use crate::shm::SharedMemory;
use crate::stats::ModelStats;
use crate::tensor::DataType;
use crate::{Error, Result, clock};

/// Ferrite's version, reported as the server version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The protocol extensions Ferrite implements (server metadata's `extensions`).
pub const EXTENSIONS: &[&str] = &[
    "classification",
    "model_repository",
    "model_configuration",
    "system_shared_memory",
    "cuda_shared_memory",
    "binary_tensor_data",
    "parameters",
    "statistics",
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
    /// Models loaded at once at startup.
    pub model_load_threads: usize,
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
    /// `None` when the model failed before any version could be named.
    pub version: Option<i64>,
    pub state: ModelState,
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

struct VersionRecord {
    version: i64,
    state: ModelState,
    reason: String,
    model: Option<Arc<LoadedModel>>,
}

#[derive(Default)]
struct ModelRecord {
    versions: Vec<VersionRecord>,
    /// A failure of the whole model (configuration, repository), before versions.
    reason: Option<String>,
}

struct Inner {
    options: ServerOptions,
    drivers: DriverRegistry,
    shared_memory: SharedMemory,
    models: RwLock<BTreeMap<String, ModelRecord>>,
    live: AtomicBool,
}

/// The runtime behind every frontend. Cheap to clone.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

impl Server {
    /// Finds the drivers and loads every model of the repositories (in parallel; one model
    /// failing never stops another). Check [`Server::index`] for failures.
    pub fn start(options: ServerOptions) -> Result<Server> {
        let drivers =
            DriverRegistry::discover(&options.backend_directory, &options.backend_config)?;
        let dirs = repository::scan(&options.model_repositories)?;
        let opts = LoadOptions {
            auto_complete: !options.strict_model_config,
            gpu_available: drivers
                .drivers()
                .iter()
                .any(|d| d.instance_kinds & abi::INSTANCE_KIND_GPU != 0),
        };
        let shared_memory = SharedMemory::new(options.allow_client_shm);
        let server = Server {
            inner: Arc::new(Inner {
                options,
                drivers,
                shared_memory,
                models: RwLock::new(BTreeMap::new()),
                live: AtomicBool::new(true),
            }),
        };
        server.load_all(dirs, opts);
        Ok(server)
    }

    fn load_all(&self, dirs: BTreeMap<String, Result<ModelDir>>, opts: LoadOptions) {
        {
            let mut models = self.inner.models.write();
            for name in dirs.keys() {
                models.insert(name.clone(), ModelRecord::default());
            }
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        for item in dirs {
            let _ = tx.send(item);
        }
        drop(tx);
        let workers = self.inner.options.model_load_threads.max(1);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let rx = rx.clone();
                scope.spawn(move || {
                    while let Ok((name, dir)) = rx.recv() {
                        let record = match dir {
                            Ok(dir) => self.load_model(&dir, opts),
                            Err(e) => ModelRecord {
                                versions: Vec::new(),
                                reason: Some(e.chain()),
                            },
                        };
                        self.inner.models.write().insert(name, record);
                    }
                });
            }
        });
    }

    fn load_model(&self, dir: &ModelDir, opts: LoadOptions) -> ModelRecord {
        let failed = |e: Error| {
            tracing::error!("failed to load model '{}': {}", dir.name, e.chain());
            ModelRecord {
                versions: Vec::new(),
                reason: Some(e.chain()),
            }
        };
        let config = match crate::model::read_config(dir, opts) {
            Ok(c) => c,
            Err(e) => return failed(e),
        };
        let available = match repository::versions(&dir.path) {
            Ok(v) => v,
            Err(e) => return failed(e),
        };
        let selected = match repository::select_versions(&config, &available) {
            Ok(v) => v,
            Err(e) => return failed(e),
        };
        let versions = selected
            .into_iter()
            .map(|version| {
                tracing::info!("loading model '{}' version {version}", dir.name);
                match LoadedModel::load(&self.inner.drivers, dir, &config, version, opts) {
                    Ok(model) => {
                        tracing::info!(
                            "successfully loaded '{}' version {version} (driver '{}')",
                            dir.name,
                            model.driver_name()
                        );
                        VersionRecord {
                            version,
                            state: ModelState::Ready,
                            reason: String::new(),
                            model: Some(Arc::new(model)),
                        }
                    }
                    Err(e) => {
                        tracing::error!(
                            "failed to load '{}' version {version}: {}",
                            dir.name,
                            e.chain()
                        );
                        VersionRecord {
                            version,
                            state: ModelState::Unavailable,
                            reason: e.chain(),
                            model: None,
                        }
                    }
                }
            })
            .collect();
        ModelRecord {
            versions,
            reason: None,
        }
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

    /// Whether every model version is ready.
    pub fn all_models_ready(&self) -> bool {
        self.index(false)
            .iter()
            .all(|e| e.state == ModelState::Ready)
    }

    /// Live, and (with strict readiness) every model ready.
    pub fn is_ready(&self) -> bool {
        self.is_live() && (!self.inner.options.strict_readiness || self.all_models_ready())
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
        model.enqueue(request, received)
    }

    /// Runs a request and waits for its final response.
    pub async fn infer_one(&self, request: InferenceRequest) -> Result<InferenceResponse> {
        let mut stream = self.infer(request)?;
        let mut last = None;
        while let Some(response) = stream.recv().await {
            last = Some(response?);
        }
        last.ok_or_else(|| Error::internal("the model sent no response"))
    }

    /// Every model version and its state, sorted by name then version.
    pub fn index(&self, ready_only: bool) -> Vec<IndexEntry> {
        let models = self.inner.models.read();
        let mut out = Vec::new();
        for (name, record) in models.iter() {
            if let Some(reason) = &record.reason {
                out.push(IndexEntry {
                    name: name.clone(),
                    version: None,
                    state: ModelState::Unavailable,
                    reason: reason.clone(),
                });
            }
            for v in &record.versions {
                out.push(IndexEntry {
                    name: name.clone(),
                    version: Some(v.version),
                    state: v.state,
                    reason: v.reason.clone(),
                });
            }
        }
        if ready_only {
            out.retain(|e| e.state == ModelState::Ready);
        }
        out
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
                            .ok_or_else(|| {
                                Error::invalid_arg(format!(
                                    "requested model '{name}' version {v} is not available"
                                ))
                            })?;
                        out.push(m.stats());
                    }
                }
            }
        }
        Ok(out)
    }

    /// Stops taking requests and unloads every model, letting queued requests finish.
    pub fn shutdown(&self) {
        self.inner.live.store(false, Ordering::Release);
        let records = std::mem::take(&mut *self.inner.models.write());
        drop(records);
    }
}
