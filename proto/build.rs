//! Generates the Rust types, gRPC server and client code, and a
//! FileDescriptorSet (for prost-reflect) from the .proto files in `proto/`.

use std::{env, path::PathBuf};

const PROTOS: [&str; 3] = [
    "proto/grpc_service.proto",
    "proto/model_config.proto",
    "proto/health.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts run single-threaded; nothing else reads the
    // environment concurrently.
    unsafe { env::set_var("PROTOC", protoc) };

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Sorted maps: deterministic iteration (and JSON output).
        .btree_map(".")
        // Tensor payloads as `bytes::Bytes`: slices of the request body,
        // no copy.
        .bytes(".")
        .file_descriptor_set_path(out_dir.join("ferrite_descriptor.bin"))
        .compile_protos(&PROTOS, &["proto"])?;

    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
