//! What the benchmarks share: the release build's paths, a `ferrite` process on loopback and
//! an HTTP client worker. (Each benchmark uses part of it.)
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `target/release`, where scripts/bench.sh puts the driver and ONNX Runtime.
pub fn release_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("release");
    for file in [
        "libferrite_driver_cpu.so",
        "libferrite_driver_image.so",
        "libferrite_driver_tokenizer.so",
        "libferrite_driver_postprocess.so",
        "libonnxruntime.so.1.31.1",
    ] {
        assert!(
            dir.join(file).is_file(),
            "{file} not found in {}: run scripts/bench.sh",
            dir.display()
        );
    }
    dir
}

/// Each measured step's length: `FERRITE_BENCH_SECONDS`, else `default_secs`.
pub fn step(default_secs: f64) -> Duration {
    let secs = std::env::var("FERRITE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(default_secs);
    Duration::from_secs_f64(secs)
}

/// `concurrency` HTTP workers sending `request` for `warmup` then `step`: requests per
/// second, p50 and p99 over the step.
pub async fn http_load(
    addr: &str,
    request: std::sync::Arc<Vec<u8>>,
    concurrency: usize,
    warmup: Duration,
    step: Duration,
) -> (f64, Duration, Duration) {
    let start = Instant::now();
    let end = start + warmup + step;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            tokio::spawn(http_worker(
                addr.to_string(),
                std::sync::Arc::clone(&request),
                start + warmup,
                end,
            ))
        })
        .collect();
    summarize(tasks, start + warmup).await
}

/// The p-th percentile (0..=100) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A `ferrite` process on the example repository, stopped (SIGTERM) when dropped.
pub struct ServerProcess {
    child: Child,
    /// `HOST:PORT` of each `Started <service> at HOST:PORT` line, by service name.
    pub addresses: Vec<(String, String)>,
}

impl ServerProcess {
    /// Starts the server on the example repository and waits for the services named in
    /// `wait_for` (e.g. "HTTPService").
    pub fn start(extra: &[&str], wait_for: &[&str]) -> ServerProcess {
        Self::start_on(&workspace().join("configs/models"), extra, wait_for)
    }

    /// Starts the server on `repository`.
    pub fn start_on(
        repository: &std::path::Path,
        extra: &[&str],
        wait_for: &[&str],
    ) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrite"))
            .arg("--model-repository")
            .arg(repository)
            .arg("--backend-directory")
            .arg(release_dir())
            .args(["--http-address", "127.0.0.1", "--http-port", "0"])
            // A free gRPC port too, unless the caller picks one: 8001 may be taken.
            .args(if extra.contains(&"--grpc-port") {
                &[][..]
            } else {
                &["--grpc-port", "0"][..]
            })
            // And a free metrics port: 8002 may be taken too.
            .args(if extra.iter().any(|a| a.starts_with("--metrics-port")) {
                &[][..]
            } else {
                &["--metrics-port", "0"][..]
            })
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("ferrite starts");
        let stderr = child.stderr.take().expect("piped");
        let mut lines = BufReader::new(stderr).lines();
        let mut server = ServerProcess {
            child,
            addresses: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut log = Vec::new();
        let started = |s: &ServerProcess| wait_for.iter().all(|name| s.address(name).is_some());
        while !started(&server) && Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            log.push(line.clone());
            if let Some((head, addr)) = line.split_once(" at ")
                && let Some(service) = head.rsplit("Started ").next()
                && head.contains("Started ")
            {
                let addr = addr.trim().replace("0.0.0.0", "127.0.0.1");
                server.addresses.push((service.to_string(), addr));
            }
        }
        for name in wait_for {
            assert!(
                server.address(name).is_some(),
                "ferrite did not start {name}"
            );
        }
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        server
    }

    /// The server's CPU time so far (user + system, from /proc; clock ticks of 10 ms).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("/proc/<pid>/stat");
        // Fields after the command's closing parenthesis: utime and stime are the 12th and
        // 13th (fields 14 and 15 of the whole line).
        let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10)
    }

    pub fn address(&self, service: &str) -> Option<&str> {
        self.addresses
            .iter()
            .find(|(s, _)| s == service)
            .map(|(_, a)| a.as_str())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// An HTTP infer request with binary tensors: the JSON header and the tensors' bytes.
pub fn binary_request(addr: &str, model: &str, header: &str, tensors: &[&[u8]]) -> Vec<u8> {
    let size: usize = tensors.iter().map(|t| t.len()).sum();
    let mut request = format!(
        "POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nInference-Header-Content-Length: {}\r\nContent-Length: {}\r\n\r\n{header}",
        header.len(),
        header.len() + size
    )
    .into_bytes();
    for t in tensors {
        request.extend_from_slice(t);
    }
    request
}

/// One HTTP worker: one keep-alive connection, `request` sent back to back until `end`;
/// returns the latencies of requests started after `measure_from`.
pub async fn http_worker(
    addr: String,
    request: std::sync::Arc<Vec<u8>>,
    measure_from: Instant,
    end: Instant,
) -> Vec<Duration> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut times = Vec::new();
    let mut line = String::new();
    let mut body = Vec::new();
    while Instant::now() < end {
        let t = Instant::now();
        write.write_all(&request).await.expect("send");
        let mut length = 0usize;
        line.clear();
        read.read_line(&mut line).await.expect("status");
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        loop {
            line.clear();
            read.read_line(&mut line).await.expect("header");
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().expect("length");
            }
        }
        body.resize(length, 0);
        read.read_exact(&mut body).await.expect("body");
        if t >= measure_from {
            times.push(t.elapsed());
        }
    }
    times
}

/// Waits for the workers and summarises their latencies (measured from `measure_from`):
/// requests per second, p50 and p99.
pub async fn summarize(
    workers: Vec<tokio::task::JoinHandle<Vec<Duration>>>,
    measure_from: Instant,
) -> (f64, Duration, Duration) {
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    all.sort();
    let measured = Instant::now()
        .saturating_duration_since(measure_from)
        .as_secs_f64();
    (
        all.len() as f64 / measured,
        percentile(&all, 50.0),
        percentile(&all, 99.0),
    )
}
