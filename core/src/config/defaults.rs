//! Triton's defaults, applied after auto-complete so `/config` shows the effective
//! configuration (Triton's `NormalizeModelConfig`).

use ferrite_proto::inference::{
    ModelOptimizationPolicy, ModelVersionPolicy, model_optimization_policy::PinnedMemoryBuffer,
    model_version_policy,
};

use super::{InstanceKind, ModelConfig};

/// The model file a platform/backend reads when the configuration names none.
pub fn default_model_filename(config: &ModelConfig) -> &'static str {
    match (config.platform.as_str(), config.backend.as_str()) {
        ("onnxruntime_onnx", _) | (_, "onnxruntime") => "model.onnx",
        ("tensorflow_savedmodel", _) => "model.savedmodel",
        ("tensorflow_graphdef", _) => "model.graphdef",
        ("tensorrt_plan", _) | (_, "tensorrt") => "model.plan",
        ("pytorch_libtorch", _) | (_, "pytorch") => "model.pt",
        (_, "python") => "model.py",
        (_, "openvino") => "model.xml",
        ("neuron_neff", _) | (_, "neuron") => "model.neff",
        _ => "",
    }
}

/// Fills in Triton's defaults. `gpu_available` decides what KIND_AUTO becomes.
pub fn normalize(config: &mut ModelConfig, gpu_available: bool) {
    // platform <-> backend for the platforms that have one backend.
    match (config.platform.as_str(), config.backend.as_str()) {
        ("onnxruntime_onnx", "") => config.backend = "onnxruntime".into(),
        ("", "onnxruntime") => config.platform = "onnxruntime_onnx".into(),
        ("neuron_neff", "") => config.backend = "neuron".into(),
        ("", "neuron") => config.platform = "neuron_neff".into(),
        _ => {}
    }
    if config.version_policy.is_none() {
        config.version_policy = Some(ModelVersionPolicy {
            policy_choice: Some(model_version_policy::PolicyChoice::Latest(
                model_version_policy::Latest { num_versions: 1 },
            )),
        });
    }
    let optimization = config
        .optimization
        .get_or_insert_with(ModelOptimizationPolicy::default);
    optimization
        .input_pinned_memory
        .get_or_insert(PinnedMemoryBuffer { enable: true });
    optimization
        .output_pinned_memory
        .get_or_insert(PinnedMemoryBuffer { enable: true });

    if let Some(ferrite_proto::inference::model_config::SchedulingChoice::DynamicBatching(db)) =
        config.scheduling_choice.as_mut()
        && db.preferred_batch_size.is_empty()
        && config.max_batch_size > 0
    {
        db.preferred_batch_size.push(config.max_batch_size);
    }

    if config.platform == "ensemble" {
        // An ensemble has no instances of its own (Triton leaves instance_group out).
        return;
    }
    if config.instance_group.is_empty() {
        config
            .instance_group
            .push(ferrite_proto::inference::ModelInstanceGroup {
                name: config.name.clone(),
                ..Default::default()
            });
    }
    let model_name = config.name.clone();
    let backend = config.backend.clone();
    for (i, group) in config.instance_group.iter_mut().enumerate() {
        if group.name.is_empty() {
            group.name = format!("{model_name}_{i}");
        }
        if group.kind == InstanceKind::Auto as i32 {
            // A NEFF runs on NeuronCores, which Triton's Inferentia flow configures as
            // KIND_MODEL (the model places itself); elsewhere AUTO means a GPU if any.
            group.kind = if backend == "neuron" {
                InstanceKind::Model as i32
            } else if gpu_available {
                InstanceKind::Gpu as i32
            } else {
                InstanceKind::Cpu as i32
            };
        }
        if group.count < 1 {
            // Triton's SetDefaultInstanceCount: two CPU instances for the backends that
            // opted in (ONNX Runtime, TensorFlow), one otherwise.
            let two = group.kind == InstanceKind::Cpu as i32
                && matches!(backend.as_str(), "onnxruntime" | "tensorflow");
            group.count = if two { 2 } else { 1 };
        }
    }
    if config.default_model_filename.is_empty() {
        config.default_model_filename = default_model_filename(config).to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ModelConfig {
        ferrite_proto::parse_model_config(text).unwrap()
    }

    #[test]
    fn defaults_like_triton() {
        let mut c = parse("name: \"simple\"\nplatform: \"onnxruntime_onnx\"\nmax_batch_size: 8\n");
        normalize(&mut c, false);
        assert_eq!(c.backend, "onnxruntime");
        assert_eq!(c.default_model_filename, "model.onnx");
        assert_eq!(c.instance_group.len(), 1);
        assert_eq!(c.instance_group[0].name, "simple");
        assert_eq!(
            c.instance_group[0].count, 2,
            "Triton's default for ONNX Runtime on CPU"
        );
        assert_eq!(c.instance_group[0].kind, InstanceKind::Cpu as i32);
        let json = super::super::to_json(&c);
        assert_eq!(
            json["version_policy"],
            serde_json::json!({"latest": {"num_versions": 1}})
        );
        assert_eq!(json["optimization"]["input_pinned_memory"]["enable"], true);
    }

    #[test]
    fn unnamed_groups_get_model_and_index() {
        let mut c = parse(
            "name: \"m\"\nbackend: \"onnxruntime\"\ninstance_group [ { count: 2, kind: KIND_CPU }, { kind: KIND_CPU } ]\n",
        );
        normalize(&mut c, false);
        assert_eq!(c.platform, "onnxruntime_onnx");
        assert_eq!(c.instance_group[0].name, "m_0");
        assert_eq!(c.instance_group[0].count, 2);
        assert_eq!(c.instance_group[1].name, "m_1");
        assert_eq!(c.instance_group[1].count, 2);

        let mut python = parse("name: \"p\"\nbackend: \"python\"\n");
        normalize(&mut python, false);
        assert_eq!(python.instance_group[0].count, 1);
    }

    #[test]
    fn dynamic_batching_prefers_max_batch_size() {
        let mut c = parse("name: \"m\"\nmax_batch_size: 8\ndynamic_batching { }\n");
        normalize(&mut c, false);
        let json = super::super::to_json(&c);
        assert_eq!(
            json["dynamic_batching"]["preferred_batch_size"],
            serde_json::json!([8])
        );
    }
}
