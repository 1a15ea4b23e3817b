"""Ensembles (`platform: "ensemble"`) end to end: graphs of the example `simple` model
(OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1, INT32 [16], max_batch_size 8) run as
one request over HTTP and gRPC, step failures named in the error, per-step statistics, and
dependency-aware load and unload.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import e2e_util as u

pytestmark = pytest.mark.timeout(120)

EXPLICIT = "--model-control-mode=explicit"


def io(dims: str = "16", mbs: int = 8) -> str:
    return f"""max_batch_size: {mbs}
input [ {{ name: "IN0" data_type: TYPE_INT32 dims: [ {dims} ] }},
        {{ name: "IN1" data_type: TYPE_INT32 dims: [ {dims} ] }} ]
output [ {{ name: "OUT0" data_type: TYPE_INT32 dims: [ {dims} ] }},
         {{ name: "OUT1" data_type: TYPE_INT32 dims: [ {dims} ] }} ]
"""


def step(model: str, in0: str, in1: str, out0: str | None, out1: str | None) -> str:
    outs = []
    if out0:
        outs.append(f'{{ key: "OUTPUT0" value: "{out0}" }}')
    if out1:
        outs.append(f'{{ key: "OUTPUT1" value: "{out1}" }}')
    return f"""{{ model_name: "{model}" model_version: -1
      input_map [ {{ key: "INPUT0" value: "{in0}" }}, {{ key: "INPUT1" value: "{in1}" }} ]
      output_map [ {", ".join(outs)} ] }}"""


# chain: (a + b, a - b) -> ((a+b) + (a-b), (a+b) - (a-b)) = (2a, 2b)
CHAIN = [step("simple", "IN0", "IN1", "S", "D"), step("simple", "S", "D", "OUT0", "OUT1")]
# diamond: two independent steps on the inputs, a third joining them:
#   S = a + b, D2 = b - a  ->  OUT0 = S + D2 = 2b, OUT1 = S - D2 = 2a
DIAMOND = [
    step("simple", "IN0", "IN1", "S", None),
    step("simple", "IN1", "IN0", None, "D2"),
    step("simple", "S", "D2", "OUT0", "OUT1"),
]


def add_ensemble(repo: Path, name: str, steps: list[str], dims: str = "16", mbs: int = 8,
                 extra: str = "") -> Path:
    d = repo / name
    (d / "1").mkdir(parents=True)
    (d / "config.pbtxt").write_text(
        f'name: "{name}"\nplatform: "ensemble"\n{io(dims, mbs)}{extra}'
        f'ensemble_scheduling {{ step [ {", ".join(steps)} ] }}\n')
    return d


def pair(batch: int, seed: int = 0):
    return u.simple_pair(batch, seed)


def infer_http(c, model: str, a, b, outputs=None):
    inputs = []
    for name, arr in (("IN0", a), ("IN1", b)):
        i = httpclient.InferInput(name, list(arr.shape), "INT32")
        i.set_data_from_numpy(arr)
        inputs.append(i)
    outs = [httpclient.InferRequestedOutput(o) for o in outputs] if outputs else None
    return c.infer(model, inputs, outputs=outs)


def infer_grpc(c, model: str, a, b):
    inputs = []
    for name, arr in (("IN0", a), ("IN1", b)):
        i = grpcclient.InferInput(name, list(arr.shape), "INT32")
        i.set_data_from_numpy(arr)
        inputs.append(i)
    return c.infer(model, inputs, client_timeout=30)


@pytest.fixture
def pipelines(ferrite):
    """A server on `simple` and three ensembles of it; names sort before 'simple' so startup
    must order the loads by dependency, not by name."""
    repo = ferrite.repo("simple")
    add_ensemble(repo, "a_chain", CHAIN)
    add_ensemble(repo, "a_diamond", DIAMOND)
    # Dims [-1]: the ensemble takes any length; the step refuses what is not 16.
    add_ensemble(repo, "a_loose", CHAIN, dims="-1")
    srv = ferrite.start([repo])
    return srv


def test_chain_and_diamond_over_http_and_grpc(pipelines):
    h = httpclient.InferenceServerClient(pipelines.hostport)
    g = grpcclient.InferenceServerClient(pipelines.grpc_hostport)
    try:
        for batch in (1, 3, 8):
            a, b = pair(batch, seed=batch)
            for result in (infer_http(h, "a_chain", a, b), infer_grpc(g, "a_chain", a, b)):
                np.testing.assert_array_equal(result.as_numpy("OUT0"), 2 * a)
                np.testing.assert_array_equal(result.as_numpy("OUT1"), 2 * b)
            for result in (infer_http(h, "a_diamond", a, b), infer_grpc(g, "a_diamond", a, b)):
                np.testing.assert_array_equal(result.as_numpy("OUT0"), 2 * b)
                np.testing.assert_array_equal(result.as_numpy("OUT1"), 2 * a)
        # A requested subset, as for any model.
        a, b = pair(2)
        only = infer_http(h, "a_chain", a, b, outputs=["OUT1"])
        assert only.as_numpy("OUT0") is None
        np.testing.assert_array_equal(only.as_numpy("OUT1"), 2 * b)
        # Over the batch limit: refused by the ensemble itself.
        a, b = pair(9)
        with pytest.raises(InferenceServerException) as e:
            infer_grpc(g, "a_chain", a, b)
        assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
        meta = h.get_model_metadata("a_chain")
        assert meta["platform"] == "ensemble"
        config = h.get_model_config("a_chain")
        assert "instance_group" not in config or config["instance_group"] == []
        assert len(config["ensemble_scheduling"]["step"]) == 2
    finally:
        h.close()
        g.close()


def test_many_requests_in_parallel_keep_their_own_tensors(pipelines):
    g = grpcclient.InferenceServerClient(pipelines.grpc_hostport)

    def one(seed: int):
        a, b = pair(1 + seed % 4, seed)
        r = infer_grpc(g, "a_diamond", a, b)
        return (np.array_equal(r.as_numpy("OUT0"), 2 * b)
                and np.array_equal(r.as_numpy("OUT1"), 2 * a))

    try:
        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(one, range(200)))
    finally:
        g.close()


def test_a_failing_step_is_named(pipelines):
    h = httpclient.InferenceServerClient(pipelines.hostport)
    g = grpcclient.InferenceServerClient(pipelines.grpc_hostport)
    try:
        a = np.arange(8, dtype=np.int32).reshape(1, 8)
        with pytest.raises(InferenceServerException) as e:
            infer_http(h, "a_loose", a, a)
        assert e.value.status() == "400", e.value
        msg = e.value.message()
        assert "in ensemble 'a_loose', step 0 (model 'simple'):" in msg, msg
        assert "INPUT0" in msg, msg
        with pytest.raises(InferenceServerException) as e:
            infer_grpc(g, "a_loose", a, a)
        assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
        # The failure is the ensemble's only: the next request runs.
        a, b = pair(1)
        np.testing.assert_array_equal(infer_grpc(g, "a_loose", a, b).as_numpy("OUT0"), 2 * a)
    finally:
        h.close()
        g.close()


def test_statistics_count_every_step(pipelines):
    h = httpclient.InferenceServerClient(pipelines.hostport)
    try:
        def count(model: str, key: str = "inference_count") -> int:
            stats = h.get_inference_statistics(model)["model_stats"][0]
            return int(stats[key]) if key in stats else int(
                stats["inference_stats"]["success"]["count"])

        before_simple = count("simple")
        before_chain = count("a_chain")
        before_success = count("a_chain", "success")
        a, b = pair(4)
        for _ in range(5):
            infer_http(h, "a_chain", a, b)
        assert count("a_chain") - before_chain == 20, "5 requests of batch 4"
        assert count("a_chain", "success") - before_success == 5
        assert count("simple") - before_simple == 40, "two steps of batch 4, 5 times"
    finally:
        h.close()


def test_steps_nobody_needs_do_not_run(ferrite):
    # Triton prunes an ensemble to the requested outputs: a step none of whose outputs is
    # requested or read by a step that runs is not run, and its model counts no inference.
    repo = ferrite.repo("simple")
    u.add_model_with_config(repo, "simple_b", u.read_pbtxt("simple").replace('"simple"', '"simple_b"'))
    add_ensemble(repo, "fork", [step("simple", "IN0", "IN1", "OUT0", None),
                                step("simple_b", "IN0", "IN1", None, "OUT1")])
    srv = ferrite.start([repo])
    h = httpclient.InferenceServerClient(srv.hostport)
    try:
        def count(model: str) -> int:
            stats = h.get_inference_statistics(model)["model_stats"][0]
            return int(stats.get("inference_count", 0))

        a, b = pair(2, seed=3)
        only0 = infer_http(h, "fork", a, b, outputs=["OUT0"])
        np.testing.assert_array_equal(only0.as_numpy("OUT0"), a + b)
        assert only0.as_numpy("OUT1") is None
        assert (count("simple"), count("simple_b")) == (2, 0)
        only1 = infer_http(h, "fork", a, b, outputs=["OUT1"])
        np.testing.assert_array_equal(only1.as_numpy("OUT1"), a - b)
        assert (count("simple"), count("simple_b")) == (2, 2)
        both = infer_http(h, "fork", a, b)
        np.testing.assert_array_equal(both.as_numpy("OUT0"), a + b)
        np.testing.assert_array_equal(both.as_numpy("OUT1"), a - b)
        assert (count("simple"), count("simple_b")) == (4, 4)
    finally:
        h.close()


def test_startup_reports_broken_ensembles(ferrite):
    repo = ferrite.repo("simple")
    add_ensemble(repo, "needs_missing", [step("no_such_model", "IN0", "IN1", "OUT0", "OUT1")])
    add_ensemble(repo, "bad_graph", [step("simple", "IN0", "NOPE", "OUT0", "OUT1")])
    add_ensemble(repo, "bad_type", CHAIN, extra="")
    # bad_type: the ensemble says FP32 where the step model takes INT32.
    text = (repo / "bad_type" / "config.pbtxt").read_text()
    (repo / "bad_type" / "config.pbtxt").write_text(text.replace("TYPE_INT32", "TYPE_FP32"))
    srv = ferrite.start([repo], ["--exit-on-error=false"], wait_ready=False)
    srv.wait_http("/v2/health/live")
    h = httpclient.InferenceServerClient(srv.hostport)
    try:
        # Startup has loaded (or failed) every model before the server listens.
        index = {m["name"]: m for m in h.get_model_repository_index()}
        assert index["simple"]["state"] == "READY"
        assert index["needs_missing"]["state"] == "UNAVAILABLE"
        assert "depends on 'no_such_model' which has no loaded version" in index["needs_missing"]["reason"]
        assert index["bad_graph"]["state"] == "UNAVAILABLE"
        assert "reads 'NOPE'" in index["bad_graph"]["reason"]
        assert index["bad_type"]["state"] == "UNAVAILABLE"
        assert "tensor 'IN0' is TYPE_FP32" in index["bad_type"]["reason"], index["bad_type"]["reason"]
    finally:
        h.close()


def test_explicit_load_and_unload_follow_dependencies(ferrite):
    repo = ferrite.repo("simple")
    add_ensemble(repo, "chain", CHAIN)
    add_ensemble(repo, "chain_of_chain", [
        f"""{{ model_name: "chain" model_version: -1
            input_map [ {{ key: "IN0" value: "IN0" }}, {{ key: "IN1" value: "IN1" }} ]
            output_map [ {{ key: "OUT0" value: "OUT0" }}, {{ key: "OUT1" value: "OUT1" }} ] }}"""])
    add_ensemble(repo, "needs_missing", [step("no_such_model", "IN0", "IN1", "OUT0", "OUT1")])
    srv = ferrite.start([repo], [EXPLICIT])
    g = grpcclient.InferenceServerClient(srv.grpc_hostport)
    try:
        assert not g.is_model_ready("simple")
        # Loading an ensemble loads what it runs, through nested ensembles.
        g.load_model("chain_of_chain")
        for m in ("chain_of_chain", "chain", "simple"):
            assert g.is_model_ready(m), m
        a, b = pair(2)
        np.testing.assert_array_equal(infer_grpc(g, "chain_of_chain", a, b).as_numpy("OUT0"), 2 * a)

        # A step unloaded: the ensembles that run it (directly or not) go with it ...
        g.unload_model("simple")
        for m in ("chain_of_chain", "chain", "simple"):
            assert not g.is_model_ready(m), m
        index = {m.name: m for m in g.get_model_repository_index().models}
        assert index["chain"].state == "UNAVAILABLE"
        assert "depends on 'simple' which has no loaded version" in index["chain"].reason
        with pytest.raises(InferenceServerException) as e:
            infer_grpc(g, "chain", a, b)
        assert e.value.status() == "StatusCode.UNAVAILABLE"
        # ... and come back when it does.
        g.load_model("simple")
        for m in ("chain_of_chain", "chain", "simple"):
            assert g.is_model_ready(m), m
        np.testing.assert_array_equal(infer_grpc(g, "chain", a, b).as_numpy("OUT1"), 2 * b)

        # unload_dependents: the ensemble's steps go too, unless another ensemble runs them.
        g.unload_model("chain_of_chain", unload_dependents=True)
        for m in ("chain_of_chain", "chain", "simple"):
            assert not g.is_model_ready(m), m
        g.load_model("chain")
        g.load_model("chain_of_chain")
        g.unload_model("chain_of_chain", unload_dependents=False)
        assert g.is_model_ready("chain") and g.is_model_ready("simple")

        with pytest.raises(InferenceServerException) as e:
            g.load_model("needs_missing")
        assert "no_such_model" in e.value.message(), e.value.message()
        assert g.is_model_ready("chain"), "a failed load leaves the others alone"
    finally:
        g.close()


def test_poll_mode_loads_an_ensemble_when_its_step_arrives(ferrite, tmp_path):
    repo = ferrite.repo()
    add_ensemble(repo, "chain", CHAIN)
    srv = ferrite.start([repo], ["--model-control-mode=poll", "--repository-poll-secs=1",
                                 "--exit-on-error=false"], wait_ready=False)
    srv.wait_http("/v2/health/live")
    h = httpclient.InferenceServerClient(srv.hostport)
    try:
        index = {m["name"]: m for m in h.get_model_repository_index()}
        assert index["chain"]["state"] == "UNAVAILABLE"
        assert "depends on 'simple'" in index["chain"]["reason"], index["chain"]
        # The step model arrives (one rename, so a poll never sees half a copy).
        staged = tmp_path / "staging"
        staged.mkdir()
        u.copy_model("simple", staged)
        (staged / "simple").rename(repo / "simple")
        deadline = time.monotonic() + 20
        while not h.is_model_ready("chain"):
            assert time.monotonic() < deadline, h.get_model_repository_index()
            time.sleep(0.1)
        a, b = pair(1)
        np.testing.assert_array_equal(infer_http(h, "chain", a, b).as_numpy("OUT0"), 2 * a)
    finally:
        h.close()
