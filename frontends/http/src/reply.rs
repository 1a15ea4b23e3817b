//! Replies shaped like Triton's (libevhtp's): the status line's reason phrase ("405 Not
//! Allowed"), headers in Triton's order with no Date, Server or Connection, and the one place
//! where an error code becomes an HTTP status.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use ferrite_core::ErrorCode;
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use hyper::body::{Body, Frame, SizeHint};

use crate::write;

pub const INFERENCE_HEADER_CONTENT_LENGTH: HeaderName =
    HeaderName::from_static("inference-header-content-length");

/// Replies up to this size are sent as one buffer.
const COALESCE_LIMIT: u64 = 64 * 1024;

/// A reply body: a few chunks (a JSON header, then tensors' own buffers, sent without copies
/// when they are large), or a stream of chunks of unknown length (server-sent events).
#[derive(Debug, Default)]
pub struct ReplyBody {
    chunks: VecDeque<Bytes>,
    remaining: u64,
    /// Polled at least once. Until then an empty body does not call itself ended, so hyper
    /// writes our `Content-Length: 0` where we put it instead of appending its own.
    polled: bool,
    /// A streamed body: chunks as they are produced; the body ends when the sender goes.
    stream: Option<tokio::sync::mpsc::Receiver<Bytes>>,
}

impl ReplyBody {
    pub fn new(chunks: impl IntoIterator<Item = Bytes>) -> ReplyBody {
        let mut chunks: VecDeque<Bytes> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        // Small replies go out as one buffer: one write, one packet. Copying a few KiB costs
        // less than the extra writes; large tensors keep their own buffers (no copy).
        if chunks.len() > 1 && remaining <= COALESCE_LIMIT {
            let mut one = Vec::with_capacity(remaining as usize);
            for c in &chunks {
                one.extend_from_slice(c);
            }
            chunks = VecDeque::from([Bytes::from(one)]);
        }
        ReplyBody {
            chunks,
            remaining,
            polled: false,
            stream: None,
        }
    }

    pub fn empty() -> ReplyBody {
        ReplyBody::default()
    }

    /// A body of unknown length, sent chunk by chunk as `rx` yields them.
    pub fn streamed(rx: tokio::sync::mpsc::Receiver<Bytes>) -> ReplyBody {
        ReplyBody {
            stream: Some(rx),
            ..ReplyBody::default()
        }
    }

    /// Every byte, in one buffer (tests).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.remaining as usize);
        for c in &self.chunks {
            out.extend_from_slice(c);
        }
        Bytes::from(out)
    }

    pub fn len(&self) -> u64 {
        self.remaining
    }

    pub fn is_empty(&self) -> bool {
        self.stream.is_none() && self.remaining == 0
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.polled = true;
        if let Some(rx) = self.stream.as_mut() {
            return rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| Ok(Frame::data(c))));
        }
        match self.chunks.pop_front() {
            Some(chunk) => {
                self.remaining -= chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_none() && self.polled && self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        if self.stream.is_some() {
            SizeHint::default()
        } else {
            SizeHint::with_exact(self.remaining)
        }
    }
}

pub type Reply = Response<ReplyBody>;

/// Triton's HTTP status for an error code (`HttpCodeFromError` in Triton's http_server.cc).
pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorCode::Unknown
        | ErrorCode::InvalidArg
        | ErrorCode::AlreadyExists
        | ErrorCode::Cancelled => StatusCode::BAD_REQUEST,
    }
}

/// The Content-Type a reply carries. Triton's handlers set `application/json` themselves;
/// where they set none, libevhtp adds `text/plain` after `Content-Length`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Json,
    Plain,
}

/// Builds a reply: `headers` come first (in order), then Content-Length/Content-Type in
/// libevhtp's order for `kind`.
pub fn build(
    status: StatusCode,
    kind: Kind,
    headers: &[(HeaderName, HeaderValue)],
    body: ReplyBody,
) -> Reply {
    let mut response = Response::new(ReplyBody::empty());
    *response.status_mut() = status;
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(b"Not Allowed"));
    }
    let h = response.headers_mut();
    let length = HeaderValue::from(body.len());
    match kind {
        Kind::Json => {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            for (name, value) in headers {
                h.append(name.clone(), value.clone());
            }
            h.insert(CONTENT_LENGTH, length);
        }
        Kind::Plain => {
            for (name, value) in headers {
                h.append(name.clone(), value.clone());
            }
            h.insert(CONTENT_LENGTH, length);
            h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        }
    }
    *response.body_mut() = body;
    response
}

/// A reply whose headers are all given (Content-Type among them), Content-Length last.
pub fn build_with_type(
    status: StatusCode,
    headers: &[(HeaderName, HeaderValue)],
    body: ReplyBody,
) -> Reply {
    let mut response = Response::new(ReplyBody::empty());
    *response.status_mut() = status;
    let h = response.headers_mut();
    for (name, value) in headers {
        h.append(name.clone(), value.clone());
    }
    h.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    *response.body_mut() = body;
    response
}

pub fn json(status: StatusCode, body: Vec<u8>) -> Reply {
    build(status, Kind::Json, &[], ReplyBody::new([Bytes::from(body)]))
}

/// 200 with an empty text/plain body (health, model ready).
pub fn ok_empty() -> Reply {
    build(StatusCode::OK, Kind::Plain, &[], ReplyBody::empty())
}

/// `{"error":"..."}` with the given status and Content-Type.
pub fn error(status: StatusCode, kind: Kind, message: &str) -> Reply {
    build(
        status,
        kind,
        &[],
        ReplyBody::new([Bytes::from(write::error_body(message))]),
    )
}

/// An error from the core: status from its code.
pub fn core_error(kind: Kind, e: &ferrite_core::Error) -> Reply {
    error(status_for(e.code()), kind, e.message())
}

/// 200 `text/event-stream` whose events come from `rx` (no Content-Length: chunked).
pub fn event_stream(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Reply {
    let mut response = Response::new(ReplyBody::streamed(rx));
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    response
}

/// 405 "Not Allowed" `{"error":"Method Not Allowed"}`.
pub fn method_not_allowed(kind: Kind) -> Reply {
    error(StatusCode::METHOD_NOT_ALLOWED, kind, "Method Not Allowed")
}

/// 404 `{"error":"Not Found"}` for paths Triton does not serve.
pub fn not_found() -> Reply {
    error(StatusCode::NOT_FOUND, Kind::Plain, "Not Found")
}

/// Adds `Connection: <value>` where libevhtp puts it: right after Content-Length, or before
/// it when the body is empty (libevhtp adds `Content-Length: 0` later in that case). Triton
/// sends `Connection: close` to HTTP/1.1 clients that asked to close, `Connection:
/// keep-alive` to HTTP/1.0 clients that asked to keep the connection, and nothing otherwise.
pub fn add_connection(reply: &mut Reply, value: &'static str) {
    let empty = reply.body().is_empty();
    let old = std::mem::take(reply.headers_mut());
    let mut headers = HeaderMap::with_capacity(old.len() + 1);
    let connection = HeaderValue::from_static(value);
    let mut placed = false;
    let mut current: Option<HeaderName> = None;
    for (name, v) in old {
        if let Some(name) = name {
            current = Some(name);
        }
        let Some(name) = current.clone() else {
            continue;
        };
        let is_length = name == CONTENT_LENGTH;
        if is_length && empty && !placed {
            headers.append(CONNECTION, connection.clone());
            placed = true;
        }
        headers.append(name, v);
        if is_length && !placed {
            headers.append(CONNECTION, connection.clone());
            placed = true;
        }
    }
    if !placed {
        headers.append(CONNECTION, connection);
    }
    *reply.headers_mut() = headers;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_like_tritons_http_server() {
        assert_eq!(status_for(ErrorCode::Internal), 500);
        assert_eq!(status_for(ErrorCode::NotFound), 404);
        assert_eq!(status_for(ErrorCode::Unavailable), 503);
        assert_eq!(status_for(ErrorCode::Unsupported), 501);
        assert_eq!(status_for(ErrorCode::Unknown), 400);
        assert_eq!(status_for(ErrorCode::InvalidArg), 400);
        assert_eq!(status_for(ErrorCode::AlreadyExists), 400);
        assert_eq!(status_for(ErrorCode::Cancelled), 400);
    }

    #[test]
    fn header_order_follows_libevhtp() {
        let r = error(StatusCode::NOT_FOUND, Kind::Plain, "Not Found");
        let names: Vec<&str> = r.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-length", "content-type"]);
        assert_eq!(r.headers()["content-length"], "21");
        let r = json(StatusCode::OK, b"{}".to_vec());
        let names: Vec<&str> = r.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type", "content-length"]);
        let r = method_not_allowed(Kind::Plain);
        assert_eq!(
            r.extensions()
                .get::<hyper::ext::ReasonPhrase>()
                .unwrap()
                .as_bytes(),
            b"Not Allowed"
        );
        assert_eq!(
            r.body().to_bytes(),
            &br#"{"error":"Method Not Allowed"}"#[..]
        );
    }

    #[test]
    fn connection_header_where_libevhtp_puts_it() {
        let names = |r: &Reply| {
            r.headers()
                .keys()
                .map(|k| k.as_str().to_string())
                .collect::<Vec<_>>()
        };
        let mut r = ok_empty();
        add_connection(&mut r, "close");
        assert_eq!(names(&r), ["connection", "content-length", "content-type"]);
        let mut r = not_found();
        add_connection(&mut r, "close");
        assert_eq!(names(&r), ["content-length", "connection", "content-type"]);
        let mut r = json(StatusCode::OK, b"[]".to_vec());
        add_connection(&mut r, "keep-alive");
        assert_eq!(names(&r), ["content-type", "content-length", "connection"]);
        assert_eq!(r.headers()["connection"], "keep-alive");
    }
}
