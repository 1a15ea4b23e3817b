//! Reading a model configuration (protobuf JSON with Triton's field names) as the
//! post-processing models need it: their inputs and outputs, and their parameters.

use ferrite_driver_sdk::{Error, Result};
use serde_json::Value;

/// One configured input or output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Io {
    pub name: String,
    /// `TYPE_FP32`, `TYPE_INT64`, ...
    pub data_type: String,
    /// Without the batch dimension.
    pub dims: Vec<i64>,
    /// `label_filename` (outputs), "" when none.
    pub label_filename: String,
}

/// An integer field, written as a number or (protobuf JSON's 64-bit form) a string.
fn int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.trim().parse().ok())
}

/// The entries of the list field `key` (`input`, `output`).
pub fn ios(config: &Value, key: &str) -> Vec<Io> {
    let field = |entry: &Value, name: &str| {
        entry
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    config
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|entry| Io {
            name: field(entry, "name"),
            data_type: field(entry, "data_type"),
            dims: entry
                .get("dims")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(int).collect())
                .unwrap_or_default(),
            label_filename: field(entry, "label_filename"),
        })
        .collect()
}

/// The `string_value` of parameter `key`, if set.
pub fn parameter<'c>(config: &'c Value, key: &str) -> Option<&'c str> {
    config
        .get("parameters")?
        .get(key)?
        .get("string_value")?
        .as_str()
}

/// Boolean parameter `key` ("true"/"false", any case; `default` when unset).
pub fn bool_parameter(config: &Value, key: &str, default: bool) -> Result<bool> {
    match parameter(config, key).map(str::trim) {
        None => Ok(default),
        Some(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(s) => Err(Error::invalid_arg(format!(
            "parameter '{key}' must be \"true\" or \"false\", got '{s}'"
        ))),
    }
}

/// Positive integer parameter `key` (`default` when unset).
pub fn count_parameter(config: &Value, key: &str, default: usize) -> Result<usize> {
    match parameter(config, key).map(str::trim) {
        None => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Error::invalid_arg(format!(
                "parameter '{key}' must be a positive integer, got '{s}'"
            ))),
        },
    }
}

/// Whether the model batches (`max_batch_size > 0`).
pub fn batching(config: &Value) -> bool {
    config
        .get("max_batch_size")
        .and_then(int)
        .is_some_and(|n| n > 0)
}

/// Little-endian FP32 values of a tensor's bytes.
pub fn f32s(data: &[u8]) -> Vec<f32> {
    data.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Little-endian INT64 values of a tensor's bytes.
pub fn i64s(data: &[u8]) -> Vec<i64> {
    data.chunks_exact(8)
        .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_ios_and_parameters() {
        let c = json!({
            "max_batch_size": "8",
            "output": [{"name": "L", "data_type": "TYPE_STRING", "dims": ["3"],
                        "label_filename": "labels.txt"}],
            "parameters": {"k": {"string_value": "3"}, "softmax": {"string_value": "TRUE"},
                           "bad": {"string_value": "yes"}}
        });
        assert!(batching(&c));
        let out = ios(&c, "output");
        assert_eq!(out[0].dims, vec![3]);
        assert_eq!(out[0].label_filename, "labels.txt");
        assert!(ios(&c, "input").is_empty());
        assert_eq!(count_parameter(&c, "k", 5).unwrap(), 3);
        assert_eq!(count_parameter(&c, "missing", 5).unwrap(), 5);
        assert!(count_parameter(&c, "softmax", 5).is_err());
        assert!(bool_parameter(&c, "softmax", false).unwrap());
        assert!(bool_parameter(&c, "bad", false).is_err());
        assert_eq!(f32s(&1.5f32.to_le_bytes()), vec![1.5]);
        assert_eq!(i64s(&(-2i64).to_le_bytes()), vec![-2]);
    }
}
