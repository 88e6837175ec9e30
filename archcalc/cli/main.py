"""The `archcalc` command line. Heavy imports happen inside commands so `--help` is instant."""

from __future__ import annotations

import gc
import sys

import click

from archcalc import __version__
from archcalc.cli.check import check
from archcalc.cli.options import (
    analyse_from_options,
    batch_option,
    dim_option,
    input_shape_option,
    load_from_options,
    parse_dims,
)
from archcalc.core.collector import pause_gc
from archcalc.core.errors import ArchcalcError
from archcalc.engine.setup import OPTIMIZER_STATES, PRECISIONS

FORMATS = ("table", "json", "csv", "markdown")
SUMMARY_ABOVE = 300  # table rows; larger models get a summary unless --full


class _Group(click.Group):
    """Turns every ArchcalcError (bad input) into a message on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ArchcalcError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(2)


def _parse_size(text: str, option: str) -> int:
    """A byte size given on the command line ('24GiB'), in the units budgets use."""
    from archcalc.core.units import BYTES, parse_quantity

    try:
        size = parse_quantity(text, BYTES)
    except ArchcalcError as error:
        raise error.located(option) from None
    if size <= 0:
        raise ArchcalcError(f"{text!r} is not a positive size", where=option, fix="write e.g. 24GiB or 512MiB")
    return size


def _parse_count(text: str, option: str) -> int:
    """A count given on the command line ('1e12', '5T'), in the units budgets use."""
    from archcalc.core.units import COUNT, parse_quantity

    try:
        count = parse_quantity(text, COUNT)
    except ArchcalcError as error:
        raise error.located(option) from None
    if count <= 0:
        raise ArchcalcError(f"{text!r} is not a positive count", where=option, fix="write e.g. 1e12 or 5T")
    return count


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="archcalc")
def cli() -> None:
    """Shapes, parameters, MACs/FLOPs, memory and receptive fields of a neural-network
    architecture, from a YAML spec or an ONNX file, before you train or ship it."""


@cli.command()
@click.argument("model", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@batch_option()
@dim_option()
@input_shape_option()
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Fold the layers of each block instance into one row, DEPTH levels down the block "
                   "path (1: layer1, 2: layer1.0 for a ResNet; a repeated block's name is a level). "
                   "Table, CSV and Markdown; --format json always lists every layer.")
@click.option("--training", is_flag=True, help="Also the cost of one training step: backward MACs and memory.")
@click.option("--optimizer", type=click.Choice(list(OPTIMIZER_STATES)), default="adam",
              show_default=True, help="Optimizer whose state counts in training memory.")
@click.option("--precision", type=click.Choice(list(PRECISIONS)), default="fp32",
              show_default=True, help="mixed: fp32 weights and gradients, half-precision activations (AMP).")
@click.option("--fit", "fit_memory", default=None, metavar="SIZE",
              help="Report the largest batch whose training step fits in SIZE (e.g. 24GiB).")
@click.option("--full", is_flag=True,
              help=f"Every layer in the table, even past {SUMMARY_ABOVE} rows (then a summary is the default).")
def analyze(model: str, fmt: str, batch: int | None, dims: tuple[str, ...], input_shapes: tuple[str, ...],
            depth: int | None, training: bool, optimizer: str, precision: str, fit_memory: str | None,
            full: bool) -> None:
    """Per-layer output shapes, params, MACs, memory and receptive field, with totals."""
    from archcalc.engine.inference import analyze as run_analysis
    from archcalc.engine.rows import rows
    from archcalc.report import analysis as report

    graph = load_from_options(model, input_shapes)
    bindings = parse_dims(dims, batch)
    analysis = run_analysis(graph, bindings)
    step = fit = None
    if training or fit_memory:
        from archcalc.engine import training as train

        step = train.training_cost(graph, analysis, optimizer, precision)
        if fit_memory:
            memory = _parse_size(fit_memory, "--fit")
            fit = train.largest_batch(graph, bindings, memory, optimizer, precision) + (memory,)
    if fmt == "json":

        with pause_gc():  # the document is a few hundred thousand small objects and no cycles
            click.echo(report.render_json(analysis, step, fit))
        return
    table = rows(analysis, depth)
    if fmt == "csv":
        click.echo(report.render_csv(table, step), nl=False)
    elif fmt == "markdown":
        click.echo(report.render_markdown(analysis, table), nl=False)
        if step is not None:
            lines = report.training_lines(step, fit)
            click.echo("\n| Training | |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in lines))
    else:
        from archcalc.report.console import make_console

        console = make_console()
        if len(table) > SUMMARY_ABOVE and not full:
            # A rich row costs ~0.4 ms: thousands of rows take seconds and no one reads them.
            report.render_summary(analysis, table, console)
        else:
            report.render_table(analysis, table, console)
        if step is not None:
            report.render_training_table(table, step, fit, console)


@cli.command()
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
    if found is None:
        names = [x.name for x in analysis.layers]
        hint = difflib.get_close_matches(layer, names, n=3)
        raise ArchcalcError(f"no layer named '{layer}'", where=model,
                            fix=("did you mean: " + ", ".join(hint)) if hint else
                            "list the layers with `archcalc analyze " + model + "`")
    click.echo("\n".join(report.render_explanation(analysis, found)))


@cli.command()
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
    analysis = analyze(graph, parse_dims(dims, batch))
    model = to_onnx(graph, analysis, opset=opset, weights=weights, external_path=output + ".data")
    write_model(model, output, weights, analysis.buffer_tensors)
    click.echo(f"wrote {output}: {len(model.graph.node)} nodes, {len(model.graph.initializer)} initializers, "
               f"opset {model.opset_import[0].version}")


@cli.command()
@click.argument("model", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@batch_option()
@dim_option()
@input_shape_option()
@click.option("--profile", is_flag=True, help="Time every node in onnxruntime and show it beside its MACs.")
@click.option("--max-memory", default=None, metavar="BYTES",
              help="Refuse to run when the estimate exceeds this (e.g. 4GiB; default half of RAM).")
@click.option("--max-work", default=None, metavar="FLOPS",
              help="Refuse to run when the estimated FLOPs of the run (a Loop's trip count times its body, each "
                   "body layer at least 1 per trip) exceed this (e.g. 5e12 or 5T; default 1e12).")
def verify(model: str, fmt: str, batch: int | None, dims: tuple[str, ...], input_shapes: tuple[str, ...],
           profile: bool, max_memory: str | None, max_work: str | None) -> None:
    """Run MODEL in onnxruntime and compare every tensor shape and dtype and layer cost with the analysis."""
    from archcalc.core.units import human_bytes, scientific, scientific_at_least
    from archcalc.report.analysis import dumps_json
    from archcalc.runtime import verify as verifier

    graph = load_from_options(model, input_shapes)
    analysis = verifier.analyze_for_verify(graph, parse_dims(dims, batch))
    limit = _parse_size(max_memory, "--max-memory") if max_memory else verifier.default_memory_limit()
    needed = verifier.estimate_run_bytes(analysis, profile=profile)
    if needed > limit:
        raise verifier.VerifyError(
            f"running it needs about {human_bytes(needed)} (estimated from weights "
            f"{human_bytes(analysis.totals.weight_bytes)} and activations "
            f"{human_bytes(analysis.totals.activation_bytes)}, plus onnxruntime itself), over the "
            f"{human_bytes(limit)} limit", where=model,
            fix="use a smaller --batch or input, or raise --max-memory")
    work_limit = _parse_count(max_work, "--max-work") if max_work else verifier.DEFAULT_MAX_WORK
    work = verifier.estimate_run_work(analysis)
    if work > work_limit:
        raise verifier.VerifyError(
            f"running it takes about {scientific(work)} FLOPs (estimated from the analysis: its layers' FLOPs, "
            f"a Loop's body times its trip count), over the --max-work limit of {scientific(work_limit)}",
            where=model,
            fix=f"if you mean to wait that long, raise the limit with --max-work {scientific_at_least(work)}; "
                "or lower the trip count or the input size")
    from archcalc.report.console import make_console

    console = make_console()
    from archcalc.report.progress import terminal_progress

    with terminal_progress() as progress:
        report = verifier.verify(graph, analysis, profile=profile, progress=progress)
    if fmt == "json":
        click.echo(dumps_json(report.to_json()))
    else:
        _print_verify(report, analysis, profile, console)
    if not report.ok:
        sys.exit(1)


def _print_verify(report, analysis, profile: bool, console) -> None:
    from rich.table import Table

    from archcalc.core.units import human_count

    def show(value) -> str:
        return f"{value:,}" if isinstance(value, int) else str(value)

    if report.mismatches:
        table = Table(title=f"{report.model}: {len(report.mismatches)} mismatches", title_justify="left")
        for column in ("Layer", "Tensor", "Check", "archcalc", "onnxruntime"):
            table.add_column(column)
        for m in report.mismatches:
            table.add_row(m.layer, m.tensor, m.kind, show(m.expected), show(m.actual))
        console.print(table)
    for entry in report.data_dependent:
        console.print(f"data-dependent: {entry.layer} -> {entry.tensor} axis {entry.axis} ({entry.dim}), "
                      f"observed {entry.observed}")
    if profile and report.layer_times:
        timing = Table(title="Per-layer time (onnxruntime CPU, one run)", title_justify="left")
        for column in ("Layer", "Op", "MACs", "Time (us)", "GMAC/s"):
            timing.add_column(column, justify="left" if column in ("Layer", "Op") else "right")
        for row in report.layer_times:
            rate = "-" if row["gmac_per_s"] is None else f"{row['gmac_per_s']:.2f}"
            timing.add_row(row["name"], row["op"], human_count(row["macs"]), f"{row['time_us']:,.0f}", rate)
        console.print(timing)
    seconds = report.seconds
    timing_note = (f"(prepare {seconds.get('prepare', 0):.2f} s, session {seconds.get('session', 0):.2f} s, "
                   f"run {seconds.get('run', 0):.2f} s)")
    if report.nothing_checked:
        console.print(f"verify: nothing to check: all {report.layers_total} layers are unmodelled, so the run "
                      f"compared no tensor {timing_note}", soft_wrap=True)
        return
    status = "ok" if report.ok else "FAILED"
    skipped = f", {len(report.skipped)} skipped" if report.skipped else ""
    dependent = f", {len(report.data_dependent)} data-dependent dims" if report.data_dependent else ""
    console.print(f"verify {status}: {report.tensors_checked} tensors and {report.layers_checked} layers checked "
                  f"against onnxruntime, {len(report.mismatches)} mismatches{skipped}{dependent} {timing_note}",
                  soft_wrap=True)


@cli.command()
def layers() -> None:
    """The layer types a YAML spec may use, with their fields and defaults."""
    from archcalc.readers.spec.layers import LAYER_TYPES, REQUIRED

    seen = set()
    for name, layer_type in sorted(LAYER_TYPES.items()):
        if layer_type.name != name or name in seen:
            continue
        seen.add(name)
        fields = ", ".join(f"{k}" if v is REQUIRED else f"{k}={v}" for k, v in layer_type.fields.items())
        aliases = f" (also: {', '.join(layer_type.aliases)})" if layer_type.aliases else ""
        click.echo(f"{name}{aliases}: {layer_type.summary}")
        if fields:
            click.echo(f"    {fields}")


from archcalc.cli.diff import diff  # noqa: E402  a command in its own module

cli.add_command(diff)


cli.add_command(check)


def main() -> None:
    # One short-lived run, building results without reference cycles: the cyclic collector
    # would only walk them (a tenth of a big model's time) and free nothing.
    gc.disable()
    try:
        cli(prog_name="archcalc")
    except RecursionError:
        click.echo("error: the model nests too deeply to analyse", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
