"""Sliding-window arithmetic shared by convolution and pooling.

The output size along one axis is the seed's formula, generalised:

    out = floor((n + pad_begin + pad_end - (d*(k-1) + 1)) / s) + 1

with ``ceil`` instead of ``floor`` in ceil_mode, where a last window that would start
inside the end padding is dropped (as PyTorch and onnxruntime do).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from archcalc.core.dims import Dim, ceil_div, is_static, minimum
from archcalc.core.errors import ShapeError
from archcalc.rules.base import LayerCall, StandardNode, Window

AXIS_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def axis_names(rank: int) -> tuple[str, ...]:
    names = AXIS_NAMES.get(rank)
    return names if names is not None else tuple(f"x{i}" for i in range(rank))


@dataclass(frozen=True, slots=True)
class AxisWindow:
    """One spatial axis of a sliding-window op, after padding is resolved."""

    size: Dim
    kernel: int
    stride: int
    dilation: int
    pad_begin: Dim
    pad_end: Dim
    out: Dim
    ceil_mode: bool = False

    @property
    def span(self) -> int:
        return self.dilation * (self.kernel - 1) + 1

    def window(self) -> Window:
        begin = self.pad_begin if is_static(self.pad_begin) else 0
        return Window(self.kernel, self.stride, begin, self.dilation)

    def formula(self, name: str) -> str:
        """The seed's worked-example form: floor((32 + 2*1 - 3)/1) + 1 = 32."""
        padding = f"2*{self.pad_begin}" if self.pad_begin == self.pad_end else f"{self.pad_begin} + {self.pad_end}"
        kernel = str(self.kernel) if self.dilation == 1 else f"({self.dilation}*({self.kernel} - 1) + 1)"
        rounding = "ceil" if self.ceil_mode else "floor"
        return f"{name}_out = {rounding}(({self.size} + {padding} - {kernel})/{self.stride}) + 1 = {self.out}"


def _ints(value: Sequence[int] | int | None, count: int, default: int, what: str) -> tuple[int, ...]:
    if value is None:
        return (default,) * count
    if isinstance(value, int):
        return (value,) * count
    values = tuple(value)
    if len(values) != count:
        raise ShapeError(f"{what} has {len(values)} values for {count} spatial axes")
    return values


def sliding_windows(
    spatial: Sequence[Dim],
    kernel_shape: Sequence[int],
    *,
    strides: Sequence[int] | None,
    pads: Sequence[int] | None,
    dilations: Sequence[int] | None,
    auto_pad: str,
    ceil_mode: bool = False,
) -> tuple[AxisWindow, ...]:
    """Resolve padding and output size for every spatial axis (ONNX semantics)."""
    rank = len(spatial)
    kernels = _ints(kernel_shape, rank, 1, "kernel_shape")
    strides_ = _ints(strides, rank, 1, "strides")
    dilations_ = _ints(dilations, rank, 1, "dilations")
    for what, values in (("kernel", kernels), ("stride", strides_), ("dilation", dilations_)):
        for v in values:
            if not isinstance(v, int) or v < 1:
                raise ShapeError(f"{what} must be positive integers, got {list(values)}",
                                 fix=f"use a {what} of 1 or more")
    explicit = _ints(pads, 2 * rank, 0, "pads") if auto_pad in ("NOTSET", "") else (0,) * (2 * rank)
    if any(p < 0 for p in explicit):
        raise ShapeError(f"pads must not be negative, got {list(explicit)}")
    axes = []
    names = axis_names(rank)
    for i, n in enumerate(spatial):
        k, s, d = kernels[i], strides_[i], dilations_[i]
        span = d * (k - 1) + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out = ceil_div(n, s)
            total = (out - 1) * s + span - n
            if is_static(total):
                total = max(total, 0)
            small = total // 2
            begin, end = (small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small)
        else:
            begin, end = explicit[i], explicit[i + rank]
            padded = n + begin + end
            if is_static(padded) and padded < span:
                dilated = f" (dilated to {span})" if d > 1 else ""
                raise ShapeError(
                    f"kernel {k}{dilated} is larger than the padded input on axis {names[i]}: "
                    f"{n} + {begin} + {end} = {padded} < {span}",
                    fix="pad the input, use a smaller kernel, or remove a downsampling layer before it",
                )
            if ceil_mode:
                # Windows may run past the end but must start inside the input or its begin
                # padding (PyTorch's and onnxruntime's rule): at most ceil((n + begin)/s) starts.
                out = minimum(ceil_div(padded - span, s) + 1, ceil_div(n + begin, s))
            else:
                out = (padded - span) // s + 1
        axes.append(AxisWindow(n, k, s, d, begin, end, out, ceil_mode))
    return tuple(axes)


def with_explicit_pads(call: LayerCall) -> Mapping[str, Any]:
    """The layer's attributes with auto_pad SAME_UPPER/SAME_LOWER written as the explicit
    pads it resolves to: onnxruntime cannot run auto_pad SAME_* with dilation, and explicit
    pads run everywhere and say the same. Unchanged when the pads vary with a symbolic size
    and there is no dilation (auto_pad then runs as it is)."""
    attrs = call.attrs
    shape = call.input_shapes[0] if call.input_shapes else None
    if attrs.get("auto_pad") not in ("SAME_UPPER", "SAME_LOWER") or shape is None:
        return attrs
    weight = call.input_shapes[1] if len(call.input_shapes) > 1 else None
    kernel = attrs.get("kernel_shape") or (weight[2:] if weight else ())
    static_kernel = [k for k in kernel if is_static(k)]
    if len(static_kernel) != len(kernel):
        return attrs  # the rule has refused a symbolic kernel already
    axes = sliding_windows(shape[2:], static_kernel, strides=attrs.get("strides"), pads=None,
                           dilations=attrs.get("dilations"), auto_pad=attrs["auto_pad"],
                           ceil_mode=bool(attrs.get("ceil_mode", 0)))
    pads = [a.pad_begin for a in axes] + [a.pad_end for a in axes]
    if not all(is_static(p) for p in pads):
        if not any(d != 1 for d in attrs.get("dilations") or ()):
            return attrs
        raise ShapeError(f"'same' padding with dilation on an input of symbolic size {list(shape)} has no fixed "
                         "pads, and onnxruntime cannot run it as auto_pad",
                         fix="give the input a fixed size with --input-shape, or write the padding explicitly")
    return {**{k: v for k, v in attrs.items() if k != "auto_pad"}, "pads": pads}


def lower_window(call: LayerCall) -> list[StandardNode]:
    """A sliding-window op as itself, its 'same' padding explicit (see with_explicit_pads)."""
    return [StandardNode(call.op, call.inputs, call.outputs, call.name, with_explicit_pads(call))]
