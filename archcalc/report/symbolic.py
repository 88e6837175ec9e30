"""Formulas (`analyze --symbolic`) and sweeps (`analyze --sweep`) in every format.

Rendering only: the formulas and the points come from archcalc.engine.symbolic.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from archcalc.core.dims import Dim, formula_text, polynomial_json
from archcalc.core.units import human_bytes, human_count
from archcalc.engine.kv import Generation, quoted
from archcalc.engine.rows import Row
from archcalc.engine.symbolic import Formulas, Point, grouped
from archcalc.report.analysis import print_pairs
from archcalc.report.layout import Column, grid

FORMULA_COLUMNS = (Column("Layer", min_width=12), Column("MACs", min_width=10), Column("FLOPs", priority=40),
                   Column("Activation bytes", priority=50))


def _free(formulas: Formulas) -> str:
    dims = ", ".join(formulas.dims) or "no dims (every count is a number)"
    fixed = ", ".join(f"{k}={v}" for k, v in sorted(formulas.fixed.items()))
    return dims + (f"; bound: {fixed}" if fixed else "")


def _notes(formulas: Formulas) -> list[str]:
    notes = []
    if formulas.bound_layers:
        notes.append("not formulas: the counts of " + ", ".join(formulas.bound_layers) + " (a subgraph, If/Loop/Scan, "
                     "counted at the analysis' bindings)")
    if formulas.partial:
        notes.append("partial: some layers are not modelled, so the formulas are lower bounds")
    return notes


def formula_lines(formulas: Formulas) -> list[tuple[str, str]]:
    """The totals as formulas, label and text, for the table and Markdown."""
    return [
        ("Formulas in", _free(formulas)),
        ("Params", f"{formulas.params:,} (no dim changes them)"),
        ("MACs", formula_text(formulas.macs)),
        ("FLOPs", formula_text(formulas.flops)),
        ("Activation bytes", formula_text(formulas.activation_bytes) + " (all outputs)"),
        ("Input bytes", formula_text(formulas.input_bytes)),
        ("Weight bytes", f"{formulas.weight_bytes:,}"),
        ("Peak activations", "a maximum over the schedule, not a polynomial: use --sweep for its values"),
        *(("Note", note) for note in _notes(formulas)),
    ]


def row_formulas(formulas: Formulas, table: Sequence[Row]) -> list[tuple[Dim, Dim, Dim]]:
    """Each row's (MACs, FLOPs, activation bytes) formulas: the sums of its layers'."""
    return grouped(formulas, [row.members for row in table])


def render_formulas(formulas: Formulas, table: Sequence[Row], console, rows_shown: int) -> None:
    if len(table) <= rows_shown:
        cells = [[row.name, *(formula_text(d) for d in dims)]
                 for row, dims in zip(table, row_formulas(formulas, table))]
        console.print("Formulas by layer", style="bold")
        layout, note = grid(FORMULA_COLUMNS, cells, console.width)
        console.print(layout)
        if note:
            console.print(note, style="dim")
    else:
        console.print(f"{len(table):,} rows: formulas of the totals only (--depth N folds blocks, --format json "
                      "gives every layer's)", style="dim")
    print_pairs(formula_lines(formulas), console)


def formulas_json(formulas: Formulas) -> dict[str, Any]:
    """The document's `symbolic` key: totals as structured polynomials (see dims.polynomial_json)."""
    return {
        "dims": list(formulas.dims),
        "fixed": formulas.fixed,
        "exact": formulas.exact,
        "bound_layers": list(formulas.bound_layers),
        "partial": formulas.partial,
        "totals": {
            "params": formulas.params,
            "weight_bytes": formulas.weight_bytes,
            "macs": polynomial_json(formulas.macs),
            "flops": polynomial_json(formulas.flops),
            "activation_bytes": polynomial_json(formulas.activation_bytes),
            "input_bytes": polynomial_json(formulas.input_bytes),
        },
    }


def add_formulas_to_document(document: dict[str, Any], formulas: Formulas) -> dict[str, Any]:
    """`analyze --format json --symbolic`: the `symbolic` key, and one in each layer (keys added,
    none changed)."""
    document["symbolic"] = formulas_json(formulas)
    for layer, formula in zip(document["layers"], formulas.layers):
        layer["symbolic"] = {"macs": polynomial_json(formula.macs), "flops": polynomial_json(formula.flops),
                             "activation_bytes": polynomial_json(formula.activation_bytes)}
    return document


def csv_with_formulas(text: str, formulas: Formulas, table: Sequence[Row]) -> str:
    """`render_csv`'s text with each row's formulas in three more columns."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    extra = row_formulas(formulas, table)
    for number, line in enumerate(csv.reader(io.StringIO(text))):
        cells = (["macs_formula", "flops_formula", "activation_bytes_formula"] if number == 0
                 else [formula_text(d) for d in extra[number - 1]])
        writer.writerow([*line, *cells])
    return out.getvalue()


def _md_line(cells: Iterable[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def formulas_markdown(formulas: Formulas, table: Sequence[Row]) -> str:
    out = ["", "### Formulas", "", _md_line(("Layer", "MACs", "FLOPs", "Activation bytes")), "|---|---|---|---|"]
    out += [_md_line((row.name, *(formula_text(d) for d in dims)))
            for row, dims in zip(table, row_formulas(formulas, table))]
    out += ["", _md_line(("Total", "")), "|---|---|"] + [_md_line(pair) for pair in formula_lines(formulas)]
    return "\n".join(out) + "\n"


# Sweeps: one row per point.
SWEEP_FIELDS = ("params", "macs", "flops", "peak_activation_bytes", "activation_bytes", "input_bytes", "weight_bytes",
                "kv_cache_bytes")


def _timed(points: Sequence[Point]) -> bool:
    """Whether the sweep has a latency column (--device): every point is timed then."""
    return any(p.latency_s is not None for p in points)


def sweep_columns(swept: Sequence[str], timed: bool = False) -> tuple[Column, ...]:
    return (*(Column(name, numeric=True) for name in swept), Column("Params", numeric=True),
            Column("MACs", numeric=True), Column("FLOPs", numeric=True, priority=45),
            Column("Peak activations", numeric=True), Column("All outputs", numeric=True, priority=50),
            Column("Input", numeric=True, priority=40), Column("KV cache", numeric=True, priority=55),
            *((Column("Latency", numeric=True),) if timed else ()))


def sweep_cells(swept: Sequence[str], points: Sequence[Point], exact: bool) -> list[list[str]]:
    from archcalc.report.roofline import human_time

    def count(value: int) -> str:
        return f"{value:,}" if exact else human_count(value)

    timed = _timed(points)
    return [[*(str(p.bindings[name]) for name in swept), count(p.params), count(p.macs), count(p.flops),
             human_bytes(p.peak_activation_bytes), human_bytes(p.activation_bytes), human_bytes(p.input_bytes),
             "-" if p.kv_cache_bytes is None else human_bytes(p.kv_cache_bytes),
             *(("?" if p.latency_s is None else human_time(p.latency_s),) if timed else ())] for p in points]


def render_sweep(title: str, swept: Sequence[str], points: Sequence[Point], method: str, console,
                 exact: bool = False) -> None:
    console.print(title, style="bold")
    layout, note = grid(sweep_columns(swept, _timed(points)), sweep_cells(swept, points, exact), console.width)
    console.print(layout)
    if note:
        console.print(note, style="dim")
    console.print(method, style="dim")


def sweep_json(model: str, name: str, swept: Sequence[str], points: Sequence[Point], formulas: Formulas | None,
               method: str) -> dict[str, Any]:
    return {"model": name, "path": model, "swept": list(swept), "method": method,
            "symbolic": formulas_json(formulas) if formulas is not None else None,
            "points": [p.to_json() for p in points]}


def sweep_csv(swept: Sequence[str], points: Sequence[Point], model: str | None = None, header: bool = True) -> str:
    """One line per point; with `model` (several models), a leading `model` column."""
    lead = [] if model is None else [model]
    fields = (*SWEEP_FIELDS, "latency_s") if _timed(points) else SWEEP_FIELDS
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow([*(["model"] if model is not None else []), *swept, *fields])
    for p in points:
        writer.writerow([*lead, *(p.bindings[name] for name in swept),
                         *("" if getattr(p, f) is None else getattr(p, f) for f in fields)])
    return out.getvalue()


def sweep_markdown(title: str, swept: Sequence[str], points: Sequence[Point], method: str) -> str:
    headers = (*swept, "Params", "MACs", "FLOPs", "Peak activations", "All outputs", "Input", "KV cache",
               *(("Latency",) if _timed(points) else ()))
    out = [f"## {title}", "", _md_line(headers), "|" + "|".join(["---:"] * len(headers)) + "|"]
    out += [_md_line(cells) for cells in sweep_cells(swept, points, exact=True)]
    return "\n".join([*out, "", method]) + "\n"


def generation_lines(generation: Generation) -> list[tuple[str, str]]:
    """A decoder's generation at its context (analyze --context), label and text."""
    cache = generation.cache
    c, b = generation.context, generation.batch
    per_layer = {layer.elements_per_token * layer.dtype_bytes for layer in cache.layers}
    layer_text = (f"{len(cache.layers)} x {next(iter(per_layer)):,} B" if len(per_layer) == 1
                  else f"{len(cache.layers)} layers")
    geometry = {(layer.kv_heads, layer.head_size) for layer in cache.layers}
    if len(geometry) == 1 and None not in next(iter(geometry)) and cache.past is not None:
        heads, head = next(iter(geometry))
        layer_text += f"; each {heads} KV heads x {head}"
    lines = [
        ("KV cache from", cache.source),
        *((("Inputs bound", cache.step.described()),) if cache.step is not None else ()),
        ("KV cache per token", f"{cache.bytes_per_token:,} B ({layer_text}) per sequence"),
        (f"KV cache at {c:,} tokens", f"{human_bytes(cache.bytes_at(c, b))} (batch {b}: "
                                      f"{cache.bytes_per_token:,} B x {c:,} tokens x {b})"),
    ]
    prefill = generation.prefill
    if prefill is not None:
        lines.append((f"Prefill {c:,} tokens", f"{prefill.macs:,} MACs ({human_count(prefill.macs)}), "
                                              f"peak activations {human_bytes(prefill.peak_activation_bytes)}"))
    decode = generation.decode
    if decode is not None:
        lines.append((f"Decode 1 token x {b}", f"{decode.macs:,} MACs ({human_count(decode.macs)}) "
                                          f"with {c:,} cached; {human_bytes(decode.bytes_moved)} moved "
                                          "(weights + cache read + new keys/values)"))
    for run, bindings in (("prefill", generation.prefill_bindings), ("decode", generation.decode_bindings)):
        if bindings is not None:
            lines.append((f"Bound for {run}", ", ".join(f"{quoted(name)}={value:,}"
                                                         for name, value in bindings.items())))
    if generation.serve_bytes is not None:
        lines.append(("Memory to serve", f"{human_bytes(generation.serve_bytes)} (weights + KV cache + prefill peak "
                                         "activations)"))
    if generation.fit is not None:
        memory, context = generation.fit
        lines.append((f"Fits {human_bytes(memory)}", (f"up to {context:,} tokens of context (context searched at batch "
                                                     f"{b})") if context else
                      f"no context: the weights and one token's activations need more (batch {b})"))
        if generation.fit_batch is not None:
            lines.append((f"Fits {human_bytes(memory)}", (f"up to a batch of {generation.fit_batch:,} sequences (batch "
                                                         f"searched at {c:,} tokens of context)")
                          if generation.fit_batch else f"no batch: one sequence of {c:,} tokens needs more"))
    lines += [("Note", note) for note in generation.notes]
    return lines


def render_generation(generation: Generation, console) -> None:
    console.print("Generation", style="bold")
    print_pairs(generation_lines(generation), console)
