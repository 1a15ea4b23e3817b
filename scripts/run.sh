#!/usr/bin/env bash
# Builds Ferrite (release) and runs it on the example model repository, in the foreground.
# Extra arguments go to the server, e.g.:
#   scripts/run.sh --http-port 9000 --log-verbose 1
# Ports default to tritonserver's: HTTP 8000, gRPC 8001, metrics 8002.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

# The server and every driver the example repository uses (ONNX on the CPU, image and text
# pre-processing, pooling and top-k).
DRIVERS=(-p ferrite-server -p ferrite-driver-cpu -p ferrite-driver-image -p ferrite-driver-tokenizer -p ferrite-driver-postprocess)
echo "[run] cargo build --release ${DRIVERS[*]}"
cargo build --release "${DRIVERS[@]}"

# The CPU driver loads ONNX Runtime from beside itself.
bash scripts/setup.sh --copy-ort target/release

echo "[run] target/release/ferrite --model-repository configs/models $*"
exec target/release/ferrite --model-repository configs/models "$@"
