"""The CUDA driver end to end, through the ferrite binary and tritonclient.

On a machine without an NVIDIA GPU (CI): the CUDA driver is in the backend directory but
refuses to start, saying what is missing (a warning); a KIND_GPU model is UNAVAILABLE with
that reason in the repository index, and every other model serves. With a GPU and the GPU
runtime (scripts/setup_gpu.sh target/debug) the GPU tests run: `simple` on KIND_GPU, and CUDA
shared memory round-trips with tritonclient.utils.cuda_shared_memory. They skip with the
reason elsewhere, unless FERRITE_REQUIRE_GPU is set.
"""

import os

import numpy as np
import pytest
import tritonclient.http as httpclient

import e2e_util as u

GPU_CONFIG = """name: "on_gpu"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] }, { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] }, { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] } ]
instance_group [ { kind: KIND_GPU gpus: [ 0 ] } ]
"""


def cuda_refusal(log: str):
    """The CUDA driver's reason for not starting, from the server log (None: it started)."""
    for line in log.splitlines():
        if "driver 'cuda'" in line and "failed to initialise" in line:
            return line.split("failed to initialise: ", 1)[1].strip()
    return None


@pytest.fixture(scope="module")
def gpu_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("cuda_repo")
    u.copy_model("simple", repo)
    u.add_model_with_config(repo, "on_gpu", GPU_CONFIG)
    return repo


def test_without_a_gpu_kind_gpu_is_unavailable_with_the_reason(ferrite, gpu_repo):
    srv = ferrite.start([gpu_repo], ["--exit-on-error=false"], wait_ready=False)
    c = httpclient.InferenceServerClient(srv.hostport)
    try:
        index = {m["name"]: m for m in c.get_model_repository_index()}
        why = cuda_refusal(srv.log())
        if why is None:
            pytest.skip("this machine has a GPU: test_gpu_serves_and_cuda_shared_memory covers it")
        # A warning, not an error: the hardware is absent, the driver is fine.
        # (Triton's log format: W for a warning.)
        assert any(l.startswith("W") and "driver 'cuda'" in l for l in srv.log().splitlines()), srv.log()
        assert index["simple"]["state"] == "READY", index
        assert index["on_gpu"]["state"] == "UNAVAILABLE", index
        reason = index["on_gpu"]["reason"]
        assert "asks for KIND_GPU instances on GPUs [0], but no GPU is available" in reason, reason
        assert why in reason, (why, reason)
        if not os.path.exists("/usr/lib/x86_64-linux-gnu/libcuda.so.1"):
            assert "libcuda.so.1" in reason, reason
        # The rest serves.
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(a)
        out = c.infer("simple", inputs).as_numpy("OUTPUT0")
        assert (out == 2 * a).all()
    finally:
        c.close()


def test_gpu_serves_and_cuda_shared_memory(ferrite, gpu_repo):
    srv = ferrite.start([gpu_repo], ["--exit-on-error=false", "--allow-client-shm=true"], wait_ready=False)
    c = httpclient.InferenceServerClient(srv.hostport)
    try:
        c.get_model_repository_index()
        why = cuda_refusal(srv.log())
        if why is not None:
            assert not os.environ.get("FERRITE_REQUIRE_GPU"), f"FERRITE_REQUIRE_GPU set, but: {why}"
            pytest.skip(f"no GPU here: {why}")
        import tritonclient.utils.cuda_shared_memory as cudashm
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        b = np.ones((1, 16), dtype=np.int32)
        size = a.nbytes
        ins = cudashm.create_shared_memory_region("in", 2 * size, 0)
        outs = cudashm.create_shared_memory_region("out", 2 * size, 0)
        try:
            cudashm.set_shared_memory_region(ins, [a, b])
            c.register_cuda_shared_memory("in", cudashm.get_raw_handle(ins), 0, 2 * size)
            c.register_cuda_shared_memory("out", cudashm.get_raw_handle(outs), 0, 2 * size)
            status = c.get_cuda_shared_memory_status()
            assert {r["name"] for r in status} == {"in", "out"}, status
            inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
            inputs[0].set_shared_memory("in", size, 0)
            inputs[1].set_shared_memory("in", size, size)
            outputs = [httpclient.InferRequestedOutput("OUTPUT0"), httpclient.InferRequestedOutput("OUTPUT1")]
            outputs[0].set_shared_memory("out", size, 0)
            outputs[1].set_shared_memory("out", size, size)
            c.infer("on_gpu", inputs, outputs=outputs)
            total = cudashm.get_contents_as_numpy(outs, np.int32, [1, 16])
            assert (total == a + b).all(), total
            c.unregister_cuda_shared_memory()
            assert c.get_cuda_shared_memory_status() == []
        finally:
            cudashm.destroy_shared_memory_region(ins)
            cudashm.destroy_shared_memory_region(outs)
    finally:
        c.close()
