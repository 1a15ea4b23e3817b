//! An inference request body -> a core `InferenceRequest`: the JSON header, tensor data given
//! as JSON (flat or nested) or as binary after the header (binary tensor extension, sliced
//! from the body without copies, or read in place from a registered shared memory region),
//! request parameters, requested outputs (some of them bound for shared memory). Checks and
//! texts follow Triton 2.51's http_server.cc, in its order: id, parameters, each input
//! (fields, shape, data), left-over binary data, outputs.

use bytes::Bytes;
use ferrite_core::request::{InferenceRequest, Parameters, RequestedOutput};
use ferrite_core::shm::{OutputRegion, RegionRef, SharedMemory};
use ferrite_core::{DataType, Error, Tensor};
use serde_json::Value as JsonValue;

use crate::json::{self, Number, NumberValue, Scalar, Value};

/// How one output goes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// JSON `data`.
    Json,
    /// After the JSON header (binary tensor data extension).
    Binary,
    /// Written into a shared memory region; the reply names it without data.
    SharedMemory,
}

/// How each output goes back: JSON `data`, binary after the JSON header, or into shared
/// memory.
#[derive(Clone, Debug, Default)]
pub struct OutputKinds {
    /// For outputs the request does not name (`binary_data_output`, or a raw request).
    pub default_binary: bool,
    /// Outputs the request names, with their `binary_data`.
    pub named: Vec<(String, bool)>,
    /// Outputs the request puts in shared memory, with where (checked when the request was
    /// read, as Triton does).
    pub shm: Vec<(String, OutputRegion)>,
}

impl OutputKinds {
    pub fn kind(&self, name: &str) -> OutputKind {
        if self.shm.iter().any(|(n, _)| n == name) {
            return OutputKind::SharedMemory;
        }
        let binary = self
            .named
            .iter()
            .find(|(n, _)| n == name)
            .map_or(self.default_binary, |(_, b)| *b);
        if binary {
            OutputKind::Binary
        } else {
            OutputKind::Json
        }
    }

    /// Where a shared memory output goes.
    pub fn region(&self, name: &str) -> Option<&OutputRegion> {
        self.shm.iter().find(|(n, _)| n == name).map(|(_, r)| r)
    }
}

/// A decoded request and how its reply should look.
#[derive(Debug)]
pub struct Decoded {
    pub request: InferenceRequest,
    pub outputs: OutputKinds,
}

/// A raw request (no JSON header; Triton's `Inference-Header-Content-Length: 0`): the whole body
/// is the single input's data; the core deduces its name, type and shape. Outputs go back as
/// binary.
pub fn raw_request(model_name: &str, version: Option<i64>, body: Bytes) -> Decoded {
    let len = body.len() as i64;
    Decoded {
        request: InferenceRequest {
            model_name: model_name.to_string(),
            model_version: version,
            inputs: vec![Tensor::new("", DataType::Uint8, vec![len], body)],
            raw_input: true,
            ..Default::default()
        },
        outputs: OutputKinds {
            default_binary: true,
            named: Vec::new(),
            shm: Vec::new(),
        },
    }
}

/// TritonJson's errors: code INTERNAL (HTTP 500), like Triton.
fn json_error(context: &str, what: &str) -> Error {
    Error::internal(format!("Unable to parse '{context}': {what}"))
}

const NOT_STRING: &str = "attempt to access JSON non-string as string";
const NOT_BOOL: &str = "attempt to access JSON non-boolean as boolean";
const NOT_UINT: &str = "attempt to access JSON non-unsigned-integer as unsigned-integer";
const NOT_INT: &str = "attempt to access JSON non-signed-integer as signed-integer";
const NOT_NUMBER: &str = "attempt to access JSON non-number as double";
const NOT_ARRAY: &str = "attempt to access JSON non-array as array";

fn missing(name: &str) -> String {
    format!("attempt to access non-existing object member '{name}'")
}

/// A required string member (`MemberAsString`).
fn member_str<'v>(obj: &'v Value<'_>, name: &str) -> Result<&'v [u8], Error> {
    match obj.get(name) {
        None => Err(json_error(name, &missing(name))),
        Some(v) => v.as_str_bytes().ok_or_else(|| json_error(name, NOT_STRING)),
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parses the JSON header of an inference request; `binary` is what follows it in the body;
/// `shm` holds the regions inputs may come from and outputs go to.
pub fn json_request(
    model_name: &str,
    version: Option<i64>,
    header: &[u8],
    binary: Bytes,
    shm: &SharedMemory,
) -> Result<Decoded, Error> {
    let root = json::parse(header).map_err(|e| {
        if e.kind == json::ErrorKind::TooDeep {
            Error::invalid_arg(e.to_string())
        } else {
            Error::internal(format!("failed to parse the request JSON buffer: {e}"))
        }
    })?;
    let mut request = InferenceRequest {
        model_name: model_name.to_string(),
        model_version: version,
        ..Default::default()
    };
    let mut kinds = OutputKinds::default();

    if let Some(id) = root.get("id") {
        request.id = lossy(
            id.as_str_bytes()
                .ok_or_else(|| json_error("id", NOT_STRING))?,
        );
    }
    if let Some(params) = root.get("parameters") {
        request.parameters = request_parameters(params, &mut kinds)?;
    }

    let inputs = match root.get("inputs") {
        None => return Err(json_error("inputs", &missing("inputs"))),
        Some(Value::Array(inputs)) => inputs.as_slice(),
        Some(_) => return Err(json_error("inputs", NOT_ARRAY)),
    };
    let mut binary = BinarySection { rest: binary };
    for input in inputs {
        request
            .inputs
            .push(input_tensor(model_name, input, &mut binary, shm)?);
    }
    if !binary.rest.is_empty() {
        return Err(Error::invalid_arg(format!(
            "unexpected additional input data for model '{model_name}'"
        )));
    }

    if let Some(outputs) = root.get("outputs") {
        let Value::Array(outputs) = outputs else {
            return Err(json_error("outputs", NOT_ARRAY));
        };
        for output in outputs {
            let (requested, kind) = requested_output(output, shm)?;
            match kind {
                Destination::Region(region) => kinds.shm.push((requested.name.clone(), region)),
                Destination::Binary(binary) => kinds.named.push((requested.name.clone(), binary)),
            }
            request.outputs.push(requested);
        }
    }
    Ok(Decoded {
        request,
        outputs: kinds,
    })
}

/// The request-level `parameters` (Triton's `ParseJsonTritonParams`).
fn request_parameters(params: &Value<'_>, kinds: &mut OutputKinds) -> Result<Parameters, Error> {
    let Value::Object(members) = params else {
        return Err(Error::internal(
            "failed to get request params.: attempt to get members for non-object",
        ));
    };
    let mut out = Parameters::new();
    for (key, value) in members {
        let name = lossy(key);
        let converted = match name.as_str() {
            "sequence_id" => match value {
                Value::Number(n) if n.as_u64().is_some() => JsonValue::from(n.as_u64()),
                Value::String(s) => JsonValue::String(lossy(s)),
                _ => return Err(json_error("sequence_id", NOT_STRING)),
            },
            "sequence_start" | "sequence_end" => {
                JsonValue::Bool(value.as_bool().ok_or_else(|| json_error(&name, NOT_BOOL))?)
            }
            "priority" | "timeout" => {
                JsonValue::from(value.as_u64().ok_or_else(|| json_error(&name, NOT_UINT))?)
            }
            "binary_data_output" => {
                kinds.default_binary =
                    value.as_bool().ok_or_else(|| json_error(&name, NOT_BOOL))?;
                continue;
            }
            _ if name.starts_with("triton_") => {
                return Err(Error::invalid_arg(
                    "parameter keys starting with 'triton_' are reserved for Triton usage and should not be specified.",
                ));
            }
            _ => match value {
                Value::String(s) => JsonValue::String(lossy(s)),
                Value::Bool(b) => JsonValue::Bool(*b),
                Value::Number(n) => number_to_json(n),
                _ => {
                    return Err(Error::invalid_arg(format!(
                        "parameter '{name}' has invalid type. It should be either 'int', 'bool', or 'string'."
                    )));
                }
            },
        };
        out.insert(name, converted);
    }
    Ok(out)
}

fn number_to_json(n: &Number<'_>) -> JsonValue {
    match n.value() {
        NumberValue::Int(i) => JsonValue::from(i),
        NumberValue::Uint(u) => JsonValue::from(u as f64),
        NumberValue::Double(d) => {
            serde_json::Number::from_f64(d).map_or(JsonValue::Null, JsonValue::Number)
        }
    }
}

/// Any JSON value as `serde_json` (output parameters handed to the core).
fn to_json(v: &Value<'_>) -> JsonValue {
    match v {
        Value::Null => JsonValue::Null,
        Value::Bool(b) => JsonValue::Bool(*b),
        Value::Number(n) => number_to_json(n),
        Value::String(s) => JsonValue::String(lossy(s)),
        Value::Array(a) => JsonValue::Array(a.iter().map(to_json).collect()),
        Value::Object(o) => {
            JsonValue::Object(o.iter().map(|(k, v)| (lossy(k), to_json(v))).collect())
        }
        Value::Data(text) => json::parse_eager(text).map_or(JsonValue::Null, |v| to_json(&v)),
        // Only control bodies keep values this deep; never a request parameter.
        Value::Nested(_) => JsonValue::Null,
    }
}

/// The bytes after the JSON header, handed out in input order.
struct BinarySection {
    rest: Bytes,
}

/// Triton's `CheckSharedMemoryData`: the `shared_memory_region` (string),
/// `shared_memory_offset` and `shared_memory_byte_size` (unsigned, 0 when absent) parameters
/// of an input or output, each checked when present; `None` without a region.
fn shm_parameters(params: Option<&Value<'_>>) -> Result<Option<RegionRef>, Error> {
    let Some(params) = params else {
        return Ok(None);
    };
    let region = params
        .get("shared_memory_region")
        .map(|r| {
            r.as_str_bytes()
                .map(lossy)
                .ok_or_else(|| json_error("shared_memory_region", NOT_STRING))
        })
        .transpose()?;
    let number = |field: &str| match params.get(field) {
        None => Ok(0),
        Some(v) => v.as_u64().ok_or_else(|| json_error(field, NOT_UINT)),
    };
    let offset = number("shared_memory_offset")?;
    let byte_size = number("shared_memory_byte_size")?;
    Ok(region.map(|region| RegionRef {
        region,
        offset,
        byte_size,
    }))
}

/// One entry of `inputs` (Triton's `ParseJsonTritonIO`, per input).
fn input_tensor(
    model_name: &str,
    input: &Value<'_>,
    binary: &mut BinarySection,
    shm: &SharedMemory,
) -> Result<Tensor, Error> {
    let params = input.get("parameters");
    let has_data = input.get("data").is_some();
    let has_binary = params.and_then(|p| p.get("binary_data_size")).is_some();
    let has_shm = params.and_then(|p| p.get("shared_memory_region")).is_some();
    if usize::from(has_data) + usize::from(has_binary) + usize::from(has_shm) != 1 {
        let mut message = String::from(
            "Input must set only one of the following fields: 'data', 'binary_data_size' in 'parameters', \
             'shared_memory_region' in 'parameters'. But",
        );
        if !(has_data || has_binary || has_shm) {
            message.push_str(" no field is set");
        } else {
            message.push_str(" set");
            for (set, field) in [
                (has_data, " 'data'"),
                (has_binary, " 'binary_data_size'"),
                (has_shm, " 'shared_memory_region'"),
            ] {
                if set {
                    message.push_str(field);
                }
            }
        }
        return Err(Error::invalid_arg(message));
    }

    let name = lossy(member_str(input, "name")?);
    let datatype_name = member_str(input, "datatype")?;
    let shape = match input.get("shape") {
        None => return Err(json_error("shape", &missing("shape"))),
        Some(Value::Array(dims)) => dims
            .iter()
            .map(|d| {
                d.as_u64()
                    .ok_or_else(|| json_error("shape", NOT_UINT))
                    .and_then(|d| {
                        i64::try_from(d).map_err(|_| {
                            Error::invalid_arg(format!(
                                "shape dimension {d} of input '{name}' is too large"
                            ))
                        })
                    })
            })
            .collect::<Result<Vec<i64>, Error>>()?,
        Some(_) => return Err(json_error("shape", NOT_ARRAY)),
    };
    let datatype = std::str::from_utf8(datatype_name)
        .ok()
        .and_then(DataType::from_wire_name)
        .ok_or_else(|| Error::invalid_arg(format!("invalid datatype for input {name}")))?;

    if has_binary {
        let size = params
            .and_then(|p| p.get("binary_data_size"))
            .and_then(Value::as_u64)
            .ok_or_else(|| json_error("binary_data_size", NOT_UINT))?;
        let available = binary.rest.len() as u64;
        if size > available {
            return Err(Error::invalid_arg(format!(
                "unexpected size for input '{name}', expecting {} additional bytes for model '{model_name}'",
                size - available
            )));
        }
        let data = binary.rest.split_to(size as usize);
        return Ok(Tensor::new(name, datatype, shape, data));
    }

    // Not binary: Triton reads the shared memory parameters whether or not a region is named.
    if let Some(at) = shm_parameters(params)? {
        // In place: the tensor's bytes are the region's, kept mapped while the request lives.
        let data = shm.input(&at)?;
        return Ok(Tensor::new(name, datatype, shape, data));
    }

    // Triton's GetElementCount: the product of the dims, refused past INT64_MAX.
    let count = shape
        .iter()
        .try_fold(1i64, |acc, &d| acc.checked_mul(d))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            ferrite_core::texts::element_count_overflow(
                &name,
                &ferrite_core::tensor::shape_string(&shape),
            )
        })?;
    if count == 0 {
        return Ok(Tensor::new(name, datatype, shape, Bytes::new()));
    }
    let Some(Value::Data(data)) = input.get("data") else {
        return Err(json_error("data", NOT_ARRAY));
    };
    let bytes = json_data(datatype, data, count)?;
    Ok(Tensor::new(name, datatype, shape, bytes))
}

fn shape_mismatch() -> Error {
    Error::internal("Unable to parse 'data': Shape does not match true shape of 'data' field")
}

/// A `data` element of the wrong JSON type (TritonJson's INTERNAL, as in Triton).
fn data_error(what: &str) -> Error {
    Error::internal(format!("Unable to parse 'data': {what}"))
}

fn out_of_range(n: &Number<'_>, datatype: DataType) -> Error {
    Error::invalid_arg(format!(
        "Unable to parse 'data': value {} is out of range for {datatype}",
        String::from_utf8_lossy(n.text())
    ))
}

/// Reads a `data` array (nesting flattened) as `count` elements of `datatype`, little-endian;
/// BYTES as Triton's length-prefixed elements (their count is left to the core to check).
pub fn json_data(datatype: DataType, data: &[u8], count: usize) -> Result<Bytes, Error> {
    let element = datatype.element_size().unwrap_or(1);
    // Each element takes at least two bytes of text ("1,"), which bounds what a shape can make
    // us reserve.
    let mut out: Vec<u8> =
        Vec::with_capacity(count.min(data.len() / 2 + 1).saturating_mul(element));
    let mut seen = 0usize;
    json::for_each_scalar(data, |s| {
        if datatype != DataType::Bytes && seen >= count {
            return Err(shape_mismatch());
        }
        seen += 1;
        push_scalar(&mut out, datatype, s)
    })?;
    if datatype != DataType::Bytes && seen != count {
        return Err(shape_mismatch());
    }
    Ok(Bytes::from(out))
}

fn push_scalar(out: &mut Vec<u8>, datatype: DataType, s: Scalar<'_>) -> Result<(), Error> {
    macro_rules! int {
        ($t:ty, $get:ident, $what:expr) => {{
            let Scalar::Number(n) = s else {
                return Err(data_error($what));
            };
            let v = n.$get().ok_or_else(|| data_error($what))?;
            let v = <$t>::try_from(v).map_err(|_| out_of_range(&n, datatype))?;
            out.extend_from_slice(&v.to_le_bytes());
        }};
    }
    let number = |s: &Scalar<'_>| match s {
        Scalar::Number(n) => Ok(n.as_f64()),
        _ => Err(data_error(NOT_NUMBER)),
    };
    match datatype {
        DataType::Bool => match s {
            Scalar::Bool(b) => out.push(u8::from(b)),
            _ => return Err(data_error(NOT_BOOL)),
        },
        DataType::Uint8 => int!(u8, as_u64, NOT_UINT),
        DataType::Uint16 => int!(u16, as_u64, NOT_UINT),
        DataType::Uint32 => int!(u32, as_u64, NOT_UINT),
        DataType::Uint64 => int!(u64, as_u64, NOT_UINT),
        DataType::Int8 => int!(i8, as_i64, NOT_INT),
        DataType::Int16 => int!(i16, as_i64, NOT_INT),
        DataType::Int32 => int!(i32, as_i64, NOT_INT),
        DataType::Int64 => int!(i64, as_i64, NOT_INT),
        DataType::Fp16 => out.extend_from_slice(&half::f16::from_f64(number(&s)?).to_le_bytes()),
        DataType::Bf16 => out.extend_from_slice(&half::bf16::from_f64(number(&s)?).to_le_bytes()),
        DataType::Fp32 => out.extend_from_slice(&(number(&s)? as f32).to_le_bytes()),
        DataType::Fp64 => out.extend_from_slice(&number(&s)?.to_le_bytes()),
        DataType::Bytes => match s {
            Scalar::String(b) => ferrite_core::tensor::push_bytes_element(out, &b),
            _ => return Err(data_error(NOT_STRING)),
        },
    }
    Ok(())
}

/// Where a requested output goes: binary or not, or a shared memory region.
enum Destination {
    Binary(bool),
    Region(OutputRegion),
}

/// One entry of `outputs`: the core's `RequestedOutput` and where it goes.
fn requested_output(
    output: &Value<'_>,
    shm: &SharedMemory,
) -> Result<(RequestedOutput, Destination), Error> {
    let params = output.get("parameters");
    if let Some(p) = params
        && p.get("shared_memory_region").is_some()
    {
        if p.get("classification").is_some() {
            return Err(Error::invalid_arg(
                "Output can't set both 'shared_memory_region' and 'classification'",
            ));
        }
        if let Some(b) = p.get("binary_data") {
            let b = b.as_bool().ok_or_else(|| {
                Error::internal(format!("Unable to set 'binary_data': {NOT_BOOL}"))
            })?;
            if b {
                return Err(Error::invalid_arg(
                    "Output can't set both 'shared_memory_region' and 'binary_data'",
                ));
            }
        }
    }
    let name = lossy(member_str(output, "name")?);
    let mut classification = None;
    let mut binary = false;
    let mut parameters = Parameters::new();
    if let Some(c) = params.and_then(|p| p.get("classification")) {
        let c = c.as_u64().ok_or_else(|| {
            Error::internal(format!("Unable to set 'classification': {NOT_UINT}"))
        })?;
        classification = (c > 0).then(|| usize::try_from(c).unwrap_or(usize::MAX));
    }
    // Triton's GetMemoryInfo, when the request is read: the region exists and the span fits.
    let region = match shm_parameters(params)? {
        Some(at) => Some(shm.output(&at)?),
        None => None,
    };
    if let Some(p) = params {
        if region.is_none()
            && let Some(b) = p.get("binary_data")
        {
            binary = b
                .as_bool()
                .ok_or_else(|| json_error("binary_data", NOT_BOOL))?;
        }
        if let JsonValue::Object(map) = to_json(p) {
            parameters = map;
        }
    }
    Ok((
        RequestedOutput {
            name,
            classification,
            parameters,
        },
        match region {
            Some(region) => Destination::Region(region),
            None => Destination::Binary(binary),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(header: &str, binary: &[u8]) -> Result<Decoded, Error> {
        json_request(
            "m",
            None,
            header.as_bytes(),
            Bytes::copy_from_slice(binary),
            &SharedMemory::default(),
        )
    }

    fn err(header: &str) -> (ferrite_core::ErrorCode, String) {
        let e = decode(header, b"").unwrap_err();
        (e.code(), e.message().to_string())
    }

    fn one_input(datatype: &str, shape: &str, data: &str) -> Result<Bytes, Error> {
        let h = format!(
            r#"{{"inputs":[{{"name":"X","datatype":"{datatype}","shape":{shape},"data":{data}}}]}}"#
        );
        decode(&h, b"").map(|d| d.request.inputs[0].data.clone())
    }

    #[test]
    fn an_element_count_past_int64_max_gets_tritons_text() {
        let e = one_input("BYTES", "[4294967296,4294967296]", r#"["a"]"#).unwrap_err();
        assert_eq!(e.code(), ferrite_core::ErrorCode::InvalidArg);
        assert_eq!(
            e.message(),
            "invalid shape for input 'X': shape [4294967296,4294967296] causes total element count to exceed maximum size of 9223372036854775807"
        );
    }

    #[test]
    fn json_request_with_everything() {
        let d = decode(
            r#"{"id":"req-1","parameters":{"binary_data_output":true,"sequence_id":7,"custom":"x","f":1.5},
               "inputs":[{"name":"INPUT0","shape":[2,2],"datatype":"FP32","data":[[1,2.5],[-3,4e0]]}],
               "outputs":[{"name":"OUT","parameters":{"binary_data":false,"classification":3}},{"name":"O2"}]}"#,
            b"",
        )
        .unwrap();
        let r = &d.request;
        assert_eq!(r.id, "req-1");
        assert_eq!(r.model_name, "m");
        assert_eq!(
            r.parameters.get("sequence_id"),
            Some(&JsonValue::from(7u64))
        );
        assert_eq!(r.parameters.get("custom"), Some(&JsonValue::from("x")));
        assert_eq!(r.parameters.get("f"), Some(&JsonValue::from(1.5)));
        assert!(!r.parameters.contains_key("binary_data_output"));
        assert_eq!(r.inputs[0].shape, vec![2, 2]);
        assert_eq!(r.inputs[0].datatype, DataType::Fp32);
        let want: Vec<u8> = [1.0f32, 2.5, -3.0, 4.0]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        assert_eq!(r.inputs[0].data, want);
        assert_eq!(r.outputs[0].name, "OUT");
        assert_eq!(r.outputs[0].classification, Some(3));
        assert_eq!(r.outputs[1].classification, None);
        assert!(d.outputs.default_binary);
        assert_eq!(d.outputs.kind("OUT"), OutputKind::Json);
        assert_eq!(d.outputs.kind("O2"), OutputKind::Json);
        assert_eq!(d.outputs.kind("UNNAMED"), OutputKind::Binary);
    }

    #[test]
    fn every_datatype_from_json() {
        assert_eq!(
            one_input("BOOL", "[3]", "[true,false,true]").unwrap(),
            &[1u8, 0, 1][..]
        );
        assert_eq!(
            one_input("UINT8", "[2]", "[0,255]").unwrap(),
            &[0u8, 255][..]
        );
        assert_eq!(
            one_input("UINT16", "[1]", "[65535]").unwrap(),
            &[255u8, 255][..]
        );
        assert_eq!(
            one_input("UINT32", "[1]", "[1]").unwrap(),
            &1u32.to_le_bytes()[..]
        );
        assert_eq!(
            one_input("UINT64", "[1]", "[18446744073709551615]").unwrap(),
            &u64::MAX.to_le_bytes()[..]
        );
        assert_eq!(
            one_input("INT8", "[2]", "[-128,127]").unwrap(),
            &[0x80u8, 0x7f][..]
        );
        assert_eq!(
            one_input("INT16", "[1]", "[-2]").unwrap(),
            &(-2i16).to_le_bytes()[..]
        );
        assert_eq!(
            one_input("INT32", "[1]", "[-2147483648]").unwrap(),
            &i32::MIN.to_le_bytes()[..]
        );
        assert_eq!(
            one_input("INT64", "[1]", "[-9223372036854775808]").unwrap(),
            &i64::MIN.to_le_bytes()[..]
        );
        assert_eq!(
            one_input("FP16", "[1]", "[1.5]").unwrap(),
            &half::f16::from_f32(1.5).to_le_bytes()[..]
        );
        assert_eq!(
            one_input("BF16", "[1]", "[-2]").unwrap(),
            &half::bf16::from_f32(-2.0).to_le_bytes()[..]
        );
        assert_eq!(
            one_input("FP64", "[1]", "[0.1]").unwrap(),
            &0.1f64.to_le_bytes()[..]
        );
        let nan = one_input("FP32", "[1]", "[NaN]").unwrap();
        assert!(f32::from_le_bytes(nan[..].try_into().unwrap()).is_nan());
        let mut want = Vec::new();
        for s in ["hi", "", "é\n"] {
            ferrite_core::tensor::push_bytes_element(&mut want, s.as_bytes());
        }
        assert_eq!(
            one_input("BYTES", "[3]", r#"["hi","","\u00e9\n"]"#).unwrap(),
            want
        );
    }

    #[test]
    fn json_data_errors_are_tritons() {
        let mismatch = "Unable to parse 'data': Shape does not match true shape of 'data' field";
        for data in ["[1,2]", "[1,2,3,4]", "[[1],[2,3,4]]"] {
            let e = one_input("INT32", "[3]", data).unwrap_err();
            assert_eq!(
                (e.code(), e.message()),
                (ferrite_core::ErrorCode::Internal, mismatch)
            );
        }
        let e = one_input("INT32", "[1]", "[1.5]").unwrap_err();
        assert_eq!(e.message(), format!("Unable to parse 'data': {NOT_INT}"));
        let e = one_input("UINT8", "[1]", "[-1]").unwrap_err();
        assert_eq!(e.message(), format!("Unable to parse 'data': {NOT_UINT}"));
        let e = one_input("FP32", "[1]", r#"["x"]"#).unwrap_err();
        assert_eq!(e.message(), format!("Unable to parse 'data': {NOT_NUMBER}"));
        let e = one_input("BOOL", "[1]", "[1]").unwrap_err();
        assert_eq!(e.message(), format!("Unable to parse 'data': {NOT_BOOL}"));
        let e = one_input("BYTES", "[1]", "[1]").unwrap_err();
        assert_eq!(e.message(), format!("Unable to parse 'data': {NOT_STRING}"));
        let e = one_input("FP32", "[1]", "[{}]").unwrap_err();
        assert_eq!(e.message(), format!("Unable to parse 'data': {NOT_NUMBER}"));
        let e = one_input("UINT8", "[1]", "[256]").unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (
                ferrite_core::ErrorCode::InvalidArg,
                "Unable to parse 'data': value 256 is out of range for UINT8"
            )
        );
        let e = one_input("INT8", "[1]", "[-129]").unwrap_err();
        assert_eq!(e.code(), ferrite_core::ErrorCode::InvalidArg);
        let e = one_input("INT32", "[1]", "7").unwrap_err();
        assert_eq!(e.message(), format!("Unable to parse 'data': {NOT_ARRAY}"));
        // no elements: data is not read at all
        assert_eq!(
            one_input("INT32", "[0]", r#"["junk"]"#).unwrap(),
            Bytes::new()
        );
        let e = one_input("NOPE", "[1]", "[1]").unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (
                ferrite_core::ErrorCode::InvalidArg,
                "invalid datatype for input X"
            )
        );
        // a shape far larger than the text reserves nothing big and fails cleanly
        let e = one_input("INT64", "[1000000000000]", "[1]").unwrap_err();
        assert_eq!(e.message(), mismatch);
    }

    #[test]
    fn structural_errors_are_tritons() {
        use ferrite_core::ErrorCode::*;
        assert_eq!(
            err(r#"{"inputs": ["#),
            (
                Internal,
                "failed to parse the request JSON buffer: Invalid value. at 12".into()
            )
        );
        assert_eq!(
            err("{}"),
            (
                Internal,
                "Unable to parse 'inputs': attempt to access non-existing object member 'inputs'"
                    .into()
            )
        );
        assert_eq!(
            err("[]"),
            (
                Internal,
                "Unable to parse 'inputs': attempt to access non-existing object member 'inputs'"
                    .into()
            )
        );
        assert_eq!(
            err(r#"{"inputs":{}}"#),
            (Internal, format!("Unable to parse 'inputs': {NOT_ARRAY}"))
        );
        assert_eq!(
            err(r#"{"id":1,"inputs":[]}"#),
            (Internal, format!("Unable to parse 'id': {NOT_STRING}"))
        );
        assert_eq!(
            err(r#"{"parameters":[],"inputs":[]}"#).1,
            "failed to get request params.: attempt to get members for non-object"
        );
        assert_eq!(
            err(r#"{"parameters":{"x":null},"inputs":[]}"#),
            (
                InvalidArg,
                "parameter 'x' has invalid type. It should be either 'int', 'bool', or 'string'."
                    .into()
            )
        );
        assert_eq!(
            err(r#"{"parameters":{"triton_x":1},"inputs":[]}"#).0,
            InvalidArg
        );
        assert_eq!(
            err(r#"{"parameters":{"binary_data_output":1},"inputs":[]}"#).1,
            format!("Unable to parse 'binary_data_output': {NOT_BOOL}")
        );
        assert_eq!(
            err(r#"{"inputs":[{"name":"A"}]}"#),
            (InvalidArg, "Input must set only one of the following fields: 'data', 'binary_data_size' in 'parameters', 'shared_memory_region' in 'parameters'. But no field is set".into())
        );
        assert_eq!(
            err(r#"{"inputs":[{"name":"A","data":[1],"parameters":{"binary_data_size":4}}]}"#).1,
            "Input must set only one of the following fields: 'data', 'binary_data_size' in 'parameters', 'shared_memory_region' in 'parameters'. But set 'data' 'binary_data_size'"
        );
        assert_eq!(
            err(r#"{"inputs":[{"data":[1]}]}"#).1,
            "Unable to parse 'name': attempt to access non-existing object member 'name'"
        );
        assert_eq!(
            err(r#"{"inputs":[{"name":"A","datatype":"INT32","shape":[-1],"data":[1]}]}"#).1,
            format!("Unable to parse 'shape': {NOT_UINT}")
        );
        assert_eq!(
            err(
                r#"{"inputs":[{"name":"A","datatype":"INT32","shape":[1],"parameters":{"shared_memory_region":"r"}}]}"#
            ),
            (NotFound, "Unable to find shared memory region: 'r'".into())
        );
        assert_eq!(
            err(r#"{"inputs":[],"outputs":{}}"#).1,
            format!("Unable to parse 'outputs': {NOT_ARRAY}")
        );
        assert_eq!(
            err(r#"{"inputs":[],"outputs":[{"name":"O","parameters":{"binary_data":1}}]}"#).1,
            format!("Unable to parse 'binary_data': {NOT_BOOL}")
        );
        assert_eq!(
            err(r#"{"inputs":[],"outputs":[{"name":"O","parameters":{"classification":-1}}]}"#).1,
            format!("Unable to set 'classification': {NOT_UINT}")
        );
        let deep = format!(
            r#"{{"inputs":[{{"name":"A","datatype":"INT32","shape":[1],"data":{}1{}}}]}}"#,
            "[".repeat(120),
            "]".repeat(120)
        );
        assert_eq!(
            err(&deep),
            (
                InvalidArg,
                "JSON nesting depth exceeds maximum allowed limit (100)".into()
            )
        );
    }

    fn binary_header(sizes: &[u64]) -> String {
        let inputs: Vec<String> = sizes
            .iter()
            .enumerate()
            .map(|(i, s)| format!(r#"{{"name":"IN{i}","datatype":"UINT8","shape":[{s}],"parameters":{{"binary_data_size":{s}}}}}"#))
            .collect();
        format!(r#"{{"inputs":[{}]}}"#, inputs.join(","))
    }

    #[test]
    fn binary_inputs_are_slices_of_the_body() {
        let body = Bytes::from_static(b"aaaabbcccccc");
        let header = binary_header(&[4, 2, 6, 0]);
        let d = json_request(
            "m",
            Some(3),
            header.as_bytes(),
            body.clone(),
            &SharedMemory::default(),
        )
        .unwrap();
        let data: Vec<&[u8]> = d.request.inputs.iter().map(|t| &t.data[..]).collect();
        assert_eq!(data, [&b"aaaa"[..], b"bb", b"cccccc", b""]);
        assert_eq!(d.request.model_version, Some(3));
        // zero-copy: the tensors point into the body
        assert_eq!(d.request.inputs[1].data.as_ptr(), body[4..].as_ptr());
    }

    #[test]
    fn binary_sizes_that_do_not_add_up() {
        let e = decode(&binary_header(&[4, 8]), b"aaaabb").unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (
                ferrite_core::ErrorCode::InvalidArg,
                "unexpected size for input 'IN1', expecting 6 additional bytes for model 'm'"
            )
        );
        let e = decode(&binary_header(&[1 << 62]), b"aaaa").unwrap_err();
        assert!(e.message().contains("'IN0'"), "{}", e.message());
        let e = decode(&binary_header(&[2]), b"aaaa").unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (
                ferrite_core::ErrorCode::InvalidArg,
                "unexpected additional input data for model 'm'"
            )
        );
        let e = decode(r#"{"inputs":[{"name":"A","datatype":"INT32","shape":[1],"parameters":{"binary_data_size":-4}}]}"#, b"").unwrap_err();
        assert_eq!(
            e.message(),
            format!("Unable to parse 'binary_data_size': {NOT_UINT}")
        );
    }

    #[test]
    fn raw_requests() {
        let d = raw_request("m", None, Bytes::from_static(b"abcd"));
        assert!(d.request.raw_input);
        assert_eq!(d.request.inputs[0].data, &b"abcd"[..]);
        assert!(d.outputs.default_binary);
    }

    /// A POSIX shared memory object of `size` zero bytes, removed on drop.
    struct Object(std::path::PathBuf);
    impl Drop for Object {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn object(tag: &str, size: usize) -> (String, Object) {
        let key = format!("/ferrite_http_decode_{tag}_{}", std::process::id());
        let path = std::path::PathBuf::from(format!("/dev/shm{key}"));
        std::fs::write(&path, vec![0u8; size]).unwrap();
        (key, Object(path))
    }

    #[test]
    fn inputs_read_in_place_and_outputs_bound_to_regions() {
        let (key, _obj) = object("ok", 64);
        let shm = SharedMemory::new(true);
        shm.register_system("in", &key, 0, 32).unwrap();
        shm.register_system("out", &key, 32, 32).unwrap();
        shm.write_output(
            &RegionRef {
                region: "in".into(),
                offset: 0,
                byte_size: 8,
            },
            "x",
            &[1, 0, 0, 0, 2, 0, 0, 0],
        )
        .unwrap();
        let header = r#"{"inputs":[{"name":"A","datatype":"INT32","shape":[1,2],"parameters":{"shared_memory_region":"in","shared_memory_byte_size":8}},
                                   {"name":"B","datatype":"INT32","shape":[1],"parameters":{"shared_memory_region":"in","shared_memory_offset":4,"shared_memory_byte_size":4}}],
                         "parameters":{"binary_data_output":true},
                         "outputs":[{"name":"O","parameters":{"shared_memory_region":"out","shared_memory_offset":8,"shared_memory_byte_size":16,"binary_data":false}},
                                    {"name":"P","parameters":{"binary_data":false}}]}"#;
        let d = json_request("m", None, header.as_bytes(), Bytes::new(), &shm).unwrap();
        let inputs = &d.request.inputs;
        assert_eq!(inputs[0].data, &[1u8, 0, 0, 0, 2, 0, 0, 0][..]);
        assert_eq!(inputs[0].shape, vec![1, 2]);
        assert_eq!(inputs[1].data, &[2u8, 0, 0, 0][..]);
        // in place: both views are of the same mapping
        assert_eq!(inputs[1].data.as_ptr(), inputs[0].data[4..].as_ptr());
        assert_eq!(d.outputs.kind("O"), OutputKind::SharedMemory);
        assert_eq!(d.outputs.kind("P"), OutputKind::Json);
        assert_eq!(d.outputs.kind("Q"), OutputKind::Binary);
        let region = d.outputs.region("O").unwrap();
        assert_eq!((region.region(), region.byte_size()), ("out", 16));
        assert!(d.outputs.region("P").is_none());
        region.write("O", &[7; 4]).unwrap();
        let raw = std::fs::read(format!("/dev/shm{key}")).unwrap();
        assert_eq!(&raw[40..44], &[7; 4]);
        // the requested output keeps its parameters for the core
        assert_eq!(
            d.request.outputs[0].parameters.get("shared_memory_region"),
            Some(&JsonValue::from("out"))
        );
    }

    #[test]
    fn shared_memory_errors_are_tritons() {
        use ferrite_core::ErrorCode::*;
        let (key, _obj) = object("errors", 16);
        let shm = SharedMemory::new(true);
        shm.register_system("r", &key, 0, 16).unwrap();
        let err = |header: &str| {
            let e = json_request("m", None, header.as_bytes(), Bytes::new(), &shm).unwrap_err();
            (e.code(), e.message().to_string())
        };
        let input = |params: &str| {
            format!(
                r#"{{"inputs":[{{"name":"A","datatype":"INT32","shape":[1],"parameters":{params}}}]}}"#
            )
        };
        let output = |params: &str| {
            format!(r#"{{"inputs":[],"outputs":[{{"name":"O","parameters":{params}}}]}}"#)
        };
        assert_eq!(
            err(&input(r#"{"shared_memory_region":1}"#)),
            (
                Internal,
                format!("Unable to parse 'shared_memory_region': {NOT_STRING}")
            )
        );
        assert_eq!(
            err(&input(
                r#"{"shared_memory_region":"r","shared_memory_offset":-1}"#
            )),
            (
                Internal,
                format!("Unable to parse 'shared_memory_offset': {NOT_UINT}")
            )
        );
        assert_eq!(
            err(&input(
                r#"{"shared_memory_region":"r","shared_memory_byte_size":"4"}"#
            ))
            .1,
            format!("Unable to parse 'shared_memory_byte_size': {NOT_UINT}")
        );
        let (code, message) = err(&input(
            r#"{"shared_memory_region":"r","shared_memory_offset":12,"shared_memory_byte_size":8}"#,
        ));
        assert_eq!(code, InvalidArg);
        assert!(
            message.starts_with("Invalid offset + byte size for shared memory region: 'r'"),
            "{message}"
        );
        let (code, message) = err(&input(
            r#"{"shared_memory_region":"r","shared_memory_offset":16,"shared_memory_byte_size":0}"#,
        ));
        assert_eq!(code, InvalidArg);
        assert!(
            message.starts_with("Invalid offset for shared memory region: 'r'"),
            "{message}"
        );
        assert_eq!(
            err(&input(
                r#"{"shared_memory_region":"r","binary_data_size":4}"#
            ))
            .1,
            "Input must set only one of the following fields: 'data', 'binary_data_size' in 'parameters', 'shared_memory_region' in 'parameters'. But set 'binary_data_size' 'shared_memory_region'"
        );
        // JSON data with a shared memory parameter of the wrong type (Triton reads them all)
        assert_eq!(
            err(r#"{"inputs":[{"name":"A","datatype":"INT32","shape":[1],"data":[1],"parameters":{"shared_memory_offset":"x"}}]}"#).1,
            format!("Unable to parse 'shared_memory_offset': {NOT_UINT}")
        );
        assert_eq!(
            err(&output(r#"{"shared_memory_region":"nope"}"#)),
            (
                NotFound,
                "Unable to find shared memory region: 'nope'".into()
            )
        );
        assert_eq!(
            err(&output(
                r#"{"shared_memory_region":"r","shared_memory_byte_size":17}"#
            ))
            .0,
            InvalidArg
        );
        assert_eq!(
            err(&output(
                r#"{"shared_memory_region":"r","binary_data":true}"#
            )),
            (
                InvalidArg,
                "Output can't set both 'shared_memory_region' and 'binary_data'".into()
            )
        );
        assert_eq!(
            err(&output(
                r#"{"shared_memory_region":"r","classification":1}"#
            )),
            (
                InvalidArg,
                "Output can't set both 'shared_memory_region' and 'classification'".into()
            )
        );
        assert_eq!(
            err(&output(r#"{"shared_memory_region":[]}"#)).1,
            format!("Unable to parse 'shared_memory_region': {NOT_STRING}")
        );
    }
}
