"""One port for both protocols: when --grpc-port equals --http-port, REST (HTTP/1.1) and gRPC
(HTTP/2 without TLS) are served on that port, and both `Started` lines name it.

The port is picked free beforehand (bind port 0, close, reuse), so another process can take
it in between: startup is retried a few times on a bind failure.
"""

import queue

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

import e2e_util as u

TIMEOUT = 60.0


def start_on_one_port(ferrite, repo, tries=5):
    last = None
    for _ in range(tries):
        port = u.free_port()
        try:
            srv = ferrite.start([repo], ["--http-port", str(port), "--grpc-port", str(port)])
        except AssertionError as e:  # most likely someone took the port first
            last = e
            if "in use" in str(e).lower() or "bind" in str(e).lower():
                continue
            raise
        return srv, port
    raise AssertionError(f"could not start on a free port in {tries} tries; last:\n{last}")


@pytest.fixture
def one_port(ferrite):
    return start_on_one_port(ferrite, ferrite.repo("simple", "simple_string"))


def test_both_started_lines_name_the_port(one_port):
    srv, port = one_port
    assert srv.hostport == f"127.0.0.1:{port}"
    assert srv.grpc_hostport == f"127.0.0.1:{port}"


def test_http_and_grpc_on_one_port(one_port):
    srv, port = one_port
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 4, dtype=np.int32)

    h = httpclient.InferenceServerClient(f"127.0.0.1:{port}", connection_timeout=TIMEOUT, network_timeout=TIMEOUT)
    g = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        assert h.is_server_live() and h.is_server_ready()
        assert g.is_server_live(client_timeout=TIMEOUT) and g.is_server_ready(client_timeout=TIMEOUT)
        assert h.get_server_metadata()["name"] == g.get_server_metadata(as_json=True, client_timeout=TIMEOUT)["name"]

        # interleaved, each protocol several times over its own connection
        for i in range(3):
            hi = [httpclient.InferInput("INPUT0", [1, 16], "INT32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
            hi[0].set_data_from_numpy(a + i)
            hi[1].set_data_from_numpy(b)
            res = h.infer("simple", hi, request_id=f"http-{i}")
            np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a + i + b)
            assert res.get_response()["id"] == f"http-{i}"

            res = g.infer("simple", u.grpc_inputs(("INPUT0", a + i, "INT32"), ("INPUT1", b, "INT32")),
                          request_id=f"grpc-{i}", client_timeout=TIMEOUT)
            np.testing.assert_array_equal(res.as_numpy("OUTPUT1"), a + i - b)
            assert res.get_response().id == f"grpc-{i}"

        # the gRPC stream works on the shared port too
        q = queue.Queue()
        g.start_stream(callback=lambda result, error: q.put((result, error)))
        g.async_stream_infer("simple", u.grpc_inputs(("INPUT0", a, "INT32"), ("INPUT1", b, "INT32")),
                             request_id="stream")
        result, error = q.get(timeout=TIMEOUT)
        assert error is None, error
        assert result.get_response().id == "stream"
        g.stop_stream()

        # raw HTTP/1.1 answers exactly as on a port of its own
        u.assert_reply(u.request(f"127.0.0.1:{port}", "GET", "/v2/health/ready"), 200, "text/plain", b"")
        u.assert_reply(u.request(f"127.0.0.1:{port}", "GET", "/v2/nosuchthing"), 404, "text/plain",
                       b'{"error":"Not Found"}')
    finally:
        g.close()
        h.close()


def test_one_port_server_exits_cleanly(one_port):
    srv, _ = one_port
    srv.stop_cleanly()


def test_separate_ports_by_default(server):
    # the session server: port 0 for each, so two different ports
    grpc_port = int(server.grpc_hostport.rsplit(":", 1)[1])
    assert grpc_port and server.port and grpc_port != server.port


def test_http_only_server(ferrite):
    srv = ferrite.start([ferrite.repo("simple")], ["--allow-grpc=false"])
    assert "Started GRPCInferenceService" not in srv.log(), srv.describe()
    u.assert_reply(u.request(srv.hostport, "GET", "/v2/health/ready"), 200, "text/plain", b"")


def test_grpc_only_server(ferrite):
    srv = ferrite.start([ferrite.repo("simple")], ["--allow-http=false"])
    assert "Started HTTPService" not in srv.log(), srv.describe()
    with grpcclient.InferenceServerClient(srv.grpc_hostport) as g:
        assert g.is_server_ready(client_timeout=TIMEOUT)
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        res = g.infer("simple", u.grpc_inputs(("INPUT0", a, "INT32"), ("INPUT1", a, "INT32")), client_timeout=TIMEOUT)
        np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a * 2)


def test_ipv6_listening(ferrite):
    # Both services on the IPv6 loopback address: clients reach them as [::1]:port.
    srv = ferrite.start([ferrite.repo("simple")], ["--http-address", "::1", "--grpc-address", "::1"])
    assert srv.host == "::1", srv.log()
    http = httpclient.InferenceServerClient(f"[::1]:{srv.port}")
    assert http.is_server_ready()
    grpc = grpcclient.InferenceServerClient(f"[::1]:{srv.grpc_port}")
    assert grpc.is_server_ready()
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = [grpcclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    for i in inputs:
        i.set_data_from_numpy(a)
    assert grpc.infer("simple", inputs).as_numpy("OUTPUT0")[0, 15] == 30
