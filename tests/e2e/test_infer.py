"""Inference on the example models: JSON and binary tensors (tritonclient), exact replies (raw
HTTP, after references 16-22), batching, output subsets, request ids, nested data, compression.
"""

import gzip
import json
import zlib

import numpy as np
import pytest
import tritonclient.http as httpclient

import e2e_util as u

BINARY = [False, True]
IDS_IN = ["json-in", "binary-in"]
IDS_OUT = ["json-out", "binary-out"]

A16 = list(range(16))
ONES16 = [1] * 16


def make_input(name, arr, datatype, binary):
    i = httpclient.InferInput(name, list(arr.shape), datatype)
    i.set_data_from_numpy(arr, binary_data=binary)
    return i


def outputs(names, binary):
    return [httpclient.InferRequestedOutput(n, binary_data=binary) for n in names]


def as_bytes(arr):
    """BYTES results: bytes from binary outputs, str from JSON ones; compare as bytes."""
    return [x.encode("utf-8") if isinstance(x, str) else bytes(x) for x in arr.flatten()]


def check_binary_flags(result, names, binary):
    for n in names:
        params = result.get_output(n).get("parameters") or {}
        assert ("binary_data_size" in params) == binary, result.get_output(n)


def batched(client, model):
    return client.get_model_config(model)["max_batch_size"] > 0


# --- tritonclient, both encodings ----------------------------------------------------------------

@pytest.mark.parametrize("out_binary", BINARY, ids=IDS_OUT)
@pytest.mark.parametrize("in_binary", BINARY, ids=IDS_IN)
def test_simple_int32(client, in_binary, out_binary):
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 3, dtype=np.int32) - np.arange(16, dtype=np.int32)
    res = client.infer(
        "simple",
        [make_input("INPUT0", a, "INT32", in_binary), make_input("INPUT1", b, "INT32", in_binary)],
        outputs=outputs(["OUTPUT0", "OUTPUT1"], out_binary),
    )
    check_binary_flags(res, ["OUTPUT0", "OUTPUT1"], out_binary)
    for name, want in (("OUTPUT0", a + b), ("OUTPUT1", a - b)):
        got = res.as_numpy(name)
        assert got.dtype == np.int32 and got.shape == (1, 16)
        np.testing.assert_array_equal(got, want)
        out = res.get_output(name)
        assert (out["datatype"], out["shape"]) == ("INT32", [1, 16])
    resp = res.get_response()
    assert (resp["model_name"], resp["model_version"]) == ("simple", "1")
    assert "id" not in resp


def test_simple_default_outputs_come_binary(client):
    # tritonclient asks for binary_data_output when no outputs are named
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    res = client.infer("simple", [make_input("INPUT0", a, "INT32", True), make_input("INPUT1", a, "INT32", True)])
    check_binary_flags(res, ["OUTPUT0", "OUTPUT1"], True)
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a * 2)
    np.testing.assert_array_equal(res.as_numpy("OUTPUT1"), a * 0)


@pytest.mark.parametrize("binary", BINARY, ids=["json", "binary"])
def test_simple_batch_of_two(client, binary):
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.stack([np.ones(16, dtype=np.int32), np.full(16, -5, dtype=np.int32)])
    res = client.infer(
        "simple",
        [make_input("INPUT0", a, "INT32", binary), make_input("INPUT1", b, "INT32", binary)],
        outputs=outputs(["OUTPUT0", "OUTPUT1"], binary),
    )
    assert res.get_output("OUTPUT0")["shape"] == [2, 16]
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(res.as_numpy("OUTPUT1"), a - b)


@pytest.mark.parametrize("binary", BINARY, ids=["json", "binary"])
def test_simple_batch_of_max(client, binary):
    a = np.arange(8 * 16, dtype=np.int32).reshape(8, 16)
    res = client.infer(
        "simple",
        [make_input("INPUT0", a, "INT32", binary), make_input("INPUT1", a, "INT32", binary)],
        outputs=outputs(["OUTPUT0"], binary),
    )
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a * 2)


@pytest.mark.parametrize("out_binary", BINARY, ids=IDS_OUT)
@pytest.mark.parametrize("in_binary", BINARY, ids=IDS_IN)
def test_simple_int8(client, in_binary, out_binary):
    a = (np.arange(16, dtype=np.int8) - 8).reshape(1, 16)
    b = np.full((1, 16), 3, dtype=np.int8)
    res = client.infer(
        "simple_int8",
        [make_input("INPUT0", a, "INT8", in_binary), make_input("INPUT1", b, "INT8", in_binary)],
        outputs=outputs(["OUTPUT0", "OUTPUT1"], out_binary),
    )
    check_binary_flags(res, ["OUTPUT0", "OUTPUT1"], out_binary)
    for name, want in (("OUTPUT0", a + b), ("OUTPUT1", a - b)):
        got = res.as_numpy(name)
        assert got.dtype == np.int8
        np.testing.assert_array_equal(got, want)
        assert res.get_output(name)["datatype"] == "INT8"


@pytest.mark.parametrize("out_binary", BINARY, ids=IDS_OUT)
@pytest.mark.parametrize("in_binary", BINARY, ids=IDS_IN)
def test_simple_string(client, in_binary, out_binary):
    # BYTES holding decimal integers; the model adds and subtracts their values
    x = [i - 8 for i in range(16)]
    y = [7 * i for i in range(16)]
    a = np.array([[str(v).encode() for v in x]], dtype=np.object_)
    b = np.array([[str(v).encode() for v in y]], dtype=np.object_)
    res = client.infer(
        "simple_string",
        [make_input("INPUT0", a, "BYTES", in_binary), make_input("INPUT1", b, "BYTES", in_binary)],
        outputs=outputs(["OUTPUT0", "OUTPUT1"], out_binary),
    )
    check_binary_flags(res, ["OUTPUT0", "OUTPUT1"], out_binary)
    for name, op in (("OUTPUT0", lambda p, q: p + q), ("OUTPUT1", lambda p, q: p - q)):
        out = res.get_output(name)
        assert (out["datatype"], out["shape"]) == ("BYTES", [1, 16])
        got = [int(v) for v in as_bytes(res.as_numpy(name))]
        assert got == [op(p, q) for p, q in zip(x, y)]


IDENTITY_STRINGS = ["hello", "", "naïve café", "日本語テキスト", "emoji 🚀✨", "tab\tand\nnewline", "", "quote \" and \\"]


@pytest.mark.parametrize("out_binary", BINARY, ids=IDS_OUT)
@pytest.mark.parametrize("in_binary", BINARY, ids=IDS_IN)
def test_simple_identity_strings(client, in_binary, out_binary):
    values = [s.encode("utf-8") for s in IDENTITY_STRINGS]
    arr = np.array(values, dtype=np.object_)
    if batched(client, "simple_identity"):
        arr = arr.reshape(1, len(values))
    name_in = client.get_model_metadata("simple_identity")["inputs"][0]["name"]
    name_out = client.get_model_metadata("simple_identity")["outputs"][0]["name"]
    res = client.infer(
        "simple_identity",
        [make_input(name_in, arr, "BYTES", in_binary)],
        outputs=outputs([name_out], out_binary),
    )
    check_binary_flags(res, [name_out], out_binary)
    out = res.get_output(name_out)
    assert (out["datatype"], out["shape"]) == ("BYTES", list(arr.shape))
    assert as_bytes(res.as_numpy(name_out)) == values


def test_simple_identity_binary_bytes_not_utf8(client):
    # bytes that are not UTF-8 survive untouched, as in Triton
    values = [b"\xff\xfe", b"", b"\x80abc", b"caf\xe9"]
    arr = np.array(values, dtype=np.object_)
    if batched(client, "simple_identity"):
        arr = arr.reshape(1, len(values))
    meta = client.get_model_metadata("simple_identity")
    res = client.infer(
        "simple_identity",
        [make_input(meta["inputs"][0]["name"], arr, "BYTES", True)],
        outputs=outputs([meta["outputs"][0]["name"]], True),
    )
    assert as_bytes(res.as_numpy(meta["outputs"][0]["name"])) == values


def test_simple_identity_keeps_nul_bytes(hostport, client):
    # A BYTES element is bytes, NUL included: ONNX Runtime's string elements are built from a
    # pointer and a length, so nothing is cut at a NUL (raw body, and tritonclient)
    values = [b"a\x00b", b"\x00", b"", b"\x00\x00end\x00", bytes(range(256))]
    serialized = b"".join(len(v).to_bytes(4, "little") + v for v in values)
    header = {"inputs": [{"name": "INPUT0", "shape": [1, len(values)], "datatype": "BYTES",
                          "parameters": {"binary_data_size": len(serialized)}}],
              "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]}
    body, hlen = u.binary_infer_body(header, serialized)
    reply = u.request(hostport, "POST", "/v2/models/simple_identity/infer", body,
                      {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(hlen)})
    assert reply.status == 200, reply
    assert reply.body.endswith(serialized), reply
    arr = np.array([values], dtype=np.object_)
    res = client.infer("simple_identity", [make_input("INPUT0", arr, "BYTES", True)],
                       outputs=outputs(["OUTPUT0"], True))
    assert as_bytes(res.as_numpy("OUTPUT0")) == values


@pytest.mark.parametrize("binary", BINARY, ids=["json", "binary"])
def test_output_subset(client, binary):
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.ones((1, 16), dtype=np.int32)
    res = client.infer(
        "simple",
        [make_input("INPUT0", a, "INT32", binary), make_input("INPUT1", b, "INT32", binary)],
        outputs=outputs(["OUTPUT1"], binary),
    )
    assert [o["name"] for o in res.get_response()["outputs"]] == ["OUTPUT1"]
    np.testing.assert_array_equal(res.as_numpy("OUTPUT1"), a - b)
    assert res.as_numpy("OUTPUT0") is None


def test_request_id_is_echoed(client):
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    res = client.infer("simple", [make_input("INPUT0", a, "INT32", True), make_input("INPUT1", a, "INT32", True)],
                       request_id="my-request-42")
    assert res.get_response()["id"] == "my-request-42"


def test_versioned_infer(client):
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    res = client.infer("simple", [make_input("INPUT0", a, "INT32", False), make_input("INPUT1", a, "INT32", False)],
                       model_version="1")
    assert res.get_response()["model_version"] == "1"
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a * 2)


COMPRESSION = [(None, "gzip"), (None, "deflate"), ("gzip", None), ("deflate", None), ("gzip", "gzip"),
               ("deflate", "deflate"), ("gzip", "deflate"), ("deflate", "gzip")]


@pytest.mark.parametrize("binary", BINARY, ids=["json", "binary"])
@pytest.mark.parametrize("req_alg,resp_alg", COMPRESSION, ids=[f"req-{a}-resp-{b}" for a, b in COMPRESSION])
def test_compression_with_tritonclient(client, req_alg, resp_alg, binary):
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.full((2, 16), 2, dtype=np.int32)
    res = client.infer(
        "simple",
        [make_input("INPUT0", a, "INT32", binary), make_input("INPUT1", b, "INT32", binary)],
        outputs=outputs(["OUTPUT0", "OUTPUT1"], binary),
        request_id="compressed",
        request_compression_algorithm=req_alg,
        response_compression_algorithm=resp_alg,
    )
    assert res.get_response()["id"] == "compressed"
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(res.as_numpy("OUTPUT1"), a - b)


# --- raw HTTP: exact replies -----------------------------------------------------------------------

def simple_request_json(request_id="req-1", outputs_=None, shape=(1, 16), data0=None, data1=None):
    req = {}
    if request_id is not None:
        req["id"] = request_id
    req["inputs"] = [
        {"name": "INPUT0", "shape": list(shape), "datatype": "INT32", "data": A16 if data0 is None else data0},
        {"name": "INPUT1", "shape": list(shape), "datatype": "INT32", "data": ONES16 if data1 is None else data1},
    ]
    if outputs_ is not None:
        req["outputs"] = outputs_
    return req


def simple_reply_json(request_id="req-1", names=("OUTPUT0", "OUTPUT1"), shape=(1, 16), a=A16, b=ONES16):
    data = {"OUTPUT0": [x + y for x, y in zip(a, b)], "OUTPUT1": [x - y for x, y in zip(a, b)]}
    reply = {}
    if request_id is not None:
        reply["id"] = request_id
    reply.update({"model_name": "simple", "model_version": "1", "outputs": [
        {"name": n, "datatype": "INT32", "shape": list(shape), "data": data[n]} for n in names]})
    return u.compact(reply)


def test_raw_json_infer_exact_reply(hostport):
    # reference 16
    reply = u.post_json(hostport, "/v2/models/simple/infer", simple_request_json())
    u.assert_reply(reply, 200, "application/json", simple_reply_json())


def test_raw_json_infer_versioned_exact_reply(hostport):
    # reference 18
    reply = u.post_json(hostport, "/v2/models/simple/versions/1/infer", simple_request_json())
    u.assert_reply(reply, 200, "application/json", simple_reply_json())


def test_raw_json_output_subset_exact_reply(hostport):
    # reference 17
    reply = u.post_json(hostport, "/v2/models/simple/infer", simple_request_json(outputs_=[{"name": "OUTPUT1"}]))
    u.assert_reply(reply, 200, "application/json", simple_reply_json(names=("OUTPUT1",)))


def test_raw_nested_data(hostport):
    # reference 22: nested `data` arrays are accepted; replies are flat
    a = list(range(32))
    b = [1] * 16 + [-2] * 16
    req = simple_request_json(request_id=None, shape=(2, 16), data0=[a[:16], a[16:]], data1=[b[:16], b[16:]])
    reply = u.post_json(hostport, "/v2/models/simple/infer", req)
    u.assert_reply(reply, 200, "application/json", simple_reply_json(request_id=None, shape=(2, 16), a=a, b=b))


def _int32(values):
    return np.array(values, dtype="<i4").tobytes()


def test_raw_binary_infer_exact_reply(hostport):
    # reference 19: binary in, binary out
    header = {
        "inputs": [
            {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": 64}},
            {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": 64}},
        ],
        "outputs": [
            {"name": "OUTPUT0", "parameters": {"binary_data": True}},
            {"name": "OUTPUT1", "parameters": {"binary_data": True}},
        ],
    }
    body, hlen = u.binary_infer_body(header, _int32(A16), _int32(ONES16))
    reply = u.request(hostport, "POST", "/v2/models/simple/infer", body,
                      {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(hlen)})
    want_header = u.compact({"model_name": "simple", "model_version": "1", "outputs": [
        {"name": "OUTPUT0", "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 64}},
        {"name": "OUTPUT1", "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 64}},
    ]})
    want_tensors = _int32([x + 1 for x in A16]) + _int32([x - 1 for x in A16])
    u.assert_reply(reply, 200, "application/octet-stream", want_header + want_tensors)
    assert reply.header("Inference-Header-Content-Length") == str(len(want_header)), reply


def test_raw_binary_in_json_out_exact_reply(hostport):
    # reference 20: binary inputs, no outputs named -> JSON outputs
    header = {"inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": 64}},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": 64}},
    ]}
    body, hlen = u.binary_infer_body(header, _int32(A16), _int32(ONES16))
    reply = u.request(hostport, "POST", "/v2/models/simple/infer", body,
                      {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(hlen)})
    u.assert_reply(reply, 200, "application/json", simple_reply_json(request_id=None))
    assert reply.header("Inference-Header-Content-Length") is None, reply


def test_raw_binary_output_requested_for_all(hostport):
    # "binary_data_output": true in the request parameters makes every output binary
    req = simple_request_json(request_id=None)
    req["parameters"] = {"binary_data_output": True}
    reply = u.post_json(hostport, "/v2/models/simple/infer", req)
    assert reply.status == 200, reply
    assert reply.header("Content-Type") == "application/octet-stream", reply
    hlen = int(reply.header("Inference-Header-Content-Length"))
    head = json.loads(reply.body[:hlen])
    assert [o["parameters"]["binary_data_size"] for o in head["outputs"]] == [64, 64]
    assert reply.body[hlen:] == _int32([x + 1 for x in A16]) + _int32([x - 1 for x in A16])


@pytest.mark.parametrize("alg", ["gzip", "deflate"])
def test_raw_compressed_request_and_reply(hostport, alg):
    body = json.dumps(simple_request_json()).encode()
    packed = gzip.compress(body) if alg == "gzip" else zlib.compress(body)
    reply = u.request(hostport, "POST", "/v2/models/simple/infer", packed,
                      {"Content-Type": "application/json", "Content-Encoding": alg, "Accept-Encoding": alg})
    assert reply.status == 200, reply
    assert reply.header("Content-Encoding") == alg, reply
    assert reply.header("Content-Type") == "application/json", reply
    assert reply.header("Content-Length") == str(len(reply.body)), reply
    plain = gzip.decompress(reply.body) if alg == "gzip" else zlib.decompress(reply.body)
    assert plain == simple_reply_json()


def test_raw_uncompressed_reply_without_accept_encoding(hostport):
    reply = u.post_json(hostport, "/v2/models/simple/infer", simple_request_json())
    assert reply.header("Content-Encoding") is None, reply
    assert reply.body == simple_reply_json()
