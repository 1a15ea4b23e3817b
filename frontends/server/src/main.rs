//! `ferrite`: serve a Triton model repository.

mod logging;
mod oneport;
mod options;
mod table;

use std::process::ExitCode;
use std::time::Duration;

use ferrite_core::{ModelState, Server};
use tokio::net::TcpListener;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (options, warnings) = match options::Options::load(&args) {
        Ok(o) => o,
        Err(options::OptionsError::Clap(e)) => e.exit(),
        Err(options::OptionsError::Config(message)) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    logging::init(&options);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    match run(options) {
        Ok(code) => code,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: options::Options) -> Result<ExitCode, String> {
    let core_options = options.core_options()?;
    let server =
        Server::start(core_options).map_err(|e| format!("creating server: {}", e.chain()))?;

    let rows: Vec<Vec<String>> = server
        .index(false)
        .into_iter()
        .map(|e| {
            let status = match e.state {
                ModelState::Ready => "READY".to_string(),
                _ if e.reason.is_empty() => e.state.as_str().to_string(),
                _ => format!("{}: {}", e.state.as_str(), e.reason),
            };
            vec![
                e.name,
                e.version.map(|v| v.to_string()).unwrap_or_default(),
                status,
            ]
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
    let result = runtime.block_on(serve(server.clone(), &options));
    server.shutdown();
    result.map(|()| ExitCode::SUCCESS)
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

    wait_for_signal().await;
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
