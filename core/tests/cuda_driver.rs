//! The CUDA driver through the real ABI. On a machine without an NVIDIA GPU (CI): the driver
//! refuses to start naming what is missing, the server goes on, a KIND_GPU model is
//! unavailable with that reason and KIND_AUTO models run on the CPU. On a machine with one
//! (and `scripts/setup_gpu.sh target/debug` run): the example EfficientNet-Lite0 and MiniLM
//! models serve on KIND_GPU with the CPU driver's outputs, placed on every GPU by default.
//! The GPU tests skip with a message where there is no GPU, unless FERRITE_REQUIRE_GPU is set.

mod common;

use std::path::Path;

use bytes::Bytes;
use common::{built, f32s, present, target, workspace};
use ferrite_core::driver::{DriverRegistry, FailedDriver};
use ferrite_core::{DataType, InferenceRequest, ModelState, Server, ServerOptions, Tensor};

fn cuda_built() -> bool {
    built() && present(&[target().join("libferrite_driver_cuda.so")])
}

/// The CUDA driver's failure to start here, or None when it started (a GPU machine).
fn cuda_failure(registry: &DriverRegistry) -> Option<&FailedDriver> {
    if registry.drivers().iter().any(|d| d.name == "cuda") {
        return None;
    }
    let failed = registry
        .failed()
        .iter()
        .find(|f| f.path.ends_with("libferrite_driver_cuda.so"))
        .expect("the CUDA driver either loads or is listed as failed");
    Some(failed)
}

fn drivers() -> DriverRegistry {
    DriverRegistry::discover(&target(), &Default::default()).unwrap()
}

/// Why the CUDA driver did not start here, or None when it did.
fn cuda_refusal() -> Option<String> {
    cuda_failure(&drivers()).map(|f| f.error.chain())
}

/// Whether GPU tests run: a GPU and its runtime are here. Otherwise they skip saying why, or
/// fail where FERRITE_REQUIRE_GPU is set (a GPU machine's test run).
fn gpu_here() -> bool {
    if !cuda_built() {
        return false;
    }
    match cuda_refusal() {
        None => true,
        Some(why) => {
            assert!(
                std::env::var_os("FERRITE_REQUIRE_GPU").is_none(),
                "FERRITE_REQUIRE_GPU is set but the CUDA driver did not start: {why}"
            );
            eprintln!("SKIPPED (no GPU here): {why}");
            false
        }
    }
}

#[test]
fn without_a_gpu_the_driver_says_what_is_missing() {
    if !cuda_built() {
        return;
    }
    let registry = drivers();
    let Some(failed) = cuda_failure(&registry) else {
        eprintln!("SKIPPED: this machine has a GPU; the GPU tests below cover it");
        return;
    };
    let why = failed.error.chain();
    // The driver loaded, read its table and refused in init: a missing device or runtime, a
    // warning rather than a broken driver.
    assert!(failed.hardware_absent, "{why}");
    assert_eq!(failed.backends, vec!["onnxruntime".to_string()]);
    assert_ne!(
        failed.instance_kinds & ferrite_driver_abi::INSTANCE_KIND_GPU,
        0
    );
    assert!(why.contains("driver 'cuda'"), "{why}");
    let known = [
        "libcuda.so.1",
        "sees no GPU",
        "failed to initialise (cuInit)",
        "GPU build of ONNX Runtime",
        "CUDA execution provider",
        "needs CUDA 13",
    ];
    assert!(known.iter().any(|k| why.contains(k)), "{why}");
    // Every other driver is unaffected.
    for name in ["cpu", "image", "tokenizer", "postprocess"] {
        assert!(
            registry.drivers().iter().any(|d| d.name == name),
            "driver {name} missing"
        );
    }
}

/// How a test edits an example model's configuration.
type Edit<'a> = &'a dyn Fn(String) -> String;

/// A repository holding copies of example models (from, name, edit), each config edited.
fn repo(models: &[(&str, &str, Edit)]) -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    for (from, name, edit) in models {
        let src = workspace().join("configs/models").join(from);
        let dir = repo.path().join(name);
        std::fs::create_dir_all(dir.join("1")).unwrap();
        std::os::unix::fs::symlink(src.join("1/model.onnx"), dir.join("1/model.onnx")).unwrap();
        let config = std::fs::read_to_string(src.join("config.pbtxt"))
            .unwrap()
            .replace(&format!("name: \"{from}\""), &format!("name: \"{name}\""));
        std::fs::write(dir.join("config.pbtxt"), edit(config)).unwrap();
    }
    repo
}

fn start(repo: &Path) -> Server {
    Server::start(ServerOptions {
        model_repositories: vec![repo.to_path_buf()],
        backend_directory: target(),
        ..Default::default()
    })
    .unwrap()
}

fn same(config: String) -> String {
    config
}

#[test]
fn without_a_gpu_kind_gpu_models_are_unavailable_and_name_the_reason() {
    if !cuda_built() {
        return;
    }
    let Some(why) = cuda_refusal() else {
        eprintln!("SKIPPED: this machine has a GPU; the GPU tests below cover it");
        return;
    };
    let gpu = |c: String| format!("{c}\ninstance_group [ {{ kind: KIND_GPU gpus: [ 0 ] }} ]\n");
    let repo = repo(&[("simple", "on_gpu", &gpu), ("simple", "anywhere", &same)]);
    let server = start(repo.path());
    let index = server.index(false);
    let row = |name: &str| index.iter().find(|e| e.name == name).unwrap().clone();
    let on_gpu = row("on_gpu");
    assert_eq!(on_gpu.state, Some(ModelState::Unavailable));
    assert!(
        on_gpu
            .reason
            .contains("asks for KIND_GPU instances on GPUs [0], but no GPU is available"),
        "{}",
        on_gpu.reason
    );
    // The CUDA driver's own reason (e.g. libcuda.so.1 not found) is in the model's reason.
    let driver_reason = why.rsplit("failed to initialise: ").next().unwrap();
    assert!(
        on_gpu.reason.contains(driver_reason),
        "{} lacks {driver_reason}",
        on_gpu.reason
    );
    // KIND_AUTO falls to the CPU, as in Triton without GPUs.
    assert_eq!(row("anywhere").state, Some(ModelState::Ready));
    let config = server.model_config("anywhere", None).unwrap();
    assert_eq!(
        config.instance_group[0].kind,
        ferrite_proto::inference::model_instance_group::Kind::Cpu as i32
    );
}

/// A deterministic input: `n` floats in [-1, 1).
fn floats(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2654435761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

fn assert_close(what: &str, cpu: &[f32], gpu: &[f32], tolerance: f32) {
    assert_eq!(cpu.len(), gpu.len(), "{what}: lengths differ");
    let scale = cpu.iter().fold(1f32, |m, v| m.max(v.abs()));
    let worst = cpu
        .iter()
        .zip(gpu)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("{what}: largest |CPU - GPU| = {worst:e} (scale {scale})");
    assert!(
        worst <= tolerance * scale,
        "{what}: GPU differs from CPU by {worst} (tolerance {})",
        tolerance * scale
    );
}

async fn run(server: &Server, model: &str, inputs: Vec<Tensor>) -> Vec<Tensor> {
    server
        .infer_one(InferenceRequest {
            model_name: model.into(),
            inputs,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{model}: {}", e.message()))
        .outputs
}

#[tokio::test]
async fn efficientnet_and_minilm_on_the_gpu_match_the_cpu() {
    if !gpu_here() {
        return;
    }
    let gpu = |c: String| {
        let c = c.replace("kind: KIND_CPU", "kind: KIND_GPU");
        if c.contains("instance_group") {
            c
        } else {
            format!("{c}\ninstance_group [ {{ kind: KIND_GPU }} ]\n")
        }
    };
    let cpu = |c: String| {
        if c.contains("instance_group") {
            c
        } else {
            format!("{c}\ninstance_group [ {{ kind: KIND_CPU count: 1 }} ]\n")
        }
    };
    let repo = repo(&[
        ("efficientnet_lite0_onnx", "effnet_cpu", &cpu),
        ("efficientnet_lite0_onnx", "effnet_gpu", &gpu),
        ("all_minilm_l6_v2", "minilm_cpu", &cpu),
        ("all_minilm_l6_v2", "minilm_gpu", &gpu),
    ]);
    let server = start(repo.path());
    for e in server.index(false) {
        assert_eq!(e.state, Some(ModelState::Ready), "{}: {}", e.name, e.reason);
    }
    // Placed on every GPU when the group names none, one instance each.
    let config = server.model_config("effnet_gpu", None).unwrap();
    let group = &config.instance_group[0];
    assert_eq!(
        group.kind,
        ferrite_proto::inference::model_instance_group::Kind::Gpu as i32
    );
    assert!(!group.gpus.is_empty());
    assert_eq!(group.gpus, (0..group.gpus.len() as i32).collect::<Vec<_>>());

    for batch in [1i64, 4] {
        let image = floats(batch as usize * 3 * 224 * 224, batch as u32);
        let bytes: Vec<u8> = image.iter().flat_map(|v| v.to_le_bytes()).collect();
        let input = || {
            Tensor::new(
                "input",
                DataType::Fp32,
                vec![batch, 3, 224, 224],
                Bytes::from(bytes.clone()),
            )
        };
        let on_cpu = run(&server, "effnet_cpu", vec![input()]).await;
        let on_gpu = run(&server, "effnet_gpu", vec![input()]).await;
        assert_eq!(on_gpu[0].shape, vec![batch, 1000]);
        assert_close(
            &format!("EfficientNet-Lite0 batch {batch}"),
            &f32s(&on_cpu[0]),
            &f32s(&on_gpu[0]),
            1e-3,
        );
    }

    let tokens: Vec<i64> = vec![101, 7592, 2088, 1010, 2023, 2003, 1037, 3231, 102];
    let ids = |v: &[i64]| Bytes::from(v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
    let shape = vec![1, tokens.len() as i64];
    let text = || {
        vec![
            Tensor::new("input_ids", DataType::Int64, shape.clone(), ids(&tokens)),
            Tensor::new(
                "attention_mask",
                DataType::Int64,
                shape.clone(),
                ids(&vec![1; tokens.len()]),
            ),
            Tensor::new(
                "token_type_ids",
                DataType::Int64,
                shape.clone(),
                ids(&vec![0; tokens.len()]),
            ),
        ]
    };
    let on_cpu = run(&server, "minilm_cpu", text()).await;
    let on_gpu = run(&server, "minilm_gpu", text()).await;
    assert_close("MiniLM", &f32s(&on_cpu[0]), &f32s(&on_gpu[0]), 1e-2);
}

#[test]
fn a_gpu_that_is_not_here_makes_the_model_unavailable() {
    if !gpu_here() {
        return;
    }
    let far = |c: String| format!("{c}\ninstance_group [ {{ kind: KIND_GPU gpus: [ 4096 ] }} ]\n");
    let repo = repo(&[("simple", "far", &far)]);
    let server = start(repo.path());
    let row = server
        .index(false)
        .into_iter()
        .find(|e| e.name == "far")
        .unwrap();
    assert_eq!(row.state, Some(ModelState::Unavailable));
    assert!(
        row.reason
            .contains("specifies invalid or unsupported gpu id 4096: this machine has"),
        "{}",
        row.reason
    );
}
