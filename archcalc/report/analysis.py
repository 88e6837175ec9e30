"""Turn an :class:`~archcalc.core.results.Analysis` into rows, then into table, JSON, CSV or Markdown.

Rows are computed once (folding blocks when asked); renderers only format them, and
do no arithmetic of their own. rich is imported only by the table renderer.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence

from archcalc.core.dims import format_shape
from archcalc.core.results import Analysis, LayerResult
from archcalc.core.units import compact_number, human_bytes, human_count
from archcalc.engine.rows import Row

JSON_SCHEMA_VERSION = 1


def totals_lines(analysis: Analysis) -> list[tuple[str, str]]:
    t = analysis.totals
    partial = " (partial: some ops not modelled)" if t.partial else ""
    bound = ", ".join(f"{k}={v}" for k, v in sorted(analysis.bindings.items()))
    return [
        ("Total params", f"{t.params:,} ({human_count(t.params)})"),
        ("Trainable params", f"{t.trainable_params:,}"),
        ("Non-trainable params", f"{t.non_trainable_params:,} (frozen {t.frozen_params:,} + buffers {t.buffers:,})"),
        ("MACs", f"{t.macs:,} ({human_count(t.macs)}){partial}"),
        ("FLOPs", f"{t.flops:,} ({human_count(t.flops)}){partial}"),
        ("Weight memory", human_bytes(t.weight_bytes)),
        ("Activation memory", f"{human_bytes(t.activation_bytes)} (all outputs), "
                              f"peak {human_bytes(t.peak_activation_bytes)} (inference, freed after last use)"),
        ("Input memory", human_bytes(t.input_bytes)),
        ("Counted with", bound or "no symbolic dims"),
    ]


def render_json(analysis: Analysis, training=None, fit=None, roofline=None) -> str:
    document = {"schema_version": JSON_SCHEMA_VERSION, **analysis.to_json()}
    if roofline is not None:  # analyze --device: archcalc.report.roofline.device_json's document
        document["roofline"] = roofline
    if training is not None:
        document["training"] = training.to_json()
    if fit is not None:
        batch, totals, memory = fit
        document["fit"] = {"memory_bytes": memory, "largest_batch": batch, "step": totals.to_json()}
    return dumps_json(document)


def dumps_json(document: object) -> str:
    """`document` as indented JSON (UTF-8 text, not escaped to ASCII). orjson writes it about
    ten times faster than the json module, whose indented form is pure Python; json writes
    what orjson refuses (ints past 64 bits), in the same layout."""
    import orjson

    try:
        return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode("utf-8")
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(document, indent=2, ensure_ascii=False)


def training_lines(training, fit=None) -> list[tuple[str, str]]:
    t = training.totals
    lines = [
        ("Training step", f"batch {t.batch}, {t.optimizer}, {t.precision}"),
        ("Forward MACs", f"{t.forward_macs:,} ({human_count(t.forward_macs)})"),
        ("Backward MACs", f"{t.backward_macs:,} ({human_count(t.backward_macs)})"),
        ("Step FLOPs", f"{t.step_flops:,} ({human_count(t.step_flops)})"),
        ("Weights", human_bytes(t.weight_bytes)),
        ("Gradients", human_bytes(t.gradient_bytes)),
        ("Optimizer state", human_bytes(t.optimizer_bytes)),
        ("Saved activations", human_bytes(t.saved_activation_bytes)),
        ("Training memory", human_bytes(t.memory_bytes)),
    ]
    if fit is not None:
        batch, totals, memory = fit
        lines.append(("Largest batch", f"{batch:,} fits in {human_bytes(memory)} "
                                       f"(uses {human_bytes(totals.memory_bytes)})"))
    return lines


def training_rows(table: Sequence[Row], training) -> list[tuple[str, int, int, int]]:
    """(name, forward MACs, backward MACs, saved activation bytes) per report row."""
    by_name = {layer.name: layer for layer in training.layers}
    result = []
    for row in table:
        members = [by_name[name] for name in row.members if name in by_name]
        result.append((row.name, sum(m.forward_macs for m in members), sum(m.backward_macs for m in members),
                       sum(m.saved_bytes for m in members)))
    return result


CSV_COLUMNS = ("name", "op", "output_shape", "params", "trainable_params", "buffers", "macs", "flops",
               "activation_bytes", "receptive_field", "modelled")


def render_csv(table: Iterable[Row], training=None, roofline=None) -> str:
    """One line per row; with `training` (analyze --training), also each row's backward MACs
    and the activation bytes it saves for the backward pass, as the training table shows."""
    table = list(table)
    steps = training_rows(table, training) if training is not None else None
    roof = None
    if roofline is not None:  # analyze --device: each row's bytes, intensity, bound and time
        from archcalc.report import roofline as device_report

        roof = [device_report.csv_cells(row) for row in device_report.roof_rows(table, roofline)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS + (("backward_macs", "saved_activation_bytes") if steps is not None else ())
                    + (device_report.CSV_COLUMNS if roof is not None else ()))
    for index, row in enumerate(table):
        extra: list[object] = list(steps[index][2:]) if steps is not None else []
        extra += roof[index] if roof is not None else []
        writer.writerow([getattr(row, column) for column in CSV_COLUMNS] + extra)
    return out.getvalue()


def _cells(row: Row) -> list[str]:
    unknown = "?" if not row.modelled else None
    return [row.name, row.op, row.output_shape, f"{row.params:,}", unknown or f"{row.macs:,}",
            human_bytes(row.activation_bytes), row.receptive_field]


HEADERS = ("Layer", "Op", "Output shape", "Params", "MACs", "Activations", "Receptive field")


def render_markdown(analysis: Analysis, table: Sequence[Row]) -> str:
    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [f"## {analysis.name or analysis.path}", "", line(HEADERS),
           "|" + "|".join(["---", "---", "---", "---:", "---:", "---:", "---"]) + "|"]
    out += [line(_cells(row)) for row in table]
    out += ["", line(("Total", "")), "|---|---|"]
    out += [line(pair) for pair in totals_lines(analysis)]
    if analysis.warnings:
        out += ["", "**Warnings**", ""] + [f"- {w}" for w in analysis.warnings]
    return "\n".join(out) + "\n"


# Narrowest a text column is folded to when the terminal is narrow; numbers never fold.
TEXT_MIN_WIDTH = {"Layer": 12, "Op": 8, "Output shape": 10, "Receptive field": 7}
# Columns left out, in this order, when the numbers would not fit otherwise.
DROPPABLE = ("Receptive field", "Activations", "FLOPs", "Op")
NUMERIC = frozenset({"Params", "MACs", "FLOPs", "Activations", "Layers", "Forward MACs", "Backward MACs",
                     "Saved activations", "Time"})


def fit_columns(headers: Sequence[str], cells: Sequence[Sequence[str]], width: int) -> list[tuple[int, int | None]]:
    """(column index, width or None for its natural width) of the columns to show in a
    table `width` characters wide: every number whole. Text columns (names, shapes) fold
    down to TEXT_MIN_WIDTH; when that is not enough, DROPPABLE columns go, least useful first."""
    whole = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    if sum(whole) + 3 * len(headers) + 1 <= width:
        return [(i, None) for i in range(len(headers))]
    # A text column's header may wrap at its spaces.
    natural = [max([len(h) if h in NUMERIC else max(map(len, h.split())), *(len(row[i]) for row in cells)])
               for i, h in enumerate(headers)]

    def least(i: int) -> int:
        return natural[i] if headers[i] in NUMERIC else min(natural[i], TEXT_MIN_WIDTH.get(headers[i], 8))

    def frame(columns: Sequence[int]) -> int:  # a space either side of each cell and a border between
        return 3 * len(columns) + 1

    kept = list(range(len(headers)))
    for header in DROPPABLE:
        if sum(least(i) for i in kept) + frame(kept) <= width:
            break
        kept = [i for i in kept if headers[i] != header] if len(kept) > 2 else kept
    widths = {i: least(i) for i in kept}
    room = width - frame(kept) - sum(widths.values())
    wanting = [i for i in kept if widths[i] < natural[i]]
    while room > 0 and wanting:  # share what is left among the folded columns
        for i in list(wanting):
            if room <= 0:
                break
            widths[i] += 1
            room -= 1
            if widths[i] == natural[i]:
                wanting.remove(i)
    return [(i, None if headers[i] in NUMERIC else widths[i]) for i in kept]


# rich folds a long cell in time quadratic in its length (a 10 MB ONNX node name takes
# minutes): tables show at most this many characters of a text, its head and tail (JSON,
# CSV and Markdown keep every name whole).
MAX_SHOWN = 200


def shortened(text: str, limit: int = MAX_SHOWN) -> str:
    """`text`, or its head and tail around a note of how much was left out."""
    if len(text) <= limit:
        return text
    keep = limit // 2 - 10
    return f"{text[:keep]}…[{len(text) - 2 * keep:,} chars]…{text[-keep:]}"


def _grid(title: str, headers: Sequence[str], cells: Sequence[Sequence[str]], console,
          styles: Sequence[str | None] = ()):
    """A rich table of `cells` that fits the console: see `fit_columns`."""
    from rich.table import Table

    if any(len(cell) > MAX_SHOWN for row in cells for cell in row):
        cells = [[shortened(cell) for cell in row] for row in cells]
    grid = Table(title=shortened(title), title_justify="left", header_style="bold")
    columns = fit_columns(headers, cells, console.width)
    for i, width in columns:
        numeric = headers[i] in NUMERIC
        # Numbers are single words: rich only folds them as a last resort, never cuts them.
        grid.add_column(headers[i], justify="right" if numeric else "left", width=width,
                        no_wrap=width is None and not numeric, overflow="fold")
    for index, row in enumerate(cells):
        grid.add_row(*(row[i] for i, _ in columns), style=styles[index] if styles else None)
    return grid


def render_training_table(table: Sequence[Row], training, fit, console) -> None:
    from rich.table import Table

    cells = [(name, f"{forward:,}", f"{backward:,}", human_bytes(saved))
             for name, forward, backward, saved in training_rows(table, training)]
    console.print(_grid("Training step per layer", ("Layer", "Forward MACs", "Backward MACs", "Saved activations"),
                        cells, console))
    totals = Table(show_header=False, box=None, padding=(0, 2))
    totals.add_column(style="bold")
    totals.add_column()
    for label, value in training_lines(training, fit):
        totals.add_row(label, value)
    console.print(totals)


def op_summary(table: Sequence[Row]) -> list[tuple[str, int, int, int, int, int]]:
    """(op, rows, params, MACs, FLOPs, activation bytes) per op, largest MACs first."""
    by_op: dict[str, list[int]] = {}
    for row in table:
        entry = by_op.setdefault(row.op, [0, 0, 0, 0, 0])
        for i, value in enumerate((1, row.params, row.macs, row.flops, row.activation_bytes)):
            entry[i] += value
    return sorted(((op, rows, params, macs, flops, activation)
                   for op, (rows, params, macs, flops, activation) in by_op.items()),
                  key=lambda item: (-item[3], item[0]))


def render_summary(analysis: Analysis, table: Sequence[Row], console, top: int = 10) -> None:
    """Per-op totals and the largest layers: what a big model's table is read for."""
    ops = [(op, f"{count:,}", f"{params:,}", f"{macs:,}", f"{flops:,}", human_bytes(activations))
           for op, count, params, macs, flops, activations in op_summary(table)]
    console.print(_grid(f"{analysis.name or analysis.path}: {len(analysis.layers):,} layers, by op",
                        ("Op", "Layers", "Params", "MACs", "FLOPs", "Activations"), ops, console))
    for metric in ("params", "macs"):
        largest = sorted(table, key=lambda row: -getattr(row, metric))[:top]
        console.print(_grid(f"Top {len(largest)} layers by {'MACs' if metric == 'macs' else metric}", HEADERS,
                            [_cells(row) for row in largest], console))
    _print_totals(analysis, console)
    console.print(f"{len(table):,} rows summarised: --full lists every layer, --depth N folds blocks, "
                  "--format csv/json give all rows cheaply")


def print_pairs(lines: Iterable[tuple[str, str]], console) -> None:
    """Label and value lines, as the totals under a table."""
    from rich.table import Table

    totals = Table(show_header=False, box=None, padding=(0, 2))
    totals.add_column(style="bold")
    totals.add_column()
    for label, value in lines:
        totals.add_row(label, value)
    console.print(totals)


def _print_totals(analysis: Analysis, console) -> None:
    print_pairs(totals_lines(analysis), console)
    for warning in analysis.warnings:  # may quote a long name
        console.print(f"warning: {shortened(warning, 10 * MAX_SHOWN)}", style="yellow")


def render_table(analysis: Analysis, table: Sequence[Row], console, extra=None) -> None:
    """`extra`: (headers, cells per row) of columns added at the right (analyze --device)."""
    title = f"{analysis.name or analysis.path}: {len(analysis.layers)} layers"
    headers, cells = HEADERS, [_cells(row) for row in table]
    if extra is not None:
        headers = (*HEADERS, *extra[0])
        cells = [[*base, *added] for base, added in zip(cells, extra[1])]
    console.print(_grid(title, headers, cells, console, [None if row.modelled else "yellow" for row in table]))
    _print_totals(analysis, console)


def render_explanation(analysis: Analysis, layer: LayerResult) -> list[str]:
    lines = [f"{layer.name} ({layer.op})" + (f"  [{layer.source}]" if layer.source else "")]
    for tensor in layer.inputs:
        shape = "?" if tensor.shape is None else format_shape(tensor.shape)
        lines.append(f"  input  {tensor.name}: {shape} {tensor.dtype}")
    for tensor in layer.outputs:
        shape = "?" if tensor.shape is None else format_shape(tensor.shape)
        lines.append(f"  output {tensor.name}: {shape} {tensor.dtype}")
    if not layer.modelled:
        lines.append(f"  not modelled: {layer.unmodelled_reason or 'no rule for this op'}, so nothing is counted")
        return lines
    lines += [f"  {text}" for text in (layer.explain() if layer.explain else [])]
    bound = ", ".join(f"{k}={v}" for k, v in sorted(analysis.bindings.items())) or "no symbolic dims"
    lines.append(f"  with {bound}: params {layer.params:,} (trainable {layer.trainable_params:,}, "
                 f"buffers {layer.buffers:,}), MACs {layer.macs:,}, FLOPs {layer.flops:,}, "
                 f"activations {human_bytes(layer.activation_bytes)}")
    field = layer.receptive_field
    if isinstance(field, tuple):
        parts = [f"size {compact_number(a.size)}, jump {compact_number(a.jump)}, start {compact_number(a.start)}"
                 for a in field]
        lines.append("  receptive field per spatial axis: " + "; ".join(parts))
    elif field:
        lines.append(f"  receptive field: {field} (every output sees the whole input)")
    return lines

