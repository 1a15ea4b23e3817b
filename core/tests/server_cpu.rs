//! The Server facade with the real CPU driver loaded through the ABI, on the example model
//! repository. Needs `scripts/setup.sh` (models, ONNX Runtime) and a workspace build (the
//! driver library); `scripts/test.sh` does both and sets FERRITE_REQUIRE_DRIVERS=1, so these
//! tests fail there rather than skip.

use std::path::PathBuf;

use bytes::Bytes;
use ferrite_core::{
    DataType, ErrorCode, InferenceRequest, ModelState, RequestedOutput, Server, ServerOptions,
    Tensor,
};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn server() -> Option<Server> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("debug");
    let ready = target.join("libferrite_driver_cpu.so").is_file()
        && target.join("libonnxruntime.so.1.31.1").is_file()
        && workspace()
            .join("configs/models/simple/1/model.onnx")
            .is_file();
    if !ready {
        assert!(
            std::env::var_os("FERRITE_REQUIRE_DRIVERS").is_none(),
            "the CPU driver, ONNX Runtime or the example models are missing; run scripts/setup.sh and cargo build --workspace"
        );
        eprintln!(
            "SKIPPED: CPU driver / ONNX Runtime / example models not built (run scripts/test.sh)"
        );
        return None;
    }
    let options = ServerOptions {
        model_repositories: vec![workspace().join("configs/models")],
        backend_directory: target,
        ..Default::default()
    };
    Some(Server::start(options).expect("server starts"))
}

fn int32(name: &str, shape: Vec<i64>, values: &[i32]) -> Tensor {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    Tensor::new(name, DataType::Int32, shape, Bytes::from(data))
}

fn ints(t: &Tensor) -> Vec<i32> {
    t.data
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn simple_request(batch: i64) -> InferenceRequest {
    let a: Vec<i32> = (0..16 * batch as i32).collect();
    let b = vec![1; 16 * batch as usize];
    InferenceRequest {
        model_name: "simple".into(),
        id: "r1".into(),
        inputs: vec![
            int32("INPUT0", vec![batch, 16], &a),
            int32("INPUT1", vec![batch, 16], &b),
        ],
        ..Default::default()
    }
}

#[tokio::test]
async fn serves_the_example_repository() {
    let Some(server) = server() else { return };
    let index = server.index(false);
    let names: Vec<&str> = index.iter().map(|e| e.name.as_str()).collect();
    for model in [
        "efficientnet_lite0_onnx",
        "simple",
        "simple_identity",
        "simple_int8",
        "simple_string",
    ] {
        assert!(names.contains(&model), "{model} missing from {names:?}");
    }
    for e in &index {
        assert_eq!(
            e.state,
            ModelState::Ready,
            "{} not ready: {}",
            e.name,
            e.reason
        );
    }
    assert!(server.is_ready());

    let response = server.infer_one(simple_request(2)).await.unwrap();
    assert_eq!(response.id, "r1");
    assert_eq!(response.model_version, 1);
    assert_eq!(response.outputs.len(), 2);
    assert_eq!(response.outputs[0].name, "OUTPUT0");
    assert_eq!(response.outputs[0].shape, vec![2, 16]);
    let sum = ints(&response.outputs[0]);
    let diff = ints(&response.outputs[1]);
    for i in 0..32 {
        assert_eq!(sum[i], i as i32 + 1);
        assert_eq!(diff[i], i as i32 - 1);
    }

    let stats = server.statistics(Some("simple"), None).unwrap();
    assert_eq!(stats[0].inference_count, 2);
    assert_eq!(stats[0].execution_count, 1);
    assert_eq!(stats[0].inference_stats.success.count, 1);
    assert_eq!(stats[0].batch_stats[0].batch_size, 2);
}

#[tokio::test]
async fn auto_completes_and_serves_strings() {
    let Some(server) = server() else { return };
    let config = server.model_config("simple_identity", None).unwrap();
    assert_eq!(config.input.len(), 1);
    assert_eq!(config.input[0].name, "INPUT0");
    assert_eq!(config.input[0].dims, vec![-1]);
    assert_eq!(config.output[0].name, "OUTPUT0");

    let mut data = Vec::new();
    for s in ["héllo", "", "world"] {
        ferrite_core::tensor::push_bytes_element(&mut data, s.as_bytes());
    }
    let request = InferenceRequest {
        model_name: "simple_identity".into(),
        inputs: vec![Tensor::new(
            "INPUT0",
            DataType::Bytes,
            vec![1, 3],
            Bytes::from(data.clone()),
        )],
        ..Default::default()
    };
    let response = server.infer_one(request).await.unwrap();
    assert_eq!(response.outputs[0].datatype, DataType::Bytes);
    assert_eq!(response.outputs[0].data, Bytes::from(data));
}

#[tokio::test]
async fn bad_requests_fail_alone() {
    let Some(server) = server() else { return };
    let mut wrong = simple_request(1);
    wrong.inputs[0] = int32("INPUT0", vec![1, 8], &[0; 8]);
    let e = server.infer(wrong).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArg);
    assert!(
        e.message().contains("unexpected shape for input 'INPUT0'"),
        "{}",
        e.message()
    );

    let mut unknown = simple_request(1);
    unknown.model_name = "nope".into();
    assert_eq!(
        server.infer(unknown).unwrap_err().code(),
        ErrorCode::NotFound
    );

    let mut classify = simple_request(1);
    classify.outputs.push(RequestedOutput {
        name: "OUTPUT0".into(),
        classification: Some(3),
        ..Default::default()
    });
    let response = server.infer_one(classify).await.unwrap();
    assert_eq!(response.outputs[0].datatype, DataType::Bytes);
    assert_eq!(response.outputs[0].shape, vec![1, 3]);

    // Many requests at once, from several tasks, all answered correctly.
    let mut handles = Vec::new();
    for _ in 0..32 {
        let s = server.clone();
        handles.push(tokio::spawn(
            async move { s.infer_one(simple_request(1)).await },
        ));
    }
    for h in handles {
        let r = h.await.unwrap().unwrap();
        assert_eq!(ints(&r.outputs[0])[15], 16);
    }
}

#[tokio::test]
async fn a_request_past_its_deadline_does_not_run() {
    let Some(server) = server() else { return };
    let before = server.statistics(Some("simple"), None).unwrap()[0].execution_count;
    let mut late = simple_request(1);
    late.deadline = Some(std::time::Instant::now() - std::time::Duration::from_millis(1));
    let e = server.infer_one(late).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Cancelled);
    assert!(e.message().contains("deadline"), "{}", e.message());
    let stats = &server.statistics(Some("simple"), None).unwrap()[0];
    assert_eq!(stats.execution_count, before, "it must not have run");
    assert!(stats.inference_stats.fail.count >= 1);
}
