//! The model configuration against the ONNX model itself, as Triton's ONNX Runtime backend
//! does it: auto-complete fills in what the configuration leaves out (inputs, outputs with
//! their types and dims and, for a configuration that says nothing about batching,
//! `max_batch_size` when every input and output has a variable first dimension); validation
//! checks that what it says matches the model.

use ferrite_driver_sdk::{Error, Result};
use ort::session::Session;
use ort::value::{Outlet, ValueType};
use serde_json::{Value, json};

use crate::types::from_ort;

/// `max_batch_size` given to a model that can batch and whose configuration does not say
/// (Triton's `default-max-batch-size`).
pub const DEFAULT_MAX_BATCH_SIZE: i64 = 4;

struct Io {
    name: String,
    data_type: &'static str,
    dims: Vec<i64>,
}

fn describe(outlet: &Outlet, kind: &str) -> Result<Io> {
    let ValueType::Tensor { ty, shape, .. } = outlet.dtype() else {
        return Err(Error::unsupported(format!(
            "ONNX {kind} '{}' is not a tensor ({:?}); only tensors are supported",
            outlet.name(),
            outlet.dtype()
        )));
    };
    let dt = from_ort(*ty).ok_or_else(|| {
        Error::unsupported(format!(
            "ONNX {kind} '{}' has element type {ty:?}, which has no Triton data type",
            outlet.name()
        ))
    })?;
    Ok(Io {
        name: outlet.name().to_string(),
        data_type: config_type_name(dt),
        dims: shape.iter().copied().collect(),
    })
}

fn config_type_name(d: ferrite_driver_sdk::DataType) -> &'static str {
    d.config_name()
}

fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::String(s)) => s.is_empty() || s == "TYPE_INVALID",
        _ => false,
    }
}

fn model_io(session: &Session) -> Result<(Vec<Io>, Vec<Io>)> {
    let inputs = session
        .inputs()
        .iter()
        .map(|o| describe(o, "input"))
        .collect::<Result<_>>()?;
    let outputs = session
        .outputs()
        .iter()
        .map(|o| describe(o, "output"))
        .collect::<Result<_>>()?;
    Ok((inputs, outputs))
}

/// Completes `config` (protobuf JSON) from the session's inputs and outputs.
pub fn auto_complete(config: &Value, session: &Session) -> Result<Value> {
    let (inputs, outputs) = model_io(session)?;
    complete(config, &inputs, &outputs)
}

/// Checks that `config` (protobuf JSON) describes the session's model: every model input is
/// configured and every configured input and output exists in the model, with the model's
/// data type and a shape the model accepts.
pub fn validate(model: &str, config: &Value, session: &Session) -> Result<()> {
    let (inputs, outputs) = model_io(session)?;
    check(model, config, &inputs, &outputs)
}

/// The tensors the server supplies or keeps for a sequence model (not configured as inputs
/// and outputs): control inputs and implicit state (inputs, outputs).
fn sequence_io(config: &Value) -> (Vec<String>, Vec<String>) {
    let Some(sb) = config.get("sequence_batching").filter(|v| !v.is_null()) else {
        return (Vec::new(), Vec::new());
    };
    let names = |list: &str, key: &str| -> Vec<String> {
        sb.get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.get(key).and_then(Value::as_str).map(str::to_string))
            .collect()
    };
    let mut inputs = names("control_input", "name");
    inputs.extend(names("state", "input_name"));
    (inputs, names("state", "output_name"))
}

fn entries<'c>(config: &'c Value, key: &str) -> Vec<&'c Value> {
    config
        .get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn check(model: &str, config: &Value, inputs: &[Io], outputs: &[Io]) -> Result<()> {
    let max_batch = config
        .get("max_batch_size")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let configured_inputs = entries(config, "input");
    let configured: Vec<&str> = configured_inputs
        .iter()
        .filter_map(|e| e.get("name").and_then(Value::as_str))
        .collect();
    let (server_inputs, _) = sequence_io(config);
    let missing: Vec<&str> = inputs
        .iter()
        .map(|io| io.name.as_str())
        .filter(|n| !configured.contains(n) && !server_inputs.iter().any(|s| s == n))
        .collect();
    if !missing.is_empty() {
        return Err(Error::invalid_arg(format!(
            "unable to load model '{model}', configuration expects {} inputs, model provides {} (inputs missing from the configuration: {})",
            configured.len(),
            inputs.len(),
            missing.join(", ")
        )));
    }
    for (key, ios, kind) in [("input", inputs, "input"), ("output", outputs, "output")] {
        for entry in entries(config, key) {
            let name = entry.get("name").and_then(Value::as_str).unwrap_or("");
            let Some(io) = ios.iter().find(|io| io.name == name) else {
                let allowed: Vec<&str> = ios.iter().map(|io| io.name.as_str()).collect();
                return Err(Error::invalid_arg(format!(
                    "unexpected inference {kind} '{name}' in the configuration of model '{model}', allowed {kind}s are: {}",
                    allowed.join(", ")
                )));
            };
            let data_type = entry
                .get("data_type")
                .and_then(Value::as_str)
                .unwrap_or("TYPE_INVALID");
            if data_type != io.data_type {
                return Err(Error::invalid_arg(format!(
                    "unexpected datatype {data_type} for inference {kind} '{name}' of model '{model}', expecting {}",
                    io.data_type
                )));
            }
            if entry.get("reshape").is_some_and(|r| !r.is_null()) {
                continue;
            }
            let mut shape: Vec<i64> = Vec::new();
            if max_batch > 0 {
                shape.push(-1);
            }
            shape.extend(
                entry
                    .get("dims")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_i64),
            );
            let fits = shape.len() == io.dims.len()
                && shape.iter().zip(&io.dims).all(|(&c, &m)| m == -1 || c == m);
            if !fits {
                return Err(Error::invalid_arg(format!(
                    "model '{model}', tensor '{name}': the model expects {} dimensions (shape {:?}) but the model configuration specifies {} dimensions ({}shape {:?})",
                    io.dims.len(),
                    io.dims,
                    shape.len(),
                    if max_batch > 0 {
                        "an initial batch dimension because max_batch_size > 0 followed by the explicit tensor shape, making complete "
                    } else {
                        ""
                    },
                    shape
                )));
            }
        }
    }
    Ok(())
}

fn complete(config: &Value, inputs: &[Io], outputs: &[Io]) -> Result<Value> {
    let mut config = config.clone();
    let obj = config
        .as_object_mut()
        .ok_or_else(|| Error::internal("model configuration is not a JSON object"))?;

    let declared_io = !is_empty(obj.get("input")) || !is_empty(obj.get("output"));
    let mut max_batch = obj
        .get("max_batch_size")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let all_variable_first = inputs
        .iter()
        .chain(outputs)
        .all(|io| io.dims.first() == Some(&-1));
    if max_batch == 0
        && !declared_io
        && all_variable_first
        && !(inputs.is_empty() && outputs.is_empty())
    {
        max_batch = DEFAULT_MAX_BATCH_SIZE;
        obj.insert("max_batch_size".into(), json!(max_batch));
    }
    let batching = max_batch > 0;
    let (server_inputs, state_outputs) = sequence_io(&Value::Object(obj.clone()));

    for (key, ios, kind) in [("input", inputs, "input"), ("output", outputs, "output")] {
        let skip = if key == "input" {
            &server_inputs
        } else {
            &state_outputs
        };
        let list = obj
            .entry(key)
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .ok_or_else(|| Error::internal(format!("'{key}' is not a list")))?;
        for io in ios.iter().filter(|io| !skip.contains(&io.name)) {
            let dims: Vec<i64> = if batching {
                if io.dims.is_empty() {
                    return Err(Error::invalid_arg(format!(
                        "model {kind} '{}' has no dimensions, so it cannot have a batch dimension (max_batch_size {max_batch})",
                        io.name
                    )));
                }
                io.dims[1..].to_vec()
            } else {
                io.dims.clone()
            };
            match list
                .iter_mut()
                .find(|e| e.get("name").and_then(Value::as_str) == Some(io.name.as_str()))
            {
                Some(entry) => {
                    if is_empty(entry.get("data_type")) {
                        entry["data_type"] = json!(io.data_type);
                    }
                    if is_empty(entry.get("dims"))
                        && entry.get("reshape").is_none()
                        && !dims.is_empty()
                    {
                        entry["dims"] = json!(dims);
                    }
                }
                None => list.push(json!({
                    "name": io.name,
                    "data_type": io.data_type,
                    "dims": dims,
                })),
            }
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(name: &str, t: &'static str, dims: &[i64]) -> Io {
        Io {
            name: name.into(),
            data_type: t,
            dims: dims.to_vec(),
        }
    }

    #[test]
    fn fills_inputs_and_outputs_without_batch_dim() {
        let cfg = json!({"name": "m", "max_batch_size": 8, "input": [], "output": []});
        let out = complete(
            &cfg,
            &[io("INPUT0", "TYPE_STRING", &[-1, -1])],
            &[io("OUTPUT0", "TYPE_STRING", &[-1, -1])],
        )
        .unwrap();
        assert_eq!(
            out["input"],
            json!([{"name": "INPUT0", "data_type": "TYPE_STRING", "dims": [-1]}])
        );
        assert_eq!(out["output"][0]["dims"], json!([-1]));
        assert_eq!(out["max_batch_size"], 8);
    }

    #[test]
    fn picks_default_max_batch_size_only_when_nothing_is_said() {
        let cfg = json!({"name": "m", "max_batch_size": 0, "input": [], "output": []});
        let out = complete(
            &cfg,
            &[io("x", "TYPE_FP32", &[-1, 3])],
            &[io("y", "TYPE_FP32", &[-1])],
        )
        .unwrap();
        assert_eq!(out["max_batch_size"], DEFAULT_MAX_BATCH_SIZE);
        assert_eq!(out["input"][0]["dims"], json!([3]));
        // A fixed first dimension means no batching.
        let out = complete(
            &cfg,
            &[io("x", "TYPE_FP32", &[1, 3])],
            &[io("y", "TYPE_FP32", &[1])],
        )
        .unwrap();
        assert_eq!(out["max_batch_size"], 0);
        assert_eq!(out["input"][0]["dims"], json!([1, 3]));
    }

    #[test]
    fn validation_names_what_does_not_match() {
        let ins = [io("x", "TYPE_FP32", &[-1, 3])];
        let outs = [io("y", "TYPE_FP32", &[-1])];
        let ok = json!({"max_batch_size": 4,
            "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [3]}],
            "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": []}]});
        assert!(check("m", &ok, &ins, &outs).is_ok());
        let cases = [
            (
                json!({"input": [], "output": []}),
                "configuration expects 0 inputs, model provides 1",
            ),
            (
                json!({"max_batch_size": 4, "input": [{"name": "x", "data_type": "TYPE_INT32", "dims": [3]}]}),
                "unexpected datatype TYPE_INT32 for inference input 'x'",
            ),
            (
                json!({"max_batch_size": 4, "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [4]}]}),
                "tensor 'x': the model expects 2 dimensions",
            ),
            (
                json!({"input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [1, 3]}],
                    "output": [{"name": "z", "data_type": "TYPE_FP32", "dims": [1]}]}),
                "unexpected inference output 'z'",
            ),
        ];
        for (config, want) in cases {
            let e = check("m", &config, &ins, &outs).unwrap_err();
            assert!(
                e.message.contains(want),
                "{} does not contain {want}",
                e.message
            );
        }
    }

    #[test]
    fn keeps_what_the_config_says() {
        let cfg = json!({"name": "m", "max_batch_size": 0,
            "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [2, 3]}], "output": []});
        let out = complete(
            &cfg,
            &[io("x", "TYPE_FP32", &[-1, -1])],
            &[io("y", "TYPE_INT64", &[-1])],
        )
        .unwrap();
        assert_eq!(out["max_batch_size"], 0);
        assert_eq!(out["input"][0]["dims"], json!([2, 3]));
        assert_eq!(
            out["output"][0],
            json!({"name": "y", "data_type": "TYPE_INT64", "dims": [-1]})
        );
    }
}
