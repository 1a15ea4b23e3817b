"""Bad inference requests over gRPC get the same Triton code and message as over HTTP
(test_bad_requests.py), and never hurt the server.

Triton's gRPC status for a core error: NOT_FOUND, INVALID_ARGUMENT, UNAVAILABLE, INTERNAL,
CANCELLED... as the error's code says (shared/triton-reference/grpc 11, 13, 14, where the
message is the HTTP one word for word). `simple`: max_batch_size 8, INPUT0/INPUT1 TYPE_INT32
dims [16]. Requests tritonclient refuses to build (wrong byte sizes, missing data) go through
the generated stub.
"""

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

import e2e_util as u
from test_bad_requests import NOTE

TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def good_request_still_works(grpc_client):
    """After every bad request, a good one on the same server still gets the right answer."""
    yield
    a, b = u.simple_pair(seed=1)
    res = grpc_client.infer("simple", u.grpc_inputs(("INPUT0", a, "INT32"), ("INPUT1", b, "INT32")),
                            request_id="after-bad-request", client_timeout=TIMEOUT)
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(res.as_numpy("OUTPUT1"), a - b)
    assert grpc_client.is_server_live(client_timeout=TIMEOUT)
    assert grpc_client.is_server_ready(client_timeout=TIMEOUT)


def infer_error(grpc_client, tensors, model="simple", **kwargs):
    """Sends the request and returns the InferenceServerException it must raise."""
    with pytest.raises(InferenceServerException) as e:
        grpc_client.infer(model, u.grpc_inputs(*tensors), client_timeout=TIMEOUT, **kwargs)
    return e.value


def int32(*shape, fill=None):
    n = int(np.prod(shape))
    return np.full(shape, fill, dtype=np.int32) if fill is not None else np.arange(n, dtype=np.int32).reshape(shape)


GOOD = [("INPUT0", int32(1, 16), "INT32"), ("INPUT1", int32(1, 16, fill=1), "INT32")]


# --- the same requests as test_bad_requests.py ------------------------------------------------

def test_unknown_model(grpc_client):
    # reference 14
    e = infer_error(grpc_client, GOOD, model="nosuchmodel", request_id="req-1")
    u.assert_grpc_error(e, "NOT_FOUND", "Request for unknown model: 'nosuchmodel' is not found")


def test_unknown_version(grpc_client):
    e = infer_error(grpc_client, GOOD, model_version="7", request_id="req-1")
    u.assert_grpc_error(e, "NOT_FOUND", "Request for unknown model: 'simple' version 7 is not found")


def test_wrong_shape(grpc_client):
    # reference 13 (on a batching model Triton appends its NOTE)
    e = infer_error(grpc_client, [("INPUT0", int32(8), "INT32"), ("INPUT1", int32(8, 16, fill=1), "INT32")],
                    request_id="req-1")
    u.assert_grpc_error(e, "INVALID_ARGUMENT",
                        "[request id: req-1] unexpected shape for input 'INPUT0' for model 'simple'. "
                        f"Expected [-1,16], got [8]. {NOTE}")


def test_wrong_inner_shape(grpc_client):
    e = infer_error(grpc_client, [("INPUT0", int32(1, 8), "INT32"), GOOD[1]], request_id="req-1")
    u.assert_grpc_error(e, "INVALID_ARGUMENT",
                        "[request id: req-1] unexpected shape for input 'INPUT0' for model 'simple'. "
                        f"Expected [-1,16], got [1,8]. {NOTE}")


def test_wrong_shape_without_id(grpc_client):
    e = infer_error(grpc_client, [("INPUT0", int32(1, 8), "INT32"), GOOD[1]])
    u.assert_grpc_error(e, "INVALID_ARGUMENT",
                        "[request id: <id_unknown>] unexpected shape for input 'INPUT0' for model 'simple'. "
                        f"Expected [-1,16], got [1,8]. {NOTE}")


def test_wrong_datatype(grpc_client):
    e = infer_error(grpc_client, [("INPUT0", np.arange(16, dtype=np.float32).reshape(1, 16), "FP32"), GOOD[1]],
                    request_id="req-1")
    u.assert_grpc_error(e, "INVALID_ARGUMENT",
                        "[request id: req-1] inference input 'INPUT0' data-type is 'FP32', but model 'simple' "
                        "expects 'INT32'")


def test_missing_input(grpc_client):
    e = infer_error(grpc_client, [GOOD[0]], request_id="req-1")
    u.assert_grpc_error(e, "INVALID_ARGUMENT",
                        "[request id: req-1] expected 2 inputs but got 1 inputs for model 'simple'. Got input(s) "
                        "['INPUT0'], but missing required input(s) ['INPUT1']. Please provide all required input(s).")


def test_unknown_input(grpc_client):
    e = infer_error(grpc_client, [("INPUTX", int32(1, 16), "INT32"), GOOD[1]], request_id="req-1")
    u.assert_grpc_error(e, "INVALID_ARGUMENT", "unexpected inference input 'INPUTX' for model 'simple'")


def test_unknown_output(grpc_client):
    e = infer_error(grpc_client, GOOD, request_id="req-1", outputs=[grpcclient.InferRequestedOutput("NOPE")])
    u.assert_grpc_error(e, "INVALID_ARGUMENT", "unexpected inference output 'NOPE' for model 'simple'")


def test_duplicate_input(grpc_client):
    e = infer_error(grpc_client, [GOOD[0], GOOD[0], GOOD[1]], request_id="req-1")
    u.assert_grpc_error(e, "INVALID_ARGUMENT", "[request id: req-1] input 'INPUT0' already exists in request")


def test_duplicate_requested_output(grpc_client):
    outputs = [grpcclient.InferRequestedOutput(n) for n in ("OUTPUT0", "OUTPUT1", "OUTPUT0")]
    e = infer_error(grpc_client, GOOD, outputs=outputs)
    u.assert_grpc_error(e, "INVALID_ARGUMENT",
                        "[request id: <id_unknown>] output 'OUTPUT0' already exists in request")


def test_statistics_of_an_unknown_version(grpc_client):
    with pytest.raises(InferenceServerException) as e:
        grpc_client.get_inference_statistics("simple", model_version="7", client_timeout=TIMEOUT)
    u.assert_grpc_error(e.value, "INVALID_ARGUMENT", "requested model version is not available for model 'simple'")


@pytest.mark.parametrize("request_id,prefix", [("", "<id_unknown>"), ("req-9", "req-9")])
def test_batch_over_max(grpc_client, request_id, prefix):
    e = infer_error(grpc_client, [("INPUT0", int32(9, 16), "INT32"), ("INPUT1", int32(9, 16), "INT32")],
                    request_id=request_id)
    u.assert_grpc_error(e, "INVALID_ARGUMENT",
                        f"[request id: {prefix}] inference request batch-size must be <= 8 for 'simple'")


# --- raw requests through the stub -------------------------------------------------------------

def _raw_request(raw0=None, raw1=None, request_id="req-1"):
    req = service_pb2.ModelInferRequest(model_name="simple", id=request_id)
    for name in ("INPUT0", "INPUT1"):
        req.inputs.add(name=name, datatype="INT32", shape=[1, 16])
    for raw in (raw0, raw1):
        if raw is not None:
            req.raw_input_contents.append(raw)
    return req


def stub_error(grpc_stub, request):
    with pytest.raises(grpc.RpcError) as e:
        grpc_stub.ModelInfer(request, timeout=TIMEOUT)
    return e.value


A = np.arange(16, dtype="<i4").tobytes()
ONES = np.ones(16, dtype="<i4").tobytes()


def test_raw_byte_size_mismatch(grpc_stub):
    e = stub_error(grpc_stub, _raw_request(A[:60], ONES))
    u.assert_grpc_error(e, "INVALID_ARGUMENT",
                        "[request id: req-1] input byte size mismatch for input 'INPUT0' for model 'simple'. "
                        "Expected 64, got 60")


def test_raw_content_missing_for_an_input(grpc_stub):
    e = stub_error(grpc_stub, _raw_request(A))
    u.assert_grpc_error(e, "INVALID_ARGUMENT",
                        "unable to find data for input tensor 'INPUT1' for model 'simple' in request.")


def test_unknown_datatype_string(grpc_stub):
    req = _raw_request(A, ONES)
    req.inputs[0].datatype = "INT33"
    e = stub_error(grpc_stub, req)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (e.code(), e.details())
    assert "INPUT0" in e.details() or "INT33" in e.details(), e.details()


def test_empty_model_name(grpc_stub):
    req = _raw_request(A, ONES)
    req.model_name = ""
    e = stub_error(grpc_stub, req)
    assert e.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), (e.code(), e.details())


def test_classification_on_a_bytes_output(grpc_stub):
    # classification needs a numeric output
    req = service_pb2.ModelInferRequest(model_name="simple_identity")
    req.inputs.add(name="INPUT0", datatype="BYTES", shape=[1, 1])
    req.raw_input_contents.append(b"\x01\x00\x00\x00x")
    out = req.outputs.add(name="OUTPUT0")
    out.parameters["classification"].int64_param = 1
    e = stub_error(grpc_stub, req)
    assert e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED), (e.code(), e.details())
    assert e.details(), e


def test_garbage_message(grpc_hostport):
    # bytes that are not a ModelInferRequest at all
    with grpc.insecure_channel(grpc_hostport) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as e:
            call(b"\xff\xff\xff\xff\xff\xff", timeout=TIMEOUT)
    assert e.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT), (
        e.value.code(), e.value.details())


def test_unknown_method(grpc_hostport):
    with grpc.insecure_channel(grpc_hostport) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/NoSuchMethod")
        with pytest.raises(grpc.RpcError) as e:
            call(b"", timeout=TIMEOUT)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED, (e.value.code(), e.value.details())
