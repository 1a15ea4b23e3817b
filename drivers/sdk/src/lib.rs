//! The safe Rust side of Ferrite's driver ABI.
//!
//! A driver implements [`Driver`] and names itself with [`export_driver!`]; the SDK turns that
//! into the C table the host loads, catches panics (they become INTERNAL errors and never cross
//! the boundary) and gives the driver safe views of requests and responses. A driver written
//! with the SDK contains no `unsafe`.
//!
//! ```ignore
//! use ferrite_driver_sdk::{Batch, DataType, Descriptor, Driver, DriverInfo, Result, abi};
//!
//! struct Echo;
//! impl Driver for Echo {
//!     type Model = ();
//!     type Instance = ();
//!     fn init(_: &DriverInfo) -> Result<Self> {
//!         Ok(Echo)
//!     }
//!     fn execute(&self, _: &(), _: &mut (), batch: &mut Batch<'_>) -> Result<()> {
//!         for (i, request) in batch.requests().enumerate() {
//!             let input = request.input("IN")?;
//!             let mut response = batch.respond(i)?;
//!             response.output_from("OUT", input.datatype, input.shape, input.data)?;
//!             response.send()?;
//!         }
//!         Ok(())
//!     }
//! }
//! ferrite_driver_sdk::export_driver!(Echo, Descriptor {
//!     name: "echo", version: "1", backends: &["echo"], platforms: &[],
//!     instance_kinds: abi::INSTANCE_KIND_CPU, datatypes: &[DataType::Fp32],
//! });
//! ```
//!
//! Only [`Driver::init`] and [`Driver::execute`] are required. A driver whose models or
//! instances keep state names its own `Model`/`Instance` types and makes them in
//! [`Driver::load_model`] and [`Driver::create_instance`]; dropping them is unloading them.
//! [`config`] reads the model configuration (and its `parameters`) typed, [`Element`] and
//! [`Tensor::values`] / [`Response::output_values`] read and write typed tensors,
//! [`Batch::gather`] / [`Batch::scatter`] turn a batch into one tensor per input and back,
//! and decoupled models stream with [`Response::send_partial`] and [`Batch::complete`].

mod batch;
pub mod config;
pub mod element;
mod error;
mod export;
mod host;
mod info;

pub use batch::{Batch, Gathered, Request, Response, Tensor};
pub use element::Element;
pub use error::{Error, Result};
pub use export::Descriptor;
pub use ferrite_driver_abi as abi;
pub use ferrite_driver_abi::bytes_layout;
pub use ferrite_driver_abi::{DataType, ErrorCode};
pub use host::{LogLevel, counter_add, gauge_set, log};
pub use info::{DriverInfo, InstanceInfo, InstanceKind, ModelLoad};

/// A device driver. One value of the implementing type is made per process by [`Driver::init`];
/// models and instances come and go under it.
pub trait Driver: Send + Sync + Sized + 'static {
    /// A loaded model version, shared by its instances.
    type Model: Send + Sync + 'static;
    /// One instance: used from one thread at a time.
    type Instance: Send + 'static;

    /// Initialises the driver (once per process).
    fn init(info: &DriverInfo) -> Result<Self>;

    /// Loads one version of a model. May fill in its configuration with
    /// [`ModelLoad::set_config`] when [`ModelLoad::auto_complete`] is true.
    ///
    /// Optional when `Model = ()`: the default loads every model, with no state. (With any
    /// other `Model` type the default refuses the load, naming the method to write.)
    fn load_model(&self, model: &mut ModelLoad<'_>) -> Result<Self::Model> {
        let _ = model;
        unit_state::<Self::Model>("Model", "load_model")
    }

    /// Makes one instance of a loaded model.
    ///
    /// Optional when `Instance = ()`, as for [`Driver::load_model`].
    fn create_instance(&self, model: &Self::Model, info: &InstanceInfo) -> Result<Self::Instance> {
        let _ = (model, info);
        unit_state::<Self::Instance>("Instance", "create_instance")
    }

    /// Runs a batch of requests. Every request must get a final response through
    /// [`Batch::respond`] and [`Response::send`], [`Batch::fail`] or (decoupled models)
    /// [`Batch::complete`] before `execute` returns; returning an error fails the requests
    /// that got none, and a panic fails them with INTERNAL.
    fn execute(
        &self,
        model: &Self::Model,
        instance: &mut Self::Instance,
        batch: &mut Batch<'_>,
    ) -> Result<()>;

    /// Opens device memory another process shares with the server (CUDA shared memory: a
    /// `cudaIpcMemHandle_t` of memory on a GPU), for the host to copy request inputs from and
    /// outputs to. Optional: the default refuses with UNSUPPORTED, and the host then tells the
    /// client its kind of shared memory is not supported here.
    fn open_memory(&self, handle: &MemoryHandle<'_>) -> Result<Box<dyn SharedDeviceMemory>> {
        Err(Error::unsupported(format!(
            "this driver does not open {:?} memory shared by other processes",
            handle.kind
        )))
    }
}

/// What a client registered: device memory of `kind` on device `device_id`, shared through
/// `handle` (for GPUs, the 64 bytes of a `cudaIpcMemHandle_t`), `byte_size` bytes of it.
#[derive(Clone, Copy, Debug)]
pub struct MemoryHandle<'a> {
    pub kind: abi::MemoryKind,
    pub device_id: i64,
    pub handle: &'a [u8],
    pub byte_size: u64,
}

/// Device memory opened by [`Driver::open_memory`]: the host copies through it, from any
/// thread; dropping it closes it. The host checks `offset + len` against the registered size
/// before each call.
pub trait SharedDeviceMemory: Send + Sync {
    /// Copies `dst.len()` bytes at `offset` into `dst` (complete when this returns).
    fn read(&self, offset: u64, dst: &mut [u8]) -> Result<()>;
    /// Copies `src` to `offset` (complete when this returns).
    fn write(&self, offset: u64, src: &[u8]) -> Result<()>;
}

/// The state of a driver that keeps none: `()`. Any other type has to be made by the driver.
fn unit_state<T: 'static>(what: &str, method: &str) -> Result<T> {
    let unit: Box<dyn std::any::Any> = Box::new(());
    unit.downcast::<T>().map(|b| *b).map_err(|_| {
        Error::internal(format!(
            "the driver's {what} type is {}, not (), so the driver must implement Driver::{method}",
            std::any::type_name::<T>()
        ))
    })
}

#[doc(hidden)]
pub mod __private {
    pub use crate::export::entry;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_state_is_made_and_other_states_are_asked_for() {
        unit_state::<()>("Model", "load_model").unwrap();
        let e = unit_state::<String>("Model", "load_model").unwrap_err();
        assert!(
            e.message
                .contains("Model type is alloc::string::String, not (), so the driver must implement Driver::load_model"),
            "{e}"
        );
    }
}
