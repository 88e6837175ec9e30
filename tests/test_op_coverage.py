"""Every op with a rule, not already covered elsewhere, against onnxruntime's output shape.

tests/test_architecture.py checks that every registered op is named by some test; the
ops of the big families (unary maths, comparisons, bitwise, rarer activations and
normalisations) are pinned here with one small model each.
"""

from __future__ import annotations

import pytest
from ort_helpers import Arg, const, data, rule_shapes, run_onnxruntime, run_rule, weight

from archcalc.registry import get_rule

FLOAT_UNARY = ["Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Erf", "Sin",
               "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "IsNaN", "IsInf"]
FLOAT_ACTIVATIONS = ["Celu", "Elu", "Selu", "HardSigmoid", "Mish", "Softplus", "Softsign", "ThresholdedRelu",
                     "Shrink", "Hardmax", "LogSoftmax"]
FLOAT_BINARY = ["Sub", "Pow", "Div"]
COMPARISONS = ["Less", "LessOrEqual", "GreaterOrEqual", "Greater", "Equal"]
VARIADIC = ["Max", "Min", "Mean", "Sum"]


def case(op, args, attrs=None, opset=17, outputs=1):
    return pytest.param(op, args, attrs or {}, opset, outputs, id=f"{op}")


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
]


@pytest.mark.parametrize(("op", "args", "attrs", "opset", "outputs"), CASES)
def test_output_shape_matches_onnxruntime(op, args, attrs, opset, outputs):
    expected = run_onnxruntime(op, args, attrs, opset=opset, outputs=outputs)
    assert rule_shapes(run_rule(op, args, attrs), outputs) == expected


def test_min_pool_shape_is_max_pool_shape():
    # MinPool is archcalc's own op (exported as -maxpool(-x)); onnxruntime runs MaxPool.
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}
    expected = run_onnxruntime("MaxPool", [data(1, 2, 9, 9)], attrs)
    assert rule_shapes(run_rule("MinPool", [data(1, 2, 9, 9)], attrs)) == expected
    assert get_rule("MinPool").fn is get_rule("AveragePool").fn
