//! Is the model an image classifier this client can feed? Triton's `ParseModel`: exactly one
//! input and one output, an FP32 output that is a vector, a 3-dimensional CHW or HWC input
//! (batch dimension not counted) in FORMAT_NCHW or FORMAT_NHWC, a supported input data type,
//! and a batch size the model accepts. The error texts are Triton's.

use serde_json::Value;

use crate::Error;
use crate::preprocess::{ElementType, Format, InputSpec};

/// A tensor of the model's metadata.
#[derive(Debug, Clone, Copy)]
pub struct TensorMeta<'a> {
    pub name: &'a str,
    pub datatype: &'a str,
    pub shape: &'a [i64],
}

/// What the client needs to know of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub max_batch_size: u32,
    pub input_name: String,
    pub output_name: String,
    pub input: InputSpec,
}

impl ModelInfo {
    /// Whether requests carry a batch dimension.
    pub fn batching(&self) -> bool {
        self.max_batch_size > 0
    }

    /// The request's input shape for `batch` images.
    pub fn input_shape(&self, batch: usize) -> Vec<i64> {
        let mut shape = Vec::with_capacity(4);
        if self.batching() {
            shape.push(batch as i64);
        }
        shape.extend(self.input.shape());
        shape
    }
}

/// The input's `format` in the model configuration JSON: the enum's name (Triton's JSON)
/// or its number.
fn format_name(config_input: &Value) -> String {
    match config_input.get("format") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(0) => "FORMAT_NONE".into(),
            Some(1) => "FORMAT_NHWC".into(),
            Some(2) => "FORMAT_NCHW".into(),
            _ => n.to_string(),
        },
        _ => "FORMAT_NONE".into(),
    }
}

fn max_batch_size(config: &Value) -> Result<u32, Error> {
    match config.get("max_batch_size") {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                Error::new(format!(
                    "unexpected max_batch_size {v} in the model configuration"
                ))
            }),
    }
}

/// Checks the model (`name`, its metadata `inputs` / `outputs` and its configuration as
/// Triton's JSON) for `batch_size` images per request.
pub fn parse_model(
    name: &str,
    inputs: &[TensorMeta<'_>],
    outputs: &[TensorMeta<'_>],
    config: &Value,
    batch_size: u32,
) -> Result<ModelInfo, Error> {
    if inputs.len() != 1 {
        return Err(Error::new(format!(
            "expecting 1 input, got {}",
            inputs.len()
        )));
    }
    if outputs.len() != 1 {
        return Err(Error::new(format!(
            "expecting 1 output, got {}",
            outputs.len()
        )));
    }
    let config_inputs = config
        .get("input")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if config_inputs.len() != 1 {
        return Err(Error::new(format!(
            "expecting 1 input in model configuration, got {}",
            config_inputs.len()
        )));
    }
    let (input, output, input_config) = (&inputs[0], &outputs[0], &config_inputs[0]);

    if output.datatype != "FP32" {
        return Err(Error::new(format!(
            "expecting output datatype to be FP32, model '{name}' output type is '{}'",
            output.datatype
        )));
    }

    // max_batch_size 0: no batch dimension, one image per request.
    let max_batch_size = max_batch_size(config)?;
    if max_batch_size == 0 {
        if batch_size != 1 {
            return Err(Error::new(format!(
                "batching not supported for model '{name}'"
            )));
        }
    } else if batch_size > max_batch_size {
        return Err(Error::new(format!(
            "expecting batch size <= {max_batch_size} for model '{name}'"
        )));
    }
    let batching = max_batch_size > 0;

    // The output is a vector: any number of dimensions as long as all but one are 1.
    let mut non_one = 0;
    for &dim in output.shape.iter().skip(usize::from(batching)) {
        if dim == -1 {
            return Err(Error::new(
                "variable-size dimension in model output not supported",
            ));
        }
        if dim > 1 {
            non_one += 1;
            if non_one > 1 {
                return Err(Error::new("expecting model output to be a vector"));
            }
        }
    }

    // The input is CHW or HWC, plus the batch dimension.
    let expected_dims = 3 + usize::from(batching);
    if input.shape.len() != expected_dims {
        return Err(Error::new(format!(
            "expecting input to have {expected_dims} dimensions, model '{name}' input has {}",
            input.shape.len()
        )));
    }

    let format = match format_name(input_config).as_str() {
        "FORMAT_NCHW" => Format::Nchw,
        "FORMAT_NHWC" => Format::Nhwc,
        other => {
            return Err(Error::new(format!(
                "unexpected input format {other}, expecting FORMAT_NCHW or FORMAT_NHWC"
            )));
        }
    };

    let dims = &input.shape[usize::from(batching)..];
    if dims.iter().any(|&d| d <= 0) {
        return Err(Error::new(format!(
            "variable-size dimension in model input not supported, model '{name}' input '{}' has shape {:?}",
            input.name, input.shape
        )));
    }
    let dims: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    let (channels, height, width) = match format {
        Format::Nhwc => (dims[2], dims[0], dims[1]),
        Format::Nchw => (dims[0], dims[1], dims[2]),
    };

    let datatype = ElementType::from_name(input.datatype).ok_or_else(|| {
        Error::new(format!(
            "unexpected input datatype '{}' for model '{name}'",
            input.datatype
        ))
    })?;

    Ok(ModelInfo {
        max_batch_size,
        input_name: input.name.to_owned(),
        output_name: output.name.to_owned(),
        input: InputSpec {
            channels,
            height,
            width,
            format,
            datatype,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const IN_SHAPE: &[i64] = &[-1, 3, 224, 224];
    const OUT_SHAPE: &[i64] = &[-1, 1000];

    fn input(shape: &'static [i64], datatype: &'static str) -> TensorMeta<'static> {
        TensorMeta {
            name: "input",
            datatype,
            shape,
        }
    }

    fn output(shape: &'static [i64], datatype: &'static str) -> TensorMeta<'static> {
        TensorMeta {
            name: "logits",
            datatype,
            shape,
        }
    }

    fn config(max_batch_size: u32, format: Value) -> Value {
        json!({"max_batch_size": max_batch_size, "input": [{"name": "input", "format": format}]})
    }

    fn err(r: Result<ModelInfo, Error>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn the_example_classifier() {
        let info = parse_model(
            "m",
            &[input(IN_SHAPE, "FP32")],
            &[output(OUT_SHAPE, "FP32")],
            &config(8, json!("FORMAT_NCHW")),
            8,
        )
        .unwrap();
        assert_eq!(info.max_batch_size, 8);
        assert_eq!(
            (info.input_name.as_str(), info.output_name.as_str()),
            ("input", "logits")
        );
        assert_eq!(
            info.input,
            InputSpec {
                channels: 3,
                height: 224,
                width: 224,
                format: Format::Nchw,
                datatype: ElementType::Fp32
            }
        );
        assert_eq!(info.input_shape(2), vec![2, 3, 224, 224]);
    }

    #[test]
    fn nhwc_without_batching() {
        let info = parse_model(
            "m",
            &[input(&[32, 48, 1], "UINT8")],
            &[output(&[10, 1], "FP32")],
            &config(0, json!(1)),
            1,
        )
        .unwrap();
        assert_eq!(
            (info.input.height, info.input.width, info.input.channels),
            (32, 48, 1)
        );
        assert_eq!(info.input.format, Format::Nhwc);
        assert_eq!(info.input_shape(1), vec![32, 48, 1]);
    }

    #[test]
    fn refusals() {
        let i = [input(IN_SHAPE, "FP32")];
        let o = [output(OUT_SHAPE, "FP32")];
        let c = config(8, json!("FORMAT_NCHW"));
        assert_eq!(
            err(parse_model("m", &[], &o, &c, 1)),
            "expecting 1 input, got 0"
        );
        assert_eq!(
            err(parse_model("m", &[i[0], i[0]], &o, &c, 1)),
            "expecting 1 input, got 2"
        );
        assert_eq!(
            err(parse_model("m", &i, &[o[0], o[0]], &c, 1)),
            "expecting 1 output, got 2"
        );
        assert_eq!(
            err(parse_model("m", &i, &o, &json!({"max_batch_size": 8}), 1)),
            "expecting 1 input in model configuration, got 0"
        );
        assert_eq!(
            err(parse_model("m", &i, &[output(OUT_SHAPE, "INT32")], &c, 1)),
            "expecting output datatype to be FP32, model 'm' output type is 'INT32'"
        );
        assert_eq!(
            err(parse_model("m", &i, &o, &c, 9)),
            "expecting batch size <= 8 for model 'm'"
        );
        assert_eq!(
            err(parse_model(
                "m",
                &[input(&[3, 224, 224], "FP32")],
                &[output(&[1000], "FP32")],
                &config(0, json!("FORMAT_NCHW")),
                2
            )),
            "batching not supported for model 'm'"
        );
        assert_eq!(
            err(parse_model(
                "m",
                &i,
                &[output(&[-1, 10, 10], "FP32")],
                &c,
                1
            )),
            "expecting model output to be a vector"
        );
        assert_eq!(
            err(parse_model("m", &i, &[output(&[-1, -1], "FP32")], &c, 1)),
            "variable-size dimension in model output not supported"
        );
        assert_eq!(
            err(parse_model(
                "m",
                &[input(&[-1, 224, 224], "FP32")],
                &o,
                &c,
                1
            )),
            "expecting input to have 4 dimensions, model 'm' input has 3"
        );
        assert_eq!(
            err(parse_model(
                "m",
                &i,
                &o,
                &config(8, json!("FORMAT_NONE")),
                1
            )),
            "unexpected input format FORMAT_NONE, expecting FORMAT_NCHW or FORMAT_NHWC"
        );
        assert_eq!(
            err(parse_model(
                "m",
                &i,
                &o,
                &json!({"max_batch_size": 8, "input": [{}]}),
                1
            )),
            "unexpected input format FORMAT_NONE, expecting FORMAT_NCHW or FORMAT_NHWC"
        );
        assert_eq!(
            err(parse_model("m", &[input(IN_SHAPE, "BYTES")], &o, &c, 1)),
            "unexpected input datatype 'BYTES' for model 'm'"
        );
        assert!(
            err(parse_model(
                "m",
                &[input(&[-1, 3, -1, -1], "FP32")],
                &o,
                &c,
                1
            ))
            .starts_with("variable-size dimension in model input not supported")
        );
    }
}
