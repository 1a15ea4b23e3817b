"""The shared memory extensions over HTTP and gRPC, with tritonclient.utils.shared_memory:
system shared memory regions registered, used for `simple`'s inputs and outputs, reported,
unregistered, and the errors Triton gives; CUDA shared memory on a server without CUDA.

Client shared memory lets a client make the server read and write its memory, so Ferrite
refuses it unless started with SHM_FLAG; the session server (without it) checks the refusal,
a server of this module's own (with it) the rest.

Expected texts are Triton's (shared_memory_manager.cc, and the frontends for CUDA without GPU
support); Triton's HTTP status follows the error code (INVALID_ARG and ALREADY_EXISTS 400,
NOT_FOUND 404, INTERNAL 500). Where Triton's message is terse ("invalid args", "Unable to
open"), Ferrite may append the details in parentheses: those are checked as a prefix.
"""

import base64
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

import e2e_util as u

# The flag that lets clients register shared memory (`ferrite --help`).
SHM_FLAG = "--allow-client-shm=true"
SHM_FLAG_NAME = SHM_FLAG.split("=", 1)[0]

TIMEOUT = 60.0
HTTP_STATUS = {"INVALID_ARGUMENT": "400", "ALREADY_EXISTS": "400", "NOT_FOUND": "404", "INTERNAL": "500",
               "UNAVAILABLE": "503", "UNIMPLEMENTED": "501"}
PROTOCOLS = ["http", "grpc"]


@pytest.fixture(scope="module")
def shm_server(prerequisites, tmp_path_factory):
    srv = u.start_server([u.MODEL_REPO], [SHM_FLAG], tmp_path_factory.mktemp("shm-server-log"))
    yield srv
    srv.stop_cleanly(signal.SIGTERM)


class Client:
    """One protocol's tritonclient, with the few calls whose shapes differ smoothed over."""

    def __init__(self, protocol, server):
        self.protocol = protocol
        if protocol == "http":
            self.mod = httpclient
            self.c = httpclient.InferenceServerClient(server.hostport, connection_timeout=TIMEOUT,
                                                      network_timeout=TIMEOUT)
        else:
            self.mod = grpcclient
            self.c = grpcclient.InferenceServerClient(server.grpc_hostport)

    def close(self):
        self.c.close()

    def kw(self):
        return {} if self.protocol == "http" else {"client_timeout": TIMEOUT}

    def status(self, name=""):
        """[{name, key, offset, byte_size}] sorted by name, ints as ints."""
        if self.protocol == "http":
            regions = self.c.get_system_shared_memory_status(region_name=name)
            return sorted(({k: r[k] for k in ("name", "key", "offset", "byte_size")} for r in regions),
                          key=lambda r: r["name"])
        reply = self.c.get_system_shared_memory_status(region_name=name, client_timeout=TIMEOUT)
        out = []
        for key, r in reply.regions.items():
            assert key == r.name, reply
            out.append({"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size})
        return sorted(out, key=lambda r: r["name"])

    def cuda_status(self, name=""):
        if self.protocol == "http":
            return list(self.c.get_cuda_shared_memory_status(region_name=name))
        return dict(self.c.get_cuda_shared_memory_status(region_name=name, client_timeout=TIMEOUT).regions)

    def register(self, name, key, byte_size, offset=0):
        self.c.register_system_shared_memory(name, key, byte_size, offset=offset, **self.kw())

    def unregister(self, name=""):
        self.c.unregister_system_shared_memory(name, **self.kw())

    def input(self, name, arr, datatype="INT32"):
        i = self.mod.InferInput(name, list(arr.shape), datatype)
        i.set_data_from_numpy(arr)
        return i

    def shm_input(self, name, shape, region, byte_size, offset=0, datatype="INT32"):
        i = self.mod.InferInput(name, list(shape), datatype)
        i.set_shared_memory(region, byte_size, offset=offset)
        return i

    def output(self, name, region=None, byte_size=0, offset=0):
        o = self.mod.InferRequestedOutput(name, binary_data=True) if self.protocol == "http" \
            else self.mod.InferRequestedOutput(name)
        if region is not None:
            o.set_shared_memory(region, byte_size, offset=offset)
        return o

    def infer(self, inputs, outputs=None, model="simple", **kwargs):
        return self.c.infer(model, inputs, outputs=outputs, **self.kw(), **kwargs)

    def output_meta(self, result, name):
        """(datatype, shape, whether tensor bytes came inline) of one output."""
        if self.protocol == "http":
            o = result.get_output(name)
            inline = "data" in o or "binary_data_size" in (o.get("parameters") or {})
            return o["datatype"], list(o["shape"]), inline
        resp = result.get_response()
        for index, o in enumerate(resp.outputs):
            if o.name == name:
                raw = resp.raw_output_contents[index] if index < len(resp.raw_output_contents) else b""
                return o.datatype, list(o.shape), len(raw) > 0
        raise AssertionError(f"no output {name} in {resp}")

    def assert_error(self, exc, code, message=None, prefix=None, contains=()):
        status, got = exc.status(), exc.message()
        want = HTTP_STATUS[code] if self.protocol == "http" else f"StatusCode.{code}"
        ctx = f"\n{self.protocol}: got {status}: {got!r}"
        assert status == want, f"status, expected {want} ({code}){ctx}"
        if message is not None:
            assert got == message, f"message, expected {message!r}{ctx}"
        if prefix is not None:
            assert got.startswith(prefix), f"message, expected it to start with {prefix!r}{ctx}"
        for part in contains:
            assert part in got, f"message, expected it to name {part!r}{ctx}"


@pytest.fixture(params=PROTOCOLS)
def shm_client(request, shm_server):
    c = Client(request.param, shm_server)
    c.unregister()
    yield c
    try:
        c.unregister()
        assert c.status() == []
    finally:
        c.close()


@pytest.fixture
def objects():
    """make(tag, size) -> (handle, key): POSIX shared memory objects, unlinked at the end."""
    made = []

    def make(tag, size):
        key = f"/ferrite-e2e-{os.getpid()}-{tag}"
        handle = shm.create_shared_memory_region(tag, key, size, create_only=True)
        made.append((handle, key))
        return handle, key

    yield make
    for handle, key in made:
        shm.destroy_shared_memory_region(handle)
        assert not Path("/dev/shm", key.lstrip("/")).exists(), key


def simple_data(seed=0):
    a = (np.arange(16, dtype=np.int32) + 10 * seed).reshape(1, 16)
    b = np.full((1, 16), 2 + seed, dtype=np.int32)
    return a, b


def expect_error(fn, *args, **kwargs) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as e:
        fn(*args, **kwargs)
    return e.value


# --- inference through shared memory ---------------------------------------------------------

def test_inputs_and_outputs_in_shared_memory(shm_client, objects):
    c = shm_client
    a, b = simple_data(1)
    h_in, k_in = objects("in", 128)
    h_out, k_out = objects("out", 128)
    shm.set_shared_memory_region(h_in, [a, b])
    c.register("input_data", k_in, 128)
    c.register("output_data", k_out, 128)
    res = c.infer(
        [c.shm_input("INPUT0", [1, 16], "input_data", 64), c.shm_input("INPUT1", [1, 16], "input_data", 64, 64)],
        [c.output("OUTPUT0", "output_data", 64), c.output("OUTPUT1", "output_data", 64, 64)],
        request_id="shm-1",
    )
    for name in ("OUTPUT0", "OUTPUT1"):
        assert c.output_meta(res, name) == ("INT32", [1, 16], False), "no tensor bytes on the wire"
    np.testing.assert_array_equal(shm.get_contents_as_numpy(h_out, np.int32, [1, 16]), a + b)
    np.testing.assert_array_equal(shm.get_contents_as_numpy(h_out, np.int32, [1, 16], offset=64), a - b)

    # the server reads the region as it is now, not a copy from before
    a2, b2 = simple_data(5)
    shm.set_shared_memory_region(h_in, [a2, b2])
    c.infer([c.shm_input("INPUT0", [1, 16], "input_data", 64), c.shm_input("INPUT1", [1, 16], "input_data", 64, 64)],
            [c.output("OUTPUT0", "output_data", 64), c.output("OUTPUT1", "output_data", 64, 64)])
    np.testing.assert_array_equal(shm.get_contents_as_numpy(h_out, np.int32, [1, 16]), a2 + b2)
    np.testing.assert_array_equal(shm.get_contents_as_numpy(h_out, np.int32, [1, 16], offset=64), a2 - b2)


def test_shared_memory_mixed_with_inline_tensors(shm_client, objects):
    c = shm_client
    a, b = simple_data(2)
    h_in, k_in = objects("in", 64)
    h_out, k_out = objects("out", 64)
    shm.set_shared_memory_region(h_in, [a])
    c.register("in0", k_in, 64)
    c.register("out0", k_out, 64)
    res = c.infer([c.shm_input("INPUT0", [1, 16], "in0", 64), c.input("INPUT1", b)],
                  [c.output("OUTPUT0", "out0", 64), c.output("OUTPUT1")])
    np.testing.assert_array_equal(shm.get_contents_as_numpy(h_out, np.int32, [1, 16]), a + b)
    np.testing.assert_array_equal(res.as_numpy("OUTPUT1"), a - b)
    assert c.output_meta(res, "OUTPUT1") == ("INT32", [1, 16], True)


def test_region_with_offset_into_the_object(shm_client, objects):
    # a region registered from offset 64 of a 256-byte object: the region's offset 0 is the
    # object's byte 64
    c = shm_client
    a, b = simple_data(3)
    h, key = objects("big", 256)
    shm.set_shared_memory_region(h, [np.full((1, 16), -1, dtype=np.int32), a, b])
    c.register("part", key, 192, offset=64)
    assert c.status("part") == [{"name": "part", "key": key, "offset": 64, "byte_size": 192}]
    res = c.infer([c.shm_input("INPUT0", [1, 16], "part", 64), c.shm_input("INPUT1", [1, 16], "part", 64, 64)],
                  [c.output("OUTPUT0", "part", 64, 128)])
    assert c.output_meta(res, "OUTPUT0") == ("INT32", [1, 16], False)
    # OUTPUT0 went to the region's offset 128, the object's byte 192
    np.testing.assert_array_equal(shm.get_contents_as_numpy(h, np.int32, [1, 16], offset=192), a + b)
    np.testing.assert_array_equal(shm.get_contents_as_numpy(h, np.int32, [1, 16], offset=0), np.full((1, 16), -1))


def test_bytes_through_shared_memory(shm_client, objects):
    # BYTES in shared memory: Triton's serialized form (4-byte length, then the bytes)
    c = shm_client
    values = [b"one", b"\xff\xfetwo", b""]
    serialized = b"".join(len(v).to_bytes(4, "little") + v for v in values)
    h, key = objects("bytes", len(serialized))
    h._mpsm_handle.buf[:len(serialized)] = serialized
    c.register("strings", key, len(serialized))
    res = c.infer([c.shm_input("INPUT0", [1, 3], "strings", len(serialized), datatype="BYTES")],
                  [c.output("OUTPUT0")], model="simple_identity")
    assert [bytes(v) for v in res.as_numpy("OUTPUT0").flatten()] == values


# --- register, status, unregister --------------------------------------------------------------

def test_status_and_unregister(shm_client, objects):
    c = shm_client
    _, k1 = objects("r1", 64)
    _, k2 = objects("r2", 128)
    assert c.status() == []
    c.register("r1", k1, 64)
    c.register("r2", k2, 128)
    r1 = {"name": "r1", "key": k1, "offset": 0, "byte_size": 64}
    r2 = {"name": "r2", "key": k2, "offset": 0, "byte_size": 128}
    assert c.status() == [r1, r2]
    assert c.status("r2") == [r2]
    c.unregister("r1")
    assert c.status() == [r2]
    # unregistering a name that is not registered is not an error (Triton)
    c.unregister("r1")
    c.unregister("never-registered")
    c.register("r1", k1, 64)
    assert c.status() == [r1, r2]
    c.unregister()
    assert c.status() == []
    # and a name can be registered again after it was unregistered
    c.register("r1", k1, 64)
    assert c.status("r1") == [r1]


def test_two_regions_on_one_object(shm_client, objects):
    c = shm_client
    _, key = objects("shared", 128)
    c.register("lo", key, 64)
    c.register("hi", key, 64, offset=64)
    assert [r["offset"] for r in c.status()] == [64, 0]  # "hi", "lo"


def test_status_json_over_grpc(shm_server, objects):
    # tritonclient's JSON: uint64 as strings, a zero offset left out
    _, key = objects("json", 64)
    with grpcclient.InferenceServerClient(shm_server.grpc_hostport) as c:
        c.unregister_system_shared_memory(client_timeout=TIMEOUT)
        try:
            c.register_system_shared_memory("json", key, 64, client_timeout=TIMEOUT)
            status = c.get_system_shared_memory_status(as_json=True, client_timeout=TIMEOUT)
            assert status == {"regions": {"json": {"name": "json", "key": key, "byte_size": "64"}}}
        finally:
            c.unregister_system_shared_memory(client_timeout=TIMEOUT)


# --- errors ------------------------------------------------------------------------------------

def test_register_twice(shm_client, objects):
    c = shm_client
    _, key = objects("twice", 64)
    c.register("twice", key, 64)
    e = expect_error(c.register, "twice", key, 64)
    c.assert_error(e, "ALREADY_EXISTS", "shared memory region 'twice' already in manager")
    assert len(c.status()) == 1


def test_register_unknown_key(shm_client):
    c = shm_client
    key = f"/ferrite-e2e-{os.getpid()}-does-not-exist"
    e = expect_error(c.register, "nokey", key, 64)
    c.assert_error(e, "INTERNAL", prefix=f"Unable to open shared memory region: '{key}'")
    assert c.status() == []


@pytest.mark.parametrize("offset,byte_size", [(0, 65), (32, 64), (64, 1), (2**40, 8)])
def test_register_outside_the_object(shm_client, objects, offset, byte_size):
    c = shm_client
    _, key = objects("small", 64)
    e = expect_error(c.register, "small", key, byte_size, offset)
    c.assert_error(e, "INVALID_ARGUMENT", prefix="failed to register shared memory region 'small': invalid args")
    assert c.status() == []


def test_status_of_unknown_region(shm_client):
    c = shm_client
    e = expect_error(c.status, "nosuchregion")
    c.assert_error(e, "NOT_FOUND", "Unable to find system shared memory region: 'nosuchregion'")


def test_infer_with_unregistered_region(shm_client):
    c = shm_client
    a, b = simple_data()
    e = expect_error(c.infer, [c.shm_input("INPUT0", [1, 16], "nosuchregion", 64), c.input("INPUT1", b)])
    c.assert_error(e, "NOT_FOUND", "Unable to find shared memory region: 'nosuchregion'")


def test_infer_with_offset_and_size_outside_the_region(shm_client, objects):
    c = shm_client
    a, b = simple_data()
    _, key = objects("in", 128)
    c.register("in", key, 128)
    e = expect_error(c.infer, [c.shm_input("INPUT0", [1, 16], "in", 64, offset=96), c.input("INPUT1", b)])
    c.assert_error(e, "INVALID_ARGUMENT", prefix="Invalid offset + byte size for shared memory region: 'in'")
    e = expect_error(c.infer, [c.input("INPUT0", a), c.input("INPUT1", b)],
                     [c.output("OUTPUT0", "in", 64, offset=100)])
    c.assert_error(e, "INVALID_ARGUMENT", prefix="Invalid offset + byte size for shared memory region: 'in'")


def test_infer_with_shared_memory_byte_size_not_matching_the_shape(shm_client, objects):
    c = shm_client
    _, key = objects("in", 128)
    c.register("in", key, 128)
    a, b = simple_data()
    e = expect_error(c.infer, [c.shm_input("INPUT0", [1, 16], "in", 60), c.input("INPUT1", b)], request_id="req-1")
    c.assert_error(e, "INVALID_ARGUMENT",
                   "[request id: req-1] input byte size mismatch for input 'INPUT0' for model 'simple'. "
                   "Expected 64, got 60")


def test_output_region_too_small(shm_client, objects):
    c = shm_client
    _, key = objects("out", 128)
    c.register("out", key, 128)
    a, b = simple_data()
    e = expect_error(c.infer, [c.input("INPUT0", a), c.input("INPUT1", b)], [c.output("OUTPUT0", "out", 32)])
    # Triton's frontends refuse it in the output allocator, as INTERNAL
    c.assert_error(e, "INTERNAL", "shared memory size specified with the request for output 'OUTPUT0' (32 bytes) "
                                  "should be at least 64 bytes to hold the results")


def test_server_fine_after_shared_memory_errors(shm_client, objects):
    c = shm_client
    a, b = simple_data(4)
    for _ in range(3):
        expect_error(c.infer, [c.shm_input("INPUT0", [1, 16], "gone", 64), c.input("INPUT1", b)])
    res = c.infer([c.input("INPUT0", a), c.input("INPUT1", b)])
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a + b)


def test_unregister_while_unused_then_object_removed(shm_client, objects):
    # after unregister the server holds no mapping a client must wait for: the object can go
    c = shm_client
    h, key = objects("temp", 64)
    c.register("temp", key, 64)
    c.unregister("temp")
    assert c.status() == []


# --- without the flag ----------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_refused_without_the_flag(server, objects, protocol):
    c = Client(protocol, server)
    try:
        _, key = objects("refused", 64)
        e = expect_error(c.register, "refused", key, 64)
        assert SHM_FLAG_NAME in e.message(), f"the error should name {SHM_FLAG_NAME}: {e.status()} {e.message()!r}"
        # nothing got registered, and inference that names a region is refused too
        a, b = simple_data()
        e = expect_error(c.infer, [c.shm_input("INPUT0", [1, 16], "refused", 64), c.input("INPUT1", b)])
        assert e.message(), e
        res = c.infer([c.input("INPUT0", a), c.input("INPUT1", b)])
        np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a + b)
    finally:
        c.close()


# --- CUDA shared memory on a server without CUDA -------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cuda_shared_memory_without_cuda(shm_server, protocol):
    c = Client(protocol, shm_server)
    try:
        assert not c.cuda_status()
        c.c.unregister_cuda_shared_memory(**c.kw())
        c.c.unregister_cuda_shared_memory("cuda0", **c.kw())
        handle = base64.b64encode(bytes(64)).decode()  # a cudaIpcMemHandle_t is 64 bytes
        e = expect_error(c.c.register_cuda_shared_memory, "cuda0", handle, 0, 64, **c.kw())
        c.assert_error(e, "INVALID_ARGUMENT", "failed to register CUDA shared memory region: 'cuda0', GPUs not supported")
        assert not c.cuda_status()
        e = expect_error(c.cuda_status, "cuda0")
        c.assert_error(e, "NOT_FOUND", "Unable to find cuda shared memory region: 'cuda0'")
    finally:
        c.close()
