//! What the dynamic batcher adds to a lone request: `simple` at concurrency 1 over HTTP
//! (binary tensors), served twice by one server, once without batching and once with
//! `dynamic_batching { max_queue_delay_microseconds: 100 }` (one instance each), the two
//! alternated round by round so the machine's noise falls on both. Triton's batcher holds a
//! lone request for the delay and sends it then; the figure is the batched p50 minus the
//! unbatched p50 (the goal: no more than the configured delay), with the server's CPU time per
//! inference of each.
//!
//! `cargo bench -p ferrite-server --bench batcher_delay` (after scripts/bench.sh's build);
//! `FERRITE_BENCH_SECONDS` sets each step's length (default 1), `FERRITE_BENCH_ROUNDS` the
//! number of rounds (default 5).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::ServerProcess;

const DELAY_US: u64 = 100;

fn repository() -> tempfile::TempDir {
    let repo = tempfile::tempdir().expect("temp dir");
    let from = common::workspace().join("configs/models/simple");
    let base = std::fs::read_to_string(from.join("config.pbtxt")).unwrap();
    for (name, extra) in [
        ("simple", String::new()),
        (
            "simple_batched",
            format!("dynamic_batching {{ max_queue_delay_microseconds: {DELAY_US} }}\n"),
        ),
    ] {
        let to = repo.path().join(name);
        std::fs::create_dir_all(to.join("1")).unwrap();
        std::fs::copy(from.join("1/model.onnx"), to.join("1/model.onnx")).unwrap();
        let config = base.replace("name: \"simple\"", &format!("name: \"{name}\""));
        std::fs::write(
            to.join("config.pbtxt"),
            format!("{config}\ninstance_group [ {{ count: 1, kind: KIND_CPU }} ]\n{extra}"),
        )
        .unwrap();
    }
    repo
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("FERRITE_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let step = common::step(1.0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let repo = repository();
    let server = ServerProcess::start_on(repo.path(), &[], &["HTTPService"]);
    let addr = server.address("HTTPService").expect("HTTP").to_string();
    let tensor: Vec<u8> = (0..16i32).flat_map(|v| v.to_le_bytes()).collect();
    let header = r#"{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}}],"parameters":{"binary_data_output":true}}"#;
    let request = |model: &str| {
        Arc::new(common::binary_request(
            &addr,
            model,
            header,
            &[&tensor, &tensor],
        ))
    };
    let requests = [request("simple"), request("simple_batched")];
    println!(
        "dynamic batcher at concurrency 1: simple, HTTP binary tensors, one instance, max_queue_delay_microseconds {DELAY_US}, {rounds} rounds of {:.1} s alternated",
        step.as_secs_f64()
    );
    println!("round  batching  infer/s    p50 us    p99 us   server CPU us/infer");
    let mut p50 = [Vec::new(), Vec::new()];
    let mut cpu = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (i, req) in requests.iter().enumerate() {
            let before = server.cpu_time();
            let (rate, p, p99) = runtime.block_on(common::http_load(
                &addr,
                Arc::clone(req),
                1,
                Duration::from_millis(200),
                step,
            ));
            let used = server.cpu_time().saturating_sub(before);
            // The CPU of the warm-up's requests too: divide by everything sent.
            let sent = rate * (step.as_secs_f64() + 0.2);
            let per = used.as_secs_f64() * 1e6 / sent.max(1.0);
            println!(
                "{round:>5}  {:<8}  {rate:>7.0}  {:>8.1}  {:>8.1}   {per:>8.1}",
                if i == 0 { "off" } else { "on" },
                p.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6
            );
            p50[i].push(p.as_secs_f64() * 1e6);
            cpu[i].push(per);
        }
    }
    let (off, on) = (median(p50[0].clone()), median(p50[1].clone()));
    println!(
        "batcher added p50: {:.1} us at concurrency 1 (delay {DELAY_US} us; p50 {off:.1} us without batching, {on:.1} us with); server CPU per inference {:.1} us without, {:.1} us with",
        on - off,
        median(cpu[0].clone()),
        median(cpu[1].clone())
    );
}
