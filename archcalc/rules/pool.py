"""Pooling family: windowed max / average / Lp / min pooling and their global forms.

Pooling has no parameters. FLOPs: one per window element per output (a comparison for
max/min, an addition for average, whose final division is folded in).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import cast

from archcalc.core.dims import Dim, prod
from archcalc.core.errors import ShapeError
from archcalc.rules._common import required
from archcalc.rules._window import AxisWindow, axis_names, lower_window, sliding_windows, with_explicit_pads
from archcalc.rules.base import (
    GLOBAL,
    Inputs,
    LayerCall,
    Output,
    RuleResult,
    Scope,
    StandardNode,
    exported,
    rule,
)


def _check_pads(axes: Sequence[AxisWindow]) -> None:
    """Each explicit pad, begin and end alike, must be smaller than the kernel on its axis.

    onnxruntime (1.32; MaxPool, AveragePool, LpPool) refuses a pad equal to the kernel or
    larger when the session is created ("Pad should be smaller than kernel"), comparing
    with the undilated kernel. It accepts kernel 3 with pad 2, so this follows it rather
    than PyTorch's stricter pad <= kernel/2.
    """
    for axis, name in zip(axes, axis_names(len(axes))):
        for side, pad in (("begin", axis.pad_begin), ("end", axis.pad_end)):
            # Only explicit pads come here (auto_pad NOTSET): the pads attribute's ints, never symbolic.
            if cast(int, pad) >= axis.kernel:
                raise ShapeError(
                    f"pad {pad} at the {side} of axis {name} is not smaller than the kernel {axis.kernel}",
                    fix=f"pad at most {axis.kernel - 1} on that axis (onnxruntime rejects a pad >= kernel), "
                        f"or use a kernel larger than {pad}")


def _pool(x: Sequence[Dim], kernel_shape, strides, pads, dilations, auto_pad, ceil_mode,
          with_indices: bool) -> RuleResult:
    if len(x) < 3:
        raise ShapeError(f"input has shape {list(x)}; pooling needs [N, C, spatial...]",
                         fix="pool a tensor with batch, channel and spatial axes, or use a global pool")
    if not kernel_shape:
        raise ShapeError("pooling needs a kernel_shape", fix="give the window size")
    axes = sliding_windows(x[2:], kernel_shape, strides=strides, pads=pads, dilations=dilations,
                           auto_pad=auto_pad, ceil_mode=bool(ceil_mode))
    if auto_pad in ("NOTSET", ""):  # onnxruntime checks the pads attribute, which SAME_* leaves out
        _check_pads(axes)
    out_shape = (x[0], x[1], *(a.out for a in axes))
    window = prod(kernel_shape)
    flops = prod(out_shape) * window
    outputs = (Output(out_shape), Output(out_shape, "int64")) if with_indices else (Output(out_shape),)
    # PyTorch's max pooling keeps the int64 index of each window's maximum for backward.
    indices_bytes = 8 * prod(out_shape) if with_indices else 0

    def explain() -> list[str]:
        lines = [a.formula(name) for a, name in zip(axes, axis_names(len(axes)))]
        lines.append("params = 0 (pooling has no weights)")
        lines.append(f"FLOPs = output elements * window = {prod(out_shape)} * {window} = {flops}")
        return lines

    return RuleResult(outputs=outputs, flops=flops, receptive=tuple(a.window() for a in axes),
                      explain=explain, backward_state_bytes=indices_bytes)


@rule("MaxPool", reads_values=())
def max_pool(inputs: Inputs, *, kernel_shape=None, strides=None, pads=None,
             dilations=None, auto_pad="NOTSET", ceil_mode=0, storage_order=0) -> RuleResult:
    """Max over each window; output size as for convolution (with ceil_mode)."""
    return _pool(required(inputs[0]).shape, kernel_shape, strides, pads, dilations, auto_pad, ceil_mode, True)


# AveragePool from opset 19 (dilations) runs another onnxruntime kernel than opset 7-18's, several
# times slower on the same window (measured: 2x2 stride 2 on 64x56x56, 26-48 us at opset 13/17,
# 110 us at 19/20): a device file may give it its own efficiency, as `AveragePool.opset19`.
AVERAGE_POOL_19 = 19


@rule("AveragePool", "LpPool", "MinPool", reads_values=())
def average_pool(inputs: Inputs, *, kernel_shape=None, strides=None, pads=None,
                 dilations=None, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, p=2, op="AveragePool",
                 scope: Scope | None = None) -> RuleResult:
    """Average (or Lp norm, or minimum) over each window; output size as for convolution."""
    result = _pool(required(inputs[0]).shape, kernel_shape, strides, pads, dilations, auto_pad, ceil_mode, False)
    # A spec has no opset: export writes it at the newest, so it runs the opset-19 form.
    opset = scope.graph.opset if scope is not None else None
    if op == "AveragePool" and (opset is None or opset >= AVERAGE_POOL_19):
        return replace(result, variant=f"opset{AVERAGE_POOL_19}")
    return result


def _min_pool_as_max_pool(call: LayerCall) -> list[StandardNode]:
    """ONNX has no min pooling: min(window) = -max(-window)."""
    name, attrs = call.name, with_explicit_pads(call)
    negated, pooled = f"{name}/negated", f"{name}/maxpool"
    return [StandardNode("Neg", call.inputs[:1], (negated,), f"{name}/neg_in"),
            StandardNode("MaxPool", (negated,), (pooled,), f"{name}/max", attrs),
            StandardNode("Neg", (pooled,), call.outputs, name)]


exported("MaxPool", "AveragePool", "LpPool", lower=lower_window)
exported("MinPool", lower=_min_pool_as_max_pool)


@rule("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", reads_values=())
def global_pool(inputs: Inputs, *, p=2) -> RuleResult:
    """One value per channel: [N, C, spatial...] -> [N, C, 1, ...]; FLOPs = input elements."""
    x = required(inputs[0]).shape
    if len(x) < 3:
        raise ShapeError(f"input has shape {list(x)}; global pooling needs [N, C, spatial...]")
    out_shape = (x[0], x[1], *([1] * (len(x) - 2)))
    flops = prod(x)

    def explain() -> list[str]:
        return [f"output = [N, C, 1...] = {list(out_shape)}", "params = 0",
                f"FLOPs = input elements = {flops}"]

    return RuleResult(outputs=(Output(out_shape),), flops=flops, receptive=GLOBAL, explain=explain)
