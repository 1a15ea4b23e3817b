//! `faults`: a driver that misbehaves when asked to, so tests can check that the host contains
//! it. Not an example to follow; the ABI safety tests load it through the real ABI.
//!
//! It echoes `INPUT0` (any type) as `OUTPUT0`, except for requests whose string parameter
//! `fault` says otherwise:
//! - `"panic"`: the driver panics in `execute` (the SDK turns it into INTERNAL for every
//!   request of the batch that got no response; the instance keeps serving);
//! - `"error"`: that request alone gets an INVALID_ARG error response;
//! - `"return"`: `execute` returns an error (UNAVAILABLE) without answering;
//! - `"forget"`: `execute` returns without answering the request;
//! - `"partial"`: a response without the final flag, though the model is not decoupled;
//! - `"twice"`: two final responses.
//!
//! Models with the parameter `fail_load` set to "true" fail to load, with its message.

use ferrite_driver_sdk::{
    Batch, DataType, Descriptor, Driver, DriverInfo, Error, ErrorCode, ModelLoad, Result, abi,
    config, export_driver,
};

pub struct Faults;

impl Driver for Faults {
    type Model = ();
    type Instance = ();

    fn init(_: &DriverInfo) -> Result<Self> {
        Ok(Faults)
    }

    fn load_model(&self, model: &mut ModelLoad<'_>) -> Result<()> {
        if config::bool_parameter(model.config(), "fail_load", false)? {
            return Err(Error::unavailable(format!(
                "faults: model '{}' is configured to fail to load",
                model.name()
            )));
        }
        Ok(())
    }

    fn execute(&self, _: &(), _: &mut (), batch: &mut Batch<'_>) -> Result<()> {
        // Every request of the batch is looked at first: a panic or an early return affects
        // the whole batch, as it would in a real driver.
        let faults: Vec<String> = batch
            .requests()
            .map(|r| {
                r.parameter("fault")
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            })
            .collect();
        if faults.iter().any(|f| f == "panic") {
            panic!("faults: asked to panic");
        }
        if faults.iter().any(|f| f == "return") {
            return Err(Error::new(
                ErrorCode::Unavailable,
                "faults: asked to return an error from execute",
            ));
        }
        for (i, fault) in faults.iter().enumerate() {
            match fault.as_str() {
                "error" => {
                    batch.fail(i, &Error::invalid_arg("faults: asked to fail this request"))?
                }
                "forget" => {}
                "partial" => {
                    let e = echo(batch, i)?.send_partial().unwrap_err();
                    // The host refused it; the request still needs its final answer.
                    batch.fail(i, &Error::internal(format!("faults: {}", e.message)))?;
                }
                "twice" => {
                    echo(batch, i)?.send()?;
                    echo(batch, i).and_then(|r| r.send()).unwrap_err();
                }
                _ => echo(batch, i)?.send()?,
            }
        }
        Ok(())
    }
}

fn echo(batch: &Batch<'_>, i: usize) -> Result<ferrite_driver_sdk::Response> {
    let input = batch.request(i).input("INPUT0")?;
    let mut response = batch.respond(i)?;
    response.output_from("OUTPUT0", input.datatype, input.shape, input.data)?;
    Ok(response)
}

export_driver!(
    Faults,
    Descriptor {
        name: "faults",
        version: env!("CARGO_PKG_VERSION"),
        backends: &["faults"],
        platforms: &[],
        instance_kinds: abi::INSTANCE_KIND_CPU,
        datatypes: &[DataType::Fp32, DataType::Int32, DataType::Bytes],
    }
);
