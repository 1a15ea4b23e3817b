//! A `ferrite` process on the example repository for end-to-end tests: the workspace's
//! `target/debug/ferrite` (built by `cargo build --workspace`), the CPU driver and ONNX Runtime
//! from `target/debug`, HTTP and gRPC on port 0 of loopback. When any of it is missing the
//! tests skip with a message, unless FERRITE_REQUIRE_DRIVERS is set (scripts/test.sh), where
//! they fail.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("debug")
}

/// A `ferrite` process, stopped (SIGTERM) when dropped.
pub struct Server {
    child: Child,
    pub http: String,
    pub grpc: String,
}

impl Server {
    /// Starts the server, or `None` (with a SKIPPED message) when the binary, the driver,
    /// ONNX Runtime or the example models are missing.
    pub fn start() -> Option<Server> {
        let target = target_dir();
        Server::start_on(
            &workspace().join("configs/models"),
            &[
                target.join("libferrite_driver_cpu.so"),
                target.join("libonnxruntime.so.1.31.1"),
                workspace().join("configs/models/simple/1/model.onnx"),
            ],
        )
    }

    /// Starts the server on `repo`, or `None` (SKIPPED) when the binary or one of `needs` is
    /// missing.
    #[allow(dead_code)] // not every test binary serves another repository
    pub fn start_on(repo: &std::path::Path, needs: &[PathBuf]) -> Option<Server> {
        let target = target_dir();
        let binary = target.join("ferrite");
        let missing: Vec<String> = std::iter::once(binary.clone())
            .chain(needs.iter().cloned())
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        if !missing.is_empty() {
            assert!(
                std::env::var_os("FERRITE_REQUIRE_DRIVERS").is_none(),
                "missing {}: run scripts/setup.sh and cargo build --workspace",
                missing.join(", ")
            );
            eprintln!(
                "SKIPPED: {} missing (run scripts/setup.sh and cargo build --workspace)",
                missing.join(", ")
            );
            return None;
        }
        let mut child = Command::new(&binary)
            .arg("--model-repository")
            .arg(repo)
            .arg("--backend-directory")
            .arg(&target)
            .args(["--http-address", "127.0.0.1", "--http-port", "0"])
            .args(["--grpc-address", "127.0.0.1", "--grpc-port", "0"])
            .args(["--metrics-port", "0"])
            .arg("--allow-client-shm=true")
            // Tests end with idle kept-alive connections still open; don't wait on them.
            .args(["--exit-timeout-secs", "1"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("ferrite starts");
        let stderr = child.stderr.take().expect("piped");
        let mut lines = BufReader::new(stderr).lines();
        let (mut http, mut grpc) = (None, None);
        let mut log = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while (http.is_none() || grpc.is_none()) && Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            log.push(line.clone());
            for (service, slot) in [
                ("Started HTTPService at ", &mut http),
                ("Started GRPCInferenceService at ", &mut grpc),
            ] {
                if let Some((_, addr)) = line.split_once(service) {
                    *slot = Some(addr.trim().replace("0.0.0.0", "127.0.0.1"));
                }
            }
        }
        let (Some(http), Some(grpc)) = (http, grpc) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ferrite did not start:\n{}", log.join("\n"));
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Some(Server { child, http, grpc })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
