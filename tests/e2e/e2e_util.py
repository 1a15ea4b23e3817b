"""Helpers for Ferrite's end-to-end tests: starting the `ferrite` binary, raw HTTP, model repos.

The tests start the real binary on port 0 and talk to it over real sockets: the official
`tritonclient.http` and `tritonclient.grpc` clients for the normal paths, `http.client` (and a
bare socket) or the generated gRPC stub where the exact bytes, headers or malformed input
matter. Expected texts are Triton 2.51's (shared/triton-reference/http/*.txt and grpc/*), with
the model names swapped for Ferrite's examples.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FERRITE_BIN = Path(os.environ.get("FERRITE_BIN", ROOT / "target" / "debug" / "ferrite"))
# Where libferrite_driver_*.so and libonnxruntime.so.1.31.1 are: beside the binary by default.
BACKEND_DIR = Path(os.environ.get("FERRITE_BACKEND_DIR", FERRITE_BIN.parent))
MODEL_REPO = ROOT / "configs" / "models"
IMAGES = ROOT / "configs" / "images"
EXPECTED_JSON = ROOT / "scripts" / "models" / "expected.json"
ORT_LIB = "libonnxruntime.so.1.31.1"
DRIVER_LIB = "libferrite_driver_cpu.so"

EXAMPLE_MODELS = [
    "efficientnet_lite0_onnx",
    "simple",
    "simple_identity",
    "simple_int8",
    "simple_string",
]

STARTUP_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 30.0

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STARTED_HTTP = re.compile(r"Started HTTPService at (\[[^\]]+\]|[^\s:]+):(\d+)")
_STARTED_GRPC = re.compile(r"Started GRPCInferenceService at (\[[^\]]+\]|[^\s:]+):(\d+)")
_STARTED_METRICS = re.compile(r"Started Metrics Service at (\[[^\]]+\]|[^\s:]+):(\d+)")
# How long after the HTTP line the gRPC line may still come (both are printed at startup).
GRPC_LINE_GRACE_S = 10.0


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def missing_prerequisites() -> list[str]:
    """What the e2e tests need that is not there (build and setup outputs)."""
    need = [FERRITE_BIN, BACKEND_DIR / DRIVER_LIB, BACKEND_DIR / ORT_LIB]
    need += [MODEL_REPO / m / "1" / "model.onnx" for m in EXAMPLE_MODELS]
    need += [MODEL_REPO / "efficientnet_lite0_onnx" / "labels.txt"]
    need += [IMAGES / "coffee.png", IMAGES / "chelsea.png"]
    return [str(p) for p in need if not p.exists()]


def server_env() -> dict[str, str]:
    # FERRITE_* variables configure the server (figment); keep the tests' own out of its way.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRITE_")}
    env["NO_COLOR"] = "1"
    return env


class Server:
    """A running `ferrite` process whose combined stdout/stderr goes to a log file."""

    def __init__(self, proc: subprocess.Popen, log_path: Path, args: list[str]):
        self.proc = proc
        self.log_path = log_path
        self.args = args
        self.host = ""
        self.port = 0
        self.grpc_host = ""
        self.grpc_port = 0

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def grpc_hostport(self) -> str:
        """HOST:PORT of GRPCInferenceService, from its `Started` line (waits a little for it)."""
        if not self.grpc_port:
            self._wait_grpc_line(GRPC_LINE_GRACE_S)
        return f"{self.grpc_host}:{self.grpc_port}"

    def _record_grpc(self, log: str) -> bool:
        m = _STARTED_GRPC.search(log)
        if not m:
            return False
        self.grpc_host, self.grpc_port = _client_host(m.group(1)), int(m.group(2))
        assert self.grpc_port > 0, f"server reported gRPC port 0\n{self.describe()}"
        return True

    @property
    def metrics_hostport(self) -> str:
        """HOST:PORT of the metrics endpoint, from its `Started Metrics Service at` line (waits
        a little for it; fails when the server has none, e.g. --allow-metrics=false)."""
        deadline = time.monotonic() + GRPC_LINE_GRACE_S
        while True:
            m = _STARTED_METRICS.search(self.log())
            if m:
                return f"{_client_host(m.group(1))}:{int(m.group(2))}"
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"no 'Started Metrics Service at HOST:PORT' in the log\n{self.describe()}")
            time.sleep(0.05)

    def _wait_grpc_line(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._record_grpc(self.log()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"no 'Started GRPCInferenceService at HOST:PORT' in the log\n{self.describe()}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://{self.hostport}"

    def log(self) -> str:
        try:
            return strip_ansi(self.log_path.read_text(errors="replace"))
        except FileNotFoundError:
            return ""

    def describe(self) -> str:
        return f"command: {' '.join(self.args)}\n--- server log ---\n{self.log()}--- end of log ---"

    def wait_started(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Waits for `Started HTTPService at HOST:PORT`; fails with the log if it never comes.
        Records `Started GRPCInferenceService at HOST:PORT` too when it is there already
        (`grpc_hostport` waits for it otherwise, so servers without gRPC start as before).
        A server started with --allow-http=false has no HTTP line: then the gRPC one is awaited."""
        http = self.http_enabled
        what = "Started HTTPService" if http else "Started GRPCInferenceService"
        deadline = time.monotonic() + timeout
        while True:
            log = self.log()
            if not http and self._record_grpc(log):
                return
            m = _STARTED_HTTP.search(log) if http else None
            if m:
                self.host, self.port = _client_host(m.group(1)), int(m.group(2))
                assert self.port > 0, f"server reported port 0\n{self.describe()}"
                self._record_grpc(log)
                return
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"ferrite exited with {rc} before '{what}'\n{self.describe()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"no '{what} at HOST:PORT' within {timeout:.0f} s\n{self.describe()}")
            time.sleep(0.05)

    @property
    def http_enabled(self) -> bool:
        return _flag_value(self.args, "--allow-http") not in ("false", "0", "off", "no")

    def wait_grpc(self, ready: bool, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Polls gRPC ServerLive (and ServerReady) until true (bounded)."""
        import tritonclient.grpc as grpcclient

        deadline = time.monotonic() + timeout
        last = None
        with grpcclient.InferenceServerClient(self.grpc_hostport) as c:
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if c.is_server_live(client_timeout=5) and (not ready or c.is_server_ready(client_timeout=5)):
                        return
                    last = "not ready"
                except Exception as e:  # not listening yet
                    last = repr(e)
                time.sleep(0.1)
        raise AssertionError(f"gRPC never answered live{'/ready' if ready else ''} (last: {last})\n{self.describe()}")

    def wait_http(self, path: str, want_status: int = 200, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Polls GET path until it answers want_status (bounded)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                last = request(self.hostport, "GET", path, timeout=5).status
                if last == want_status:
                    return
            except OSError as e:
                last = repr(e)
            time.sleep(0.1)
        raise AssertionError(f"GET {path} never answered {want_status} (last: {last})\n{self.describe()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = SHUTDOWN_TIMEOUT_S) -> int:
        """Sends sig and waits for the exit; returns the exit code (kills it on timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"ferrite did not exit within {timeout:.0f} s of signal {sig}\n{self.describe()}")
        return self.proc.returncode

    def stop_cleanly(self, sig: int = signal.SIGTERM) -> None:
        rc = self.stop(sig)
        assert rc == 0, f"ferrite exited with {rc} after signal {sig} (expected a clean 0)\n{self.describe()}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _client_host(host: str) -> str:
    """The address a client dials for a server's listening address."""
    host = host.strip("[]")
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _flag_names(args: list[str]) -> set[str]:
    return {a.split("=", 1)[0] for a in args if a.startswith("--")}


def _flag_value(args: list[str], flag: str) -> str | None:
    """The last value given to flag (`--flag=v` or `--flag v`; "true" when it stands alone)."""
    value = None
    for i, a in enumerate(args):
        if a == flag:
            nxt = args[i + 1] if i + 1 < len(args) else ""
            value = nxt.lower() if nxt and not nxt.startswith("--") else "true"
        elif a.startswith(flag + "="):
            value = a.split("=", 1)[1].lower()
    return value


def server_args(repos: list[Path | str], extra: list[str] | None = None,
                backend_dir: Path | str | None = None) -> list[str]:
    """The command line: repositories, loopback addresses, port 0 everywhere, then `extra`.
    A default flag that `extra` gives itself (`--grpc-port 9000` or `--grpc-port=9000`) is left
    out, so a test can pick a port or an address without passing a flag twice."""
    extra = list(extra or [])
    given = _flag_names(extra)
    args = [str(FERRITE_BIN)]
    for repo in repos:
        args += ["--model-repository", str(repo)]
    defaults = [
        ("--backend-directory", str(backend_dir or BACKEND_DIR)),
        ("--http-address", "127.0.0.1"),
        ("--http-port", "0"),
        ("--grpc-address", "127.0.0.1"),
        ("--grpc-port", "0"),
        ("--metrics-port", "0"),
    ]
    for flag, value in defaults:
        if flag not in given:
            args += [flag, value]
    return args + extra


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind port 0, read it, close). Another process can
    take it before the server binds it: callers retry on a bind failure."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def spawn(args: list[str], log_dir: Path) -> Server:
    log_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="ferrite-", suffix=".log", dir=log_dir)
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=server_env(), cwd=ROOT)
    return Server(proc, Path(name), args)


def start_server(repos: list[Path | str], extra: list[str] | None, log_dir: Path,
                 backend_dir: Path | str | None = None, wait_ready: bool = True) -> Server:
    """Starts ferrite on port 0 and waits for HTTP (and, if wait_ready, /v2/health/ready 200)."""
    server = spawn(server_args(repos, extra, backend_dir), log_dir)
    try:
        server.wait_started()
        if server.http_enabled:
            server.wait_http("/v2/health/live")
            if wait_ready:
                server.wait_http("/v2/health/ready")
        else:
            server.wait_grpc(ready=wait_ready)
    except BaseException:
        server.kill()
        raise
    return server


def run_failing_server(repos: list[Path | str], extra: list[str] | None, log_dir: Path,
                       backend_dir: Path | str | None = None,
                       timeout: float = STARTUP_TIMEOUT_S) -> tuple[int, str]:
    """Starts ferrite where startup must fail; returns (exit code, log). Fails if it keeps running."""
    server = spawn(server_args(repos, extra, backend_dir), log_dir)
    try:
        server.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        raise AssertionError(f"ferrite was expected to fail at startup but still ran after {timeout:.0f} s\n"
                             f"{server.describe()}")
    return server.proc.returncode, server.log()


# --- raw HTTP --------------------------------------------------------------------------------

@dataclass
class Reply:
    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self):
        return json.loads(self.body)

    def __str__(self) -> str:
        return f"{self.status} {self.reason} {dict(self.headers)} {self.body[:2000]!r}"


def request(hostport: str, method: str, path: str, body: bytes | str | None = None,
            headers: dict[str, str] | None = None, timeout: float = 60) -> Reply:
    host, port = hostport.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, resp.reason, resp.headers, data)
    finally:
        conn.close()


def post_json(hostport: str, path: str, obj, headers: dict[str, str] | None = None) -> Reply:
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return request(hostport, "POST", path, json.dumps(obj), h)


def compact(obj) -> bytes:
    """JSON the way Triton writes it: no spaces."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def error_body(message: str) -> bytes:
    return compact({"error": message})


def assert_reply(reply: Reply, status: int, content_type: str | None, body: bytes | str | None = None) -> None:
    """Status, Content-Type, Content-Length, body (exact when given) and no Date/Server/Connection."""
    if isinstance(body, str):
        body = body.encode()
    ctx = f"\nreply: {reply}"
    assert reply.status == status, f"status {reply.status}, expected {status}{ctx}"
    if content_type is not None:
        assert reply.header("Content-Type") == content_type, f"Content-Type, expected {content_type}{ctx}"
    if body is not None:
        assert reply.body == body, f"body, expected {body!r}{ctx}"
    assert reply.header("Content-Length") == str(len(reply.body)), f"Content-Length{ctx}"
    for name in ("Date", "Server", "Connection"):
        assert reply.header(name) is None, f"Triton sends no {name} header{ctx}"


def binary_infer_body(header: dict, *tensors: bytes) -> tuple[bytes, int]:
    """A binary-tensor-extension body: the JSON header, then the raw tensors. Returns (body, header length)."""
    head = compact(header)
    return head + b"".join(tensors), len(head)


# --- model repositories ---------------------------------------------------------------------

def copy_model(name: str, repo: Path) -> Path:
    """Copies an example model (config.pbtxt, labels, version folders) into repo."""
    src = MODEL_REPO / name
    dst = repo / name
    shutil.copytree(src, dst)
    return dst


def add_model_with_config(repo: Path, name: str, config_text: str, onnx_from: str = "simple") -> Path:
    """A model folder with the given config.pbtxt and a copy of another model's model.onnx."""
    d = repo / name
    (d / "1").mkdir(parents=True)
    (d / "config.pbtxt").write_text(config_text)
    shutil.copy(MODEL_REPO / onnx_from / "1" / "model.onnx", d / "1" / "model.onnx")
    return d


def read_pbtxt(model: str) -> str:
    p = MODEL_REPO / model / "config.pbtxt"
    return p.read_text() if p.exists() else ""


def expected_instance_group(model: str) -> tuple[str, int]:
    """(name, count) of the first instance group Triton would show for an example model.

    Triton names an instance group `<model>_<index>` when config.pbtxt declares instance_group
    without a name, and `<model>` when it declares none (reference 11, identity_fp32). An
    unspecified KIND_CPU count is 2 for ONNX Runtime models (Triton's model_configuration.md,
    "Instance Groups"; SetDefaultInstanceCount in Triton core), which all the examples are.
    """
    text = read_pbtxt(model)
    m = re.search(r"\binstance_group\s*:?\s*\[(.*?)\]", text, re.S)
    if not m:
        return model, 2
    group = m.group(1)
    name = re.search(r'\bname\s*:\s*"([^"]*)"', group)
    count = re.search(r"\bcount\s*:\s*(\d+)", group)
    return (name.group(1) if name else f"{model}_0"), (int(count.group(1)) if count else 2)


# --- gRPC ------------------------------------------------------------------------------------

def grpc_inputs(*tensors):
    """tritonclient.grpc InferInputs from (name, numpy array, datatype) triples."""
    import tritonclient.grpc as grpcclient

    inputs = []
    for name, arr, datatype in tensors:
        i = grpcclient.InferInput(name, list(arr.shape), datatype)
        i.set_data_from_numpy(arr)
        inputs.append(i)
    return inputs


def simple_pair(batch: int = 1, seed: int = 0):
    """INPUT0 and INPUT1 for `simple` (INT32 [batch, 16]): distinct per seed, so replies can be
    told apart."""
    import numpy as np

    a = (np.arange(16 * batch, dtype=np.int32) + 100 * seed).reshape(batch, 16)
    b = np.full((batch, 16), seed - 3, dtype=np.int32)
    return a, b


def assert_grpc_error(exc, code: str, message: str | None = None, prefix: str | None = None) -> None:
    """A tritonclient InferenceServerException (or grpc.RpcError) has this status code
    (`NOT_FOUND`, ...) and message (exact, or starting with `prefix`)."""
    if hasattr(exc, "status"):  # InferenceServerException
        status, got = exc.status(), exc.message()
    else:  # grpc.RpcError
        status, got = str(exc.code()), exc.details()
    ctx = f"\ngot {status}: {got!r}"
    assert status == f"StatusCode.{code}", f"status, expected StatusCode.{code}{ctx}"
    if message is not None:
        assert got == message, f"message, expected {message!r}{ctx}"
    if prefix is not None:
        assert got.startswith(prefix), f"message, expected it to start with {prefix!r}{ctx}"
