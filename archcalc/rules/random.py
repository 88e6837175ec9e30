"""Random generators: RandomNormal, RandomUniform, their *Like forms, and Bernoulli.

The output's shape comes from the `shape` attribute (RandomNormal, RandomUniform) or
from the input (the others); its dtype from `dtype`, else float32 (or the input's for
the *Like ops and Bernoulli). 0 MACs and 0 FLOPs: drawing numbers is not arithmetic on
the model's data. No params.
"""

from __future__ import annotations

from collections.abc import Sequence

from archcalc.core.dims import Dim
from archcalc.core.dtypes import dtype_name
from archcalc.core.errors import ShapeError
from archcalc.rules._common import required
from archcalc.rules.base import SAVES_NOTHING, Inputs, Output, RuleResult, TensorState, rule


def _drawn(shape: Sequence[Dim], dtype: str, how: str) -> RuleResult:
    shape = tuple(shape)
    return RuleResult(outputs=(Output(shape, dtype),),
                      explain=lambda: [f"output = {list(shape)} {dtype}, {how}", "0 FLOPs (random numbers)"])


def _shape_attribute(shape, op: str) -> tuple[int, ...]:
    if shape is None:
        raise ShapeError(f"{op} has no shape attribute", fix="set `shape` to the output's dims")
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise ShapeError(f"{op} shape {list(shape)} must be non-negative integers")
    return tuple(shape)


@rule("RandomNormal", saves=SAVES_NOTHING)
def random_normal(inputs: Inputs, *, shape=None, dtype=1, mean=0.0, scale=1.0,
                  seed=None) -> RuleResult:
    """A tensor of the `shape` attribute drawn from N(mean, scale^2); 0 FLOPs."""
    return _drawn(_shape_attribute(shape, "RandomNormal"), dtype_name(dtype), f"drawn from N({mean}, {scale}^2)")


@rule("RandomUniform", saves=SAVES_NOTHING)
def random_uniform(inputs: Inputs, *, shape=None, dtype=1, low=0.0, high=1.0,
                   seed=None) -> RuleResult:
    """A tensor of the `shape` attribute drawn from U[low, high); 0 FLOPs."""
    return _drawn(_shape_attribute(shape, "RandomUniform"), dtype_name(dtype), f"drawn from U[{low}, {high})")


def _like_dtype(x: TensorState, dtype) -> str:
    return dtype_name(dtype) if dtype is not None else x.dtype


@rule("RandomNormalLike", saves=SAVES_NOTHING)
def random_normal_like(inputs: Inputs, *, dtype=None, mean=0.0, scale=1.0,
                       seed=None) -> RuleResult:
    """The input's shape drawn from N(mean, scale^2), of `dtype` or the input's; 0 FLOPs."""
    x = required(inputs[0])
    return _drawn(x.shape, _like_dtype(x, dtype), f"drawn from N({mean}, {scale}^2)")


@rule("RandomUniformLike", saves=SAVES_NOTHING)
def random_uniform_like(inputs: Inputs, *, dtype=None, low=0.0, high=1.0,
                        seed=None) -> RuleResult:
    """The input's shape drawn from U[low, high), of `dtype` or the input's; 0 FLOPs."""
    x = required(inputs[0])
    return _drawn(x.shape, _like_dtype(x, dtype), f"drawn from U[{low}, {high})")


@rule("Bernoulli", saves=SAVES_NOTHING)
def bernoulli(inputs: Inputs, *, dtype=None, seed=None) -> RuleResult:
    """0 or 1 per element with the input's probabilities, of `dtype` or the input's; 0 FLOPs."""
    x = required(inputs[0])
    return _drawn(x.shape, _like_dtype(x, dtype), "1 with the input's probability per element")
