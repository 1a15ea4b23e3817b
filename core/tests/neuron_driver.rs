//! The Neuron driver through the real driver ABI, on the test double of the Neuron runtime
//! (drivers/neuron/tests/fixtures/nrt_test_double.c, built here with the C compiler into a
//! `libnrt.so.1` and handed to the driver with `--backend-config=neuron,runtime-library=`).
//! The double runs on the CPU: 4 "NeuronCores", each execution computes 2 * sum(inputs) + 1
//! and writes the index of its core into the outputs named CORE*. So these tests prove the
//! driver's dynamic loading, its per-core loads, the batch split and the order the outputs
//! come back in, its tensor I/O and its error paths. What they cannot prove is the real
//! runtime's behaviour on Inferentia hardware (see the README).
//!
//! The double keeps process-wide counters (executions and loads per core, the most
//! executions at once), so the tests take turns (`COUNTERS`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{f32s, present, target, workspace};
use ferrite_core::{
    DataType, ErrorCode, InferenceRequest, ModelState, Server, ServerOptions, Tensor,
};

const CORES: usize = 4;

/// Held by every test: the double's counters are process-wide.
static COUNTERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The double, built once per test process; None (test skipped) without a C compiler, unless
/// FERRITE_REQUIRE_DRIVERS is set.
fn double() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir =
                std::env::temp_dir().join(format!("ferrite-nrt-double-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let out = dir.join("libnrt.so.1");
            let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
            let status = Command::new(&cc)
                .args([
                    "-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-shared", "-fPIC", "-I",
                ])
                .arg(workspace().join("drivers/neuron-sys/include"))
                .arg("-o")
                .arg(&out)
                .arg(workspace().join("drivers/neuron/tests/fixtures/nrt_test_double.c"))
                .status();
            match status {
                Ok(s) if s.success() => Some(out),
                Ok(s) => panic!("{cc} failed to build the Neuron runtime double: {s}"),
                Err(e) => {
                    assert!(
                        std::env::var_os("FERRITE_REQUIRE_DRIVERS").is_none(),
                        "no C compiler ({cc}): {e}"
                    );
                    eprintln!("SKIPPED: no C compiler ({cc}) to build the Neuron runtime double");
                    None
                }
            }
        })
        .as_deref()
}

fn ready() -> Option<&'static Path> {
    if !present(&[target().join("libferrite_driver_neuron.so")]) {
        return None;
    }
    double()
}

/// The double's counters: (executions per core, loads per core, most at once), then cleared.
fn take_counters(lib: &Path) -> (Vec<u32>, Vec<u32>, u32) {
    type Stats = unsafe extern "C" fn(*mut u32, *mut u32, u32, *mut u32, i32);
    // SAFETY: the double the driver already opened (same file, so the same instance); the
    // function's signature is the fixture's.
    unsafe {
        let library = libloading::Library::new(lib).unwrap();
        let stats: libloading::Symbol<Stats> = library.get(b"ferrite_test_nrt_stats").unwrap();
        let (mut exec, mut loads, mut peak) = (vec![0u32; CORES], vec![0u32; CORES], 0u32);
        stats(
            exec.as_mut_ptr(),
            loads.as_mut_ptr(),
            CORES as u32,
            &mut peak,
            1,
        );
        (exec, loads, peak)
    }
}

/// A model for the double: `neff` is the double's NEFF text, `config` the config.pbtxt body
/// after the name.
fn model(repo: &Path, name: &str, neff: &str, config: &str) {
    let dir = repo.join(name);
    std::fs::create_dir_all(dir.join("1")).unwrap();
    std::fs::write(
        dir.join("1/model.neff"),
        format!("ferrite-test-neff 1\n{neff}"),
    )
    .unwrap();
    std::fs::write(
        dir.join("config.pbtxt"),
        format!("name: \"{name}\"\n{config}"),
    )
    .unwrap();
}

fn start(repo: &Path, lib: &Path) -> Server {
    let mut backend_config = std::collections::BTreeMap::new();
    backend_config.insert(
        "neuron".to_string(),
        [("runtime-library".to_string(), lib.display().to_string())].into(),
    );
    Server::start(ServerOptions {
        model_repositories: vec![repo.to_path_buf()],
        backend_directory: target(),
        backend_config,
        ..Default::default()
    })
    .unwrap()
}

/// A batching fp32 model: INPUT__0 [1] -> OUTPUT__0 [1] (2x+1) and CORE__1 [1] (int32), the
/// NEFF compiled for `compiled` samples.
fn batching_config(max_batch: usize, extra: &str) -> String {
    format!(
        r#"backend: "neuron"
max_batch_size: {max_batch}
input [ {{ name: "INPUT__0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [
  {{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 1 ] }},
  {{ name: "CORE__1" data_type: TYPE_INT32 dims: [ 1 ] }}
]
{extra}"#
    )
}

fn neff_for(compiled: usize, extra: &str) -> String {
    let b = compiled * 4;
    format!("input x {b}\noutput y {b}\noutput CORE {b}\n{extra}")
}

fn floats(values: &[f32]) -> Bytes {
    Bytes::from(
        values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
}

fn i32s(t: &Tensor) -> Vec<i32> {
    t.data
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Runs `values` as one request of shape [n, 1]; returns (OUTPUT__0, CORE__1).
async fn run(
    server: &Server,
    model: &str,
    values: &[f32],
) -> ferrite_core::Result<(Vec<f32>, Vec<i32>)> {
    let response = server
        .infer_one(InferenceRequest {
            model_name: model.into(),
            inputs: vec![Tensor::new(
                "INPUT__0",
                DataType::Fp32,
                vec![values.len() as i64, 1],
                floats(values),
            )],
            ..Default::default()
        })
        .await?;
    let out = |name: &str| {
        response
            .outputs
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .clone()
    };
    Ok((f32s(&out("OUTPUT__0")), i32s(&out("CORE__1"))))
}

fn reason(server: &Server, name: &str) -> (Option<ModelState>, String) {
    let row = server
        .index(false)
        .into_iter()
        .find(|e| e.name == name)
        .unwrap();
    (row.state, row.reason)
}

#[tokio::test]
async fn a_batch_of_sixteen_runs_one_sample_per_core_concurrently_and_comes_back_in_order() {
    let Some(lib) = ready() else { return };
    let _guard = COUNTERS.lock().await;
    let repo = tempfile::tempdir().unwrap();
    // Compiled for one sample; each run sleeps 50 ms, so 16 runs one after another would take
    // 0.8 s and four cores at once 0.2 s.
    model(
        repo.path(),
        "split",
        &neff_for(1, "sleep_ms 50\n"),
        &batching_config(16, "instance_group [ { kind: KIND_MODEL } ]"),
    );
    let server = start(repo.path(), lib);
    assert_eq!(
        reason(&server, "split").0,
        Some(ModelState::Ready),
        "{}",
        reason(&server, "split").1
    );
    take_counters(lib);

    let values: Vec<f32> = (0..16).map(|i| i as f32).collect();
    let started = Instant::now();
    let (out, cores) = run(&server, "split", &values).await.unwrap();
    let took = started.elapsed();
    assert_eq!(
        out,
        values.iter().map(|v| 2.0 * v + 1.0).collect::<Vec<_>>()
    );
    // Sample i ran on core i % 4: each core got 4 of the 16.
    assert_eq!(cores, (0..16).map(|i| i % 4).collect::<Vec<i32>>());
    let (exec, loads, peak) = take_counters(lib);
    assert_eq!(exec, vec![4; CORES], "executions per core");
    assert_eq!(loads, vec![0; CORES], "no loads during inference");
    assert!(
        peak >= 2,
        "the cores never ran at the same time (peak {peak})"
    );
    assert!(
        took < Duration::from_millis(600),
        "16 x 50 ms shards took {took:?}: not concurrent"
    );
}

#[tokio::test]
async fn a_neff_compiled_for_four_gets_full_shards_and_a_padded_last_one() {
    let Some(lib) = ready() else { return };
    let _guard = COUNTERS.lock().await;
    let repo = tempfile::tempdir().unwrap();
    model(
        repo.path(),
        "by_four",
        &neff_for(4, ""),
        &batching_config(32, ""),
    );
    take_counters(lib);
    let server = start(repo.path(), lib);
    assert_eq!(
        reason(&server, "by_four").0,
        Some(ModelState::Ready),
        "{}",
        reason(&server, "by_four").1
    );
    // Detected as KIND_MODEL (no instance_group given): one instance over the four cores,
    // each core loaded once.
    let config = server.model_config("by_four", None).unwrap();
    assert_eq!(
        config.instance_group[0].kind,
        ferrite_proto::inference::model_instance_group::Kind::Model as i32
    );
    assert_eq!(config.platform, "neuron_neff");
    assert_eq!(config.default_model_filename, "model.neff");
    let (_, loads, _) = take_counters(lib);
    assert_eq!(loads, vec![1; CORES]);

    // 10 samples: shards of 4, 4 and 2 (padded to 4) on cores 0, 1, 2.
    let values: Vec<f32> = (0..10).map(|i| -(i as f32) / 2.0).collect();
    let (out, cores) = run(&server, "by_four", &values).await.unwrap();
    assert_eq!(
        out,
        values.iter().map(|v| 2.0 * v + 1.0).collect::<Vec<_>>()
    );
    assert_eq!(cores, vec![0, 0, 0, 0, 1, 1, 1, 1, 2, 2]);
    let (exec, _, _) = take_counters(lib);
    assert_eq!(exec, vec![1, 1, 1, 0]);
    let padding = ferrite_core::custom_metrics::snapshot()
        .into_iter()
        .find(|f| f.name == "ferrite_neuron_core_padding_samples_total")
        .unwrap();
    let on_core = |core: &str| {
        let labels = vec![
            ("core".to_string(), core.to_string()),
            ("model".to_string(), "by_four".to_string()),
            ("version".to_string(), "1".to_string()),
        ];
        padding.samples.get(&labels).copied()
    };
    // The last shard (2 samples, on core 2) was padded by 2.
    assert_eq!(
        (on_core("0"), on_core("1"), on_core("2")),
        (Some(0.0), Some(0.0), Some(2.0))
    );
    // The next batch starts where this one stopped (core 3), so small batches spread.
    let (_, cores) = run(&server, "by_four", &[1.0, 2.0]).await.unwrap();
    assert_eq!(cores, vec![3, 3]);
}

#[tokio::test]
async fn dynamic_batches_of_many_requests_are_split_and_each_gets_its_rows() {
    let Some(lib) = ready() else { return };
    let _guard = COUNTERS.lock().await;
    let repo = tempfile::tempdir().unwrap();
    model(
        repo.path(),
        "dynamic",
        &neff_for(2, "sleep_ms 5\n"),
        &batching_config(
            8,
            "dynamic_batching { max_queue_delay_microseconds: 20000 }",
        ),
    );
    let server = std::sync::Arc::new(start(repo.path(), lib));
    let mut tasks = Vec::new();
    for r in 0..12 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let n = 1 + r % 3;
            let values: Vec<f32> = (0..n).map(|i| (r * 10 + i) as f32).collect();
            let (out, cores) = run(&server, "dynamic", &values).await.unwrap();
            assert_eq!(
                out,
                values.iter().map(|v| 2.0 * v + 1.0).collect::<Vec<_>>(),
                "request {r}"
            );
            assert!(
                cores.iter().all(|&c| (0..CORES as i32).contains(&c)),
                "{cores:?}"
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn instances_share_the_configured_core_range() {
    let Some(lib) = ready() else { return };
    let _guard = COUNTERS.lock().await;
    let repo = tempfile::tempdir().unwrap();
    let extra = r#"instance_group [ { kind: KIND_MODEL count: 2 } ]
parameters: { key: "NEURON_CORE_START_INDEX" value: { string_value: "1" } }
parameters: { key: "NEURON_CORE_END_INDEX" value: { string_value: "2" } }"#;
    model(
        repo.path(),
        "ranged",
        &neff_for(1, ""),
        &batching_config(4, extra),
    );
    take_counters(lib);
    let server = start(repo.path(), lib);
    assert_eq!(
        reason(&server, "ranged").0,
        Some(ModelState::Ready),
        "{}",
        reason(&server, "ranged").1
    );
    let (_, loads, _) = take_counters(lib);
    assert_eq!(
        loads,
        vec![0, 1, 1, 0],
        "instance 0 on core 1, instance 1 on core 2"
    );
    for _ in 0..6 {
        let (out, cores) = run(&server, "ranged", &[3.0, 4.0]).await.unwrap();
        assert_eq!(out, vec![7.0, 9.0]);
        // Each instance has one core: both samples on it.
        assert!(cores == vec![1, 1] || cores == vec![2, 2], "{cores:?}");
    }
}

#[tokio::test]
async fn a_model_that_does_not_batch_runs_whole_requests_and_rotates_cores() {
    let Some(lib) = ready() else { return };
    let _guard = COUNTERS.lock().await;
    let repo = tempfile::tempdir().unwrap();
    let config = r#"platform: "neuron_neff"
input [ { name: "x" data_type: TYPE_FP32 dims: [ 2, 3 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 2, 3 ] }, { name: "CORE" data_type: TYPE_INT32 dims: [ 1 ] } ]
instance_group [ { kind: KIND_MODEL } ]"#;
    model(
        repo.path(),
        "whole",
        "input x 24\noutput y 24\noutput CORE 4\n",
        config,
    );
    let server = start(repo.path(), lib);
    assert_eq!(
        reason(&server, "whole").0,
        Some(ModelState::Ready),
        "{}",
        reason(&server, "whole").1
    );
    let mut seen = Vec::new();
    for _ in 0..4 {
        let response = server
            .infer_one(InferenceRequest {
                model_name: "whole".into(),
                inputs: vec![Tensor::new(
                    "x",
                    DataType::Fp32,
                    vec![2, 3],
                    floats(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]),
                )],
                ..Default::default()
            })
            .await
            .unwrap();
        let y = response.outputs.iter().find(|t| t.name == "y").unwrap();
        assert_eq!(y.shape, vec![2, 3]);
        assert_eq!(f32s(y), vec![1.0, 3.0, 5.0, 7.0, 9.0, 11.0]);
        seen.push(i32s(response.outputs.iter().find(|t| t.name == "CORE").unwrap())[0]);
    }
    assert_eq!(seen, vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn bad_models_are_unavailable_with_the_reason_and_the_rest_serve() {
    let Some(lib) = ready() else { return };
    let _guard = COUNTERS.lock().await;
    let repo = tempfile::tempdir().unwrap();
    let p = repo.path();
    model(p, "good", &neff_for(1, ""), &batching_config(4, ""));
    model(
        p,
        "too_far",
        &neff_for(1, ""),
        &batching_config(
            4,
            r#"parameters: { key: "NEURON_CORE_END_INDEX" value: { string_value: "9" } }"#,
        ),
    );
    model(
        p,
        "wrong_size",
        &neff_for(1, ""),
        &batching_config(4, "").replace("dims: [ 1 ] }", "dims: [ 3 ] }"),
    );
    model(p, "not_a_neff", "", &batching_config(4, ""));
    std::fs::write(p.join("not_a_neff/1/model.neff"), b"\x7fELF garbage").unwrap();
    model(p, "no_file", &neff_for(1, ""), &batching_config(4, ""));
    std::fs::remove_file(p.join("no_file/1/model.neff")).unwrap();
    let partial = batching_config(4, "").replace(
        ",\n  { name: \"CORE__1\" data_type: TYPE_INT32 dims: [ 1 ] }",
        "",
    );
    assert!(!partial.contains("CORE__1"), "{partial}");
    model(p, "partial", &neff_for(1, ""), &partial);
    model(
        p,
        "too_many",
        &neff_for(1, ""),
        &batching_config(4, "instance_group [ { kind: KIND_MODEL count: 5 } ]"),
    );
    let server = start(p, lib);

    let expect = |name: &str, text: &str| {
        let (state, why) = reason(&server, name);
        assert_eq!(state, Some(ModelState::Unavailable), "{name}: {why}");
        assert!(why.contains(text), "{name}: {why:?} lacks {text:?}");
    };
    expect(
        "too_far",
        "the core range 0..=9 reaches beyond the 4 NeuronCore(s) visible to this process",
    );
    expect("wrong_size", "not a whole number of samples of 12 bytes");
    expect(
        "not_a_neff",
        "nrt_load on NeuronCore 0 failed: Neuron runtime status 2 (invalid input",
    );
    expect("no_file", "could not read the compiled model");
    expect(
        "too_many",
        "5 instances cannot share the 4 NeuronCore(s) 0..=3",
    );
    assert_eq!(reason(&server, "good").0, Some(ModelState::Ready));
    let (out, _) = run(&server, "good", &[1.0]).await.unwrap();
    assert_eq!(out, vec![3.0]);
    // A NEFF output the configuration leaves out is computed into memory of its own and not
    // returned.
    let response = server
        .infer_one(InferenceRequest {
            model_name: "partial".into(),
            inputs: vec![Tensor::new(
                "INPUT__0",
                DataType::Fp32,
                vec![2, 1],
                floats(&[1.0, 2.0]),
            )],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(response.outputs.len(), 1);
    assert_eq!(f32s(&response.outputs[0]), vec![3.0, 5.0]);
}

#[tokio::test]
async fn a_failing_core_fails_the_batch_with_the_runtime_status_and_nothing_else() {
    let Some(lib) = ready() else { return };
    let _guard = COUNTERS.lock().await;
    let repo = tempfile::tempdir().unwrap();
    model(
        repo.path(),
        "flaky",
        &neff_for(1, "fail_on_core 1\n"),
        &batching_config(8, ""),
    );
    let server = start(repo.path(), lib);
    // Four samples touch core 1.
    let e = run(&server, "flaky", &[1.0, 2.0, 3.0, 4.0])
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Internal);
    assert!(
        e.message().contains(
            "nrt_execute on NeuronCore 1 failed: Neuron runtime status 1004 (completed with errors)"
        ),
        "{}",
        e.message()
    );
    // The model stays ready; the next batch starts on core 0 again (the four shards went
    // round once) and runs.
    assert_eq!(reason(&server, "flaky").0, Some(ModelState::Ready));
    let (out, cores) = run(&server, "flaky", &[5.0]).await.unwrap();
    assert_eq!((out, cores), (vec![11.0], vec![0]));
}
