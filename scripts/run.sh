#!/usr/bin/env bash
# Builds Ferrite (release) and runs it on the example model repository, in the foreground.
# Extra arguments go to the server, e.g.:
#   scripts/run.sh --http-port 9000 --log-verbose 1
# Ports default to tritonserver's: HTTP 8000, gRPC 8001, metrics 8002.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

echo "[run] cargo build --release -p ferrite-server -p ferrite-driver-cpu"
cargo build --release -p ferrite-server -p ferrite-driver-cpu

# The CPU driver loads ONNX Runtime from beside itself.
bash scripts/setup.sh --copy-ort target/release

echo "[run] target/release/ferrite --model-repository configs/models $*"
exec target/release/ferrite --model-repository configs/models "$@"
