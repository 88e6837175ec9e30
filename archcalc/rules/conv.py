"""Convolution family: Conv and ConvTranspose, 1D/2D/3D, grouped and depthwise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archcalc.core.dims import Dim, is_static, prod
from archcalc.core.errors import ShapeError
from archcalc.rules._common import required
from archcalc.rules._window import axis_names, lower_window, sliding_windows
from archcalc.rules.base import Inputs, ObservedShapes, Output, RuleResult, Window, exported, rule


def _check_rank(x: Sequence[Dim], w: Sequence[Dim]) -> None:
    if len(x) < 3:
        raise ShapeError(
            f"input has shape {list(x)}; a convolution needs [N, C, spatial...]",
            fix="feed it a tensor with batch, channel and at least one spatial axis",
        )
    if len(w) != len(x):
        raise ShapeError(f"weight shape {list(w)} does not match input rank {len(x)}")


def _check_channels(actual: Dim, expected: Dim, group: int, what: str) -> None:
    if is_static(actual) and is_static(expected) and actual != expected:
        raise ShapeError(
            f"{what}: input has {actual} channels but the weight expects {expected} (group={group})",
            fix="make the weight's input-channel dim times group equal the input's channels",
        )


def _conv_observed_macs(i: ObservedShapes, o: ObservedShapes, a: Mapping[str, Any]) -> int:
    """out * C/g * k."""
    out, w = o[0], i[1]
    assert out is not None and w is not None  # verify calls this only with both known (see ObservedMacs)
    return prod(out) * prod(w[1:])


@rule("Conv", observed_macs=_conv_observed_macs, reads_values=())
def conv(inputs: Inputs, *, kernel_shape=None, strides=None, pads=None,
         dilations=None, group=1, auto_pad="NOTSET") -> RuleResult:
    """out = floor((n + pads - d*(k-1) - 1)/s) + 1 per axis; MACs = out elements * C/g * prod(k)."""
    x, w = required(inputs[0]).shape, required(inputs[1]).shape
    has_bias = len(inputs) > 2 and inputs[2] is not None
    _check_rank(x, w)
    n, c = x[0], x[1]
    m, c_per_group = w[0], w[1]
    if group < 1 or (is_static(m) and m % group):
        raise ShapeError(f"{m} filters cannot be split into {group} groups",
                         fix="make the filter count a multiple of the group count")
    _check_channels(c, c_per_group * group, group, "channel mismatch")
    kernel = tuple(kernel_shape) if kernel_shape else tuple(w[2:])
    # A weight's kernel dims may be symbolic; sliding_windows raises ShapeError for any that is
    # not a positive int, though its annotation (rules/_window.py) says Sequence[int].
    axes = sliding_windows(x[2:], kernel, strides=strides, pads=pads,  # type: ignore[arg-type]
                           dilations=dilations, auto_pad=auto_pad)
    out_shape = (n, m, *(a.out for a in axes))
    kernel_volume = prod(kernel)
    out_elements = prod(out_shape)
    macs = out_elements * c_per_group * kernel_volume
    bias_adds = out_elements if has_bias else 0

    def explain() -> list[str]:
        names = axis_names(len(axes))
        lines = [a.formula(name) for a, name in zip(axes, names)]
        weights = f"{' * '.join(map(str, kernel))} * {c_per_group}"
        bias = " + 1" if has_bias else ""
        lines.append(f"params = ({weights}{bias}) * {m} = {(kernel_volume * c_per_group + has_bias) * m}")
        lines.append(
            f"MACs = output elements * C_in/groups * kernel = {out_elements} * {c_per_group} * {kernel_volume}"
            f" = {macs}"
        )
        return lines

    return RuleResult(
        outputs=(Output(out_shape),),
        macs=macs,
        flops=2 * macs + bias_adds,
        weights=(1, 2) if has_bias else (1,),
        integer_weights=(1, 2),  # learned whatever their size: a one-channel bias is one value
        receptive=tuple(a.window() for a in axes),
        explain=explain,
        variant=_variant(group, c_per_group, kernel, strides, has_bias),
        parts=n * group * (kernel_volume if c_per_group == 1 and group > 1 else 1),
    )


def _variant(group: int, c_per_group: Dim, kernel: Sequence[Dim], strides: Sequence[int] | None,
             has_bias: bool) -> str:
    """The form of the conv, for a device's efficiency (see RuleResult.variant):

    - "depthwise", one input channel per filter; "depthwise.strided" when it also strides: a
      strided depthwise kernel reads 4x the input per output and runs at under half the speed
      of a stride-1 one on a CPU (3x3 on 56x56 planes: 13 against 31 GFLOP/s here);
    - "pointwise", a 1x1 stride-1 conv (a matrix product over the pixels), "pointwise.bias"
      with a bias: onnxruntime's CPU kernel adds it in a second pass over the output (+76 us
      on a 16->96 conv at 112x112 here, +1 us on a 3x3 one of as many outputs).
    """
    strided = bool(strides) and any(s > 1 for s in strides or ())
    if group > 1 and c_per_group == 1:
        return "depthwise.strided" if strided else "depthwise"
    if group == 1 and not strided and all(k == 1 for k in kernel):
        return "pointwise.bias" if has_bias else "pointwise"
    return ""


exported("Conv", lower=lower_window)


def _check_output_padding(extra: Sequence[int], strides: Sequence[int], dilations: Sequence[int]) -> tuple[str, ...]:
    """output_padding must be smaller than max(stride, dilation) on every axis; the warnings
    for one that is not smaller than the stride.

    The bound is ONNX's and PyTorch's, and onnxruntime (1.32) checks it too ("must be less
    than max(stride, dilation)"). onnxruntime also refuses, at run time, any output_padding
    >= stride (the output would not map back to the input size: "Computed output shape is
    inconsistent with input spatial dimensions"), which matters only when the dilation is
    the larger: that shape is valid, so it is a warning that verify will fail, not an error.
    """
    refused = []
    for name, pad, stride, dilation in zip(axis_names(len(extra)), extra, strides, dilations):
        limit = max(stride, dilation)
        if pad >= limit:
            raise ShapeError(
                f"output_padding {pad} on axis {name} is not smaller than max(stride {stride}, "
                f"dilation {dilation}) = {limit}",
                fix=f"use an output_padding of at most {limit - 1} on that axis" if limit > 1
                else "remove output_padding: with stride 1 and dilation 1 it must be 0")
        if pad >= stride:
            refused.append(f"{pad} on axis {name} (stride {stride}, dilation {dilation})")
    if not refused:
        return ()
    return (f"output_padding {', '.join(refused)} is not smaller than the stride: valid ONNX, "
            "but onnxruntime refuses to run it, so verify will fail",)


def _conv_transpose_observed_macs(i: ObservedShapes, o: ObservedShapes, a: Mapping[str, Any]) -> int:
    """in * M/g * k."""
    x, w = i[0], i[1]
    assert x is not None and w is not None  # verify calls this only with both known (see ObservedMacs)
    return prod(x) * prod(w[1:])


@rule("ConvTranspose", observed_macs=_conv_transpose_observed_macs, reads_values=())
def conv_transpose(inputs: Inputs, *, kernel_shape=None, strides=None, pads=None,
                   dilations=None, group=1, auto_pad="NOTSET", output_padding=None,
                   output_shape=None) -> RuleResult:
    """out = s*(n-1) + output_padding + d*(k-1) + 1 - pads per axis; MACs = input elements * M/g * prod(k)."""
    x, w = required(inputs[0]).shape, required(inputs[1]).shape
    has_bias = len(inputs) > 2 and inputs[2] is not None
    _check_rank(x, w)
    rank = len(x) - 2
    n, c = x[0], x[1]
    _check_channels(c, w[0], group, "channel mismatch")
    m = w[1] * group
    kernel = tuple(kernel_shape) if kernel_shape else tuple(w[2:])
    strides = tuple(strides or (1,) * rank)
    dilations = tuple(dilations or (1,) * rank)
    extra = tuple(output_padding or (0,) * rank)
    warnings = _check_output_padding(extra, strides, dilations)
    pads = tuple(pads or (0,) * (2 * rank))
    sizes: list[Dim] = []
    begins: list[int] = []
    lines: list[str] = []
    for i, name in enumerate(axis_names(rank)):
        span = dilations[i] * (kernel[i] - 1) + 1
        full = strides[i] * (x[2 + i] - 1) + extra[i] + span
        if output_shape:
            out = output_shape[-rank + i]
            total = full - out
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out = x[2 + i] * strides[i]
            total = full - out
        else:
            total = pads[i] + pads[i + rank]
            out = full - total
        if is_static(out) and out < 1:
            raise ShapeError(f"output size on axis {name} would be {out}", fix="reduce the padding")
        begin = total - total // 2 if auto_pad == "SAME_LOWER" else (
            pads[i] if auto_pad in ("NOTSET", "") and not output_shape else total // 2)
        begins.append(begin if is_static(begin) else 0)
        sizes.append(out)
        lines.append(f"{name}_out = {strides[i]}*({x[2 + i]} - 1) + {extra[i]} + {span} - {total} = {out}")
    out_shape = (n, m, *sizes)
    kernel_volume = prod(kernel)
    macs = prod(x) * w[1] * kernel_volume
    bias_adds = prod(out_shape) if has_bias else 0

    def explain() -> list[str]:
        bias = f" + {m}" if has_bias else ""
        params = c * w[1] * kernel_volume + (m if has_bias else 0)
        return lines + [
            f"params = {c} * {w[1]} * {kernel_volume}{bias} = {params}",
            f"MACs = input elements * C_out/groups * kernel = {prod(x)} * {w[1]} * {kernel_volume} = {macs}",
        ]

    return RuleResult(
        outputs=(Output(out_shape),),
        macs=macs,
        flops=2 * macs + bias_adds,
        weights=(1, 2) if has_bias else (1,),
        integer_weights=(1, 2),  # learned whatever their size: a one-channel bias is one value
        # kernel[i] is a symbolic dim for a weight with a symbolic kernel dim, which nothing here
        # rejects: the window then holds it, as it always has (a gap the types show, left as it is).
        receptive=tuple(Window(kernel[i], strides[i], begins[i], dilations[i],  # type: ignore[arg-type]
                               transposed=True) for i in range(rank)),
        explain=explain,
        warnings=warnings,
    )
