"""Element-wise family: unary maths, binary and variadic ops with numpy broadcasting.

FLOPs: one per output element per elementary operation (an add, multiply, compare,
exp, erf, ...). A binary op costs 1 per output element; Sum/Max/Min of k inputs
cost k-1, Mean k. Learned tensors feeding these ops (an ONNX bias Add, a scale Mul)
are counted as params when they are weights.
"""

from __future__ import annotations

from collections.abc import Sequence

from archcalc.dims import Dim, is_static, prod
from archcalc.errors import ShapeError
from archcalc.registry import Output, RuleResult, TensorState, rule


def broadcast(*shapes: Sequence[Dim]) -> tuple[Dim, ...]:
    """numpy broadcasting of several shapes; raises ShapeError naming both shapes."""
    rank = max(len(s) for s in shapes)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    result = []
    for axis, dims in enumerate(zip(*padded)):
        out: Dim = 1
        for dim in dims:
            if dim == 1 or dim == out:
                continue
            if out == 1 or not is_static(out):
                out = dim if is_static(dim) or out == 1 else out
            elif is_static(dim):
                raise ShapeError(
                    f"shapes {' and '.join(str(list(s)) for s in shapes)} cannot be broadcast "
                    f"(axis {axis}: {out} vs {dim})",
                    fix="make the shapes equal, or 1 where one should be repeated",
                )
        result.append(out)
    return tuple(result)


def _per_element(shape: Sequence[Dim], flops_per_element: int, what: str, weights=()) -> RuleResult:
    flops = flops_per_element * prod(shape)
    return RuleResult(
        outputs=(Output(tuple(shape)),), flops=flops, weights=weights,
        explain=lambda: [f"output shape = {list(shape)}",
                         f"FLOPs = {flops_per_element} ({what}) * {prod(shape)} elements = {flops}"],
    )


UNARY_OPS = (
    "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Erf",
    "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh",
    "Not", "IsNaN", "IsInf", "BitwiseNot",
)


@rule(*UNARY_OPS)
def unary(inputs: Sequence[TensorState]) -> RuleResult:
    """One elementary operation per element; shape unchanged."""
    return _per_element(inputs[0].shape, 1, "one operation")


BINARY_OPS = ("Add", "Sub", "Mul", "Div", "Pow", "Mod", "BitShift", "And", "Or", "Xor",
              "BitwiseAnd", "BitwiseOr", "BitwiseXor")
COMPARISONS = ("Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual")


@rule(*BINARY_OPS)
def binary(inputs: Sequence[TensorState], *, fmod=0, direction="") -> RuleResult:
    """Broadcast the two inputs; one operation per output element."""
    shape = broadcast(inputs[0].shape, inputs[1].shape)
    return _per_element(shape, 1, "one operation", weights=(0, 1))


@rule(*COMPARISONS)
def comparison(inputs: Sequence[TensorState]) -> RuleResult:
    """Broadcast the two inputs; one comparison per output element; bool output."""
    shape = broadcast(inputs[0].shape, inputs[1].shape)
    result = _per_element(shape, 1, "one comparison")
    return RuleResult(outputs=(Output(shape, "bool"),), flops=result.flops, explain=result.explain)


@rule("Sum", "Max", "Min", "Mean")
def variadic(inputs: Sequence[TensorState]) -> RuleResult:
    """Broadcast k inputs; k-1 operations per output element."""
    present = [t for t in inputs if t is not None]
    shape = broadcast(*(t.shape for t in present))
    return _per_element(shape, max(len(present) - 1, 1), f"{len(present)} inputs", weights=tuple(range(len(inputs))))


@rule("Where")
def where(inputs: Sequence[TensorState]) -> RuleResult:
    """Select between two broadcast inputs by a condition; one selection per output element."""
    shape = broadcast(inputs[0].shape, inputs[1].shape, inputs[2].shape)
    result = _per_element(shape, 1, "one selection")
    return RuleResult(outputs=(Output(shape, inputs[1].dtype),), flops=result.flops, explain=result.explain)


def check_static_positive(value: int, what: str) -> None:
    if not isinstance(value, int) or value < 1:
        raise ShapeError(f"{what} must be a positive integer, got {value!r}")
