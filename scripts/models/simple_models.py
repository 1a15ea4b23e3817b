"""The small ONNX models of the example repository, after Triton's ``simple*`` examples.

* ``simple``          INPUT0, INPUT1 INT32 [batch, 16] -> OUTPUT0 = INPUT0 + INPUT1,
                      OUTPUT1 = INPUT0 - INPUT1
* ``simple_int8``     the same in INT8 (wrapping two's-complement arithmetic)
* ``simple_string``   the same on decimal strings: Cast string -> int32, Add/Sub,
                      Cast int32 -> string
* ``simple_identity`` INPUT0 STRING [batch, n] -> OUTPUT0 (Identity)

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


BUILDERS = {
    "simple": simple,
    "simple_int8": simple_int8,
    "simple_string": simple_string,
    "simple_identity": simple_identity,
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


CHECKS = {
    "simple": check_simple,
    "simple_int8": check_simple_int8,
    "simple_string": check_simple_string,
    "simple_identity": check_simple_identity,
}
