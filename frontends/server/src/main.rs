//! `ferrite`: serve a Triton model repository (`ferrite validate` checks one; see validate.rs).

mod logging;
mod oneport;
mod options;
mod table;
mod validate;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ferrite_core::{ModelControlMode, ModelState, Server};
use tokio::net::TcpListener;

fn main() -> ExitCode {
    // Before any thread: blocks of 1 MiB and more (model weights) mapped and returned to the
    // system when freed, so unloading gives memory back (see ferrite_core::driver::memory).
    // Request-sized buffers stay below it (a 224x224x3 FP32 image is 588 KiB) and batches
    // are gathered into per-instance scratch space, so serving does not map per request.
    // Arenas: 4 per core (glibc's default is 8): with one per core, instance, ONNX Runtime
    // and I/O threads contended for them (batched EfficientNet fell from ~95% of raw ONNX
    // Runtime to ~82%); with 8 per core freed weights spread over so many arenas that RSS
    // grew under load/unload cycles.
    ferrite_core::driver::memory::tune_allocator(
        1 << 20,
        4 * std::thread::available_parallelism().map_or(2, |n| n.get()),
    );
    let args: Vec<String> = std::env::args().collect();
    // `ferrite validate ...`: check repositories without serving (see validate.rs).
    if args.get(1).map(String::as_str) == Some("validate") {
        return validate::main(&args[1..]);
    }
    let (options, warnings) = match options::Options::load(&args) {
        Ok(o) => o,
        Err(options::OptionsError::Clap(e)) => e.exit(),
        Err(options::OptionsError::Config(message)) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let logging = match logging::init(&options) {
        Ok(l) => l,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    for w in &warnings {
        tracing::warn!("{w}");
    }
    match run(options, logging) {
        Ok(code) => code,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: options::Options, logging: Arc<logging::Logging>) -> Result<ExitCode, String> {
    let core_options = options.core_options()?;
    let server =
        Server::start(core_options).map_err(|e| format!("creating server: {}", e.chain()))?;
    server.set_log_control(logging);

    let rows: Vec<Vec<String>> = server
        .index(false)
        .into_iter()
        .filter_map(|e| {
            // Models of the repository that explicit mode did not load are not in the table.
            let state = e.state?;
            let status = match state {
                ModelState::Ready => "READY".to_string(),
                _ if e.reason.is_empty() => state.as_str().to_string(),
                _ => format!("{}: {}", state.as_str(), e.reason),
            };
            Some(vec![
                e.name,
                e.version.map(|v| v.to_string()).unwrap_or_default(),
                status,
            ])
        })
        .collect();
    tracing::info!(
        "\n{}",
        table::render(&["Model", "Version", "Status"], &rows)
    );
    tracing::info!(
        "\n{}",
        table::render(&["Option", "Value"], &options.table_rows(&server))
    );

    if options.exit_on_error && !server.all_models_ready() {
        server.shutdown();
        return Err("creating server: Internal - failed to load all models".into());
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.http_thread_count.max(1))
        .enable_all()
        .thread_name("ferrite-io")
        .build()
        .map_err(|e| format!("failed to start the I/O runtime: {e}"))?;
    let poller = (options.control_mode()? == ModelControlMode::Poll
        && options.repository_poll_secs > 0)
        .then(|| spawn_poller(server.clone(), options.repository_poll_secs));
    let result = runtime.block_on(serve(server.clone(), &options));
    tracing::info!("unloading models");
    server.shutdown();
    if let Some(p) = poller {
        let _ = p.join();
    }
    result.map(|()| ExitCode::SUCCESS)
}

/// Poll mode: looks at the repositories every `secs` seconds until the server stops.
fn spawn_poller(server: Server, secs: u64) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("repository-poll".into())
        .spawn(move || {
            loop {
                let next = std::time::Instant::now() + Duration::from_secs(secs);
                while std::time::Instant::now() < next {
                    if !server.is_live() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                if !server.is_live() {
                    return;
                }
                let report = server.poll();
                if !report.is_empty() {
                    tracing::info!(
                        "repository poll: added {:?}, modified {:?}, removed {:?}, failed {:?}",
                        report.added,
                        report.modified,
                        report.removed,
                        report.failed.iter().map(|(n, _)| n).collect::<Vec<_>>()
                    );
                }
            }
        })
        .expect("the repository poll thread starts")
}

/// Binds `address:port`, logging the bound address as Triton does ("Started <service> at").
async fn bind(service: &str, address: &str, port: u16) -> Result<TcpListener, String> {
    // An IPv6 address is bracketed in `address:port` form ("::" -> "[::]:8001").
    let addr = if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    };
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("failed to bind {service} to {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("{service} listener has no address: {e}"))?;
    tracing::info!("Started {service} at {local}");
    Ok(listener)
}

async fn serve(server: Server, options: &options::Options) -> Result<(), String> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let grpc_options = options.grpc_options()?;
    let http_options = options.http_options()?;
    let mut tasks: Vec<(&str, tokio::task::JoinHandle<Result<(), String>>)> = Vec::new();
    if options.one_port() {
        let listener = bind("HTTPService", &options.http_address, options.http_port).await?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!("Started GRPCInferenceService at {local} (one port: REST and gRPC)");
        let http = ferrite_http::Frontend::new(server.clone(), http_options);
        let grpc = ferrite_grpc::routes(server.clone(), &grpc_options);
        let stop = shutdown();
        tasks.push((
            "HTTP+gRPC",
            tokio::spawn(async move {
                oneport::serve(http, grpc, grpc_options, listener, stop)
                    .await
                    .map_err(|e| e.to_string())
            }),
        ));
    } else {
        if options.allow_grpc {
            let listener = bind(
                "GRPCInferenceService",
                &options.grpc_address,
                options.grpc_port,
            )
            .await?;
            let (server, stop) = (server.clone(), shutdown());
            tasks.push((
                "gRPC",
                tokio::spawn(async move {
                    ferrite_grpc::serve(server, grpc_options, listener, stop)
                        .await
                        .map_err(|e| e.to_string())
                }),
            ));
        }
        if options.allow_http {
            let listener = bind("HTTPService", &options.http_address, options.http_port).await?;
            let (server, stop) = (server.clone(), shutdown());
            tasks.push((
                "HTTP",
                tokio::spawn(async move {
                    ferrite_http::serve_with(server, http_options, listener, stop)
                        .await
                        .map_err(|e| e.to_string())
                }),
            ));
        }
    }
    if tasks.is_empty() {
        return Err("no service is enabled (--allow-http=false and --allow-grpc=false)".into());
    }
    if options.allow_metrics {
        let listener = bind(
            "Metrics Service",
            options.metrics_address(),
            options.metrics_port,
        )
        .await?;
        let (server, stop, metrics_options) =
            (server.clone(), shutdown(), options.metrics_options());
        tasks.push((
            "Metrics",
            tokio::spawn(async move {
                ferrite_metrics::serve(server, metrics_options, listener, stop)
                    .await
                    .map_err(|e| e.to_string())
            }),
        ));
    }

    wait_for_signal().await;
    server.begin_shutdown();
    tracing::info!("readiness is now false");
    tracing::info!(
        "shutting down: no new connections; waiting up to {}s for requests in flight",
        options.exit_timeout_secs
    );
    let _ = stop_tx.send(true);
    let drain = async {
        for (name, task) in tasks {
            match task.await {
                Ok(Err(e)) => tracing::error!("{name} service: {e}"),
                Err(e) => tracing::error!("{name} service: {e}"),
                Ok(Ok(())) => {}
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(options.exit_timeout_secs), drain)
        .await
        .is_err()
    {
        tracing::warn!(
            "timed out after {}s waiting for requests in flight",
            options.exit_timeout_secs
        );
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM"),
        _ = int.recv() => tracing::info!("received SIGINT"),
    }
}
