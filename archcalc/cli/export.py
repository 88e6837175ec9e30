"""`archcalc export SPEC -o model.onnx`: a spec as a standard ONNX model."""

from __future__ import annotations

import click

from archcalc.cli.options import batch_option, dim_option, examples, input_shape_option, load_from_options, parse_dims


@click.command(epilog=examples(
    "archcalc export specs/resnet18.yaml -o resnet18.onnx",
    "archcalc export specs/resnet50.yaml -o r50.onnx --weights omit --opset 17",
))
@click.argument("spec", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="Where to write the .onnx file.")
@click.option("--opset", type=click.IntRange(min=13), default=None,
              help="Default-domain opset, 13 up to the newest the installed onnx knows "
                   "(default: the newest the installed onnxruntime runs).")
@click.option("--weights", type=click.Choice(["random", "zeros", "external", "omit"]), default="random",
              show_default=True,
              help="random/zeros: inline values; external: values in OUTPUT.data; omit: shapes only, "
                   "as external-data references to an OUTPUT.data that is not written: archcalc analyzes and "
                   "verifies the file and onnx.load(path, load_external_data=False) reads it, but onnx.checker, "
                   "a plain onnx.load and onnxruntime need the missing data.")
@batch_option()
@dim_option()
@input_shape_option()
def export(spec: str, output: str, opset: int | None, weights: str, batch: int | None,
           dims: tuple[str, ...], input_shapes: tuple[str, ...]) -> None:
    """Write SPEC as a standard ONNX model that onnxruntime can run."""
    from archcalc.engine.inference import analyze
    from archcalc.runtime.export import to_onnx, write_model

    graph = load_from_options(spec, input_shapes)
    if graph.format != "spec":  # export writes a spec's layers as ONNX; an ONNX file already is one
        from archcalc.core.errors import ArchcalcError

        raise ArchcalcError(f"{spec} is already an ONNX model: export writes a YAML spec as ONNX",
                            fix="pass a .yaml spec; analyze, verify, check and diff read ONNX files directly")
    analysis = analyze(graph, parse_dims(dims, batch))
    model = to_onnx(graph, analysis, opset=opset, weights=weights, external_path=output + ".data")
    write_model(model, output, weights, analysis.buffer_tensors)
    click.echo(f"wrote {output}: {len(model.graph.node)} nodes, {len(model.graph.initializer)} initializers, "
               f"opset {model.opset_import[0].version}")
