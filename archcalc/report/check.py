"""Render budget checks (:class:`~archcalc.compare.budget.ModelCheck`) as a rich table, GitHub workflow
commands plus a job summary, JUnit XML or JSON.

Renderers only format: every number and level comes from :mod:`archcalc.compare.budget`. rich is
imported only by the table renderer.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from archcalc.compare.budget import FAIL, METRICS, PASS, WARN, LimitResult, ModelCheck
from archcalc.core.units import BYTES, TIME, format_quantity, human
from archcalc.report.analysis import dumps_json, training_lines
from archcalc.report.layout import Column, grid

JSON_SCHEMA_VERSION = 1
LOWER_BOUND_NOTE = "≥ marks a lower bound: ops without a rule are not counted"


# ---------------------------------------------------------------------------------------------
# Shared wording


def exact(value: int, unit: str) -> str:
    """'2,359,296 (2.36 M)', '150,247,328 B (143.29 MiB)'."""
    rounded = human(value, unit)
    plain = f"{value:,} B" if unit == BYTES else f"{value:,} ns" if unit == TIME else f"{value:,}"
    return plain if rounded in (str(value), f"{value} B", f"{value} ns") else f"{plain} ({rounded})"


def actual_text(result: LimitResult, exact: bool = False) -> str:
    """'25.56 M', or every digit with `exact` ('25,557,032', '150,247,328 B')."""
    if exact:
        amount = f"{result.actual:,} B" if result.unit == BYTES else f"{result.actual:,}"
    else:
        amount = human(result.actual, result.unit)
    return ("≥ " if result.lower_bound else "") + amount


def limit_text(result: LimitResult) -> str:
    return format_quantity(result.limit, result.unit)


def headroom_text(result: LimitResult) -> str:
    return f"{result.headroom_percent:.1f}%"


def bindings_text(check: ModelCheck) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(check.bindings.items())) or "no symbolic dims"


def setup_text(check: ModelCheck) -> str:
    """'batch=1' or, when a training step was counted, 'batch=32; training: adam, fp32'."""
    if check.training is None:
        return bindings_text(check)
    totals = check.training.totals
    return f"{bindings_text(check)}; training: {totals.optimizer}, {totals.precision}"


def scope_text(result: LimitResult) -> str:
    return f"{result.scope} ({result.op})" if result.per_layer else result.scope


def message(check: ModelCheck, result: LimitResult) -> str:
    """One sentence naming the model, the layer, the limit and where the budget sets it:
    "resnet18: layer 'layer4.0.conv2' (Conv) has 2,359,296 (2.36 M) params, over the per-layer
    limit 2M of layers[0] (match 'layer4.*') at budgets/b.yaml:13 by 18.0%"."""
    label = METRICS[result.metric].label
    if METRICS[result.metric].training is not None and check.training is not None:
        totals = check.training.totals
        label += f" ({totals.optimizer}, {totals.precision})"
    subject = f"layer '{result.scope}' ({result.op})" if result.per_layer else "the model"
    amount = ("at least " if result.lower_bound else "") + exact(result.actual, result.unit)
    kind = "per-layer" if result.per_layer else "whole-model"
    warning = " warning" if result.severity == WARN else ""
    limit = f"{kind}{warning} limit {limit_text(result)} of {result.rule} at {result.where}"
    if result.level == PASS:
        return (f"{check.title}: {subject} has {amount} {label}, within the {limit} "
                f"({headroom_text(result)} headroom)")
    return f"{check.title}: {subject} has {amount} {label}, over the {limit} by {-result.headroom_percent:.1f}%"


def models_summary(checks: Sequence[ModelCheck]) -> str:
    """'3 models: FAIL, 1 over budget, 1 within budget with warnings, 1 within budget'."""
    failed, warned, passed = (sum(check.level == level for check in checks) for level in (FAIL, WARN, PASS))
    return (f"{len(checks)} models: {overall(checks).upper()}, {failed} over budget, "
            f"{warned} within budget with warnings, {passed} within budget")


def overall(checks: Sequence[ModelCheck]) -> str:
    levels = {check.level for check in checks}
    return FAIL if FAIL in levels else WARN if WARN in levels else PASS


# ---------------------------------------------------------------------------------------------
# Table (rich)

TABLE_HEADERS = ("Limit", "Rule", "Scope", "Actual", "Budget", "Headroom", "Result")
# Kept longest first when the terminal is narrow (report/layout.py): the verdict and the numbers
# behind it, then what and where; the budget entry (Rule) is the first to go.
TABLE_COLUMNS = (Column("Limit", priority=90, min_width=10), Column("Rule", priority=40, min_width=10),
                 Column("Scope", priority=85, min_width=10), Column("Actual", numeric=True),
                 Column("Budget", numeric=True), Column("Headroom", numeric=True, priority=95, short="Room"),
                 Column("Result", min_width=6))
LEVEL_STYLE = {FAIL: "bold red", WARN: "yellow", PASS: "green"}


def render_table(checks: Sequence[ModelCheck], console, show_training: bool = False, exact: bool = False) -> None:
    """One table per model; with `show_training` (check --training), the training step's totals
    under it, as `analyze --training` prints them; `exact`, every digit of the actual values."""
    from rich.table import Table

    for index, check in enumerate(checks):
        if index:
            console.print()
        title = f"{check.title} ({check.path}) against {check.budget}, {setup_text(check)}"
        if check.partial:
            title += " [partial: lower bounds]"
        console.print(title, style="bold")
        cells = [(METRICS[result.metric].label, result.rule, scope_text(result), actual_text(result, exact),
                  limit_text(result), headroom_text(result), result.level.upper()) for result in check.results]
        styles = [None if result.level == PASS else LEVEL_STYLE[result.level] for result in check.results]
        grid_table, dropped = grid(TABLE_COLUMNS, cells, console.width, styles)
        console.print(grid_table)
        if dropped:
            console.print(dropped, style="dim")
        if show_training and check.training is not None:
            totals = Table(show_header=False, box=None, padding=(0, 2))
            totals.add_column(style="bold")
            totals.add_column()
            for label, value in training_lines(check.training):
                totals.add_row(label, value)
            console.print(totals)
        if any(result.lower_bound for result in check.results):
            console.print(f"note: {LOWER_BOUND_NOTE}", style="yellow")
        for note in check.notes:
            console.print(f"note: {note}", style="yellow")
        console.print(f"{check.title}: {check.summary}", style=LEVEL_STYLE[check.level])
    if len(checks) > 1:
        console.print(models_summary(checks), style=LEVEL_STYLE[overall(checks)])


# ---------------------------------------------------------------------------------------------
# GitHub Actions: workflow commands on stdout, a Markdown job summary in $GITHUB_STEP_SUMMARY


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(command: str, text: str, **properties: str | None) -> str:
    """`::error file=a.yaml,line=3,title=...::text`, escaped as the runner expects."""
    props = ",".join(f"{key}={_escape_property(str(value))}" for key, value in properties.items() if value)
    return f"::{command}{' ' + props if props else ''}::{_escape_data(text)}"


def _annotation_place(check: ModelCheck, result: LimitResult) -> tuple[str, str | None]:
    """Point a per-layer annotation at the layer's spec line; a total at the model file."""
    if result.layer_source:
        file, _, line = result.layer_source.rpartition(":")
        if file and line.isdigit():
            return file, line
    return check.path, None


def error_annotation(error: Exception) -> str:
    """Bad input (an ArchcalcError or a click usage error, exit 2) as an `::error` annotation,
    placed at the file and line an ArchcalcError's `where` names ('specs/x.yaml:7: layer
    ...', 'budget.yaml:4', 'model.onnx')."""
    file = line = None
    where = getattr(error, "where", None)
    if where and not where.startswith("-"):  # '--fit' names an option, not a file
        match = re.match(r"(?P<file>.+?)(?::(?P<line>\d+))?(?=$|: )", where)
        if match:
            file, line = match.group("file"), match.group("line")
    format_message = getattr(error, "format_message", None)  # click's errors: the message without usage
    text = format_message() if format_message else str(error)
    return workflow_command("error", text, file=file, line=line, title="archcalc check: bad input")


def render_github(checks: Sequence[ModelCheck]) -> str:
    lines: list[str] = []
    for check in checks:
        for note in check.notes:
            lines.append(workflow_command("warning", f"{check.title}: {note}", file=check.path,
                                          title=f"archcalc budget: {check.title}"))
        for result in check.results:
            if result.level == PASS:
                continue
            file, line = _annotation_place(check, result)
            verb = "over budget" if result.level == FAIL else "over warning limit"
            title = f"archcalc budget: {METRICS[result.metric].label} {verb}: {result.scope}"
            command = "error" if result.level == FAIL else "warning"
            lines.append(workflow_command(command, message(check, result), file=file, line=line, title=title))
        lines.append(f"::group::archcalc check {check.title} ({check.path}): {check.summary}")
        for result in check.results:
            lines.append(f"{result.level.upper()}  {message(check, result)}")
        lines.append("::endgroup::")
        lines.append(f"archcalc check {check.title} ({check.path}) against {check.budget}: {check.summary}")
    return "\n".join(lines) + "\n"


_MARK = {FAIL: ":x: fail", WARN: ":warning: warn", PASS: ":white_check_mark: pass"}


def _cell(text: str) -> str:
    """Escape what Markdown would read as table syntax or emphasis (globs, layer names)."""
    for special in ("\\", "|", "*", "_", "<"):
        text = text.replace(special, "\\" + special)
    return text


def render_markdown(checks: Sequence[ModelCheck]) -> str:
    """The job summary: one section and table per model."""
    out: list[str] = []
    for check in checks:
        out += [f"### archcalc budget: {_cell(check.title)}: {check.level.upper()}", "",
                f"`{check.path}` against `{check.budget}` ({setup_text(check)}): {check.summary}",
                ""]
        if check.partial:
            out += ["> [!WARNING]", "> Partial analysis: actual values are lower bounds (≥).", ""]
        out += ["| Result | Limit | Rule | Scope | Actual | Budget | Headroom |",
                "|---|---|---|---|---:|---:|---:|"]
        for result in check.results:
            cells = (METRICS[result.metric].label, result.rule, scope_text(result), actual_text(result),
                     limit_text(result), headroom_text(result))
            out.append(f"| {_MARK[result.level]} | " + " | ".join(_cell(c) for c in cells) + " |")
        if check.notes:
            out += [""] + [f"- note: {_cell(note)}" for note in check.notes]
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# JUnit XML: one testsuite per model, one testcase per limit result


def render_junit(checks: Sequence[ModelCheck]) -> str:
    root = ET.Element("testsuites", name="archcalc check", tests=str(sum(len(c.results) for c in checks)),
                      failures=str(sum(c.count(FAIL) for c in checks)), errors="0", time="0")
    for check in checks:
        suite = ET.SubElement(root, "testsuite", name=f"{check.title} ({check.path})",
                              tests=str(len(check.results)), failures=str(check.count(FAIL)), errors="0",
                              skipped="0", time="0")
        properties = ET.SubElement(suite, "properties")
        for name, value in (("model", check.path), ("budget", check.budget), ("bindings", bindings_text(check)),
                            ("partial", str(check.partial).lower())):
            ET.SubElement(properties, "property", name=name, value=value)
        if check.training is not None:
            for name in ("optimizer", "precision"):
                ET.SubElement(properties, "property", name=name, value=getattr(check.training.totals, name))
        for result in check.results:
            # The entry keeps names unique: a layer may be checked by several entries.
            name = f"{result.metric} {result.scope}" + ("" if result.entry == "total" else f" ({result.entry})")
            case = ET.SubElement(suite, "testcase", name=name,
                                 classname=f"archcalc.budget.{check.title}", time="0")
            text = message(check, result)
            if result.level == FAIL:
                failure = ET.SubElement(case, "failure", message=text, type="BudgetExceeded")
                failure.text = text
            else:
                ET.SubElement(case, "system-out").text = (f"warning: {text}" if result.level == WARN else text)
        if check.notes:
            ET.SubElement(suite, "system-out").text = "\n".join(f"note: {note}" for note in check.notes)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# ---------------------------------------------------------------------------------------------
# JSON


def render_json(checks: Sequence[ModelCheck]) -> str:
    document = {
        "schema_version": JSON_SCHEMA_VERSION,
        "result": overall(checks),
        "models": [
            {
                "path": check.path,
                "name": check.name,
                "budget": check.budget,
                "bindings": dict(check.bindings),
                "result": check.level,
                "partial": check.partial,
                "unmodelled": list(check.unmodelled),
                "counts": {level: check.count(level) for level in (FAIL, WARN, PASS)},
                "results": [
                    {
                        "metric": r.metric, "scope": r.scope, "per_layer": r.per_layer, "op": r.op or None,
                        "actual": r.actual, "limit": r.limit, "unit": r.unit, "level": r.level,
                        "severity": r.severity, "headroom_percent": round(r.headroom_percent, 2),
                        "lower_bound": r.lower_bound, "entry": r.entry, "rule": r.rule, "where": r.where,
                        "layers_checked": r.matched, "message": message(check, r),
                    }
                    for r in check.results
                ],
                "notes": list(check.notes),
                # The training step, when counted: its totals, as `analyze --training` gives them.
                **({"training": {"totals": check.training.totals.to_json()}} if check.training is not None else {}),
            }
            for check in checks
        ],
    }
    return dumps_json(document)
