//! Inference over HTTP on the example models (configs/models: `simple`, INT32 add/sub with
//! max_batch_size 8; `simple_identity`, BYTES identity), with exact reply bytes.
//!
//! These need the CPU driver and ONNX Runtime (see `backend_dir`): scripts/test.sh builds
//! them and makes their absence a failure; elsewhere each test says it is skipped.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ferrite_core::{Server, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

struct Running {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
    _repo: tempfile::TempDir,
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
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

/// The directory with the CPU driver and ONNX Runtime: `FERRITE_TEST_BACKEND_DIR`, else the
/// workspace's `target/debug` when both are built there (scripts/test.sh builds them and sets
/// FERRITE_REQUIRE_DRIVERS=1, which turns a skip into a failure).
fn backend_dir() -> Option<PathBuf> {
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

async fn start(test: &str) -> Option<Running> {
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
    for m in ["simple", "simple_identity"] {
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
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(ferrite_http::serve(server, listener, async {
        let _ = stopped.await;
    }));
    Some(Running {
        addr,
        _stop: stop,
        _repo: repo,
    })
}

/// Sends a request; returns (head, body).
async fn exchange(addr: SocketAddr, request: &[u8]) -> (String, Vec<u8>) {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut byte))
            .await
            .expect("reply in time")
            .unwrap();
        assert_eq!(n, 1, "closed mid-reply");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).await.unwrap();
    (head, body)
}

fn post(path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (k, v) in headers {
        write!(r, "{k}: {v}\r\n").unwrap();
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

fn json_head(status: &str, len: usize) -> String {
    format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n")
}

fn ints(v: impl IntoIterator<Item = i32>) -> String {
    v.into_iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn int32_bytes(v: impl IntoIterator<Item = i32>) -> Vec<u8> {
    v.into_iter().flat_map(i32::to_le_bytes).collect()
}

const INFER: &str = "/v2/models/simple/infer";

fn simple_json(id: Option<&str>, extra: &str) -> String {
    let id = id.map(|i| format!(r#""id": "{i}", "#)).unwrap_or_default();
    format!(
        r#"{{{id}"inputs": [{{"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": [{}]}}, {{"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [{}]}}]{extra}}}"#,
        ints(0..16),
        ints([1; 16])
    )
}

fn simple_reply(id: Option<&str>, names: &[&str]) -> String {
    let id = id.map(|i| format!(r#""id":"{i}","#)).unwrap_or_default();
    let outputs: Vec<String> = names
        .iter()
        .map(|n| {
            let data = if *n == "OUTPUT0" {
                ints(1..17)
            } else {
                ints(-1..15)
            };
            format!(r#"{{"name":"{n}","datatype":"INT32","shape":[1,16],"data":[{data}]}}"#)
        })
        .collect();
    format!(
        r#"{{{id}"model_name":"simple","model_version":"1","outputs":[{}]}}"#,
        outputs.join(",")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_inference_exact_replies() {
    let Some(s) = start("json_inference_exact_replies").await else {
        return;
    };
    // references 16, 17, 18
    let ct = [("Content-Type", "application/json")];
    let want = simple_reply(Some("req-1"), &["OUTPUT0", "OUTPUT1"]);
    for path in [INFER, "/v2/models/simple/versions/1/infer"] {
        let (head, body) = exchange(
            s.addr,
            &post(path, &ct, simple_json(Some("req-1"), "").as_bytes()),
        )
        .await;
        assert_eq!(head, json_head("200 OK", want.len()));
        assert_eq!(String::from_utf8(body).unwrap(), want);
    }
    let subset = simple_json(Some("req-1"), r#", "outputs": [{"name": "OUTPUT1"}]"#);
    let (_, body) = exchange(s.addr, &post(INFER, &ct, subset.as_bytes())).await;
    assert_eq!(
        String::from_utf8(body).unwrap(),
        simple_reply(Some("req-1"), &["OUTPUT1"])
    );
    // reference 22: nested data
    let nested = format!(
        r#"{{"inputs": [{{"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": [[{}], [{}]]}}, {{"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [[{}]]}}]}}"#,
        ints(0..8),
        ints(8..16),
        ints([1; 16])
    );
    let (_, body) = exchange(s.addr, &post(INFER, &ct, nested.as_bytes())).await;
    assert_eq!(
        String::from_utf8(body).unwrap(),
        simple_reply(None, &["OUTPUT0", "OUTPUT1"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_inference_exact_replies() {
    let Some(s) = start("binary_inference_exact_replies").await else {
        return;
    };
    let header = r#"{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}}],"outputs":[{"name":"OUTPUT0","parameters":{"binary_data":true}},{"name":"OUTPUT1","parameters":{"binary_data":true}}]}"#;
    let mut body = header.as_bytes().to_vec();
    body.extend(int32_bytes(0..16));
    body.extend(int32_bytes([1; 16]));
    let hlen = header.len().to_string();
    let headers = [
        ("Content-Type", "application/octet-stream"),
        ("Inference-Header-Content-Length", hlen.as_str()),
    ];
    // reference 19
    let (head, reply) = exchange(s.addr, &post(INFER, &headers, &body)).await;
    let want_header = r#"{"model_name":"simple","model_version":"1","outputs":[{"name":"OUTPUT0","datatype":"INT32","shape":[1,16],"parameters":{"binary_data_size":64}},{"name":"OUTPUT1","datatype":"INT32","shape":[1,16],"parameters":{"binary_data_size":64}}]}"#;
    let mut want = want_header.as_bytes().to_vec();
    want.extend(int32_bytes(1..17));
    want.extend(int32_bytes(-1..15));
    assert_eq!(
        head,
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nInference-Header-Content-Length: {}\r\nContent-Length: {}\r\n\r\n",
            want_header.len(),
            want.len()
        )
    );
    assert_eq!(reply, want);

    // reference 20: binary in, no outputs named -> JSON out
    let header = r#"{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}}]}"#;
    let mut body = header.as_bytes().to_vec();
    body.extend(int32_bytes(0..16));
    body.extend(int32_bytes([1; 16]));
    let hlen = header.len().to_string();
    let headers = [
        ("Content-Type", "application/octet-stream"),
        ("Inference-Header-Content-Length", hlen.as_str()),
    ];
    let (head, reply) = exchange(s.addr, &post(INFER, &headers, &body)).await;
    let want = simple_reply(None, &["OUTPUT0", "OUTPUT1"]);
    assert_eq!(head, json_head("200 OK", want.len()));
    assert_eq!(String::from_utf8(reply).unwrap(), want);

    // binary_data_output: every output binary; gzip both ways
    let request = simple_json(None, r#", "parameters": {"binary_data_output": true}"#);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(request.as_bytes()).unwrap();
    let headers = [("Content-Encoding", "gzip"), ("Accept-Encoding", "gzip")];
    let (head, reply) = exchange(s.addr, &post(INFER, &headers, &gz.finish().unwrap())).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nInference-Header-Content-Length: "), "{head}");
    assert!(
        head.contains("\r\nContent-Encoding: gzip\r\nContent-Length: "),
        "{head}"
    );
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&reply[..]), &mut plain).unwrap();
    let hlen: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Inference-Header-Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    let mut tensors = int32_bytes(1..17);
    tensors.extend(int32_bytes(-1..15));
    assert_eq!(&plain[hlen..], &tensors[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_tensors_as_json_strings() {
    let Some(s) = start("bytes_tensors_as_json_strings").await else {
        return;
    };
    let request = r#"{"inputs":[{"name":"INPUT0","shape":[1,3],"datatype":"BYTES","data":["a\"b","","\u00e9"]}]}"#;
    let (head, body) = exchange(
        s.addr,
        &post("/v2/models/simple_identity/infer", &[], request.as_bytes()),
    )
    .await;
    let want = r#"{"model_name":"simple_identity","model_version":"1","outputs":[{"name":"OUTPUT0","datatype":"BYTES","shape":[1,3],"data":["a\"b","","é"]}]}"#;
    assert_eq!(head, json_head("200 OK", want.len()));
    assert_eq!(String::from_utf8(body).unwrap(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests() {
    let Some(s) = start("bad_requests").await else {
        return;
    };
    let check = |status: &'static str, message: String| {
        let body = format!(
            r#"{{"error":{}}}"#,
            serde_json::to_string(&message).unwrap()
        );
        (json_head(status, body.len()), body)
    };
    let ask = |body: String| {
        post(
            INFER,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    };
    // reference 33
    let short = simple_json(None, "").replacen("\"data\": [0,", "\"data\": [", 1);
    let (head, body) = exchange(s.addr, &ask(short)).await;
    assert_eq!(
        (head, String::from_utf8(body).unwrap()),
        check(
            "500 Internal Server Error",
            "Unable to parse 'data': Shape does not match true shape of 'data' field".into()
        )
    );
    // reference 35
    let (head, body) = exchange(s.addr, &ask(r#"{"inputs": ["#.into())).await;
    assert_eq!(
        (head, String::from_utf8(body).unwrap()),
        check(
            "500 Internal Server Error",
            "failed to parse the request JSON buffer: Invalid value. at 12".into()
        )
    );
    // reference 36
    let (head, body) = exchange(s.addr, &ask(String::new())).await;
    assert_eq!(
        (head, String::from_utf8(body).unwrap()),
        check(
            "400 Bad Request",
            "[request id: <id_unknown>] Raw request must only have 1 input (found 1) to be deduced but got 2 inputs in 'simple' model configuration".into()
        )
    );
    // reference 34
    let (head, body) = exchange(
        s.addr,
        &ask(simple_json(
            Some("req-1"),
            r#", "outputs": [{"name": "NOPE"}]"#,
        )),
    )
    .await;
    assert_eq!(
        (head, String::from_utf8(body).unwrap()),
        check(
            "400 Bad Request",
            "unexpected inference output 'NOPE' for model 'simple'".into()
        )
    );
    // binary sizes that do not add up
    let header = r#"{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}}]}"#;
    let mut body = header.as_bytes().to_vec();
    body.extend(int32_bytes(0..16));
    body.extend(&int32_bytes([1; 16])[..32]);
    let hlen = header.len().to_string();
    let (head, reply) = exchange(
        s.addr,
        &post(
            INFER,
            &[("Inference-Header-Content-Length", hlen.as_str())],
            &body,
        ),
    )
    .await;
    assert_eq!(
        (head, String::from_utf8(reply).unwrap()),
        check(
            "400 Bad Request",
            "unexpected size for input 'INPUT1', expecting 32 additional bytes for model 'simple'"
                .into()
        )
    );
    // and the server still answers
    let (head, _) = exchange(s.addr, &ask(simple_json(None, ""))).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_index_with_models() {
    let Some(s) = start("stats_and_index_with_models").await else {
        return;
    };
    let (_, body) = exchange(s.addr, &post("/v2/repository/index", &[], b"")).await;
    assert_eq!(
        String::from_utf8(body).unwrap(),
        r#"[{"name":"simple","version":"1","state":"READY"},{"name":"simple_identity","version":"1","state":"READY"}]"#
    );
    exchange(s.addr, &post(INFER, &[], simple_json(None, "").as_bytes())).await;
    let (head, body) = exchange(
        s.addr,
        b"GET /v2/models/simple/stats HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let entry = &v["model_stats"][0];
    assert_eq!(entry["name"], "simple");
    assert_eq!(entry["version"], "1");
    assert_eq!(entry["inference_count"], 1);
    assert_eq!(entry["inference_stats"]["success"]["count"], 1);
    assert_eq!(entry["response_stats"], serde_json::json!({}));
    assert_eq!(entry["memory_usage"], serde_json::json!([]));
}

/// A POSIX shared memory object (a file under /dev/shm), removed on drop.
struct ShmObject {
    key: String,
    path: PathBuf,
}

impl ShmObject {
    fn new(tag: &str, contents: &[u8]) -> ShmObject {
        let key = format!("/ferrite_http_models_{tag}_{}", std::process::id());
        let path = PathBuf::from(format!("/dev/shm{key}"));
        std::fs::write(&path, contents).unwrap();
        ShmObject { key, path }
    }

    fn read(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }
}

impl Drop for ShmObject {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn register(addr: SocketAddr, region: &str, key: &str, offset: u64, byte_size: u64) {
    let body = format!(r#"{{"key":"{key}","offset":{offset},"byte_size":{byte_size}}}"#);
    let (head, body) = exchange(
        addr,
        &post(
            &format!("/v2/systemsharedmemory/region/{region}/register"),
            &[],
            body.as_bytes(),
        ),
    )
    .await;
    assert_eq!(
        head,
        json_head("200 OK", 0),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

fn shm_params(region: &str, offset: u64, byte_size: u64) -> String {
    format!(
        r#"{{"shared_memory_region":"{region}","shared_memory_offset":{offset},"shared_memory_byte_size":{byte_size}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inference_through_shared_memory() {
    let Some(s) = start("inference_through_shared_memory").await else {
        return;
    };
    // inputs at 0 and 64, outputs at 128 and 192 (the output region starts at 128)
    let mut contents = int32_bytes(0..16);
    contents.extend(int32_bytes([1; 16]));
    contents.resize(256, 0xee);
    let object = ShmObject::new("infer", &contents);
    register(s.addr, "input", &object.key, 0, 128).await;
    register(s.addr, "output", &object.key, 128, 128).await;

    let inputs = format!(
        r#""inputs":[{{"name":"INPUT0","shape":[1,16],"datatype":"INT32","parameters":{}}},{{"name":"INPUT1","shape":[1,16],"datatype":"INT32","parameters":{}}}]"#,
        shm_params("input", 0, 64),
        shm_params("input", 64, 64)
    );
    let request = format!(
        r#"{{"id":"shm-1",{inputs},"outputs":[{{"name":"OUTPUT0","parameters":{}}},{{"name":"OUTPUT1","parameters":{}}}]}}"#,
        shm_params("output", 0, 64),
        shm_params("output", 64, 64)
    );
    let (head, body) = exchange(s.addr, &post(INFER, &[], request.as_bytes())).await;
    // Triton's reply names shared memory outputs with datatype and shape only
    let want = r#"{"id":"shm-1","model_name":"simple","model_version":"1","outputs":[{"name":"OUTPUT0","datatype":"INT32","shape":[1,16]},{"name":"OUTPUT1","datatype":"INT32","shape":[1,16]}]}"#;
    assert_eq!(String::from_utf8(body).unwrap(), want);
    assert_eq!(head, json_head("200 OK", want.len()));
    let raw = object.read();
    assert_eq!(&raw[128..192], &int32_bytes(1..17)[..]);
    assert_eq!(&raw[192..256], &int32_bytes(-1..15)[..]);
    // the inputs were not touched
    assert_eq!(&raw[..128], &contents[..128]);

    // one output to shared memory, the other binary; inputs from shared memory
    std::fs::write(&object.path, &contents).unwrap();
    let request = format!(
        r#"{{{inputs},"outputs":[{{"name":"OUTPUT1","parameters":{}}},{{"name":"OUTPUT0","parameters":{{"binary_data":true}}}}]}}"#,
        shm_params("output", 16, 64)
    );
    let (head, body) = exchange(s.addr, &post(INFER, &[], request.as_bytes())).await;
    let json_part = r#"{"model_name":"simple","model_version":"1","outputs":[{"name":"OUTPUT1","datatype":"INT32","shape":[1,16]},{"name":"OUTPUT0","datatype":"INT32","shape":[1,16],"parameters":{"binary_data_size":64}}]}"#;
    assert_eq!(
        head,
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nInference-Header-Content-Length: {}\r\nContent-Length: {}\r\n\r\n",
            json_part.len(),
            json_part.len() + 64
        )
    );
    assert_eq!(&body[..json_part.len()], json_part.as_bytes());
    assert_eq!(&body[json_part.len()..], &int32_bytes(1..17)[..]);
    let raw = object.read();
    assert_eq!(&raw[128..144], &[0xee; 16]);
    assert_eq!(&raw[144..208], &int32_bytes(-1..15)[..]);
    assert_eq!(&raw[208..], &[0xee; 48]);

    // binary inputs, JSON output, output to shared memory (binary_data_output does not
    // apply to it)
    let header = format!(
        r#"{{"parameters":{{"binary_data_output":false}},"inputs":[{{"name":"INPUT0","shape":[1,16],"datatype":"INT32","parameters":{{"binary_data_size":64}}}},{{"name":"INPUT1","shape":[1,16],"datatype":"INT32","parameters":{{"binary_data_size":64}}}}],"outputs":[{{"name":"OUTPUT0","parameters":{}}},{{"name":"OUTPUT1"}}]}}"#,
        shm_params("output", 0, 128)
    );
    let mut body = header.clone().into_bytes();
    body.extend(int32_bytes(10..26));
    body.extend(int32_bytes([10; 16]));
    let hlen = header.len().to_string();
    let (head, reply) = exchange(
        s.addr,
        &post(
            INFER,
            &[("Inference-Header-Content-Length", hlen.as_str())],
            &body,
        ),
    )
    .await;
    let want = format!(
        r#"{{"model_name":"simple","model_version":"1","outputs":[{{"name":"OUTPUT0","datatype":"INT32","shape":[1,16]}},{{"name":"OUTPUT1","datatype":"INT32","shape":[1,16],"data":[{}]}}]}}"#,
        ints(0..16)
    );
    assert_eq!(String::from_utf8(reply).unwrap(), want);
    assert_eq!(head, json_head("200 OK", want.len()));
    assert_eq!(&object.read()[128..192], &int32_bytes(20..36)[..]);

    // the client changes the inputs in place and runs again: the new values are read
    let mut changed = contents.clone();
    changed[..64].copy_from_slice(&int32_bytes(100..116));
    std::fs::write(&object.path, &changed).unwrap();
    let request = format!(
        r#"{{{inputs},"outputs":[{{"name":"OUTPUT0","parameters":{}}}]}}"#,
        shm_params("output", 0, 64)
    );
    let (head, _) = exchange(s.addr, &post(INFER, &[], request.as_bytes())).await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(&object.read()[128..192], &int32_bytes(101..117)[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_memory_inference_errors() {
    let Some(s) = start("shared_memory_inference_errors").await else {
        return;
    };
    let mut contents = int32_bytes(0..16);
    contents.extend(int32_bytes([1; 16]));
    contents.resize(256, 0);
    let object = ShmObject::new("errors", &contents);
    register(s.addr, "input", &object.key, 0, 128).await;
    register(s.addr, "output", &object.key, 128, 128).await;
    let request = |input0: &str, output0: &str| {
        format!(
            r#"{{"inputs":[{{"name":"INPUT0","shape":[1,16],"datatype":"INT32","parameters":{input0}}},{{"name":"INPUT1","shape":[1,16],"datatype":"INT32","parameters":{}}}],"outputs":[{{"name":"OUTPUT0","parameters":{output0}}}]}}"#,
            shm_params("input", 64, 64)
        )
    };
    let good_in = shm_params("input", 0, 64);
    let good_out = shm_params("output", 0, 64);
    let error = |status: &str, message: &str, kind: &str| {
        let body = format!(r#"{{"error":{}}}"#, serde_json::Value::from(message));
        let head = if kind == "json" {
            json_head(status, body.len())
        } else {
            format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n",
                body.len()
            )
        };
        (head, body)
    };
    let cases = [
        (
            request(&shm_params("nope", 0, 64), &good_out),
            error(
                "404 Not Found",
                "Unable to find shared memory region: 'nope'",
                "json",
            ),
        ),
        (
            request(&good_in, &shm_params("nope", 0, 64)),
            error(
                "404 Not Found",
                "Unable to find shared memory region: 'nope'",
                "json",
            ),
        ),
        // the byte size must be the shape's
        (
            request(&shm_params("input", 0, 32), &good_out),
            error(
                "400 Bad Request",
                "[request id: <id_unknown>] input byte size mismatch for input 'INPUT0' for model 'simple'. Expected 64, got 32",
                "json",
            ),
        ),
        // a region too small for the output
        (
            request(&good_in, &shm_params("output", 0, 32)),
            error(
                "500 Internal Server Error",
                "shared memory size specified with the request for output 'OUTPUT0' (32 bytes) should be at least 64 bytes to hold the results",
                "plain",
            ),
        ),
        (
            request(
                &good_in,
                r#"{"shared_memory_region":"output","binary_data":true}"#,
            ),
            error(
                "400 Bad Request",
                "Output can't set both 'shared_memory_region' and 'binary_data'",
                "json",
            ),
        ),
    ];
    for (req, (want_head, want_body)) in cases {
        let (head, body) = exchange(s.addr, &post(INFER, &[], req.as_bytes())).await;
        assert_eq!(
            (head, String::from_utf8(body).unwrap()),
            (want_head, want_body),
            "{req}"
        );
    }
    // spans outside the region (Triton's texts, then the numbers)
    for (input0, prefix) in [
        (
            shm_params("input", 100, 64),
            "Invalid offset + byte size for shared memory region: 'input' (",
        ),
        (
            shm_params("input", 128, 0),
            "Invalid offset for shared memory region: 'input' (",
        ),
    ] {
        let (head, body) = exchange(
            s.addr,
            &post(INFER, &[], request(&input0, &good_out).as_bytes()),
        )
        .await;
        assert!(
            head.starts_with("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"),
            "{head}"
        );
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            body["error"].as_str().unwrap().starts_with(prefix),
            "{body}"
        );
    }
    // nothing was written by the failed requests
    assert_eq!(&object.read()[128..], &[0u8; 128][..]);
    // after unregistering, the region is gone
    let (head, _) = exchange(s.addr, &post("/v2/systemsharedmemory/unregister", &[], b"")).await;
    assert_eq!(head, json_head("200 OK", 0));
    let (head, body) = exchange(
        s.addr,
        &post(INFER, &[], request(&good_in, &good_out).as_bytes()),
    )
    .await;
    assert_eq!(
        (head, String::from_utf8(body).unwrap()),
        error(
            "404 Not Found",
            "Unable to find shared memory region: 'input'",
            "json"
        )
    );
}
