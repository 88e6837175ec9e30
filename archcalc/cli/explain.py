"""`archcalc explain MODEL LAYER`: one layer's formulas with its numbers substituted."""

from __future__ import annotations

import click

from archcalc.cli.options import analyse_from_options, batch_option, dim_option, examples, input_shape_option
from archcalc.core.errors import ArchcalcError


@click.command(epilog=examples(
    "archcalc explain specs/lenet5.yaml conv1",
    "archcalc explain specs/resnet18.yaml layer1     # a block: its sums and layers",
))
@click.argument("model", type=click.Path())
@click.argument("layer")
@batch_option()
@dim_option()
@input_shape_option()
def explain(model: str, layer: str, batch: int | None, dims: tuple[str, ...], input_shapes: tuple[str, ...]) -> None:
    """Each formula of one LAYER with its numbers substituted."""
    import difflib

    from archcalc.report import analysis as report

    analysis = analyse_from_options(model, batch, dims, input_shapes)
    found = analysis.layer(layer)
    # A spec layer lowered to several ops (attention), or a block instance: every op in it, in order.
    parts = [x for x in analysis.layers if x.block == layer or x.block.startswith((layer + ".", layer + "/"))]
    block = _folded_row(analysis, layer) if found is None else None
    if parts:
        # Its sums first (the row `analyze --depth` shows), then every op in full.
        head = ["\n".join(report.render_block_explanation(analysis, *block))] if block is not None else []
        click.echo("\n\n".join(head + ["\n".join(report.render_explanation(analysis, part)) for part in parts]))
        return
    if found is None:
        if block is not None:
            click.echo("\n".join(report.render_block_explanation(analysis, *block)))
            return
        names = [x.name for x in analysis.layers]
        hint = difflib.get_close_matches(layer, names, n=3)
        raise ArchcalcError(f"no layer named '{layer}'", where=model,
                            fix=("did you mean: " + ", ".join(hint)) if hint else
                            "list the layers with `archcalc analyze " + model + "`")
    click.echo("\n".join(report.render_explanation(analysis, found)))


def _folded_row(analysis, name: str):
    """(row, depth) of the block row named `name` that `analyze --depth` shows, or None."""
    from archcalc.engine.rows import block_paths, rows

    deepest = max((len(path) for path in block_paths(analysis.layers).values()), default=0)
    for depth in range(1, deepest + 1):
        row = next((row for row in rows(analysis, depth) if row.name == name and row.members != (name,)), None)
        if row is not None:
            return row, depth
    return None
