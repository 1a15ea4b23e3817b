"""Model-level endpoints on the example repository: metadata, config, ready, index, stats.

Expected bytes follow Triton 2.51 (shared/triton-reference/http 04-15, 40-44) with the example
models of configs/models (ONNX Runtime, so platform "onnxruntime_onnx").
"""

import numpy as np
import pytest
import tritonclient.http as httpclient

import e2e_util as u

SIMPLE_METADATA = (
    b'{"name":"simple","versions":["1"],"platform":"onnxruntime_onnx",'
    b'"inputs":[{"name":"INPUT0","datatype":"INT32","shape":[-1,16]},'
    b'{"name":"INPUT1","datatype":"INT32","shape":[-1,16]}],'
    b'"outputs":[{"name":"OUTPUT0","datatype":"INT32","shape":[-1,16]},'
    b'{"name":"OUTPUT1","datatype":"INT32","shape":[-1,16]}]}'
)

# Every field Triton's /config shows, defaults included (reference 09).
CONFIG_KEYS = {
    "name", "platform", "backend", "runtime", "version_policy", "max_batch_size", "input", "output",
    "batch_input", "batch_output", "optimization", "instance_group", "default_model_filename",
    "cc_model_filenames", "metric_tags", "parameters", "model_warmup",
}
CONFIG_INPUT_KEYS = {
    "name", "data_type", "format", "dims", "is_shape_tensor", "allow_ragged_batch", "optional",
    "is_non_linear_format_io",
}
CONFIG_OUTPUT_KEYS = {"name", "data_type", "dims", "label_filename", "is_shape_tensor", "is_non_linear_format_io"}
INSTANCE_GROUP_KEYS = {"name", "kind", "count", "gpus", "secondary_devices", "profile", "passive", "host_policy"}
OPTIMIZATION = {
    "priority": "PRIORITY_DEFAULT",
    "input_pinned_memory": {"enable": True},
    "output_pinned_memory": {"enable": True},
    "gather_kernel_buffer_threshold": 0,
    "eager_batching": False,
}

STATS_ENTRY_KEYS = {
    "name", "version", "last_inference", "inference_count", "execution_count", "inference_stats",
    "response_stats", "batch_stats", "memory_usage",
}
INFERENCE_STATS_KEYS = {
    "success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit", "cache_miss",
}
BATCH_STATS_KEYS = {"batch_size", "compute_input", "compute_infer", "compute_output"}


def simple_infer(client, batch=1):
    a = np.arange(16 * batch, dtype=np.int32).reshape(batch, 16)
    b = np.ones((batch, 16), dtype=np.int32)
    inputs = [httpclient.InferInput("INPUT0", [batch, 16], "INT32"), httpclient.InferInput("INPUT1", [batch, 16], "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    res = client.infer("simple", inputs)
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(res.as_numpy("OUTPUT1"), a - b)


# --- metadata ----------------------------------------------------------------------------------

def test_simple_metadata_exact_reply(hostport):
    for path in ("/v2/models/simple", "/v2/models/simple/versions/1"):
        u.assert_reply(u.request(hostport, "GET", path), 200, "application/json", SIMPLE_METADATA)


@pytest.mark.parametrize("model", u.EXAMPLE_MODELS)
def test_model_metadata(client, model):
    meta = client.get_model_metadata(model)
    assert meta["name"] == model
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] and meta["outputs"]
    config = client.get_model_config(model)
    batched = config["max_batch_size"] > 0
    for kind, config_kind in (("inputs", "input"), ("outputs", "output")):
        assert [t["name"] for t in meta[kind]] == [t["name"] for t in config[config_kind]]
        for t, c in zip(meta[kind], config[config_kind]):
            assert t["datatype"] == c["data_type"].removeprefix("TYPE_").replace("STRING", "BYTES")
            assert t["shape"] == ([-1] if batched else []) + c["dims"]
    assert client.get_model_metadata(model, model_version="1") == meta


def test_example_model_signatures(client):
    io = {}
    for model in ("simple", "simple_int8", "simple_string"):
        meta = client.get_model_metadata(model)
        io[model] = [(t["name"], t["datatype"]) for t in meta["inputs"] + meta["outputs"]]
    assert io["simple"] == [("INPUT0", "INT32"), ("INPUT1", "INT32"), ("OUTPUT0", "INT32"), ("OUTPUT1", "INT32")]
    assert io["simple_int8"] == [("INPUT0", "INT8"), ("INPUT1", "INT8"), ("OUTPUT0", "INT8"), ("OUTPUT1", "INT8")]
    assert io["simple_string"] == [("INPUT0", "BYTES"), ("INPUT1", "BYTES"), ("OUTPUT0", "BYTES"), ("OUTPUT1", "BYTES")]
    meta = client.get_model_metadata("simple_identity")
    assert [t["datatype"] for t in meta["inputs"] + meta["outputs"]] == ["BYTES", "BYTES"]


# --- config ------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", u.EXAMPLE_MODELS)
def test_model_config_is_effective_config(client, hostport, model):
    reply = u.request(hostport, "GET", f"/v2/models/{model}/config")
    u.assert_reply(reply, 200, "application/json")
    config = reply.json()
    assert reply.body == u.compact(config), "compact JSON, as Triton writes it"
    assert CONFIG_KEYS <= set(config), CONFIG_KEYS - set(config)
    assert config["name"] == model
    assert config["platform"] == "onnxruntime_onnx"
    assert config["backend"] == "onnxruntime"
    assert config["version_policy"] == {"latest": {"num_versions": 1}}
    assert config["default_model_filename"] == "model.onnx"
    assert config["optimization"] == OPTIMIZATION
    for t in config["input"]:
        assert CONFIG_INPUT_KEYS <= set(t), t
    for t in config["output"]:
        assert CONFIG_OUTPUT_KEYS <= set(t), t
    groups = config["instance_group"]
    assert len(groups) == 1, groups
    assert INSTANCE_GROUP_KEYS <= set(groups[0]), groups[0]
    name, count = u.expected_instance_group(model)
    assert groups[0]["name"] == name
    assert groups[0]["kind"] == "KIND_CPU"
    assert groups[0]["count"] == count
    assert client.get_model_config(model) == config
    assert client.get_model_config(model, model_version="1") == config


def test_simple_config(client):
    config = client.get_model_config("simple")
    assert config["max_batch_size"] == 8
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("INPUT0", "TYPE_INT32", [16]),
        ("INPUT1", "TYPE_INT32", [16]),
    ]
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["output"]] == [
        ("OUTPUT0", "TYPE_INT32", [16]),
        ("OUTPUT1", "TYPE_INT32", [16]),
    ]
    assert config["input"][0]["format"] == "FORMAT_NONE"
    assert config["output"][0]["label_filename"] == ""


def test_simple_identity_config_is_auto_completed(client):
    config = client.get_model_config("simple_identity")
    assert len(config["input"]) == 1 and len(config["output"]) == 1
    assert (config["input"][0]["data_type"], config["input"][0]["dims"]) == ("TYPE_STRING", [-1])
    assert (config["output"][0]["data_type"], config["output"][0]["dims"]) == ("TYPE_STRING", [-1])


def test_classifier_config_names_its_labels(client):
    config = client.get_model_config("efficientnet_lite0_onnx")
    logits = [t for t in config["output"] if t["name"] == "logits"]
    assert logits and logits[0]["label_filename"] == "labels.txt"


# --- ready, index --------------------------------------------------------------------------------

@pytest.mark.parametrize("model", u.EXAMPLE_MODELS)
def test_model_ready(client, hostport, model):
    assert client.is_model_ready(model)
    assert client.is_model_ready(model, model_version="1")
    u.assert_reply(u.request(hostport, "GET", f"/v2/models/{model}/ready"), 200, "text/plain", b"")
    u.assert_reply(u.request(hostport, "GET", f"/v2/models/{model}/versions/1/ready"), 200, "text/plain", b"")


def _example_index():
    names = sorted(p.name for p in u.MODEL_REPO.iterdir() if p.is_dir())
    assert set(u.EXAMPLE_MODELS) <= set(names)
    return [{"name": n, "version": "1", "state": "READY"} for n in names]


def test_repository_index_with_tritonclient(client):
    assert client.get_model_repository_index() == _example_index()


@pytest.mark.parametrize("body", [None, b"{}", b'{"ready": true}'], ids=["no-body", "empty-json", "ready-only"])
def test_repository_index_exact_reply(hostport, body):
    # references 12-14
    headers = {} if body is None else {"Content-Type": "application/json"}
    reply = u.request(hostport, "POST", "/v2/repository/index", body=body, headers=headers)
    u.assert_reply(reply, 200, "application/json", u.compact(_example_index()))


def test_load_in_model_control_mode_none_is_503(hostport):
    # reference 40
    reply = u.post_json(hostport, "/v2/repository/models/simple/load", {})
    u.assert_reply(
        reply, 503, "application/json",
        u.error_body("explicit model load / unload is not allowed if polling is enabled"),
    )


# --- statistics ----------------------------------------------------------------------------------

def _check_stats_shape(entry):
    assert set(entry) == STATS_ENTRY_KEYS, entry
    assert set(entry["inference_stats"]) == INFERENCE_STATS_KEYS, entry
    for v in entry["inference_stats"].values():
        assert set(v) == {"count", "ns"}, entry
    for b in entry["batch_stats"]:
        assert set(b) == BATCH_STATS_KEYS, entry
        for k in ("compute_input", "compute_infer", "compute_output"):
            assert set(b[k]) == {"count", "ns"}, entry


def _stats(client, model="simple"):
    stats = client.get_inference_statistics(model)
    assert len(stats["model_stats"]) == 1
    entry = stats["model_stats"][0]
    _check_stats_shape(entry)
    assert (entry["name"], entry["version"]) == (model, "1")
    return entry


def test_stats_increase_after_inference(client, hostport):
    before = _stats(client)
    simple_infer(client)
    simple_infer(client)
    after = _stats(client)
    assert after["inference_count"] == before["inference_count"] + 2
    assert after["execution_count"] == before["execution_count"] + 2
    s0, s1 = before["inference_stats"], after["inference_stats"]
    assert s1["success"]["count"] == s0["success"]["count"] + 2
    assert s1["success"]["ns"] > s0["success"]["ns"]
    for k in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert s1[k]["count"] == s0[k]["count"] + 2, k
    assert s1["fail"] == s0["fail"]
    assert after["last_inference"] > 0 and after["last_inference"] >= before["last_inference"]
    batch1 = [b for b in after["batch_stats"] if b["batch_size"] == 1]
    assert batch1 and batch1[0]["compute_infer"]["count"] >= 2
    # the versioned path answers the same
    reply = u.request(hostport, "GET", "/v2/models/simple/versions/1/stats")
    u.assert_reply(reply, 200, "application/json")
    assert reply.json()["model_stats"][0]["inference_count"] == after["inference_count"]


def test_stats_all_models(client, hostport):
    reply = u.request(hostport, "GET", "/v2/models/stats")
    u.assert_reply(reply, 200, "application/json")
    entries = reply.json()["model_stats"]
    assert sorted(e["name"] for e in entries) == [m["name"] for m in _example_index()]
    for e in entries:
        _check_stats_shape(e)
        assert e["version"] == "1"
    assert sorted(e["name"] for e in client.get_inference_statistics()["model_stats"]) == sorted(
        e["name"] for e in entries)


def test_stats_before_any_inference_exact_reply(ferrite):
    # reference 15, on a fresh server
    srv = ferrite.start([ferrite.repo("simple")])
    reply = u.request(srv.hostport, "GET", "/v2/models/simple/stats")
    zero = {"count": 0, "ns": 0}
    expected = {"model_stats": [{
        "name": "simple", "version": "1", "last_inference": 0, "inference_count": 0, "execution_count": 0,
        "inference_stats": {k: zero for k in (
            "success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit", "cache_miss")},
        "response_stats": {}, "batch_stats": [], "memory_usage": [],
    }]}
    u.assert_reply(reply, 200, "application/json", u.compact(expected))


def test_stats_unknown_model_is_400(hostport):
    # reference 44
    reply = u.request(hostport, "GET", "/v2/models/nosuchmodel/stats")
    u.assert_reply(reply, 400, "application/json", u.error_body("requested model 'nosuchmodel' is not available"))


# --- unknown models and versions ---------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v2/models/nosuchmodel", "/v2/models/nosuchmodel/config"])
def test_unknown_model_is_404(hostport, path):
    # references 24, 27
    u.assert_reply(u.request(hostport, "GET", path), 404, "application/json",
                   u.error_body("Request for unknown model: 'nosuchmodel' is not found"))


@pytest.mark.parametrize("path", ["/v2/models/simple/versions/7", "/v2/models/simple/versions/7/config"])
def test_unknown_version_is_404(hostport, path):
    # reference 26
    u.assert_reply(u.request(hostport, "GET", path), 404, "application/json",
                   u.error_body("Request for unknown model: 'simple' version 7 is not found"))


@pytest.mark.parametrize("path", ["/v2/models/nosuchmodel/ready", "/v2/models/simple/versions/7/ready"])
def test_unknown_model_not_ready(client, hostport, path):
    # reference 25
    u.assert_reply(u.request(hostport, "GET", path), 400, "text/plain", b'{"error":"Model version not ready"}')
    assert not client.is_model_ready("nosuchmodel")
