"""The model repository as Triton reads it: version folders and version_policy, auto-complete and
--strict-model-config, driver settings through --backend-config."""

import shutil

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import e2e_util as u


def versioned_simple(repo, policy: str, versions=(1, 2, 3)):
    """`simple` with several version folders (the same model file) and the given policy."""
    d = repo / "simple"
    d.mkdir(parents=True)
    text = u.read_pbtxt("simple") + "\n" + policy + "\n"
    (d / "config.pbtxt").write_text(text)
    for v in versions:
        (d / str(v)).mkdir()
        shutil.copy(u.MODEL_REPO / "simple" / "1" / "model.onnx", d / str(v) / "model.onnx")
    return d


def infer_simple(client, version=""):
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        i = httpclient.InferInput(name, [1, 16], "INT32")
        i.set_data_from_numpy(a)
        inputs.append(i)
    return client.infer("simple", inputs, model_version=version)


def index(hostport):
    return u.post_json(hostport, "/v2/repository/index", {}).json()


def test_latest_policy_serves_the_newest_versions(ferrite, tmp_path):
    repo = tmp_path / "versions"
    versioned_simple(repo, "version_policy: { latest: { num_versions: 2 } }")
    srv = ferrite.start([repo])
    assert [(e["name"], e["version"], e["state"]) for e in index(srv.hostport)] == [
        ("simple", "2", "READY"),
        ("simple", "3", "READY"),
    ]
    client = httpclient.InferenceServerClient(srv.hostport)
    assert client.get_model_metadata("simple")["versions"] == ["2", "3"]
    assert client.is_model_ready("simple", "2") and not client.is_model_ready("simple", "1")
    assert infer_simple(client).get_response()["model_version"] == "3"
    assert infer_simple(client, "2").get_response()["model_version"] == "2"
    try:
        infer_simple(client, "1")
        raise AssertionError("version 1 is not served")
    except InferenceServerException as e:
        assert "version 1 is not found" in e.message(), e


def test_all_and_specific_policies(ferrite, tmp_path):
    all_repo = tmp_path / "all"
    versioned_simple(all_repo, "version_policy: { all { } }")
    srv = ferrite.start([all_repo])
    assert [e["version"] for e in index(srv.hostport)] == ["1", "2", "3"]

    specific = tmp_path / "specific"
    versioned_simple(specific, "version_policy: { specific: { versions: [1, 3] } }")
    srv = ferrite.start([specific])
    assert [e["version"] for e in index(srv.hostport)] == ["1", "3"]


def test_strict_model_config_turns_auto_complete_off(ferrite):
    repo = ferrite.repo("simple", "simple_identity")
    # simple_identity's config.pbtxt lists no inputs or outputs: without auto-complete it
    # cannot load, and the reason says what is missing.
    for flag in ("--strict-model-config=true", "--disable-auto-complete-config"):
        srv = ferrite.start([repo], [flag, "--exit-on-error=false"], wait_ready=False)
        srv.wait_http("/v2/health/live")
        entries = {e["name"]: e for e in index(srv.hostport)}
        assert entries["simple"]["state"] == "READY"
        broken = entries["simple_identity"]
        assert broken["state"] == "UNAVAILABLE", broken
        assert "configuration expects 0 inputs, model provides 1" in broken["reason"], broken
        assert "INPUT0" in broken["reason"], broken
        srv.stop_cleanly()
    # auto-complete is on by default
    srv = ferrite.start([repo])
    cfg = httpclient.InferenceServerClient(srv.hostport).get_model_config("simple_identity")
    assert [i["name"] for i in cfg["input"]] == ["INPUT0"]


def test_backend_config_names_the_onnxruntime_library(ferrite, tmp_path):
    # A backend directory with the driver but without ONNX Runtime beside it: the library is
    # found through --backend-config=onnxruntime,library=PATH instead.
    backends = tmp_path / "backends"
    backends.mkdir()
    shutil.copy(u.BACKEND_DIR / u.DRIVER_LIB, backends / u.DRIVER_LIB)
    srv = ferrite.start(
        [ferrite.repo("simple")],
        [f"--backend-config=onnxruntime,library={u.BACKEND_DIR / u.ORT_LIB}"],
        backend_dir=backends,
    )
    client = httpclient.InferenceServerClient(srv.hostport)
    assert infer_simple(client).as_numpy("OUTPUT0")[0, 15] == 30


def test_index_body_types_get_tritons_value_error(hostport):
    # Triton reads the whole body (its own test nests 250000 levels) and reports the value
    # error for a `ready` that is not a boolean, not a depth error
    for body in (b'{"ready": "yes"}', b'{"ready": [[true]]}',
                 b'{"ready":' + b"[" * 5000 + b"true" + b"]" * 5000 + b"}"):
        reply = u.request(hostport, "POST", "/v2/repository/index", body, {"Content-Type": "application/json"})
        u.assert_reply(reply, 400, "application/json",
                       u.error_body("Invalid value for 'ready': expected a boolean"))
    assert u.request(hostport, "GET", "/v2/health/live").status == 200
