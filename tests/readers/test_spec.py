"""The YAML spec language: short forms, blocks, repetition, skipping, merges, freezing.

Expected numbers are worked by hand in the comments beside them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from archcalc.core.dims import Sym
from archcalc.core.errors import ShapeError
from archcalc.engine.inference import analyze
from archcalc.engine.rows import rows
from archcalc.readers.spec.build import parse_spec
from archcalc.readers.spec.expr import substitute
from archcalc.rules.base import TensorState, get_rule

RESIDUAL = """
name: tiny-resnet
input: [4, 8, 8]
blocks:
  basic:
    args: {planes: null, stride: 1, downsample: false}
    layers:
      - conv2d: {filters: $planes, kernel: 3, stride: $stride, padding: 1, bias: false}
        name: conv1
      - batchnorm:
        name: bn1
      - relu
      - conv2d: {filters: $planes, kernel: 3, padding: 1, bias: false}
        name: conv2
      - batchnorm:
        name: bn2
      - conv2d: {filters: $planes, kernel: 1, stride: $stride, bias: false}
        name: downsample.0
        inputs: [in]
        when: $downsample
      - batchnorm:
        name: downsample.1
        when: $downsample
      - add:
        inputs: [bn2, downsample.1]
      - relu
layers:
  - basic: {planes: 4}
    name: layer1
  - basic: {planes: 8, stride: "${2 if i == 0 else 1}", downsample: "${i == 0}"}
    name: layer2
    repeat: 2
  - global_avgpool
  - flatten
  - dense: 3
    name: fc
"""


def by_name(analysis):
    return {layer.name: layer for layer in analysis.layers}


def test_blocks_repeat_and_skipped_layers():
    analysis = analyze(parse_spec(RESIDUAL))
    layers = by_name(analysis)
    # layer1 (4 -> 4, no downsample): two 3x3 convs 4*4*9 = 144 each, two BNs 2*4 each.
    assert sum(x.params for x in analysis.layers if x.block == "layer1") == 144 + 8 + 144 + 8
    assert "layer1.downsample.0" not in layers
    # layer2.0 (4 -> 8, stride 2, downsample): 4*8*9 + 16 + 8*8*9 + 16 + 1x1 4*8 + 16 = 944
    assert sum(x.params for x in analysis.layers if x.block == "layer2.0") == 944
    # layer2.1 (8 -> 8): 576 + 16 + 576 + 16 = 1184; its shortcut is the block input.
    assert sum(x.params for x in analysis.layers if x.block == "layer2.1") == 1184
    assert [t.name for t in layers["layer2.1.add_1"].inputs] == ["layer2.1.bn2", "layer2.0.relu_2"]
    assert [t.name for t in layers["layer1.add_1"].inputs] == ["layer1.bn2", "input"]
    assert layers["layer2.0.downsample.1"].outputs[0].shape == (Sym.symbol("batch"), 8, 4, 4)
    # fc: (8 + 1) * 3 = 27; BN buffers: 2 * (4 + 4 + 8 + 8 + 8 + 8 + 8) = 96
    assert layers["fc"].params == 27
    assert analysis.totals.params == 304 + 944 + 1184 + 27
    assert analysis.totals.buffers == 96


def test_rows_fold_blocks_and_add_up_to_totals():
    analysis = analyze(parse_spec(RESIDUAL))
    folded = rows(analysis, depth=1)
    assert [r.name for r in folded] == ["layer1", "layer2", "global_avgpool_1", "flatten_1", "fc"]
    assert [r.name for r in rows(analysis, depth=2)][:3] == ["layer1", "layer2.0", "layer2.1"]
    for table in (rows(analysis), folded):
        assert sum(r.params for r in table) == analysis.totals.params
        assert sum(r.macs for r in table) == analysis.totals.macs
        assert sum(r.flops for r in table) == analysis.totals.flops


def test_dense_connections_grow_channels():
    spec = """
input: [4, 8, 8]
blocks:
  dense_layer:
    args: {growth: 4}
    layers:
      - conv2d: {filters: $growth, kernel: 3, padding: 1}
        name: conv
      - concat:
        inputs: [in, conv]
layers:
  - dense_layer:
    name: block
    repeat: 3
"""
    layers = by_name(analyze(parse_spec(spec)))
    # 4 channels + 4 per layer: 8, 12, 16; conv params (9*C_in + 1) * 4
    assert [layers[f"block.{i}.concat_1"].outputs[0].shape[1] for i in range(3)] == [8, 12, 16]
    assert [layers[f"block.{i}.conv"].params for i in range(3)] == [148, 292, 436]


def test_trainable_false_and_freeze_until():
    spec = """
input: [3, 8, 8]
freeze_until: conv2
layers:
  - conv2d: {filters: 4, kernel: 3}
    name: conv1
  - batchnorm:
    name: bn
  - conv2d: {filters: 4, kernel: 3}
    name: conv2
  - conv2d: {filters: 4, kernel: 3}
    name: conv3
  - flatten
  - dense: 2
    trainable: false
"""
    totals = analyze(parse_spec(spec)).totals
    conv1, bn, conv2, conv3, dense = 3 * 9 * 4 + 4, 8, 4 * 9 * 4 + 4, 4 * 9 * 4 + 4, (4 * 2 * 2 + 1) * 2
    assert totals.params == conv1 + bn + conv2 + conv3 + dense
    assert totals.trainable_params == conv3
    assert totals.frozen_params == conv1 + bn + conv2 + dense
    assert totals.buffers == 8
    assert totals.non_trainable_params == totals.frozen_params + 8


def test_freezing_a_block_use_freezes_its_layers():
    spec = RESIDUAL.replace("    name: layer1\n", "    name: layer1\n    trainable: false\n")
    analysis = analyze(parse_spec(spec))
    assert analysis.totals.frozen_params == 304
    assert all(x.trainable_params == 0 for x in analysis.layers if x.block == "layer1")


def test_multiple_inputs_and_multiply():
    spec = """
input: {image: [3, 8, 8], mask: [1, 8, 8]}
layers:
  - multiply:
    inputs: [image, mask]
"""
    analysis = analyze(parse_spec(spec))
    assert analysis.layers[0].outputs[0].shape == (Sym.symbol("batch"), 3, 8, 8)
    assert analysis.layers[0].flops == 3 * 8 * 8


def test_symbolic_dims_stay_symbolic_and_bind_for_counts():
    spec = "input: [3, H, W]\nlayers:\n  - conv2d: {filters: 8, kernel: 3, padding: 1}\n"
    graph = parse_spec(spec)
    layer = analyze(graph, {"H": 16, "W": 16}).layers[0]
    assert [str(d) for d in layer.outputs[0].shape] == ["batch", "8", "H", "W"]
    # MACs = N * 8 * H * W * 3 * 9
    assert layer.macs == 8 * 16 * 16 * 27
    assert analyze(graph, {"H": 16, "W": 16, "batch": 4}).layers[0].macs == 4 * layer.macs


def test_fixed_batch_in_spec():
    analysis = analyze(parse_spec("input: [3, 8, 8]\nbatch: 8\nlayers:\n  - relu\n"))
    assert analysis.layers[0].outputs[0].shape == (8, 3, 8, 8)


LAYER_CASES = {
    # n_out = floor((n + 2p - k)/s) + 1
    "conv1d": ("[2, 20]", "conv1d: {filters: 4, kernel: 5, stride: 3}", [4, 6], (5 * 2 + 1) * 4),
    "conv3d": ("[2, 8, 8, 8]", "conv3d: {filters: 4, kernel: 3, padding: 1}", [4, 8, 8, 8], (27 * 2 + 1) * 4),
    "conv-same-stride2": ("[3, 9, 9]", "conv2d: {filters: 2, kernel: 3, stride: 2, padding: same}", [2, 5, 5], 56),
    "conv-asymmetric": ("[3, 8, 8]", "conv2d: {filters: 2, kernel: 3, padding: [[0, 1], [2, 0]]}", [2, 7, 8], 56),
    "conv-dilated": ("[3, 16, 16]", "conv2d: {filters: 2, kernel: 3, dilation: 2}", [2, 12, 12], 56),
    "depthwise": ("[6, 8, 8]", "conv2d: {groups: depthwise, kernel: 3, padding: 1, bias: false}", [6, 8, 8], 54),
    "grouped": ("[6, 8, 8]", "conv2d: {filters: 4, groups: 2, kernel: 1}", [4, 8, 8], (3 + 1) * 4),
    # transposed: s*(n - 1) + output_padding + k - 2p
    "deconv": ("[4, 5, 5]", "conv_transpose2d: {filters: 2, kernel: 3, stride: 2, padding: 1, output_padding: 1}",
               [2, 10, 10], 4 * 2 * 9 + 2),
    "maxpool-ceil": ("[3, 7, 7]", "maxpool: {kernel: 2, ceil_mode: true}", [3, 4, 4], 0),
    "minpool": ("[3, 8, 8]", "minpool: 2", [3, 4, 4], 0),
    "avgpool-stride": ("[3, 8, 8]", "avgpool: {kernel: 3, stride: 1, padding: 1}", [3, 8, 8], 0),
    "global-max": ("[3, 8, 8]", "global_maxpool", [3, 1, 1], 0),
    "layernorm": ("[10, 16]", "layernorm", [10, 16], 32),
    "zero-padding": ("[3, 8, 8]", "zero_padding: [[1, 2], [0, 3]]", [3, 11, 11], 0),
    "upsample": ("[3, 4, 4]", "upsample: 2", [3, 8, 8], 0),
    "reshape": ("[4, 4, 4]", "reshape: [16, -1]", [16, 4], 0),
    "softmax": ("[10]", "softmax", [10], 0),
    "gelu": ("[10]", "gelu", [10], 0),
    "hard-swish": ("[10]", "hard_swish", [10], 0),
    "leaky-relu": ("[10]", "leaky_relu: 0.2", [10], 0),
}


@pytest.mark.parametrize("input_shape, layer, shape, params", LAYER_CASES.values(), ids=LAYER_CASES.keys())
def test_layer_types(input_shape, layer, shape, params):
    analysis = analyze(parse_spec(f"input: {input_shape}\nlayers:\n  - {layer}\n"))
    result = analysis.layers[0]
    assert list(result.outputs[0].shape[1:]) == shape
    assert result.params == params


def test_readme_example_spec_parses_and_counts():
    readme = Path(__file__).parents[2].joinpath("README.md").read_text()
    block = re.search(r"```yaml\n(name: lenet5.*?)```", readme, re.S).group(1)
    assert analyze(parse_spec(block)).totals.params == 61_706


def test_i_is_the_innermost_repeat_index_and_names_may_use_it():
    spec = """
input: [4]
blocks:
  b:
    layers:
      - {dense: 4, name: "x${i + 1}", repeat: 2}
      - {dense: 4, when: "${i == 1}", name: w, repeat: 2}
layers:
  - {b: null, name: blk}
  - {dense: 4, name: "top${i}", repeat: 2}
"""
    names = [node.name for node in parse_spec(spec).nodes]
    assert names == ["blk.x1", "blk.x2", "blk.w.1", "top0", "top1"]


def test_a_repeated_items_name_means_its_last_repetition():
    spec = """
input: [3, 8, 8]
blocks:
  blk:
    layers:
      - conv2d: {filters: 4, kernel: 3, padding: 1}
      - relu
layers:
  - conv2d: {filters: 4, kernel: 1}
    name: x
  - blk:
    name: r
    repeat: 2
  - add:
    inputs: [r, x]
  - relu:
    name: act
    repeat: 3
  - add:
    inputs: [act, r.0]
"""
    layers = by_name(analyze(parse_spec(spec)))
    # `r` is r.1's output, as a block's own name is its output; r.0, r.1 still work.
    assert [t.name for t in layers["add_1"].inputs] == ["r.1.relu_1", "x"]
    assert [t.name for t in layers["add_2"].inputs] == ["act.2", "r.0.relu_1"]
    assert "r" not in layers and "act" not in layers  # a name, not a layer of its own


def test_freeze_until_a_repeated_items_name_still_freezes_every_repetition():
    spec = """
input: [3, 8, 8]
freeze_until: stage
layers:
  - conv2d: {filters: 4, kernel: 3, padding: 1}
    name: stage
    repeat: 2
  - conv2d: {filters: 4, kernel: 1}
    name: head
"""
    totals = analyze(parse_spec(spec)).totals
    assert totals.trainable_params == 4 * 4 + 4  # only head: (4*1*1 + 1) * 4


def test_a_pool_pad_up_to_kernel_minus_one_is_accepted():
    # onnxruntime takes kernel 3 with pad 2 (PyTorch would not): floor((8 + 4 - 3)/1) + 1 = 10
    analysis = analyze(parse_spec("input: [3, 8, 8]\nlayers:\n  - maxpool: {kernel: 3, stride: 1, padding: 2}\n"))
    assert list(analysis.layers[0].outputs[0].shape[1:]) == [3, 10, 10]


def test_reshape_with_symbolic_counts_that_can_agree_is_accepted():
    # 24*batch*H elements against 192*batch: equal when H = 8, so it cannot be refused.
    graph = parse_spec("input: [3, H, 8]\nlayers:\n  - reshape: [24, 8]\n")
    assert analyze(graph, {"H": 8}).layers[0].outputs[0].shape == (Sym.symbol("batch"), 24, 8)


@pytest.mark.parametrize("target, possible", [((1, 25), False), ((1, 192), True), ((2, 384), True),
                                              ((1, 100), False)])
def test_reshape_of_a_symbolic_count_to_a_constant(target, possible):
    # 192*batch elements to a constant c: possible only when 192 divides c (batch = c / 192).
    states = [TensorState((Sym.symbol("batch"), 3, 8, 8), "float32"), TensorState((2,), "int64", target)]
    if possible:
        assert get_rule("Reshape")(states, {}).outputs[0].shape == target
    else:
        with pytest.raises(ShapeError, match="cannot reshape"):
            get_rule("Reshape")(states, {})


@pytest.mark.parametrize("text, env, value", [
    ("${planes * 4}", {"planes": 64}, 256),
    ("${2 if i == 0 else 1}", {"i": 1}, 1),
    ("${i == 0 and stride != 1}", {"i": 0, "stride": 2}, True),
    ("${2 ** 10}", {}, 1024),
    ("${2 ** -1}", {}, 0.5),
    ("${-n // 2}", {"n": 5}, -3),
    ("${min(a, 4) + max(1, 2)}", {"a": 9}, 6),
    ("${i in [0, 3]}", {"i": 3}, True),
    ("${[k, k]}", {"k": 3}, [3, 3]),
    ("${0.5 * 3}", {}, 1.5),
    ("${2 ** 62}", {}, 2**62),
    ("denselayer${i + 1}", {"i": 4}, "denselayer5"),
])
def test_expressions_keep_every_documented_feature(text, env, value):
    assert substitute(text, env) == value
