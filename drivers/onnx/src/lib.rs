//! ONNX Runtime glue shared by the CPU and CUDA drivers: finding and loading the runtime
//! library, sessions, the mapping between ONNX and Triton data types, auto-completing a model
//! configuration from the ONNX file, and running a batch. The drivers differ only in the
//! execution provider they register and the memory they use.

mod config;
mod execute;
pub mod ragged;
mod strings;
mod types;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ferrite_driver_sdk::{DriverInfo, Error, InstanceInfo, ModelLoad, Result};
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

pub use config::{Scalars, auto_complete, validate};
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
    /// The model's tensors of no dimensions (configured as [1]).
    pub scalars: Scalars,
    /// Ragged inputs, batch inputs and batch outputs (Triton's ragged batching).
    pub ragged: ragged::Ragged,
    /// The CPU session opened to read the model at load time (with these threads), handed to
    /// the first CPU instance that wants the same threads rather than opened twice.
    spare: Mutex<Option<(Threads, Session)>>,
}

/// Threads of one instance's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Threads {
    /// Threads inside one operator (ONNX Runtime's intra-op pool).
    pub intra_op: usize,
    /// Threads running operators in parallel (0: ONNX Runtime's default).
    pub inter_op: usize,
}

impl Threads {
    /// From the model configuration: the `intra_op_thread_count` / `inter_op_thread_count`
    /// parameters (the names Triton's ONNX Runtime backend reads); by default the cores shared
    /// out among the model's instances (at least one each), so that several instances do not
    /// oversubscribe the machine.
    pub fn from_config(config: &serde_json::Value) -> Threads {
        let parameter = |key: &str| {
            config
                .pointer(&format!("/parameters/{key}/string_value"))
                .and_then(|v| v.as_str())
                .and_then(|s| s.trim().parse::<usize>().ok())
                .filter(|&n| n > 0)
        };
        // Instances as the server will create them (Triton's default: two CPU instances of an
        // ONNX Runtime model when the configuration names none).
        let groups = config
            .get("instance_group")
            .and_then(|g| g.as_array())
            .cloned()
            .unwrap_or_default();
        let instances: usize = if groups.is_empty() {
            2
        } else {
            groups
                .iter()
                .map(|g| match g.get("count").and_then(|c| c.as_u64()) {
                    Some(n) if n > 0 => n as usize,
                    _ => 2,
                })
                .sum()
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Threads {
            intra_op: parameter("intra_op_thread_count")
                .unwrap_or((cores / instances.max(1)).max(1)),
            inter_op: parameter("inter_op_thread_count").unwrap_or(0),
        }
    }
}

/// One instance: its own session (`Session::run` takes `&mut self`).
pub struct OnnxInstance {
    pub session: Session,
    /// Gathered batch inputs, one buffer per input, kept from one batch to the next.
    pub scratch: Vec<Vec<u8>>,
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
    threads: Threads,
    providers: &[ort::ep::ExecutionProviderDispatch],
) -> Result<Session> {
    let fail = |what: &str, e: &dyn std::error::Error| -> Error {
        Error::invalid_arg(format!("failed to {what} for {}: {e}", file.display()))
    };
    let mut builder = Session::builder(env).map_err(|e| fail("create a session builder", &e))?;
    builder = builder
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| fail("set the optimization level", &e))?
        .with_intra_threads(threads.intra_op)
        .map_err(|e| fail("set the thread count", &e))?;
    if threads.inter_op > 0 {
        builder = builder
            .with_inter_threads(threads.inter_op)
            .map_err(|e| fail("set the inter-op thread count", &e))?;
    }
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
    let threads = Threads::from_config(load.config());
    let session = open_session(env, &file, threads, &[])?;
    if load.auto_complete() {
        let completed = auto_complete(load.config(), &session)?;
        if &completed != load.config() {
            load.set_config(completed)?;
        }
    }
    let scalars = validate(load.name(), load.config(), &session)?;
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
        scalars,
        ragged: ragged::Ragged::from_config(load.config())?,
        spare: Mutex::new(Some((threads, session))),
    })
}

/// Creates an instance's session.
pub fn create_instance(
    env: &Environment,
    model: &OnnxModel,
    info: &InstanceInfo,
    providers: &[ort::ep::ExecutionProviderDispatch],
) -> Result<OnnxInstance> {
    let threads = Threads::from_config(&info.config);
    let spare = if providers.is_empty() {
        let mut spare = model.spare.lock().unwrap_or_else(|p| p.into_inner());
        match spare.take() {
            Some((t, session)) if t == threads => Some(session),
            other => {
                *spare = other;
                None
            }
        }
    } else {
        None
    };
    let session = match spare {
        Some(session) => session,
        None => open_session(env, &model.file, threads, providers)?,
    };
    Ok(OnnxInstance {
        session,
        scratch: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn threads_share_the_cores_unless_configured() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let two = Threads::from_config(&json!({"instance_group": []}));
        assert_eq!(
            two,
            Threads {
                intra_op: (cores / 2).max(1),
                inter_op: 0
            }
        );
        let four = Threads::from_config(&json!({"instance_group": [{"count": 3}, {"count": 1}]}));
        assert_eq!(four.intra_op, (cores / 4).max(1));
        let set = Threads::from_config(&json!({
            "instance_group": [{"count": 1}],
            "parameters": {
                "intra_op_thread_count": {"string_value": "3"},
                "inter_op_thread_count": {"string_value": "2"}
            }
        }));
        assert_eq!(
            set,
            Threads {
                intra_op: 3,
                inter_op: 2
            }
        );
    }
}
