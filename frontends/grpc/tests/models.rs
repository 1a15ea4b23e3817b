//! Inference over gRPC on the example models (configs/models: `simple`, INT32 add/sub with
//! max_batch_size 8; `simple_string`, the same on decimal strings; `simple_identity`, BYTES
//! identity): raw and typed contents, BYTES, classification, the same error texts as HTTP,
//! streams with many requests in flight, shared memory, gzip and deadlines.
//!
//! These need the CPU driver and ONNX Runtime (see `common::backend_dir`): scripts/test.sh
//! builds them and makes their absence a failure; elsewhere each test says it is skipped.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{ShmObject, failure, start_models};
use ferrite_grpc::GrpcOptions;
use ferrite_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use ferrite_proto::inference::infer_parameter::ParameterChoice;
use ferrite_proto::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use ferrite_proto::inference::*;
use tonic::Code;
use tonic::codec::CompressionEncoding;

/// Triton's hint after a shape error for a model that batches.
const NOTE: &str = "NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension to be prepended to each input shape. If you want to specify the full shape including the batch dim in your input dims config, try setting max_batch_size to zero. See the model configuration docs for more info on max_batch_size.";

fn int32_bytes(v: impl IntoIterator<Item = i32>) -> Bytes {
    v.into_iter()
        .flat_map(i32::to_le_bytes)
        .collect::<Vec<u8>>()
        .into()
}

fn int32s(b: &[u8]) -> Vec<i32> {
    b.chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn input(name: &str, datatype: &str, shape: &[i64]) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        ..Default::default()
    }
}

fn param(p: ParameterChoice) -> InferParameter {
    InferParameter {
        parameter_choice: Some(p),
    }
}

/// `simple` with INPUT0 = seed..seed+16 and INPUT1 = 1, as raw contents.
fn simple(id: &str, seed: i32) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "simple".into(),
        id: id.into(),
        inputs: vec![
            input("INPUT0", "INT32", &[1, 16]),
            input("INPUT1", "INT32", &[1, 16]),
        ],
        raw_input_contents: vec![int32_bytes(seed..seed + 16), int32_bytes([1; 16])],
        ..Default::default()
    }
}

fn check_simple(r: &ModelInferResponse, id: &str, seed: i32) {
    assert_eq!(
        (
            r.model_name.as_str(),
            r.model_version.as_str(),
            r.id.as_str()
        ),
        ("simple", "1", id)
    );
    let names: Vec<&str> = r.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["OUTPUT0", "OUTPUT1"]);
    for o in &r.outputs {
        assert_eq!(
            (o.datatype.as_str(), o.shape.as_slice()),
            ("INT32", &[1i64, 16][..])
        );
        assert!(o.parameters.is_empty() && o.contents.is_none());
    }
    assert_eq!(r.raw_output_contents.len(), 2);
    assert_eq!(
        int32s(&r.raw_output_contents[0]),
        (seed + 1..seed + 17).collect::<Vec<_>>()
    );
    assert_eq!(
        int32s(&r.raw_output_contents[1]),
        (seed - 1..seed + 15).collect::<Vec<_>>()
    );
}

fn bytes_tensor(elements: &[&[u8]]) -> Bytes {
    let mut out = Vec::new();
    for e in elements {
        ferrite_core::tensor::push_bytes_element(&mut out, e);
    }
    out.into()
}

fn bytes_elements(data: &[u8]) -> Vec<Vec<u8>> {
    ferrite_core::tensor::bytes_elements(data)
        .unwrap()
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_and_typed_inference() {
    let Some(s) = start_models("raw_and_typed_inference", GrpcOptions::default()).await else {
        return;
    };
    let mut c = s.client().await;
    // reference 10's shape of reply
    let r = c
        .model_infer(simple("grpc-req-1", 0))
        .await
        .unwrap()
        .into_inner();
    check_simple(&r, "grpc-req-1", 0);
    assert!(r.parameters.is_empty());
    let mut versioned = simple("", 5);
    versioned.model_version = "1".into();
    check_simple(&c.model_infer(versioned).await.unwrap().into_inner(), "", 5);

    // typed contents
    let mut typed = simple("typed", 3);
    typed.raw_input_contents.clear();
    typed.inputs[0].contents = Some(InferTensorContents {
        int_contents: (3..19).collect(),
        ..Default::default()
    });
    typed.inputs[1].contents = Some(InferTensorContents {
        int_contents: vec![1; 16],
        ..Default::default()
    });
    check_simple(
        &c.model_infer(typed).await.unwrap().into_inner(),
        "typed",
        3,
    );

    // one output, parameters through
    let mut subset = simple("sub", 0);
    subset.outputs = vec![InferRequestedOutputTensor {
        name: "OUTPUT1".into(),
        parameters: BTreeMap::new(),
    }];
    subset.parameters.insert(
        "custom".into(),
        param(ParameterChoice::StringParam("x".into())),
    );
    let r = c.model_infer(subset).await.unwrap().into_inner();
    assert_eq!(r.outputs.len(), 1);
    assert_eq!(r.outputs[0].name, "OUTPUT1");
    assert_eq!(
        int32s(&r.raw_output_contents[0]),
        (-1..15).collect::<Vec<_>>()
    );

    // classification: the top 2 of OUTPUT0 (1..=16) as BYTES "score:index"
    let mut classified = simple("", 0);
    classified.outputs = vec![InferRequestedOutputTensor {
        name: "OUTPUT0".into(),
        parameters: BTreeMap::from([(
            "classification".to_string(),
            param(ParameterChoice::Int64Param(2)),
        )]),
    }];
    let r = c.model_infer(classified).await.unwrap().into_inner();
    assert_eq!(r.outputs[0].datatype, "BYTES");
    assert_eq!(r.outputs[0].shape, vec![1, 2]);
    assert_eq!(
        bytes_elements(&r.raw_output_contents[0]),
        [b"16.000000:15".to_vec(), b"15.000000:14".to_vec()]
    );

    // batch of 3
    let mut batch = simple("", 0);
    for i in &mut batch.inputs {
        i.shape = vec![3, 16];
    }
    batch.raw_input_contents = vec![int32_bytes(0..48), int32_bytes([2; 48])];
    let r = c.model_infer(batch).await.unwrap().into_inner();
    assert_eq!(r.outputs[0].shape, vec![3, 16]);
    assert_eq!(
        int32s(&r.raw_output_contents[0]),
        (2..50).collect::<Vec<_>>()
    );

    // metadata, config, readiness, index and statistics of a loaded model
    let m = c
        .model_metadata(ModelMetadataRequest {
            name: "simple".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (m.name.as_str(), m.versions.as_slice()),
        ("simple", &["1".to_string()][..])
    );
    assert_eq!(m.platform, "onnxruntime_onnx");
    assert_eq!(m.inputs[0].shape, vec![-1, 16]);
    assert_eq!(m.outputs[1].datatype, "INT32");
    let config = c
        .model_config(ModelConfigRequest {
            name: "simple".into(),
            version: "1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(config, s.server.model_config("simple", Some(1)).unwrap());
    assert_eq!(config.max_batch_size, 8);
    assert!(
        c.model_ready(ModelReadyRequest {
            name: "simple".into(),
            version: "1".into()
        })
        .await
        .unwrap()
        .into_inner()
        .ready
    );
    let index = c
        .repository_index(RepositoryIndexRequest {
            repository_name: String::new(),
            ready: true,
        })
        .await
        .unwrap()
        .into_inner();
    let rows: Vec<(&str, &str, &str)> = index
        .models
        .iter()
        .map(|m| (m.name.as_str(), m.version.as_str(), m.state.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("simple", "1", "READY"),
            ("simple_identity", "1", "READY"),
            ("simple_string", "1", "READY")
        ]
    );
    let stats = c
        .model_statistics(ModelStatisticsRequest {
            name: "simple".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let st = &stats.model_stats[0];
    assert_eq!((st.name.as_str(), st.version.as_str()), ("simple", "1"));
    assert!(st.inference_count >= 8 && st.execution_count >= 6, "{st:?}");
    assert!(st.inference_stats.as_ref().unwrap().success.unwrap().count >= 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_tensors() {
    let Some(s) = start_models("bytes_tensors", GrpcOptions::default()).await else {
        return;
    };
    let mut c = s.client().await;
    let values: [&[u8]; 4] = [b"hello", b"", b"\xff\xfe not utf-8", "caf\u{e9}".as_bytes()];
    let raw = ModelInferRequest {
        model_name: "simple_identity".into(),
        inputs: vec![input("INPUT0", "BYTES", &[1, 4])],
        raw_input_contents: vec![bytes_tensor(&values)],
        ..Default::default()
    };
    let r = c.model_infer(raw).await.unwrap().into_inner();
    assert_eq!(r.outputs[0].datatype, "BYTES");
    assert_eq!(r.outputs[0].shape, vec![1, 4]);
    assert_eq!(r.raw_output_contents[0], bytes_tensor(&values));
    let mut typed = ModelInferRequest {
        model_name: "simple_identity".into(),
        inputs: vec![input("INPUT0", "BYTES", &[1, 4])],
        ..Default::default()
    };
    typed.inputs[0].contents = Some(InferTensorContents {
        bytes_contents: values.iter().map(|v| Bytes::copy_from_slice(v)).collect(),
        ..Default::default()
    });
    let r = c.model_infer(typed).await.unwrap().into_inner();
    assert_eq!(r.raw_output_contents[0], bytes_tensor(&values));

    // simple_string: decimal strings added and subtracted
    let x: Vec<String> = (0..16).map(|i| (i - 8).to_string()).collect();
    let y: Vec<String> = (0..16).map(|i| (7 * i).to_string()).collect();
    let mut strings = ModelInferRequest {
        model_name: "simple_string".into(),
        inputs: vec![
            input("INPUT0", "BYTES", &[1, 16]),
            input("INPUT1", "BYTES", &[1, 16]),
        ],
        ..Default::default()
    };
    strings.inputs[0].contents = Some(InferTensorContents {
        bytes_contents: x.iter().map(|v| Bytes::from(v.clone())).collect(),
        ..Default::default()
    });
    strings.raw_input_contents.clear();
    strings.inputs[1].contents = Some(InferTensorContents {
        bytes_contents: y.iter().map(|v| Bytes::from(v.clone())).collect(),
        ..Default::default()
    });
    let r = c.model_infer(strings).await.unwrap().into_inner();
    let sums: Vec<i64> = bytes_elements(&r.raw_output_contents[0])
        .iter()
        .map(|e| String::from_utf8_lossy(e).parse().unwrap())
        .collect();
    assert_eq!(sums, (0..16).map(|i| (i - 8) + 7 * i).collect::<Vec<i64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_have_the_texts_http_has() {
    let Some(s) = start_models(
        "bad_requests_have_the_texts_http_has",
        GrpcOptions::default(),
    )
    .await
    else {
        return;
    };
    let mut c = s.client().await;
    let invalid = |m: &str| (Code::InvalidArgument, m.to_string());

    // reference 13's text for this model
    let mut shape = simple("", 0);
    shape.inputs[0].shape = vec![1, 8];
    shape.raw_input_contents[0] = int32_bytes(0..8);
    assert_eq!(
        failure(c.model_infer(shape).await),
        invalid(&format!(
            "[request id: <id_unknown>] unexpected shape for input 'INPUT0' for model 'simple'. Expected [-1,16], got [1,8]. {NOTE}"
        ))
    );
    let mut unknown = simple("r1", 0);
    unknown.inputs[1].name = "NOPE".into();
    assert_eq!(
        failure(c.model_infer(unknown).await),
        invalid("unexpected inference input 'NOPE' for model 'simple'")
    );
    let mut missing = simple("", 0);
    missing.inputs.pop();
    missing.raw_input_contents.pop();
    assert_eq!(
        failure(c.model_infer(missing).await),
        invalid(
            "[request id: <id_unknown>] expected 2 inputs but got 1 inputs for model 'simple'. Got input(s) ['INPUT0'], but missing required input(s) ['INPUT1']. Please provide all required input(s)."
        )
    );
    let mut batch = simple("b", 0);
    for i in &mut batch.inputs {
        i.shape = vec![9, 16];
    }
    batch.raw_input_contents = vec![int32_bytes(0..144), int32_bytes(0..144)];
    assert_eq!(
        failure(c.model_infer(batch).await),
        invalid("[request id: b] inference request batch-size must be <= 8 for 'simple'")
    );
    let mut output = simple("", 0);
    output.outputs = vec![InferRequestedOutputTensor {
        name: "NOPE".into(),
        parameters: BTreeMap::new(),
    }];
    assert_eq!(
        failure(c.model_infer(output).await),
        invalid("unexpected inference output 'NOPE' for model 'simple'")
    );
    let mut size = simple("", 0);
    size.raw_input_contents[1] = int32_bytes(0..15);
    assert_eq!(
        failure(c.model_infer(size).await),
        invalid(
            "[request id: <id_unknown>] input byte size mismatch for input 'INPUT1' for model 'simple'. Expected 64, got 60"
        )
    );
    let mut datatype = simple("", 0);
    datatype.inputs[0].datatype = "FP32".into();
    assert_eq!(
        failure(c.model_infer(datatype).await),
        invalid(
            "[request id: <id_unknown>] inference input 'INPUT0' data-type is 'FP32', but model 'simple' expects 'INT32'"
        )
    );
    let mut no_such_type = simple("", 0);
    no_such_type.inputs[0].datatype = "INT33".into();
    assert_eq!(
        failure(c.model_infer(no_such_type).await),
        invalid(
            "[request id: <id_unknown>] inference input 'INPUT0' data-type is 'INVALID', but model 'simple' expects 'INT32'"
        )
    );

    // gRPC's own: raw and typed together, raw data missing, typed data of the wrong type
    let mut both = simple("", 0);
    both.inputs[0].contents = Some(InferTensorContents {
        int_contents: (0..16).collect(),
        ..Default::default()
    });
    assert_eq!(
        failure(c.model_infer(both).await),
        invalid(
            "contents field must not be specified when using raw_input_contents for 'INPUT0' for model 'simple'"
        )
    );
    let mut short = simple("", 0);
    short.raw_input_contents.pop();
    assert_eq!(
        failure(c.model_infer(short).await),
        invalid("unable to find data for input tensor 'INPUT1' for model 'simple' in request.")
    );
    let mut wrong = simple("", 0);
    wrong.raw_input_contents.clear();
    for i in &mut wrong.inputs {
        i.contents = Some(InferTensorContents {
            int64_contents: (0..16).collect(),
            ..Default::default()
        });
    }
    assert_eq!(
        failure(c.model_infer(wrong).await),
        invalid(
            "unexpected explicit tensor data for input tensor 'INPUT0' for model 'simple' of type 'INT64', expected datatype 'INT32'"
        )
    );
    let mut unknown_version = simple("", 0);
    unknown_version.model_version = "7".into();
    assert_eq!(
        failure(c.model_infer(unknown_version).await),
        (
            Code::NotFound,
            "Request for unknown model: 'simple' version 7 is not found".into()
        )
    );
    let mut classification = simple("", 0);
    classification.outputs = vec![InferRequestedOutputTensor {
        name: "OUTPUT0".into(),
        parameters: BTreeMap::from([(
            "classification".to_string(),
            param(ParameterChoice::Int64Param(0)),
        )]),
    }];
    assert_eq!(
        failure(c.model_infer(classification).await),
        invalid("invalid value for 'classification' parameter, expected >= 1")
    );
    let mut reserved = simple("", 0);
    reserved
        .parameters
        .insert("triton_x".into(), param(ParameterChoice::BoolParam(true)));
    assert_eq!(
        failure(c.model_infer(reserved).await).0,
        Code::InvalidArgument
    );

    // and the server still answers
    check_simple(
        &c.model_infer(simple("ok", 2)).await.unwrap().into_inner(),
        "ok",
        2,
    );
}

/// Many requests in flight on one stream, an error in the middle: every response comes, in
/// request order, with its id; the error does not close the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_many_in_flight_with_an_error() {
    let Some(s) = start_models(
        "stream_many_in_flight_with_an_error",
        GrpcOptions::default(),
    )
    .await
    else {
        return;
    };
    let mut c = s.client().await;
    let n = 12;
    let requests: Vec<ModelInferRequest> = (0..n)
        .map(|i| {
            let mut r = simple(&format!("s-{i}"), i * 100);
            if i == 5 {
                r.inputs[0].shape = vec![1, 8];
                r.raw_input_contents[0] = int32_bytes(0..8);
            }
            if i == 8 {
                r.model_name = "nosuchmodel".into();
            }
            r
        })
        .collect();
    let mut responses = c
        .model_stream_infer(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    for i in 0..n {
        let r = tokio::time::timeout(Duration::from_secs(60), responses.message())
            .await
            .expect("a response in time")
            .unwrap()
            .expect("a response");
        let infer = r.infer_response.unwrap();
        assert_eq!(infer.id, format!("s-{i}"));
        match i {
            5 => assert_eq!(
                r.error_message,
                format!(
                    "[request id: s-5] unexpected shape for input 'INPUT0' for model 'simple'. Expected [-1,16], got [1,8]. {NOTE}"
                )
            ),
            8 => assert_eq!(
                r.error_message,
                "Request for unknown model: 'nosuchmodel' is not found"
            ),
            _ => {
                assert_eq!(r.error_message, "");
                assert_eq!(
                    infer.parameters["triton_final_response"].parameter_choice,
                    Some(ParameterChoice::BoolParam(true))
                );
                let mut plain = infer.clone();
                plain.parameters.clear();
                check_simple(&plain, &format!("s-{i}"), i * 100);
            }
        }
    }
    assert!(
        responses.message().await.unwrap().is_none(),
        "the stream ends with OK"
    );
}

/// A conversation: requests sent one at a time on an open stream, each answered before the
/// next is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_interactive() {
    let Some(s) = start_models("stream_interactive", GrpcOptions::default()).await else {
        return;
    };
    let mut c = s.client().await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut responses = c
        .model_stream_infer(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for i in 0..4 {
        tx.send(simple(&format!("i-{i}"), i)).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(60), responses.message())
            .await
            .expect("a response in time")
            .unwrap()
            .unwrap();
        let mut infer = r.infer_response.unwrap();
        infer.parameters.clear();
        check_simple(&infer, &format!("i-{i}"), i);
    }
    drop(tx);
    assert!(responses.message().await.unwrap().is_none());
}

fn shm_params(region: &str, offset: i64, byte_size: i64) -> BTreeMap<String, InferParameter> {
    BTreeMap::from([
        (
            "shared_memory_region".to_string(),
            param(ParameterChoice::StringParam(region.into())),
        ),
        (
            "shared_memory_offset".to_string(),
            param(ParameterChoice::Int64Param(offset)),
        ),
        (
            "shared_memory_byte_size".to_string(),
            param(ParameterChoice::Int64Param(byte_size)),
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_memory_inputs_and_outputs() {
    let Some(s) = start_models("shared_memory_inputs_and_outputs", GrpcOptions::default()).await
    else {
        return;
    };
    let mut c = s.client().await;
    let object = ShmObject::new(512);
    object.write(0, &int32_bytes(10..26));
    object.write(64, &int32_bytes([3; 16]));
    for (name, offset) in [("in", 0u64), ("out", 256)] {
        c.system_shared_memory_register(SystemSharedMemoryRegisterRequest {
            name: name.into(),
            key: object.key.clone(),
            offset,
            byte_size: 256,
        })
        .await
        .unwrap();
    }
    let mut request = ModelInferRequest {
        model_name: "simple".into(),
        id: "shm".into(),
        inputs: vec![
            input("INPUT0", "INT32", &[1, 16]),
            input("INPUT1", "INT32", &[1, 16]),
        ],
        outputs: vec![
            InferRequestedOutputTensor {
                name: "OUTPUT0".into(),
                parameters: shm_params("out", 0, 64),
            },
            InferRequestedOutputTensor {
                name: "OUTPUT1".into(),
                parameters: BTreeMap::new(),
            },
        ],
        ..Default::default()
    };
    request.inputs[0].parameters = shm_params("in", 0, 64);
    request.inputs[1].parameters = shm_params("in", 64, 64);
    let r = c.model_infer(request.clone()).await.unwrap().into_inner();
    assert_eq!(r.id, "shm");
    // OUTPUT0 went to shared memory: described, with an empty raw entry; OUTPUT1 came back
    assert_eq!(r.outputs.len(), 2);
    assert_eq!(
        (
            r.outputs[0].name.as_str(),
            r.outputs[0].datatype.as_str(),
            r.outputs[0].shape.as_slice()
        ),
        ("OUTPUT0", "INT32", &[1i64, 16][..])
    );
    assert!(r.raw_output_contents[0].is_empty());
    assert_eq!(
        int32s(&r.raw_output_contents[1]),
        (7..23).collect::<Vec<_>>()
    );
    assert_eq!(int32s(&object.read(256, 64)), (13..29).collect::<Vec<_>>());

    // mixed: shared memory INPUT0, raw INPUT1 (raw entries go to the inputs without a region)
    let mut mixed = request.clone();
    mixed.inputs[1].parameters.clear();
    mixed.raw_input_contents = vec![int32_bytes([100; 16])];
    mixed.outputs[0].parameters = shm_params("out", 64, 64);
    c.model_infer(mixed).await.unwrap();
    assert_eq!(
        int32s(&object.read(320, 64)),
        (110..126).collect::<Vec<_>>()
    );

    // an output region too small: Triton's INTERNAL text
    let mut small = request.clone();
    small.outputs[0].parameters = shm_params("out", 0, 32);
    assert_eq!(
        failure(c.model_infer(small).await),
        (
            Code::Internal,
            "shared memory size specified with the request for output 'OUTPUT0' (32 bytes) should be at least 64 bytes to hold the results".into()
        )
    );
    // contents with a region
    let mut contents = request.clone();
    contents.inputs[0].contents = Some(InferTensorContents {
        int_contents: (0..16).collect(),
        ..Default::default()
    });
    assert_eq!(
        failure(c.model_infer(contents).await),
        (
            Code::InvalidArgument,
            "unexpected 'content' provided when using shared memory for input tensor 'INPUT0' for model 'simple'".into()
        )
    );
    // an unknown region, for an input and for an output
    let mut unknown = request.clone();
    unknown.inputs[0].parameters = shm_params("nope", 0, 64);
    assert_eq!(
        failure(c.model_infer(unknown).await),
        (
            Code::NotFound,
            "Unable to find shared memory region: 'nope'".into()
        )
    );
    let mut unknown = request.clone();
    unknown.outputs[0].parameters = shm_params("nope", 0, 64);
    assert_eq!(
        failure(c.model_infer(unknown).await).1,
        "Unable to find shared memory region: 'nope'"
    );
    // outside the region
    let mut outside = request.clone();
    outside.inputs[0].parameters = shm_params("in", 224, 64);
    let (code, message) = failure(c.model_infer(outside).await);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("'in'"), "{message}");
    // on a stream too
    let mut responses = c
        .model_stream_infer(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let r = responses.message().await.unwrap().unwrap();
    assert_eq!(r.error_message, "");
    assert!(r.infer_response.unwrap().raw_output_contents[0].is_empty());
    c.system_shared_memory_unregister(SystemSharedMemoryUnregisterRequest::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_inference() {
    let Some(s) = start_models(
        "gzip_inference",
        GrpcOptions {
            response_compression: Some(CompressionEncoding::Gzip),
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    let mut c = GrpcInferenceServiceClient::new(s.channel().await)
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let r = c.model_infer(simple("gz", 4)).await.unwrap();
    assert_eq!(
        r.metadata()
            .get("grpc-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
    check_simple(&r.into_inner(), "gz", 4);
    let mut d = GrpcInferenceServiceClient::new(s.channel().await)
        .send_compressed(CompressionEncoding::Deflate);
    check_simple(
        &d.model_infer(simple("df", 1)).await.unwrap().into_inner(),
        "df",
        1,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines() {
    let Some(s) = start_models("deadlines", GrpcOptions::default()).await else {
        return;
    };
    // over the socket: a deadline that passes fails the call, the server carries on
    let mut c = s.client().await;
    let mut request = tonic::Request::new(simple("late", 0));
    request.set_timeout(Duration::from_nanos(1));
    let (code, _) = failure(c.model_infer(request).await);
    assert!(
        matches!(code, Code::Cancelled | Code::DeadlineExceeded),
        "{code:?}"
    );
    let mut request = tonic::Request::new(simple("in-time", 0));
    request.set_timeout(Duration::from_secs(60));
    check_simple(
        &c.model_infer(request).await.unwrap().into_inner(),
        "in-time",
        0,
    );

    // a deadline already past when the request reaches the queue: the core answers CANCELLED
    // without running it
    let frontend = ferrite_grpc::Frontend::new(s.server.clone(), GrpcOptions::default());
    let past = Instant::now() - Duration::from_secs(1);
    let e = frontend
        .infer(
            simple("past", 0),
            Some(past),
            &Default::default(),
            ferrite_grpc::Rpc::ModelInfer,
        )
        .await
        .unwrap_err();
    let status = ferrite_grpc::to_status(e.error());
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
}
