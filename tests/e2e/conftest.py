"""Fixtures: the `ferrite` binary on port 0 with the example models, and a factory for more.

FERRITE_BIN overrides the binary (default target/debug/ferrite); FERRITE_BACKEND_DIR the
directory with libferrite_driver_cpu.so and libonnxruntime.so.1.31.1 (default: the binary's).
"""

from __future__ import annotations

import signal
from pathlib import Path

import grpc
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2_grpc

import e2e_util as u


def pytest_report_header(config):
    return [f"ferrite: {u.FERRITE_BIN}", f"backend directory: {u.BACKEND_DIR}"]


@pytest.fixture(scope="session")
def prerequisites():
    missing = u.missing_prerequisites()
    assert not missing, (
        "the e2e tests need a debug build and the example models; run scripts/test.sh "
        "(or scripts/setup.sh, cargo build --workspace, scripts/setup.sh --copy-ort target/debug). "
        f"Missing: {missing}"
    )


@pytest.fixture(scope="session")
def server(prerequisites, tmp_path_factory) -> u.Server:
    """The server on configs/models, shared by the session; must exit 0 on SIGTERM at the end."""
    srv = u.start_server([u.MODEL_REPO], [], tmp_path_factory.mktemp("server-log"))
    yield srv
    srv.stop_cleanly(signal.SIGTERM)


@pytest.fixture(scope="session")
def hostport(server) -> str:
    return server.hostport


@pytest.fixture(scope="session")
def client(server):
    c = httpclient.InferenceServerClient(url=server.hostport, connection_timeout=60.0, network_timeout=120.0)
    yield c
    c.close()


@pytest.fixture(scope="session")
def grpc_hostport(server) -> str:
    return server.grpc_hostport


@pytest.fixture(scope="session")
def grpc_client(grpc_hostport):
    c = grpcclient.InferenceServerClient(url=grpc_hostport)
    yield c
    c.close()


@pytest.fixture(scope="session")
def grpc_stub(grpc_hostport):
    """The generated GRPCInferenceService stub, for requests tritonclient cannot build."""
    channel = grpc.insecure_channel(grpc_hostport)
    yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


class Ferrite:
    """Starts extra servers for one test; every one still running at the end gets SIGTERM
    and must exit 0."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.servers: list[u.Server] = []

    def repo(self, *models: str, name: str = "repo") -> Path:
        """A temporary model repository holding copies of the named example models."""
        repo = self.tmp_path / name
        repo.mkdir()
        for m in models:
            u.copy_model(m, repo)
        return repo

    def start(self, repos, extra=None, backend_dir=None, wait_ready=True) -> u.Server:
        srv = u.start_server(list(repos), extra, self.tmp_path / "logs", backend_dir, wait_ready)
        self.servers.append(srv)
        return srv

    def fail(self, repos, extra=None, backend_dir=None) -> tuple[int, str]:
        """Starts a server that must fail at startup; returns (exit code, log)."""
        return u.run_failing_server(list(repos), extra, self.tmp_path / "logs", backend_dir)

    def close(self) -> None:
        errors = []
        for srv in self.servers:
            if srv.proc.poll() is None:
                try:
                    srv.stop_cleanly()
                except AssertionError as e:
                    errors.append(str(e))
        assert not errors, "\n".join(errors)


@pytest.fixture
def ferrite(prerequisites, tmp_path) -> Ferrite:
    f = Ferrite(tmp_path)
    yield f
    f.close()
