"""Normalisation family.

FLOPs per element: BatchNormalization at inference is one scale and one shift (its
statistics are constants), 2. Layer/Instance/Group normalisation compute statistics:
mean (1), centre (1), square and sum (2), multiply by 1/sigma (1), then scale and
shift (2): 7. LRN: square, window sum, power and divide: 4 + window size.
RMSNormalization: square, sum, divide, scale: 4. LpNormalization: |x| or x^2, sum,
divide: 3. MeanVarianceNormalization: the 7 above without scale and shift: 5.
"""

from __future__ import annotations

from collections.abc import Sequence

from archcalc.core.dims import Dim, is_static, prod
from archcalc.core.errors import ShapeError
from archcalc.rules._common import axis_index, broadcast, required
from archcalc.rules.base import Inputs, Output, RuleResult, Shape, TensorState, exported, rule

BATCH_NORM_FLOPS = 2
NORMALISE_FLOPS = 7


def _check_per_channel(x: Sequence[Dim], params: Sequence[TensorState | None], op: str) -> None:
    if len(x) < 2:
        raise ShapeError(f"input has shape {list(x)}; {op} needs [N, C, ...]")
    for p in params:
        if p is not None and len(p.shape) == 1 and is_static(p.shape[0]) and is_static(x[1]) \
                and p.shape[0] != x[1]:
            raise ShapeError(f"a per-channel parameter has {p.shape[0]} values for {x[1]} channels",
                             fix="give one value per input channel")


@rule("BatchNormalization", reads_values=())
def batch_norm(inputs: Inputs, *, epsilon=1e-5, momentum=0.9,
               training_mode=0) -> RuleResult:
    """y = scale * (x - mean) / sqrt(var + eps) + bias per channel; scale, bias learned, mean, var buffers."""
    x = required(inputs[0]).shape
    _check_per_channel(x, inputs[1:5], "BatchNormalization")
    flops = BATCH_NORM_FLOPS * prod(x)
    channel_shape = (x[1],)

    def explain() -> list[str]:
        return [
            f"output = input shape = {list(x)}",
            f"params = scale + bias = 2 * {x[1]} = {2 * x[1]}; buffers = mean + var = {2 * x[1]}",
            f"FLOPs = {BATCH_NORM_FLOPS} * elements = {flops}",
        ]

    return RuleResult(
        outputs=(Output(x), Output(channel_shape), Output(channel_shape)),
        flops=flops, weights=(1, 2), buffers=(3, 4), explain=explain,
        backward_state_bytes=2 * 4 * x[1],  # the batch mean and 1/std per channel, fp32
    )


def _normalised(x: Shape, flops_per_element: int, detail: str) -> RuleResult:
    flops = flops_per_element * prod(x)

    def explain() -> list[str]:
        return [f"output = input shape = {list(x)}", detail,
                f"FLOPs = {flops_per_element} * elements = {flops}"]

    return RuleResult(outputs=(Output(x),), flops=flops, weights=(1, 2), explain=explain)


@rule("LayerNormalization", reads_values=())
def layer_norm(inputs: Inputs, *, axis=-1, epsilon=1e-5, stash_type=1) -> RuleResult:
    """Normalise over the axes from `axis` on; scale and bias have the shape of those axes."""
    x = required(inputs[0]).shape
    first = axis % len(x) if x else 0
    normalised = x[first:]
    scale = inputs[1]
    if scale is not None and len(scale.shape) > len(normalised):
        raise ShapeError(f"scale shape {list(scale.shape)} is larger than the normalised shape "
                         f"{list(normalised)}")
    result = _normalised(x, NORMALISE_FLOPS, f"params = scale + bias, each of shape {list(normalised)}")
    mean_shape = (*x[:first], *([1] * len(normalised)))
    return RuleResult(outputs=result.outputs + (Output(mean_shape), Output(mean_shape)),
                      flops=result.flops, weights=result.weights, explain=result.explain,
                      backward_state_bytes=2 * 4 * prod(x[:first]))  # mean and 1/std per row, fp32


exported("LayerNormalization", min_opset=17)


@rule("InstanceNormalization", reads_values=())
def instance_norm(inputs: Inputs, *, epsilon=1e-5) -> RuleResult:
    """Normalise each channel of each sample over its spatial axes; per-channel scale and bias."""
    x = required(inputs[0]).shape
    _check_per_channel(x, inputs[1:3], "InstanceNormalization")
    return _normalised(x, NORMALISE_FLOPS, f"params = scale + bias = 2 * {x[1]}")


@rule("GroupNormalization", reads_values=())
def group_norm(inputs: Inputs, *, num_groups=1, epsilon=1e-5, stash_type=1) -> RuleResult:
    """Normalise groups of channels; scale and bias per channel (opset 21) or per group (18)."""
    x = required(inputs[0]).shape
    if is_static(x[1]) and x[1] % num_groups:
        raise ShapeError(f"{x[1]} channels cannot be split into {num_groups} groups")
    return _normalised(x, NORMALISE_FLOPS, "params = scale + bias")


@rule("LRN", reads_values=())
def local_response_norm(inputs: Inputs, *, size=1, alpha=1e-4, beta=0.75, bias=1.0) -> RuleResult:
    """Local response normalisation across `size` neighbouring channels; no params."""
    x = required(inputs[0]).shape
    per_element = 4 + size
    flops = per_element * prod(x)
    return RuleResult(outputs=(Output(x),), flops=flops,
                      explain=lambda: [f"FLOPs = (4 + size) * elements = {per_element} * {prod(x)} = {flops}"])


# RMSNormalization: square (1), sum (1), divide by the root mean square (1), scale (1);
# the mean, epsilon and square root are per row, not per element.
RMS_NORM_FLOPS = 4
# LpNormalization: |x| or x^2 (1), sum (1), divide by the norm (1); the root is per row.
LP_NORM_FLOPS = 3
# MeanVarianceNormalization: mean (1), centre (1), square and sum (2), times 1/sigma (1);
# the normalisation of the others without their scale and shift.
MEAN_VARIANCE_FLOPS = NORMALISE_FLOPS - 2


@rule("RMSNormalization", reads_values=())
def rms_norm(inputs: Inputs, *, axis=-1, epsilon=1e-5, stash_type=1) -> RuleResult:
    """y = scale * x / sqrt(mean(x^2 over the axes from `axis`) + eps); the scale is learned."""
    x = required(inputs[0]).shape
    first = axis_index(axis, len(x), "RMSNormalization")
    normalised = x[first:]
    scale = inputs[1]
    if scale is not None:
        if len(scale.shape) > len(normalised):
            raise ShapeError(f"scale shape {list(scale.shape)} is larger than the normalised shape "
                             f"{list(normalised)}", fix="give the scale the shape of the normalised axes")
        broadcast(scale.shape, normalised)
    flops = RMS_NORM_FLOPS * prod(x)
    return RuleResult(
        outputs=(Output(tuple(x)),), flops=flops, weights=(1,),
        explain=lambda: [f"output = input shape = {list(x)}, normalised over {list(normalised)}",
                         f"params = scale of shape {list(scale.shape) if scale is not None else []}",
                         f"FLOPs = {RMS_NORM_FLOPS} * elements = {flops}"],
        backward_state_bytes=4 * prod(x[:first]),  # 1/rms per row, fp32
    )


@rule("LpNormalization", reads_values=())
def lp_norm(inputs: Inputs, *, axis=-1, p=2) -> RuleResult:
    """x / ||x||_p along `axis` (p 1 or 2); 3 FLOPs per element, no params."""
    x = required(inputs[0]).shape
    axis_index(axis, len(x), "LpNormalization")
    if p not in (1, 2):
        raise ShapeError(f"LpNormalization p is {p}; ONNX defines p = 1 and p = 2")
    flops = LP_NORM_FLOPS * prod(x)
    return RuleResult(outputs=(Output(tuple(x)),), flops=flops,
                      explain=lambda: [f"output = input shape = {list(x)}, L{p} norm along axis {axis}",
                                       f"FLOPs = {LP_NORM_FLOPS} * elements = {flops}"])


@rule("MeanVarianceNormalization", reads_values=())
def mean_variance_norm(inputs: Inputs, *, axes=(0, 2, 3)) -> RuleResult:
    """(x - mean) / sqrt(var) over `axes`; 5 FLOPs per element, no params."""
    x = required(inputs[0]).shape
    for a in axes:
        if not -len(x) <= a < len(x):
            raise ShapeError(f"MeanVarianceNormalization axis {a} is out of range for a rank-{len(x)} input",
                             fix="the default axes [0, 2, 3] need a 4-D input; set axes for others")
    flops = MEAN_VARIANCE_FLOPS * prod(x)
    return RuleResult(outputs=(Output(tuple(x)),), flops=flops,
                      explain=lambda: [f"output = input shape = {list(x)}, standardised over axes {list(axes)}",
                                       f"FLOPs = {MEAN_VARIANCE_FLOPS} * elements = {flops}"])


exported("RMSNormalization", min_opset=23)  # a standard op since opset 23
