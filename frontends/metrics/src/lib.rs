//! Ferrite's Prometheus metrics endpoint: `GET /metrics` on a listener of its own (Triton's
//! port 8002), with Triton's metric families, texts and labels (`nv_inference_*` per model
//! version, `nv_gpu_*` and `nv_energy_consumption` per GPU, `nv_cpu_*`), plus request
//! duration, queue wait and batch size histograms.
//!
//! A scrape reads the statistics the models already keep (one short lock per model version);
//! nothing is added to the inference path. CPU utilization and memory, and each GPU's
//! utilization, memory, power and energy, are sampled by background tasks every
//! [`MetricsOptions::interval`]. The GPU readings come from NVML (`libnvidia-ml.so`, opened
//! at run time); on a machine without it there are no GPU families, and no error.
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

mod gpu;
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

pub use gpu::GpuMetrics;
pub use render::{CpuSample, GpuSample, ModelSample, render};
pub use system::CpuMetrics;

/// The endpoint's settings (`--allow-cpu-metrics`, `--allow-gpu-metrics`,
/// `--metrics-interval-ms`).
#[derive(Clone, Debug)]
pub struct MetricsOptions {
    /// Include `nv_cpu_utilization`, `nv_cpu_memory_total_bytes` and
    /// `nv_cpu_memory_used_bytes`.
    pub cpu_metrics: bool,
    /// Include, per GPU that NVML sees, `nv_gpu_utilization`, `nv_gpu_memory_total_bytes`,
    /// `nv_gpu_memory_used_bytes`, `nv_gpu_power_usage`, `nv_gpu_power_limit` and
    /// `nv_energy_consumption` (nothing where NVML is absent).
    pub gpu_metrics: bool,
    /// How often the CPU and GPU readings are sampled.
    pub interval: Duration,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        MetricsOptions {
            cpu_metrics: true,
            gpu_metrics: true,
            interval: Duration::from_millis(2000),
        }
    }
}

/// The text of one scrape: every loaded model version's statistics and pending requests,
/// then `gpus`, then `cpu` when given, then the families drivers record themselves.
pub fn scrape(
    server: &ferrite_core::Server,
    gpus: &[GpuSample],
    cpu: Option<&CpuSample>,
) -> String {
    let models: Vec<ModelSample> = server
        .loaded_models()
        .iter()
        .map(|m| ModelSample {
            stats: m.stats(),
            pending: m.pending(),
        })
        .collect();
    let mut text = render(&models, gpus, cpu);
    render::render_custom(&mut text, &ferrite_core::custom_metrics::snapshot());
    text
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
    let (gpu, gpu_sampler) = if options.gpu_metrics {
        let (metrics, task) = GpuMetrics::start(options.interval);
        (Some(metrics), Some(task))
    } else {
        (None, None)
    };
    // The HTTP frontend's accept loop and connection settings: the stop, the drain of
    // connections in flight and the reply headers behave as on the inference port.
    let result = ferrite_http::accept_until(listener, shutdown, move |stream, peer, stop| {
        let (server, cpu, gpu) = (server.clone(), cpu.clone(), gpu.clone());
        async move {
            let service = service_fn(move |request| {
                let reply = handle(&server, cpu.as_ref(), gpu.as_ref(), &request);
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
    for task in [sampler, gpu_sampler].into_iter().flatten() {
        task.abort();
    }
    result
}

/// `GET /metrics` → 200 with the scrape; another method → 405; another path → 404.
fn handle<B>(
    server: &ferrite_core::Server,
    cpu: Option<&CpuMetrics>,
    gpu: Option<&GpuMetrics>,
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
        let gpus = gpu.map(GpuMetrics::get).unwrap_or_default();
        (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            scrape(server, &gpus, sample.as_ref()),
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
