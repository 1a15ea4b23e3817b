//! The safe Rust side of Ferrite's driver ABI.
//!
//! A driver implements [`Driver`] and names itself with [`export_driver!`]; the SDK turns that
//! into the C table the host loads, catches panics (they become INTERNAL errors and never cross
//! the boundary) and gives the driver safe views of requests and responses. A driver written
//! with the SDK contains no `unsafe`.
//!
//! ```ignore
//! struct Echo;
//! impl ferrite_driver_sdk::Driver for Echo {
//!     type Model = ();
//!     type Instance = ();
//!     fn init(_: &DriverInfo) -> Result<Self> { Ok(Echo) }
//!     fn load_model(&self, _: &mut ModelLoad) -> Result<()> { Ok(()) }
//!     fn create_instance(&self, _: &(), _: &InstanceInfo) -> Result<()> { Ok(()) }
//!     fn execute(&self, _: &(), _: &mut (), batch: &mut Batch) -> Result<()> { ... }
//! }
//! ferrite_driver_sdk::export_driver!(Echo, Descriptor { name: "echo", .. });
//! ```

mod batch;
mod error;
mod export;
mod host;
mod info;

pub use batch::{Batch, Gathered, Request, Response, Tensor};
pub use error::{Error, Result};
pub use export::Descriptor;
pub use ferrite_driver_abi as abi;
pub use ferrite_driver_abi::bytes_layout;
pub use ferrite_driver_abi::{DataType, ErrorCode};
pub use host::{LogLevel, log};
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
    fn load_model(&self, model: &mut ModelLoad<'_>) -> Result<Self::Model>;

    /// Makes one instance of a loaded model.
    fn create_instance(&self, model: &Self::Model, info: &InstanceInfo) -> Result<Self::Instance>;

    /// Runs a batch of requests. Every request must get a response through
    /// [`Batch::respond`] or [`Batch::fail`]; returning an error fails the requests that got none.
    fn execute(
        &self,
        model: &Self::Model,
        instance: &mut Self::Instance,
        batch: &mut Batch<'_>,
    ) -> Result<()>;
}

#[doc(hidden)]
pub mod __private {
    pub use crate::export::entry;
}
