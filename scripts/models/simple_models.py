"""The small ONNX models of the example repository, after Triton's ``simple*`` examples.

* ``simple``          INPUT0, INPUT1 INT32 [batch, 16] -> OUTPUT0 = INPUT0 + INPUT1,
                      OUTPUT1 = INPUT0 - INPUT1
* ``simple_int8``     the same in INT8 (wrapping two's-complement arithmetic)
* ``simple_string``   the same on decimal strings: Cast string -> int32, Add/Sub,
                      Cast int32 -> string
* ``simple_identity`` INPUT0 STRING [batch, n] -> OUTPUT0 (Identity)

Stateful (sequence batching) models, after Triton's sequence examples.  An ONNX
graph keeps no state of its own: the server feeds the sequence control inputs
(``control_input`` in config.pbtxt) and, for implicit state, the state tensor.
All tensors are INT32 [batch, 1] unless said otherwise.

* ``simple_sequence``      INPUT, START, READY -> OUTPUT = (INPUT + START) * READY
* ``simple_dyna_sequence`` INPUT, START, END, READY, CORRID (UINT64)
                           -> OUTPUT = (INPUT + START + END * int32(CORRID)) * READY;
                           CORRID is Cast to INT32, so ids of 2^31 and above wrap
                           (modulo 2^32, two's complement: 2^31 -> -2^31, 2^32 + 7 -> 7)
* ``sequence_accumulator`` INPUT, START, ACC_IN (implicit state) -> ACC_OUT =
                           ACC_IN * (1 - START) + INPUT, OUTPUT = ACC_OUT
                           (a running sum: 1, 2, 3 gives 1, 3, 6)

Each builder also has a ``check_*`` function that runs the model with
onnxruntime and compares with numpy.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

# Add/Sub accept int8 from opset 14 on; use 14 for all the small models.
OPSET = 14
IR_VERSION = 8
WIDTH = 16


def _model(name: str, nodes, inputs, outputs, doc: str) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="ferrite-build-examples")
    model.ir_version = IR_VERSION
    model.doc_string = doc
    onnx.checker.check_model(model, full_check=True)
    return model


def _io(names, elem_type, shape):
    return [helper.make_tensor_value_info(n, elem_type, shape) for n in names]


def add_sub(name: str, elem_type: int) -> onnx.ModelProto:
    """INPUT0, INPUT1 [batch, 16] -> OUTPUT0 = sum, OUTPUT1 = difference."""
    shape = ["batch", WIDTH]
    nodes = [
        helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"], name="add"),
        helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"], name="sub"),
    ]
    return _model(name, nodes, _io(["INPUT0", "INPUT1"], elem_type, shape),
                  _io(["OUTPUT0", "OUTPUT1"], elem_type, shape),
                  "OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1")


def simple() -> onnx.ModelProto:
    return add_sub("simple", TensorProto.INT32)


def simple_int8() -> onnx.ModelProto:
    return add_sub("simple_int8", TensorProto.INT8)


def simple_string() -> onnx.ModelProto:
    shape = ["batch", WIDTH]
    nodes = [
        helper.make_node("Cast", ["INPUT0"], ["in0_int"], name="parse0", to=TensorProto.INT32),
        helper.make_node("Cast", ["INPUT1"], ["in1_int"], name="parse1", to=TensorProto.INT32),
        helper.make_node("Add", ["in0_int", "in1_int"], ["sum_int"], name="add"),
        helper.make_node("Sub", ["in0_int", "in1_int"], ["diff_int"], name="sub"),
        helper.make_node("Cast", ["sum_int"], ["OUTPUT0"], name="format0", to=TensorProto.STRING),
        helper.make_node("Cast", ["diff_int"], ["OUTPUT1"], name="format1", to=TensorProto.STRING),
    ]
    return _model("simple_string", nodes, _io(["INPUT0", "INPUT1"], TensorProto.STRING, shape),
                  _io(["OUTPUT0", "OUTPUT1"], TensorProto.STRING, shape),
                  "decimal strings: OUTPUT0 = str(int(INPUT0) + int(INPUT1)), "
                  "OUTPUT1 = str(int(INPUT0) - int(INPUT1))")


def simple_identity() -> onnx.ModelProto:
    shape = ["batch", "n"]
    nodes = [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"], name="identity")]
    return _model("simple_identity", nodes, _io(["INPUT0"], TensorProto.STRING, shape),
                  _io(["OUTPUT0"], TensorProto.STRING, shape), "OUTPUT0 = INPUT0 (strings)")


SEQ_SHAPE = ["batch", 1]


def simple_sequence() -> onnx.ModelProto:
    """INPUT, START, READY INT32 [batch, 1] -> OUTPUT = (INPUT + START) * READY."""
    nodes = [
        helper.make_node("Add", ["INPUT", "START"], ["started"], name="add_start"),
        helper.make_node("Mul", ["started", "READY"], ["OUTPUT"], name="mul_ready"),
    ]
    return _model("simple_sequence", nodes,
                  _io(["INPUT", "START", "READY"], TensorProto.INT32, SEQ_SHAPE),
                  _io(["OUTPUT"], TensorProto.INT32, SEQ_SHAPE),
                  "OUTPUT = (INPUT + START) * READY; START and READY are sequence "
                  "control inputs (0 or 1) the server supplies")


def simple_dyna_sequence() -> onnx.ModelProto:
    """INPUT, START, END, READY INT32 and CORRID UINT64 [batch, 1] ->
    OUTPUT = (INPUT + START + END * int32(CORRID)) * READY."""
    nodes = [
        # uint64 -> int32 keeps the low 32 bits: ids of 2^31 and above wrap
        helper.make_node("Cast", ["CORRID"], ["corrid_i32"], name="corrid_to_int32",
                         to=TensorProto.INT32),
        helper.make_node("Add", ["INPUT", "START"], ["started"], name="add_start"),
        helper.make_node("Mul", ["END", "corrid_i32"], ["end_corrid"], name="mul_end_corrid"),
        helper.make_node("Add", ["started", "end_corrid"], ["summed"], name="add_end_corrid"),
        helper.make_node("Mul", ["summed", "READY"], ["OUTPUT"], name="mul_ready"),
    ]
    inputs = _io(["INPUT", "START", "END", "READY"], TensorProto.INT32, SEQ_SHAPE)
    inputs += _io(["CORRID"], TensorProto.UINT64, SEQ_SHAPE)
    return _model("simple_dyna_sequence", nodes, inputs,
                  _io(["OUTPUT"], TensorProto.INT32, SEQ_SHAPE),
                  "OUTPUT = (INPUT + START + END * int32(CORRID)) * READY; START, END, READY "
                  "(0 or 1) and CORRID (uint64, cast to int32: ids >= 2^31 wrap) are sequence "
                  "control inputs the server supplies")


def sequence_accumulator() -> onnx.ModelProto:
    """INPUT, START, ACC_IN INT32 [batch, 1] -> ACC_OUT = ACC_IN * (1 - START) + INPUT,
    OUTPUT = ACC_OUT."""
    one = helper.make_tensor("one", TensorProto.INT32, [1], [1])
    nodes = [
        helper.make_node("Constant", [], ["one"], name="one", value=one),
        helper.make_node("Sub", ["one", "START"], ["keep"], name="keep"),
        helper.make_node("Mul", ["ACC_IN", "keep"], ["kept"], name="mul_keep"),
        helper.make_node("Add", ["kept", "INPUT"], ["ACC_OUT"], name="accumulate"),
        helper.make_node("Identity", ["ACC_OUT"], ["OUTPUT"], name="output"),
    ]
    return _model("sequence_accumulator", nodes,
                  _io(["INPUT", "START", "ACC_IN"], TensorProto.INT32, SEQ_SHAPE),
                  _io(["OUTPUT", "ACC_OUT"], TensorProto.INT32, SEQ_SHAPE),
                  "running sum: ACC_OUT = (START ? 0 : ACC_IN) + INPUT = ACC_IN * (1 - START) "
                  "+ INPUT, OUTPUT = ACC_OUT; START is a sequence control input (0 or 1), "
                  "ACC_IN/ACC_OUT the implicit state the server carries between requests")


BUILDERS = {
    "simple": simple,
    "simple_int8": simple_int8,
    "simple_string": simple_string,
    "simple_identity": simple_identity,
    "simple_sequence": simple_sequence,
    "simple_dyna_sequence": simple_dyna_sequence,
    "sequence_accumulator": sequence_accumulator,
}


# ---------------------------------------------------------------- verification

def _session(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _expect_equal(what: str, got, want):
    got = np.asarray(got)
    want = np.asarray(want)
    if got.shape != want.shape or got.dtype.kind != want.dtype.kind or not np.array_equal(got, want):
        raise AssertionError(f"{what}: got {got!r}, expected {want!r}")


def check_add_sub(path, dtype) -> None:
    sess = _session(path)
    info = np.iinfo(dtype)
    # int8: the full range, overflow wraps (int8 Add/Sub are computed via int and
    # truncated); int32: stay clear of overflow, which is undefined in C++
    lo, hi = (info.min, info.max) if info.bits == 8 else (-(2**30), 2**30 - 1)
    rng = np.random.default_rng(1234)
    cases = [  # the values of Triton's simple_client (0..15 and 1), then random ones
        (np.arange(WIDTH, dtype=dtype)[None], np.ones((1, WIDTH), dtype=dtype)),
    ] + [
        tuple(rng.integers(lo, hi, size=(batch, WIDTH), endpoint=True).astype(dtype)
              for _ in range(2))
        for batch in (3, 8)
    ]
    for a, b in cases:
        batch = a.shape[0]
        out0, out1 = sess.run(["OUTPUT0", "OUTPUT1"], {"INPUT0": a, "INPUT1": b})
        with np.errstate(over="ignore"):
            want0 = (a.astype(np.int64) + b).astype(dtype)  # two's-complement wrap
            want1 = (a.astype(np.int64) - b).astype(dtype)
        _expect_equal(f"{path} OUTPUT0 batch {batch}", out0, want0)
        _expect_equal(f"{path} OUTPUT1 batch {batch}", out1, want1)


def check_simple(path) -> None:
    check_add_sub(path, np.int32)


def check_simple_int8(path) -> None:
    check_add_sub(path, np.int8)


def check_simple_string(path) -> None:
    sess = _session(path)
    rng = np.random.default_rng(99)
    cases = [
        (np.arange(WIDTH)[None], np.ones((1, WIDTH), dtype=np.int64)),
        (rng.integers(-1_000_000, 1_000_000, size=(4, WIDTH)),
         rng.integers(-1_000_000, 1_000_000, size=(4, WIDTH))),
    ]
    for a, b in cases:
        sa = np.array([[str(int(v)) for v in row] for row in a], dtype=object)
        sb = np.array([[str(int(v)) for v in row] for row in b], dtype=object)
        out0, out1 = sess.run(["OUTPUT0", "OUTPUT1"], {"INPUT0": sa, "INPUT1": sb})
        want0 = np.array([[str(int(x + y)) for x, y in zip(r, s)] for r, s in zip(a, b)], dtype=object)
        want1 = np.array([[str(int(x - y)) for x, y in zip(r, s)] for r, s in zip(a, b)], dtype=object)
        _expect_equal(f"{path} OUTPUT0", out0, want0)
        _expect_equal(f"{path} OUTPUT1", out1, want1)


def check_simple_identity(path) -> None:
    sess = _session(path)
    for value in (
        [["hello"]],
        [["a", "", "ümlaut ✓"], ["x" * 300, "with space", "tab\tand\nnewline"]],
    ):
        x = np.array(value, dtype=object)
        (out,) = sess.run(["OUTPUT0"], {"INPUT0": x})
        _expect_equal(f"{path} OUTPUT0", out, x)


def _i32(rows) -> np.ndarray:
    return np.array(rows, dtype=np.int32).reshape(-1, 1)


def _check_signature(path, sess, inputs: dict, outputs: dict) -> None:
    """inputs/outputs: name -> onnxruntime type string; every shape [batch, 1]."""
    for what, got, want in (("inputs", sess.get_inputs(), inputs),
                            ("outputs", sess.get_outputs(), outputs)):
        have = {a.name: (a.type, len(a.shape), a.shape[-1]) for a in got}
        expect = {n: (t, 2, 1) for n, t in want.items()}
        if have != expect:
            raise AssertionError(f"{path} {what}: got {have}, expected {expect}")


def check_simple_sequence(path) -> None:
    sess = _session(path)
    _check_signature(path, sess, {"INPUT": "tensor(int32)", "START": "tensor(int32)",
                                  "READY": "tensor(int32)"}, {"OUTPUT": "tensor(int32)"})
    cases = [  # (INPUT, START, READY) -> OUTPUT
        ([5], [1], [1], [6]),
        ([5], [0], [1], [5]),
        ([5], [1], [0], [0]),
        ([-7, 0, 2**30, 3], [0, 1, 0, 1], [1, 1, 1, 0], [-7, 1, 2**30, 0]),
    ]
    for x, start, ready, want in cases:
        (out,) = sess.run(["OUTPUT"], {"INPUT": _i32(x), "START": _i32(start), "READY": _i32(ready)})
        _expect_equal(f"{path} OUTPUT for INPUT={x} START={start} READY={ready}", out, _i32(want))


def check_simple_dyna_sequence(path) -> None:
    sess = _session(path)
    _check_signature(path, sess, {"INPUT": "tensor(int32)", "START": "tensor(int32)",
                                  "END": "tensor(int32)", "READY": "tensor(int32)",
                                  "CORRID": "tensor(uint64)"}, {"OUTPUT": "tensor(int32)"})
    cases = [  # (INPUT, START, END, CORRID, READY) -> OUTPUT
        ([5], [1], [1], [3], [1], [9]),
        ([5], [1], [1], [3], [0], [0]),
        ([5], [0], [0], [3], [1], [5]),
        ([5], [0], [1], [3], [1], [8]),
        # a batch; CORRID as int32: 2^31 -> -2^31, 2^32 + 7 -> 7, 2^64 - 1 -> -1
        ([0, 0, 10, 0, 4], [0, 0, 1, 0, 0], [1, 1, 1, 1, 0],
         [2**31 - 1, 2**31, 2**32 + 7, 2**64 - 1, 2**40], [1, 1, 1, 1, 1],
         [2**31 - 1, -(2**31), 18, -1, 4]),
    ]
    for x, start, end, corrid, ready, want in cases:
        feeds = {"INPUT": _i32(x), "START": _i32(start), "END": _i32(end),
                 "READY": _i32(ready),
                 "CORRID": np.array(corrid, dtype=np.uint64).reshape(-1, 1)}
        (out,) = sess.run(["OUTPUT"], feeds)
        _expect_equal(f"{path} OUTPUT for INPUT={x} START={start} END={end} "
                      f"CORRID={corrid} READY={ready}", out, _i32(want))


def check_sequence_accumulator(path) -> None:
    sess = _session(path)
    _check_signature(path, sess, {"INPUT": "tensor(int32)", "START": "tensor(int32)",
                                  "ACC_IN": "tensor(int32)"},
                     {"OUTPUT": "tensor(int32)", "ACC_OUT": "tensor(int32)"})
    cases = [  # (ACC_IN, INPUT, START) -> OUTPUT = ACC_OUT
        ([10], [2], [0], [12]),
        ([10], [2], [1], [2]),
        ([0, 5, -3], [7, -1, 4], [1, 0, 0], [7, 4, 1]),
    ]
    for acc, x, start, want in cases:
        out, acc_out = sess.run(["OUTPUT", "ACC_OUT"],
                                {"ACC_IN": _i32(acc), "INPUT": _i32(x), "START": _i32(start)})
        what = f"{path} for ACC_IN={acc} INPUT={x} START={start}"
        _expect_equal(f"{what} OUTPUT", out, _i32(want))
        _expect_equal(f"{what} ACC_OUT", acc_out, _i32(want))
    # a sequence as the server runs it: zero initial state, ACC_OUT fed back as ACC_IN
    acc, outputs = _i32([0]), []
    for i, x in enumerate([1, 2, 3]):
        out, acc = sess.run(["OUTPUT", "ACC_OUT"],
                            {"ACC_IN": acc, "INPUT": _i32([x]), "START": _i32([int(i == 0)])})
        outputs.append(int(out[0, 0]))
    if outputs != [1, 3, 6]:
        raise AssertionError(f"{path}: the sequence 1, 2, 3 gave {outputs}, expected [1, 3, 6]")


CHECKS = {
    "simple": check_simple,
    "simple_int8": check_simple_int8,
    "simple_string": check_simple_string,
    "simple_identity": check_simple_identity,
    "simple_sequence": check_simple_sequence,
    "simple_dyna_sequence": check_simple_dyna_sequence,
    "sequence_accumulator": check_sequence_accumulator,
}
