#!/usr/bin/env bash
# Prepares what the CUDA driver (drivers/cuda) loads at run time: ONNX Runtime's GPU build and
# the CUDA 13 / cuDNN 9 user-space libraries, all from PyPI wheels. Idempotent: run it as often
# as you like; each step is skipped when it is already done.
#
#   scripts/setup_gpu.sh DIR                    .venv-gpu with onnxruntime-gpu[cuda,cudnn]==1.31.1,
#                                               then DIR/onnxruntime-gpu/ from it
#   scripts/setup_gpu.sh --from-python PY DIR   DIR/onnxruntime-gpu/ from the packages that the
#                                               interpreter PY already has (no network needed)
#   scripts/setup_gpu.sh --check DIR            what DIR/onnxruntime-gpu/ has and lacks; exits
#                                               non-zero when a required library is missing
#
# DIR is where libferrite_driver_cuda.so is (a cargo profile directory such as target/release):
# the driver looks for ONNX Runtime and the CUDA libraries in the onnxruntime-gpu/ folder beside
# itself. That folder gets copies of ONNX Runtime's three libraries and symbolic links to every
# library of the nvidia-* wheels (use `cp -rL` to move it elsewhere). .venv-gpu is separate from
# .venv because the onnxruntime and onnxruntime-gpu wheels install the same Python package.
#
# Not from here: the NVIDIA driver itself (libcuda.so.1, libnvidia-ml.so.1; CUDA 13 needs
# driver 580 or newer), which comes with the GPU's driver installation.
# Environment:
#   PYTHON=python3    interpreter the .venv-gpu is made from
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

VENV="$ROOT/.venv-gpu"
VPY="$VENV/bin/python"
STAMP="$VENV/.ferrite-gpu-requirements.sha256"
SUBDIR="onnxruntime-gpu"

# The wheels, pinned to what `pip install --dry-run 'onnxruntime-gpu[cuda,cudnn]==1.31.1'`
# resolved (the extras name only ~=13.0 style ranges), so that every machine gets the same files.
PIP_SPEC=(
    'onnxruntime-gpu[cuda,cudnn]==1.31.1'
    nvidia-cuda-runtime==13.5.37
    nvidia-cuda-nvrtc==13.5.37
    nvidia-cublas==13.10.0.20
    nvidia-curand==10.4.5.25
    nvidia-cufft==12.5.0.14
    nvidia-nvjitlink==13.5.37
    nvidia-cudnn-cu13==9.28.0.42
)

# onnxruntime/capi/ of the onnxruntime-gpu wheel: copied.
ORT_LIBS=(libonnxruntime.so.1.31.1 libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so)
# What the driver preloads (from onnxruntime-gpu/, else the system library path), and
# libnvJitLink, which libcufft needs. site-packages/nvidia/*/lib: linked.
CUDA_LIBS=(
    libcudart.so.13 libcublasLt.so.13 libcublas.so.13 libnvrtc.so.13 libnvJitLink.so.13
    libcurand.so.10 libcufft.so.12
    libcudnn.so.9 libcudnn_graph.so.9 libcudnn_ops.so.9 libcudnn_heuristic.so.9
    libcudnn_adv.so.9 libcudnn_cnn.so.9 libcudnn_engines_precompiled.so.9
    libcudnn_engines_runtime_compiled.so.9
)

say() { printf '[setup-gpu] %s\n' "$*"; }
die() {
    printf '[setup-gpu] ERROR: %s\n' "$*" >&2
    exit 1
}
# shellcheck disable=SC2154 # rc is assigned inside the trap's own text
trap 'rc=$?; [ "$rc" -eq 0 ] || printf "[setup-gpu] FAILED (exit %s)\n" "$rc" >&2' EXIT

usage="usage: scripts/setup_gpu.sh DIR | --from-python PY DIR | --check DIR"

# --- checking a folder ----------------------------------------------------------------------

# The system's dynamic loader cache (`ldconfig -p`), or nothing.
ldconfig_p() {
    local ldc
    ldc="$(command -v ldconfig || true)"
    [ -n "$ldc" ] || ldc=/sbin/ldconfig
    if [ -x "$ldc" ]; then "$ldc" -p 2>/dev/null || true; fi
}

# Lists every required library as ok / system / MISSING; returns how many are missing.
check_dir() {
    local dir="$1" d="$1/$SUBDIR" name sys cache missing=()
    cache="$(ldconfig_p)"
    say "checking $d/"
    for name in "${ORT_LIBS[@]}"; do
        if [ -f "$d/$name" ]; then
            printf '  ok       %s\n' "$name"
        else
            printf '  MISSING  %s\n' "$name"
            missing+=("$name")
        fi
    done
    for name in "${CUDA_LIBS[@]}"; do
        if [ -e "$d/$name" ]; then
            printf '  ok       %s\n' "$name"
        elif sys="$(printf '%s\n' "$cache" | awk -v n="$name" '$1 == n { print $NF; exit }')" &&
            [ -n "$sys" ]; then
            printf '  system   %s (not here; the system library path has %s)\n' "$name" "$sys"
        else
            printf '  MISSING  %s\n' "$name"
            missing+=("$name")
        fi
    done
    [ -e "$dir/libferrite_driver_cuda.so" ] ||
        say "note: $dir has no libferrite_driver_cuda.so (cargo build --release -p ferrite-driver-cuda)"
    if [ "${#missing[@]}" -gt 0 ]; then
        printf '[setup-gpu] missing from %s/: %s\n' "$d" "${missing[*]}" >&2
        return "${#missing[@]}"
    fi
    say "$d/ is complete"
}

# --- populating a folder from site-packages -------------------------------------------------

# purelib and platlib of interpreter $1, once each.
site_dirs() {
    "$1" -c 'import sysconfig
p = sysconfig.get_paths()
for d in dict.fromkeys([p["purelib"], p["platlib"]]):
    print(d)'
}

# populate DIR SITE_DIR...
populate() {
    local dir="$1" d="$1/$SUBDIR" site capi="" name src target link lib
    shift
    [ -d "$dir" ] || die "$dir is not a directory (build first, or mkdir it)"

    for site in "$@"; do
        if [ -f "$site/onnxruntime/capi/${ORT_LIBS[0]}" ]; then
            capi="$site/onnxruntime/capi"
            break
        fi
    done
    if [ -z "$capi" ]; then
        for site in "$@"; do
            if [ -d "$site/onnxruntime/capi" ]; then
                local found=()
                shopt -s nullglob
                found=("$site"/onnxruntime/capi/libonnxruntime.so.*)
                shopt -u nullglob
                die "$site/onnxruntime/capi has no ${ORT_LIBS[0]} (it has: ${found[*]##*/}); onnxruntime-gpu==1.31.1 is needed"
            fi
        done
        die "no onnxruntime package under $* (pip install 'onnxruntime-gpu[cuda,cudnn]==1.31.1')"
    fi
    [ -f "$capi/libonnxruntime_providers_cuda.so" ] ||
        die "the onnxruntime at $capi is the CPU build (no libonnxruntime_providers_cuda.so): install onnxruntime-gpu==1.31.1 instead, in an environment without the onnxruntime package"

    mkdir -p "$d"
    for name in "${ORT_LIBS[@]}"; do
        src="$capi/$name"
        [ -f "$src" ] || die "$src is missing (a broken onnxruntime-gpu install?)"
        if [ -f "$d/$name" ] && [ ! -L "$d/$name" ] && cmp -s "$src" "$d/$name"; then
            say "$d/$name is current"
        else
            say "copying $name into $d/"
            rm -f "$d/$name"
            cp -f "$src" "$d/$name"
        fi
    done

    local linked=0 kept=0 libdirs=()
    shopt -s nullglob
    for site in "$@"; do
        libdirs+=("$site"/nvidia/*/lib)
    done
    [ "${#libdirs[@]}" -gt 0 ] || say "no nvidia/*/lib under $* (no nvidia-* wheels installed there)"
    for lib in "${libdirs[@]}"; do
        for target in "$lib"/lib*.so*; do
            [ -f "$target" ] || continue
            link="$d/$(basename "$target")"
            if [ -L "$link" ] && [ "$(readlink "$link")" = "$target" ]; then
                kept=$((kept + 1))
            else
                rm -f "$link"
                ln -s "$target" "$link"
                linked=$((linked + 1))
            fi
        done
    done
    # Links left by an earlier run whose targets are gone (an uninstalled or upgraded wheel).
    for link in "$d"/*; do
        if [ -L "$link" ] && [ ! -e "$link" ]; then
            say "removing dangling link $link"
            rm -f "$link"
        fi
    done
    shopt -u nullglob
    say "$d/: $linked libraries linked, $kept already linked (from ${libdirs[*]:-nowhere})"

    check_dir "$dir" || die "$d/ is incomplete (see MISSING above)"
}

# --- arguments ------------------------------------------------------------------------------

case "${1:-}" in
--check)
    [ $# -eq 2 ] || die "$usage"
    [ -d "$2" ] || die "$2 is not a directory"
    check_dir "$2" || exit 1
    exit 0
    ;;
--from-python)
    [ $# -eq 3 ] || die "$usage"
    py="$2"
    command -v "$py" >/dev/null || die "$py: no such interpreter"
    mapfile -t sites < <(site_dirs "$py") || die "$py could not tell its site-packages"
    [ "${#sites[@]}" -gt 0 ] || die "$py could not tell its site-packages"
    say "from $py: ${sites[*]}"
    populate "$3" "${sites[@]}"
    exit 0
    ;;
-* | "")
    die "$usage"
    ;;
esac
[ $# -eq 1 ] || die "$usage"
DIR="$1"
[ -d "$DIR" ] || die "$DIR is not a directory (build first, or mkdir it)"

# --- .venv-gpu ------------------------------------------------------------------------------

PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (apt-get install python3, or set PYTHON=)"
if [ -x "$VPY" ] && "$VPY" -c 'import sys' 2>/dev/null; then
    say ".venv-gpu exists ($("$VPY" -c 'import sys; print(sys.version.split()[0])'))"
else
    "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null ||
        die "$PYTHON cannot make a virtual environment with pip (apt-get install python3-venv; scripts/setup.sh does that too)"
    [ ! -e "$VENV" ] || say ".venv-gpu is broken; making it again"
    rm -rf "$VENV"
    say "creating .venv-gpu"
    "$PYTHON" -m venv "$VENV"
fi

# --- the wheels, skipped while unchanged ----------------------------------------------------

spec_hash="$( {
    "$VPY" -c 'import sys; print(sys.version)'
    printf '%s\n' "${PIP_SPEC[@]}"
} | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$spec_hash" ]; then
    say "GPU wheels unchanged since the last install; skipping pip"
else
    say "pip install ${PIP_SPEC[*]} (into .venv-gpu: about 1.5 GB to download, 3 GB installed)"
    rm -f "$STAMP"
    "$VPY" -m pip install --disable-pip-version-check --no-input --progress-bar off -q \
        --only-binary=:all: "${PIP_SPEC[@]}"
    printf '%s\n' "$spec_hash" >"$STAMP"
    say "GPU wheels installed"
fi

mapfile -t sites < <(site_dirs "$VPY")
populate "$DIR" "${sites[@]}"
say "done"
