"""GRPCInferenceService through the official `tritonclient.grpc` (and, where it cannot build the
request, the generated stub): health, metadata, configuration, repository index, statistics,
inference on every example model, typed `contents`, compression, deadlines, large messages.

Expectations follow Triton 2.51's gRPC answers (shared/triton-reference/grpc 01-12): protobuf
replies, which tritonclient's `as_json=True` prints with int64 fields as strings and empty
fields left out. The session server answers HTTP too, so where HTTP has its own tests the gRPC
answer is compared with the HTTP one (the same `Server` facade is behind both).
"""

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import json_format
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

import e2e_util as u
from test_classification import KNOWN_TOP1, expected_top3, preprocess
from test_server_api import TRITON_EXTENSIONS

RPC_TIMEOUT = 60.0  # seconds, for every call below that could otherwise wait forever


# --- health ----------------------------------------------------------------------------------

def test_server_live_and_ready(grpc_client):
    # references 01, 02
    assert grpc_client.is_server_live(client_timeout=RPC_TIMEOUT) is True
    assert grpc_client.is_server_ready(client_timeout=RPC_TIMEOUT) is True


@pytest.mark.parametrize("model", u.EXAMPLE_MODELS)
def test_model_ready(grpc_client, model):
    assert grpc_client.is_model_ready(model, client_timeout=RPC_TIMEOUT) is True
    assert grpc_client.is_model_ready(model, model_version="1", client_timeout=RPC_TIMEOUT) is True


@pytest.mark.parametrize("model,version", [("nosuchmodel", ""), ("simple", "7")])
def test_unknown_model_is_not_ready(grpc_client, model, version):
    # reference 12: {"ready": false}, not an error
    assert grpc_client.is_model_ready(model, model_version=version, client_timeout=RPC_TIMEOUT) is False


def test_standard_grpc_health_check(grpc_hostport):
    # grpc.health.v1.Health/Check, which Kubernetes' gRPC probes and grpc_health_probe call.
    # HealthCheckRequest{service: ""} is the empty message; SERVING is status = 1 (b"\x08\x01").
    with grpc.insecure_channel(grpc_hostport) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        reply = check(b"", timeout=RPC_TIMEOUT)
    assert reply == b"\x08\x01", f"HealthCheckResponse {reply!r}, expected status SERVING"


# --- server and model metadata ---------------------------------------------------------------

def test_server_metadata(grpc_client, client):
    # reference 03
    meta = grpc_client.get_server_metadata(as_json=True, client_timeout=RPC_TIMEOUT)
    http_meta = client.get_server_metadata()
    assert meta["name"] == "triton"
    assert meta["version"] == http_meta["version"] and meta["version"]
    # the same extensions as over HTTP, each one of Triton's and in Triton's order
    assert meta["extensions"] == http_meta["extensions"]
    assert [e for e in TRITON_EXTENSIONS if e in meta["extensions"]] == meta["extensions"]
    pb = grpc_client.get_server_metadata(client_timeout=RPC_TIMEOUT)
    assert isinstance(pb, service_pb2.ServerMetadataResponse)
    assert list(pb.extensions) == meta["extensions"]


def _shape(dims):
    return [str(d) for d in dims]


SIMPLE_METADATA_JSON = {
    "name": "simple",
    "versions": ["1"],
    "platform": "onnxruntime_onnx",
    "inputs": [{"name": n, "datatype": "INT32", "shape": ["-1", "16"]} for n in ("INPUT0", "INPUT1")],
    "outputs": [{"name": n, "datatype": "INT32", "shape": ["-1", "16"]} for n in ("OUTPUT0", "OUTPUT1")],
}


def test_simple_metadata_json(grpc_client):
    # reference 04: int64 shapes print as strings
    for version in ("", "1"):
        meta = grpc_client.get_model_metadata("simple", model_version=version, as_json=True,
                                              client_timeout=RPC_TIMEOUT)
        assert meta == SIMPLE_METADATA_JSON


@pytest.mark.parametrize("model", u.EXAMPLE_MODELS)
def test_model_metadata_matches_http(grpc_client, client, model):
    meta = grpc_client.get_model_metadata(model, as_json=True, client_timeout=RPC_TIMEOUT)
    http = client.get_model_metadata(model)
    assert (meta["name"], meta["versions"], meta["platform"]) == (http["name"], http["versions"], http["platform"])
    for kind in ("inputs", "outputs"):
        assert meta[kind] == [{"name": t["name"], "datatype": t["datatype"], "shape": _shape(t["shape"])}
                              for t in http[kind]], kind


@pytest.mark.parametrize("call", ["get_model_metadata", "get_model_config"])
def test_unknown_model_metadata_and_config(grpc_client, call):
    # reference 11
    with pytest.raises(InferenceServerException) as e:
        getattr(grpc_client, call)("nosuchmodel", client_timeout=RPC_TIMEOUT)
    u.assert_grpc_error(e.value, "NOT_FOUND", "Request for unknown model: 'nosuchmodel' is not found")
    with pytest.raises(InferenceServerException) as e:
        getattr(grpc_client, call)("simple", model_version="7", client_timeout=RPC_TIMEOUT)
    u.assert_grpc_error(e.value, "NOT_FOUND", "Request for unknown model: 'simple' version 7 is not found")


# --- model configuration ---------------------------------------------------------------------

def _same_as_http(grpc_value, http_value, path="config"):
    """The gRPC config (every field printed, int64 as strings) equals the HTTP one (int64 as
    numbers)."""
    if isinstance(http_value, dict):
        assert isinstance(grpc_value, dict), f"{path}: {grpc_value!r} vs HTTP {http_value!r}"
        assert set(grpc_value) == set(http_value), (
            f"{path}: only over gRPC {sorted(set(grpc_value) - set(http_value))}, "
            f"only over HTTP {sorted(set(http_value) - set(grpc_value))}")
        for k in http_value:
            _same_as_http(grpc_value[k], http_value[k], f"{path}.{k}")
    elif isinstance(http_value, list):
        assert isinstance(grpc_value, list) and len(grpc_value) == len(http_value), \
            f"{path}: {grpc_value!r} vs HTTP {http_value!r}"
        for i, (g, h) in enumerate(zip(grpc_value, http_value)):
            _same_as_http(g, h, f"{path}[{i}]")
    elif isinstance(http_value, bool):
        assert grpc_value is http_value, f"{path}: {grpc_value!r} vs HTTP {http_value!r}"
    elif isinstance(http_value, int) and isinstance(grpc_value, str):
        assert int(grpc_value) == http_value, f"{path}: {grpc_value!r} vs HTTP {http_value!r}"
    elif isinstance(http_value, float) or isinstance(grpc_value, float):
        assert grpc_value == pytest.approx(http_value), f"{path}: {grpc_value!r} vs HTTP {http_value!r}"
    else:
        assert grpc_value == http_value, f"{path}: {grpc_value!r} vs HTTP {http_value!r}"


@pytest.mark.parametrize("model", u.EXAMPLE_MODELS)
def test_model_config_matches_http(grpc_client, client, model):
    # the effective (auto-completed) configuration, the same on both protocols
    response = grpc_client.get_model_config(model, client_timeout=RPC_TIMEOUT)
    assert isinstance(response, service_pb2.ModelConfigResponse)
    full = json_format.MessageToDict(response.config, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)
    _same_as_http(full, client.get_model_config(model))
    versioned = grpc_client.get_model_config(model, model_version="1", client_timeout=RPC_TIMEOUT)
    assert versioned == response


def test_simple_config_json(grpc_client):
    # references 05, 06: tritonclient's JSON leaves defaults out; int64 (dims,
    # max_queue_delay_microseconds, ...) are strings, int32 (max_batch_size, count) numbers
    config = grpc_client.get_model_config("simple", as_json=True, client_timeout=RPC_TIMEOUT)
    assert set(config) == {"config"}
    c = config["config"]
    assert c["name"] == "simple"
    assert c["platform"] == "onnxruntime_onnx"
    assert c["backend"] == "onnxruntime"
    assert c["version_policy"] == {"latest": {"num_versions": 1}}
    assert c["max_batch_size"] == 8
    assert c["input"] == [{"name": n, "data_type": "TYPE_INT32", "dims": ["16"]} for n in ("INPUT0", "INPUT1")]
    assert c["output"] == [{"name": n, "data_type": "TYPE_INT32", "dims": ["16"]} for n in ("OUTPUT0", "OUTPUT1")]
    name, count = u.expected_instance_group("simple")
    assert c["instance_group"] == [{"name": name, "count": count, "kind": "KIND_CPU"}]
    assert c["default_model_filename"] == "model.onnx"
    assert c["optimization"]["input_pinned_memory"] == {"enable": True}
    assert c["optimization"]["output_pinned_memory"] == {"enable": True}


def test_auto_completed_identity_config_json(grpc_client):
    c = grpc_client.get_model_config("simple_identity", as_json=True, client_timeout=RPC_TIMEOUT)["config"]
    assert [(t["data_type"], t["dims"]) for t in c["input"]] == [("TYPE_STRING", ["-1"])]
    assert [(t["data_type"], t["dims"]) for t in c["output"]] == [("TYPE_STRING", ["-1"])]


# --- repository index ------------------------------------------------------------------------

def test_repository_index(grpc_client, client):
    # reference 08
    index = grpc_client.get_model_repository_index(as_json=True, client_timeout=RPC_TIMEOUT)
    assert index == {"models": client.get_model_repository_index()}
    names = [m["name"] for m in index["models"]]
    assert set(u.EXAMPLE_MODELS) <= set(names) and names == sorted(names)
    for m in index["models"]:
        assert (m["version"], m["state"]) == ("1", "READY"), m


@pytest.mark.parametrize("call", ["load_model", "unload_model"])
def test_load_unload_in_model_control_mode_none(grpc_client, call):
    # reference 40 (HTTP 503): UNAVAILABLE
    with pytest.raises(InferenceServerException) as e:
        getattr(grpc_client, call)("simple", client_timeout=RPC_TIMEOUT)
    u.assert_grpc_error(e.value, "UNAVAILABLE", "explicit model load / unload is not allowed if polling is enabled")
    assert grpc_client.is_model_ready("simple", client_timeout=RPC_TIMEOUT)


# --- statistics ------------------------------------------------------------------------------

def _infer_simple(grpc_client, batch=1, seed=0, **kwargs):
    a, b = u.simple_pair(batch, seed)
    res = grpc_client.infer("simple", u.grpc_inputs(("INPUT0", a, "INT32"), ("INPUT1", b, "INT32")),
                            client_timeout=RPC_TIMEOUT, **kwargs)
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(res.as_numpy("OUTPUT1"), a - b)
    return res


def _simple_stats(grpc_client):
    stats = grpc_client.get_inference_statistics("simple", client_timeout=RPC_TIMEOUT)
    assert len(stats.model_stats) == 1
    entry = stats.model_stats[0]
    assert (entry.name, entry.version) == ("simple", "1")
    return entry


def test_statistics_before_and_after(grpc_client):
    before = _simple_stats(grpc_client)
    _infer_simple(grpc_client, seed=1)
    _infer_simple(grpc_client, seed=2)
    after = _simple_stats(grpc_client)
    assert after.inference_count == before.inference_count + 2
    assert after.execution_count == before.execution_count + 2
    s0, s1 = before.inference_stats, after.inference_stats
    assert s1.success.count == s0.success.count + 2
    assert s1.success.ns > s0.success.ns
    for k in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert getattr(s1, k).count == getattr(s0, k).count + 2, k
    assert s1.fail.count == s0.fail.count
    assert after.last_inference > 0 and after.last_inference >= before.last_inference
    batch1 = [b for b in after.batch_stats if b.batch_size == 1]
    assert batch1 and batch1[0].compute_infer.count >= 2


def test_statistics_json(grpc_client, client):
    # reference 09: counters are uint64, so strings in JSON; a zero counter is left out
    _infer_simple(grpc_client)
    stats = grpc_client.get_inference_statistics("simple", as_json=True, client_timeout=RPC_TIMEOUT)
    entry = stats["model_stats"][0]
    assert (entry["name"], entry["version"]) == ("simple", "1")
    assert isinstance(entry["inference_count"], str) and int(entry["inference_count"]) >= 1
    assert isinstance(entry["inference_stats"]["success"]["count"], str)
    assert entry["batch_stats"][0]["batch_size"] in {str(n) for n in range(1, 9)}
    # all models, and the same counters as over HTTP once inference is quiet
    every = grpc_client.get_inference_statistics(client_timeout=RPC_TIMEOUT)
    http = client.get_inference_statistics()
    assert sorted(e.name for e in every.model_stats) == sorted(e["name"] for e in http["model_stats"])
    http_simple = client.get_inference_statistics("simple")["model_stats"][0]
    assert int(entry["inference_count"]) == http_simple["inference_count"]


def test_statistics_unknown_model(grpc_client):
    # reference 44 (HTTP 400): INVALID_ARG
    with pytest.raises(InferenceServerException) as e:
        grpc_client.get_inference_statistics("nosuchmodel", client_timeout=RPC_TIMEOUT)
    u.assert_grpc_error(e.value, "INVALID_ARGUMENT", "requested model 'nosuchmodel' is not available")


def test_statistics_fresh_server(ferrite):
    srv = ferrite.start([ferrite.repo("simple")])
    with grpcclient.InferenceServerClient(srv.grpc_hostport) as c:
        stats = c.get_inference_statistics("simple", as_json=True, client_timeout=RPC_TIMEOUT)
    # reference 09's layout: zero counters are left out, the empty stats are {}
    zero = {k: {} for k in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output",
                            "cache_hit", "cache_miss")}
    assert stats == {"model_stats": [{"name": "simple", "version": "1", "inference_stats": zero}]}


# --- inference with tritonclient -------------------------------------------------------------

def test_simple_int32(grpc_client):
    res = _infer_simple(grpc_client, seed=4)
    resp = res.get_response()
    assert (resp.model_name, resp.model_version, resp.id) == ("simple", "1", "")
    for name in ("OUTPUT0", "OUTPUT1"):
        out = res.get_output(name)
        assert (out.datatype, list(out.shape)) == ("INT32", [1, 16])
        assert res.as_numpy(name).dtype == np.int32
    # outputs come raw, in the order of `outputs`
    assert [o.name for o in resp.outputs] == ["OUTPUT0", "OUTPUT1"]
    assert [len(r) for r in resp.raw_output_contents] == [64, 64]


def test_request_id_echo(grpc_client):
    # reference 10
    res = _infer_simple(grpc_client, request_id="grpc-req-1")
    assert res.get_response().id == "grpc-req-1"
    assert res.get_response(as_json=True)["id"] == "grpc-req-1"


def test_output_subset(grpc_client):
    a, b = u.simple_pair(seed=5)
    res = grpc_client.infer("simple", u.grpc_inputs(("INPUT0", a, "INT32"), ("INPUT1", b, "INT32")),
                            outputs=[grpcclient.InferRequestedOutput("OUTPUT1")], client_timeout=RPC_TIMEOUT)
    resp = res.get_response()
    assert [o.name for o in resp.outputs] == ["OUTPUT1"]
    assert len(resp.raw_output_contents) == 1
    assert res.as_numpy("OUTPUT0") is None
    np.testing.assert_array_equal(res.as_numpy("OUTPUT1"), a - b)


@pytest.mark.parametrize("batch", [2, 8])
def test_simple_batch(grpc_client, batch):
    res = _infer_simple(grpc_client, batch=batch, seed=6)
    assert list(res.get_output("OUTPUT0").shape) == [batch, 16]


def test_explicit_version(grpc_client):
    res = _infer_simple(grpc_client, model_version="1")
    assert res.get_response().model_version == "1"


def test_simple_int8(grpc_client):
    a = (np.arange(16, dtype=np.int8) - 8).reshape(1, 16)
    b = np.full((1, 16), 3, dtype=np.int8)
    res = grpc_client.infer("simple_int8", u.grpc_inputs(("INPUT0", a, "INT8"), ("INPUT1", b, "INT8")),
                            client_timeout=RPC_TIMEOUT)
    for name, want in (("OUTPUT0", a + b), ("OUTPUT1", a - b)):
        got = res.as_numpy(name)
        assert got.dtype == np.int8 and res.get_output(name).datatype == "INT8"
        np.testing.assert_array_equal(got, want)


def test_simple_string(grpc_client):
    x = [i - 8 for i in range(16)]
    y = [7 * i for i in range(16)]
    a = np.array([[str(v).encode() for v in x]], dtype=np.object_)
    b = np.array([[str(v).encode() for v in y]], dtype=np.object_)
    res = grpc_client.infer("simple_string", u.grpc_inputs(("INPUT0", a, "BYTES"), ("INPUT1", b, "BYTES")),
                            client_timeout=RPC_TIMEOUT)
    for name, op in (("OUTPUT0", lambda p, q: p + q), ("OUTPUT1", lambda p, q: p - q)):
        out = res.get_output(name)
        assert (out.datatype, list(out.shape)) == ("BYTES", [1, 16])
        assert [int(v) for v in res.as_numpy(name).flatten()] == [op(p, q) for p, q in zip(x, y)]


# NUL bytes included: BYTES elements are bytes (ONNX Runtime's are built from pointer and length)
IDENTITY_VALUES = [b"hello", b"", "naïve café".encode(), "日本語".encode(), b"\xff\xfe\x80 not utf-8",
                   b"tab\tand\nnewline", bytes(range(256)), b"\x00", b"a\x00b\x00"]


def test_simple_identity_bytes(grpc_client):
    # BYTES are bytes over gRPC: invalid UTF-8 comes back untouched
    arr = np.array([IDENTITY_VALUES], dtype=np.object_)
    res = grpc_client.infer("simple_identity", u.grpc_inputs(("INPUT0", arr, "BYTES")), client_timeout=RPC_TIMEOUT)
    out = res.get_output("OUTPUT0")
    assert (out.datatype, list(out.shape)) == ("BYTES", [1, len(IDENTITY_VALUES)])
    assert [bytes(v) for v in res.as_numpy("OUTPUT0").flatten()] == IDENTITY_VALUES


@pytest.mark.parametrize("image", ["coffee.png", "chelsea.png"])
def test_classification_top3(grpc_client, image):
    x = preprocess(u.IMAGES / image)
    res = grpc_client.infer("efficientnet_lite0_onnx", u.grpc_inputs(("input", x, "FP32")),
                            outputs=[grpcclient.InferRequestedOutput("logits", class_count=3)],
                            client_timeout=RPC_TIMEOUT)
    out = res.get_output("logits")
    assert (out.datatype, list(out.shape)) == ("BYTES", [1, 3])
    entries = [bytes(v).decode() for v in res.as_numpy("logits").flatten()]
    got = []
    for e in entries:
        score, index, label = e.split(":", 2)  # Triton's "score:index:label"
        got.append((int(index), label.lower(), float(score)))
    want = expected_top3(image)
    assert [(i, label) for i, label, _ in got] == [(i, label.lower()) for i, label, _ in want], entries
    for (_, _, score), (_, _, want_score) in zip(got, want):
        assert abs(score - want_score) < 0.01, f"{entries} vs expected {want}"
    assert got[0][1] == KNOWN_TOP1[image]


def test_classification_full_logits(grpc_client):
    x = preprocess(u.IMAGES / "coffee.png")
    res = grpc_client.infer("efficientnet_lite0_onnx", u.grpc_inputs(("input", x, "FP32")), client_timeout=RPC_TIMEOUT)
    logits = res.as_numpy("logits")
    assert logits.dtype == np.float32 and logits.shape == (1, 1000)
    top = [i for i, _, _ in expected_top3("coffee.png")]
    assert list(np.argsort(-logits[0])[:3]) == top


def test_large_request_over_4_mib(grpc_client):
    # 8 images, 4.8 MB in one message: over gRPC's usual 4 MiB default; Triton (and
    # tritonclient) allow up to INT32_MAX bytes
    x = np.concatenate([preprocess(u.IMAGES / "coffee.png"), preprocess(u.IMAGES / "chelsea.png")] * 4)
    assert x.nbytes > 4 * 1024 * 1024
    res = grpc_client.infer("efficientnet_lite0_onnx", u.grpc_inputs(("input", x, "FP32")),
                            outputs=[grpcclient.InferRequestedOutput("logits", class_count=1)],
                            client_timeout=RPC_TIMEOUT)
    assert list(res.get_output("logits").shape) == [8, 1]
    top1 = [bytes(v).decode().split(":", 2)[2].lower() for v in res.as_numpy("logits").flatten()]
    assert top1 == [KNOWN_TOP1["coffee.png"], KNOWN_TOP1["chelsea.png"]] * 4


# --- typed contents (InferTensorContents) through the stub -----------------------------------

def _typed_simple_request(request_id="typed-1"):
    req = service_pb2.ModelInferRequest(model_name="simple", id=request_id)
    a, b = u.simple_pair(seed=7)
    for name, arr in (("INPUT0", a), ("INPUT1", b)):
        t = req.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        t.contents.int_contents.extend(arr.flatten().tolist())
    return req, a, b


def _raw_outputs(response):
    return {o.name: raw for o, raw in zip(response.outputs, response.raw_output_contents)}


def test_typed_contents_int32(grpc_stub):
    req, a, b = _typed_simple_request()
    resp = grpc_stub.ModelInfer(req, timeout=RPC_TIMEOUT)
    assert (resp.model_name, resp.model_version, resp.id) == ("simple", "1", "typed-1")
    # Triton always answers in raw_output_contents, never in typed contents
    assert all(not o.HasField("contents") for o in resp.outputs)
    raw = _raw_outputs(resp)
    np.testing.assert_array_equal(np.frombuffer(raw["OUTPUT0"], "<i4").reshape(1, 16), a + b)
    np.testing.assert_array_equal(np.frombuffer(raw["OUTPUT1"], "<i4").reshape(1, 16), a - b)


def test_typed_contents_int8(grpc_stub):
    # INT8 travels in int_contents (one int32 each)
    req = service_pb2.ModelInferRequest(model_name="simple_int8")
    x = list(range(-8, 8))
    y = [3] * 16
    for name, values in (("INPUT0", x), ("INPUT1", y)):
        req.inputs.add(name=name, datatype="INT8", shape=[1, 16]).contents.int_contents.extend(values)
    raw = _raw_outputs(grpc_stub.ModelInfer(req, timeout=RPC_TIMEOUT))
    assert np.frombuffer(raw["OUTPUT0"], np.int8).tolist() == [p + q for p, q in zip(x, y)]
    assert np.frombuffer(raw["OUTPUT1"], np.int8).tolist() == [p - q for p, q in zip(x, y)]


def test_typed_contents_bytes(grpc_stub):
    req = service_pb2.ModelInferRequest(model_name="simple_string")
    x = [i - 8 for i in range(16)]
    y = [7 * i for i in range(16)]
    for name, values in (("INPUT0", x), ("INPUT1", y)):
        req.inputs.add(name=name, datatype="BYTES", shape=[1, 16]).contents.bytes_contents.extend(
            str(v).encode() for v in values)
    resp = grpc_stub.ModelInfer(req, timeout=RPC_TIMEOUT)
    out = grpcclient.InferResult(resp)
    assert [int(v) for v in out.as_numpy("OUTPUT0").flatten()] == [p + q for p, q in zip(x, y)]
    assert [int(v) for v in out.as_numpy("OUTPUT1").flatten()] == [p - q for p, q in zip(x, y)]


def test_typed_contents_fp32(grpc_stub):
    x = preprocess(u.IMAGES / "chelsea.png")
    req = service_pb2.ModelInferRequest(model_name="efficientnet_lite0_onnx")
    req.inputs.add(name="input", datatype="FP32", shape=list(x.shape)).contents.fp32_contents.extend(
        x.flatten().tolist())
    out = req.outputs.add(name="logits")
    out.parameters["classification"].int64_param = 1
    resp = grpc_stub.ModelInfer(req, timeout=RPC_TIMEOUT)
    top1 = bytes(grpcclient.InferResult(resp).as_numpy("logits").flatten()[0]).decode()
    assert top1.split(":", 2)[2].lower() == KNOWN_TOP1["chelsea.png"], top1


def test_raw_and_typed_contents_together_is_an_error(grpc_stub, grpc_client):
    req, a, b = _typed_simple_request()
    req.raw_input_contents.append(a.tobytes())
    with pytest.raises(grpc.RpcError) as e:
        grpc_stub.ModelInfer(req, timeout=RPC_TIMEOUT)
    u.assert_grpc_error(e.value, "INVALID_ARGUMENT",
                        "contents field must not be specified when using raw_input_contents for 'INPUT0' "
                        "for model 'simple'")
    _infer_simple(grpc_client)


def test_typed_contents_of_the_wrong_type(grpc_stub, grpc_client):
    req = service_pb2.ModelInferRequest(model_name="simple")
    for name in ("INPUT0", "INPUT1"):
        req.inputs.add(name=name, datatype="INT32", shape=[1, 16]).contents.int64_contents.extend(range(16))
    with pytest.raises(grpc.RpcError) as e:
        grpc_stub.ModelInfer(req, timeout=RPC_TIMEOUT)
    u.assert_grpc_error(e.value, "INVALID_ARGUMENT",
                        "unexpected explicit tensor data for input tensor 'INPUT0' for model 'simple' of type "
                        "'INT64', expected datatype 'INT32'")
    _infer_simple(grpc_client)


# --- compression, deadlines ------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_request(grpc_client, algorithm):
    res = _infer_simple(grpc_client, seed=8, compression_algorithm=algorithm, request_id=f"compressed-{algorithm}")
    assert res.get_response().id == f"compressed-{algorithm}"
    # a larger, compressible one too
    x = preprocess(u.IMAGES / "coffee.png")
    res = grpc_client.infer("efficientnet_lite0_onnx", u.grpc_inputs(("input", x, "FP32")),
                            outputs=[grpcclient.InferRequestedOutput("logits", class_count=1)],
                            compression_algorithm=algorithm, client_timeout=RPC_TIMEOUT)
    assert bytes(res.as_numpy("logits").flatten()[0]).decode().split(":", 2)[2].lower() == KNOWN_TOP1["coffee.png"]


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_metadata_calls(grpc_hostport, algorithm):
    # a whole channel with compression: every call, not only infer
    compression = {"gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}[algorithm]
    with grpc.insecure_channel(grpc_hostport, compression=compression) as channel:
        from tritonclient.grpc import service_pb2_grpc

        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=RPC_TIMEOUT).live
        meta = stub.ModelMetadata(service_pb2.ModelMetadataRequest(name="simple"), timeout=RPC_TIMEOUT)
        assert meta.name == "simple"


@pytest.mark.parametrize("client_timeout", [0.000001, 0.005, 0.01, 0.02], ids=["1us", "5ms", "10ms", "20ms"])
def test_deadline_exceeded(grpc_client, client_timeout):
    # A batch of 8 images takes several times 20 ms on a 2-core machine (about 60 ms warm), so
    # the deadline passes before the request is sent (1 us) or while the server has it. Either
    # way the client sees DEADLINE_EXCEEDED, as with Triton (gRPC C++ ends the call with it):
    # a server that answers first with another status (CANCELLED, say) is caught by the
    # repetitions, since which side's timer fires first varies from call to call.
    x = np.concatenate([preprocess(u.IMAGES / "coffee.png")] * 8)
    inputs = u.grpc_inputs(("input", x, "FP32"))
    seen = []
    for _ in range(5):
        with pytest.raises(InferenceServerException) as e:
            grpc_client.infer("efficientnet_lite0_onnx", inputs, client_timeout=client_timeout)
        seen.append((e.value.status(), e.value.message()))
    assert all(status == "StatusCode.DEADLINE_EXCEEDED" for status, _ in seen), seen
    # the server is fine afterwards
    assert grpc_client.is_server_live(client_timeout=RPC_TIMEOUT)
    assert grpc_client.is_server_ready(client_timeout=RPC_TIMEOUT)
    _infer_simple(grpc_client, seed=9)


def test_deadline_long_enough(grpc_client):
    # a deadline that is not reached changes nothing
    _infer_simple(grpc_client, seed=10, request_id="with-deadline")


def test_server_timeout_parameter_accepted(grpc_client):
    # tritonclient's `timeout` (microseconds) becomes the request's "timeout" parameter; a
    # generous one must not fail a request
    _infer_simple(grpc_client, seed=11, timeout=60_000_000)
