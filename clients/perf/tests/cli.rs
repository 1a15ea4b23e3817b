//! `ferrite-perf` as a process: argument errors, an unreachable server, and short real runs
//! against a spawned `ferrite` (skipped, with a message, when the server binary, driver or
//! models are missing, unless FERRITE_REQUIRE_DRIVERS is set).

#[path = "../../client/tests/common/mod.rs"]
mod common;

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Runs ferrite-perf with `args`; fails the test if it runs longer than `limit`.
fn perf(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrite-perf"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferrite-perf starts");
    // Drain both pipes in threads so a chatty child never blocks.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ferrite-perf {args:?} ran longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "--model-name <MODEL>"),
        (
            &["-m", "simple", "--concurrency-range", "0:2"],
            "greater than 0",
        ),
        (
            &["-m", "simple", "--concurrency-range", "4:2"],
            "below its start",
        ),
        (
            &["-m", "simple", "--concurrency-range", "1:x"],
            "not a valid number",
        ),
        (
            &[
                "-m",
                "simple",
                "--concurrency-range",
                "1",
                "--request-rate-range",
                "10",
            ],
            "cannot be used with",
        ),
        (&["-m", "simple", "-i", "carrier-pigeon"], "invalid value"),
        (
            &["-m", "simple", "--streaming"],
            "--streaming needs the gRPC protocol",
        ),
        (&["-m", "simple", "--shape", "INPUT0"], "NAME:d1,d2"),
        (&["-m", "simple", "-b", "0"], "invalid value"),
        (&["-m", "simple", "--no-such-flag"], "unexpected argument"),
    ];
    for (args, message) in cases {
        let out = perf(args, Duration::from_secs(30));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(
            stderr.contains("Usage:") || stderr.contains("error:"),
            "{stderr}"
        );
    }
    let out = perf(&["--help"], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("--concurrency-range"));
}

#[test]
fn unreachable_server_exits_1_naming_the_url() {
    for protocol in ["http", "grpc"] {
        let url = format!("127.0.0.1:{}", closed_port());
        let out = perf(
            &["-m", "simple", "-i", protocol, "-u", &url],
            Duration::from_secs(60),
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{protocol}: {stderr}");
        assert!(
            stderr.contains(&format!("error: cannot reach http://{url}: ")),
            "{protocol}: {stderr}"
        );
    }
}

const HEADER: &str = "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency";

#[test]
fn real_runs_against_a_server() {
    let Some(server) = common::Server::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("perf.csv");
    let json = dir.path().join("perf.json");

    // HTTP, a concurrency sweep, CSV and JSON.
    let out = perf(
        &[
            "-m",
            "simple",
            "-u",
            &server.http,
            "-p",
            "500",
            "-r",
            "4",
            "--concurrency-range",
            "1:2:1",
            "-f",
            csv.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    for line in [
        "Request concurrency: 1",
        "Request concurrency: 2",
        "Concurrency: 1, throughput: ",
        "Concurrency: 2, throughput: ",
        "p99 latency: ",
        "compute infer ",
        "Client CPU: ",
    ] {
        assert!(stdout.contains(line), "no '{line}' in:\n{stdout}");
    }
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = csv_text.lines().collect();
    assert_eq!(lines[0], HEADER);
    assert_eq!(lines.len(), 3, "{csv_text}");
    let mut concurrencies = Vec::new();
    for row in &lines[1..] {
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells.len(), 13, "{row}");
        concurrencies.push(cells[0].parse::<u32>().unwrap());
        assert!(cells[1].parse::<f64>().unwrap() > 0.0, "{row}");
        assert!(
            cells[6].parse::<u64>().unwrap() > 0,
            "no compute infer: {row}"
        );
        assert!(cells[9].parse::<u64>().unwrap() > 0, "no p50: {row}");
    }
    concurrencies.sort();
    assert_eq!(concurrencies, [1, 2]);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let steps = doc["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    for (step, c) in steps.iter().zip([1, 2]) {
        assert_eq!(step["concurrency"], c);
        assert!(
            step["throughput_infer_per_sec"].as_f64().unwrap() > 0.0,
            "{step}"
        );
        assert!(step["latency_us"]["p95"].as_u64().unwrap() > 0, "{step}");
        assert!(
            step["server"]["request_count"].as_u64().unwrap() > 0,
            "{step}"
        );
        assert!(step["client_cpu"]["us_per_request"].as_f64().unwrap() > 0.0);
    }

    // gRPC stream, inputs and outputs in system shared memory, JSON input data, a request
    // rate, verbose CSV.
    let data = dir.path().join("data.json");
    let a: Vec<i32> = (0..16).collect();
    std::fs::write(
        &data,
        serde_json::json!({"data": [
            {"INPUT0": a, "INPUT1": {"content": vec![1; 16], "shape": [16]}},
            {"INPUT0": vec![2; 16], "INPUT1": a},
        ]})
        .to_string(),
    )
    .unwrap();
    let out = perf(
        &[
            "-m",
            "simple",
            "-i",
            "grpc",
            "-u",
            &server.grpc,
            "--streaming",
            "--shared-memory",
            "system",
            "--input-data",
            data.to_str().unwrap(),
            "-b",
            "2",
            "-p",
            "300",
            "-r",
            "3",
            "--request-rate-range",
            "50",
            "--percentile",
            "95",
            "--verbose-csv",
            "-f",
            csv.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("Request Rate: 50, throughput: "),
        "{stdout}"
    );
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = csv_text.lines().collect();
    assert_eq!(
        lines[0],
        HEADER.replacen("Concurrency", "Request Rate", 1)
            + ",Avg latency,request/response,response wait"
    );
    assert_eq!(lines.len(), 2, "{csv_text}");
    assert!(lines[1].starts_with("50,"), "{csv_text}");
    // The regions were unregistered and removed.
    let pid_regions = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("ferrite_perf_"))
        .count();
    assert_eq!(pid_regions, 0);

    // A model the server does not have: its message, exit 1.
    let out = perf(
        &["-m", "no_such_model", "-u", &server.http],
        Duration::from_secs(60),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("no_such_model"),
        "{stderr}"
    );
}

/// A decoupled model over the gRPC stream: a request completes with its final response (its
/// latency is the whole stream's), not with its first.
#[test]
fn a_decoupled_model_streams_to_its_final_response() {
    let target = common::target_dir();
    let Some(server) = common::Server::start_on(
        &common::workspace().join("configs/driver_examples"),
        &[target.join("libferrite_driver_repeat.so")],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.json");
    // Three responses, 30 ms apart: at least 60 ms from request to final response.
    std::fs::write(
        &data,
        serde_json::json!({"data": [{
            "IN": {"content": [1, 2, 3], "shape": [3]},
            "DELAY": {"content": [0, 30, 30], "shape": [3]},
            "WAIT": [0],
        }]})
        .to_string(),
    )
    .unwrap();
    let json = dir.path().join("out.json");
    let out = perf(
        &[
            "-m",
            "repeat_int32",
            "-i",
            "grpc",
            "-u",
            &server.grpc,
            "--streaming",
            "--input-data",
            data.to_str().unwrap(),
            "-p",
            "500",
            "-r",
            "3",
            "--concurrency-range",
            "2",
            "--json",
            json.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let step = &doc["steps"][0];
    let p50 = step["latency_us"]["p50"].as_u64().unwrap();
    assert!(
        p50 >= 60_000,
        "a request ends with its last response: {step}"
    );
    let throughput = step["throughput_infer_per_sec"].as_f64().unwrap();
    // Two streams of at least 60 ms each: at most ~33 requests a second.
    assert!(throughput > 0.0 && throughput < 40.0, "{step}");
}
