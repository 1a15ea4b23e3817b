"""The logging extension and the log itself: GET/POST /v2/logging, gRPC LogSettings, the
--log-* flags, levels and formats changed at run time, request ids on request lines, and
--log-file.

Each test starts its own server on a temporary repository with a copy of `simple` and reads
its log (stderr, or the --log-file file). A log line a test waits for is polled for with a
bounded wait; a line that must be absent is checked after a later "log settings: ..." line
(logged by every accepted update), so it would have been written by then.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

import e2e_util as u

LOG_WAIT_S = 10.0
KEYS = {"log_file", "log_info", "log_warning", "log_error", "log_verbose_level", "log_format"}

DEFAULT_LINE = re.compile(r"^[IWEV]\d{4} \d{2}:\d{2}:\d{2}\.\d{6} (\d+) \S+\] ")
ISO8601_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z [IWEV] (\d+) \S+\] ")
JSON_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
# Any line the logger writes, in any of its formats.
ANY_LOG_LINE = re.compile(rf"({DEFAULT_LINE.pattern})|({ISO8601_LINE.pattern})|(^\{{\"timestamp\")")
# A flag that makes a startup warning (and otherwise changes nothing here).
WARN_FLAG = "--load-model=simple"
WARNING = "--load-model has no effect unless --model-control-mode=explicit"
FILE_REFUSAL = "log file location can not be updated through network protocol"


# --- helpers ---------------------------------------------------------------------------------

def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


class Log:
    """A server's log file: its text, the complete lines written after a mark, bounded waits."""

    def __init__(self, path: Path, server: u.Server):
        self.path = path
        self.server = server

    def text(self, since: int = 0) -> str:
        return u.strip_ansi(read_bytes(self.path)[since:].decode(errors="replace"))

    def mark(self) -> int:
        return len(read_bytes(self.path))

    def lines(self, since: int = 0) -> list[str]:
        """The complete lines written after `since` (a line still being written is left out)."""
        text = self.text(since)
        return text[: text.rfind("\n") + 1].splitlines()

    def lines_from(self, since: int, needle: str) -> list[str]:
        """The complete lines from the first one containing `needle` (after `since`) on: after
        an update's own `log settings:` line, every line follows the new settings (lines
        before it, e.g. the HTTP/2 frames of the update's own request, may not)."""
        lines = self.lines(since)
        for i, line in enumerate(lines):
            if needle in line:
                return lines[i:]
        raise AssertionError(f"no line with {needle!r} after byte {since}:\n" + "\n".join(lines))

    def wait_for(self, *needles: str, since: int = 0, timeout: float = LOG_WAIT_S) -> str:
        """Waits until every needle is in the log (after `since`); returns that text."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text(since)
            if all(n in text for n in needles):
                return text
            if time.monotonic() > deadline or self.server.proc.poll() is not None:
                missing = [n for n in needles if n not in text]
                raise AssertionError(f"{missing} not in the log within {timeout:.0f} s\n"
                                     f"--- log {self.path} after byte {since} ---\n{text}--- end ---\n"
                                     f"{self.server.describe()}")
            time.sleep(0.05)

    def wait_count(self, needle: str, count: int, timeout: float = LOG_WAIT_S) -> str:
        """Waits until `needle` is in the log at least `count` times; returns the log."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if text.count(needle) >= count:
                return text
            if time.monotonic() > deadline or self.server.proc.poll() is not None:
                raise AssertionError(f"{needle!r} not {count} times in the log within {timeout:.0f} s\n"
                                     f"--- log {self.path} ---\n{text}--- end ---")
            time.sleep(0.05)


def stderr_log(srv: u.Server) -> Log:
    return Log(srv.log_path, srv)


def start(ferrite, extra: list[str]) -> tuple[u.Server, Log]:
    srv = ferrite.start([ferrite.repo("simple")], extra)
    return srv, stderr_log(srv)


def start_with_ports(ferrite, extra: list[str], log_path: Path | None = None) -> u.Server:
    """Starts a server on ports picked here, for logs without the `Started ... at` lines
    (--log-info=false): waits for HTTP ready instead. Retries if a port was taken meanwhile."""
    repo = ferrite.repo("simple")
    for attempt in range(3):
        http_port, grpc_port = u.free_port(), u.free_port()
        args = u.server_args([repo], ["--http-port", str(http_port), "--grpc-port", str(grpc_port)] + extra)
        srv = u.spawn(args, ferrite.tmp_path / "logs")
        ferrite.servers.append(srv)
        srv.host, srv.port = "127.0.0.1", http_port
        srv.grpc_host, srv.grpc_port = "127.0.0.1", grpc_port
        try:
            srv.wait_http("/v2/health/ready", timeout=u.STARTUP_TIMEOUT_S)
            return srv
        except AssertionError:
            srv.kill()
            log = srv.log() + (Log(log_path, srv).text() if log_path else "")
            if attempt == 2 or "address" not in log.lower():
                raise
    raise AssertionError("unreachable")


def infer_json(request_id: str, input0: str = "INPUT0") -> dict:
    return {"id": request_id, "inputs": [
        {"name": input0, "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16},
    ]}


def infer_http(srv: u.Server, request_id: str) -> None:
    """An inference with tritonclient.http, carrying `request_id`."""
    a, b = u.simple_pair()
    inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    with httpclient.InferenceServerClient(srv.hostport, connection_timeout=10, network_timeout=20) as c:
        result = c.infer("simple", inputs, request_id=request_id)
    assert result.get_response()["id"] == request_id
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)


def infer_grpc(srv: u.Server, request_id: str) -> None:
    a, b = u.simple_pair(seed=1)
    with grpcclient.InferenceServerClient(srv.grpc_hostport) as c:
        result = c.infer("simple", u.grpc_inputs(("INPUT0", a, "INT32"), ("INPUT1", b, "INT32")),
                         request_id=request_id, client_timeout=20)
    assert result.get_response().id == request_id
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)


def get_settings(srv: u.Server) -> dict:
    reply = u.request(srv.hostport, "GET", "/v2/logging", timeout=10)
    u.assert_reply(reply, 200, "application/json")
    return reply.json()


def post_settings(srv: u.Server, update) -> u.Reply:
    return u.request(srv.hostport, "POST", "/v2/logging",
                     update if isinstance(update, str) else json.dumps(update),
                     {"Content-Type": "application/json"}, timeout=10)


def update_ok(srv: u.Server, update: dict) -> dict:
    reply = post_settings(srv, update)
    u.assert_reply(reply, 200, "application/json")
    return reply.json()


def grpc_settings(response) -> dict:
    """LogSettingsResponse as {name: value}."""
    out = {}
    for key, value in response.settings.items():
        which = value.WhichOneof("parameter_choice")
        assert which is not None, f"{key} has no value: {response}"
        out[key] = getattr(value, which)
    return out


def grpc_get(srv: u.Server) -> dict:
    with grpcclient.InferenceServerClient(srv.grpc_hostport) as c:
        return grpc_settings(c.get_log_settings(client_timeout=10))


def grpc_raw(srv: u.Server, request: service_pb2.LogSettingsRequest):
    """LogSettings through the generated stub, for values tritonclient would not send."""
    with grpc.insecure_channel(srv.grpc_hostport) as channel:
        return service_pb2_grpc.GRPCInferenceServiceStub(channel).LogSettings(request, timeout=10)


def expected(**changes) -> dict:
    s = {"log_file": "", "log_info": True, "log_warning": True, "log_error": True,
         "log_verbose_level": 0, "log_format": "default"}
    s.update(changes)
    return s


SETTINGS_LINE = "log settings: "


def sentinel(srv: u.Server, log: Log) -> str:
    """An accepted update that changes nothing, and the wait for its `log settings:` line:
    whatever was logged before it is in the log afterwards. Returns the log."""
    before = log.text().count(SETTINGS_LINE)
    update_ok(srv, {"log_error": True})
    return log.wait_count(SETTINGS_LINE, before + 1)


# --- 1. reading the settings ------------------------------------------------------------------

@pytest.mark.parametrize("flags,want", [
    (["--log-verbose=0", "--log-format=default"], expected()),
    (["--log-verbose=2", "--log-format=ISO8601", "--log-warning=false", "--log-error=false"],
     expected(log_verbose_level=2, log_format="ISO8601", log_warning=False, log_error=False)),
], ids=["defaults", "changed"])
def test_get_settings_shows_startup_values(ferrite, flags, want):
    srv, _ = start(ferrite, flags)
    reply = u.request(srv.hostport, "GET", "/v2/logging", timeout=10)
    u.assert_reply(reply, 200, "application/json")
    got = reply.json()
    assert set(got) == KEYS, got
    assert got == want
    # the value types are Triton's: booleans, an unsigned integer, strings
    assert type(got["log_verbose_level"]) is int and type(got["log_info"]) is bool, got

    with httpclient.InferenceServerClient(srv.hostport, connection_timeout=10, network_timeout=10) as c:
        assert c.get_log_settings() == want
    g = grpc_get(srv)
    assert set(g) == KEYS, g
    assert g == want
    with grpcclient.InferenceServerClient(srv.grpc_hostport) as c:
        response = c.get_log_settings(client_timeout=10)
    # each setting in the protobuf field of its type
    kinds = {k: v.WhichOneof("parameter_choice") for k, v in response.settings.items()}
    assert kinds == {"log_file": "string_param", "log_info": "bool_param", "log_warning": "bool_param",
                     "log_error": "bool_param", "log_verbose_level": "uint32_param",
                     "log_format": "string_param"}, kinds


# --- 2. the verbose level at run time ---------------------------------------------------------

def test_verbose_level_changes_at_run_time(ferrite):
    srv, log = start(ferrite, ["--log-verbose=0"])

    infer_http(srv, "req-a")
    infer_grpc(srv, "req-ga")
    got = update_ok(srv, {"log_verbose_level": 1})
    assert got == expected(log_verbose_level=1)
    text = log.wait_for("verbose level 1")
    assert "req-a" not in text and "req-ga" not in text, f"request lines at verbose level 0:\n{text}"

    # verbose 1: a request's lines carry its id
    mark = log.mark()
    infer_http(srv, "req-b")
    text = log.wait_for("[request id: req-b] queued for model 'simple' version 1",
                        "[request id: req-b] executing on model 'simple' version 1 in a batch of 1",
                        since=mark)
    for line in text.splitlines():
        if "req-b" in line:
            assert DEFAULT_LINE.match(line) and line.startswith("V"), line
    infer_grpc(srv, "req-gb")
    log.wait_for("[request id: req-gb] queued for model 'simple'",
                 "[request id: req-gb] executing on model 'simple'", since=mark)
    # a failed inference is logged with its id too
    reply = u.post_json(srv.hostport, "/v2/models/simple/infer", infer_json("req-bad", input0="NOPE"))
    assert reply.status == 400, reply
    log.wait_for("[request id: req-bad] infer on 'simple' failed", since=mark)
    assert get_settings(srv) == expected(log_verbose_level=1)

    # back to 0 over gRPC
    with grpcclient.InferenceServerClient(srv.grpc_hostport) as c:
        response = c.update_log_settings({"log_verbose_level": 0}, client_timeout=10)
        assert grpc_settings(response) == expected()
        assert grpc_settings(c.get_log_settings(client_timeout=10)) == expected()
    assert get_settings(srv) == expected()
    log.wait_for("verbose level 0")
    infer_http(srv, "req-c")
    infer_grpc(srv, "req-gc")
    text = sentinel(srv, log)
    assert "req-c" not in text and "req-gc" not in text, f"request lines at verbose level 0:\n{text}"
    assert "req-b" in text


# --- 3. formats -------------------------------------------------------------------------------

def test_formats_change_at_run_time(ferrite):
    srv, log = start(ferrite, ["--log-verbose=1"])
    pid = srv.proc.pid

    # json
    mark = log.mark()
    assert update_ok(srv, {"log_format": "json"}) == expected(log_verbose_level=1, log_format="json")
    infer_http(srv, "req-j")
    log.wait_for('"request_id":"req-j"', since=mark)
    text = sentinel(srv, log)
    lines = log.lines_from(mark, "format json")
    assert len(lines) >= 4, lines  # the settings line, two request lines, the sentinel's
    objects = []
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line after the switch to json: {line!r}\n{text}")
        assert isinstance(obj, dict), line
        for key in ("timestamp", "level", "pid", "target", "message"):
            assert key in obj, f"no {key!r}: {line}"
        assert JSON_TIMESTAMP.match(obj["timestamp"]), line
        assert obj["pid"] == pid, line
        assert isinstance(obj["level"], str) and obj["level"], line
        objects.append(obj)
    request_lines = [o for o in objects if o.get("request_id") == "req-j"]
    messages = [o["message"] for o in request_lines]
    assert any(m.startswith("queued for model 'simple' version 1") for m in messages), messages
    assert any(m.startswith("executing on model 'simple' version 1 in a batch of 1") for m in messages), messages
    # the id is a field of its own, not inside the message
    assert all("req-j" not in m for m in messages), messages
    assert all("request_id" not in o for o in objects if o not in request_lines), objects
    assert any("format json" in o["message"] for o in objects), objects

    # ISO8601
    mark = log.mark()
    assert update_ok(srv, {"log_format": "ISO8601"})["log_format"] == "ISO8601"
    infer_http(srv, "req-i")
    log.wait_for("[request id: req-i] executing on model 'simple'", since=mark)
    sentinel(srv, log)
    lines = log.lines_from(mark, "format ISO8601")
    assert len(lines) >= 4, lines
    for line in lines:
        m = ISO8601_LINE.match(line)
        assert m, f"not an ISO8601 line: {line!r}"
        assert int(m.group(1)) == pid, line
    assert any(re.match(r"^\S+ V \d+ \S+\] \[request id: req-i\] queued for model 'simple'", l) for l in lines), lines

    # and back to default
    mark = log.mark()
    assert update_ok(srv, {"log_format": "default"})["log_format"] == "default"
    infer_http(srv, "req-d")
    log.wait_for("[request id: req-d] executing on model 'simple'", since=mark)
    sentinel(srv, log)
    lines = log.lines_from(mark, "format default")
    assert len(lines) >= 4, lines
    for line in lines:
        m = DEFAULT_LINE.match(line)
        assert m, f"not a default-format line: {line!r}"
        assert int(m.group(1)) == pid, line

    # gRPC changes the format too
    mark = log.mark()
    with grpcclient.InferenceServerClient(srv.grpc_hostport) as c:
        got = grpc_settings(c.update_log_settings({"log_format": "json"}, client_timeout=10))
    assert got == expected(log_verbose_level=1, log_format="json")
    infer_grpc(srv, "req-gj")
    log.wait_for('"request_id":"req-gj"', since=mark)
    sentinel(srv, log)
    lines = log.lines_from(mark, "format json")
    assert any('"request_id":"req-gj"' in line for line in lines), lines
    for line in lines:
        assert json.loads(line)["pid"] == pid, line


def test_json_format_from_startup(ferrite):
    srv, log = start(ferrite, ["--log-format=json", WARN_FLAG])
    assert get_settings(srv) == expected(log_format="json")
    lines = log.lines()
    assert len(lines) >= 5, lines
    objects = []
    for line in lines:
        try:
            objects.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line with --log-format=json: {line!r}\n{srv.describe()}")
    # the first line is the startup warning, already in JSON
    first = objects[0]
    assert first["message"] == WARNING, first
    assert first["pid"] == srv.proc.pid and JSON_TIMESTAMP.match(first["timestamp"]), first
    assert first["level"] != objects[-1]["level"], objects  # a warning among info lines
    # the startup tables are one JSON line each, their rows inside the message
    assert any("| simple | 1       | READY  |" in o["message"] for o in objects), objects
    assert any(o["message"].startswith("Started HTTPService at 127.0.0.1:") for o in objects), objects


def test_unknown_format_at_startup_exits_2(ferrite):
    rc, log = ferrite.fail([ferrite.repo("simple")], ["--log-format=xml"])
    assert rc == 2, log
    assert "'xml'" in log, log
    assert "--log-format" in log, log
    assert "Started" not in log, log


# --- 4. --log-file ----------------------------------------------------------------------------

def test_log_file(ferrite, tmp_path):
    path = tmp_path / "ferrite.log"
    path.write_text("an earlier line\n")
    srv = u.spawn(u.server_args([ferrite.repo("simple")], ["--log-file", str(path), WARN_FLAG]),
                  tmp_path / "logs")
    ferrite.servers.append(srv)
    # the `Started ... at` lines are in the file: read the ports from there
    in_file = u.Server(srv.proc, path, srv.args)
    in_file.wait_started()
    srv.host, srv.port = in_file.host, in_file.port
    srv.grpc_host, srv.grpc_port = in_file.grpc_host, in_file.grpc_port
    srv.wait_http("/v2/health/ready")
    log = Log(path, srv)

    text = log.text()
    assert text.startswith("an earlier line\n"), "--log-file appends:\n" + text
    assert WARNING in text, text
    assert "| simple | 1       | READY  |" in text, text  # the startup tables
    assert "| Option" in text, text
    assert "Started HTTPService at" in text, text
    assert get_settings(srv) == expected(log_file=str(path))
    assert grpc_get(srv) == expected(log_file=str(path))

    # the network may not move the file
    reply = post_settings(srv, {"log_file": "/tmp/other"})
    u.assert_reply(reply, 400, "application/json", u.error_body(FILE_REFUSAL))
    with grpcclient.InferenceServerClient(srv.grpc_hostport) as c:
        with pytest.raises(InferenceServerException) as e:
            c.update_log_settings({"log_file": "/tmp/other"}, client_timeout=10)
    u.assert_grpc_error(e.value, "INVALID_ARGUMENT", FILE_REFUSAL)
    # ... nor change anything else in the same update
    reply = post_settings(srv, {"log_verbose_level": 1, "log_file": "/tmp/other"})
    assert reply.status == 400, reply
    assert get_settings(srv) == expected(log_file=str(path))
    # naming the same file is accepted
    assert update_ok(srv, {"log_file": str(path)}) == expected(log_file=str(path))
    assert update_ok(srv, {"log_file": str(path), "log_verbose_level": 1}) == \
        expected(log_file=str(path), log_verbose_level=1)

    # request lines go to the file too
    infer_http(srv, "req-f")
    log.wait_for("[request id: req-f] queued for model 'simple'", "[request id: req-f] executing on model")
    sentinel(srv, log)

    # and nothing of the log to stderr/stdout
    err = srv.log()
    assert "Started HTTPService" not in err, err
    assert "req-f" not in err and WARNING not in err and "| simple" not in err, err
    assert not any(ANY_LOG_LINE.match(line) for line in err.splitlines()), err


def test_log_file_that_cannot_be_opened_fails_startup(ferrite, tmp_path):
    path = tmp_path / "no-such-dir" / "ferrite.log"
    rc, log = ferrite.fail([ferrite.repo("simple")], ["--log-file", str(path)])
    assert rc == 2, log
    assert str(path) in log, log


# --- 5. refused updates -----------------------------------------------------------------------

@pytest.mark.parametrize("update,names", [
    ({"log_info": "yes"}, ["log_info"]),
    ({"log_warning": 1}, ["log_warning"]),
    ({"log_verbose_level": -1}, ["log_verbose_level"]),
    ({"log_verbose_level": "1"}, ["log_verbose_level"]),
    ({"log_verbose_level": 1.5}, ["log_verbose_level"]),
    ({"log_format": 3}, ["log_format"]),
    ({"nope": 1}, ["nope"]),
    ({"log_format": "xml"}, ["xml"]),
    ({"log_format": "JSON"}, ["JSON"]),
    # nothing of a refused update is applied
    ({"log_verbose_level": 3, "nope": 1}, ["nope"]),
    ({"log_verbose_level": 3, "log_format": "xml"}, ["xml"]),
    ([{"log_verbose_level": 3}], []),
    ("{not json", []),
], ids=lambda v: json.dumps(v) if not isinstance(v, str) else v)
def test_bad_http_updates_are_refused(ferrite, update, names):
    srv, _ = start(ferrite, [])
    reply = post_settings(srv, update)
    u.assert_reply(reply, 400, "application/json")
    error = reply.json()["error"]
    for name in names:
        assert name in error, f"the error should name {name!r}: {error!r}"
    assert get_settings(srv) == expected()


def test_bad_grpc_updates_are_refused(ferrite):
    srv, _ = start(ferrite, [])

    def refused(settings: dict, name: str) -> None:
        request = service_pb2.LogSettingsRequest()
        for key, (kind, value) in settings.items():
            setattr(request.settings[key], kind, value)
        with pytest.raises(grpc.RpcError) as e:
            grpc_raw(srv, request)
        u.assert_grpc_error(e.value, "INVALID_ARGUMENT")
        assert name in e.value.details(), e.value.details()

    refused({"log_info": ("string_param", "yes")}, "log_info")
    refused({"log_verbose_level": ("bool_param", True)}, "log_verbose_level")
    refused({"log_format": ("uint32_param", 1)}, "log_format")
    refused({"log_file": ("bool_param", False)}, "log_file")
    refused({"nope": ("bool_param", True)}, "nope")
    refused({"log_format": ("string_param", "xml")}, "xml")
    refused({"log_verbose_level": ("uint32_param", 3), "log_format": ("string_param", "xml")}, "xml")
    # a setting without a value
    request = service_pb2.LogSettingsRequest()
    request.settings["log_info"]  # noqa: B018 (creates the entry, no value)
    with pytest.raises(grpc.RpcError) as e:
        grpc_raw(srv, request)
    u.assert_grpc_error(e.value, "INVALID_ARGUMENT")
    assert grpc_get(srv) == expected()
    assert get_settings(srv) == expected()
    # an empty request reads the settings
    assert grpc_settings(grpc_raw(srv, service_pb2.LogSettingsRequest())) == expected()


# --- 6. --log-info / --log-warning ------------------------------------------------------------

def test_log_info_false_keeps_warnings(ferrite):
    srv = start_with_ports(ferrite, ["--log-info=false", WARN_FLAG])
    log = stderr_log(srv)
    assert get_settings(srv) == expected(log_info=False)
    text = log.text()
    assert any(line.startswith("W") and line.endswith("] " + WARNING) for line in log.lines()), text
    assert "Started HTTPService" not in text, text
    assert "| simple" not in text, text  # the startup tables are info lines
    assert not any(line.startswith("I") for line in log.lines()), text

    # info on again at run time: its own "log settings" line is printed
    assert update_ok(srv, {"log_info": True}) == expected()
    log.wait_for("log settings: info true")
    # and off over gRPC: not even the settings line
    with grpcclient.InferenceServerClient(srv.grpc_hostport) as c:
        assert grpc_settings(c.update_log_settings({"log_info": False}, client_timeout=10)) == \
            expected(log_info=False)
    # verbose lines are independent of log_info
    update_ok(srv, {"log_verbose_level": 1})
    infer_http(srv, "req-v")
    text = log.wait_for("[request id: req-v] executing on model 'simple'")
    assert text.count(SETTINGS_LINE) == 1, text


def test_log_warning_false_drops_warnings(ferrite):
    srv, log = start(ferrite, ["--log-warning=false", WARN_FLAG])
    assert get_settings(srv) == expected(log_warning=False)
    text = log.text()
    assert "Started HTTPService" in text
    assert "--load-model" not in text, text
    assert not any(line.startswith("W") for line in log.lines()), text
