"""Sequence batching end to end, with tritonclient's own sequence arguments (`sequence_id`,
`sequence_start`, `sequence_end`) over HTTP, gRPC unary and the gRPC ModelStreamInfer stream.

The example models (configs/models, see scripts/models/simple_models.py):
- simple_sequence: OUTPUT = (INPUT + START) * READY, one instance, `direct`;
- simple_dyna_sequence: OUTPUT = (INPUT + START + END * CORRID) * READY, CORRID a UINT64 the
  graph casts to INT32, `oldest`, two instances;
- sequence_accumulator: implicit state kept by the server, OUTPUT = the running sum of INPUT
  since START, one instance, max_batch_size 8 (eight sequence slots).

Config variants (short idle timeout, a single slot) run on their own servers. Every wait is
bounded: a hung server fails the test, not the run.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import e2e_util as u

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 20.0  # one request, one thread
PROTOS = ["http", "grpc", "stream"]
EXPLICIT = "--model-control-mode=explicit"
# What an error's status() is, by protocol (a stream's errors carry none).
INVALID = {"http": "400", "grpc": "StatusCode.INVALID_ARGUMENT", "stream": None}
BIG = 2**63 + 5


def missing_id(model: str) -> str:
    return f"inference request to model '{model}' must specify a non-zero or non-empty correlation ID"


def no_start(model: str, sid) -> str:
    return (f"inference request for sequence {sid} to model '{model}' must specify the START "
            "flag on the first request of the sequence")


def wire_id(proto: str, sid):
    """The id as the protocol carries it: gRPC's int64_param holds uint64 ids of 2^63 and up
    as negative numbers (Triton takes the bits; tritonclient refuses ints above 2^63-1)."""
    if proto != "http" and isinstance(sid, int) and sid >= 2**63:
        return sid - 2**64
    return sid


class Client:
    """One protocol with one call shape: infer(model, id, value, start, end) -> OUTPUT."""

    def __init__(self, srv: u.Server, proto: str):
        self.proto = proto
        self.mod = httpclient if proto == "http" else grpcclient
        if proto == "http":
            self.c = httpclient.InferenceServerClient(srv.hostport, connection_timeout=TIMEOUT,
                                                      network_timeout=TIMEOUT)
        else:
            self.c = grpcclient.InferenceServerClient(srv.grpc_hostport)
        self.replies: queue.Queue | None = None
        self.n = 0
        if proto == "stream":
            self.replies = queue.Queue()
            self.c.start_stream(callback=lambda result, error: self.replies.put((result, error)))

    def _inputs(self, value: int):
        i = self.mod.InferInput("INPUT", [1, 1], "INT32")
        i.set_data_from_numpy(np.array([[value]], dtype=np.int32))
        return [i]

    def send(self, model: str, sid, value: int, start=False, end=False) -> str:
        """Stream only: sends without waiting; returns the request id."""
        self.n += 1
        rid = f"req-{self.n}"
        self.c.async_stream_infer(model, self._inputs(value), request_id=rid,
                                  sequence_id=wire_id(self.proto, sid), sequence_start=start,
                                  sequence_end=end)
        return rid

    def receive(self):
        try:
            result, error = self.replies.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no stream response within {TIMEOUT} s") from None
        if error is not None:
            raise error
        return result

    def infer(self, model: str, sid, value: int, start=False, end=False) -> int:
        kw = dict(sequence_id=wire_id(self.proto, sid), sequence_start=start, sequence_end=end)
        if self.proto == "http":
            result = self.c.infer(model, self._inputs(value), **kw)
        elif self.proto == "grpc":
            result = self.c.infer(model, self._inputs(value), client_timeout=TIMEOUT, **kw)
        else:
            self.send(model, sid, value, start, end)
            result = self.receive()
        out = result.as_numpy("OUTPUT")
        assert out.shape == (1, 1) and out.dtype == np.int32, (out.shape, out.dtype)
        return int(out[0, 0])

    def close(self):
        if self.proto == "stream":
            self.c.stop_stream()
        self.c.close()


@pytest.fixture
def connect():
    """Client(server, proto) factory; closes them all at the end."""
    made = []

    def make(srv: u.Server, proto: str) -> Client:
        c = Client(srv, proto)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def error_of(call, *args, **kw) -> tuple[str | None, str]:
    """(status, message) of the InferenceServerException a call raises."""
    with pytest.raises(InferenceServerException) as e:
        call(*args, **kw)
    return e.value.status(), e.value.message()


def running_sums(values):
    return [int(x) for x in np.cumsum(values)]


def variant(repo, name: str, source: str, **changes) -> None:
    """A copy of an example model under another name, with text substitutions in its config."""
    text = u.read_pbtxt(source).replace(f'name: "{source}"', f'name: "{name}"')
    for old, new in changes.values():
        assert old in text, old
        text = text.replace(old, new)
    u.add_model_with_config(repo, name, text, onnx_from=source)


def one_slot(repo, name: str = "acc_one", idle_us: int | None = None) -> None:
    """sequence_accumulator with a single slot (one instance, max_batch_size 1)."""
    changes = {"mbs": ("max_batch_size: 8", "max_batch_size: 1")}
    if idle_us is not None:
        changes["idle"] = ("max_sequence_idle_microseconds: 5000000",
                           f"max_sequence_idle_microseconds: {idle_us}")
    variant(repo, name, "sequence_accumulator", **changes)


# --- simple_sequence: the control inputs -----------------------------------------------------

@pytest.mark.parametrize("proto", PROTOS)
def test_simple_sequence_start_and_ready(server, connect, proto):
    c = connect(server, proto)
    values = [0, 5, -3, 11, 7]
    sid = 1000 + PROTOS.index(proto)
    # Three times over with the same id: a new START is taken as soon as the END is answered.
    for _ in range(3):
        got = [c.infer("simple_sequence", sid, v, start=i == 0, end=i == len(values) - 1)
               for i, v in enumerate(values)]
        assert got == [values[0] + 1] + values[1:], got
    # START and END on one request.
    assert c.infer("simple_sequence", sid, 41, start=True, end=True) == 42


def test_stream_pipelined_sequence_runs_in_order(server, connect):
    """Requests sent back to back on one stream, without waiting: they run in order."""
    c = connect(server, "stream")
    values = list(range(1, 21))
    ids = [c.send("sequence_accumulator", 3001, v, start=i == 0, end=i == len(values) - 1)
           for i, v in enumerate(values)]
    got = {}
    for _ in values:
        r = c.receive()
        got[r.get_response().id] = int(r.as_numpy("OUTPUT")[0, 0])
    assert [got[i] for i in ids] == running_sums(values)


# --- sequence_accumulator: implicit state per sequence ---------------------------------------

@pytest.mark.parametrize("proto", PROTOS)
def test_accumulator_interleaved_sequences_keep_their_own_state(server, connect, proto):
    """Four sequences (uint64 ids, a large one, string ids), each on its own thread and
    client, their requests round-robin (a barrier per round): each gets its own running sum."""
    tag = PROTOS.index(proto)
    ids = [17 + tag, BIG + tag, f"seq-a-{proto}", f"seq-b-{proto}"]
    rounds = 6
    values = {k: [(k + 1) * 10 + j * (k + 2) for j in range(rounds)] for k in range(len(ids))}
    barrier = threading.Barrier(len(ids), timeout=TIMEOUT)
    clients = [connect(server, proto) for _ in ids]

    def run(k):
        got = []
        for j, v in enumerate(values[k]):
            barrier.wait()
            got.append(clients[k].infer("sequence_accumulator", ids[k], v, start=j == 0,
                                        end=j == rounds - 1))
        return got

    with ThreadPoolExecutor(len(ids)) as pool:
        futures = [pool.submit(run, k) for k in range(len(ids))]
        results = [f.result(timeout=2 * TIMEOUT) for f in futures]
    for k, got in enumerate(results):
        assert got == running_sums(values[k]), (ids[k], got)


def test_one_sequence_across_protocols(server, connect):
    """A uint64 id of 2^63 and up is one sequence whether it comes as a JSON number (HTTP) or
    as the negative int64_param of the same bits (gRPC, Triton's way)."""
    http, grpc, stream = (connect(server, p) for p in PROTOS)
    sid = 2**64 - 1
    assert http.infer("sequence_accumulator", sid, 5, start=True) == 5
    assert grpc.infer("sequence_accumulator", sid, 6) == 11
    assert stream.infer("sequence_accumulator", sid, 7) == 18
    assert http.infer("sequence_accumulator", sid, 1, end=True) == 19
    assert error_of(grpc.infer, "sequence_accumulator", sid, 1)[1] == no_start(
        "sequence_accumulator", sid)


def test_accumulator_many_sequences_in_parallel(server, connect):
    """More sequences than slots (eight): the rest wait for a slot, and every sum is right."""
    n, steps = 12, 5

    def run(k):
        c = Client(server, "grpc")
        try:
            vals = [k * 3 + j for j in range(steps)]
            got = [c.infer("sequence_accumulator", 5000 + k, v, start=j == 0, end=j == steps - 1)
                   for j, v in enumerate(vals)]
            return got, running_sums(vals)
        finally:
            c.close()

    with ThreadPoolExecutor(n) as pool:
        for f in [pool.submit(run, k) for k in range(n)]:
            got, want = f.result(timeout=2 * TIMEOUT)
            assert got == want


# --- simple_dyna_sequence: END and CORRID ----------------------------------------------------

@pytest.mark.parametrize("proto", PROTOS)
def test_dyna_sequence_end_adds_the_correlation_id(server, connect, proto):
    c = connect(server, proto)
    sid = 1_000_003 + PROTOS.index(proto)
    got = [c.infer("simple_dyna_sequence", sid, 2, start=True),
           c.infer("simple_dyna_sequence", sid, 3),
           c.infer("simple_dyna_sequence", sid, 4, end=True)]
    assert got == [3, 3, 4 + sid]
    # START and END together: INPUT + 1 + CORRID.
    assert c.infer("simple_dyna_sequence", 77, 1, start=True, end=True) == 79
    # The graph keeps CORRID's low 32 bits (its config says so): 2^32 + 7 ends with + 7.
    assert c.infer("simple_dyna_sequence", 2**32 + 7, 10, start=True, end=True) == 18


def test_dyna_sequences_on_two_instances(server, connect):
    """Six sequences at once over the two instances (`oldest`): every END adds its own id."""
    def run(k):
        c = Client(server, "grpc")
        try:
            sid = 60_000 + k
            got = [c.infer("simple_dyna_sequence", sid, k + j, start=j == 0, end=j == 3)
                   for j in range(4)]
            assert got == [k + 1, k + 1, k + 2, k + 3 + sid], (sid, got)
        finally:
            c.close()

    with ThreadPoolExecutor(6) as pool:
        for f in [pool.submit(run, k) for k in range(6)]:
            f.result(timeout=2 * TIMEOUT)


# --- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("proto", PROTOS)
def test_sequence_errors(server, connect, proto):
    c = connect(server, proto)
    tag = PROTOS.index(proto)
    m = "simple_sequence"

    def check(result, message):
        status, got = result
        assert got == message
        if INVALID[proto]:
            assert status == INVALID[proto], (status, got)

    # No correlation id (tritonclient leaves the parameters out for id 0).
    check(error_of(c.infer, m, 0, 1, start=True), missing_id(m))
    check(error_of(c.infer, "sequence_accumulator", 0, 1), missing_id("sequence_accumulator"))
    # Not START, unknown id (numbers and strings).
    check(error_of(c.infer, m, 990_001 + tag, 1), no_start(m, 990_001 + tag))
    check(error_of(c.infer, m, f"nobody-{proto}", 1, end=True), no_start(m, f"nobody-{proto}"))

    # START for a sequence that is running: as in Triton, the sequence starts again in its
    # slot, from the initial state (the server logs a warning).
    sid = 990_100 + tag
    assert c.infer("sequence_accumulator", sid, 4, start=True) == 4
    assert c.infer("sequence_accumulator", sid, 5) == 9
    assert c.infer("sequence_accumulator", sid, 100, start=True) == 100
    assert c.infer("sequence_accumulator", sid, 5) == 105
    assert c.infer("sequence_accumulator", sid, 6, end=True) == 111
    # After the END the id is unknown again.
    check(error_of(c.infer, "sequence_accumulator", sid, 1), no_start("sequence_accumulator", sid))
    check(error_of(c.infer, "sequence_accumulator", sid, 1, end=True),
          no_start("sequence_accumulator", sid))

    # A string id where CORRID is a number.
    status, message = error_of(c.infer, "simple_dyna_sequence", f"s-{proto}", 1, start=True)
    assert "CORRID" in message and "TYPE_UINT64" in message and f"s-{proto}" in message, message
    if INVALID[proto]:
        assert status == INVALID[proto]


# --- idle sequences --------------------------------------------------------------------------

def test_idle_sequence_is_released(ferrite, connect):
    repo = ferrite.repo()
    variant(repo, "acc_idle", "sequence_accumulator",
            idle=("max_sequence_idle_microseconds: 5000000",
                  "max_sequence_idle_microseconds: 200000"))
    one_slot(repo, "acc_idle_one", idle_us=200000)
    srv = ferrite.start([repo])
    c = connect(srv, "grpc")

    assert c.infer("acc_idle", 1, 5, start=True) == 5
    time.sleep(0.6)
    assert error_of(c.infer, "acc_idle", 1, 1)[1] == no_start("acc_idle", 1)
    # A new START starts from the initial state.
    assert c.infer("acc_idle", 1, 2, start=True) == 2

    # Idle time counts from the last request, not from START: 0.5 s of requests 80 ms apart.
    values = [1, 2, 3, 4, 5, 6, 7]
    got = []
    for i, v in enumerate(values):
        got.append(c.infer("acc_idle", 2, v, start=i == 0))
        time.sleep(0.08)
    assert got == running_sums(values)

    # A sequence that waits for the only slot gets it when the holder goes idle.
    other = connect(srv, "http")
    assert c.infer("acc_idle_one", 10, 1, start=True) == 1
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(other.infer, "acc_idle_one", 11, 7, True)
        assert waiting.result(timeout=5) == 7
    assert error_of(c.infer, "acc_idle_one", 10, 1)[1] == no_start("acc_idle_one", 10)
    assert c.infer("acc_idle_one", 11, 1, end=True) == 8


def test_initial_state_from_a_data_file(ferrite, connect):
    """initial_state { data_file } (Triton: row-major bytes in <model>/initial_state/): every
    sequence starts from it, also after the model's other sequences moved their state on."""
    repo = ferrite.repo()
    # The graph resets its sum on START (ACC_IN * (1 - START)); with START sent as 0 either
    # way, the state it starts from is only the server's initial state.
    variant(repo, "acc_hundred", "sequence_accumulator",
            init=("zero_data: true", 'data_file: "hundred.bin"'),
            start=("int32_false_true: [ 0, 1 ]", "int32_false_true: [ 0, 0 ]"))
    (repo / "acc_hundred" / "initial_state").mkdir()
    (repo / "acc_hundred" / "initial_state" / "hundred.bin").write_bytes(
        np.array([100], dtype=np.int32).tobytes())
    # A file of the wrong size: the model does not load, and says why.
    variant(repo, "acc_short", "sequence_accumulator",
            init=("zero_data: true", 'data_file: "short.bin"'))
    (repo / "acc_short" / "initial_state").mkdir()
    (repo / "acc_short" / "initial_state" / "short.bin").write_bytes(b"\x01\x00")
    srv = ferrite.start([repo], [EXPLICIT, "--load-model=acc_hundred"])
    c = connect(srv, "grpc")
    assert c.infer("acc_hundred", 1, 5, start=True) == 105
    assert c.infer("acc_hundred", 2, 1, start=True) == 101
    assert c.infer("acc_hundred", 1, 5) == 110
    assert c.infer("acc_hundred", 1, 1, end=True) == 111
    assert c.infer("acc_hundred", 1, 3, start=True, end=True) == 103

    status, message = error_of(c.c.load_model, "acc_short", client_timeout=TIMEOUT)
    assert status == "StatusCode.INVALID_ARGUMENT", (status, message)
    assert "initial state" in message and "holds 2 bytes, but 1 elements of TYPE_INT32" in message, message


# --- slots -----------------------------------------------------------------------------------

def test_start_waits_for_a_free_slot(ferrite, connect):
    repo = ferrite.repo()
    one_slot(repo)
    srv = ferrite.start([repo])
    a = connect(srv, "http")
    # gRPC for B: tritonclient's HTTP client must stay on the thread that first used it.
    b = connect(srv, "grpc")
    assert a.infer("acc_one", 1, 1, start=True) == 1

    answered = {}

    def run_b():
        got = b.infer("acc_one", 2, 10, start=True)
        answered["at"] = time.monotonic()
        return got

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(run_b)
        time.sleep(0.5)
        assert not waiting.done(), f"B did not wait for the slot: {waiting.result()}"
        # A carries on while B waits.
        assert a.infer("acc_one", 1, 2) == 3
        assert not waiting.done()
        end_sent = time.monotonic()
        assert a.infer("acc_one", 1, 3, end=True) == 6
        assert waiting.result(timeout=TIMEOUT) == 10
    assert answered["at"] > end_sent
    assert b.infer("acc_one", 2, 5) == 15
    assert b.infer("acc_one", 2, 1, end=True) == 16
    # The slot is free again.
    assert a.infer("acc_one", 1, 4, start=True, end=True) == 4


# --- unload ----------------------------------------------------------------------------------

def test_unload_with_an_open_sequence(ferrite, connect):
    repo = ferrite.repo("sequence_accumulator")
    srv = ferrite.start([repo], [EXPLICIT, "--load-model=sequence_accumulator"])
    c = connect(srv, "grpc")
    m = "sequence_accumulator"
    assert c.infer(m, 5, 3, start=True) == 3
    assert c.infer(m, 5, 4) == 7
    t = time.monotonic()
    c.c.unload_model(m, client_timeout=TIMEOUT)
    assert time.monotonic() - t < 5.0, "the unload waited for the open sequence"
    deadline = time.monotonic() + 10
    while c.c.is_model_ready(m):
        assert time.monotonic() < deadline, "the model is still ready after its unload"
        time.sleep(0.05)
    status, _ = error_of(c.infer, m, 5, 1)
    assert status == "StatusCode.UNAVAILABLE"

    c.c.load_model(m, client_timeout=TIMEOUT)
    # The reloaded model knows no sequence: the old id needs START again.
    assert error_of(c.infer, m, 5, 1)[1] == no_start(m, 5)
    assert c.infer(m, 5, 2, start=True) == 2
    assert c.infer(m, 5, 3, end=True) == 5


def test_unload_answers_a_sequence_waiting_for_a_slot(ferrite, connect):
    repo = ferrite.repo()
    one_slot(repo)
    srv = ferrite.start([repo], [EXPLICIT, "--load-model=acc_one"])
    a = connect(srv, "http")
    b = connect(srv, "grpc")
    assert a.infer("acc_one", 1, 1, start=True) == 1
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(b.infer, "acc_one", 2, 10, True)
        time.sleep(0.3)
        assert not waiting.done()
        t = time.monotonic()
        a.c.unload_model("acc_one")
        assert time.monotonic() - t < 3.0, "the unload waited for the sequence without a slot"
        with pytest.raises(InferenceServerException) as e:
            waiting.result(timeout=5)
    assert e.value.status() == "StatusCode.UNAVAILABLE", e.value.message()
    assert "unloading" in e.value.message(), e.value.message()


# --- ensembles of a sequence model ---------------------------------------------------------------

ACC_ENSEMBLE = """name: "acc_ensemble"
platform: "ensemble"
max_batch_size: 8
input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
ensemble_scheduling { step [ { model_name: "sequence_accumulator" model_version: -1
  input_map { key: "INPUT" value: "INPUT" } output_map { key: "OUTPUT" value: "OUTPUT" } } ] }
"""


@pytest.mark.parametrize("proto", PROTOS)
def test_an_ensemble_passes_its_sequence_to_the_step(ferrite, connect, proto):
    # Triton gives each step the ensemble request's correlation id, flags and parameters, so
    # the accumulator keeps one running sum per sequence behind the ensemble too; a step model
    # that sets no sequence parameters in its responses leaves the ensemble's without them.
    repo = ferrite.repo("sequence_accumulator")
    (repo / "acc_ensemble" / "1").mkdir(parents=True)
    (repo / "acc_ensemble" / "config.pbtxt").write_text(ACC_ENSEMBLE)
    srv = ferrite.start([repo])
    a, b = connect(srv, proto), connect(srv, proto)
    got_a, got_b = [], []
    for j, (va, vb) in enumerate([(1, 10), (2, 20), (3, 30)]):
        last = j == 2
        got_a.append(a.infer("acc_ensemble", 71, va, start=j == 0, end=last))
        got_b.append(b.infer("acc_ensemble", "seq-b", vb, start=j == 0, end=last))
    assert (got_a, got_b) == ([1, 3, 6], [10, 30, 60])
    if proto == "stream":
        a.send("acc_ensemble", 72, 5, start=True, end=True)
        response = a.receive().get_response()
        sequence_keys = {"sequence_id", "sequence_start", "sequence_end"}
        assert not sequence_keys & set(response.parameters), response.parameters
    # A request of the ensemble without a sequence id is refused by the step, named.
    code, message = error_of(a.infer, "acc_ensemble", 0, 1)
    assert "in ensemble 'acc_ensemble', step 0 (model 'sequence_accumulator')" in message, message


# --- the direct strategy's batches, as Triton's statistics show them --------------------------

def test_direct_batches_keep_each_sequence_in_its_slot(ferrite, connect):
    # Triton's DirectSequenceBatch: a batch has a row for every slot up to the last one with a
    # request ready; an idle slot below it gets a null request (READY false) that no request
    # statistic counts but the execution's batch size does.
    repo = ferrite.repo("simple_sequence")
    srv = ferrite.start([repo])
    c = connect(srv, "http")
    assert c.infer("simple_sequence", 101, 5, start=True) == 6  # slot 0: batch of 1
    assert c.infer("simple_sequence", 102, 7, start=True) == 8  # slot 1: [null, 102]
    assert c.infer("simple_sequence", 102, 9) == 9              # [null, 102] again
    assert c.infer("simple_sequence", 101, 4, end=True) == 4    # slot 0: batch of 1
    h = httpclient.InferenceServerClient(srv.hostport)
    stats = h.get_inference_statistics("simple_sequence")["model_stats"][0]
    assert (int(stats["inference_count"]), int(stats["execution_count"])) == (4, 4)
    sizes = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats["batch_stats"]}
    assert sizes == {1: 2, 2: 2}, stats["batch_stats"]
    assert int(stats["inference_stats"]["success"]["count"]) == 4
    h.close()


def test_oldest_batches_as_a_dynamic_batcher_over_its_sequences(ferrite, connect):
    # Triton's OldestSequenceBatch runs a dynamic batcher over the candidate sequences' next
    # requests: two sequences' requests that arrive together make one preferred batch of 2,
    # and a lone request waits out the delay (a preferred batch may still form).
    repo = ferrite.repo()
    variant(repo, "dyna_pair", "simple_dyna_sequence",
            pref=("preferred_batch_size: [ 2, 4 ]", "preferred_batch_size: [ 2 ]"),
            delay=("max_queue_delay_microseconds: 1000", "max_queue_delay_microseconds: 300000"),
            instances=("count: 2", "count: 1"))
    srv = ferrite.start([repo])
    clients = [connect(srv, "grpc") for _ in range(2)]
    barrier = threading.Barrier(2, timeout=TIMEOUT)

    def run(k):
        out = []
        for j in range(3):
            barrier.wait()
            out.append(clients[k].infer("dyna_pair", 500 + k, 10 * k + j, start=j == 0, end=j == 2))
        return out

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, range(2)))
    # (INPUT + START + END * CORRID) * READY
    assert results == [[1, 1, 502], [11, 11, 513]], results
    h = httpclient.InferenceServerClient(srv.hostport)
    stats = h.get_inference_statistics("dyna_pair")["model_stats"][0]
    assert (int(stats["inference_count"]), int(stats["execution_count"])) == (6, 3), stats
    assert [int(b["batch_size"]) for b in stats["batch_stats"]] == [2], stats["batch_stats"]
    # Alone, a request waits for the delay before it runs.
    started = time.monotonic()
    assert clients[0].infer("dyna_pair", 600, 1, start=True, end=True) == 602
    assert time.monotonic() - started >= 0.25
    h.close()


@pytest.mark.parametrize("proto", ["http", "grpc"])
def test_a_sequence_request_of_more_than_one_row_is_refused(server, proto):
    mod = httpclient if proto == "http" else grpcclient
    c = (httpclient.InferenceServerClient(server.hostport) if proto == "http"
         else grpcclient.InferenceServerClient(server.grpc_hostport))
    i = mod.InferInput("INPUT", [2, 1], "INT32")
    i.set_data_from_numpy(np.array([[1], [2]], dtype=np.int32))
    with pytest.raises(InferenceServerException) as e:
        c.infer("sequence_accumulator", [i], sequence_id=900, sequence_start=True)
    assert ("inference request to model 'sequence_accumulator' must specify batch-size 1 due to "
            "requirements of sequence batcher") in e.value.message()
    c.close()
