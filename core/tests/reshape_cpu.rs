//! `reshape` through the Server facade and the real CPU driver: Triton's quick-start
//! `densenet_onnx` (its config.pbtxt unchanged) gives the same logits as the classifier it
//! wraps, and example models served under reshaping configurations (batching, variable
//! dimensions) answer in their configured dims. Bad reshapes fail the load with Triton's
//! texts while the rest of the repository serves.

mod common;

use bytes::Bytes;
use common::{built, f32s, int32, ints, present, target, workspace};
use ferrite_core::{
    DataType, InferenceRequest, ModelState, RequestedOutput, Server, ServerOptions, Tensor,
};

/// A repository of example models, each `(model, config.pbtxt)`: the model's version folder
/// and label files copied, the configuration replaced when one is given.
fn repo(models: &[(&str, Option<&str>)]) -> Option<(tempfile::TempDir, Server)> {
    if !built() {
        return None;
    }
    let examples = workspace().join("configs/models");
    let needed: Vec<_> = models
        .iter()
        .map(|(m, _)| examples.join(m).join("1/model.onnx"))
        .collect();
    if !present(&needed) {
        return None;
    }
    let repo = tempfile::tempdir().unwrap();
    for (model, config) in models {
        let from = examples.join(model);
        let to = repo.path().join(model);
        std::fs::create_dir_all(to.join("1")).unwrap();
        std::fs::copy(from.join("1/model.onnx"), to.join("1/model.onnx")).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "txt") {
                std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
            }
        }
        let text = match config {
            Some(text) => text.to_string(),
            None => std::fs::read_to_string(from.join("config.pbtxt")).unwrap(),
        };
        std::fs::write(to.join("config.pbtxt"), text).unwrap();
    }
    let options = ServerOptions {
        model_repositories: vec![repo.path().to_path_buf()],
        backend_directory: target(),
        ..Default::default()
    };
    Some((repo, Server::start(options).expect("server starts")))
}

fn fp32(name: &str, shape: Vec<i64>, values: &[f32]) -> Tensor {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    Tensor::new(name, DataType::Fp32, shape, Bytes::from(data))
}

fn request(model: &str, inputs: Vec<Tensor>) -> InferenceRequest {
    InferenceRequest {
        model_name: model.into(),
        id: "r".into(),
        inputs,
        ..Default::default()
    }
}

/// A deterministic image-like input in [-1, 1].
fn pixels() -> Vec<f32> {
    let mut state = 0x2545_f491_u32;
    (0..3 * 224 * 224)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

#[tokio::test]
async fn tritons_densenet_onnx_config_serves_unchanged() {
    let Some((_repo, server)) = repo(&[("densenet_onnx", None), ("efficientnet_lite0_onnx", None)])
    else {
        return;
    };
    for e in server.index(false) {
        assert_eq!(e.state, Some(ModelState::Ready), "{}: {}", e.name, e.reason);
    }
    let config = server.model_config("densenet_onnx", None).unwrap();
    assert_eq!(config.max_batch_size, 0);
    assert_eq!(config.input[0].dims, vec![3, 224, 224]);
    assert_eq!(
        config.input[0].reshape.as_ref().unwrap().shape,
        vec![1, 3, 224, 224]
    );
    assert_eq!(
        config.output[0].reshape.as_ref().unwrap().shape,
        vec![1, 1000, 1, 1]
    );

    let x = pixels();
    let dense = server
        .infer_one(request(
            "densenet_onnx",
            vec![fp32("data_0", vec![3, 224, 224], &x)],
        ))
        .await
        .unwrap();
    assert_eq!(dense.outputs[0].name, "fc6_1");
    assert_eq!(dense.outputs[0].shape, vec![1000], "the client sees dims");
    let plain = server
        .infer_one(request(
            "efficientnet_lite0_onnx",
            vec![fp32("input", vec![1, 3, 224, 224], &x)],
        ))
        .await
        .unwrap();
    assert_eq!(plain.outputs[0].shape, vec![1, 1000]);
    let (a, b) = (f32s(&dense.outputs[0]), f32s(&plain.outputs[0]));
    assert!(
        a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-4),
        "densenet_onnx's logits differ from the classifier's"
    );

    // Classification on the reshaped output: top 3 of [1000], with Triton's labels.
    let mut r = request("densenet_onnx", vec![fp32("data_0", vec![3, 224, 224], &x)]);
    r.outputs.push(RequestedOutput {
        name: "fc6_1".into(),
        classification: Some(3),
        ..Default::default()
    });
    let top = server.infer_one(r).await.unwrap();
    assert_eq!(top.outputs[0].shape, vec![3]);
    let best = (0..1000).max_by(|&i, &j| b[i].total_cmp(&b[j])).unwrap();
    let first = ferrite_core::tensor::bytes_elements(&top.outputs[0].data).unwrap()[0].to_vec();
    let first = String::from_utf8(first).unwrap();
    let labels = std::fs::read_to_string(
        workspace().join("configs/models/densenet_onnx/densenet_labels.txt"),
    )
    .unwrap();
    let label = labels.lines().nth(best).unwrap();
    assert!(first.ends_with(&format!(":{best}:{label}")), "{first}");

    // The model's own shape is not the client's.
    let e = server
        .infer_one(request(
            "densenet_onnx",
            vec![fp32("data_0", vec![1, 3, 224, 224], &x)],
        ))
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        "[request id: r] unexpected shape for input 'data_0' for model 'densenet_onnx'. Expected [3,224,224], got [1,3,224,224]. "
    );
}

const SIMPLE_RESHAPED: &str = r#"
name: "simple"
platform: "onnxruntime_onnx"
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 20000 }
input [
  { name: "INPUT0" data_type: TYPE_INT32 dims: [ 4, 4 ] reshape { shape: [ 16 ] } },
  { name: "INPUT1" data_type: TYPE_INT32 dims: [ 2, 8 ] reshape { shape: [ 16 ] } }
]
output [
  { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 2, 2, 4 ] reshape { shape: [ 16 ] } },
  { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
"#;

const IDENTITY_RESHAPED: &str = r#"
name: "simple_identity"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_STRING dims: [ -1, 1 ] reshape { shape: [ -1 ] } } ]
output [ { name: "OUTPUT0" data_type: TYPE_STRING dims: [ -1, 1 ] reshape { shape: [ -1 ] } } ]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_requests_reshape_in_and_out() {
    let Some((_repo, server)) = repo(&[
        ("simple", Some(SIMPLE_RESHAPED)),
        ("simple_identity", Some(IDENTITY_RESHAPED)),
    ]) else {
        return;
    };
    for e in server.index(false) {
        assert_eq!(e.state, Some(ModelState::Ready), "{}: {}", e.name, e.reason);
    }
    let server = std::sync::Arc::new(server);
    // Concurrent requests of 1..=3 rows share executions in the model's shapes.
    let mut tasks = Vec::new();
    for batch in [1i64, 2, 3, 1, 2] {
        let server = std::sync::Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            let n = 16 * batch as usize;
            let a: Vec<i32> = (0..n as i32).map(|v| v * batch as i32).collect();
            let b = vec![3; n];
            let r = request(
                "simple",
                vec![
                    int32("INPUT0", vec![batch, 4, 4], &a),
                    int32("INPUT1", vec![batch, 2, 8], &b),
                ],
            );
            let response = server.infer_one(r).await.unwrap();
            assert_eq!(response.outputs[0].shape, vec![batch, 2, 2, 4]);
            assert_eq!(response.outputs[1].shape, vec![batch, 16]);
            let sum = ints(&response.outputs[0]);
            let diff = ints(&response.outputs[1]);
            for i in 0..n {
                assert_eq!(sum[i], a[i] + 3);
                assert_eq!(diff[i], a[i] - 3);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = server.statistics(Some("simple"), None).unwrap();
    assert_eq!(stats[0].inference_count, 9);
    assert!(
        stats[0].execution_count < 5,
        "{:?}",
        stats[0].execution_count
    );

    // Variable dimensions travel through the reshape: [2, 3, 1] -> [2, 3] -> [2, 3, 1].
    let mut data = Vec::new();
    for s in ["a", "bb", "", "dddd", "e", "ff"] {
        ferrite_core::tensor::push_bytes_element(&mut data, s.as_bytes());
    }
    let r = request(
        "simple_identity",
        vec![Tensor::new(
            "INPUT0",
            DataType::Bytes,
            vec![2, 3, 1],
            Bytes::from(data.clone()),
        )],
    );
    let response = server.infer_one(r).await.unwrap();
    assert_eq!(response.outputs[0].shape, vec![2, 3, 1]);
    assert_eq!(response.outputs[0].data, Bytes::from(data));
}

#[test]
fn bad_reshapes_fail_the_load_with_tritons_texts() {
    let different_size = SIMPLE_RESHAPED.replace("dims: [ 4, 4 ]", "dims: [ 4, 5 ]");
    let zero = SIMPLE_RESHAPED.replace(
        "reshape { shape: [ 16 ] } },\n  { name: \"INPUT1\"",
        "reshape { shape: [ 16, 0 ] } },\n  { name: \"INPUT1\"",
    );
    let not_the_model = SIMPLE_RESHAPED.replace(
        "dims: [ 2, 8 ] reshape { shape: [ 16 ] }",
        "dims: [ 2, 8 ] reshape { shape: [ 8, 2 ] }",
    );
    let non_batching_scalar = IDENTITY_RESHAPED
        .replace("max_batch_size: 8", "max_batch_size: 0")
        .replace(
            "dims: [ -1, 1 ] reshape { shape: [ -1 ] } } ]\noutput",
            "dims: [ 1 ] reshape { shape: [ ] } } ]\noutput",
        );
    let cases = [
        (
            different_size,
            "model input 'INPUT0' has different size for dims and reshape",
        ),
        (
            zero,
            "model input 'INPUT0' reshape dimensions must be integer >= 1, or -1 to indicate a variable-size dimension",
        ),
        (
            not_the_model,
            "model 'simple', tensor 'INPUT1': the model expects 2 dimensions (shape [-1,16]) but the model configuration specifies 3 dimensions (an initial batch dimension because max_batch_size > 0 followed by the explicit tensor shape, making complete shape [-1,8,2])",
        ),
        (
            non_batching_scalar,
            "model input 'INPUT0' cannot have empty reshape for non-batching model as scalar tensors are not supported",
        ),
    ];
    for (config, want) in cases {
        let model = if config.contains("simple_identity") {
            "simple_identity"
        } else {
            "simple"
        };
        let Some((_repo, server)) =
            repo(&[(model, Some(&config)), ("efficientnet_lite0_onnx", None)])
        else {
            return;
        };
        let index = server.index(false);
        let entry = index.iter().find(|e| e.name == model).unwrap();
        assert_eq!(entry.state, Some(ModelState::Unavailable), "{config}");
        assert!(
            entry.reason.contains(want),
            "{}\nwanted: {want}",
            entry.reason
        );
        let other = index
            .iter()
            .find(|e| e.name == "efficientnet_lite0_onnx")
            .unwrap();
        assert_eq!(other.state, Some(ModelState::Ready), "the rest serves");
    }
}
