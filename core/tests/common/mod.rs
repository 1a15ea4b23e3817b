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

/// Whether the CPU driver, ONNX Runtime and the example models are built. Without them a
/// test skips with a message, unless FERRITE_REQUIRE_DRIVERS is set (scripts/test.sh), where
/// it fails.
pub fn built() -> bool {
    // Every driver the example repository's models use.
    let drivers = [
        "libferrite_driver_cpu.so",
        "libferrite_driver_image.so",
        "libferrite_driver_tokenizer.so",
        "libferrite_driver_postprocess.so",
    ];
    let ready = drivers.iter().all(|d| target().join(d).is_file())
        && target().join("libonnxruntime.so.1.31.1").is_file()
        && workspace()
            .join("configs/models/simple/1/model.onnx")
            .is_file();
    if !ready {
        assert!(
            std::env::var_os("FERRITE_REQUIRE_DRIVERS").is_none(),
            "a driver, ONNX Runtime or the example models are missing; run scripts/setup.sh and cargo build --workspace"
        );
        eprintln!(
            "SKIPPED: drivers / ONNX Runtime / example models not built (run scripts/test.sh)"
        );
    }
    ready
}
