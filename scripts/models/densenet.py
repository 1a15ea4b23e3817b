"""Triton's quick-start model signature around the example classifier.

Triton's quick start serves ``densenet_onnx`` (docs/examples/model_repository): input
``data_0`` FP32 [1, 3, 224, 224], output ``fc6_1`` FP32 [1, 1000, 1, 1], with a
config.pbtxt that reshapes them to [3, 224, 224] and [1000] for clients.  Its ONNX file is
a download from the ONNX model zoo, which this offline build cannot fetch; this module
makes a model of exactly that signature from the EfficientNet-Lite0 classifier built
beside it (real ImageNet weights, the same 1000 classes in the same order), so that
Triton's config.pbtxt and labels serve unchanged:

    data_0 [1,3,224,224] --(EfficientNet-Lite0)--> logits [1,1000] --Reshape--> fc6_1 [1,1000,1,1]
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper, numpy_helper

import numpy as np

INPUT = "data_0"
OUTPUT = "fc6_1"
INPUT_SHAPE = [1, 3, 224, 224]
OUTPUT_SHAPE = [1, 1000, 1, 1]


def wrap(classifier: onnx.ModelProto) -> onnx.ModelProto:
    """The classifier (one input [batch, 3, 224, 224], one output [batch, 1000]) with Triton's
    densenet_onnx tensor names and shapes."""
    model = onnx.ModelProto()
    model.CopyFrom(classifier)
    graph = model.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ValueError("the classifier must have one input and one output")
    old_in, old_out = graph.input[0].name, graph.output[0].name
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old_in:
                node.input[i] = INPUT
    shape_name = "fc6_1.shape"
    graph.initializer.append(numpy_helper.from_array(np.array(OUTPUT_SHAPE, dtype=np.int64), shape_name))
    graph.node.append(helper.make_node("Reshape", [old_out, shape_name], [OUTPUT], name="fc6_1.reshape"))
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, INPUT_SHAPE))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, OUTPUT_SHAPE))
    graph.name = "densenet_onnx_signature"
    model.doc_string = ("Triton's densenet_onnx signature (data_0 [1,3,224,224] -> fc6_1 [1,1000,1,1]) "
                        "around EfficientNet-Lite0: " + classifier.doc_string)
    onnx.checker.check_model(model, full_check=True)
    return model
