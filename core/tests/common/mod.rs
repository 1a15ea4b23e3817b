//! What the CPU-driver tests of this crate share: where the workspace and its debug build
//! are, and whether the driver, ONNX Runtime and the example models are there.

use std::path::PathBuf;

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The debug build's folder (where the CPU driver and ONNX Runtime are).
pub fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("debug")
}

/// Whether the drivers, ONNX Runtime and the example models are built. Without them a test
/// skips with a message, unless FERRITE_REQUIRE_DRIVERS is set (scripts/test.sh), where it
/// fails.
#[allow(dead_code)] // tests/custom_drivers.rs needs no ONNX model
pub fn built() -> bool {
    let t = target();
    present(&[
        // Every driver the example repository's models use.
        t.join("libferrite_driver_cpu.so"),
        t.join("libferrite_driver_image.so"),
        t.join("libferrite_driver_tokenizer.so"),
        t.join("libferrite_driver_postprocess.so"),
        t.join("libonnxruntime.so.1.31.1"),
        workspace().join("configs/models/simple/1/model.onnx"),
    ])
}

/// Whether every file a test needs is there; else the test skips, naming what is missing,
/// or fails under FERRITE_REQUIRE_DRIVERS.
pub fn present(files: &[PathBuf]) -> bool {
    let missing: Vec<String> = files
        .iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("FERRITE_REQUIRE_DRIVERS").is_none(),
        "missing {}; run scripts/setup.sh and cargo build --workspace",
        missing.join(", ")
    );
    eprintln!(
        "SKIPPED: missing {} (run scripts/setup.sh and cargo build --workspace)",
        missing.join(", ")
    );
    false
}

/// A tensor's data as little-endian f32 values.
#[allow(dead_code)] // not every test binary reads float outputs
pub fn f32s(t: &ferrite_core::Tensor) -> Vec<f32> {
    t.data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// An INT32 tensor of `values`.
#[allow(dead_code)] // not every test binary sends INT32 inputs
pub fn int32(name: &str, shape: Vec<i64>, values: &[i32]) -> ferrite_core::Tensor {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    ferrite_core::Tensor::new(
        name,
        ferrite_core::DataType::Int32,
        shape,
        bytes::Bytes::from(data),
    )
}

/// A tensor's data as little-endian i32 values.
#[allow(dead_code)] // not every test binary reads INT32 outputs
pub fn ints(t: &ferrite_core::Tensor) -> Vec<i32> {
    t.data
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}
