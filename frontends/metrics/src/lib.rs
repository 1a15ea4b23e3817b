//! Ferrite's Prometheus metrics endpoint: `GET /metrics` on a listener of its own (Triton's
//! port 8002), with Triton's metric families, texts and labels (`nv_inference_*` per model
//! version, `nv_cpu_*`), plus request duration, queue wait and batch size histograms.
//!
//! A scrape reads the statistics the models already keep (one short lock per model version);
//! nothing is added to the inference path. CPU utilization and memory are sampled by a
//! background task every [`MetricsOptions::interval`].
//!
//! ```no_run
//! # async fn run(server: ferrite_core::Server) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8002").await?;
//! let options = ferrite_metrics::MetricsOptions::default();
//! ferrite_metrics::serve(server, options, listener, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

mod render;
mod system;

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub use render::{CpuSample, ModelSample, render};
pub use system::CpuMetrics;

/// The endpoint's settings (`--allow-cpu-metrics`, `--metrics-interval-ms`).
#[derive(Clone, Debug)]
pub struct MetricsOptions {
    /// Include `nv_cpu_utilization`, `nv_cpu_memory_total_bytes` and
    /// `nv_cpu_memory_used_bytes`.
    pub cpu_metrics: bool,
    /// How often CPU utilization and memory are sampled.
    pub interval: Duration,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        MetricsOptions {
            cpu_metrics: true,
            interval: Duration::from_millis(2000),
        }
    }
}

/// The text of one scrape: every loaded model version's statistics and pending requests,
/// and `cpu` when given.
pub fn scrape(server: &ferrite_core::Server, cpu: Option<&CpuSample>) -> String {
    let models: Vec<ModelSample> = server
        .loaded_models()
        .iter()
        .map(|m| ModelSample {
            stats: m.stats(),
            pending: m.pending(),
        })
        .collect();
    render(&models, cpu)
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes; then stops accepting,
/// lets scrapes in flight finish, closes idle connections and returns.
pub async fn serve(
    server: ferrite_core::Server,
    options: MetricsOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (cpu, sampler) = if options.cpu_metrics {
        let (metrics, task) = CpuMetrics::start(options.interval);
        (Some(metrics), Some(task))
    } else {
        (None, None)
    };
    // The HTTP frontend's accept loop and connection settings: the stop, the drain of
    // connections in flight and the reply headers behave as on the inference port.
    let result = ferrite_http::accept_until(listener, shutdown, move |stream, peer, stop| {
        let (server, cpu) = (server.clone(), cpu.clone());
        async move {
            let service = service_fn(move |request| {
                let reply = handle(&server, cpu.as_ref(), &request);
                async move { Ok::<_, Infallible>(reply) }
            });
            let connection =
                ferrite_http::http1_builder().serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                r = connection.as_mut() => r,
                () = stop.wait() => {
                    connection.as_mut().graceful_shutdown();
                    connection.as_mut().await
                }
            };
            if let Err(e) = result {
                tracing::debug!("metrics connection from {peer} ended: {e}");
            }
        }
    })
    .await;
    if let Some(task) = sampler {
        task.abort();
    }
    result
}

/// `GET /metrics` → 200 with the scrape; another method → 405; another path → 404.
fn handle<B>(
    server: &ferrite_core::Server,
    cpu: Option<&CpuMetrics>,
    request: &Request<B>,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = if request.method() != Method::GET {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "application/json",
            r#"{"error":"Method Not Allowed"}"#.to_string(),
        )
    } else if request.uri().path() != "/metrics" {
        (
            StatusCode::NOT_FOUND,
            "application/json",
            r#"{"error":"Not Found"}"#.to_string(),
        )
    } else {
        let sample = cpu.map(CpuMetrics::get);
        (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            scrape(server, sample.as_ref()),
        )
    };
    let length = body.len();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    response
}
