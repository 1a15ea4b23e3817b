//! What the benchmarks share: the release build's paths and a `ferrite` process on loopback.

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
    for file in ["libferrite_driver_cpu.so", "libonnxruntime.so.1.31.1"] {
        assert!(
            dir.join(file).is_file(),
            "{file} not found in {}: run scripts/bench.sh",
            dir.display()
        );
    }
    dir
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
    /// Starts the server and waits for the services named in `wait_for` (e.g. "HTTPService").
    pub fn start(extra: &[&str], wait_for: &[&str]) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrite"))
            .arg("--model-repository")
            .arg(workspace().join("configs/models"))
            .arg("--backend-directory")
            .arg(release_dir())
            .args(["--http-address", "127.0.0.1", "--http-port", "0"])
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
        while server.addresses.len() < wait_for.len() && Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
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
