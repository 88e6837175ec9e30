"""A tensor whose shape is unknown (downstream of an op archcalc cannot model) still has the
dtype its op's schema gives (ONNX's type inference: Shape int64, IsNaN bool, QuantizeLinear
its zero point's), and one that nothing types is said to be unknown, never float32.

Before, every such tensor was reported float32.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from archcalc.engine.inference import analyze
from archcalc.readers.onnx import load_onnx


def test_shapeless_tensors_keep_their_schema_dtype(tmp_path):
    nodes = [helper.make_node("Mystery", ["x"], ["m"], name="mystery", domain="com.example"),
             helper.make_node("Shape", ["m"], ["s"], name="shape"),
             helper.make_node("IsNaN", ["m"], ["n"], name="isnan"),
             helper.make_node("QuantizeLinear", ["m", "scale", "zero"], ["q"], name="quantize")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [onnx.ValueInfoProto(name=name) for name in ("s", "n", "q")],
        [numpy_helper.from_array(np.array(0.1, np.float32), "scale"),
         numpy_helper.from_array(np.array(3, np.uint8), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    model.ir_version = 10
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    analysis = analyze(load_onnx(str(path)))
    assert {name: (analysis.tensors[name].shape, analysis.tensors[name].dtype) for name in "msnq"} == {
        "m": (None, "unknown"), "s": (None, "int64"), "n": (None, "bool"), "q": (None, "uint8")}
    # the layers list the same: an unknown input of Shape is unknown, not float32
    assert [(t.name, t.dtype) for t in analysis.layer("shape").inputs] == [("m", "unknown")]
    assert [(t.name, t.dtype) for t in analysis.layer("quantize").outputs] == [("q", "uint8")]
