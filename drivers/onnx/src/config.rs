//! The model configuration against the ONNX model itself, as Triton's ONNX Runtime backend
//! does it: auto-complete fills in what the configuration leaves out (inputs, outputs with
//! their types and dims and, for a configuration that says nothing about batching,
//! `max_batch_size` when every input and output has a variable first dimension); validation
//! checks that what it says matches the model.

use ferrite_driver_sdk::{Error, Result};
use ort::session::Session;
use ort::value::{Outlet, ValueType};
use serde_json::{Value, json};

use crate::ragged::Ragged;
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
/// data type and a shape the model accepts (its `reshape` when it has one). Returns the
/// tensors the model has as scalars.
pub fn validate(model: &str, config: &Value, session: &Session) -> Result<Scalars> {
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

fn check(model: &str, config: &Value, inputs: &[Io], outputs: &[Io]) -> Result<Scalars> {
    let mut scalars = Scalars::default();
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
    let ragged = Ragged::from_config(config)?;
    let missing: Vec<&str> = inputs
        .iter()
        .map(|io| io.name.as_str())
        .filter(|n| {
            !configured.contains(n)
                && !server_inputs.iter().any(|s| s == n)
                && !ragged.is_batch_input(n)
        })
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
            // With a reshape the model sees reshape.shape; that is what must match it.
            let ints = |v: Option<&Value>| -> Vec<i64> {
                v.and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_i64)
                    .collect()
            };
            let dims = match entry.get("reshape").filter(|r| !r.is_null()) {
                Some(reshape) => ints(reshape.get("shape")),
                None => ints(entry.get("dims")),
            };
            if io.dims.is_empty() && max_batch == 0 {
                // A scalar: Triton's backend lets the configuration give it as [1] (or
                // [1, 1, ...]) and hands the model a tensor of no dimensions.
                if dims.iter().any(|&d| d != 1) {
                    return Err(Error::invalid_arg(format!(
                        "unable to load model '{model}', scalar tensor '{name}', should only provide 1 in the model configuration when the model doesn't support batching. Model configuration provided: {}.",
                        shape_string(&dims)
                    )));
                }
                if kind == "input" {
                    scalars.inputs.push(name.to_string());
                } else {
                    scalars
                        .outputs
                        .push((name.to_string(), ints(entry.get("dims"))));
                }
                continue;
            }
            if kind == "input" && ragged.is_ragged(name) {
                // Triton's backends take a ragged input as one flat tensor.
                if io.dims != [-1] {
                    return Err(Error::invalid_arg(format!(
                        "unable to load model '{model}', configuration expects model provides input with shape [-1]  for ragged input '{name}', model provides {}",
                        shape_string(&io.dims)
                    )));
                }
                continue;
            }
            if kind == "output" && ragged.batch_output(name).is_some() {
                // A batch output's shape need not be the model's.
                continue;
            }
            compare_dims(model, name, &io.dims, &dims, max_batch, kind == "output")?;
        }
    }
    Ok(scalars)
}

/// Tensors whose ONNX shape has no dimensions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scalars {
    /// Inputs handed to the session with no dimensions, whatever the request's [1].
    pub inputs: Vec<String>,
    /// Outputs the session makes with no dimensions, and the configured dims they leave with.
    pub outputs: Vec<(String, Vec<i64>)>,
}

/// Formats a shape as Triton's backends do: `[1,3,224,224]`.
fn shape_string(dims: &[i64]) -> String {
    let dims: Vec<String> = dims.iter().map(i64::to_string).collect();
    format!("[{}]", dims.join(","))
}

/// Triton's `CompareDimsSupported` (onnxruntime backend): the configuration's dims, with the
/// batch dimension when the model batches, against the model's shape. A model `-1` takes any
/// configured size, except for outputs (`exact`), whose variable dimensions must stay variable.
fn compare_dims(
    model: &str,
    name: &str,
    model_shape: &[i64],
    dims: &[i64],
    max_batch: i64,
    exact: bool,
) -> Result<()> {
    let fits = |full: &[i64]| {
        model_shape.len() == full.len()
            && model_shape
                .iter()
                .zip(full)
                .all(|(&m, &c)| (!exact && m == -1) || m == c)
    };
    if max_batch > 0 {
        if model_shape.first() != Some(&-1) {
            return Err(Error::invalid_arg(format!(
                "model '{model}', tensor '{name}': for the model to support batching the shape should have at least 1 dimension and the first dimension must be -1; but shape expected by the model is {}",
                shape_string(model_shape)
            )));
        }
        let mut full = vec![-1];
        full.extend_from_slice(dims);
        if !fits(&full) {
            return Err(Error::invalid_arg(format!(
                "model '{model}', tensor '{name}': the model expects {} dimensions (shape {}) but the model configuration specifies {} dimensions (an initial batch dimension because max_batch_size > 0 followed by the explicit tensor shape, making complete shape {})",
                model_shape.len(),
                shape_string(model_shape),
                full.len(),
                shape_string(&full)
            )));
        }
    } else if !fits(dims) {
        return Err(Error::invalid_arg(format!(
            "model '{model}', tensor '{name}': the model expects {} dimensions (shape {}) but the model configuration specifies {} dimensions (shape {})",
            model_shape.len(),
            shape_string(model_shape),
            dims.len(),
            shape_string(dims)
        )));
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
    let (mut server_inputs, state_outputs) = sequence_io(&Value::Object(obj.clone()));
    // Batch inputs are the server's to make, like sequence controls.
    let ragged = Ragged::from_config(&Value::Object(obj.clone()))?;
    server_inputs.extend(
        ragged
            .batch_inputs
            .iter()
            .flat_map(|b| b.targets.iter().cloned()),
    );

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
            let mut dims: Vec<i64> = if batching {
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
            // As Triton's backend: no dimensions become [1], given to a batching model through
            // an empty reshape (a non-batching one gets its scalar as [1] directly).
            let scalar = dims.is_empty();
            if scalar {
                dims.push(1);
            }
            let reshape = (scalar && batching).then(|| json!({"shape": []}));
            match list
                .iter_mut()
                .find(|e| e.get("name").and_then(Value::as_str) == Some(io.name.as_str()))
            {
                Some(entry) => {
                    if is_empty(entry.get("data_type")) {
                        entry["data_type"] = json!(io.data_type);
                    }
                    if is_empty(entry.get("dims")) && entry.get("reshape").is_none() {
                        entry["dims"] = json!(dims);
                        if let Some(reshape) = &reshape {
                            entry["reshape"] = reshape.clone();
                        }
                    }
                }
                None => {
                    let mut entry = json!({
                        "name": io.name,
                        "data_type": io.data_type,
                        "dims": dims,
                    });
                    if let Some(reshape) = reshape {
                        entry["reshape"] = reshape;
                    }
                    list.push(entry);
                }
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
    fn a_reshape_is_what_must_match_the_model() {
        // Triton's densenet_onnx against a model of that signature.
        let ins = [io("data_0", "TYPE_FP32", &[1, 3, 224, 224])];
        let outs = [io("fc6_1", "TYPE_FP32", &[1, 1000, 1, 1])];
        let config = |input_reshape: &[i64], output_reshape: &[i64]| {
            json!({"max_batch_size": 0,
                "input": [{"name": "data_0", "data_type": "TYPE_FP32", "dims": [3, 224, 224],
                           "reshape": {"shape": input_reshape}}],
                "output": [{"name": "fc6_1", "data_type": "TYPE_FP32", "dims": [1000],
                            "reshape": {"shape": output_reshape}}]})
        };
        assert_eq!(
            check(
                "densenet_onnx",
                &config(&[1, 3, 224, 224], &[1, 1000, 1, 1]),
                &ins,
                &outs
            ),
            Ok(Scalars::default())
        );
        let e = check(
            "densenet_onnx",
            &config(&[3, 224, 224, 1], &[1, 1000, 1, 1]),
            &ins,
            &outs,
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "model 'densenet_onnx', tensor 'data_0': the model expects 4 dimensions (shape [1,3,224,224]) but the model configuration specifies 4 dimensions (shape [3,224,224,1])"
        );
        // Without the reshape the dims themselves must match, as in Triton.
        let mut plain = config(&[1, 3, 224, 224], &[1, 1000, 1, 1]);
        plain["input"][0].as_object_mut().unwrap().remove("reshape");
        assert!(check("densenet_onnx", &plain, &ins, &outs).is_err());
    }

    #[test]
    fn outputs_compare_exactly_inputs_take_any_size_for_a_variable_one() {
        let ins = [io("x", "TYPE_FP32", &[-1, -1])];
        let outs = [io("y", "TYPE_FP32", &[-1, -1])];
        let config = |input: &[i64], output: &[i64]| {
            json!({"max_batch_size": 4,
                "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": input}],
                "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": output}]})
        };
        assert!(check("m", &config(&[3], &[-1]), &ins, &outs).is_ok());
        let e = check("m", &config(&[3], &[3]), &ins, &outs).unwrap_err();
        assert!(e.message.contains("tensor 'y': the model expects 2 dimensions (shape [-1,-1]) but the model configuration specifies 2 dimensions (an initial batch dimension because max_batch_size > 0 followed by the explicit tensor shape, making complete shape [-1,3])"), "{}", e.message);
        let fixed_first = [io("x", "TYPE_FP32", &[2, 3])];
        let e = check("m", &config(&[3], &[-1]), &fixed_first, &outs).unwrap_err();
        assert_eq!(
            e.message,
            "model 'm', tensor 'x': for the model to support batching the shape should have at least 1 dimension and the first dimension must be -1; but shape expected by the model is [2,3]"
        );
    }

    #[test]
    fn scalars_are_configured_as_ones() {
        // Triton's rule for the onnxruntime backend: a tensor of shape [] is [1] in the
        // configuration of a model that does not batch.
        let ins = [io("x", "TYPE_INT32", &[])];
        let outs = [io("y", "TYPE_INT32", &[])];
        let completed = complete(&json!({"max_batch_size": 0}), &ins, &outs).unwrap();
        assert_eq!(completed["input"][0]["dims"], json!([1]));
        assert_eq!(completed["output"][0]["dims"], json!([1]));
        assert!(completed["input"][0].get("reshape").is_none());
        assert_eq!(
            check("m", &completed, &ins, &outs).unwrap(),
            Scalars {
                inputs: vec!["x".into()],
                outputs: vec![("y".into(), vec![1])]
            }
        );
        let wrong = json!({"max_batch_size": 0,
            "input": [{"name": "x", "data_type": "TYPE_INT32", "dims": [2]}],
            "output": [{"name": "y", "data_type": "TYPE_INT32", "dims": [1]}]});
        assert_eq!(
            check("m", &wrong, &ins, &outs).unwrap_err().message,
            "unable to load model 'm', scalar tensor 'x', should only provide 1 in the model configuration when the model doesn't support batching. Model configuration provided: [2]."
        );
        // A batching model whose tensor is only the batch dimension: [1] through an empty
        // reshape.
        let completed = complete(
            &json!({"max_batch_size": 4}),
            &[io("x", "TYPE_INT32", &[-1])],
            &[io("y", "TYPE_INT32", &[-1])],
        )
        .unwrap();
        assert_eq!(
            completed["output"][0],
            json!({"name": "y", "data_type": "TYPE_INT32", "dims": [1], "reshape": {"shape": []}})
        );
    }

    #[test]
    fn batch_inputs_are_the_servers_and_ragged_inputs_flat() {
        let ins = [
            io("INPUT", "TYPE_FP32", &[-1]),
            io("INDEX", "TYPE_FP32", &[-1]),
        ];
        let outs = [io("Y", "TYPE_FP32", &[-1])];
        let config = json!({"max_batch_size": 8,
            "input": [{"name": "INPUT", "data_type": "TYPE_FP32", "dims": [-1], "allow_ragged_batch": true}],
            "batch_input": [{"kind": "BATCH_ACCUMULATED_ELEMENT_COUNT", "target_name": ["INDEX"],
                             "data_type": "TYPE_FP32", "source_input": ["INPUT"]}],
            "output": []});
        let completed = complete(&config, &ins, &outs).unwrap();
        let names: Vec<&str> = completed["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["INPUT"], "INDEX is not a client input");
        assert!(check("m", &completed, &ins, &outs).is_ok());
        // A ragged input must be flat in the model.
        let nested = [
            io("INPUT", "TYPE_FP32", &[-1, 4]),
            io("INDEX", "TYPE_FP32", &[-1]),
        ];
        assert_eq!(
            check("m", &completed, &nested, &outs).unwrap_err().message,
            "unable to load model 'm', configuration expects model provides input with shape [-1]  for ragged input 'INPUT', model provides [-1,4]"
        );
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
