"""`archcalc explain MODEL LAYER`: one layer's formulas with its numbers substituted."""

from __future__ import annotations

import click

from archcalc.cli.options import analyse_from_options, batch_option, dim_option, input_shape_option
from archcalc.core.errors import ArchcalcError


@click.command()
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
    parts = [x for x in analysis.layers if x.block == layer or x.block.startswith(layer + ".")]
    if parts:
        click.echo("\n\n".join("\n".join(report.render_explanation(analysis, part)) for part in parts))
        return
    if found is None:
        names = [x.name for x in analysis.layers]
        hint = difflib.get_close_matches(layer, names, n=3)
        raise ArchcalcError(f"no layer named '{layer}'", where=model,
                            fix=("did you mean: " + ", ".join(hint)) if hint else
                            "list the layers with `archcalc analyze " + model + "`")
    click.echo("\n".join(report.render_explanation(analysis, found)))
