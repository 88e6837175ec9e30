"""Turn an :class:`~archcalc.core.results.Analysis` into rows, then into table, JSON, CSV or Markdown.

Rows are computed once (folding blocks when asked); renderers only format them, and
do no arithmetic of their own. rich is imported only by the table renderer.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence

from archcalc.core.dims import format_shape, shape_symbols
from archcalc.core.results import Analysis, LayerResult, Totals
from archcalc.core.units import compact_number, human_bytes, human_count
from archcalc.engine.rows import Row
from archcalc.report.layout import Column, grid

JSON_SCHEMA_VERSION = 1


def exact_and_units(value: int) -> str:
    """'25,557,032 (25.56 M)'; a count under 1000 once ('6', not '6 (6)')."""
    rounded = human_count(value)
    return f"{value:,}" if rounded == str(value) else f"{value:,} ({rounded})"


def totals_lines(analysis: Analysis) -> list[tuple[str, str]]:
    """The totals under the table. They add up as printed: total params = trainable + frozen;
    buffers (BatchNorm running statistics, not learned) are a line of their own, outside params
    (the JSON's non_trainable_params, Keras' figure, is frozen + buffers)."""
    t = analysis.totals
    partial = " (partial: some ops not modelled or sized at run time)" if t.partial else ""
    bound = ", ".join(f"{k}={v}" for k, v in sorted(analysis.bindings.items()))
    # A model mixing quantised and float ops: its MACs split by the arithmetic their rules declare.
    split = [("  Integer", exact_and_units(t.integer_macs)),
             ("  Float", exact_and_units(t.macs - t.integer_macs))] if t.integer_macs else []
    # A quantised model's scales and zero points: stored beside the weights, not params.
    quantization = ([("  Scales, zero points", f"{human_bytes(t.quantization_bytes)}, not in weight memory")]
                    if t.quantization_bytes else [])
    return [
        ("Total params", exact_and_units(t.params)),
        ("  Trainable", exact_and_units(t.trainable_params)),
        ("  Frozen", exact_and_units(t.frozen_params)),
        ("Buffers", f"{exact_and_units(t.buffers)}, not in params"),
        ("MACs", f"{exact_and_units(t.macs)}{partial}"),
        *split,
        ("FLOPs", f"{exact_and_units(t.flops)}{partial}"),
        ("Weight memory", human_bytes(t.weight_bytes)),
        *quantization,
        ("Activation memory", f"{human_bytes(t.activation_bytes)} (all outputs)"),
        ("Peak activations", f"{human_bytes(t.peak_activation_bytes)} (inference, freed after last use)"),
        ("Input memory", human_bytes(t.input_bytes)),
        ("Counted with", bound or "no symbolic dims"),
    ]


def render_json(analysis: Analysis, training=None, fit=None, roofline=None) -> str:
    return dumps_json(json_document(analysis, training, fit, roofline))


def json_document(analysis: Analysis, training=None, fit=None, roofline=None) -> dict:
    """The document `analyze --format json` prints (the HTML report embeds the same one)."""
    document = {"schema_version": JSON_SCHEMA_VERSION, **analysis.to_json()}
    if roofline is not None:  # analyze --device: archcalc.report.roofline.device_json's document
        document["roofline"] = roofline
    if training is not None:
        document["training"] = training.to_json()
    if fit is not None:
        batch, totals, memory = fit
        document["fit"] = {"memory_bytes": memory, "largest_batch": batch, "step": totals.to_json()}
    return document


def dumps_json(document: object) -> str:
    """`document` as indented JSON (UTF-8 text, not escaped to ASCII)."""
    return json_bytes(document).decode("utf-8")


def json_bytes(document: object) -> bytes:
    """`document` as indented JSON in UTF-8, as it is written (a big model's is tens of MB:
    not decoded to text to be encoded again). orjson writes it about ten times faster than
    the json module, whose indented form is pure Python; json writes what orjson refuses
    (ints past 64 bits), in the same layout."""
    import orjson

    try:
        return orjson.dumps(document, option=orjson.OPT_INDENT_2)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(document, indent=2, ensure_ascii=False).encode("utf-8")


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
    and the activation bytes it saves for the backward pass, as the training table shows;
    with `roofline` (analyze --device), each row's bytes, intensity, bound and time."""
    table = list(table)
    steps = training_rows(table, training) if training is not None else None
    roof = None
    if roofline is not None:
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
    """Markdown's cells: every figure exact, op names whole."""
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


def count_text(value: int, exact: bool) -> str:
    """A count as the terminal tables print it: compact units ('118.01 M'), or every digit."""
    return f"{value:,}" if exact else human_count(value)


def share_text(value: int, total: int) -> str:
    """A row's share of a total, ptflops' habit: '12.3%', '<0.1%' for a sliver, '-' for none."""
    if not value or not total:
        return "-"
    percent = 100 * value / total
    return "<0.1%" if percent < 0.1 else f"{percent:.1f}%"


# Op names in terminal tables: each word below shortened (BatchNormalization -> BatchNorm,
# GlobalAveragePool -> GlobalAvgPool), so the column stays narrow; other formats keep the name.
OP_WORDS = (("Normalization", "Norm"), ("Average", "Avg"))


def short_op(op: str) -> str:
    for word, short in OP_WORDS:
        op = op.replace(word, short)
    return op


# The analyze table's columns, most important kept longest (see report/layout.py): a report
# adds a column by adding an entry here and a cell in `table_cells`.
TABLE_COLUMNS = (
    Column("Layer", min_width=12),
    Column("Op", priority=60, min_width=7),
    Column("Output shape", priority=80, min_width=10, squeeze=lambda shape: shape.replace(", ", ",")),
    Column("Params", numeric=True),
    Column("% params", numeric=True, priority=35),
    Column("MACs", numeric=True),
    Column("% MACs", numeric=True, priority=45),
    Column("Activations", numeric=True, priority=55),
    Column("Receptive field", priority=40, min_width=7),
)


def table_cells(row: Row, totals: Totals, exact: bool) -> list[str]:
    unknown = "?" if not row.modelled else None
    return [row.name, short_op(row.op), row.output_shape, count_text(row.params, exact),
            share_text(row.params, totals.params), unknown or count_text(row.macs, exact),
            unknown or share_text(row.macs, totals.macs), human_bytes(row.activation_bytes), row.receptive_field]


def _grid(title: str, columns: Sequence[Column], cells: Sequence[Sequence[str]], console,
          styles: Sequence[str | None] = ()) -> None:
    """`title`, then a table of `cells` laid out to the console's width (report/layout.py),
    then the note naming any column left out."""
    if any(len(cell) > MAX_SHOWN for row in cells for cell in row):
        cells = [[shortened(cell) for cell in row] for row in cells]
    console.print(shortened(title), style="bold")
    table, note = grid(columns, cells, console.width, styles)
    console.print(table)
    if note:
        console.print(note, style="dim")


TRAINING_COLUMNS = (Column("Layer", min_width=12), Column("Forward MACs", numeric=True),
                    Column("Backward MACs", numeric=True), Column("Saved activations", numeric=True, priority=60))


def render_training_table(table: Sequence[Row], training, fit, console, exact: bool = False) -> None:
    from rich.table import Table

    cells = [(name, count_text(forward, exact), count_text(backward, exact), human_bytes(saved))
             for name, forward, backward, saved in training_rows(table, training)]
    _grid("Training step per layer", TRAINING_COLUMNS, cells, console)
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


OP_COLUMNS = (Column("Op", min_width=7), Column("Layers", numeric=True, priority=40), Column("Params", numeric=True),
              Column("MACs", numeric=True), Column("FLOPs", numeric=True, priority=45),
              Column("Activations", numeric=True, priority=55))


def render_summary(analysis: Analysis, table: Sequence[Row], console, top: int = 10, exact: bool = False) -> None:
    """Per-op totals and the largest layers: what a big model's table is read for."""
    ops = [(short_op(op), f"{count:,}", count_text(params, exact), count_text(macs, exact),
            count_text(flops, exact), human_bytes(activations))
           for op, count, params, macs, flops, activations in op_summary(table)]
    _grid(f"{analysis.name or analysis.path}: {len(analysis.layers):,} layers, by op", OP_COLUMNS, ops, console)
    for metric in ("params", "macs"):
        largest = sorted(table, key=lambda row: -getattr(row, metric))[:top]
        _grid(f"Top {len(largest)} layers by {'MACs' if metric == 'macs' else metric}", TABLE_COLUMNS,
              [table_cells(row, analysis.totals, exact) for row in largest], console)
    _print_totals(analysis, console)
    console.print(f"{len(table):,} rows summarised: --full lists every layer, --depth N folds blocks, "
                  "--format csv/json give all rows cheaply")


def print_pairs(lines: Iterable[tuple[str, str]], console) -> None:
    """Label and value lines, as the totals under a table."""
    from rich.table import Table

    totals = Table(show_header=False, box=None, padding=(0, 2))
    totals.add_column(style="bold", no_wrap=True)
    totals.add_column()
    for label, value in lines:
        totals.add_row(label, value)
    console.print(totals)


def _print_totals(analysis: Analysis, console) -> None:
    print_pairs(totals_lines(analysis), console)
    for warning in analysis.warnings:  # may quote a long name
        console.print(f"warning: {shortened(warning, 10 * MAX_SHOWN)}", style="yellow")


def render_table(analysis: Analysis, table: Sequence[Row], console, exact: bool = False, extra=None) -> None:
    """`extra`: (columns, cells per row) added at the right (analyze --device's bound and time)."""
    title = f"{analysis.name or analysis.path}: {len(analysis.layers)} layers"
    columns, cells = TABLE_COLUMNS, [table_cells(row, analysis.totals, exact) for row in table]
    if extra is not None:
        columns = (*TABLE_COLUMNS, *extra[0])
        cells = [[*base, *added] for base, added in zip(cells, extra[1])]
    _grid(title, columns, cells, console, [None if row.modelled else "yellow" for row in table])
    _print_totals(analysis, console)


def render_block_explanation(analysis: Analysis, row: Row, depth: int) -> list[str]:
    """A folded block (a row of `analyze --depth`): its sums, then each of its layers'
    figures, so the sum can be followed; `explain MODEL LAYER` gives any one in full."""
    by_name = {layer.name: layer for layer in analysis.layers}
    members = [by_name[name] for name in row.members]
    bound = ", ".join(f"{k}={v}" for k, v in sorted(analysis.bindings.items())) or "no symbolic dims"
    lines = [f"{row.name}: a block of {len(members)} layers (a row of --depth {depth}); its figures are "
             "the sums of its layers'",
             f"  output {row.output_shape} (its last layer's)",
             f"  with {bound}: params {_sum_text(row.params, [m.params for m in members])}",
             f"  MACs {_sum_text(row.macs, [m.macs for m in members])}",
             f"  FLOPs {row.flops:,}, activations {human_bytes(row.activation_bytes)}",
             "  layers (explain MODEL LAYER for one in full):"]
    width = max(len(m.name) for m in members)
    lines += [f"    {m.name:<{width}}  {m.op:<20} params {m.params:>12,}  MACs {m.macs:>15,}" for m in members]
    return lines


def _sum_text(total: int, parts: Sequence[int]) -> str:
    """'147,968 = 36,864 + 128 + ...', the parts that are not zero; the total alone without any."""
    nonzero = [f"{part:,}" for part in parts if part]
    return f"{total:,} = " + " + ".join(nonzero) if len(nonzero) > 1 else f"{total:,}"


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
    unbound = sorted(shape_symbols(d for t in layer.outputs if t.shape for d in t.shape) - set(analysis.bindings))
    left_out = f" ({', '.join(unbound)} left out: known only at run time)" if unbound else ""
    lines.append(f"  with {bound}{left_out}: params {layer.params:,} (trainable {layer.trainable_params:,}, "
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

