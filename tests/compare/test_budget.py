"""Budgets: the units parser, every limit kind, layer selection, warn level, headroom, and every
kind of bad budget (exit 2, with file:line and a fix).

LeNet-5's figures used below (batch 1), worked by hand from specs/lenet5.yaml:
  conv1: 6 filters of 5x5x1 + bias          -> params (25 + 1) * 6 = 156
         output 6x28x28                     -> MACs 156 * 0 + 6*28*28*25 = 117,600; 18,816 bytes
  fc1:   400 -> 120                         -> params (400 + 1) * 120 = 48,120; MACs 48,000
  total: params 61,706; MACs 416,520; FLOPs 852,370; activations 60,008 B (peak 41,728 B);
         weights 61,706 * 4 = 246,824 B; 12 layers
"""

from __future__ import annotations

import dataclasses
import functools
import math

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from archcalc.cli.main import cli
from archcalc.compare.budget import (
    FAIL,
    METRICS,
    PASS,
    WARN,
    BudgetError,
    check_model,
    evaluate,
    parse_budget,
)
from archcalc.core.units import BYTE_UNITS, BYTES, COUNT, COUNT_UNITS, QuantityError, format_quantity, parse_quantity
from archcalc.engine.inference import analyze
from archcalc.readers.load import load_model
from archcalc.readers.spec.build import parse_spec

LENET = "specs/lenet5.yaml"


@pytest.fixture(autouse=True)
def _run_from_repo_root(monkeypatch, request):
    monkeypatch.chdir(request.config.rootpath)


@functools.cache
def lenet(batch: int = 1):
    return analyze(load_model(LENET), {"batch": batch})


@functools.cache
def lenet_step():
    from archcalc.engine.training import training_cost

    return training_cost(load_model(LENET), lenet(), "adam", "fp32")


def results(text: str, analysis=None):
    return evaluate(analysis or lenet(), parse_budget(text, "b.yaml"), None if analysis else lenet_step())


# ---------------------------------------------------------------------------------------------
# Units


@pytest.mark.parametrize(("text", "kind", "expected"), [
    ("30M", COUNT, 30_000_000),
    ("2.5M", COUNT, 2_500_000),
    ("5G", COUNT, 5 * 10**9),
    ("1T", COUNT, 10**12),
    ("500", COUNT, 500),
    ("64k", COUNT, 64_000),           # case-insensitive
    ("1.5 K", COUNT, 1_500),          # a space before the unit
    ("1e3", COUNT, 1_000),
    ("1_000_000", COUNT, 1_000_000),
    (500, COUNT, 500),                # YAML int
    (2.5e6, COUNT, 2_500_000),        # YAML float
    ("2.9", COUNT, 2),                # whole units: actual <= 2.9 iff actual <= 2
    ("200MiB", BYTES, 200 * 2**20),
    ("1.5GiB", BYTES, 3 * 2**29),
    ("200MB", BYTES, 200 * 10**6),
    ("1KB", BYTES, 1_000),
    ("1kib", BYTES, 1_024),
    ("2 TiB", BYTES, 2 * 2**40),
    ("4096B", BYTES, 4_096),
    ("4096", BYTES, 4_096),           # plain numbers are bytes
    ("-3M", COUNT, -3_000_000),       # the parser reads signs; the budget refuses them
    ("123456789012345678901234567890123", COUNT, 123456789012345678901234567890123),  # exact past 28 digits
])
def test_parse_quantity(text, kind, expected):
    assert parse_quantity(text, kind) == expected


@pytest.mark.parametrize(("value", "kind", "words"), [
    ("30Mi", COUNT, ["unknown unit 'Mi'"]),
    ("200MiB", COUNT, ["'MiB' is a unit of bytes", "this limit is a count"]),
    ("30B", COUNT, ["'B' is a unit of bytes"]),
    ("200M", BYTES, ["'M' is a unit of counts", "this limit is in bytes"]),
    ("lots", COUNT, ["'lots' is not a quantity"]),
    ("", COUNT, ["is not a quantity"]),
    (True, COUNT, ["True is not a quantity"]),
    (None, BYTES, ["None is not a quantity"]),
    ([1], COUNT, ["is not a quantity"]),
    (math.inf, COUNT, ["inf is not a quantity"]),
    ("1e99999", COUNT, ["exponent is out of range"]),
])
def test_parse_quantity_rejects(value, kind, words):
    with pytest.raises(QuantityError) as caught:
        parse_quantity(value, kind)
    for word in words:
        assert word in str(caught.value)
    assert caught.value.fix


@pytest.mark.parametrize(("value", "kind", "expected"), [
    (30_000_000, COUNT, "30M"),
    (2_500_000, COUNT, "2.5M"),
    (2_359_296, COUNT, "2359296"),     # shortest exact spelling: "2.359296M" is longer
    (10**12, COUNT, "1T"),
    (0, COUNT, "0"),
    (200 * 2**20, BYTES, "200MiB"),
    (120 * 2**20, BYTES, "120MiB"),
    (3 * 2**29, BYTES, "1.5GiB"),
    (200 * 10**6, BYTES, "200MB"),
    (1_024, BYTES, "1KiB"),
    (1_000, BYTES, "1KB"),
    (7, BYTES, "7B"),
])
def test_format_quantity(value, kind, expected):
    assert format_quantity(value, kind) == expected


ALL_SCALES = sorted(set(COUNT_UNITS.values()) | set(BYTE_UNITS.values()))
QUANTITIES = st.one_of(
    st.integers(min_value=0, max_value=10**40),
    # round numbers of every unit, where the unit choice matters
    st.builds(lambda n, scale: n * scale, st.integers(min_value=1, max_value=10**6), st.sampled_from(ALL_SCALES)),
)


@given(QUANTITIES)
def test_format_then_parse_is_identity_for_counts(value):
    assert parse_quantity(format_quantity(value, COUNT), COUNT) == value


@given(QUANTITIES)
def test_format_then_parse_is_identity_for_bytes(value):
    assert parse_quantity(format_quantity(value, BYTES), BYTES) == value


# ---------------------------------------------------------------------------------------------
# Every limit kind, in total and per layer


TOTALS = {
    "params": 61_706,
    "trainable_params": 61_706,
    "macs": 416_520,
    "flops": 852_370,
    "activation_memory": 60_008,
    "peak_activation_memory": 41_728,
    "weight_memory": 246_824,
    "layers": 12,
    # Adam, fp32, batch 1: weights, gradients and two optimizer states of 61,706 params
    # (4 * 4 * 61,706 = 987,296 bytes) plus the activations PyTorch saves for backward
    # (196,160 bytes measured at batch 4, tests/fixtures/training_reference.json: 49,040).
    "training_memory": 4 * 4 * 61_706 + 196_160 // 4,
    # forward 416,520 + backward: conv1 dL/dW only (117,600), every other MAC op both
    # gradients: 2 * (240,000 + 48,000 + 10,080 + 840).
    "training_macs": 416_520 + 117_600 + 2 * (240_000 + 48_000 + 10_080 + 840),
}


def test_every_metric_has_a_total_case():
    # `latency` needs the budget's device: tests/compare/test_budget_latency.py; kv_cache a decoder:
    # tests/engine/test_kv.py
    assert set(TOTALS) | {"kv_cache"} == {name for name, metric in METRICS.items() if metric.roofline is None}


@pytest.mark.parametrize("metric", sorted(TOTALS))
def test_total_limit_passes_at_and_fails_above(metric):
    actual = TOTALS[metric]
    (at,) = results(f"total:\n  {metric}: {actual}\n")
    assert (at.scope, at.metric, at.actual, at.limit, at.level) == ("total", metric, actual, actual, PASS)
    assert at.headroom_percent == 0
    (over,) = results(f"total:\n  {metric}: {actual - 1}\n")
    assert over.level == FAIL and over.headroom_percent < 0
    assert over.unit == METRICS[metric].unit
    assert over.where == "b.yaml:2" and not over.per_layer


# conv1 of LeNet-5: see the module docstring.
CONV1 = {
    "params": 156,
    "trainable_params": 156,
    "macs": 117_600,
    "flops": 2 * 117_600 + 6 * 28 * 28,  # two per MAC plus one bias add per output element
    "activation_memory": 6 * 28 * 28 * 4,
}


def test_every_per_layer_metric_has_a_case():
    assert set(CONV1) == {name for name, metric in METRICS.items() if metric.layer is not None}


@pytest.mark.parametrize("metric", sorted(CONV1))
def test_per_layer_limit_kinds(metric):
    value = CONV1[metric]
    (result,) = results(f"layers:\n  - match: conv1\n    {metric}: {value - 1}\n")
    assert (result.scope, result.op, result.actual, result.level) == ("conv1", "Conv", value, FAIL)
    assert result.per_layer and result.layer_source == "specs/lenet5.yaml:5"
    assert result.where == "b.yaml:3" and result.rule == "layers[0] (match 'conv1')"
    (result,) = results(f"layers:\n  - match: conv1\n    {metric}: {value}\n")
    assert result.level == PASS


@pytest.mark.parametrize("metric", ["peak_activation_memory", "weight_memory", "layers"])
def test_whole_model_limits_are_refused_per_layer(metric):
    with pytest.raises(BudgetError) as caught:
        parse_budget(f"layers:\n  - op: Conv\n    {metric}: 1G\n", "b.yaml")
    assert "whole-model limit" in str(caught.value) and "b.yaml:3" in str(caught.value)
    assert "move it under `total`" in str(caught.value)


def test_trainable_params_of_a_frozen_layer():
    spec = ("input: [1, 8, 8]\nlayers:\n  - conv2d: {filters: 2, kernel: 3}\n    name: stem\n    trainable: false\n"
            "  - conv2d: {filters: 2, kernel: 3}\n    name: head\n")
    analysis = analyze(parse_spec(spec, "frozen.yaml"))
    # stem: (9 + 1) * 2 = 20 frozen params; head: (18 + 1) * 2 = 38 trainable
    budget = "total:\n  params: 58\n  trainable_params: 38\nlayers:\n  - match: '*'\n    trainable_params: 38\n"
    params, trainable, per_layer = results(budget, analysis)
    assert (params.actual, trainable.actual, per_layer.actual, per_layer.scope) == (58, 38, 38, "head")
    assert {params.level, trainable.level, per_layer.level} == {PASS}


def test_batch_binds_counting():
    budget = parse_budget("batch: 4\ntotal:\n  macs: 2M\n", "b.yaml")
    assert budget.bindings() == {"batch": 4}
    assert budget.bindings(batch=2) == {"batch": 2}  # --batch overrides the budget
    (result,) = evaluate(lenet(4), budget)
    assert result.actual == 4 * TOTALS["macs"]


def test_dims_bind_and_command_line_overrides():
    budget = parse_budget("dims: {seq: 128}\ntotal:\n  params: 1M\n", "b.yaml")
    assert budget.bindings() == {"seq": 128}
    assert budget.bindings(dims={"seq": 64}, batch=3) == {"seq": 64, "batch": 3}


# ---------------------------------------------------------------------------------------------
# Selecting layers


def scopes(text: str) -> list[tuple[str, str]]:
    return [(r.scope, r.level) for r in results(text)]


def test_glob_lists_every_layer_over_the_limit():
    # fc1 48,120 and fc2 (120 + 1) * 84 = 10,164 params are over 1,000; fc3 (84 + 1) * 10 = 850 is not
    assert scopes("layers:\n  - match: 'fc*'\n    params: 1K\n") == [("fc1", FAIL), ("fc2", FAIL)]


def test_when_all_pass_the_closest_layer_is_shown():
    (result,) = results("layers:\n  - match: 'fc*'\n    params: 50K\n")
    assert (result.scope, result.actual, result.level, result.matched) == ("fc1", 48_120, PASS, 3)
    assert result.headroom_percent == pytest.approx((50_000 - 48_120) * 100 / 50_000)


def test_op_selects_every_layer_of_that_op():
    (conv2,) = results("layers:\n  - op: Conv\n    params: 1M\n")
    assert (conv2.scope, conv2.matched) == ("conv2", 2)  # (5*5*6 + 1) * 16 = 2,416 > conv1's 156
    assert scopes("layers:\n  - op: Gemm\n    macs: 10K\n") == [("fc1", FAIL), ("fc2", FAIL)]


def test_match_and_op_together_and_lists():
    assert scopes("layers:\n  - {match: 'fc*', op: Relu, flops: 1}\n") == []  # relu layers are not named fc*
    assert scopes("layers:\n  - {match: [conv1, fc3], params: 200}\n") == [("fc3", FAIL)]
    assert scopes("layers:\n  - {op: [Conv, Gemm], params: 2K}\n") == [("conv2", FAIL), ("fc1", FAIL),
                                                                      ("fc2", FAIL)]


def test_glob_is_case_sensitive_and_no_match_is_noted():
    budget = parse_budget("layers:\n  - match: 'FC*'\n    params: 1\n", "b.yaml")
    check = check_model(lenet(), budget)
    assert check.results == () and check.level == PASS
    assert check.notes == ("layers[0] (match 'FC*') at b.yaml:3 matches no layer of this model, so it checks nothing",)


# ---------------------------------------------------------------------------------------------
# Levels and headroom


def test_warn_level():
    text = "total:\n  params: 100K\nwarn:\n  total:\n    params: 50K\n  layers:\n    - op: Conv\n      params: 1K\n"
    fail_limit, warn_total, warn_layer = results(text)
    assert (fail_limit.level, fail_limit.severity, fail_limit.entry) == (PASS, FAIL, "total")
    assert (warn_total.level, warn_total.severity, warn_total.entry) == (WARN, WARN, "warn.total")
    assert (warn_layer.level, warn_layer.scope, warn_layer.entry) == (WARN, "conv2", "warn.layers[0]")
    check = check_model(lenet(), parse_budget(text, "b.yaml"))
    assert check.level == WARN and check.count(WARN) == 2
    assert check.summary == "WARN, 0 failed, 2 warnings, 1 passed (3 limits)"


def test_fail_outranks_warn():
    check = check_model(lenet(), parse_budget("total:\n  layers: 5\nwarn:\n  total:\n    layers: 5\n", "b.yaml"))
    assert [r.level for r in check.results] == [FAIL, WARN] and check.level == FAIL


@pytest.mark.parametrize(("limit", "headroom"), [
    ("61706", 0.0),
    ("123412", 50.0),          # twice the params: half of the limit is left
    ("617060", 90.0),
    ("30853", -100.0),         # half the params: over by the whole limit
])
def test_headroom(limit, headroom):
    (result,) = results(f"total:\n  params: {limit}\n")
    assert result.headroom_percent == pytest.approx(headroom)


# ---------------------------------------------------------------------------------------------
# Partial analyses: counts are lower bounds


def test_partial_analysis_marks_lower_bounds():
    full = lenet()
    unknown = dataclasses.replace(full.layer("fc2"), op="FancyDense", modelled=False, params=0, trainable_params=0,
                                  macs=0, flops=0)
    layers = tuple(unknown if layer.name == "fc2" else layer for layer in full.layers)
    partial = dataclasses.replace(full, layers=layers, totals=dataclasses.replace(full.totals, partial=True))
    budget = parse_budget("total:\n  macs: 1G\n  layers: 100\nlayers:\n  - match: 'fc*'\n    macs: 1G\n", "b.yaml")
    macs, count, per_layer = evaluate(partial, budget)
    assert macs.lower_bound and not count.lower_bound  # the layer count is exact
    assert per_layer.scope == "fc1" and not per_layer.lower_bound
    check = check_model(partial, budget)
    assert check.partial and check.unmodelled == ("fc2 (FancyDense)",)
    assert "partial analysis" in check.notes[0] and "lower bound" in check.notes[0]
    assert "layers[0] (match 'fc*') matches 1 layer that is not modelled (fc2 (FancyDense))" in check.notes[1]
    (fc2,) = evaluate(partial, parse_budget("layers:\n  - match: fc2\n    macs: 1\n", "b.yaml"))
    assert fc2.lower_bound


# ---------------------------------------------------------------------------------------------
# Bad budgets: exit 2, one message naming the file and line, and a fix


BAD = {
    "unknown-top-key": ("batch: 1\ntotals:\n  params: 30M\n", ["unknown key 'totals'", "did you mean 'total'", ":2"]),
    "unknown-metric": ("total:\n  params: 30M\n  parms: 3M\n",
                       ["unknown limit 'parms'", "did you mean 'params'", ":3"]),
    "unknown-layer-metric": ("layers:\n  - op: Conv\n    mac: 3M\n", ["unknown limit 'mac'", "did you mean 'macs'",
                                                                     ":3"]),
    "bad-unit": ("total:\n  params: 30Q\n", ["limit `params`", "unknown unit 'Q'", ":2", "K, M, G, T"]),
    "bytes-for-count": ("total:\n  macs: 5GiB\n", ["'GiB' is a unit of bytes", ":2"]),
    "count-for-bytes": ("total:\n  activation_memory: 200M\n", ["'M' is a unit of counts", ":2", "200MiB"]),
    "not-a-number": ("total:\n  params: lots\n", ["'lots' is not a quantity", ":2"]),
    "negative": ("total:\n  params: -30M\n", ["is '-30M', negative", ":2", "positive"]),
    "zero": ("batch: 1\ntotal:\n  macs: 0\n", ["is 0, zero: no model can meet it", ":3"]),
    "zero-with-unit": ("total:\n  macs: 0G\n", ["is '0G', zero", ":2"]),
    "below-one": ("total:\n  layers: 0.5\n", ["is 0.5, less than one", ":2"]),
    "layer-without-selector": ("layers:\n  - params: 3M\n", ["neither `match` nor `op`", ":2", "whole-model limits"]),
    "layer-without-limits": ("layers:\n  - match: 'x*'\n", ["`layers[0]` sets no limits", ":2"]),
    "layers-not-a-list": ("layers:\n  match: 'x*'\n  params: 3M\n", ["must be a list", ":1"]),
    "layer-not-a-mapping": ("layers:\n  - conv1\n", ["`layers[0]` must be a mapping", ":2"]),
    "match-not-a-string": ("layers:\n  - match: 3\n    params: 3M\n", ["`match` must be a name or glob", ":2"]),
    "whole-model-limit-per-layer": ("layers:\n  - op: Conv\n    weight_memory: 1MiB\n",
                                    ["whole-model limit", ":3"]),
    "top-not-a-mapping": ("- params: 30M\n", ["a budget must be a mapping", ":1"]),
    "total-not-a-mapping": ("total: 30M\n", ["`total` must be a mapping", ":1"]),
    "empty": ("", ["the budget file is empty", ":1"]),
    "no-limits": ("batch: 1\n", ["sets no limits", ":1"]),
    "bad-batch": ("batch: 0\ntotal:\n  params: 1M\n", ["`batch` is 0", "positive integer", ":1"]),
    "string-batch": ("batch: big\ntotal:\n  params: 1M\n", ["`batch` is 'big'", ":1"]),
    "bad-dim": ("dims: {seq: -1}\ntotal:\n  params: 1M\n", ["dim 'seq' is -1", ":1"]),
    "warn-unknown-key": ("warn:\n  batch: 2\n", ["unknown key 'batch' in `warn`", ":2"]),
    "warn-bad-unit": ("total:\n  params: 30M\nwarn:\n  total:\n    params: 25X\n", ["unknown unit 'X'", ":5"]),
    "warn-not-a-mapping": ("warn: 3\n", ["`warn` must be a mapping", ":1"]),
    "invalid-yaml": ("total:\n  params: [30M\n", ["not valid YAML", ":3"]),
    "duplicate-key": ("total:\n  params: 30M\n  params: 20M\n", ["key 'params' appears twice", ":3"]),
    "training-not-a-mapping": ("training: adam\ntotal:\n  training_memory: 1GiB\n",
                               ["`training` must be a mapping", ":1", "optimizer: adam"]),
    "training-unknown-key": ("training:\n  optimiser: sgd\ntotal:\n  training_memory: 1GiB\n",
                             ["unknown key 'optimiser' in `training`", ":2", "did you mean 'optimizer'"]),
    "training-bad-optimizer": ("total:\n  training_memory: 1GiB\ntraining:\n  optimizer: adamm\n",
                               ["`training.optimizer` is 'adamm', not one of sgd, momentum, adam, adamw", ":4",
                                "did you mean 'adam'"]),
    "training-bad-precision": ("training:\n  precision: 16\ntotal:\n  params: 1M\n",
                               ["`training.precision` is 16, not one of fp32, fp16, bf16, mixed", ":2"]),
    "training-empty-precision": ("training:\n  precision:\ntotal:\n  params: 1M\n",
                                 ["`training.precision` is empty", ":2"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_budget_exits_2_with_file_and_line(tmp_path, case):
    text, words = BAD[case]
    path = tmp_path / "budget.yaml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["check", LENET, "--budget", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    message = result.stderr
    assert message.startswith("error: ") and "Traceback" not in message
    assert str(path) in message
    assert "\n  fix: " in message
    for word in words:
        word = f"{path}{word}" if word.startswith(":") else word
        assert word in message, message


@pytest.mark.parametrize(("make", "words"), [
    (lambda tmp: str(tmp / "missing.yaml"), ["does not exist", "--budget"]),
    (lambda tmp: str(tmp), ["is a directory"]),
])
def test_unreadable_budget_exits_2(tmp_path, make, words):
    result = CliRunner().invoke(cli, ["check", LENET, "--budget", make(tmp_path)])
    assert result.exit_code == 2
    for word in words:
        assert word in result.stderr


# ---------------------------------------------------------------------------------------------
# The training step a budget's training limits are counted for


def test_training_setup_from_the_budget_then_the_command_line():
    pinned = parse_budget("training:\n  optimizer: sgd\n  precision: mixed\ntotal:\n  training_memory: 1GiB\n",
                          "b.yaml")
    assert (pinned.optimizer, pinned.precision) == ("sgd", "mixed")
    assert pinned.training_setup() == ("sgd", "mixed")
    assert pinned.training_setup(optimizer="adamw") == ("adamw", "mixed")  # the command line wins
    assert pinned.training_setup(precision="bf16") == ("sgd", "bf16")
    half = parse_budget("training: {precision: fp16}\ntotal:\n  params: 1M\n", "b.yaml")
    assert half.training_setup() == ("adam", "fp16")  # an unpinned optimizer: adam, as analyze
    assert parse_budget("total:\n  params: 1M\n", "b.yaml").training_setup() == ("adam", "fp32")


def test_training_section_alone_sets_no_limits():
    with pytest.raises(BudgetError, match="sets no limits"):
        parse_budget("training:\n  optimizer: sgd\n", "b.yaml")


def test_a_budget_batch_on_a_fixed_batch_model_is_noted():
    """LeNet-5 fed at a fixed [1, 1, 32, 32] has no batch for the budget's `batch: 8` to bind."""
    fixed = analyze(load_model("specs/lenet5.yaml", {"input": (1, 1, 32, 32)}), {"batch": 8})
    budget = parse_budget("batch: 8\ntotal:\n  params: 100K\n", "b.yaml")
    assert check_model(fixed, budget).notes == (
        "the budget's `batch: 8` binds nothing: the model has no symbolic batch dim (its batch is fixed), "
        "so it is checked at its own batch",)
    assert check_model(lenet(), budget).notes == ()  # a symbolic batch: bound, nothing to say
