"""Triton's ragged batching through the binary and tritonclient (HTTP and gRPC).

Triton's semantics (server docs/user_guide/ragged_batching.md; the backend library's
BackendInputCollector and BackendOutputResponder; core ValidateBatchIO): requests whose
`allow_ragged_batch` inputs differ in shape batch together; the model gets those inputs
concatenated flat ([total element count]) and `batch_input` tensors describing the batch
(element counts, their running sums, each batch item's shape); a BATCH_SCATTER_WITH_INPUT_SHAPE
output goes back to each request in the shape of its source input.

The model, built here with the onnx package:
  INPUT [-1] FP32 (ragged), INDEX [-1] FP32 (BATCH_ACCUMULATED_ELEMENT_COUNT of INPUT),
  COUNT [-1] INT32 (BATCH_ELEMENT_COUNT), SHAPE [-1, 1] INT32 (BATCH_ITEM_SHAPE);
  Y = 2 * INPUT (batch output, scattered with INPUT's shape), END = INDEX, N = COUNT,
  ITEM = SHAPE (ordinary outputs: one row per request).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import e2e_util as u

onnx = pytest.importorskip("onnx", reason="the onnx package builds the test model (scripts/setup.sh installs it)")
from onnx import TensorProto, helper  # noqa: E402

pytestmark = pytest.mark.timeout(120)

CONFIG = """
name: "ragged"
platform: "onnxruntime_onnx"
max_batch_size: 16
dynamic_batching { preferred_batch_size: [ 3 ] max_queue_delay_microseconds: 2000000 }
instance_group [ { count: 1 kind: KIND_CPU } ]
input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]
batch_input [
  { kind: BATCH_ACCUMULATED_ELEMENT_COUNT target_name: "INDEX" data_type: TYPE_FP32 source_input: "INPUT" },
  { kind: BATCH_ELEMENT_COUNT target_name: "COUNT" data_type: TYPE_INT32 source_input: "INPUT" },
  { kind: BATCH_ITEM_SHAPE target_name: "SHAPE" data_type: TYPE_INT32 source_input: "INPUT" }
]
output [
  { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "END" data_type: TYPE_FP32 dims: [ 1 ] reshape { shape: [ ] } },
  { name: "N" data_type: TYPE_INT32 dims: [ 1 ] reshape { shape: [ ] } },
  { name: "ITEM" data_type: TYPE_INT32 dims: [ 1 ] }
]
batch_output [ { kind: BATCH_SCATTER_WITH_INPUT_SHAPE target_name: "Y" source_input: "INPUT" } ]
"""


def _model() -> bytes:
    v = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Add", ["INPUT", "INPUT"], ["Y"]),
         helper.make_node("Identity", ["INDEX"], ["END"]),
         helper.make_node("Identity", ["COUNT"], ["N"]),
         helper.make_node("Identity", ["SHAPE"], ["ITEM"])],
        "ragged",
        [v("INPUT", TensorProto.FLOAT, [-1]), v("INDEX", TensorProto.FLOAT, [-1]),
         v("COUNT", TensorProto.INT32, [-1]), v("SHAPE", TensorProto.INT32, [-1, 1])],
        [v("Y", TensorProto.FLOAT, [-1]), v("END", TensorProto.FLOAT, [-1]),
         v("N", TensorProto.INT32, [-1]), v("ITEM", TensorProto.INT32, [-1, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.fixture(scope="module")
def ragged_server(prerequisites, tmp_path_factory):
    repo = tmp_path_factory.mktemp("ragged-repo")
    d = repo / "ragged"
    (d / "1").mkdir(parents=True)
    (d / "1" / "model.onnx").write_bytes(_model())
    (d / "config.pbtxt").write_text(CONFIG)
    # A model that cannot take a ragged input (its input is not [-1]) is refused at load.
    bad = repo / "ragged_bad"
    (bad / "1").mkdir(parents=True)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT"], ["Y"])], "bad",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, [-1, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [-1, 4])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    (bad / "1" / "model.onnx").write_bytes(m.SerializeToString())
    (bad / "config.pbtxt").write_text("""name: "ragged_bad" platform: "onnxruntime_onnx" max_batch_size: 8
input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ 4 ] allow_ragged_batch: true } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 4 ] } ]
""")
    srv = u.start_server([repo], ["--exit-on-error=false"], tmp_path_factory.mktemp("ragged-log"),
                         wait_ready=False)
    srv.wait_http("/v2/models/ragged/ready")
    yield srv
    srv.stop_cleanly()


def _infer(srv, protocol: str, x: np.ndarray):
    if protocol == "http":
        c = httpclient.InferenceServerClient(srv.hostport, network_timeout=60.0)
        i = httpclient.InferInput("INPUT", list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        r = c.infer("ragged", [i])
    else:
        c = grpcclient.InferenceServerClient(srv.grpc_hostport)
        r = c.infer("ragged", u.grpc_inputs(("INPUT", x, "FP32")), client_timeout=60)
    return {name: r.as_numpy(name) for name in ("Y", "END", "N", "ITEM")}


def _stats(srv) -> tuple[int, int]:
    c = httpclient.InferenceServerClient(srv.hostport)
    s = c.get_inference_statistics("ragged")["model_stats"][0]
    return int(s.get("inference_count", 0)), int(s.get("execution_count", 0))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_requests_of_different_lengths_batch_together(ragged_server, protocol):
    # The doc's example: [1, 3], [1, 4], [1, 5] -> INPUT [12], INDEX [3, 7, 12].
    before = _stats(ragged_server)
    xs = [np.arange(n, dtype=np.float32).reshape(1, n) + 10 * n for n in (3, 4, 5)]
    results = [None] * len(xs)
    barrier = threading.Barrier(len(xs))

    def one(k):
        barrier.wait()
        results[k] = _infer(ragged_server, protocol, xs[k])

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    after = _stats(ragged_server)
    assert (after[0] - before[0], after[1] - before[1]) == (3, 1), "one execution of all three"
    for x, r in zip(xs, results):
        n = x.shape[1]
        # The batch output comes back in the request's own shape.
        assert r["Y"].shape == (1, n)
        np.testing.assert_array_equal(r["Y"], 2 * x)
        assert r["N"].tolist() == [[n]]
        assert r["ITEM"].tolist() == [[n]]
    # Where each request's elements end in the concatenation: the running sum, in the order
    # the batch took them.
    ends = sorted((float(r["END"][0, 0]), x.shape[1]) for x, r in zip(xs, results))
    total = 0
    for end, n in ends:
        total += n
        assert end == total, ends
    assert total == 12


def test_a_lone_request_runs_ragged_too(ragged_server):
    x = np.array([[1.5, -2.0]], dtype=np.float32)
    c = httpclient.InferenceServerClient(ragged_server.hostport, network_timeout=60.0)
    i = httpclient.InferInput("INPUT", [1, 2], "FP32")
    i.set_data_from_numpy(x)
    r = c.infer("ragged", [i], outputs=[httpclient.InferRequestedOutput("Y"),
                                        httpclient.InferRequestedOutput("END")])
    np.testing.assert_array_equal(r.as_numpy("Y"), 2 * x)
    assert r.as_numpy("END").tolist() == [[2.0]]
    assert r.as_numpy("N") is None


def test_a_model_without_a_flat_ragged_input_is_refused(ragged_server):
    index = u.post_json(ragged_server.hostport, "/v2/repository/index", {}).json()
    entry = next(e for e in index if e["name"] == "ragged_bad")
    assert entry["state"] == "UNAVAILABLE"
    assert ("unable to load model 'ragged_bad', configuration expects model provides input with shape "
            "[-1]  for ragged input 'INPUT', model provides [-1,4]") in entry["reason"], entry


def test_batch_io_is_checked_as_triton_does(ferrite):
    repo = ferrite.repo()
    d = repo / "ragged"
    (d / "1").mkdir(parents=True)
    (d / "1" / "model.onnx").write_bytes(_model())
    (d / "config.pbtxt").write_text(CONFIG.replace('source_input: "INPUT" },\n  { kind: BATCH_ELEMENT_COUNT',
                                                   'source_input: "NOPE" },\n  { kind: BATCH_ELEMENT_COUNT'))
    srv = ferrite.start([repo], ["--exit-on-error=false"], wait_ready=False)
    srv.wait_http("/v2/health/live")
    for _ in range(100):
        index = u.post_json(srv.hostport, "/v2/repository/index", {}).json()
        if index and index[0].get("state") == "UNAVAILABLE":
            break
        time.sleep(0.1)
    assert "batch_input[0]: unknown source input name 'NOPE'" in index[0]["reason"], index
    with pytest.raises(InferenceServerException):
        _infer(srv, "http", np.zeros((1, 2), dtype=np.float32))
