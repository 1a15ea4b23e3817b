//! What serving metrics costs the requests: `simple` over HTTP (binary tensors) at concurrency
//! 16 against a server with metrics on (the default: statistics histograms recorded, CPU
//! sampled every 2 s, and here scraped once a second during the run) and one started with
//! `--allow-metrics=false`. Both servers run side by side on a repository holding only
//! `simple`, and the load alternates between them, A B A B ..., so drift on the machine falls
//! on both; the mean throughputs, their difference and the median of the rounds' differences
//! are printed. The goal: under 2%.
//!
//! `scripts/bench.sh` runs it (`cargo bench -p ferrite-server --bench metrics`);
//! `FERRITE_BENCH_SECONDS` sets each step's length (default 1), `FERRITE_BENCH_ROUNDS` the
//! number of A B rounds (default 10): short steps, many times, because on a small shared
//! machine the throughput jumps between levels; the median of the rounds' differences is the
//! figure to read.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ServerProcess;

const WARMUP: Duration = Duration::from_millis(300);
const CONCURRENCY: usize = 16;
const SCRAPE_EVERY: Duration = Duration::from_secs(1);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// One `GET /metrics` on a fresh connection; returns the body's length.
async fn scrape(addr: &str) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("send");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.expect("reply");
    assert!(
        reply.starts_with(b"HTTP/1.1 200 OK"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    reply.len()
}

/// Requests per second over one step; with `metrics`, scrapes it every [`SCRAPE_EVERY`]
/// meanwhile and also returns the mean scrape time.
async fn run(http: &str, metrics: Option<&str>, step: Duration) -> (f64, Option<Duration>) {
    let header = r#"{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}}],"outputs":[{"name":"OUTPUT0","parameters":{"binary_data":true}},{"name":"OUTPUT1","parameters":{"binary_data":true}}]}"#;
    let a: Vec<u8> = (0..16i32).flat_map(|v| v.to_le_bytes()).collect();
    let b: Vec<u8> = (0..16).flat_map(|_| 1i32.to_le_bytes()).collect();
    let request = Arc::new(common::binary_request(http, "simple", header, &[&a, &b]));
    let start = Instant::now();
    let end = start + WARMUP + step;
    let workers = (0..CONCURRENCY)
        .map(|_| {
            tokio::spawn(common::http_worker(
                http.to_string(),
                Arc::clone(&request),
                start + WARMUP,
                end,
            ))
        })
        .collect();
    let scraper = metrics.map(|addr| {
        let addr = addr.to_string();
        tokio::spawn(async move {
            let mut times = Vec::new();
            let mut next = start + WARMUP;
            while next < end {
                tokio::time::sleep_until(next.into()).await;
                let t = Instant::now();
                scrape(&addr).await;
                times.push(t.elapsed());
                next += SCRAPE_EVERY;
            }
            times.iter().sum::<Duration>() / times.len().max(1) as u32
        })
    });
    let (rate, _, _) = common::summarize(workers, start + WARMUP).await;
    let scrape_time = match scraper {
        Some(s) => Some(s.await.expect("scraper")),
        None => None,
    };
    (rate, scrape_time)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn main() {
    let step = Duration::from_secs_f64(env_or("FERRITE_BENCH_SECONDS", 1.0));
    let rounds: usize = env_or("FERRITE_BENCH_ROUNDS", 10).max(1);
    let repo = tempfile::tempdir().expect("temporary repository");
    copy_dir(
        &common::workspace().join("configs/models/simple"),
        &repo.path().join("simple"),
    );
    let on = ServerProcess::start_on(
        repo.path(),
        &["--allow-grpc=false"],
        &["HTTPService", "Metrics Service"],
    );
    let off = ServerProcess::start_on(
        repo.path(),
        &["--allow-grpc=false", "--allow-metrics=false"],
        &["HTTPService"],
    );
    let on_http = on.address("HTTPService").expect("HTTP").to_string();
    let on_metrics = on.address("Metrics Service").expect("metrics").to_string();
    let off_http = off.address("HTTPService").expect("HTTP").to_string();
    // One client thread: the servers keep the other core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let scrape_bytes = runtime.block_on(scrape(&on_metrics));
    println!(
        "simple (INT32 [1,16] x2) over HTTP, binary tensors, concurrency {CONCURRENCY}, {:.1} s per step after {} ms warm-up, {rounds} rounds A B",
        step.as_secs_f64(),
        WARMUP.as_millis()
    );
    println!(
        "A: metrics on (histograms, CPU sampling, a {scrape_bytes}-byte scrape every {} s); B: --allow-metrics=false",
        SCRAPE_EVERY.as_secs()
    );
    println!("round  A infer/s  B infer/s   A vs B  scrape us");
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (a, scrape_time) = runtime.block_on(run(&on_http, Some(&on_metrics), step));
        let (b, _) = runtime.block_on(run(&off_http, None, step));
        with.push(a);
        without.push(b);
        println!(
            "{round:>5}  {a:>9.0}  {b:>9.0}  {:>+6.2}%  {:>9.0}",
            (a / b - 1.0) * 100.0,
            scrape_time.unwrap_or_default().as_secs_f64() * 1e6
        );
    }
    let mut ratios: Vec<f64> = with.iter().zip(&without).map(|(a, b)| a / b).collect();
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let (a, b) = (mean(&with), mean(&without));
    let spread = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        (hi - lo) / mean(v) * 100.0
    };
    println!(
        "mean   {a:>9.0}  {b:>9.0}  {:>+6.2}%   (ratio A/B {:.4}; round-to-round spread A {:.1}%, B {:.1}%)",
        (a / b - 1.0) * 100.0,
        a / b,
        spread(&with),
        spread(&without)
    );
    println!(
        "median of the rounds' A vs B: {:+.2}% (goal: within 2%; on a busy machine the spread says how far to trust it)",
        (median - 1.0) * 100.0
    );
}
