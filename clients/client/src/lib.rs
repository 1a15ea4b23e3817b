//! Ferrite's Rust client: KServe v2 (with Triton's extensions) over HTTP and gRPC, for Ferrite
//! and Triton servers alike.
//!
//! - [`HttpClient`] (hyper, kept-alive connection pool, binary tensor extension) and
//!   [`GrpcClient`] (tonic, one multiplexed HTTP/2 channel, [`GrpcClient::stream`] for
//!   `ModelStreamInfer`); [`Client`] is either, with the same calls.
//! - [`InferRequest`] / [`InputTensor`] / [`RequestedOutput`] build requests: raw data
//!   ([`Data::Raw`]), JSON ([`Data::Json`], HTTP) or shared memory ([`Data::Shm`]);
//!   classification and shared-memory outputs. [`InferResult`] gives each output's raw
//!   little-endian bytes, typed values, BYTES elements and classes.
//! - [`SharedMemoryRegion`]: a POSIX shared memory object (`/dev/shm/<key>`) to register with
//!   the server.
//! - [`Error`]: the HTTP status or gRPC code and the server's message, or
//!   `cannot reach <url>: <cause>`.
//!
//! ```no_run
//! # async fn demo() -> ferrite_client::Result<()> {
//! use ferrite_client::{Client, InferRequest, InputTensor, Protocol, RequestedOutput};
//!
//! let client = Client::connect(Protocol::Grpc, "localhost:8001").await?;
//! let a: Vec<i32> = (0..16).collect();
//! let request = InferRequest::new("simple")
//!     .input(InputTensor::int32("INPUT0", vec![1, 16], &a))
//!     .input(InputTensor::int32("INPUT1", vec![1, 16], &[1; 16]))
//!     .output(RequestedOutput::new("OUTPUT0"));
//! let result = client.infer(&request).await?;
//! let sum: Vec<i32> = result.values("OUTPUT0")?;
//! assert_eq!(sum[0], 1);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod client;
mod error;
mod grpc;
mod http;
mod shm;
mod types;

pub use client::{Client, Prepared, Protocol};
pub use error::{Code, Error, ErrorKind, Result};
pub use grpc::{GrpcClient, InferStream, PreparedGrpcInfer, StreamReceiver, StreamSender};
pub use http::{HttpClient, PreparedInfer};
pub use shm::SharedMemoryRegion;
pub use types::{
    Classification, Data, InferRequest, InferResult, InputTensor, ModelMetadata, ModelStats,
    OutputTensor, Parameters, RequestTimings, RequestedOutput, Scalar, ServerMetadata, ShmRef,
    ShmRegionStatus, StatDuration, TensorMeta, decode_bytes_elements, decode_values,
    encode_bytes_elements, encode_values, json_to_raw, parse_classification,
};

/// The generated protocol types, for requests this crate does not wrap.
pub use ferrite_proto as proto;
/// tonic, for [`Error::grpc_code`]'s `tonic::Code`.
pub use tonic;
