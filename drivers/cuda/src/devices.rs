//! NVIDIA devices through the CUDA driver API (`libcuda`, loaded at run time by `cudarc`):
//! whether the driver library is here at all, its CUDA version, and each GPU's name, UUID,
//! compute capability and memory. Nothing here creates a CUDA context (that costs device
//! memory); ONNX Runtime makes its own per session.

use cudarc::driver::{result, sys};
use ferrite_driver_sdk::{Error, Result};

/// One GPU as the driver API numbers it (respecting `CUDA_VISIBLE_DEVICES`).
#[derive(Clone, Debug, PartialEq)]
pub struct Gpu {
    pub ordinal: i32,
    pub name: String,
    /// `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, as `nvidia-smi -L` and NVML print it.
    pub uuid: String,
    pub compute_capability: (i32, i32),
    pub total_memory: u64,
}

impl std::fmt::Display for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GPU {} {} ({}, compute capability {}.{}, {:.1} GiB)",
            self.ordinal,
            self.name,
            self.uuid,
            self.compute_capability.0,
            self.compute_capability.1,
            self.total_memory as f64 / (1u64 << 30) as f64
        )
    }
}

/// What this machine has: the CUDA version its driver supports, and its GPUs.
#[derive(Clone, Debug)]
pub struct Devices {
    /// From `cuDriverGetVersion`: (major, minor), e.g. (13, 0).
    pub driver_cuda_version: (i32, i32),
    pub gpus: Vec<Gpu>,
}

/// Looks for the NVIDIA driver and its GPUs. UNAVAILABLE, naming what is missing, when the
/// driver library is absent, does not initialise, or sees no GPU.
pub fn probe() -> Result<Devices> {
    // SAFETY: only tries to open the library files; cudarc panics on any call into libcuda
    // when the library is absent, so this is asked before anything else.
    if !unsafe { sys::is_culib_present() } {
        return Err(Error::unavailable(
            "no NVIDIA driver on this machine: libcuda.so.1 (the CUDA driver library the NVIDIA driver installs) was not found on the library path",
        ));
    }
    result::init().map_err(|e| {
        Error::unavailable(format!(
            "the NVIDIA driver failed to initialise (cuInit): {e}"
        ))
    })?;
    let mut version = 0;
    // SAFETY: writes one int; the driver library is loaded and initialised.
    unsafe { sys::cuDriverGetVersion(&mut version) }
        .result()
        .map_err(|e| Error::unavailable(format!("cuDriverGetVersion failed: {e}")))?;
    let count = result::device::get_count()
        .map_err(|e| Error::unavailable(format!("cuDeviceGetCount failed: {e}")))?;
    if count == 0 {
        return Err(Error::unavailable(
            "the NVIDIA driver is installed but sees no GPU (check CUDA_VISIBLE_DEVICES and the container's --gpus)",
        ));
    }
    let gpus = (0..count).map(gpu).collect::<Result<Vec<_>>>()?;
    Ok(Devices {
        driver_cuda_version: (version / 1000, (version % 1000) / 10),
        gpus,
    })
}

fn gpu(ordinal: i32) -> Result<Gpu> {
    let fail = |what: &str, e: result::DriverError| {
        Error::unavailable(format!("GPU {ordinal}: {what} failed: {e}"))
    };
    let dev = result::device::get(ordinal).map_err(|e| fail("cuDeviceGet", e))?;
    let name = result::device::get_name(dev).map_err(|e| fail("cuDeviceGetName", e))?;
    let uuid = result::device::get_uuid(dev).map_err(|e| fail("cuDeviceGetUuid", e))?;
    // SAFETY: `dev` came from cuDeviceGet.
    let (total_memory, major, minor) = unsafe {
        (
            result::device::total_mem(dev).map_err(|e| fail("cuDeviceTotalMem", e))?,
            result::device::get_attribute(
                dev,
                sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
            )
            .map_err(|e| fail("cuDeviceGetAttribute", e))?,
            result::device::get_attribute(
                dev,
                sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
            )
            .map_err(|e| fail("cuDeviceGetAttribute", e))?,
        )
    };
    Ok(Gpu {
        ordinal,
        name,
        uuid: format_uuid(&uuid.bytes.map(|b| b as u8)),
        compute_capability: (major, minor),
        total_memory: total_memory as u64,
    })
}

/// NVIDIA's spelling of a GPU UUID: `GPU-` and the 16 bytes as 8-4-4-4-12 hex digits.
pub fn format_uuid(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_as_nvidia_prints_it() {
        let bytes = [
            0x8f, 0x1e, 0x55, 0x43, 0x2a, 0x0b, 0x4c, 0x7d, 0x91, 0x23, 0xab, 0xcd, 0xef, 0x01,
            0x23, 0x45,
        ];
        assert_eq!(
            format_uuid(&bytes),
            "GPU-8f1e5543-2a0b-4c7d-9123-abcdef012345"
        );
    }

    #[test]
    fn gpu_described_for_the_log() {
        let gpu = Gpu {
            ordinal: 1,
            name: "NVIDIA H100 80GB HBM3".into(),
            uuid: "GPU-00000000-0000-0000-0000-000000000001".into(),
            compute_capability: (9, 0),
            total_memory: 85_520_809_984,
        };
        assert_eq!(
            gpu.to_string(),
            "GPU 1 NVIDIA H100 80GB HBM3 (GPU-00000000-0000-0000-0000-000000000001, compute capability 9.0, 79.6 GiB)"
        );
    }

    /// On a machine without the NVIDIA driver the probe says so and names the library; with
    /// one, it finds at least one GPU with a name and memory.
    #[test]
    fn probe_names_what_is_missing_or_finds_gpus() {
        match probe() {
            Ok(devices) => {
                assert!(!devices.gpus.is_empty());
                for gpu in &devices.gpus {
                    assert!(!gpu.name.is_empty() && gpu.total_memory > 0, "{gpu}");
                    assert!(gpu.uuid.starts_with("GPU-"), "{gpu}");
                }
            }
            Err(e) => {
                assert_eq!(e.code, ferrite_driver_sdk::ErrorCode::Unavailable);
                eprintln!("no GPU here: {}", e.message);
                // SAFETY: only tries to open the library files.
                if !unsafe { sys::is_culib_present() } {
                    assert!(e.message.contains("libcuda.so.1"), "{}", e.message);
                }
            }
        }
    }
}
