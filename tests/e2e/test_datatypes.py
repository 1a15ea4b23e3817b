"""Every Triton data type through the CPU driver: one ONNX Identity model per type, built with
the `onnx` package into a temporary repository whose config.pbtxt files say nothing but the
platform (auto-complete fills in the rest), then a round trip in binary and JSON.
"""

import json

import numpy as np
import onnx
import pytest
import tritonclient.http as httpclient
from onnx import TensorProto, helper

import e2e_util as u

# Triton datatype -> (ONNX element type, numpy dtype, sample values)
TYPES = {
    "BOOL": (TensorProto.BOOL, np.bool_, [True, False, True, True]),
    "UINT8": (TensorProto.UINT8, np.uint8, [0, 1, 200, 255]),
    "UINT16": (TensorProto.UINT16, np.uint16, [0, 1, 40000, 65535]),
    "UINT32": (TensorProto.UINT32, np.uint32, [0, 1, 3_000_000_000, 4_294_967_295]),
    "UINT64": (TensorProto.UINT64, np.uint64, [0, 1, 2**40, 2**64 - 1]),
    "INT8": (TensorProto.INT8, np.int8, [-128, -1, 0, 127]),
    "INT16": (TensorProto.INT16, np.int16, [-32768, -1, 0, 32767]),
    "INT32": (TensorProto.INT32, np.int32, [-(2**31), -1, 0, 2**31 - 1]),
    "INT64": (TensorProto.INT64, np.int64, [-(2**63), -1, 0, 2**63 - 1]),
    "FP16": (TensorProto.FLOAT16, np.float16, [-1.5, 0.0, 0.099976, 65504.0]),
    "FP32": (TensorProto.FLOAT, np.float32, [-1.5, 0.0, 0.1, 3.4e38]),
    "FP64": (TensorProto.DOUBLE, np.float64, [-1.5, 0.0, 0.1, 1.7e308]),
    "BYTES": (TensorProto.STRING, np.object_, [b"", b"a", b"hello world", "\u00e9t\u00e9".encode()]),
}
BF16 = TensorProto.BFLOAT16


def identity_model(path, elem_type):
    x = helper.make_tensor_value_info("INPUT0", elem_type, [-1, 4])
    y = helper.make_tensor_value_info("OUTPUT0", elem_type, [-1, 4])
    graph = helper.make_graph([helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])], "identity", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def typed_server(prerequisites, tmp_path_factory):
    repo = tmp_path_factory.mktemp("typed-repo")
    for name, (elem, _, _) in list(TYPES.items()) + [("BF16", (BF16, None, None))]:
        model = repo / f"identity_{name.lower()}"
        identity_model(model / "1" / "model.onnx", elem)
        (model / "config.pbtxt").write_text('platform: "onnxruntime_onnx"\nmax_batch_size: 8\n')
    srv = u.start_server([repo], [], tmp_path_factory.mktemp("typed-logs"))
    yield srv
    srv.stop_cleanly()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", list(TYPES))
def test_identity_round_trip(typed_server, datatype, binary):
    _, dtype, values = TYPES[datatype]
    client = httpclient.InferenceServerClient(typed_server.hostport)
    model = f"identity_{datatype.lower()}"
    meta = client.get_model_metadata(model)
    assert meta["inputs"] == [{"name": "INPUT0", "datatype": datatype, "shape": [-1, 4]}]
    arr = np.array([values], dtype=dtype)
    inp = httpclient.InferInput("INPUT0", [1, 4], datatype)
    inp.set_data_from_numpy(arr, binary_data=binary)
    res = client.infer(model, [inp], outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)])
    out = res.as_numpy("OUTPUT0")
    assert out.shape == (1, 4)
    if datatype == "BYTES":
        got = [x.encode() if isinstance(x, str) else bytes(x) for x in out.flatten()]
        assert got == values
    else:
        assert out.dtype == dtype
        np.testing.assert_array_equal(out, arr)


def test_bf16_round_trip_binary(typed_server):
    # tritonclient has no numpy type for BF16: raw binary tensors, the upper halves of FP32s
    f32 = np.array([1.0, -2.5, 0.15625, 3.0e38], dtype=np.float32)
    raw = (f32.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    header = {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "BF16",
                          "parameters": {"binary_data_size": len(raw)}}],
              "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]}
    body, hlen = u.binary_infer_body(header, raw)
    reply = u.request(typed_server.hostport, "POST", "/v2/models/identity_bf16/infer", body,
                      {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(hlen)})
    assert reply.status == 200, reply
    n = int(reply.header("Inference-Header-Content-Length"))
    head = json.loads(reply.body[:n])
    assert head["outputs"][0]["datatype"] == "BF16"
    assert reply.body[n:] == raw


@pytest.mark.parametrize("datatype", ["FP64", "INT32", "FP16"])
def test_tensor_at_any_alignment(typed_server, datatype):
    # A binary tensor starts wherever the JSON header ends; the driver hands ONNX Runtime a
    # view of aligned bytes and a copy of unaligned ones. Pad the header so the tensor starts
    # at every offset modulo 8: all must give the same answer.
    _, dtype, values = TYPES[datatype]
    arr = np.array([values], dtype=dtype)
    raw = arr.tobytes()
    for pad in range(8):
        header = {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": datatype,
                              "parameters": {"binary_data_size": len(raw)}}],
                  "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}],
                  "id": "x" * pad}
        body, hlen = u.binary_infer_body(header, raw)
        reply = u.request(typed_server.hostport, "POST", f"/v2/models/identity_{datatype.lower()}/infer", body,
                          {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(hlen)})
        assert reply.status == 200, (pad, reply)
        n = int(reply.header("Inference-Header-Content-Length"))
        assert reply.body[n:] == raw, pad
