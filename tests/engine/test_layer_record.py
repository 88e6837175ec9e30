"""Every field of the engine's per-layer record lands where LayerResult names it: the
engine builds it positionally, in the dataclass's field order (issue 16: a third of the
time keywords take), so a field added or moved there must move in the engine too."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save

from archcalc.core.results import AxisField
from archcalc.engine.inference import analyze
from archcalc.readers.onnx import load_onnx


def test_conv_layer_fields_by_name(tmp_path):
    # Conv 3 -> 4 channels, 3x3 kernel, pad 1, stride 1, on a 1x3x8x8 input, with a bias.
    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    bias = numpy_helper.from_array(np.ones(4, np.float32), "b")
    conv = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    graph = helper.make_graph([conv], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[weight, bias])
    path = tmp_path / "conv.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))

    layer, = analyze(load_onnx(str(path))).layers

    assert (layer.name, layer.op, layer.domain, layer.block, layer.parent) == ("conv1", "Conv", "", "", "")
    assert [t.name for t in layer.inputs] == ["x", "w", "b"] and [t.name for t in layer.outputs] == ["y"]
    assert layer.outputs[0].shape == (1, 4, 8, 8)
    # params: 4*3*3*3 weights + 4 biases = 112, all trainable; no buffers
    assert (layer.params, layer.trainable_params, layer.buffers) == (112, 112, 0)
    # MACs: each of the 4*8*8 = 256 outputs sums 3*3*3 = 27 products: 6,912; FLOPs 2 per MAC,
    # plus one bias add per output (256): 14,080
    assert (layer.macs, layer.flops, layer.integer_macs) == (6912, 2 * 6912 + 256, 0)
    assert (layer.macs_formula, layer.flops_formula) == (layer.macs, layer.flops)  # no symbolic dims
    assert layer.activation_bytes == 4 * 8 * 8 * 4  # 256 float32 outputs
    # a 3x3 window at stride 1 on the input: 3 pixels wide, 1 apart, output 0 centred on pixel 0
    assert layer.receptive_field == (AxisField(3, 1, 0), AxisField(3, 1, 0))
    assert (layer.modelled, layer.unmodelled_reason, layer.repeats, layer.variant) == (True, "", None, "")
    assert layer.backward_state_bytes == 0
    assert layer.source is None  # an ONNX node has no line of a spec
    assert list(layer.attrs["kernel_shape"]) == [3, 3]
    assert layer.explain is not None and any("6,912" in line or "6912" in line for line in layer.explain())
