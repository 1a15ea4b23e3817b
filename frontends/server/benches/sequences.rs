//! Sequence batching: 64 concurrent sequences on `sequence_accumulator` (implicit state, a
//! running sum) over gRPC. Each client task runs sequences back to back, each START + N
//! requests + END (N = `FERRITE_BENCH_SEQUENCE_LENGTH`, default 8), every sequence with a new
//! correlation id, for `FERRITE_BENCH_SECONDS` (default 3) after a short warm-up. Every reply's
//! OUTPUT is checked against the client's own running sum; the run fails if any differs.
//!
//! Two configurations, one server each: the example's (one instance, max_batch_size 8: eight
//! slots, so 56 of the 64 sequences wait in the backlog for a slot at any time) and the same
//! model with max_batch_size 64 (a slot per sequence, batches of up to 64). "START p99" is the
//! p99 of the first request of each sequence, which includes the wait for a slot.
//!
//! `scripts/bench.sh` runs it (`cargo bench -p ferrite-server --bench sequences`).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::ServerProcess;
use ferrite_proto::inference::InferParameter;
use ferrite_proto::inference::ModelInferRequest;
use ferrite_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use ferrite_proto::inference::infer_parameter::ParameterChoice;
use ferrite_proto::inference::model_infer_request::InferInputTensor;

const MODEL: &str = "sequence_accumulator";
const SEQUENCES: usize = 64;
const WARMUP: Duration = Duration::from_millis(300);

fn step() -> Duration {
    common::step(3.0)
}

/// N: the requests between START and END.
fn middle() -> usize {
    std::env::var("FERRITE_BENCH_SEQUENCE_LENGTH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
}

/// A repository holding the example accumulator with `max_batch_size` slots per instance.
fn repository(max_batch_size: usize) -> tempfile::TempDir {
    let repo = tempfile::tempdir().expect("temp dir");
    let from = common::workspace().join("configs/models").join(MODEL);
    let to = repo.path().join(MODEL);
    std::fs::create_dir_all(to.join("1")).unwrap();
    std::fs::copy(from.join("1/model.onnx"), to.join("1/model.onnx")).unwrap();
    let config = std::fs::read_to_string(from.join("config.pbtxt")).unwrap();
    assert!(
        config.contains("max_batch_size: 8"),
        "the example config changed"
    );
    let config = config.replace(
        "max_batch_size: 8",
        &format!("max_batch_size: {max_batch_size}"),
    );
    std::fs::write(to.join("config.pbtxt"), config).unwrap();
    repo
}

fn parameters(id: u64, start: bool, end: bool) -> BTreeMap<String, InferParameter> {
    let p = |c| InferParameter {
        parameter_choice: Some(c),
    };
    BTreeMap::from([
        // gRPC carries the uint64 id in an int64_param (Triton's way).
        (
            "sequence_id".to_string(),
            p(ParameterChoice::Int64Param(id as i64)),
        ),
        (
            "sequence_start".to_string(),
            p(ParameterChoice::BoolParam(start)),
        ),
        (
            "sequence_end".to_string(),
            p(ParameterChoice::BoolParam(end)),
        ),
    ])
}

#[derive(Default)]
struct Tally {
    /// Latencies of requests sent after the warm-up.
    latencies: Vec<Duration>,
    /// Of those, the START requests (they include the wait for a slot).
    starts: Vec<Duration>,
    /// Sequences whose START was sent after the warm-up and whose END was answered.
    sequences: usize,
    mismatches: usize,
    errors: usize,
}

/// One client task: its own channel, sequences back to back until `end` (the one under way
/// then is finished, so that no sequence is left open).
async fn worker(addr: String, index: usize, measure_from: Instant, end: Instant) -> Tally {
    let mut client = GrpcInferenceServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let length = middle() + 2;
    let mut tally = Tally::default();
    let mut round = 0u64;
    while Instant::now() < end {
        let id = 1 + index as u64 + SEQUENCES as u64 * round;
        round += 1;
        let mut sum = 0i32;
        let measured = Instant::now() >= measure_from;
        let mut complete = true;
        for j in 0..length {
            let value = ((id * 7 + j as u64 * 13) % 101) as i32 - 50;
            sum = sum.wrapping_add(value);
            let request = ModelInferRequest {
                model_name: MODEL.into(),
                inputs: vec![InferInputTensor {
                    name: "INPUT".into(),
                    datatype: "INT32".into(),
                    shape: vec![1, 1],
                    ..Default::default()
                }],
                raw_input_contents: vec![Bytes::copy_from_slice(&value.to_le_bytes())],
                parameters: parameters(id, j == 0, j == length - 1),
                ..Default::default()
            };
            let t = Instant::now();
            let reply = client.model_infer(request).await;
            let elapsed = t.elapsed();
            let response = match reply {
                Ok(r) => r.into_inner(),
                Err(status) => {
                    if tally.errors < 5 {
                        eprintln!("sequence {id}, request {j}: {status}");
                    }
                    tally.errors += 1;
                    // The rest of this sequence cannot be checked; it idles out.
                    complete = false;
                    break;
                }
            };
            let got = match response.raw_output_contents.as_slice() {
                [out] if out.len() == 4 && response.outputs.len() == 1 => {
                    i32::from_le_bytes(out[..4].try_into().unwrap())
                }
                _ => i32::MIN,
            };
            if got != sum {
                if tally.mismatches < 5 {
                    eprintln!("sequence {id}, request {j}: OUTPUT {got}, expected {sum}");
                }
                tally.mismatches += 1;
            }
            if t >= measure_from {
                tally.latencies.push(elapsed);
                if j == 0 {
                    tally.starts.push(elapsed);
                }
            }
        }
        if measured && complete {
            tally.sequences += 1;
        }
    }
    tally
}

struct Row {
    requests_per_s: f64,
    sequences_per_s: f64,
    p50: Duration,
    p99: Duration,
    start_p99: Duration,
    mismatches: usize,
    errors: usize,
}

async fn run(addr: &str) -> Row {
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let end = measure_from + step();
    let tasks: Vec<_> = (0..SEQUENCES)
        .map(|i| tokio::spawn(worker(addr.to_string(), i, measure_from, end)))
        .collect();
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await.expect("worker");
        all.latencies.extend(t.latencies);
        all.starts.extend(t.starts);
        all.sequences += t.sequences;
        all.mismatches += t.mismatches;
        all.errors += t.errors;
    }
    let measured = measure_from.elapsed().as_secs_f64();
    all.latencies.sort();
    all.starts.sort();
    Row {
        requests_per_s: all.latencies.len() as f64 / measured,
        sequences_per_s: all.sequences as f64 / measured,
        p50: common::percentile(&all.latencies, 50.0),
        p99: common::percentile(&all.latencies, 99.0),
        start_p99: common::percentile(&all.starts, 99.0),
        mismatches: all.mismatches,
        errors: all.errors,
    }
}

fn main() {
    // One client thread: the server keeps the other core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    println!(
        "{MODEL} over gRPC: {SEQUENCES} concurrent sequences of START + {} + END requests, {:.1} s after {} ms warm-up",
        middle(),
        step().as_secs_f64(),
        WARMUP.as_millis()
    );
    println!(
        "slots (1 instance)  requests/s  sequences/s    p50 us    p99 us  START p99 us  mismatches  errors"
    );
    let mut failed = false;
    for slots in [8usize, 64] {
        let repo = repository(slots);
        let server = ServerProcess::start_on(
            repo.path(),
            &["--grpc-port", "0"],
            &["GRPCInferenceService"],
        );
        let addr = server
            .address("GRPCInferenceService")
            .expect("gRPC")
            .to_string();
        let row = runtime.block_on(run(&addr));
        println!(
            "{:<19}  {:>10.0}  {:>11.0}  {:>8.0}  {:>8.0}  {:>12.0}  {:>10}  {:>6}",
            format!("{slots} (mbs {slots})"),
            row.requests_per_s,
            row.sequences_per_s,
            row.p50.as_secs_f64() * 1e6,
            row.p99.as_secs_f64() * 1e6,
            row.start_p99.as_secs_f64() * 1e6,
            row.mismatches,
            row.errors
        );
        failed |= row.mismatches > 0 || row.errors > 0;
    }
    assert!(!failed, "some replies were wrong or failed (see above)");
}
