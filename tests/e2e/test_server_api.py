"""Server-level endpoints: health, server metadata, unknown paths, wrong methods, signals.

Expected bytes follow Triton 2.51 (shared/triton-reference/http 01, 02, 03, 38, 39, 45).
"""

import json
import re
import signal

import pytest

import e2e_util as u

TRITON_EXTENSIONS = [
    "classification",
    "sequence",
    "model_repository",
    "model_repository(unload_dependents)",
    "schedule_policy",
    "model_configuration",
    "system_shared_memory",
    "cuda_shared_memory",
    "binary_tensor_data",
    "parameters",
    "statistics",
    "trace",
    "logging",
]

# Ferrite implements each of them (sequence batching, unload_dependents, priorities and queue
# policies included), so it claims Triton's list, in Triton's order. The shared memory
# extensions are claimed whether or not --allow-client-shm lets clients use them, as Triton
# always claims them.
FERRITE_EXTENSIONS = TRITON_EXTENSIONS


def test_health_with_tritonclient(client):
    assert client.is_server_live()
    assert client.is_server_ready()


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready"])
def test_health_exact_reply(hostport, path):
    # 200, empty body, Content-Type text/plain, Content-Length 0 (references 02, 03)
    u.assert_reply(u.request(hostport, "GET", path), 200, "text/plain", b"")


def test_head_on_ready_is_405(hostport):
    # reference 45: HEAD is not GET to Triton
    reply = u.request(hostport, "HEAD", "/v2/health/ready")
    assert reply.status == 405, reply
    assert reply.header("Content-Type") == "text/plain", reply
    assert reply.header("Content-Length") == "30", reply
    assert reply.body == b"", reply


@pytest.mark.parametrize("path", ["/v2/nosuchthing", "/", "/v3", "/v2/models/simple/nosuchthing"])
def test_unknown_path_is_404(hostport, path):
    # reference 38
    u.assert_reply(u.request(hostport, "GET", path), 404, "text/plain", b'{"error":"Not Found"}')


@pytest.mark.parametrize(
    "method,path,content_type",
    [
        ("GET", "/v2/models/simple/infer", "text/plain"),
        ("PUT", "/v2/models/simple/infer", "text/plain"),
        ("POST", "/v2/health/live", "text/plain"),
        ("POST", "/v2/health/ready", "text/plain"),
        # Triton sets application/json on these before it looks at the method
        ("DELETE", "/v2", "application/json"),
        ("GET", "/v2/repository/index", "application/json"),
    ],
)
def test_wrong_method_is_405(hostport, method, path, content_type):
    # reference 39
    reply = u.request(hostport, method, path, body=b"" if method in ("POST", "PUT") else None)
    u.assert_reply(reply, 405, content_type, b'{"error":"Method Not Allowed"}')


def test_405_reason_phrase_is_tritons(hostport):
    # Triton (libevhtp) says "405 Not Allowed" on the status line (references 39, 45)
    assert u.request(hostport, "GET", "/v2/models/simple/infer").reason == "Not Allowed"


def test_server_metadata_with_tritonclient(client):
    meta = client.get_server_metadata()
    assert meta["name"] == "triton"
    assert isinstance(meta["version"], str) and meta["version"]
    assert meta["extensions"] == FERRITE_EXTENSIONS


def test_server_metadata_exact_reply(hostport):
    # reference 01: compact JSON, keys in this order; the version is Ferrite's own
    reply = u.request(hostport, "GET", "/v2")
    u.assert_reply(reply, 200, "application/json")
    m = re.fullmatch(rb'\{"name":"triton","version":"([^"]+)","extensions":(\[.*\])\}', reply.body)
    assert m, reply
    assert json.loads(m.group(2)) == FERRITE_EXTENSIONS
    assert m.group(2) == u.compact(FERRITE_EXTENSIONS)
    # every name is one of Triton's, in Triton's order
    assert [e for e in TRITON_EXTENSIONS if e in FERRITE_EXTENSIONS] == FERRITE_EXTENSIONS


def test_id_flag_changes_server_name(ferrite):
    srv = ferrite.start([ferrite.repo("simple")], ["--id", "myserver"])
    reply = u.request(srv.hostport, "GET", "/v2")
    u.assert_reply(reply, 200, "application/json")
    meta = reply.json()
    assert meta["name"] == "myserver"
    assert meta["extensions"] == FERRITE_EXTENSIONS


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_cleanly(ferrite, sig):
    srv = ferrite.start([ferrite.repo("simple")])
    assert u.request(srv.hostport, "GET", "/v2/health/ready").status == 200
    srv.stop_cleanly(sig)
