"""Element-wise family: unary maths, binary and variadic ops with numpy broadcasting.

FLOPs: one per output element per elementary operation (an add, multiply, compare,
exp, erf, ...). A binary op costs 1 per output element; Sum/Max/Min of k inputs
cost k-1, Mean k. Learned tensors feeding these ops (an ONNX bias Add, a scale Mul)
are counted as params when they are weights.

Values: when both inputs of an integer (or bool) binary op, comparison or Where carry
known values (small shape tensors, see :mod:`archcalc.rules.shape`), the output carries
the computed values too, so exported shape arithmetic resolves to concrete dims.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from archcalc.core.dims import Dim, Sym, prod
from archcalc.core.dtypes import is_integral
from archcalc.core.errors import ShapeError
from archcalc.rules._common import broadcast, broadcast_values, required
from archcalc.rules.base import SAVES_NOTHING, Inputs, Output, RuleResult, TensorState, rule

if TYPE_CHECKING:
    from archcalc.core.graph import Value


class _Unknown(Exception):
    """A value that cannot be decided (a comparison involving a symbolic dim)."""


def _int_div(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        quotient = abs(a) // abs(b)  # integer Div truncates toward zero
        return quotient if (a >= 0) == (b >= 0) else -quotient
    return a // b  # symbolic dims are sizes, never negative


def _decided(compare: Callable[[int, int], object]) -> Callable[[Dim, Dim], bool]:
    def apply(a: Dim, b: Dim) -> bool:
        # A symbolic dim is a size: never negative, so it compares with a negative number
        # as 0 does (torch's Expand pattern tests a shape against -1).
        if isinstance(a, Sym) and isinstance(b, int) and b < 0:
            a = 0
        elif isinstance(b, Sym) and isinstance(a, int) and a < 0:
            b = 0
        elif isinstance(a, Sym) or isinstance(b, Sym):
            if compare is operator.eq and a == b:
                return True
            raise _Unknown
        return bool(compare(a, b))

    return apply


def _numbers_only(function: Callable[..., object]) -> Callable[..., object]:
    def apply(*args: object) -> object:
        if any(isinstance(a, Sym) for a in args):
            raise _Unknown
        return function(*args)

    return apply


def _lower_bound(dim: Dim) -> int:
    """A value `dim` cannot be below: itself for an int; for a polynomial of named dims
    with positive coefficients (each bound to a size of at least 1), the sum of its
    coefficients; for anything else symbolic, 0 (a size is never negative)."""
    if isinstance(dim, int):
        return dim
    if all(coeff > 0 and all(isinstance(atom, str) for atom in mono) for mono, coeff in dim.terms):
        return sum(coeff for _, coeff in dim.terms)
    return 0


def _extreme(larger: bool) -> Callable[[Dim, Dim], Dim]:
    """Max (or Min) of two dims, where it can be decided: tf2onnx computes broadcast
    shapes as the Max of two shape vectors."""

    def apply(a: Dim, b: Dim) -> Dim:
        if a == b:
            return a
        if isinstance(a, int) and isinstance(b, int):
            return max(a, b) if larger else min(a, b)
        if isinstance(b, int) and b <= _lower_bound(a):
            return a if larger else b
        if isinstance(a, int) and a <= _lower_bound(b):
            return b if larger else a
        raise _Unknown

    return apply


VALUE_OPS: dict[str, Callable[..., object]] = {
    "Add": operator.add, "Sub": operator.sub, "Mul": operator.mul, "Div": _int_div,
    "Mod": _numbers_only(operator.mod),  # integer Mod (fmod=0) takes the divisor's sign, as Python's %
    "Equal": _decided(operator.eq), "Less": _decided(operator.lt), "LessOrEqual": _decided(operator.le),
    "Greater": _decided(operator.gt), "GreaterOrEqual": _decided(operator.ge),
    "And": _numbers_only(lambda a, b: bool(a and b)), "Or": _numbers_only(lambda a, b: bool(a or b)),
    "Xor": _numbers_only(lambda a, b: bool(a) != bool(b)),
}


# numpy types whose arithmetic the values of float tensors follow (bfloat16 and float8 have none).
FLOAT_PRECISION = {"float16": np.float16, "float32": np.float32, "float64": np.float64}


def _in_precision(dtype: str, function: Callable[..., object]) -> Callable[..., object]:
    """`function` on the values of a float tensor: a whole number (a size cast to float, as
    torch's exporter computes sizes) stays an exact int, or a symbolic dim, where the result is
    one; anything else is computed as a float and rounded to the tensor's precision."""
    precision = FLOAT_PRECISION[dtype]

    def apply(*args: object) -> object:
        result = function(*args)
        if isinstance(result, (bool, Sym)):
            return result
        if isinstance(result, int):
            return result
        if isinstance(result, float):
            rounded = float(precision(result))
            return int(rounded) if rounded.is_integer() and all(isinstance(a, (int, Sym)) for a in args) \
                and abs(rounded) < 2**53 else rounded
        raise _Unknown

    return apply


def _true_div(a: object, b: object) -> object:
    """Float Div: exact for whole numbers and symbolic dims that divide, a float otherwise."""
    if isinstance(b, int) and b and isinstance(a, int) and a % b == 0:
        return a // b
    if isinstance(a, Sym) and isinstance(b, int) and b > 0 and all(c % b == 0 for _, c in a.terms):
        return a // b
    return _numbers(operator.truediv)(a, b)


def _numbers(function: Callable[..., object]) -> Callable[..., object]:
    """`function` on plain numbers only (a symbolic dim makes the value unknown)."""
    def apply(*args: object) -> object:
        if any(isinstance(a, Sym) for a in args):
            raise _Unknown
        return function(*[float(a) if not isinstance(a, bool) else a for a in args])  # type: ignore[arg-type]

    return apply


def _sym_or_number(function: Callable[[Dim, Dim], object]) -> Callable[[object, object], object]:
    """Add, Sub, Mul: exact on ints and symbolic dims, float arithmetic on anything else."""
    def apply(a: object, b: object) -> object:
        if isinstance(a, (int, Sym)) and isinstance(b, (int, Sym)):
            return function(a, b)
        return _numbers(function)(a, b)

    return apply


FLOAT_VALUE_OPS: dict[str, Callable[..., object]] = {
    "Add": _sym_or_number(operator.add), "Sub": _sym_or_number(operator.sub),
    "Mul": _sym_or_number(operator.mul), "Div": _true_div, "Pow": _numbers(operator.pow),
    "Mod": _numbers(math.fmod),  # float Mod must set fmod=1: C's fmod, the dividend's sign
}


def binary_value(op: str, a: TensorState, b: TensorState, shape: Sequence[Dim], fmod: int = 0) -> Value | None:
    """The values of `op` applied to two inputs with known values (integer, bool or float),
    else None."""
    if is_integral(a.dtype) and is_integral(b.dtype):
        function = None if fmod else VALUE_OPS.get(op)
    elif a.dtype in FLOAT_PRECISION and a.dtype == b.dtype:
        function = (_decided_any(VALUE_OPS[op]) if op in COMPARISONS
                    else FLOAT_VALUE_OPS.get(op) and _in_precision(a.dtype, FLOAT_VALUE_OPS[op]))
    else:
        return None
    if function is None:
        return None
    values = broadcast_values(shape, a, b)
    if values is None:
        return None
    try:
        return tuple(function(x, y) for x, y in zip(*values))
    except (_Unknown, ShapeError, TypeError, ZeroDivisionError, ValueError, OverflowError):
        return None


def _decided_any(compare: Callable[..., object]) -> Callable[[object, object], object]:
    """A comparison of float values: decided as for integers where a symbolic dim is involved."""
    def apply(a: object, b: object) -> object:
        if (isinstance(a, Sym) or isinstance(b, Sym)) and (isinstance(a, float) or isinstance(b, float)):
            raise _Unknown
        return compare(a, b)

    return apply


def _whole_kept(function: Callable[[float], float]) -> Callable[[Any], object]:
    """Floor, Ceil, Round: an int or a symbolic dim is already whole; a float is rounded."""
    return lambda v: v if isinstance(v, (int, Sym)) else float(function(v))


# Unary ops whose values are followed: on ints and symbolic dims exactly where the result is
# one (sizes are never negative, so |n| = n), on other numbers in float arithmetic.
UNARY_VALUE_OPS: dict[str, Callable[[Any], object]] = {
    "Not": lambda v: not v,
    "Neg": lambda v: -v,
    "Abs": lambda v: v if isinstance(v, Sym) else abs(v),
    "Sign": _numbers(lambda v: float((v > 0) - (v < 0))),
    "Floor": _whole_kept(math.floor), "Ceil": _whole_kept(math.ceil), "Round": _whole_kept(round),  # half to even
    "Sqrt": _numbers(math.sqrt), "Reciprocal": _numbers(lambda v: 1.0 / v),
    "Exp": _numbers(math.exp), "Log": _numbers(math.log),
    "BitwiseNot": _numbers_only(operator.invert),
}


def unary_value(op: str, x: TensorState) -> Value | None:
    """The values of unary `op` on an input with known values, in the dtypes ONNX allows it."""
    function = UNARY_VALUE_OPS.get(op)
    if function is None or x.value is None:
        return None
    if x.dtype in FLOAT_PRECISION:
        if op in ("Not", "BitwiseNot"):
            return None
        function = _in_precision(x.dtype, function)
    elif x.dtype == "bool":
        if op != "Not":
            return None
    elif is_integral(x.dtype):
        if op in ("Not", "Sqrt", "Reciprocal", "Exp", "Log"):
            return None
        if op == "Sign":
            function = _numbers_only(lambda v: (v > 0) - (v < 0))
    else:
        return None
    try:
        return tuple(function(v) for v in x.value)
    except (_Unknown, TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None


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
    "Not", "BitwiseNot",
)


@rule(*UNARY_OPS)
def unary(inputs: Inputs, *, op="") -> RuleResult:
    """One elementary operation per element; shape unchanged."""
    x = required(inputs[0])
    result = _per_element(x.shape, 1, "one operation")
    value = unary_value(op, x)
    return result if value is None else replace(result, outputs=(Output(tuple(x.shape), value=value),))


@rule("IsNaN", "IsInf")
def float_test(inputs: Inputs) -> RuleResult:
    """One test per element; a bool output of the input's shape."""
    x = required(inputs[0])
    result = _per_element(x.shape, 1, "one test")
    return replace(result, outputs=(Output(tuple(x.shape), "bool"),))


# Addition and subtraction pass gradients through unchanged; products need their operands.
ADDITIVE_OPS = ("Add", "Sub")
BINARY_OPS = ("Mul", "Div", "Pow", "Mod", "BitShift", "And", "Or", "Xor", "BitwiseAnd", "BitwiseOr", "BitwiseXor")
COMPARISONS = ("Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual")


@rule(*ADDITIVE_OPS, saves=SAVES_NOTHING)
@rule(*BINARY_OPS)
def binary(inputs: Inputs, *, fmod=0, direction="", op="") -> RuleResult:
    """Broadcast the two inputs; one operation per output element."""
    a, b = required(inputs[0]), required(inputs[1])
    shape = broadcast(a.shape, b.shape)
    result = _per_element(shape, 1, "one operation", weights=(0, 1))
    value = binary_value(op, a, b, shape, fmod)
    if value is None:
        return result
    return RuleResult(outputs=(Output(shape, value=value),), flops=result.flops, weights=result.weights,
                      explain=result.explain)


@rule(*COMPARISONS, saves=SAVES_NOTHING)
def comparison(inputs: Inputs, *, op="") -> RuleResult:
    """Broadcast the two inputs; one comparison per output element; bool output."""
    a, b = required(inputs[0]), required(inputs[1])
    shape = broadcast(a.shape, b.shape)
    result = _per_element(shape, 1, "one comparison")
    value = binary_value(op, a, b, shape)
    return RuleResult(outputs=(Output(shape, "bool", value),), flops=result.flops, explain=result.explain)


# Variadic ops whose values are followed for integer inputs (shape arithmetic); ONNX's
# Sum and Mean take float inputs only.
VARIADIC_VALUE_OPS: dict[str, Callable[[Dim, Dim], Dim]] = {"Max": _extreme(larger=True),
                                                             "Min": _extreme(larger=False)}


@rule("Sum", "Mean", saves=SAVES_NOTHING)
@rule("Max", "Min")
def variadic(inputs: Inputs, *, op="") -> RuleResult:
    """Broadcast k inputs; k-1 operations per output element."""
    present = [t for t in inputs if t is not None]
    shape = broadcast(*(t.shape for t in present))
    result = _per_element(shape, max(len(present) - 1, 1), f"{len(present)} inputs",
                          weights=tuple(range(len(inputs))))
    value = _variadic_value(op, present, shape)
    if value is None:
        return result
    return replace(result, outputs=(Output(shape, value=value),))


def _variadic_value(op: str, inputs: Sequence[TensorState], shape: Sequence[Dim]) -> Value | None:
    function = VARIADIC_VALUE_OPS.get(op)
    if function is None or not all(is_integral(t.dtype) for t in inputs):
        return None
    values = broadcast_values(shape, *inputs)
    if values is None:
        return None
    try:
        return tuple(functools.reduce(function, column) for column in zip(*values))
    except (_Unknown, TypeError):
        return None


@rule("Where")
def where(inputs: Inputs) -> RuleResult:
    """Select between two broadcast inputs by a condition; one selection per output element."""
    condition, x, y = required(inputs[0]), required(inputs[1]), required(inputs[2])
    shape = broadcast(condition.shape, x.shape, y.shape)
    result = _per_element(shape, 1, "one selection")
    value = None
    if x.value is not None and y.value is not None:
        values = broadcast_values(shape, condition, x, y)
        if values is not None and all(isinstance(c, (bool, int)) for c in values[0]):
            value = tuple(x if c else y for c, x, y in zip(*values))
    return RuleResult(outputs=(Output(shape, x.dtype, value),), flops=result.flops,
                      explain=result.explain)
