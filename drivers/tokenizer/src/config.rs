//! The tokenizer model's configuration, checked at load: one `TYPE_STRING` input of texts,
//! `TYPE_INT64` outputs named after what they hold (`input_ids`, `attention_mask`,
//! `token_type_ids`, any subset), and the optional `max_length` parameter.
//!
//! Shapes: with `max_batch_size > 0` the input has dims `[1]` (one text per batch row) and
//! the outputs dims `[-1]`, so a request of `B` texts gets outputs `[B, L]`; without
//! batching the input has one dimension (`[-1]` or `[n]`) and the outputs dims `[-1, -1]`.
//! `L` is the longest row of the whole `execute` batch.

use ferrite_driver_sdk::{Error, Result};
use serde_json::Value;

/// What one output holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    InputIds,
    AttentionMask,
    TokenTypeIds,
}

impl OutputKind {
    /// The output names the driver knows, with what each holds.
    pub const NAMES: [(&'static str, OutputKind); 3] = [
        ("input_ids", OutputKind::InputIds),
        ("attention_mask", OutputKind::AttentionMask),
        ("token_type_ids", OutputKind::TokenTypeIds),
    ];

    fn from_name(name: &str) -> Option<OutputKind> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, kind)| kind)
    }
}

/// The checked configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizerConfig {
    /// The model's name (for messages).
    pub model: String,
    /// The input's name.
    pub input: String,
    /// The configured outputs, in configuration order.
    pub outputs: Vec<(String, OutputKind)>,
    /// Truncation length from the `max_length` parameter (`None`: the tokenizer.json's own).
    pub max_length: Option<usize>,
}

/// Entries of a list field of the configuration (`input`, `output`).
fn entries<'c>(config: &'c Value, key: &str) -> &'c [Value] {
    config
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn str_field<'c>(entry: &'c Value, key: &str) -> &'c str {
    entry.get(key).and_then(Value::as_str).unwrap_or("")
}

/// An integer field, written as a number or (protobuf JSON's 64-bit form) a string.
fn int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.trim().parse().ok())
}

fn dims(entry: &Value) -> Vec<i64> {
    entry
        .get("dims")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(int).collect())
        .unwrap_or_default()
}

/// The `string_value` of parameter `key`, if set.
pub fn parameter<'c>(config: &'c Value, key: &str) -> Option<&'c str> {
    config
        .get("parameters")?
        .get(key)?
        .get("string_value")?
        .as_str()
}

impl TokenizerConfig {
    /// Checks the configuration (protobuf JSON) of model `model`.
    pub fn from_json(model: &str, config: &Value) -> Result<TokenizerConfig> {
        let fail = |what: String| Err(Error::invalid_arg(format!("model '{model}': {what}")));
        let batching = config
            .get("max_batch_size")
            .and_then(int)
            .is_some_and(|n| n > 0);

        let inputs = entries(config, "input");
        let [input] = inputs else {
            return fail(format!(
                "the tokenizer takes exactly one input (TYPE_STRING texts), the configuration has {}",
                inputs.len()
            ));
        };
        let name = str_field(input, "name");
        let data_type = str_field(input, "data_type");
        if data_type != "TYPE_STRING" {
            return fail(format!(
                "input '{name}' must be TYPE_STRING, the configuration says {data_type}"
            ));
        }
        let input_dims = dims(input);
        let (want_input, want_output): (&str, &[i64]) = if batching {
            ("[1] (one text per batch row)", &[-1])
        } else {
            ("one dimension", &[-1, -1])
        };
        let input_ok = if batching {
            input_dims == [1]
        } else {
            input_dims.len() == 1
        };
        if !input_ok {
            return fail(format!(
                "input '{name}' must have dims {want_input}, the configuration says {input_dims:?}"
            ));
        }

        let configured = entries(config, "output");
        if configured.is_empty() {
            return fail(format!(
                "the configuration has no outputs; name one or more of {}",
                known_names()
            ));
        }
        let mut outputs = Vec::with_capacity(configured.len());
        for output in configured {
            let out = str_field(output, "name");
            let Some(kind) = OutputKind::from_name(out) else {
                return fail(format!(
                    "unknown output '{out}': the tokenizer produces {}",
                    known_names()
                ));
            };
            let data_type = str_field(output, "data_type");
            if data_type != "TYPE_INT64" {
                return fail(format!(
                    "output '{out}' must be TYPE_INT64, the configuration says {data_type}"
                ));
            }
            let out_dims = dims(output);
            if out_dims != want_output {
                return fail(format!(
                    "output '{out}' must have dims {want_output:?} (padded to the longest text of each batch), the configuration says {out_dims:?}"
                ));
            }
            outputs.push((out.to_string(), kind));
        }

        let max_length = match parameter(config, "max_length") {
            None => None,
            Some(text) => match text.trim().parse::<usize>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return fail(format!(
                        "parameter 'max_length' must be a positive integer, got '{text}'"
                    ));
                }
            },
        };

        Ok(TokenizerConfig {
            model: model.to_string(),
            input: name.to_string(),
            outputs,
            max_length,
        })
    }
}

fn known_names() -> String {
    OutputKind::NAMES
        .iter()
        .map(|(n, _)| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(outputs: Value) -> Value {
        json!({
            "name": "tok",
            "backend": "tokenizer",
            "max_batch_size": 8,
            "input": [{"name": "TEXT", "data_type": "TYPE_STRING", "dims": [1]}],
            "output": outputs,
            "parameters": {"max_length": {"string_value": "16"}},
        })
    }

    fn int64(name: &str) -> Value {
        json!({"name": name, "data_type": "TYPE_INT64", "dims": ["-1"]})
    }

    #[test]
    fn reads_a_good_configuration() {
        let c = TokenizerConfig::from_json(
            "tok",
            &config(json!([int64("attention_mask"), int64("input_ids")])),
        )
        .unwrap();
        assert_eq!(c.input, "TEXT");
        assert_eq!(
            c.outputs,
            vec![
                ("attention_mask".to_string(), OutputKind::AttentionMask),
                ("input_ids".to_string(), OutputKind::InputIds)
            ]
        );
        assert_eq!(c.max_length, Some(16));
    }

    #[test]
    fn refuses_bad_configurations() {
        let err = |c: Value| TokenizerConfig::from_json("tok", &c).unwrap_err();

        let e = err(config(json!([int64("logits")])));
        assert!(e.message.contains("unknown output 'logits'"), "{e}");
        assert!(e.message.contains("model 'tok'"), "{e}");

        let e = err(config(json!([
            {"name": "input_ids", "data_type": "TYPE_INT32", "dims": [-1]}
        ])));
        assert!(e.message.contains("must be TYPE_INT64"), "{e}");

        let e = err(config(json!([
            {"name": "input_ids", "data_type": "TYPE_INT64", "dims": [16]}
        ])));
        assert!(e.message.contains("dims [-1]"), "{e}");

        let mut c = config(json!([int64("input_ids")]));
        c["input"][0]["data_type"] = json!("TYPE_INT32");
        assert!(err(c).message.contains("must be TYPE_STRING"));

        let mut c = config(json!([int64("input_ids")]));
        c["input"][0]["dims"] = json!([2]);
        assert!(err(c).message.contains("dims [1]"));

        let mut c = config(json!([int64("input_ids")]));
        c["parameters"]["max_length"]["string_value"] = json!("zero");
        assert!(err(c).message.contains("'max_length'"));

        assert!(err(config(json!([]))).message.contains("no outputs"));
    }

    #[test]
    fn unbatched_models_have_two_dimensional_outputs() {
        let mut c = config(json!([
            {"name": "input_ids", "data_type": "TYPE_INT64", "dims": [-1, -1]}
        ]));
        c["max_batch_size"] = json!(0);
        c["input"][0]["dims"] = json!([-1]);
        assert!(TokenizerConfig::from_json("tok", &c).is_ok());
    }
}
