//! The CPU driver: ONNX models (`platform: "onnxruntime_onnx"` / `backend: "onnxruntime"`) on
//! ONNX Runtime's CPU execution provider, for KIND_CPU instances. ONNX Runtime is loaded at
//! run time from `libonnxruntime.so.1.31.1` (see [`ferrite_onnx::library_path`]).
//!
//! Written with the SDK: no `unsafe` here.

use ferrite_driver_sdk::{
    Batch, DataType, Descriptor, Driver, DriverInfo, InstanceInfo, LogLevel, ModelLoad, Result,
    abi, export_driver, log,
};
use ferrite_onnx::{OnnxInstance, OnnxModel};
use ort::environment::Environment;

pub struct CpuDriver {
    env: Environment,
}

impl Driver for CpuDriver {
    type Model = OnnxModel;
    type Instance = OnnxInstance;

    fn init(info: &DriverInfo) -> Result<Self> {
        let path = ferrite_onnx::library_path(info);
        let env = ferrite_onnx::init_runtime(&path)?;
        log(
            LogLevel::Info,
            &format!(
                "ONNX Runtime {} loaded from {}",
                ferrite_onnx::ORT_VERSION,
                path.display()
            ),
        );
        Ok(CpuDriver { env })
    }

    fn load_model(&self, model: &mut ModelLoad<'_>) -> Result<OnnxModel> {
        ferrite_onnx::load_model(&self.env, model)
    }

    fn create_instance(&self, model: &OnnxModel, info: &InstanceInfo) -> Result<OnnxInstance> {
        ferrite_onnx::create_instance(&self.env, model, info, &[])
    }

    fn execute(
        &self,
        model: &OnnxModel,
        instance: &mut OnnxInstance,
        batch: &mut Batch<'_>,
    ) -> Result<()> {
        ferrite_onnx::execute(model, instance, batch)
    }
}

export_driver!(
    CpuDriver,
    Descriptor {
        name: "cpu",
        version: env!("CARGO_PKG_VERSION"),
        backends: &["onnxruntime"],
        platforms: &["onnxruntime_onnx"],
        instance_kinds: abi::INSTANCE_KIND_CPU,
        datatypes: &DataType::ALL,
    }
);
