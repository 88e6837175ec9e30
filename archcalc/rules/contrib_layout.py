"""onnxruntime's layout ops: the channel-blocked (NCHWc) ops its graph optimizations write at
the ORT_ENABLE_ALL level (domain com.microsoft.nchwc), and its channels-last (NHWC) ops
(com.microsoft NhwcConv, NhwcFusedConv, NhwcMaxPool, and QLinearConv with channels_last).

NCHWc: MLAS stores a [N, C, H, W] tensor as [N, C / B, H, W, B], blocks of B channels
(B = 8 with SSE or AVX2, 16 with AVX-512: the block size of the machine that saved the
graph). The graph still declares such a tensor 4-D, [N, C', H, W], with C' = C rounded up
to whole blocks (onnxruntime's schemas, nchwc_schema_defs.cc, and what its kernels return).
The blocked Conv's weight is stored already reordered and padded: [round_up(M, B), C / group,
kH, kW], so its output has W[0] channels, and the ops are counted as their standard forms on
these shapes (the Conv's, pools' and Resize's rules, called here): the work the kernel does,
padding included. onnxruntime's transformer only blocks convolutions whose filter count is a
whole number of blocks (or that it pads: a filter count not a multiple of B gains zero
filters, which then count as params and MACs), and reorders only whole blocks of channels.
ReorderInput and ReorderOutput move data: no FLOPs.

NHWC: the same arithmetic as the NCHW op (its rule called on the transposed shapes); the
weights keep the standard [M, C / group, k...] layout (the schemas' shape functions transpose
only the data input and output).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from archcalc.core.dims import Dim, is_static
from archcalc.core.errors import ShapeError
from archcalc.rules._common import required
from archcalc.rules.base import SAVES_NOTHING, Inputs, Output, RuleResult, TensorState, rule
from archcalc.rules.contrib_fused import fused_conv
from archcalc.rules.conv import conv
from archcalc.rules.pool import average_pool, global_pool, max_pool
from archcalc.rules.quantize import qlinear_conv
from archcalc.rules.tensor import resize

NCHWC = "com.microsoft.nchwc"
MS = "com.microsoft"
# MLAS' block sizes: 8 channels (SSE, AVX2), 16 (AVX-512). A channel count that is a multiple
# of the widest is whole blocks on every machine; the kernels take multiples of 4 only.
WIDEST_BLOCK = 16
REORDER_MULTIPLE = 4


def _channels_first(shape: Sequence[Dim]) -> tuple[Dim, ...]:
    shape = tuple(shape)
    return (shape[0], shape[-1], *shape[1:-1])


def _channels_last(shape: Sequence[Dim]) -> tuple[Dim, ...]:
    shape = tuple(shape)
    return (shape[0], *shape[2:], shape[1])


def _as_channels_last(result: RuleResult, op: str) -> RuleResult:
    """`result` of the NCHW op with its first output given back in NHWC."""
    out = result.outputs[0]
    shape = _channels_last(out.shape)
    first = result.explain

    def explain() -> list[str]:
        return [*(first() if first else []), f"{op} works channels-last: output [N, spatial..., C] = {list(shape)}"]

    return replace(result, outputs=(Output(shape, out.dtype),), explain=explain)


def _nhwc_input(inputs: Inputs, op: str) -> list:
    x = required(inputs[0], "_replace")
    if len(x.shape) < 3:
        raise ShapeError(f"{op}'s input has shape {list(x.shape)}; it takes [N, spatial..., C]")
    return [x._replace(shape=_channels_first(x.shape)), *inputs[1:]]


# ---------------------------------------------------------------------------------------
# com.microsoft.nchwc


@rule("Conv", domain=NCHWC, reads_values=())
def nchwc_conv(inputs: Inputs, *, kernel_shape=None, strides=None, pads=None, dilations=None, group=1,
               auto_pad="NOTSET", activation="", activation_params=None) -> RuleResult:
    """Conv on blocked channels (+ Sum, + activation), as FusedConv; output channels = W[0], padded to blocks."""
    return fused_conv(inputs, kernel_shape=kernel_shape, strides=strides, pads=pads, dilations=dilations,
                      group=group, auto_pad=auto_pad, activation=activation, activation_params=activation_params)


@rule("MaxPool", domain=NCHWC, reads_values=())
def nchwc_max_pool(inputs: Inputs, *, kernel_shape=None, strides=None, pads=None, dilations=None,
                   auto_pad="NOTSET", ceil_mode=0, storage_order=0) -> RuleResult:
    """MaxPool on blocked channels (no indices output); FLOPs = window per output."""
    pooled = max_pool(inputs, kernel_shape=kernel_shape, strides=strides, pads=pads, dilations=dilations,
                      auto_pad=auto_pad, ceil_mode=ceil_mode)
    return replace(pooled, outputs=pooled.outputs[:1], backward_state_bytes=0)


@rule("AveragePool", domain=NCHWC, reads_values=())
def nchwc_average_pool(inputs: Inputs, *, kernel_shape=None, strides=None, pads=None, dilations=None,
                       auto_pad="NOTSET", ceil_mode=0, count_include_pad=0) -> RuleResult:
    """AveragePool on blocked channels; FLOPs = window per output."""
    return average_pool(inputs, kernel_shape=kernel_shape, strides=strides, pads=pads, dilations=dilations,
                        auto_pad=auto_pad, ceil_mode=ceil_mode, count_include_pad=count_include_pad)


@rule("GlobalAveragePool", "GlobalMaxPool", domain=NCHWC, reads_values=())
def nchwc_global_pool(inputs: Inputs) -> RuleResult:
    """One value per (blocked) channel: [N, C', H, W] -> [N, C', 1, 1]; FLOPs = input elements."""
    return global_pool(inputs)


@rule("Upsample", domain=NCHWC, reads_values=())
def nchwc_upsample(inputs: Inputs, *, scales=None, mode="nearest",
                   coordinate_transformation_mode="asymmetric") -> RuleResult:
    """out = n * scale per axis (integer scales); linear mode 3 FLOPs per output per resized axis."""
    if not scales:
        raise ShapeError("the NCHWc Upsample has no scales", fix="give one integer scale per axis")
    if any(not isinstance(s, int) or s < 1 for s in scales):
        raise ShapeError(f"the NCHWc Upsample has scales {list(scales)}", fix="its scales are positive integers")
    # Upsample-9's form: the scales as a constant input
    factors = TensorState((len(scales),), "float32", tuple(float(s) for s in scales))
    return resize([inputs[0], factors], mode=mode, coordinate_transformation_mode=coordinate_transformation_mode,
                  op="Upsample")


@rule("ReorderInput", domain=NCHWC, saves=SAVES_NOTHING, reads_values=())
def reorder_input(inputs: Inputs, *, channels_last=0) -> RuleResult:
    """[N, C, spatial...] (or [N, spatial..., C]) -> blocked [N, C, spatial...]; no FLOPs."""
    x = required(inputs[0]).shape
    if len(x) < 2:
        raise ShapeError(f"ReorderInput's input has shape {list(x)}", fix="it takes [N, C, spatial...]")
    channels = x[-1] if channels_last else x[1]
    spatial = x[1:-1] if channels_last else x[2:]
    warnings: tuple[str, ...] = ()
    if is_static(channels):
        if channels % REORDER_MULTIPLE:
            raise ShapeError(f"ReorderInput has {channels} channels",
                             fix=f"onnxruntime's kernel reorders a multiple of {REORDER_MULTIPLE} channels")
        if channels % WIDEST_BLOCK:
            warnings = (f"ReorderInput keeps {channels} channels, whole blocks on the machine that saved the graph "
                        f"(blocks of 8 channels: SSE, AVX2); an AVX-512 machine pads them to blocks of "
                        f"{WIDEST_BLOCK}",)
    out = (x[0], channels, *spatial)
    return RuleResult(outputs=(Output(out),), warnings=warnings,
                      explain=lambda: [f"output = [N, C, spatial...] = {list(out)}, C in whole blocks of channels",
                                       "FLOPs = 0 (a layout change)"])


@rule("ReorderOutput", domain=NCHWC, saves=SAVES_NOTHING, reads_values=())
def reorder_output(inputs: Inputs, *, channels=0, channels_last=0) -> RuleResult:
    """Blocked [N, C', spatial...] -> [N, channels, spatial...] (or [N, spatial..., channels]); no FLOPs."""
    x = required(inputs[0]).shape
    if len(x) < 2:
        raise ShapeError(f"ReorderOutput's input has shape {list(x)}", fix="it takes [N, C, spatial...]")
    if channels <= 0:
        raise ShapeError(f"ReorderOutput has channels {channels}", fix="give the channel count to keep (> 0)")
    if is_static(x[1]) and x[1] < channels:
        raise ShapeError(f"ReorderOutput keeps {channels} channels of an input of {x[1]}",
                         fix="the blocked input holds at least the channels kept")
    out = (x[0], *x[2:], channels) if channels_last else (x[0], channels, *x[2:])
    return RuleResult(outputs=(Output(out),),
                      explain=lambda: [f"output = the first {channels} of {x[1]} blocked channels: {list(out)}",
                                       "FLOPs = 0 (a layout change)"])


# ---------------------------------------------------------------------------------------
# com.microsoft, channels last


@rule("NhwcConv", domain=MS, reads_values=())
def nhwc_conv(inputs: Inputs, *, kernel_shape=None, strides=None, pads=None, dilations=None, group=1,
              auto_pad="NOTSET") -> RuleResult:
    """Conv of an [N, spatial..., C] input, W [M, C/group, k...]; output [N, spatial..., M]; counts as Conv."""
    product = conv(_nhwc_input(inputs, "NhwcConv"), kernel_shape=kernel_shape, strides=strides, pads=pads,
                   dilations=dilations, group=group, auto_pad=auto_pad)
    return _as_channels_last(product, "NhwcConv")


@rule("NhwcFusedConv", domain=MS, reads_values=())
def nhwc_fused_conv(inputs: Inputs, *, kernel_shape=None, strides=None, pads=None, dilations=None, group=1,
                    auto_pad="NOTSET", activation="", activation_params=None) -> RuleResult:
    """FusedConv (+ Z, + activation) of an [N, spatial..., C] input; output [N, spatial..., M]."""
    product = fused_conv(_nhwc_input(inputs, "NhwcFusedConv"), kernel_shape=kernel_shape, strides=strides,
                         pads=pads, dilations=dilations, group=group, auto_pad=auto_pad, activation=activation,
                         activation_params=activation_params)
    return _as_channels_last(product, "NhwcFusedConv")


@rule("NhwcMaxPool", domain=MS, reads_values=())
def nhwc_max_pool(inputs: Inputs, *, kernel_shape=None, strides=None, pads=None, dilations=None,
                  auto_pad="NOTSET", ceil_mode=0) -> RuleResult:
    """MaxPool of an [N, spatial..., C] (int8 / uint8) input; FLOPs = window per output."""
    pooled = max_pool(_nhwc_input(inputs, "NhwcMaxPool"), kernel_shape=kernel_shape, strides=strides, pads=pads,
                      dilations=dilations, auto_pad=auto_pad, ceil_mode=ceil_mode)
    return _as_channels_last(replace(pooled, outputs=pooled.outputs[:1], backward_state_bytes=0), "NhwcMaxPool")


@rule("QLinearConv", domain=MS, multiplies=(0, 3), reads_values=())  # x, then w after x's scale and zero point
def ms_qlinear_conv(inputs: Inputs, *, kernel_shape=None, strides=None, pads=None, dilations=None, group=1,
                    auto_pad="NOTSET", channels_last=0) -> RuleResult:
    """QLinearConv, its input and output [N, spatial..., C] with channels_last; counts as QLinearConv."""
    if not channels_last:
        return qlinear_conv(inputs, kernel_shape=kernel_shape, strides=strides, pads=pads, dilations=dilations,
                            group=group, auto_pad=auto_pad)
    product = qlinear_conv(_nhwc_input(inputs, "QLinearConv"), kernel_shape=kernel_shape, strides=strides,
                           pads=pads, dilations=dilations, group=group, auto_pad=auto_pad)
    return _as_channels_last(product, "QLinearConv")
