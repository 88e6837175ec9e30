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
