#!/usr/bin/env python3
"""The measuring half of scripts/crosscheck_perf.sh: runs Triton's perf_analyzer and
ferrite-perf against one running server, step by step, and compares their throughput.

Standard library only. crosscheck_perf.sh fetches perf_analyzer, builds the binaries and
starts/stops the server; this file can also be run alone against a server of your own
(see --help).

For every protocol and step (a concurrency, `--concurrency-range C:C`, or a request rate,
`--request-rate-range R:R`) each tool runs once, as its own process, with the same
measurement interval, stability percentage and max-trials, and writes its CSV (`-f`). Around and during each run the script reads

  * the tool's CPU time: user + system of that process and all its threads (os.wait4);
  * the server's count of successful requests for the model (/v2/models/M/stats), before
    and after, so "requests" is what the server served in the tool's whole life;
  * the same count every 50 ms while the tool runs, so the server's own throughput over
    the tool's final measurement (the last three windows: the tool's request count /
    its throughput gives their length, and they end when the load stops) can be held
    against the tool's claim: "vs server";
  * the server's CPU time and the whole machine's (/proc), so the CPU that other
    processes took during the run ("others", in cores) can be told apart.

CPU per request = CPU time / requests, for the tool and for the server.
Throughput is the tool's own answer: the CSV's `Inferences/Second`. When perf_analyzer
gives up ("Failed to obtain stable measurement", exit 2, no CSV), the mean of its last
three windows (-v) is used instead and the row is marked `~`; ferrite-perf reports the
last three windows itself and says `"stable": false` in its --json.

Gates: `throughput` (ferrite-perf's and perf_analyzer's throughput within --tolerance of
each other), `accuracy` (ferrite-perf's throughput within --accuracy-tolerance of what the
server counted over the same windows), or `both`; --gate for concurrency steps (default
accuracy: at a fixed concurrency the load a tool makes depends on its own CPU cost, the
cores being shared with the server), --rate-gate for request-rate steps (default both: at a
fixed rate the two tools offer the same load). A step that fails the gate is
measured again (both tools, the opposite order) up to --retries times, unless both tools
found a stable measurement while no other process took more than --quiet-cores (then the
difference is not noise); for each tool the stable run with the best throughput counts
(noise on a shared machine only takes throughput away).
The order of the two tools also alternates from one step to the next.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

CLK_TCK = os.sysconf("SC_CLK_TCK")
PASS_RE = re.compile(r"Pass \[(\d+)\] throughput: ([0-9.eE+-]+) infer/sec")
# perf_analyzer's final report of a step: "  Client: \n    Request count: N\n    Throughput: X"
PA_SUMMARY_RE = re.compile(r"Request count: (\d+)\s+Throughput: ([0-9.eE+-]+) infer/sec")
SAMPLE_PERIOD_S = 0.05


def log(msg: str) -> None:
    print(f"[crosscheck] {msg}", flush=True)


# --- the server and the machine -------------------------------------------------------------


class Stats:
    """The server's count of successful inferences of a model, over one kept-alive HTTP
    connection (one per thread)."""

    def __init__(self, http_url: str, model: str):
        host, _, port = http_url.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.path = f"/v2/models/{model}/stats"
        self.conn: http.client.HTTPConnection | None = None

    def count(self) -> int:
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                self.conn.request("GET", self.path)
                resp = self.conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"GET {self.path}: HTTP {resp.status}: {body[:200]!r}")
                stats = json.loads(body)
                return sum(int(m["inference_stats"]["success"]["count"])
                           for m in stats["model_stats"])
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


class Sampler(threading.Thread):
    """Samples (time, count) every SAMPLE_PERIOD_S until stopped."""

    def __init__(self, http_url: str, model: str):
        super().__init__(daemon=True)
        self.stats = Stats(http_url, model)
        self.samples: list[tuple[float, int]] = []
        self.done = threading.Event()
        self.error = ""

    def run(self) -> None:
        while not self.done.is_set():
            t = time.monotonic()
            try:
                c = self.stats.count()
            except Exception as e:  # noqa: BLE001 - reported with the run
                self.error = str(e)
                return
            self.samples.append(((t + time.monotonic()) / 2, c))
            self.done.wait(SAMPLE_PERIOD_S)

    def stop(self) -> None:
        self.done.set()
        self.join()

    def rate_before_stop(self, span_s: float) -> float | None:
        """The server's throughput over the `span_s` seconds before the load stopped (the
        last sample that still saw the count rise), interpolated between samples."""
        s = self.samples
        if len(s) < 3:
            return None
        final = s[-1][1]
        k = max((i for i, (_, c) in enumerate(s) if c < final), default=None)
        if k is None or k + 1 >= len(s):
            return None
        # The load stopped between samples k and k+1: take the end half way.
        t_end = (s[k][0] + s[k + 1][0]) / 2
        t_start = t_end - span_s
        if t_start < s[0][0] - 1.0:
            return None  # the tool says its windows began well before it was started

        def at(t: float) -> float:
            if t <= s[0][0]:
                return float(s[0][1])  # the first sample was taken before the tool started
            for (t0, c0), (t1, c1) in zip(s, s[1:]):
                if t0 <= t <= t1:
                    return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c1
            return float(s[-1][1])

        return (at(t_end) - at(t_start)) / span_s


def proc_cpu_s(pid: int | None) -> float | None:
    """utime + stime of a running process, in seconds (all its threads)."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            # the command name may hold spaces; the fields after ')' are fixed
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s() -> float:
    """CPU time the whole machine spent busy (all cores), in seconds, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    return (sum(v[:8]) - idle) / CLK_TCK


def others_now(server_pid: int | None, seconds: float = 0.5) -> float:
    """Cores' worth of CPU used by processes other than the server, over `seconds`."""
    b0, s0 = machine_busy_s(), proc_cpu_s(server_pid) or 0.0
    time.sleep(seconds)
    b1, s1 = machine_busy_s(), proc_cpu_s(server_pid) or 0.0
    return max(0.0, (b1 - b0) - (s1 - s0)) / seconds


def wait_quiet(server_pid: int | None, threshold: float, max_wait: float) -> tuple[float, float]:
    """Waits (up to max_wait s) until other processes use less than `threshold` cores.
    Returns (their load when done, seconds waited)."""
    t0 = time.monotonic()
    load = others_now(server_pid)
    while load > threshold and time.monotonic() - t0 < max_wait:
        load = others_now(server_pid, 1.0)
    return load, time.monotonic() - t0


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# --- one run of one tool --------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """A step's load: a fixed number of requests in flight, or a fixed rate of new ones."""
    mode: str  # "concurrency" | "rate"
    value: float

    @property
    def label(self) -> str:  # for logs and the table
        return f"{'c' if self.mode == 'concurrency' else 'r'}={self.value:g}"

    @property
    def stem(self) -> str:  # for file names
        return f"{'c' if self.mode == 'concurrency' else 'r'}{self.value:g}"

    def flags(self) -> list[str]:
        if self.mode == "concurrency":
            return ["--concurrency-range", f"{int(self.value)}:{int(self.value)}"]
        return ["--request-rate-range", f"{self.value:g}:{self.value:g}"]

    def csv_column(self) -> str:
        return "Concurrency" if self.mode == "concurrency" else "Request Rate"

    def json_key(self) -> str:
        return "concurrency" if self.mode == "concurrency" else "request_rate"

    def matches(self, x) -> bool:
        try:
            return abs(float(x) - self.value) <= 1e-6 * max(1.0, self.value)
        except (TypeError, ValueError):
            return False


@dataclass
class Run:
    tool: str
    protocol: str
    load: Load
    attempt: int
    argv: list[str]
    csv_path: str
    log_path: str
    rc: int | None = None
    note: str = ""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    requests: int = 0  # counted by the server over the tool's whole run
    server_cpu_s: float | None = None
    others_cores: float | None = None  # CPU used by everything else during the run, in cores
    throughput: float | None = None  # the tool's claim
    unstable: bool = False
    measured_requests: int | None = None  # the tool's request count in its final windows
    server_throughput: float | None = None  # the server's count over those windows
    self_cpu_us_per_req: float | None = None  # what ferrite-perf says about itself (--json)
    csv_row: dict = field(default_factory=dict)

    @property
    def cpu_us_per_req(self) -> float | None:
        return self.cpu_s * 1e6 / self.requests if self.requests > 0 else None

    @property
    def server_us_per_req(self) -> float | None:
        if self.server_cpu_s is None or self.requests <= 0:
            return None
        return self.server_cpu_s * 1e6 / self.requests

    @property
    def vs_server_pct(self) -> float | None:
        if self.throughput is None or not self.server_throughput:
            return None
        return (self.throughput - self.server_throughput) / self.server_throughput * 100


def run_tool(run: Run, env: dict, stats: Stats, http_url: str, model: str,
             server_pid: int | None, timeout_s: float, rss_limit_kib: int) -> Run:
    json_path = run.csv_path[:-4] + ".json"
    for p in (run.csv_path, json_path):
        if os.path.exists(p):
            os.remove(p)
    before = stats.count()
    srv_before = proc_cpu_s(server_pid)
    busy_before = machine_busy_s()
    sampler = Sampler(http_url, model)
    sampler.start()
    t0 = time.monotonic()
    killed = ""
    with open(run.log_path, "w") as out:
        out.write("$ " + " ".join(run.argv) + "\n")
        out.flush()
        # Reaped below with os.wait4, which gives this process's own CPU time.
        proc = subprocess.Popen(run.argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
        sent_kill = False
        try:
            while True:
                wpid, status, ru = os.wait4(proc.pid, os.WNOHANG)
                if wpid == proc.pid:
                    break
                if not killed and time.monotonic() - t0 > timeout_s:
                    killed = f"killed after {timeout_s:.0f} s (time limit)"
                elif not killed and rss_kib(proc.pid) > rss_limit_kib:
                    killed = f"killed: resident memory over {rss_limit_kib // 1024} MiB"
                if killed and not sent_kill:
                    os.kill(proc.pid, signal.SIGKILL)
                    sent_kill = True
                time.sleep(0.05)
        except BaseException:  # interrupted (SIGINT, SIGTERM): the tool goes too
            os.kill(proc.pid, signal.SIGKILL)
            os.waitpid(proc.pid, 0)
            proc.returncode = -9
            sampler.stop()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
    run.wall_s = time.monotonic() - t0
    time.sleep(2 * SAMPLE_PERIOD_S)  # a sample or two after the end
    sampler.stop()
    run.rc = proc.returncode
    run.cpu_s = ru.ru_utime + ru.ru_stime
    srv_after = proc_cpu_s(server_pid)
    busy = machine_busy_s() - busy_before
    if srv_before is not None and srv_after is not None:
        run.server_cpu_s = srv_after - srv_before
        run.others_cores = max(0.0, busy - run.cpu_s - run.server_cpu_s) / run.wall_s
    run.requests = stats.count() - before
    notes = [killed] if killed else []
    if sampler.error:
        notes.append(f"statistics sampler: {sampler.error}")

    # The tool's throughput: its CSV.
    if os.path.exists(run.csv_path):
        with open(run.csv_path, newline="") as f:
            for r in csv.DictReader(f):
                if run.load.matches(r.get(run.load.csv_column())):
                    run.csv_row = r
                    run.throughput = float(r["Inferences/Second"])
    with open(run.log_path, errors="replace") as f:
        text = f.read()
    # The request count of the final windows: ferrite-perf's --json, perf_analyzer's report.
    if os.path.exists(json_path):
        try:
            with open(json_path) as f:
                doc = json.load(f)
            for st in doc.get("steps", []):
                if run.load.matches(st.get(run.load.json_key())):
                    run.unstable = st.get("stable") is False
                    run.measured_requests = st.get("request_count")
                    run.self_cpu_us_per_req = (st.get("client_cpu") or {}).get("us_per_request")
        except (OSError, ValueError, AttributeError) as e:
            notes.append(f"unreadable --json: {e}")
    elif run.throughput is not None:
        m = PA_SUMMARY_RE.findall(text)
        if m:
            run.measured_requests = int(m[-1][0])
    if run.throughput is None:
        passes = [float(m.group(2)) for m in PASS_RE.finditer(text)]
        if len(passes) >= 3:
            run.throughput = sum(passes[-3:]) / 3
            run.unstable = True
        if not killed:
            if "Failed to obtain stable measurement" in text:
                notes.append("no stable measurement")
            else:
                notes.append(f"exit {run.rc}, no CSV row for {run.load.label}")
    elif run.rc != 0 and not killed:
        notes.append(f"exit {run.rc}")
    # What the server counted over the tool's final windows (their length: count / rate).
    if run.measured_requests and run.throughput:
        run.server_throughput = sampler.rate_before_stop(run.measured_requests / run.throughput)
    run.note = "; ".join(notes)
    return run


# --- the sweep ------------------------------------------------------------------------------


def parse_concurrency(spec: str) -> list[int]:
    """'1,2,4,8,16' or perf_analyzer's 'START:END[:STEP]' (linear)."""
    if ":" in spec:
        parts = [int(x) for x in spec.split(":")]
        if len(parts) == 2:
            parts.append(1)
        start, end, step = parts
        if start < 1 or end < start or step < 1:
            raise ValueError(f"bad concurrency range {spec!r}")
        return list(range(start, end + 1, step))
    values = [int(x) for x in spec.split(",") if x.strip()]
    if not values or min(values) < 1:
        raise ValueError(f"bad concurrency list {spec!r}")
    return values


def parse_rates(spec: str) -> list[float]:
    """'1000,4000,8000' requests per second ('' = none)."""
    values = [float(x) for x in spec.split(",") if x.strip()]
    if any(v <= 0 for v in values):
        raise ValueError(f"bad request rate list {spec!r}")
    return values


def fmt(x: float | None, spec: str = ".0f") -> str:
    return "n/a" if x is None else format(x, spec)


def diff_pct(base: float | None, other: float | None) -> float | None:
    if base is None or other is None or base <= 0:
        return None
    return (other - base) / base * 100


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--perf-analyzer", required=True, help="perf_analyzer binary")
    ap.add_argument("--pa-lib-dir", default="", help="LD_LIBRARY_PATH for perf_analyzer")
    ap.add_argument("--ferrite-perf", default="", help="ferrite-perf binary ('' = only perf_analyzer)")
    ap.add_argument("--http-url", required=True, help="HOST:PORT of the server's HTTP service")
    ap.add_argument("--grpc-url", required=True, help="HOST:PORT of the server's gRPC service")
    ap.add_argument("--server-pid", type=int, default=0, help="for the server's CPU time")
    ap.add_argument("--model", default="simple")
    ap.add_argument("--protocols", default="http,grpc")
    ap.add_argument("--concurrency", default="1,2,4,8,16",
                    help="a list, or perf_analyzer's START:END[:STEP]")
    ap.add_argument("--request-rates", default="1000,4000,8000,16000",
                    help="request rates (per second) to compare at, after the concurrency steps"
                    " ('' = none)")
    ap.add_argument("--measurement-interval", type=int, default=1000, help="ms")
    ap.add_argument("--stability-percentage", type=float, default=10.0)
    ap.add_argument("--max-trials", type=int, default=6,
                    help="-r: windows before a tool gives up on stability")
    ap.add_argument("--gate", choices=("throughput", "accuracy", "both"), default="accuracy",
                    help="what fails a concurrency step (see the top of this file)")
    ap.add_argument("--rate-gate", choices=("throughput", "accuracy", "both"), default="both",
                    help="what fails a request-rate step")
    ap.add_argument("--tolerance", type=float, default=10.0,
                    help="allowed difference between the tools' throughput, %%")
    ap.add_argument("--accuracy-tolerance", type=float, default=5.0,
                    help="allowed difference between a tool's throughput and the server's count, %%")
    ap.add_argument("--retries", type=int, default=2,
                    help="times a step that fails the gate is measured again")
    ap.add_argument("--budget", type=float, default=300.0,
                    help="seconds; no retries or waits are started after this much time")
    ap.add_argument("--deadline", type=float, default=480.0,
                    help="seconds; no run at all is started after this much time")
    ap.add_argument("--rss-limit-mib", type=int, default=4096,
                    help="a tool using more memory than this is killed")
    ap.add_argument("--quiet-cores", type=float, default=0.25,
                    help="before each run, wait until other processes use less CPU than this")
    ap.add_argument("--quiet-wait", type=float, default=3.0,
                    help="seconds to wait at most for that before each run")
    ap.add_argument("--out", required=True, help="directory for CSVs, logs and the summary")
    args = ap.parse_args()

    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    for p in protocols:
        if p not in ("http", "grpc"):
            ap.error(f"unknown protocol {p!r} (http, grpc)")
    try:
        levels = [Load("concurrency", c) for c in parse_concurrency(args.concurrency)]
        levels += [Load("rate", r) for r in parse_rates(args.request_rates)]
    except ValueError as e:
        ap.error(str(e))
    os.makedirs(args.out, exist_ok=True)
    started = time.monotonic()
    stats = Stats(args.http_url, args.model)
    stats.count()  # the statistics API answers, the model exists

    pa_env = dict(os.environ)
    if args.pa_lib_dir:
        pa_env["LD_LIBRARY_PATH"] = args.pa_lib_dir + (
            ":" + pa_env["LD_LIBRARY_PATH"] if pa_env.get("LD_LIBRARY_PATH") else "")
    fp_env = dict(os.environ)

    tools = ["perf_analyzer"] + (["ferrite-perf"] if args.ferrite_perf else [])
    # A run: startup + at most max-trials windows (each a little longer than the interval).
    timeout_s = 10 + 1.5 * args.measurement_interval / 1000 * (args.max_trials + 1)

    def argv_for(tool: str, protocol: str, load: Load, csv_path: str) -> list[str]:
        url = args.http_url if protocol == "http" else args.grpc_url
        common = ["-m", args.model, "-u", url, "-i", protocol, *load.flags(),
                  "--measurement-interval", str(args.measurement_interval),
                  "--stability-percentage", f"{args.stability_percentage:g}",
                  "--max-trials", str(args.max_trials), "-v", "-f", csv_path]
        if tool == "perf_analyzer":
            return [args.perf_analyzer, *common]
        return [args.ferrite_perf, *common, "--json", csv_path[:-4] + ".json"]

    runs: list[Run] = []

    def measure(protocol: str, load: Load, attempt: int, order: list[str]) -> dict[str, Run]:
        got = {}
        for tool in order:
            stem = os.path.join(args.out, f"{protocol}-{load.stem}-{attempt}-{tool}")
            r = Run(tool, protocol, load, attempt, argv_for(tool, protocol, load, stem + ".csv"),
                    stem + ".csv", stem + ".log")
            if time.monotonic() - started > args.deadline:
                r.note = f"not run: past the deadline ({args.deadline:.0f} s)"
                log(f"{protocol:4} {load.label:<7} #{attempt} {tool:13} {r.note}")
                runs.append(r)
                got[tool] = r
                continue
            if args.quiet_wait > 0 and time.monotonic() - started < args.budget:
                busy, waited = wait_quiet(args.server_pid or None, args.quiet_cores, args.quiet_wait)
                if waited >= 1:
                    log(f"waited {waited:.0f} s for other processes to calm down (now "
                        f"{busy:.2f} cores{'' if busy <= args.quiet_cores else ', going on anyway'})")
            run_tool(r, pa_env if tool == "perf_analyzer" else fp_env, stats, args.http_url,
                     args.model, args.server_pid or None, timeout_s, args.rss_limit_mib * 1024)
            log(f"{protocol:4} {load.label:<7} #{attempt} {tool:13} {fmt(r.throughput, '.1f'):>8} infer/s"
                f"{'~' if r.unstable else ' '} (server {fmt(r.server_throughput, '.1f')})"
                f" {r.requests:>7} req, cpu {fmt(r.cpu_us_per_req, '.1f')} us/req"
                + (f" (says {r.self_cpu_us_per_req:.1f})" if r.self_cpu_us_per_req else "")
                + f", server {fmt(r.server_us_per_req, '.1f')} us/req, {r.wall_s:.1f} s,"
                f" others {fmt(r.others_cores, '.2f')} cores" + (f" [{r.note}]" if r.note else ""))
            runs.append(r)
            got[tool] = r
        return got

    def gate_of(load: Load) -> str:
        return args.gate if load.mode == "concurrency" else args.rate_gate

    def problems(best: dict[str, Run]) -> list[str]:
        """Why a step fails its gate ([] = passes)."""
        out = []
        pa, fp = best["perf_analyzer"], best.get("ferrite-perf")
        gate = gate_of(pa.load)
        for r in best.values():
            if r.throughput is None:
                out.append(f"no result from {r.tool}")
        if out:
            return out
        if fp is not None and gate in ("throughput", "both"):
            d = diff_pct(pa.throughput, fp.throughput)
            if d is None or abs(d) > args.tolerance:
                out.append(f"tools differ by {fmt(d, '+.1f')}%")
        if gate in ("accuracy", "both"):
            # ferrite-perf is on trial; perf_analyzer's own error is shown, not gated on
            # (unless it runs alone).
            for r in [fp] if fp is not None else [pa]:
                a = r.vs_server_pct
                if a is not None and abs(a) > args.accuracy_tolerance:
                    out.append(f"{r.tool} off the server's count by {a:+.1f}%")
        return out

    def noisy(attempts: list[dict[str, Run]]) -> bool:
        """Whether the last attempt could have been disturbed: a tool without a stable
        result, or other processes busy during a run."""
        last = attempts[-1].values()
        return any(r.throughput is None or r.unstable or r.others_cores is None
                   or r.others_cores > args.quiet_cores for r in last)

    def pick_best(attempts: list[dict[str, Run]]) -> dict[str, Run]:
        best = {}
        for t in tools:
            cand = [a[t] for a in attempts if a[t].throughput is not None]
            # the best stable run; the best unstable one only when none was stable
            best[t] = (max(cand, key=lambda r: (not r.unstable, r.throughput)) if cand
                       else attempts[-1][t])
        return best

    def gate_text(gate: str) -> str:
        parts = []
        if gate in ("throughput", "both"):
            parts.append(f"tools within {args.tolerance:g}% of each other")
        if gate in ("accuracy", "both"):
            parts.append(f"ferrite-perf within {args.accuracy_tolerance:g}% of the server's count")
        return f"{gate} ({' and '.join(parts)})"

    log(f"model {args.model}, protocols {','.join(protocols)}, "
        f"steps {' '.join(x.label for x in levels)}, "
        f"measurement interval {args.measurement_interval} ms, stability "
        f"{args.stability_percentage:g}%, max trials {args.max_trials}; concurrency gate "
        f"{gate_text(args.gate)}; request-rate gate {gate_text(args.rate_gate)}; "
        f"retries {args.retries}")
    results = []
    step_no = 0
    for protocol in protocols:
        for load in levels:
            order = tools if step_no % 2 == 0 else tools[::-1]
            step_no += 1
            attempts = [measure(protocol, load, 1, order)]
            while True:
                why = problems(pick_best(attempts))
                if not why or len(attempts) > args.retries:
                    break
                if not noisy(attempts):
                    log(f"{protocol} {load.label}: {'; '.join(why)}, with both tools stable and the "
                        f"machine quiet (others <= {args.quiet_cores:g} cores): not noise, "
                        "not measured again")
                    break
                if time.monotonic() - started > min(args.budget, args.deadline):
                    log(f"{protocol} {load.label}: {'; '.join(why)}, but past the time budget "
                        f"({min(args.budget, args.deadline):.0f} s): not measured again")
                    break
                log(f"{protocol} {load.label}: {'; '.join(why)}: measuring this step again, "
                    "tools in the opposite order")
                order = order[::-1]
                attempts.append(measure(protocol, load, len(attempts) + 1, order))
            others = [r.others_cores for a in attempts for r in a.values()
                      if r.others_cores is not None]
            results.append((protocol, load, len(attempts), pick_best(attempts),
                            max(others) if others else None))

    # --- the table ---------------------------------------------------------------------------
    print()
    cols = [("protocol", 8, "", "<"), ("load", 7, "", ">"),
            ("PA", 10, "infer/s", ">"), ("FP", 10, "infer/s", ">"), ("FP-PA", 7, "%", ">"),
            ("PA cpu", 7, "us/req", ">"), ("FP cpu", 7, "us/req", ">"),
            ("PA-srv", 7, "%", ">"), ("FP-srv", 7, "%", ">"),
            ("srv/PA", 7, "us/req", ">"), ("srv/FP", 7, "us/req", ">"),
            ("others", 6, "cores", ">"), ("runs", 4, "", ">"), ("verdict", 0, "", "<")]

    def line(values: list[str]) -> str:
        return " ".join(f"{v:{a}{w}}" for v, (_, w, _, a) in zip(values, cols)).rstrip()

    print(line([c[0] for c in cols]))
    print(line([c[2] for c in cols]))
    print("-" * len(line([c[0] for c in cols])))
    failures, busy_failures, summary = [], [], []
    for protocol, load, n, best, others in results:
        pa, fp = best["perf_analyzer"], best.get("ferrite-perf")
        d = diff_pct(pa.throughput, fp.throughput if fp else None)
        why = problems(best)
        if why:
            verdict = "FAIL: " + "; ".join(why)
            failures.append(f"{protocol} {load.label}")
            if others is not None and others > args.quiet_cores:
                verdict += " (busy)"
                busy_failures.append(f"{protocol} {load.label}")
        else:
            verdict = "ok" if fp else "ok (perf_analyzer only)"

        def tp(r: Run | None) -> str:
            return "-" if r is None else fmt(r.throughput, ".0f") + ("~" if r.unstable else "")

        print(line([protocol, load.label, tp(pa), tp(fp), fmt(d, "+.1f"),
                    fmt(pa.cpu_us_per_req, ".1f"), fmt(fp.cpu_us_per_req if fp else None, ".1f"),
                    fmt(pa.vs_server_pct, "+.1f"), fmt(fp.vs_server_pct if fp else None, "+.1f"),
                    fmt(pa.server_us_per_req, ".1f"),
                    fmt(fp.server_us_per_req if fp else None, ".1f"),
                    fmt(others, ".2f"), str(n), verdict]))
        summary.append({
            "protocol": protocol, load.json_key(): load.value, "attempts": n, "diff_pct": d,
            "verdict": verdict, "others_cores_max": others,
            **{f"{key}_{attr}": getattr(r, attr) for key, r in (("pa", pa), ("fp", fp)) if r
               for attr in ("throughput", "unstable", "server_throughput", "vs_server_pct",
                            "cpu_us_per_req", "self_cpu_us_per_req", "server_us_per_req",
                            "requests", "measured_requests", "cpu_s", "wall_s", "rc", "note",
                            "csv_path")},
        })
    print(f"""
PA = perf_analyzer, FP = ferrite-perf. infer/s: each tool's own throughput (its CSV's
  Inferences/Second), the best of its (stable) runs of that step; ~ = the tool found no stable
  measurement (perf_analyzer: mean of its last 3 windows, from -v; ferrite-perf: its report
  of the last 3). FP-PA: (FP - PA) / PA.
cpu: the tool's user+system CPU time over its whole run / the requests the server served
  during it. srv/..: the server's CPU per request during that tool's run.
..-srv: the tool's throughput against the server's own count over the tool's final windows
  (sampled every {SAMPLE_PERIOD_S * 1000:.0f} ms): how well the tool measures what it did.
others: the most CPU (in cores, of this machine's {os.cpu_count()}) that other processes took
  during a run of the step; tools and server share the cores, so a busy neighbour lowers
  whichever run it overlaps.
load: c=N, N requests in flight (--concurrency-range N:N); r=R, R new requests a second
  (--request-rate-range R:R). At a fixed rate both tools offer the server the same load, so
  their throughput (and the server's) must agree; at a fixed concurrency each tool's own cost
  per request sets the load it makes, so there the gate is each tool against the server.
Tools alternate order step by step; a step that fails its gate (concurrency: {args.gate},
  request rate: {args.rate_gate}) is measured again (up to {args.retries}x, opposite order;
  not when both tools were stable and the machine quiet) and each tool's best run counts.""")
    repeated = [f"{p} {x.label} ({n} runs)" for p, x, n, _, _ in results if n > 1]
    if repeated:
        print(f"Measured again: {', '.join(repeated)}")
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump({"settings": vars(args), "steps": summary,
                   "runs": [{k: v for k, v in r.__dict__.items() if k != "csv_row"} for r in runs]},
                  f, indent=1, default=str)
    log(f"files: {args.out} (CSV, JSON and log of every run, summary.json); "
        f"{time.monotonic() - started:.0f} s of measuring")
    conc = [(b, st["diff_pct"]) for (p, x, n, b, o), st in zip(results, summary)
            if x.mode == "concurrency" and st["diff_pct"] is not None and "ferrite-perf" in b]
    if conc and args.gate == "accuracy":
        pa_cpu = [b["perf_analyzer"].cpu_us_per_req for b, _ in conc if b["perf_analyzer"].cpu_us_per_req]
        fp_cpu = [b["ferrite-perf"].cpu_us_per_req for b, _ in conc if b["ferrite-perf"].cpu_us_per_req]
        diffs = [d for _, d in conc]
        if pa_cpu and fp_cpu:
            log(f"concurrency steps: ferrite-perf's throughput {min(diffs):+.0f}..{max(diffs):+.0f}% of "
                f"perf_analyzer's; client CPU per request: ferrite-perf {min(fp_cpu):.0f}-{max(fp_cpu):.0f} us, "
                f"perf_analyzer {min(pa_cpu):.0f}-{max(pa_cpu):.0f} us ({os.cpu_count()} cores shared by "
                "client and server)")
    if failures:
        log(f"FAILED: {', '.join(failures)}")
        # Tools that disagree while both agree with the server: different load, not a
        # different measurement. Say so, with the numbers.
        tp_fail = [(b, d) for (p, x, n, b, o), st in zip(results, summary)
                   if st["verdict"].startswith("FAIL") and (d := st["diff_pct"]) is not None
                   and abs(d) > args.tolerance and "ferrite-perf" in b]
        checked = [r.vs_server_pct for b, _ in tp_fail for r in b.values()
                   if r.vs_server_pct is not None]
        if tp_fail and checked and all(abs(a) <= args.accuracy_tolerance for a in checked):
            def span(vals: list[float]) -> str:
                return f"{min(vals):.0f}-{max(vals):.0f}"
            pa_cpu = [b["perf_analyzer"].cpu_us_per_req for b, _ in tp_fail
                      if b["perf_analyzer"].cpu_us_per_req]
            fp_cpu = [b["ferrite-perf"].cpu_us_per_req for b, _ in tp_fail
                      if b["ferrite-perf"].cpu_us_per_req]
            if pa_cpu and fp_cpu:
                log(f"where the tools differ, both agree with the server's own count (within "
                    f"{args.accuracy_tolerance:g}%): each measured the load it made, and they made "
                    f"different loads. ferrite-perf spent {span(fp_cpu)} us of CPU per request, "
                    f"perf_analyzer {span(pa_cpu)}; with {os.cpu_count()} cores shared by client "
                    "and server, the cheaper client leaves the server more CPU and adds less "
                    "to each request's latency. --gate accuracy checks the measurement itself; "
                    "a model whose server time dwarfs the client's (e.g. --model "
                    "efficientnet_lite0_onnx) compares throughput like for like.")
        if busy_failures:
            log(f"of these, {', '.join(busy_failures)} ran while other processes took more than "
                f"{args.quiet_cores:g} of {os.cpu_count()} cores ('busy'): a difference there may "
                "be the neighbour's, not the tools'; run again on a quiet machine")
        return 1
    if len(tools) < 2:
        log("only perf_analyzer ran (no ferrite-perf): nothing compared")
        return 2
    log(f"all {len(results)} steps pass (concurrency: {args.gate}, request rate: {args.rate_gate})")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Started in the background by crosscheck_perf.sh, which leaves SIGINT ignored: Ctrl-C
    # should still stop the sweep (and the tool it runs) at once.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except (OSError, http.client.HTTPException) as e:
        log(f"ERROR: the server stopped answering ({e})")
        sys.exit(1)
