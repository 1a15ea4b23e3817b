//! The `image_client` binary: argument errors and an unreachable server (no server needed),
//! then real runs against a `ferrite` process serving the example repository
//! (efficientnet_lite0_onnx) over HTTP and gRPC: single images, the images folder, batches,
//! `-a` and `--streaming`, and the model's refusals.
//!
//! The server is the workspace's `target/debug/ferrite` with the CPU driver and ONNX Runtime
//! from `target/debug` (`cargo build --workspace`, `scripts/setup.sh --copy-ort target/debug`)
//! and the example models and images of `scripts/setup.sh`. When any of it is missing the
//! server tests skip with a message, unless FERRITE_REQUIRE_DRIVERS is set (scripts/test.sh),
//! where they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

#[path = "../../client/tests/common/mod.rs"]
mod common;

use common::workspace;

const MODEL: &str = "efficientnet_lite0_onnx";

fn images() -> PathBuf {
    workspace().join("configs/images")
}

fn coffee() -> String {
    images().join("coffee.png").display().to_string()
}

fn chelsea() -> String {
    images().join("chelsea.png").display().to_string()
}

fn image_client(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image_client"))
        .args(args)
        .output()
        .expect("image_client runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs image_client and expects success; returns its stdout.
fn classify(args: &[&str]) -> String {
    let o = image_client(args);
    assert!(
        o.status.success(),
        "image_client {args:?} failed ({}):\n{}{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs image_client and expects exit status `code`; returns its stderr.
fn fails(args: &[&str], code: i32) -> String {
    let o = image_client(args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "image_client {args:?}:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    stderr(&o)
}

// --- no server needed ---------------------------------------------------------------------

#[test]
fn bad_arguments_print_the_usage_and_exit_2() {
    for args in [
        &["x.png"][..],                                       // no -m
        &["-m", MODEL][..],                                   // no image
        &["-m", MODEL, "-b", "0", "x.png"][..],               // batch size must be > 0
        &["-m", MODEL, "-c", "0", "x.png"][..],               // topk must be > 0
        &["-m", MODEL, "-s", "MEAN", "x.png"][..],            // unknown scaling
        &["-m", MODEL, "-i", "udp", "x.png"][..],             // unknown protocol
        &["-m", MODEL, "--streaming", "x.png"][..],           // streaming needs gRPC
        &["-m", MODEL, "-i", "http", "--streaming", "x"][..], // likewise
        &["-m", MODEL, "--bogus", "x.png"][..],
    ] {
        let err = fails(args, 2);
        assert!(err.contains("Usage: image_client"), "{args:?}: {err}");
    }
    let err = fails(&["-m", MODEL, "--streaming", "x.png"], 2);
    assert!(
        err.contains("Streaming is only allowed with gRPC protocol"),
        "{err}"
    );
    let err = fails(&["-m", MODEL, "-s", "MEAN", "x.png"], 2);
    assert!(
        err.contains("NONE") && err.contains("INCEPTION") && err.contains("VGG"),
        "{err}"
    );

    let help = image_client(&["--help"]);
    assert!(help.status.success());
    for flag in [
        "-m",
        "-x",
        "-c",
        "-s",
        "-b",
        "-i",
        "-u",
        "-a",
        "--streaming",
        "-v",
    ] {
        assert!(stdout(&help).contains(flag), "--help lacks {flag}");
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_unreachable_server_is_named() {
    let url = format!("127.0.0.1:{}", closed_port());
    for protocol in ["http", "grpc"] {
        let err = fails(&["-m", MODEL, "-i", protocol, "-u", &url, &coffee()], 1);
        assert!(err.starts_with("error: "), "{protocol}: {err}");
        assert!(
            err.contains(&format!("cannot reach http://{url}")),
            "{protocol}: {err}"
        );
    }
}

// --- against ferrite ----------------------------------------------------------------------

/// A `ferrite` process on the example repository, stopped (SIGTERM) when dropped.
/// The example server (the client library's test helper), once the sample images and the
/// classifier are there too.
fn start_server() -> Option<common::Server> {
    let model_dir = workspace().join("configs/models").join(MODEL);
    if !have(&[
        model_dir.join("labels.txt"),
        images().join("coffee.png"),
        images().join("chelsea.png"),
    ]) {
        return None;
    }
    common::Server::start()
}

/// Whether every file is there; else a SKIPPED message naming what is missing, or a failure
/// under FERRITE_REQUIRE_DRIVERS.
fn have(files: &[PathBuf]) -> bool {
    let missing: Vec<String> = files
        .iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("FERRITE_REQUIRE_DRIVERS").is_none(),
            "missing {}: run scripts/setup.sh",
            missing.join(", ")
        );
        eprintln!(
            "SKIPPED: {} missing (run scripts/setup.sh)",
            missing.join(", ")
        );
        return false;
    }
    true
}

fn url<'s>(server: &'s common::Server, protocol: &str) -> &'s str {
    if protocol == "grpc" {
        &server.grpc
    } else {
        &server.http
    }
}

/// One class line: "    <score> (<index>) = <label>".
#[derive(Debug)]
struct Class {
    score: f64,
    index: i64,
    label: String,
}

/// One request's block of the output.
#[derive(Debug)]
struct Request {
    id: String,
    batch_size: usize,
    images: Vec<(String, Vec<Class>)>,
}

/// Parses image_client's output, checking its exact line formats.
fn parse_output(text: &str) -> Vec<Request> {
    let mut requests: Vec<Request> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Request ") {
            let (id, size) = rest.split_once(", batch size ").expect(line);
            requests.push(Request {
                id: id.to_owned(),
                batch_size: size.parse().expect(line),
                images: Vec::new(),
            });
        } else if let Some(rest) = line.strip_prefix("Image '") {
            let path = rest.strip_suffix("':").expect(line);
            let r = requests.last_mut().expect("Request line first");
            r.images.push((path.to_owned(), Vec::new()));
        } else if let Some(rest) = line.strip_prefix("    ") {
            let (score, rest) = rest.split_once(" (").expect(line);
            let (index, label) = rest.split_once(") = ").expect(line);
            let r = requests.last_mut().expect("Request line first");
            r.images
                .last_mut()
                .expect("Image line first")
                .1
                .push(Class {
                    score: score.parse().expect(line),
                    index: index.parse().expect(line),
                    label: label.to_owned(),
                });
        } else {
            panic!("unexpected output line {line:?} in:\n{text}");
        }
    }
    requests
}

/// expected.json's top3 for an image: `key` "top3" ((x - 127) / 128, `-s LITE`) or
/// "top3_inception" (`-s INCEPTION`).
fn expected(image: &str, key: &str) -> Vec<(i64, String, f64)> {
    expected_at(&format!("/images/{image}/{key}"))
}

/// expected.json's top-3 of Triton's quick-start photo through densenet_onnx (`-s
/// INCEPTION`, Triton's labels).
fn expected_quick_start() -> Vec<(i64, String, f64)> {
    expected_at("/densenet_onnx/images/mug.jpg/top3_inception")
}

/// The classes expected.json lists at JSON `pointer`: (index, label, score).
fn expected_at(pointer: &str) -> Vec<(i64, String, f64)> {
    let text = std::fs::read_to_string(workspace().join("scripts/models/expected.json"))
        .expect("scripts/models/expected.json");
    let v: Value = serde_json::from_str(&text).unwrap();
    v.pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("expected.json has no {pointer} (scripts/setup.sh writes it)"))
        .iter()
        .map(|c| {
            (
                c["index"].as_i64().unwrap(),
                c["label"].as_str().unwrap().to_owned(),
                c["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// The classes match expected.json's (index, label, and the score to its 3 decimals).
fn assert_classes(classes: &[Class], want: &[(i64, String, f64)], what: &str) {
    assert_classes_within(classes, want, 0.002, what);
}

fn assert_classes_within(
    classes: &[Class],
    want: &[(i64, String, f64)],
    tolerance: f64,
    what: &str,
) {
    assert_eq!(classes.len(), want.len(), "{what}: {classes:?}");
    for (got, (index, label, score)) in classes.iter().zip(want) {
        assert_eq!(
            (got.index, got.label.as_str()),
            (*index, label.as_str()),
            "{what}: {classes:?}"
        );
        assert!(
            (got.score - score).abs() < tolerance,
            "{what}: score {} vs {score}",
            got.score
        );
    }
}

fn image_name(path: &str) -> &str {
    Path::new(path).file_name().unwrap().to_str().unwrap()
}

/// Triton's quick start, as its docs give it: `image_client -m densenet_onnx -c 3 -s
/// INCEPTION mug.jpg` against Triton's densenet_onnx config.pbtxt (max_batch_size 0, input
/// [3,224,224] reshaped to [1,3,224,224], output [1000] reshaped from [1,1000,1,1]).
#[test]
fn runs_tritons_quick_start() {
    let mug = workspace().join("configs/quickstart/mug.jpg");
    let labels = workspace().join("configs/models/densenet_onnx/densenet_labels.txt");
    let model = workspace().join("configs/models/densenet_onnx/1/model.onnx");
    if !have(&[mug.clone(), labels, model]) {
        return;
    }
    let Some(server) = start_server() else {
        return;
    };
    let mug = mug.display().to_string();
    let want = expected_quick_start();
    assert_eq!(want[0].1, "COFFEE MUG");
    for protocol in ["http", "grpc"] {
        let mut modes: Vec<&[&str]> = vec![&[], &["-a"]];
        if protocol == "grpc" {
            modes.extend([&["--streaming"][..], &["--streaming", "-a"][..]]);
        }
        for mode in modes {
            let args: Vec<&str> = ["-m", "densenet_onnx", "-c", "3", "-s", "INCEPTION"]
                .iter()
                .chain(&["-i", protocol, "-u", url(&server, protocol)])
                .chain(mode)
                .chain([&mug.as_str()])
                .copied()
                .collect();
            let out = parse_output(&classify(&args));
            let what = format!("{protocol} {mode:?} densenet_onnx mug.jpg");
            assert_eq!(out.len(), 1, "{what}");
            assert_eq!((out[0].id.as_str(), out[0].batch_size), ("0", 1), "{what}");
            assert_eq!(out[0].images[0].0, mug, "{what}");
            // expected.json decoded the JPEG with Pillow (libjpeg), image_client with its own
            // decoder: the pixels differ by a unit here and there, the logits by hundredths.
            assert_classes_within(&out[0].images[0].1, &want, 0.05, &what);
        }
    }
    // The model does not batch (max_batch_size 0): Triton's client refuses -b 2.
    let err = fails(
        &["-m", "densenet_onnx", "-b", "2", "-u", &server.http, &mug],
        1,
    );
    assert!(
        err.contains("batching not supported for model 'densenet_onnx'"),
        "{err}"
    );
}

#[test]
fn classifies_the_sample_images() {
    let Some(server) = start_server() else {
        return;
    };
    let folder = images().display().to_string();
    let (coffee, chelsea) = (coffee(), chelsea());

    for protocol in ["http", "grpc"] {
        let url = url(&server, protocol);
        let base = ["-m", MODEL, "-i", protocol, "-u", url];
        let with = |extra: &[&str]| -> Vec<Request> {
            let args: Vec<&str> = base.iter().chain(extra).copied().collect();
            parse_output(&classify(&args))
        };

        // One image, top 3, both of Triton's scalings that the model's reference knows.
        for (scaling, key) in [("LITE", "top3"), ("INCEPTION", "top3_inception")] {
            let out = with(&["-c", "3", "-s", scaling, &coffee]);
            assert_eq!(out.len(), 1, "{protocol}");
            assert_eq!((out[0].id.as_str(), out[0].batch_size), ("0", 1));
            assert_eq!(out[0].images.len(), 1);
            assert_eq!(out[0].images[0].0, coffee);
            let what = format!("{protocol} -s {scaling} coffee");
            assert_classes(&out[0].images[0].1, &expected("coffee.png", key), &what);
        }
        let out = with(&["-s", "INCEPTION", &chelsea]);
        assert_eq!(out[0].images[0].1.len(), 1, "-c defaults to 1");
        let what = format!("{protocol} chelsea top 1");
        assert_classes(
            &out[0].images[0].1,
            &expected("chelsea.png", "top3_inception")[..1],
            &what,
        );

        // The folder, one image per request (sorted), synchronous and -a; and --streaming.
        let mut modes: Vec<&[&str]> = vec![&[], &["-a"]];
        if protocol == "grpc" {
            modes.extend([&["--streaming"][..], &["--streaming", "-a"][..]]);
        }
        for mode in modes {
            let args: Vec<&str> = ["-c", "3", "-s", "LITE"]
                .iter()
                .chain(mode)
                .chain([&folder.as_str()])
                .copied()
                .collect();
            let out = with(&args);
            let what = format!("{protocol} {mode:?} folder");
            assert_eq!(out.len(), 2, "{what}");
            for (i, (r, name)) in out.iter().zip(["chelsea.png", "coffee.png"]).enumerate() {
                assert_eq!((r.id.clone(), r.batch_size), (i.to_string(), 1), "{what}");
                assert_eq!(r.images.len(), 1, "{what}");
                assert_eq!(image_name(&r.images[0].0), name, "{what}");
                assert_classes(&r.images[0].1, &expected(name, "top3"), &what);
            }
        }

        // Batches: -b 2 takes both images in one request; -b 3 fills the batch by starting
        // over; a single image with -b 2 is sent twice.
        for (batch, mode, want) in [
            ("2", &[][..], &["chelsea.png", "coffee.png"][..]),
            ("2", &["-a"][..], &["chelsea.png", "coffee.png"][..]),
            (
                "3",
                &[][..],
                &["chelsea.png", "coffee.png", "chelsea.png"][..],
            ),
        ] {
            let args: Vec<&str> = ["-c", "3", "-s", "LITE", "-b", batch]
                .iter()
                .chain(mode)
                .chain([&folder.as_str()])
                .copied()
                .collect();
            let out = with(&args);
            let what = format!("{protocol} -b {batch} {mode:?}");
            assert_eq!(out.len(), 1, "{what}");
            assert_eq!(out[0].batch_size, want.len(), "{what}");
            let names: Vec<&str> = out[0].images.iter().map(|(p, _)| image_name(p)).collect();
            assert_eq!(names, want, "{what}");
            for (path, classes) in &out[0].images {
                assert_classes(classes, &expected(image_name(path), "top3"), &what);
            }
        }
        let out = with(&["-b", "2", "-s", "INCEPTION", &coffee]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].images.len(), 2);
        assert!(
            out[0]
                .images
                .iter()
                .all(|(p, c)| p == &coffee && c[0].index == 967)
        );
        if protocol == "grpc" {
            let out = with(&["-b", "2", "--streaming", "-s", "LITE", "-c", "3", &folder]);
            assert_eq!(out.len(), 1);
            for (path, classes) in &out[0].images {
                assert_classes(
                    classes,
                    &expected(image_name(path), "top3"),
                    "grpc -b 2 stream",
                );
            }
        }

        // The version, explicitly.
        let out = with(&["-x", "1", "-s", "INCEPTION", &coffee]);
        assert_eq!(out[0].images[0].1[0].label, "espresso");

        // -p writes the first image's tensor: FP32 [3, 224, 224].
        let dir = tempfile::tempdir().unwrap();
        let tensor = dir.path().join("coffee.bin");
        let tensor_arg = tensor.display().to_string();
        with(&["-s", "LITE", "-p", &tensor_arg, &coffee]);
        assert_eq!(std::fs::metadata(&tensor).unwrap().len(), 3 * 224 * 224 * 4);

        // -v adds the model's metadata and configuration.
        let args: Vec<&str> = base
            .iter()
            .chain(&["-v", coffee.as_str()])
            .copied()
            .collect();
        let verbose = classify(&args);
        assert!(
            verbose.contains("FORMAT_NCHW") && verbose.contains("max_batch_size"),
            "{verbose}"
        );
        assert!(verbose.contains("Image '"), "{verbose}");

        // Refusals: the server's message, or Triton's texts for models that do not fit.
        let err_with = |extra: &[&str]| -> String {
            let args: Vec<&str> = ["-i", protocol, "-u", url]
                .iter()
                .chain(extra)
                .copied()
                .collect();
            fails(&args, 1)
        };
        let err = err_with(&["-m", "no_such_model", &coffee]);
        assert!(
            err.contains("failed to get model metadata"),
            "{protocol}: {err}"
        );
        assert!(err.contains("no_such_model"), "{protocol}: {err}");
        let err = err_with(&["-m", MODEL, "-b", "9", &coffee]);
        assert!(
            err.contains("expecting batch size <= 8 for model 'efficientnet_lite0_onnx'"),
            "{protocol}: {err}"
        );
        let err = err_with(&["-m", "simple", &coffee]);
        assert!(
            err.contains("expecting 1 input, got 2"),
            "{protocol}: {err}"
        );
        let err = err_with(&["-m", MODEL, "-x", "7", &coffee]);
        assert!(
            err.starts_with("error: failed to get model metadata"),
            "{protocol}: {err}"
        );

        // Files: a missing one, and one that is not an image.
        let err = err_with(&["-m", MODEL, "/no/such/image.png"]);
        assert!(
            err.contains("Failed to find '/no/such/image.png'"),
            "{protocol}: {err}"
        );
        let bad = dir.path().join("notes.png");
        std::fs::write(&bad, "not a picture").unwrap();
        let err = err_with(&["-m", MODEL, &bad.display().to_string()]);
        assert!(
            err.contains("unable to decode image") && err.contains(&bad.display().to_string()),
            "{protocol}: {err}"
        );
    }
}
