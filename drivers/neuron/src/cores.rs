//! Which NeuronCores an instance runs on, as Triton's Inferentia flow configures it: the
//! model's `NEURON_CORE_START_INDEX` / `NEURON_CORE_END_INDEX` parameters name a range of
//! visible cores (both ends included; every visible core when absent), and the instances of
//! the model's KIND_MODEL group share it equally: instance `i` of `n` gets the `i`-th block of
//! `floor(cores / n)` cores (cores left over stay unused, as in Triton's generated model).

use std::ops::Range;

use ferrite_driver_sdk::{Error, Result, config};
use serde_json::Value;

pub const START_PARAMETER: &str = "NEURON_CORE_START_INDEX";
pub const END_PARAMETER: &str = "NEURON_CORE_END_INDEX";

/// The cores (visible-core indices, from 0) of instance `index` of `instances`, given the
/// configured range (`start`/`end`, inclusive, `None` when not set) and the number of cores
/// visible to this process.
pub fn instance_cores(
    start: Option<u32>,
    end: Option<u32>,
    visible: u32,
    instances: u32,
    index: u32,
) -> std::result::Result<Range<u32>, String> {
    if visible == 0 {
        return Err("no NeuronCores are visible to this process".into());
    }
    let start = start.unwrap_or(0);
    let end = end.unwrap_or(visible - 1);
    if end < start {
        return Err(format!(
            "{END_PARAMETER} ({end}) is below {START_PARAMETER} ({start})"
        ));
    }
    if end >= visible {
        return Err(format!(
            "the core range {start}..={end} reaches beyond the {visible} NeuronCore(s) visible to this process (0..={})",
            visible - 1
        ));
    }
    let cores = end - start + 1;
    if instances == 0 || index >= instances {
        return Err(format!("instance {index} of {instances}"));
    }
    let per_instance = cores / instances;
    if per_instance == 0 {
        return Err(format!(
            "{instances} instances cannot share the {cores} NeuronCore(s) {start}..={end}: each instance needs at least one"
        ));
    }
    let first = start + index * per_instance;
    Ok(first..first + per_instance)
}

/// The configured range: the two parameters, each a non-negative integer when set.
pub fn configured_range(config: &Value) -> Result<(Option<u32>, Option<u32>)> {
    Ok((
        config::parameter_as::<u32>(config, START_PARAMETER)?,
        config::parameter_as::<u32>(config, END_PARAMETER)?,
    ))
}

/// The instance's index among all of the model's instances and their number, from its name
/// (`<group>_<index>`) and the configuration's instance groups (in order).
pub fn instance_index(config: &Value, instance_name: &str) -> Result<(u32, u32)> {
    let groups = config
        .get("instance_group")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let count = |g: &Value| {
        g.get("count")
            .and_then(|c| c.as_u64().or_else(|| c.as_str()?.parse().ok()))
            .unwrap_or(1) as u32
    };
    let total: u32 = groups.iter().map(count).sum();
    let mut offset = 0;
    for g in &groups {
        let name = g.get("name").and_then(Value::as_str).unwrap_or("");
        if let Some(i) = instance_name
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('_'))
            .and_then(|i| i.parse::<u32>().ok())
            && i < count(g)
        {
            return Ok((offset + i, total.max(1)));
        }
        offset += count(g);
    }
    Err(Error::internal(format!(
        "instance '{instance_name}' belongs to none of the model's instance groups"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn instances_share_the_range_equally() {
        // Triton's example: cores 0..=7, 4 instances: 2 cores each.
        let ranges: Vec<_> = (0..4)
            .map(|i| instance_cores(Some(0), Some(7), 16, 4, i).unwrap())
            .collect();
        assert_eq!(ranges, vec![0..2, 2..4, 4..6, 6..8]);
        // Left-over cores stay unused: 5 cores, 2 instances.
        assert_eq!(instance_cores(Some(1), Some(5), 8, 2, 1).unwrap(), 3..5);
    }

    #[test]
    fn without_parameters_every_visible_core_is_used() {
        assert_eq!(instance_cores(None, None, 16, 1, 0).unwrap(), 0..16);
        assert_eq!(instance_cores(None, None, 4, 2, 1).unwrap(), 2..4);
        assert_eq!(instance_cores(Some(2), None, 4, 1, 0).unwrap(), 2..4);
    }

    #[test]
    fn bad_ranges_are_explained() {
        let e = instance_cores(Some(0), Some(15), 4, 1, 0).unwrap_err();
        assert!(
            e.contains("0..=15 reaches beyond the 4 NeuronCore(s) visible"),
            "{e}"
        );
        let e = instance_cores(Some(3), Some(1), 4, 1, 0).unwrap_err();
        assert!(
            e.contains("NEURON_CORE_END_INDEX (1) is below NEURON_CORE_START_INDEX (3)"),
            "{e}"
        );
        let e = instance_cores(None, None, 2, 3, 0).unwrap_err();
        assert!(
            e.contains("3 instances cannot share the 2 NeuronCore(s)"),
            "{e}"
        );
        let e = instance_cores(None, None, 0, 1, 0).unwrap_err();
        assert!(e.contains("no NeuronCores are visible"), "{e}");
    }

    #[test]
    fn the_instance_index_counts_across_groups() {
        let config = json!({"instance_group": [
            {"name": "neuron", "kind": "KIND_MODEL", "count": 2},
            {"name": "more", "kind": "KIND_MODEL", "count": 3},
        ]});
        assert_eq!(instance_index(&config, "neuron_1").unwrap(), (1, 5));
        assert_eq!(instance_index(&config, "more_0").unwrap(), (2, 5));
        assert_eq!(instance_index(&config, "more_2").unwrap(), (4, 5));
        assert!(instance_index(&config, "other_0").is_err());
        assert!(instance_index(&config, "neuron_2").is_err());
    }

    #[test]
    fn the_range_parameters_are_read_and_checked() {
        let config = json!({"parameters": {
            "NEURON_CORE_START_INDEX": {"string_value": "2"},
            "NEURON_CORE_END_INDEX": {"string_value": "5"},
        }});
        assert_eq!(configured_range(&config).unwrap(), (Some(2), Some(5)));
        assert_eq!(configured_range(&json!({})).unwrap(), (None, None));
        let bad = json!({"parameters": {"NEURON_CORE_START_INDEX": {"string_value": "-1"}}});
        let e = configured_range(&bad).unwrap_err();
        assert!(e.message.contains("NEURON_CORE_START_INDEX"), "{e}");
    }
}
