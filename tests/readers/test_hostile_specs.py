"""Hostile YAML specs and budget files: alias bombs, huge files, odd keys and values. Each is
bad input (exit 2, one message naming the file and line, and a fix), never a traceback, a
hang or memory running out."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from archcalc.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
LENET = str(ROOT / "specs" / "lenet5.yaml")
GOOD_BUDGET = "total:\n  params: 30M\n"


def _bomb(levels: int = 9) -> str:
    """A flow sequence whose last anchor stands for 10**levels values (billion laughs)."""
    parts = ["&a0 [x, x, x, x, x, x, x, x, x, x]"]
    parts += [f"&a{k} [" + ", ".join([f"*a{k - 1}"] * 10) + "]" for k in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


def _limit_memory() -> None:
    # 1 GiB of address space is plenty for archcalc (it needs ~300 MiB with onnx imported)
    # and stops an expanding alias bomb with a MemoryError instead of swapping the machine.
    resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))


def run_archcalc(*args: str) -> subprocess.CompletedProcess:
    """The CLI in a subprocess with a memory limit and a timeout, so a regression fails the
    test instead of taking the machine down with it."""
    return subprocess.run([sys.executable, "-m", "archcalc", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, preexec_fn=_limit_memory)


def assert_bad_input(result, path, *fragments: str) -> None:
    """Exit 2, one located message with one fix, no traceback."""
    output = result.output if hasattr(result, "output") else result.stdout + result.stderr
    code = result.exit_code if hasattr(result, "exit_code") else result.returncode
    assert code == 2, output
    assert "Traceback" not in output, output
    assert f"{path}:" in output, output
    assert output.count("fix: ") == 1, output
    for fragment in fragments:
        assert fragment in output, output


def analyze(path):
    return CliRunner().invoke(cli, ["analyze", str(path)])


def check(path, *extra: str):
    return CliRunner().invoke(cli, ["check", LENET, "--budget", str(path), *extra])


# -- 1. alias bombs ---------------------------------------------------------------------------

BOMB = _bomb()
SPEC_BOMBS = {
    "input": f"input: {BOMB}\nlayers: [relu]\n",
    "layers": f"input: [3, 8, 8]\nlayers: {BOMB}\n",
    "name": f"name: {BOMB}\ninput: [3, 8, 8]\nlayers: [relu]\n",
    "batch": f"input: [3, 8, 8]\nbatch: {BOMB}\nlayers: [relu]\n",
    "layer-name": f"input: [3, 8, 8]\nlayers:\n  - relu:\n    name: {BOMB}\n",
    "kernel": f"input: [3, 8, 8]\nlayers:\n  - conv2d: {{filters: 4, kernel: {BOMB}}}\n",
    "inputs": f"input: [3, 8, 8]\nlayers:\n  - relu\n  - add:\n    inputs: {BOMB}\n",
    "when": f"input: [3, 8, 8]\nlayers:\n  - relu:\n    when: {BOMB}\n",
    "block-args": (f"input: [3, 8, 8]\nblocks:\n  b:\n    args: {{n: 1}}\n    layers: [relu]\n"
                   f"layers:\n  - b: {{n: {BOMB}}}\n"),
    # Nine lines of anchors, each naming the last ten times, spread over the top-level keys.
    "one-level-per-line": ("input: [3, 8, 8]\nlayers: [relu]\nblocks:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
                           + "".join(f"  a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 10) + "]\n"
                                     for k in range(1, 9))),
}


@pytest.mark.parametrize("text", SPEC_BOMBS.values(), ids=SPEC_BOMBS.keys())
def test_spec_alias_bomb_is_refused_within_memory(tmp_path, text):
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    result = run_archcalc("analyze", str(path))
    assert_bad_input(result, path, "aliases expand to more than 100,000 values")


@pytest.mark.parametrize("where", ["total-limit", "layers-match", "dims"])
def test_budget_alias_bomb_is_refused_within_memory(tmp_path, where):
    text = {"total-limit": f"total:\n  params: {BOMB}\n",
            "layers-match": f"layers:\n  - match: {BOMB}\n    params: 1M\n",
            "dims": f"dims: {{seq: {BOMB}}}\ntotal:\n  params: 30M\n"}[where]
    path = tmp_path / "budget.yaml"
    path.write_text(text)
    result = run_archcalc("check", LENET, "--budget", str(path))
    assert_bad_input(result, path, "aliases expand to more than 100,000 values")


def test_aliases_and_merge_keys_that_share_a_few_fields_still_work(tmp_path):
    path = tmp_path / "shared.yaml"
    path.write_text("input: [3, 8, 8]\nlayers:\n  - conv2d: &conv {filters: 4, kernel: 3, padding: 1}\n"
                    "  - conv2d: *conv\n  - conv2d: {<<: *conv, filters: 8}\n")
    result = CliRunner().invoke(cli, ["analyze", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert '"params": 296' in result.output  # the merged conv's own `filters: 8` wins: 8 * (4*9 + 1)


def test_merge_key_does_not_hide_a_duplicate_own_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("input: [3, 8, 8]\nlayers:\n  - conv2d: &conv {filters: 4, kernel: 3}\n"
                    "  - conv2d: {<<: *conv, filters: 8,\n      filters: 9}\n")
    assert_bad_input(analyze(path), path, ":5: key 'filters' appears twice")


def test_alias_inside_its_own_anchor_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("input: &dims [3, 8, *dims]\nlayers: [relu]\n")
    assert_bad_input(analyze(path), path, ":1: alias *dims refers to the collection it is inside")


# -- 2. file size ------------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize("command", ["analyze", "check"])
def test_yaml_symlink_to_dev_zero_is_refused_at_the_cap(tmp_path, command):
    path = tmp_path / "zero.yaml"
    path.symlink_to("/dev/zero")
    args = ["analyze", str(path)] if command == "analyze" else ["check", LENET, "--budget", str(path)]
    result = run_archcalc(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{path} is larger than 16 MiB" in result.stderr, result.stderr


def test_spec_just_over_the_cap_is_refused_and_at_the_cap_is_read(tmp_path):
    from archcalc.readers.yaml_lines import MAX_FILE_BYTES

    head = "input: [3, 8, 8]\nlayers: [relu]\n"
    path = tmp_path / "big.yaml"
    path.write_text(head + "#" * (MAX_FILE_BYTES - len(head) - 1) + "\n")
    assert analyze(path).exit_code == 0
    path.write_text(head + "#" * (MAX_FILE_BYTES - len(head)) + "\n")
    result = analyze(path)
    assert result.exit_code == 2
    assert "larger than 16 MiB" in result.output


# -- 3. complex keys ----------------------------------------------------------------------------

def test_complex_key_in_a_spec_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("input: [3, 8, 8]\nlayers:\n  - relu\n? [a, b]\n: 1\n")
    assert_bad_input(analyze(path), path, ":4: a key is a list, not a name")


def test_complex_key_inside_a_layer_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("input: [3, 8, 8]\nlayers:\n  - conv2d:\n      ? {a: 1}\n      : 3\n")
    assert_bad_input(analyze(path), path, ":4: a key is a mapping, not a name")


@pytest.mark.parametrize("fmt", ["table", "github", "junit", "json"])
def test_complex_key_in_a_budget_is_refused_in_every_format(tmp_path, fmt):
    path = tmp_path / "budget.yaml"
    path.write_text("total:\n  params: 30M\n? [a, b]\n: 1\n")
    result = check(path, "--format", fmt)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert f"{path}:3: a key is a list, not a name" in result.output


# -- 4. block args ----------------------------------------------------------------------------

BLOCK_CASES = {
    "args-list": ("input: [3, 8, 8]\nblocks:\n  b:\n    args: [planes]\n    layers: [relu]\nlayers:\n  - b\n",
                  [":4: block 'b' declares `args` as a list; it must be a mapping"]),
    "args-scalar": ("input: [3, 8, 8]\nblocks:\n  b:\n    args: 3\n    layers: [relu]\nlayers:\n  - b: {n: 1}\n",
                    [":4: block 'b' declares `args` as 3"]),
    "use-args-scalar": ("input: [3, 8, 8]\nblocks:\n  b:\n    args: {n: 1}\n    layers: [relu]\nlayers:\n"
                        "  - b: 5\n", [":7: block 'b' takes a mapping of args, got 5", "b: {n: ...}"]),
    "block-layers-string": ("input: [3, 8, 8]\nblocks:\n  b:\n    layers: relu\nlayers:\n  - b\n",
                            [":4: block 'b' needs a non-empty `layers:` list"]),
    "block-not-mapping": ("input: [3, 8, 8]\nblocks:\n  b: 3\nlayers:\n  - b\n",
                          [":3: block 'b' needs a non-empty `layers:` list"]),
}


@pytest.mark.parametrize("text, expected", BLOCK_CASES.values(), ids=BLOCK_CASES.keys())
def test_malformed_block_is_refused(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert_bad_input(analyze(path), path, *expected)


# -- 5. integers past int64 -------------------------------------------------------------------

HUGE = 10**30
INT64_CASES = {
    "stride": (f"  - conv2d: {{filters: 4, kernel: 3, stride: {HUGE}}}\n", "conv2d_1", "stride"),
    "kernel": (f"  - conv2d: {{filters: 4, kernel: [3, {HUGE}]}}\n", "conv2d_1", "kernel"),
    "filters": (f"  - conv2d: {{filters: {HUGE}, kernel: 3}}\n", "conv2d_1", "filters"),
    "padding": (f"  - conv2d: {{filters: 4, kernel: 3, padding: {HUGE}}}\n", "conv2d_1", "padding"),
    "padding-pair": (f"  - conv2d: {{filters: 4, kernel: 3, padding: [[0, {HUGE}], [0, 0]]}}\n",
                     "conv2d_1", "padding"),
    "dilation": (f"  - conv2d: {{filters: 4, kernel: 3, dilation: {HUGE}}}\n", "conv2d_1", "dilation"),
    "groups": (f"  - conv2d: {{filters: 4, kernel: 3, groups: {HUGE}}}\n", "conv2d_1", "groups"),
    "pool-kernel": (f"  - maxpool: {HUGE}\n", "maxpool_1", "kernel"),
    "tconv-output-padding": (f"  - conv_transpose2d: {{filters: 4, kernel: 3, output_padding: {HUGE}}}\n",
                             "conv_transpose2d_1", "output_padding"),
    "units": (f"  - flatten\n  - dense: {HUGE}\n", "dense_1", "units"),
    "axis-negative": (f"  - softmax: -{HUGE}\n", "softmax_1", "axis"),
    "reshape": (f"  - reshape: [{HUGE}]\n", "reshape_1", "shape"),
    "upsample": (f"  - upsample: {HUGE}\n", "upsample_1", "scale"),
}


@pytest.mark.parametrize("layer_text, layer, field", INT64_CASES.values(), ids=INT64_CASES.keys())
def test_integer_field_past_int64_is_refused_when_read(tmp_path, layer_text, layer, field):
    path = tmp_path / "bad.yaml"
    path.write_text("input: [3, 8, 8]\nlayers:\n" + layer_text)
    line = 3 + layer_text.count("\n") - 1
    assert_bad_input(analyze(path), path, f":{line}: layer '{layer}'", f"field '{field}' is ", "int64")


@pytest.mark.parametrize("command", [["export", "-o", "out.onnx"], ["verify"]])
def test_stride_past_int64_never_reaches_export_or_verify(tmp_path, command):
    path = tmp_path / "bad.yaml"
    path.write_text(f"input: [3, 8, 8]\nlayers:\n  - conv2d: {{filters: 4, kernel: 3, stride: {HUGE}}}\n")
    args = [str(tmp_path / a) if a.endswith(".onnx") else a for a in command[1:]]
    result = CliRunner().invoke(cli, [command[0], str(path), *args])
    assert_bad_input(result, path, "field 'stride'", "int64")


@pytest.mark.parametrize("text, fragment", [
    (f"input: [3, {HUGE}, 8]\nlayers: [relu]\n", ":1: input 'input' has dim"),
    (f"input: [3, 8, 8]\nbatch: {HUGE}\nlayers: [relu]\n", ":2: `batch` is"),
], ids=["input-dim", "batch"])
def test_input_dims_and_batch_past_int64_are_refused(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert_bad_input(analyze(path), path, fragment, "2**63 - 1")


@pytest.mark.parametrize("value", [".nan", "-.inf", "1" + "0" * 400], ids=["nan", "-inf", "int-past-float"])
def test_float_field_must_be_finite_float32(tmp_path, value):
    path = tmp_path / "bad.yaml"
    path.write_text(f"input: [3, 8, 8]\nlayers:\n  - batchnorm: {{epsilon: {value}}}\n")
    assert_bad_input(analyze(path), path, ":3: layer 'batchnorm_1': field 'epsilon'", "a finite number")


# -- 6. dtype -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value, fragment", [("int3", "'int3'"), ("[float32]", "a list"), ("4", "4")])
def test_unknown_dtype_is_refused_listing_valid_ones(tmp_path, value, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(f"input: [3, 8, 8]\ndtype: {value}\nlayers: [relu]\n")
    assert_bad_input(analyze(path), path, f":2: `dtype` is {fragment}", "valid dtypes: float32,", "bfloat16")


def test_known_dtypes_and_aliases_are_accepted(tmp_path):
    path = tmp_path / "ok.yaml"
    for dtype in ("float16", "float", "int8"):
        path.write_text(f"input: [3, 8, 8]\ndtype: {dtype}\nlayers: [relu]\n")
        assert analyze(path).exit_code == 0, dtype


# -- found by hand-mutating specs/lenet5.yaml and budgets/example.yaml -------------------------

EXPLORED_SPECS = {
    "zero-padding-same": ("input: [3, 8, 8]\nlayers:\n  - zero_padding: same\n",
                          [":3: layer 'zero_padding_1': field 'padding' is 'same'"]),
    "zero-padding-huge": (f"input: [3, 8, 8]\nlayers:\n  - zero_padding: [[0, {HUGE}], [0, 0]]\n",
                          [":3: layer 'zero_padding_1': field 'padding'", "int64"]),
    "blocks-list": ("input: [3, 8, 8]\nblocks: [a]\nlayers: [relu]\n", [":2: `blocks` is a list"]),
    "model-name-list": ("name: [a, b]\ninput: [3, 8, 8]\nlayers: [relu]\n", [":1: `name` is a list; it must be text"]),
    "description-mapping": ("description: {a: 1}\ninput: [3, 8, 8]\nlayers: [relu]\n",
                            [":1: `description` is a mapping"]),
    "layer-name-list": ("input: [3, 8, 8]\nlayers:\n  - relu:\n    name: [a]\n",
                        [":3: `name` is a list; a layer's name is one word"]),
}


@pytest.mark.parametrize("text, expected", EXPLORED_SPECS.values(), ids=EXPLORED_SPECS.keys())
def test_explored_bad_spec_is_refused(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert_bad_input(analyze(path), path, *expected)


EXPLORED_BUDGETS = {
    "limit-past-int64": (f"total:\n  params: {HUGE}\n", [":2: limit `params` is larger than 2**63 - 1"]),
    # 5000 digits made a number too long for Python to print when the report formatted it.
    "limit-5000-digits": ("total:\n  params: '" + "9" * 5000 + "'\n", [":2: limit `params` is larger than 2**63 - 1"]),
    "batch-past-int64": (f"batch: {HUGE}\ntotal:\n  params: 30M\n", [":1: `batch` is", "(int64)"]),
    "dim-past-int64": (f"dims: {{seq: {HUGE}}}\ntotal:\n  params: 30M\n", [":1: dim 'seq' is", "(int64)"]),
}


@pytest.mark.parametrize("text, expected", EXPLORED_BUDGETS.values(), ids=EXPLORED_BUDGETS.keys())
def test_explored_bad_budget_is_refused(tmp_path, text, expected):
    path = tmp_path / "budget.yaml"
    path.write_text(text)
    assert_bad_input(check(path), path, *expected)


@pytest.mark.parametrize("field", ["${}", "x${}y"])
def test_an_empty_expression_is_refused(tmp_path, field):
    """`${}` holds no expression: exit 2 saying so (it was a TypeError on len(None))."""
    spec = tmp_path / "empty.yaml"
    spec.write_text(f"input: [3, 8, 8]\nlayers:\n  - conv2d: {{filters: 4, kernel: 3, name: '{field}'}}\n")
    result = CliRunner().invoke(cli, ["analyze", str(spec)])
    assert result.exit_code == 2, result.output
    assert "is not a valid expression" in result.output and "Traceback" not in result.output


def test_a_layer_name_past_the_cap_is_refused(tmp_path):
    """A block instance's name prefixes every layer and tensor inside it, so a huge one was
    copied once per tensor (gigabytes for googlenet): names are capped at 256 characters."""
    text = (ROOT / "specs" / "googlenet.yaml").read_text()
    spec = tmp_path / "long.yaml"
    spec.write_text(text.replace("name: inception3a", f"name: {'n' * 300}", 1))
    assert "n" * 300 in spec.read_text()
    result = CliRunner().invoke(cli, ["analyze", str(spec)])
    assert result.exit_code == 2, result.output
    assert "300 characters long, over 256" in result.output
    spec.write_text(text.replace("name: inception3a", f"name: {'n' * 256}", 1))
    assert CliRunner().invoke(cli, ["analyze", str(spec)]).exit_code == 0
