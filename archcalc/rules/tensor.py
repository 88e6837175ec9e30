"""Tensor manipulation family: layout changes and data movement, no arithmetic.

These ops cost no MACs and no FLOPs; linear-interpolating Resize is the exception
(3 FLOPs per output element per interpolated axis: one lerp).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from fractions import Fraction
from typing import TYPE_CHECKING, cast

import numpy as np

from archcalc.core.dims import Dim, Sym, bind, is_static, is_static_shape, prod, shape_symbols
from archcalc.core.dtypes import dtype_name
from archcalc.core.errors import ShapeError, UnboundDim, UnknownValue
from archcalc.rules._common import (
    axis_index,
    given_length,
    known_value,
    moved,
    required,
    run_time_shape,
    value_array,
)
from archcalc.rules.base import (
    GLOBAL,
    POINTWISE,
    SAVES_NOTHING,
    SAVES_VIEW,
    Inputs,
    Output,
    RuleResult,
    TensorState,
    Window,
    rule,
)

if TYPE_CHECKING:
    from archcalc.core.graph import Value


@rule("Identity", saves=SAVES_VIEW)
def identity(inputs: Inputs) -> RuleResult:
    """Output equals input; a learned tensor passed through is a param, counted by the layer
    that uses it as a weight (a view, as Reshape's)."""
    x = required(inputs[0])
    return RuleResult(outputs=(Output(x.shape, value=x.value),), weights=(0,), views=(0,))


@rule("Flatten", saves=SAVES_VIEW)
def flatten(inputs: Inputs, *, axis=1) -> RuleResult:
    """[d0..dn] -> [prod(d0..d(axis-1)), prod(d(axis)..dn)]."""
    data = required(inputs[0])
    x = data.shape
    cut = axis % len(x) if axis < 0 else axis
    if cut > len(x):
        raise ShapeError(f"Flatten axis {axis} is out of range for a rank-{len(x)} tensor")
    how = f"[{' * '.join(map(str, x[:cut])) or 1}, {' * '.join(map(str, x[cut:])) or 1}]"
    result = moved((prod(x[:cut]), prod(x[cut:])), None, data.value, how, view=True)
    # Receptive field: flattened spatial axes leave no spatial layout to window: global.
    return replace(result, receptive=GLOBAL if len(x) > 2 else POINTWISE)


@rule("Reshape", saves=SAVES_VIEW)
def reshape(inputs: Inputs, *, allowzero=0, bindings: Mapping[str, int] | None = None) -> RuleResult:
    """New shape from the shape input: 0 copies the input dim, -1 takes what is left."""
    data = required(inputs[0])
    x = data.shape
    target = required(inputs[1], "value").value
    rank = given_length(inputs[1])
    if target is None and rank is not None:
        raise run_time_shape("Reshape's target shape is given at run time, so its dims are unknown",
                             lambda unknown: [[unknown(0, a) for a in range(rank)]], weights=(0,))
    if target is None:
        raise UnknownValue("Reshape's target shape is computed from data, so its output shape is unknown",
                           fix="archcalc follows integer tensors computed from shapes, not from data")
    out: list[Dim] = []
    infer_at = None
    for i, dim in enumerate(target):
        if dim == 0 and not allowzero:
            out.append(x[i])
        elif dim == -1:
            if infer_at is not None:
                raise ShapeError(f"Reshape target {list(target)} has more than one -1",
                                 fix="give every dim but one; only one can be inferred (-1)")
            infer_at = i
            out.append(1)
        else:
            out.append(dim)
    total, known = prod(x), prod(out)
    if infer_at is not None:
        if is_static(total) and is_static(known) and (known == 0 or total % known):
            raise ShapeError(f"cannot reshape {list(x)} ({total} elements) to {list(target)}",
                             fix=f"make the other dims multiply to a divisor of {total}")
        out[infer_at] = total // known
    elif total != known:
        if is_static(total) and is_static(known):
            differ = True
        elif not is_static(total) and not is_static(known):
            # Symbolic counts (a symbolic batch) may agree for some binding (batch*H vs
            # 64*batch, when H = 64), so only a pair that differs for every binding fails:
            # one a constant multiple r != 1 of the other (192*batch vs 25*batch), as
            # element counts are positive. Leading coefficients a, b give r = a/b.
            a, b = cast(Sym, total).terms[0][1], cast(Sym, known).terms[0][1]  # Dims that are not ints
            differ = total * b == known * a
        else:
            # c*m (one term, m a positive integer) never equals a constant that c does not divide.
            # One is an int, the other (a Dim that is not) a Sym.
            term, constant = (cast(Sym, total), known) if is_static(known) else (cast(Sym, known), cast(int, total))
            differ = len(term.terms) == 1 and constant % term.terms[0][1] != 0
        if differ:
            raise ShapeError(f"cannot reshape {list(x)} ({total} elements) to {list(out)} ({known} elements)",
                             fix="make the element counts agree, or use -1 for one dim")
    _check_counts_at(bindings, x, total, out)
    result = moved(out, None, data.value, f"reshape {list(x)} to {list(target)}", view=True)
    # Receptive field: kept when the spatial axes (all but N, C) come out whole and last (only the
    # leading dims split or merge); global when no spatial axis is left; otherwise neighbouring
    # outputs are no longer neighbouring inputs and it is unknown (no windows for its axes).
    spatial = tuple(x[2:])
    kept = len(out) >= len(x) and tuple(out[len(out) - len(spatial):]) == spatial
    return replace(result, receptive=POINTWISE if kept or not spatial else (GLOBAL if len(out) <= 2 else ()))


def _check_counts_at(bindings: Mapping[str, int] | None, x: Sequence[Dim], total: Dim, out: Sequence[Dim]) -> None:
    """Symbolic counts that agree for some binding (2048*batch and 2048 at batch 1) must
    agree for the one counted with: a fixed target at another batch cannot run."""
    if not bindings or (is_static(total) and all(is_static(d) for d in out)):
        return
    try:
        have, want = bind(total, bindings), bind(prod(out), bindings)
    except (UnboundDim, ZeroDivisionError):
        return  # nothing to count with (or a dim that divides by a zero binding): the shapes stay symbolic
    if have != want:
        used = ", ".join(f"{name}={bindings[name]}" for name in sorted(shape_symbols((*x, *out))))
        raise ShapeError(f"cannot reshape {list(x)} ({have} elements at {used}) to {list(out)} ({want} elements)",
                         fix="the target shape is fixed in the model, so it runs only where the counts agree: "
                             "bind the dims to the values it was exported with, or export it with a dynamic shape")


@rule("Transpose", saves=SAVES_NOTHING)
def transpose(inputs: Inputs, *, perm=None) -> RuleResult:
    """Permute the axes (reverse them by default)."""
    data = required(inputs[0])
    x = data.shape
    order = list(perm) if perm is not None else list(reversed(range(len(x))))
    if sorted(order) != list(range(len(x))):
        raise ShapeError(f"perm {order} is not a permutation of {len(x)} axes")
    value = None
    if data.value is not None and all(is_static(d) for d in x):
        value = tuple(value_array(data).transpose(order).flat)  # shape arithmetic (Swin's pads)
    return moved([x[i] for i in order], None, value, f"permute {list(x)} by {order}", view=True)


@rule("Concat", saves=SAVES_NOTHING)
def concat(inputs: Inputs, *, axis=1) -> RuleResult:
    """Join along `axis`; every other dim must match."""
    shapes = [t.shape for t in inputs if t is not None]
    rank = len(shapes[0])
    along = axis_index(axis, rank, "Concat")
    for shape in shapes[1:]:
        mismatched = len(shape) != rank or any(
            i != along and is_static(a) and is_static(b) and a != b
            for i, (a, b) in enumerate(zip(shapes[0], shape)))
        if mismatched:
            raise ShapeError(
                f"cannot concatenate {list(shapes[0])} and {list(shape)} along axis {axis}",
                fix="every dim except the concatenation axis must match (check strides and padding)",
            )
    out = list(shapes[0])
    out[along] = sum((s[along] for s in shapes[1:]), shapes[0][along])
    values = None
    if all(t.value is not None for t in inputs if t is not None) and rank == 1:
        values = tuple(v for t in inputs if t is not None for v in cast("Value", t.value))  # all known (just checked)
    # A learned tensor joined to activations (ViT's class token) is a param.
    return RuleResult(outputs=(Output(tuple(out), value=values),), weights=tuple(range(len(inputs))),
                      explain=lambda: [f"output {out[along]} = " + " + ".join(str(s[along]) for s in shapes)
                                       + f" along axis {axis}; shape {out}"])


@rule("Pad", saves=SAVES_NOTHING)
def pad(inputs: Inputs, *, mode="constant", pads=None, value=0.0) -> RuleResult:
    """Each axis grows by its begin and end pads (opset < 11: attribute; later: input)."""
    x = required(inputs[0]).shape
    rank = len(x)
    amounts = pads if pads is not None else (inputs[1].value if len(inputs) > 1 and inputs[1] else None)
    axes_input = inputs[3] if len(inputs) > 3 else None
    padded: list[int] | None = list(range(rank))
    if axes_input is not None:  # None when which axes grow is known only at run time
        padded = None if axes_input.value is None else [axis_index(a, rank, "Pad") for a in axes_input.value]
    if amounts is None or padded is None:
        if pads is None and (len(inputs) < 2 or inputs[1] is None):
            raise ShapeError("Pad has no pads", fix="give the pads input (opset 11 on) or attribute")
        raise run_time_shape(f"Pad's {'pads' if amounts is None else 'axes'} are given at run time, so the padded "
                             "dims are unknown", lambda unknown: [[unknown(0, a) if padded is None or a in padded
                                                                   else d for a, d in enumerate(x)]])
    axes = padded
    if len(amounts) != 2 * len(axes):
        raise ShapeError(f"Pad has {len(amounts)} pads for {len(axes)} axes; it needs begin and end per axis")
    out = list(x)
    for j, axis in enumerate(axes):
        size = out[axis] = x[axis] + amounts[j] + amounts[j + len(axes)]
        if is_static(size) and size < 0:
            raise ShapeError(f"padding {list(amounts)} leaves axis {axis} with size {size}")
    windows = tuple(Window(1, 1, amounts[axes.index(a)] if a in axes else 0) for a in range(2, rank))
    return RuleResult(outputs=(Output(tuple(out)),), receptive=windows,
                      explain=lambda: [f"output = input + begin + end pads = {out}", "0 FLOPs"])


def _scaled(dim: Dim, scale: float) -> Dim:
    """floor(dim * scale) as onnxruntime computes it: in float32, so 10 * 0.7f is 7, not 6."""
    if float(scale).is_integer():
        return dim * int(scale)
    if is_static(dim):
        return int(np.floor(np.float32(dim) * np.float32(scale)))
    ratio = Fraction(float(np.float32(scale))).limit_denominator(1 << 16)
    return dim * ratio.numerator // ratio.denominator


def _sizes_for_aspect(x: Sequence[Dim], chosen: Sequence[int], sizes: Sequence[Dim], policy: str) -> list[Dim]:
    """Output dims from `sizes` (one per chosen axis) under keep_aspect_ratio_policy: stretch
    takes them as they are; not_larger (not_smaller) scales every chosen axis by the smallest
    (largest) ratio size / input, out = floor(scale * in + 1/2), as onnx's reference does."""
    out = list(x)
    if policy == "stretch":
        for axis, size in zip(chosen, sizes):
            out[axis] = size
        return out
    if policy not in ("not_larger", "not_smaller"):
        raise ShapeError(f"Resize keep_aspect_ratio_policy {policy!r} is not one of stretch, not_larger, not_smaller")
    dims = [x[a] for a in chosen]
    if not is_static_shape(dims) or not is_static_shape(sizes) or not all(d > 0 for d in dims):
        raise UnknownValue(f"Resize with keep_aspect_ratio_policy {policy} needs static input dims and sizes")
    ratios = [Fraction(size, dim) for size, dim in zip(sizes, dims)]
    scale = min(ratios) if policy == "not_larger" else max(ratios)
    for axis, dim in zip(chosen, dims):
        out[axis] = math.floor(scale * dim + Fraction(1, 2))
    return out


@rule("Resize", "Upsample")
def resize(inputs: Inputs, *, mode="nearest", scales=None,
           coordinate_transformation_mode="half_pixel", cubic_coeff_a=-0.75, exclude_outside=0,
           extrapolation_value=0.0, nearest_mode="round_prefer_floor", antialias=0, axes=None,
           keep_aspect_ratio_policy="stretch", op="Resize") -> RuleResult:
    """out = floor(n * scale) per axis (of `axes`, all by default), or the sizes input (under
    keep_aspect_ratio_policy); linear modes cost one lerp per axis."""
    x = required(inputs[0]).shape
    rank = len(x)
    chosen = [axis_index(a, rank, op) for a in axes] if axes is not None else list(range(rank))
    if len(set(chosen)) != len(chosen):
        raise ShapeError(f"{op} axes {list(axes)} repeat an axis")

    def given(index: int) -> TensorState | None:  # an input present and not empty (Resize-11's roi, scales: [])
        state = inputs[index] if len(inputs) > index else None
        return state if state is not None and not (state.shape and is_static(state.shape[0]) and
                                                   state.shape[0] == 0) else None

    # Resize-10 and Upsample-9: (X, scales); Resize-11 on: (X, roi, scales, sizes).
    scales_input = given(1) if op == "Upsample" or len(inputs) == 2 else given(2)
    sizes_input = given(3)
    roi = given(1) if op == "Resize" and len(inputs) > 2 else None
    source = sizes_input if sizes_input is not None else (None if scales is not None else scales_input)
    if source is None and scales is None:
        raise ShapeError(f"{op} needs scales or sizes", fix="give the scales or the sizes input")
    what = "sizes" if source is not None and source is sizes_input else "scales"
    if source is not None and source.value is None:
        count = source.shape[0] if len(source.shape) == 1 else None
        if count is not None and is_static(count) and count != len(chosen):
            raise ShapeError(f"{op} has {count} {what} for {len(chosen)} axes", fix="give one per resized axis")
        raise run_time_shape(f"{op}'s {what} are given at run time, so the resized dims are unknown",
                             lambda unknown: [[unknown(0, a) if a in chosen else d for a, d in enumerate(x)]])
    values = list(source.value if source is not None and source.value is not None else scales)
    if len(values) != len(chosen):
        raise ShapeError(f"{op} has {len(values)} {what} for {len(chosen)} axes ({rank}-D input"
                         + (f", axes {list(axes)})" if axes is not None else ")"),
                         fix="give one per resized axis")
    factors: list[float] = [1.0] * rank
    if what == "sizes":
        out = _sizes_for_aspect(x, chosen, values, keep_aspect_ratio_policy)
        for a in chosen:
            size, dim = out[a], x[a]
            factors[a] = size / dim if is_static(size) and is_static(dim) and dim else 1
    else:
        out = list(x)
        box = roi.value if coordinate_transformation_mode == "tf_crop_and_resize" and roi is not None else None
        for j, (a, f) in enumerate(zip(chosen, values)):
            factors[a] = f
            dim = x[a]
            if box is not None and len(box) == 2 * len(chosen) and is_static(dim):
                extent = box[len(chosen) + j] - box[j]
                # onnxruntime: floor(in * (roi_end - roi_start) * scale), in float32
                out[a] = int(np.floor(np.float32(dim) * np.float32(extent) * np.float32(f)))
            else:
                out[a] = _scaled(dim, f)
    resized_axes = sum(1 for f in factors if f != 1)
    per_element = 3 * resized_axes if "linear" in mode else (7 * resized_axes if mode == "cubic" else 0)
    flops = per_element * prod(out)
    # Receptive field: output o samples input point x = (o + 1/2)/f - 1/2 (half_pixel) or o/f
    # (asymmetric; Upsample, align_corners roughly); nearest reads round(x), linear (cubic) the
    # inputs closer to x than 1 (2) pixels, widened by 1/f when antialiasing a downsampling
    # (inputs exactly 1 or 2 away have weight 0). As a window: a transposed convolution of
    # stride f for an integer f, a convolution of stride n for f = 1/n; other factors: unknown.
    reach = 2 if mode == "cubic" else (1 if "linear" in mode else 0)
    half_pixel = op != "Upsample" and coordinate_transformation_mode not in ("asymmetric", "align_corners")

    def window(f: float) -> Window | None:
        if f == 1:
            return Window(1, 1, 0)
        if float(f).is_integer():
            f = int(f)
            if not reach:  # floor(o / f), the nearest input in every mode but the rare *ceil ones
                return Window(f, f, 0, transposed=True)
            twice_c, span = (1 - f if half_pixel else 0), 2 * reach * f  # x = (o + c)/f; |f*i - o - c| < span/2
            odd = twice_c % 2
            return Window(span - 1 + odd, f, (twice_c + span - 2 + odd) // 2, transposed=True)
        n = round(1 / f) if f > 0 else 0
        if n < 2 or abs(f * n - 1) > 1e-6:
            return None
        twice_c = n - 1 if half_pixel else 0  # x = o*n + c
        if not reach:
            return Window(1, n, -(twice_c // 2))
        half = reach * n if antialias else reach
        odd = twice_c % 2
        return Window(2 * half - 1 + odd, n, half - (twice_c + 2 - odd) // 2)

    windows = tuple(window(f) for f in factors[2:])
    # Without a None, `windows` holds only Windows.
    receptive = () if None in windows else cast("tuple[Window, ...]", windows)
    return RuleResult(outputs=(Output(tuple(out)),), flops=flops, receptive=receptive,
                      explain=lambda: [f"output = input * scales = {list(x)} * {factors} = {out}"
                                       + (f" ({what} {values} on axes {chosen}, {keep_aspect_ratio_policy})"
                                          if what == "sizes" else ""),
                                       f"FLOPs = {per_element} ({mode}) * {prod(out)} = {flops}"])


def _blocks(x: Sequence[Dim], blocksize: int, op: str) -> None:
    if len(x) != 4:
        raise ShapeError(f"{op} needs a 4-D [N, C, H, W] input, got {list(x)}")
    if not isinstance(blocksize, int) or blocksize < 1:
        raise ShapeError(f"{op} blocksize {blocksize} must be a positive integer")


@rule("DepthToSpace", saves=SAVES_NOTHING)
def depth_to_space(inputs: Inputs, *, blocksize=None, mode="DCR") -> RuleResult:
    """[N, C, H, W] -> [N, C / b^2, H * b, W * b] (DCR or CRD order, same shape); 0 FLOPs."""
    x = required(inputs[0]).shape
    _blocks(x, blocksize, "DepthToSpace")
    b = blocksize
    if is_static(x[1]) and x[1] % (b * b):
        raise ShapeError(f"DepthToSpace: {x[1]} channels are not divisible by blocksize^2 = {b * b}",
                         fix="the channels must be a multiple of blocksize squared")
    out = (x[0], x[1] // (b * b), x[2] * b, x[3] * b)
    return RuleResult(outputs=(Output(out),), receptive=(Window(b, b, 0, transposed=True),) * 2,
                      explain=lambda: [f"output = [N, C / {b}^2, H * {b}, W * {b}] = {list(out)} ({mode})",
                                       "no arithmetic: 0 FLOPs"])


@rule("SpaceToDepth", saves=SAVES_NOTHING)
def space_to_depth(inputs: Inputs, *, blocksize=None) -> RuleResult:
    """[N, C, H, W] -> [N, C * b^2, H / b, W / b]; 0 FLOPs."""
    x = required(inputs[0]).shape
    _blocks(x, blocksize, "SpaceToDepth")
    b = blocksize
    for name, dim in (("H", x[2]), ("W", x[3])):
        if is_static(dim) and dim % b:
            raise ShapeError(f"SpaceToDepth: {name} = {dim} is not divisible by blocksize {b}",
                             fix="pad or crop the input to a multiple of the blocksize")
    out = (x[0], x[1] * b * b, x[2] // b, x[3] // b)
    return RuleResult(outputs=(Output(out),), receptive=(Window(b, b, 0),) * 2,
                      explain=lambda: [f"output = [N, C * {b}^2, H / {b}, W / {b}] = {list(out)}",
                                       "no arithmetic: 0 FLOPs"])


@rule("Trilu", saves=SAVES_NOTHING)
def trilu(inputs: Inputs, *, upper=1) -> RuleResult:
    """Keep the upper (lower) triangle of the last two axes, zero the rest; shape unchanged, 0 FLOPs."""
    x = required(inputs[0]).shape
    if len(x) < 2:
        raise ShapeError(f"Trilu needs at least 2-D input, got {list(x)}")
    return RuleResult(outputs=(Output(tuple(x)),), weights=(0,),
                      explain=lambda: [f"output = input shape = {list(x)} ({'upper' if upper else 'lower'} "
                                       "triangle)", "no arithmetic: 0 FLOPs"])


@rule("OneHot", saves=SAVES_NOTHING)
def one_hot(inputs: Inputs, *, axis=-1) -> RuleResult:
    """indices shape with `depth` inserted at `axis`, the dtype of `values`; depth must be a known constant."""
    indices, values = required(inputs[0]).shape, inputs[2]
    depth_state = inputs[1]
    if depth_state is not None and depth_state.value is None and prod(depth_state.shape) == 1:
        where = axis_index(axis, len(indices) + 1, "OneHot")
        raise run_time_shape("OneHot's depth is given at run time, so its depth axis is unknown",
                             lambda unknown: [[*indices[:where], unknown(0, where), *indices[where:]]],
                             dtypes=[required(values, "dtype").dtype])
    if depth_state is None or depth_state.value is None or len(depth_state.value) != 1:
        raise UnknownValue("OneHot's depth is not a known constant, so its output shape is unknown",
                           fix="archcalc follows small constants and integers computed from shapes; "
                               "this depth is computed from data")
    (depth,) = depth_state.value
    if isinstance(depth, float):
        if not depth.is_integer():
            raise ShapeError(f"OneHot depth {depth} is not a whole number")
        depth = int(depth)
    if is_static(depth) and depth < 1:
        raise ShapeError(f"OneHot depth {depth} must be positive")
    rank = len(indices) + 1
    at = axis_index(axis, rank, "OneHot")
    out = (*indices[:at], depth, *indices[at:])
    return RuleResult(outputs=(Output(out, required(values, "dtype").dtype),),
                      explain=lambda: [f"output = indices {list(indices)} with depth {depth} at axis {at} = "
                                       f"{list(out)}", "no arithmetic: 0 FLOPs"])


@rule("EyeLike", saves=SAVES_NOTHING)
def eye_like(inputs: Inputs, *, dtype=None, k=0) -> RuleResult:
    """A 2-D identity (ones on diagonal k) of the input's shape, of `dtype` or the input's; 0 FLOPs."""
    data = required(inputs[0])
    x = data.shape
    if len(x) != 2:
        raise ShapeError(f"EyeLike needs a 2-D input, got {list(x)}")
    out_dtype = dtype_name(dtype) if dtype is not None else data.dtype
    return RuleResult(outputs=(Output(tuple(x), out_dtype),),
                      explain=lambda: [f"output = {list(x)} {out_dtype}, ones on diagonal {k}", "0 FLOPs"])


@rule("CenterCropPad", saves=SAVES_NOTHING)
def center_crop_pad(inputs: Inputs, *, axes=None) -> RuleResult:
    """Each of `axes` (all by default) cropped or padded about its centre to the size in `shape`; 0 FLOPs."""
    x = required(inputs[0]).shape
    sizes = known_value(inputs[1], "shape", "CenterCropPad", ints=False)
    chosen = [axis_index(a, len(x), "CenterCropPad") for a in axes] if axes is not None else list(range(len(x)))
    if len(sizes) != len(chosen):
        raise ShapeError(f"CenterCropPad has {len(sizes)} sizes for {len(chosen)} axes",
                         fix="give one target size per axis in `axes` (every axis by default)")
    out = list(x)
    for a, size in zip(chosen, sizes):
        if is_static(size) and size < 0:
            raise ShapeError(f"CenterCropPad target size {size} on axis {a} is negative")
        out[a] = size
    return RuleResult(outputs=(Output(tuple(out)),),
                      explain=lambda: [f"output = {list(x)} cropped/padded on axes {chosen} to {list(out)}",
                                       "no arithmetic: 0 FLOPs"])
