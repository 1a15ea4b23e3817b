#!/usr/bin/env bash
# Everything CI runs: setup, a debug build, the Rust tests, then the end-to-end tests that
# start target/debug/ferrite on port 0 and drive it with tritonclient and raw HTTP.
# Every stage runs even when an earlier test stage failed (a failed build stops it);
# the exit status is non-zero when anything failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

stage() { printf '\n[test] === %s\n' "$*"; }
failed=()

stage "setup"
bash scripts/setup.sh

stage "cargo build --workspace"
cargo build --workspace
# The CPU driver loads ONNX Runtime from beside itself; the e2e tests use target/debug.
bash scripts/setup.sh --copy-ort target/debug

stage "cargo test --workspace"
# Tests that need the CPU driver and ONNX Runtime fail here instead of skipping.
FERRITE_REQUIRE_DRIVERS=1 cargo test --workspace || failed+=("cargo test")

stage "pytest tests/e2e"
.venv/bin/python -m pytest tests/e2e -v -ra || failed+=("pytest tests/e2e")

if [ "${#failed[@]}" -gt 0 ]; then
    printf '\n[test] FAILED: %s\n' "${failed[*]}"
    exit 1
fi
printf '\n[test] all stages passed\n'
