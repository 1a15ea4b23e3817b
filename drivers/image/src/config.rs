//! The model configuration of an `image` model, checked strictly at load: every mistake is
//! refused with INVALID_ARG, naming the model and the field, and saying what is allowed.
//!
//! ```text
//! backend: "image"
//! max_batch_size: 8                                   # or 0: one image per request
//! input [ { name: "IMAGE" data_type: TYPE_STRING dims: [ 1 ] } ]
//! output [ { name: "input" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] } ]
//! parameters [ { key: "layout" value { string_value: "NCHW" } },     # NCHW | NHWC
//!              { key: "scaling" value { string_value: "LITE" } } ]   # NONE | INCEPTION | VGG | LITE
//! ```
//!
//! - exactly one input, `TYPE_STRING`, `dims: [ 1 ]`: one encoded PNG or JPEG per batch row;
//! - exactly one output, of one of the element types of [`ElementType`], with dims `[C, H, W]`
//!   (`layout` NCHW) or `[H, W, C]` (NHWC), C 1 (grey) or 3 (RGB), H and W fixed and positive;
//!   without batching (`max_batch_size: 0`) the dims may also be `[1, ...]`, a batch of one;
//! - the parameters `layout` and `scaling`, both required, no others.
//!
//! The configuration is protobuf JSON with Triton's field names (how the host passes it).

use ferrite_driver_sdk::{DataType, Error, Result};
use ferrite_imaging::{DecodeLimits, ElementType, Format, InputSpec, Scaling};
use serde_json::Value;

/// The parameters an `image` model takes.
pub const PARAMETERS: [&str; 2] = ["layout", "scaling"];

/// The most bytes one preprocessed image may take (a guard against a mistyped dimension).
pub const MAX_OUTPUT_BYTES: u64 = 1 << 30;

/// A loaded `image` model: what to make of each image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageModel {
    /// The model's name, for messages.
    pub name: String,
    /// The input holding the encoded images.
    pub input: String,
    /// The output holding the tensors.
    pub output: String,
    /// The output's data type on the wire.
    pub output_type: DataType,
    /// Channels, height, width, layout and element type of one image.
    pub spec: InputSpec,
    pub scaling: Scaling,
    /// Whether requests carry a batch dimension (`max_batch_size > 0`).
    pub batching: bool,
    /// The output's configured dims (the shape of a whole response without batching).
    pub output_dims: Vec<i64>,
    /// How large an image is decoded.
    pub limits: DecodeLimits,
}

impl ImageModel {
    /// Reads and checks the configuration of model `name`.
    pub fn from_config(name: &str, config: &Value) -> Result<ImageModel> {
        let refuse = |what: String| Error::invalid_arg(format!("model '{name}': {what}"));

        let max_batch_size = integer(config.get("max_batch_size")).unwrap_or(0);
        if max_batch_size < 0 {
            return Err(refuse(format!(
                "max_batch_size must be 0 or more, not {max_batch_size}"
            )));
        }

        let (layout, scaling) = parameters(config).map_err(refuse)?;

        let input = only_one(config, "input").map_err(refuse)?;
        let input_name = tensor_name(input);
        let input_type = string(input.get("data_type")).unwrap_or("TYPE_INVALID");
        if input_type != "TYPE_STRING" {
            return Err(refuse(format!(
                "input '{input_name}' must be TYPE_STRING (encoded PNG or JPEG images), not {input_type}"
            )));
        }
        let input_dims = dims(input).map_err(|e| refuse(format!("input '{input_name}': {e}")))?;
        if input_dims != [1] {
            return Err(refuse(format!(
                "input '{input_name}' must have dims [ 1 ] (one encoded image per batch row), not {}",
                show(&input_dims)
            )));
        }
        no_reshape(input).map_err(|e| refuse(format!("input '{input_name}': {e}")))?;

        let output = only_one(config, "output").map_err(refuse)?;
        let output_name = tensor_name(output);
        let output_refuse = |e: String| refuse(format!("output '{output_name}': {e}"));
        let type_name = string(output.get("data_type")).unwrap_or("TYPE_INVALID");
        let datatype = type_name
            .strip_prefix("TYPE_")
            .and_then(ElementType::from_name)
            .ok_or_else(|| {
                let allowed: Vec<String> = ElementType::ALL
                    .iter()
                    .map(|t| format!("TYPE_{}", t.name()))
                    .collect();
                output_refuse(format!(
                    "data_type {type_name} is not one an image converts to; allowed: {}",
                    allowed.join(", ")
                ))
            })?;
        let output_type = DataType::from_wire_name(datatype.name())
            .ok_or_else(|| Error::internal(format!("no wire data type {}", datatype.name())))?;
        no_reshape(output).map_err(output_refuse)?;
        let output_dims = dims(output).map_err(output_refuse)?;
        let image_dims = match output_dims.as_slice() {
            [c, h, w] => [*c, *h, *w],
            [1, c, h, w] if max_batch_size == 0 => [*c, *h, *w],
            _ => {
                let allowed = if max_batch_size == 0 {
                    "3 (or 4, the first one 1)"
                } else {
                    "3"
                };
                return Err(output_refuse(format!(
                    "dims {} must have {allowed} dimensions, {} for layout {}",
                    show(&output_dims),
                    match layout {
                        Format::Nchw => "[ C, H, W ]",
                        Format::Nhwc => "[ H, W, C ]",
                    },
                    layout.layout()
                )));
            }
        };
        let [c, h, w] = match layout {
            Format::Nchw => image_dims,
            Format::Nhwc => [image_dims[2], image_dims[0], image_dims[1]],
        };
        if c != 1 && c != 3 {
            return Err(output_refuse(format!(
                "dims {} give {c} channels for layout {}; an image has 1 (grey) or 3 (RGB)",
                show(&output_dims),
                layout.layout()
            )));
        }
        let limits = DecodeLimits::default();
        for (what, size, max) in [
            ("height", h, limits.max_height),
            ("width", w, limits.max_width),
        ] {
            if size < 1 || size > i64::from(max) {
                return Err(output_refuse(format!(
                    "dims {} give {what} {size}; it must be fixed, from 1 to {max}",
                    show(&output_dims)
                )));
            }
        }
        // c, h and w are now small and positive: the product cannot overflow.
        let bytes = (c * h * w) as u64 * datatype.size() as u64;
        if bytes > MAX_OUTPUT_BYTES {
            return Err(output_refuse(format!(
                "dims {} of {type_name} take {bytes} bytes per image, more than the {MAX_OUTPUT_BYTES} allowed",
                show(&output_dims)
            )));
        }

        Ok(ImageModel {
            name: name.to_string(),
            input: input_name.to_string(),
            output: output_name.to_string(),
            output_type,
            spec: InputSpec {
                channels: c as usize,
                height: h as usize,
                width: w as usize,
                format: layout,
                datatype,
            },
            scaling,
            batching: max_batch_size > 0,
            output_dims,
            limits,
        })
    }
}

/// An integer field: protobuf JSON writes 64-bit integers as numbers or strings.
fn integer(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn string(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str)
}

fn tensor_name(tensor: &Value) -> &str {
    string(tensor.get("name")).unwrap_or("")
}

/// `[ 3, 224, 224 ]`, as a configuration writes dims.
fn show(dims: &[i64]) -> String {
    let list: Vec<String> = dims.iter().map(i64::to_string).collect();
    format!("[ {} ]", list.join(", "))
}

/// The one entry of the `input` or `output` list.
fn only_one<'c>(config: &'c Value, key: &str) -> Result<&'c Value, String> {
    let list = config
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    match list {
        [one] => Ok(one),
        _ => Err(format!(
            "an image model has exactly one {key} ({}), this one has {}",
            if key == "input" {
                "the encoded images, TYPE_STRING"
            } else {
                "the image tensors"
            },
            list.len()
        )),
    }
}

fn dims(tensor: &Value) -> Result<Vec<i64>, String> {
    let list = tensor
        .get("dims")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    list.iter()
        .map(|d| integer(Some(d)).ok_or_else(|| format!("dims hold {d}, not an integer")))
        .collect()
}

fn no_reshape(tensor: &Value) -> Result<(), String> {
    match tensor.get("reshape") {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err("reshape is not supported by the image backend".to_string()),
    }
}

/// The `layout` and `scaling` parameters; any other parameter is a mistake.
fn parameters(config: &Value) -> Result<(Format, Scaling), String> {
    let empty = serde_json::Map::new();
    let parameters = config
        .get("parameters")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if let Some(unknown) = parameters
        .keys()
        .find(|k| !PARAMETERS.contains(&k.as_str()))
    {
        return Err(format!(
            "unknown parameter '{unknown}'; an image model takes: {}",
            PARAMETERS.join(", ")
        ));
    }
    let value = |key: &str, allowed: &str| -> Result<String, String> {
        let entry = parameters.get(key).ok_or_else(|| {
            format!("parameter '{key}' is missing; its string_value is one of {allowed}")
        })?;
        string(entry.get("string_value"))
            .map(str::to_string)
            .ok_or_else(|| format!("parameter '{key}' has no string_value; one of {allowed}"))
    };

    let layouts: Vec<&str> = Format::ALL.iter().map(|f| f.layout()).collect();
    let layouts = layouts.join(", ");
    let text = value("layout", &layouts)?;
    let layout = Format::from_name(&text)
        .ok_or_else(|| format!("parameter 'layout' is '{text}'; allowed: {layouts}"))?;

    let scalings: Vec<&str> = Scaling::ALL.iter().map(|s| s.name()).collect();
    let scalings = scalings.join(", ");
    let text = value("scaling", &scalings)?;
    let scaling = Scaling::from_name(&text)
        .ok_or_else(|| format!("parameter 'scaling' is '{text}'; allowed: {scalings}"))?;
    Ok((layout, scaling))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ferrite_driver_sdk::ErrorCode;
    use serde_json::json;

    /// The example configuration as the host passes it, with `patch` merged into it.
    pub(crate) fn config(patch: Value) -> Value {
        let mut config = json!({
            "name": "preprocess_image",
            "backend": "image",
            "max_batch_size": 8,
            "input": [{"name": "IMAGE", "data_type": "TYPE_STRING", "dims": [1]}],
            "output": [{"name": "input", "data_type": "TYPE_FP32", "dims": [3, 224, 224]}],
            "parameters": {
                "layout": {"string_value": "NCHW"},
                "scaling": {"string_value": "LITE"}
            }
        });
        for (k, v) in patch.as_object().unwrap() {
            config[k] = v.clone();
        }
        config
    }

    fn refused(patch: Value) -> String {
        let err = ImageModel::from_config("preprocess_image", &config(patch)).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArg, "{}", err.message);
        assert!(
            err.message.starts_with("model 'preprocess_image': "),
            "{}",
            err.message
        );
        err.message
    }

    #[test]
    fn reads_the_example() {
        let m = ImageModel::from_config("preprocess_image", &config(json!({}))).unwrap();
        assert_eq!(m.input, "IMAGE");
        assert_eq!(m.output, "input");
        assert_eq!(m.output_type, DataType::Fp32);
        assert_eq!(
            m.spec,
            InputSpec {
                channels: 3,
                height: 224,
                width: 224,
                format: Format::Nchw,
                datatype: ElementType::Fp32
            }
        );
        assert_eq!(m.scaling, Scaling::Lite);
        assert!(m.batching);
    }

    #[test]
    fn layouts_scalings_and_types() {
        let m = ImageModel::from_config(
            "m",
            &config(json!({
                "output": [{"name": "x", "data_type": "TYPE_UINT8", "dims": ["120", "160", "1"]}],
                "parameters": {
                    "layout": {"string_value": "nhwc"},
                    "scaling": {"string_value": "VGG"}
                }
            })),
        )
        .unwrap();
        assert_eq!(
            (m.spec.channels, m.spec.height, m.spec.width),
            (1, 120, 160)
        );
        assert_eq!(m.spec.format, Format::Nhwc);
        assert_eq!(m.spec.datatype, ElementType::Uint8);
        assert_eq!(m.output_type, DataType::Uint8);
        assert_eq!(m.scaling, Scaling::Vgg);
    }

    #[test]
    fn without_batching() {
        let m = ImageModel::from_config("m", &config(json!({"max_batch_size": 0}))).unwrap();
        assert!(!m.batching);
        assert_eq!(m.output_dims, vec![3, 224, 224]);
        let m = ImageModel::from_config(
            "m",
            &config(json!({
                "max_batch_size": 0,
                "output": [{"name": "x", "data_type": "TYPE_FP16", "dims": [1, 3, 8, 8]}]
            })),
        )
        .unwrap();
        assert_eq!(m.output_dims, vec![1, 3, 8, 8]);
        assert_eq!(m.spec.height, 8);
        // a leading 1 is a batch of one only without batching
        let e = refused(json!({
            "output": [{"name": "x", "data_type": "TYPE_FP32", "dims": [1, 3, 8, 8]}]
        }));
        assert!(e.contains("must have 3 dimensions"), "{e}");
    }

    #[test]
    fn refuses_bad_inputs() {
        let e = refused(json!({"input": []}));
        assert!(e.contains("exactly one input"), "{e}");
        let two = json!({"name": "A", "data_type": "TYPE_STRING", "dims": [1]});
        let e = refused(json!({"input": [two.clone(), two]}));
        assert!(e.contains("this one has 2"), "{e}");
        let e = refused(json!({
            "input": [{"name": "IMAGE", "data_type": "TYPE_UINT8", "dims": [1]}]
        }));
        assert_eq!(
            e,
            "model 'preprocess_image': input 'IMAGE' must be TYPE_STRING (encoded PNG or JPEG images), not TYPE_UINT8"
        );
        let e = refused(json!({
            "input": [{"name": "IMAGE", "data_type": "TYPE_STRING", "dims": [-1]}]
        }));
        assert!(e.contains("must have dims [ 1 ]"), "{e}");
        let e = refused(json!({
            "input": [{"name": "IMAGE", "data_type": "TYPE_STRING", "dims": [1],
                       "reshape": {"shape": []}}]
        }));
        assert!(e.contains("reshape"), "{e}");
    }

    #[test]
    fn refuses_bad_outputs() {
        let out = |data_type: &str, dims: Value| json!({"output": [{"name": "input", "data_type": data_type, "dims": dims}]});
        let e = refused(json!({"output": []}));
        assert!(e.contains("exactly one output"), "{e}");
        let e = refused(out("TYPE_STRING", json!([3, 224, 224])));
        assert!(
            e.contains("output 'input': data_type TYPE_STRING")
                && e.contains("allowed: TYPE_UINT8, TYPE_INT8")
                && e.contains("TYPE_FP32"),
            "{e}"
        );
        let e = refused(out("TYPE_FP32", json!([224, 224])));
        assert!(e.contains("[ C, H, W ] for layout NCHW"), "{e}");
        let e = refused(out("TYPE_FP32", json!([224, 224, 3])));
        assert!(e.contains("224 channels for layout NCHW"), "{e}");
        let e = refused(out("TYPE_FP32", json!([3, -1, 224])));
        assert!(
            e.contains("height -1; it must be fixed, from 1 to 16384"),
            "{e}"
        );
        let e = refused(out("TYPE_FP32", json!([3, 224, 0])));
        assert!(e.contains("width 0"), "{e}");
        let e = refused(out("TYPE_FP64", json!([3, 16384, 16384])));
        assert!(e.contains("bytes per image"), "{e}");
        let e = refused(out("TYPE_FP32", json!([3, "x", 4])));
        assert!(e.contains("not an integer"), "{e}");
    }

    #[test]
    fn refuses_bad_parameters() {
        let params = |p: Value| json!({ "parameters": p });
        let e = refused(params(json!({"layout": {"string_value": "NCHW"}})));
        assert_eq!(
            e,
            "model 'preprocess_image': parameter 'scaling' is missing; its string_value is one of NONE, INCEPTION, VGG, LITE"
        );
        let e = refused(params(json!({
            "layout": {"string_value": "CHW"},
            "scaling": {"string_value": "LITE"}
        })));
        assert_eq!(
            e,
            "model 'preprocess_image': parameter 'layout' is 'CHW'; allowed: NCHW, NHWC"
        );
        let e = refused(params(json!({
            "layout": {"string_value": "NCHW"},
            "scaling": {"string_value": "MEAN"}
        })));
        assert!(e.ends_with("allowed: NONE, INCEPTION, VGG, LITE"), "{e}");
        let e = refused(params(json!({
            "layout": {"string_value": "NCHW"},
            "scaling": {"string_value": "LITE"},
            "scalling": {"string_value": "LITE"}
        })));
        assert!(e.contains("unknown parameter 'scalling'"), "{e}");
        let e = refused(params(json!({})));
        assert!(e.contains("parameter 'layout' is missing"), "{e}");
        let e = refused(json!({"max_batch_size": -1}));
        assert!(e.contains("max_batch_size"), "{e}");
    }
}
