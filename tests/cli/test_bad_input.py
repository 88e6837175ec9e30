"""Every kind of bad spec gets exit code 2 and one message naming the file, line, layer and fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument
from ort_helpers import data, rule_shapes, run_onnxruntime, run_rule, weight

from archcalc.cli.main import cli
from archcalc.core.errors import ShapeError

ROOT = Path(__file__).resolve().parents[2]

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


# Found by an audit (/tmp/audit2): each was accepted, hung, crashed, or printed a message
# without its layer or fix. Every one must now name the file, line and (where there is one)
# the layer, and carry a `fix:` line.
AUDIT_CASES = {
    "yaml-nested-too-deep": ("input: [3, 4]\nlayers: " + "[" * 20000 + "]" * 20000 + "\n",
                             ["nests too deeply"]),
    "softmax-axis-out-of-range": ("input: [10]\nlayers:\n  - softmax: {axis: 3}\n",
                                  ["layer 'softmax_1'", "axis 3 is out of range for a rank-2 tensor",
                                   "use an axis from -2 to 1"]),
    "concat-axis-out-of-range": ("input: [3, 4]\nlayers:\n  - relu:\n    name: a\n  - concat:\n"
                                 "      axis: 5\n    inputs: [a, a]\n",
                                 ["axis 5 is out of range for a rank-3 tensor", "use an axis from -3 to 2"]),
    # onnxruntime rejects a pool pad >= kernel (begin or end), and an output_padding >= stride.
    "pool-pad-equals-kernel": ("input: [3, 8, 8]\nlayers:\n  - maxpool: {kernel: 2, padding: 2}\n",
                               ["layer 'maxpool_1'", "pad 2 at the begin of axis H is not smaller than the kernel 2",
                                "pad at most 1", ":3"]),
    "pool-pad-end-only": ("input: [3, 8, 8]\nlayers:\n  - avgpool: {kernel: 3, stride: 1, padding: [[0, 3], [0, 0]]}\n",
                          ["pad 3 at the end of axis H is not smaller than the kernel 3"]),
    "tconv-output-padding-over-stride": (
        "input: [3, 8, 8]\nlayers:\n  - conv_transpose2d: {filters: 4, kernel: 3, stride: 2, output_padding: 3}\n",
        ["layer 'conv_transpose2d_1'", "output_padding 3 on axis H is not smaller than max(stride 2, dilation 1) = 2",
         "at most 1"]),
    "tconv-output-padding-equals-stride": (
        "input: [3, 8, 8]\nlayers:\n  - conv_transpose2d: {filters: 4, kernel: 3, stride: 2, output_padding: 2}\n",
        ["output_padding 2 on axis H is not smaller than max(stride 2, dilation 1) = 2"]),
    "tconv-output-padding-equals-dilation": (
        "input: [3, 8, 8]\nlayers:\n"
        "  - conv_transpose2d: {filters: 4, kernel: 3, dilation: 2, output_padding: 2}\n",
        ["output_padding 2 on axis H is not smaller than max(stride 1, dilation 2) = 2"]),
    "tconv-output-padding-stride-1": (
        "input: [3, 8, 8]\nlayers:\n  - conv_transpose2d: {filters: 4, kernel: 3, output_padding: 1}\n",
        ["with stride 1 and dilation 1 it must be 0"]),
    "empty-name": ("input: [3, 8, 8]\nlayers:\n  - relu:\n    name: ''\n", ["the layer name '' is empty", ":3"]),
    "blank-name": ("input: [3, 8, 8]\nlayers:\n  - relu:\n    name: '   '\n", ["the layer name '   ' is empty"]),
    "empty-block-name": ("input: [3, 8, 8]\nblocks:\n  b:\n    layers: [relu]\nlayers:\n  - b:\n    name: ''\n",
                         ["the layer name '' is empty", ":6"]),
    "expr-power-tower": ("input: [3, 8, 8]\nblocks:\n  b:\n    args: {n: 9}\n    layers:\n"
                         "      - conv2d: {filters: '${n ** n ** n ** n}', kernel: 1}\nlayers:\n  - b\n",
                         ["larger than 2**63 - 1", "(exponent 387420489)", ":6"]),
    "expr-list-repetition": ("input: [3, 8, 8]\nlayers:\n  - conv2d: {filters: 4, kernel: 1}\n"
                             "    name: \"${[1] * 100000000}\"\n", ["arithmetic needs numbers, got [1]"]),
    "expr-string-repetition": ("input: [3, 8, 8]\nlayers:\n  - relu:\n    name: \"${'ab' * 100000000}\"\n",
                               ["arithmetic needs numbers, got 'ab'"]),
    "expr-too-many-digits": ("input: [3, 8, 8]\nlayers:\n  - relu:\n    name: \"r${10 ** 5000}\"\n",
                             ["'10 ** 5000' is larger than 2**63 - 1", ":3"]),
    "expr-product-too-large": ("input: [3, 8, 8]\nblocks:\n  b:\n    args: {n: 100000}\n    layers:\n"
                               "      - conv2d: {filters: '${n * n * n * n}', kernel: 1}\nlayers:\n  - b\n",
                               ["'n * n * n * n' is larger than 2**63 - 1"]),
    "expr-too-long": ("input: [3, 8, 8]\nlayers:\n  - relu:\n    name: \"r${" + "-" * 100_000 + "1}\"\n",
                      ["100001 characters long, over 500"]),
    "expr-unknown-name": ("input: [3, 8, 8]\nblocks:\n  b:\n    layers:\n      - conv2d: {filters: $zz, kernel: 1}\n"
                          "layers:\n  - b\n", ["unknown name 'zz'", "declare new names under the block's `args:`"]),
    "expr-division-by-zero": ("input: [3, 8, 8]\nblocks:\n  b:\n    args: {n: 0}\n    layers:\n"
                              "      - conv2d: {filters: '${4 // n}', kernel: 1}\nlayers:\n  - b\n",
                              ["expression '4 // n' failed", "check the values of the names it uses"]),
    "yaml-int-too-many-digits": ("input: [3, 8, 8]\nlayers:\n  - flatten\n  - dense: 1" + "0" * 5000 + "\n",
                                 ["has 5001 digits", ":4"]),
    "flatten-then-conv": ("input: [3, 8, 8]\nlayers:\n  - flatten\n  - conv2d: {filters: 4, kernel: 3}\n",
                          ["conv2d needs a [N, C, H, W] input, got [batch, 192]",
                           "remove the flatten before it, or reshape the input to [N, C, H, W]"]),
    "conv2d-on-1d": ("input: [3, 8]\nlayers:\n  - conv2d: {filters: 4, kernel: 3}\n", ["use conv1d for a 1D input"]),
    "tconv3d-on-2d": ("input: [3, 8, 8]\nlayers:\n  - conv_transpose3d: {filters: 4, kernel: 3}\n",
                      ["use conv_transpose2d for a 2D input"]),
    "unknown-reference-names-its-layer": ("input: [3, 8, 8]\nlayers:\n  - relu\n  - add:\n    name: merge\n"
                                          "    inputs: [relu_1, relu_9]\n",
                                          [":4: layer 'merge': input 'relu_9' is not a layer",
                                           "did you mean 'relu_1'"]),
    "multiply-three-inputs": ("input: [3, 8, 8]\nlayers:\n  - relu:\n    name: a\n  - multiply:\n"
                              "    inputs: [a, a, a]\n", [":5: layer 'multiply_1': 'multiply' takes 2 inputs, got 3"]),
    "layernorm-axis": ("input: [3, 8, 8]\nlayers:\n  - layernorm: 5\n",
                       ["axis 5 is out of range for input [batch, 3, 8, 8]", "use an axis from -4 to 3"]),
    "softmax-axis-not-integer": ("input: [3, 8, 8]\nlayers:\n  - softmax: x\n",
                                 ["layer 'softmax_1': field 'axis' is 'x'; it must be an integer"]),
    "concat-axis-not-integer": ("input: [3, 8, 8]\nlayers:\n  - relu\n  - concat: {axis: 1.5}\n"
                                "    inputs: [relu_1, input]\n", ["field 'axis' is 1.5"]),
    "reshape-two-minus-one": ("input: [3, 8, 8]\nlayers:\n  - reshape: [-1, -1]\n",
                              ["more than one -1", "only one can be inferred"]),
    "reshape-indivisible": ("input: [3, 8, 8]\nbatch: 1\nlayers:\n  - reshape: [5, -1]\n",
                            ["cannot reshape [1, 3, 8, 8] (192 elements) to [0, 5, -1]", "divisor of 192"]),
    "repeat-string": ("input: [3, 8, 8]\nlayers:\n  - relu:\n    repeat: many\n",
                      ["`repeat` is 'many'", "repeat: 3"]),
    "repeat-huge": ("input: [3, 8, 8]\nlayers:\n  - relu:\n    repeat: 100000000\n",
                    ["`repeat` is 100,000,000, more than the 100,000 layers"]),
    "repeat-nested-huge": ("input: [3, 8, 8]\nblocks:\n  b:\n    layers:\n      - relu:\n        repeat: 1000\n"
                           "layers:\n  - b:\n    repeat: 1000\n", ["expands to more than 100,000 layers"]),
    "trainable-string": ("input: [3, 8, 8]\nlayers:\n  - relu:\n    trainable: nope\n",
                         ["`trainable` is 'nope'", "trainable: false"]),
    "batch-string": ("input: [3, 8, 8]\nbatch: x\nlayers:\n  - relu\n", ["`batch` is 'x'", ":2", "batch: 8"]),
    "layers-empty": ("input: [3, 8, 8]\nlayers: []\n", ["`layers` must be a non-empty list", ":2"]),
    "duplicate-key-line": ("input: [3, 8, 8]\ninput: [3, 4, 4]\nlayers:\n  - relu\n",
                           ["bad.yaml:2: key 'input' appears twice"]),
    "when-not-boolean": ("input: [3, 8, 8]\nlayers:\n  - relu:\n    when: 'hello'\n",
                         [":3: layer 'relu_1': `when` is 'hello'; it must be true or false"]),
    "when-number": ("input: [3, 8, 8]\nlayers:\n  - relu:\n    when: '${i}'\n", ["`when` is 0"]),
    # 192*batch elements can never be 25*batch, whatever the batch.
    "reshape-symbolic-batch": ("input: [3, 8, 8]\nlayers:\n  - reshape: [5, 5]\n",
                               ["cannot reshape [batch, 3, 8, 8] (192*batch elements) to [batch, 5, 5] "
                                "(25*batch elements)", "make the element counts agree"]),
    "misspelled-name-key": ("input: [3, 8, 8]\nlayers:\n  - conv2d: {filters: 4, kernel: 3}\n    nmae: c1\n",
                            [":3: unknown key 'nmae' beside the layer type 'conv2d': did you mean 'name'?",
                             "write `name:`"]),
    "misspelled-inputs-key": ("input: [3, 8, 8]\nlayers:\n  - add:\n    inptus: [input, input]\n",
                              ["unknown key 'inptus' beside the layer type 'add': did you mean 'inputs'?"]),
    "block-uses-itself": ("input: [3, 8, 8]\nblocks:\n  b:\n    layers:\n      - b\nlayers:\n  - b\n",
                          ["blocks nest deeper than 32 levels (in block 'b': does it use itself?)"]),
    "repeated-name-taken": ("input: [3, 8, 8]\nlayers:\n  - relu:\n    name: r\n    repeat: 2\n  - relu:\n"
                            "    name: r\n", ["the name 'r' is used twice", ":6"]),
}


@pytest.mark.parametrize("text, expected", AUDIT_CASES.values(), ids=AUDIT_CASES.keys())
def test_audited_bad_spec_names_line_layer_and_fix(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["analyze", str(path), "--batch", "1"])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    message = result.output
    assert "Traceback" not in message
    assert message.startswith(f"error: {path}:"), message
    assert message.count("\n  fix: ") == 1, message
    for fragment in expected:
        assert fragment in message, message


@pytest.mark.parametrize("command", [["verify"], ["export", "-o", "out.onnx"]])
def test_empty_layer_name_is_refused_before_verify_or_export(tmp_path, command):
    path = tmp_path / "bad.yaml"
    path.write_text("input: [3, 8, 8]\nlayers:\n  - relu:\n    name: ''\n")
    args = [str(tmp_path / a) if a.endswith(".onnx") else a for a in command[1:]]
    result = CliRunner().invoke(cli, [command[0], str(path), *args])
    assert result.exit_code == 2, result.output
    assert "the layer name '' is empty" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


# (op, attrs, input shape, weight shape, what happens). Pools: every pad, begin and end, must
# be < kernel (kernel 3 with pad 2 is fine, unlike PyTorch's pad <= k/2), the undilated kernel.
# ConvTranspose: output_padding < max(stride, dilation) (ONNX, PyTorch and onnxruntime's own
# check); onnxruntime also refuses stride <= output_padding < dilation at run time, a valid
# shape that archcalc then computes with a warning ("warn").
RUNTIME_LIMITS = {
    "maxpool-k2p1": ("MaxPool", {"kernel_shape": [2, 2], "pads": [1, 1, 1, 1]}, (1, 1, 8, 8), None, "ok"),
    "maxpool-k2p2": ("MaxPool", {"kernel_shape": [2, 2], "pads": [2, 2, 2, 2]}, (1, 1, 8, 8), None, "error"),
    "maxpool-k3p2": ("MaxPool", {"kernel_shape": [3, 3], "pads": [2, 2, 2, 2]}, (1, 1, 8, 8), None, "ok"),
    "maxpool-k3-end3": ("MaxPool", {"kernel_shape": [3, 3], "pads": [0, 0, 3, 0]}, (1, 1, 8, 8), None, "error"),
    "maxpool-k2d2p2": ("MaxPool", {"kernel_shape": [2], "pads": [2, 2], "dilations": [2]}, (1, 1, 8), None, "error"),
    "avgpool-k4p3": ("AveragePool", {"kernel_shape": [4, 4], "pads": [3, 3, 3, 3]}, (1, 1, 8, 8), None, "ok"),
    "avgpool-k4p4": ("AveragePool", {"kernel_shape": [4, 4], "pads": [4, 4, 4, 4]}, (1, 1, 8, 8), None, "error"),
    "tconv-s2op1": ("ConvTranspose", {"strides": [2], "output_padding": [1]}, (1, 2, 8), (2, 3, 3), "ok"),
    "tconv-s2op2": ("ConvTranspose", {"strides": [2], "output_padding": [2]}, (1, 2, 8), (2, 3, 3), "error"),
    "tconv-s1d2op2": ("ConvTranspose", {"dilations": [2], "output_padding": [2]}, (1, 2, 8), (2, 3, 3), "error"),
    "tconv-s1d2op1": ("ConvTranspose", {"dilations": [2], "output_padding": [1]}, (1, 2, 8), (2, 3, 3), "warn"),
    "tconv-s2d3op2": ("ConvTranspose", {"strides": [2], "dilations": [3], "output_padding": [2]}, (1, 2, 8),
                      (2, 3, 3), "warn"),
    "tconv-s3d2op2": ("ConvTranspose", {"strides": [3], "dilations": [2], "output_padding": [2]}, (1, 2, 8),
                      (2, 3, 3), "ok"),
}


@pytest.mark.parametrize("op, attrs, x, w, outcome", RUNTIME_LIMITS.values(), ids=RUNTIME_LIMITS.keys())
def test_pool_pads_and_output_padding_follow_onnxruntime(op, attrs, x, w, outcome):
    args = [data(*x)] + ([weight(*w)] if w else [])
    if outcome == "ok":
        result = run_rule(op, args, attrs)
        assert rule_shapes(result) == run_onnxruntime(op, args, attrs)
        assert not result.warnings
        return
    with pytest.raises((Fail, InvalidArgument)):  # at session creation (pools) or at run time
        run_onnxruntime(op, args, attrs)
    if outcome == "warn":
        assert "onnxruntime refuses to run it" in run_rule(op, args, attrs).warnings[0]
        return
    with pytest.raises(ShapeError):
        run_rule(op, args, attrs)


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


def test_export_refuses_an_onnx_model(tmp_path):
    # Exporting an ONNX file ended in a traceback for some (onnxruntime's logreg_iris.onnx).
    model = ROOT / "tests" / "fixtures" / "onnx" / "resnet18_dynamo.onnx"
    result = CliRunner().invoke(cli, ["export", str(model), "-o", str(tmp_path / "out.onnx")])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {model} is already an ONNX model: export writes a YAML spec as ONNX")
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("given, meant", [("specs/resnet50.yml", "specs/resnet50.yaml"),
                                          ("specs/resnt50.yaml", "specs/resnet50.yaml")])
def test_a_missing_model_suggests_the_file_meant(given, meant):
    result = CliRunner().invoke(cli, ["analyze", given])
    assert result.exit_code == 2
    assert result.stderr == f"error: {given} does not exist\n  fix: did you mean {meant}?\n"


def test_a_full_disk_is_a_message_not_a_traceback(monkeypatch):
    # verify writes a large model's weights to a temporary folder; on a full disk that write
    # fails with ENOSPC, which names the file and TMPDIR, with exit 2.
    import errno

    import onnx

    def disk_full(model, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(onnx, "save", disk_full)
    result = CliRunner().invoke(cli, ["verify", str(ROOT / "specs" / "vgg16.yaml"), "--input-shape", "input=1,3,32,32"])
    assert result.exit_code == 2, result.output
    assert "no space left on the device writing" in result.output and "model.onnx" in result.output
    assert "TMPDIR" in result.output and "Traceback" not in result.output
