//! Reading a model configuration (protobuf JSON with Triton's field names, as
//! [`ModelLoad::config`](crate::ModelLoad::config) and [`InstanceInfo::config`](crate::InstanceInfo)
//! hold it): inputs and outputs, batching, the transaction policy, and the `parameters`
//! section, typed. Or deserialize the whole of it into a struct of your own with
//! [`deserialize`].

use std::str::FromStr;

use serde_json::Value;

use crate::{Error, Result};

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

/// Whether the model is decoupled (`model_transaction_policy { decoupled: true }`): it may
/// answer a request with any number of responses (see
/// [`Response::send_partial`](crate::Response::send_partial) and
/// [`Batch::complete`](crate::Batch::complete)).
pub fn decoupled(config: &Value) -> bool {
    config
        .get("model_transaction_policy")
        .and_then(|p| p.get("decoupled"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// `max_batch_size` (0 when the model does not batch).
pub fn max_batch_size(config: &Value) -> i64 {
    config.get("max_batch_size").and_then(int).unwrap_or(0)
}

/// Parameter `key` parsed as a `T` (`None` when unset), with an error naming the parameter
/// and the text when it does not parse.
pub fn parameter_as<T: FromStr>(config: &Value, key: &str) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    match parameter(config, key) {
        None => Ok(None),
        Some(s) => s.trim().parse::<T>().map(Some).map_err(|e| {
            Error::invalid_arg(format!(
                "parameter '{key}' must be a {}, got '{s}': {e}",
                std::any::type_name::<T>()
            ))
        }),
    }
}

/// The whole configuration as a `T` of your own (`#[derive(serde::Deserialize)]`; unknown
/// fields are ignored unless `T` says otherwise).
pub fn deserialize<T: serde::de::DeserializeOwned>(config: &Value) -> Result<T> {
    T::deserialize(config).map_err(|e| {
        Error::invalid_arg(format!(
            "the model configuration does not read as {}: {e}",
            std::any::type_name::<T>()
        ))
    })
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
        assert_eq!(parameter_as::<u32>(&c, "k").unwrap(), Some(3));
        assert_eq!(parameter_as::<u32>(&c, "missing").unwrap(), None);
        let e = parameter_as::<u32>(&c, "bad").unwrap_err();
        assert!(
            e.message
                .contains("parameter 'bad' must be a u32, got 'yes'"),
            "{e}"
        );
        assert_eq!(max_batch_size(&c), 8);
        assert!(!decoupled(&c));
        assert!(decoupled(
            &json!({"model_transaction_policy": {"decoupled": true}})
        ));
    }

    #[test]
    fn deserializes_into_a_struct() {
        #[derive(Debug, serde::Deserialize)]
        struct Mine {
            name: String,
            max_batch_size: i64,
        }
        let m: Mine = deserialize(&json!({"name": "m", "max_batch_size": 4, "x": 1})).unwrap();
        assert_eq!((m.name.as_str(), m.max_batch_size), ("m", 4));
        let e = deserialize::<Mine>(&json!({"name": 3})).unwrap_err();
        assert!(e.message.contains("does not read as"), "{e}");
    }
}
