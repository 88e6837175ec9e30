"""Receptive fields against brute force: which input positions each output position reads.

The brute force knows nothing of the engine's windows: it follows each op's own index
relation (a convolution's output o reads o*s - p + d*t; a transposed convolution's output
o gets input i when o = i*s - p + d*t; linear upsampling mixes the inputs around
x = (o + 1/2)/f - 1/2 whose weight is not zero) on an unbounded 1-D axis, so no border
clips a field. Then size = the widest span one output reads, jump = how far the fields of
neighbouring outputs move on average, start = the centre of output 0's field.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import cache

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from archcalc.engine.inference import analyze
from archcalc.readers.spec.build import parse_spec
from archcalc.rules.base import TensorState, Window, get_rule

LENGTH = 1000  # the spec's input length: large enough for every strided chain below


def reads(layer: tuple, o: int) -> list[int]:
    """Input positions output `o` of one layer reads (of its own input)."""
    kind, *a = layer
    if kind in ("conv", "pool"):
        k, s, p, d = a
        return [o * s - p + d * t for t in range(k)]
    if kind == "tconv":
        k, s, p, d = a
        return [(o + p - d * t) // s for t in range(k) if (o + p - d * t) % s == 0]
    f = a[0]
    x = Fraction(2 * o + 1, 2 * f) - Fraction(1, 2)  # half_pixel
    if kind == "nearest":
        return [math.ceil(x - Fraction(1, 2))]  # round_prefer_floor
    low = math.floor(x)
    reach = 1 if kind == "linear" else 2
    return [i for i in range(low - reach + 1, low + reach + 1) if abs(x - i) < reach and abs(x - i) not in (1, 2)]


def brute_force(layers: list[tuple]) -> tuple[int, Fraction, Fraction] | None:
    @cache
    def field(depth: int, o: int) -> frozenset[int]:
        """Graph-input positions output o of layer `depth` (0 = the input itself) reads."""
        if depth == 0:
            return frozenset((o,))
        return frozenset().union(*(field(depth - 1, i) for i in reads(layers[depth - 1], o)))

    # Fields repeat with a period dividing the product of the upsampling factors.
    period = math.prod(x[2] if x[0] == "tconv" else x[1] for x in layers if x[0] not in ("conv", "pool"))
    n = len(layers)
    spans = {o: field(n, o) for o in range(2 * period)}
    if not any(spans.values()):  # a transposed conv whose outputs a strided conv never reads
        return None
    size = max(max(d) - min(d) + 1 for d in spans.values() if d)
    first = next(o for o in range(period) if spans[o])
    jump = Fraction(min(spans[first + period]) - min(spans[first]), period)
    start = Fraction(min(spans[first]) + max(spans[first]), 2) - first * jump
    return size, jump, start


def spec_of(layers: list[tuple]) -> str:
    lines = [f"input: [1, {LENGTH}]", "layers:"]
    for kind, *a in layers:
        if kind in ("conv", "tconv"):
            k, s, p, d = a
            op = "conv1d" if kind == "conv" else "conv_transpose1d"
            lines.append(f"  - {op}: {{filters: 1, kernel: {k}, stride: {s}, padding: {p}, dilation: {d}}}")
        elif kind == "pool":
            k, s, p, _ = a
            lines.append(f"  - maxpool1d: {{kernel: {k}, stride: {s}, padding: {p}}}")
        else:
            lines.append(f"  - upsample: {{scale: {a[0]}, mode: {kind}}}")
    return "\n".join(lines) + "\n"


def engine(layers: list[tuple]) -> tuple[int, Fraction, Fraction]:
    (axis,) = analyze(parse_spec(spec_of(layers))).layers[-1].receptive_field
    return axis.size, Fraction(axis.jump), Fraction(axis.start)


@st.composite
def windows(draw):
    kind = draw(st.sampled_from(["conv", "conv", "pool", "tconv", "nearest", "linear"]))
    if kind in ("nearest", "linear"):
        return (kind, draw(st.integers(2, 3)))
    k = draw(st.integers(1, 4))
    s = draw(st.integers(1, 3))
    d = draw(st.integers(1, 3)) if kind != "pool" else 1
    span = d * (k - 1) + 1
    p = draw(st.integers(0, k // 2 if kind == "pool" else span - 1))
    return (kind, k, s, p, d)


def _downsampling_fits(layers: list[tuple]) -> bool:
    return math.prod(x[2] for x in layers if x[0] in ("conv", "pool")) <= 81


@settings(max_examples=150, deadline=None)
@given(st.lists(windows(), min_size=1, max_size=5).filter(_downsampling_fits))
def test_engine_matches_brute_force_on_random_chains(layers):
    expected = brute_force(layers)
    assume(expected is not None)  # no output reads anything: no field to compare
    assert engine(layers) == expected, spec_of(layers)


@pytest.mark.parametrize(("layers", "size", "jump", "start"), [
    # the audit's chain: k4 s2 p1 transposed conv, k3 transposed conv, linear x2 (sizes 2, 3, 4)
    ([("tconv", 4, 2, 1, 1)], 2, Fraction(1, 2), Fraction(-1, 2)),
    ([("tconv", 4, 2, 1, 1), ("tconv", 3, 1, 0, 1)], 3, Fraction(1, 2), -1),
    ([("tconv", 4, 2, 1, 1), ("tconv", 3, 1, 0, 1), ("linear", 2)], 4, Fraction(1, 4), -1),
    ([("conv", 3, 1, 0, 1), ("conv", 3, 1, 0, 1)], 5, 1, 2),  # two 3x3 convs: 1 + 2 + 2
    ([("conv", 7, 2, 3, 1), ("pool", 3, 2, 1, 1)], 11, 4, 0),  # ResNet's stem: 7 + 2*2
    ([("nearest", 2)], 1, Fraction(1, 2), 0),  # outputs 0 and 1 both copy input 0
    ([("linear", 3)], 2, Fraction(1, 3), Fraction(-1, 2)),  # output 1 of 3 sits on input 0 exactly
    ([("cubic", 2)], 4, Fraction(1, 2), Fraction(-1, 2)),
    ([("cubic", 4), ("conv", 3, 1, 1, 1)], 5, Fraction(1, 4), Fraction(-1, 2)),
])
def test_hand_worked_fields(layers, size, jump, start):
    assert brute_force(layers) == (size, jump, start)
    assert engine(layers) == (size, jump, start)


def field_of(text: str, layer: int = -1):
    return analyze(parse_spec(text)).layers[layer].receptive_field


@pytest.mark.parametrize(("mode", "scale", "window"), [
    ("linear", 0.5, Window(2, 2, 0)),  # x = 2o + 1/2: inputs 2o and 2o + 1
    ("nearest", 0.25, Window(1, 4, -1)),  # x = 4o + 3/2, rounded down: input 4o + 1
    ("linear", 1 / 3, Window(1, 3, -1)),  # x = 3o + 1 exactly: that input alone
    ("nearest", 0.4, None),  # no whole stride: unknown
])
def test_downsampling_resize_is_a_strided_window(mode, scale, window):
    result = get_rule("Resize")([TensorState((1, 1, 60)), None, TensorState((3,), "float32", (1.0, 1.0, scale))],
                                {"mode": mode})
    assert result.receptive == ((window,) if window else ())


@pytest.mark.parametrize(("target", "expected"), [
    ("[16, 4, 4]", None),  # spatial positions scrambled: unknown ("-")
    ("[2, 2, 8, 8]", "kept"),  # only the channels split: the spatial axes pass through
    ("[256]", "global"),  # nothing spatial left
])
def test_reshape_keeps_the_field_only_when_the_spatial_axes_survive(target, expected):
    text = (f"input: [4, 8, 8]\nlayers:\n  - conv2d: {{filters: 4, kernel: 3, padding: 1}}\n"
            f"  - reshape: {target}\n")
    field = field_of(text)
    if expected == "kept":
        assert field == field_of(text, 0)
    else:
        assert field == expected


def test_flatten_of_spatial_axes_is_global_and_so_is_what_follows():
    layers = analyze(parse_spec("input: [3, 8, 8]\nlayers:\n  - conv2d: {filters: 2, kernel: 3}\n"
                                "  - flatten\n  - dense: 4\n")).layers
    assert [x.receptive_field for x in layers[1:]] == ["global", "global"]
