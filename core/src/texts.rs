//! Triton's texts for the common error classes, in one table: each function builds the
//! message Triton's own source builds for the same case (the file and function it comes from
//! are named beside it), with its code. The raise sites call these, so a text is checked
//! against Triton's in one place (the tests below) and reads the same over HTTP and gRPC.
//!
//! `prefix` is Triton's `LogRequest()`: `"[request id: <id>] "` (see
//! [`crate::InferenceRequest::log_prefix`]).

use crate::Error;

/// core `infer_request.cc` AddOriginalInput: a second input of a name.
pub fn duplicate_input(prefix: &str, name: &str) -> Error {
    Error::invalid_arg(format!("{prefix}input '{name}' already exists in request"))
}

/// core `infer_request.cc` AddOriginalRequestedOutput: a second requested output of a name.
pub fn duplicate_output(prefix: &str, name: &str) -> Error {
    Error::invalid_arg(format!("{prefix}output '{name}' already exists in request"))
}

/// server `http_server.cc`: a JSON input whose element count passes INT64_MAX.
pub fn element_count_overflow(name: &str, shape: &str) -> Error {
    Error::invalid_arg(format!(
        "invalid shape for input '{name}': shape {shape} causes total element count to exceed maximum size of {}",
        i64::MAX
    ))
}

/// core `infer_request.cc` Normalize: a raw body for a model of more than one input.
pub fn raw_needs_one_input(prefix: &str, inputs: usize, model: &str) -> Error {
    Error::invalid_arg(format!(
        "{prefix}Raw request must only have 1 input (found 1) to be deduced but got {inputs} inputs in '{model}' model configuration"
    ))
}

/// core `infer_request.cc` Normalize: a raw body whose shape has two variable dimensions.
pub fn raw_shape_not_deducible(prefix: &str, input: &str) -> Error {
    Error::invalid_arg(format!(
        "{prefix}The shape of the raw input '{input}' can not be deduced because there are more than one variable-sized dimension"
    ))
}

/// core `infer_request.cc` Normalize: a raw body for a BYTES input that is not [1].
pub fn raw_bytes_needs_shape_one(prefix: &str, input: &str) -> Error {
    Error::invalid_arg(format!(
        "{prefix}For BYTE datatype raw input '{input}', the model must have input shape [1]"
    ))
}

/// core `tritonserver.cc` ServerModelStatistics: statistics of a version not loaded.
pub fn version_not_available(model: &str) -> Error {
    Error::invalid_arg(format!(
        "requested model version is not available for model '{model}'"
    ))
}

/// core `model_repository_manager.cc` LoadModel: the repository (or the load request's
/// override) could not be read; Ferrite appends the reason (`why`, empty for none).
pub fn load_not_polled(model: &str, why: &str) -> Error {
    let mut text = format!("failed to load '{model}', failed to poll from model repository");
    if !why.is_empty() {
        text.push_str(": ");
        text.push_str(why);
    }
    Error::internal(text)
}

/// core `model_repository_manager.cc` (file overrides): a `file:` name the file system
/// cannot hold.
pub fn file_name_too_long(relative: &str) -> Error {
    Error::invalid_arg(format!(
        "Invalid file parameter '{relative}': File name too long"
    ))
}

/// core `model_repository_manager.cc` (model name check): a name of nothing but blanks.
pub fn empty_model_name() -> Error {
    Error::invalid_arg("Model name cannot be empty. Please enter a valid name to deploy.")
}

/// core `model_repository_manager.cc` (model name check): a name that is a path.
pub fn invalid_model_name(name: &str) -> Error {
    Error::invalid_arg(format!(
        "invalid model name '{name}', model name must not contain path traversal characters"
    ))
}

/// core `model_repository_manager.cc` (file overrides): a `file:` name outside the model's
/// folder.
pub fn file_outside(parameter: &str, normalized: &str) -> Error {
    Error::invalid_arg(format!(
        "Invalid file parameter '{parameter}' with normalized path '{normalized}' must stay within model directory."
    ))
}

/// core `model.cc` Init: a `label_filename` outside the model's folder.
pub fn label_outside(path: &str, output: &str, model: &str) -> Error {
    Error::unsupported(format!(
        "label file path '{path}' for output '{output}' in model '{model}' is outside model directory"
    ))
}

/// server `http_server.cc` HandleRepositoryIndex: `ready` that is not a boolean.
pub fn index_ready_not_bool() -> Error {
    Error::invalid_arg("Invalid value for 'ready': expected a boolean")
}

/// core `sequence_batch_scheduler.cc` Enqueue: a sequence request of more than one row.
pub fn sequence_batch_size(model: &str) -> Error {
    Error::invalid_arg(format!(
        "inference request to model '{model}' must specify batch-size 1 due to requirements of sequence batcher"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode::{Internal, InvalidArg};

    /// Every text as Triton's source has it (strings copied from there), with its code.
    #[test]
    fn the_table_is_tritons() {
        let p = "[request id: r1] ";
        let cases = [
            (
                duplicate_input(p, "X"),
                InvalidArg,
                "[request id: r1] input 'X' already exists in request",
            ),
            (
                duplicate_output(p, "Y"),
                InvalidArg,
                "[request id: r1] output 'Y' already exists in request",
            ),
            (
                element_count_overflow("X", "[4294967296,4294967296]"),
                InvalidArg,
                "invalid shape for input 'X': shape [4294967296,4294967296] causes total element count to exceed maximum size of 9223372036854775807",
            ),
            (
                raw_needs_one_input(p, 2, "m"),
                InvalidArg,
                "[request id: r1] Raw request must only have 1 input (found 1) to be deduced but got 2 inputs in 'm' model configuration",
            ),
            (
                raw_shape_not_deducible(p, "X"),
                InvalidArg,
                "[request id: r1] The shape of the raw input 'X' can not be deduced because there are more than one variable-sized dimension",
            ),
            (
                raw_bytes_needs_shape_one(p, "X"),
                InvalidArg,
                "[request id: r1] For BYTE datatype raw input 'X', the model must have input shape [1]",
            ),
            (
                version_not_available("m"),
                InvalidArg,
                "requested model version is not available for model 'm'",
            ),
            (
                load_not_polled("m", ""),
                Internal,
                "failed to load 'm', failed to poll from model repository",
            ),
            (
                file_name_too_long("1/x"),
                InvalidArg,
                "Invalid file parameter '1/x': File name too long",
            ),
            (
                index_ready_not_bool(),
                InvalidArg,
                "Invalid value for 'ready': expected a boolean",
            ),
            (
                sequence_batch_size("m"),
                InvalidArg,
                "inference request to model 'm' must specify batch-size 1 due to requirements of sequence batcher",
            ),
        ];
        let more = [
            (
                empty_model_name(),
                InvalidArg,
                "Model name cannot be empty. Please enter a valid name to deploy.",
            ),
            (
                invalid_model_name("/tmp/x"),
                InvalidArg,
                "invalid model name '/tmp/x', model name must not contain path traversal characters",
            ),
            (
                file_outside("file:../x", "/tmp/x"),
                InvalidArg,
                "Invalid file parameter 'file:../x' with normalized path '/tmp/x' must stay within model directory.",
            ),
            (
                label_outside("/m/../etc/passwd", "OUT", "m"),
                crate::ErrorCode::Unsupported,
                "label file path '/m/../etc/passwd' for output 'OUT' in model 'm' is outside model directory",
            ),
        ];
        for (error, code, text) in cases.into_iter().chain(more) {
            assert_eq!((error.code(), error.message()), (code, text));
        }
        assert_eq!(
            load_not_polled("m", "why").message(),
            "failed to load 'm', failed to poll from model repository: why"
        );
    }
}
