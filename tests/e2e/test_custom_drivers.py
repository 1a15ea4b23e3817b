"""The example drivers end to end: the `ferrite` binary on configs/driver_examples, driven by
tritonclient over HTTP and gRPC and by raw HTTP for server-sent events.

- identity (the C driver): any data type back as it came, over both protocols;
- repeat_int32 (decoupled): a stream of responses over gRPC ModelStreamInfer, each with
  `triton_final_response`, the empty final response when the client asks for it; over HTTP
  as server-sent events (`Accept: text/event-stream`), events arriving as they are made; the
  unary ModelInfer RPC and plain HTTP refuse it as Triton does;
- accumulate (stateful): sequences through tritonclient's sequence_id/start/end;
- faults: a panicking driver answers INTERNAL and the server keeps serving.
"""

import http.client
import json
import queue
import time
from functools import partial

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import e2e_util as u

REPO = u.ROOT / "configs" / "driver_examples"
DRIVERS = ["identity/libferrite_driver_identity.so", "libferrite_driver_repeat.so",
           "libferrite_driver_accumulate.so", "libferrite_driver_template.so",
           "libferrite_driver_faults.so"]
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def examples(prerequisites, tmp_path_factory):
    missing = [d for d in DRIVERS if not (u.BACKEND_DIR / d).exists()]
    assert not missing, f"build the example drivers (cargo build --workspace): missing {missing}"
    srv = u.start_server([REPO], [], tmp_path_factory.mktemp("examples-log"))
    yield srv
    srv.stop_cleanly()


@pytest.fixture(scope="module")
def http_client(examples):
    c = httpclient.InferenceServerClient(url=examples.hostport, network_timeout=TIMEOUT)
    yield c
    c.close()


@pytest.fixture(scope="module")
def grpc_client(examples):
    c = grpcclient.InferenceServerClient(url=examples.grpc_hostport)
    yield c
    c.close()


def identity_inputs(module, floats, strings):
    a = module.InferInput("INPUT0", list(floats.shape), "FP32")
    a.set_data_from_numpy(floats)
    b = module.InferInput("INPUT1", list(strings.shape), "BYTES")
    b.set_data_from_numpy(strings)
    return [a, b]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_identity_in_c_serves_both_protocols(http_client, grpc_client, protocol):
    client, module = (http_client, httpclient) if protocol == "http" else (grpc_client, grpcclient)
    floats = np.array([[0.5, -1.25, 3e9]], dtype=np.float32)
    strings = np.array([[b"tensor", b"", "ü".encode()]], dtype=object)
    result = client.infer("identity", identity_inputs(module, floats, strings))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), floats)
    assert result.as_numpy("OUTPUT1").tolist() == strings.tolist()
    meta = client.get_model_metadata("identity")
    name = meta["platform"] if protocol == "http" else meta.platform
    assert name == "identity"


def repeat_inputs(values, delays, wait):
    tensors = [("IN", np.array(values, dtype=np.int32), "INT32"),
               ("DELAY", np.array(delays, dtype=np.uint32), "UINT32"),
               ("WAIT", np.array([wait], dtype=np.uint32), "UINT32")]
    return u.grpc_inputs(*tensors)


def stream_results(client, n_expected, **kwargs):
    """Sends one request on a new stream and collects (result, error, arrival) until the
    final flag (or n_expected items without one)."""
    q = queue.Queue()
    client.start_stream(callback=lambda result, error: q.put((result, error, time.monotonic())))
    try:
        client.async_stream_infer("repeat_int32", **kwargs)
        items = []
        while True:
            try:
                item = q.get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"the stream stalled after {items}")
            items.append(item)
            result, error, _ = item
            final = (result is not None and
                     result.get_response().parameters["triton_final_response"].bool_param)
            if final or error is not None or len(items) == n_expected:
                return items
    finally:
        client.stop_stream()


def test_repeat_streams_over_grpc(grpc_client):
    items = stream_results(grpc_client, 4, inputs=repeat_inputs([10, 20, 30], [0, 400, 0], 0),
                           request_id="r1", enable_empty_final_response=True)
    assert len(items) == 4, items
    for i, (result, error, _) in enumerate(items[:3]):
        assert error is None
        assert result.as_numpy("OUT").tolist() == [10 * (i + 1)]
        assert result.as_numpy("IDX").tolist() == [i]
        response = result.get_response()
        assert response.id == "r1"
        assert response.parameters["triton_final_response"].bool_param is False
    final = items[3][0].get_response()
    assert final.parameters["triton_final_response"].bool_param is True
    assert (final.id, final.model_name, final.model_version, len(final.outputs)) == \
        ("r1", "repeat_int32", "", 0)
    # The second response came when it was made, 400 ms after the first, not with the last.
    assert items[1][2] - items[0][2] >= 0.3


def test_repeat_without_the_empty_final_response(grpc_client):
    """Without enable_empty_final_response the flag alone is not sent (Triton's default)."""
    q = queue.Queue()
    grpc_client.start_stream(callback=lambda result, error: q.put((result, error)))
    try:
        grpc_client.async_stream_infer("repeat_int32", repeat_inputs([1, 2], [0, 0], 0))
        got = [q.get(timeout=TIMEOUT) for _ in range(2)]
        assert [r.as_numpy("OUT").tolist() for r, _ in got] == [[1], [2]]
        with pytest.raises(queue.Empty):
            q.get(timeout=0.5)
    finally:
        grpc_client.stop_stream()


def test_repeat_errors_stay_on_the_stream(grpc_client):
    items = stream_results(grpc_client, 1, inputs=repeat_inputs([1, 2], [0], 0))
    _, error, _ = items[0]
    assert "repeat: DELAY has 1 elements and IN 2: one delay per value" in str(error)


def test_decoupled_models_are_refused_by_unary_calls(http_client, grpc_client, examples):
    with pytest.raises(InferenceServerException) as e:
        grpc_client.infer("repeat_int32", repeat_inputs([1], [0], 0))
    assert "ModelInfer RPC doesn't support models with decoupled transaction policy" in str(e.value)
    body = {"inputs": [{"name": "IN", "datatype": "INT32", "shape": [1], "data": [1]}]}
    r = u.post_json(examples.hostport, "/v2/models/repeat_int32/infer", body)
    assert r.status == 501
    assert r.json() == {"error": "HTTP end point doesn't support models with decoupled transaction policy"}


def sse_body(values, delays, wait, **extra):
    inputs = [{"name": "IN", "datatype": "INT32", "shape": [len(values)], "data": values},
              {"name": "DELAY", "datatype": "UINT32", "shape": [len(delays)], "data": delays},
              {"name": "WAIT", "datatype": "UINT32", "shape": [1], "data": [wait]}]
    return json.dumps({"id": "sse", "inputs": inputs, **extra})


def read_events(resp):
    """(event JSON, arrival) for each server-sent event, until the stream ends."""
    events, buf = [], b""
    while True:
        chunk = resp.read1(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            if event.startswith(b":"):
                continue  # a comment: the server's heartbeat while the model is quiet
            assert event.startswith(b"data: "), event
            events.append((json.loads(event[len(b"data: "):]), time.monotonic()))
    assert buf == b""
    return events


def test_repeat_streams_over_http_as_server_sent_events(examples):
    host, port = examples.hostport.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    try:
        conn.request("POST", "/v2/models/repeat_int32/infer", sse_body([7, 8, 9], [0, 400, 0], 0),
                     {"Accept": "text/event-stream", "Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "text/event-stream"
        assert resp.getheader("Cache-Control") == "no-cache"
        events = read_events(resp)
    finally:
        conn.close()
    assert len(events) == 3
    for i, (event, _) in enumerate(events):
        assert event["id"] == "sse" and event["model_name"] == "repeat_int32"
        assert event["parameters"] == {"triton_final_response": False}
        outputs = {o["name"]: o for o in event["outputs"]}
        assert outputs["OUT"]["data"] == [7 + i] and outputs["IDX"]["data"] == [i]
        assert outputs["OUT"]["shape"] == [1] and outputs["OUT"]["datatype"] == "INT32"
    assert events[1][1] - events[0][1] >= 0.3, "events arrive as they are made"


def test_server_sent_event_errors(examples):
    host, port = examples.hostport.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    try:
        conn.request("POST", "/v2/models/repeat_int32/infer", sse_body([1, 2], [0], 0),
                     {"Accept": "text/event-stream"})
        resp = conn.getresponse()
        assert resp.status == 200
        events = read_events(resp)
        assert [e for e, _ in events] == [
            {"error": "repeat: DELAY has 1 elements and IN 2: one delay per value"}]
        # Binary outputs cannot travel in events: refused before the model runs.
        body = sse_body([1], [0], 0, outputs=[{"name": "OUT", "parameters": {"binary_data": True}}])
        conn.request("POST", "/v2/models/repeat_int32/infer", body, {"Accept": "text/event-stream"})
        resp = conn.getresponse()
        assert resp.status == 400
        assert "server-sent events carry JSON outputs only" in json.loads(resp.read())["error"]
    finally:
        conn.close()


def test_a_client_that_leaves_an_event_stream_frees_the_model(examples):
    host, port = examples.hostport.rsplit(":", 1)
    for _ in range(3):  # more streams than the model has instances (2)
        conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
        try:
            conn.request("POST", "/v2/models/repeat_int32/infer", sse_body([1, 2], [0, 60000], 0),
                         {"Accept": "text/event-stream"})
            resp = conn.getresponse()
            assert resp.status == 200
            # The first event (after heartbeats while an earlier stream still holds the
            # instance: the server notices a closed connection at its next writes).
            buf = b""
            while b"data: " not in buf:
                chunk = resp.read1(65536)
                assert chunk, buf
                buf += chunk
        finally:
            conn.close()
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    try:
        conn.request("POST", "/v2/models/repeat_int32/infer", sse_body([5], [0], 0),
                     {"Accept": "text/event-stream"})
        events = read_events(conn.getresponse())
    finally:
        conn.close()
    assert len(events) == 1 and events[0][0]["outputs"][0]["data"] == [5]
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_accumulate_keeps_state_per_sequence(http_client, grpc_client, protocol):
    client, module = (http_client, httpclient) if protocol == "http" else (grpc_client, grpcclient)
    base = 1000 if protocol == "http" else 2000

    def step(seq, value, start=False, end=False):
        x = module.InferInput("INPUT", [1, 1], "INT32")
        x.set_data_from_numpy(np.array([[value]], dtype=np.int32))
        r = client.infer("accumulate", [x], sequence_id=base + seq, sequence_start=start,
                         sequence_end=end)
        return int(r.as_numpy("OUTPUT")[0][0])

    assert step(1, 3, start=True) == 3
    assert step(2, 10, start=True) == 10
    assert step(1, 4) == 7
    assert step(2, -1) == 9
    assert step(1, 5, end=True) == 12
    assert step(2, 1, end=True) == 10


def test_a_panicking_driver_answers_internal_and_the_server_keeps_serving(http_client, examples):
    x = httpclient.InferInput("INPUT0", [1, 2], "FP32")
    x.set_data_from_numpy(np.array([[1, 2]], dtype=np.float32))
    with pytest.raises(InferenceServerException) as e:
        http_client.infer("faults", [x], parameters={"fault": "panic"})
    assert "the driver panicked in execute: faults: asked to panic" in str(e.value)
    body = {"parameters": {"fault": "panic"},
            "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
    r = u.post_json(examples.hostport, "/v2/models/faults/infer", body)
    assert r.status == 500
    with pytest.raises(InferenceServerException) as e:
        http_client.infer("faults", [x], parameters={"fault": "error"})
    assert "faults: asked to fail this request" in str(e.value)
    np.testing.assert_array_equal(http_client.infer("faults", [x]).as_numpy("OUTPUT0"), [[1, 2]])
    assert http_client.is_server_live() and http_client.is_model_ready("faults")
    result = http_client.infer("template_scale", [_scale_input()])
    np.testing.assert_allclose(result.as_numpy("OUTPUT"), [[2.5, -5.0]])


def _scale_input():
    x = httpclient.InferInput("INPUT", [1, 2], "FP32")
    x.set_data_from_numpy(np.array([[1, -2]], dtype=np.float32))
    return x
