//! Safe views of what the host says when it initialises a driver, loads a model and creates
//! an instance.

use std::path::{Path, PathBuf};

use ferrite_driver_abi as abi;
use serde_json::Value;

use crate::{Error, Result, host};

fn string(s: abi::Str) -> String {
    // SAFETY: the host passes strings valid for the duration of the call that carries them.
    unsafe { s.to_str_lossy().into_owned() }
}

fn json(s: abi::Str, what: &str) -> Result<Value> {
    // SAFETY: as above.
    let bytes = unsafe { s.as_bytes() };
    if bytes.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Error::internal(format!("the host passed invalid JSON for {what}: {e}")))
}

/// What the driver is told at initialisation.
#[derive(Clone, Debug)]
pub struct DriverInfo {
    /// The driver's shared library file.
    pub path: PathBuf,
    /// The directory holding it.
    pub directory: PathBuf,
    /// `--backend-config` settings for this driver, as a JSON object of strings.
    pub config: Value,
}

impl DriverInfo {
    pub(crate) fn from_abi(info: &abi::DriverInfo) -> Result<DriverInfo> {
        Ok(DriverInfo {
            path: string(info.path).into(),
            directory: string(info.directory).into(),
            config: json(info.config_json, "the driver settings")?,
        })
    }

    /// A `--backend-config` setting, if given.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.config.get(key).and_then(Value::as_str)
    }
}

/// One model version being loaded.
pub struct ModelLoad<'a> {
    pub(crate) raw: &'a abi::ModelInfo,
    pub(crate) handle: *mut abi::Model,
    name: String,
    model_path: PathBuf,
    version_path: PathBuf,
    config: Value,
}

impl<'a> ModelLoad<'a> {
    pub(crate) fn from_abi(raw: &'a abi::ModelInfo, handle: *mut abi::Model) -> Result<Self> {
        Ok(ModelLoad {
            raw,
            handle,
            name: string(raw.name),
            model_path: string(raw.model_path).into(),
            version_path: string(raw.version_path).into(),
            config: json(raw.config_json, "the model configuration")?,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn version(&self) -> i64 {
        self.raw.version
    }
    /// The model's directory in the repository.
    pub fn model_path(&self) -> &Path {
        &self.model_path
    }
    /// The version's directory.
    pub fn version_path(&self) -> &Path {
        &self.version_path
    }
    /// The model configuration (protobuf JSON with Triton's field names).
    pub fn config(&self) -> &Value {
        &self.config
    }
    /// Whether the driver should fill in what the configuration leaves out.
    pub fn auto_complete(&self) -> bool {
        self.raw.auto_complete != 0
    }

    /// Replaces the model's configuration (e.g. auto-completed from the model file).
    pub fn set_config(&mut self, config: Value) -> Result<()> {
        let text = config.to_string();
        // SAFETY: `handle` is the live model handle of this load call; the text outlives it.
        let err = unsafe { (host::get().model_set_config)(self.handle, abi::Str::new(&text)) };
        host::check(err)?;
        self.config = config;
        Ok(())
    }
}

/// The kind of an instance group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceKind {
    Cpu,
    Gpu,
    Model,
}

/// One instance being created.
#[derive(Clone, Debug)]
pub struct InstanceInfo {
    /// `<group name>_<index>`.
    pub name: String,
    pub kind: InstanceKind,
    /// GPU ordinal for [`InstanceKind::Gpu`].
    pub device_id: Option<i32>,
    /// The final model configuration.
    pub config: Value,
}

impl InstanceInfo {
    pub(crate) fn from_abi(info: &abi::InstanceInfo) -> Result<InstanceInfo> {
        let kind = match info.kind {
            abi::INSTANCE_KIND_GPU => InstanceKind::Gpu,
            abi::INSTANCE_KIND_MODEL => InstanceKind::Model,
            _ => InstanceKind::Cpu,
        };
        Ok(InstanceInfo {
            name: string(info.name),
            kind,
            device_id: (info.device_id >= 0).then_some(info.device_id),
            config: json(info.config_json, "the model configuration")?,
        })
    }
}
