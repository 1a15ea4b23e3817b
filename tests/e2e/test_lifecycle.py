"""Model lifecycle: --model-control-mode none|poll|explicit, --load-model, the repository
load / unload API (with `config` and `file:` overrides), structured load errors, polling,
unloading and reloading under load, the SIGTERM drain and readiness.

Each test starts its own server(s) on a temporary repository through the `ferrite` fixture
(conftest.py): every server still running at the end must exit 0 on SIGTERM. Anything that
waits for the server to change polls with a deadline.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import e2e_util as u

# Every test is bounded (a hung server fails the test, not the run); all of them together
# take well under a minute.
pytestmark = pytest.mark.timeout(90)

EXPLICIT = "--model-control-mode=explicit"
NOT_ALLOWED = "explicit model load / unload is not allowed if polling is enabled"
NOT_POLLED = "failed to load 'nope', failed to poll from model repository"
SIMPLE_ONNX = u.MODEL_REPO / "simple" / "1" / "model.onnx"
PROTOS = ["http", "grpc"]
# How long a change may take to show (loads take milliseconds; polls come every second).
DEADLINE_S = 15.0

# tritonclient's status for an error, as a gRPC code name.
HTTP_CODES = {"400": "INVALID_ARGUMENT", "404": "NOT_FOUND", "500": "INTERNAL",
              "501": "UNIMPLEMENTED", "503": "UNAVAILABLE"}

# A config.pbtxt with a syntax error on line 3, column 17 (`}` where a value belongs).
SYNTAX_ERROR = """name: "broken"
platform: "onnxruntime_onnx"
max_batch_size: }
"""


# --- helpers ---------------------------------------------------------------------------------

def wait_for(check, timeout: float = DEADLINE_S, interval: float = 0.1):
    """Calls check() until it stops raising AssertionError (or InferenceServerException);
    returns its value. After `timeout` the last failure is raised."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, InferenceServerException) as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"still failing after {timeout:.0f} s: {e}") from e
        time.sleep(interval)


class Api:
    """One server through one protocol, with tritonclient; answers in one shape for both."""

    def __init__(self, srv: u.Server, proto: str):
        self.srv, self.proto = srv, proto
        if proto == "http":
            self.mod = httpclient
            self.c = httpclient.InferenceServerClient(srv.hostport, connection_timeout=30.0,
                                                      network_timeout=60.0)
            self.kw = {}  # the timeouts are the client's
        else:
            self.mod = grpcclient
            self.c = grpcclient.InferenceServerClient(srv.grpc_hostport)
            self.kw = {"client_timeout": 60.0}

    def close(self):
        self.c.close()

    def load(self, model: str, config: str | None = None, files: dict | None = None):
        self.c.load_model(model, config=config, files=files, **self.kw)

    def unload(self, model: str):
        self.c.unload_model(model, **self.kw)

    def index(self) -> list[dict]:
        """Rows as HTTP shows them: name, then version / state / reason only when not empty."""
        if self.proto == "http":
            rows = self.c.get_model_repository_index()
        else:
            rows = self.c.get_model_repository_index(as_json=True, **self.kw).get("models", [])
        return [{k: v for k, v in r.items() if v != ""} for r in rows]

    def rows(self, model: str) -> list[dict]:
        return [r for r in self.index() if r["name"] == model]

    def server_ready(self) -> bool:
        return self.c.is_server_ready(**self.kw)

    def model_ready(self, model: str, version: str = "") -> bool:
        return self.c.is_model_ready(model, version, **self.kw)

    def config(self, model: str) -> dict:
        if self.proto == "http":
            return self.c.get_model_config(model)
        return self.c.get_model_config(model, as_json=True, **self.kw)["config"]

    def infer(self, model: str = "simple", batch: int = 1, seed: int = 0, version: str = ""):
        """Runs `simple` (or a copy) and checks the sum; returns the served version."""
        a, b = u.simple_pair(batch, seed)
        inputs = []
        for name, arr in (("INPUT0", a), ("INPUT1", b)):
            i = self.mod.InferInput(name, list(arr.shape), "INT32")
            i.set_data_from_numpy(arr)
            inputs.append(i)
        result = self.c.infer(model, inputs, model_version=version, **self.kw)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
        response = result.get_response()
        return response["model_version"] if self.proto == "http" else response.model_version

    def error(self, fn, *args, **kwargs) -> tuple[str, str]:
        """(gRPC code name, message) of the error fn(...) must raise."""
        try:
            fn(*args, **kwargs)
        except InferenceServerException as e:
            status = e.status() or ""
            code = HTTP_CODES.get(status, status) if self.proto == "http" \
                else status.removeprefix("StatusCode.")
            return code, e.message()
        raise AssertionError(f"{getattr(fn, '__name__', fn)}{args} succeeded; an error was expected")


@pytest.fixture
def connect():
    """connect(server, proto) -> Api; closed at the end of the test."""
    apis: list[Api] = []

    def make(srv: u.Server, proto: str) -> Api:
        api = Api(srv, proto)
        apis.append(api)
        return api

    yield make
    for api in apis:
        api.close()


@pytest.fixture
def repo(ferrite) -> Path:
    """simple, simple_identity and simple_int8 (all small and quick to load)."""
    return ferrite.repo("simple", "simple_identity", "simple_int8")


def simple_config_json(**changes) -> str:
    """`simple`'s configuration as a `config` load parameter (inputs and outputs are
    auto-completed from the ONNX file), with changes."""
    cfg = {"platform": "onnxruntime_onnx", "max_batch_size": 8}
    cfg.update(changes)
    return json.dumps(cfg)


def pbtxt(model: str, **replace) -> str:
    """An example model's config.pbtxt with `max_batch_size: 8` etc. replaced."""
    text = u.read_pbtxt(model)
    for field, value in replace.items():
        text, n = re.subn(rf"^{field}:.*$", f"{field}: {value}", text, flags=re.M)
        assert n == 1, field
    return text


def ready_status(srv: u.Server) -> int:
    return u.request(srv.hostport, "GET", "/v2/health/ready", timeout=10).status


def infer_body(seed: int = 0) -> dict:
    a, b = u.simple_pair(1, seed)
    return {"inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": a.ravel().tolist()},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": b.ravel().tolist()},
    ]}


# --- 1. mode none ----------------------------------------------------------------------------

def test_mode_none_refuses_load_and_unload(ferrite, connect, repo):
    srv = ferrite.start([repo])  # the default mode: none
    for proto in PROTOS:
        api = connect(srv, proto)
        assert api.error(api.load, "simple") == ("UNAVAILABLE", NOT_ALLOWED)
        assert api.error(api.unload, "simple") == ("UNAVAILABLE", NOT_ALLOWED)
        assert api.error(api.load, "nope") == ("UNAVAILABLE", NOT_ALLOWED)
    # Triton's exact reply, and nothing was unloaded.
    for action in ("load", "unload"):
        reply = u.request(srv.hostport, "POST", f"/v2/repository/models/simple/{action}", b"{}",
                          {"Content-Type": "application/json"})
        u.assert_reply(reply, 503, "application/json", u.error_body(NOT_ALLOWED))
    api = connect(srv, "http")
    assert [(r["name"], r.get("state")) for r in api.index()] == [
        ("simple", "READY"), ("simple_identity", "READY"), ("simple_int8", "READY")]
    assert api.infer() == "1"


# --- 2. explicit mode at startup -------------------------------------------------------------

def test_explicit_mode_without_load_model_loads_nothing(ferrite, connect, repo):
    srv = ferrite.start([repo], [EXPLICIT])
    for proto in PROTOS:
        api = connect(srv, proto)
        assert api.index() == [{"name": "simple"}, {"name": "simple_identity"},
                               {"name": "simple_int8"}], proto
        assert api.server_ready(), proto
        assert not api.model_ready("simple"), proto
        code, message = api.error(api.infer)
        assert code in ("NOT_FOUND", "UNAVAILABLE") and "simple" in message, (code, message)
    u.assert_reply(u.request(srv.hostport, "GET", "/v2/health/ready"), 200, "text/plain", b"")


def test_explicit_mode_loads_the_named_model(ferrite, connect, repo):
    srv = ferrite.start([repo], [EXPLICIT, "--load-model", "simple"])
    for proto in PROTOS:
        api = connect(srv, proto)
        assert api.index() == [{"name": "simple", "version": "1", "state": "READY"},
                               {"name": "simple_identity"}, {"name": "simple_int8"}], proto
        assert api.server_ready() and api.model_ready("simple"), proto
        assert not api.model_ready("simple_int8"), proto
        assert api.infer() == "1"


def test_explicit_mode_load_model_star_loads_everything(ferrite, connect, repo):
    srv = ferrite.start([repo], [EXPLICIT, "--load-model=*"])
    api = connect(srv, "grpc")
    assert api.index() == [{"name": m, "version": "1", "state": "READY"}
                           for m in ("simple", "simple_identity", "simple_int8")]
    assert api.server_ready()


def test_load_model_star_with_a_name_fails_startup(ferrite, repo):
    rc, log = ferrite.fail([repo], [EXPLICIT, "--load-model=*", "--load-model", "simple"])
    assert rc != 0, log
    assert "--load-model=* must be the only --load-model argument" in log, log


# --- 3. explicit load / unload ---------------------------------------------------------------

@pytest.mark.parametrize("proto", PROTOS)
def test_explicit_load_unload_and_load_again(ferrite, connect, repo, proto):
    srv = ferrite.start([repo], [EXPLICIT])
    api = connect(srv, proto)

    api.load("simple")
    assert api.rows("simple") == [{"name": "simple", "version": "1", "state": "READY"}]
    assert api.model_ready("simple")
    assert api.infer(seed=1) == "1"

    api.unload("simple")
    assert api.rows("simple") == [
        {"name": "simple", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}]
    code, message = api.error(api.infer)
    assert code == "UNAVAILABLE", (code, message)
    assert "simple" in message, message
    assert not api.model_ready("simple")
    assert api.server_ready(), "a model unloaded on purpose does not make the server unready"
    assert ready_status(srv) == 200
    # the other models were never touched
    assert api.rows("simple_int8") == [{"name": "simple_int8"}]

    api.load("simple")
    assert api.rows("simple") == [{"name": "simple", "version": "1", "state": "READY"}]
    assert api.infer(seed=2) == "1"
    # unloading twice, or a model never loaded, is fine
    api.unload("simple")
    api.unload("simple")
    api.unload("simple_int8")
    assert api.server_ready()

    assert api.error(api.load, "nope") == ("INTERNAL", NOT_POLLED)
    assert "nope" not in [r["name"] for r in api.index()]


# --- 4. overrides ----------------------------------------------------------------------------

@pytest.mark.parametrize("proto", PROTOS)
def test_config_override_replaces_config_pbtxt(ferrite, connect, repo, proto):
    srv = ferrite.start([repo], [EXPLICIT, "--load-model", "simple"])
    api = connect(srv, proto)
    assert int(api.config("simple")["max_batch_size"]) == 8
    assert api.infer(batch=8) == "1"

    api.load("simple", config=simple_config_json(max_batch_size=4))
    assert int(api.config("simple")["max_batch_size"]) == 4
    assert api.infer(batch=4) == "1"
    code, message = api.error(api.infer, batch=8)
    assert code == "INVALID_ARGUMENT" and "batch" in message, (code, message)

    # a plain load goes back to config.pbtxt (an overridden model is never "unchanged")
    api.load("simple")
    assert int(api.config("simple")["max_batch_size"]) == 8
    assert api.infer(batch=8) == "1"

    # a config naming another model, or no JSON at all, fails Triton's poll, and the loaded
    # version stays
    not_polled = "failed to load 'simple', failed to poll from model repository"
    code, message = api.error(api.load, "simple", config=json.dumps({"name": "other"}))
    assert code == "INTERNAL" and message.startswith(not_polled), (code, message)
    assert "names model 'other'" in message, message
    code, message = api.error(api.load, "simple", config="{not json")
    assert code == "INTERNAL" and message.startswith(not_polled), (code, message)
    assert "not valid JSON" in message, message
    # one that parses but does not fit the model fails the load as Triton's does
    bad = json.dumps({"max_batch_size": 4, "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [16]}]})
    code, message = api.error(api.load, "simple", config=bad)
    assert code == "INVALID_ARGUMENT" and message.startswith("load failed for model 'simple'"), (code, message)
    assert api.infer() == "1"
    assert int(api.config("simple")["max_batch_size"]) == 8


@pytest.mark.parametrize("proto", PROTOS)
def test_files_a_config_names_stay_in_the_model_folder(ferrite, connect, proto):
    # An override that points label_filename, default_model_filename or an initial state's
    # data_file outside the model's folder is refused at load, before anything is read; the
    # loaded version keeps serving with its own labels.
    repo = ferrite.repo("efficientnet_lite0_onnx", "sequence_accumulator")
    srv = ferrite.start([repo], [EXPLICIT, "--load-model", "efficientnet_lite0_onnx",
                                 "--load-model", "sequence_accumulator"])
    api = connect(srv, proto)
    label_cfg = json.dumps({"platform": "onnxruntime_onnx", "max_batch_size": 8,
                            "output": [{"name": "logits", "data_type": "TYPE_FP32", "dims": [1000],
                                        "label_filename": "/etc/passwd"}]})
    code, message = api.error(api.load, "efficientnet_lite0_onnx", config=label_cfg)
    # The load API wraps the version's failure as Triton's does: INVALID_ARG "load failed ...".
    assert code == "INVALID_ARGUMENT", (code, message)
    assert ("label file path '" in message and "' for output 'logits' in model "
            "'efficientnet_lite0_onnx' is outside model directory" in message), message
    file_cfg = json.dumps({"platform": "onnxruntime_onnx", "max_batch_size": 8,
                           "default_model_filename": "../../../../etc/passwd"})
    code, message = api.error(api.load, "efficientnet_lite0_onnx", config=file_cfg)
    assert code == "INVALID_ARGUMENT" and "default_model_filename '../../../../etc/passwd'" in message, message
    assert "is outside its version folder" in message, message
    state = u.read_pbtxt("sequence_accumulator").replace("zero_data: true", 'data_file: "../../../../dev/zero"')
    # The same through config.pbtxt on a reload: refused, the loaded version serves on.
    (repo / "sequence_accumulator" / "config.pbtxt").write_text(state)
    code, message = api.error(api.load, "sequence_accumulator")
    assert "initial_state data_file '../../../../dev/zero' is outside" in message, (code, message)
    assert api.model_ready("efficientnet_lite0_onnx") and api.model_ready("sequence_accumulator")


@pytest.mark.parametrize("proto", PROTOS)
def test_config_override_is_auto_completed_like_config_pbtxt(ferrite, connect, repo, proto):
    # The case: an override that names no platform, on a folder with 1/model.onnx,
    # goes through the same platform detection and auto-complete as config.pbtxt.
    srv = ferrite.start([repo], [EXPLICIT])
    api = connect(srv, proto)
    api.load("simple", config=json.dumps({"max_batch_size": 16}))
    config = api.config("simple")
    assert int(config["max_batch_size"]) == 16
    assert config["platform"] == "onnxruntime_onnx" and config["backend"] == "onnxruntime"
    assert sorted(i["name"] for i in config["input"]) == ["INPUT0", "INPUT1"]
    assert api.infer(batch=16) == "1"


@pytest.fixture
def private_tmpdir(tmp_path, monkeypatch) -> Path:
    """TMPDIR of the servers started afterwards (where `file:` overrides are written)."""
    d = tmp_path / "server-tmp"
    d.mkdir()
    monkeypatch.setenv("TMPDIR", str(d))
    return d


def load_dirs(tmpdir: Path) -> list[Path]:
    return sorted(tmpdir.glob("ferrite-load-*"))


@pytest.mark.parametrize("proto", PROTOS)
def test_file_override_loads_a_model_not_in_the_repository(ferrite, connect, repo, private_tmpdir,
                                                           proto):
    srv = ferrite.start([repo], [EXPLICIT])
    api = connect(srv, proto)
    onnx = SIMPLE_ONNX.read_bytes()
    assert load_dirs(private_tmpdir) == []

    api.load("fresh", config=simple_config_json(), files={"file:1/model.onnx": onnx})
    assert api.rows("fresh") == [{"name": "fresh", "version": "1", "state": "READY"}]
    assert api.infer("fresh", seed=3) == "1"
    dirs = load_dirs(private_tmpdir)
    assert len(dirs) == 1, dirs
    assert (dirs[0] / "fresh" / "1" / "model.onnx").read_bytes() == onnx
    assert not (repo / "fresh").exists()

    # loading it again with new files: the new directory replaces the old one
    api.load("fresh", config=simple_config_json(max_batch_size=2), files={"file:1/model.onnx": onnx})
    assert int(api.config("fresh")["max_batch_size"]) == 2
    assert api.infer("fresh", batch=2) == "1"
    again = load_dirs(private_tmpdir)
    assert len(again) == 1 and again != dirs, (dirs, again)

    api.unload("fresh")
    assert api.rows("fresh") == [
        {"name": "fresh", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}]
    assert load_dirs(private_tmpdir) == [], "the temporary directory outlived the unload"
    assert api.server_ready()


@pytest.mark.parametrize("proto", PROTOS)
def test_file_override_needs_config_and_stays_inside(ferrite, connect, repo, private_tmpdir, proto):
    srv = ferrite.start([repo], [EXPLICIT])
    api = connect(srv, proto)
    onnx = SIMPLE_ONNX.read_bytes()

    code, message = api.error(api.load, "fresh", files={"file:1/model.onnx": onnx})
    assert code == "INVALID_ARGUMENT", (code, message)
    assert "'config' parameter must be given with 'file:' parameters" in message, message

    for bad in ("file:../x", "file:1/../../x", "file:/etc/x"):
        code, message = api.error(api.load, "fresh", config=simple_config_json(),
                                  files={"file:1/model.onnx": onnx, bad: b"x"})
        assert code == "INVALID_ARGUMENT", (bad, code, message)
        assert message.startswith(f"Invalid file parameter '{bad}' with normalized path '"), message
        assert message.endswith("' must stay within model directory."), message
    assert not (private_tmpdir / "x").exists() and not (private_tmpdir.parent / "x").exists()
    assert load_dirs(private_tmpdir) == [], "a refused load left its files"

    # The model name becomes a folder: a path is refused before anything is written
    # (Triton's CVE-2023-31036 class).
    target = private_tmpdir / "target"
    for name in (str(target), "../target", "a/b", ".."):
        code, message = api.error(api.load, name, config="{}", files={"file:written.txt": b"x"})
        if proto == "http" and "/" in name:
            # Over HTTP a name with '/' is another URL: no route (404), as in Triton.
            assert code == "NOT_FOUND", (name, code, message)
            continue
        assert code == "INVALID_ARGUMENT", (name, code, message)
        assert message == (f"invalid model name '{name}', model name must not contain path "
                           "traversal characters"), message
    assert not (target / "written.txt").exists() and not target.exists()
    assert not (private_tmpdir.parent / "target").exists()

    # a name no file system holds is the request's fault, answered as Triton answers it
    long_name = "file:1/" + "a" * 300 + ".onnx"
    code, message = api.error(api.load, "fresh", config=simple_config_json(),
                              files={"file:1/model.onnx": onnx, long_name: b"x"})
    assert code == "INVALID_ARGUMENT", (code, message)
    assert message == f"Invalid file parameter '{long_name[5:]}': File name too long", message
    assert api.server_ready()
    assert load_dirs(private_tmpdir) == [], "a refused load left its temporary directory"
    assert "fresh" not in [r["name"] for r in api.index()]
    assert api.server_ready()


# --- 5. structured errors --------------------------------------------------------------------

@pytest.mark.parametrize("proto", PROTOS)
def test_config_syntax_error_names_stage_file_and_position(ferrite, connect, repo, proto):
    u.add_model_with_config(repo, "broken", SYNTAX_ERROR)
    srv = ferrite.start([repo], [EXPLICIT, "--load-model", "simple"])
    api = connect(srv, proto)
    path = str(repo / "broken" / "config.pbtxt")

    code, message = api.error(api.load, "broken")
    assert code == "INVALID_ARGUMENT", (code, message)
    assert "load failed for model 'broken'" in message, message
    assert "reading the configuration" in message, message
    assert path in message, message
    assert re.search(r"line 3, column \d+", message), message

    rows = api.rows("broken")
    assert len(rows) == 1 and rows[0]["state"] == "UNAVAILABLE", rows
    reason = rows[0]["reason"]
    assert "reading the configuration" in reason and path in reason, reason
    assert re.search(r"line 3, column \d+", reason), reason

    log = wait_for(lambda: _log_has(srv, "failed to load 'broken'"))
    line = next(l for l in log.splitlines() if "failed to load 'broken'" in l)
    assert "reading the configuration" in line and path in line, line
    assert re.search(r"line 3, column \d+", line), line

    # simple is untouched
    assert api.infer() == "1"


def _log_has(srv: u.Server, text: str) -> str:
    log = srv.log()
    assert text in log, f"{text!r} not in the log yet"
    return log


@pytest.mark.parametrize("proto", PROTOS)
def test_missing_model_file_names_the_version_stage_and_file(ferrite, connect, repo, proto):
    d = repo / "nofile"
    (d / "1").mkdir(parents=True)
    (d / "config.pbtxt").write_text(pbtxt("simple", name='"nofile"'))
    srv = ferrite.start([repo], [EXPLICIT])
    api = connect(srv, proto)

    missing = str(d / "1" / "model.onnx")
    code, message = api.error(api.load, "nofile")
    assert code == "INVALID_ARGUMENT", (code, message)
    assert message.startswith("load failed for model 'nofile': version 1 is at UNAVAILABLE state: "
                              "loading version 1: "), message
    assert missing in message, message
    rows = api.rows("nofile")
    assert [(r.get("version"), r["state"]) for r in rows] == [("1", "UNAVAILABLE")], rows
    assert rows[0]["reason"].startswith("loading version 1: ") and missing in rows[0]["reason"], rows
    assert not api.model_ready("nofile")
    assert not api.server_ready()


@pytest.mark.parametrize("proto", PROTOS)
def test_failed_reload_keeps_the_old_version_serving(ferrite, connect, repo, proto):
    srv = ferrite.start([repo], [EXPLICIT, "--load-model", "simple"])
    api = connect(srv, proto)
    assert api.infer() == "1"

    (repo / "simple" / "config.pbtxt").write_text(SYNTAX_ERROR.replace("broken", "simple"))
    code, message = api.error(api.load, "simple")
    assert code == "INVALID_ARGUMENT", (code, message)
    assert "reading the configuration" in message, message

    assert api.rows("simple") == [{"name": "simple", "version": "1", "state": "READY"}]
    assert api.model_ready("simple") and api.server_ready()
    assert api.infer(seed=4) == "1"
    assert int(api.config("simple")["max_batch_size"]) == 8

    # a reload whose version fails to load keeps the old one too
    (repo / "simple" / "config.pbtxt").write_text(pbtxt("simple"))
    (repo / "simple" / "1" / "model.onnx").write_bytes(b"not an onnx model")
    code, message = api.error(api.load, "simple")
    assert "loading version 1" in message, (code, message)
    assert api.rows("simple") == [{"name": "simple", "version": "1", "state": "READY"}]
    assert api.infer(seed=5) == "1"


# --- 6. poll mode ----------------------------------------------------------------------------

def _staged(tmp: Path, name: str) -> Path:
    """A fresh folder outside the repository, moved in with one rename (polls never see
    half a copy)."""
    d = tmp / "staging" / name
    d.mkdir(parents=True)
    return d


def test_poll_mode_follows_the_repository(ferrite, connect, tmp_path):
    repo = ferrite.repo("simple")
    srv = ferrite.start([repo], ["--model-control-mode=poll", "--repository-poll-secs=1"])
    api = connect(srv, "http")
    gapi = connect(srv, "grpc")
    for a in (api, gapi):
        assert a.error(a.load, "simple") == ("UNAVAILABLE", NOT_ALLOWED)
        assert a.error(a.unload, "simple") == ("UNAVAILABLE", NOT_ALLOWED)
    assert api.index() == [{"name": "simple", "version": "1", "state": "READY"}]

    # a new model folder is loaded
    staged = _staged(tmp_path, "added")
    shutil.copytree(u.MODEL_REPO / "simple", staged / "added")
    (staged / "added" / "config.pbtxt").write_text(pbtxt("simple", name='"added"'))
    os.rename(staged / "added", repo / "added")

    def added_ready():
        assert api.rows("added") == [{"name": "added", "version": "1", "state": "READY"}], api.index()
    wait_for(added_ready)
    assert api.infer("added", seed=6) == "1"

    # a new version folder: with the default policy (latest 1) version 2 replaces version 1
    staged = _staged(tmp_path, "v2")
    shutil.copy(SIMPLE_ONNX, staged / "model.onnx")
    os.rename(staged, repo / "simple" / "2")

    def v2_only():
        assert api.rows("simple") == [{"name": "simple", "version": "2", "state": "READY"}], api.index()
    wait_for(v2_only)
    assert api.infer() == "2"
    assert not api.model_ready("simple", "1")
    assert api.model_ready("simple", "2")

    # an edited config.pbtxt is reloaded
    new = tmp_path / "config.pbtxt"
    new.write_text("# edited\n" + pbtxt("simple", max_batch_size="4"))
    os.replace(new, repo / "simple" / "config.pbtxt")

    def reconfigured():
        assert int(api.config("simple")["max_batch_size"]) == 4
    wait_for(reconfigured)
    assert api.infer(batch=4) == "2"

    # a removed folder is unloaded and leaves the index
    os.rename(repo / "added", tmp_path / "removed")

    def gone():
        assert [r["name"] for r in api.index()] == ["simple"], api.index()
    wait_for(gone)
    code, message = api.error(api.infer, "added")
    assert code in ("NOT_FOUND", "UNAVAILABLE") and "added" in message, (code, message)
    assert api.server_ready()
    assert "repository poll: added" in srv.log()


# --- 7. unload and reload under load ---------------------------------------------------------

class Load:
    """Client threads inferring `simple` without pause (gRPC and HTTP keep-alive connections)
    until stopped; every outcome is counted."""

    # Turned away at the door: the model lookup failed, nothing was queued.
    REJECTED = re.compile(r"Request for unknown model: 'simple' (has no available versions"
                          r"|is not found|version \d+ is not at ready state)")

    def __init__(self, srv: u.Server, threads: int = 4):
        self.srv = srv
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.rejected: list[str] = []
        self.failed: list[str] = []
        self.threads = [threading.Thread(target=self._grpc if i % 2 == 0 else self._http,
                                         args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in self.threads), "a client thread hung"

    def _count(self, ok: bool, rejected: str | None = None, failed: str | None = None):
        with self.lock:
            if ok:
                self.ok += 1
            elif rejected is not None:
                self.rejected.append(rejected)
            else:
                self.failed.append(failed)

    def successes(self) -> int:
        with self.lock:
            return self.ok

    def wait_successes(self, n: int):
        def enough():
            assert self.successes() >= n, f"{self.successes()} successes, failures {self.failed[:3]}"
        wait_for(enough, interval=0.02)

    def _grpc(self, i: int):
        c = grpcclient.InferenceServerClient(self.srv.grpc_hostport)
        a, b = u.simple_pair(1, i)
        inputs = u.grpc_inputs(("INPUT0", a, "INT32"), ("INPUT1", b, "INT32"))
        try:
            while not self.stop_flag.is_set():
                try:
                    r = c.infer("simple", inputs, client_timeout=30)
                    good = np.array_equal(r.as_numpy("OUTPUT0"), a + b)
                    self._count(good, failed=None if good else "gRPC: wrong sum")
                except InferenceServerException as e:
                    text = f"gRPC {e.status()}: {e.message()}"
                    if e.status() == "StatusCode.UNAVAILABLE" and self.REJECTED.match(e.message() or ""):
                        self._count(False, rejected=text)
                    else:
                        self._count(False, failed=text)
                except Exception as e:  # noqa: BLE001 - every other failure is counted
                    self._count(False, failed=f"gRPC {e!r}")
        finally:
            c.close()

    def _http(self, i: int):
        body = json.dumps(infer_body(i)).encode()
        a, b = u.simple_pair(1, i)
        want = (a + b).ravel().tolist()
        conn = http.client.HTTPConnection(self.srv.host, self.srv.port, timeout=30)
        try:
            while not self.stop_flag.is_set():
                try:
                    conn.request("POST", "/v2/models/simple/infer", body,
                                 {"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    data = resp.read()
                except Exception as e:  # noqa: BLE001 - connection reset, timeout...
                    self._count(False, failed=f"HTTP {e!r}")
                    conn.close()
                    conn = http.client.HTTPConnection(self.srv.host, self.srv.port, timeout=30)
                    continue
                text = f"HTTP {resp.status}: {data[:300]!r}"
                if resp.status == 200:
                    good = json.loads(data)["outputs"][0]["data"] == want
                    self._count(good, failed=None if good else text)
                elif resp.status == 503 and self.REJECTED.match(_error_text(data)):
                    self._count(False, rejected=text)
                else:
                    self._count(False, failed=text)
        finally:
            conn.close()


def _error_text(body: bytes) -> str:
    try:
        return json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return ""


# With dynamic batching and a queue delay, requests wait in the queue when the unload or
# reload comes: the drain must run them, not drop them.
QUEUED = """
dynamic_batching {
  preferred_batch_size: [ 8 ]
  max_queue_delay_microseconds: 30000
}
instance_group [ { count: 1 kind: KIND_CPU } ]
"""


@pytest.fixture(params=["direct", "queued"])
def busy_repo(request, ferrite) -> Path:
    repo = ferrite.repo()
    extra = QUEUED if request.param == "queued" else ""
    u.add_model_with_config(repo, "simple", u.read_pbtxt("simple") + extra)
    return repo


def test_unload_under_load_fails_no_accepted_request(ferrite, connect, busy_repo):
    srv = ferrite.start([busy_repo], [EXPLICIT, "--load-model", "simple"])
    api = connect(srv, "grpc")
    with Load(srv) as load:
        load.wait_successes(30)
        api.unload("simple")
        served = load.successes()
        # after the unload every request is turned away before it is accepted
        wait_for(lambda: _at_least(len(load.rejected), 20), interval=0.02)
        load.stop()
    assert served > 0
    assert load.failed == [], f"{len(load.failed)} failed: {load.failed[:5]}"
    assert load.rejected, "no request was rejected after the unload"
    assert load.successes() - served <= 4, "requests succeeded after the unload returned"
    assert api.rows("simple") == [
        {"name": "simple", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}]
    # and it comes back
    api.load("simple")
    assert api.infer() == "1"


def _at_least(n: int, want: int):
    assert n >= want, f"{n} < {want}"


def test_reload_under_load_fails_no_request(ferrite, connect, busy_repo):
    srv = ferrite.start([busy_repo], [EXPLICIT, "--load-model", "simple"])
    api = connect(srv, "grpc")
    queued = "dynamic_batching" in (busy_repo / "simple" / "config.pbtxt").read_text()
    with Load(srv) as load:
        load.wait_successes(20)
        for mbs in (4, 8, 2, 8):
            before = load.successes()
            changes = {"max_batch_size": mbs}
            if queued:  # keep the queue, so each reload replaces a version with requests in it
                changes["dynamic_batching"] = {"preferred_batch_size": [mbs],
                                               "max_queue_delay_microseconds": 30000}
            api.load("simple", config=simple_config_json(**changes))
            assert int(api.config("simple")["max_batch_size"]) == mbs
            load.wait_successes(before + 10)
        load.stop()
    assert load.failed == [] and load.rejected == [], (
        f"a reload must not turn any request away: failed {load.failed[:5]}, "
        f"rejected {load.rejected[:5]}")
    assert load.successes() >= 60
    assert api.rows("simple") == [{"name": "simple", "version": "1", "state": "READY"}]


# --- 8. SIGTERM ------------------------------------------------------------------------------

def test_sigterm_drains_requests_in_flight(ferrite, connect, tmp_path):
    repo = ferrite.repo()
    d = u.add_model_with_config(repo, "simple", u.read_pbtxt("simple") + """
dynamic_batching {
  preferred_batch_size: [ 8 ]
  max_queue_delay_microseconds: 2000000
}
instance_group [ { count: 1 kind: KIND_CPU } ]
""")
    assert (d / "1" / "model.onnx").exists()
    srv = ferrite.start([repo])
    outcome: dict = {}

    def one_request():
        start = time.monotonic()
        try:
            reply = u.post_json(srv.hostport, "/v2/models/simple/infer", infer_body(7))
            outcome["reply"] = reply
        except Exception as e:  # noqa: BLE001
            outcome["error"] = repr(e)
        outcome["elapsed"] = time.monotonic() - start

    t = threading.Thread(target=one_request, daemon=True)
    started = time.monotonic()
    t.start()
    # The request's connection came first: once a later connection is answered, it was
    # accepted; a moment more and it is parsed and queued (where it waits ~2 s).
    time.sleep(0.1)
    assert u.request(srv.hostport, "GET", "/v2/health/live", timeout=10).status == 200
    time.sleep(0.3)
    assert t.is_alive(), f"the request did not wait in the queue: {outcome}"
    srv.proc.send_signal(signal.SIGTERM)
    # readiness turns false while the request is still waiting
    t.join(timeout=30)
    assert not t.is_alive(), "the request never finished"
    rc = srv.proc.wait(timeout=30)
    assert "error" not in outcome, f"{outcome}\n{srv.describe()}"
    reply = outcome["reply"]
    assert reply.status == 200, f"{reply}\n{srv.describe()}"
    a, b = u.simple_pair(1, 7)
    assert reply.json()["outputs"][0]["data"] == (a + b).ravel().tolist()
    assert outcome["elapsed"] > 1.5, f"the request took {outcome['elapsed']:.2f} s (not queued?)"
    assert rc == 0, srv.describe()
    log = srv.log()
    for line in ("received SIGTERM", "readiness is now false", "unloading models"):
        assert line in log, srv.describe()
    assert log.index("received SIGTERM") < log.index("readiness is now false") \
        < log.index("unloading models"), srv.describe()
    assert time.monotonic() - started < 15


# --- 9. readiness ----------------------------------------------------------------------------

def test_readiness_after_a_failed_load_and_its_unload(ferrite, connect, repo):
    u.add_model_with_config(repo, "broken", SYNTAX_ERROR)
    srv = ferrite.start([repo], [EXPLICIT, "--load-model", "simple"])
    api = connect(srv, "http")
    assert ready_status(srv) == 200

    api.error(api.load, "broken")
    assert ready_status(srv) == 400, "a failed load makes a strictly ready server unready"
    assert not api.server_ready()
    assert api.model_ready("simple")

    api.unload("broken")
    assert ready_status(srv) == 200, f"unloading the failed model makes it ready again: {api.index()}"
    assert api.rows("broken") in ([{"name": "broken"}],
                                  [{"name": "broken", "state": "UNAVAILABLE", "reason": "unloaded"}]), \
        api.index()

    # a failed version (rather than configuration) counts the same
    (repo / "broken" / "config.pbtxt").write_text(pbtxt("simple", name='"broken"'))
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"not an onnx model")
    api.error(api.load, "broken")
    assert ready_status(srv) == 400
    api.unload("broken")
    assert ready_status(srv) == 200, api.index()


def test_readiness_not_strict_ignores_failed_loads(ferrite, connect, repo):
    u.add_model_with_config(repo, "broken", SYNTAX_ERROR)
    srv = ferrite.start([repo], [EXPLICIT, "--load-model", "simple", "--strict-readiness=false"])
    api = connect(srv, "http")
    api.error(api.load, "broken")
    assert [r["state"] for r in api.rows("broken")] == ["UNAVAILABLE"]
    assert ready_status(srv) == 200
    assert api.server_ready()
