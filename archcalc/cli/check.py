"""`archcalc check MODEL... --budget budget.yaml`: exit 0 within budget (warnings allowed),
1 when a limit is exceeded, 2 on bad input. Only click is imported up front, so `--help`
stays instant; the budget, engine and rich load inside the command."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import IO

import click

from archcalc.cli.options import batch_option, dim_option, examples, input_shape_option, parse_dims, parse_input_shapes
from archcalc.engine.setup import OPTIMIZER_STATES, PRECISIONS

CHECK_FORMATS = ("table", "github", "junit", "json")


@click.command(epilog=examples(
    "archcalc check specs/resnet50.yaml --budget budgets/example.yaml",
    "archcalc check models/*.onnx --budget budget.yaml --format junit -o report.xml",
))
@click.argument("models", nargs=-1, required=True, type=click.Path(), metavar="MODEL...")
@click.option("--budget", "budget_path", required=True, type=click.Path(), metavar="FILE",
              help="The budget file (YAML): `total` and per-layer `layers` limits, and `warn` ones.")
@click.option("--format", "fmt", type=click.Choice(CHECK_FORMATS), default="table", show_default=True,
              help="github: workflow-command annotations plus a job summary in $GITHUB_STEP_SUMMARY; "
                   "junit: JUnit XML for CI test reports.")
@batch_option("Value of the symbolic batch dim (overrides the budget's `batch`; default 1).")
@dim_option("Bind another symbolic dim, e.g. --dim seq=128 (overrides the budget's `dims`). Repeatable.")
@input_shape_option("Feed graph input NAME of every model at this shape, e.g. x=1,3,224,224. Repeatable.")
@click.option("-o", "--output", type=click.Path(), default=None,
              help="Write the report to this file instead of stdout.")
@click.option("--training", is_flag=True,
              help="Also the cost of one training step (as `analyze --training`): its totals under each "
                   "table and in JSON, with or without a training limit.")
@click.option("--optimizer", type=click.Choice(list(OPTIMIZER_STATES)), default=None,
              help="For the training step (training_memory / training_macs limits, --training); overrides "
                   "the budget's `training: optimizer` (default adam).")
@click.option("--precision", type=click.Choice(list(PRECISIONS)), default=None,
              help="For the training step; overrides the budget's `training: precision` (default fp32).")
@click.option("--exact", is_flag=True, help="Every digit of the actual values in the table (default: units).")
@click.pass_context
def check(ctx: click.Context, models: tuple[str, ...], budget_path: str, fmt: str, batch: int | None,
          dims: tuple[str, ...], input_shapes: tuple[str, ...], output: str | None, training: bool,
          optimizer: str | None, precision: str | None, exact: bool) -> None:
    """Check each MODEL against a budget of params, MACs, FLOPs and memory, per layer and in
    total: exit 0 within budget (warnings allowed), 1 when a limit is exceeded, 2 on bad input."""
    from archcalc.core.errors import ArchcalcError

    try:
        checks = _check_all(models, budget_path, batch, dims, input_shapes, training, optimizer, precision)
        _render(checks, fmt, output, show_training=training, exact=exact)
    except (ArchcalcError, click.UsageError) as error:
        if fmt == "github":  # the runner reads annotations from stdout; the CLI still reports it, exit 2
            from archcalc.report.check import error_annotation

            click.echo(error_annotation(error))
        raise
    if any(result.level == "fail" for c in checks for result in c.results):
        ctx.exit(1)


def _check_all(models: tuple[str, ...], budget_path: str, batch: int | None, dims: tuple[str, ...],
               input_shapes: tuple[str, ...], training: bool, optimizer: str | None,
               precision: str | None) -> list:
    from archcalc.compare.budget import check_model, load_budget, needs_device, needs_training

    budget = load_budget(budget_path)
    bindings = budget.bindings(batch=batch, dims=parse_dims(dims, None))
    analysed = _analyse_all(models, bindings, parse_input_shapes(input_shapes),
                            show_progress=len(models) > 1 and _stderr_is_terminal())
    rooflines: list = [None] * len(analysed)
    if budget.device is not None and budget.device_setup is not None and needs_device(budget):
        from archcalc.hardware.roofline import roofline

        rooflines = [roofline(analysis, budget.device, budget.device_setup) for _, analysis in analysed]
    if not (training or needs_training(budget)):
        return [check_model(analysis, budget, None, on_device)
                for (_, analysis), on_device in zip(analysed, rooflines)]
    from archcalc.engine.training import training_cost

    optimizer, precision = budget.training_setup(optimizer, precision)
    return [check_model(analysis, budget, training_cost(graph, analysis, optimizer, precision), on_device)
            for (graph, analysis), on_device in zip(analysed, rooflines)]


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def _analyse_all(models: tuple[str, ...], bindings: dict[str, int], input_shapes: dict[str, tuple],
                 show_progress: bool) -> list:
    """(graph, analysis) of every model, all first, so bad input (exit 2) stops the run
    before any report."""
    from archcalc.engine.inference import analyze
    from archcalc.readers.load import load_model

    def analysed(model: str) -> tuple:
        graph = load_model(model, input_shapes)
        return graph, analyze(graph, bindings)

    if not show_progress:
        return [analysed(model) for model in models]
    from archcalc.report.progress import terminal_progress

    analyses = []
    with terminal_progress() as progress:
        for done, model in enumerate(models):
            if progress:
                progress("analysing models", done, len(models))
            analyses.append(analysed(model))
    return analyses


def _render(checks: list, fmt: str, output: str | None, show_training: bool = False, exact: bool = False) -> None:
    """The report to stdout or `output`; for github, then the job summary, so that the
    annotations are out even when the summary cannot be written."""
    from archcalc.report import check as check_output

    if fmt == "table":
        from archcalc.cli.options import make_console

        def print_table(file) -> None:
            console = make_console(file)
            check_output.render_table(checks, console, show_training=show_training, exact=exact)

        if output:
            with _open_for_writing(output, "w", fix=_OUTPUT_FIX) as handle:
                print_table(handle)
            _print_summary(checks, output)
        else:
            print_table(None)
        return
    if fmt == "github":
        text = check_output.render_github(checks)
    elif fmt == "junit":
        text = check_output.render_junit(checks)
    else:
        text = check_output.render_json(checks) + "\n"
    if output:
        with _open_for_writing(output, "w", fix=_OUTPUT_FIX) as handle:
            handle.write(text)
        _print_summary(checks, output)
    else:
        click.echo(text, nl=False)
    summary = os.environ.get("GITHUB_STEP_SUMMARY") if fmt == "github" else None
    if summary:
        with _open_for_writing(summary, "a", fix="GITHUB_STEP_SUMMARY must name a writable file (the runner "
                                                 "sets it); unset it to skip the summary") as handle:
            handle.write(check_output.render_markdown(checks) + "\n")


def _print_summary(checks: list, output: str) -> None:
    """With -o, the console still says how the check went: a line per model, and where the report is."""
    from archcalc.report.check import models_summary

    for check in checks:
        click.echo(f"{check.title}: {check.summary}")
    if len(checks) > 1:
        click.echo(models_summary(checks))
    click.echo(f"report written to {output}")


_OUTPUT_FIX = "give -o/--output a file path in an existing, writable directory"


@contextlib.contextmanager
def _open_for_writing(path: str, mode: str, *, fix: str) -> Iterator[IO[str]]:
    """`path` opened in `mode` for the block, written through a temporary file so a killed run
    leaves the old file whole; failing to open or write it is bad input (exit 2) that names
    the path and the reason, never a traceback (exit 1 would read as "over budget")."""
    from archcalc.core.errors import ArchcalcError
    from archcalc.core.files import atomic_write

    try:
        with atomic_write(path, mode) as handle:
            yield handle
    except OSError as error:
        raise ArchcalcError(f"cannot write {path}: {error.strerror or error}", fix=fix) from None
