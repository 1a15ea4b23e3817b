//! Ferrite's HTTP frontend: the KServe v2 REST API with Triton's extensions (binary tensor
//! data, classification, statistics, model repository), answering byte for byte as Triton
//! 2.51 does — status lines ("405 Not Allowed"), headers (Content-Type per endpoint, no
//! Date, Server or Connection), compact JSON with rapidjson's number formatting, error texts.
//! Beyond Triton, a decoupled (streaming) model answers `POST .../infer` with `Accept:
//! text/event-stream` as server-sent events, one per response.
//!
//! ```no_run
//! # async fn run(server: ferrite_core::Server) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8000").await?;
//! ferrite_http::serve(server, listener, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod compress;
mod decode;
mod encode;
mod json;
mod reply;
mod routes;
mod write;

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

pub use reply::{Reply, ReplyBody, status_for};
pub use routes::{Frontend, HttpOptions};

/// The HTTP/1.1 connection settings Triton's replies need: no Date header, header names in
/// Title-Case (`Content-Type`, `Inference-Header-Content-Length`), keep-alive, and a reply
/// still for clients that half-close after sending their request.
pub fn http1_builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .auto_date_header(false)
        .title_case_headers(true)
        .keep_alive(true)
        .half_close(true);
    builder
}

/// The HTTP API over `server` with default options; answer requests with
/// [`Frontend::handle`].
pub fn router(server: ferrite_core::Server) -> Frontend {
    Frontend::new(server, HttpOptions::default())
}

/// Serves the HTTP API on `listener` until `shutdown` completes; then stops accepting, lets
/// requests in flight finish, closes idle connections and returns.
pub async fn serve(
    server: ferrite_core::Server,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(server, HttpOptions::default(), listener, shutdown).await
}

/// [`serve`] with options.
pub async fn serve_with(
    server: ferrite_core::Server,
    options: HttpOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let frontend = Frontend::new(server, options);
    accept_until(listener, shutdown, move |stream, peer, stop| {
        let frontend = frontend.clone();
        async move {
            if let Err(e) = serve_connection(stream, frontend, stop.wait()).await {
                tracing::debug!("HTTP connection from {peer} ended: {e}");
            }
        }
    })
    .await
}

/// Serves one accepted HTTP/1.1 connection until the client closes it or `stop` completes
/// (then requests in flight finish and the connection closes). The connection's bytes must not
/// have been consumed (peek, do not read, when deciding what to serve it with).
pub async fn serve_connection<IO>(
    io: IO,
    frontend: Frontend,
    stop: impl Future<Output = ()>,
) -> Result<(), hyper::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let frontend = frontend.clone();
        async move { Ok::<_, Infallible>(frontend.handle(request).await) }
    });
    let connection = http1_builder().serve_connection(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        r = connection.as_mut() => r,
        () = stop => {
            connection.as_mut().graceful_shutdown();
            connection.as_mut().await
        }
    }
}

/// Accepts connections on `listener` until `shutdown` completes, handing each (with TCP_NODELAY
/// set) to `connection` together with a future that completes when the server stops; then
/// stops accepting and returns once every connection's task has finished. The frontends share
/// it (HTTP, and the one-port mode that serves HTTP and gRPC together).
pub async fn accept_until<F, Fut>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    connection: F,
) -> std::io::Result<()>
where
    F: Fn(tokio::net::TcpStream, std::net::SocketAddr, Stop) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    // Connections hold a clone of `done_tx`; when all are gone, `done_rx` ends.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let task = connection(stream, peer, Stop(stop_rx.clone()));
        let done = done_tx.clone();
        tokio::spawn(async move {
            task.await;
            drop(done);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_tx);
    let _ = done_rx.recv().await;
    Ok(())
}

/// Completes when the server stops accepting (see [`accept_until`]).
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Waits for the stop.
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }
}
