#!/usr/bin/env bash
# Cross-checks ferrite-perf against Triton's own perf_analyzer: both tools load the same
# Ferrite server (model `simple`) over HTTP and gRPC, step by step over a concurrency sweep
# and then a request-rate sweep. Prints a table (each tool's throughput, the difference, each
# tool's client CPU per request, each tool's throughput against the server's own request
# count) and exits non-zero when a step fails its gate. At a fixed request rate both tools
# offer the same load: their throughput must agree within the tolerance, and ferrite-perf's
# must match the server's count. At a fixed concurrency the load each tool makes depends on
# its own CPU cost per request (client and server share the cores), so by default those steps
# gate on each tool measuring what the server served; the difference is printed.
#
#   scripts/crosscheck_perf.sh [options]
#     --protocols http,grpc          protocols to sweep (default both)
#     --concurrency 1,2,4,8,16       a list, or perf_analyzer's START:END[:STEP] (linear)
#     --request-rates 1000,4000,8000,16000
#                                    request rates per second to compare at ('' = none)
#     --measurement-interval MS      both tools' measurement window (default 1000)
#     --stability-percentage P       both tools' -s (default 10, perf_analyzer's own)
#     --max-trials N                 both tools' -r: windows before giving up on stability (6)
#     --gate throughput|accuracy|both
#                                    what fails a concurrency step (default accuracy):
#                                      throughput: the tools differ by more than --tolerance
#                                      accuracy: a tool's throughput differs from the server's
#                                        count over its final windows by more than
#                                        --accuracy-tolerance
#     --rate-gate throughput|accuracy|both
#                                    what fails a request-rate step (default both)
#     --tolerance PCT                allowed throughput difference between the tools (10)
#     --accuracy-tolerance PCT       allowed difference from the server's count (5)
#     --retries N                    times a failing step is measured again (2)
#     --model NAME                   model in configs/models (default simple)
#     --pa-only                      run only perf_analyzer (no ferrite-perf; exit 2)
#     --server-cpus LIST             pin the server to these CPUs (taskset -c LIST, e.g. 0)
#     --client-cpus LIST             pin both tools to these CPUs (e.g. 1): with the two
#                                    apart, a tool's own CPU cost no longer takes the
#                                    server's, and the concurrency steps measure the server
#     --no-build                     use target/release as it is
#
# What it does:
#  1. perf_analyzer: Triton's binary from the tritonclient 2.50.0 wheel (manylinux1 x86_64,
#     tritonclient-2.50.0.data/data/bin/perf_analyzer). It needs libb64.so.0d and
#     libcudart.so.12, which Debian does not have; both are in the nvidia-pytriton 0.7.0
#     wheel's nvidia_pytriton.libs/ under auditwheel's hashed names (no GPU is needed: CUDA
#     is only linked). The wheels are fetched with `pip download --no-deps` into
#     .cache/crosscheck/wheels/ and only those three files are unpacked into
#     .cache/crosscheck/pa/, with links under the names the binary asks for. Whatever else
#     `ldd` finds missing is looked for in the same folder of that wheel. Skipped when done.
#  2. Builds the release server, CPU driver and ferrite-perf (cargo waits for other builds'
#     lock), copies ONNX Runtime beside them, starts target/release/ferrite on free ports
#     (read from its log) and stops it on exit.
#  3. scripts/crosscheck_perf.py runs the sweep: each tool once per step with the same flags
#     (-m -u -i --concurrency-range C:C --measurement-interval -s -r -v -f), alternating
#     which tool goes first; each tool's CPU time from the kernel (wait4); request counts
#     from the server's statistics, also sampled every 50 ms to check each tool's throughput
#     against what the server served; the CPU other processes took meanwhile. A failing
#     step is measured again (opposite order) unless both tools were stable on a quiet
#     machine, and each tool's best run counts: on a busy 2-core machine noise only takes
#     throughput away. Before each run it waits up to 3 s for other processes to go quiet.
#     Files go to .cache/crosscheck/results/<time>/.
#
# A default run: 2 protocols x 9 steps x 2 tools, about 4-5 minutes plus repeats. Bounded:
# no repeat is started after 5 minutes of measuring and no run at all after 8 (the steps
# left out fail); a run is killed after 20 s (at the defaults) or when it holds more than
# 4 GiB (a CPU-starved perf_analyzer can run away); so at most ~8.5 minutes plus the build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CACHE="$ROOT/.cache/crosscheck"
WHEELS="$CACHE/wheels"
PA_DIR="$CACHE/pa"
TRITONCLIENT_VERSION=2.50.0
PYTRITON_VERSION=0.7.0
TC_WHEEL="tritonclient-$TRITONCLIENT_VERSION-py3-none-manylinux1_x86_64.whl"
PT_WHEEL="nvidia_pytriton-$PYTRITON_VERSION-py3-none-manylinux_2_35_x86_64.whl"
PT_LIBS="nvidia_pytriton.libs"

say() { printf '[crosscheck] %s\n' "$*"; }
die() {
    printf '[crosscheck] ERROR: %s\n' "$*" >&2
    exit 1
}

PROTOCOLS=http,grpc
CONCURRENCY=1,2,4,8,16
RATES=1000,4000,8000,16000
RATE_GATE=both
INTERVAL=1000
STABILITY=10
MAX_TRIALS=6
TOLERANCE=10
RETRIES=2
GATE=accuracy
ACCURACY=5
MODEL=simple
PA_ONLY=0
BUILD=1
SERVER_CPUS=""
CLIENT_CPUS=""
while [ $# -gt 0 ]; do
    case "$1" in
    --protocols) PROTOCOLS="$2"; shift 2 ;;
    --concurrency | --concurrency-range) CONCURRENCY="$2"; shift 2 ;;
    --measurement-interval) INTERVAL="$2"; shift 2 ;;
    --stability-percentage) STABILITY="$2"; shift 2 ;;
    --max-trials) MAX_TRIALS="$2"; shift 2 ;;
    --tolerance) TOLERANCE="$2"; shift 2 ;;
    --retries) RETRIES="$2"; shift 2 ;;
    --gate) GATE="$2"; shift 2 ;;
    --request-rates) RATES="$2"; shift 2 ;;
    --rate-gate) RATE_GATE="$2"; shift 2 ;;
    --accuracy-tolerance) ACCURACY="$2"; shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    --pa-only) PA_ONLY=1; shift ;;
    --server-cpus) SERVER_CPUS="$2"; shift 2 ;;
    --client-cpus) CLIENT_CPUS="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done

server_pin=() client_pin=()
if [ -n "$SERVER_CPUS$CLIENT_CPUS" ]; then
    command -v taskset >/dev/null || die "--server-cpus/--client-cpus need taskset (util-linux)"
    [ -z "$SERVER_CPUS" ] || server_pin=(taskset -c "$SERVER_CPUS")
    [ -z "$CLIENT_CPUS" ] || client_pin=(taskset -c "$CLIENT_CPUS")
fi
[ "$(uname -m)" = x86_64 ] || die "perf_analyzer from the tritonclient wheel is x86_64 only (this is $(uname -m))"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3)" || die "need python3 (or scripts/setup.sh's .venv)"

# --- 1. perf_analyzer -----------------------------------------------------------------------

fetch_wheel() { # SPEC FILE PLATFORM
    [ -s "$WHEELS/$2" ] && return 0
    say "pip download --no-deps $1 -> .cache/crosscheck/wheels/"
    mkdir -p "$WHEELS"
    "$PY" -m pip download --disable-pip-version-check --no-input --progress-bar off -q \
        --no-deps --only-binary=:all: --platform "$3" \
        -d "$WHEELS" "$1"
    [ -s "$WHEELS/$2" ] || die "pip download $1 did not leave $2 in $WHEELS"
}

setup_perf_analyzer() {
    local pa="$PA_DIR/perf_analyzer"
    fetch_wheel "tritonclient==$TRITONCLIENT_VERSION" "$TC_WHEEL" manylinux1_x86_64
    fetch_wheel "nvidia-pytriton==$PYTRITON_VERSION" "$PT_WHEEL" manylinux_2_35_x86_64
    mkdir -p "$PA_DIR"
    # Unpacks the named members of a wheel into $PA_DIR (flat), then links each library
    # under the name perf_analyzer asks for; a no-op for what is already there.
    "$PY" - "$WHEELS/$TC_WHEEL" "tritonclient-$TRITONCLIENT_VERSION.data/data/bin/perf_analyzer" \
        "$WHEELS/$PT_WHEEL" "$PT_LIBS" "$PA_DIR" <<'EOF'
import os, re, shutil, subprocess, sys, zipfile
tc_wheel, pa_member, pt_wheel, libs, dest = sys.argv[1:]

def extract(wheel, member, mode=0o755):
    out = os.path.join(dest, os.path.basename(member))
    with zipfile.ZipFile(wheel) as z:
        info = z.getinfo(member)
        if os.path.exists(out) and os.path.getsize(out) == info.file_size:
            return out
        with z.open(info) as src, open(out + ".part", "wb") as dst:
            shutil.copyfileobj(src, dst)
    os.chmod(out + ".part", mode)
    os.replace(out + ".part", out)
    print(f"[crosscheck] unpacked {os.path.basename(wheel)}: {member}")
    return out

pa = extract(tc_wheel, pa_member)
pt_members = zipfile.ZipFile(pt_wheel).namelist()
env = dict(os.environ, LD_LIBRARY_PATH=dest)
for _ in range(10):  # the libraries found may need others of their own
    missing = set()
    for f in [pa] + [os.path.join(dest, n) for n in os.listdir(dest) if ".so" in n]:
        ldd = subprocess.run(["ldd", f], env=env, capture_output=True, text=True).stdout
        missing |= set(re.findall(r"^\s*(\S+) => not found", ldd, re.M))
    if not missing:
        break
    for name in sorted(missing):
        # auditwheel renames libX.so.V to libX-<hash>.so.V[.more]
        m = re.fullmatch(r"(.+?)\.so(\..+)?", name)
        if m is None:
            sys.exit(f"[crosscheck] ERROR: perf_analyzer needs {name}, not on this system")
        base, ver = m.group(1), m.group(2) or ""
        pat = re.compile(re.escape(f"{libs}/{base}-") + r"[0-9a-f]{8}\.so" + re.escape(ver) + r"(\..*)?$")
        found = [n for n in pt_members if pat.match(n)]
        if not found:
            sys.exit(f"[crosscheck] ERROR: perf_analyzer needs {name}: not on this system, "
                     f"and not in {os.path.basename(pt_wheel)} ({libs}/{base}-*.so{ver}*)")
        real = os.path.basename(extract(pt_wheel, found[0], 0o644))
        link = os.path.join(dest, name)
        if os.path.islink(link) or os.path.exists(link):
            os.remove(link)
        os.symlink(real, link)
        print(f"[crosscheck] {name} -> {real}")
else:
    sys.exit("[crosscheck] ERROR: still missing libraries after 10 rounds")
EOF
    local v
    v="$(LD_LIBRARY_PATH="$PA_DIR" "$pa" --version 2>&1 | head -1)" ||
        die "$pa does not run: $v"
    say "perf_analyzer: $pa ($v; from $TC_WHEEL, libraries from $PT_WHEEL)"
    PA="$pa"
}
setup_perf_analyzer

# --- 2. build and start the server ----------------------------------------------------------

HAVE_FP=0
[ "$PA_ONLY" = 1 ] || [ -f clients/perf/Cargo.toml ] || die "clients/perf (ferrite-perf) is not here; --pa-only runs perf_analyzer alone"
[ "$PA_ONLY" = 1 ] || HAVE_FP=1
if [ "$BUILD" = 1 ]; then
    [ -s configs/models/$MODEL/1/model.onnx ] || bash scripts/setup.sh
    pkgs=(-p ferrite-server -p ferrite-driver-cpu -p ferrite-driver-image -p ferrite-driver-tokenizer -p ferrite-driver-postprocess)
    [ "$HAVE_FP" = 0 ] || pkgs+=(-p ferrite-perf)
    say "cargo build --release ${pkgs[*]}"
    cargo build --release "${pkgs[@]}"
    bash scripts/setup.sh --copy-ort target/release
fi
SERVER="$ROOT/target/release/ferrite"
FP="$ROOT/target/release/ferrite-perf"
[ -x "$SERVER" ] || die "$SERVER is missing"
[ "$HAVE_FP" = 0 ] || [ -x "$FP" ] || die "$FP is missing"

STAMP="$(date +%Y%m%d-%H%M%S)"
OUT="$CACHE/results/$STAMP"
mkdir -p "$OUT"
SERVER_LOG="$OUT/server.log"
SERVER_PID=""
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
SWEEP_PID=""
stop_sweep() {
    [ -n "$SWEEP_PID" ] || return 0
    kill -TERM "$SWEEP_PID" 2>/dev/null || true # it kills the tool it is running
    wait "$SWEEP_PID" 2>/dev/null || true
    SWEEP_PID=""
}
trap 'stop_sweep; stop_server' EXIT
trap 'exit 130' INT TERM

say "starting ${server_pin[*]} $SERVER --model-repository configs/models --http-port 0 --grpc-port 0 (log: $SERVER_LOG)"
"${server_pin[@]}" "$SERVER" --model-repository configs/models --http-port 0 --grpc-port 0 --metrics-port 0 >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

listen_addr() { # SERVICE -> HOST:PORT a client can dial
    sed -n "s/.*Started $1 at \(.*\)$/\1/p" "$SERVER_LOG" | head -1 |
        sed -e 's/^0\.0\.0\.0:/127.0.0.1:/' -e 's/^\[::\]:/[::1]:/'
}
HTTP_URL="" GRPC_URL=""
for _ in $(seq 1 600); do
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$SERVER_LOG" >&2; die "the server exited"; }
    HTTP_URL="$(listen_addr HTTPService)"
    GRPC_URL="$(listen_addr GRPCInferenceService)"
    [ -z "$HTTP_URL" ] || [ -z "$GRPC_URL" ] || break
    sleep 0.1
done
[ -n "$HTTP_URL" ] && [ -n "$GRPC_URL" ] || die "no 'Started ... at' lines in $SERVER_LOG after 60 s"
for _ in $(seq 1 300); do
    "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(f"http://{sys.argv[1]}/v2/health/ready", timeout=2)' \
        "$HTTP_URL" 2>/dev/null && break
    sleep 0.2
done
say "server pid $SERVER_PID: HTTP $HTTP_URL, gRPC $GRPC_URL"

# --- 3. the sweep ---------------------------------------------------------------------------

fp_args=()
[ "$HAVE_FP" = 0 ] || fp_args=(--ferrite-perf "$FP")
# In the background so that a signal reaches this script's trap at once (bash runs traps
# only between commands; `wait` is interruptible).
"${client_pin[@]}" "$PY" scripts/crosscheck_perf.py \
    --perf-analyzer "$PA" --pa-lib-dir "$PA_DIR" "${fp_args[@]}" \
    --http-url "$HTTP_URL" --grpc-url "$GRPC_URL" --server-pid "$SERVER_PID" \
    --model "$MODEL" --protocols "$PROTOCOLS" --concurrency "$CONCURRENCY" \
    --measurement-interval "$INTERVAL" --stability-percentage "$STABILITY" \
    --max-trials "$MAX_TRIALS" --gate "$GATE" --rate-gate "$RATE_GATE" --request-rates "$RATES" --tolerance "$TOLERANCE" --accuracy-tolerance "$ACCURACY" \
    --retries "$RETRIES" \
    --out "$OUT" &
SWEEP_PID=$!
rc=0
wait "$SWEEP_PID" || rc=$?
SWEEP_PID=""
stop_server
exit "$rc"
