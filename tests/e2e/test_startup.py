"""Startup: models that fail to load, --exit-on-error, --strict-readiness, a missing ONNX Runtime.

Each test starts its own server on a temporary repository with a copy of `simple`.
"""

import re
import shutil

import pytest

import e2e_util as u

# An unknown field on line 3.
UNKNOWN_FIELD = """name: "broken"
platform: "onnxruntime_onnx"
bogus_field: 1
max_batch_size: 8
"""

# An enum value that does not exist, on line 4 (field `kind`).
BAD_ENUM = """name: "broken"
platform: "onnxruntime_onnx"
instance_group [
  { kind: KIND_BOGUS count: 1 }
]
"""

CASES = {
    "unknown-field": (UNKNOWN_FIELD, 3, "bogus_field"),
    "bad-enum": (BAD_ENUM, 4, "kind"),
}


def names_line(reason: str, line: int) -> bool:
    """`config.pbtxt:3:1`, `config.pbtxt:3`, `line 3`, `3:1:` all name line 3."""
    return re.search(rf"(config\.pbtxt:{line}\b|\bline:? {line}\b|(^|[^\d]){line}:\d+)", reason) is not None


def broken_repo(ferrite, case):
    repo = ferrite.repo("simple")
    text, _, _ = CASES[case]
    u.add_model_with_config(repo, "broken", text)
    return repo


@pytest.mark.parametrize("case", CASES)
def test_invalid_config_fails_startup_by_default(ferrite, case):
    rc, log = ferrite.fail([broken_repo(ferrite, case)])
    assert rc != 0, log
    assert "failed to load all models" in log, log
    text, line, field = CASES[case]
    assert "broken" in log, log
    assert field in log, log


@pytest.mark.parametrize("case", CASES)
def test_invalid_config_with_exit_on_error_false(ferrite, case):
    srv = ferrite.start([broken_repo(ferrite, case)], ["--exit-on-error=false"], wait_ready=False)
    text, line, field = CASES[case]

    reply = u.request(srv.hostport, "POST", "/v2/repository/index")
    u.assert_reply(reply, 200, "application/json")
    index = {m["name"]: m for m in reply.json()}
    assert set(index) == {"simple", "broken"}, index
    assert index["simple"] == {"name": "simple", "version": "1", "state": "READY"}
    broken = index["broken"]
    assert broken["state"] == "UNAVAILABLE", broken
    reason = broken["reason"]
    assert "config.pbtxt" in reason, reason
    assert names_line(reason, line), f"reason does not name line {line}: {reason}"
    assert field in reason, reason

    # the server is live and serves `simple`, but is not ready while a model failed
    u.assert_reply(u.request(srv.hostport, "GET", "/v2/health/live"), 200, "text/plain", b"")
    assert u.request(srv.hostport, "GET", "/v2/health/ready").status == 400
    u.assert_reply(u.request(srv.hostport, "GET", "/v2/models/simple/ready"), 200, "text/plain", b"")
    assert u.request(srv.hostport, "GET", "/v2/models/broken/ready").status == 400
    req = {"inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16},
    ]}
    reply = u.post_json(srv.hostport, "/v2/models/simple/infer", req)
    assert reply.status == 200, reply
    assert reply.json()["outputs"][0]["data"] == list(range(1, 17))
    reply = u.post_json(srv.hostport, "/v2/models/broken/infer", req)
    assert reply.status in (400, 404, 503), reply
    assert "broken" in reply.json()["error"], reply


def missing_model_file_repo(ferrite):
    """`simple` plus `nofile`: simple's valid configuration, but no model.onnx in nofile/1, so
    the load fails rather than the parse."""
    repo = ferrite.repo("simple")
    config = (u.MODEL_REPO / "simple" / "config.pbtxt").read_text().replace('"simple"', '"nofile"')
    (repo / "nofile" / "1").mkdir(parents=True)
    (repo / "nofile" / "config.pbtxt").write_text(config)
    return repo


def test_model_file_missing_with_exit_on_error_false(ferrite):
    repo = missing_model_file_repo(ferrite)
    srv = ferrite.start([repo], ["--exit-on-error=false"], wait_ready=False)
    index = {m["name"]: m for m in u.request(srv.hostport, "POST", "/v2/repository/index").json()}
    assert index["simple"]["state"] == "READY", index
    assert index["nofile"]["state"] == "UNAVAILABLE", index
    assert "model.onnx" in index["nofile"]["reason"], index
    assert u.request(srv.hostport, "GET", "/v2/health/ready").status == 400
    assert u.request(srv.hostport, "GET", "/v2/models/simple/ready").status == 200


def test_model_file_missing_fails_startup_by_default(ferrite):
    repo = missing_model_file_repo(ferrite)
    rc, log = ferrite.fail([repo])
    assert rc != 0, log
    assert "failed to load all models" in log, log
    assert "model.onnx" in log, log


def test_strict_readiness_false_is_ready_despite_failed_model(ferrite):
    srv = ferrite.start([broken_repo(ferrite, "unknown-field")],
                        ["--exit-on-error=false", "--strict-readiness=false"], wait_ready=False)
    u.assert_reply(u.request(srv.hostport, "GET", "/v2/health/ready"), 200, "text/plain", b"")
    u.assert_reply(u.request(srv.hostport, "GET", "/v2/models/simple/ready"), 200, "text/plain", b"")


def test_missing_onnxruntime_library_names_the_path(ferrite, tmp_path):
    backend = tmp_path / "backend"
    backend.mkdir()
    shutil.copy(u.BACKEND_DIR / u.DRIVER_LIB, backend / u.DRIVER_LIB)
    rc, log = ferrite.fail([ferrite.repo("simple")], backend_dir=backend)
    assert rc != 0, log
    wanted = {str(backend / u.ORT_LIB), str(backend.resolve() / u.ORT_LIB)}
    assert any(w in log for w in wanted), f"the log should name {wanted}:\n{log}"


def test_model_repository_flag_is_repeatable(ferrite):
    first = ferrite.repo("simple", name="first")
    second = ferrite.repo("simple_int8", name="second")
    srv = ferrite.start([first, second])
    reply = u.request(srv.hostport, "POST", "/v2/repository/index")
    assert [m["name"] for m in reply.json()] == ["simple", "simple_int8"], reply
