//! Ferrite's wire protocol and model configuration schema.
//!
//! - [`inference`]: the KServe v2 / Triton gRPC API (`GRPCInferenceService`,
//!   server and client) and the model configuration schema
//!   ([`inference::ModelConfig`]), generated from `proto/*.proto`, which are
//!   wire-compatible with Triton's.
//! - [`health`]: `grpc.health.v1.Health` (unary `Check`).
//! - [`descriptor_pool`]: the descriptors of all of the above, for
//!   reflection (text format, JSON, gRPC reflection).
//! - [`parse_model_config`]: a `config.pbtxt` (protobuf text format) into a
//!   [`inference::ModelConfig`].
//! - [`model_config_to_json`] / [`model_config_from_json`]: the JSON form
//!   Triton's HTTP API uses for model configurations.
//!
//! Maps in generated types are `BTreeMap`s (sorted, deterministic) and bytes
//! fields are `bytes::Bytes` (tensor payloads are slices, not copies).

use std::sync::OnceLock;

pub use prost_reflect;
use prost_reflect::{DescriptorPool, MessageDescriptor};

pub mod json;
pub mod text_format;

pub use json::{model_config_from_json, model_config_to_json};
pub use text_format::{TextFormatError, parse_model_config};

/// Package `inference`: the gRPC inference service and the model
/// configuration schema.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod inference {
    tonic::include_proto!("inference");
}

/// Package `grpc.health.v1`: the standard gRPC health service.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}

/// Serialized `FileDescriptorSet` of every `.proto` file of this crate.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ferrite_descriptor.bin"));

/// Descriptors of packages `inference` and `grpc.health.v1`, decoded once.
pub fn descriptor_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(FILE_DESCRIPTOR_SET)
            .expect("the embedded file descriptor set is valid (built by build.rs)")
    })
}

/// Descriptor of `inference.ModelConfig`.
pub fn model_config_descriptor() -> MessageDescriptor {
    descriptor_pool()
        .get_message_by_name("inference.ModelConfig")
        .expect("inference.ModelConfig is in the descriptor pool")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_has_services_and_messages() {
        let pool = descriptor_pool();
        let svc = pool
            .get_service_by_name("inference.GRPCInferenceService")
            .unwrap();
        let methods: Vec<_> = svc.methods().map(|m| m.name().to_owned()).collect();
        assert_eq!(methods.len(), 20);
        for m in [
            "ServerLive",
            "ModelStreamInfer",
            "RepositoryModelUnload",
            "CudaSharedMemoryUnregister",
            "TraceSetting",
            "LogSettings",
        ] {
            assert!(methods.iter().any(|x| x == m), "missing {m}");
        }
        let stream = svc
            .methods()
            .find(|m| m.name() == "ModelStreamInfer")
            .unwrap();
        assert!(stream.is_client_streaming() && stream.is_server_streaming());
        assert!(pool.get_service_by_name("grpc.health.v1.Health").is_some());
        for m in [
            "inference.InferParameter",
            "inference.InferResponseStatistics",
            "inference.MemoryUsage",
            "inference.ModelSequenceBatching.InitialState",
            "inference.ModelConfig",
        ] {
            assert!(pool.get_message_by_name(m).is_some(), "missing {m}");
        }
        assert_eq!(
            model_config_descriptor().full_name(),
            "inference.ModelConfig"
        );
    }

    #[test]
    fn field_numbers_match_triton() {
        let cfg = model_config_descriptor();
        let number = |name: &str| cfg.get_field_by_name(name).unwrap().number();
        assert_eq!(number("backend"), 17);
        assert_eq!(number("runtime"), 25);
        assert_eq!(number("dynamic_batching"), 11);
        assert_eq!(number("response_cache"), 24);
        let dt = descriptor_pool()
            .get_enum_by_name("inference.DataType")
            .unwrap();
        assert_eq!(dt.get_value_by_name("TYPE_BF16").unwrap().number(), 14);
    }
}
