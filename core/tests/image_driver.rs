//! The Server facade with the image driver loaded through the real ABI: the example
//! `preprocess_image` model (configs/models/preprocess_image/config.pbtxt) in a temporary
//! repository, fed configs/images/coffee.png. Its answer must be, bit for bit, what
//! `ferrite_imaging` (image_client's preprocessing) makes of the same file, and a corrupt
//! image must fail only its own request, naming the row.
//!
//! Needs `cargo build -p ferrite-driver-image` (the driver library in target/debug) and
//! `scripts/setup.sh` (the sample images). Without them the tests skip with a message, unless
//! FERRITE_REQUIRE_DRIVERS is set (scripts/test.sh), where they fail.

#[allow(dead_code)]
mod common;

use bytes::Bytes;
use common::{target, workspace};
use ferrite_core::{DataType, ErrorCode, InferenceRequest, Server, ServerOptions, Tensor};
use ferrite_imaging::{ElementType, Format, InputSpec, Scaling};

const MODEL: &str = "preprocess_image";

/// Whether the drivers and the sample image are there (else skip, or fail when
/// FERRITE_REQUIRE_DRIVERS is set).
fn ready() -> bool {
    common::built() && common::present(&[workspace().join("configs/images/coffee.png")])
}

/// A server on a temporary repository holding the example model, its configuration with
/// `extra` appended, and an empty version folder.
fn server(extra: &str) -> Option<(tempfile::TempDir, Server)> {
    if !ready() {
        return None;
    }
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path().join(MODEL);
    std::fs::create_dir_all(dir.join("1")).unwrap();
    let config = std::fs::read_to_string(
        workspace()
            .join("configs/models")
            .join(MODEL)
            .join("config.pbtxt"),
    )
    .unwrap();
    std::fs::write(dir.join("config.pbtxt"), format!("{config}\n{extra}\n")).unwrap();
    let options = ServerOptions {
        model_repositories: vec![repo.path().to_path_buf()],
        backend_directory: target(),
        ..Default::default()
    };
    let server = Server::start(options).expect("server starts");
    let index = server.index(false);
    let row = index.iter().find(|e| e.name == MODEL).unwrap();
    assert_eq!(
        row.state.map(|s| s.as_str()),
        Some("READY"),
        "{}",
        row.reason
    );
    Some((repo, server))
}

/// A request of one row per image.
fn request(images: &[&[u8]]) -> InferenceRequest {
    let mut data = Vec::new();
    for image in images {
        ferrite_core::tensor::push_bytes_element(&mut data, image);
    }
    InferenceRequest {
        model_name: MODEL.into(),
        inputs: vec![Tensor::new(
            "IMAGE",
            DataType::Bytes,
            vec![images.len() as i64, 1],
            Bytes::from(data),
        )],
        ..Default::default()
    }
}

fn coffee() -> Vec<u8> {
    std::fs::read(workspace().join("configs/images/coffee.png")).unwrap()
}

/// What image_client sends for `bytes`: NCHW 3x224x224 FP32, LITE scaling.
fn reference(bytes: &[u8]) -> Vec<u8> {
    let spec = InputSpec {
        channels: 3,
        height: 224,
        width: 224,
        format: Format::Nchw,
        datatype: ElementType::Fp32,
    };
    let image = ferrite_imaging::decode(bytes).unwrap();
    ferrite_imaging::preprocess(&image, &spec, Scaling::Lite).unwrap()
}

#[tokio::test]
async fn preprocesses_as_image_client_does() {
    let Some((_repo, server)) = server("") else {
        return;
    };
    let png = coffee();
    let response = server.infer_one(request(&[&png])).await.unwrap();
    assert_eq!(response.outputs.len(), 1);
    let output = &response.outputs[0];
    assert_eq!(output.name, "input");
    assert_eq!(output.datatype, DataType::Fp32);
    assert_eq!(output.shape, vec![1, 3, 224, 224]);
    assert!(
        output.data[..] == reference(&png)[..],
        "the driver's tensor differs from ferrite_imaging's"
    );

    // two rows of one request, one of them corrupt: the request fails, naming the row
    let mut corrupt = png.clone();
    corrupt.truncate(png.len() / 3);
    let e = server
        .infer_one(request(&[&png, &corrupt]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArg);
    assert_eq!(
        e.message(),
        "model 'preprocess_image' input 'IMAGE' row 1: truncated PNG image: the data ends before the image"
    );
    let e = server
        .infer_one(request(&[b"not an image"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArg);
    assert!(
        e.message()
            .ends_with("input 'IMAGE' row 0: not a PNG or JPEG image"),
        "{}",
        e.message()
    );

    // the model is still serving
    let again = server.infer_one(request(&[&png, &png])).await.unwrap();
    assert_eq!(again.outputs[0].shape, vec![2, 3, 224, 224]);
    assert!(again.outputs[0].data[..] == [reference(&png), reference(&png)].concat()[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_image_fails_only_its_request_of_a_batch() {
    let Some((_repo, server)) = server("dynamic_batching { max_queue_delay_microseconds: 500000 }")
    else {
        return;
    };
    let png = coffee();
    let good = server.infer_one(request(&[&png]));
    let bad = server.infer_one(request(&[b"\x89PNG\r\n\x1a\n garbage"]));
    let (good, bad) = tokio::join!(good, bad);
    let good = good.expect("the good request of the batch is answered");
    assert!(good.outputs[0].data[..] == reference(&png)[..]);
    let e = bad.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArg);
    assert!(
        e.message()
            .starts_with("model 'preprocess_image' input 'IMAGE' row 0: "),
        "{}",
        e.message()
    );
    let stats = server.statistics(Some(MODEL), None).unwrap();
    assert_eq!(
        stats[0].execution_count, 1,
        "both requests should have run as one batch"
    );
}
