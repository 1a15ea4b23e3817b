//! Dynamic batching against ONNX Runtime itself, on the real EfficientNet-Lite0 example model
//! and on `simple`: throughput and p50/p99 over HTTP (binary tensors, one request = one
//! sample) at concurrency 1 to 32 with batching off and on (one instance each), and the ratio
//! of the server's batched throughput to ONNX Runtime's own in-process throughput at the same
//! batch size on the same machine (same threads as the server's instance).
//!
//! `scripts/bench.sh` runs it (`cargo bench -p ferrite-server --bench batching`);
//! `FERRITE_BENCH_SECONDS` sets each step's length (default 2).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ServerProcess;
use ort::value::Tensor;

const WARMUP: Duration = Duration::from_millis(500);
const LEVELS: [usize; 5] = [1, 4, 8, 16, 32];
const BATCH: usize = 8;

fn step() -> Duration {
    common::step(2.0)
}

struct Model {
    name: &'static str,
    input: &'static str,
    datatype: &'static str,
    /// Dims of one sample (after the batch dimension).
    dims: Vec<i64>,
    element_size: usize,
}

impl Model {
    fn sample_bytes(&self) -> usize {
        self.dims.iter().product::<i64>() as usize * self.element_size
    }

    fn inputs(&self) -> Vec<&'static str> {
        if self.name == "simple" {
            vec!["INPUT0", "INPUT1"]
        } else {
            vec![self.input]
        }
    }
}

/// Samples per second of ONNX Runtime's own `run` at `batch`, in-process.
fn raw_ort(env: &ort::environment::Environment, model: &Model, batch: usize) -> f64 {
    // The server's single instance gets all the cores (see Threads::from_config).
    let threads =
        ferrite_onnx::Threads::from_config(&serde_json::json!({"instance_group": [{"count": 1}]}));
    let file = common::workspace().join(format!("configs/models/{}/1/model.onnx", model.name));
    let mut session = ferrite_onnx::open_session(env, &file, threads, &[]).expect("session");
    let mut shape = vec![batch as i64];
    shape.extend(&model.dims);
    let count: usize = shape.iter().product::<i64>() as usize;
    let run = |session: &mut ort::session::Session| {
        let inputs: Vec<(String, ort::value::DynValue)> = model
            .inputs()
            .into_iter()
            .map(|name| {
                let value = if model.datatype == "FP32" {
                    Tensor::from_array((shape.clone(), vec![0.5f32; count]))
                        .unwrap()
                        .into_dyn()
                } else {
                    Tensor::from_array((shape.clone(), vec![1i32; count]))
                        .unwrap()
                        .into_dyn()
                };
                (name.to_string(), value)
            })
            .collect();
        session.run(inputs).unwrap();
    };
    let warm_until = Instant::now() + WARMUP;
    while Instant::now() < warm_until {
        run(&mut session);
    }
    let start = Instant::now();
    let mut runs = 0usize;
    while start.elapsed() < step() {
        run(&mut session);
        runs += 1;
    }
    (runs * batch) as f64 / start.elapsed().as_secs_f64()
}

/// A repository holding `model` with one CPU instance, with or without dynamic batching.
fn repository(model: &Model, batching: bool) -> tempfile::TempDir {
    let repo = tempfile::tempdir().expect("temp dir");
    let from = common::workspace().join("configs/models").join(model.name);
    let to = repo.path().join(model.name);
    std::fs::create_dir_all(to.join("1")).unwrap();
    std::fs::copy(from.join("1/model.onnx"), to.join("1/model.onnx")).unwrap();
    if from.join("labels.txt").is_file() {
        std::fs::copy(from.join("labels.txt"), to.join("labels.txt")).unwrap();
    }
    let mut config = std::fs::read_to_string(from.join("config.pbtxt")).unwrap();
    config.push_str("\ninstance_group [ { count: 1, kind: KIND_CPU } ]\n");
    if batching {
        config.push_str(&format!(
            "dynamic_batching {{ preferred_batch_size: [ {BATCH} ] max_queue_delay_microseconds: 5000 }}\n"
        ));
    }
    std::fs::write(to.join("config.pbtxt"), config).unwrap();
    repo
}

fn main() {
    let lib = common::release_dir().join(ferrite_onnx::ORT_LIBRARY);
    let env = ferrite_onnx::init_runtime(&lib).expect("ONNX Runtime loads");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let models = [
        Model {
            name: "efficientnet_lite0_onnx",
            input: "input",
            datatype: "FP32",
            dims: vec![3, 224, 224],
            element_size: 4,
        },
        Model {
            name: "simple",
            input: "INPUT0",
            datatype: "INT32",
            dims: vec![16],
            element_size: 4,
        },
    ];
    println!(
        "dynamic batching, HTTP binary tensors, one sample per request, {:.1} s per step, one instance",
        step().as_secs_f64()
    );
    for model in &models {
        let raw1 = raw_ort(&env, model, 1);
        let raw8 = raw_ort(&env, model, BATCH);
        println!(
            "\n{}: raw ONNX Runtime in-process: {raw1:.0} samples/s at batch 1, {raw8:.0} samples/s at batch {BATCH}",
            model.name
        );
        println!("batching  concurrency  infer/s    p50 us     p99 us   vs raw ORT batch {BATCH}");
        for batching in [false, true] {
            let repo = repository(model, batching);
            let server = ServerProcess::start_on(repo.path(), &[], &["HTTPService"]);
            let addr = server.address("HTTPService").expect("HTTP").to_string();
            let inputs = model.inputs();
            let tensor = vec![0u8; model.sample_bytes()];
            let dims: Vec<String> = model.dims.iter().map(i64::to_string).collect();
            let header_inputs: Vec<String> = inputs
                .iter()
                .map(|name| {
                    format!(
                        r#"{{"name":"{name}","shape":[1,{}],"datatype":"{}","parameters":{{"binary_data_size":{}}}}}"#,
                        dims.join(","),
                        model.datatype,
                        tensor.len()
                    )
                })
                .collect();
            let header = format!(
                r#"{{"inputs":[{}],"parameters":{{"binary_data_output":true}}}}"#,
                header_inputs.join(",")
            );
            let tensors: Vec<&[u8]> = inputs.iter().map(|_| tensor.as_slice()).collect();
            let request = Arc::new(common::binary_request(&addr, model.name, &header, &tensors));
            for concurrency in LEVELS {
                let (rate, p50, p99) = runtime.block_on(common::http_load(
                    &addr,
                    Arc::clone(&request),
                    concurrency,
                    WARMUP,
                    step(),
                ));
                println!(
                    "{:<8}  {concurrency:>11}  {rate:>7.0}  {:>8.0}  {:>9.0}   {:>5.1}%",
                    if batching { "on" } else { "off" },
                    p50.as_secs_f64() * 1e6,
                    p99.as_secs_f64() * 1e6,
                    100.0 * rate / raw8
                );
            }
        }
    }
}
