//! ONNX Runtime glue shared by the CPU and CUDA drivers: finding and loading the runtime
//! library, sessions, the mapping between ONNX and Triton data types, auto-completing a model
//! configuration from the ONNX file, and running a batch. The drivers differ only in the
//! execution provider they register and the memory they use.

mod config;
mod execute;
mod strings;
mod types;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ferrite_driver_sdk::{DriverInfo, Error, InstanceInfo, ModelLoad, Result};
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

pub use config::{auto_complete, validate};
pub use execute::execute;
pub use types::{from_ort, to_ort};

/// The ONNX Runtime release the drivers are built against (`api-31`).
pub const ORT_VERSION: &str = "1.31.1";
/// The library file the `onnxruntime` wheel ships.
pub const ORT_LIBRARY: &str = "libonnxruntime.so.1.31.1";

/// Where the runtime library is looked for: the driver setting `library` (from
/// `--backend-config=onnxruntime,library=PATH`), then `FERRITE_ONNXRUNTIME_LIB`, then beside the
/// driver library.
pub fn library_path(info: &DriverInfo) -> PathBuf {
    if let Some(p) = info.setting("library") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("FERRITE_ONNXRUNTIME_LIB") {
        return PathBuf::from(p);
    }
    info.directory.join(ORT_LIBRARY)
}

/// Loads ONNX Runtime from `path` and makes the process's environment.
pub fn init_runtime(path: &Path) -> Result<Environment> {
    if !path.is_file() {
        return Err(Error::unavailable(format!(
            "ONNX Runtime library not found at {} (install the onnxruntime=={ORT_VERSION} wheel and copy {ORT_LIBRARY} there, or set --backend-config=onnxruntime,library=PATH)",
            path.display()
        )));
    }
    let builder = ort::init_from(path).map_err(|e| {
        Error::from_chain(
            format!("failed to load ONNX Runtime from {}", path.display()),
            &e,
        )
    })?;
    builder
        .with_name("ferrite")
        .build()
        .map_err(|e| Error::from_chain("failed to create the ONNX Runtime environment", &e))
}

/// A loaded ONNX model version: where its file is and its final configuration's essentials.
pub struct OnnxModel {
    pub name: String,
    pub file: PathBuf,
    /// Model batches along the first dimension (`max_batch_size > 0`).
    pub batching: bool,
    pub intra_op_threads: usize,
    /// The CPU session opened to read the model at load time, handed to the first CPU
    /// instance rather than opened twice.
    spare: Mutex<Option<Session>>,
}

/// One instance: its own session (`Session::run` takes `&mut self`).
pub struct OnnxInstance {
    pub session: Session,
}

/// The model file of a version: `default_model_filename` (default `model.onnx`).
fn model_file(load: &ModelLoad<'_>) -> PathBuf {
    let name = load
        .config()
        .get("default_model_filename")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("model.onnx");
    load.version_path().join(name)
}

/// Opens a session with the given execution providers.
pub fn open_session(
    env: &Environment,
    file: &Path,
    intra_op_threads: usize,
    providers: &[ort::ep::ExecutionProviderDispatch],
) -> Result<Session> {
    let fail = |what: &str, e: &dyn std::error::Error| -> Error {
        Error::invalid_arg(format!("failed to {what} for {}: {e}", file.display()))
    };
    let mut builder = Session::builder(env).map_err(|e| fail("create a session builder", &e))?;
    builder = builder
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| fail("set the optimization level", &e))?
        .with_intra_threads(intra_op_threads)
        .map_err(|e| fail("set the thread count", &e))?;
    if !providers.is_empty() {
        builder = builder
            .with_execution_providers(providers)
            .map_err(|e| fail("register the execution providers", &e))?;
    }
    builder.commit_from_file(file).map_err(|e| {
        Error::invalid_arg(format!("failed to load ONNX model {}: {e}", file.display()))
    })
}

/// Loads a model version: checks the file, auto-completes the configuration when asked.
pub fn load_model(env: &Environment, load: &mut ModelLoad<'_>) -> Result<OnnxModel> {
    let file = model_file(load);
    if !file.is_file() {
        return Err(Error::not_found(format!(
            "model file {} not found for model '{}' version {}",
            file.display(),
            load.name(),
            load.version()
        )));
    }
    // Parameters such as `intra_op_thread_count` come from the config's `parameters` map.
    let intra_op_threads = load
        .config()
        .pointer("/parameters/intra_op_thread_count/string_value")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let session = open_session(env, &file, intra_op_threads, &[])?;
    if load.auto_complete() {
        let completed = auto_complete(load.config(), &session)?;
        if &completed != load.config() {
            load.set_config(completed)?;
        }
    }
    validate(load.name(), load.config(), &session)?;
    let batching = load
        .config()
        .get("max_batch_size")
        .and_then(|v| v.as_i64())
        .unwrap_or(0)
        > 0;
    Ok(OnnxModel {
        name: load.name().to_string(),
        file,
        batching,
        intra_op_threads,
        spare: Mutex::new(Some(session)),
    })
}

/// Creates an instance's session.
pub fn create_instance(
    env: &Environment,
    model: &OnnxModel,
    _info: &InstanceInfo,
    providers: &[ort::ep::ExecutionProviderDispatch],
) -> Result<OnnxInstance> {
    let spare = if providers.is_empty() {
        model.spare.lock().unwrap_or_else(|p| p.into_inner()).take()
    } else {
        None
    };
    let session = match spare {
        Some(session) => session,
        None => open_session(env, &model.file, model.intra_op_threads, providers)?,
    };
    Ok(OnnxInstance { session })
}
