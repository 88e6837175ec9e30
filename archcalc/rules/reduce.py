"""Reduction family: Reduce* over axes, ArgMax / ArgMin, and the scans CumSum and TopK.

FLOPs = input elements for every reduction (one add, multiply, compare or accumulate
per element read; the final division of ReduceMean, the square root of ReduceL2 and the
log of ReduceLogSum* are per output element and not counted). No params. CumSum: one
add per element. TopK: one compare per element read, as ArgMax (a heap or a sort does
more; this is the lower bound every TopK pays).

Axes are an attribute up to opset 17 (ReduceSum: up to 12) and an optional input from
then on; the rules accept either. With no axes every axis is reduced, unless
noop_with_empty_axes is set, which makes the op an identity.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from functools import reduce as fold

from archcalc.core.dims import Dim, Sym, is_static, prod
from archcalc.core.dtypes import is_integral
from archcalc.core.errors import ShapeError, UnknownValue
from archcalc.rules._common import DimMaker, given_length, known_value, required, run_time_shape
from archcalc.rules.base import GLOBAL, POINTWISE, SAVES_NOTHING, Inputs, Output, RuleResult, rule

REDUCE_OPS = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp")

# Values of a full reduction of a small integer tensor (torch writes numel as ReduceProd(Shape)).
# Max and min fold ints only: reduce compares no symbolic values.
_VALUE_FOLDS: dict[str, Callable[[Dim, Dim], Dim] | Callable[[int, int], int]] = {
    "ReduceSum": operator.add, "ReduceProd": operator.mul, "ReduceMax": max, "ReduceMin": min,
}


def _axes(axes: Sequence[int], rank: int, op: str) -> list[int]:
    result = []
    for axis in axes:
        if not isinstance(axis, int) or not -rank <= axis < max(rank, 1):
            raise ShapeError(f"{op}: axis {axis} is out of range for a rank-{rank} tensor")
        result.append(axis % rank if rank else 0)
    return sorted(set(result))


def _reduced(x: Sequence[Dim], axes: list[int], keepdims: int) -> tuple[Dim, ...]:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(x))
    return tuple(d for i, d in enumerate(x) if i not in axes)


def _field(axes: list[int]) -> str:
    """Reducing a spatial axis makes each output see all of it; reducing channels does not."""
    return GLOBAL if any(a >= 2 for a in axes) else POINTWISE


def _explain(x: Sequence[Dim], out: Sequence[Dim], axes: list[int], flops: Dim) -> Callable[[], list[str]]:
    return lambda: [f"output = {list(x)} reduced over axes {axes} = {list(out)}",
                    f"FLOPs = input elements = {flops}"]


def _run_time_axes(x: Sequence[Dim], count: int | None, keepdims: int, noop: int, op: str) -> None:
    """Raise what a reduction over axes given at run time knows: with keepdims, the rank and
    every dim of 1 (a reduced axis becomes 1, others stay); without, the rank when the number
    of axes is known (every dim unknown). Axes given as an empty tensor reduce all, or none."""
    if count == 0 or (count is None and not keepdims):
        return  # known_value raises UnknownValue (the layer is unmodelled): nothing is known
    kept = len(x) if keepdims else len(x) - (count or 0)

    def shapes(unknown: DimMaker) -> list[list[Dim]]:
        if keepdims:
            return [[d if is_static(d) and d == 1 else unknown(0, a) for a, d in enumerate(x)]]
        return [[unknown(0, a) for a in range(kept)]]
    raise run_time_shape(f"{op}'s axes are given at run time, so the reduced dims are unknown", shapes,
                         flops=0 if noop else prod(x))


@rule(*REDUCE_OPS)
def reduce(inputs: Inputs, *, axes=None, keepdims=1, noop_with_empty_axes=0,
           op="") -> RuleResult:
    """Reduce over `axes` (attribute or input; all when none); FLOPs = input elements."""
    if axes is None and len(inputs) > 1 and inputs[1] is not None:
        if inputs[1].value is None and inputs[0] is not None:
            _run_time_axes(inputs[0].shape, given_length(inputs[1]), keepdims, noop_with_empty_axes, op or "Reduce")
        axes = known_value(inputs[1], "axes", op or "Reduce")
    x = required(inputs[0])  # after the axes: an unknown axes input makes the layer unmodelled, first
    if not axes and noop_with_empty_axes:
        return RuleResult(outputs=(Output(tuple(x.shape), value=x.value),),
                          explain=lambda: ["no axes and noop_with_empty_axes: output = input", "0 FLOPs"])
    rank = len(x.shape)
    chosen = _axes(axes, rank, op or "Reduce") if axes else list(range(rank))
    out = _reduced(x.shape, chosen, keepdims)
    flops = prod(x.shape)
    value = None
    if op in _VALUE_FOLDS and x.value and is_integral(x.dtype) and len(chosen) == rank:
        comparable = op in ("ReduceSum", "ReduceProd") or not any(isinstance(v, Sym) for v in x.value)
        value = (fold(_VALUE_FOLDS[op], x.value),) if comparable else None
    return RuleResult(outputs=(Output(out, value=value),), flops=flops, receptive=_field(chosen),
                      explain=_explain(x.shape, out, chosen, flops))


@rule("ArgMax", "ArgMin", saves=SAVES_NOTHING)
def arg_reduce(inputs: Inputs, *, axis=0, keepdims=1, select_last_index=0) -> RuleResult:
    """Index of the largest (smallest) element along `axis`, int64; FLOPs = input elements."""
    x = required(inputs[0]).shape
    chosen = _axes([axis], len(x), "ArgMax/ArgMin")
    out = _reduced(x, chosen, keepdims)
    flops = prod(x)
    return RuleResult(outputs=(Output(out, "int64"),), flops=flops, receptive=_field(chosen),
                      explain=_explain(x, out, chosen, flops))


@rule("CumSum", saves=SAVES_NOTHING)
def cumsum(inputs: Inputs, *, exclusive=0, reverse=0) -> RuleResult:
    """Running sum along the `axis` input; shape unchanged, FLOPs = input elements (one add each)."""
    x = required(inputs[0]).shape
    axis = inputs[1].value if len(inputs) > 1 and inputs[1] is not None else None
    if axis is not None:  # the shape does not depend on the axis, so an unknown one is fine
        _axes(axis, len(x), "CumSum")
    flops = prod(x)
    return RuleResult(outputs=(Output(tuple(x)),), flops=flops,
                      explain=lambda: [f"output = input shape = {list(x)}", f"FLOPs = input elements = {flops}"])


@rule("TopK", saves=SAVES_NOTHING)
def top_k(inputs: Inputs, *, axis=-1, largest=1, sorted=1, k=None) -> RuleResult:
    """The K largest (smallest) values along `axis` and their int64 indices; FLOPs = input elements."""
    x = required(inputs[0]).shape
    if k is None and len(inputs) > 1 and inputs[1] is not None and inputs[1].value is None:
        (cut,) = _axes([axis], len(x), "TopK")
        raise run_time_shape("TopK's K is given at run time, so the cut axis is unknown",
                             lambda unknown: [[unknown(0, cut) if a == cut else d for a, d in enumerate(x)]] * 2,
                             dtypes=[None, "int64"], flops=prod(x))
    if k is None:  # an attribute up to opset 9, an input from opset 10
        if len(inputs) < 2 or inputs[1] is None or inputs[1].value is None:
            raise UnknownValue("TopK's K is not a known constant, so its output shape is unknown",
                               fix="archcalc follows small integer tensors computed from shapes; "
                                   "this K is computed from data")
        (k,) = inputs[1].value
    (along,) = _axes([axis], len(x), "TopK")
    if is_static(k) and is_static(size := x[along]) and not 0 <= k <= size:
        raise ShapeError(f"TopK K = {k} is out of range for axis {axis} of size {x[along]}",
                         fix="K must be between 0 and the size of the axis")
    out = tuple(k if i == along else d for i, d in enumerate(x))
    flops = prod(x)
    return RuleResult(outputs=(Output(out), Output(out, "int64")), flops=flops, receptive=_field([along]),
                      explain=lambda: [f"values and indices = {list(x)} with axis {along} cut to K = {k}: "
                                       f"{list(out)}", f"FLOPs = input elements = {flops} (one compare each)"])
