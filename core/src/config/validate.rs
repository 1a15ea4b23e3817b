//! Validation of a (normalized) model configuration: every problem is reported, each with the
//! path of the field it concerns (`input[1].dims[0]`).

use std::collections::HashSet;
use std::fmt;

use ferrite_proto::inference::model_config::SchedulingChoice;

use super::{InstanceKind, ModelConfig, PolicyChoice, datatype};

/// One problem in a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The field, e.g. `input[0].data_type`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Default)]
struct Issues(Vec<ConfigIssue>);

impl Issues {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            message: message.into(),
        });
    }

    fn dims(&mut self, path: &str, dims: &[i64]) {
        for (i, &d) in dims.iter().enumerate() {
            if d == 0 || d < -1 {
                self.add(
                    format!("{path}.dims[{i}]"),
                    format!("dimension must be -1 (variable) or positive, got {d}"),
                );
            }
        }
    }
}

/// Checks a configuration after defaults were applied. Empty when it is valid.
pub fn validate(config: &ModelConfig) -> Vec<ConfigIssue> {
    let mut issues = Issues::default();

    if config.name.is_empty() {
        issues.add("name", "must not be empty");
    }
    if config.max_batch_size < 0 {
        issues.add(
            "max_batch_size",
            format!(
                "must be 0 (no batching) or positive, got {}",
                config.max_batch_size
            ),
        );
    }
    if config.platform.is_empty() && config.backend.is_empty() {
        issues.add(
            "backend",
            "neither 'platform' nor 'backend' is set, so no driver can serve the model",
        );
    }

    let mut names = HashSet::new();
    for (i, input) in config.input.iter().enumerate() {
        let path = format!("input[{i}]");
        if input.name.is_empty() {
            issues.add(format!("{path}.name"), "must not be empty");
        } else if !names.insert(input.name.as_str()) {
            issues.add(
                format!("{path}.name"),
                format!("input '{}' is declared twice", input.name),
            );
        }
        if datatype(input.data_type).is_none() {
            issues.add(
                format!("{path}.data_type"),
                format!("input '{}' has no valid data type", input.name),
            );
        }
        issues.dims(&path, &input.dims);
    }
    let mut names = HashSet::new();
    for (i, output) in config.output.iter().enumerate() {
        let path = format!("output[{i}]");
        if output.name.is_empty() {
            issues.add(format!("{path}.name"), "must not be empty");
        } else if !names.insert(output.name.as_str()) {
            issues.add(
                format!("{path}.name"),
                format!("output '{}' is declared twice", output.name),
            );
        }
        if datatype(output.data_type).is_none() {
            issues.add(
                format!("{path}.data_type"),
                format!("output '{}' has no valid data type", output.name),
            );
        }
        issues.dims(&path, &output.dims);
    }

    issues.0.extend(reshape_issues(config));
    batch_io(config, &mut issues);

    match config
        .version_policy
        .as_ref()
        .and_then(|p| p.policy_choice.as_ref())
    {
        Some(PolicyChoice::Latest(latest)) if latest.num_versions < 1 => issues.add(
            "version_policy.latest.num_versions",
            format!("must be at least 1, got {}", latest.num_versions),
        ),
        Some(PolicyChoice::Specific(specific)) if specific.versions.is_empty() => issues.add(
            "version_policy.specific.versions",
            "must list at least one version",
        ),
        _ => {}
    }

    for (i, group) in config.instance_group.iter().enumerate() {
        let path = format!("instance_group[{i}]");
        if group.count < 1 {
            issues.add(
                format!("{path}.count"),
                format!("must be at least 1, got {}", group.count),
            );
        }
        if InstanceKind::try_from(group.kind).is_err() {
            issues.add(
                format!("{path}.kind"),
                format!("unknown kind {}", group.kind),
            );
        }
        if group.kind == InstanceKind::Cpu as i32 && !group.gpus.is_empty() {
            issues.add(
                format!("{path}.gpus"),
                "instances of kind KIND_CPU cannot name GPUs",
            );
        }
        for (j, &gpu) in group.gpus.iter().enumerate() {
            if gpu < 0 {
                issues.add(
                    format!("{path}.gpus[{j}]"),
                    format!("GPU ids are not negative, got {gpu}"),
                );
            }
        }
    }

    if let Some(SchedulingChoice::DynamicBatching(db)) = &config.scheduling_choice {
        if config.max_batch_size == 0 {
            issues.add(
                "dynamic_batching",
                "dynamic batching needs max_batch_size > 0",
            );
        }
        for (i, &size) in db.preferred_batch_size.iter().enumerate() {
            if size < 1 || (config.max_batch_size > 0 && size > config.max_batch_size) {
                issues.add(
                    format!("dynamic_batching.preferred_batch_size[{i}]"),
                    format!(
                        "must be between 1 and max_batch_size ({}), got {size}",
                        config.max_batch_size
                    ),
                );
            }
        }
    }
    issues.0
}

/// Triton's `ValidateBatchIO`, with its texts: each batch input and output names one source
/// input of the model, batch inputs are INT32 or FP32, batch outputs target outputs of the
/// model, each once.
fn batch_io(config: &ModelConfig, issues: &mut Issues) {
    use ferrite_proto::inference::{DataType as D, batch_input, batch_output};
    let is_input = |name: &str| config.input.iter().any(|i| i.name == name);
    let is_output = |name: &str| config.output.iter().any(|o| o.name == name);
    for (i, b) in config.batch_input.iter().enumerate() {
        let path = format!("batch_input[{i}]");
        match batch_input::Kind::try_from(b.kind) {
            Ok(kind) if b.source_input.len() != 1 => issues.add(
                &path,
                format!(
                    "batch input kind '{}' expects 1 source input, got {}",
                    kind.as_str_name(),
                    b.source_input.len()
                ),
            ),
            Ok(_) => {}
            Err(_) => issues.add(&path, format!("unknown batch input kind '{}'", b.kind)),
        }
        if b.data_type != D::TypeInt32 as i32 && b.data_type != D::TypeFp32 as i32 {
            issues.add(
                &path,
                "batch input data type must be TYPE_INT32 or TYPE_FP32",
            );
        }
        for source in b.source_input.iter().filter(|s| !is_input(s)) {
            issues.add(&path, format!("unknown source input name '{source}'"));
        }
    }
    for (i, b) in config.batch_output.iter().enumerate() {
        let path = format!("batch_output[{i}]");
        match batch_output::Kind::try_from(b.kind) {
            Ok(kind) if b.source_input.len() != 1 => issues.add(
                &path,
                format!(
                    "batch output kind '{}' expects 1 source input, got {}",
                    kind.as_str_name(),
                    b.source_input.len()
                ),
            ),
            Ok(_) => {}
            Err(_) => issues.add(&path, format!("unknown batch output kind '{}'", b.kind)),
        }
        for source in b.source_input.iter().filter(|s| !is_input(s)) {
            issues.add(&path, format!("unknown source input name '{source}'"));
        }
        let mut seen = HashSet::new();
        for target in &b.target_name {
            if !is_output(target) {
                issues.add(&path, format!("unknown target output name '{target}'"));
            }
            if !seen.insert(target.as_str()) {
                issues.add(
                    &path,
                    format!("target output name '{target}' can only be specified once"),
                );
            }
        }
    }
}

/// Triton's checks of every `reshape` against its tensor's `dims`. They need nothing a
/// driver's auto-complete adds (a tensor with a reshape has its dims), so the core runs them
/// before a driver sees the configuration too, as Triton validates before its backend does.
pub fn reshape_issues(config: &ModelConfig) -> Vec<ConfigIssue> {
    let mut issues = Issues::default();
    let mut check = |kind: &str, i: usize, name: &str, dims: &[i64], shape: Option<&[i64]>| {
        if let Some(shape) = shape
            && let Err(message) = crate::reshape::check(
                &format!("model {kind} "),
                name,
                dims,
                shape,
                config.max_batch_size,
            )
        {
            issues.add(format!("{kind}[{i}].reshape"), message);
        }
    };
    for (i, t) in config.input.iter().enumerate() {
        let shape = t.reshape.as_ref().map(|r| r.shape.as_slice());
        check("input", i, &t.name, &t.dims, shape);
    }
    for (i, t) in config.output.iter().enumerate() {
        let shape = t.reshape.as_ref().map(|r| r.shape.as_slice());
        check("output", i, &t.name, &t.dims, shape);
    }
    issues.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_issue_with_its_path() {
        let mut c = ferrite_proto::parse_model_config(
            r#"name: "m"
               platform: "onnxruntime_onnx"
               max_batch_size: 4
               input [ { name: "A" data_type: TYPE_FP32 dims: [ 0, -2 ] },
                       { name: "A" data_type: TYPE_INVALID dims: [ 1 ] } ]
               output [ { name: "B" data_type: TYPE_FP32 dims: [ -1 ] } ]
               instance_group [ { count: 0 kind: KIND_CPU gpus: [ 0 ] } ]
               dynamic_batching { preferred_batch_size: [ 8 ] }"#,
        )
        .unwrap();
        c.version_policy = None;
        let paths: Vec<String> = validate(&c).into_iter().map(|i| i.path).collect();
        assert_eq!(
            paths,
            vec![
                "input[0].dims[0]",
                "input[0].dims[1]",
                "input[1].name",
                "input[1].data_type",
                "instance_group[0].count",
                "instance_group[0].gpus",
                "dynamic_batching.preferred_batch_size[0]",
            ]
        );
    }

    #[test]
    fn reshapes_are_checked_against_their_dims() {
        let mut c = ferrite_proto::parse_model_config(
            r#"name: "m" platform: "onnxruntime_onnx" max_batch_size: 0
               input [ { name: "A" data_type: TYPE_FP32 dims: [ 3, 4 ] reshape { shape: [ 12 ] } },
                       { name: "B" data_type: TYPE_FP32 dims: [ 3, 4 ] reshape { shape: [ 13 ] } } ]
               output [ { name: "C" data_type: TYPE_FP32 dims: [ 1 ] reshape { shape: [ ] } } ]"#,
        )
        .unwrap();
        super::super::normalize(&mut c, false);
        let issues = validate(&c);
        assert_eq!(issues, reshape_issues(&c));
        assert_eq!(
            issues.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![
                "input[1].reshape: model input 'B' has different size for dims and reshape",
                "output[0].reshape: model output 'C' cannot have empty reshape for non-batching model as scalar tensors are not supported",
            ]
        );
    }

    #[test]
    fn batch_inputs_and_outputs_are_checked_as_triton_does() {
        let mut c = ferrite_proto::parse_model_config(
            r#"name: "m" platform: "onnxruntime_onnx" max_batch_size: 8
               input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]
               output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
               batch_input [
                 { kind: BATCH_ACCUMULATED_ELEMENT_COUNT target_name: "INDEX" data_type: TYPE_FP32 source_input: "X" },
                 { kind: BATCH_ELEMENT_COUNT target_name: "N" data_type: TYPE_INT64 source_input: [ "X", "Z" ] } ]
               batch_output [
                 { kind: BATCH_SCATTER_WITH_INPUT_SHAPE target_name: [ "Y", "Y", "W" ] source_input: "X" } ]"#,
        )
        .unwrap();
        super::super::normalize(&mut c, false);
        let texts: Vec<String> = validate(&c).iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            vec![
                "batch_input[1]: batch input kind 'BATCH_ELEMENT_COUNT' expects 1 source input, got 2",
                "batch_input[1]: batch input data type must be TYPE_INT32 or TYPE_FP32",
                "batch_input[1]: unknown source input name 'Z'",
                "batch_output[0]: target output name 'Y' can only be specified once",
                "batch_output[0]: unknown target output name 'W'",
            ]
        );
    }

    #[test]
    fn a_good_config_has_no_issues() {
        let mut c = ferrite_proto::parse_model_config(
            r#"name: "simple" platform: "onnxruntime_onnx" max_batch_size: 8
               input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] } ]
               output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] } ]"#,
        )
        .unwrap();
        super::super::normalize(&mut c, false);
        assert_eq!(validate(&c), vec![]);
    }
}
