"""Triton's `reshape` and scalar tensors, through the binary and tritonclient (HTTP and gRPC).

Triton's semantics (core infer_request.cc Normalize, infer_response.cc Output::Reshape,
model_config_utils.cc ValidateIOShape; onnxruntime backend CompareDimsSupported and its
scalar rule): clients send and receive `dims` (after the batch dimension), the model sees
`reshape.shape`; `-1` sizes travel in order; an empty reshape makes a [1] tensor a scalar of
a batching model; an ONNX tensor of shape [] is configured as [1] in a model that does not
batch. The example repository's densenet_onnx is Triton's quick-start config.pbtxt unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import e2e_util as u

onnx = pytest.importorskip("onnx", reason="the onnx package builds the test models (scripts/setup.sh installs it)")
from onnx import TensorProto, helper  # noqa: E402


def _x(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (3, 224, 224)).astype(np.float32)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_densenet_onnx_metadata_shows_the_client_shapes(server, protocol):
    if protocol == "http":
        c = httpclient.InferenceServerClient(server.hostport)
        meta = c.get_model_metadata("densenet_onnx")
        config = c.get_model_config("densenet_onnx")
        inputs, outputs = meta["inputs"], meta["outputs"]
    else:
        c = grpcclient.InferenceServerClient(server.grpc_hostport)
        meta = c.get_model_metadata("densenet_onnx", as_json=True)
        config = c.get_model_config("densenet_onnx", as_json=True)["config"]
        inputs, outputs = meta["inputs"], meta["outputs"]
    shape = lambda t: [int(d) for d in t["shape"]]  # noqa: E731 (gRPC JSON gives strings)
    assert [(t["name"], t["datatype"], shape(t)) for t in inputs] == [("data_0", "FP32", [3, 224, 224])]
    assert [(t["name"], t["datatype"], shape(t)) for t in outputs] == [("fc6_1", "FP32", [1000])]
    assert [int(d) for d in config["input"][0]["reshape"]["shape"]] == [1, 3, 224, 224]
    assert [int(d) for d in config["output"][0]["reshape"]["shape"]] == [1, 1000, 1, 1]
    assert config["output"][0]["label_filename"] == "densenet_labels.txt"


def test_densenet_onnx_is_the_classifier_behind_tritons_shapes(client, grpc_client):
    x = _x(1)
    inp = httpclient.InferInput("input", [1, 3, 224, 224], "FP32")
    inp.set_data_from_numpy(x[None])
    want = client.infer("efficientnet_lite0_onnx", [inp]).as_numpy("logits")[0]

    h = httpclient.InferInput("data_0", [3, 224, 224], "FP32")
    h.set_data_from_numpy(x)
    got_http = client.infer("densenet_onnx", [h]).as_numpy("fc6_1")
    (g,) = u.grpc_inputs(("data_0", x, "FP32"))
    got_grpc = grpc_client.infer("densenet_onnx", [g]).as_numpy("fc6_1")
    for got in (got_http, got_grpc):
        assert got.shape == (1000,)
        np.testing.assert_allclose(got, want, atol=1e-4)

    # Classification on the reshaped output: Triton's labels, 3 classes, no batch dimension.
    labels = (u.MODEL_REPO / "densenet_onnx" / "densenet_labels.txt").read_text().splitlines()
    best = np.argsort(-want, kind="stable")[:3]
    out = httpclient.InferRequestedOutput("fc6_1", class_count=3)
    classes = client.infer("densenet_onnx", [h], outputs=[out]).as_numpy("fc6_1")
    assert classes.shape == (3,)
    got = [c.decode().split(":") for c in classes]
    assert [(int(i), label) for _, i, label in got] == [(int(i), labels[i]) for i in best]
    gout = grpcclient.InferRequestedOutput("fc6_1", class_count=3)
    gclasses = grpc_client.infer("densenet_onnx", [g], outputs=[gout]).as_numpy("fc6_1")
    assert [c.decode().split(":")[1:] for c in gclasses] == [e[1:] for e in got]


def test_densenet_onnx_refuses_the_models_own_shape(client, grpc_client):
    x = _x()[None]
    want = ("unexpected shape for input 'data_0' for model 'densenet_onnx'. "
            "Expected [3,224,224], got [1,3,224,224]. ")
    h = httpclient.InferInput("data_0", [1, 3, 224, 224], "FP32")
    h.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as e:
        client.infer("densenet_onnx", [h])
    assert want in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        grpc_client.infer("densenet_onnx", u.grpc_inputs(("data_0", x, "FP32")))
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert want in e.value.message()


# --- models built here: variable reshapes, empty reshapes, scalars ---------------------------

def _save(model_dir, graph, config: str | None) -> None:
    (model_dir / "1").mkdir(parents=True)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    (model_dir / "1" / "model.onnx").write_bytes(model.SerializeToString())
    if config is not None:
        (model_dir / "config.pbtxt").write_text(config)


def _double(in_shape, out_shape, dtype=TensorProto.INT32):
    """Y = X + X, X and Y of the given ONNX shapes."""
    return helper.make_graph(
        [helper.make_node("Add", ["X", "X"], ["Y"])], "double",
        [helper.make_tensor_value_info("X", dtype, in_shape)],
        [helper.make_tensor_value_info("Y", dtype, out_shape)])


VARIABLE = """
name: "variable"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [ { name: "X" data_type: TYPE_INT32 dims: [ -1, 2, 3 ] reshape { shape: [ -1, 6 ] } } ]
output [ { name: "Y" data_type: TYPE_INT32 dims: [ -1, 3, 2 ] reshape { shape: [ -1, 6 ] } } ]
"""

BATCHED_SCALAR = """
name: "batched_scalar"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_INT32 dims: [ 1 ] reshape { shape: [ ] } } ]
output [ { name: "Y" data_type: TYPE_INT32 dims: [ 1 ] reshape { shape: [ ] } } ]
"""


@pytest.fixture(scope="module")
def built_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("reshape-repo")
    # [batch, n, 6] in the model; clients send [batch, n, 2, 3] and get [batch, n, 3, 2].
    _save(repo / "variable", _double(["b", "n", 6], ["b", "n", 6]), VARIABLE)
    # A batching model whose tensors are the batch dimension alone: [batch] to the model.
    _save(repo / "batched_scalar", _double(["b"], ["b"]), BATCHED_SCALAR)
    # Scalars (shape []) in a model that does not batch: dims [1], auto-completed.
    _save(repo / "scalar", _double([], []), None)
    # ... and one whose configuration contradicts the model.
    _save(repo / "scalar_wrong", _double([], []), """
name: "scalar_wrong"
platform: "onnxruntime_onnx"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_INT32 dims: [ 2 ] } ]
output [ { name: "Y" data_type: TYPE_INT32 dims: [ 1 ] } ]
""")
    # A reshape whose element count differs from dims: refused by the core before the model.
    _save(repo / "reshape_wrong", _double(["b", "n", 6], ["b", "n", 6]),
          VARIABLE.replace('"variable"', '"reshape_wrong"').replace("[ -1, 6 ] } } ]\noutput", "[ -1, 7 ] } } ]\noutput"))
    return repo


@pytest.fixture(scope="module")
def built_server(prerequisites, built_repo, tmp_path_factory):
    srv = u.start_server([built_repo], ["--exit-on-error=false"], tmp_path_factory.mktemp("reshape-log"),
                         wait_ready=False)
    srv.wait_http("/v2/models/variable/ready")
    srv.wait_http("/v2/models/scalar/ready")
    srv.wait_http("/v2/models/batched_scalar/ready")
    yield srv
    srv.stop_cleanly()


def _infer(srv, protocol, model, x, datatype="INT32"):
    if protocol == "http":
        c = httpclient.InferenceServerClient(srv.hostport)
        i = httpclient.InferInput("X", list(x.shape), datatype)
        i.set_data_from_numpy(x)
        return c.infer(model, [i]).as_numpy("Y")
    c = grpcclient.InferenceServerClient(srv.grpc_hostport)
    return c.infer(model, u.grpc_inputs(("X", x, datatype))).as_numpy("Y")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_variable_sizes_travel_through_the_reshape(built_server, protocol):
    for batch, n in [(1, 1), (2, 5), (4, 3)]:
        x = np.arange(batch * n * 2 * 3, dtype=np.int32).reshape(batch, n, 2, 3)
        y = _infer(built_server, protocol, "variable", x)
        # The model doubled [batch, n, 6]; the client sees it as [batch, n, 3, 2].
        assert y.shape == (batch, n, 3, 2)
        np.testing.assert_array_equal(y.reshape(-1), 2 * x.reshape(-1))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_empty_reshape_is_a_batch_of_scalars(built_server, protocol):
    x = np.array([[3], [-4], [5]], dtype=np.int32)
    y = _infer(built_server, protocol, "batched_scalar", x)
    assert y.shape == (3, 1)
    np.testing.assert_array_equal(y, 2 * x)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_scalar_models_are_served_with_dims_one(built_server, protocol):
    config = u.request(built_server.hostport, "GET", "/v2/models/scalar/config").json()
    assert config["max_batch_size"] == 0
    assert [(t["name"], t["dims"]) for t in config["input"]] == [("X", [1])]
    assert [(t["name"], t["dims"]) for t in config["output"]] == [("Y", [1])]
    y = _infer(built_server, protocol, "scalar", np.array([21], dtype=np.int32))
    assert y.shape == (1,)
    assert y.tolist() == [42]


def test_contradicting_configurations_are_refused_at_load(built_server):
    index = u.post_json(built_server.hostport, "/v2/repository/index", {}).json()
    reasons = {e["name"]: (e.get("state"), e.get("reason", "")) for e in index}
    state, reason = reasons["scalar_wrong"]
    assert state == "UNAVAILABLE"
    assert ("unable to load model 'scalar_wrong', scalar tensor 'X', should only provide 1 in the model "
            "configuration when the model doesn't support batching. Model configuration provided: [2].") in reason
    state, reason = reasons["reshape_wrong"]
    assert state == "UNAVAILABLE"
    assert "model input 'X' has different size for dims and reshape" in reason
    for ok in ("variable", "scalar", "batched_scalar"):
        assert reasons[ok][0] == "READY"
