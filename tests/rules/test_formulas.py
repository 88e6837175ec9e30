"""archcalc's formulas checked against independent references.

* The seed's worked examples, through the YAML spec path (parse_spec + analyze).
* Property tests: output sizes, parameter counts, MACs and receptive fields against
  brute-force enumeration (sliding a window over an explicit padded array, counting
  weight elements and multiply-accumulates one by one, tracing which input pixels an
  output depends on).
* Hand-worked cases whose formula is written in the test.
* Symbolic dims: shapes keep their symbols, counts bind and scale with the batch.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from archcalc.core.dims import bind
from archcalc.core.errors import ShapeError
from archcalc.engine.inference import analyze
from archcalc.readers.spec.build import parse_spec
from archcalc.rules._window import sliding_windows
from archcalc.rules.base import TensorState, get_rule

# ---------------------------------------------------------------------------------------
# helpers


def run_spec(text: str, bindings: dict[str, int] | None = None):
    return analyze(parse_spec(text), bindings)


def out_shape(analysis, index: int = 0) -> tuple[int, ...]:
    """A layer's output shape with its symbols (the batch) bound, 1 unless told."""
    return tuple(bind(d, analysis.bindings) for d in analysis.layers[index].outputs[0].shape)


def brute_windows(n: int, k: int, s: int, pad_begin: int, pad_end: int, d: int) -> list[list[int]]:
    """Every window that fits entirely in the padded array, as the list of padded-array
    cells it reads, found by sliding the window one stride at a time."""
    cells = ["pad"] * pad_begin + ["in"] * n + ["pad"] * pad_end
    windows = []
    for start in range(0, len(cells), s):
        taps = [start + d * t for t in range(k)]
        if all(tap < len(cells) for tap in taps):
            windows.append(taps)
    return windows


def brute_ceil_count(n: int, k: int, s: int, pad_begin: int, pad_end: int, d: int) -> int:
    """PyTorch's ceil_mode: keep sliding while the padded array is not yet covered (the
    last window may run past its end) but only windows that start inside the input or
    the begin padding."""
    length = pad_begin + n + pad_end
    span = d * (k - 1) + 1
    count, start, covered_to = 0, 0, -1
    while covered_to < length - 1 and start < pad_begin + n:
        count += 1
        covered_to = start + span - 1
        start += s
    return count


# ---------------------------------------------------------------------------------------
# the seed's worked examples, through the spec path


@pytest.mark.parametrize(("stride", "expected"), [(1, 3), (2, 2)], ids=["s1", "s2"])
def test_seed_5x5_input_3x3_kernel(stride, expected):
    a = run_spec(f"input: [1, 5, 5]\nlayers:\n  - conv2d: {{filters: 1, kernel: 3, stride: {stride}}}\n")
    # floor((5 + 0 - 3)/s) + 1: 3 at stride 1, 2 at stride 2
    assert out_shape(a)[2:] == (expected, expected)


def test_seed_32x32_k3_s1_p1_keeps_size():
    a = run_spec("input: [3, 32, 32]\nlayers:\n  - conv2d: {filters: 16, kernel: 3, stride: 1, padding: 1}\n")
    assert out_shape(a)[1:] == (16, 32, 32)


def test_seed_explain_shows_the_formula():
    a = run_spec("input: [3, 32, 32]\nlayers:\n  - conv2d: {filters: 16, kernel: 3, stride: 1, padding: 1}\n")
    lines = a.layers[0].explain()
    assert any("floor((32 + 2*1 - 3)/1) + 1 = 32" in line for line in lines), lines


def test_seed_conv_50_filters_3x3_on_3_channels_has_1400_params():
    a = run_spec("input: [3, 128, 128]\nlayers:\n  - conv2d: {filters: 50, kernel: 3}\n")
    # (3*3*3 + 1) * 50 = 28 * 50
    assert a.layers[0].params == 1_400
    assert a.totals.params == 1_400


def test_seed_flattened_224_image_dense_1000_has_150529000_params():
    a = run_spec("input: [3, 224, 224]\nlayers:\n  - flatten\n  - dense: 1000\n")
    # (3*224*224 + 1) * 1000 = 150529 * 1000
    assert out_shape(a, 0)[1] == 150_528
    assert a.layers[1].params == 150_529_000
    assert a.totals.params == 150_529_000


@pytest.mark.parametrize("pool", ["maxpool", "avgpool", "maxpool1d", "avgpool3d", "global_avgpool",
                                  "global_maxpool"])
def test_seed_pooling_has_no_params(pool):
    shape = {"maxpool1d": "[4, 16]", "avgpool3d": "[4, 8, 8, 8]"}.get(pool, "[4, 16, 16]")
    layer = pool if pool.startswith("global") else f"{pool}: 2"
    a = run_spec(f"input: {shape}\nlayers:\n  - {layer}\n")
    assert a.layers[0].params == 0
    assert a.layers[0].buffers == 0
    assert a.totals.params == 0


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("layer", ["conv2d: {filters: 4, kernel: K, padding: same}",
                                   "maxpool: {kernel: K, stride: 1, padding: same}",
                                   "avgpool: {kernel: K, stride: 1, padding: same}"],
                         ids=["conv", "maxpool", "avgpool"])
def test_seed_same_padding_keeps_size_at_stride_1(layer, kernel):
    a = run_spec(f"input: [4, 7, 10]\nlayers:\n  - {layer.replace('K', str(kernel))}\n")
    assert out_shape(a)[2:] == (7, 10)


@pytest.mark.parametrize(("n", "stride"), [(7, 2), (8, 2), (9, 3), (10, 4)])
def test_same_padding_gives_ceil_n_over_s(n, stride):
    a = run_spec(f"input: [2, {n}, {n}]\nlayers:\n  - conv2d: {{filters: 2, kernel: 3, stride: {stride}, "
                 "padding: same}\n")
    assert out_shape(a)[2:] == (-(-n // stride),) * 2


# ---------------------------------------------------------------------------------------
# properties against brute force

sizes = st.integers(1, 24)
kernels = st.integers(1, 6)
strides = st.integers(1, 4)
pads = st.integers(0, 4)
dilations = st.integers(1, 3)


@settings(max_examples=300, deadline=None)
@given(n=sizes, k=kernels, s=strides, pb=pads, pe=pads, d=dilations)
def test_output_size_equals_brute_force_window_count(n, k, s, pb, pe, d):
    expected = len(brute_windows(n, k, s, pb, pe, d))
    if expected == 0:
        with pytest.raises(ShapeError):
            sliding_windows([n], [k], strides=[s], pads=[pb, pe], dilations=[d], auto_pad="NOTSET")
        return
    (axis,) = sliding_windows([n], [k], strides=[s], pads=[pb, pe], dilations=[d], auto_pad="NOTSET")
    assert axis.out == expected
    assert (axis.pad_begin, axis.pad_end) == (pb, pe)


@settings(max_examples=300, deadline=None)
@given(n=sizes, k=kernels, s=strides, pb=pads, pe=pads, d=dilations)
def test_conv_rule_output_size_equals_brute_force(n, k, s, pb, pe, d):
    conv = get_rule("Conv")
    inputs = [TensorState((2, 3, n)), TensorState((5, 3, k))]
    attrs = {"strides": [s], "pads": [pb, pe], "dilations": [d]}
    expected = len(brute_windows(n, k, s, pb, pe, d))
    if expected == 0:
        with pytest.raises(ShapeError):
            conv(inputs, attrs)
        return
    assert conv(inputs, attrs).outputs[0].shape == (2, 5, expected)


@settings(max_examples=300, deadline=None)
@given(n=sizes, k=kernels, s=strides, d=dilations, data=st.data())
def test_ceil_mode_equals_brute_force(n, k, s, d, data):
    # onnxruntime (and PyTorch) require pads smaller than the kernel.
    pb = data.draw(st.integers(0, k - 1), label="pad_begin")
    pe = data.draw(st.integers(0, k - 1), label="pad_end")
    span = d * (k - 1) + 1
    if n + pb + pe < span:
        with pytest.raises(ShapeError):
            sliding_windows([n], [k], strides=[s], pads=[pb, pe], dilations=[d], auto_pad="NOTSET",
                            ceil_mode=True)
        return
    (axis,) = sliding_windows([n], [k], strides=[s], pads=[pb, pe], dilations=[d], auto_pad="NOTSET",
                              ceil_mode=True)
    assert axis.out == brute_ceil_count(n, k, s, pb, pe, d)
    # ceil mode never gives fewer windows than floor mode, and at most one more
    floor_count = len(brute_windows(n, k, s, pb, pe, d))
    assert floor_count <= axis.out <= floor_count + 1


@settings(max_examples=200, deadline=None)
@given(n=sizes, k=kernels, s=strides, d=dilations, upper=st.booleans())
def test_same_padding_equals_brute_force(n, k, s, d, upper):
    """SAME: output ceil(n/s), from the smallest total padding that lets that many windows
    fit; the odd pixel goes at the end (SAME_UPPER) or the beginning (SAME_LOWER)."""
    (axis,) = sliding_windows([n], [k], strides=[s], pads=None, dilations=[d],
                              auto_pad="SAME_UPPER" if upper else "SAME_LOWER")
    wanted = -(-n // s)
    total = next(t for t in range(0, 64) if len(brute_windows(n, k, s, 0, t, d)) >= wanted)
    small, large = total // 2, total - total // 2
    assert axis.out == wanted
    assert (axis.pad_begin, axis.pad_end) == ((small, large) if upper else (large, small))
    assert len(brute_windows(n, k, s, axis.pad_begin, axis.pad_end, d)) == wanted


def brute_conv_params(cin: int, filters: int, kh: int, kw: int, groups: int, bias: bool) -> int:
    count = 0
    for _filter in range(filters):
        for _channel in range(cin // groups):  # each filter sees only its group's channels
            for _y in range(kh):
                for _x in range(kw):
                    count += 1
        if bias:
            count += 1
    return count


@settings(max_examples=200, deadline=None)
@given(groups=st.integers(1, 4), cin_per_group=st.integers(1, 4), filters_per_group=st.integers(1, 4),
       kh=st.integers(1, 5), kw=st.integers(1, 5), bias=st.booleans())
def test_conv_params_equal_brute_force_count(groups, cin_per_group, filters_per_group, kh, kw, bias):
    cin, filters = groups * cin_per_group, groups * filters_per_group
    expected = brute_conv_params(cin, filters, kh, kw, groups, bias)
    a = run_spec(f"input: [{cin}, 9, 9]\nlayers:\n  - conv2d: {{filters: {filters}, kernel: [{kh}, {kw}], "
                 f"groups: {groups}, bias: {'true' if bias else 'false'}}}\n")
    assert a.layers[0].params == expected
    # the rule marks the same tensors as weights
    inputs = [TensorState((1, cin, 9, 9)), TensorState((filters, cin_per_group, kh, kw))]
    if bias:
        inputs.append(TensorState((filters,)))
    result = get_rule("Conv")(inputs, {"group": groups})
    weight_elements = 0
    for i in result.weights:
        count = 1
        for dim in inputs[i].shape:
            count *= dim
        weight_elements += count
    assert weight_elements == expected


@settings(max_examples=200, deadline=None)
@given(channels=st.integers(1, 4), height=st.integers(1, 6), width=st.integers(1, 6),
       units=st.integers(1, 300), bias=st.booleans())
def test_dense_params_are_inputs_plus_one_times_outputs(channels, height, width, units, bias):
    a = run_spec(f"input: [{channels}, {height}, {width}]\nlayers:\n  - flatten\n"
                 f"  - dense: {{units: {units}, bias: {'true' if bias else 'false'}}}\n")
    n_in = channels * height * width
    assert a.layers[1].params == (n_in + (1 if bias else 0)) * units
    assert a.layers[1].macs == n_in * units  # batch 1


def brute_conv_macs(batch, cin, filters, groups, h, w, kh, kw, s, pads, d) -> int:
    """Count multiply-accumulates one by one: every output element of every filter reads
    every tap of its window (taps on padding included) on each channel of its group."""
    rows = brute_windows(h, kh, s, pads[0], pads[2], d)
    cols = brute_windows(w, kw, s, pads[1], pads[3], d)
    count = 0
    for _b in range(batch):
        for _f in range(filters):
            for row in rows:
                for col in cols:
                    for _c in range(cin // groups):
                        for _ty in row:
                            for _tx in col:
                                count += 1
    return count


@settings(max_examples=120, deadline=None)
@given(batch=st.integers(1, 2), groups=st.integers(1, 3), cin_per_group=st.integers(1, 2),
       filters_per_group=st.integers(1, 2), h=st.integers(1, 7), w=st.integers(1, 7), kh=st.integers(1, 3),
       kw=st.integers(1, 3), s=st.integers(1, 3), pads=st.lists(st.integers(0, 2), min_size=4, max_size=4),
       d=st.integers(1, 2), bias=st.booleans())
def test_conv_macs_equal_brute_force_count(batch, groups, cin_per_group, filters_per_group, h, w, kh, kw, s,
                                           pads, d, bias):
    cin, filters = groups * cin_per_group, groups * filters_per_group
    assume(brute_windows(h, kh, s, pads[0], pads[2], d) and brute_windows(w, kw, s, pads[1], pads[3], d))
    inputs = [TensorState((batch, cin, h, w)), TensorState((filters, cin_per_group, kh, kw))]
    if bias:
        inputs.append(TensorState((filters,)))
    result = get_rule("Conv")(inputs, {"group": groups, "strides": [s, s], "pads": pads, "dilations": [d, d]})
    expected = brute_conv_macs(batch, cin, filters, groups, h, w, kh, kw, s, pads, d)
    assert result.macs == expected
    out_elements = batch * filters * len(brute_windows(h, kh, s, pads[0], pads[2], d)) * len(
        brute_windows(w, kw, s, pads[1], pads[3], d))
    # a multiply and an add per MAC, plus one add per output element for the bias
    assert result.flops == 2 * expected + (out_elements if bias else 0)


def brute_transposed_size(n, k, s, d, pad_begin, pad_end, output_padding) -> int:
    """Scatter every input position through every tap; the full output spans the touched
    positions (plus output_padding at the end), then pads are cropped off both ends."""
    touched = {s * i + d * t for i in range(n) for t in range(k)}
    full = max(touched) + 1 + output_padding
    return full - pad_begin - pad_end


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 10), k=st.integers(1, 5), s=st.integers(1, 4), d=st.integers(1, 3),
       pb=st.integers(0, 3), pe=st.integers(0, 3), data=st.data())
def test_conv_transpose_output_size_equals_brute_force(n, k, s, d, pb, pe, data):
    op = data.draw(st.integers(0, max(s, d) - 1), label="output_padding")  # ONNX: smaller than stride or dilation
    expected = brute_transposed_size(n, k, s, d, pb, pe, op)
    assume(expected >= 1)
    result = get_rule("ConvTranspose")(
        [TensorState((1, 2, n)), TensorState((2, 3, k))],
        {"strides": [s], "dilations": [d], "pads": [pb, pe], "output_padding": [op]})
    assert result.outputs[0].shape == (1, 3, expected)
    # the seed's formula: s*(n-1) + output_padding + d*(k-1) + 1 - pads
    assert expected == s * (n - 1) + op + d * (k - 1) + 1 - pb - pe


# ---------------------------------------------------------------------------------------
# receptive field against brute-force dependency tracing


def trace_dependencies(layers: list[tuple[int, int, int, int]], output: int) -> set[int]:
    """Input positions (negative or past the end: padding) one output position of a stack
    of 1-D windows (k, s, pad_begin, d) reads, traced back layer by layer."""
    positions = {output}
    for k, s, p, d in reversed(layers):
        positions = {o * s - p + d * t for o in positions for t in range(k)}
    return positions


layer_params = st.tuples(st.integers(1, 5), st.integers(1, 3), st.integers(0, 2), st.integers(1, 2))


@settings(max_examples=150, deadline=None)
@given(stack=st.lists(st.tuples(st.booleans(), layer_params), min_size=1, max_size=4))
def test_receptive_field_equals_traced_dependencies(stack):
    lines = []
    layers = []
    for is_pool, (k, s, p, d) in stack:
        if is_pool:
            lines.append(f"  - maxpool1d: {{kernel: {k}, stride: {s}, padding: {p}, dilation: {d}}}")
        else:
            lines.append(f"  - conv1d: {{filters: 2, kernel: {k}, stride: {s}, padding: {p}, dilation: {d}}}")
        layers.append((k, s, p, d))
    try:
        a = run_spec("input: [2, 200]\nlayers:\n" + "\n".join(lines) + "\n")
    except ShapeError:  # the stack shrank the input below a kernel
        assume(False)
    assume(out_shape(a, len(layers) - 1)[2] >= 2)
    (field,) = a.layers[-1].receptive_field
    first, second = trace_dependencies(layers, 0), trace_dependencies(layers, 1)
    assert field.size == max(first) - min(first) + 1
    assert field.jump == min(second) - min(first)
    assert field.start == Fraction(min(first) + max(first), 2)


# ---------------------------------------------------------------------------------------
# hand-worked cases


def test_grouped_conv_macs_and_params():
    a = run_spec("input: [8, 16, 16]\nlayers:\n  - conv2d: {filters: 16, kernel: 3, padding: 1, groups: 4}\n")
    layer = a.layers[0]
    assert out_shape(a) == (1, 16, 16, 16)
    # MACs = N * M * Ho * Wo * (C/g) * kh * kw = 1 * 16 * 16 * 16 * (8/4) * 3 * 3
    assert layer.macs == 1 * 16 * 16 * 16 * 2 * 9 == 73_728
    # params = (kh * kw * C/g + 1) * M = (9 * 2 + 1) * 16
    assert layer.params == 304


def test_depthwise_conv_macs_and_params():
    a = run_spec("input: [32, 56, 56]\nlayers:\n  - conv2d: {kernel: 3, padding: 1, groups: depthwise}\n")
    layer = a.layers[0]
    assert out_shape(a) == (1, 32, 56, 56)
    # one 3x3 filter per channel: MACs = C * Ho * Wo * 9, params = (9 + 1) * C
    assert layer.macs == 32 * 56 * 56 * 9 == 903_168
    assert layer.params == (9 + 1) * 32 == 320


def test_depthwise_multiplier_conv():
    a = run_spec("input: [8, 10, 10]\nlayers:\n  - conv2d: {filters: 16, kernel: 3, groups: 8, bias: false}\n")
    # each input channel feeds 2 filters of 1 x 3 x 3: params = 16 * 9; out 8x8
    assert out_shape(a) == (1, 16, 8, 8)
    assert a.layers[0].params == 16 * 9
    assert a.layers[0].macs == 16 * 8 * 8 * 1 * 9


def test_dilated_conv():
    a = run_spec("input: [3, 32, 32]\nlayers:\n  - conv2d: {filters: 4, kernel: 3, dilation: 2}\n")
    # effective kernel d*(k-1) + 1 = 5: floor((32 - 5)/1) + 1 = 28
    assert out_shape(a) == (1, 4, 28, 28)
    assert a.layers[0].macs == 4 * 28 * 28 * 3 * 9
    assert any("(2*(3 - 1) + 1)" in line for line in a.layers[0].explain())


def test_dilated_strided_padded_conv():
    a = run_spec("input: [1, 20, 20]\nlayers:\n  - conv2d: {filters: 1, kernel: 3, dilation: 3, stride: 2, "
                 "padding: 2}\n")
    # floor((20 + 2*2 - (3*(3-1) + 1))/2) + 1 = floor(17/2) + 1 = 9
    assert out_shape(a)[2:] == (9, 9)


def test_asymmetric_pads():
    a = run_spec("input: [1, 10, 10]\nlayers:\n  - conv2d: {filters: 1, kernel: 3, stride: 2, "
                 "padding: [[0, 1], [1, 2]]}\n")
    # H: floor((10 + 0 + 1 - 3)/2) + 1 = 5;  W: floor((10 + 1 + 2 - 3)/2) + 1 = 6
    assert out_shape(a)[2:] == (5, 6)
    assert any("floor((10 + 0 + 1 - 3)/2) + 1 = 5" in line for line in a.layers[0].explain())


def test_rectangular_kernel_and_strides():
    a = run_spec("input: [1, 15, 21]\nlayers:\n  - conv2d: {filters: 1, kernel: [3, 5], stride: [2, 3]}\n")
    # H: floor((15 - 3)/2) + 1 = 7;  W: floor((21 - 5)/3) + 1 = 6
    assert out_shape(a)[2:] == (7, 6)


@pytest.mark.parametrize(
    ("n", "k", "s", "p", "op", "d", "expected"),
    [
        (4, 3, 2, 1, 1, 1, 2 * (4 - 1) + 1 + 1 * (3 - 1) + 1 - 2),  # 8: doubles with output_padding
        (4, 4, 2, 1, 0, 1, 2 * (4 - 1) + 0 + 1 * (4 - 1) + 1 - 2),  # 8: DCGAN's k4 s2 p1
        (5, 3, 1, 0, 0, 2, 1 * (5 - 1) + 0 + 2 * (3 - 1) + 1 - 0),  # 9: dilated
        (7, 5, 3, 2, 2, 1, 3 * (7 - 1) + 2 + 1 * (5 - 1) + 1 - 4),  # 21
    ],
    ids=["k3s2p1op1", "k4s2p1", "k3d2", "k5s3p2op2"],
)
def test_transposed_conv_output_size(n, k, s, p, op, d, expected):
    a = run_spec(f"input: [2, {n}, {n}]\nlayers:\n  - conv_transpose2d: {{filters: 3, kernel: {k}, stride: {s}, "
                 f"padding: {p}, output_padding: {op}, dilation: {d}}}\n")
    # s*(n-1) + output_padding + d*(k-1) + 1 - pads
    assert out_shape(a) == (1, 3, expected, expected)
    # params = C_in * (filters/groups) * k*k + filters; MACs = input elements * filters * k*k
    assert a.layers[0].params == 2 * 3 * k * k + 3
    assert a.layers[0].macs == 2 * n * n * 3 * k * k


def test_receptive_field_two_3x3_convs():
    a = run_spec("input: [1, 32, 32]\nlayers:\n  - conv2d: {filters: 1, kernel: 3}\n"
                 "  - conv2d: {filters: 1, kernel: 3}\n")
    first, second = a.layers[0].receptive_field, a.layers[1].receptive_field
    # size grows by (k - 1) * jump: 1 + 2 = 3, then 3 + 2 = 5; stride 1 keeps jump 1
    assert [(f.size, f.jump) for f in first] == [(3, 1), (3, 1)]
    assert [(f.size, f.jump) for f in second] == [(5, 1), (5, 1)]
    # no padding: the first output is centred on input pixel 1, then 2
    assert [f.start for f in second] == [2, 2]


def test_receptive_field_resnet_stem():
    a = run_spec("input: [3, 224, 224]\nlayers:\n  - conv2d: {filters: 64, kernel: 7, stride: 2, padding: 3}\n"
                 "  - maxpool: {kernel: 3, stride: 2, padding: 1}\n")
    conv, pool = a.layers[0].receptive_field[0], a.layers[1].receptive_field[0]
    # conv7 s2: size 7, jump 2; maxpool3 s2: size 7 + (3 - 1) * 2 = 11, jump 2 * 2 = 4
    assert (conv.size, conv.jump, conv.start) == (7, 2, 0)  # start = (7-1)/2 - 3 = 0
    assert (pool.size, pool.jump, pool.start) == (11, 4, 0)  # start = 0 + ((3-1)/2 - 1) * 2 = 0
    assert out_shape(a, 1) == (1, 64, 56, 56)


def test_receptive_field_start_without_padding():
    a = run_spec("input: [3, 64, 64]\nlayers:\n  - conv2d: {filters: 4, kernel: 7, stride: 2}\n"
                 "  - maxpool: {kernel: 3, stride: 2}\n")
    conv, pool = a.layers[0].receptive_field[0], a.layers[1].receptive_field[0]
    # start = start_in + ((k - 1)/2 - pad) * jump_in: 0 + 3 * 1 = 3, then 3 + 1 * 2 = 5
    assert (conv.size, conv.jump, conv.start) == (7, 2, 3)
    assert (pool.size, pool.jump, pool.start) == (11, 4, 5)


def test_receptive_field_is_global_after_dense():
    a = run_spec("input: [1, 8, 8]\nlayers:\n  - conv2d: {filters: 1, kernel: 3}\n  - flatten\n  - dense: 2\n")
    assert a.layers[-1].receptive_field == "global"


# ---------------------------------------------------------------------------------------
# symbolic dims

SYMBOLIC = """\
input: [3, H, W]
layers:
  - conv2d: {filters: 8, kernel: 3, padding: 1}
  - relu
  - conv2d: {filters: 16, kernel: 3, stride: 2}
  - maxpool: 2
  - global_avgpool
  - flatten
  - dense: 10
"""


def test_symbolic_dims_stay_in_shapes_and_bind_in_counts():
    graph = parse_spec(SYMBOLIC)
    a = analyze(graph, {"batch": 4, "H": 32, "W": 32})
    first = a.layers[0].outputs[0].shape
    assert "batch" in str(first[0])
    assert first[1] == 8
    assert "H" in str(first[2]) and "W" in str(first[3])
    strided = a.layers[2].outputs[0].shape
    assert "H" in str(strided[2]) and "W" in str(strided[3])
    # binding gives the same shapes and counts as the static spec with batch 4
    static = run_spec(SYMBOLIC.replace("[3, H, W]", "[3, 32, 32]\nbatch: 4"))
    for symbolic_layer, static_layer in zip(a.layers, static.layers):
        bound = tuple(bind(d, a.bindings) for d in symbolic_layer.outputs[0].shape)
        assert bound == static_layer.outputs[0].shape
        assert symbolic_layer.macs == static_layer.macs
        assert symbolic_layer.flops == static_layer.flops
        assert symbolic_layer.params == static_layer.params
    assert a.totals.macs == static.totals.macs
    # hand check: conv1 MACs = B * 8 * 32 * 32 * 3 * 9
    assert a.layers[0].macs == 4 * 8 * 32 * 32 * 3 * 9


@pytest.mark.parametrize(("h", "w"), [(32, 32), (33, 31), (17, 40)])
def test_symbolic_counts_scale_linearly_with_batch(h, w):
    graph = parse_spec(SYMBOLIC)
    one = analyze(graph, {"batch": 1, "H": h, "W": w})
    four = analyze(graph, {"batch": 4, "H": h, "W": w})
    assert four.totals.macs == 4 * one.totals.macs > 0
    assert four.totals.flops == 4 * one.totals.flops > 0
    assert four.totals.activation_bytes == 4 * one.totals.activation_bytes
    assert four.totals.params == one.totals.params  # weights do not depend on the batch
    for a, b in zip(one.layers, four.layers):
        assert b.macs == 4 * a.macs
        assert b.flops == 4 * a.flops
    # odd sizes exercise floor division of symbols: compare with the static spec
    static = run_spec(SYMBOLIC.replace("[3, H, W]", f"[3, {h}, {w}]\nbatch: 4"))
    assert four.totals.macs == static.totals.macs
    assert four.totals.flops == static.totals.flops


CEIL_POOL = """\
input: [1, {size}, {size}]
layers:
  - avgpool: {{kernel: 2, stride: 2, padding: 1, ceil_mode: true}}
  - flatten
  - dense: 1
"""


def test_symbolic_ceil_mode_pooling_static_case():
    # n=5, k=2, s=2, p=1: ceil((5 + 2 - 2)/2) + 1 = 4, but the 4th window would start at
    # 6 >= 5 + 1, inside the end padding, so it is dropped: 3 (onnxruntime agrees).
    static = run_spec(CEIL_POOL.format(size=5))
    assert out_shape(static)[2:] == (3, 3)
    assert static.layers[2].params == 3 * 3 + 1


def test_symbolic_ceil_mode_pooling_binds_like_static():
    symbolic = run_spec(CEIL_POOL.format(size="H"), {"H": 5})
    bound = tuple(bind(d, symbolic.bindings) for d in symbolic.layers[0].outputs[0].shape)
    assert bound[2:] == (3, 3)
    assert symbolic.layers[2].params == 3 * 3 + 1


@pytest.mark.parametrize("channels, filters, group, kernel, strides, bias, variant", [
    (32, 32, 32, 3, None, False, "depthwise"),  # MobileNet's 3x3: one filter per input channel
    (32, 64, 32, 3, [1, 1], True, "depthwise"),  # depth multiplier 2: still one input channel per filter
    (32, 32, 32, 3, [2, 2], False, "depthwise.strided"),  # MobileNet's downsampling 3x3
    (32, 32, 32, 3, [1, 2], False, "depthwise.strided"),
    (32, 32, 16, 3, [2, 2], False, ""),  # grouped, two input channels per filter
    (32, 32, 1, 3, None, True, ""),
    (32, 64, 1, 1, None, False, "pointwise"),  # a matrix product over the pixels
    (32, 64, 1, 1, [1, 1], True, "pointwise.bias"),  # whose bias onnxruntime adds in a second pass
    (32, 64, 1, 1, [2, 2], True, ""),  # ResNet's strided 1x1 shortcut: another kernel
    (32, 64, 2, 1, None, True, ""),  # grouped 1x1 (ShuffleNet v1)
])
def test_conv_names_its_form(channels, filters, group, kernel, strides, bias, variant):
    """Devices give some forms of Conv their own efficiency or passes (Conv.depthwise,
    Conv.depthwise.strided, Conv.pointwise.bias); the rule says which form a Conv is, and its
    parts (images x groups) set the size a curve is read at."""
    attrs = {"group": group, **({"strides": strides} if strides else {})}
    inputs = [TensorState((3, channels, 8, 8)), TensorState((filters, channels // group, kernel, kernel))]
    result = get_rule("Conv")(inputs + [TensorState((filters,))] * bias, attrs)
    assert result.variant == variant
    # A depthwise conv's parts are also its kernel taps: it sweeps each plane once a tap.
    assert result.parts == 3 * group * (kernel * kernel if variant.startswith("depthwise") else 1)


def test_a_depthwise_tap_is_one_sweep_of_the_plane_whatever_the_kernel():
    """Measured here, a depthwise conv's FLOP rate follows its plane's size, not its kernel's: its
    parts are taps, so a 5x5 and a 3x3 on the same 14x14 plane are read at the same size, 2 FLOPs
    per output element (the multiply and the add), 392 a tap."""
    conv = get_rule("Conv")
    for kernel in (3, 5):
        result = conv([TensorState((2, 8, 14, 14)), TensorState((8, 1, kernel, kernel))],
                      {"group": 8, "pads": [kernel // 2] * 4})
        assert result.parts == 2 * 8 * kernel * kernel
        assert result.flops / result.parts == 2 * 14 * 14
