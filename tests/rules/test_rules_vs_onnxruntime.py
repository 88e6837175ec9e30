"""Every op rule against onnxruntime: build a one-node ONNX model, run it on random
inputs, and compare the output shapes onnxruntime produces with the rule's, called
directly on the same input shapes (and the same constant values for shape, pads and
scales inputs). MACs of Conv, ConvTranspose, Gemm and MatMul are checked against the
formula written in the test, evaluated on onnxruntime's output shape.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from ort_helpers import (
    OMITTED,
    const,
    data,
    onnx_inferred_shapes,
    rule_shapes,
    run_onnxruntime,
    run_rule,
    scalar,
    weight,
)

from archcalc.core.errors import ShapeError
from archcalc.rules.base import all_rules


def case(op, args, attrs=None, *, id, opset=17, outputs=1, marks=()):
    return pytest.param(op, args, attrs or {}, opset, outputs, id=f"{op}-{id}", marks=marks)


def archcalc_bug(reason: str):
    return pytest.mark.xfail(strict=True, reason=f"archcalc bug: {reason}")


CONV = [
    case("Conv", [data(1, 3, 5, 5), weight(2, 3, 3, 3)], id="k3"),
    case("Conv", [data(1, 3, 5, 5), weight(2, 3, 3, 3)], {"strides": [2, 2]}, id="k3s2"),
    case("Conv", [data(1, 3, 32, 32), weight(4, 3, 3, 3), weight(4)], {"pads": [1, 1, 1, 1]}, id="k3s1p1-bias"),
    case("Conv", [data(2, 3, 7, 7), weight(4, 3, 3, 3)], {"strides": [2, 2], "pads": [1, 1, 1, 1]}, id="k3s2p1"),
    case("Conv", [data(1, 2, 11, 13), weight(3, 2, 5, 5)], {"strides": [3, 3], "pads": [2, 2, 2, 2]},
         id="k5s3p2"),
    case("Conv", [data(1, 2, 15, 21), weight(3, 2, 3, 5)], {"strides": [2, 3]}, id="k3x5-s2x3"),
    case("Conv", [data(1, 8, 9, 9), weight(12, 2, 3, 3), weight(12)], {"group": 4}, id="groups4"),
    case("Conv", [data(1, 6, 9, 9), weight(6, 1, 3, 3)], {"group": 6, "pads": [1, 1, 1, 1]}, id="depthwise"),
    case("Conv", [data(1, 6, 9, 9), weight(12, 1, 3, 3)], {"group": 6, "strides": [2, 2]},
         id="depthwise-multiplier2"),
    case("Conv", [data(1, 2, 11, 11), weight(3, 2, 3, 3)], {"dilations": [2, 2]}, id="dilation2"),
    case("Conv", [data(1, 2, 20, 17), weight(3, 2, 3, 3)], {"dilations": [2, 3], "pads": [2, 1, 2, 1],
                                                             "strides": [2, 1]}, id="dilation2x3-p2x1-s2x1"),
    case("Conv", [data(1, 1, 10, 10), weight(1, 1, 3, 3)], {"strides": [2, 2], "pads": [0, 1, 1, 2]},
         id="asymmetric-pads"),
    case("Conv", [data(1, 2, 7, 8), weight(3, 2, 3, 3)], {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
         id="same-upper-s2"),
    case("Conv", [data(1, 2, 7, 8), weight(3, 2, 4, 4)], {"auto_pad": "SAME_LOWER", "strides": [2, 2]},
         id="same-lower-k4s2"),
    case("Conv", [data(1, 2, 6, 6), weight(3, 2, 2, 2)], {"auto_pad": "SAME_UPPER"}, id="same-upper-k2"),
    case("Conv", [data(1, 2, 6, 6), weight(3, 2, 2, 2)], {"auto_pad": "SAME_LOWER"}, id="same-lower-k2"),
    case("Conv", [data(1, 2, 9, 10), weight(3, 2, 3, 3)], {"auto_pad": "VALID", "strides": [2, 2]},
         id="valid-s2"),
    case("Conv", [data(2, 3, 17), weight(4, 3, 3)], {"strides": [2], "pads": [1, 1]}, id="1d-k3s2p1"),
    case("Conv", [data(1, 2, 16), weight(4, 2, 3), weight(4)], {"auto_pad": "SAME_UPPER", "strides": [3]},
         id="1d-same-upper-s3"),
    case("Conv", [data(1, 4, 12), weight(4, 1, 5)], {"group": 4, "pads": [0, 3]}, id="1d-depthwise-asym"),
    case("Conv", [data(1, 2, 5, 6, 7), weight(3, 2, 3, 3, 3)], {"strides": [2, 2, 2], "pads": [1] * 6},
         id="3d-k3s2p1"),
    case("Conv", [data(1, 4, 6, 6, 6), weight(6, 2, 3, 1, 3)], {"group": 2, "dilations": [1, 2, 2]},
         id="3d-groups2-dilation"),
    case("Conv", [data(1, 2, 7, 7, 7), weight(3, 2, 2, 2, 2)], {"auto_pad": "SAME_LOWER", "strides": [2, 2, 2]},
         id="3d-same-lower"),
    case("Conv", [data(3, 3, 8, 8), weight(5, 3, 1, 1)], id="pointwise-batch3"),
]

CONV_TRANSPOSE = [
    case("ConvTranspose", [data(1, 2, 4, 4), weight(2, 3, 3, 3)], id="k3"),
    case("ConvTranspose", [data(1, 2, 4, 4), weight(2, 3, 3, 3)], {"strides": [2, 2]}, id="k3s2"),
    case("ConvTranspose", [data(1, 2, 4, 4), weight(2, 3, 3, 3), weight(3)],
         {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}, id="k3s2p1-op1-bias"),
    case("ConvTranspose", [data(1, 4, 8, 8), weight(4, 2, 4, 4)], {"strides": [2, 2], "pads": [1, 1, 1, 1]},
         id="k4s2p1"),
    case("ConvTranspose", [data(1, 2, 5, 6), weight(2, 2, 3, 3)], {"strides": [3, 2], "output_padding": [2, 1]},
         id="s3x2-op2x1"),
    case("ConvTranspose", [data(1, 2, 5, 5), weight(2, 2, 3, 3)], {"strides": [2, 2], "pads": [0, 1, 1, 2]},
         id="asymmetric-pads"),
    case("ConvTranspose", [data(1, 4, 5, 5), weight(4, 3, 3, 3)], {"group": 2, "strides": [2, 2]}, id="groups2"),
    case("ConvTranspose", [data(1, 2, 5, 5), weight(2, 2, 3, 3)], {"dilations": [2, 2], "pads": [1, 1, 1, 1]},
         id="dilation2-p1"),
    case("ConvTranspose", [data(1, 2, 5, 6), weight(2, 2, 3, 3)], {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
         id="same-upper-s2"),
    case("ConvTranspose", [data(1, 2, 5, 6), weight(2, 2, 4, 4)], {"auto_pad": "SAME_LOWER", "strides": [2, 2]},
         id="same-lower-k4s2"),
    case("ConvTranspose", [data(1, 2, 5, 5), weight(2, 2, 3, 3)], {"strides": [2, 2], "output_shape": [10, 11]},
         id="output-shape"),
    case("ConvTranspose", [data(2, 3, 7), weight(3, 4, 5)], {"strides": [3], "pads": [1, 2]}, id="1d-k5s3"),
    case("ConvTranspose", [data(1, 2, 3, 4, 5), weight(2, 2, 3, 3, 3)],
         {"strides": [2, 2, 2], "pads": [1] * 6, "output_padding": [1, 0, 1]}, id="3d-k3s2p1-op"),
]

POOL = [
    case("MaxPool", [data(1, 2, 8, 8)], {"kernel_shape": [2, 2], "strides": [2, 2]}, id="k2s2"),
    case("MaxPool", [data(1, 2, 7, 9)], {"kernel_shape": [3, 3], "strides": [2, 2]}, id="k3s2"),
    case("MaxPool", [data(1, 2, 112, 112)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
         id="k3s2p1-resnet"),
    case("MaxPool", [data(1, 2, 8, 8)], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
         id="k3s2-ceil"),
    case("MaxPool", [data(1, 2, 5, 6)], {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                         "ceil_mode": 1}, id="k2s2p1-ceil-drops-last"),
    case("MaxPool", [data(1, 2, 13, 13)], {"kernel_shape": [3, 3], "strides": [2, 2], "dilations": [2, 2]},
         id="k3s2-dilation2"),
    case("MaxPool", [data(1, 2, 14, 14)], {"kernel_shape": [3, 3], "strides": [3, 3], "dilations": [2, 2],
                                           "ceil_mode": 1}, id="k3s3-dilation2-ceil"),
    case("MaxPool", [data(1, 2, 10, 10)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 1, 2, 0]},
         id="asymmetric-pads"),
    case("MaxPool", [data(1, 2, 7, 8)], {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
         id="same-upper"),
    case("MaxPool", [data(1, 2, 7, 8)], {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_LOWER"},
         id="same-lower"),
    case("MaxPool", [data(1, 2, 7, 8)], {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"},
         id="valid"),
    case("MaxPool", [data(1, 2, 9, 9)], {"kernel_shape": [3, 3], "strides": [2, 2]}, id="with-indices",
         outputs=2),
    case("MaxPool", [data(2, 3, 11)], {"kernel_shape": [3], "strides": [2], "pads": [1, 1], "ceil_mode": 1},
         id="1d-ceil"),
    case("MaxPool", [data(1, 2, 6, 7, 8)], {"kernel_shape": [2, 3, 2], "strides": [2, 2, 2]}, id="3d"),
    case("AveragePool", [data(1, 2, 8, 8)], {"kernel_shape": [2, 2], "strides": [2, 2]}, id="k2s2"),
    case("AveragePool", [data(1, 2, 9, 9)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, id="k3s1p1"),
    case("AveragePool", [data(1, 2, 8, 8)], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
         id="k3s2-ceil"),
    case("AveragePool", [data(1, 2, 6, 6)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                             "ceil_mode": 1}, id="k3s2p1-ceil"),
    case("AveragePool", [data(1, 2, 5, 5)], {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                             "ceil_mode": 1}, id="k2s2p1-ceil-drops-last"),
    case("AveragePool", [data(1, 2, 9, 9)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                             "count_include_pad": 1}, id="count-include-pad"),
    case("AveragePool", [data(1, 2, 7, 8)], {"kernel_shape": [3, 3], "strides": [2, 2],
                                             "auto_pad": "SAME_UPPER"}, id="same-upper"),
    case("AveragePool", [data(1, 2, 13, 13)], {"kernel_shape": [3, 3], "dilations": [2, 2]}, id="dilation2",
         opset=19),
    case("AveragePool", [data(1, 2, 9)], {"kernel_shape": [4], "strides": [3]}, id="1d"),
    case("AveragePool", [data(1, 2, 5, 6, 7)], {"kernel_shape": [2, 2, 2], "strides": [2, 2, 2], "ceil_mode": 1},
         id="3d-ceil"),
    case("LpPool", [data(1, 2, 8, 9)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
         id="k3s2p1"),
]

GLOBAL_POOL = [
    case(op, [data(*shape)], id=f"{len(shape) - 2}d")
    for op in ("GlobalAveragePool", "GlobalMaxPool")
    for shape in ((2, 3, 7), (2, 3, 7, 5), (1, 3, 4, 5, 6))
]

NORM = [
    case("BatchNormalization", [data(2, 3, 4, 5), weight(3), weight(3), weight(3), weight(3)], id="4d"),
    case("BatchNormalization", [data(4, 6), weight(6), weight(6), weight(6), weight(6)], id="2d"),
    case("BatchNormalization", [data(2, 3, 4, 5, 6), weight(3), weight(3), weight(3), weight(3)], id="5d"),
    case("LayerNormalization", [data(2, 3, 4), weight(4), weight(4)], id="last-axis", outputs=3),
    case("LayerNormalization", [data(2, 3, 4), weight(3, 4), weight(3, 4)], {"axis": 1}, id="axis1",
         outputs=3),
    case("LayerNormalization", [data(2, 5, 3, 4), weight(3, 4), OMITTED], {"axis": -2}, id="axis-2-no-bias",
         outputs=3),
]

ACTIVATION = [
    case("Relu", [data(2, 3, 4)], id="3d"),
    case("LeakyRelu", [data(2, 3)], {"alpha": 0.1}, id="alpha0.1"),
    case("Sigmoid", [data(5)], id="1d"),
    case("Tanh", [data(2, 3, 4, 5)], id="4d"),
    case("Gelu", [data(2, 3)], id="erf", opset=20),
    case("Gelu", [data(2, 3, 4)], {"approximate": "tanh"}, id="tanh", opset=20),
    case("HardSwish", [data(2, 3, 4)], id="opset22", opset=22),
    case("HardSwish", [data(2, 3)], id="opset14", opset=14),
    case("Softmax", [data(2, 3, 4)], id="default-axis"),
    case("Softmax", [data(2, 3, 4)], {"axis": 1}, id="axis1"),
    case("Clip", [data(2, 3), scalar(0.0), scalar(6.0)], id="relu6"),
    case("Clip", [data(2, 3)], id="no-bounds"),
    case("Clip", [data(2, 3), OMITTED, scalar(1.0)], id="max-only"),
]

ELEMENTWISE = [
    case("Add", [data(2, 3, 4, 5), data(2, 3, 4, 5)], id="same"),
    case("Add", [data(2, 3, 4, 5), data(5)], id="trailing-vector"),
    case("Add", [data(2, 1, 4, 1), data(3, 1, 5)], id="both-broadcast"),
    case("Add", [data(1), data(2, 3)], id="one-element"),
    case("Add", [data(), data(2, 3)], id="scalar"),
    case("Mul", [data(8, 1, 6, 1), data(7, 1, 5)], id="numpy-doc"),
    case("Mul", [data(2, 3, 4, 5), weight(3, 1, 1)], id="per-channel-weight"),
    case("Mul", [data(5, 4), data(1)], id="by-one"),
]

LINEAR = [
    case("Gemm", [data(3, 5), weight(5, 4)], id="plain"),
    case("Gemm", [data(3, 5), weight(4, 5), weight(4)], {"transB": 1}, id="transB-bias"),
    case("Gemm", [data(5, 3), weight(5, 4), weight(3, 4)], {"transA": 1}, id="transA-full-bias"),
    case("Gemm", [data(5, 3), weight(4, 5), weight(1, 4)], {"transA": 1, "transB": 1, "alpha": 0.5},
         id="transA-transB"),
    case("Gemm", [data(3, 5), weight(5, 4), scalar(1.0)], {"beta": 2.0}, id="scalar-bias"),
    case("MatMul", [data(3, 4), data(4, 6)], id="2d"),
    case("MatMul", [data(2, 3, 4), data(4, 6)], id="3d-by-2d"),
    case("MatMul", [data(2, 1, 3, 4), data(5, 4, 6)], id="batch-broadcast"),
    case("MatMul", [data(4), data(2, 4, 6)], id="1d-lhs"),
    case("MatMul", [data(2, 3, 4), data(4)], id="1d-rhs"),
    case("MatMul", [data(4), data(4)], id="1d-both"),
    case("MatMul", [data(4), data(4, 6)], id="vector-matrix"),
]

TENSOR = [
    case("Flatten", [data(2, 3, 4, 5)], id="default"),
    case("Flatten", [data(2, 3, 4, 5)], {"axis": 0}, id="axis0"),
    case("Flatten", [data(2, 3, 4, 5)], {"axis": 2}, id="axis2"),
    case("Flatten", [data(2, 3, 4, 5)], {"axis": 4}, id="axis4"),
    case("Flatten", [data(2, 3, 4, 5)], {"axis": -1}, id="axis-1"),
    case("Flatten", [data(2, 3, 4, 5)], {"axis": -3}, id="axis-3"),
    case("Reshape", [data(2, 3, 4, 5), const([0, -1])], id="0,-1"),
    case("Reshape", [data(2, 3, 4, 5), const([0, 0, -1])], id="0,0,-1"),
    case("Reshape", [data(2, 3, 4, 5), const([-1])], id="-1"),
    case("Reshape", [data(2, 3, 4, 5), const([4, 0, 5, -1])], id="4,0,5,-1"),
    case("Reshape", [data(2, 3, 4, 5), const([4, 30])], id="4,30"),
    case("Reshape", [data(2, 3, 4, 5), const([-1, 0, 1, 20])], id="-1,0,1,20"),
    case("Reshape", [data(0, 3, 4), const([0, 12])], {"allowzero": 1}, id="allowzero-literal-0", opset=14),
    case("Reshape", [data(0, 3, 4), const([0, 12])], id="empty-copies-0", opset=14),
    case("Transpose", [data(2, 3, 4, 5)], id="default-reverses"),
    case("Transpose", [data(2, 3, 4, 5)], {"perm": [0, 2, 3, 1]}, id="nchw-to-nhwc"),
    case("Transpose", [data(2, 3, 4)], {"perm": [1, 0, 2]}, id="swap-first-two"),
    case("Concat", [data(1, 2, 4, 4), data(1, 3, 4, 4), data(1, 5, 4, 4)], {"axis": 1}, id="channels-3-inputs"),
    case("Concat", [data(2, 3, 4), data(2, 3, 7)], {"axis": -1}, id="axis-1"),
    case("Concat", [data(2, 3), data(5, 3)], {"axis": 0}, id="axis0"),
    case("Pad", [data(1, 2, 5, 6), const([0, 0, 1, 1, 0, 0, 2, 2])], id="opset13-spatial", opset=13),
    case("Pad", [data(1, 2, 5, 6), const([0, 0, 1, 0, 0, 0, 0, 3]), scalar(1.5)], id="opset13-value",
         opset=13),
    case("Pad", [data(1, 2, 5, 6), const([0, 1, 2, 3, 0, 0, 1, 1])], {"mode": "reflect"}, id="reflect",
         opset=13),
    case("Pad", [data(1, 2, 5, 6), const([0, 0, -1, 2, 0, 0, -2, 0])], id="negative-crops", opset=13),
    case("Pad", [data(1, 2, 5, 6), const([1, 2, 3, 4]), OMITTED, const([2, -1])], id="opset18-axes",
         opset=18),
    case("Resize", [data(1, 2, 4, 5), OMITTED, const([1.0, 1.0, 2.0, 2.0], "float32")], id="scales2-nearest"),
    case("Resize", [data(1, 2, 4, 5), OMITTED, const([1.0, 1.0, 1.5, 0.5], "float32")], {"mode": "linear"},
         id="scales1.5x0.5-linear"),
    case("Resize", [data(1, 2, 4, 5), const([], "float32"), const([1.0, 1.0, 3.0, 1.0], "float32")],
         {"mode": "cubic"}, id="empty-roi-scales3-cubic"),
    # onnxruntime computes the size in float32: 10 * 0.69999999f rounds to 7.0f, so 7, where
    # onnx's shape inference says floor(10 * 0.699999988079071) = 6. archcalc follows the runtime.
    case("Resize", [data(1, 2, 10, 10), OMITTED, const([1.0, 1.0, 0.7, 0.7], "float32")], id="scales0.7"),
    case("Resize", [data(1, 2, 4, 5), OMITTED, OMITTED, const([1, 2, 7, 9])], id="sizes"),
]

ALL_CASES = CONV + CONV_TRANSPOSE + POOL + GLOBAL_POOL + NORM + ACTIVATION + ELEMENTWISE + LINEAR + TENSOR


@pytest.mark.parametrize(("op", "args", "attrs", "opset", "outputs"), ALL_CASES)
def test_output_shapes_match_onnxruntime(op, args, attrs, opset, outputs):
    expected = run_onnxruntime(op, args, attrs, opset=opset, outputs=outputs)
    assert rule_shapes(run_rule(op, args, attrs), outputs) == expected


def test_every_op_listed_in_the_brief_is_covered():
    covered = {p.values[0] for p in ALL_CASES}
    wanted = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
              "BatchNormalization", "LayerNormalization", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu",
              "HardSwish", "Softmax", "Clip", "Add", "Mul", "Gemm", "MatMul", "Flatten", "Reshape",
              "Transpose", "Concat", "Pad", "Resize"}
    assert wanted <= covered
    assert wanted <= set(all_rules())


# onnxruntime cannot run these ("Dilation not supported for AutoPadType::SAME_UPPER or
# SAME_LOWER"); onnx's shape inference is the reference instead.
ONNX_ONLY = [
    case("Conv", [data(1, 2, 9, 9), weight(3, 2, 3, 3)], {"auto_pad": "SAME_UPPER", "dilations": [2, 2]},
         id="same-upper-dilation2"),
    case("Conv", [data(1, 2, 10, 11), weight(3, 2, 3, 3)], {"auto_pad": "SAME_LOWER", "dilations": [3, 2],
                                                            "strides": [2, 3]}, id="same-lower-dilation3x2-s2x3"),
    case("Conv", [data(1, 2, 16), weight(4, 2, 3), weight(4)], {"auto_pad": "SAME_UPPER", "dilations": [3]},
         id="1d-same-upper-dilation3"),
]


@pytest.mark.parametrize(("op", "args", "attrs", "opset", "outputs"), ONNX_ONLY)
def test_output_shapes_match_onnx_shape_inference(op, args, attrs, opset, outputs):
    expected = onnx_inferred_shapes(op, args, attrs, opset=opset, outputs=outputs)
    assert rule_shapes(run_rule(op, args, attrs), outputs) == expected


# ---------------------------------------------------------------------------------------
# MACs: the formula written here, evaluated on onnxruntime's output shape


def _conv_params(p):
    """(args, attrs) of a shape case, keeping its id."""
    _op, args, attrs, _opset, _outputs = p.values
    return pytest.param(args, attrs, id=p.id)


@pytest.mark.parametrize(("args", "attrs"), [_conv_params(p) for p in CONV])
def test_conv_macs(args, attrs):
    (y,) = run_onnxruntime("Conv", args, attrs)
    n, c = args[0].shape[:2]
    m, c_per_group, *kernel = args[1].shape
    g = attrs.get("group", 1)
    assert c_per_group == c // g
    # MACs = N * M * (output spatial) * (C/g) * prod(kernel)
    macs = n * m * math.prod(y[2:]) * (c // g) * math.prod(kernel)
    result = run_rule("Conv", args, attrs)
    assert result.macs == macs
    has_bias = len(args) > 2
    assert result.flops == 2 * macs + (math.prod(y) if has_bias else 0)


@pytest.mark.parametrize(("args", "attrs"), [_conv_params(p) for p in CONV_TRANSPOSE])
def test_conv_transpose_macs(args, attrs):
    (y,) = run_onnxruntime("ConvTranspose", args, attrs)
    n, c, *spatial = args[0].shape
    _, m_per_group, *kernel = args[1].shape
    g = attrs.get("group", 1)
    assert y[1] == m_per_group * g
    # every input element is scattered through every tap into M/g output channels:
    # MACs = N * C * (input spatial) * (M/g) * prod(kernel)
    macs = n * c * math.prod(spatial) * m_per_group * math.prod(kernel)
    assert run_rule("ConvTranspose", args, attrs).macs == macs


@pytest.mark.parametrize(("args", "attrs"), [_conv_params(p) for p in LINEAR if p.values[0] == "Gemm"])
def test_gemm_macs(args, attrs):
    (y,) = run_onnxruntime("Gemm", args, attrs)
    a = args[0].shape
    k = a[0] if attrs.get("transA") else a[1]
    m, n = y
    # MACs = M * N * K; FLOPs = 2 * MACs + M * N for the bias
    result = run_rule("Gemm", args, attrs)
    assert result.macs == m * n * k
    assert result.flops == 2 * m * n * k + (m * n if len(args) > 2 else 0)


@pytest.mark.parametrize(
    ("args", "macs"),
    [
        pytest.param([data(3, 4), data(4, 6)], 3 * 6 * 4, id="2d"),  # M * N * K
        pytest.param([data(2, 3, 4), data(4, 6)], 2 * 3 * 6 * 4, id="3d-by-2d"),  # batch 2
        pytest.param([data(2, 1, 3, 4), data(5, 4, 6)], 2 * 5 * 3 * 6 * 4, id="batch-broadcast"),  # batch 2x5
        pytest.param([data(4), data(2, 4, 6)], 2 * 1 * 6 * 4, id="1d-lhs"),  # vector as [1, K]
        pytest.param([data(2, 3, 4), data(4)], 2 * 3 * 1 * 4, id="1d-rhs"),  # vector as [K, 1]
        pytest.param([data(4), data(4)], 4, id="1d-both"),  # dot product
    ],
)
def test_matmul_macs(args, macs):
    run_onnxruntime("MatMul", args, {})  # the case is valid for onnxruntime
    result = run_rule("MatMul", args, {})
    assert result.macs == macs
    assert result.flops == 2 * macs


# ---------------------------------------------------------------------------------------
# random sliding-window ops against onnxruntime


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 12), k=st.integers(1, 4), s=st.integers(1, 3), d=st.integers(1, 2),
       ceil_mode=st.booleans(), data_=st.data())
def test_random_maxpool_matches_onnxruntime(n, k, s, d, ceil_mode, data_):
    pb = data_.draw(st.integers(0, k - 1), label="pad_begin")  # onnxruntime wants pads < kernel
    pe = data_.draw(st.integers(0, k - 1), label="pad_end")
    assume(n + pb + pe >= d * (k - 1) + 1)
    attrs = {"kernel_shape": [k], "strides": [s], "pads": [pb, pe], "dilations": [d], "ceil_mode": int(ceil_mode)}
    args = [data(1, 1, n)]
    assert rule_shapes(run_rule("MaxPool", args, attrs)) == run_onnxruntime("MaxPool", args, attrs)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 12), k=st.integers(1, 4), s=st.integers(1, 3), d=st.integers(1, 3),
       pads=st.tuples(st.integers(0, 3), st.integers(0, 3)), auto_pad=st.sampled_from(
           ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
def test_random_conv1d_matches_onnxruntime(n, k, s, d, pads, auto_pad):
    attrs = {"kernel_shape": [k], "strides": [s], "dilations": [d], "auto_pad": auto_pad}
    if auto_pad == "NOTSET":
        attrs["pads"] = list(pads)
    assume(d == 1 or not auto_pad.startswith("SAME"))  # onnxruntime: "Dilation not supported" with SAME
    args = [data(1, 2, n), weight(3, 2, k)]
    try:
        expected = run_onnxruntime("Conv", args, attrs)
    except Exception:  # onnxruntime rejects it (kernel larger than the padded input)
        with pytest.raises(ShapeError):
            run_rule("Conv", args, attrs)
        return
    assert rule_shapes(run_rule("Conv", args, attrs)) == expected


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 8), k=st.integers(1, 4), s=st.integers(1, 3), d=st.integers(1, 2),
       pads=st.tuples(st.integers(0, 2), st.integers(0, 2)), data_=st.data())
def test_random_conv_transpose1d_matches_onnxruntime(n, k, s, d, pads, data_):
    output_padding = data_.draw(st.integers(0, s - 1), label="output_padding")  # onnxruntime: < stride
    assume(s * (n - 1) + output_padding + d * (k - 1) + 1 - sum(pads) >= 1)
    attrs = {"strides": [s], "dilations": [d], "pads": list(pads), "output_padding": [output_padding]}
    args = [data(1, 2, n), weight(2, 3, k)]
    assert rule_shapes(run_rule("ConvTranspose", args, attrs)) == run_onnxruntime("ConvTranspose", args, attrs)
