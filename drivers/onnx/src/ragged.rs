//! Triton's ragged batching for ONNX models (server `docs/user_guide/ragged_batching.md`, the
//! backend library's `BackendInputCollector` and `BackendOutputResponder`): inputs with
//! `allow_ragged_batch` are concatenated across the batch into one flat tensor
//! (`[total element count]`), `batch_input` tensors the server makes describe how the batch
//! was formed, and `batch_output`s are cut back into each request's share by the shape of a
//! source input (BATCH_SCATTER_WITH_INPUT_SHAPE).

use ferrite_driver_sdk::{DataType, Error, Result};
use serde_json::Value;

/// What a batch input holds (model_config.proto `BatchInput.Kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `[requests]`: each request's element count of the source input.
    ElementCount,
    /// `[requests]`: the running sum of those counts (where each request's elements end).
    AccumulatedElementCount,
    /// `[requests + 1]`: the same, starting with 0 (where each one starts, and the end).
    AccumulatedElementCountWithZero,
    /// `[largest element count]`: only the shape tells (the data is zeros).
    MaxElementCountAsShape,
    /// `[batch, rank - 1]`: the shape (after the batch dimension) of every batch item.
    ItemShape,
    /// `[batch * (rank - 1)]`: the same, flat.
    ItemShapeFlatten,
}

impl Kind {
    fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "BATCH_ELEMENT_COUNT" => Kind::ElementCount,
            "BATCH_ACCUMULATED_ELEMENT_COUNT" => Kind::AccumulatedElementCount,
            "BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO" => Kind::AccumulatedElementCountWithZero,
            "BATCH_MAX_ELEMENT_COUNT_AS_SHAPE" => Kind::MaxElementCountAsShape,
            "BATCH_ITEM_SHAPE" => Kind::ItemShape,
            "BATCH_ITEM_SHAPE_FLATTEN" => Kind::ItemShapeFlatten,
            _ => return None,
        })
    }
}

/// One configured batch input.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchInput {
    pub kind: Kind,
    /// The model inputs it feeds (usually one).
    pub targets: Vec<String>,
    /// INT32 or FP32.
    pub datatype: DataType,
    pub source: String,
}

/// One configured batch output (BATCH_SCATTER_WITH_INPUT_SHAPE, the only kind).
#[derive(Clone, Debug, PartialEq)]
pub struct BatchOutput {
    pub targets: Vec<String>,
    pub source: String,
    /// `[-1]` (the batch dimension, when the model batches) then the output's reshape or
    /// dims: the `-1`s take the source input's sizes of each request.
    pub shape: Vec<i64>,
}

/// A model's ragged inputs, batch inputs and batch outputs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ragged {
    pub inputs: Vec<String>,
    pub batch_inputs: Vec<BatchInput>,
    pub batch_outputs: Vec<BatchOutput>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn ints(v: Option<&Value>) -> Vec<i64> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_i64().or_else(|| d.as_str()?.parse().ok()))
        .collect()
}

impl Ragged {
    /// From the model configuration (protobuf JSON; the core has checked it).
    pub fn from_config(config: &Value) -> Result<Ragged> {
        let list = |key: &str| {
            config
                .get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let inputs = list("input")
            .iter()
            .filter(|i| i.get("allow_ragged_batch").and_then(Value::as_bool) == Some(true))
            .filter_map(|i| i.get("name").and_then(Value::as_str).map(str::to_string))
            .collect();
        let mut batch_inputs = Vec::new();
        for b in list("batch_input") {
            let kind_name = b
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("BATCH_ELEMENT_COUNT");
            let kind = Kind::parse(kind_name).ok_or_else(|| {
                Error::invalid_arg(format!("unexpected batch input kind '{kind_name}'"))
            })?;
            let datatype = match b.get("data_type").and_then(Value::as_str) {
                Some("TYPE_FP32") => DataType::Fp32,
                Some("TYPE_INT32") => DataType::Int32,
                other => {
                    return Err(Error::invalid_arg(format!(
                        "unexpected batch input data type '{}'",
                        other.unwrap_or("TYPE_INVALID")
                    )));
                }
            };
            let source = strings(b.get("source_input"))
                .into_iter()
                .next()
                .ok_or_else(|| Error::invalid_arg("a batch input names no source input"))?;
            batch_inputs.push(BatchInput {
                kind,
                targets: strings(b.get("target_name")),
                datatype,
                source,
            });
        }
        let batching = ferrite_driver_sdk::config::batching(config);
        let mut batch_outputs = Vec::new();
        for b in list("batch_output") {
            let targets = strings(b.get("target_name"));
            let source = strings(b.get("source_input"))
                .into_iter()
                .next()
                .ok_or_else(|| Error::invalid_arg("a batch output names no source input"))?;
            let output = list("output").into_iter().find(|o| {
                o.get("name").and_then(Value::as_str) == targets.first().map(String::as_str)
            });
            let mut shape = if batching { vec![-1] } else { Vec::new() };
            if let Some(o) = &output {
                match o.get("reshape").filter(|r| !r.is_null()) {
                    Some(r) => shape.extend(ints(r.get("shape"))),
                    None => shape.extend(ints(o.get("dims"))),
                }
            }
            batch_outputs.push(BatchOutput {
                targets,
                source,
                shape,
            });
        }
        Ok(Ragged {
            inputs,
            batch_inputs,
            batch_outputs,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty() && self.batch_inputs.is_empty() && self.batch_outputs.is_empty()
    }

    pub fn is_ragged(&self, input: &str) -> bool {
        self.inputs.iter().any(|n| n == input)
    }

    /// Whether `input` is fed by the server (a batch input's target).
    pub fn is_batch_input(&self, input: &str) -> bool {
        self.batch_inputs
            .iter()
            .any(|b| b.targets.iter().any(|t| t == input))
    }

    pub fn batch_output(&self, output: &str) -> Option<&BatchOutput> {
        self.batch_outputs
            .iter()
            .find(|b| b.targets.iter().any(|t| t == output))
    }
}

/// The element count of a request's tensor (the core has checked that it fits its bytes).
fn element_count(shape: &[i64]) -> i64 {
    shape
        .iter()
        .try_fold(1i64, |n, &d| n.checked_mul(d.max(0)))
        .unwrap_or(i64::MAX)
}

/// A batch input's tensor for requests whose source input shapes (batch dimension first) are
/// `shapes`, in request order: its shape and little-endian data.
pub fn batch_input_tensor(input: &BatchInput, shapes: &[&[i64]]) -> (Vec<i64>, Vec<u8>) {
    let counts = shapes.iter().map(|s| element_count(s));
    if input.kind == Kind::MaxElementCountAsShape {
        // Only the shape tells: zeros, 4 bytes each (INT32 or FP32), made directly.
        let max = counts.max().unwrap_or(0).max(0);
        return (vec![max], vec![0u8; 4 * max as usize]);
    }
    let values: Vec<i64> = match input.kind {
        Kind::ElementCount => counts.collect(),
        Kind::AccumulatedElementCount => counts
            .scan(0i64, |sum, c| {
                *sum = sum.saturating_add(c);
                Some(*sum)
            })
            .collect(),
        Kind::AccumulatedElementCountWithZero => std::iter::once(0)
            .chain(counts.scan(0i64, |sum, c| {
                *sum = sum.saturating_add(c);
                Some(*sum)
            }))
            .collect(),
        Kind::MaxElementCountAsShape => unreachable!("made above"),
        Kind::ItemShape | Kind::ItemShapeFlatten => shapes
            .iter()
            .flat_map(|s| {
                let items = s.first().copied().unwrap_or(1).max(0) as usize;
                let item = s.get(1..).unwrap_or_default();
                std::iter::repeat_n(item, items).flatten().copied()
            })
            .collect(),
    };
    let shape = match input.kind {
        Kind::ItemShape => {
            let items: i64 = shapes.iter().map(|s| s.first().copied().unwrap_or(1)).sum();
            let rank = shapes.first().map_or(0, |s| s.len().saturating_sub(1)) as i64;
            vec![items, rank]
        }
        _ => vec![values.len() as i64],
    };
    let data = match input.datatype {
        DataType::Int32 => values
            .iter()
            .flat_map(|&v| (v as i32).to_le_bytes())
            .collect(),
        _ => values
            .iter()
            .flat_map(|&v| (v as f32).to_le_bytes())
            .collect(),
    };
    (shape, data)
}

/// The shape of one request's share of a batch output: the output's shape with each `-1`
/// taken from the request's source input shape at the same position.
pub fn scatter_shape(output: &BatchOutput, source_shape: &[i64]) -> Vec<i64> {
    output
        .shape
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            if d == -1 {
                source_shape.get(i).copied().unwrap_or(0)
            } else {
                d
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f32s(data: &[u8]) -> Vec<f32> {
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn i32s(data: &[u8]) -> Vec<i32> {
        data.chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn input(kind: Kind, datatype: DataType) -> BatchInput {
        BatchInput {
            kind,
            targets: vec!["T".into()],
            datatype,
            source: "X".into(),
        }
    }

    #[test]
    fn batch_inputs_describe_the_batch_as_tritons_do() {
        // The ragged batching doc's example: requests of [1,3], [1,4], [1,5].
        let shapes: [&[i64]; 3] = [&[1, 3], &[1, 4], &[1, 5]];
        let (shape, data) = batch_input_tensor(
            &input(Kind::AccumulatedElementCount, DataType::Fp32),
            &shapes,
        );
        assert_eq!((shape, f32s(&data)), (vec![3], vec![3.0, 7.0, 12.0]));
        let (shape, data) =
            batch_input_tensor(&input(Kind::ElementCount, DataType::Int32), &shapes);
        assert_eq!((shape, i32s(&data)), (vec![3], vec![3, 4, 5]));
        let (shape, data) = batch_input_tensor(
            &input(Kind::AccumulatedElementCountWithZero, DataType::Int32),
            &shapes,
        );
        assert_eq!((shape, i32s(&data)), (vec![4], vec![0, 3, 7, 12]));
        let (shape, _) = batch_input_tensor(
            &input(Kind::MaxElementCountAsShape, DataType::Fp32),
            &shapes,
        );
        assert_eq!(shape, vec![5]);
        // Item shapes: every batch item of a request (a request of batch 2 counts twice).
        let items: [&[i64]; 2] = [&[2, 3, 4], &[1, 5, 6]];
        let (shape, data) = batch_input_tensor(&input(Kind::ItemShape, DataType::Int32), &items);
        assert_eq!((shape, i32s(&data)), (vec![3, 2], vec![3, 4, 3, 4, 5, 6]));
        let (shape, data) =
            batch_input_tensor(&input(Kind::ItemShapeFlatten, DataType::Fp32), &items);
        assert_eq!(
            (shape, f32s(&data)),
            (vec![6], vec![3.0, 4.0, 3.0, 4.0, 5.0, 6.0])
        );
    }

    #[test]
    fn reads_the_configuration() {
        let config = json!({
            "max_batch_size": 8,
            "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [-1], "allow_ragged_batch": true},
                      {"name": "S", "data_type": "TYPE_FP32", "dims": [2]}],
            "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [-1]}],
            "batch_input": [{"kind": "BATCH_ACCUMULATED_ELEMENT_COUNT", "target_name": ["INDEX"],
                             "data_type": "TYPE_FP32", "source_input": ["X"]}],
            "batch_output": [{"kind": "BATCH_SCATTER_WITH_INPUT_SHAPE", "target_name": ["Y"],
                              "source_input": ["X"]}]
        });
        let r = Ragged::from_config(&config).unwrap();
        assert!(r.is_ragged("X") && !r.is_ragged("S"));
        assert!(r.is_batch_input("INDEX") && !r.is_batch_input("X"));
        let out = r.batch_output("Y").unwrap();
        assert_eq!(out.shape, vec![-1, -1]);
        // Each request gets the output in its own input's shape.
        assert_eq!(scatter_shape(out, &[1, 7]), vec![1, 7]);
        assert!(
            Ragged::from_config(&json!({"input": []}))
                .unwrap()
                .is_empty()
        );
    }
}
