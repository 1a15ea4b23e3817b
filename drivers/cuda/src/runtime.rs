//! The GPU build of ONNX Runtime and the CUDA libraries its CUDA execution provider needs.
//!
//! The `onnxruntime-gpu` 1.31.1 wheel (built for CUDA 13) ships `libonnxruntime.so.1.31.1`,
//! `libonnxruntime_providers_shared.so` and `libonnxruntime_providers_cuda.so`, but not cuBLAS,
//! cuDNN, cudart and the rest: those come from NVIDIA's `nvidia-*` wheels or a CUDA install.
//! `scripts/setup_gpu.sh DIR` gathers all of them in `DIR/onnxruntime-gpu/`, beside the driver.
//! Before ONNX Runtime is asked for the CUDA provider, the libraries found in that folder are
//! loaded (globally, so the provider finds them by name), and then the provider library itself:
//! when it cannot load, the dynamic loader's message names the library that is missing.

use std::path::{Path, PathBuf};

use ferrite_driver_sdk::{DriverInfo, Error, Result};

/// The folder beside the driver library that holds the GPU runtime.
pub const RUNTIME_DIR: &str = "onnxruntime-gpu";
/// The CUDA major version ONNX Runtime 1.31's CUDA build needs (driver 580 or newer).
pub const CUDA_MAJOR: i32 = 13;
const PROVIDERS_SHARED: &str = "libonnxruntime_providers_shared.so";
const PROVIDERS_CUDA: &str = "libonnxruntime_providers_cuda.so";

/// Where the GPU build of ONNX Runtime is looked for: the driver setting `gpu-library`
/// (`--backend-config=cuda,gpu-library=PATH`), then `FERRITE_ONNXRUNTIME_GPU_LIB`, then
/// `onnxruntime-gpu/` beside the driver library.
pub fn library_path(info: &DriverInfo) -> PathBuf {
    if let Some(p) = info.setting("gpu-library") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("FERRITE_ONNXRUNTIME_GPU_LIB") {
        return PathBuf::from(p);
    }
    info.directory
        .join(RUNTIME_DIR)
        .join(ferrite_onnx::ORT_LIBRARY)
}

/// The CUDA and cuDNN libraries, in dependency order (dependencies first), that the CUDA
/// provider of ONNX Runtime 1.31 loads.
pub fn cuda_libraries() -> impl Iterator<Item = &'static str> {
    ort::ep::cuda::CUDA_DYLIBS
        .iter()
        .chain(ort::ep::cuda::CUDNN_DYLIBS)
        .copied()
}

/// Checks the library file and loads the CUDA libraries found beside it, then the CUDA
/// provider: UNAVAILABLE naming the file or library that is missing.
pub fn load_provider(library: &Path) -> Result<()> {
    if !library.is_file() {
        return Err(Error::unavailable(format!(
            "the GPU build of ONNX Runtime was not found at {} (run scripts/setup_gpu.sh with the driver's folder, or set --backend-config=cuda,gpu-library=PATH)",
            library.display()
        )));
    }
    let dir = library.parent().unwrap_or(Path::new("."));
    let provider = dir.join(PROVIDERS_CUDA);
    if !provider.is_file() {
        return Err(Error::unavailable(format!(
            "{} is not a GPU build of ONNX Runtime: {PROVIDERS_CUDA} is not beside it (install the onnxruntime-gpu=={} wheel's libraries there)",
            library.display(),
            ferrite_onnx::ORT_VERSION
        )));
    }
    // The CUDA libraries gathered beside the runtime come first; the others are left to the
    // system's search path, where the provider's own load finds them or says which is missing.
    for name in cuda_libraries() {
        let path = dir.join(name);
        if path.exists() {
            open_global(&path)?;
        }
    }
    open_global(&dir.join(PROVIDERS_SHARED))?;
    open_global(&provider).map_err(|e| {
        Error::unavailable(format!(
            "ONNX Runtime's CUDA execution provider cannot load, a CUDA library it needs is missing (scripts/setup_gpu.sh gathers them): {}",
            e.message
        ))
    })
}

/// Loads a library for the life of the process with its symbols global, as the provider
/// expects of the libraries it links.
fn open_global(path: &Path) -> Result<()> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // SAFETY: loading runs the library's initialisers; these are NVIDIA's and ONNX Runtime's
    // libraries from the configured runtime folder, trusted configuration like the drivers.
    let library = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) }
        .map_err(|e| Error::unavailable(format!("cannot load {}: {e}", path.display())))?;
    // Never unloaded: ONNX Runtime keeps pointers into them.
    std::mem::forget(library);
    Ok(())
}

/// Everything the CUDA provider needs before ONNX Runtime is loaded from `library`: the NVIDIA
/// driver and its GPUs, a CUDA version the provider was built for, and the provider's
/// libraries. UNAVAILABLE naming the first thing missing.
pub fn ready(library: &Path) -> Result<crate::devices::Devices> {
    let devices = crate::devices::probe()?;
    check_driver_version(devices.driver_cuda_version)?;
    load_provider(library)?;
    Ok(devices)
}

/// The NVIDIA driver must serve the CUDA version the provider was built for.
pub fn check_driver_version((major, minor): (i32, i32)) -> Result<()> {
    if major < CUDA_MAJOR {
        return Err(Error::unavailable(format!(
            "the NVIDIA driver supports CUDA {major}.{minor}, but ONNX Runtime {}'s CUDA build needs CUDA {CUDA_MAJOR} (NVIDIA driver 580 or newer)",
            ferrite_onnx::ORT_VERSION
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(dir: &Path, config: serde_json::Value) -> DriverInfo {
        DriverInfo {
            path: dir.join("libferrite_driver_cuda.so"),
            directory: dir.to_path_buf(),
            config,
        }
    }

    #[test]
    fn runtime_beside_the_driver_unless_configured() {
        let dir = Path::new("/opt/ferrite/bin");
        if std::env::var_os("FERRITE_ONNXRUNTIME_GPU_LIB").is_none() {
            assert_eq!(
                library_path(&info(dir, serde_json::json!({}))),
                Path::new("/opt/ferrite/bin/onnxruntime-gpu/libonnxruntime.so.1.31.1")
            );
        }
        assert_eq!(
            library_path(&info(
                dir,
                serde_json::json!({"gpu-library": "/x/libort.so"})
            )),
            Path::new("/x/libort.so")
        );
    }

    #[test]
    fn missing_runtime_named() {
        let dir = std::env::temp_dir().join(format!("ferrite-cuda-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let library = dir.join(ferrite_onnx::ORT_LIBRARY);
        let e = load_provider(&library).unwrap_err();
        assert_eq!(e.code, ferrite_driver_sdk::ErrorCode::Unavailable);
        assert!(
            e.message
                .contains("GPU build of ONNX Runtime was not found"),
            "{e}"
        );
        // A CPU build: the library without the CUDA provider beside it.
        std::fs::write(&library, b"").unwrap();
        let e = load_provider(&library).unwrap_err();
        assert!(
            e.message.contains("is not a GPU build")
                && e.message.contains("libonnxruntime_providers_cuda.so"),
            "{e}"
        );
        // The provider's own load failure is passed on with the loader's words.
        std::fs::write(dir.join(PROVIDERS_CUDA), b"not a library").unwrap();
        std::fs::write(dir.join(PROVIDERS_SHARED), b"not a library").unwrap();
        let e = load_provider(&library).unwrap_err();
        assert!(e.message.contains(PROVIDERS_SHARED), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn driver_version_checked() {
        check_driver_version((13, 0)).unwrap();
        let e = check_driver_version((12, 8)).unwrap_err();
        assert!(
            e.message.contains("supports CUDA 12.8") && e.message.contains("needs CUDA 13"),
            "{e}"
        );
    }

    #[test]
    fn libraries_in_dependency_order() {
        let names: Vec<&str> = cuda_libraries().collect();
        let at = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(at("libcudart.so.13") < at("libcublas.so.13"));
        assert!(at("libcublasLt.so.13") < at("libcublas.so.13"));
        assert!(names.contains(&"libcudnn.so.9"));
    }
}
