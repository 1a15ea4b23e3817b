//! Ferrite's runtime, with no sockets: tensors and data types, errors, model configuration,
//! the model repository, the driver host, scheduling, statistics, and the [`Server`] facade
//! that every frontend calls.

pub mod batcher;
pub mod clock;
pub mod config;
pub mod confine;
pub mod custom_metrics;
pub mod driver;
pub mod ensemble;
pub mod error;
pub mod lifecycle;
pub mod logsettings;
pub mod model;
pub mod normalize;
pub mod ordering;
pub mod postprocess;
pub mod repository;
pub mod request;
pub mod reshape;
pub mod sequence;
pub mod server;
pub mod shm;
pub mod stats;
pub mod tensor;
pub mod texts;
pub mod trace;

pub use error::{Error, ErrorCode, Result};
pub use lifecycle::{LoadParams, ModelControlMode, PollReport, StartupModels};
pub use logsettings::{LogControl, LogSettings, LogUpdate};
pub use model::{ResponseStream, Streamed};
pub use request::{
    HeaderForward, InferenceRequest, InferenceResponse, Parameters, RequestedOutput,
};
pub use server::{
    IndexEntry, ModelMetadata, ModelState, Server, ServerMetadata, ServerOptions, TensorMetadata,
};
pub use tensor::{DataType, Tensor};
pub use trace::{TraceSettings, TraceUpdate};
