//! The client's error type: what went wrong, the HTTP status or gRPC code the server answered
//! with, and the server's own message.

use std::fmt;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The server could not be reached (connection refused, DNS, timeout while connecting).
    /// The message reads `cannot reach <url>: <cause>`.
    Connect,
    /// The server answered with an error: [`Error::http_status`] or [`Error::grpc_code`] is
    /// set and [`Error::message`] is the server's message.
    Server,
    /// The server's reply could not be understood (bad JSON, truncated binary data, ...).
    Protocol,
    /// The request was refused by the client before sending (bad URL, bad tensor, ...).
    InvalidArgument,
    /// A local I/O failure (shared memory files, ...), or the connection broke mid-request.
    Io,
}

/// Triton's error codes, as read from an HTTP status or a gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Unknown error.
    Unknown,
    /// Internal server error (HTTP 500, gRPC INTERNAL).
    Internal,
    /// Model, version, tensor or region not found (HTTP 404, gRPC NOT_FOUND).
    NotFound,
    /// Bad request (HTTP 400, gRPC INVALID_ARGUMENT).
    InvalidArg,
    /// Not available now (HTTP 503, gRPC UNAVAILABLE).
    Unavailable,
    /// Not supported (HTTP 501, gRPC UNIMPLEMENTED).
    Unsupported,
    /// Already exists (gRPC ALREADY_EXISTS).
    AlreadyExists,
    /// Cancelled (gRPC CANCELLED).
    Cancelled,
}

/// An error of a client call.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    http_status: Option<u16>,
    grpc_code: Option<tonic::Code>,
    request_id: Option<String>,
}

/// `Result<T, ferrite_client::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            http_status: None,
            grpc_code: None,
            request_id: None,
        }
    }

    /// `cannot reach <url>: <cause>`.
    pub fn connect(url: &str, cause: impl fmt::Display) -> Error {
        Error::new(ErrorKind::Connect, format!("cannot reach {url}: {cause}"))
    }

    /// An error the server answered over HTTP with `status` and `message`.
    pub fn http(status: u16, message: impl Into<String>) -> Error {
        Error {
            http_status: Some(status),
            ..Error::new(ErrorKind::Server, message)
        }
    }

    /// An error the server answered over gRPC.
    pub fn grpc(code: tonic::Code, message: impl Into<String>) -> Error {
        Error {
            grpc_code: Some(code),
            ..Error::new(ErrorKind::Server, message)
        }
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Protocol, message)
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    pub(crate) fn with_request_id(mut self, id: Option<String>) -> Error {
        self.request_id = id.filter(|s| !s.is_empty());
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message: the server's own for [`ErrorKind::Server`].
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status of the server's reply, for errors over HTTP.
    pub fn http_status(&self) -> Option<u16> {
        self.http_status
    }

    /// The gRPC status code of the server's reply, for errors over gRPC.
    pub fn grpc_code(&self) -> Option<tonic::Code> {
        self.grpc_code
    }

    /// The id of the request this error answers, where known (stream errors).
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// Triton's code for this error, from the HTTP status or the gRPC code; `None` for errors
    /// that are not the server's answer (connection, protocol, local).
    pub fn code(&self) -> Option<Code> {
        if let Some(status) = self.http_status {
            return Some(match status {
                400 => Code::InvalidArg,
                404 => Code::NotFound,
                409 => Code::AlreadyExists,
                499 => Code::Cancelled,
                500 => Code::Internal,
                501 => Code::Unsupported,
                503 => Code::Unavailable,
                _ => Code::Unknown,
            });
        }
        self.grpc_code.map(|code| match code {
            tonic::Code::InvalidArgument => Code::InvalidArg,
            tonic::Code::NotFound => Code::NotFound,
            tonic::Code::AlreadyExists => Code::AlreadyExists,
            tonic::Code::Cancelled => Code::Cancelled,
            tonic::Code::Internal => Code::Internal,
            tonic::Code::Unimplemented => Code::Unsupported,
            tonic::Code::Unavailable => Code::Unavailable,
            _ => Code::Unknown,
        })
    }

    /// True for [`ErrorKind::Connect`].
    pub fn is_connect(&self) -> bool {
        self.kind == ErrorKind::Connect
    }
}

impl fmt::Display for Error {
    /// The message alone: the server's message for server errors, `cannot reach <url>: ...`
    /// for connection failures.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::new(ErrorKind::Io, e.to_string())
    }
}
