//! The template of a Ferrite driver (backend `template`): `OUTPUT = INPUT * factor` on FP32
//! tensors, `factor` a parameter of the model's configuration:
//!
//! ```text
//! backend: "template"
//! max_batch_size: 8
//! input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
//! output [ { name: "OUTPUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
//! parameters [ { key: "factor" value { string_value: "2.5" } } ]
//! ```
//!
//! Make your own with `scripts/new_driver.sh <name> <folder>` and change what is marked
//! "yours". The SDK does the C ABI: no `unsafe` here. docs/write-a-driver.md walks through it.

use ferrite_driver_sdk::{
    Batch, DataType, Descriptor, Driver, DriverInfo, Error, ModelLoad, Result, abi, config,
    element, export_driver,
};

/// The driver: made once per server process. Global settings (`--backend-config=
/// template,<key>=<value>`) arrive in `DriverInfo::setting`.
pub struct Template;

/// A loaded model version: what its configuration says, read once at load. Yours.
pub struct Model {
    factor: f32,
}

impl Driver for Template {
    type Model = Model;
    /// Per-instance state (a session, a device buffer...); none here. With `()` the SDK's
    /// default `create_instance` makes it.
    type Instance = ();

    fn init(_info: &DriverInfo) -> Result<Self> {
        Ok(Template)
    }

    /// Checks the configuration and reads the model's parameters. An error here refuses the
    /// model, and the server says why.
    fn load_model(&self, model: &mut ModelLoad<'_>) -> Result<Model> {
        let factor = config::parameter_as::<f32>(model.config(), "factor")?.unwrap_or(1.0);
        for (key, name) in [("input", "INPUT"), ("output", "OUTPUT")] {
            let ios = config::ios(model.config(), key);
            if !ios
                .iter()
                .any(|io| io.name == name && io.data_type == "TYPE_FP32")
            {
                return Err(Error::invalid_arg(format!(
                    "template: model '{}' needs an {key} '{name}' of TYPE_FP32",
                    model.name()
                )));
            }
        }
        Ok(Model { factor })
    }

    /// Runs a batch: gathers every request's INPUT into one tensor, computes, and scatters
    /// OUTPUT back into one response per request.
    fn execute(&self, model: &Model, _: &mut (), batch: &mut Batch<'_>) -> Result<()> {
        let input = batch.gather("INPUT")?;
        if input.datatype != DataType::Fp32 {
            return Err(Error::invalid_arg("template: INPUT must be FP32"));
        }
        batch.mark_infer_start();
        let output = scale(&element::values::<f32>(&input.data), model.factor);
        batch.mark_infer_end();
        let mut responses = (0..batch.len())
            .map(|i| batch.respond(i))
            .collect::<Result<Vec<_>>>()?;
        batch.scatter(
            &mut responses,
            &input.batch_sizes,
            "OUTPUT",
            DataType::Fp32,
            &input.shape,
            &element::to_bytes(&output),
        )?;
        for response in responses {
            response.send()?;
        }
        Ok(())
    }
}

// Names the driver to the server: `backend: "template"` in a config.pbtxt picks it.
export_driver!(
    Template,
    Descriptor {
        name: "template",
        version: env!("CARGO_PKG_VERSION"),
        backends: &["template"],
        platforms: &[],
        instance_kinds: abi::INSTANCE_KIND_CPU,
        datatypes: &[DataType::Fp32],
    }
);

/// The computation, apart from the ABI so a unit test can call it. Yours.
pub fn scale(input: &[f32], factor: f32) -> Vec<f32> {
    input.iter().map(|x| x * factor).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn scales_every_value() {
        assert_eq!(super::scale(&[1.0, -2.0], 2.5), [2.5, -5.0]);
    }
}
