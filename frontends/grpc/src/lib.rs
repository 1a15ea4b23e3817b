//! Ferrite's gRPC frontend: Triton's `inference.GRPCInferenceService` (KServe v2 with Triton's
//! extensions: shared memory, statistics, model repository, classification) and
//! `grpc.health.v1.Health/Check`, answering with Triton 2.51's status codes and texts. The
//! core's errors become gRPC statuses in one place ([`code_for`]).
//!
//! Serving on its own port:
//!
//! ```no_run
//! # async fn run(server: ferrite_core::Server) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8001").await.unwrap();
//! let options = ferrite_grpc::GrpcOptions::default();
//! ferrite_grpc::serve(server, options, listener, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```
//!
//! Serving gRPC and HTTP/1.1 on one port: accept the connection, peek at its first bytes, and
//! hand connections that open with the HTTP/2 preface ([`H2_PREFACE`], what every gRPC client
//! sends on a cleartext connection) to [`serve_connection`] with the service [`routes`] built
//! once; the others go to the HTTP/1.1 frontend.
//!
//! ```no_run
//! # async fn run(server: ferrite_core::Server, listener: tokio::net::TcpListener) {
//! let options = ferrite_grpc::GrpcOptions::default();
//! let grpc = ferrite_grpc::routes(server.clone(), &options);
//! loop {
//!     let (stream, _) = listener.accept().await.unwrap();
//!     let mut head = [0u8; 24];
//!     // (a real server waits until 24 bytes are there or the client stops sending)
//!     let n = stream.peek(&mut head).await.unwrap();
//!     if ferrite_grpc::is_h2_preface(&head[..n]) {
//!         let (grpc, options) = (grpc.clone(), options.clone());
//!         tokio::spawn(async move {
//!             let _ = ferrite_grpc::serve_connection(stream, grpc, &options, std::future::pending()).await;
//!         });
//!     } else {
//!         // HTTP/1.1: ferrite_http's connection handling
//!     }
//! }
//! # }
//! ```
//!
//! The request's `grpc-timeout` becomes the core request's deadline: a request still queued
//! when it passes is answered CANCELLED without running, and `ModelInfer` answers
//! DEADLINE_EXCEEDED when the deadline passes while it waits.

mod decode;
mod encode;
mod service;
mod status;
mod stream;

use std::future::Future;
use std::time::Duration;

use ferrite_proto::health::health_server::HealthServer;
use ferrite_proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::service::Routes;

pub use decode::Rpc;
pub use service::{Frontend, HealthService, InferError, model_statistics};
pub use status::{code_for, parse_version, to_status};

/// Triton's largest gRPC message, both ways (`MAX_GRPC_MESSAGE_SIZE = INT32_MAX`).
pub const MAX_MESSAGE_SIZE: usize = i32::MAX as usize;

/// The bytes every HTTP/2 connection starts with (RFC 9113, 3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a connection's first bytes are (the start of) the HTTP/2 preface: a gRPC client
/// on a cleartext connection. An HTTP/1.1 request never starts with `PRI `.
pub fn is_h2_preface(head: &[u8]) -> bool {
    !head.is_empty() && H2_PREFACE.starts_with(&head[..head.len().min(H2_PREFACE.len())])
}

/// Settings of the gRPC frontend, with Triton's defaults.
#[derive(Clone, Debug)]
pub struct GrpcOptions {
    /// Largest request accepted, after decompression (bytes).
    pub max_decoding_message_size: usize,
    /// Largest response sent (bytes); a larger one is refused with Triton's text.
    pub max_encoding_message_size: usize,
    /// Compress responses with this encoding when the client accepts it (Triton's
    /// `--grpc-infer-response-compression-level`; none by default). Compressed requests
    /// (gzip, deflate) are always accepted.
    pub response_compression: Option<CompressionEncoding>,
    /// Interval of HTTP/2 keepalive PINGs (`--grpc-keepalive-time`, 7200 s); `None`: no PINGs.
    pub keepalive_time: Option<Duration>,
    /// How long a PING may go unanswered before the connection is closed
    /// (`--grpc-keepalive-timeout`, 20 s).
    pub keepalive_timeout: Duration,
    /// Connections are asked to close (GOAWAY) after this age (`--grpc-max-connection-age`;
    /// `None`: no limit).
    pub max_connection_age: Option<Duration>,
    /// After `max_connection_age`, how long requests in flight get before the connection is
    /// closed (`--grpc-max-connection-age-grace`; `None`: as long as they need).
    pub max_connection_age_grace: Option<Duration>,
    /// Concurrent streams (requests) a client may open on one connection (`None`: HTTP/2's
    /// default, unlimited).
    pub max_concurrent_streams: Option<u32>,
    /// `TCP_NODELAY` on accepted connections.
    pub tcp_nodelay: bool,
    /// Metadata forwarded to the model as request parameters
    /// (`--grpc-header-forward-pattern`).
    pub header_forward: Option<ferrite_core::HeaderForward>,
}

impl Default for GrpcOptions {
    fn default() -> Self {
        GrpcOptions {
            max_decoding_message_size: MAX_MESSAGE_SIZE,
            max_encoding_message_size: MAX_MESSAGE_SIZE,
            response_compression: None,
            keepalive_time: Some(Duration::from_millis(7_200_000)),
            keepalive_timeout: Duration::from_millis(20_000),
            max_connection_age: None,
            max_connection_age_grace: None,
            max_concurrent_streams: None,
            tcp_nodelay: true,
            header_forward: None,
        }
    }
}

/// Both gRPC services over `server`, as one tower service (`tonic::service::Routes`) that
/// answers HTTP/2 gRPC requests: for [`serve_connection`], or for any HTTP/2 server.
/// Connection-level settings (keepalive, connection age, streams) are the server's; message
/// sizes and compression are in here.
pub fn routes(server: ferrite_core::Server, options: &GrpcOptions) -> Routes {
    let frontend = Frontend::new(server.clone(), options.clone());
    let mut infer = GrpcInferenceServiceServer::new(frontend)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Deflate)
        .max_decoding_message_size(options.max_decoding_message_size)
        .max_encoding_message_size(options.max_encoding_message_size);
    let mut health = HealthServer::new(HealthService::new(server))
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Deflate);
    if let Some(encoding) = options.response_compression {
        infer = infer.send_compressed(encoding);
        health = health.send_compressed(encoding);
    }
    Routes::new(infer).add_service(health).prepare()
}

/// Serves gRPC on `listener` until `shutdown` completes; then stops accepting, lets requests
/// in flight finish (open streams end when their clients close them) and returns.
///
/// Each connection is served by [`serve_connection`], the same path as one-port mode. (Not
/// tonic's transport server: its own `grpc-timeout` layer would race the frontend's deadline
/// handling and sometimes answer CANCELLED "Timeout expired" where Triton answers
/// DEADLINE_EXCEEDED.)
pub async fn serve(
    server: ferrite_core::Server,
    options: GrpcOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = routes(server, &options);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!("gRPC accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(options.tcp_nodelay);
        let (service, options) = (service.clone(), options.clone());
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = serve_connection(stream, service, &options, stopped).await {
                tracing::debug!("gRPC connection ended: {e}");
            }
        });
        // Reap finished connections as we go.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Serves one accepted HTTP/2 (h2c) connection with `service` (from [`routes`]) and the
/// connection settings of `options`, until the client closes it or `shutdown` completes (then
/// GOAWAY: requests in flight finish, no new ones start). For one-port mode; the connection's
/// bytes must not have been consumed (peek, do not read).
pub async fn serve_connection<IO>(
    io: IO,
    service: Routes,
    options: &GrpcOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(options.keepalive_time)
        .keep_alive_timeout(options.keepalive_timeout)
        .max_concurrent_streams(options.max_concurrent_streams);
    let connection = builder.serve_connection(
        TokioIo::new(io),
        hyper_util::service::TowerToHyperService::new(service),
    );
    let mut connection = std::pin::pin!(connection);
    let mut shutdown = std::pin::pin!(shutdown);
    let age = async {
        match options.max_connection_age {
            Some(age) => tokio::time::sleep(age).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        result = connection.as_mut() => return result,
        () = &mut shutdown => {}
        () = age => {}
    }
    connection.as_mut().graceful_shutdown();
    match options.max_connection_age_grace {
        Some(grace) => match tokio::time::timeout(grace, connection).await {
            Ok(result) => result,
            Err(_) => Ok(()),
        },
        None => connection.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preface_detection() {
        assert!(is_h2_preface(H2_PREFACE));
        assert!(is_h2_preface(b"PRI * HTTP/2"));
        assert!(!is_h2_preface(b"POST /v2/models/simple/infer HTTP/1.1\r\n"));
        assert!(!is_h2_preface(b"GET / HTTP/1.1"));
        assert!(!is_h2_preface(b""));
        let mut longer = H2_PREFACE.to_vec();
        longer.extend_from_slice(b"\x00\x00\x12\x04");
        assert!(is_h2_preface(&longer));
    }

    #[test]
    fn defaults_are_tritons() {
        let o = GrpcOptions::default();
        assert_eq!(o.max_decoding_message_size, 2147483647);
        assert_eq!(o.max_encoding_message_size, 2147483647);
        assert_eq!(o.keepalive_time, Some(Duration::from_secs(7200)));
        assert_eq!(o.keepalive_timeout, Duration::from_secs(20));
        assert!(o.response_compression.is_none());
    }
}
