"""Budgets limiting the estimated latency on a device (`device: t4`, `latency: 5ms`)."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner

import archcalc
from archcalc.cli.main import cli
from archcalc.compare.budget import BudgetError, check_model, parse_budget
from archcalc.core.units import TIME, QuantityError, format_quantity, parse_quantity
from archcalc.hardware.device import load_device
from archcalc.hardware.roofline import roofline, setup_for


@pytest.mark.parametrize(("text", "ns"), [("5ms", 5_000_000), ("1.5us", 1_500), ("2s", 2 * 10**9), ("100ns", 100),
                                          ("0.5ms", 500_000)])
def test_time_quantities(text, ns):
    assert parse_quantity(text, TIME) == ns
    assert parse_quantity(format_quantity(ns, TIME), TIME) == ns


def test_a_time_needs_its_unit():
    with pytest.raises(QuantityError, match="needs its unit"):
        parse_quantity("5", TIME)


def test_latency_is_the_roofline_latency_in_whole_nanoseconds_rounded_up():
    budget = parse_budget("device: {name: t4, precision: fp16}\ntotal:\n  latency: 1ms\n", "b.yaml")
    analysis = archcalc.analyze("specs/resnet18.yaml")
    t4 = load_device("t4")
    on_t4 = roofline(analysis, t4, setup_for(t4, "fp16"))
    (result,) = check_model(analysis, budget, roofline=on_t4).results
    assert result.actual == math.ceil(on_t4.latency_s * 1e9)
    assert result.level == ("pass" if result.actual <= 1_000_000 else "fail")


def test_latency_limit_passes_at_and_fails_one_nanosecond_below():
    analysis = archcalc.analyze("specs/lenet5.yaml")
    t4 = load_device("t4")
    actual = math.ceil(roofline(analysis, t4, setup_for(t4, "fp32")).latency_s * 1e9)
    for limit, level in ((actual, "pass"), (actual - 1, "fail")):
        budget = parse_budget(f"device: t4\ntotal:\n  latency: {limit}ns\n", "b.yaml")
        (result,) = check_model(analysis, budget, roofline=roofline(analysis, t4, setup_for(t4, "fp32"))).results
        assert (result.actual, result.limit, result.level, result.unit) == (actual, limit, level, TIME)


def test_check_fails_over_the_latency_budget(tmp_path):
    budget = tmp_path / "budget.yaml"
    budget.write_text("device: t4\ntotal:\n  latency: 1us\n")
    result = CliRunner().invoke(cli, ["check", "specs/resnet18.yaml", "--budget", str(budget)])
    assert result.exit_code == 1, result.output
    assert "estimated latency" in result.output and "FAIL" in result.output
    budget.write_text("device: t4\ntotal:\n  latency: 1s\n")
    assert CliRunner().invoke(cli, ["check", "specs/resnet18.yaml", "--budget", str(budget)]).exit_code == 0


@pytest.mark.parametrize(("text", "message"), [
    ("total:\n  latency: 5ms\n", ["b.yaml:2", "limit `latency` is estimated on a device", "add `device: t4`"]),
    ("device: t5\ntotal:\n  latency: 5ms\n", ["b.yaml:1", "unknown device 't5'", "known devices"]),
    ("device: {name: t4, precision: bf16}\ntotal:\n  latency: 5ms\n", ["b.yaml:1", "gives no bf16 peak"]),
    ("device: {name: t4, precison: fp16}\ntotal:\n  latency: 5ms\n", ["unknown key 'precison'", "precision"]),
    ("device: t4\ntotal:\n  latency: 5\n", ["b.yaml:3", "needs its unit"]),
])
def test_bad_device_budgets(text, message):
    with pytest.raises(BudgetError) as error:
        parse_budget(text, "b.yaml")
    for part in message:
        assert part in str(error.value)


def test_a_per_layer_latency_limit_checks_each_layers_estimated_time():
    """ResNet-18 on a T4 at fp32 (8.1 TFLOPS, 320 GB/s, 4 us per op, see t4.yaml): every limit
    is the layer's roofline time in whole nanoseconds, rounded up."""
    analysis = archcalc.analyze("specs/resnet18.yaml")
    t4 = load_device("t4")
    on_t4 = roofline(analysis, t4, setup_for(t4, "fp32"))
    times = {cost.name: math.ceil(cost.time_s * 1e9) for cost in on_t4.layers}
    # conv1: 2 * 118,013,952 FLOPs / 8.1e12 = 29.14 us against (150,528 + 9,408 + 802,816) * 4 bytes /
    # 320e9 = 12.03 us: compute-bound, 29.14 + 4 = 33.14 us.
    assert times["conv1"] == math.ceil((2 * 118_013_952 / 8.1e12 + 4e-6) * 1e9)
    convs = [name for name, layer in ((layer.name, layer) for layer in analysis.layers) if layer.op == "Conv"]
    slowest = max(times[name] for name in convs)
    at_limit = parse_budget(f"device: t4\nlayers:\n  - {{op: Conv, latency: {slowest}ns}}\n", "b.yaml")
    (result,) = check_model(analysis, at_limit, roofline=on_t4).results  # all within: the closest shown
    assert (result.actual, result.level, result.matched) == (slowest, "pass", len(convs))
    below = parse_budget(f"device: t4\nlayers:\n  - {{match: 'conv1', latency: {times['conv1'] - 1}ns}}\n", "b.yaml")
    (result,) = check_model(analysis, below, roofline=on_t4).results
    assert (result.scope, result.actual, result.level) == ("conv1", times["conv1"], "fail")
    # Over a 30 us limit: exactly the layers whose estimate exceeds 30,000 ns, each its own result.
    over = parse_budget("device: t4\nlayers:\n  - {match: '*', latency: 30us}\n", "b.yaml")
    failed = {result.scope for result in check_model(analysis, over, roofline=on_t4).results}
    assert failed == {name for name, ns in times.items() if ns > 30_000} and "conv1" in failed


def test_check_exit_codes_for_a_per_layer_latency(tmp_path):
    budget = tmp_path / "budget.yaml"
    budget.write_text("device: t4\nlayers:\n  - {op: Conv, latency: 1us}\n")
    result = CliRunner().invoke(cli, ["check", "specs/resnet18.yaml", "--budget", str(budget)])
    assert result.exit_code == 1 and "estimated latency" in result.output, result.output
    budget.write_text("device: t4\nwarn:\n  layers:\n    - {op: Conv, latency: 1us}\n")
    result = CliRunner().invoke(cli, ["check", "specs/resnet18.yaml", "--budget", str(budget)])
    assert result.exit_code == 0 and "WARN" in result.output, result.output
    budget.write_text("device: t4\nlayers:\n  - {op: Conv, latency: 1s}\n")
    assert CliRunner().invoke(cli, ["check", "specs/resnet18.yaml", "--budget", str(budget)]).exit_code == 0
    budget.write_text("layers:\n  - {op: Conv, latency: 1ms}\n")  # no device to estimate on
    result = CliRunner().invoke(cli, ["check", "specs/resnet18.yaml", "--budget", str(budget)])
    assert result.exit_code == 2 and "estimated on a device" in result.output and "fix:" in result.output
    budget.write_text("device: t4\nlayers:\n  - {op: Conv, latency: 5}\n")
    result = CliRunner().invoke(cli, ["check", "specs/resnet18.yaml", "--budget", str(budget)])
    assert result.exit_code == 2 and "needs its unit" in result.output and "Traceback" not in result.output
