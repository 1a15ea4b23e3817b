//! Which GPUs a model's instances go on: the `gpus` of each KIND_GPU instance group, every GPU
//! when the group names none (Triton's rule), and a clear refusal for a GPU that is not here.

use ferrite_driver_sdk::{Error, Result};
use serde_json::Value;

/// A group runs on GPUs when it says KIND_GPU, or says nothing (KIND_AUTO), since this driver
/// is only chosen for a model when GPUs are available.
fn on_gpu(group: &Value) -> bool {
    match group.get("kind") {
        None | Some(Value::Null) => true,
        Some(Value::String(kind)) => kind == "KIND_GPU" || kind == "KIND_AUTO",
        Some(Value::Number(n)) => matches!(n.as_i64(), Some(0) | Some(1)),
        Some(_) => false,
    }
}

/// Fills in `gpus` (every GPU, `0..gpu_count`) for GPU groups that list none, and checks the
/// listed ones exist. Returns whether the configuration changed. `describe` lists the GPUs
/// for the error message.
pub fn place(config: &mut Value, gpu_count: usize, describe: &str) -> Result<bool> {
    let model = config
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut changed = false;
    if let Some(object) = config.as_object_mut() {
        let none = object
            .get("instance_group")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if none {
            // Triton's default group where GPUs are available: one instance on each GPU.
            object.insert(
                "instance_group".into(),
                serde_json::json!([{ "kind": "KIND_GPU" }]),
            );
            changed = true;
        }
    }
    let Some(groups) = config
        .get_mut("instance_group")
        .and_then(Value::as_array_mut)
    else {
        return Ok(changed);
    };
    for (i, group) in groups.iter_mut().enumerate() {
        if !on_gpu(group) {
            continue;
        }
        let name = group
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map_or_else(|| format!("{model}_{i}"), str::to_string);
        let listed: Vec<i64> = group
            .get("gpus")
            .and_then(Value::as_array)
            .map(|g| g.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        if listed.is_empty() {
            group["gpus"] = Value::from((0..gpu_count as i64).collect::<Vec<_>>());
            changed = true;
            continue;
        }
        if let Some(bad) = listed.iter().find(|&&g| g < 0 || g as usize >= gpu_count) {
            return Err(Error::invalid_arg(format!(
                "instance group {name} of model {model} specifies invalid or unsupported gpu id {bad}: this machine has {gpu_count} GPU{} ({describe})",
                if gpu_count == 1 { "" } else { "s" }
            )));
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_gpu_when_none_listed() {
        let mut config = json!({
            "name": "m",
            "instance_group": [
                {"name": "g", "kind": "KIND_GPU", "count": 2},
                {"name": "c", "kind": "KIND_CPU", "count": 1},
                {"name": "a", "count": 1},
            ]
        });
        assert!(place(&mut config, 3, "").unwrap());
        assert_eq!(config["instance_group"][0]["gpus"], json!([0, 1, 2]));
        assert_eq!(config["instance_group"][1].get("gpus"), None);
        assert_eq!(config["instance_group"][2]["gpus"], json!([0, 1, 2]));
    }

    #[test]
    fn listed_gpus_kept_and_checked() {
        let mut config = json!({
            "name": "m",
            "instance_group": [{"name": "g", "kind": "KIND_GPU", "gpus": [1]}]
        });
        assert!(!place(&mut config, 2, "").unwrap());
        assert_eq!(config["instance_group"][0]["gpus"], json!([1]));

        let mut config = json!({
            "name": "m",
            "instance_group": [{"kind": "KIND_GPU", "gpus": [0, 3]}]
        });
        let e = place(&mut config, 1, "GPU 0 NVIDIA H100").unwrap_err();
        assert_eq!(e.code, ferrite_driver_sdk::ErrorCode::InvalidArg);
        assert_eq!(
            e.message,
            "instance group m_0 of model m specifies invalid or unsupported gpu id 3: this machine has 1 GPU (GPU 0 NVIDIA H100)"
        );
    }

    #[test]
    fn no_groups_one_instance_on_every_gpu() {
        let mut config = json!({"name": "m"});
        assert!(place(&mut config, 2, "").unwrap());
        assert_eq!(
            config["instance_group"],
            json!([{"kind": "KIND_GPU", "gpus": [0, 1]}])
        );
    }
}
