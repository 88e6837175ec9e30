"""Helpers that several rule families share: axes, broadcasting, known values, moves.

Not rules themselves: a family module imports what it needs from here, never from
another family.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from archcalc.core.dims import Dim, is_static, is_static_shape, prod
from archcalc.core.errors import ShapeError, UnknownValue
from archcalc.rules.base import MAX_VALUES, Output, RuleResult, TensorState

if TYPE_CHECKING:
    from archcalc.core.graph import Value


def required(state: TensorState | None, read: str = "shape") -> TensorState:
    """`state`, an input the op cannot do without, read first for its attribute `read`. An
    absent one (None: the layer lists no tensor there) fails exactly as reading `read` from
    None always has: with that AttributeError, which the engine reports as a ShapeError ("its
    inputs or attributes do not fit the op: 'NoneType' object has no attribute 'shape'")."""
    if state is None:
        raise AttributeError(f"'NoneType' object has no attribute '{read}'")
    return state


def axis_index(axis: int, rank: int, op: str) -> int:
    """`axis` (negative counts from the end) as an index into a rank-`rank` shape."""
    if not isinstance(axis, int) or not -rank <= axis < rank:
        raise ShapeError(f"{op}: axis {axis} is out of range for a rank-{rank} tensor",
                         fix=f"use an axis from {-rank} to {rank - 1}" if rank else "the input has no axes")
    return axis % rank


def known_value(state: TensorState | None, what: str, op: str, *, ints: bool = True) -> Value:
    """The value of an input an op needs as a constant (axes, starts, a target shape)."""
    if state is None or state.value is None:
        raise UnknownValue(f"{op}'s {what} are not a known constant",
                           fix="archcalc follows small integer tensors computed from shapes; "
                               "this one is computed from data, or too large to follow")
    if ints and not all(isinstance(v, int) for v in state.value):
        raise ShapeError(f"{op}'s {what} {list(map(str, state.value))} must be integers, not symbolic dims")
    return tuple(state.value)


def broadcast(*shapes: Sequence[Dim]) -> tuple[Dim, ...]:
    """numpy broadcasting of several shapes; raises ShapeError naming both shapes."""
    if shapes and all(tuple(s) == tuple(shapes[0]) for s in shapes[1:]):  # the common case: nothing to broadcast
        return tuple(shapes[0])
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


def broadcast_values(out_shape: Sequence[Dim], *tensors: TensorState) -> list[Value] | None:
    """Each tensor's (flat, row-major) values repeated to `out_shape` as numpy broadcasting
    does; None unless every value is known and the output is static and small."""
    if any(t.value is None for t in tensors) or not is_static_shape(out_shape):
        return None
    if prod(out_shape) > MAX_VALUES:
        return None
    rank = len(out_shape)
    result = []
    for tensor in tensors:
        shape = (1,) * (rank - len(tensor.shape)) + tuple(tensor.shape)
        value = tensor.value
        assert value is not None  # every tensor's value is known: checked above
        if not is_static_shape(shape) or len(value) != prod(shape):
            return None
        strides, step = [], 1
        for dim in reversed(shape):
            strides.append(step if dim != 1 else 0)
            step *= dim
        strides.reverse()
        result.append(tuple(value[sum(i * s for i, s in zip(index, strides))]
                            for index in itertools.product(*(range(d) for d in out_shape))))
    return result


def value_array(x: TensorState) -> np.ndarray:
    """The values of a small tensor of static shape as an array of Python objects (ints,
    or symbolic dims read from shapes), for ops that move them around."""
    return np.array(x.value, dtype=object).reshape(tuple(x.shape))


def moved(shape: Sequence[Dim], dtype: str | None = None, value: Value | None = None,
          how: str = "", view: bool = False) -> RuleResult:
    """The result of an op that only moves values: no arithmetic. A learned tensor moved
    into place (an embedding table gathered, a class token expanded, a position table
    sliced, a Linear weight transposed) is a param, like any weight (input 0); small
    integer values (shape arithmetic) travel along in `value`. A `view` keeps every value
    (another shape or type): the layer using it as a weight counts it (RuleResult.views)."""
    shape = tuple(shape)
    return RuleResult(outputs=(Output(shape, dtype, value),), weights=(0,), views=(0,) if view else (),
                      explain=lambda: [f"output = {how + ' = ' if how else ''}{list(shape)}", "no arithmetic: 0 FLOPs"])
