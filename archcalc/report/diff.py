"""A :class:`~archcalc.compare.diff.ModelDiff` as text: a terminal table, or Markdown for a
pull-request comment. The numbers are the diff's; this module only words them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from archcalc.compare.diff import STATUSES, Delta, LayerDiff, ModelDiff
from archcalc.core.units import human_bytes

if TYPE_CHECKING:
    from rich.console import Console

STATUS_STYLES = {"added": "green", "removed": "red", "renamed": "cyan", "changed": None, "unchanged": "dim"}


# --- text shared by the renderers --------------------------------------------------------------

TOTAL_LABELS = {
    "params": "Params", "trainable_params": "Trainable params", "non_trainable_params": "Non-trainable params",
    "buffers": "Buffers", "macs": "MACs", "flops": "FLOPs", "weight_bytes": "Weight memory",
    "activation_bytes": "Activation memory (all outputs)", "peak_activation_bytes": "Peak activation memory",
}
# The headline: what a reviewer wants first.
SUMMARY_METRICS = (("params", "params"), ("macs", "MACs"), ("flops", "FLOPs"),
                   ("weight_bytes", "weight memory"), ("activation_bytes", "activation memory"))
BYTE_METRICS = {"weight_bytes", "activation_bytes", "peak_activation_bytes"}
LAYER_HEADERS = ("Layer", "Change", "Op", "Output shape", "Params", "Δ params", "MACs", "Δ MACs",
                 "Δ activations")


def signed_count(value: int) -> str:
    """10108160 -> '+10,108,160'; 0 -> '0'."""
    return f"{value:+,}" if value else "0"


def signed_bytes(value: int) -> str:
    """Byte change in powers of 1024: '+38.56 MiB', '-784.00 KiB', '0 B'."""
    return ("+" if value > 0 else "") + human_bytes(value)


def percent_text(delta: Delta) -> str:
    """'+86.5%'; 'new' when the old value was 0; very small changes keep two significant digits."""
    percent = delta.percent
    if percent is None:
        return "new"
    if percent == 0 or abs(percent) >= 0.1:
        return f"{percent:+.1f}%" if percent else "0.0%"
    return f"{percent:+.2g}%"


def value_text(metric: str, value: int) -> str:
    return human_bytes(value) if metric in BYTE_METRICS else f"{value:,}"


def change_text(metric: str, delta: Delta) -> str:
    return signed_bytes(delta.change) if metric in BYTE_METRICS else signed_count(delta.change)


def summary_line(diff: ModelDiff) -> str:
    """'params +10,108,160 (+86.5%), MACs +1,849,688,064 (+102.0%), ...'."""
    parts = []
    for metric, label in SUMMARY_METRICS:
        delta = diff.totals[metric]
        if delta.change:
            parts.append(f"{label} {change_text(metric, delta)} ({percent_text(delta)})")
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


def layer_cells(layer: LayerDiff, arrow: str = " → ", gap: str = " ") -> list[str]:
    """The cells of one per-layer row. Markdown keeps each cell on one line; the terminal
    table passes a newline in `arrow` and `gap` to stack old over new and a change over its %."""
    old, new = layer.old, layer.new

    def pair(before: str, after: str) -> str:
        return before if before == after else f"{before}{arrow}{after}"

    if old is not None and new is not None:
        name, op, shape = pair(old.name, new.name), pair(old.op, new.op), pair(old.output_shape, new.output_shape)
        params, macs = pair(f"{old.params:,}", f"{new.params:,}"), pair(f"{old.macs:,}", f"{new.macs:,}")
    else:
        row = new if new is not None else old
        assert row is not None
        name, op, shape, params, macs = row.name, row.op, row.output_shape, f"{row.params:,}", f"{row.macs:,}"
    if not layer.macs_known:
        macs, macs_change = "?", "?"
    else:
        macs_change = _with_percent(layer.macs, signed_count, gap)
    return [name, layer.status, op, shape, params, _with_percent(layer.params, signed_count, gap), macs,
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
    for metric, delta in diff.totals.items():
        out.append(line((TOTAL_LABELS[metric], value_text(metric, delta.old), value_text(metric, delta.new),
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


def render_table(result: ModelDiff, show_all: bool, console: Console) -> None:
    """Totals, then the listed layers, as rich tables."""
    from rich.table import Table

    old_label, new_label = result.labels()
    depth = f" (depth {result.depth})" if result.depth else ""
    console.print(f"diff: {old_label} → {new_label}{depth}", style="bold")
    console.print(summary_line(result))
    note = partial_note(result)
    if note:
        console.print(f"warning: {note}", style="yellow")
    totals = Table(header_style="bold")
    totals.add_column("Total")
    for header in (old_label, new_label, "Δ", "Δ %"):
        totals.add_column(header, justify="right", no_wrap=True)
    for metric, delta in result.totals.items():
        totals.add_row(TOTAL_LABELS[metric], value_text(metric, delta.old), value_text(metric, delta.new),
                       change_text(metric, delta), percent_text(delta))
    console.print(totals)
    listed = result.listed(show_all)
    if listed:
        # Old over new and a change over its %, and no absolute MACs column, so the table fits
        # 140 columns; the Markdown and JSON outputs have every number.
        keep = [i for i, header in enumerate(LAYER_HEADERS) if header != "MACs"]
        cells = [layer_cells(layer, arrow="\n→ ", gap="\n") for layer in listed]
        stacked = any("\n" in cell for row in cells for cell in row)
        layers = Table(header_style="bold", show_lines=stacked)
        for i in keep:
            header = LAYER_HEADERS[i]
            numeric = header.startswith(("Params", "Δ"))
            layers.add_column(header, justify="right" if numeric else "left", no_wrap=not numeric)
        for layer, row in zip(listed, cells):
            layers.add_row(*(row[i] for i in keep), style=STATUS_STYLES[layer.status])
        console.print(layers)
    console.print(counts_line(result, show_all))
