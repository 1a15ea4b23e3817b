#!/usr/bin/env bash
# The GPU benchmark (frontends/server/benches/gpu.rs): EfficientNet-Lite0 on GPU 0 through the
# server with dynamic batching at concurrency 64, against in-process ONNX Runtime CUDA, at
# batch 1, 8 and 32. Needs an NVIDIA GPU; elsewhere it says why and measures nothing.
#
# The GPU runtime (onnxruntime-gpu and NVIDIA's CUDA libraries) comes from
# scripts/setup_gpu.sh; on a machine without network whose Python already has them, set
# FERRITE_GPU_PYTHON=/path/to/python to take them from there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
cargo build --release -p ferrite-server -p ferrite-driver-cpu -p ferrite-driver-cuda -p ferrite-driver-image -p ferrite-driver-tokenizer -p ferrite-driver-postprocess
bash scripts/setup.sh --copy-ort target/release
if [ -n "${FERRITE_GPU_PYTHON:-}" ]; then
    bash scripts/setup_gpu.sh --from-python "$FERRITE_GPU_PYTHON" target/release || echo "[bench_gpu] no GPU runtime; the benchmark will say what is missing"
else
    bash scripts/setup_gpu.sh target/release || echo "[bench_gpu] no GPU runtime; the benchmark will say what is missing"
fi
cargo bench -p ferrite-server --bench gpu
