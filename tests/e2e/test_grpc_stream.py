"""Concurrent gRPC: `async_infer` callbacks, `tritonclient.grpc.aio` (asyncio), and the
bidirectional ModelStreamInfer stream with many requests in flight.

On the stream Triton answers a failed request with a ModelStreamInferResponse whose
`error_message` is set and whose `infer_response.id` is the request's id; the stream itself
stays open (tritonclient hands the error to the callback and carries on).
"""

import asyncio
import queue
import threading

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.grpc import service_pb2, service_pb2_grpc

import e2e_util as u
from test_bad_requests import NOTE

TIMEOUT = 60.0


def simple_inputs(seed, batch=1):
    a, b = u.simple_pair(batch, seed)
    return u.grpc_inputs(("INPUT0", a, "INT32"), ("INPUT1", b, "INT32")), a, b


def check_simple(result, seed, batch=1):
    a, b = u.simple_pair(batch, seed)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def collect(q: "queue.Queue", n: int, timeout: float = TIMEOUT) -> list:
    """n items from q, failing (not hanging) if they do not all come in time."""
    items = []
    try:
        for _ in range(n):
            items.append(q.get(timeout=timeout))
    except queue.Empty:
        raise AssertionError(f"only {len(items)} of {n} responses within {timeout} s: {items}")
    return items


def bad_shape_message(request_id):
    return (f"[request id: {request_id}] unexpected shape for input 'INPUT0' for model 'simple'. "
            f"Expected [-1,16], got [1,8]. {NOTE}")


def bad_shape_inputs():
    a = np.arange(8, dtype=np.int32).reshape(1, 8)
    b = np.ones((1, 16), dtype=np.int32)
    return u.grpc_inputs(("INPUT0", a, "INT32"), ("INPUT1", b, "INT32"))


# --- async_infer with callbacks --------------------------------------------------------------

def test_async_infer_many_in_flight(grpc_hostport):
    n = 32
    done = queue.Queue()
    with grpcclient.InferenceServerClient(grpc_hostport) as c:
        for i in range(n):
            inputs, _, _ = simple_inputs(i)
            c.async_infer("simple", inputs, callback=lambda result, error, i=i: done.put((i, result, error)),
                          request_id=f"async-{i}", client_timeout=TIMEOUT)
        replies = collect(done, n)
    assert sorted(i for i, _, _ in replies) == list(range(n))
    for i, result, error in replies:
        assert error is None, (i, error)
        assert result.get_response().id == f"async-{i}"
        check_simple(result, i)


def test_async_infer_error_goes_to_its_callback(grpc_hostport):
    done = queue.Queue()
    with grpcclient.InferenceServerClient(grpc_hostport) as c:
        good, _, _ = simple_inputs(1)
        c.async_infer("simple", bad_shape_inputs(), callback=lambda result, error: done.put(("bad", result, error)),
                      request_id="async-bad", client_timeout=TIMEOUT)
        c.async_infer("simple", good, callback=lambda result, error: done.put(("good", result, error)),
                      request_id="async-good", client_timeout=TIMEOUT)
        replies = {tag: (r, e) for tag, r, e in collect(done, 2)}
    result, error = replies["bad"]
    assert result is None
    u.assert_grpc_error(error, "INVALID_ARGUMENT", bad_shape_message("async-bad"))
    result, error = replies["good"]
    assert error is None, error
    check_simple(result, 1)


# --- asyncio (tritonclient.grpc.aio) -----------------------------------------------------------

def run_async(coro, timeout=TIMEOUT):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_aio_concurrent_infer(grpc_hostport):
    async def main():
        c = aioclient.InferenceServerClient(grpc_hostport)
        try:
            assert await c.is_server_live()
            assert (await c.get_model_metadata("simple", as_json=True))["name"] == "simple"
            calls = []
            for i in range(16):
                inputs, _, _ = simple_inputs(i)
                calls.append(c.infer("simple", inputs, request_id=f"aio-{i}", client_timeout=TIMEOUT))
            return await asyncio.gather(*calls)
        finally:
            await c.close()

    results = run_async(main())
    for i, result in enumerate(results):
        assert result.get_response().id == f"aio-{i}"
        check_simple(result, i)


def test_aio_stream_infer(grpc_hostport):
    n = 20

    async def requests():
        for i in range(n):
            inputs, _, _ = simple_inputs(i)
            yield {"model_name": "simple", "inputs": inputs, "request_id": f"aio-stream-{i}"}
            if i == n // 2:
                yield {"model_name": "simple", "inputs": bad_shape_inputs(), "request_id": "aio-stream-bad"}

    async def main():
        c = aioclient.InferenceServerClient(grpc_hostport)
        got = []
        try:
            responses = c.stream_infer(requests(), stream_timeout=TIMEOUT)
            async for result, error in responses:
                got.append((result, error))
                if len(got) == n + 1:
                    break
            responses.cancel()
        finally:
            await c.close()
        return got

    got = run_async(main())
    errors = [e for r, e in got if e is not None]
    assert len(errors) == 1 and errors[0].message() == bad_shape_message("aio-stream-bad"), errors
    results = {r.get_response().id: r for r, e in got if e is None}
    assert sorted(results) == sorted(f"aio-stream-{i}" for i in range(n))
    for i in range(n):
        check_simple(results[f"aio-stream-{i}"], i)


# --- ModelStreamInfer with tritonclient's stream -------------------------------------------------

class Stream:
    """A client with its stream open; responses (result, error) are queued for the test."""

    def __init__(self, hostport):
        self.client = grpcclient.InferenceServerClient(hostport)
        self.responses = queue.Queue()
        self.client.start_stream(callback=lambda result, error: self.responses.put((result, error)),
                                 stream_timeout=TIMEOUT * 2)

    def close(self):
        self.client.stop_stream(cancel_requests=True)
        self.client.close()


@pytest.fixture
def stream(grpc_hostport):
    s = Stream(grpc_hostport)
    yield s
    s.close()


def test_stream_many_requests_in_flight(stream):
    n = 64
    for i in range(n):
        inputs, _, _ = simple_inputs(i, batch=1 + i % 3)
        stream.client.async_stream_infer("simple", inputs, request_id=f"stream-{i}")
    replies = collect(stream.responses, n)
    errors = [e for _, e in replies if e is not None]
    assert not errors, errors
    by_id = {r.get_response().id: r for r, _ in replies}
    assert sorted(by_id) == sorted(f"stream-{i}" for i in range(n)), "every id answered exactly once"
    for i in range(n):
        check_simple(by_id[f"stream-{i}"], i, batch=1 + i % 3)


def test_stream_error_mid_stream_then_more(stream):
    for i in range(5):
        inputs, _, _ = simple_inputs(i)
        stream.client.async_stream_infer("simple", inputs, request_id=f"before-{i}")
    stream.client.async_stream_infer("simple", bad_shape_inputs(), request_id="bad-5")
    stream.client.async_stream_infer("nosuchmodel", simple_inputs(0)[0], request_id="bad-6")
    for i in range(5):
        inputs, _, _ = simple_inputs(10 + i)
        stream.client.async_stream_infer("simple", inputs, request_id=f"after-{i}")
    replies = collect(stream.responses, 12)
    errors = sorted(e.message() for _, e in replies if e is not None)
    assert errors == sorted([bad_shape_message("bad-5"), "Request for unknown model: 'nosuchmodel' is not found"])
    by_id = {r.get_response().id: r for r, e in replies if e is None}
    assert sorted(by_id) == sorted([f"before-{i}" for i in range(5)] + [f"after-{i}" for i in range(5)])
    for i in range(5):
        check_simple(by_id[f"before-{i}"], i)
        check_simple(by_id[f"after-{i}"], 10 + i)
    # and the same stream still serves
    inputs, _, _ = simple_inputs(42)
    stream.client.async_stream_infer("simple", inputs, request_id="last")
    [(result, error)] = collect(stream.responses, 1)
    assert error is None, error
    assert result.get_response().id == "last"
    check_simple(result, 42)


def test_stream_on_every_model(stream):
    x = [b"a", b"\xff\xfeb", b""]
    ident = np.array([x], dtype=np.object_)
    stream.client.async_stream_infer("simple_identity", u.grpc_inputs(("INPUT0", ident, "BYTES")), request_id="id")
    s0 = np.array([[b"1"] * 16], dtype=np.object_)
    s1 = np.array([[b"2"] * 16], dtype=np.object_)
    stream.client.async_stream_infer("simple_string", u.grpc_inputs(("INPUT0", s0, "BYTES"), ("INPUT1", s1, "BYTES")),
                                     request_id="str")
    i8 = np.ones((1, 16), dtype=np.int8)
    stream.client.async_stream_infer("simple_int8", u.grpc_inputs(("INPUT0", i8, "INT8"), ("INPUT1", i8, "INT8")),
                                     request_id="i8")
    replies = collect(stream.responses, 3)
    assert all(e is None for _, e in replies), replies
    by_id = {r.get_response().id: r for r, _ in replies}
    assert [bytes(v) for v in by_id["id"].as_numpy("OUTPUT0").flatten()] == x
    assert [int(v) for v in by_id["str"].as_numpy("OUTPUT0").flatten()] == [3] * 16
    np.testing.assert_array_equal(by_id["i8"].as_numpy("OUTPUT1"), np.zeros((1, 16), dtype=np.int8))


# --- the raw stream: the failed request's id travels with its error ------------------------------

def test_raw_stream_error_carries_the_request_id(grpc_hostport):
    a, b = u.simple_pair(seed=3)

    def request(request_id, inner=16):
        req = service_pb2.ModelInferRequest(model_name="simple", id=request_id)
        req.inputs.add(name="INPUT0", datatype="INT32", shape=[1, inner])
        req.inputs.add(name="INPUT1", datatype="INT32", shape=[1, 16])
        req.raw_input_contents.extend([a[:, :inner].tobytes(), b.tobytes()])
        return req

    requests = [request("ok-1"), request("bad-2", inner=8), request("ok-3")]
    with grpc.insecure_channel(grpc_hostport) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        responses = list(stub.ModelStreamInfer(iter(requests), timeout=TIMEOUT))
    assert len(responses) == 3, responses
    by_id = {r.infer_response.id: r for r in responses}
    assert sorted(by_id) == ["bad-2", "ok-1", "ok-3"]
    assert by_id["bad-2"].error_message == bad_shape_message("bad-2")
    for ok in ("ok-1", "ok-3"):
        r = by_id[ok]
        assert r.error_message == ""
        assert r.infer_response.model_name == "simple"
        raw = dict(zip((o.name for o in r.infer_response.outputs), r.infer_response.raw_output_contents))
        np.testing.assert_array_equal(np.frombuffer(raw["OUTPUT0"], "<i4").reshape(1, 16), a + b)


def test_stream_closed_by_client_midway(grpc_hostport):
    # the client goes away with requests in flight; the server carries on
    c = grpcclient.InferenceServerClient(grpc_hostport)
    c.start_stream(callback=lambda result, error: None)
    for i in range(16):
        inputs, _, _ = simple_inputs(i)
        c.async_stream_infer("simple", inputs, request_id=f"gone-{i}")
    c.stop_stream(cancel_requests=True)
    c.close()
    with grpcclient.InferenceServerClient(grpc_hostport) as c2:
        assert c2.is_server_live(client_timeout=TIMEOUT)
        inputs, _, _ = simple_inputs(7)
        check_simple(c2.infer("simple", inputs, client_timeout=TIMEOUT), 7)


def test_concurrent_streams(grpc_hostport):
    # several clients, each with its own stream, at once
    errors = []

    def run(k):
        try:
            s = Stream(grpc_hostport)
            try:
                for i in range(10):
                    inputs, _, _ = simple_inputs(100 * k + i)
                    s.client.async_stream_infer("simple", inputs, request_id=f"{k}-{i}")
                replies = collect(s.responses, 10)
                by_id = {r.get_response().id: r for r, e in replies if e is None}
                assert sorted(by_id) == sorted(f"{k}-{i}" for i in range(10)), replies
                for i in range(10):
                    check_simple(by_id[f"{k}-{i}"], 100 * k + i)
            finally:
                s.close()
        except BaseException as e:  # reported below, from the test's own thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 2)
    assert not any(t.is_alive() for t in threads), "a stream never finished"
    assert not errors, errors
