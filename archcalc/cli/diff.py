"""`archcalc diff OLD NEW`: what changed between two architectures, for reviewers.

Imports only click at module level, so `archcalc --help` stays instant; archcalc.cli.main is
imported inside the command (it imports this module to register the command).
"""

from __future__ import annotations

from dataclasses import replace

import click

from archcalc.cli.options import batch_option, dim_option, input_shape_option

DIFF_FORMATS = ("table", "markdown", "json")
STATUS_STYLES = {"added": "green", "removed": "red", "renamed": "cyan", "changed": None, "unchanged": "dim"}


@click.command()
@click.argument("old", type=click.Path())
@click.argument("new", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(DIFF_FORMATS), default="table", show_default=True,
              help="markdown is ready to paste into a pull-request comment.")
@batch_option("Value of the symbolic batch dim for counting both models (default 1).")
@dim_option("Bind another symbolic dim in both models, e.g. --dim seq=128. Repeatable.")
@input_shape_option("Feed graph input NAME of both models at this shape, e.g. x=1,3,224,224. Repeatable.")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Compare block rows, keeping DEPTH levels of block names (as `analyze --depth`).")
@click.option("--all", "show_all", is_flag=True, help="List unchanged layers too.")
@click.option("--old-label", default=None, help="What to call OLD in headings (default: its name, or path).")
@click.option("--new-label", default=None, help="What to call NEW in headings (default: its name, or path).")
def diff(old: str, new: str, fmt: str, batch: int | None, dims: tuple[str, ...], input_shapes: tuple[str, ...],
         depth: int | None, show_all: bool, old_label: str | None, new_label: str | None) -> None:
    """Total and per-layer changes in params, MACs, FLOPs and memory from OLD to NEW.

    OLD and NEW are YAML specs or ONNX files, in any mix. Layers pair by name (but not by
    generated names like relu_2), then by place: identical op, output shape and params
    first, then the same op; the rest are added or removed. Unchanged layers are left out
    unless --all. Exits 0 whether or not the models differ, 2 on bad input."""
    from archcalc.cli.main import _analyse
    from archcalc.compare.diff import diff_analyses, render_markdown

    result = diff_analyses(_analyse(old, batch, dims, input_shapes), _analyse(new, batch, dims, input_shapes), depth)
    result = replace(result, names=(old_label, new_label))
    if fmt == "json":
        from archcalc.report.analysis import dumps_json

        click.echo(dumps_json(result.to_json(include_unchanged=show_all)))
    elif fmt == "markdown":
        click.echo(render_markdown(result, include_unchanged=show_all), nl=False)
    else:
        from archcalc.cli.main import _console

        _render_table(result, show_all, _console())


def _render_table(result, show_all: bool, console) -> None:
    from rich.table import Table

    from archcalc.compare import diff as d

    old_label, new_label = result.labels()
    depth = f" (depth {result.depth})" if result.depth else ""
    console.print(f"diff: {old_label} → {new_label}{depth}", style="bold")
    console.print(d.summary_line(result))
    note = d.partial_note(result)
    if note:
        console.print(f"warning: {note}", style="yellow")
    totals = Table(header_style="bold")
    totals.add_column("Total")
    for header in (old_label, new_label, "Δ", "Δ %"):
        totals.add_column(header, justify="right", no_wrap=True)
    for metric, delta in result.totals.items():
        totals.add_row(d.TOTAL_LABELS[metric], d.value_text(metric, delta.old), d.value_text(metric, delta.new),
                       d.change_text(metric, delta), d.percent_text(delta))
    console.print(totals)
    listed = result.listed(show_all)
    if listed:
        # Old over new and a change over its %, and no absolute MACs column, so the table fits
        # 140 columns; the Markdown and JSON outputs have every number.
        keep = [i for i, header in enumerate(d.LAYER_HEADERS) if header != "MACs"]
        cells = [d.layer_cells(layer, arrow="\n→ ", gap="\n") for layer in listed]
        stacked = any("\n" in cell for row in cells for cell in row)
        layers = Table(header_style="bold", show_lines=stacked)
        for i in keep:
            header = d.LAYER_HEADERS[i]
            numeric = header.startswith(("Params", "Δ"))
            layers.add_column(header, justify="right" if numeric else "left", no_wrap=not numeric)
        for layer, row in zip(listed, cells):
            layers.add_row(*(row[i] for i in keep), style=STATUS_STYLES[layer.status])
        console.print(layers)
    console.print(d.counts_line(result, show_all))
