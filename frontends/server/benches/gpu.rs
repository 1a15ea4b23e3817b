//! The CUDA driver against ONNX Runtime's CUDA provider itself, on the real EfficientNet-Lite0
//! example model: for batch 1, 8 and 32, the server's throughput with dynamic batching
//! (`max_batch_size` and preferred batch = that batch, one KIND_GPU instance on GPU 0) under
//! 64 concurrent one-image HTTP requests (binary tensors), against in-process ONNX Runtime
//! with the CUDA provider on GPU 0 running that batch back to back from host memory, as the
//! server's instance does. The goal: the server reaches 90% of in-process ONNX Runtime.
//!
//! Needs an NVIDIA GPU and the GPU runtime (`scripts/setup_gpu.sh target/release`); without
//! them it prints why and measures nothing. `scripts/bench_gpu.sh` runs it;
//! `FERRITE_BENCH_SECONDS` sets each step's length (default 2).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ServerProcess;
use ort::value::Tensor;

const WARMUP: Duration = Duration::from_secs(2);
const BATCHES: [usize; 3] = [1, 8, 32];
const CONCURRENCY: usize = 64;
const MODEL: &str = "efficientnet_lite0_onnx";
const DIMS: [i64; 3] = [3, 224, 224];

fn step() -> Duration {
    common::step(2.0)
}

/// Images per second of ONNX Runtime's own `run` with the CUDA provider on GPU 0, at `batch`,
/// inputs from host memory and outputs back to it.
fn raw_ort_cuda(env: &ort::environment::Environment, batch: usize) -> f64 {
    let file = common::workspace().join(format!("configs/models/{MODEL}/1/model.onnx"));
    let threads =
        ferrite_onnx::Threads::from_config(&serde_json::json!({"instance_group": [{"count": 1}]}));
    let cuda = ort::ep::CUDA::default()
        .with_device_id(0)
        .build()
        .error_on_failure();
    let mut session =
        ferrite_onnx::open_session(env, &file, threads, &[cuda]).expect("CUDA session");
    let mut shape = vec![batch as i64];
    shape.extend(DIMS);
    let count = shape.iter().product::<i64>() as usize;
    let images = vec![0.5f32; count];
    let mut run = || {
        let input = Tensor::from_array((shape.clone(), images.clone())).unwrap();
        session.run(ort::inputs!["input" => input]).unwrap();
    };
    let warm_until = Instant::now() + WARMUP;
    while Instant::now() < warm_until {
        run();
    }
    let start = Instant::now();
    let mut runs = 0usize;
    while start.elapsed() < step() {
        run();
        runs += 1;
    }
    (runs * batch) as f64 / start.elapsed().as_secs_f64()
}

/// A repository holding EfficientNet-Lite0 with one GPU instance batching up to `batch`.
fn repository(batch: usize) -> tempfile::TempDir {
    let repo = tempfile::tempdir().expect("temp dir");
    let from = common::workspace().join("configs/models").join(MODEL);
    let to = repo.path().join(MODEL);
    std::fs::create_dir_all(to.join("1")).unwrap();
    std::fs::copy(from.join("1/model.onnx"), to.join("1/model.onnx")).unwrap();
    std::fs::copy(from.join("labels.txt"), to.join("labels.txt")).unwrap();
    let config = std::fs::read_to_string(from.join("config.pbtxt"))
        .unwrap()
        .replace("max_batch_size: 8", &format!("max_batch_size: {batch}"));
    let config = format!(
        "{config}\ninstance_group [ {{ count: 1, kind: KIND_GPU, gpus: [ 0 ] }} ]\ndynamic_batching {{ preferred_batch_size: [ {batch} ] max_queue_delay_microseconds: 2000 }}\n"
    );
    std::fs::write(to.join("config.pbtxt"), config).unwrap();
    repo
}

fn main() {
    let dir = common::release_dir();
    let gpu_runtime = dir
        .join(ferrite_driver_cuda::runtime::RUNTIME_DIR)
        .join(ferrite_onnx::ORT_LIBRARY);
    let ready = ferrite_driver_cuda::runtime::ready(&gpu_runtime);
    let devices = match ready {
        Ok(devices) => devices,
        Err(e) => {
            println!("GPU benchmark SKIPPED: {}", e.message);
            return;
        }
    };
    if !dir.join("libferrite_driver_cuda.so").is_file() {
        println!(
            "GPU benchmark SKIPPED: libferrite_driver_cuda.so not in {} (run scripts/bench_gpu.sh)",
            dir.display()
        );
        return;
    }
    let env = ferrite_onnx::init_runtime(&gpu_runtime).expect("ONNX Runtime (GPU) loads");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("client runtime");
    println!("{}", devices.gpus[0]);
    println!(
        "EfficientNet-Lite0 on GPU 0: dynamic batching, {CONCURRENCY} concurrent one-image HTTP requests (binary tensors), {:.1} s per step",
        step().as_secs_f64()
    );
    println!("batch   raw ORT CUDA img/s   server img/s    p50 us     p99 us   server/raw");
    let image = vec![0u8; DIMS.iter().product::<i64>() as usize * 4];
    for batch in BATCHES {
        let raw = raw_ort_cuda(&env, batch);
        let repo = repository(batch);
        let server = ServerProcess::start_on(repo.path(), &[], &["HTTPService"]);
        let addr = server.address("HTTPService").expect("HTTP").to_string();
        let header = format!(
            r#"{{"inputs":[{{"name":"input","shape":[1,3,224,224],"datatype":"FP32","parameters":{{"binary_data_size":{}}}}}],"parameters":{{"binary_data_output":true}}}}"#,
            image.len()
        );
        let request = Arc::new(common::binary_request(&addr, MODEL, &header, &[&image]));
        let (rate, p50, p99) = runtime.block_on(common::http_load(
            &addr,
            request,
            CONCURRENCY,
            WARMUP,
            step(),
        ));
        println!(
            "{batch:>5}   {raw:>18.0}   {rate:>12.0}  {:>8.0}  {:>9.0}   {:>8.1}%",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            100.0 * rate / raw
        );
    }
}
