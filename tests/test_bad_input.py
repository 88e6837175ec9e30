"""Every kind of bad spec gets exit code 2 and one message naming the file, line, layer and fix."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from archcalc.cli import cli

CASES = {
    "malformed-yaml": ("input: [3, 8, 8]\nlayers:\n  - conv2d: {filters: 4, kernel: 3\n",
                       ["not valid YAML", ":4"]),
    "missing-colon": ("input: [3, 8, 8]\nlayers:\n  - relu\n    name: a\n",
                      ["not valid YAML", "colon after its type"]),
    "not-a-mapping": ("- relu\n", ["must be a mapping"]),
    "unknown-top-key": ("input: [3, 8, 8]\nlayerz: []\n", ["unknown key 'layerz'", "did you mean 'layers'", ":2"]),
    "no-layers": ("input: [3, 8, 8]\n", ["has no `layers`"]),
    "unknown-layer-type": ("input: [3, 8, 8]\nlayers:\n  - relu\n  - conv2: {filters: 4, kernel: 3}\n",
                           ["unknown layer type 'conv2'", "did you mean 'conv2d'", ":4"]),
    "unknown-field": ("input: [3, 8, 8]\nlayers:\n  - conv2d: {filters: 4, kernel: 3, strde: 2}\n",
                      ["no field 'strde'", "did you mean 'stride'", ":3"]),
    "missing-field": ("input: [3, 8, 8]\nlayers:\n  - conv2d: {kernel: 3}\n", ["'filters' is missing", "conv2d_1"]),
    "negative-kernel": ("input: [3, 8, 8]\nlayers:\n  - conv2d: {filters: 4, kernel: -3}\n",
                        ["'kernel' is -3", "positive integer", "conv2d_1", ":3"]),
    "zero-stride": ("input: [3, 8, 8]\nlayers:\n  - conv2d: {filters: 4, kernel: 3, stride: 0}\n",
                    ["'stride' is 0"]),
    "non-integer-filters": ("input: [3, 8, 8]\nlayers:\n  - conv2d: {filters: 4.5, kernel: 3}\n",
                            ["'filters' is 4.5"]),
    "bad-input-dim": ("input: [3, -8, 8]\nlayers:\n  - relu\n", ["dim -8", ":1"]),
    "unknown-reference": ("input: [3, 8, 8]\nlayers:\n  - relu\n  - add:\n    inputs: [relu_1, relu_9]\n",
                          ["input 'relu_9' is not a layer", "did you mean 'relu_1'", ":4"]),
    "cycle": ("input: [3, 8, 8]\nlayers:\n  - relu:\n    name: a\n    inputs: [b]\n"
              "  - relu:\n    name: b\n    inputs: [a]\n", ["cycle", "a -> b -> a"]),
    "duplicate-name": ("input: [3, 8, 8]\nlayers:\n  - relu:\n    name: a\n  - relu:\n    name: a\n",
                       ["'a' is used twice", ":5"]),
    "kernel-larger-than-input": ("input: [3, 2, 2]\nlayers:\n  - conv2d: {filters: 4, kernel: 3}\n",
                                 ["kernel 3 is larger than the padded input", "2 + 0 + 0 = 2 < 3", "conv2d_1"]),
    "pool-too-small": ("input: [3, 4, 4]\nlayers:\n  - maxpool: 2\n  - maxpool: 2\n  - maxpool: 2\n",
                       ["maxpool_3", "larger than the padded input", ":5"]),
    "concat-mismatch": ("input: [3, 8, 8]\nlayers:\n  - conv2d: {filters: 4, kernel: 3}\n    name: a\n"
                        "  - conv2d: {filters: 4, kernel: 1}\n    name: b\n    inputs: [input]\n"
                        "  - concat:\n    inputs: [a, b]\n",
                        ["cannot concatenate [batch, 4, 6, 6] and [batch, 4, 8, 8]"]),
    "add-mismatch": ("input: [3, 8, 8]\nlayers:\n  - conv2d: {filters: 4, kernel: 3, padding: 1}\n    name: a\n"
                     "  - conv2d: {filters: 5, kernel: 3, padding: 1}\n    name: b\n    inputs: [input]\n"
                     "  - add:\n    inputs: [a, b]\n", ["cannot be broadcast", "4 vs 5", "add_1"]),
    "dense-unflattened": ("input: [3, 8, 8]\nlayers:\n  - dense: 10\n",
                          ["dense needs a flat [N, features] input", "add a flatten layer"]),
    "groups-mismatch": ("input: [6, 8, 8]\nlayers:\n  - conv2d: {filters: 8, kernel: 3, groups: 4}\n",
                        ["6 channels, not divisible by groups=4"]),
    "counts-overflow": ("input: [3, 100000000000, 100000000000]\nlayers:\n"
                        "  - conv2d: {filters: 100000000, kernel: 3}\n",
                        ["overflow int64", "conv2d_1"]),
    "add-one-input": ("input: [3, 8, 8]\nlayers:\n  - add\n", ["takes 2 to 64 inputs, got 1"]),
    "bad-expression": ("input: [3, 8, 8]\nblocks:\n  b:\n    args: {n: 4}\n    layers:\n"
                       "      - conv2d: {filters: '${n.real}', kernel: 1}\nlayers:\n  - b\n",
                       ["not allowed in an expression"]),
    "freeze-unknown": ("input: [3, 8, 8]\nfreeze_until: conv9\nlayers:\n  - conv2d: {filters: 4, kernel: 3}\n",
                       ["freeze_until names 'conv9'", ":2"]),
}


@pytest.mark.parametrize("text, expected", CASES.values(), ids=CASES.keys())
def test_bad_spec_exits_2_with_a_located_message(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["analyze", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    message = result.output
    assert str(path) in message
    assert "fix:" in message or "did you mean" in message or "cycle" in message
    for fragment in expected:
        assert fragment in message


@pytest.mark.parametrize("make", ["missing", "directory", "binary", "unknown-suffix"])
def test_unreadable_model_file_exits_2(tmp_path, make):
    path = tmp_path / "model.yaml"
    if make == "directory":
        path.mkdir()
    elif make == "binary":
        path.write_bytes(b"\xff\xfe\x00\x81" * 10)
    elif make == "unknown-suffix":
        path = tmp_path / "model.txt"
        path.write_text("input: [1]\n")
    result = CliRunner().invoke(cli, ["analyze", str(path)])
    assert result.exit_code == 2
    assert str(path) in result.output
    assert "Traceback" not in result.output


def test_explain_unknown_layer_suggests_names():
    result = CliRunner().invoke(cli, ["explain", "specs/lenet5.yaml", "conv3"])
    assert result.exit_code == 2
    assert "no layer named 'conv3'" in result.output
    assert "conv1" in result.output or "conv2" in result.output


def test_bad_dim_option_is_usage_error():
    result = CliRunner().invoke(cli, ["analyze", "specs/lenet5.yaml", "--dim", "seq"])
    assert result.exit_code == 2
    assert "NAME=N" in result.output
