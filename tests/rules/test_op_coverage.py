"""Every op with a rule, not already covered elsewhere, against onnxruntime's output shape.

tests/test_architecture.py checks that every registered op is named by some test; the
ops of the big families (unary maths, comparisons, bitwise, rarer activations and
normalisations) are pinned here with one small model each.
"""

from __future__ import annotations

import pytest
from onnx import TensorProto
from ort_helpers import (
    OMITTED,
    Arg,
    const,
    data,
    onnx_inferred_shapes,
    onnxruntime_outputs,
    rule_dtypes,
    rule_shapes,
    run_onnxruntime,
    run_rule,
    scalar,
    weight,
)

from archcalc.rules.base import get_rule

FLOAT_UNARY = ["Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Erf", "Sin",
               "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "IsNaN", "IsInf"]
FLOAT_ACTIVATIONS = ["Celu", "Elu", "Selu", "HardSigmoid", "Mish", "Softplus", "Softsign", "ThresholdedRelu",
                     "Shrink", "Hardmax", "LogSoftmax"]
FLOAT_BINARY = ["Sub", "Pow", "Div"]
COMPARISONS = ["Less", "LessOrEqual", "GreaterOrEqual", "Greater", "Equal"]
VARIADIC = ["Max", "Min", "Mean", "Sum"]


def case(op, args, attrs=None, opset=17, outputs=1, id=None):
    return pytest.param(op, args, attrs or {}, opset, outputs, id=f"{op}-{id}" if id else op)


def uint8(*shape: int) -> Arg:
    return Arg("weight", tuple(shape), "uint8")


# QLinear* inputs after the data: a scale and zero point for it, the weight's, the output's.
def _qlinear(x: Arg, w: Arg, *bias: Arg) -> list[Arg]:
    return [x, scalar(0.1), scalar(2, "uint8"), w, scalar(0.05), scalar(3, "uint8"), scalar(0.2), scalar(1, "uint8"),
            *bias]


CASES = [
    *[case(op, [data(2, 3, 4)], opset=18) for op in FLOAT_UNARY],
    *[case(op, [data(2, 3, 4)], opset=18) for op in FLOAT_ACTIVATIONS],
    *[case(op, [data(2, 3, 4), data(3, 1)]) for op in FLOAT_BINARY],
    *[case(op, [data(2, 1, 4), data(3, 1)]) for op in COMPARISONS],
    *[case(op, [data(2, 3, 4), data(4), data(3, 1)]) for op in VARIADIC],
    case("Mod", [data(2, 3, 4, dtype="int64"), data(4, dtype="int64")]),
    case("Not", [data(2, 3, dtype="bool")]),
    case("And", [data(2, 3, dtype="bool"), data(3, dtype="bool")]),
    case("Or", [data(2, 3, dtype="bool"), data(1, 3, dtype="bool")]),
    case("Xor", [data(2, 3, dtype="bool"), data(3, dtype="bool")]),
    case("BitwiseNot", [data(2, 3, dtype="int32")], opset=18),
    case("BitwiseAnd", [data(2, 3, dtype="int32"), data(3, dtype="int32")], opset=18),
    case("BitwiseOr", [data(2, 3, dtype="int32"), data(3, dtype="int32")], opset=18),
    case("BitwiseXor", [data(2, 3, dtype="int32"), data(3, dtype="int32")], opset=18),
    case("BitShift", [data(2, 3, dtype="uint32"), data(3, dtype="uint32")], {"direction": "LEFT"}),
    case("PRelu", [data(2, 3, 4, 4), weight(3, 1, 1)]),
    case("InstanceNormalization", [data(2, 3, 4, 4), weight(3), weight(3)]),
    case("GroupNormalization", [data(2, 6, 4, 4), weight(6), weight(6)], {"num_groups": 3}, opset=21),
    case("LRN", [data(2, 6, 4, 4)], {"size": 3}),
    case("GlobalLpPool", [data(2, 3, 5, 6)], {"p": 2}),
    case("Identity", [data(2, 3)]),
    case("CastLike", [data(2, 3), data(1, dtype="int64")], opset=15),
    case("GatherElements", [data(3, 4), Arg("const", (2, 4), "int64", (0, 1, 2, 0, 1, 2, 0, 1))], {"axis": 0}),
    case("ScatterElements", [data(3, 4), Arg("const", (1, 4), "int64", (0, 1, 2, 0)), data(1, 4)], {"axis": 0}),
    case("GatherND", [data(3, 4), Arg("const", (2, 2), "int64", (0, 1, 2, 0))]),
    case("ScatterND", [data(3, 4), Arg("const", (2, 2), "int64", (0, 1, 2, 0)), data(2)]),
    case("ReduceL1", [data(2, 3, 4), const([1])], {"keepdims": 0}, opset=18),
    case("ReduceLogSum", [data(2, 3, 4), const([2])], opset=18),
    case("Swish", [data(2, 3, 4)], {"alpha": 1.0}, opset=24),
    case("Upsample", [data(1, 2, 3, 4), const([1.0, 1.0, 2.0, 3.0], "float32")], {"mode": "nearest"}, opset=9),
    # attention
    case("Attention", [data(2, 4, 5, 8), data(2, 4, 6, 8), data(2, 4, 6, 3)], opset=23, id="4d-cross"),
    case("Attention", [data(2, 5, 32), data(2, 6, 16), data(2, 6, 12)], {"q_num_heads": 4, "kv_num_heads": 2},
         opset=23, id="3d-gqa"),
    case("Attention", [data(2, 4, 5, 8), data(2, 2, 6, 8), data(2, 2, 6, 3), OMITTED, data(2, 2, 3, 8),
                       data(2, 2, 3, 3)], {"is_causal": 1}, opset=23, outputs=4, id="past-present-qk"),
    case("Attention", [data(2, 4, 5, 8), data(2, 1, 6, 8), data(2, 1, 6, 3), data(5, 6)], opset=23, outputs=4,
         id="mqa-mask-no-past"),
    case("Attention", [data(1, 5, 16), data(1, 5, 16), data(1, 5, 16), data(1, 1, 5, 5, dtype="bool")],
         {"q_num_heads": 2, "kv_num_heads": 2, "softcap": 30.0}, opset=24, id="bool-mask-softcap"),
    case("RotaryEmbedding", [data(2, 3, 4, 8), data(2, 4, 4), data(2, 4, 4)], opset=23, id="4d"),
    case("RotaryEmbedding", [data(2, 3, 16), data(10, 1), data(10, 1),
                             Arg("const", (2, 3), "int64", (0, 1, 2, 3, 4, 5))],
         {"num_heads": 4, "rotary_embedding_dim": 2, "interleaved": 1}, opset=23, id="3d-partial-positions"),
    # recurrent (onnxruntime runs layout 0 only; layout 1 is checked against onnx below)
    case("LSTM", [data(5, 2, 3), weight(1, 16, 3), weight(1, 16, 4), weight(1, 32)], {"hidden_size": 4},
         opset=14, outputs=3, id="forward"),
    case("LSTM", [data(5, 2, 3), weight(2, 16, 3), weight(2, 16, 4), weight(2, 32), OMITTED, OMITTED, OMITTED,
                  weight(2, 12)], {"hidden_size": 4, "direction": "bidirectional"}, opset=14, outputs=3,
         id="bidirectional-peepholes"),
    case("GRU", [data(5, 2, 3), weight(2, 12, 3), weight(2, 12, 4)],
         {"hidden_size": 4, "direction": "bidirectional", "linear_before_reset": 1}, opset=14, outputs=2,
         id="bidirectional"),
    case("RNN", [data(5, 2, 3), weight(1, 4, 3), weight(1, 4, 4), weight(1, 8)],
         {"hidden_size": 4, "direction": "reverse"}, opset=14, outputs=2, id="reverse"),
    # normalisation
    case("RMSNormalization", [data(2, 3, 4), weight(4)], opset=23),
    case("RMSNormalization", [data(2, 3, 4), weight(3, 4)], {"axis": 1}, opset=23, id="axis1"),
    case("LpNormalization", [data(2, 3, 4)], {"axis": 1, "p": 1}, opset=22),
    case("MeanVarianceNormalization", [data(2, 3, 4, 5)], opset=13),
    # tensor manipulation
    case("DepthToSpace", [data(1, 8, 2, 3)], {"blocksize": 2, "mode": "DCR"}, opset=13, id="dcr"),
    case("DepthToSpace", [data(1, 18, 2, 3)], {"blocksize": 3, "mode": "CRD"}, opset=13, id="crd"),
    case("SpaceToDepth", [data(1, 2, 4, 6)], {"blocksize": 2}, opset=13),
    case("Trilu", [data(2, 3, 4), scalar(1, "int64")], {"upper": 0}, opset=14),
    case("OneHot", [data(2, 3, dtype="int64"), scalar(5.0), const([0.0, 1.0], "float32")], {"axis": 1}, opset=11),
    case("EyeLike", [data(3, 4)], {"k": 1, "dtype": TensorProto.INT64}, opset=22),
    case("CenterCropPad", [data(5, 6, 3), const([4, 8])], {"axes": [0, 1]}, opset=18),
    # reductions and scans
    case("CumSum", [data(2, 3, 4), scalar(1, "int64")], {"exclusive": 1, "reverse": 1}, opset=14),
    case("TopK", [data(2, 7, 4), const([3])], {"axis": 1, "largest": 0}, opset=11, outputs=2),
    # quantisation
    case("QuantizeLinear", [data(2, 3, 4), scalar(0.1), scalar(3, "int8")], opset=21, id="per-tensor"),
    case("QuantizeLinear", [data(2, 3, 4), const([0.1, 0.2, 0.3], "float32")], {"axis": 1}, opset=21,
         id="per-axis"),
    case("DequantizeLinear", [uint8(2, 3, 4), scalar(0.1), scalar(3, "uint8")], opset=21),
    case("DynamicQuantizeLinear", [data(2, 3, 4)], opset=11, outputs=3),
    case("MatMulInteger", [data(2, 3, 4, dtype="uint8"), uint8(4, 5)], opset=10),
    case("ConvInteger", [data(1, 2, 5, 5, dtype="uint8"), uint8(3, 2, 3, 3)], {"pads": [1, 1, 1, 1]}, opset=10),
    case("QLinearMatMul", _qlinear(data(2, 3, 4, dtype="uint8"), uint8(4, 5)), opset=21),
    case("QLinearConv", _qlinear(data(1, 2, 5, 5, dtype="uint8"), uint8(3, 2, 3, 3), Arg("weight", (3,), "int32")),
         {"strides": [2, 2]}, opset=10),
    # random generators (onnxruntime has their opset-1 kernels, not the opset-22 ones)
    case("RandomNormal", [], {"shape": [2, 3]}),
    case("RandomUniform", [], {"shape": [2, 3], "dtype": TensorProto.DOUBLE}),
    case("RandomNormalLike", [data(2, 3)]),
    case("RandomUniformLike", [data(2, 3)], {"dtype": TensorProto.DOUBLE}),
    case("Bernoulli", [data(2, 3)], opset=15),
]

# onnxruntime refuses batch-first recurrences ("Batchwise recurrent operations (layout ==
# 1) are not supported"); onnx's shape inference is the reference for them.
ONNX_ONLY = [
    case("LSTM", [data(2, 5, 3), weight(2, 16, 3), weight(2, 16, 4), weight(2, 32)],
         {"hidden_size": 4, "direction": "bidirectional", "layout": 1}, opset=14, outputs=3, id="layout1"),
    case("GRU", [data(2, 5, 3), weight(1, 12, 3), weight(1, 12, 4)], {"hidden_size": 4, "layout": 1},
         opset=14, outputs=2, id="layout1"),
    case("RNN", [data(2, 5, 3), weight(1, 4, 3), weight(1, 4, 4), weight(1, 8)],
         {"hidden_size": 4, "layout": 1, "direction": "reverse"}, opset=14, outputs=2, id="layout1"),
]


@pytest.mark.parametrize(("op", "args", "attrs", "opset", "outputs"), CASES)
def test_output_shape_and_dtype_match_onnxruntime(op, args, attrs, opset, outputs):
    results = onnxruntime_outputs(op, args, attrs, opset=opset, outputs=outputs)
    rule = run_rule(op, args, attrs)
    assert rule_shapes(rule, outputs) == [tuple(r.shape) for r in results]
    assert rule_dtypes(rule, args, outputs) == [str(r.dtype) for r in results]


@pytest.mark.parametrize(("op", "args", "attrs", "opset", "outputs"), ONNX_ONLY)
def test_output_shape_matches_onnx_shape_inference(op, args, attrs, opset, outputs):
    expected = onnx_inferred_shapes(op, args, attrs, opset=opset, outputs=outputs)
    assert rule_shapes(run_rule(op, args, attrs), outputs) == expected


def test_min_pool_shape_is_max_pool_shape():
    # MinPool is archcalc's own op (exported as -maxpool(-x)); onnxruntime runs MaxPool.
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}
    expected = run_onnxruntime("MaxPool", [data(1, 2, 9, 9)], attrs)
    assert rule_shapes(run_rule("MinPool", [data(1, 2, 9, 9)], attrs)) == expected
    assert get_rule("MinPool").fn is get_rule("AveragePool").fn
