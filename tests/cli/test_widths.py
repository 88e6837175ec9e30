"""Tables at the widths people's terminals have: analyze, check and diff at 60, 80, 100 and 160
columns (COLUMNS, as a pipe or a captured run sees it), each a golden file
(tests/golden/widths/; refresh with ARCHCALC_UPDATE_GOLDEN=1), and each checked for what a
golden cannot promise by itself: no line wider than the terminal, no trailing spaces, no number
cut or folded, every column left out named in a footer.
"""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from goldens import check_golden

from archcalc.cli.main import cli
from archcalc.core.units import human_bytes, human_count
from archcalc.engine.inference import analyze
from archcalc.engine.rows import rows
from archcalc.readers.load import load_model

WIDTHS = (60, 80, 100, 160)
COMMANDS = {
    "analyze": ["analyze", "specs/resnet18.yaml"],
    "check": ["check", "specs/resnet50.yaml", "--budget", "budgets/example.yaml"],
    "diff": ["diff", "specs/resnet18.yaml", "specs/resnet34.yaml", "--depth", "1"],
}


def run(args: list[str], width: int) -> str:
    result = CliRunner().invoke(cli, args, env={"COLUMNS": str(width), "NO_COLOR": None})
    assert result.exit_code == 0, result.output
    return result.stdout


def cells(text: str) -> set[str]:
    """Every cell of every table line: boxed cells sit between │, plain ones two spaces apart."""
    return {cell.strip() for line in text.splitlines() for cell in re.split(r"[│┃]| {2,}", line)}


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_golden_at_width(command, width):
    text = run(COMMANDS[command], width)
    check_golden(f"widths/{command}.{width}.txt", text)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    assert not any(line.endswith(" ") for line in lines)
    assert "…" not in text


@pytest.mark.parametrize("width", WIDTHS)
def test_analyze_shows_every_rows_numbers_whole(width):
    text = run(COMMANDS["analyze"], width)
    found = cells(text)
    for row in rows(analyze(load_model("specs/resnet18.yaml"))):
        assert human_count(row.params) in found and human_count(row.macs) in found, row.name
        if "Activations" not in text.split("not shown at", 1)[-1]:
            assert human_bytes(row.activation_bytes) in found, row.name


def test_analyze_names_the_columns_it_leaves_out():
    narrow, wide = run(COMMANDS["analyze"], 60), run(COMMANDS["analyze"], 160)
    # Most important first; optional columns go before Op, which goes rather than fold the rows.
    assert "not shown at 60 columns: Op, Activations, % MACs, Receptive field, % params" in " ".join(narrow.split())
    assert "not shown" not in wide and "Receptive field" in wide and "% params" in wide


def test_check_keeps_the_verdict_and_numbers_at_60():
    text = run(COMMANDS["check"], 60)
    found = cells(text)
    # resnet50 against budgets/example.yaml: 25,557,032 params of 30M is 14.8% headroom.
    assert {"25.56 M", "30M", "14.8%", "PASS"} <= found
    assert "not shown at 60 columns: Rule" in text


def test_diff_keeps_the_changes_at_60():
    found = cells(run(COMMANDS["diff"], 60))
    # layer4: 8,393,728 -> 13,114,368 params, +4,720,640 (+56.2%).
    assert {"+4.72 M", "(+56.2%)", "8.39 M", "→ 13.11 M"} <= found


def test_exact_prints_every_digit():
    text = run(COMMANDS["analyze"] + ["--exact"], 160)
    assert "11,689,512" in text and "118,013,952" in text  # total params; conv1's 64*3*7*7*112*112 MACs
    assert "118.01 M" not in text.split("Total params")[0]


@pytest.mark.parametrize("variable, value", [("NO_COLOR", "1"), (None, None)])
def test_no_color(variable, value):
    """--no-color and NO_COLOR take the colour out even where the console would colour (forced)."""
    args = ["--no-color"] if variable is None else []
    env = {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "COLUMNS": "100"}
    if variable:
        env[variable] = value
    result = CliRunner().invoke(cli, [*args, "check", "specs/lenet5.yaml", "--budget", "budgets/example.yaml"],
                                env=env)
    assert "\x1b[" not in result.output
    coloured = CliRunner().invoke(cli, ["check", "specs/lenet5.yaml", "--budget", "budgets/example.yaml"],
                                  env={**env, "NO_COLOR": None})
    assert "\x1b[" in coloured.output  # the same run colours without them


def test_check_exact_prints_every_digit():
    found = cells(run(COMMANDS["check"] + ["--exact"], 160))
    # ResNet-50: torchvision's 25,557,032 params, 4,089,184,256 MACs; activations 150,247,328 B.
    assert {"25,557,032", "4,089,184,256", "150,247,328 B"} <= found
