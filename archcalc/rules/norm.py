"""Normalisation family.

FLOPs per element: BatchNormalization at inference is one scale and one shift (its
statistics are constants), 2. Layer/Instance/Group normalisation compute statistics:
mean (1), centre (1), square and sum (2), multiply by 1/sigma (1), then scale and
shift (2): 7. LRN: square, window sum, power and divide: 4 + window size.
"""

from __future__ import annotations

from collections.abc import Sequence

from archcalc.dims import is_static, prod
from archcalc.errors import ShapeError
from archcalc.registry import Output, RuleResult, TensorState, rule

BATCH_NORM_FLOPS = 2
NORMALISE_FLOPS = 7


def _check_per_channel(x: Sequence, params: Sequence[TensorState | None], op: str) -> None:
    if len(x) < 2:
        raise ShapeError(f"input has shape {list(x)}; {op} needs [N, C, ...]")
    for p in params:
        if p is not None and len(p.shape) == 1 and is_static(p.shape[0]) and is_static(x[1]) \
                and p.shape[0] != x[1]:
            raise ShapeError(f"a per-channel parameter has {p.shape[0]} values for {x[1]} channels",
                             fix="give one value per input channel")


@rule("BatchNormalization")
def batch_norm(inputs: Sequence[TensorState | None], *, epsilon=1e-5, momentum=0.9,
               training_mode=0) -> RuleResult:
    """y = scale * (x - mean) / sqrt(var + eps) + bias per channel; scale, bias learned, mean, var buffers."""
    x = inputs[0].shape
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


def _normalised(x: Sequence, flops_per_element: int, detail: str) -> RuleResult:
    flops = flops_per_element * prod(x)

    def explain() -> list[str]:
        return [f"output = input shape = {list(x)}", detail,
                f"FLOPs = {flops_per_element} * elements = {flops}"]

    return RuleResult(outputs=(Output(x),), flops=flops, weights=(1, 2), explain=explain)


@rule("LayerNormalization")
def layer_norm(inputs: Sequence[TensorState | None], *, axis=-1, epsilon=1e-5, stash_type=1) -> RuleResult:
    """Normalise over the axes from `axis` on; scale and bias have the shape of those axes."""
    x = inputs[0].shape
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


@rule("InstanceNormalization")
def instance_norm(inputs: Sequence[TensorState | None], *, epsilon=1e-5) -> RuleResult:
    """Normalise each channel of each sample over its spatial axes; per-channel scale and bias."""
    x = inputs[0].shape
    _check_per_channel(x, inputs[1:3], "InstanceNormalization")
    return _normalised(x, NORMALISE_FLOPS, f"params = scale + bias = 2 * {x[1]}")


@rule("GroupNormalization")
def group_norm(inputs: Sequence[TensorState | None], *, num_groups=1, epsilon=1e-5, stash_type=1) -> RuleResult:
    """Normalise groups of channels; scale and bias per channel (opset 21) or per group (18)."""
    x = inputs[0].shape
    if is_static(x[1]) and x[1] % num_groups:
        raise ShapeError(f"{x[1]} channels cannot be split into {num_groups} groups")
    return _normalised(x, NORMALISE_FLOPS, "params = scale + bias")


@rule("LRN")
def local_response_norm(inputs: Sequence[TensorState], *, size=1, alpha=1e-4, beta=0.75, bias=1.0) -> RuleResult:
    """Local response normalisation across `size` neighbouring channels; no params."""
    x = inputs[0].shape
    per_element = 4 + size
    flops = per_element * prod(x)
    return RuleResult(outputs=(Output(x),), flops=flops,
                      explain=lambda: [f"FLOPs = (4 + size) * elements = {per_element} * {prod(x)} = {flops}"])
