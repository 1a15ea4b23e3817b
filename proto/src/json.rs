//! [`ModelConfig`] to and from JSON, in the form of Triton's HTTP
//! `GET /v2/models/{model}/config`.
//!
//! Triton prints the protobuf JSON mapping with the proto field names and
//! every non-message field even when it holds its default, then turns the
//! 64-bit integers (strings in protobuf JSON) back into numbers.
//! [`model_config_to_json`] does the same walk over the descriptor:
//!
//! - fields in declaration order (the order of `model_config.proto`);
//! - scalars, enums, lists and maps always present (`""`, `0`, `false`,
//!   the enum's zero name, `[]`, `{}`);
//! - message fields and oneof members only when set;
//! - enums by name, 64-bit integers as JSON numbers;
//! - floats as protobuf prints them: integral values without a fraction
//!   (`1`, not `1.0`), others in their shortest form (`0.1` for an f32 0.1);
//! - map entries sorted by key.

use prost_reflect::{
    DeserializeOptions, DynamicMessage, Kind, MapKey, ReflectMessage, Value as PValue,
};
use serde_json::{Map, Number, Value};

use crate::{inference::ModelConfig, model_config_descriptor};

/// Renders a configuration as Triton's HTTP API shows it.
pub fn model_config_to_json(cfg: &ModelConfig) -> Value {
    let mut message = DynamicMessage::new(model_config_descriptor());
    message
        .transcode_from(cfg)
        .expect("ModelConfig and its descriptor come from the same .proto");
    message_to_json(&message)
}

/// Parses a configuration from protobuf JSON (proto or JSON field names,
/// enums by name or number, 64-bit integers as numbers or strings).
/// Unknown fields are errors.
pub fn model_config_from_json(v: &Value) -> Result<ModelConfig, String> {
    let message = DynamicMessage::deserialize_with_options(
        model_config_descriptor(),
        v,
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .map_err(|e| format!("invalid model configuration JSON: {e}"))?;
    message
        .transcode_to::<ModelConfig>()
        .map_err(|e| format!("invalid model configuration JSON: {e}"))
}

fn message_to_json(message: &DynamicMessage) -> Value {
    let desc = message.descriptor();
    let mut object = Map::new();
    // `fields()` iterates by number; the descriptor proto keeps the order
    // of declaration, which is the order Triton prints.
    for number in desc.descriptor_proto().field.iter().map(|f| f.number()) {
        let Some(field) = u32::try_from(number).ok().and_then(|n| desc.get_field(n)) else {
            continue;
        };
        if field.supports_presence() && !message.has_field(&field) {
            continue;
        }
        let value = message.get_field(&field);
        object.insert(
            field.name().to_owned(),
            value_to_json(&value, &field.kind()),
        );
    }
    Value::Object(object)
}

fn value_to_json(value: &PValue, kind: &Kind) -> Value {
    match value {
        PValue::Bool(b) => Value::Bool(*b),
        PValue::I32(n) => Value::from(*n),
        PValue::I64(n) => Value::from(*n),
        PValue::U32(n) => Value::from(*n),
        PValue::U64(n) => Value::from(*n),
        // An f32's shortest decimal form, read back as f64, prints as short.
        PValue::F32(x) => float_to_json(f64::from(*x), || x.to_string().parse().ok()),
        PValue::F64(x) => float_to_json(*x, || Some(*x)),
        PValue::String(s) => Value::String(s.clone()),
        PValue::Bytes(b) => Value::String(base64(b)),
        PValue::EnumNumber(n) => match kind.as_enum().and_then(|e| e.get_value(*n)) {
            Some(v) => Value::String(v.name().to_owned()),
            None => Value::from(*n),
        },
        PValue::Message(m) => message_to_json(m),
        PValue::List(items) => Value::Array(items.iter().map(|v| value_to_json(v, kind)).collect()),
        PValue::Map(entries) => {
            let value_kind = kind
                .as_message()
                .map(|entry| entry.map_entry_value_field().kind())
                .unwrap_or_else(|| kind.clone());
            let mut sorted: Vec<_> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            let object = sorted
                .into_iter()
                .map(|(k, v)| (map_key_to_string(k), value_to_json(v, &value_kind)))
                .collect();
            Value::Object(object)
        }
    }
}

/// Integral values as integers; others as the shortest f64 that `short`
/// gives; non-finite values as protobuf JSON's strings.
fn float_to_json(x: f64, short: impl FnOnce() -> Option<f64>) -> Value {
    if x.is_nan() {
        return Value::String("NaN".into());
    }
    if x.is_infinite() {
        return Value::String(if x > 0.0 { "Infinity" } else { "-Infinity" }.into());
    }
    if x.fract() == 0.0 && x.abs() < 9.007_199_254_740_992e15 {
        return Value::from(x as i64);
    }
    short()
        .and_then(Number::from_f64)
        .or_else(|| Number::from_f64(x))
        .map_or(Value::Null, Value::Number)
}

fn map_key_to_string(key: &MapKey) -> String {
    match key {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
        MapKey::String(s) => s.clone(),
    }
}

/// Standard base64 with padding (protobuf JSON's form of bytes fields).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_model_config;

    // Bodies of Triton 2.51's GET /v2/models/{model}/config for three Python
    // models: add_sub, add_sub_dyn (dynamic batching) and identity_fp32.
    const ADD_SUB: &str = r#"{"name":"add_sub","platform":"","backend":"python","runtime":"","version_policy":{"latest":{"num_versions":1}},"max_batch_size":0,"input":[{"name":"INPUT0","data_type":"TYPE_FP32","format":"FORMAT_NONE","dims":[16],"is_shape_tensor":false,"allow_ragged_batch":false,"optional":false,"is_non_linear_format_io":false},{"name":"INPUT1","data_type":"TYPE_FP32","format":"FORMAT_NONE","dims":[16],"is_shape_tensor":false,"allow_ragged_batch":false,"optional":false,"is_non_linear_format_io":false}],"output":[{"name":"OUTPUT0","data_type":"TYPE_FP32","dims":[16],"label_filename":"","is_shape_tensor":false,"is_non_linear_format_io":false},{"name":"OUTPUT1","data_type":"TYPE_FP32","dims":[16],"label_filename":"","is_shape_tensor":false,"is_non_linear_format_io":false}],"batch_input":[],"batch_output":[],"optimization":{"priority":"PRIORITY_DEFAULT","input_pinned_memory":{"enable":true},"output_pinned_memory":{"enable":true},"gather_kernel_buffer_threshold":0,"eager_batching":false},"instance_group":[{"name":"add_sub_0","kind":"KIND_CPU","count":1,"gpus":[],"secondary_devices":[],"profile":[],"passive":false,"host_policy":""}],"default_model_filename":"model.py","cc_model_filenames":{},"metric_tags":{},"parameters":{},"model_warmup":[]}"#;
    const ADD_SUB_DYN: &str = r#"{"name":"add_sub_dyn","platform":"","backend":"python","runtime":"","version_policy":{"latest":{"num_versions":1}},"max_batch_size":8,"input":[{"name":"INPUT0","data_type":"TYPE_FP32","format":"FORMAT_NONE","dims":[16],"is_shape_tensor":false,"allow_ragged_batch":false,"optional":false,"is_non_linear_format_io":false},{"name":"INPUT1","data_type":"TYPE_FP32","format":"FORMAT_NONE","dims":[16],"is_shape_tensor":false,"allow_ragged_batch":false,"optional":false,"is_non_linear_format_io":false}],"output":[{"name":"OUTPUT0","data_type":"TYPE_FP32","dims":[16],"label_filename":"","is_shape_tensor":false,"is_non_linear_format_io":false},{"name":"OUTPUT1","data_type":"TYPE_FP32","dims":[16],"label_filename":"","is_shape_tensor":false,"is_non_linear_format_io":false}],"batch_input":[],"batch_output":[],"optimization":{"priority":"PRIORITY_DEFAULT","input_pinned_memory":{"enable":true},"output_pinned_memory":{"enable":true},"gather_kernel_buffer_threshold":0,"eager_batching":false},"dynamic_batching":{"preferred_batch_size":[4,8],"max_queue_delay_microseconds":100,"preserve_ordering":false,"priority_levels":0,"default_priority_level":0,"priority_queue_policy":{}},"instance_group":[{"name":"add_sub_dyn_0","kind":"KIND_CPU","count":1,"gpus":[],"secondary_devices":[],"profile":[],"passive":false,"host_policy":""}],"default_model_filename":"model.py","cc_model_filenames":{},"metric_tags":{},"parameters":{},"model_warmup":[]}"#;
    const IDENTITY_FP32: &str = r#"{"name":"identity_fp32","platform":"","backend":"python","runtime":"","version_policy":{"latest":{"num_versions":1}},"max_batch_size":8,"input":[{"name":"INPUT0","data_type":"TYPE_FP32","format":"FORMAT_NONE","dims":[-1],"is_shape_tensor":false,"allow_ragged_batch":false,"optional":false,"is_non_linear_format_io":false}],"output":[{"name":"OUTPUT0","data_type":"TYPE_FP32","dims":[-1],"label_filename":"","is_shape_tensor":false,"is_non_linear_format_io":false}],"batch_input":[],"batch_output":[],"optimization":{"priority":"PRIORITY_DEFAULT","input_pinned_memory":{"enable":true},"output_pinned_memory":{"enable":true},"gather_kernel_buffer_threshold":0,"eager_batching":false},"dynamic_batching":{"preferred_batch_size":[8],"max_queue_delay_microseconds":100,"preserve_ordering":false,"priority_levels":0,"default_priority_level":0,"priority_queue_policy":{}},"instance_group":[{"name":"identity_fp32","kind":"KIND_CPU","count":1,"gpus":[],"secondary_devices":[],"profile":[],"passive":false,"host_policy":""}],"default_model_filename":"model.py","cc_model_filenames":{},"metric_tags":{},"parameters":{},"model_warmup":[]}"#;

    /// The effective (auto-completed) configuration of a Python model with
    /// two FP32 inputs and outputs, as Triton holds it.
    fn effective_pbtxt(name: &str, dims: &str, io: usize, extra: &str) -> String {
        let tensors = |kind: &str, prefix: &str| {
            (0..io)
                .map(|i| {
                    format!(
                        "{kind} {{ name: \"{prefix}{i}\" data_type: TYPE_FP32 dims: {dims} }}\n"
                    )
                })
                .collect::<String>()
        };
        format!(
            "name: \"{name}\"\nbackend: \"python\"\nversion_policy: {{ latest: {{ num_versions: 1 }} }}\n\
             {}{}\
             optimization {{ input_pinned_memory {{ enable: true }} output_pinned_memory {{ enable: true }} }}\n\
             default_model_filename: \"model.py\"\n{extra}",
            tensors("input", "INPUT"),
            tensors("output", "OUTPUT"),
        )
    }

    fn render(pbtxt: &str) -> String {
        let cfg = parse_model_config(pbtxt).unwrap();
        serde_json::to_string(&model_config_to_json(&cfg)).unwrap()
    }

    #[test]
    fn add_sub_matches_triton_byte_for_byte() {
        let pbtxt = effective_pbtxt(
            "add_sub",
            "[ 16 ]",
            2,
            "max_batch_size: 0\ninstance_group [ { name: \"add_sub_0\" count: 1 kind: KIND_CPU } ]",
        );
        assert_eq!(render(&pbtxt), ADD_SUB);
    }

    #[test]
    fn add_sub_dyn_matches_triton_byte_for_byte() {
        let pbtxt = effective_pbtxt(
            "add_sub_dyn",
            "[ 16 ]",
            2,
            "max_batch_size: 8\n\
             dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 100 }\n\
             instance_group [ { name: \"add_sub_dyn_0\" count: 1 kind: KIND_CPU } ]",
        );
        assert_eq!(render(&pbtxt), ADD_SUB_DYN);
    }

    #[test]
    fn identity_fp32_matches_triton_byte_for_byte() {
        let pbtxt = effective_pbtxt(
            "identity_fp32",
            "[ -1 ]",
            1,
            "max_batch_size: 8\n\
             dynamic_batching { preferred_batch_size: 8 max_queue_delay_microseconds: 100 }\n\
             instance_group { name: \"identity_fp32\" count: 1 kind: KIND_CPU }",
        );
        assert_eq!(render(&pbtxt), IDENTITY_FP32);
    }

    #[test]
    fn json_round_trips() {
        for body in [ADD_SUB, ADD_SUB_DYN, IDENTITY_FP32] {
            let value: Value = serde_json::from_str(body).unwrap();
            let cfg = model_config_from_json(&value).unwrap();
            assert_eq!(
                serde_json::to_string(&model_config_to_json(&cfg)).unwrap(),
                body
            );
        }
    }

    #[test]
    fn empty_config_prints_every_default() {
        let json = model_config_to_json(&ModelConfig::default());
        let keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "name",
                "platform",
                "backend",
                "runtime",
                "max_batch_size",
                "input",
                "output",
                "batch_input",
                "batch_output",
                "instance_group",
                "default_model_filename",
                "cc_model_filenames",
                "metric_tags",
                "parameters",
                "model_warmup"
            ]
        );
    }

    #[test]
    fn floats_64_bit_ints_maps_and_oneofs() {
        let cfg = parse_model_config(
            r#"
version_policy { specific { versions: [ 3, 1 ] } }
sequence_batching {
  direct { max_queue_delay_microseconds: 18446744073709551615 minimum_slot_utilization: 0.1 }
  control_input [ { name: "S" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1.5 ] } ] } ]
  state [ { input_name: "i" output_name: "o" dims: [ -1 ] initial_state { dims: [ 2 ] zero_data: true } } ]
}
parameters [ { key: "z" value { string_value: "1" } }, { key: "a" value { string_value: "2" } } ]
"#,
        )
        .unwrap();
        let json = model_config_to_json(&cfg);
        assert_eq!(
            json["version_policy"].to_string(),
            r#"{"specific":{"versions":[3,1]}}"#
        );
        let sb = &json["sequence_batching"];
        assert_eq!(
            sb["direct"].to_string(),
            r#"{"max_queue_delay_microseconds":18446744073709551615,"minimum_slot_utilization":0.1}"#
        );
        assert_eq!(
            sb["control_input"][0]["control"][0]["fp32_false_true"].to_string(),
            "[0,1.5]"
        );
        // oneof member first (declaration order), unset oldest omitted.
        let keys: Vec<_> = sb.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "direct",
                "max_sequence_idle_microseconds",
                "control_input",
                "state",
                "iterative_sequence"
            ]
        );
        let initial = &sb["state"][0]["initial_state"][0];
        assert_eq!(
            initial.to_string(),
            r#"{"data_type":"TYPE_INVALID","dims":[2],"zero_data":true,"name":""}"#
        );
        assert_eq!(
            json["parameters"].to_string(),
            r#"{"a":{"string_value":"2"},"z":{"string_value":"1"}}"#
        );
        assert_eq!(model_config_from_json(&json).unwrap(), cfg);
    }

    #[test]
    fn priority_queue_policy_keys_are_strings_in_numeric_order() {
        let cfg = parse_model_config(
            "dynamic_batching { priority_queue_policy { key: 10 value { max_queue_size: 1 } } \
             priority_queue_policy { key: 9 value { default_timeout_microseconds: 7 } } }",
        )
        .unwrap();
        let json = model_config_to_json(&cfg);
        assert_eq!(
            json["dynamic_batching"]["priority_queue_policy"].to_string(),
            r#"{"9":{"timeout_action":"REJECT","default_timeout_microseconds":7,"allow_timeout_override":false,"max_queue_size":0},"10":{"timeout_action":"REJECT","default_timeout_microseconds":0,"allow_timeout_override":false,"max_queue_size":1}}"#
        );
        assert_eq!(model_config_from_json(&json).unwrap(), cfg);
    }

    #[test]
    fn from_json_accepts_protobuf_json_variants_and_rejects_unknown_fields() {
        let v = serde_json::json!({
            "name": "m",
            "maxBatchSize": 4,
            "input": [{ "name": "x", "data_type": 11, "dims": ["-1", 3] }],
            "instance_group": [{ "kind": "KIND_GPU", "gpus": [0] }],
            "dynamic_batching": { "max_queue_delay_microseconds": "100" }
        });
        let cfg = model_config_from_json(&v).unwrap();
        assert_eq!(cfg.max_batch_size, 4);
        assert_eq!(cfg.input[0].dims, vec![-1, 3]);
        assert_eq!(
            cfg.input[0].data_type(),
            crate::inference::DataType::TypeFp32
        );
        let err = model_config_from_json(&serde_json::json!({ "max_batchsize": 1 })).unwrap_err();
        assert!(err.contains("max_batchsize"), "{err}");
        assert!(model_config_from_json(&serde_json::json!({ "input": 3 })).is_err());
    }

    #[test]
    fn base64_encodes() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
