"""Metrics: `GET /metrics` on its own port (`Started Metrics Service at ADDR`), in Triton's
format (shared/triton-reference/metrics/metrics_after_capture.txt): family order, HELP/TYPE
texts, label order, Content-Type; exact counts after known traffic, equal to the statistics
API's; the histograms; the flags; and the Grafana dashboard's expressions against a real scrape.

The module's own server runs on a temporary repository with `simple` and two copies of it
whose dynamic batcher holds requests: `simple_queue` (queue of one: a second request is
refused) and `simple_timeout` (a queue timeout shorter than the batching delay).
"""

from __future__ import annotations

import json
import re
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import e2e_util as u

DASHBOARD = u.ROOT / "configs" / "grafana" / "ferrite-dashboard.json"

# Triton's families in Triton's order, then Ferrite's histograms, then the CPU ones.
TRITON_FAMILIES = [
    ("nv_inference_request_success", "counter", "Number of successful inference requests, all batch sizes"),
    ("nv_inference_request_failure", "counter", "Number of failed inference requests, all batch sizes"),
    ("nv_inference_count", "counter", "Number of inferences performed (does not include cached requests)"),
    ("nv_inference_exec_count", "counter", "Number of model executions performed (does not include cached requests)"),
    ("nv_inference_request_duration_us", "counter",
     "Cumulative inference request duration in microseconds (includes cached requests)"),
    ("nv_inference_queue_duration_us", "counter",
     "Cumulative inference queuing duration in microseconds (includes cached requests)"),
    ("nv_inference_compute_input_duration_us", "counter",
     "Cumulative compute input duration in microseconds (does not include cached requests)"),
    ("nv_inference_compute_infer_duration_us", "counter",
     "Cumulative compute inference duration in microseconds (does not include cached requests)"),
    ("nv_inference_compute_output_duration_us", "counter",
     "Cumulative inference compute output duration in microseconds (does not include cached requests)"),
    ("nv_inference_pending_request_count", "gauge",
     "Instantaneous number of pending requests awaiting execution per-model."),
]
HISTOGRAMS = [
    "nv_inference_request_duration_histogram_us",
    "nv_inference_queue_duration_histogram_us",
    "nv_inference_batch_size_histogram",
]
CPU_FAMILIES = [
    ("nv_cpu_utilization", "gauge", "CPU utilization rate [0.0 - 1.0]"),
    ("nv_cpu_memory_total_bytes", "gauge", "CPU total memory (RAM), in bytes"),
    ("nv_cpu_memory_used_bytes", "gauge", "CPU used memory (RAM), in bytes"),
]
# Triton's GPU families, each sample labelled gpu_uuid; there only where NVML finds a GPU.
GPU_FAMILIES = [
    ("nv_gpu_utilization", "gauge", "GPU utilization rate [0.0 - 1.0)"),
    ("nv_gpu_memory_total_bytes", "gauge", "GPU total memory, in bytes"),
    ("nv_gpu_memory_used_bytes", "gauge", "GPU used memory, in bytes"),
    ("nv_gpu_power_usage", "gauge", "GPU power usage in watts"),
    ("nv_gpu_power_limit", "gauge", "GPU power management limit in watts"),
    ("nv_energy_consumption", "counter", "GPU energy consumption in joules since the Triton Server started"),
]
GPU_NAMES = {f for f, _, _ in GPU_FAMILIES}


def _nvml_present() -> bool:
    """Whether NVML (the NVIDIA driver's management library) loads here."""
    import ctypes
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


NVML = _nvml_present()
REASONS = ["OTHER", "BACKEND", "REJECTED", "CANCELED"]
DEFAULT_DURATION_LE = ["100", "250", "500", "1000", "2500", "5000", "10000", "25000", "50000", "100000",
                       "250000", "500000", "1000000", "2500000", "5000000", "+Inf"]
DEFAULT_BATCH_LE = ["1", "2", "4", "8", "16", "32", "64", "128", "+Inf"]

# Known traffic on `simple`.
HTTP_OK = 5  # batch 1 over HTTP
GRPC_OK = 4  # batch 1 over gRPC
BATCH2_OK = 1  # one request of batch 2 over HTTP
HTTP_BAD = 2  # wrong shape over HTTP
GRPC_BAD = 1  # wrong shape over gRPC


def _config(name: str, extra: str) -> str:
    text = u.read_pbtxt("simple").replace('name: "simple"', f'name: "{name}"')
    return text + "\n" + extra + "\n"


QUEUE_CONFIG = _config("simple_queue", """dynamic_batching {
  preferred_batch_size: [ 8 ]
  max_queue_delay_microseconds: 1500000
  default_queue_policy { max_queue_size: 1 }
}""")
TIMEOUT_CONFIG = _config("simple_timeout", """dynamic_batching {
  preferred_batch_size: [ 8 ]
  max_queue_delay_microseconds: 300000
  default_queue_policy { default_timeout_microseconds: 20000 }
}""")


# --- the exposition format --------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Scrape:
    """One parsed scrape: HELP/TYPE per family (in order) and samples with their labels in
    the order they were written."""

    def __init__(self, text: str):
        self.text = text
        self.families: list[str] = []
        self.help: dict[str, str] = {}
        self.type: dict[str, str] = {}
        self.samples: list[tuple[str, list[tuple[str, str]], float]] = []
        for line in text.splitlines():
            if line.startswith("# HELP "):
                name, help_text = line[len("# HELP "):].split(" ", 1)
                self.families.append(name)
                self.help[name] = help_text
            elif line.startswith("# TYPE "):
                name, kind = line[len("# TYPE "):].split(" ", 1)
                assert self.families and self.families[-1] == name, f"TYPE without its HELP: {line}"
                self.type[name] = kind
            else:
                m = _SAMPLE.match(line)
                assert m, f"not a sample line: {line!r}"
                labels = _LABEL.findall(m.group(2) or "")
                self.samples.append((m.group(1), labels, float(m.group(3))))

    def names(self) -> set[str]:
        return {name for name, _, _ in self.samples} | set(self.families)

    def value(self, name: str, **labels: str) -> float:
        found = [v for n, ls, v in self.samples if n == name and dict(ls) == labels]
        assert len(found) == 1, f"{name}{labels}: {len(found)} samples\n{self.text}"
        return found[0]

    def buckets(self, name: str, model: str) -> list[tuple[str, float]]:
        return [(dict(ls)["le"], v) for n, ls, v in self.samples
                if n == name + "_bucket" and dict(ls).get("model") == model]

    def models(self, name: str) -> list[str]:
        return [dict(ls)["model"] for n, ls, _ in self.samples if n == name]


def scrape(hostport: str) -> Scrape:
    reply = u.request(hostport, "GET", "/metrics")
    u.assert_reply(reply, 200, "text/plain; charset=utf-8")
    return Scrape(reply.body.decode())


def stats(hostport: str, model: str) -> dict:
    reply = u.request(hostport, "GET", f"/v2/models/{model}/stats")
    assert reply.status == 200, reply
    (entry,) = reply.json()["model_stats"]
    return entry


def wait_for(what, condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def simple_json(shape, seed: int = 0) -> dict:
    n = int(np.prod(shape))
    return {"inputs": [
        {"name": "INPUT0", "shape": shape, "datatype": "INT32", "data": [seed + i for i in range(n)]},
        {"name": "INPUT1", "shape": shape, "datatype": "INT32", "data": [1] * n},
    ]}


# --- the module's server and its traffic ------------------------------------------------------

class Traffic:
    def __init__(self, server: u.Server):
        self.server = server
        self.metrics = server.metrics_hostport
        self.pending_seen = 0
        self.queue_refusal = ""
        self.timeout_refusal = ""


@pytest.fixture(scope="module")
def traffic(prerequisites, tmp_path_factory):
    repo = tmp_path_factory.mktemp("metrics-repo")
    u.copy_model("simple", repo)
    u.add_model_with_config(repo, "simple_queue", QUEUE_CONFIG)
    u.add_model_with_config(repo, "simple_timeout", TIMEOUT_CONFIG)
    server = u.start_server([repo], ["--metrics-interval-ms=200"], tmp_path_factory.mktemp("metrics-log"))
    try:
        t = Traffic(server)
        _send_traffic(t)
        yield t
    finally:
        server.stop_cleanly()


def _send_traffic(t: Traffic) -> None:
    hp = t.server.hostport
    http = httpclient.InferenceServerClient(hp, network_timeout=60.0)
    grpc = grpcclient.InferenceServerClient(t.server.grpc_hostport)
    try:
        for i in range(HTTP_OK):
            a, b = u.simple_pair(1, i)
            inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
            inputs[0].set_data_from_numpy(a)
            inputs[1].set_data_from_numpy(b)
            assert (http.infer("simple", inputs).as_numpy("OUTPUT0") == a + b).all()
        for i in range(GRPC_OK):
            a, b = u.simple_pair(1, 10 + i)
            out = grpc.infer("simple", u.grpc_inputs(("INPUT0", a, "INT32"), ("INPUT1", b, "INT32")))
            assert (out.as_numpy("OUTPUT0") == a + b).all()
        for _ in range(BATCH2_OK):
            reply = u.post_json(hp, "/v2/models/simple/infer", simple_json([2, 16]))
            assert reply.status == 200, reply
        for _ in range(HTTP_BAD):
            reply = u.post_json(hp, "/v2/models/simple/infer", simple_json([1, 8]))
            assert reply.status == 400, reply
        for _ in range(GRPC_BAD):
            a = np.zeros((1, 8), np.int32)
            with pytest.raises(InferenceServerException) as e:
                grpc.infer("simple", u.grpc_inputs(("INPUT0", a, "INT32"), ("INPUT1", a, "INT32")))
            u.assert_grpc_error(e.value, "INVALID_ARGUMENT")

        # simple_queue: the first request waits in the batcher (1.5 s for company), holding the
        # only place in the queue; meanwhile a second one is refused.
        first = {}

        def send_first():
            first["reply"] = u.post_json(hp, "/v2/models/simple_queue/infer", simple_json([1, 16]))

        sender = threading.Thread(target=send_first)
        sender.start()
        t.pending_seen = wait_for(
            "simple_queue's request to be pending",
            lambda: scrape(t.metrics).value("nv_inference_pending_request_count", model="simple_queue", version="1"))
        refused = u.post_json(hp, "/v2/models/simple_queue/infer", simple_json([1, 16], 7))
        t.queue_refusal = refused.json().get("error", "")
        assert refused.status != 200, refused
        sender.join(timeout=30)
        assert first["reply"].status == 200, first["reply"]

        # simple_timeout: the queue timeout (20 ms) falls before the batching delay (300 ms).
        timed_out = u.post_json(hp, "/v2/models/simple_timeout/infer", simple_json([1, 16]))
        assert timed_out.status != 200, timed_out
        t.timeout_refusal = timed_out.json().get("error", "")
    finally:
        http.close()
        grpc.close()


# --- tests ------------------------------------------------------------------------------------

def test_started_line_and_triton_format(traffic):
    log = traffic.server.log()
    assert re.search(r"Started Metrics Service at 127\.0\.0\.1:\d+", log), log
    s = scrape(traffic.metrics)
    gpu = [f for f, _, _ in GPU_FAMILIES if f in s.families]
    if NVML:
        # A GPU reports at least utilization and memory (power can be missing on some boards).
        assert gpu[:3] == [f for f, _, _ in GPU_FAMILIES][:3], s.families
    else:
        assert gpu == [], s.families
        assert "GPU metrics off: NVML not available" in log, log
    expected = [f for f, _, _ in TRITON_FAMILIES] + HISTOGRAMS + gpu + [f for f, _, _ in CPU_FAMILIES]
    assert s.families == expected, s.text
    for name, kind, help_text in TRITON_FAMILIES + CPU_FAMILIES + [g for g in GPU_FAMILIES if g[0] in gpu]:
        assert s.type[name] == kind, name
        assert s.help[name] == help_text, name
    for name in HISTOGRAMS:
        assert s.type[name] == "histogram", name
    # Label order as Triton writes it: model, (reason,) version; every model in each family.
    models = ["simple", "simple_queue", "simple_timeout"]
    assert s.models("nv_inference_request_success") == models
    assert 'nv_inference_request_failure{model="simple",reason="OTHER",version="1"} ' in s.text
    assert 'nv_inference_request_success{model="simple",version="1"} ' in s.text
    assert 'nv_inference_request_duration_histogram_us_bucket{model="simple",version="1",le="+Inf"} ' in s.text
    for name, labels, _ in s.samples:
        keys = [k for k, _ in labels]
        if name == "nv_inference_request_failure":
            assert keys == ["model", "reason", "version"], name
        elif name.endswith("_bucket"):
            assert keys == ["model", "version", "le"], name
        elif name.startswith("nv_inference_"):
            assert keys == ["model", "version"], name
        elif name in GPU_NAMES:
            assert keys == ["gpu_uuid"] and dict(labels)["gpu_uuid"].startswith("GPU-"), (name, labels)
        else:
            assert keys == [], name
    for model in models:
        reasons = [dict(ls)["reason"] for n, ls, _ in s.samples
                   if n == "nv_inference_request_failure" and dict(ls)["model"] == model]
        assert reasons == REASONS, reasons


def test_exact_counts_after_known_traffic(traffic):
    s = scrape(traffic.metrics)
    v = lambda name, model="simple", **kw: s.value(name, model=model, version="1", **kw)  # noqa: E731
    ok = HTTP_OK + GRPC_OK + BATCH2_OK
    assert v("nv_inference_request_success") == ok
    # The bad requests (HTTP_BAD + GRPC_BAD of them) were refused by the checks before reaching
    # the model: as in Triton (its statistics show fail 0 after such requests), not counted.
    for reason in ("OTHER", "BACKEND", "REJECTED", "CANCELED"):
        assert v("nv_inference_request_failure", reason=reason) == 0, reason
    assert v("nv_inference_count") == HTTP_OK + GRPC_OK + 2 * BATCH2_OK
    assert v("nv_inference_exec_count") == ok
    assert v("nv_inference_pending_request_count") == 0
    for name in ("nv_inference_request_duration_us", "nv_inference_compute_infer_duration_us"):
        assert v(name) > 0, name

    # simple_queue: one ran, one refused because the queue was full (pending 1 meanwhile).
    assert traffic.pending_seen == 1
    assert traffic.queue_refusal.endswith("Exceeds maximum queue size for model 'simple_queue'"), traffic.queue_refusal
    assert v("nv_inference_request_success", "simple_queue") == 1
    assert v("nv_inference_request_failure", "simple_queue", reason="REJECTED") == 1
    assert v("nv_inference_request_failure", "simple_queue", reason="OTHER") == 0
    assert v("nv_inference_pending_request_count", "simple_queue") == 0
    # simple_timeout: rejected by the queue timeout, never executed.
    assert traffic.timeout_refusal.endswith("Request timeout expired"), traffic.timeout_refusal
    assert v("nv_inference_request_success", "simple_timeout") == 0
    assert v("nv_inference_request_failure", "simple_timeout", reason="REJECTED") == 1
    assert v("nv_inference_exec_count", "simple_timeout") == 0


@pytest.mark.parametrize("model", ["simple", "simple_queue", "simple_timeout"])
def test_counts_equal_the_statistics_api(traffic, model):
    st = stats(traffic.server.hostport, model)
    s = scrape(traffic.metrics)
    v = lambda name, **kw: s.value(name, model=model, version="1", **kw)  # noqa: E731
    inf = st["inference_stats"]
    assert v("nv_inference_request_success") == inf["success"]["count"]
    assert sum(v("nv_inference_request_failure", reason=r) for r in REASONS) == inf["fail"]["count"]
    assert v("nv_inference_count") == st["inference_count"]
    assert v("nv_inference_exec_count") == st["execution_count"]
    assert v("nv_inference_request_duration_us") == inf["success"]["ns"] // 1000
    assert v("nv_inference_queue_duration_us") == inf["queue"]["ns"] // 1000
    for phase in ("input", "infer", "output"):
        assert v(f"nv_inference_compute_{phase}_duration_us") == inf[f"compute_{phase}"]["ns"] // 1000, phase
    # The histograms count what the statistics count.
    h = "nv_inference_request_duration_histogram_us"
    assert v(h + "_count") == inf["success"]["count"]
    assert v(h + "_sum") == pytest.approx(inf["success"]["ns"] / 1000, rel=1e-9, abs=1e-3)
    q = "nv_inference_queue_duration_histogram_us"
    assert v(q + "_count") == inf["queue"]["count"]
    assert v(q + "_sum") == pytest.approx(inf["queue"]["ns"] / 1000, rel=1e-9, abs=1e-3)
    b = "nv_inference_batch_size_histogram"
    assert v(b + "_count") == st["execution_count"]
    assert v(b + "_sum") == st["inference_count"]
    by_size = {bs["batch_size"]: bs["compute_infer"]["count"] for bs in st["batch_stats"]}
    assert sum(by_size.values()) == st["execution_count"]


@pytest.mark.parametrize("name,les", [
    ("nv_inference_request_duration_histogram_us", DEFAULT_DURATION_LE),
    ("nv_inference_queue_duration_histogram_us", DEFAULT_DURATION_LE),
    ("nv_inference_batch_size_histogram", DEFAULT_BATCH_LE),
])
def test_histogram_buckets_are_consistent(traffic, name, les):
    s = scrape(traffic.metrics)
    for model in ("simple", "simple_queue", "simple_timeout"):
        buckets = s.buckets(name, model)
        assert [le for le, _ in buckets] == les, buckets
        counts = [c for _, c in buckets]
        assert counts == sorted(counts), f"buckets must be cumulative: {buckets}"
        assert counts[-1] == s.value(name + "_count", model=model, version="1")
    ok = HTTP_OK + GRPC_OK + BATCH2_OK
    simple = dict(s.buckets(name, "simple"))
    if name == "nv_inference_request_duration_histogram_us":
        assert simple["+Inf"] == ok == s.value("nv_inference_request_success", model="simple", version="1")
    elif name == "nv_inference_batch_size_histogram":
        # Batch 1 for every request but the one of batch 2.
        assert simple["1"] == HTTP_OK + GRPC_OK
        assert simple["2"] == simple["+Inf"] == ok
        assert dict(s.buckets(name, "simple_queue"))["1"] == 1
        assert dict(s.buckets(name, "simple_timeout"))["+Inf"] == 0
    else:
        # simple_queue's request waited its batching delay (1.5 s) in the queue.
        queue = dict(s.buckets(name, "simple_queue"))
        assert queue["1000000"] == 0 and queue["2500000"] == 1, queue


def test_cpu_metrics(traffic):
    s = scrape(traffic.metrics)
    assert 0.0 <= s.value("nv_cpu_utilization") <= 1.0
    total, used = s.value("nv_cpu_memory_total_bytes"), s.value("nv_cpu_memory_used_bytes")
    assert 0 < used <= total
    # Sampled every 200 ms (--metrics-interval-ms): keep a core busy for longer than that.
    end = time.monotonic() + 0.6
    while time.monotonic() < end:
        pass
    assert 0.0 < scrape(traffic.metrics).value("nv_cpu_utilization") <= 1.0


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/metric", 404),
    ("GET", "/metrics/", 404),
    ("GET", "/v2/health/live", 404),
    ("POST", "/metrics", 405),
    ("PUT", "/metrics", 405),
])
def test_other_paths_and_methods(traffic, method, path, status):
    reply = u.request(traffic.metrics, method, path, body=b"" if method != "GET" else None)
    assert reply.status == status, reply


def test_allow_metrics_false_has_no_listener(ferrite):
    port = u.free_port()
    srv = ferrite.start([ferrite.repo("simple")], ["--allow-metrics=false", f"--metrics-port={port}"])
    log = srv.log()
    assert "Started Metrics Service" not in log, log
    assert re.search(r"\|\s*allow_metrics\s*\|\s*0\s*\|", log), log
    with pytest.raises(OSError):
        u.request(f"127.0.0.1:{port}", "GET", "/metrics", timeout=5)


def test_metrics_config_buckets_and_no_cpu(ferrite):
    srv = ferrite.start([ferrite.repo("simple")], [
        "--metrics-config=duration_buckets_us=10,1000000",
        "--metrics-config", "batch_size_buckets=1,8",
        "--allow-cpu-metrics=false",
    ])
    reply = u.post_json(srv.hostport, "/v2/models/simple/infer", simple_json([1, 16]))
    assert reply.status == 200, reply
    s = scrape(srv.metrics_hostport)
    for name in ("nv_inference_request_duration_histogram_us", "nv_inference_queue_duration_histogram_us"):
        buckets = s.buckets(name, "simple")
        assert [le for le, _ in buckets] == ["10", "1000000", "+Inf"], buckets
        assert buckets[-1][1] == 1
    assert [le for le, _ in s.buckets("nv_inference_batch_size_histogram", "simple")] == ["1", "8", "+Inf"]
    assert not any(f.startswith("nv_cpu_") for f in s.families), s.families


def test_histograms_off(ferrite):
    srv = ferrite.start([ferrite.repo("simple")], ["--metrics-config=histogram_latencies=false",
                                                   "--allow-gpu-metrics=false"])
    s = scrape(srv.metrics_hostport)
    assert s.families == [f for f, _, _ in TRITON_FAMILIES] + [f for f, _, _ in CPU_FAMILIES], s.families
    # Off means not even tried: no word about NVML in the log.
    assert "NVML" not in srv.log(), srv.log()


# --- the Grafana dashboard --------------------------------------------------------------------

def _strings_under(obj, keys: set[str]):
    """Every string value of the given keys, anywhere in the JSON."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in keys and isinstance(v, str):
                yield v
            else:
                yield from _strings_under(v, keys)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings_under(v, keys)


def _all_panels(dashboard: dict):
    for p in dashboard["panels"]:
        yield p
        yield from p.get("panels", [])


def test_dashboard_is_well_formed():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard["schemaVersion"] >= 36  # Grafana 10's JSON model
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["model"]["type"] == "query"
    ids = [p["id"] for p in _all_panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = [p["title"] for p in _all_panels(dashboard) if p["type"] != "row"]
    for wanted in ("Request rate", "Failures by reason", "Request latency p50 / p99", "Queue wait p99",
                   "Batch size distribution", "Pending requests", "Compute infer time per inference",
                   "CPU utilization", "Memory"):
        assert wanted in titles, titles
    for p in _all_panels(dashboard):
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t["refId"], p["title"]
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
            assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]
    exprs = " ".join(_strings_under(dashboard, {"expr"}))
    assert "histogram_quantile(0.99, sum by (model, le) (rate(nv_inference_request_duration_histogram_us_bucket" in exprs
    assert "histogram_quantile(0.5," in exprs


def test_dashboard_uses_only_emitted_metrics(traffic):
    dashboard = json.loads(DASHBOARD.read_text())
    texts = list(_strings_under(dashboard, {"expr", "query", "definition"}))
    used = {m for text in texts for m in re.findall(r"\b(nv_[a-z0-9_]+)\b", text)}
    assert len(used) >= 10, used
    emitted = scrape(traffic.metrics).names()
    missing = sorted(used - emitted)
    assert not missing, f"the dashboard uses metrics the endpoint does not emit: {missing}"
    # Its label names exist too.
    labels = {k for _, ls, _ in scrape(traffic.metrics).samples for k, _ in ls}
    for text in texts:
        for group in re.findall(r"by \(([^)]*)\)", text):
            for label in (x.strip() for x in group.split(",")):
                assert label in labels, f"{label} in {text}"


def test_a_request_whose_client_gave_up_counts_as_canceled(ferrite):
    # A lone request waits up to 1 s for a batch; its gRPC deadline (200 ms) passes first:
    # the client gives up, the request leaves the queue without running, reason CANCELED.
    repo = ferrite.repo()
    u.add_model_with_config(repo, "simple_slow", _config("simple_slow", """dynamic_batching {
  preferred_batch_size: [ 8 ]
  max_queue_delay_microseconds: 1000000
}
instance_group [ { count: 1, kind: KIND_CPU } ]"""))
    srv = ferrite.start([repo])
    client = grpcclient.InferenceServerClient(srv.grpc_hostport)
    a, b = u.simple_pair()
    inputs = u.grpc_inputs(("INPUT0", a, "INT32"), ("INPUT1", b, "INT32"))
    with pytest.raises(Exception) as e:
        client.infer("simple_slow", inputs, client_timeout=0.2)
    assert "Deadline" in str(e.value) or "DEADLINE" in str(e.value), e.value
    metrics = srv.metrics_hostport

    def canceled() -> float:
        return scrape(metrics).value("nv_inference_request_failure", model="simple_slow",
                                     reason="CANCELED", version="1")
    wait_for("the CANCELED count", lambda: canceled() == 1)
    s = scrape(metrics)
    v = lambda name, **kw: s.value(name, model="simple_slow", version="1", **kw)  # noqa: E731
    assert v("nv_inference_exec_count") == 0
    assert v("nv_inference_request_success") == 0
    assert stats(srv.hostport, "simple_slow")["inference_stats"]["fail"]["count"] == 1


def test_a_request_the_driver_fails_counts_as_backend(ferrite):
    # simple_string parses decimal strings inside the ONNX graph (Cast): "abc" fails there.
    srv = ferrite.start([ferrite.repo("simple_string")])
    good = [str(i) for i in range(16)]
    body = {"inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "BYTES", "data": ["abc"] + good[1:]},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "BYTES", "data": good}]}
    reply = u.post_json(srv.hostport, "/v2/models/simple_string/infer", body)
    assert reply.status >= 400 and "Cast" in reply.json()["error"], reply
    body["inputs"][0]["data"] = good
    assert u.post_json(srv.hostport, "/v2/models/simple_string/infer", body).status == 200
    s = scrape(srv.metrics_hostport)
    v = lambda name, **kw: s.value(name, model="simple_string", version="1", **kw)  # noqa: E731
    assert [v("nv_inference_request_failure", reason=r) for r in REASONS] == [0, 1, 0, 0]
    assert v("nv_inference_request_success") == 1
    assert v("nv_inference_exec_count") == 2
    inf = stats(srv.hostport, "simple_string")["inference_stats"]
    assert inf["fail"]["count"] == 1 and inf["success"]["count"] == 1
