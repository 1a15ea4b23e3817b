"""The Neuron driver end to end, through the ferrite binary and tritonclient.

On a host without the Neuron runtime (CI): the driver refuses to start (a warning naming
libnrt.so.1), the server serves its other models, and a Neuron model is UNAVAILABLE with the
reason. With the runtime test double (drivers/neuron/tests/fixtures/nrt_test_double.c, built
here into a libnrt.so.1 and passed with --backend-config=neuron,runtime-library=PATH): a batch
from tritonclient, over HTTP and gRPC, is split across the double's four cores and comes back
in order. The double stands in for Inferentia hardware; see the README for what it cannot
prove.
"""

import os
import shutil
import subprocess

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

import e2e_util as u

CONFIG = """name: "{name}"
backend: "neuron"
max_batch_size: 16
input [ {{ name: "INPUT__0" data_type: TYPE_FP32 dims: [ 2 ] }} ]
output [
  {{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 2 ] }},
  {{ name: "CORE__1" data_type: TYPE_INT32 dims: [ 1 ] }}
]
instance_group [ {{ kind: KIND_MODEL count: 1 }} ]
"""

# The double's NEFF: compiled for 2 samples of 2 floats.
NEFF = "ferrite-test-neff 1\ninput x 16\noutput y 16\noutput CORE 8\n"


def neuron_model(repo, name, neff=NEFF):
    d = repo / name
    (d / "1").mkdir(parents=True)
    (d / "config.pbtxt").write_text(CONFIG.format(name=name))
    (d / "1" / "model.neff").write_text(neff)
    return d


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        if os.environ.get("FERRITE_REQUIRE_DRIVERS"):
            pytest.fail(f"no C compiler ({cc}) to build the Neuron runtime double")
        pytest.skip(f"no C compiler ({cc}) to build the Neuron runtime double")
    out = tmp_path_factory.mktemp("nrt") / "libnrt.so.1"
    subprocess.run(
        [cc, "-std=c11", "-O1", "-shared", "-fPIC", "-I", str(u.ROOT / "drivers/neuron-sys/include"),
         "-o", str(out), str(u.ROOT / "drivers/neuron/tests/fixtures/nrt_test_double.c")],
        check=True,
    )
    return out


def test_without_the_runtime_a_neuron_model_is_unavailable_with_the_reason(ferrite, tmp_path):
    repo = tmp_path / "repo"
    neuron_model(repo, "on_inferentia")
    u.copy_model("simple", repo)
    srv = ferrite.start([repo], ["--exit-on-error=false"], wait_ready=False)
    c = httpclient.InferenceServerClient(srv.hostport)
    try:
        log = srv.log()
        refusal = [l for l in log.splitlines() if "driver 'neuron'" in l and "failed to initialise" in l]
        if not refusal:
            pytest.skip("this host has a Neuron runtime: the driver started")
        # A warning (the hardware is absent), naming the library.
        assert refusal[0].startswith("W"), refusal
        assert "libnrt.so.1 could not be opened" in refusal[0], refusal
        index = {m["name"]: m for m in c.get_model_repository_index()}
        assert index["simple"]["state"] == "READY", index
        assert index["on_inferentia"]["state"] == "UNAVAILABLE", index
        reason = index["on_inferentia"]["reason"]
        assert "the driver for backend 'neuron' failed to load" in reason, reason
        assert "libnrt.so.1 could not be opened" in reason, reason
        assert not c.is_model_ready("on_inferentia")
        # The server is live but not ready (a model failed), as Triton with a failed model.
        assert c.is_server_live()
    finally:
        c.close()


def test_a_batch_is_split_across_the_cores_over_http_and_grpc(ferrite, tmp_path, double):
    repo = tmp_path / "repo"
    neuron_model(repo, "split")
    srv = ferrite.start([repo], [f"--backend-config=neuron,runtime-library={double}"])
    assert "Neuron runtime 2.99.7 (ferrite test double)" in srv.log(), srv.log()
    assert "placed instance split_0_0 of model split on NeuronCore(s) 0..=3 (NEFF compiled for batch size 2)" in srv.log()
    x = np.arange(14, dtype=np.float32).reshape(7, 2)

    h = httpclient.InferenceServerClient(srv.hostport)
    try:
        inp = httpclient.InferInput("INPUT__0", [7, 2], "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        r = h.infer("split", [inp])
        np.testing.assert_array_equal(r.as_numpy("OUTPUT__0"), 2 * x + 1)
        # 7 samples, shards of 2: cores 0, 1, 2 get two samples each, core 3 the last one
        # (padded).
        np.testing.assert_array_equal(r.as_numpy("CORE__1").ravel(), [0, 0, 1, 1, 2, 2, 3])
        meta = h.get_model_metadata("split")
        assert meta["platform"] == "neuron_neff", meta
    finally:
        h.close()
    # Per-core statistics on the metrics port: the 7 samples as 2, 2, 2 and 1 (+1 padding).
    metrics = u.request(srv.metrics_hostport, "GET", "/metrics").body.decode()
    assert "# TYPE ferrite_neuron_core_samples_total counter" in metrics, metrics
    for core, samples, padding in [(0, 2, 0), (1, 2, 0), (2, 2, 0), (3, 1, 1)]:
        labels = f'{{core="{core}",model="split",version="1"}}'
        assert f"ferrite_neuron_core_samples_total{labels} {samples}\n" in metrics, metrics
        assert f"ferrite_neuron_core_padding_samples_total{labels} {padding}\n" in metrics, metrics
        assert f"ferrite_neuron_core_executions_total{labels} 1\n" in metrics, metrics

    with grpcclient.InferenceServerClient(srv.grpc_hostport) as g:
        inp = grpcclient.InferInput("INPUT__0", [3, 2], "FP32")
        inp.set_data_from_numpy(x[:3])
        r = g.infer("split", [inp], outputs=[grpcclient.InferRequestedOutput("OUTPUT__0")])
        np.testing.assert_array_equal(r.as_numpy("OUTPUT__0"), 2 * x[:3] + 1)
        assert r.as_numpy("CORE__1") is None
        # A wrong shape is the client's error, named, and the model goes on.
        bad = grpcclient.InferInput("INPUT__0", [1, 3], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
        with pytest.raises(Exception) as e:
            g.infer("split", [bad])
        assert "INPUT__0" in str(e.value), e.value
        assert g.is_model_ready("split")
