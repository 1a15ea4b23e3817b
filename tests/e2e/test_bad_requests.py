"""Bad inference requests get Triton's status code and message, and never hurt the server.

Texts are Triton 2.51's (shared/triton-reference/http 24-39; for the binary tensor extension,
Triton's http_server.cc; for byte sizes, Triton core's infer_request.cc), on `simple`:
max_batch_size 8, INPUT0/INPUT1 TYPE_INT32 dims [16]. Errors found before the request object
exists (unknown model, header lengths) carry Content-Type text/plain like Triton's; the rest
application/json.
"""

import json
import socket

import numpy as np
import pytest
import tritonclient.http as httpclient

import e2e_util as u

INFER = "/v2/models/simple/infer"
A16 = list(range(16))
ONES16 = [1] * 16
NOTE = (
    "NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension to be "
    "prepended to each input shape. If you want to specify the full shape including the batch dim in "
    "your input dims config, try setting max_batch_size to zero. See the model configuration docs for "
    "more info on max_batch_size."
)


@pytest.fixture(autouse=True)
def good_request_still_works(client):
    """After every bad request, a good one on the same server still gets the right answer."""
    yield
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 5, dtype=np.int32)
    inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    res = client.infer("simple", inputs, request_id="after-bad-request")
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(res.as_numpy("OUTPUT1"), a - b)
    assert client.is_server_live() and client.is_server_ready()


def tensor(name, shape, data, datatype="INT32"):
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def json_err(hostport, obj, status, message, path=INFER, content_type="application/json"):
    reply = u.post_json(hostport, path, obj)
    u.assert_reply(reply, status, content_type, u.error_body(message))


# --- JSON requests (references 28-37) ----------------------------------------------------------

def test_unknown_model(hostport):
    req = {"id": "req-1", "inputs": [tensor("INPUT0", [1, 16], A16), tensor("INPUT1", [1, 16], ONES16)]}
    json_err(hostport, req, 404, "Request for unknown model: 'nosuchmodel' is not found",
             path="/v2/models/nosuchmodel/infer", content_type="text/plain")


def test_unknown_version(hostport):
    req = {"id": "req-1", "inputs": [tensor("INPUT0", [1, 16], A16), tensor("INPUT1", [1, 16], ONES16)]}
    json_err(hostport, req, 404, "Request for unknown model: 'simple' version 7 is not found",
             path="/v2/models/simple/versions/7/infer", content_type="text/plain")


def test_duplicate_input(hostport):
    # Triton refuses the second tensor of a name as the request is built (core AddOriginalInput)
    req = {"id": "req-1", "inputs": [tensor("INPUT0", [1, 16], A16), tensor("INPUT0", [1, 16], A16),
                                     tensor("INPUT1", [1, 16], ONES16)]}
    json_err(hostport, req, 400, "[request id: req-1] input 'INPUT0' already exists in request")


def test_duplicate_requested_output(hostport):
    # ... and the second requested output of a name (AddRequestedOutput), before execution
    req = {"inputs": [tensor("INPUT0", [1, 16], A16), tensor("INPUT1", [1, 16], ONES16)],
           "outputs": [{"name": "OUTPUT0"}, {"name": "OUTPUT1"}, {"name": "OUTPUT0"}]}
    json_err(hostport, req, 400, "[request id: <id_unknown>] output 'OUTPUT0' already exists in request")


def test_element_count_past_int64_max(hostport):
    # Triton's HTTP frontend (GetElementCount overflow) for JSON data
    req = {"inputs": [{"name": "INPUT0", "shape": [4294967296, 4294967296], "datatype": "INT32", "data": [1]},
                      tensor("INPUT1", [1, 16], ONES16)]}
    json_err(hostport, req, 400, "invalid shape for input 'INPUT0': shape [4294967296,4294967296] causes total "
                                 "element count to exceed maximum size of 9223372036854775807")


def test_statistics_of_an_unknown_version(hostport):
    reply = u.request(hostport, "GET", "/v2/models/simple/versions/7/stats")
    u.assert_reply(reply, 400, "application/json",
                   u.error_body("requested model version is not available for model 'simple'"))


def test_wrong_shape(hostport):
    # batch dim 8 then [] where [16] is expected; Triton prints the full shape with the -1
    # batch dim and, for max_batch_size > 0, appends its NOTE
    # (INPUT1 carries the same batch of 8, so the batch sizes agree and only INPUT0 is wrong)
    req = {"id": "req-1", "inputs": [tensor("INPUT0", [8], A16[:8]), tensor("INPUT1", [8, 16], [1] * 128)]}
    json_err(hostport, req, 400,
             "[request id: req-1] unexpected shape for input 'INPUT0' for model 'simple'. "
             f"Expected [-1,16], got [8]. {NOTE}")


def test_wrong_inner_shape(hostport):
    req = {"id": "req-1", "inputs": [tensor("INPUT0", [1, 8], A16[:8]), tensor("INPUT1", [1, 16], ONES16)]}
    json_err(hostport, req, 400,
             "[request id: req-1] unexpected shape for input 'INPUT0' for model 'simple'. "
             f"Expected [-1,16], got [1,8]. {NOTE}")


def test_wrong_datatype(hostport):
    req = {"id": "req-1", "inputs": [tensor("INPUT0", [1, 16], [float(x) for x in A16], "FP32"),
                                     tensor("INPUT1", [1, 16], ONES16)]}
    json_err(hostport, req, 400,
             "[request id: req-1] inference input 'INPUT0' data-type is 'FP32', but model 'simple' expects 'INT32'")


def test_missing_input(hostport):
    req = {"id": "req-1", "inputs": [tensor("INPUT0", [1, 16], A16)]}
    json_err(hostport, req, 400,
             "[request id: req-1] expected 2 inputs but got 1 inputs for model 'simple'. Got input(s) "
             "['INPUT0'], but missing required input(s) ['INPUT1']. Please provide all required input(s).")


def test_unknown_input(hostport):
    req = {"id": "req-1", "inputs": [tensor("INPUTX", [1, 16], A16), tensor("INPUT1", [1, 16], ONES16)]}
    json_err(hostport, req, 400, "unexpected inference input 'INPUTX' for model 'simple'")


def test_unknown_output(hostport):
    req = {"id": "req-1", "inputs": [tensor("INPUT0", [1, 16], A16), tensor("INPUT1", [1, 16], ONES16)],
           "outputs": [{"name": "NOPE"}]}
    json_err(hostport, req, 400, "unexpected inference output 'NOPE' for model 'simple'")


@pytest.mark.parametrize("count", [15, 17])
def test_data_count_mismatch(hostport, count):
    req = {"id": "req-1", "inputs": [tensor("INPUT0", [1, 16], list(range(count))),
                                     tensor("INPUT1", [1, 16], ONES16)]}
    json_err(hostport, req, 500, "Unable to parse 'data': Shape does not match true shape of 'data' field")


def test_malformed_json_exact(hostport):
    # reference 35: rapidjson's wording and offset
    reply = u.request(hostport, "POST", INFER, b'{"inputs": [', {"Content-Type": "application/json"})
    u.assert_reply(reply, 500, "application/json",
                   u.error_body("failed to parse the request JSON buffer: Invalid value. at 12"))


@pytest.mark.parametrize("body", [b"{", b"not json", b'{"inputs": [}', b"[1, 2", b'{"inputs": [{"name": "INPUT0",}]}'])
def test_malformed_json(hostport, body):
    reply = u.request(hostport, "POST", INFER, body, {"Content-Type": "application/json"})
    u.assert_reply(reply, 500, "application/json")
    assert reply.json()["error"].startswith("failed to parse the request JSON buffer: "), reply


def test_empty_body(hostport):
    # reference 36: an empty body is a raw (headerless binary) request for a 1-input model
    reply = u.request(hostport, "POST", INFER, b"", {"Content-Type": "application/json"})
    u.assert_reply(reply, 400, "application/json", u.error_body(
        "[request id: <id_unknown>] Raw request must only have 1 input (found 1) to be deduced but got "
        "2 inputs in 'simple' model configuration"))


def test_raw_body_for_an_input_that_cannot_take_it(hostport):
    # Triton's Normalize: a raw BYTES input must be [1] (simple_identity's is [-1])
    reply = u.request(hostport, "POST", "/v2/models/simple_identity/infer", b"abc",
                      {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": "0"})
    u.assert_reply(reply, 400, "application/json", u.error_body(
        "[request id: <id_unknown>] For BYTE datatype raw input 'INPUT0', the model must have input shape [1]"))


def test_raw_body_for_a_fixed_size_input_is_deduced(hostport):
    # One FP32 input [3,224,224] after a batch of 1: the body is the tensor, the outputs binary
    body = np.zeros((1, 3, 224, 224), dtype=np.float32).tobytes()
    reply = u.request(hostport, "POST", "/v2/models/efficientnet_lite0_onnx/infer", body,
                      {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": "0"})
    assert reply.status == 200, reply
    hlen = int(reply.header("Inference-Header-Content-Length"))
    header = json.loads(reply.body[:hlen])
    assert header["outputs"][0]["shape"] == [1, 1000]
    assert len(reply.body) - hlen == 4000


@pytest.mark.parametrize("request_id,prefix", [(None, "<id_unknown>"), ("req-9", "req-9")])
def test_batch_over_max(hostport, request_id, prefix):
    # reference 37
    req = {"inputs": [tensor("INPUT0", [9, 16], [0] * 144), tensor("INPUT1", [9, 16], [0] * 144)]}
    if request_id:
        req["id"] = request_id
    json_err(hostport, req, 400, f"[request id: {prefix}] inference request batch-size must be <= 8 for 'simple'")


def test_wrong_method_on_infer(hostport):
    # reference 39
    u.assert_reply(u.request(hostport, "GET", INFER), 405, "text/plain", b'{"error":"Method Not Allowed"}')


# --- binary tensor extension -------------------------------------------------------------------

def _int32(values):
    return np.array(values, dtype="<i4").tobytes()


def binary_header(size0=64, size1=64):
    return {"inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": size0}},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": size1}},
    ]}


def post_binary(hostport, body, header_length):
    headers = {"Content-Type": "application/octet-stream"}
    if header_length is not None:
        headers["Inference-Header-Content-Length"] = str(header_length)
    return u.request(hostport, "POST", INFER, body, headers)


def test_binary_body_shorter_than_binary_data_size(hostport):
    # truncated tensor data: INPUT1 gets 32 of its 64 bytes
    body, hlen = u.binary_infer_body(binary_header(), _int32(A16), _int32(ONES16)[:32])
    u.assert_reply(post_binary(hostport, body, hlen), 400, "application/json",
                   u.error_body("unexpected size for input 'INPUT1', expecting 32 additional bytes for model 'simple'"))


def test_binary_data_size_larger_than_body(hostport):
    body, hlen = u.binary_infer_body(binary_header(size0=1000), _int32(A16), _int32(ONES16))
    u.assert_reply(post_binary(hostport, body, hlen), 400, "application/json",
                   u.error_body("unexpected size for input 'INPUT0', expecting 872 additional bytes for model 'simple'"))


def test_binary_data_size_huge(hostport):
    body, hlen = u.binary_infer_body(binary_header(size0=2**62), _int32(A16), _int32(ONES16))
    reply = post_binary(hostport, body, hlen)
    assert reply.status == 400, reply
    assert "INPUT0" in reply.json()["error"], reply


def test_binary_extra_data(hostport):
    body, hlen = u.binary_infer_body(binary_header(), _int32(A16), _int32(ONES16), b"\x00" * 10)
    u.assert_reply(post_binary(hostport, body, hlen), 400, "application/json",
                   u.error_body("unexpected additional input data for model 'simple'"))


def test_binary_sizes_add_up_but_do_not_match_shape(hostport):
    body, hlen = u.binary_infer_body(binary_header(size0=60), _int32(A16)[:60], _int32(ONES16))
    u.assert_reply(post_binary(hostport, body, hlen), 400, "application/json", u.error_body(
        "[request id: <id_unknown>] input byte size mismatch for input 'INPUT0' for model 'simple'. "
        "Expected 64, got 60"))


def test_binary_data_size_without_header_length(hostport):
    # no Inference-Header-Content-Length: the whole body is the JSON header, so no tensor bytes
    body = u.compact(binary_header())
    u.assert_reply(post_binary(hostport, body, None), 400, "application/json",
                   u.error_body("unexpected size for input 'INPUT0', expecting 64 additional bytes for model 'simple'"))


def test_header_length_larger_than_body(hostport):
    body, hlen = u.binary_infer_body(binary_header(), _int32(A16), _int32(ONES16))
    reply = post_binary(hostport, body, len(body) + 100)
    u.assert_reply(reply, 400, "text/plain", u.error_body(
        f"inference header size should be in range (0, {len(body)}), got: {len(body) + 100}"))


def test_header_length_negative(hostport):
    body, hlen = u.binary_infer_body(binary_header(), _int32(A16), _int32(ONES16))
    reply = post_binary(hostport, body, -1)
    u.assert_reply(reply, 400, "text/plain", u.error_body(
        f"inference header size should be in range (0, {len(body)}), got: -1"))


def test_header_length_not_a_number(hostport):
    body, hlen = u.binary_infer_body(binary_header(), _int32(A16), _int32(ONES16))
    reply = post_binary(hostport, body, "abc")
    # Triton 2.51 reads "abc" as 0 and answers as for a raw request; newer Tritons say
    # "Unable to parse Inference-Header-Content-Length, got: abc". Either way: 400.
    assert reply.status == 400, reply
    assert reply.json()["error"], reply


def test_header_length_cuts_json(hostport):
    # the header length ends inside the JSON
    body, hlen = u.binary_infer_body(binary_header(), _int32(A16), _int32(ONES16))
    reply = post_binary(hostport, body, 20)
    assert reply.status == 500, reply
    assert reply.json()["error"].startswith("failed to parse the request JSON buffer: "), reply


# --- broken transport -----------------------------------------------------------------------------

def _raw_exchange(hostport, raw: bytes, half_close: bool, timeout=15.0) -> bytes:
    host, port = hostport.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(raw)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except socket.timeout:
                raise AssertionError(f"no reply and no close within {timeout} s; got {b''.join(chunks)!r}")
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
            if not half_close and b"\r\n\r\n" in b"".join(chunks):
                break
        return b"".join(chunks)


def test_truncated_body_then_eof(hostport):
    # Content-Length promises more than arrives before the client closes its side
    body = json.dumps({"inputs": [tensor("INPUT0", [1, 16], A16), tensor("INPUT1", [1, 16], ONES16)]}).encode()
    raw = (f"POST {INFER} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body) + 500}\r\n\r\n").encode() + body
    reply = _raw_exchange(hostport, raw, half_close=True)
    # either no answer at all, or an error status: never a 200 for a body that never arrived
    assert not reply.startswith(b"HTTP/1.1 200"), reply


def test_garbage_request_line(hostport):
    reply = _raw_exchange(hostport, b"THIS IS NOT HTTP\r\n\r\n", half_close=True)
    assert not reply.startswith(b"HTTP/1.1 200"), reply


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_corrupt_compressed_body(hostport, encoding):
    reply = u.request(hostport, "POST", INFER, b"\x1f\x8b this is not compressed",
                      {"Content-Type": "application/json", "Content-Encoding": encoding})
    assert reply.status in (400, 500), reply
    assert "error" in reply.json(), reply
