//! Checks a request against its model's configuration before it is queued, with Triton's
//! error texts (clients and tests match on them).

use crate::config::{ModelConfig, datatype};
use crate::request::InferenceRequest;
use crate::tensor::{DataType, bytes_elements, shape_string};
use crate::texts;
use crate::{Error, Result};

/// Triton's hint after a shape error for a model that batches.
const BATCH_NOTE: &str = "NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension to be prepended to each input shape. If you want to specify the full shape including the batch dim in your input dims config, try setting max_batch_size to zero. See the model configuration docs for more info on max_batch_size.";

/// Validates `req` for the model and returns its batch size (1 for models that do not batch).
/// A raw (header-less binary) request gets its input's name, type and shape from the
/// configuration first.
pub fn prepare(config: &ModelConfig, req: &mut InferenceRequest) -> Result<u64> {
    let model = config.name.as_str();
    let prefix = req.log_prefix();
    let batching = config.max_batch_size > 0;

    if req.raw_input {
        deduce_raw_input(config, req, &prefix)?;
    }

    // Triton refuses a second tensor of a name as the request is built, before anything else.
    if let Some(name) = first_duplicate(req.inputs.iter().map(|t| t.name.as_str())) {
        return Err(texts::duplicate_input(&prefix, name));
    }
    if let Some(name) = first_duplicate(req.outputs.iter().map(|o| o.name.as_str())) {
        return Err(texts::duplicate_output(&prefix, name));
    }

    // Every input must be one the model declares...
    for input in &req.inputs {
        if !config.input.iter().any(|i| i.name == input.name) {
            return Err(Error::invalid_arg(format!(
                "unexpected inference input '{}' for model '{model}'",
                input.name
            )));
        }
    }
    // ...and every required input must be there.
    let missing: Vec<&str> = config
        .input
        .iter()
        .filter(|i| !i.optional && !req.inputs.iter().any(|t| t.name == i.name))
        .map(|i| i.name.as_str())
        .collect();
    if !missing.is_empty() {
        let got: Vec<String> = req.inputs.iter().map(|t| format!("'{}'", t.name)).collect();
        let missing: Vec<String> = missing.iter().map(|n| format!("'{n}'")).collect();
        return Err(Error::invalid_arg(format!(
            "{prefix}expected {} inputs but got {} inputs for model '{model}'. Got input(s) [{}], but missing required input(s) [{}]. Please provide all required input(s).",
            config.input.len(),
            req.inputs.len(),
            got.join(","),
            missing.join(",")
        )));
    }
    for output in &req.outputs {
        if !config.output.iter().any(|o| o.name == output.name) {
            return Err(Error::invalid_arg(format!(
                "unexpected inference output '{}' for model '{model}'",
                output.name
            )));
        }
    }

    let mut batch_size: Option<i64> = None;
    for input in &req.inputs {
        let declared = config
            .input
            .iter()
            .find(|i| i.name == input.name)
            .expect("checked above");
        let expected_type = datatype(declared.data_type);
        if expected_type != Some(input.datatype) {
            return Err(Error::invalid_arg(format!(
                "{prefix}inference input '{}' data-type is '{}', but model '{model}' expects '{}'",
                input.name,
                input.datatype,
                expected_type.map(DataType::wire_name).unwrap_or("INVALID")
            )));
        }

        let dims: &[i64] = &declared.dims;
        let (batch, rest) = if batching {
            let Some((&b, rest)) = input.shape.split_first() else {
                return Err(Error::invalid_arg(format!(
                    "{prefix}input '{}' has no shape but model requires batch dimension for '{model}'",
                    input.name
                )));
            };
            (Some(b), rest)
        } else {
            (None, &input.shape[..])
        };
        if let Some(b) = batch {
            if b < 1 || b > i64::from(config.max_batch_size) {
                return Err(Error::invalid_arg(format!(
                    "{prefix}inference request batch-size must be <= {} for '{model}'",
                    config.max_batch_size
                )));
            }
            match batch_size {
                None => batch_size = Some(b),
                Some(first) if first != b => {
                    return Err(Error::invalid_arg(format!(
                        "{prefix}input '{}' batch size does not match other inputs for '{model}'",
                        input.name
                    )));
                }
                _ => {}
            }
        }
        let matches = rest.len() == dims.len()
            && rest
                .iter()
                .zip(dims)
                .all(|(&got, &want)| want == -1 && got >= 0 || got == want);
        if !matches {
            let mut expected = Vec::new();
            if batching {
                expected.push(-1);
            }
            expected.extend_from_slice(dims);
            return Err(Error::invalid_arg(format!(
                "{prefix}unexpected shape for input '{}' for model '{model}'. Expected {}, got {}. {}",
                input.name,
                shape_string(&expected),
                shape_string(&input.shape),
                if batching { BATCH_NOTE } else { "" }
            )));
        }

        // A shape whose byte size does not fit in memory's range is refused, never wrapped.
        let overflow = || texts::element_count_overflow(&input.name, &shape_string(&input.shape));
        let count = input
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
            .ok_or_else(overflow)?;
        match input.datatype.element_size() {
            Some(size) => {
                let expected = count.checked_mul(size).ok_or_else(overflow)?;
                if input.data.len() != expected {
                    return Err(Error::invalid_arg(format!(
                        "{prefix}input byte size mismatch for input '{}' for model '{model}'. Expected {expected}, got {}",
                        input.name,
                        input.data.len()
                    )));
                }
            }
            None => {
                let elements = bytes_elements(&input.data).map_err(|e| {
                    Error::invalid_arg(format!(
                        "{prefix}input '{}' for model '{model}': {}",
                        input.name,
                        e.message()
                    ))
                })?;
                if elements.len() != count {
                    return Err(Error::invalid_arg(format!(
                        "{prefix}expected {count} string elements for inference input '{}' for model '{model}', got {}",
                        input.name,
                        elements.len()
                    )));
                }
            }
        }
    }
    if config.input.iter().any(|i| i.reshape.is_some()) {
        reshape_inputs(config, req)?;
    }
    Ok(batch_size.map_or(1, |b| b as u64))
}

/// The first name that appeared before. Linear in the count (a hostile request may name
/// thousands of tensors); the few tensors of an ordinary request are compared directly.
fn first_duplicate<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> Option<&'a str> {
    if names.len() <= 8 {
        let names: Vec<&str> = names.collect();
        return names
            .iter()
            .enumerate()
            .find(|&(i, n)| names[..i].contains(n))
            .map(|(_, n)| *n);
    }
    let mut seen = std::collections::HashSet::new();
    let mut names = names;
    names.find(|n| !seen.insert(*n))
}

/// The model sees each input with a `reshape` in that shape (the batch dimension kept), as
/// Triton's request normalization does. The shapes were checked against `dims` above.
fn reshape_inputs(config: &ModelConfig, req: &mut InferenceRequest) -> Result<()> {
    let skip = usize::from(config.max_batch_size > 0);
    for input in &mut req.inputs {
        let Some(declared) = config.input.iter().find(|i| i.name == input.name) else {
            continue;
        };
        let Some(reshape) = &declared.reshape else {
            continue;
        };
        let mapped = crate::reshape::map_shape(
            &declared.dims,
            &reshape.shape,
            input.shape.get(skip..).unwrap_or_default(),
        )
        .ok_or_else(|| {
            Error::internal(format!(
                "input '{}' of shape {} cannot take the reshape {} of model '{}'",
                input.name,
                shape_string(&input.shape),
                shape_string(&reshape.shape),
                config.name
            ))
        })?;
        input.shape.truncate(skip);
        input.shape.extend(mapped);
    }
    Ok(())
}

fn deduce_raw_input(config: &ModelConfig, req: &mut InferenceRequest, prefix: &str) -> Result<()> {
    if config.input.len() != 1 {
        return Err(texts::raw_needs_one_input(
            prefix,
            config.input.len(),
            &config.name,
        ));
    }
    let declared = &config.input[0];
    let dt = datatype(declared.data_type).ok_or_else(|| {
        Error::internal(format!("input '{}' has no valid data type", declared.name))
    })?;
    let input = req
        .inputs
        .first_mut()
        .ok_or_else(|| Error::internal("raw request without data"))?;
    input.name = declared.name.clone();
    input.datatype = dt;
    // Triton's deduction (InferenceRequest::Normalize): the configured dims (after a batch of
    // 1), one variable dimension taken from the data's size; a BYTES input must be [1] and its
    // body is that one element.
    let mut shape = Vec::new();
    if config.max_batch_size > 0 {
        shape.push(1);
    }
    shape.extend_from_slice(&declared.dims);
    let variable: Vec<usize> = (0..shape.len()).filter(|&i| shape[i] == -1).collect();
    if variable.len() > 1 {
        return Err(texts::raw_shape_not_deducible(prefix, &declared.name));
    }
    let known: i64 = shape.iter().filter(|&&d| d != -1).product();
    match dt.element_size() {
        None => {
            if !variable.is_empty() || known != 1 {
                return Err(texts::raw_bytes_needs_shape_one(prefix, &declared.name));
            }
            let len = u32::try_from(input.data.len()).map_err(|_| {
                Error::invalid_arg(format!(
                    "{prefix}raw input '{}' is larger than a BYTES element can be (4 GiB)",
                    declared.name
                ))
            })?;
            let mut element = Vec::with_capacity(4 + input.data.len());
            element.extend_from_slice(&len.to_le_bytes());
            element.extend_from_slice(&input.data);
            input.data = bytes::Bytes::from(element);
        }
        Some(size) => {
            if let Some(&axis) = variable.first() {
                shape[axis] = (input.data.len() / size) as i64 / known.max(1);
            }
        }
    }
    input.shape = shape;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{Tensor, element_count};
    use bytes::Bytes;

    fn config(max_batch: i32) -> ModelConfig {
        ferrite_proto::parse_model_config(&format!(
            r#"name: "add_sub" max_batch_size: {max_batch}
               input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] }},
                       {{ name: "INPUT1" data_type: TYPE_FP32 dims: [ 16 ] }} ]
               output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] }} ]"#
        ))
        .unwrap()
    }

    fn fp32(name: &str, shape: Vec<i64>) -> Tensor {
        let n = element_count(&shape);
        Tensor::new(name, DataType::Fp32, shape, Bytes::from(vec![0u8; n * 4]))
    }

    fn req(inputs: Vec<Tensor>) -> InferenceRequest {
        InferenceRequest {
            model_name: "add_sub".into(),
            id: "req-1".into(),
            inputs,
            ..Default::default()
        }
    }

    fn err(config: &ModelConfig, mut r: InferenceRequest) -> String {
        prepare(config, &mut r).unwrap_err().message().to_string()
    }

    #[test]
    fn triton_texts() {
        let c = config(0);
        assert_eq!(
            err(
                &c,
                req(vec![fp32("INPUT0", vec![8]), fp32("INPUT1", vec![16])])
            ),
            "[request id: req-1] unexpected shape for input 'INPUT0' for model 'add_sub'. Expected [16], got [8]. "
        );
        assert_eq!(
            err(&c, req(vec![fp32("INPUT0", vec![16])])),
            "[request id: req-1] expected 2 inputs but got 1 inputs for model 'add_sub'. Got input(s) ['INPUT0'], but missing required input(s) ['INPUT1']. Please provide all required input(s)."
        );
        assert_eq!(
            err(
                &c,
                req(vec![fp32("INPUTX", vec![16]), fp32("INPUT1", vec![16])])
            ),
            "unexpected inference input 'INPUTX' for model 'add_sub'"
        );
        let mut wrong_type = fp32("INPUT0", vec![16]);
        wrong_type.datatype = DataType::Int32;
        assert_eq!(
            err(&c, req(vec![wrong_type, fp32("INPUT1", vec![16])])),
            "[request id: req-1] inference input 'INPUT0' data-type is 'INT32', but model 'add_sub' expects 'FP32'"
        );
        let mut r = req(vec![fp32("INPUT0", vec![16]), fp32("INPUT1", vec![16])]);
        r.outputs.push(crate::request::RequestedOutput {
            name: "NOPE".into(),
            ..Default::default()
        });
        assert_eq!(
            err(&c, r),
            "unexpected inference output 'NOPE' for model 'add_sub'"
        );
    }

    #[test]
    fn duplicates_are_found_in_short_and_long_lists() {
        assert_eq!(first_duplicate(["a", "b", "a"].into_iter()), Some("a"));
        assert_eq!(first_duplicate(["a", "b"].into_iter()), None);
        let many: Vec<String> = (0..100_000).map(|i| format!("t{i}")).collect();
        assert_eq!(first_duplicate(many.iter().map(String::as_str)), None);
        let mut again = many.clone();
        again.push("t77".into());
        assert_eq!(
            first_duplicate(again.iter().map(String::as_str)),
            Some("t77")
        );
    }

    #[test]
    fn a_tensor_named_twice_is_refused_first() {
        let c = config(0);
        let r = req(vec![
            fp32("INPUT0", vec![16]),
            fp32("INPUT0", vec![16]),
            fp32("INPUT1", vec![16]),
        ]);
        assert_eq!(
            err(&c, r),
            "[request id: req-1] input 'INPUT0' already exists in request"
        );
        let mut r = req(vec![fp32("INPUT0", vec![16]), fp32("INPUT1", vec![16])]);
        for _ in 0..2 {
            r.outputs.push(crate::request::RequestedOutput {
                name: "OUTPUT0".into(),
                ..Default::default()
            });
        }
        r.id.clear();
        assert_eq!(
            err(&c, r),
            "[request id: <id_unknown>] output 'OUTPUT0' already exists in request"
        );
    }

    #[test]
    fn batching() {
        let c = config(8);
        let mut r = req(vec![
            fp32("INPUT0", vec![2, 16]),
            fp32("INPUT1", vec![2, 16]),
        ]);
        assert_eq!(prepare(&c, &mut r).unwrap(), 2);
        let mut r = req(vec![
            fp32("INPUT0", vec![9, 16]),
            fp32("INPUT1", vec![9, 16]),
        ]);
        r.id.clear();
        assert_eq!(
            err(&c, r),
            "[request id: <id_unknown>] inference request batch-size must be <= 8 for 'add_sub'"
        );
        assert_eq!(
            err(
                &c,
                req(vec![
                    fp32("INPUT0", vec![1, 8]),
                    fp32("INPUT1", vec![1, 16])
                ])
            ),
            format!(
                "[request id: req-1] unexpected shape for input 'INPUT0' for model 'add_sub'. Expected [-1,16], got [1,8]. {BATCH_NOTE}"
            )
        );
        assert!(
            err(
                &c,
                req(vec![
                    fp32("INPUT0", vec![1, 16]),
                    fp32("INPUT1", vec![2, 16])
                ])
            )
            .contains("batch size does not match")
        );
    }

    #[test]
    fn inputs_reach_the_model_in_their_reshape() {
        // Triton's densenet_onnx: [3,224,224] for the client, [1,3,224,224] for the model.
        let c = ferrite_proto::parse_model_config(
            r#"name: "densenet_onnx" max_batch_size: 0
               input [ { name: "data_0" data_type: TYPE_FP32 dims: [ 3, 224, 224 ]
                         reshape { shape: [ 1, 3, 224, 224 ] } } ]
               output [ { name: "fc6_1" data_type: TYPE_FP32 dims: [ 1000 ]
                          reshape { shape: [ 1, 1000, 1, 1 ] } } ]"#,
        )
        .unwrap();
        let mut r = req(vec![fp32("data_0", vec![3, 224, 224])]);
        r.model_name = "densenet_onnx".into();
        assert_eq!(prepare(&c, &mut r).unwrap(), 1);
        assert_eq!(r.inputs[0].shape, vec![1, 3, 224, 224]);
        // The model's own shape is not what the client may send.
        let mut r = req(vec![fp32("data_0", vec![1, 3, 224, 224])]);
        assert!(err(&c, r.clone()).contains("Expected [3,224,224], got [1,3,224,224]"));
        // With batching the batch dimension stays; variable sizes travel; [] is a scalar.
        let c = ferrite_proto::parse_model_config(
            r#"name: "m" max_batch_size: 4
               input [ { name: "A" data_type: TYPE_FP32 dims: [ 2, -1 ]
                         reshape { shape: [ -1, 2 ] } },
                       { name: "B" data_type: TYPE_FP32 dims: [ 1 ] reshape { shape: [ ] } } ]"#,
        )
        .unwrap();
        r = req(vec![fp32("A", vec![3, 2, 5]), fp32("B", vec![3, 1])]);
        assert_eq!(prepare(&c, &mut r).unwrap(), 3);
        assert_eq!(r.inputs[0].shape, vec![3, 5, 2]);
        assert_eq!(r.inputs[1].shape, vec![3]);
    }

    #[test]
    fn a_shape_past_the_address_range_is_refused_not_wrapped() {
        let c = ferrite_proto::parse_model_config(
            r#"name: "m" max_batch_size: 0
               input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]"#,
        )
        .unwrap();
        // 2^62 elements of 4 bytes: the byte count wraps to 0 in 64 bits.
        let mut r = req(vec![Tensor::new(
            "X",
            DataType::Fp32,
            vec![1 << 62],
            Bytes::new(),
        )]);
        r.model_name = "m".into();
        assert_eq!(
            err(&c, r),
            "invalid shape for input 'X': shape [4611686018427387904] causes total element count to exceed maximum size of 9223372036854775807"
        );
    }

    #[test]
    fn byte_sizes() {
        let c = config(0);
        let mut short = fp32("INPUT0", vec![16]);
        short.data = Bytes::from(vec![0u8; 60]);
        assert!(
            err(&c, req(vec![short, fp32("INPUT1", vec![16])])).contains("Expected 64, got 60")
        );
    }

    #[test]
    fn raw_inputs_are_deduced_as_triton_does() {
        let one = |dims: &str, dt: &str, mbs: i32, body: &[u8]| {
            let c = ferrite_proto::parse_model_config(&format!(
                r#"name: "m" max_batch_size: {mbs}
                   input [ {{ name: "X" data_type: {dt} dims: {dims} }} ]"#
            ))
            .unwrap();
            let mut r = req(vec![Tensor::new(
                "",
                DataType::Uint8,
                vec![],
                Bytes::copy_from_slice(body),
            )]);
            r.raw_input = true;
            deduce_raw_input(&c, &mut r, "[request id: req-1] ").map(|()| r.inputs.remove(0))
        };
        let t = one("[ 2, -1 ]", "TYPE_FP32", 4, &[0; 24]).unwrap();
        assert_eq!((t.name.as_str(), t.shape), ("X", vec![1, 2, 3]));
        assert_eq!(
            one("[ -1, -1 ]", "TYPE_FP32", 0, &[0; 24])
                .unwrap_err()
                .message(),
            "[request id: req-1] The shape of the raw input 'X' can not be deduced because there are more than one variable-sized dimension"
        );
        // BYTES: the body is one element of a [1] input.
        let t = one("[ 1 ]", "TYPE_STRING", 0, b"a\0b").unwrap();
        assert_eq!(t.shape, vec![1]);
        assert_eq!(&t.data[..], b"\x03\0\0\0a\0b");
        assert_eq!(
            one("[ -1 ]", "TYPE_STRING", 0, b"x").unwrap_err().message(),
            "[request id: req-1] For BYTE datatype raw input 'X', the model must have input shape [1]"
        );
    }

    #[test]
    fn raw_input_needs_one_input() {
        let c = config(0);
        let mut r = req(vec![Tensor::new("", DataType::Uint8, vec![], Bytes::new())]);
        r.raw_input = true;
        r.id.clear();
        assert_eq!(
            err(&c, r),
            "[request id: <id_unknown>] Raw request must only have 1 input (found 1) to be deduced but got 2 inputs in 'add_sub' model configuration"
        );
    }
}
