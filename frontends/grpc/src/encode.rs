//! A core `InferenceResponse` -> a `ModelInferResponse` as Triton 2.51 builds it
//! (`InferResponseCompleteCommon`): `id`, `model_name`, `model_version` as a string,
//! response parameters, and per output its name, data type and shape, with the data always in
//! `raw_output_contents` (one entry per output, in output order, sent without a copy). An output
//! the client placed in shared memory is written there and its `raw_output_contents` entry is
//! empty, so the entries still line up with `outputs`.

use std::collections::BTreeMap;

use ferrite_core::request::Parameters;
use ferrite_core::{Error, InferenceResponse};
use ferrite_proto::inference::infer_parameter::ParameterChoice;
use ferrite_proto::inference::model_infer_response::InferOutputTensor;
use ferrite_proto::inference::{InferParameter, ModelInferResponse};
use serde_json::Value as JsonValue;

use crate::decode::ShmOutputs;

/// Shared memory outputs from this size on are copied off the async threads.
const HEAVY_BYTES: usize = 1 << 20;

/// A JSON parameter value as an `InferParameter` (Triton's parameters are bool, int64, double
/// or string; anything else goes as its JSON text).
pub fn parameter(value: &JsonValue) -> InferParameter {
    let choice = match value {
        JsonValue::Bool(b) => ParameterChoice::BoolParam(*b),
        JsonValue::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => ParameterChoice::Int64Param(i),
            (None, Some(u), _) => ParameterChoice::Uint64Param(u),
            (_, _, Some(d)) => ParameterChoice::DoubleParam(d),
            _ => ParameterChoice::StringParam(n.to_string()),
        },
        JsonValue::String(s) => ParameterChoice::StringParam(s.clone()),
        other => ParameterChoice::StringParam(other.to_string()),
    };
    InferParameter {
        parameter_choice: Some(choice),
    }
}

pub fn parameters(params: &Parameters) -> BTreeMap<String, InferParameter> {
    params
        .iter()
        .map(|(k, v)| (k.clone(), parameter(v)))
        .collect()
}

/// Builds the reply; writes shared memory outputs (off the async threads when large).
pub async fn response(
    resp: InferenceResponse,
    shm_outputs: &ShmOutputs,
    max_message_size: usize,
) -> Result<ModelInferResponse, Error> {
    let shm_bytes: usize = resp
        .outputs
        .iter()
        .filter(|t| shm_outputs.get(&t.name).is_some())
        .map(|t| t.data.len())
        .sum();
    let mut outputs = Vec::with_capacity(resp.outputs.len());
    let mut raw = Vec::with_capacity(resp.outputs.len());
    let mut writes = Vec::new();
    for t in resp.outputs {
        outputs.push(InferOutputTensor {
            name: t.name.clone(),
            datatype: t.datatype.wire_name().to_string(),
            shape: t.shape,
            parameters: BTreeMap::new(),
            contents: None,
        });
        match shm_outputs.get(&t.name) {
            Some(region) => {
                raw.push(bytes::Bytes::new());
                writes.push((region.clone(), t.name, t.data));
            }
            None => raw.push(t.data),
        }
    }
    let write = move || {
        writes
            .iter()
            .try_for_each(|(region, name, data)| region.write(name, data))
    };
    if shm_bytes >= HEAVY_BYTES {
        tokio::task::spawn_blocking(write).await.map_err(|e| {
            Error::internal(format!("writing outputs to shared memory failed: {e}"))
        })??;
    } else {
        write()?;
    }
    let reply = ModelInferResponse {
        model_name: resp.model_name,
        model_version: resp.model_version.to_string(),
        id: resp.id,
        parameters: parameters(&resp.parameters),
        outputs,
        raw_output_contents: raw,
    };
    check_size(&reply, max_message_size)?;
    Ok(reply)
}

/// Triton refuses a response larger than gRPC's limit with this text.
pub fn check_size(reply: &impl prost::Message, max_message_size: usize) -> Result<(), Error> {
    let size = reply.encoded_len();
    if size > max_message_size {
        return Err(Error::invalid_arg(format!(
            "Response has byte size {size} which exceeds gRPC's byte size limit {max_message_size}."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrite_core::{DataType, Tensor};

    #[test]
    fn parameters_both_ways() {
        assert_eq!(
            parameter(&JsonValue::Bool(true)).parameter_choice,
            Some(ParameterChoice::BoolParam(true))
        );
        assert_eq!(
            parameter(&JsonValue::from(-3)).parameter_choice,
            Some(ParameterChoice::Int64Param(-3))
        );
        assert_eq!(
            parameter(&JsonValue::from(u64::MAX)).parameter_choice,
            Some(ParameterChoice::Uint64Param(u64::MAX))
        );
        assert_eq!(
            parameter(&JsonValue::from(0.5)).parameter_choice,
            Some(ParameterChoice::DoubleParam(0.5))
        );
        assert_eq!(
            parameter(&JsonValue::from("s")).parameter_choice,
            Some(ParameterChoice::StringParam("s".into()))
        );
        assert_eq!(
            parameter(&serde_json::json!([1])).parameter_choice,
            Some(ParameterChoice::StringParam("[1]".into()))
        );
        for v in [
            JsonValue::Bool(false),
            JsonValue::from(7),
            JsonValue::from(2.5),
            JsonValue::from("x"),
        ] {
            assert_eq!(crate::decode::parameter_json(&parameter(&v)), Some(v));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn raw_outputs_are_the_tensors_own_buffers() {
        let data = bytes::Bytes::from(vec![1u8, 0, 0, 0, 2, 0, 0, 0]);
        let resp = InferenceResponse {
            model_name: "m".into(),
            model_version: 3,
            id: "r1".into(),
            outputs: vec![
                Tensor::new("A", DataType::Int32, vec![1, 2], data.clone()),
                Tensor::new("B", DataType::Bytes, vec![0], bytes::Bytes::new()),
            ],
            parameters: serde_json::json!({"p": true}).as_object().unwrap().clone(),
        };
        let r = response(resp, &ShmOutputs::default(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(r.model_name, "m");
        assert_eq!(r.model_version, "3");
        assert_eq!(r.id, "r1");
        assert_eq!(
            r.parameters["p"].parameter_choice,
            Some(ParameterChoice::BoolParam(true))
        );
        assert_eq!(r.outputs.len(), 2);
        assert_eq!(r.outputs[0].datatype, "INT32");
        assert_eq!(r.outputs[0].shape, vec![1, 2]);
        assert!(r.outputs[0].parameters.is_empty() && r.outputs[0].contents.is_none());
        assert_eq!(r.raw_output_contents.len(), 2);
        assert_eq!(r.raw_output_contents[0].as_ptr(), data.as_ptr());
        assert!(r.raw_output_contents[1].is_empty());
        let e = check_size(&r, 10).unwrap_err();
        assert!(
            e.message().starts_with("Response has byte size "),
            "{}",
            e.message()
        );
    }
}
