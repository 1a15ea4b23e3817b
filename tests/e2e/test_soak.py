"""Soak: explicit load / unload cycles of the example models while inference runs.

One server in --model-control-mode=explicit on a temporary repository with copies of `simple`,
`efficientnet_lite0_onnx` and `simple_int8`; only `simple_int8` is loaded at startup
(--load-model). A background thread infers on `simple_int8` over gRPC the whole time (every
reply checked; failures must be 0). The main loop, FERRITE_SOAK_CYCLES times (300 by default):
load `simple`, load `efficientnet_lite0_onnx`, one checked inference on each over HTTP, unload
both.

What must hold afterwards:
- the server's RSS (/proc/<pid>/status VmRSS; the lowest of ten readings over a second, so
  that buffers in flight at one instant do not count) after the last cycle is within 10% of
  its RSS after the first cycle (sampled every 50 cycles too; the series is printed), or,
  where the allocator still holds memory for the background traffic (seen on a busy 2-core
  machine: +17-22% at cycle 300 with the idle RSS back within 1-3%), its RSS once the
  traffic has stopped is: leaked memory would still be allocated then;
- the model threads (every thread but the I/O runtime's `ferrite-io` ones: instance, batcher,
  load and ONNX Runtime threads) after the last cycle are exactly those after the first cycle,
  name by name;
- once the traffic stops, the whole thread count returns to what it was just after startup
  (the `ferrite-io` runtime starts blocking threads on demand for loads, unloads and
  inferences and retires them after 10 s idle, so its count depends on the moment).

The allocator (FERRITE_SOAK_MALLOC):
- `stock` (the default): the server's environment has no GLIBC_TUNABLES or MALLOC_* settings,
  as on a user's machine. The server tunes glibc itself (fixed 1 MiB mmap and trim
  thresholds, so large weight buffers are mapped and unmapped) and calls malloc_trim after
  every unload (ferrite_core::driver::memory). Without that, freed model memory stayed in up to
  8 x cores malloc arenas: RSS ended 100-300% above the first cycle's with the memory in use
  flat (~13 MiB, measured with gdb and malloc_stats()), i.e. no leak, but a server that looked
  like it leaked. Tuning cannot hide a leak: leaked memory stays allocated and still counts.
- `tuned`: the server runs with GLIBC_TUNABLES=glibc.malloc.arena_max=1, mmap_threshold=128 KiB,
  trim_threshold=128 KiB (the server then leaves the allocator as the user set it), for
  comparison.

`pytest tests/e2e/test_soak.py -s` prints the figures
(`soak: RSS after cycle 1: X MiB, after cycle N: Y MiB (+Z%)`) and the path of a JSON file
with all of them.
"""

from __future__ import annotations

import collections
import json
import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

import e2e_util as u

CYCLES = int(os.environ.get("FERRITE_SOAK_CYCLES", "300"))
SAMPLE_EVERY = 50
RSS_LIMIT = 1.10
MALLOC = os.environ.get("FERRITE_SOAK_MALLOC", "stock")
TUNED_GLIBC = ("glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold=131072:"
               "glibc.malloc.trim_threshold=131072")
MALLOC_VARS = ("GLIBC_TUNABLES", "MALLOC_ARENA_MAX", "MALLOC_ARENA_TEST", "MALLOC_MMAP_THRESHOLD_",
               "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_", "LD_PRELOAD")

KEEP = "simple_int8"  # loaded at startup, inferred on throughout
CYCLED = ("simple", "efficientnet_lite0_onnx")
RUNTIME_THREAD = "ferrite-io"  # the tokio runtime's workers and blocking threads
SETTLE_S = 30.0  # tokio retires an idle blocking thread after 10 s

# A hung server fails this test, not the run: ~0.1-0.3 s a cycle here, a wide margin on top.
pytestmark = pytest.mark.timeout(max(300, 120 + 2 * CYCLES))


# --- /proc -----------------------------------------------------------------------------------

def proc_status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def kib(value: str) -> int:
    return int(value.split()[0])


def thread_names(pid: int) -> collections.Counter:
    names = collections.Counter()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            names[Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()] += 1
        except OSError:  # the thread ended meanwhile
            pass
    return names


def model_threads(pid: int) -> dict[str, int]:
    return {n: c for n, c in sorted(thread_names(pid).items()) if n != RUNTIME_THREAD}


def settled(read, want=None, timeout: float = 5.0, interval: float = 0.05):
    """read() until it equals `want` (or, without one, gives the same value twice in a row
    `interval` apart), at most `timeout` seconds; returns the last value. A thread that has
    answered and is only exiting (the `load-*` thread after a load) is given time to go."""
    deadline = time.monotonic() + timeout
    last = read()
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = read()
        if (want is not None and now == want) or (want is None and now == last):
            return now
        last = now
    return last


# --- inference -------------------------------------------------------------------------------

def infer_simple(client, a, b) -> None:
    inputs = [httpclient.InferInput("INPUT0", list(a.shape), "INT32"),
              httpclient.InferInput("INPUT1", list(b.shape), "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    result = client.infer("simple", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def infer_efficientnet(client, image) -> np.ndarray:
    x = httpclient.InferInput("input", list(image.shape), "FP32")
    x.set_data_from_numpy(image)
    logits = client.infer("efficientnet_lite0_onnx", [x]).as_numpy("logits")
    assert logits is not None and logits.shape == (1, 1000), None if logits is None else logits.shape
    assert np.isfinite(logits).all()
    return logits


class Background:
    """Infers on KEEP over gRPC until stopped, checking every reply."""

    def __init__(self, grpc_hostport: str):
        self.hostport = grpc_hostport
        self.ok = 0
        self.failed = 0
        self.errors: list[str] = []  # the first few
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="soak-background", daemon=True)

    def fail(self, what: str) -> None:
        self.failed += 1
        if len(self.errors) < 5:
            self.errors.append(what)

    def run(self) -> None:
        a = np.arange(16, dtype=np.int8).reshape(1, 16)
        b = np.full((1, 16), 3, dtype=np.int8)
        try:
            client = grpcclient.InferenceServerClient(self.hostport)
        except Exception as e:  # noqa: BLE001 - counted, reported
            self.fail(f"client: {e!r}")
            return
        inputs = u.grpc_inputs(("INPUT0", a, "INT8"), ("INPUT1", b, "INT8"))
        with client:
            while not self.stop.is_set():
                try:
                    result = client.infer(KEEP, inputs, client_timeout=60)
                    if (np.array_equal(result.as_numpy("OUTPUT0"), a + b)
                            and np.array_equal(result.as_numpy("OUTPUT1"), a - b)):
                        self.ok += 1
                    else:
                        self.fail(f"wrong result: {result.as_numpy('OUTPUT0')} {result.as_numpy('OUTPUT1')}")
                except Exception as e:  # noqa: BLE001 - counted, reported
                    self.fail(repr(e))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=120)


# --- the test --------------------------------------------------------------------------------

def test_load_unload_cycles_keep_rss_and_threads_flat(ferrite, monkeypatch, tmp_path):
    assert CYCLES >= 1, f"FERRITE_SOAK_CYCLES={CYCLES}"
    assert MALLOC in ("tuned", "stock"), f"FERRITE_SOAK_MALLOC={MALLOC!r}: tuned or stock"
    for var in MALLOC_VARS:  # the server inherits the test's environment (u.server_env)
        monkeypatch.delenv(var, raising=False)
    if MALLOC == "tuned":
        monkeypatch.setenv("GLIBC_TUNABLES", TUNED_GLIBC)

    repo = ferrite.repo(*CYCLED, KEEP)
    srv = ferrite.start([repo], ["--model-control-mode=explicit", f"--load-model={KEEP}"])
    pid = srv.proc.pid
    startup_threads = settled(lambda: int(proc_status(pid)["Threads"]))

    client = httpclient.InferenceServerClient(srv.hostport, connection_timeout=60.0, network_timeout=120.0)
    a, b = u.simple_pair(seed=5)
    image = np.random.default_rng(0).uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
    first_logits = None
    samples = []  # one per sampled cycle

    def steady_rss_kib() -> int:
        """The lowest VmRSS over a second (ten readings, background inference going on):
        memory the server keeps, without the buffers of whatever happens to be in flight
        at one instant (which swing RSS by several MiB from one reading to the next)."""
        readings = []
        for _ in range(10):
            readings.append(kib(proc_status(pid)["VmRSS"]))
            time.sleep(0.1)
        return min(readings)

    def sample(cycle: int, want_threads=None) -> dict:
        threads = settled(lambda: model_threads(pid), want_threads)
        rss = steady_rss_kib()
        status = proc_status(pid)
        s = {
            "cycle": cycle,
            "seconds": round(time.monotonic() - started, 2),
            "rss_mib": round(rss / 1024, 1),
            "rss_anon_mib": round(kib(status.get("RssAnon", "0 kB")) / 1024, 1),
            "rss_file_mib": round(kib(status.get("RssFile", "0 kB")) / 1024, 1),
            "threads": int(status["Threads"]),
            "model_threads": threads,
            "background_ok": bg.ok,
        }
        samples.append(s)
        return s

    with Background(srv.grpc_hostport) as bg:
        deadline = time.monotonic() + 30
        while bg.ok == 0 and bg.failed == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bg.ok > 0, f"the background inference never succeeded: {bg.errors}\n{srv.describe()}"
        started = time.monotonic()
        for cycle in range(1, CYCLES + 1):
            try:
                for model in CYCLED:
                    client.load_model(model)
                infer_simple(client, a, b)
                logits = infer_efficientnet(client, image)
                if first_logits is None:
                    first_logits = logits
                np.testing.assert_allclose(logits, first_logits, rtol=1e-3, atol=1e-3)
                for model in CYCLED:
                    client.unload_model(model)
            except Exception as e:
                raise AssertionError(f"cycle {cycle}: {e!r}\n{srv.describe()}") from e
            if cycle == 1:
                first = sample(1)
            elif cycle % SAMPLE_EVERY == 0 or cycle == CYCLES:
                sample(cycle, first["model_threads"])
        elapsed = time.monotonic() - started
        bg_during = bg.ok - first["background_ok"]
    client.close()
    assert not bg.thread.is_alive(), "the background thread did not stop"
    last = samples[-1]

    # After the traffic: the runtime's idle blocking threads retire, everything else is gone.
    idle_threads = settled(lambda: int(proc_status(pid)["Threads"]), startup_threads, timeout=SETTLE_S)
    idle_rss = round(kib(proc_status(pid)["VmRSS"]) / 1024, 1)
    index = {m["name"]: m for m in u.request(srv.hostport, "POST", "/v2/repository/index").json()}

    growth = last["rss_mib"] / first["rss_mib"] - 1
    figures = {
        "cycles": CYCLES,
        "malloc": MALLOC,
        "glibc_tunables": TUNED_GLIBC if MALLOC == "tuned" else None,
        "seconds": round(elapsed, 1),
        "seconds_per_cycle": round(elapsed / CYCLES, 3),
        "rss_first_mib": first["rss_mib"],
        "rss_last_mib": last["rss_mib"],
        "rss_growth_pct": round(100 * growth, 1),
        "rss_idle_mib": idle_rss,
        "threads_startup": startup_threads,
        "threads_first": first["threads"],
        "threads_last": last["threads"],
        "threads_idle": idle_threads,
        "model_threads_first": first["model_threads"],
        "model_threads_last": last["model_threads"],
        "background_ok": bg.ok,
        "background_ok_during_cycles": bg_during,
        "background_failed": bg.failed,
        "background_errors": bg.errors,
        "cycle_requests": {"load": 2 * CYCLES, "infer": 2 * CYCLES, "unload": 2 * CYCLES},
        "samples": samples,
        "server_log": str(srv.log_path),
    }
    out = tmp_path / "soak.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print()
    print(f"soak: {CYCLES} cycles in {elapsed:.1f} s ({elapsed / CYCLES:.3f} s/cycle), malloc {MALLOC}")
    print(f"soak: RSS after cycle 1: {first['rss_mib']:.1f} MiB, after cycle {CYCLES}: "
          f"{last['rss_mib']:.1f} MiB ({100 * growth:+.1f}%); idle after the traffic: {idle_rss:.1f} MiB")
    print("soak: RSS series (MiB): " + ", ".join(f"{s['cycle']}: {s['rss_mib']:.1f}" for s in samples))
    print(f"soak: threads after startup {startup_threads}, after cycle 1 {first['threads']}, after cycle "
          f"{CYCLES} {last['threads']}, idle {idle_threads}; model threads {first['model_threads']} -> "
          f"{last['model_threads']}")
    print(f"soak: background inferences ok {bg.ok} ({bg_during} during the cycles), failed {bg.failed}; "
          f"cycle requests: {2 * CYCLES} loads, {2 * CYCLES} inferences, {2 * CYCLES} unloads")
    print(f"soak: figures in {out}")

    assert bg.failed == 0, f"{bg.failed} background inferences failed, e.g. {bg.errors}\n{srv.describe()}"
    assert bg_during > 0, "the background inference did not run during the cycles"
    assert index[KEEP]["state"] == "READY", index
    for model in CYCLED:
        assert index[model]["state"] == "UNAVAILABLE", index
    assert last["model_threads"] == first["model_threads"], (
        f"model threads after cycle {CYCLES} differ from after cycle 1: "
        f"{first['model_threads']} -> {last['model_threads']}")
    assert idle_threads == startup_threads, (
        f"{idle_threads} threads {SETTLE_S:.0f} s after the traffic, {startup_threads} after startup: "
        f"{dict(thread_names(pid))}")
    unloads = len(re.findall(r"successfully unloaded '(?:simple|efficientnet_lite0_onnx)'", srv.log()))
    assert unloads == 2 * CYCLES, f"{unloads} 'successfully unloaded' lines for {2 * CYCLES} unloads"
    # A leak keeps its memory once the traffic stops; what the allocator holds for the
    # background requests in flight does not. So the RSS under traffic after the last cycle
    # must be within the limit, or else, once the traffic has stopped, the idle RSS.
    assert min(last["rss_mib"], idle_rss) <= RSS_LIMIT * first["rss_mib"], (
        f"RSS grew {100 * growth:.1f}% from cycle 1 ({first['rss_mib']} MiB) to cycle {CYCLES} "
        f"({last['rss_mib']} MiB) and stayed at {idle_rss} MiB after the traffic, limit "
        f"{100 * (RSS_LIMIT - 1):.0f}% (malloc {MALLOC}); figures in {out}")
