//! The preprocessing against the Python reference, byte for byte: `scripts/models/preprocess.py`
//! (the numpy port of Pillow's BILINEAR resize that `scripts/models/expected.json` was computed
//! with, itself checked against Pillow) and the formulas of Triton's `image_client.py`.
//!
//! With `.venv/bin/python` (scripts/setup.sh makes it), `tests/reference.py` writes the
//! reference tensors and every byte is compared. Without it, the checksums and sampled values
//! of `tests/fixtures/preprocess_reference.json` (written by the same script) are compared.
//! `FERRITE_UPDATE_FIXTURES=1` rewrites that file from the live reference.
//! The sample images come from scripts/setup.sh; without them the test is skipped, unless
//! FERRITE_REQUIRE_DRIVERS=1 (scripts/test.sh), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferrite_image_client::preprocess::{
    ElementType, Format, InputSpec, Scaling, decode, preprocess, resized_pixels, to_tensor,
};
use serde_json::Value;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess_reference.json")
}

fn required() -> bool {
    std::env::var_os("FERRITE_REQUIRE_DRIVERS").is_some()
}

/// [sum of bytes, sum of (i + 1) * byte, wrapping] -- `checksum` of tests/reference.py.
fn checksum(data: &[u8]) -> [u64; 2] {
    let mut sum = 0u64;
    let mut weighted = 0u64;
    for (i, &b) in data.iter().enumerate() {
        sum = sum.wrapping_add(u64::from(b));
        weighted = weighted.wrapping_add((i as u64 + 1).wrapping_mul(u64::from(b)));
    }
    [sum, weighted]
}

/// The reference's output: its JSON summary and the folder of .bin files.
fn live_reference() -> Option<(Value, tempfile::TempDir)> {
    let python = workspace().join(".venv/bin/python");
    if !python.is_file() {
        assert!(
            !required(),
            "{} is missing; run scripts/setup.sh",
            python.display()
        );
        eprintln!("NOTE: no .venv/bin/python; comparing with the checked-in fixture only");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(workspace())
        .arg(dir.path())
        .output()
        .expect("run the Python reference");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!required(), "tests/reference.py failed: {err}");
        eprintln!("NOTE: tests/reference.py failed ({err}); comparing with the fixture only");
        return None;
    }
    let summary: Value = serde_json::from_slice(&out.stdout).expect("reference JSON");
    Some((summary, dir))
}

/// This crate's bytes for each case of tests/reference.py.
fn cases(path: &Path) -> Vec<(&'static str, ElementType, Vec<u8>)> {
    let img = decode(path).unwrap();
    let spec = |channels, height, width, format| InputSpec {
        channels,
        height,
        width,
        format,
        datatype: ElementType::Fp32,
    };
    let rgb_nchw = spec(3, 224, 224, Format::Nchw);
    let rgb_nhwc = spec(3, 224, 224, Format::Nhwc);
    let resized = resized_pixels(&img, &rgb_nchw).unwrap();
    vec![
        ("resized", ElementType::Uint8, resized.clone()),
        (
            "lite",
            ElementType::Fp32,
            to_tensor(&resized, &rgb_nchw, Scaling::Lite),
        ),
        (
            "inception",
            ElementType::Fp32,
            to_tensor(&resized, &rgb_nchw, Scaling::Inception),
        ),
        (
            "vgg_nhwc",
            ElementType::Fp32,
            to_tensor(&resized, &rgb_nhwc, Scaling::Vgg),
        ),
        (
            "grey_nhwc",
            ElementType::Fp32,
            preprocess(&img, &spec(1, 120, 160, Format::Nhwc), Scaling::None).unwrap(),
        ),
    ]
}

fn element(data: &[u8], dt: ElementType, i: usize) -> f64 {
    match dt {
        ElementType::Uint8 => f64::from(data[i]),
        ElementType::Fp32 => f64::from(f32::from_le_bytes(
            data[i * 4..i * 4 + 4].try_into().unwrap(),
        )),
        _ => unreachable!(),
    }
}

/// Compares this crate's bytes with the summary (checksums and sampled values).
fn check_summary(summary: &Value, what: &str, workspace: &Path) {
    for (name, entry) in summary.as_object().unwrap() {
        let path = workspace.join("configs/images").join(name);
        let file = std::fs::read(&path).unwrap();
        assert_eq!(
            serde_json::to_value(checksum(&file)).unwrap(),
            entry["file"],
            "{name} is not the image {what} was made from"
        );
        for (case, dt, data) in cases(&path) {
            let want = &entry[case];
            assert_eq!(
                serde_json::to_value(checksum(&data)).unwrap(),
                want["checksum"],
                "{name} {case}: checksum differs from {what}"
            );
            for s in want["samples"].as_array().unwrap() {
                let (i, v) = (s[0].as_u64().unwrap() as usize, s[1].as_f64().unwrap());
                assert_eq!(element(&data, dt, i), v, "{name} {case}[{i}] vs {what}");
            }
        }
    }
}

#[test]
fn preprocessing_matches_the_python_reference() {
    let ws = workspace();
    let have_images = ["coffee.png", "chelsea.png"]
        .iter()
        .all(|n| ws.join("configs/images").join(n).is_file());
    if !have_images {
        assert!(
            !required(),
            "configs/images is missing; run scripts/setup.sh"
        );
        eprintln!("SKIPPED: configs/images/*.png not generated (run scripts/setup.sh)");
        return;
    }

    let fixture_text = std::fs::read_to_string(fixture_path()).ok();
    let live = live_reference();

    if let Some((summary, dir)) = &live {
        for (name, entry) in summary.as_object().unwrap() {
            assert_eq!(
                entry["pillow_agrees"],
                Value::Bool(true),
                "preprocess.py's resize of {name} is not Pillow's"
            );
            let stem = Path::new(name).file_stem().unwrap().to_str().unwrap();
            for (case, _, data) in cases(&ws.join("configs/images").join(name)) {
                let want = std::fs::read(dir.path().join(format!("{stem}.{case}.bin"))).unwrap();
                assert_eq!(data.len(), want.len(), "{name} {case}: size");
                let diffs = data.iter().zip(&want).filter(|(a, b)| a != b).count();
                assert_eq!(
                    diffs, 0,
                    "{name} {case}: {diffs} bytes differ from the reference"
                );
            }
        }
        check_summary(summary, "the live reference", &ws);
        if std::env::var_os("FERRITE_UPDATE_FIXTURES").is_some() {
            let text = serde_json::to_string_pretty(summary).unwrap() + "\n";
            std::fs::write(fixture_path(), text).unwrap();
            eprintln!("wrote {}", fixture_path().display());
        } else {
            let fixture: Value = serde_json::from_str(
                fixture_text
                    .as_deref()
                    .expect("tests/fixtures/preprocess_reference.json"),
            )
            .unwrap();
            assert_eq!(
                &fixture, summary,
                "the fixture is stale: rerun with FERRITE_UPDATE_FIXTURES=1"
            );
        }
    }

    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_path()).expect("tests/fixtures/preprocess_reference.json"),
    )
    .unwrap();
    check_summary(&fixture, "the fixture", &ws);
}
