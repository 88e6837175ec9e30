"""`archcalc verify MODEL`: run it in onnxruntime and compare every shape, dtype and cost."""

from __future__ import annotations

import sys

import click

from archcalc.cli.options import (
    batch_option,
    dim_option,
    examples,
    input_shape_option,
    load_from_options,
    parse_count,
    parse_dims,
    parse_size,
)


@click.command(epilog=examples(
    "archcalc verify specs/resnet50.yaml",
    "archcalc verify model.onnx --profile          # and each layer's measured time",
    "archcalc verify specs/*.yaml                  # several models",
))
@click.argument("models", nargs=-1, required=True, type=click.Path(), metavar="MODEL...")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="json: the verdict, mismatches and timings as one document (several models: a list).")
@batch_option()
@dim_option()
@input_shape_option()
@click.option("--profile", is_flag=True,
              help="Time every node in onnxruntime, on a second run as deployed (only the model's own outputs), "
                   "and show it beside its MACs.")
@click.option("--max-memory", default=None, metavar="BYTES",
              help="Refuse to run when the estimate exceeds this (e.g. 4GiB; default half of RAM).")
@click.option("--max-work", default=None, metavar="FLOPS",
              help="Refuse to run when the estimated FLOPs of the run (a Loop's trip count times its body, each "
                   "body layer at least 1 per trip) exceed this (e.g. 5e12 or 5T; default 1e12).")
def verify(models: tuple[str, ...], fmt: str, batch: int | None, dims: tuple[str, ...],
           input_shapes: tuple[str, ...], profile: bool, max_memory: str | None, max_work: str | None) -> None:
    """Run each MODEL in onnxruntime and compare every tensor shape and dtype and layer cost with
    the analysis: exit 1 when any differs."""
    from archcalc.report.analysis import dumps_json
    from archcalc.report.verify import render_verify

    # Every model is read and checked against the guards before any runs, so a bad later model
    # stops the command before an earlier verdict is printed, as analyze does.
    prepared = [_prepared(model, batch, dims, input_shapes, profile, max_memory, max_work) for model in models]
    reports = []
    console = None
    for index, (model, (graph, analysis)) in enumerate(zip(models, prepared)):
        report = _run(graph, analysis, profile)
        reports.append(report)
        if fmt == "json":
            continue
        if console is None:
            from archcalc.cli.options import make_console

            console = make_console()
        if index:
            console.print()
        if len(models) > 1:
            console.print(f"{model}:", style="bold")
        render_verify(report, profile, console)
    if fmt == "json":
        documents = [report.to_json() for report in reports]
        click.echo(dumps_json(documents[0] if len(documents) == 1 else documents))
    if not all(report.ok for report in reports):
        sys.exit(1)


def _prepared(model: str, batch: int | None, dims: tuple[str, ...], input_shapes: tuple[str, ...], profile: bool,
              max_memory: str | None, max_work: str | None):
    """The graph and analysis of one MODEL, once it has passed the memory and work guards."""
    from archcalc.core.units import human_bytes, scientific, scientific_at_least
    from archcalc.runtime import verify as verifier

    graph = load_from_options(model, input_shapes)
    analysis = verifier.analyze_for_verify(graph, parse_dims(dims, batch))
    limit = parse_size(max_memory, "--max-memory") if max_memory else verifier.default_memory_limit()
    needed = verifier.estimate_run_bytes(analysis, profile=profile)
    if needed > limit:
        raise verifier.VerifyError(
            f"running it needs about {human_bytes(needed)} (estimated from weights "
            f"{human_bytes(analysis.totals.weight_bytes)} and activations "
            f"{human_bytes(analysis.totals.activation_bytes)}, plus onnxruntime itself), over the "
            f"{human_bytes(limit)} limit", where=model,
            fix="use a smaller --batch or input, or raise --max-memory")
    work_limit = parse_count(max_work, "--max-work") if max_work else verifier.DEFAULT_MAX_WORK
    work = verifier.estimate_run_work(analysis)
    if work > work_limit:
        raise verifier.VerifyError(
            f"running it takes about {scientific(work)} FLOPs (estimated from the analysis: its layers' FLOPs, "
            f"a Loop's body times its trip count), over the --max-work limit of {scientific(work_limit)}",
            where=model,
            fix=f"if you mean to wait that long, raise the limit with --max-work {scientific_at_least(work)}; "
                "or lower the trip count or the input size")
    return graph, analysis


def _run(graph, analysis, profile: bool):
    """Run one prepared model in onnxruntime and compare."""
    from archcalc.report.progress import terminal_progress
    from archcalc.runtime import verify as verifier

    with terminal_progress() as progress:
        return verifier.verify(graph, analysis, profile=profile, progress=progress)
