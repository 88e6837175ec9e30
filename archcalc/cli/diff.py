"""`archcalc diff OLD NEW`: what changed between two architectures, for reviewers.

Imports only click at module level, so `archcalc --help` stays instant.
"""

from __future__ import annotations

from dataclasses import replace

import click

from archcalc.cli.options import analyse_from_options, batch_option, dim_option, examples, input_shape_option

DIFF_FORMATS = ("table", "markdown", "json", "html")


@click.command(epilog=examples(
    "archcalc diff specs/resnet18.yaml specs/resnet34.yaml --depth 1",
    "archcalc diff old.onnx new.onnx --format markdown > comment.md",
    "archcalc diff specs/resnet18.yaml specs/resnet34.yaml --format html -o diff.html",
))
@click.argument("old", type=click.Path())
@click.argument("new", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(DIFF_FORMATS), default="table", show_default=True,
              help="markdown is ready to paste into a pull-request comment; html is one self-contained page "
                   "(-o FILE).")
@batch_option("Value of the symbolic batch dim for counting both models (default 1).")
@dim_option("Bind another symbolic dim in both models, e.g. --dim seq=128. Repeatable.")
@input_shape_option("Feed graph input NAME of both models at this shape, e.g. x=1,3,224,224. Repeatable.")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Compare block rows, keeping DEPTH levels of block names (as `analyze --depth`).")
@click.option("--all", "show_all", is_flag=True, help="List unchanged layers too.")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False),
              help="Write --format html to this file (atomically) instead of stdout.")
@click.option("--exact", is_flag=True,
              help="Every digit in the table (default: units, 1.81 G); Markdown and JSON are exact.")
@click.option("--old-label", default=None, help="What to call OLD in headings (default: its name, or path).")
@click.option("--new-label", default=None, help="What to call NEW in headings (default: its name, or path).")
def diff(old: str, new: str, fmt: str, batch: int | None, dims: tuple[str, ...], input_shapes: tuple[str, ...],
         depth: int | None, show_all: bool, output: str | None, exact: bool, old_label: str | None,
         new_label: str | None) -> None:
    """Total and per-layer changes in params, MACs, FLOPs and memory from OLD to NEW.

    OLD and NEW are YAML specs or ONNX files, in any mix. Layers pair by name (but not by
    generated names like relu_2), then by place: identical op, output shape and params
    first, then the same op; the rest are added or removed. Unchanged layers are left out
    unless --all. Exits 0 whether or not the models differ, 2 on bad input."""
    from archcalc.compare.diff import diff_analyses
    from archcalc.report.diff import render_markdown

    if output is not None and fmt != "html":
        raise click.UsageError("-o writes --format html only: add --format html, or redirect the output")
    old_analysis = analyse_from_options(old, batch, dims, input_shapes)
    new_analysis = analyse_from_options(new, batch, dims, input_shapes)
    result = diff_analyses(old_analysis, new_analysis, depth)
    result = replace(result, names=(old_label, new_label))
    if fmt == "html":
        from archcalc.report.html import diff_page, write_page

        write_page(diff_page(result, old_analysis, new_analysis), output)
    elif fmt == "json":
        from archcalc.report.analysis import dumps_json

        click.echo(dumps_json(result.to_json(include_unchanged=show_all)))
    elif fmt == "markdown":
        click.echo(render_markdown(result, include_unchanged=show_all), nl=False)
    else:
        from archcalc.cli.options import make_console
        from archcalc.report.diff import render_table

        render_table(result, show_all, make_console(), exact)
