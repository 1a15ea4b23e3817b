"""The trace extension: settings over HTTP and gRPC (global and per model), sampling by rate
and count, and the trace file holding each sampled request's timeline."""

import json
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

import e2e_util as u

STAMPS = ["REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_INPUT_END",
          "COMPUTE_OUTPUT_START", "COMPUTE_END", "REQUEST_END"]


def infer(client, request_id: str):
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(a)
    client.infer("simple", inputs, request_id=request_id)


def read_traces(path, deadline_s=5.0):
    """The trace file's objects merged by id: {id: {model_name, request_id, timestamps...}}."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            items = json.loads(path.read_text())
            break
        except (FileNotFoundError, json.JSONDecodeError):
            if time.monotonic() > end:
                raise
            time.sleep(0.05)
    traces = {}
    for item in items:
        traces.setdefault(item["id"], {}).update(item)
    return traces


def check_timeline(trace):
    names = [t["name"] for t in trace["timestamps"]]
    assert names == STAMPS, names
    ns = [t["ns"] for t in trace["timestamps"]]
    assert ns == sorted(ns), ns


def test_sampled_requests_are_written_with_their_timelines(ferrite, tmp_path):
    trace_file = tmp_path / "trace.json"
    srv = ferrite.start([ferrite.repo("simple")], [
        "--trace-config", f"triton,file={trace_file}", "--trace-config", "level=TIMESTAMPS",
        "--trace-config", "rate=2", "--trace-config", "log_frequency=1"])
    client = httpclient.InferenceServerClient(srv.hostport)
    for i in range(5):
        infer(client, f"r{i}")
    # log_frequency 1: each trace in its own indexed file, as it completes.
    files = [tmp_path / f"trace.json.{i}" for i in range(3)]
    got = {}
    for f in files:
        got.update(read_traces(f))
    assert not (tmp_path / "trace.json.3").exists()
    assert sorted(t["request_id"] for t in got.values()) == ["r0", "r2", "r4"]
    for t in got.values():
        assert t["model_name"] == "simple" and t["model_version"] == 1
        check_timeline(t)


def test_settings_over_http_and_grpc(ferrite, tmp_path):
    trace_file = tmp_path / "t.json"
    srv = ferrite.start([ferrite.repo("simple")], ["--trace-file", str(trace_file)])
    http = httpclient.InferenceServerClient(srv.hostport)
    grpc = grpcclient.InferenceServerClient(srv.grpc_hostport)
    assert http.get_trace_settings() == {
        "trace_file": str(trace_file), "trace_level": ["OFF"], "trace_rate": "1000",
        "trace_count": "-1", "log_frequency": "0", "trace_mode": "triton"}
    # A model's own settings, over gRPC; the global ones stay.
    got = grpc.update_trace_settings(model_name="simple", settings={
        "trace_level": ["TIMESTAMPS"], "trace_rate": "1", "trace_count": "2"}, as_json=True)
    assert got["settings"]["trace_level"]["value"] == ["TIMESTAMPS"]
    assert got["settings"]["trace_count"]["value"] == ["2"]
    assert http.get_trace_settings()["trace_level"] == ["OFF"]
    assert http.get_trace_settings(model_name="simple")["trace_rate"] == "1"
    for i in range(4):
        infer(http, f"m{i}")
    # trace_count 2: two traces; log_frequency 0: written when the settings change (or at exit).
    cleared = http.update_trace_settings(model_name="simple", settings={"trace_level": None})
    assert cleared["trace_level"] == ["OFF"]
    traces = read_traces(trace_file)
    assert sorted(t["request_id"] for t in traces.values()) == ["m0", "m1"]
    for t in traces.values():
        check_timeline(t)


def test_bad_settings_are_refused(ferrite, tmp_path):
    srv = ferrite.start([ferrite.repo("simple")], ["--trace-file", str(tmp_path / "t.json")])
    for body, text in [
        ({"trace_rate": "often"}, "unable to parse 'trace_rate'"),
        ({"trace_level": ["LOUD"]}, "unknown trace level 'LOUD'"),
        ({"trace_file": "/tmp/elsewhere.json"}, "trace file location can not be updated through network protocol"),
        ({"nope": "1"}, "unknown trace setting 'nope'"),
    ]:
        reply = u.post_json(srv.hostport, "/v2/trace/setting", body)
        assert reply.status == 400, (body, reply)
        assert text in reply.json()["error"], reply.json()
    reply = u.request(srv.hostport, "GET", "/v2/models/nope/trace/setting")
    assert reply.status in (400, 404), reply
    grpc = grpcclient.InferenceServerClient(srv.grpc_hostport)
    with pytest.raises(Exception) as e:
        grpc.update_trace_settings(settings={"trace_rate": "x"})
    assert "trace_rate" in str(e.value)


def test_tracing_on_without_a_file_fails_at_startup(ferrite):
    rc, log = ferrite.fail([ferrite.repo("simple")], ["--trace-level", "TIMESTAMPS"])
    assert rc != 0
    assert "no trace file is set" in log, log
