//! The image driver: a Triton-style pre-processing model (`backend: "image"`) that takes
//! encoded PNG or JPEG images, one per batch row of a `TYPE_STRING` input, and answers the
//! tensor an image classifier wants: decoded to RGB (or grey), resized with Pillow's BILINEAR,
//! converted to the output's element type, scaled and laid out NCHW or NHWC, exactly as
//! `image_client` and `scripts/models/preprocess.py` do (both are [`ferrite_imaging`]).
//!
//! [`config`] says what a model's configuration must be; [`execute`] runs a batch. One thread
//! per instance (the host runs instances in parallel), KIND_CPU only.
//!
//! Written with the SDK: no `unsafe` here.

pub mod config;
pub mod execute;

use ferrite_driver_sdk::{
    Batch, DataType, Descriptor, Driver, DriverInfo, Error, InstanceInfo, InstanceKind, LogLevel,
    ModelLoad, Result, abi, export_driver, log,
};

pub use config::ImageModel;

/// The driver: nothing to hold between models.
pub struct ImageDriver;

impl Driver for ImageDriver {
    type Model = ImageModel;
    type Instance = ();

    fn init(_: &DriverInfo) -> Result<Self> {
        Ok(ImageDriver)
    }

    fn load_model(&self, model: &mut ModelLoad<'_>) -> Result<ImageModel> {
        let loaded = ImageModel::from_config(model.name(), model.config())?;
        log(
            LogLevel::Info,
            &format!(
                "model '{}': images from input '{}' to output '{}', {} {:?} {}, {} scaling",
                loaded.name,
                loaded.input,
                loaded.output,
                loaded.output_type,
                loaded.spec.shape(),
                loaded.spec.format.layout(),
                loaded.scaling
            ),
        );
        Ok(loaded)
    }

    fn create_instance(&self, model: &ImageModel, info: &InstanceInfo) -> Result<()> {
        if info.kind != InstanceKind::Cpu {
            return Err(Error::unsupported(format!(
                "model '{}': the image backend runs on KIND_CPU instances only, not {:?} ({})",
                model.name, info.kind, info.name
            )));
        }
        Ok(())
    }

    fn execute(&self, model: &ImageModel, _: &mut (), batch: &mut Batch<'_>) -> Result<()> {
        execute::execute(model, batch)
    }
}

export_driver!(
    ImageDriver,
    Descriptor {
        name: "image",
        version: env!("CARGO_PKG_VERSION"),
        backends: &["image"],
        platforms: &[],
        instance_kinds: abi::INSTANCE_KIND_CPU,
        datatypes: &[
            DataType::Bytes,
            DataType::Uint8,
            DataType::Int8,
            DataType::Uint16,
            DataType::Int16,
            DataType::Int32,
            DataType::Fp16,
            DataType::Fp32,
            DataType::Fp64,
        ],
    }
);
