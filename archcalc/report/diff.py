"""A :class:`~archcalc.compare.diff.ModelDiff` as text: a terminal table, or Markdown for a
pull-request comment. The numbers are the diff's; this module only words them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from archcalc.compare.diff import STATUSES, Delta, LayerDiff, ModelDiff
from archcalc.core.units import human_bytes, human_count
from archcalc.report.layout import Column, grid

if TYPE_CHECKING:
    from rich.console import Console

STATUS_STYLES = {"added": "green", "removed": "red", "renamed": "cyan", "changed": None, "unchanged": "dim"}


# --- text shared by the renderers --------------------------------------------------------------

# The totals rows, in order. They add up as printed: params = trainable + frozen; buffers (not
# learned) are outside params. non_trainable_params (Keras' frozen + buffers) is in the JSON only.
TOTAL_LABELS = {
    "params": "Params", "trainable_params": "Trainable params", "frozen_params": "Frozen params",
    "buffers": "Buffers (not in params)", "macs": "MACs", "flops": "FLOPs", "weight_bytes": "Weight memory",
    "activation_bytes": "Activation memory (all outputs)", "peak_activation_bytes": "Peak activation memory",
}
# The headline: what a reviewer wants first.
SUMMARY_METRICS = (("params", "params"), ("macs", "MACs"), ("flops", "FLOPs"),
                   ("weight_bytes", "weight memory"), ("activation_bytes", "activation memory"))
BYTE_METRICS = {"weight_bytes", "activation_bytes", "peak_activation_bytes"}
LAYER_HEADERS = ("Layer", "Change", "Op", "Output shape", "Params", "Δ params", "MACs", "Δ MACs",
                 "Δ activations")


def signed_count(value: int, exact: bool = True) -> str:
    """10108160 -> '+10,108,160' (or '+10.11 M' in units); 0 -> '0'."""
    if not value:
        return "0"
    return f"{value:+,}" if exact else ("+" if value > 0 else "") + human_count(value)


def signed_bytes(value: int) -> str:
    """Byte change in powers of 1024: '+38.56 MiB', '-784.00 KiB', '0 B'."""
    return ("+" if value > 0 else "") + human_bytes(value)


def percent_text(delta: Delta) -> str:
    """'+86.5%'; 'new' when the old value was 0; very small changes keep two significant digits,
    written out ('+0.000061%', never '+6.1e-05%')."""
    percent = delta.percent
    if percent is None:
        return "new"
    if percent == 0 or abs(percent) >= 0.1:
        return f"{percent:+.1f}%" if percent else "0.0%"
    decimals = 1 - math.floor(math.log10(abs(percent)))
    return f"{percent:+.{decimals}f}%"


def value_text(metric: str, value: int, exact: bool = True) -> str:
    if metric in BYTE_METRICS:
        return human_bytes(value)
    return f"{value:,}" if exact else human_count(value)


def change_text(metric: str, delta: Delta, exact: bool = True) -> str:
    return signed_bytes(delta.change) if metric in BYTE_METRICS else signed_count(delta.change, exact)


def summary_line(diff: ModelDiff, exact: bool = True) -> str:
    """'params +10,108,160 (+86.5%), MACs +1,849,688,064 (+102.0%), ...'."""
    parts = []
    for metric, label in SUMMARY_METRICS:
        delta = diff.totals[metric]
        if delta.change:
            parts.append(f"{label} {change_text(metric, delta, exact)} ({percent_text(delta)})")
        else:
            parts.append(f"{label} unchanged")
    return ", ".join(parts)


def partial_note(diff: ModelDiff) -> str | None:
    sides = [label for label, info in zip(diff.labels(), (diff.old, diff.new)) if info.partial]
    if not sides:
        return None
    return f"MACs and FLOPs of {' and '.join(sides)} are partial: some ops have no rule and are not counted"


def counts_line(diff: ModelDiff, include_unchanged: bool) -> str:
    counts = diff.counts()
    level = f"Rows at depth {diff.depth}" if diff.depth else "Layers"
    if counts["unchanged"] == len(diff.layers):
        return f"{level}: no differences, {counts['unchanged']} unchanged"
    text = f"{level}: " + ", ".join(f"{counts[s]} {s}" for s in STATUSES if s != "unchanged")
    if include_unchanged or not counts["unchanged"]:
        return text + f", {counts['unchanged']} unchanged"
    return text + f"; {counts['unchanged']} unchanged not shown (--all lists them)"


def layer_cells(layer: LayerDiff, arrow: str = " → ", gap: str = " ", exact: bool = True) -> list[str]:
    """The cells of one per-layer row. Markdown keeps each cell on one line; the terminal
    table passes a newline in `arrow` and `gap` to stack old over new and a change over its %."""
    old, new = layer.old, layer.new

    def count(value: int) -> str:
        return f"{value:,}" if exact else human_count(value)

    def signed(value: int) -> str:
        return signed_count(value, exact)

    def pair(before: str, after: str) -> str:
        return before if before == after else f"{before}{arrow}{after}"

    if old is not None and new is not None:
        name, op, shape = pair(old.name, new.name), pair(old.op, new.op), pair(old.output_shape, new.output_shape)
        params, macs = pair(count(old.params), count(new.params)), pair(count(old.macs), count(new.macs))
    else:
        row = new if new is not None else old
        assert row is not None
        name, op, shape, params, macs = row.name, row.op, row.output_shape, count(row.params), count(row.macs)
    if not layer.macs_known:
        macs, macs_change = "?", "?"
    else:
        macs_change = _with_percent(layer.macs, signed, gap)
    return [name, layer.status, op, shape, params, _with_percent(layer.params, signed, gap), macs,
            macs_change, _with_percent(layer.activation_bytes, signed_bytes, gap)]


def _with_percent(delta: Delta, signed: Callable[[int], str], gap: str) -> str:
    if not delta.change:
        return "0"
    if delta.old == 0 or delta.new == 0:  # an added or removed row: the percentage says nothing
        return signed(delta.change)
    return f"{signed(delta.change)}{gap}({percent_text(delta)})"


# --- Markdown, for a pull-request comment --------------------------------------------------------

# A per-layer table longer than this folds into <details> so the comment stays short.
COLLAPSE_ROWS = 15


def render_markdown(diff: ModelDiff, include_unchanged: bool = False) -> str:
    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    old_label, new_label = diff.labels()
    depth = f" (depth {diff.depth})" if diff.depth else ""
    out = [f"### archcalc diff: `{old_label}` → `{new_label}`{depth}", ""]
    out += [f"**{summary_line(diff)}**", ""]
    note = partial_note(diff)
    if note:
        out += [f"> {note}", ""]
    out += [line(("Total", old_label, new_label, "Δ", "Δ %")), "|---|---:|---:|---:|---:|"]
    for metric, label in TOTAL_LABELS.items():
        delta = diff.totals[metric]
        out.append(line((label, value_text(metric, delta.old), value_text(metric, delta.new),
                         change_text(metric, delta), percent_text(delta))))
    out += ["", counts_line(diff, include_unchanged).replace("--all", "`--all`")]
    listed = diff.listed(include_unchanged)
    if listed:
        table = [line(LAYER_HEADERS), "|---|---|---|---|---:|---:|---:|---:|---:|"]
        table += [line(layer_cells(layer)) for layer in listed]
        if len(listed) > COLLAPSE_ROWS:
            counts = diff.counts()
            what = ", ".join(f"{counts[s]} {s}" for s in STATUSES
                             if counts[s] and (s != "unchanged" or include_unchanged))
            out += ["", f"<details><summary>{len(listed)} rows: {what}</summary>", "", *table, "", "</details>"]
        else:
            out += ["", *table]
    return "\n".join(out) + "\n"


TOTAL_COLUMNS_HEADER = "Total"
# The per-layer table's columns (report/layout.py): the name, what changed and by how much are
# kept longest; absolute MACs go first, then the op.
LAYER_COLUMNS = (Column("Layer", min_width=12), Column("Change", priority=90, min_width=7),
                 Column("Op", priority=35, min_width=7), Column("Output shape", priority=60, min_width=10,
                                                                 squeeze=lambda shape: shape.replace(", ", ",")),
                 Column("Params", numeric=True, priority=80), Column("Δ params", numeric=True),
                 Column("MACs", numeric=True, priority=30), Column("Δ MACs", numeric=True),
                 Column("Δ activations", numeric=True, priority=55))


def render_table(result: ModelDiff, show_all: bool, console: Console, exact: bool = False) -> None:
    """Totals, then the listed layers, laid out to the console's width (report/layout.py).
    Counts in units unless `exact`; the Markdown and JSON outputs have every digit."""
    old_label, new_label = result.labels()
    depth = f" (depth {result.depth})" if result.depth else ""
    console.print(f"diff: {old_label} → {new_label}{depth}", style="bold")
    console.print(summary_line(result, exact))
    note = partial_note(result)
    if note:
        console.print(f"warning: {note}", style="yellow")
    columns = (Column(TOTAL_COLUMNS_HEADER, min_width=10), Column(old_label, numeric=True),
               Column(new_label, numeric=True), Column("Δ", numeric=True), Column("Δ %", numeric=True, priority=90))
    cells = [(label, value_text(metric, result.totals[metric].old, exact),
              value_text(metric, result.totals[metric].new, exact), change_text(metric, result.totals[metric], exact),
              percent_text(result.totals[metric])) for metric, label in TOTAL_LABELS.items()]
    _print_grid(columns, cells, console)
    listed = result.listed(show_all)
    if listed:
        # Old over new and a change over its %.
        rows = [layer_cells(layer, arrow="\n→ ", gap="\n", exact=exact) for layer in listed]
        stacked = any("\n" in cell for row in rows for cell in row)
        _print_grid(LAYER_COLUMNS, rows, console, [STATUS_STYLES[layer.status] for layer in listed], stacked)
    console.print(counts_line(result, show_all))


def _print_grid(columns, cells, console: Console, styles=(), show_lines: bool = False) -> None:
    table, dropped = grid(columns, cells, console.width, styles, show_lines)
    console.print(table)
    if dropped:
        console.print(dropped, style="dim")
