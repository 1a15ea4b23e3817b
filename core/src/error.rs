//! The one error type of the runtime: one of Triton's codes, a message naming what was wrong,
//! and the chain of causes for the log. Frontends map the code to an HTTP or gRPC status in
//! one place each.

use std::fmt;

pub use ferrite_driver_abi::ErrorCode;

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug)]
pub struct Error {
    code: ErrorCode,
    message: String,
    source: Option<Source>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
            source: None,
        }
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::Internal, message)
    }
    pub fn invalid_arg(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::InvalidArg, message)
    }
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::NotFound, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::Unavailable, message)
    }
    pub fn unsupported(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::Unsupported, message)
    }

    /// Attaches the cause (kept for the log; see [`Error::chain`]).
    pub fn with_source(mut self, source: impl Into<Source>) -> Error {
        self.source = Some(source.into());
        self
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message a client sees.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The message followed by every cause, `: `-separated, skipping causes whose text the
    /// message already ends with.
    pub fn chain(&self) -> String {
        let mut out = self.message.clone();
        let mut next: Option<&(dyn std::error::Error + 'static)> =
            self.source.as_deref().map(|s| s as _);
        while let Some(cause) = next {
            let text = cause.to_string();
            if !out.ends_with(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            next = cause.source();
        }
        out
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_lists_causes_once() {
        let io = std::io::Error::other("No such file or directory");
        let e = Error::not_found("cannot read /m/config.pbtxt").with_source(io);
        assert_eq!(e.code(), ErrorCode::NotFound);
        assert_eq!(e.to_string(), "cannot read /m/config.pbtxt");
        assert_eq!(
            e.chain(),
            "cannot read /m/config.pbtxt: No such file or directory"
        );
    }
}
