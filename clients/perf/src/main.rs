//! `ferrite-perf`: a perf_analyzer-class load generator for Ferrite and Triton.
//!
//! It runs on one thread (a current-thread tokio runtime): the requests are encoded once
//! (tensor data shared, never copied per request), kept in flight as tasks on that thread,
//! and timed into measurement windows. Each step of a concurrency or request-rate sweep is
//! measured until the last three windows agree within `--stability-percentage` (or
//! `--max-trials` windows have passed), then reported with latency percentiles, the server's
//! own split from the statistics API, and the client's CPU time per request. Exit codes: 0
//! success, 1 failure (server unreachable, model unknown, a request failed), 2 bad arguments.

mod args;
mod inputs;
mod load;
mod report;

use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser};
use ferrite_client::{Client, Protocol};

use crate::args::{Args, ProtocolArg};
use crate::load::{Load, Transport};
use crate::report::{Cpu, Measured, Step, StepInput};

/// Windows that must agree for a stable measurement (perf_analyzer's stability window).
const STABILITY_WINDOWS: usize = 3;

fn main() -> ExitCode {
    let args = Args::parse();
    if args.streaming && args.protocol != ProtocolArg::Grpc {
        Args::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--streaming needs the gRPC protocol (-i grpc)",
            )
            .exit();
    }
    if args.stability_percentage.is_nan() || args.stability_percentage <= 0.0 {
        Args::command()
            .error(
                clap::error::ErrorKind::ValueValidation,
                "--stability-percentage must be greater than 0",
            )
            .exit();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The process's user and system CPU time (getrusage).
fn cpu_times() -> (Duration, Duration) {
    // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

/// Overwrites the progress line (terminals only).
struct Progress {
    on: bool,
    shown: bool,
}

impl Progress {
    fn show(&mut self, text: &str) {
        if self.on {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[K{text}");
            let _ = out.flush();
            self.shown = true;
        }
    }

    fn clear(&mut self) {
        if self.shown {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[K");
            let _ = out.flush();
            self.shown = false;
        }
    }
}

/// Why a step ended early.
#[derive(PartialEq)]
enum Cut {
    None,
    Deadline,
    Interrupted,
}

async fn run(args: Args) -> Result<(), String> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_duration_secs);
    let protocol = match args.protocol {
        ProtocolArg::Http => Protocol::Http,
        ProtocolArg::Grpc => Protocol::Grpc,
    };
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| protocol.default_url().to_string());
    let client = Client::connect(protocol, &url)
        .await
        .map_err(|e| e.to_string())?;
    let meta = client
        .model_metadata(&args.model, &args.model_version)
        .await
        .map_err(|e| e.to_string())?;
    let config = client
        .model_config(&args.model, &args.model_version)
        .await
        .map_err(|e| e.to_string())?;
    let mut workload = inputs::build(&client, &args, &meta, &config).await?;
    let result = measure(&args, &client, protocol, &workload, deadline).await;
    workload.cleanup(&client).await;
    let steps = result?;

    if let Some(path) = &args.csv {
        report::write_file(path, &report::csv(&steps, args.verbose_csv))?;
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "model": args.model,
            "version": args.model_version,
            "protocol": protocol.to_string(),
            "url": client.url(),
            "streaming": args.streaming,
            "shared_memory": format!("{:?}", args.shared_memory).to_lowercase(),
            "batch_size": args.batch_size,
            "measurement_interval_ms": args.measurement_interval_ms,
            "stability_percentage": args.stability_percentage,
            "percentile": args.percentile,
            "input_bytes_per_request": workload.input_bytes,
            "steps": steps.iter().map(report::step_json).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&doc).expect("JSON");
        report::write_file(path, &(text + "\n"))?;
    }
    Ok(())
}

async fn measure(
    args: &Args,
    client: &Client,
    protocol: Protocol,
    workload: &inputs::Workload,
    deadline: Instant,
) -> Result<Vec<Step>, String> {
    let prepared = workload
        .requests
        .iter()
        .map(|r| client.prepare(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    // One request first: a request the server refuses fails here, with its message. On a
    // stream (where a decoupled model, which ModelInfer refuses, can answer), up to each
    // request's final response.
    if args.streaming {
        let (sender, mut receiver) = client.stream().await.map_err(|e| e.to_string())?.split();
        for (id, p) in prepared.iter().enumerate() {
            let ferrite_client::Prepared::Grpc(g) = p else {
                continue;
            };
            sender
                .send_prepared(&load::stream_request(g, id as u64))
                .map_err(|e| e.to_string())?;
            loop {
                match receiver.recv().await {
                    Some(Ok(r)) if r.is_final() => break,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(format!("inference request failed: {e}")),
                    None => return Err("the server closed the stream".to_string()),
                }
            }
        }
    } else {
        for p in &prepared {
            client
                .infer_prepared(p)
                .await
                .map_err(|e| format!("inference request failed: {e}"))?;
        }
    }

    let interrupted = Rc::new(Cell::new(false));
    {
        let interrupted = interrupted.clone();
        tokio::task::spawn_local(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.set(true);
            }
        });
    }

    let mut load = if args.streaming {
        let stream = client.stream().await.map_err(|e| e.to_string())?;
        let (sender, receiver) = stream.split();
        Load::new(Transport::Stream(sender), prepared, Some(receiver))
    } else {
        Load::new(Transport::Unary(Box::new(client.clone())), prepared, None)
    };

    let stabilizing = match args.percentile {
        Some(p) => format!("p{p} latency"),
        None => "average latency".to_string(),
    };
    println!("*** Measurement Settings ***");
    println!("  Batch size: {}", args.batch_size);
    println!("  Service Kind: Triton ({protocol}, {})", client.url());
    println!("  Using \"time_windows\" mode for stabilization");
    println!(
        "  Measurement window: {} msec",
        args.measurement_interval_ms
    );
    if args.streaming {
        println!("  Using a gRPC stream for inference");
    } else if args.async_mode {
        println!("  Using asynchronous calls for inference");
    } else {
        println!("  Using synchronous calls for inference");
    }
    println!("  Stabilizing using {stabilizing}");
    println!();

    let (concurrencies, rates): (Vec<u32>, Vec<f64>) =
        match (&args.request_rate_range, &args.concurrency_range) {
            (Some(r), _) => (Vec::new(), r.values()),
            (None, Some(c)) => (c.values(), Vec::new()),
            (None, None) => (vec![1], Vec::new()),
        };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    let mut progress = Progress {
        on: std::io::stdout().is_terminal(),
        shown: false,
    };
    let mut steps = Vec::new();
    let n_steps = concurrencies.len().max(rates.len());
    let mut cut = Cut::None;
    for i in 0..n_steps {
        let (concurrency, rate) = if concurrencies.is_empty() {
            (None, Some(rates[i]))
        } else {
            (Some(concurrencies[i]), None)
        };
        match (concurrency, rate) {
            (Some(c), _) => {
                println!("Request concurrency: {c}");
                load.set_concurrency(c as usize);
            }
            (None, Some(r)) => {
                println!("Request Rate: {r} inference requests per seconds");
                load.set_rate(r, args.request_distribution, seed);
            }
            _ => unreachable!(),
        }
        let (cpu_user0, cpu_sys0) = cpu_times();
        let completed0 = load.completed();
        let mut before = server_stats(client, args).await;
        load.take_window();
        let mut window_start = Instant::now();
        let mut windows: Vec<Measured> = Vec::new();
        let mut stable = false;
        let interval = Duration::from_millis(args.measurement_interval_ms);
        while windows.len() < args.max_trials as usize {
            let end = (window_start + interval).min(deadline);
            let mut last_progress = Instant::now();
            loop {
                let now = Instant::now();
                if now >= end || load.error().is_some() || interrupted.get() {
                    break;
                }
                tokio::time::sleep((end - now).min(Duration::from_millis(100))).await;
                if progress.on && last_progress.elapsed() >= Duration::from_millis(500) {
                    last_progress = Instant::now();
                    let secs = window_start.elapsed().as_secs_f64().max(1e-9);
                    progress.show(&format!(
                        "  window {}/{}: {} requests, {:.1} infer/sec",
                        windows.len() + 1,
                        args.max_trials,
                        load.window_count(),
                        load.window_count() as f64 * f64::from(args.batch_size) / secs
                    ));
                }
            }
            if let Some(e) = load.error() {
                progress.clear();
                load.stop(Duration::from_secs(2)).await;
                return Err(format!("inference request failed: {e}"));
            }
            let now = Instant::now();
            let window = load.take_window();
            let duration = now - window_start;
            window_start = now;
            let after = server_stats(client, args).await;
            let server = match (&before, &after) {
                (Some(b), Some(a)) => Some(a.since(b)),
                _ => None,
            };
            before = after;
            let m = Measured {
                duration,
                window,
                server,
            };
            if args.verbose {
                progress.clear();
                println!(
                    "  Pass [{}] throughput: {} infer/sec. {}: {} usec",
                    windows.len() + 1,
                    format_args!("{:.1}", m.throughput(args.batch_size)),
                    if args.percentile.is_some() {
                        "p latency"
                    } else {
                        "Avg latency"
                    },
                    m.latency_ns(args.percentile) / 1000
                );
            }
            windows.push(m);
            if interrupted.get() {
                cut = Cut::Interrupted;
                break;
            }
            if Instant::now() >= deadline {
                cut = Cut::Deadline;
                break;
            }
            if report::stable(
                &windows,
                STABILITY_WINDOWS,
                args.stability_percentage,
                args.batch_size,
                args.percentile,
            ) {
                stable = true;
                break;
            }
        }
        progress.clear();
        let (cpu_user1, cpu_sys1) = cpu_times();
        let cpu = Cpu {
            user: cpu_user1.saturating_sub(cpu_user0),
            system: cpu_sys1.saturating_sub(cpu_sys0),
            requests: load.completed() - completed0,
        };
        let step = report::summarize(StepInput {
            concurrency,
            request_rate: rate,
            windows: &windows,
            stable,
            truncated: cut != Cut::None,
            batch: args.batch_size,
            percentile: args.percentile,
            cpu,
        });
        print!("{}", step.console(&protocol.to_string(), args.streaming));
        if !stable && cut == Cut::None {
            println!(
                "  WARNING: no stable measurement within {} windows for {}; reporting the last {}. Increase --measurement-interval for steadier results.",
                args.max_trials,
                step.label().to_lowercase(),
                windows.len().min(STABILITY_WINDOWS)
            );
        }
        steps.push(step);
        match cut {
            Cut::Deadline => {
                println!(
                    "  WARNING: --max-duration-secs ({} s) reached; stopping the sweep.",
                    args.max_duration_secs
                );
                break;
            }
            Cut::Interrupted => {
                println!("  Interrupted; stopping the sweep.");
                break;
            }
            Cut::None => {}
        }
    }
    load.stop(Duration::from_secs(5)).await;

    println!();
    println!(
        "Inferences/Second vs. Client {} Batch Latency",
        match args.percentile {
            Some(p) => format!("p{p}"),
            None => "Average".to_string(),
        }
    );
    for s in &steps {
        println!(
            "{}, throughput: {} infer/sec, latency {} usec",
            s.label(),
            format_args!("{:.4}", s.throughput)
                .to_string()
                .trim_end_matches('0')
                .trim_end_matches('.'),
            s.stabilizing_us
        );
    }
    let total = steps.iter().fold(Cpu::default(), |acc, s| Cpu {
        user: acc.user + s.cpu.user,
        system: acc.system + s.cpu.system,
        requests: acc.requests + s.cpu.requests,
    });
    println!(
        "Client CPU: {:.1} usec/request ({} requests, user {:.3} s, system {:.3} s)",
        total.per_request_us(),
        total.requests,
        total.user.as_secs_f64(),
        total.system.as_secs_f64()
    );
    Ok(steps)
}

/// The model's statistics summed over its versions; `None` when the server does not give
/// them (the report then has no server-side split).
async fn server_stats(client: &Client, args: &Args) -> Option<ferrite_client::ModelStats> {
    let stats = client
        .model_statistics(&args.model, &args.model_version)
        .await
        .ok()?;
    Some(report::total_stats(&stats))
}
