//! The example drivers and the ABI's safety rules, through the real ABI: the C `identity`
//! driver, the decoupled `repeat` driver, the stateful `accumulate` driver, the `template`
//! crate, and `faults` (a driver that panics and errs on request), each served from
//! configs/driver_examples; and C drivers compiled here for other ABI versions. Needs
//! `cargo build --workspace` (the driver libraries) and a C compiler; without them the tests
//! skip, unless FERRITE_REQUIRE_DRIVERS is set.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{target, workspace};
use ferrite_core::{
    DataType, ErrorCode, InferenceRequest, InferenceResponse, ModelState, Server, ServerOptions,
    Streamed, Tensor,
};
use serde_json::{Value, json};

fn built() -> bool {
    let t = target();
    common::present(&[
        t.join("identity/libferrite_driver_identity.so"),
        t.join("libferrite_driver_repeat.so"),
        t.join("libferrite_driver_accumulate.so"),
        t.join("libferrite_driver_template.so"),
        t.join("libferrite_driver_faults.so"),
    ])
}

fn examples() -> PathBuf {
    workspace().join("configs/driver_examples")
}

fn start_on(repo: &Path, backends: &Path) -> Server {
    Server::start(ServerOptions {
        model_repositories: vec![repo.to_path_buf()],
        backend_directory: backends.to_path_buf(),
        ..Default::default()
    })
    .expect("server starts")
}

fn start(repo: &Path) -> Server {
    let server = start_on(repo, &target());
    for e in server.index(false) {
        assert_eq!(e.state, Some(ModelState::Ready), "{}: {}", e.name, e.reason);
    }
    server
}

/// A repository holding example `model`, its config edited by `edit`.
fn repo_with(model: &str, edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join(model);
    std::fs::create_dir_all(to.join("1")).unwrap();
    let text = std::fs::read_to_string(examples().join(model).join("config.pbtxt")).unwrap();
    std::fs::write(to.join("config.pbtxt"), edit(text)).unwrap();
    dir
}

/// Numbers as tensors hold them: little-endian.
trait Le: Copy + Default {
    const SIZE: usize;
    fn put(self, out: &mut Vec<u8>);
    fn get(bytes: &[u8]) -> Self;
}

macro_rules! le {
    ($($t:ty),*) => {$(
        impl Le for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().unwrap())
            }
        }
    )*};
}
le!(i32, u32, f32);

fn tensor<T: Le>(name: &str, datatype: DataType, shape: &[i64], values: &[T]) -> Tensor {
    let mut bytes = Vec::new();
    for v in values {
        v.put(&mut bytes);
    }
    Tensor::new(name, datatype, shape.to_vec(), Bytes::from(bytes))
}

fn request(model: &str, inputs: Vec<Tensor>, parameters: Value) -> InferenceRequest {
    InferenceRequest {
        model_name: model.into(),
        inputs,
        parameters: match parameters {
            Value::Object(m) => m,
            _ => Default::default(),
        },
        ..Default::default()
    }
}

fn values<T: Le>(response: &InferenceResponse, name: &str) -> Vec<T> {
    let t = response
        .outputs
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no output {name}"));
    t.data.chunks_exact(T::SIZE).map(T::get).collect()
}

fn repeat(values: &[i32], delays: &[u32], wait: u32) -> InferenceRequest {
    let n = values.len() as i64;
    request(
        "repeat_int32",
        vec![
            tensor("IN", DataType::Int32, &[n], values),
            tensor("DELAY", DataType::Uint32, &[delays.len() as i64], delays),
            tensor("WAIT", DataType::Uint32, &[1], &[wait]),
        ],
        Value::Null,
    )
}

/// Every message of a stream, with when it arrived.
async fn collect(server: &Server, r: InferenceRequest) -> Vec<(Streamed, Instant)> {
    let mut stream = server.infer(r).unwrap();
    let mut out = Vec::new();
    while let Some(m) = stream.recv().await {
        out.push((m, Instant::now()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_in_c_echoes_every_input_of_any_type() {
    if !built() {
        return;
    }
    let server = start(&examples());
    let mut strings = Vec::new();
    for s in [&b"hi"[..], b"", b"\xff bytes"] {
        strings.extend_from_slice(&(s.len() as u32).to_le_bytes());
        strings.extend_from_slice(s);
    }
    let r = request(
        "identity",
        vec![
            tensor("INPUT0", DataType::Fp32, &[1, 3], &[1.5f32, -2.0, 3.25]),
            Tensor::new(
                "INPUT1",
                DataType::Bytes,
                vec![1, 3],
                Bytes::from(strings.clone()),
            ),
        ],
        Value::Null,
    );
    let response = server.infer_one(r).await.unwrap();
    assert_eq!(values::<f32>(&response, "OUTPUT0"), [1.5, -2.0, 3.25]);
    let out1 = response
        .outputs
        .iter()
        .find(|t| t.name == "OUTPUT1")
        .unwrap();
    assert_eq!(
        (out1.datatype, &out1.shape[..]),
        (DataType::Bytes, &[1, 3][..])
    );
    assert_eq!(&out1.data[..], &strings[..]);
    // The optional input left out: ask for OUTPUT0 alone.
    let mut r = request(
        "identity",
        vec![tensor("INPUT0", DataType::Fp32, &[2, 1], &[7f32, 8.0])],
        Value::Null,
    );
    r.outputs = vec![ferrite_core::RequestedOutput {
        name: "OUTPUT0".into(),
        ..Default::default()
    }];
    let response = server.infer_one(r).await.unwrap();
    assert_eq!(response.outputs.len(), 1);
    assert_eq!(values::<f32>(&response, "OUTPUT0"), [7.0, 8.0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeat_streams_one_response_per_value_then_the_final_flag() {
    if !built() {
        return;
    }
    let server = start(&examples());
    let got = collect(&server, repeat(&[4, 5, 6], &[0, 300, 0], 100)).await;
    assert_eq!(got.len(), 4, "three responses, then the final flag alone");
    for (i, (m, _)) in got[..3].iter().enumerate() {
        assert!(!m.final_response);
        let r = m.response.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(values::<i32>(r, "OUT"), [4 + i as i32]);
        assert_eq!(values::<u32>(r, "IDX"), [i as u32]);
    }
    assert!(got[3].0.final_response && got[3].0.response.is_none());
    // Each response goes out when it is made, not with the last.
    assert!(
        got[1].1 - got[0].1 >= Duration::from_millis(250),
        "{:?}",
        got[1].1 - got[0].1
    );
    assert!(got[3].1 - got[2].1 >= Duration::from_millis(80));

    // No values: no response, only the final flag.
    let got = collect(&server, repeat(&[], &[], 0)).await;
    assert_eq!(got.len(), 1);
    assert!(got[0].0.final_response && got[0].0.response.is_none());

    // A bad request ends with its error; the model goes on serving.
    let got = collect(&server, repeat(&[1, 2], &[0], 0)).await;
    assert_eq!(got.len(), 1);
    let e = got[0].0.response.as_ref().unwrap().as_ref().unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArg);
    assert_eq!(
        e.message(),
        "repeat: DELAY has 1 elements and IN 2: one delay per value"
    );
    assert_eq!(collect(&server, repeat(&[9], &[0], 0)).await.len(), 2);

    // infer_one gives the last response.
    let last = server
        .infer_one(repeat(&[1, 2, 3], &[0, 0, 0], 0))
        .await
        .unwrap();
    assert_eq!(values::<i32>(&last, "OUT"), [3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_client_went_away_frees_its_instance() {
    if !built() {
        return;
    }
    let repo = repo_with("repeat_int32", |c| c.replace("count: 2", "count: 1"));
    let server = start(repo.path());
    let mut stream = server
        .infer(repeat(&[1, 2, 3], &[0, 30_000, 30_000], 0))
        .unwrap();
    let first = stream.recv().await.unwrap();
    assert!(!first.final_response);
    drop(stream);
    // The one instance notices within milliseconds and takes the next request.
    let started = Instant::now();
    let got = tokio::time::timeout(
        Duration::from_secs(10),
        collect(&server, repeat(&[7], &[0], 0)),
    )
    .await
    .expect("the instance was freed");
    assert_eq!(got.len(), 2);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeat_refuses_a_model_that_is_not_decoupled() {
    if !built() {
        return;
    }
    let repo = repo_with("repeat_int32", |c| {
        c.replace("model_transaction_policy { decoupled: true }", "")
    });
    let server = start_on(repo.path(), &target());
    let entry = server.index(false).into_iter().next().unwrap();
    assert_eq!(entry.state, Some(ModelState::Unavailable));
    assert!(
        entry.reason.contains(
            "repeat: model 'repeat_int32' must be decoupled (model_transaction_policy { decoupled: true })"
        ),
        "{}",
        entry.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accumulate_keeps_a_sum_per_sequence() {
    if !built() {
        return;
    }
    let server = start(&examples());
    let step = |id: u64, value: i32, start: bool, end: bool| {
        request(
            "accumulate",
            vec![tensor("INPUT", DataType::Int32, &[1, 1], &[value])],
            json!({"sequence_id": id, "sequence_start": start, "sequence_end": end}),
        )
    };
    let mut sums = Vec::new();
    for (id, value, start, end) in [
        (1u64, 5, true, false),
        (2, 100, true, false),
        (1, 6, false, false),
        (2, 1, false, true),
        (1, -1, false, true),
        (1, 3, true, true),
    ] {
        let r = server.infer_one(step(id, value, start, end)).await.unwrap();
        sums.push(values::<i32>(&r, "OUTPUT")[0]);
    }
    assert_eq!(sums, [5, 100, 11, 101, 10, 3]);
    // A sum that leaves INT32 fails that request alone.
    server
        .infer_one(step(3, i32::MAX, true, false))
        .await
        .unwrap();
    let e = server
        .infer_one(step(3, 1, false, false))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArg);
    assert!(
        e.message().contains("does not fit in INT32"),
        "{}",
        e.message()
    );
    let r = server.infer_one(step(3, -7, false, true)).await.unwrap();
    assert_eq!(values::<i32>(&r, "OUTPUT"), [i32::MAX - 7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_scales_by_its_factor() {
    if !built() {
        return;
    }
    let server = start(&examples());
    let r = request(
        "template_scale",
        vec![tensor("INPUT", DataType::Fp32, &[1, 3], &[1f32, 2.0, -4.0])],
        Value::Null,
    );
    let response = server.infer_one(r).await.unwrap();
    assert_eq!(values::<f32>(&response, "OUTPUT"), [2.5, 5.0, -10.0]);
}

fn faults(fault: &str) -> InferenceRequest {
    request(
        "faults",
        vec![tensor("INPUT0", DataType::Fp32, &[1, 2], &[1f32, 2.0])],
        json!({ "fault": fault }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_driver_fails_only_its_own_requests() {
    if !built() {
        return;
    }
    let server = start(&examples());
    let ok = |r: Result<InferenceResponse, ferrite_core::Error>| {
        assert_eq!(values::<f32>(&r.unwrap(), "OUTPUT0"), [1.0, 2.0]);
    };
    let cases = [
        (
            "panic",
            ErrorCode::Internal,
            "the driver panicked in execute: faults: asked to panic",
        ),
        (
            "error",
            ErrorCode::InvalidArg,
            "faults: asked to fail this request",
        ),
        (
            "return",
            ErrorCode::Unavailable,
            "faults: asked to return an error from execute",
        ),
        (
            "forget",
            ErrorCode::Internal,
            "driver 'faults' returned without sending a response",
        ),
        (
            "partial",
            ErrorCode::Internal,
            "faults: response_send: a response without the final flag, but the model is not decoupled",
        ),
    ];
    for (fault, code, message) in cases {
        let e = server.infer_one(faults(fault)).await.unwrap_err();
        assert_eq!(e.code(), code, "{fault}: {}", e.message());
        assert!(e.message().contains(message), "{fault}: {}", e.message());
        // The instance goes on serving.
        ok(server.infer_one(faults("")).await);
    }
    // A second final response is refused; the client sees the first.
    ok(server.infer_one(faults("twice")).await);
    // Requests in flight together: the bad one fails, the others succeed.
    let bad = server.infer(faults("error")).unwrap();
    let good: Vec<_> = (0..4).map(|_| server.infer(faults("")).unwrap()).collect();
    assert!(bad.single().await.is_err());
    for g in good {
        ok(g.single().await);
    }
    let stats = server.model("faults", None).unwrap().stats();
    assert!(stats.inference_count > 0);
}

/// Compiles tests/fixtures/versioned_driver.c for ABI `major.minor` into `dir`.
fn versioned_driver(dir: &Path, name: &str, major: u32, minor: u32, old_table: bool) -> bool {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let source = workspace().join("core/tests/fixtures/versioned_driver.c");
    let include = workspace().join("drivers/abi/include");
    let out = dir.join(format!("libferrite_driver_{name}.so"));
    let mut command = Command::new(&cc);
    command
        .args([
            "-std=c11",
            "-Wall",
            "-Werror",
            "-shared",
            "-fPIC",
            "-fvisibility=hidden",
        ])
        .arg(format!("-DMAJOR={major}"))
        .arg(format!("-DMINOR={minor}"))
        .arg(format!("-DNAME=\"{name}\""))
        .arg("-I")
        .arg(include)
        .arg(source)
        .arg("-o")
        .arg(out);
    if old_table {
        command.arg("-DOLD_TABLE");
    }
    match command.output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => panic!("{cc} failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            assert!(
                std::env::var_os("FERRITE_REQUIRE_DRIVERS").is_none(),
                "no C compiler ({cc}): {e}"
            );
            eprintln!("SKIPPED: no C compiler ({cc}): {e}");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_of_older_minors_load_and_newer_or_other_majors_are_refused() {
    use ferrite_driver_abi::{ABI_MAJOR, ABI_MINOR};
    let backends = tempfile::tempdir().unwrap();
    let d = backends.path();
    let cases = [
        ("v_old_minor", ABI_MAJOR, 0, true),
        ("v_current", ABI_MAJOR, ABI_MINOR, false),
        ("v_newer_minor", ABI_MAJOR, ABI_MINOR + 1, false),
        ("v_other_major", ABI_MAJOR + 1, 0, false),
    ];
    for (name, major, minor, old) in cases {
        if !versioned_driver(d, name, major, minor, old) {
            return;
        }
    }
    let repo = tempfile::tempdir().unwrap();
    for (name, ..) in cases {
        let m = repo.path().join(format!("m_{name}"));
        std::fs::create_dir_all(m.join("1")).unwrap();
        std::fs::write(
            m.join("config.pbtxt"),
            format!(
                "backend: \"{name}\"\nmax_batch_size: 0\n\
                 input [ {{ name: \"INPUT0\" data_type: TYPE_FP32 dims: [ 2 ] }} ]\n\
                 output [ {{ name: \"OUTPUT0\" data_type: TYPE_FP32 dims: [ 2 ] }} ]\n"
            ),
        )
        .unwrap();
    }
    let server = start_on(repo.path(), d);
    let state = |model: &str| {
        server
            .index(false)
            .into_iter()
            .find(|e| e.name == model)
            .unwrap()
    };
    for name in ["v_old_minor", "v_current"] {
        let e = state(&format!("m_{name}"));
        assert_eq!(e.state, Some(ModelState::Ready), "{name}: {}", e.reason);
        let r = request(
            &format!("m_{name}"),
            vec![tensor("INPUT0", DataType::Fp32, &[2], &[3f32, 4.0])],
            Value::Null,
        );
        let response = server.infer_one(r).await.unwrap();
        assert_eq!(values::<f32>(&response, "OUTPUT0"), [3.0, 4.0]);
    }
    for (name, major, minor) in [
        ("v_newer_minor", ABI_MAJOR, ABI_MINOR + 1),
        ("v_other_major", ABI_MAJOR + 1, 0),
    ] {
        let e = state(&format!("m_{name}"));
        assert_eq!(e.state, Some(ModelState::Unavailable));
        let file = d.join(format!("libferrite_driver_{name}.so"));
        let want = format!(
            "driver {} (symbol 'ferrite_driver_entry'): built for driver ABI {major}.{minor}, but this host speaks ABI {ABI_MAJOR}.{ABI_MINOR} (it loads drivers of major {ABI_MAJOR} and minor 0 to {ABI_MINOR})",
            file.display()
        );
        assert!(e.reason.contains(&want), "{name}: {}", e.reason);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ensemble_refuses_a_decoupled_step() {
    if !built() {
        return;
    }
    let repo = repo_with("repeat_int32", |c| c);
    let e = repo.path().join("stream_twice");
    std::fs::create_dir_all(e.join("1")).unwrap();
    std::fs::write(
        e.join("config.pbtxt"),
        r#"platform: "ensemble"
max_batch_size: 0
input [
  { name: "IN" data_type: TYPE_INT32 dims: [ -1 ] },
  { name: "DELAY" data_type: TYPE_UINT32 dims: [ -1 ] },
  { name: "WAIT" data_type: TYPE_UINT32 dims: [ 1 ] }
]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
ensemble_scheduling { step [ {
  model_name: "repeat_int32" model_version: -1
  input_map { key: "IN" value: "IN" } input_map { key: "DELAY" value: "DELAY" }
  input_map { key: "WAIT" value: "WAIT" } output_map { key: "OUT" value: "OUT" }
} ] }
"#,
    )
    .unwrap();
    let server = start_on(repo.path(), &target());
    let entry = server
        .index(false)
        .into_iter()
        .find(|e| e.name == "stream_twice")
        .unwrap();
    assert_eq!(entry.state, Some(ModelState::Unavailable));
    assert!(
        entry.reason.contains(
            "ensemble 'stream_twice': step 0 (model 'repeat_int32') runs a decoupled model; ensemble steps answer each request with exactly one response"
        ),
        "{}",
        entry.reason
    );
}
