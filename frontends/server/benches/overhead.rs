//! The server's overhead on `simple` at concurrency 1: p50 latency of an HTTP infer request
//! (JSON and binary tensors, one keep-alive connection, the `ferrite` binary on loopback)
//! against the p50 of ONNX Runtime's own `run` on the same input, in-process, in one run.
//!
//! `scripts/bench.sh` sets up, builds the release driver and runs this
//! (`cargo bench -p ferrite-server --bench overhead`).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::ServerProcess;

use ort::session::Session;
use ort::value::Tensor;

const WARMUP: usize = 300;
/// Requests measured per case; `FERRITE_BENCH_SAMPLES` overrides (e.g. to profile longer).
fn samples() -> usize {
    std::env::var("FERRITE_BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000)
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    common::percentile(&v, 50.0)
}

fn raw_ort_p50(lib: &Path, model: &Path) -> Duration {
    let env = ferrite_onnx::init_runtime(lib).expect("ONNX Runtime loads");
    // The threads the server gives each of simple's (two, by default) instances.
    let threads = ferrite_onnx::Threads::from_config(&serde_json::json!({}));
    let mut session: Session =
        ferrite_onnx::open_session(&env, model, threads, &[]).expect("session");
    let a: Vec<i32> = (0..16).collect();
    let b = vec![1i32; 16];
    let mut times = Vec::with_capacity(samples());
    for i in 0..WARMUP + samples() {
        let start = Instant::now();
        let x = Tensor::from_array(([1i64, 16], a.clone())).unwrap();
        let y = Tensor::from_array(([1i64, 16], b.clone())).unwrap();
        let out = session
            .run(ort::inputs!["INPUT0" => x, "INPUT1" => y])
            .unwrap();
        let (_, sum) = out["OUTPUT0"].try_extract_tensor::<i32>().unwrap();
        assert_eq!(sum[15], 16);
        if i >= WARMUP {
            times.push(start.elapsed());
        }
    }
    p50(times)
}

fn read_response(stream: &mut BufReader<TcpStream>) -> Vec<u8> {
    let mut length = 0usize;
    let mut status = String::new();
    stream.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    body
}

/// p50 of `GET /v2/health/live`: the HTTP round trip alone, no model involved.
fn health_p50(addr: &str) -> Duration {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let request = format!("GET /v2/health/live HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
    let mut times = Vec::with_capacity(samples());
    for i in 0..WARMUP + samples() {
        let start = Instant::now();
        writer.write_all(&request).unwrap();
        read_response(&mut reader);
        if i >= WARMUP {
            times.push(start.elapsed());
        }
    }
    p50(times)
}

fn http_p50(addr: &str, headers: &str, body: &[u8]) -> Duration {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut request = format!(
        "POST /v2/models/simple/infer HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let mut times = Vec::with_capacity(samples());
    for i in 0..WARMUP + samples() {
        let start = Instant::now();
        writer.write_all(&request).unwrap();
        let response = read_response(&mut reader);
        if i >= WARMUP {
            times.push(start.elapsed());
        }
        assert!(!response.is_empty());
    }
    p50(times)
}

fn main() {
    // `cargo bench` passes harness flags; this benchmark takes none.
    let target = common::release_dir();
    let lib = target.join(ferrite_onnx::ORT_LIBRARY);
    let model = common::workspace().join("configs/models/simple/1/model.onnx");
    assert!(
        model.is_file(),
        "{} not found: run scripts/bench.sh",
        model.display()
    );

    let ort = raw_ort_p50(&lib, &model);
    let server = ServerProcess::start(&[], &["HTTPService"]);
    let addr = server.address("HTTPService").expect("HTTP").to_string();

    let values: Vec<String> = (0..16).map(|v| v.to_string()).collect();
    let json = format!(
        r#"{{"inputs":[{{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[{}]}},{{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[{}]}}]}}"#,
        values.join(","),
        vec!["1"; 16].join(",")
    );
    let json_p50 = http_p50(&addr, "Content-Type: application/json\r\n", json.as_bytes());

    let header = r#"{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}}],"outputs":[{"name":"OUTPUT0","parameters":{"binary_data":true}},{"name":"OUTPUT1","parameters":{"binary_data":true}}]}"#;
    let mut binary = header.as_bytes().to_vec();
    for v in 0..16i32 {
        binary.extend_from_slice(&v.to_le_bytes());
    }
    for _ in 0..16 {
        binary.extend_from_slice(&1i32.to_le_bytes());
    }
    let binary_p50 = http_p50(
        &addr,
        &format!(
            "Content-Type: application/octet-stream\r\nInference-Header-Content-Length: {}\r\n",
            header.len()
        ),
        &binary,
    );

    let health = health_p50(&addr);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "simple, concurrency 1, {} requests after {WARMUP} warm-up, p50:",
        samples()
    );
    println!("  raw ONNX Runtime run (in-process)     {:8.1} us", us(ort));
    println!(
        "  ferrite HTTP, JSON tensors            {:8.1} us   overhead {:8.1} us ({:.2}x)",
        us(json_p50),
        us(json_p50) - us(ort),
        us(json_p50) / us(ort)
    );
    println!(
        "  ferrite HTTP, binary tensors          {:8.1} us   overhead {:8.1} us ({:.2}x)",
        us(binary_p50),
        us(binary_p50) - us(ort),
        us(binary_p50) / us(ort)
    );
    println!(
        "  (HTTP round trip alone, GET /v2/health/live: {:.1} us)",
        us(health)
    );
}
