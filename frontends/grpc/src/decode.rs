//! A `ModelInferRequest` -> a core `InferenceRequest`, with the checks and texts of Triton
//! 2.51's grpc frontend, in its order: model version and model (`ModelInfer` refuses decoupled
//! models), request parameters (`SetInferenceRequestMetadata`), each input's data — shared
//! memory, typed `contents` or `raw_input_contents` (`InferGRPCToInput`) — then the requested
//! outputs' shared memory and classification (`InferAllocatorPayload`). What the model's
//! configuration says about the inputs (names, types, shapes, sizes) the core checks.
//!
//! `raw_input_contents` and shared memory inputs become tensors without a copy: the tensors
//! are slices of the received message or views of the mapped region.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use ferrite_core::request::{InferenceRequest, Parameters, RequestedOutput};
use ferrite_core::shm::{OutputRegion, RegionRef};
use ferrite_core::{DataType, Error, Server, Tensor};
use ferrite_proto::inference::infer_parameter::ParameterChoice;
use ferrite_proto::inference::model_infer_request::InferRequestedOutputTensor;
use ferrite_proto::inference::{InferParameter, InferTensorContents, ModelInferRequest};
use serde_json::Value as JsonValue;

use crate::status::parse_version;

/// Which RPC the request came on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rpc {
    ModelInfer,
    ModelStreamInfer,
}

/// A decoded request, and what its reply needs to know.
#[derive(Debug)]
pub struct Decoded {
    pub request: InferenceRequest,
    pub shm_outputs: ShmOutputs,
}

/// Outputs the client placed in shared memory (resolved when the request is read, as Triton
/// does): written there, not sent back.
#[derive(Clone, Debug, Default)]
pub struct ShmOutputs(pub Vec<(String, OutputRegion)>);

impl ShmOutputs {
    pub fn get(&self, name: &str) -> Option<&OutputRegion> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, r)| r)
    }
}

/// Whether the model a request names is decoupled (many responses per request). Unknown
/// models are not: their error goes back in request order.
pub fn is_decoupled(server: &Server, model_name: &str, model_version: &str) -> bool {
    let Ok(version) = parse_version(model_version) else {
        return false;
    };
    server
        .model(model_name, version)
        .is_ok_and(|m| m.decoupled())
}

pub fn decode(
    server: &Server,
    request: ModelInferRequest,
    deadline: Option<Instant>,
    forwarded: &Parameters,
    rpc: Rpc,
) -> Result<Decoded, Error> {
    let ModelInferRequest {
        model_name,
        model_version,
        id,
        parameters,
        inputs,
        outputs,
        raw_input_contents,
    } = request;
    let version = parse_version(&model_version)?;
    let model = server.model(&model_name, version)?;
    let config = model.config();
    if rpc == Rpc::ModelInfer && model.decoupled() {
        return Err(Error::unsupported(
            "ModelInfer RPC doesn't support models with decoupled transaction policy",
        ));
    }

    let parameters = request_parameters(parameters)?;

    let shm = server.shared_memory();
    let mut raw = raw_input_contents.into_iter();
    let has_raw = raw.len() > 0;
    let mut tensors: Vec<(Tensor, Option<DataType>)> = Vec::with_capacity(inputs.len());
    for input in inputs {
        let datatype = DataType::from_wire_name(&input.datatype);
        let region = shm_params(&input.name, &input.parameters)?;
        let data = if let Some(region) = region {
            if input.contents.is_some() {
                return Err(Error::invalid_arg(format!(
                    "unexpected 'content' provided when using shared memory for input tensor '{}' for model '{model_name}'",
                    input.name
                )));
            }
            shm.input(&region)?
        } else if let Some(contents) = input.contents {
            if has_raw {
                return Err(Error::invalid_arg(format!(
                    "contents field must not be specified when using raw_input_contents for '{}' for model '{model_name}'",
                    input.name
                )));
            }
            typed_contents(&input.name, &model_name, datatype, contents)?
        } else if let Some(data) = raw.next() {
            data
        } else {
            return Err(Error::invalid_arg(format!(
                "unable to find data for input tensor '{}' for model '{model_name}' in request.",
                input.name
            )));
        };
        tensors.push((
            Tensor::new(
                input.name,
                datatype.unwrap_or(DataType::Uint8),
                input.shape,
                data,
            ),
            datatype,
        ));
    }
    // Left-over raw_input_contents are not an error in Triton 2.51 either: they are ignored.

    let mut requested = Vec::with_capacity(outputs.len());
    let mut shm_outputs = ShmOutputs::default();
    for output in outputs {
        let (r, region) = requested_output(output)?;
        if let Some(region) = region {
            // Triton resolves output regions before the request runs; so do we.
            shm_outputs.0.push((r.name.clone(), shm.output(&region)?));
        }
        requested.push(r);
    }

    let mut parameters = parameters;
    // Forwarded headers never replace what the request itself says.
    for (name, value) in forwarded {
        parameters
            .entry(name.clone())
            .or_insert_with(|| value.clone());
    }
    let mut request = InferenceRequest {
        model_name,
        model_version: version,
        id,
        inputs: Vec::with_capacity(tensors.len()),
        outputs: requested,
        parameters,
        raw_input: false,
        deadline,
    };
    let mut invalid = None;
    for (tensor, datatype) in tensors {
        if datatype.is_none() && invalid.is_none() {
            invalid = Some(tensor.name.clone());
        }
        request.inputs.push(tensor);
    }
    // A data type Triton does not know reaches its core as TYPE_INVALID, which refuses it when
    // it checks the input against the configuration.
    if let Some(name) = invalid {
        return Err(match config.input.iter().find(|i| i.name == name) {
            Some(declared) => Error::invalid_arg(format!(
                "{}inference input '{name}' data-type is 'INVALID', but model '{}' expects '{}'",
                request.log_prefix(),
                request.model_name,
                ferrite_core::config::datatype(declared.data_type)
                    .map_or("INVALID", DataType::wire_name)
            )),
            None => Error::invalid_arg(format!(
                "unexpected inference input '{name}' for model '{}'",
                request.model_name
            )),
        });
    }
    Ok(Decoded {
        request,
        shm_outputs,
    })
}

/// An `InferParameter` as the core's JSON parameter value (`None` when no value is set).
pub fn parameter_json(p: &InferParameter) -> Option<JsonValue> {
    Some(match p.parameter_choice.as_ref()? {
        ParameterChoice::BoolParam(b) => JsonValue::Bool(*b),
        ParameterChoice::Int64Param(i) => JsonValue::from(*i),
        ParameterChoice::StringParam(s) => JsonValue::String(s.clone()),
        ParameterChoice::DoubleParam(d) => {
            serde_json::Number::from_f64(*d).map_or(JsonValue::Null, JsonValue::Number)
        }
        ParameterChoice::Uint64Param(u) => JsonValue::from(*u),
    })
}

/// Request parameters, checked as Triton's `SetInferenceRequestMetadata` does.
fn request_parameters(params: BTreeMap<String, InferParameter>) -> Result<Parameters, Error> {
    use ParameterChoice::*;
    let mut out = Parameters::new();
    for (key, param) in params {
        let value = match key.as_str() {
            "sequence_id" => match param.parameter_choice {
                Some(Int64Param(i)) => JsonValue::from(i),
                Some(StringParam(s)) => JsonValue::String(s),
                _ => {
                    return Err(Error::invalid_arg(
                        "invalid value type for 'sequence_id' parameter, expected int64_param or string_param.",
                    ));
                }
            },
            "sequence_start" | "sequence_end" => match param.parameter_choice {
                Some(BoolParam(b)) => JsonValue::Bool(b),
                _ => {
                    return Err(Error::invalid_arg(format!(
                        "invalid value type for '{key}' parameter, expected bool_param."
                    )));
                }
            },
            "priority" => match param.parameter_choice {
                Some(Int64Param(i)) if i < 0 => {
                    return Err(Error::invalid_arg(
                        "invalid value for 'priority', expected value >= 0.",
                    ));
                }
                Some(Int64Param(i)) => JsonValue::from(i),
                Some(Uint64Param(u)) => JsonValue::from(u),
                _ => {
                    return Err(Error::invalid_arg(
                        "invalid value type for 'priority' parameter, expected int64_param or uint64_param.",
                    ));
                }
            },
            "timeout" => match param.parameter_choice {
                Some(Int64Param(i)) => JsonValue::from(i),
                _ => {
                    return Err(Error::invalid_arg(
                        "invalid value type for 'timeout' parameter, expected int64_param.",
                    ));
                }
            },
            _ if key.starts_with("triton_") => {
                if key != "triton_enable_empty_final_response" {
                    return Err(Error::invalid_arg(
                        "parameter keys starting with 'triton_' are reserved for Triton usage. Only the following keys starting with 'triton_' are allowed: triton_enable_empty_final_response",
                    ));
                }
                if !matches!(param.parameter_choice, Some(BoolParam(_))) {
                    return Err(Error::invalid_arg(format!(
                        "invalid value type for '{key}' parameter, expected bool_param."
                    )));
                }
                // Not a model parameter: the stream reads it (a decoupled model's empty final
                // response, sent only when the request asks for it).
                continue;
            }
            _ => match param.parameter_choice {
                Some(Int64Param(i)) => JsonValue::from(i),
                Some(BoolParam(b)) => JsonValue::Bool(b),
                Some(StringParam(s)) => JsonValue::String(s),
                Some(DoubleParam(d)) => {
                    serde_json::Number::from_f64(d).map_or(JsonValue::Null, JsonValue::Number)
                }
                _ => {
                    return Err(Error::invalid_arg(format!(
                        "invalid value type for '{key}' parameter, expected int64_param, bool_param, or string_param."
                    )));
                }
            },
        };
        out.insert(key, value);
    }
    Ok(out)
}

/// Triton's `ParseSharedMemoryParams`: where a tensor lives in shared memory, if it does.
fn shm_params(
    tensor: &str,
    params: &BTreeMap<String, InferParameter>,
) -> Result<Option<RegionRef>, Error> {
    let int64 = |key: &str| -> Result<Option<i64>, Error> {
        match params.get(key) {
            None => Ok(None),
            Some(p) => match p.parameter_choice {
                Some(ParameterChoice::Int64Param(i)) => Ok(Some(i)),
                _ => Err(Error::invalid_arg(format!(
                    "invalid value type for '{key}' parameter for tensor '{tensor}', expected int64_param."
                ))),
            },
        }
    };
    let region = match params.get("shared_memory_region") {
        None => None,
        Some(p) => match &p.parameter_choice {
            Some(ParameterChoice::StringParam(s)) => Some(s.clone()),
            _ => {
                return Err(Error::invalid_arg(format!(
                    "invalid value type for 'shared_memory_region' parameter for tensor '{tensor}', expected string_param."
                )));
            }
        },
    };
    let without_region = |key: &str| {
        Error::invalid_arg(format!(
            "'{key}' can not be specified without 'shared_memory_region' parameter for tensor '{tensor}'"
        ))
    };
    if params.contains_key("shared_memory_offset") && region.is_none() {
        return Err(without_region("shared_memory_offset"));
    }
    let offset = int64("shared_memory_offset")?.unwrap_or(0);
    if params.contains_key("shared_memory_byte_size") && region.is_none() {
        return Err(without_region("shared_memory_byte_size"));
    }
    let byte_size = int64("shared_memory_byte_size")?;
    let Some(region) = region else {
        return Ok(None);
    };
    let Some(byte_size) = byte_size else {
        return Err(Error::invalid_arg(format!(
            "'shared_memory_byte_size' must be specified along with 'shared_memory_region' parameter for tensor '{tensor}'"
        )));
    };
    // Negative values wrap to sizes no region has, as Triton's size_t does; the region check
    // refuses them.
    Ok(Some(RegionRef {
        region,
        offset: offset as u64,
        byte_size: byte_size as u64,
    }))
}

/// One requested output (Triton's `InferAllocatorPayload`, per output).
fn requested_output(
    output: InferRequestedOutputTensor,
) -> Result<(RequestedOutput, Option<RegionRef>), Error> {
    let region = shm_params(&output.name, &output.parameters)?;
    let classification = match output.parameters.get("classification") {
        None => None,
        Some(p) => match p.parameter_choice {
            Some(ParameterChoice::Int64Param(n)) if n <= 0 => {
                return Err(Error::invalid_arg(
                    "invalid value for 'classification' parameter, expected >= 1",
                ));
            }
            Some(ParameterChoice::Int64Param(n)) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => {
                return Err(Error::invalid_arg(
                    "invalid value type for 'classification' parameter, expected int64_param",
                ));
            }
        },
    };
    if region.is_some() && classification.is_some() {
        return Err(Error::invalid_arg(
            "output can't set both 'shared_memory_region' and 'classification'",
        ));
    }
    let parameters = output
        .parameters
        .iter()
        .filter_map(|(k, v)| parameter_json(v).map(|v| (k.clone(), v)))
        .collect();
    Ok((
        RequestedOutput {
            name: output.name,
            classification,
            parameters,
        },
        region,
    ))
}

/// A vector of plain numbers seen as its little-endian bytes, without a copy.
struct LeVec<T>(Vec<T>);

impl<T: bytemuck::NoUninit> AsRef<[u8]> for LeVec<T> {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

/// Numbers whose in-memory bytes are their little-endian encoding on this target.
trait LeNumber: bytemuck::NoUninit + Send + 'static {
    fn push_le(&self, out: &mut Vec<u8>);
}

macro_rules! le_number {
    ($($t:ty),*) => {$(
        impl LeNumber for $t {
            fn push_le(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
le_number!(i32, i64, u32, u64, f32, f64);

impl LeNumber for bool {
    fn push_le(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

fn le_bytes<T: LeNumber>(values: Vec<T>) -> Bytes {
    if cfg!(target_endian = "little") {
        Bytes::from_owner(LeVec(values))
    } else {
        let mut out = Vec::with_capacity(values.len() * std::mem::size_of::<T>());
        for v in &values {
            v.push_le(&mut out);
        }
        Bytes::from(out)
    }
}

/// Typed `contents` -> the tensor's bytes (Triton's `InferGRPCToInput` for explicit data):
/// each non-empty list must match the input's data type (INT8/INT16 travel in `int_contents`,
/// UINT8/UINT16 in `uint_contents`, keeping each element's low bytes) and only one list may
/// carry data. FP16 and BF16 have no list: they travel raw.
fn typed_contents(
    input: &str,
    model: &str,
    datatype: Option<DataType>,
    c: InferTensorContents,
) -> Result<Bytes, Error> {
    let expected = datatype.map_or("INVALID", DataType::wire_name);
    let check = |got: DataType, data: &Bytes| -> Result<(), Error> {
        if !data.is_empty() {
            return Err(Error::invalid_arg(format!(
                "unexpected explicit tensor data for input tensor '{input}' for model '{model}', binary data was already supplied."
            )));
        }
        if datatype != Some(got) {
            return Err(Error::invalid_arg(format!(
                "unexpected explicit tensor data for input tensor '{input}' for model '{model}' of type '{}', expected datatype '{expected}'",
                got.wire_name()
            )));
        }
        Ok(())
    };
    let mut data = Bytes::new();
    if !c.bool_contents.is_empty() {
        check(DataType::Bool, &data)?;
        data = le_bytes(c.bool_contents);
    }
    if !c.int_contents.is_empty() {
        match datatype {
            Some(DataType::Int8) => {
                check(DataType::Int8, &data)?;
                data = c.int_contents.iter().map(|&v| v as i8 as u8).collect();
            }
            Some(DataType::Int16) => {
                check(DataType::Int16, &data)?;
                let mut out = Vec::with_capacity(c.int_contents.len() * 2);
                for &v in &c.int_contents {
                    out.extend_from_slice(&(v as i16).to_le_bytes());
                }
                data = Bytes::from(out);
            }
            _ => {
                check(DataType::Int32, &data)?;
                data = le_bytes(c.int_contents);
            }
        }
    }
    if !c.int64_contents.is_empty() {
        check(DataType::Int64, &data)?;
        data = le_bytes(c.int64_contents);
    }
    if !c.uint_contents.is_empty() {
        match datatype {
            Some(DataType::Uint8) => {
                check(DataType::Uint8, &data)?;
                data = c.uint_contents.iter().map(|&v| v as u8).collect();
            }
            Some(DataType::Uint16) => {
                check(DataType::Uint16, &data)?;
                let mut out = Vec::with_capacity(c.uint_contents.len() * 2);
                for &v in &c.uint_contents {
                    out.extend_from_slice(&(v as u16).to_le_bytes());
                }
                data = Bytes::from(out);
            }
            _ => {
                check(DataType::Uint32, &data)?;
                data = le_bytes(c.uint_contents);
            }
        }
    }
    if !c.uint64_contents.is_empty() {
        check(DataType::Uint64, &data)?;
        data = le_bytes(c.uint64_contents);
    }
    if !c.fp32_contents.is_empty() {
        check(DataType::Fp32, &data)?;
        data = le_bytes(c.fp32_contents);
    }
    if !c.fp64_contents.is_empty() {
        check(DataType::Fp64, &data)?;
        data = le_bytes(c.fp64_contents);
    }
    if !c.bytes_contents.is_empty() {
        check(DataType::Bytes, &data)?;
        let total: usize = c.bytes_contents.iter().map(|b| 4 + b.len()).sum();
        let mut out = Vec::with_capacity(total);
        for element in &c.bytes_contents {
            ferrite_core::tensor::push_bytes_element(&mut out, element);
        }
        data = Bytes::from(out);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrite_core::ErrorCode;

    fn p(choice: ParameterChoice) -> InferParameter {
        InferParameter {
            parameter_choice: Some(choice),
        }
    }

    fn params(items: &[(&str, ParameterChoice)]) -> BTreeMap<String, InferParameter> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), p(v.clone())))
            .collect()
    }

    fn msg<T: std::fmt::Debug>(r: Result<T, Error>) -> (ErrorCode, String) {
        let e = r.unwrap_err();
        (e.code(), e.message().to_string())
    }

    #[test]
    fn request_parameters_like_triton() {
        use ParameterChoice::*;
        let out = request_parameters(params(&[
            ("sequence_id", Int64Param(7)),
            ("sequence_start", BoolParam(true)),
            ("priority", Uint64Param(2)),
            ("timeout", Int64Param(100)),
            ("custom", StringParam("x".into())),
            ("f", DoubleParam(1.5)),
            ("triton_enable_empty_final_response", BoolParam(true)),
        ]))
        .unwrap();
        assert_eq!(
            JsonValue::Object(out),
            serde_json::json!({"sequence_id": 7, "sequence_start": true, "priority": 2,
                               "timeout": 100, "custom": "x", "f": 1.5})
        );
        let cases: &[(&[(&str, ParameterChoice)], &str)] = &[
            (
                &[("sequence_id", BoolParam(true))],
                "invalid value type for 'sequence_id' parameter, expected int64_param or string_param.",
            ),
            (
                &[("sequence_end", Int64Param(1))],
                "invalid value type for 'sequence_end' parameter, expected bool_param.",
            ),
            (
                &[("priority", Int64Param(-1))],
                "invalid value for 'priority', expected value >= 0.",
            ),
            (
                &[("priority", StringParam("1".into()))],
                "invalid value type for 'priority' parameter, expected int64_param or uint64_param.",
            ),
            (
                &[("timeout", Uint64Param(1))],
                "invalid value type for 'timeout' parameter, expected int64_param.",
            ),
            (
                &[("triton_x", BoolParam(true))],
                "parameter keys starting with 'triton_' are reserved for Triton usage. Only the following keys starting with 'triton_' are allowed: triton_enable_empty_final_response",
            ),
            (
                &[("triton_enable_empty_final_response", Int64Param(1))],
                "invalid value type for 'triton_enable_empty_final_response' parameter, expected bool_param.",
            ),
            (
                &[("custom", Uint64Param(1))],
                "invalid value type for 'custom' parameter, expected int64_param, bool_param, or string_param.",
            ),
        ];
        for (given, want) in cases {
            assert_eq!(
                msg(request_parameters(params(given))),
                (ErrorCode::InvalidArg, want.to_string())
            );
        }
        let mut unset = BTreeMap::new();
        unset.insert("custom".to_string(), InferParameter::default());
        assert!(request_parameters(unset).is_err());
    }

    #[test]
    fn shared_memory_parameters_like_triton() {
        use ParameterChoice::*;
        assert_eq!(shm_params("T", &BTreeMap::new()).unwrap(), None);
        assert_eq!(
            shm_params(
                "T",
                &params(&[
                    ("shared_memory_region", StringParam("r".into())),
                    ("shared_memory_offset", Int64Param(8)),
                    ("shared_memory_byte_size", Int64Param(64)),
                ])
            )
            .unwrap(),
            Some(RegionRef {
                region: "r".into(),
                offset: 8,
                byte_size: 64
            })
        );
        let cases: &[(&[(&str, ParameterChoice)], &str)] = &[
            (
                &[("shared_memory_region", Int64Param(1))],
                "invalid value type for 'shared_memory_region' parameter for tensor 'T', expected string_param.",
            ),
            (
                &[("shared_memory_offset", Int64Param(1))],
                "'shared_memory_offset' can not be specified without 'shared_memory_region' parameter for tensor 'T'",
            ),
            (
                &[("shared_memory_byte_size", Int64Param(1))],
                "'shared_memory_byte_size' can not be specified without 'shared_memory_region' parameter for tensor 'T'",
            ),
            (
                &[
                    ("shared_memory_region", StringParam("r".into())),
                    ("shared_memory_offset", StringParam("1".into())),
                ],
                "invalid value type for 'shared_memory_offset' parameter for tensor 'T', expected int64_param.",
            ),
            (
                &[
                    ("shared_memory_region", StringParam("r".into())),
                    ("shared_memory_byte_size", Uint64Param(1)),
                ],
                "invalid value type for 'shared_memory_byte_size' parameter for tensor 'T', expected int64_param.",
            ),
            (
                &[("shared_memory_region", StringParam("r".into()))],
                "'shared_memory_byte_size' must be specified along with 'shared_memory_region' parameter for tensor 'T'",
            ),
        ];
        for (given, want) in cases {
            assert_eq!(
                msg(shm_params("T", &params(given))),
                (ErrorCode::InvalidArg, want.to_string())
            );
        }
    }

    #[test]
    fn outputs_classification_and_shared_memory() {
        use ParameterChoice::*;
        let out = |items: &[(&str, ParameterChoice)]| {
            requested_output(InferRequestedOutputTensor {
                name: "O".into(),
                parameters: params(items),
            })
        };
        let (r, region) = out(&[("classification", Int64Param(3))]).unwrap();
        assert_eq!(r.classification, Some(3));
        assert_eq!(
            r.parameters.get("classification"),
            Some(&JsonValue::from(3))
        );
        assert!(region.is_none());
        assert_eq!(
            msg(out(&[("classification", Int64Param(0))])).1,
            "invalid value for 'classification' parameter, expected >= 1"
        );
        assert_eq!(
            msg(out(&[("classification", Uint64Param(2))])).1,
            "invalid value type for 'classification' parameter, expected int64_param"
        );
        assert_eq!(
            msg(out(&[
                ("classification", Int64Param(2)),
                ("shared_memory_region", StringParam("r".into())),
                ("shared_memory_byte_size", Int64Param(4)),
            ])),
            (
                ErrorCode::InvalidArg,
                "output can't set both 'shared_memory_region' and 'classification'".into()
            )
        );
    }

    fn contents(f: impl FnOnce(&mut InferTensorContents)) -> InferTensorContents {
        let mut c = InferTensorContents::default();
        f(&mut c);
        c
    }

    #[test]
    fn typed_contents_every_list() {
        let t = |dt: DataType, c: InferTensorContents| typed_contents("X", "m", Some(dt), c);
        assert_eq!(
            t(
                DataType::Bool,
                contents(|c| c.bool_contents = vec![true, false])
            )
            .unwrap(),
            &[1u8, 0][..]
        );
        assert_eq!(
            t(
                DataType::Int8,
                contents(|c| c.int_contents = vec![-1, 127, 300])
            )
            .unwrap(),
            &[0xffu8, 0x7f, 0x2c][..]
        );
        assert_eq!(
            t(DataType::Int16, contents(|c| c.int_contents = vec![-2])).unwrap(),
            &(-2i16).to_le_bytes()[..]
        );
        assert_eq!(
            t(DataType::Int32, contents(|c| c.int_contents = vec![1, -1])).unwrap(),
            &[1u8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff][..]
        );
        assert_eq!(
            t(
                DataType::Int64,
                contents(|c| c.int64_contents = vec![i64::MIN])
            )
            .unwrap(),
            &i64::MIN.to_le_bytes()[..]
        );
        assert_eq!(
            t(
                DataType::Uint8,
                contents(|c| c.uint_contents = vec![255, 256])
            )
            .unwrap(),
            &[255u8, 0][..]
        );
        assert_eq!(
            t(
                DataType::Uint16,
                contents(|c| c.uint_contents = vec![65535])
            )
            .unwrap(),
            &[255u8, 255][..]
        );
        assert_eq!(
            t(
                DataType::Uint32,
                contents(|c| c.uint_contents = vec![u32::MAX])
            )
            .unwrap(),
            &u32::MAX.to_le_bytes()[..]
        );
        assert_eq!(
            t(
                DataType::Uint64,
                contents(|c| c.uint64_contents = vec![u64::MAX])
            )
            .unwrap(),
            &u64::MAX.to_le_bytes()[..]
        );
        assert_eq!(
            t(DataType::Fp32, contents(|c| c.fp32_contents = vec![1.5])).unwrap(),
            &1.5f32.to_le_bytes()[..]
        );
        assert_eq!(
            t(DataType::Fp64, contents(|c| c.fp64_contents = vec![0.1])).unwrap(),
            &0.1f64.to_le_bytes()[..]
        );
        let mut want = Vec::new();
        for s in [&b"hi"[..], b"", b"\xff"] {
            ferrite_core::tensor::push_bytes_element(&mut want, s);
        }
        assert_eq!(
            t(
                DataType::Bytes,
                contents(|c| c.bytes_contents = vec![
                    Bytes::from_static(b"hi"),
                    Bytes::new(),
                    Bytes::from_static(b"\xff")
                ])
            )
            .unwrap(),
            want
        );
        // present but empty: no data (the core then checks the size against the shape)
        assert_eq!(t(DataType::Fp32, contents(|_| {})).unwrap(), Bytes::new());
    }

    #[test]
    fn typed_contents_errors_like_triton() {
        let e = typed_contents(
            "X",
            "m",
            Some(DataType::Fp16),
            contents(|c| c.fp32_contents = vec![1.0]),
        );
        assert_eq!(
            msg(e),
            (
                ErrorCode::InvalidArg,
                "unexpected explicit tensor data for input tensor 'X' for model 'm' of type 'FP32', expected datatype 'FP16'".into()
            )
        );
        let e = typed_contents("X", "m", None, contents(|c| c.int_contents = vec![1]));
        assert_eq!(
            msg(e).1,
            "unexpected explicit tensor data for input tensor 'X' for model 'm' of type 'INT32', expected datatype 'INVALID'"
        );
        let e = typed_contents(
            "X",
            "m",
            Some(DataType::Int32),
            contents(|c| {
                c.int_contents = vec![1];
                c.fp32_contents = vec![1.0];
            }),
        );
        assert_eq!(
            msg(e).1,
            "unexpected explicit tensor data for input tensor 'X' for model 'm', binary data was already supplied."
        );
    }
}
