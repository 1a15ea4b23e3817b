#!/usr/bin/env bash
# Prints the server's overhead on `simple` over HTTP at concurrency 1: the server's p50
# latency against ONNX Runtime's own run p50 on the same input (see
# frontends/server/benches/overhead.rs), then throughput at concurrency 1-16 over HTTP and gRPC
# (protocols.rs), dynamic batching (batching.rs), what the batcher adds to a lone request
# (batcher_delay.rs), the cost of metrics (metrics.rs),
# sequence batching with implicit state (sequences.rs), and the classify_image ensemble against
# client-side pre-processing (pipelines.rs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
cargo build --release -p ferrite-server -p ferrite-driver-cpu -p ferrite-driver-image -p ferrite-driver-tokenizer -p ferrite-driver-postprocess
bash scripts/setup.sh --copy-ort target/release
cargo bench -p ferrite-server --bench overhead
cargo bench -p ferrite-server --bench protocols
cargo bench -p ferrite-server --bench batching
cargo bench -p ferrite-server --bench batcher_delay
cargo bench -p ferrite-server --bench metrics
cargo bench -p ferrite-server --bench sequences
cargo bench -p ferrite-server --bench pipelines
