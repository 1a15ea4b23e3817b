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

/// Triton's header forwarding (`--http-header-forward-pattern`,
/// `--grpc-header-forward-pattern`): request headers whose names match the pattern become
/// string parameters of the inference request. A parameter the request already sets is kept.
#[derive(Clone, Debug)]
pub struct HeaderForward(regex::Regex);

impl HeaderForward {
    pub fn new(pattern: &str) -> crate::Result<HeaderForward> {
        regex::Regex::new(pattern).map(HeaderForward).map_err(|e| {
            crate::Error::invalid_arg(format!("invalid header forward pattern '{pattern}': {e}"))
        })
    }

    /// Adds the matching headers (name, value) to `parameters`. Values that are not UTF-8 are
    /// skipped: parameters are text.
    pub fn apply<'h>(
        &self,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        parameters: &mut Parameters,
    ) {
        for (name, value) in headers {
            if !self.0.is_match(name) || parameters.contains_key(name) {
                continue;
            }
            if let Ok(value) = std::str::from_utf8(value) {
                parameters.insert(name.to_string(), Value::String(value.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_matching_headers_without_overriding() {
        let f = HeaderForward::new("^x-(team|trace)").unwrap();
        let mut params = Parameters::new();
        params.insert("x-team".into(), Value::from(7));
        f.apply(
            [
                ("x-team", &b"blue"[..]),
                ("x-trace-id", b"abc"),
                ("content-type", b"application/json"),
                ("x-trace-bin", b"\xff"),
            ],
            &mut params,
        );
        assert_eq!(
            params["x-team"],
            Value::from(7),
            "the request's own parameter wins"
        );
        assert_eq!(params["x-trace-id"], "abc");
        assert!(!params.contains_key("content-type"));
        assert!(
            !params.contains_key("x-trace-bin"),
            "non-UTF-8 values are skipped"
        );
        assert!(
            HeaderForward::new("(")
                .unwrap_err()
                .message()
                .contains("invalid header forward pattern")
        );
    }
}
