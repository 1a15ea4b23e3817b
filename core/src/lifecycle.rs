//! Model lifecycle: the table of model versions and their states, and the operations that
//! change it — loading (at startup, through the repository API, by polling), reloading
//! without a gap in service, and unloading with a drain.
//!
//! Every operation on one model holds that model's operation lock, so a load and an unload of
//! the same model never interleave; operations on different models run in parallel, at most
//! `model_load_threads` loads at once. A version is loaded on a thread of its own and waited
//! for at most `load_timeout`: a driver that never returns fails the load instead of hanging
//! the API (the late result, if any, is unloaded when it arrives).
//!
//! A reload swaps the new versions into the table first and only then retires the old ones, so
//! requests always find a READY version. Retiring a version takes it out of the table (new
//! requests get UNAVAILABLE), waits for calls that already hold it to let go, then drops it:
//! the queue closes, the instances finish every accepted request, and the driver frees the
//! model before the unload is reported done.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::config::ModelConfig;
use crate::model::{LoadOptions, LoadedModel};
use crate::repository::{self, ModelDir};
use crate::server::{ModelState, Server};
use crate::{Error, Result};

/// Triton's reason for a version that was unloaded on purpose.
pub const UNLOADED: &str = "unloaded";

/// How the repository is managed after startup (`--model-control-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ModelControlMode {
    /// Everything is loaded at startup; the repository API refuses load and unload.
    #[default]
    None,
    /// Everything is loaded at startup; the repositories are polled for changes.
    Poll,
    /// Only `--load-model` models are loaded at startup; the repository API loads and unloads.
    Explicit,
}

impl ModelControlMode {
    pub fn parse(text: &str) -> Option<ModelControlMode> {
        match text {
            "none" => Some(ModelControlMode::None),
            "poll" => Some(ModelControlMode::Poll),
            "explicit" => Some(ModelControlMode::Explicit),
            _ => None,
        }
    }

    /// Triton's name (`MODE_NONE`, ...).
    pub fn triton_name(self) -> &'static str {
        match self {
            ModelControlMode::None => "MODE_NONE",
            ModelControlMode::Poll => "MODE_POLL",
            ModelControlMode::Explicit => "MODE_EXPLICIT",
        }
    }
}

/// Which models are loaded at startup in explicit mode (`--load-model`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum StartupModels {
    /// `--load-model=*`.
    All,
    /// The named ones (none when the flag is absent).
    #[default]
    None,
    Named(Vec<String>),
}

/// The parameters of a load request (the repository API's `config` and `file:` parameters).
#[derive(Clone, Debug, Default)]
pub struct LoadParams {
    /// A ModelConfig in JSON that replaces the model's config.pbtxt.
    pub config: Option<String>,
    /// `file:<version>/<name>` contents, keyed by the path after `file:`.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl LoadParams {
    pub fn is_empty(&self) -> bool {
        self.config.is_none() && self.files.is_empty()
    }
}

/// What a poll of the repositories changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollReport {
    pub added: Vec<String>,
    pub modified: Vec<String>,
    pub removed: Vec<String>,
    /// Models whose (re)load failed, with the error.
    pub failed: Vec<(String, String)>,
}

impl PollReport {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

pub(crate) struct VersionRecord {
    pub(crate) version: i64,
    pub(crate) state: ModelState,
    pub(crate) reason: String,
    pub(crate) model: Option<Arc<LoadedModel>>,
}

/// Where a model's versions were loaded from: the directory, what it looked like then, and
/// the temporary directory of `file:` parameters (removed when the model no longer uses it).
pub(crate) struct Source {
    path: PathBuf,
    fingerprint: u64,
    overridden: bool,
    _temp: Option<tempfile::TempDir>,
}

#[derive(Default)]
pub(crate) struct ModelRecord {
    pub(crate) versions: Vec<VersionRecord>,
    /// A failure of the whole model (configuration, repository), before versions.
    pub(crate) reason: Option<String>,
    /// The last load attempted (successful or not).
    pub(crate) source: Option<Source>,
    /// An ensemble out of service because this step model is not loaded: it loads again when
    /// that model does.
    pub(crate) blocked_by: Option<String>,
}

impl ModelRecord {
    fn has_ready(&self) -> bool {
        self.versions.iter().any(|v| v.model.is_some())
    }
}

/// Counting semaphore bounding parallel loads.
pub(crate) struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    pub(crate) fn new(n: usize) -> Slots {
        Slots {
            free: Mutex::new(n.max(1)),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock();
        while *free == 0 {
            self.freed.wait(&mut free);
        }
        *free -= 1;
        SlotGuard(self)
    }
}

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock() += 1;
        self.0.freed.notify_one();
    }
}

/// The per-model operation locks.
#[derive(Default)]
pub(crate) struct OpLocks(Mutex<HashMap<String, Arc<Mutex<()>>>>);

impl OpLocks {
    fn get(&self, name: &str) -> Arc<Mutex<()>> {
        Arc::clone(self.0.lock().entry(name.to_string()).or_default())
    }
}

/// A cheap summary of a model directory: every file's relative path, size and modification
/// time. Any edit, addition or removal under the directory changes it.
pub fn fingerprint(dir: &Path) -> u64 {
    fn walk(base: &Path, dir: &Path, depth: usize, out: &mut Vec<(PathBuf, u64, i128)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                if depth < 8 {
                    walk(base, &path, depth + 1, out);
                }
                continue;
            }
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128);
            let rel = path.strip_prefix(base).unwrap_or(&path).to_path_buf();
            out.push((rel, meta.len(), mtime));
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, 0, &mut files);
    files.sort();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    files.hash(&mut h);
    h.finish()
}

/// Writes `file:` parameters under `<temp>/<name>/`, refusing paths that would leave it.
fn write_override_files(
    name: &str,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<tempfile::TempDir> {
    let temp = tempfile::Builder::new()
        .prefix("ferrite-load-")
        .tempdir()
        .map_err(|e| {
            Error::internal(format!(
                "failed to create a temporary directory for '{name}': {e}"
            ))
        })?;
    let root = temp.path().join(name);
    for (rel, bytes) in files {
        let path = Path::new(rel);
        // Names the file system cannot hold are the request's fault (Triton: INVALID_ARG
        // "Invalid file parameter ..."), not a failure to write.
        let too_long = rel.len() >= 4096 || path.components().any(|c| c.as_os_str().len() > 255);
        if too_long {
            return Err(crate::texts::file_name_too_long(rel));
        }
        if !crate::confine::is_plain_relative(rel) {
            return Err(crate::texts::file_outside(
                &format!("file:{rel}"),
                &lexically_normal(&root.join(path)).display().to_string(),
            ));
        }
        let dest = root.join(path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::internal(format!("failed to write 'file:{rel}' for '{name}': {e}"))
            })?;
        }
        std::fs::write(&dest, bytes).map_err(|e| {
            Error::internal(format!("failed to write 'file:{rel}' for '{name}': {e}"))
        })?;
    }
    std::fs::create_dir_all(&root)
        .map_err(|e| Error::internal(format!("failed to create {}: {e}", root.display())))?;
    Ok(temp)
}

/// `path` with `.` and `..` resolved by name (nothing is read): what a `file:` parameter
/// would have written to, for the message that refuses it.
fn lexically_normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A `config` parameter: a ModelConfig in JSON, whose name (if any) must be the model's. One
/// that is not is refused as Triton refuses it (its poll of the repository fails): INTERNAL,
/// "failed to load '<name>', failed to poll from model repository", here with the reason.
fn parse_override(name: &str, json: &str) -> Result<ModelConfig> {
    let refuse = |why: String| crate::texts::load_not_polled(name, &why);
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| refuse(format!("the 'config' parameter is not valid JSON: {e}")))?;
    let mut config = crate::config::from_json(&value).map_err(|e| {
        refuse(format!(
            "the 'config' parameter is not a model configuration: {}",
            e.chain()
        ))
    })?;
    if config.name.is_empty() {
        config.name = name.to_string();
    } else if config.name != name {
        return Err(refuse(format!(
            "the 'config' parameter names model '{}'",
            config.name
        )));
    }
    Ok(config)
}

/// Joins a stage name to an error, keeping its code: `<stage>: <message and causes>`.
fn at_stage(stage: &str, e: Error) -> Error {
    Error::new(e.code(), format!("{stage}: {}", e.chain()))
}

impl Server {
    /// Loads the models startup should load (all in modes none and poll; `--load-model` ones
    /// in explicit mode), in parallel. Failures are in the index.
    pub(crate) fn load_startup_models(&self) {
        let dirs = match repository::scan(&self.inner.options.model_repositories) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("{}", e.chain());
                return;
            }
        };
        let wanted: Vec<(String, Result<ModelDir>)> = match (
            &self.inner.options.model_control_mode,
            &self.inner.options.startup_models,
        ) {
            (ModelControlMode::Explicit, StartupModels::None) => Vec::new(),
            (ModelControlMode::Explicit, StartupModels::Named(names)) => names
                .iter()
                .map(|n| {
                    let dir = match dirs.get(n) {
                        Some(Ok(d)) => Ok(d.clone()),
                        Some(Err(e)) => Err(Error::new(e.code(), e.chain())),
                        None => Err(crate::texts::load_not_polled(n, "")),
                    };
                    (n.clone(), dir)
                })
                .collect(),
            _ => dirs.into_iter().collect(),
        };
        self.load_many(wanted.into_iter().map(|(n, d)| (n, d, None)).collect());
    }

    /// Loads models in parallel (bounded by the load slots); returns each one's result. An
    /// item may carry its folder's fingerprint when the caller has it already.
    /// Ensembles load after the models they run: in waves, each holding the models whose
    /// steps are not waiting in a later wave.
    fn load_many(
        &self,
        items: Vec<(String, Result<ModelDir>, Option<u64>)>,
    ) -> Vec<(String, Result<()>)> {
        {
            // Listed at once as LOADING, so the index and readiness see them from the start.
            let mut models = self.inner.models.write();
            for (name, _, _) in &items {
                models.entry(name.clone()).or_default();
            }
        }
        let opts = self.load_options();
        // (name, folder, fingerprint, the models it runs if it is an ensemble)
        type Item = (String, Result<ModelDir>, Option<u64>, Vec<String>);
        let mut rest: Vec<Item> = items
            .into_iter()
            .map(|(name, dir, print)| {
                let steps = dir
                    .as_ref()
                    .ok()
                    .and_then(|d| crate::model::read_config(d, &opts).ok())
                    .map(|c| crate::ensemble::step_models(&c))
                    .unwrap_or_default();
                (name, dir, print, steps)
            })
            .collect();
        let mut results = Vec::new();
        while !rest.is_empty() {
            let waiting: std::collections::HashSet<String> =
                rest.iter().map(|(n, ..)| n.clone()).collect();
            let (wave, later): (Vec<_>, Vec<_>) = rest
                .into_iter()
                .partition(|(_, _, _, steps)| !steps.iter().any(|s| waiting.contains(s)));
            rest = later;
            if wave.is_empty() {
                // Ensembles that run each other: none can ever load.
                for (name, _, _, steps) in rest.drain(..) {
                    let e = Error::invalid_arg(format!(
                        "ensemble '{name}' is part of a cycle of ensembles (its steps run {})",
                        steps.join(", ")
                    ));
                    tracing::error!("failed to load '{name}': {}", e.message());
                    self.inner
                        .models
                        .write()
                        .entry(name.clone())
                        .or_default()
                        .reason = Some(e.chain());
                    results.push((name, Err(e)));
                }
                break;
            }
            results.extend(
                self.load_wave(
                    wave.into_iter()
                        .map(|(name, dir, print, _)| (name, dir, print))
                        .collect(),
                ),
            );
        }
        results
    }

    /// Loads models in parallel (bounded by the load slots).
    fn load_wave(
        &self,
        items: Vec<(String, Result<ModelDir>, Option<u64>)>,
    ) -> Vec<(String, Result<()>)> {
        {
            // Listed at once as LOADING, so the index and readiness see them from the start.
            let mut models = self.inner.models.write();
            for (name, _, _) in &items {
                models.entry(name.clone()).or_default();
            }
        }
        let results = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for (name, dir, print) in items {
                let results = &results;
                scope.spawn(move || {
                    let lock = self.inner.ops.get(&name);
                    let _op = lock.lock();
                    let result = match dir {
                        Ok(dir) => self.load_from(dir, None, None, print),
                        Err(e) => {
                            tracing::error!("failed to load '{name}': {}", e.chain());
                            let mut models = self.inner.models.write();
                            let record = models.entry(name.clone()).or_default();
                            record.reason = Some(e.chain());
                            Err(e)
                        }
                    };
                    results.lock().push((name, result));
                });
            }
        });
        results.into_inner()
    }

    /// Loads (or reloads) a model through the repository API. Explicit mode only. An
    /// ensemble's step models are loaded first (as Triton does), and ensembles that went out
    /// of service when this model was unloaded come back with it.
    pub fn load(&self, name: &str, params: LoadParams) -> Result<()> {
        self.load_with_steps(name, params, 0)?;
        self.reload_blocked(name);
        Ok(())
    }

    /// Ensembles waiting for `name` (see [`ModelRecord::blocked_by`]) load again.
    fn reload_blocked(&self, name: &str) {
        let blocked: Vec<String> = self
            .inner
            .models
            .read()
            .iter()
            .filter(|(_, r)| r.blocked_by.as_deref() == Some(name) && !r.has_ready())
            .map(|(n, _)| n.clone())
            .collect();
        for ensemble in blocked {
            tracing::info!("model '{name}' is back: loading ensemble '{ensemble}' again");
            if let Err(e) = self.load(&ensemble, LoadParams::default()) {
                tracing::error!("{}", e.chain());
            }
        }
    }

    fn load_with_steps(&self, name: &str, params: LoadParams, depth: usize) -> Result<()> {
        // A name becomes a folder (in the repository, or the override's temporary one).
        crate::confine::model_name(name)?;
        if depth > 16 {
            return Err(Error::invalid_arg(format!(
                "failed to load '{name}': ensembles nest more than 16 deep (a cycle of ensembles?)"
            )));
        }
        if self.inner.options.model_control_mode != ModelControlMode::Explicit {
            return Err(Error::unavailable(
                "explicit model load / unload is not allowed if polling is enabled",
            ));
        }
        if !self.is_live() {
            return Err(Error::unavailable("Server is shutting down"));
        }
        if !params.files.is_empty() && params.config.is_none() {
            return Err(Error::invalid_arg(format!(
                "failed to load '{name}': the 'config' parameter must be given with 'file:' parameters"
            )));
        }
        let found = repository::scan(&self.inner.options.model_repositories)?.remove(name);
        if params.files.is_empty() {
            match &found {
                Some(Err(e)) => return Err(Error::new(e.code(), e.chain())),
                None => return Err(crate::texts::load_not_polled(name, "")),
                Some(Ok(_)) => {}
            }
        }
        // An ensemble: its steps first (each loads only if it is not loaded and unchanged).
        let opts = self.load_options();
        let steps = match params.config.as_deref() {
            Some(json) => parse_override(name, json).ok(),
            None => found
                .as_ref()
                .and_then(|f| f.as_ref().ok())
                .and_then(|dir| crate::model::read_config(dir, &opts).ok()),
        }
        .map(|c| crate::ensemble::step_models(&c))
        .unwrap_or_default();
        let mut step_errors = Vec::new();
        let mut missing_step = None;
        for step in steps {
            if let Err(e) = self.load_with_steps(&step, LoadParams::default(), depth + 1) {
                step_errors.push(format!("step model '{step}': {}", e.chain()));
                missing_step.get_or_insert(step);
            }
        }
        let lock = self.inner.ops.get(name);
        let _op = lock.lock();
        if !step_errors.is_empty() {
            let e = Error::invalid_arg(format!(
                "load failed for model '{name}': ensemble '{name}' depends on models that failed to load: {}",
                step_errors.join("; ")
            ));
            tracing::error!("{}", e.message());
            let mut models = self.inner.models.write();
            let record = models.entry(name.to_string()).or_default();
            record.blocked_by = missing_step;
            if !record.has_ready() {
                record.reason = Some(e.chain());
            }
            return Err(e);
        }
        let (dir, temp) = if params.files.is_empty() {
            (found.and_then(Result::ok).expect("checked above"), None)
        } else {
            let temp = write_override_files(name, &params.files)?;
            let dir = ModelDir {
                name: name.to_string(),
                path: temp.path().join(name),
            };
            (dir, Some(temp))
        };
        let mut print = None;
        if params.is_empty() {
            let now = fingerprint(&dir.path);
            print = Some(now);
            let models = self.inner.models.read();
            let unchanged = models.get(name).is_some_and(|r| {
                r.has_ready()
                    && r.versions.iter().all(|v| v.state == ModelState::Ready)
                    && r.source.as_ref().is_some_and(|s| {
                        !s.overridden && s.path == dir.path && s.fingerprint == now
                    })
            });
            if unchanged {
                tracing::info!("model '{name}' is loaded and unchanged: nothing to do");
                return Ok(());
            }
        }
        let config = match params.config.as_deref() {
            Some(json) => match parse_override(name, json) {
                Ok(c) => Some(c),
                Err(e) => return Err(e),
            },
            None => None,
        };
        let result = self.load_from(dir, config, temp, print);
        if result.is_ok()
            && let Some(record) = self.inner.models.write().get_mut(name)
        {
            record.blocked_by = None;
        }
        result
    }

    /// Loads every version the configuration selects from `dir`, then swaps them in and
    /// retires what they replace. On a reload that fails, the versions already serving stay.
    /// Call with the model's operation lock held.
    fn load_from(
        &self,
        dir: ModelDir,
        config: Option<ModelConfig>,
        temp: Option<tempfile::TempDir>,
        print: Option<u64>,
    ) -> Result<()> {
        let name = dir.name.clone();
        let print = print.unwrap_or_else(|| fingerprint(&dir.path));
        let overridden = config.is_some() || temp.is_some();
        let opts = self.load_options();
        let failed_model = |e: Error| -> Error {
            tracing::error!("failed to load '{name}': {}", e.chain());
            let mut models = self.inner.models.write();
            let record = models.entry(name.clone()).or_default();
            if !record.has_ready() {
                record.reason = Some(e.chain());
                record.versions.retain(|v| v.state != ModelState::Loading);
            }
            record.source = Some(Source {
                path: dir.path.clone(),
                fingerprint: print,
                overridden,
                _temp: None,
            });
            Error::new(
                e.code(),
                format!("load failed for model '{name}': {}", e.chain()),
            )
        };
        let config = match config {
            // An override goes through the same platform detection (and, in the driver, the
            // same auto-complete) as config.pbtxt.
            Some(mut c) => {
                crate::model::detect_missing_platform(&dir, &mut c);
                c
            }
            None => match crate::model::read_config(&dir, &opts) {
                Ok(c) => c,
                Err(e) => return Err(failed_model(at_stage("reading the configuration", e))),
            },
        };
        let selected = match repository::versions(&dir.path)
            .and_then(|available| repository::select_versions(&config, &available))
        {
            Ok(v) => v,
            Err(e) => return Err(failed_model(at_stage("choosing versions", e))),
        };
        {
            let mut models = self.inner.models.write();
            let record = models.entry(name.clone()).or_default();
            for &v in &selected {
                if !record.versions.iter().any(|r| r.version == v) {
                    record.versions.push(VersionRecord {
                        version: v,
                        state: ModelState::Loading,
                        reason: String::new(),
                        model: None,
                    });
                }
            }
            record.versions.sort_by_key(|r| r.version);
        }

        let results: Vec<(i64, Result<LoadedModel>)> = {
            let _slot = self.inner.load_slots.acquire();
            selected
                .iter()
                .map(|&v| {
                    tracing::info!("loading model '{name}' version {v}");
                    (v, self.load_version(&dir, &config, v, &opts))
                })
                .collect()
        };
        let mut errors = Vec::new();
        for (v, r) in &results {
            match r {
                Ok(m) => tracing::info!(
                    "successfully loaded '{name}' version {v} (driver '{}')",
                    m.driver_name()
                ),
                Err(e) => {
                    tracing::error!("failed to load '{name}' version {v}: {}", e.chain());
                    errors.push(format!(
                        "version {v} is at UNAVAILABLE state: {};",
                        e.chain()
                    ));
                }
            }
        }

        let (retired, old_source) = {
            let mut models = self.inner.models.write();
            let record = models.entry(name.clone()).or_default();
            if !errors.is_empty() && record.has_ready() {
                // A failed reload leaves the serving versions as they were.
                record.versions.retain(|v| v.state != ModelState::Loading);
                drop(models);
                tracing::error!(
                    "reloading '{name}' failed; the versions already loaded keep serving"
                );
                drop(results); // unloads the versions that did load
                return Err(Error::invalid_arg(format!(
                    "load failed for model '{name}': {}",
                    errors.join("\n")
                )));
            }
            let fresh: Vec<VersionRecord> = results
                .into_iter()
                .map(|(version, r)| match r {
                    Ok(model) => VersionRecord {
                        version,
                        state: ModelState::Ready,
                        reason: String::new(),
                        model: Some(Arc::new(model)),
                    },
                    Err(e) => VersionRecord {
                        version,
                        state: ModelState::Unavailable,
                        reason: e.chain(),
                        model: None,
                    },
                })
                .collect();
            let old = std::mem::replace(&mut record.versions, fresh);
            record.reason = None;
            let old_source = record.source.replace(Source {
                path: dir.path.clone(),
                fingerprint: print,
                overridden,
                _temp: temp,
            });
            (old, old_source)
        };
        let retired: Vec<Arc<LoadedModel>> = retired.into_iter().filter_map(|v| v.model).collect();
        if !retired.is_empty() {
            tracing::info!(
                "model '{name}': new versions are serving; draining {} replaced version(s)",
                retired.len()
            );
        }
        let replaced = !retired.is_empty();
        for model in retired {
            retire(model);
        }
        drop(old_source);
        if replaced {
            crate::driver::memory::release_free_memory();
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid_arg(format!(
                "load failed for model '{name}': {}",
                errors.join("\n")
            )))
        }
    }

    /// Loads one version on a thread of its own, waiting at most the load timeout.
    fn load_version(
        &self,
        dir: &ModelDir,
        config: &ModelConfig,
        version: i64,
        opts: &LoadOptions,
    ) -> Result<LoadedModel> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let opts = opts.clone();
        let server = self.clone();
        let (dir2, config2) = (dir.clone(), config.clone());
        std::thread::Builder::new()
            .name(format!("load-{}", dir.name))
            .spawn(move || {
                let result = if crate::ensemble::is_ensemble(&config2) {
                    LoadedModel::ensemble(&server, &dir2, &config2, version, &opts)
                } else {
                    LoadedModel::load(&server.inner.drivers, &dir2, &config2, version, &opts)
                };
                if let Err(crossbeam_channel::SendError(Ok(late))) = tx.send(result) {
                    tracing::warn!(
                        "model '{}' version {version} finished loading after its timeout; unloading it",
                        dir2.name
                    );
                    drop(late);
                }
            })
            .map_err(|e| Error::internal(format!("failed to start a load thread: {e}")))?;
        let timeout = self.inner.options.load_timeout;
        match rx.recv_timeout(timeout) {
            Ok(result) => result.map_err(|e| at_stage(&format!("loading version {version}"), e)),
            Err(_) => Err(Error::unavailable(format!(
                "loading version {version}: did not finish within {} s (--model-load-timeout-secs)",
                timeout.as_secs_f64()
            ))),
        }
    }

    /// Unloads every version of a model through the repository API (explicit mode): new
    /// requests get UNAVAILABLE at once, accepted ones complete, and the call returns when the
    /// driver has freed the model.
    ///
    /// Ensembles that run the model go out of service with it (and load again when it does).
    /// With `unload_dependents`, an ensemble's step models are unloaded too, unless another
    /// loaded ensemble still runs them.
    pub fn unload(&self, name: &str, unload_dependents: bool) -> Result<()> {
        if self.inner.options.model_control_mode != ModelControlMode::Explicit {
            return Err(Error::unavailable(
                "explicit model load / unload is not allowed if polling is enabled",
            ));
        }
        crate::confine::model_name(name)?;
        let steps = self.ensemble_steps(name);
        self.unload_cascade(name, false);
        if unload_dependents {
            for step in steps {
                if self.ensembles_running(&step).is_empty() {
                    self.unload(&step, true)?;
                }
            }
        }
        Ok(())
    }

    /// The models a loaded ensemble runs (empty for other models).
    fn ensemble_steps(&self, name: &str) -> Vec<String> {
        self.inner
            .models
            .read()
            .get(name)
            .and_then(|r| r.versions.iter().rev().find_map(|v| v.model.clone()))
            .map(|m| m.ensemble_steps())
            .unwrap_or_default()
    }

    /// The loaded ensembles that run `name` in a step.
    fn ensembles_running(&self, name: &str) -> Vec<String> {
        self.inner
            .models
            .read()
            .iter()
            .filter(|(_, r)| {
                r.versions
                    .iter()
                    .filter_map(|v| v.model.as_ref())
                    .any(|m| m.ensemble_steps().iter().any(|s| s == name))
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Unloads a model and, first, the ensembles that run it (they cannot serve without it;
    /// they are marked as waiting for it).
    fn unload_cascade(&self, name: &str, forget: bool) {
        for ensemble in self.ensembles_running(name) {
            if ensemble == name {
                continue;
            }
            tracing::info!("unloading ensemble '{ensemble}': it runs '{name}'");
            self.unload_cascade(&ensemble, false);
            let mut models = self.inner.models.write();
            if let Some(record) = models.get_mut(&ensemble) {
                record.blocked_by = Some(name.to_string());
                for v in &mut record.versions {
                    v.reason = format!(
                        "ensemble '{ensemble}' depends on '{name}' which has no loaded version"
                    );
                }
            }
        }
        self.unload_model(name, forget);
    }

    /// Takes a model's versions out of service and drains them. `forget` removes the model
    /// from the table (its directory is gone); otherwise it stays listed as unloaded.
    fn unload_model(&self, name: &str, forget: bool) {
        let lock = self.inner.ops.get(name);
        let _op = lock.lock();
        let taken: Vec<Arc<LoadedModel>> = {
            let mut models = self.inner.models.write();
            let Some(record) = models.get_mut(name) else {
                return;
            };
            let mut taken = Vec::new();
            for v in &mut record.versions {
                if let Some(m) = v.model.take() {
                    taken.push(m);
                }
                v.state = ModelState::Unloading;
                v.reason.clear();
            }
            taken
        };
        if !taken.is_empty() {
            tracing::info!("unloading model '{name}'");
        }
        let freed = !taken.is_empty();
        for model in taken {
            retire(model);
        }
        if freed {
            crate::driver::memory::release_free_memory();
        }
        let mut models = self.inner.models.write();
        let nothing_left = models.get(name).is_some_and(|r| r.versions.is_empty());
        if forget || nothing_left {
            // A model that never had a version (its configuration failed) is simply gone:
            // the index lists it by name again, as one never loaded.
            models.remove(name);
        } else if let Some(record) = models.get_mut(name) {
            for v in &mut record.versions {
                v.state = ModelState::Unavailable;
                v.reason = UNLOADED.to_string();
            }
            record.reason = None;
            record.source = None; // removes the temporary directory of `file:` parameters
        }
        drop(models);
        tracing::info!("successfully unloaded '{name}'");
    }

    /// Looks at the repositories once: loads added models, reloads modified ones (new
    /// versions serve before the old ones stop), unloads removed ones. Poll mode.
    pub fn poll(&self) -> PollReport {
        let mut report = PollReport::default();
        let dirs = match repository::scan(&self.inner.options.model_repositories) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("failed to poll the model repositories: {}", e.chain());
                return report;
            }
        };
        // What each model was loaded from, read under the lock; the folders are walked
        // after it is released (requests take the same lock to find their model).
        let loaded: HashMap<String, (PathBuf, u64)> = {
            let models = self.inner.models.read();
            for name in models.keys() {
                if !matches!(dirs.get(name), Some(Ok(_))) {
                    report.removed.push(name.clone());
                }
            }
            models
                .iter()
                .filter_map(|(n, r)| {
                    r.source
                        .as_ref()
                        .map(|s| (n.clone(), (s.path.clone(), s.fingerprint)))
                })
                .collect()
        };
        let mut work = Vec::new();
        for (name, dir) in &dirs {
            let Ok(dir) = dir else { continue };
            let print = fingerprint(&dir.path);
            match loaded.get(name) {
                None => {
                    report.added.push(name.clone());
                    work.push((name.clone(), Ok(dir.clone()), Some(print)));
                }
                Some((path, old)) if *path != dir.path || *old != print => {
                    report.modified.push(name.clone());
                    work.push((name.clone(), Ok(dir.clone()), Some(print)));
                }
                Some(_) => {}
            }
        }
        for name in &report.removed {
            tracing::info!("model '{name}' left the repository; unloading it");
            self.unload_cascade(name, true);
        }
        for name in report.added.iter().chain(&report.modified) {
            tracing::info!("model '{name}' changed in the repository; loading it");
        }
        let mut loaded = std::collections::HashSet::new();
        for (name, result) in self.load_many(work) {
            match result {
                Ok(()) => {
                    loaded.insert(name);
                }
                Err(e) => report.failed.push((name, e.chain())),
            }
        }
        // Ensembles that could not load for want of a model that just arrived try again.
        if !loaded.is_empty() {
            let opts = self.load_options();
            let retry: Vec<(String, Result<ModelDir>, Option<u64>)> = dirs
                .iter()
                .filter_map(|(name, dir)| {
                    let dir = dir.as_ref().ok()?;
                    let waiting = self
                        .inner
                        .models
                        .read()
                        .get(name)
                        .is_some_and(|r| !r.has_ready());
                    if !waiting || loaded.contains(name) {
                        return None;
                    }
                    let config = crate::model::read_config(dir, &opts).ok()?;
                    crate::ensemble::step_models(&config)
                        .iter()
                        .any(|m| loaded.contains(m))
                        .then(|| (name.clone(), Ok(dir.clone()), None))
                })
                .collect();
            for (name, result) in self.load_many(retry) {
                report.failed.retain(|(n, _)| *n != name);
                if let Err(e) = result {
                    report.failed.push((name, e.chain()));
                }
            }
        }
        report
    }

    /// Unloads every model (each drained), for shutdown.
    pub(crate) fn unload_all(&self) {
        // Ensembles first: their requests in flight still reach their steps.
        let mut names: Vec<(bool, String)> = self
            .inner
            .models
            .read()
            .iter()
            .map(|(n, r)| {
                let plain = r
                    .versions
                    .iter()
                    .filter_map(|v| v.model.as_ref())
                    .all(|m| m.ensemble_steps().is_empty());
                (plain, n.clone())
            })
            .collect();
        names.sort();
        for (_, name) in names {
            self.unload_model(&name, true);
        }
    }

    fn load_options(&self) -> LoadOptions {
        LoadOptions {
            auto_complete: !self.inner.options.strict_model_config,
            gpu_available: self.inner.gpu_available,
            histograms: self.inner.options.histograms.clone(),
        }
    }
}

/// Drops a version once nobody else holds it: calls that fetched it just before it left the
/// table finish queuing first, and the drop (drain, instance teardown, driver unload) runs
/// here, not on a request's thread.
fn retire(model: Arc<LoadedModel>) {
    let started = Instant::now();
    let mut model = model;
    loop {
        match Arc::try_unwrap(model) {
            Ok(owned) => {
                drop(owned);
                return;
            }
            Err(shared) => {
                model = shared;
                if started.elapsed() > Duration::from_secs(60) {
                    tracing::warn!(
                        "model '{}' version {} is still held after 60 s; it unloads when released",
                        model.name(),
                        model.version()
                    );
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_sees_edits_additions_and_removals() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("1")).unwrap();
        std::fs::write(d.path().join("config.pbtxt"), "a").unwrap();
        let a = fingerprint(d.path());
        assert_eq!(a, fingerprint(d.path()));
        std::fs::write(d.path().join("config.pbtxt"), "ab").unwrap();
        let b = fingerprint(d.path());
        assert_ne!(a, b);
        std::fs::write(d.path().join("1/model.onnx"), "x").unwrap();
        let c = fingerprint(d.path());
        assert_ne!(b, c);
        std::fs::remove_file(d.path().join("1/model.onnx")).unwrap();
        assert_eq!(b, fingerprint(d.path()));
    }

    #[test]
    fn override_files_stay_inside_the_model_directory() {
        let mut files = BTreeMap::new();
        files.insert("1/model.onnx".to_string(), b"abc".to_vec());
        let temp = write_override_files("m", &files).unwrap();
        assert_eq!(
            std::fs::read(temp.path().join("m/1/model.onnx")).unwrap(),
            b"abc"
        );
        for bad in ["../x", "/etc/passwd", "1/../../x", ""] {
            let mut files = BTreeMap::new();
            files.insert(bad.to_string(), b"abc".to_vec());
            let e = write_override_files("m", &files).unwrap_err();
            assert_eq!(e.code(), crate::ErrorCode::InvalidArg, "{bad}");
            assert!(
                e.message().starts_with(&format!(
                    "Invalid file parameter 'file:{bad}' with normalized path '"
                )) && e.message().ends_with("' must stay within model directory."),
                "{}",
                e.message()
            );
        }
        // Nothing of a refused load was written beside its folder.
        let mut files = BTreeMap::new();
        files.insert("../escaped".to_string(), b"abc".to_vec());
        assert!(write_override_files("m", &files).is_err());
        assert!(!std::env::temp_dir().join("escaped").exists());
    }

    #[test]
    fn override_file_names_the_file_system_cannot_hold_are_refused() {
        let files: BTreeMap<String, Vec<u8>> =
            [(format!("1/{}.onnx", "a".repeat(300)), b"x".to_vec())].into();
        let e = write_override_files("m", &files).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::InvalidArg);
        assert!(
            e.message().starts_with("Invalid file parameter '1/aaa")
                && e.message().ends_with("': File name too long"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn config_override_must_name_the_model() {
        assert_eq!(
            parse_override("m", r#"{"max_batch_size": 4}"#)
                .unwrap()
                .name,
            "m"
        );
        assert!(
            parse_override("m", r#"{"name": "other"}"#)
                .unwrap_err()
                .message()
                .contains("names model 'other'")
        );
        let e = parse_override("m", "{not json").unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Internal);
        assert!(
            e.message()
                .starts_with("failed to load 'm', failed to poll from model repository: "),
            "{}",
            e.message()
        );
        assert!(e.message().contains("not valid JSON"));
    }

    #[test]
    fn modes_parse() {
        assert_eq!(
            ModelControlMode::parse("explicit"),
            Some(ModelControlMode::Explicit)
        );
        assert_eq!(ModelControlMode::parse("POLL"), None);
        assert_eq!(ModelControlMode::Poll.triton_name(), "MODE_POLL");
    }
}
