//! The Server facade with the real CPU driver loaded through the ABI, on the example model
//! repository. Needs `scripts/setup.sh` (models, ONNX Runtime) and a workspace build (the
//! driver library); `scripts/test.sh` does both and sets FERRITE_REQUIRE_DRIVERS=1, so these
//! tests fail there rather than skip.

mod common;

use bytes::Bytes;
use common::{built, int32, ints, target, workspace};
use ferrite_core::{
    DataType, ErrorCode, InferenceRequest, ModelState, RequestedOutput, Server, ServerOptions,
    Tensor,
};

fn server() -> Option<Server> {
    if !built() {
        return None;
    }
    let options = ServerOptions {
        model_repositories: vec![workspace().join("configs/models")],
        backend_directory: target(),
        ..Default::default()
    };
    Some(Server::start(options).expect("server starts"))
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
        "classify_image",
        "embed_text",
    ] {
        assert!(names.contains(&model), "{model} missing from {names:?}");
    }
    for e in &index {
        assert_eq!(
            e.state,
            Some(ModelState::Ready),
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
    for s in ["héllo", "", "world", "a\0b", "\0"] {
        ferrite_core::tensor::push_bytes_element(&mut data, s.as_bytes());
    }
    let request = InferenceRequest {
        model_name: "simple_identity".into(),
        inputs: vec![Tensor::new(
            "INPUT0",
            DataType::Bytes,
            vec![1, 5],
            Bytes::from(data.clone()),
        )],
        ..Default::default()
    };
    // Every byte comes back, NUL included.
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

/// `simple` in a temporary repository with extra configuration appended.
fn simple_with(extra: &str) -> Option<(tempfile::TempDir, Server)> {
    model_with("simple", extra)
}

/// An example model in a temporary repository with extra configuration appended.
fn model_with(model: &str, extra: &str) -> Option<(tempfile::TempDir, Server)> {
    let (repo, options) = repo_with(model, extra)?;
    let server = Server::start(options).unwrap();
    assert!(server.is_ready(), "{:?}", server.index(false));
    Some((repo, server))
}

/// A temporary repository holding an example model with extra configuration appended, and
/// the options of a server on it.
fn repo_with(model: &str, extra: &str) -> Option<(tempfile::TempDir, ServerOptions)> {
    if !built() {
        return None;
    }
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path().join(model);
    std::fs::create_dir_all(dir.join("1")).unwrap();
    let models = workspace().join("configs/models").join(model);
    std::fs::copy(models.join("1/model.onnx"), dir.join("1/model.onnx")).unwrap();
    if models.join("labels.txt").is_file() {
        std::fs::copy(models.join("labels.txt"), dir.join("labels.txt")).unwrap();
    }
    let config = std::fs::read_to_string(models.join("config.pbtxt")).unwrap();
    std::fs::write(dir.join("config.pbtxt"), format!("{config}\n{extra}\n")).unwrap();
    let options = ServerOptions {
        model_repositories: vec![repo.path().to_path_buf()],
        backend_directory: target(),
        ..Default::default()
    };
    Some((repo, options))
}

#[test]
fn gpu_instances_without_a_gpu_fail_clearly() {
    let Some((_repo, options)) = repo_with(
        "simple",
        "instance_group [ { count: 1, kind: KIND_CPU }, { count: 2, kind: KIND_GPU, gpus: [ 1, 2 ] } ]",
    ) else {
        return;
    };
    let server = Server::start(options).unwrap();
    let index = server.index(false);
    let row = index.iter().find(|e| e.name == "simple").unwrap();
    assert_eq!(row.state.map(|s| s.as_str()), Some("UNAVAILABLE"));
    assert!(
        row.reason.contains("instance group 'simple_1' of model 'simple' asks for KIND_GPU instances on GPUs [1, 2], but no GPU is available"),
        "{}",
        row.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_batching_forms_batches_under_load() {
    let Some((_repo, server)) = simple_with(
        "dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 50000 }\ninstance_group [ { count: 1, kind: KIND_CPU } ]",
    ) else {
        return;
    };
    let mut handles = Vec::new();
    for i in 0..24i32 {
        let s = server.clone();
        handles.push(tokio::spawn(async move {
            let a: Vec<i32> = (0..16).map(|v| v + i).collect();
            let request = InferenceRequest {
                model_name: "simple".into(),
                inputs: vec![
                    int32("INPUT0", vec![1, 16], &a),
                    int32("INPUT1", vec![1, 16], &[1; 16]),
                ],
                ..Default::default()
            };
            (i, s.infer_one(request).await)
        }));
    }
    for h in handles {
        let (i, r) = h.await.unwrap();
        let r = r.unwrap();
        // Every request gets its own rows back.
        assert_eq!(ints(&r.outputs[0])[0], i + 1);
        assert_eq!(r.outputs[0].shape, vec![1, 16]);
    }
    let stats = &server.statistics(Some("simple"), None).unwrap()[0];
    assert_eq!(stats.inference_count, 24);
    assert!(stats.execution_count < 24, "no batches formed: {stats:?}");
    assert!(
        stats.batch_stats.iter().any(|b| b.batch_size > 1),
        "{stats:?}"
    );
    // Preferred sizes are honoured: no batch exceeds 8.
    assert!(
        stats.batch_stats.iter().all(|b| b.batch_size <= 8),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_cannot_take_the_next_request_goes_at_once() {
    // Triton's GetDynamicBatch: 5 rows pending and 4 behind would exceed max_batch_size 8, so
    // the 5 go at once ("send_now"), not after the delay; the 4 then wait for theirs.
    let Some((_repo, server)) = simple_with(
        "dynamic_batching { max_queue_delay_microseconds: 1500000 }\ninstance_group [ { count: 1, kind: KIND_CPU } ]",
    ) else {
        return;
    };
    let started = std::time::Instant::now();
    let timed = |batch| {
        let s = server.clone();
        async move {
            let r = s.infer_one(simple_request(batch)).await;
            (r, started.elapsed())
        }
    };
    let ((five, five_took), (four, four_took)) = tokio::join!(timed(5), timed(4));
    assert_eq!(five.unwrap().outputs[0].shape, vec![5, 16]);
    assert_eq!(four.unwrap().outputs[0].shape, vec![4, 16]);
    let stats = &server.statistics(Some("simple"), None).unwrap()[0];
    assert_eq!(stats.execution_count, 2, "{stats:?}");
    let sizes: Vec<u64> = stats.batch_stats.iter().map(|b| b.batch_size).collect();
    assert!(sizes.contains(&5) && sizes.contains(&4), "{sizes:?}");
    // The 5 did not wait for the delay; the 4, alone after them, waited for it.
    assert!(
        five_took < std::time::Duration::from_millis(1000),
        "{five_took:?}"
    );
    assert!(
        four_took >= std::time::Duration::from_millis(1400),
        "{four_took:?}"
    );
}

#[tokio::test]
async fn the_delay_bounds_latency_for_a_lone_request() {
    let Some((_repo, server)) = simple_with(
        "dynamic_batching { preferred_batch_size: [ 8 ] max_queue_delay_microseconds: 100000 }",
    ) else {
        return;
    };
    let started = std::time::Instant::now();
    server.infer_one(simple_request(1)).await.unwrap();
    let waited = started.elapsed();
    // Alone in the queue, the request waits for the delay (100 ms), then runs.
    assert!(waited >= std::time::Duration::from_millis(90), "{waited:?}");
    assert!(waited < std::time::Duration::from_secs(5), "{waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_policies_refuse_and_time_out_with_triton_texts() {
    // A long batching delay keeps requests queued: the queue holds two, the third is refused.
    let Some((_repo, server)) = simple_with(
        "dynamic_batching { preferred_batch_size: [ 8 ] max_queue_delay_microseconds: 300000 \
         default_queue_policy { max_queue_size: 2 } }",
    ) else {
        return;
    };
    let first = server.infer(simple_request(1)).unwrap();
    let second = server.infer(simple_request(1)).unwrap();
    let e = server.infer(simple_request(1)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable);
    assert_eq!(e.message(), "Exceeds maximum queue size for model 'simple'");
    for stream in [first, second] {
        assert!(stream.single().await.is_ok());
    }
    drop(server);

    // A queue timeout shorter than the delay: the timer rejects the request.
    let Some((_repo, server)) = simple_with(
        "dynamic_batching { preferred_batch_size: [ 8 ] max_queue_delay_microseconds: 300000 \
         default_queue_policy { default_timeout_microseconds: 20000 } }",
    ) else {
        return;
    };
    let started = std::time::Instant::now();
    let e = server.infer_one(simple_request(1)).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable);
    assert_eq!(e.message(), "Request timeout expired");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(250),
        "the timer fired late"
    );
    assert_eq!(
        server.statistics(Some("simple"), None).unwrap()[0].execution_count,
        0
    );
}

async fn finish_order(ordered: bool) -> Vec<&'static str> {
    let extra = format!(
        "instance_group [ {{ count: 2, kind: KIND_CPU }} ]\ndynamic_batching {{ preserve_ordering: {ordered} }}"
    );
    let Some((_repo, server)) = model_with("efficientnet_lite0_onnx", &extra) else {
        return Vec::new();
    };
    let image = |batch: i64| InferenceRequest {
        model_name: "efficientnet_lite0_onnx".into(),
        inputs: vec![Tensor::new(
            "input",
            DataType::Fp32,
            vec![batch, 3, 224, 224],
            Bytes::from(vec![0u8; batch as usize * 3 * 224 * 224 * 4]),
        )],
        ..Default::default()
    };
    // A slow request (batch 8) reaches one instance, then a quick one (batch 1) the other.
    let slow = server.infer(image(8)).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let quick = server.infer(image(1)).unwrap();
    let order = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (o1, o2) = (order.clone(), order.clone());
    let a = tokio::spawn(async move {
        slow.single().await.unwrap();
        o1.lock().push("slow");
    });
    let b = tokio::spawn(async move {
        quick.single().await.unwrap();
        o2.lock().push("quick");
    });
    a.await.unwrap();
    b.await.unwrap();
    order.lock().clone()
}

#[tokio::test(flavor = "current_thread")]
async fn preserve_ordering_holds_later_responses_back() {
    // Without it the quick request, queued second, finishes first (on a busy machine, where
    // the other tests of this file load the whole example repository at the same time, it
    // may not every time: a few tries)...
    let mut free = Vec::new();
    for _ in 0..5 {
        free = finish_order(false).await;
        if free.is_empty() {
            return;
        }
        if free == ["quick", "slow"] {
            break;
        }
    }
    assert_eq!(
        free,
        vec!["quick", "slow"],
        "the test needs the quick request to finish first"
    );
    // ...with it, its response waits for the slow one's.
    assert_eq!(finish_order(true).await, vec!["slow", "quick"]);
}
