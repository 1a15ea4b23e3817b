//! Model configuration: reading `config.pbtxt` (protobuf text format, through the descriptor
//! pool in `ferrite-proto`), Triton's defaults, and validation that reports every problem with
//! its field path.

mod defaults;
mod validate;

use std::path::Path;

pub use defaults::{default_model_filename, normalize};
pub use ferrite_proto::inference::{
    DataType as ConfigDataType, ModelConfig, ModelInput, ModelInstanceGroup, ModelOutput,
    model_instance_group::Kind as InstanceKind, model_version_policy::PolicyChoice,
};
pub use validate::{ConfigIssue, reshape_issues, validate};

use crate::tensor::DataType;
use crate::{Error, Result};

/// The file Triton reads a model's configuration from.
pub const CONFIG_FILE: &str = "config.pbtxt";

/// Reads `<model_dir>/config.pbtxt`. A missing file gives an empty configuration (named after
/// the directory) when auto-complete may fill it in, and an error otherwise.
pub fn read(model_dir: &Path, model_name: &str, auto_complete: bool) -> Result<ModelConfig> {
    let path = model_dir.join(CONFIG_FILE);
    let mut config = match std::fs::read_to_string(&path) {
        Ok(text) => ferrite_proto::parse_model_config(&text).map_err(|e| {
            Error::invalid_arg(format!("failed to parse {}: {e}", path.display()))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && auto_complete => ModelConfig::default(),
        Err(e) => {
            return Err(Error::invalid_arg(format!(
                "failed to read {}: {e}{}",
                path.display(),
                if e.kind() == std::io::ErrorKind::NotFound {
                    " (a configuration file is required when auto-complete is disabled by --strict-model-config=true / --disable-auto-complete-config)"
                } else {
                    ""
                }
            ))
            .with_source(e))
        }
    };
    if config.name.is_empty() {
        config.name = model_name.to_string();
    } else if config.name != model_name {
        return Err(Error::invalid_arg(format!(
            "unexpected directory name '{model_name}' for model '{}', directory name must equal model name ({})",
            config.name,
            path.display()
        )));
    }
    Ok(config)
}

/// The runtime data type of a configuration data type (`TYPE_STRING` is BYTES).
pub fn datatype(raw: i32) -> Option<DataType> {
    u32::try_from(raw).ok().and_then(DataType::from_raw)
}

/// The configuration as Triton's HTTP API shows it.
pub fn to_json(config: &ModelConfig) -> serde_json::Value {
    ferrite_proto::model_config_to_json(config)
}

/// A configuration from protobuf JSON (as drivers return it).
pub fn from_json(value: &serde_json::Value) -> Result<ModelConfig> {
    ferrite_proto::model_config_from_json(value)
        .map_err(|e| Error::invalid_arg(format!("invalid model configuration JSON: {e}")))
}

/// Full shape of a configured tensor as clients see it: `[-1, dims...]` when the model batches.
pub fn full_shape(config: &ModelConfig, dims: &[i64]) -> Vec<i64> {
    let mut shape = Vec::with_capacity(dims.len() + 1);
    if config.max_batch_size > 0 {
        shape.push(-1);
    }
    shape.extend_from_slice(dims);
    shape
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_names_from_directory() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("mymodel");
        std::fs::create_dir(&m).unwrap();
        std::fs::write(
            m.join(CONFIG_FILE),
            "platform: \"onnxruntime_onnx\"\nmax_batch_size: 4\n",
        )
        .unwrap();
        let c = read(&m, "mymodel", true).unwrap();
        assert_eq!(c.name, "mymodel");
        assert_eq!(c.max_batch_size, 4);
    }

    #[test]
    fn missing_file_depends_on_auto_complete() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path(), "m", true).unwrap().name, "m");
        let e = read(dir.path(), "m", false).unwrap_err();
        assert!(e.message().contains("config.pbtxt"), "{}", e.message());
    }

    #[test]
    fn name_mismatch_and_parse_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "name: \"other\"\n").unwrap();
        let e = read(dir.path(), "m", true).unwrap_err();
        assert!(
            e.message().contains("unexpected directory name 'm'"),
            "{}",
            e.message()
        );

        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "name: \"m\"\n\nmax_batchsize: 3\n",
        )
        .unwrap();
        let e = read(dir.path(), "m", true).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::InvalidArg);
        assert!(e.message().contains("config.pbtxt"), "{}", e.message());
        assert!(e.message().contains("line 3"), "{}", e.message());
        assert!(e.message().contains("max_batchsize"), "{}", e.message());
    }
}
