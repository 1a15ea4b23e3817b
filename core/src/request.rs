//! Requests and responses as every frontend hands them to [`crate::Server::infer`].

use serde_json::{Map, Value};

use crate::tensor::Tensor;

/// Request or response parameters (Triton's are bool, int64, double or string).
pub type Parameters = Map<String, Value>;

/// An output the client asked for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestedOutput {
    pub name: String,
    /// Triton's classification extension: return the top N classes as BYTES
    /// `"score:index[:label]"` instead of the tensor.
    pub classification: Option<usize>,
    /// Other parameters, for the frontend (e.g. `binary_data`).
    pub parameters: Parameters,
}

#[derive(Clone, Debug, Default)]
pub struct InferenceRequest {
    pub model_name: String,
    /// `None`: the model's newest ready version.
    pub model_version: Option<i64>,
    /// The client's id, echoed in the response ("" when none).
    pub id: String,
    pub inputs: Vec<Tensor>,
    /// Empty: every output of the model.
    pub outputs: Vec<RequestedOutput>,
    pub parameters: Parameters,
    /// A raw (header-less) binary request: a single input whose name, type and shape are
    /// deduced from the model configuration. Its data is `inputs[0].data`.
    pub raw_input: bool,
    /// The client's deadline (gRPC `grpc-timeout`): a request still queued when it passes is
    /// answered CANCELLED without running.
    pub deadline: Option<std::time::Instant>,
}

impl InferenceRequest {
    /// `[request id: <id>] ` as Triton prefixes request errors.
    pub fn log_prefix(&self) -> String {
        if self.id.is_empty() {
            "[request id: <id_unknown>] ".to_string()
        } else {
            format!("[request id: {}] ", self.id)
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct InferenceResponse {
    pub model_name: String,
    pub model_version: i64,
    pub id: String,
    pub outputs: Vec<Tensor>,
    pub parameters: Parameters,
}
