//! The `classify_image` ensemble against the same work done by the client: throughput at
//! concurrency 8 on the example repository (release build), HTTP with binary tensors.
//!
//! - ensemble: each request carries one PNG file's bytes (coffee.png) to
//!   `classify_image` (preprocess_image -> efficientnet_lite0_onnx -> top_k) and gets the
//!   three best labels back;
//! - client: each request's image is decoded, resized and scaled by the client itself (with
//!   `ferrite-imaging`, the exact pre-processing `image_client` does, on 8 client threads),
//!   sent as a 3x224x224 FP32 tensor to `efficientnet_lite0_onnx`, and the client takes the
//!   top 3 of the 1000 logits it gets back.
//!
//! Both answers are checked (espresso first). Client and server share this machine, as a
//! client and a server on one host do; the ensemble's ratio to the client's path is printed.
//! `scripts/bench.sh` runs it (`cargo bench -p ferrite-server --bench pipelines`);
//! `FERRITE_BENCH_SECONDS` sets each measurement's length (default 5).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ServerProcess;

const CONCURRENCY: usize = 8;
const WARMUP: Duration = Duration::from_secs(1);
const ESPRESSO: usize = 967;

fn seconds() -> Duration {
    let secs = std::env::var("FERRITE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(5.0);
    Duration::from_secs_f64(secs)
}

/// One keep-alive HTTP/1.1 connection, blocking.
struct Connection {
    write: TcpStream,
    read: BufReader<TcpStream>,
    line: String,
}

impl Connection {
    fn open(addr: &str) -> Connection {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Connection {
            write: stream.try_clone().expect("clone"),
            read: BufReader::new(stream),
            line: String::new(),
        }
    }

    /// Sends a request and returns (JSON header length, body) of its 200 response.
    fn call(&mut self, request: &[u8]) -> (usize, Vec<u8>) {
        self.write.write_all(request).expect("send");
        self.line.clear();
        self.read.read_line(&mut self.line).expect("status");
        assert!(self.line.starts_with("HTTP/1.1 200"), "{}", self.line);
        let (mut length, mut header) = (0usize, 0usize);
        loop {
            self.line.clear();
            self.read.read_line(&mut self.line).expect("header");
            if self.line == "\r\n" {
                break;
            }
            let lower = self.line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().expect("length");
            } else if let Some(v) = lower.strip_prefix("inference-header-content-length:") {
                header = v.trim().parse().expect("header length");
            }
        }
        let mut body = vec![0; length];
        self.read.read_exact(&mut body).expect("body");
        (header, body)
    }
}

/// Runs `work` on CONCURRENCY threads (one connection each) for WARMUP + seconds();
/// returns requests per second and the sorted latencies after the warm-up.
fn measure<F>(addr: &str, work: F) -> (f64, Vec<Duration>)
where
    F: Fn(&mut Connection) + Send + Sync + 'static,
{
    let work = Arc::new(work);
    let start = Instant::now();
    let (from, end) = (start + WARMUP, start + WARMUP + seconds());
    let threads: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let work = Arc::clone(&work);
            let addr = addr.to_string();
            std::thread::spawn(move || {
                let mut c = Connection::open(&addr);
                let mut times = Vec::new();
                while Instant::now() < end {
                    let t = Instant::now();
                    work(&mut c);
                    if t >= from {
                        times.push(t.elapsed());
                    }
                }
                times
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("worker"))
        .collect();
    all.sort();
    let elapsed = Instant::now().saturating_duration_since(from).as_secs_f64();
    (all.len() as f64 / elapsed, all)
}

fn top3(logits: &[f32]) -> [usize; 3] {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    [idx[0], idx[1], idx[2]]
}

fn main() {
    let server = ServerProcess::start(&[], &["HTTPService"]);
    let addr = server.address("HTTPService").expect("HTTP").to_string();
    let png = std::fs::read(common::workspace().join("configs/images/coffee.png"))
        .expect("configs/images/coffee.png (scripts/setup.sh makes it)");

    // The ensemble: the file's bytes as one BYTES element.
    let mut element = (png.len() as u32).to_le_bytes().to_vec();
    element.extend_from_slice(&png);
    let header = format!(
        r#"{{"inputs":[{{"name":"IMAGE","shape":[1,1],"datatype":"BYTES","parameters":{{"binary_data_size":{}}}}}],"outputs":[{{"name":"CLASS_IDS","parameters":{{"binary_data":true}}}},{{"name":"LABELS","parameters":{{"binary_data":false}}}}]}}"#,
        element.len()
    );
    let ensemble_request = Arc::new(common::binary_request(
        &addr,
        "classify_image",
        &header,
        &[&element],
    ));
    let ensemble = {
        let request = Arc::clone(&ensemble_request);
        move |c: &mut Connection| {
            let (header, body) = c.call(&request);
            let ids = &body[header..];
            let first = i64::from_le_bytes(ids[..8].try_into().expect("CLASS_IDS"));
            assert_eq!(first as usize, ESPRESSO, "ensemble top-1");
        }
    };

    // The client's own pre-processing, then the classifier.
    let spec = ferrite_imaging::InputSpec {
        channels: 3,
        height: 224,
        width: 224,
        format: ferrite_imaging::Format::Nchw,
        datatype: ferrite_imaging::ElementType::Fp32,
    };
    let tensor_bytes = spec.byte_size();
    let classifier_header = format!(
        r#"{{"inputs":[{{"name":"input","shape":[1,3,224,224],"datatype":"FP32","parameters":{{"binary_data_size":{tensor_bytes}}}}}],"outputs":[{{"name":"logits","parameters":{{"binary_data":true}}}}]}}"#
    );
    let client = {
        let (png, addr) = (png.clone(), addr.clone());
        move |c: &mut Connection| {
            let image = ferrite_imaging::decode(&png).expect("decode");
            let tensor = ferrite_imaging::preprocess(&image, &spec, ferrite_imaging::Scaling::Lite)
                .expect("preprocess");
            let request = common::binary_request(
                &addr,
                "efficientnet_lite0_onnx",
                &classifier_header,
                &[&tensor],
            );
            let (header, body) = c.call(&request);
            let logits: Vec<f32> = body[header..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("f32")))
                .collect();
            assert_eq!(top3(&logits)[0], ESPRESSO, "client top-1");
        }
    };

    println!(
        "classify_image: concurrency {CONCURRENCY}, HTTP binary tensors, {:.1} s per measurement, coffee.png ({} bytes)",
        seconds().as_secs_f64(),
        png.len()
    );
    println!(
        "  bytes sent per request: ensemble {} (the file), client {} (FP32 3x224x224)",
        ensemble_request.len(),
        tensor_bytes
    );
    println!("path                                      images/s    p50 ms    p99 ms");
    let mut rates = Vec::new();
    // Interleaved twice, so drift on a shared machine hits both paths alike.
    for round in 0..2 {
        for (name, rate, times) in [
            {
                let (r, t) = measure(&addr, ensemble.clone());
                ("ensemble (server decodes and resizes)", r, t)
            },
            {
                let (r, t) = measure(&addr, client.clone());
                ("client decodes and resizes, then infers", r, t)
            },
        ] {
            println!(
                "{name:<41} {rate:>8.1}  {:>8.2}  {:>8.2}   (round {})",
                common::percentile(&times, 50.0).as_secs_f64() * 1e3,
                common::percentile(&times, 99.0).as_secs_f64() * 1e3,
                round + 1
            );
            rates.push(rate);
        }
    }
    let ensemble_rate = (rates[0] + rates[2]) / 2.0;
    let client_rate = (rates[1] + rates[3]) / 2.0;
    println!(
        "ensemble / client-side pre-processing: {:.2}x ({ensemble_rate:.1} vs {client_rate:.1} images/s)",
        ensemble_rate / client_rate
    );
}
