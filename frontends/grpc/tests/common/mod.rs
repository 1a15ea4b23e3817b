//! What the gRPC tests share: a server on a real socket (127.0.0.1:0) driven by the generated
//! tonic client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ferrite_core::{Server, ServerOptions};
use ferrite_grpc::GrpcOptions;
use ferrite_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub struct Running {
    pub addr: SocketAddr,
    pub server: Server,
    pub stop: Option<oneshot::Sender<()>>,
    pub done: Option<tokio::task::JoinHandle<Result<(), std::io::Error>>>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Running {
    pub async fn client(&self) -> GrpcInferenceServiceClient<Channel> {
        GrpcInferenceServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Asks the server to stop and waits until `serve` returns.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            done.await.unwrap().unwrap();
        }
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Serves `server` with `options` on a fresh port of `bind` ("127.0.0.1:0").
pub async fn serve_on(
    server: Server,
    options: GrpcOptions,
    bind: &str,
    dirs: Vec<tempfile::TempDir>,
) -> std::io::Result<Running> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(ferrite_grpc::serve(
        server.clone(),
        options,
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    Ok(Running {
        addr,
        server,
        stop: Some(stop),
        done: Some(done),
        _dirs: dirs,
    })
}

/// A server over an empty repository (no drivers needed), client shared memory allowed.
pub async fn start_empty(options: GrpcOptions) -> Running {
    let repo = tempfile::tempdir().unwrap();
    let drivers = tempfile::tempdir().unwrap();
    let server = Server::start(ServerOptions {
        model_repositories: vec![repo.path().to_path_buf()],
        backend_directory: drivers.path().to_path_buf(),
        allow_client_shm: true,
        ..Default::default()
    })
    .unwrap();
    serve_on(server, options, "127.0.0.1:0", vec![repo, drivers])
        .await
        .unwrap()
}

/// The directory with the CPU driver and ONNX Runtime: `FERRITE_TEST_BACKEND_DIR`, else the
/// workspace's `target/debug` when both are built there (scripts/test.sh builds them and sets
/// FERRITE_REQUIRE_DRIVERS=1, which turns a skip into a failure).
pub fn backend_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("FERRITE_TEST_BACKEND_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
                .join("debug")
        });
    let built = dir.join("libferrite_driver_cpu.so").is_file()
        && (dir.join("libonnxruntime.so.1.31.1").is_file()
            || std::env::var_os("FERRITE_ONNXRUNTIME_LIB").is_some());
    built.then_some(dir)
}

/// A server over `simple`, `simple_identity` and `simple_string` (configs/models), or `None`
/// (the test says it is skipped) without the CPU driver.
pub async fn start_models(test: &str, options: GrpcOptions) -> Option<Running> {
    let Some(backends) = backend_dir() else {
        assert!(
            std::env::var_os("FERRITE_REQUIRE_DRIVERS").is_none(),
            "{test}: the CPU driver or ONNX Runtime is not built; run scripts/test.sh"
        );
        eprintln!("{test}: skipped (CPU driver and ONNX Runtime not built; run scripts/test.sh)");
        return None;
    };
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/models");
    let repo = tempfile::tempdir().unwrap();
    for m in ["simple", "simple_identity", "simple_string"] {
        copy_dir(&models.join(m), &repo.path().join(m));
    }
    let server = Server::start(ServerOptions {
        model_repositories: vec![repo.path().to_path_buf()],
        backend_directory: backends,
        model_load_threads: 2,
        allow_client_shm: true,
        ..Default::default()
    })
    .unwrap();
    assert!(
        server.is_ready(),
        "models did not load: {:?}",
        server.index(false)
    );
    Some(
        serve_on(server, options, "127.0.0.1:0", vec![repo])
            .await
            .unwrap(),
    )
}

/// A POSIX shared memory object (a file in /dev/shm), removed when dropped.
pub struct ShmObject {
    pub key: String,
    pub path: PathBuf,
}

impl ShmObject {
    pub fn new(size: usize) -> ShmObject {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "ferrite_grpc_test_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let path = PathBuf::from("/dev/shm").join(&name);
        std::fs::write(&path, vec![0u8; size]).unwrap();
        ShmObject {
            key: format!("/{name}"),
            path,
        }
    }

    /// Writes in place (no truncation: the server may have the object mapped).
    pub fn write(&self, offset: usize, data: &[u8]) {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .unwrap();
        file.write_all_at(data, offset as u64).unwrap();
    }

    pub fn read(&self, offset: usize, len: usize) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()[offset..offset + len].to_vec()
    }
}

impl Drop for ShmObject {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// (code, message) of a failed call.
pub fn failure<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (tonic::Code, String) {
    let s = r.unwrap_err();
    (s.code(), s.message().to_string())
}
