"""Shape family: the ops exported graphs use to compute shapes at run time.

torch.onnx writes ``x.view(x.size(0), -1)`` as Shape -> Gather -> Unsqueeze -> Concat ->
Reshape. These rules carry the *values* of small integer tensors (``TensorState.value``,
at most ``MAX_VALUES`` elements, row-major; a symbolic dim stays a symbolic value) so
the Reshape at the end sees a known target and its output has concrete dims. A tensor
computed from activations, or too large, has a shape but no value.

None of these ops does arithmetic on activations: 0 MACs and 0 FLOPs. (Range, Expand,
Tile and ConstantOfShape write memory; that is activation traffic, not FLOPs.)
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, TypeGuard

import numpy as np

from archcalc.core.dims import Dim, Sym, ceil_div, is_static, is_static_shape, minimum, prod
from archcalc.core.dtypes import dtype_name, is_integral
from archcalc.core.errors import ShapeError
from archcalc.rules._common import (
    axis_index,
    broadcast,
    broadcast_values,
    given_length,
    known_value,
    moved,
    required,
    run_time_shape,
    value_array,
)
from archcalc.rules.base import MAX_VALUES, SAVES_NOTHING, SAVES_VIEW, Inputs, Output, RuleResult, TensorState, rule

if TYPE_CHECKING:
    from archcalc.core.graph import Value

# Exporters write INT_MAX / INT64_MAX (or their negatives) for "to the end" in Slice.
SLICE_END = 2**31 - 1


def _small(shape: Sequence[Dim]) -> TypeGuard[Sequence[int]]:
    return is_static_shape(shape) and prod(shape) <= MAX_VALUES


@rule("Constant", saves=SAVES_NOTHING)
def constant(inputs: Inputs, *, value=None, value_float=None, value_floats=None,
             value_int=None, value_ints=None, value_string=None, value_strings=None,
             sparse_value=None) -> RuleResult:
    """A tensor written in the graph; its value is kept when it is small."""
    if isinstance(value, TensorState):
        return moved(value.shape, value.dtype, value.value, "the constant's shape")
    if isinstance(sparse_value, TensorState):
        return moved(sparse_value.shape, sparse_value.dtype, None, "the sparse constant's shape")
    if value_int is not None:
        return moved((), "int64", (int(value_int),))
    if value_ints is not None:
        ints = tuple(int(v) for v in value_ints)
        return moved((len(ints),), "int64", ints if len(ints) <= MAX_VALUES else None)
    if value_float is not None:
        return moved((), "float32", (float(value_float),))
    if value_floats is not None:
        floats = tuple(float(v) for v in value_floats)
        return moved((len(floats),), "float32", floats if len(floats) <= MAX_VALUES else None)
    if value_string is not None:
        return moved((), "string")
    if value_strings is not None:
        return moved((len(value_strings),), "string")
    raise ShapeError("Constant has no value attribute", fix="give it `value` (a tensor) or value_ints etc.")


@rule("Shape", saves=SAVES_NOTHING)
def shape_of(inputs: Inputs, *, start=0, end=None) -> RuleResult:
    """The input's dims (from `start` to `end`) as a 1-D int64 tensor; its value is known."""
    dims = tuple(required(inputs[0]).shape)[start:end]  # Python slicing clamps as ONNX does
    return _read_shape((len(dims),), dims, f"the dims {list(map(str, dims))} as a 1-D tensor")


@rule("Size", saves=SAVES_NOTHING)
def size_of(inputs: Inputs) -> RuleResult:
    """The input's element count as an int64 scalar; its value is known."""
    shape = required(inputs[0]).shape
    return _read_shape((), (prod(shape),), f"the scalar {prod(shape)}")


def _read_shape(shape: tuple[Dim, ...], value: Value, how: str) -> RuleResult:
    """Shape's and Size's result: int64 values read from the input's shape alone. A weight
    read only so uses none of its values, so it is no param (tf2onnx keeps an unused
    copy of each attention kernel just to take its shape)."""
    return replace(moved(shape, "int64", value, how), weights=())


@rule("Gather", saves=SAVES_NOTHING, reads_picked=(0,))
def gather(inputs: Inputs, *, axis=0) -> RuleResult:
    """data[..., indices, ...] along `axis`: shape data[:axis] + indices + data[axis+1:]."""
    data, indices = inputs[0], inputs[1]
    data = required(data)
    rank = len(data.shape)
    along = axis_index(axis, rank, "Gather")
    indices = required(indices)
    out = tuple(data.shape[:along]) + tuple(indices.shape) + tuple(data.shape[along + 1:])
    value = None
    if data.value is not None and indices.value is not None and _small(out) and _small(data.shape) \
            and all(isinstance(i, int) for i in indices.value):
        dim = data.shape[along]
        picked = []
        for index in indices.value:
            if not -dim <= index < dim:
                raise ShapeError(f"Gather index {index} is out of range for axis {axis} of size {dim}")
            picked.append(index % dim)
        outer, inner = prod(data.shape[:along]), prod(data.shape[along + 1:])
        value = tuple(data.value[(o * dim + i) * inner + j]
                      for o in range(outer) for i in picked for j in range(inner))
    return moved(out, None, value, f"data {list(data.shape)} gathered by indices {list(indices.shape)}")


@rule("GatherElements", saves=SAVES_NOTHING, reads_picked=(0,))
def gather_elements(inputs: Inputs, *, axis=0) -> RuleResult:
    """One element per index: output has the indices' shape."""
    data = required(inputs[0])
    axis_index(axis, len(data.shape), "GatherElements")
    return moved(required(inputs[1]).shape, data.dtype, None, "the indices' shape")


@rule("GatherND", saves=SAVES_NOTHING, reads_picked=(0,))
def gather_nd(inputs: Inputs, *, batch_dims=0) -> RuleResult:
    """indices [..., k] pick slices of data: indices.shape[:-1] + data.shape[batch_dims + k:]."""
    state = required(inputs[0])
    data, indices = state.shape, required(inputs[1]).shape
    k = indices[-1] if indices else None
    if not is_static(k) or batch_dims + k > len(data):
        raise ShapeError(f"GatherND indices {list(indices)} do not fit data {list(data)}")
    out = tuple(indices[:-1]) + tuple(data[batch_dims + k:])
    return moved(out, state.dtype, None, f"indices[:-1] + data[{batch_dims} + {k}:]")


@rule("ScatterND", "ScatterElements", "Scatter", saves=SAVES_NOTHING)
def scatter(inputs: Inputs, *, axis=0, reduction="none") -> RuleResult:
    """Write updates into a copy of data: output has data's shape."""
    return moved(required(inputs[0]).shape, None, None, "the data's shape")


@rule("Unsqueeze", saves=SAVES_VIEW)
def unsqueeze(inputs: Inputs, *, axes=None) -> RuleResult:
    """Insert size-1 axes at `axes` (of the output); attribute before opset 13, input after."""
    if axes is None:
        axes = known_value(inputs[1] if len(inputs) > 1 else None, "axes", "Unsqueeze")
    data = required(inputs[0])
    x = data.shape
    rank = len(x) + len(axes)
    positions = sorted(axis_index(a, rank, "Unsqueeze") for a in axes)
    if len(set(positions)) != len(positions):
        raise ShapeError(f"Unsqueeze axes {list(axes)} repeat an axis")
    out = list(x)
    for position in positions:
        out.insert(position, 1)
    return moved(out, None, data.value, f"{list(x)} with 1 inserted at axes {positions}", view=True)


@rule("Squeeze", saves=SAVES_VIEW)
def squeeze(inputs: Inputs, *, axes=None) -> RuleResult:
    """Remove size-1 axes (`axes`, or every static 1 when none are given: a symbolic dim is kept)."""
    if axes is None and len(inputs) > 1 and inputs[1] is not None:
        axes = known_value(inputs[1], "axes", "Squeeze")
    data = required(inputs[0])
    x = data.shape
    if axes:
        drop = {axis_index(a, len(x), "Squeeze") for a in axes}
        for a in drop:
            if is_static(x[a]) and x[a] != 1:
                raise ShapeError(f"Squeeze axis {a} has size {x[a]}, not 1",
                                 fix="only axes of size 1 can be squeezed")
    else:
        drop = {a for a, d in enumerate(x) if d == 1}
    out = [d for a, d in enumerate(x) if a not in drop]
    return moved(out, None, data.value, f"{list(x)} without axes {sorted(drop)}", view=True)


def _slice_length(dim: Dim, start: Dim, end: Dim, step: int) -> Dim:
    """Elements of range(start, end, step) over an axis of `dim`, with ONNX's clamping. A
    symbolic dim is assumed large enough for the bounds that are written as plain numbers; a
    symbolic bound (assumed >= 0) of a forward slice over a number of rows is clamped to it
    exactly: rows [0:seq] of a table of 1024 are min(seq, 1024)."""
    if isinstance(dim, int) and isinstance(start, int) and isinstance(end, int):
        return len(range(*slice(start, end, step).indices(dim)))

    def position(index: Dim) -> Dim:
        if isinstance(index, Sym):
            return minimum(index, dim) if step > 0 and isinstance(dim, int) else index
        if index >= SLICE_END:
            return dim if step > 0 else dim - 1
        if index <= -SLICE_END:
            return 0 if step > 0 else -1
        return dim + index if index < 0 else index

    length = position(end) - position(start) if step > 0 else position(start) - position(end)
    if is_static(length):
        length = max(length, 0)
    return ceil_div(length, abs(step)) if abs(step) != 1 else length


def _run_time_slice(x: Sequence[Dim], inputs: Inputs) -> None:
    """Raise what a slice with bounds given at run time knows: the rank, and the dims of the
    axes it does not slice when its axes are known."""
    axes_input = inputs[3] if len(inputs) > 3 else None
    if axes_input is not None and axes_input.value is not None:
        sliced = {axis_index(a, len(x), "Slice") for a in axes_input.value}
    elif axes_input is None and (count := given_length(inputs[1])) is not None:
        sliced = set(range(count))
    else:
        sliced = set(range(len(x)))
    raise run_time_shape("Slice's bounds are given at run time, so the sliced dims are unknown",
                         lambda unknown: [[unknown(0, a) if a in sliced else d for a, d in enumerate(x)]],
                         weights=(0,))


@rule("Slice", saves=SAVES_NOTHING, reads_picked=(0,))
def slice_(inputs: Inputs, *, starts=None, ends=None, axes=None) -> RuleResult:
    """x[start:end:step] on each listed axis (inputs from opset 10, attributes before)."""
    x = inputs[0]
    steps = None
    if len(inputs) > 1 and x is not None and any(t is not None and t.value is None for t in inputs[1:5]):
        _run_time_slice(x.shape, inputs)
    if len(inputs) > 1:
        starts = known_value(inputs[1], "starts", "Slice", ints=False)
        ends = known_value(inputs[2] if len(inputs) > 2 else None, "ends", "Slice", ints=False)
        if len(inputs) > 3 and inputs[3] is not None:
            axes = known_value(inputs[3], "axes", "Slice")
        if len(inputs) > 4 and inputs[4] is not None:
            steps = known_value(inputs[4], "steps", "Slice")
    if starts is None or ends is None:
        raise ShapeError("Slice needs starts and ends")
    x = required(x)
    rank = len(x.shape)
    axes = tuple(axes) if axes is not None else tuple(range(len(starts)))
    steps = tuple(steps) if steps is not None else (1,) * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ShapeError(f"Slice has {len(starts)} starts, {len(ends)} ends, {len(axes)} axes and "
                         f"{len(steps)} steps; they must be as many")
    out = list(x.shape)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if step == 0:
            raise ShapeError("Slice step must not be 0")
        along = axis_index(axis, rank, "Slice")
        out[along] = _slice_length(x.shape[along], start, end, step)
    value = None
    if x.value is not None and all(is_static(d) for d in x.shape) \
            and all(isinstance(v, int) for v in (*starts, *ends)):
        # Python's slice clamps out-of-range bounds as ONNX does, for either sign of step.
        window = [slice(None)] * rank
        for start, end, axis, step in zip(starts, ends, axes, steps):
            window[axis_index(axis, rank, "Slice")] = slice(start, end, step)
        value = tuple(value_array(x)[tuple(window)].flat)
    bounds = ", ".join(f"axis {a}: {s}:{e}:{st}" for s, e, a, st in zip(starts, ends, axes, steps))
    return moved(out, None, value, f"{list(x.shape)} sliced ({bounds})")


@rule("Split", saves=SAVES_NOTHING)
def split(inputs: Inputs, *, axis=0, split=None, num_outputs=None,
          n_outputs=1) -> RuleResult:
    """Cut along `axis` into the given sizes, or into equal parts (the last smaller at opset 18)."""
    x = required(inputs[0])
    along = axis_index(axis, len(x.shape), "Split")
    dim = x.shape[along]
    sizes = split
    if sizes is None and len(inputs) > 1 and inputs[1] is not None and inputs[1].value is None \
            and given_length(inputs[1]) != 0:
        x_shape = x.shape
        raise run_time_shape("Split's sizes are given at run time, so the split axis is unknown",
                             lambda unknown: [[unknown(k, along) if a == along else d for a, d in enumerate(x_shape)]
                                              for k in range(n_outputs)])
    if sizes is None and len(inputs) > 1 and inputs[1] is not None:
        sizes = known_value(inputs[1], "split sizes", "Split", ints=False)
    if sizes is None or len(sizes) == 0:
        parts = num_outputs or n_outputs
        if is_static(dim):
            chunk = -(-dim // parts)
            sizes = (chunk,) * (parts - 1) + (dim - chunk * (parts - 1),)
            if sizes[-1] < 0 or (num_outputs is None and dim % parts):
                raise ShapeError(f"an axis of {dim} cannot be split into {parts} equal parts",
                                 fix="give the split sizes")
        else:
            sizes = (dim // parts,) * parts
    sizes = tuple(sizes)
    total = sum(sizes[1:], sizes[0]) if sizes else 0
    if is_static(dim) and is_static(total) and total != dim:
        raise ShapeError(f"Split sizes {list(sizes)} add up to {total}, not the axis size {dim}")
    outputs = []
    offset = 0
    for size in sizes:
        shape = list(x.shape)
        shape[along] = size
        value = None
        if x.value is not None and len(x.shape) == 1 and is_static(size) and is_static(offset):
            value = tuple(x.value[offset:offset + size])
        outputs.append(Output(tuple(shape), None, value))
        offset = offset + size
    return RuleResult(outputs=tuple(outputs),
                      explain=lambda: [f"axis {along} of {dim} split into {list(sizes)}", "0 FLOPs"])


@rule("ConstantOfShape", saves=SAVES_NOTHING)
def constant_of_shape(inputs: Inputs, *, value=None) -> RuleResult:
    """A tensor of the shape given by the input's value, filled with `value` (0.0 by default)."""
    rank = given_length(inputs[0])
    if inputs[0] is not None and inputs[0].value is None and rank is not None:
        raise run_time_shape("ConstantOfShape's shape is given at run time, so its dims are unknown",
                             lambda unknown: [[unknown(0, a) for a in range(rank)]],
                             dtypes=[value.dtype if isinstance(value, TensorState) else "float32"])
    dims = known_value(inputs[0], "shape", "ConstantOfShape", ints=False)
    if any(is_static(d) and d < 0 for d in dims):
        raise ShapeError(f"ConstantOfShape shape {list(dims)} has a negative dim")
    dtype = value.dtype if isinstance(value, TensorState) else "float32"
    fill = value.value[0] if isinstance(value, TensorState) and value.value else 0
    filled = (fill,) * prod(dims) if is_integral(dtype) and _small(dims) else None
    return moved(dims, dtype, filled, f"{list(dims)} filled with {fill}")


@rule("Expand", saves=SAVES_NOTHING)
def expand(inputs: Inputs) -> RuleResult:
    """Broadcast the input to the shape given as the second input's value (both ways, as numpy)."""
    x = inputs[0]
    count = given_length(inputs[1])
    if inputs[1] is not None and inputs[1].value is None and count is not None and x is not None:
        rank = max(len(x.shape), count)
        aligned = (1,) * (rank - len(x.shape)) + tuple(x.shape)
        # Broadcasting keeps every input dim but 1 (the shape's dim there is 1 or the same).
        raise run_time_shape("Expand's shape is given at run time, so the broadcast dims are unknown",
                             lambda unknown: [[unknown(0, a) if is_static(d) and d == 1 else d
                                               for a, d in enumerate(aligned)]], weights=(0,))
    dims = known_value(inputs[1], "shape", "Expand", ints=False)
    x = required(x)
    out = broadcast(x.shape, dims)
    values = broadcast_values(out, x) if is_integral(x.dtype) else None
    return moved(out, None, values[0] if values else None, f"{list(x.shape)} broadcast with {list(dims)}")


@rule("Tile", saves=SAVES_NOTHING)
def tile(inputs: Inputs) -> RuleResult:
    """Repeat the input `repeats[i]` times along axis i: out = dim * repeats."""
    x = inputs[0]
    if inputs[1] is not None and inputs[1].value is None and x is not None \
            and given_length(inputs[1]) == len(x.shape):
        shape = x.shape
        raise run_time_shape("Tile's repeats are given at run time, so the tiled dims are unknown",
                             lambda unknown: [[d if is_static(d) and d == 0 else unknown(0, a)
                                               for a, d in enumerate(shape)]], weights=(0,))
    repeats = known_value(inputs[1], "repeats", "Tile", ints=False)
    x = required(x)
    if len(repeats) != len(x.shape):
        raise ShapeError(f"Tile has {len(repeats)} repeats for a rank-{len(x.shape)} input")
    out = tuple(d * r for d, r in zip(x.shape, repeats))
    value = None
    if x.value is not None and _small(out) and _small(x.shape):
        value = _tiled(x.value, tuple(x.shape), out)
    return moved(out, None, value, f"{list(x.shape)} * {list(repeats)}")


def _tiled(value: Value, shape: Sequence[int], out: Sequence[int]) -> Value:
    result = []
    for flat in range(prod(out)):
        index, source = flat, 0
        stride = 1
        for axis in reversed(range(len(out))):
            index, position = divmod(index, out[axis])
            source += (position % shape[axis]) * stride
            stride *= shape[axis]
        result.append(value[source])
    return tuple(result)


@rule("Range", saves=SAVES_NOTHING)
def range_(inputs: Inputs) -> RuleResult:
    """start, start + delta, ... below limit: max(ceil((limit - start) / delta), 0) elements."""
    if any(t is not None and t.value is None for t in inputs[:3]) and inputs[0] is not None:
        raise run_time_shape("Range's bounds are given at run time, so its length is unknown",
                             lambda unknown: [[unknown(0, 0)]], dtypes=[inputs[0].dtype])
    start, limit, delta = (known_value(t, name, "Range", ints=False)[0]
                           for t, name in zip(inputs, ("start", "limit", "delta")))
    value = None
    if all(isinstance(v, int) for v in (start, limit, delta)):
        if delta == 0:
            raise ShapeError("Range delta must not be 0")
        length = max(-((start - limit) // delta), 0)
        value = tuple(range(start, limit, delta)) if length <= MAX_VALUES else None
    elif all(isinstance(v, (int, float)) for v in (start, limit, delta)):
        length = max(math.ceil((limit - start) / delta), 0)
        value = tuple(start + i * delta for i in range(length)) if length <= MAX_VALUES else None
    elif isinstance(delta, int) and delta > 0:
        length = ceil_div(limit - start, delta)
    else:
        raise ShapeError(f"Range({start}, {limit}, {delta}) has a length archcalc cannot work out")
    return moved((length,), None, value, f"[max(ceil(({limit} - {start}) / {delta}), 0)]")


def _cast_value(value: int | float | str | Sym, dtype: str) -> object:
    if isinstance(value, Sym):
        if dtype in ("bool", "string"):
            raise ValueError
        return value
    if dtype == "bool":
        return bool(value)
    if is_integral(dtype):
        return int(value)
    if dtype.startswith("float"):
        if isinstance(value, int) and not isinstance(value, bool):
            return value  # a whole number (a size cast to float) stays exact, as shape arithmetic needs
        precision = _FLOAT_PRECISION.get(dtype)
        return float(precision(value)) if precision is not None else float(value)
    raise ValueError


# Casting a float value to these rounds it to their precision; others (bfloat16, float8) keep it as it is.
_FLOAT_PRECISION = {"float16": np.float16, "float32": np.float32, "float64": np.float64}


@rule("Cast", "CastLike", saves=SAVES_NOTHING)
def cast(inputs: Inputs, *, to=1, saturate=1, round_mode="up") -> RuleResult:
    """Same shape, new dtype (`to`, or the second input's for CastLike); small values follow."""
    x = inputs[0]
    dtype = inputs[1].dtype if len(inputs) > 1 and inputs[1] is not None else dtype_name(to)
    x = required(x, "value")
    value = None
    if x.value is not None:
        try:
            value = tuple(_cast_value(v, dtype) for v in x.value)
        except (ValueError, TypeError, OverflowError):
            value = None
    return moved(x.shape, dtype, value, f"{list(x.shape)} as {dtype}", view=True)


@rule("NonZero", saves=SAVES_NOTHING)
def nonzero(inputs: Inputs, *, node_name="") -> RuleResult:
    """Indices of the non-zero elements, [rank, count]; the count depends on the data, so it is a
    symbolic dim named after the layer (bind it with --dim) unless the input's value is known."""
    x = required(inputs[0], "value")
    count: Dim
    if x.value is not None and not any(isinstance(v, Sym) for v in x.value):
        count = sum(1 for v in x.value if v)
    elif is_static(prod(x.shape)) and prod(x.shape) == 0:
        count = 0
    else:
        count = Sym.symbol((re.sub(r"\W+", "_", node_name).strip("_") or "nonzero") + "_count")
    return moved((len(x.shape), count), "int64", None, "[rank, number of non-zero elements]")


def _data_count(node_name: str, fallback: str) -> Sym:
    """The symbol of a count that depends on the data, named after the layer (bind it with --dim)."""
    return Sym.symbol((re.sub(r"\W+", "_", node_name).strip("_") or fallback) + "_count")


@rule("Compress", saves=SAVES_NOTHING)
def compress(inputs: Inputs, *, axis=None, node_name="") -> RuleResult:
    """The slices along `axis` (of the flattened input without one) where the condition is
    true; their count depends on the data (a symbol named after the layer) unless the
    condition's value is known."""
    x, condition = required(inputs[0]), required(inputs[1])
    length = prod(x.shape) if axis is None else x.shape[axis_index(axis, len(x.shape), "Compress")]
    count: Dim = _data_count(node_name, "compress")
    if condition.value is not None and is_static(length) and not any(isinstance(v, Sym) for v in condition.value):
        count = sum(1 for v in condition.value[:length] if v)  # numpy's: a shorter condition drops the rest
    if axis is None:
        out: tuple[Dim, ...] = (count,)
    else:
        along = axis_index(axis, len(x.shape), "Compress")
        out = tuple(count if a == along else d for a, d in enumerate(x.shape))
    return moved(out, None, None, f"the selected slices along axis {axis}" if axis is not None
                 else "the selected elements of the flattened input")


@rule("NonMaxSuppression", saves=SAVES_NOTHING)
def non_max_suppression(inputs: Inputs, *, center_point_box=0, node_name="") -> RuleResult:
    """[selected boxes, 3] int64 (batch, class, box): how many are kept depends on the data
    (a symbol named after the layer), at most batch x classes x max_output_boxes_per_class."""
    boxes, scores = required(inputs[0]), required(inputs[1])
    if len(boxes.shape) != 3 or len(scores.shape) != 3:
        raise ShapeError(f"NonMaxSuppression takes boxes [batch, boxes, 4] and scores [batch, classes, boxes], "
                         f"got {list(boxes.shape)} and {list(scores.shape)}")
    count = _data_count(node_name, "nms")
    message = ("its FLOPs (the overlaps it computes) depend on the data and are not counted; "
               f"the number of boxes kept is {count}")
    return RuleResult(outputs=(Output((count, 3), "int64"),), warnings=(message,),
                      explain=lambda: [f"output = [{count}, 3]: batch, class and box of each box kept", message])
