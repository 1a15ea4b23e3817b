//! One-port mode: REST (HTTP/1.1) and gRPC (HTTP/2 cleartext) on the same port, for hosting
//! platforms that expose one port per container. Each connection is told apart by its first
//! bytes: gRPC clients open with the HTTP/2 preface, HTTP/1.1 requests never start with it.

use std::future::Future;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// Bytes that tell the protocols apart: "PRI " (HTTP/2) vs an HTTP/1.1 method.
const DECIDING_BYTES: usize = 4;
/// How long a new connection may stay silent before it is treated as HTTP/1.1 (whose
/// keep-alive handling then times it out or serves it).
const SNIFF_TIMEOUT: Duration = Duration::from_secs(5);

/// Peeks at the connection's first bytes without consuming them: whether it speaks HTTP/2.
async fn is_http2(stream: &TcpStream) -> bool {
    let mut head = [0u8; ferrite_grpc::H2_PREFACE.len()];
    let sniff = async {
        loop {
            match stream.peek(&mut head).await {
                // The peer closed or sent all it will send.
                Ok(0) | Err(_) => return 0,
                Ok(n) if n >= DECIDING_BYTES => return n,
                Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    };
    match tokio::time::timeout(SNIFF_TIMEOUT, sniff).await {
        Ok(n) if n >= DECIDING_BYTES => ferrite_grpc::is_h2_preface(&head[..n]),
        _ => false,
    }
}

/// Serves both frontends on `listener` until `shutdown` completes; then stops accepting and
/// lets requests in flight finish.
pub async fn serve(
    http: ferrite_http::Frontend,
    grpc: tonic::service::Routes,
    grpc_options: ferrite_grpc::GrpcOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    ferrite_http::accept_until(listener, shutdown, move |stream, peer, stop| {
        let (http, grpc, grpc_options) = (http.clone(), grpc.clone(), grpc_options.clone());
        async move {
            let result = if is_http2(&stream).await {
                ferrite_grpc::serve_connection(stream, grpc, &grpc_options, stop.wait()).await
            } else {
                ferrite_http::serve_connection(stream, http, stop.wait()).await
            };
            if let Err(e) = result {
                tracing::debug!("connection from {peer} ended: {e}");
            }
        }
    })
    .await
}
