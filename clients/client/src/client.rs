//! [`Client`]: one type over both protocols.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::grpc::{GrpcClient, InferStream, PreparedGrpcInfer};
use crate::http::{HttpClient, PreparedInfer};
use crate::types::{
    InferRequest, InferResult, ModelMetadata, ModelStats, RequestTimings, ServerMetadata,
    ShmRegionStatus,
};

/// The wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// KServe v2 REST over HTTP/1.1 (default port 8000).
    #[default]
    Http,
    /// GRPCInferenceService over HTTP/2 (default port 8001).
    Grpc,
}

impl Protocol {
    /// `localhost:8000` or `localhost:8001`.
    pub fn default_url(self) -> &'static str {
        match self {
            Protocol::Http => "localhost:8000",
            Protocol::Grpc => "localhost:8001",
        }
    }
}

impl FromStr for Protocol {
    type Err = Error;
    fn from_str(s: &str) -> Result<Protocol> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Ok(Protocol::Http),
            "grpc" => Ok(Protocol::Grpc),
            _ => Err(Error::invalid(format!(
                "unknown protocol '{s}': http or grpc"
            ))),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        })
    }
}

/// A client over either protocol; every call means the same on both.
#[derive(Debug, Clone)]
pub enum Client {
    /// Over HTTP.
    Http(HttpClient),
    /// Over gRPC.
    Grpc(GrpcClient),
}

/// A request encoded once for its client's protocol ([`Client::prepare`]).
#[derive(Debug, Clone)]
pub enum Prepared {
    /// For an HTTP client.
    Http(PreparedInfer),
    /// For a gRPC client.
    Grpc(PreparedGrpcInfer),
}

macro_rules! both {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            Client::Http($c) => $e,
            Client::Grpc($c) => $e,
        }
    };
}

impl Client {
    /// A client for `url` over `protocol`. gRPC connects now (and fails with
    /// `cannot reach <url>: ...`); HTTP connects on the first call.
    pub async fn connect(protocol: Protocol, url: &str) -> Result<Client> {
        Ok(match protocol {
            Protocol::Http => Client::Http(HttpClient::new(url)?),
            Protocol::Grpc => Client::Grpc(GrpcClient::connect(url).await?),
        })
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        match self {
            Client::Http(_) => Protocol::Http,
            Client::Grpc(_) => Protocol::Grpc,
        }
    }

    /// The server's URL, `http://host:port`.
    pub fn url(&self) -> &str {
        both!(self, c => c.url())
    }

    /// Is the server live?
    pub async fn live(&self) -> Result<bool> {
        both!(self, c => c.live().await)
    }

    /// Is the server ready?
    pub async fn ready(&self) -> Result<bool> {
        both!(self, c => c.ready().await)
    }

    /// Is the model (version; "" for the policy's choice) ready?
    pub async fn model_ready(&self, model: &str, version: &str) -> Result<bool> {
        both!(self, c => c.model_ready(model, version).await)
    }

    /// The server's name, version and extensions.
    pub async fn server_metadata(&self) -> Result<ServerMetadata> {
        both!(self, c => c.server_metadata().await)
    }

    /// A model's metadata.
    pub async fn model_metadata(&self, model: &str, version: &str) -> Result<ModelMetadata> {
        both!(self, c => c.model_metadata(model, version).await)
    }

    /// A model's configuration, as JSON.
    pub async fn model_config(&self, model: &str, version: &str) -> Result<Value> {
        both!(self, c => c.model_config(model, version).await)
    }

    /// Statistics of a model's versions (all models for an empty `model`).
    pub async fn model_statistics(&self, model: &str, version: &str) -> Result<Vec<ModelStats>> {
        both!(self, c => c.model_statistics(model, version).await)
    }

    /// Registers `byte_size` bytes at `offset` of the shared memory object `key` as `name`.
    pub async fn register_system_shared_memory(
        &self,
        name: &str,
        key: &str,
        offset: u64,
        byte_size: u64,
    ) -> Result<()> {
        both!(self, c => c.register_system_shared_memory(name, key, offset, byte_size).await)
    }

    /// Unregisters region `name`, or every region for `None`.
    pub async fn unregister_system_shared_memory(&self, name: Option<&str>) -> Result<()> {
        both!(self, c => c.unregister_system_shared_memory(name).await)
    }

    /// The registered regions (or region `name`).
    pub async fn system_shared_memory_status(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<ShmRegionStatus>> {
        both!(self, c => c.system_shared_memory_status(name).await)
    }

    /// Runs an inference.
    pub async fn infer(&self, request: &InferRequest) -> Result<InferResult> {
        both!(self, c => c.infer(request).await)
    }

    /// Encodes `request` once for [`Client::infer_prepared`] (for sending it many times).
    pub fn prepare(&self, request: &InferRequest) -> Result<Prepared> {
        Ok(match self {
            Client::Http(c) => Prepared::Http(c.prepare(request)?),
            Client::Grpc(c) => Prepared::Grpc(c.prepare(request)?),
        })
    }

    /// Runs an inference encoded by [`Client::prepare`] on this client's protocol.
    pub async fn infer_prepared(&self, prepared: &Prepared) -> Result<InferResult> {
        match (self, prepared) {
            (Client::Http(c), Prepared::Http(p)) => c.infer_prepared(p).await,
            (Client::Grpc(c), Prepared::Grpc(p)) => c.infer_prepared(p).await,
            _ => Err(Error::invalid(
                "the request was prepared for the other protocol",
            )),
        }
    }

    /// [`Client::infer_prepared`] with the client's own send/receive time.
    pub async fn infer_prepared_timed(
        &self,
        prepared: &Prepared,
    ) -> Result<(InferResult, RequestTimings)> {
        match (self, prepared) {
            (Client::Http(c), Prepared::Http(p)) => c.infer_prepared_timed(p).await,
            (Client::Grpc(c), Prepared::Grpc(p)) => c.infer_prepared_timed(p).await,
            _ => Err(Error::invalid(
                "the request was prepared for the other protocol",
            )),
        }
    }

    /// Opens a `ModelStreamInfer` stream (gRPC only).
    pub async fn stream(&self) -> Result<InferStream> {
        match self {
            Client::Grpc(c) => c.stream().await,
            Client::Http(_) => Err(Error::invalid(
                "streaming inference needs the gRPC protocol",
            )),
        }
    }
}

impl From<HttpClient> for Client {
    fn from(c: HttpClient) -> Client {
        Client::Http(c)
    }
}

impl From<GrpcClient> for Client {
    fn from(c: GrpcClient) -> Client {
        Client::Grpc(c)
    }
}
