//! The CUDA driver: ONNX models (`platform: "onnxruntime_onnx"` / `backend: "onnxruntime"`) on
//! NVIDIA GPUs through ONNX Runtime's CUDA execution provider, for KIND_GPU instances (and the
//! KIND_CPU groups of a model that also has GPU groups). The ONNX Runtime glue is
//! [`ferrite_onnx`], shared with the CPU driver; this crate adds the devices, the GPU runtime
//! and the placement of instances on GPUs.
//!
//! At start it finds the NVIDIA driver and its GPUs ([`devices`], through `cudarc`, loading
//! `libcuda` at run time) and the GPU build of ONNX Runtime ([`runtime`]). Where either is
//! missing, it refuses to start with UNAVAILABLE and a reason that names what is missing; the
//! server goes on with its other drivers and a KIND_GPU model is unavailable with that reason.
//! The CUDA provider is registered strictly: an instance whose provider cannot be registered
//! fails to load, never falls back to the CPU.

pub mod devices;
pub mod memory;
pub mod placement;
pub mod runtime;

use ferrite_driver_sdk::{
    Batch, DataType, Descriptor, Driver, DriverInfo, Error, InstanceInfo, InstanceKind, LogLevel,
    MemoryHandle, ModelLoad, Result, SharedDeviceMemory, abi, export_driver, log,
};
use ferrite_onnx::{OnnxInstance, OnnxModel};
use ort::environment::Environment;
use ort::ep::ExecutionProvider;

use devices::Devices;

pub struct CudaDriver {
    env: Environment,
    devices: Devices,
    /// GPU contexts for CUDA shared memory.
    contexts: memory::Contexts,
}

impl CudaDriver {
    /// Every GPU, for messages.
    fn describe_gpus(&self) -> String {
        let gpus: Vec<String> = self.devices.gpus.iter().map(|g| g.to_string()).collect();
        gpus.join("; ")
    }
}

impl Driver for CudaDriver {
    type Model = OnnxModel;
    type Instance = OnnxInstance;

    fn init(info: &DriverInfo) -> Result<Self> {
        let library = runtime::library_path(info);
        let devices = runtime::ready(&library)?;
        let env = ferrite_onnx::init_runtime(&library)?;
        let offered = ort::ep::CUDA::is_available().map_err(|e| {
            Error::from_chain("failed to list ONNX Runtime's execution providers", &e)
        })?;
        if !offered {
            return Err(Error::unavailable(format!(
                "ONNX Runtime at {} does not offer the CUDAExecutionProvider (not a CUDA build)",
                library.display()
            )));
        }
        let (major, minor) = devices.driver_cuda_version;
        log(
            LogLevel::Info,
            &format!(
                "ONNX Runtime {} with the CUDA execution provider loaded from {}; NVIDIA driver for CUDA {major}.{minor}",
                ferrite_onnx::ORT_VERSION,
                library.display()
            ),
        );
        for gpu in &devices.gpus {
            log(LogLevel::Info, &format!("found {gpu}"));
        }
        Ok(CudaDriver {
            env,
            devices,
            contexts: memory::Contexts::default(),
        })
    }

    fn load_model(&self, load: &mut ModelLoad<'_>) -> Result<OnnxModel> {
        let model = ferrite_onnx::load_model(&self.env, load)?;
        let mut config = load.config().clone();
        if placement::place(&mut config, self.devices.gpus.len(), &self.describe_gpus())? {
            load.set_config(config)?;
        }
        Ok(model)
    }

    fn create_instance(&self, model: &OnnxModel, info: &InstanceInfo) -> Result<OnnxInstance> {
        if info.kind != InstanceKind::Gpu {
            // A KIND_CPU group of a model that also runs on GPUs: ONNX Runtime's CPU provider.
            return ferrite_onnx::create_instance(&self.env, model, info, &[]);
        }
        let ordinal = info.device_id.unwrap_or(0);
        let gpu = usize::try_from(ordinal)
            .ok()
            .and_then(|i| self.devices.gpus.get(i))
            .ok_or_else(|| {
                Error::invalid_arg(format!(
                    "instance {} of model {} asks for GPU {ordinal}, which is not here ({})",
                    info.name,
                    model.name,
                    self.describe_gpus()
                ))
            })?;
        let cuda = ort::ep::CUDA::default()
            .with_device_id(ordinal)
            .build()
            .error_on_failure();
        let instance =
            ferrite_onnx::create_instance(&self.env, model, info, &[cuda]).map_err(|e| {
                Error::new(
                    e.code,
                    format!(
                        "instance {} of model {} on {gpu}: {}",
                        info.name, model.name, e.message
                    ),
                )
            })?;
        log(
            LogLevel::Info,
            &format!(
                "placed instance {} of model {} on {gpu}",
                info.name, model.name
            ),
        );
        Ok(instance)
    }

    fn execute(
        &self,
        model: &OnnxModel,
        instance: &mut OnnxInstance,
        batch: &mut Batch<'_>,
    ) -> Result<()> {
        ferrite_onnx::execute(model, instance, batch)
    }

    /// CUDA shared memory: a client's `cudaIpcMemHandle_t`, opened on its GPU.
    fn open_memory(&self, handle: &MemoryHandle<'_>) -> Result<Box<dyn SharedDeviceMemory>> {
        let ordinal = memory::check(handle, self.devices.gpus.len())?;
        let opened =
            memory::IpcMemory::open(&self.contexts, ordinal, handle.handle, handle.byte_size)?;
        Ok(Box::new(opened))
    }
}

export_driver!(
    CudaDriver,
    Descriptor {
        name: "cuda",
        version: env!("CARGO_PKG_VERSION"),
        backends: &["onnxruntime"],
        platforms: &["onnxruntime_onnx"],
        instance_kinds: abi::INSTANCE_KIND_GPU | abi::INSTANCE_KIND_CPU,
        datatypes: &DataType::ALL,
    }
);
