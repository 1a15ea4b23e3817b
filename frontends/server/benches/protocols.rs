//! Throughput and latency of `simple` over HTTP and over gRPC at concurrency 1, 4 and 16:
//! each step runs `FERRITE_BENCH_SECONDS` (default 2) after a short warm-up, every worker on
//! its own connection sending requests back to back; the client shares the machine with the
//! server, so compare the rows with each other, not with other machines.
//!
//! `scripts/bench.sh` sets up, builds the release driver and runs this
//! (`cargo bench -p ferrite-server --bench protocols`).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::ServerProcess;
use ferrite_proto::inference::ModelInferRequest;
use ferrite_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use ferrite_proto::inference::model_infer_request::InferInputTensor;

const WARMUP: Duration = Duration::from_millis(300);
const LEVELS: [usize; 3] = [1, 4, 16];

fn step() -> Duration {
    common::step(2.0)
}

fn tensor_bytes() -> (Vec<u8>, Vec<u8>) {
    let a: Vec<u8> = (0..16i32).flat_map(|v| v.to_le_bytes()).collect();
    let b: Vec<u8> = (0..16).flat_map(|_| 1i32.to_le_bytes()).collect();
    (a, b)
}

/// One gRPC worker: its own channel, raw_input_contents, requests back to back.
async fn grpc_worker(addr: String, start: Instant, end: Instant) -> Vec<Duration> {
    let mut client = GrpcInferenceServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let (a, b) = tensor_bytes();
    let input = |name: &str| InferInputTensor {
        name: name.into(),
        datatype: "INT32".into(),
        shape: vec![1, 16],
        ..Default::default()
    };
    let request = ModelInferRequest {
        model_name: "simple".into(),
        inputs: vec![input("INPUT0"), input("INPUT1")],
        raw_input_contents: vec![Bytes::from(a), Bytes::from(b)],
        ..Default::default()
    };
    let mut times = Vec::new();
    while Instant::now() < end {
        let t = Instant::now();
        let response = client.model_infer(request.clone()).await.expect("infer");
        assert_eq!(response.get_ref().raw_output_contents.len(), 2);
        if t >= start + WARMUP {
            times.push(t.elapsed());
        }
    }
    times
}

async fn run(protocol: &str, addr: &str, concurrency: usize) -> (f64, Duration, Duration) {
    let start = Instant::now();
    let end = start + WARMUP + step();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let addr = addr.to_string();
        tasks.push(match protocol {
            "HTTP" => {
                let header = r#"{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}}],"outputs":[{"name":"OUTPUT0","parameters":{"binary_data":true}},{"name":"OUTPUT1","parameters":{"binary_data":true}}]}"#;
                let (a, b) = tensor_bytes();
                let request = common::binary_request(&addr, "simple", header, &[&a, &b]);
                tokio::spawn(common::http_worker(addr, std::sync::Arc::new(request), start + WARMUP, end))
            }
            _ => tokio::spawn(grpc_worker(addr, start, end)),
        });
    }
    common::summarize(tasks, start + WARMUP).await
}

fn main() {
    let server = ServerProcess::start(
        &["--grpc-port", "0"],
        &["HTTPService", "GRPCInferenceService"],
    );
    let http = server.address("HTTPService").expect("HTTP").to_string();
    let grpc = server
        .address("GRPCInferenceService")
        .expect("gRPC")
        .to_string();
    // One client thread: the server keeps the other core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    println!(
        "simple (INT32 [1,16] x2), {:.1} s per step after {} ms warm-up, binary tensors",
        step().as_secs_f64(),
        WARMUP.as_millis()
    );
    println!("protocol  concurrency   infer/s    p50 us    p99 us");
    for concurrency in LEVELS {
        for (protocol, addr) in [("HTTP", &http), ("gRPC", &grpc)] {
            let (rate, p50, p99) = runtime.block_on(run(protocol, addr, concurrency));
            println!(
                "{protocol:<8}  {concurrency:>11}  {rate:>8.0}  {:>8.1}  {:>8.1}",
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6
            );
        }
    }
}
