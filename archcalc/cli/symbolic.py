"""`archcalc analyze MODEL --sweep NAME=V1,V2,...`: one row of totals per point (analyze's
option; kept here so analyze.py stays small)."""

from __future__ import annotations

import click

from archcalc.cli.options import _size, load_from_options

# Points in one sweep: each costs an evaluation (or, for a model with subgraphs, an analysis).
MAX_POINTS = 10_000


def parse_sweeps(items: tuple[str, ...], bindings: dict[str, int]) -> list[tuple[str, list[int]]]:
    """``seq=128,512`` items as (name, values), in the order given."""
    sweeps: list[tuple[str, list[int]]] = []
    for item in items:
        name, _, text = item.partition("=")
        sizes = [_size(v) for v in text.split(",")] if text else []
        values = [v for v in sizes if v is not None]
        if not name.isidentifier() or not sizes or len(values) < len(sizes):
            raise click.BadParameter(f"'{item}' is not NAME=V1,V2,... with each V a size >= 1", param_hint="--sweep")
        if name in bindings or name in (n for n, _ in sweeps):
            raise click.BadParameter(f"'{name}' is swept and bound (or swept twice): give it once",
                                     param_hint="--sweep")
        sweeps.append((name, values))
    points = 1
    for _, values in sweeps:
        points *= len(values)
    if points > MAX_POINTS:
        raise click.BadParameter(f"{points:,} points, more than {MAX_POINTS:,}: sweep fewer values",
                                 param_hint="--sweep")
    return sweeps


def sweep(models: tuple[str, ...], fmt: str, bindings: dict[str, int], input_shapes: tuple[str, ...],
          items: tuple[str, ...], training: bool, exact: bool, kv_dtype: str | None = None, on_device=None,
          output: str | None = None) -> None:
    from archcalc.engine.sweep import run_sweep
    from archcalc.report import symbolic as report
    from archcalc.report.analysis import dumps_json

    if training:
        raise click.UsageError("--sweep gives inference totals: leave out --training and --fit")
    if fmt == "html" and len(models) > 1:
        raise click.UsageError("--sweep --format html draws one model: give one MODEL")
    sweeps = parse_sweeps(items, bindings)
    timer = None
    if on_device is not None:
        from archcalc.hardware.sweep import LatencyTimer

        timer = LatencyTimer(*on_device)
    swept = [name for name, _ in sweeps]
    # Every model first, so bad input (exit 2) stops the run before any output.
    results = []
    for model in models:
        graph = load_from_options(model, input_shapes)
        name = str(graph.metadata.get("name", "")) or model
        results.append((model, name, *run_sweep(graph, bindings, sweeps, kv_dtype, timer)))
    if fmt in ("json", "html"):
        documents = [report.sweep_json(model, name, swept, points, formulas, method)
                     for model, name, formulas, points, method in results]
        if fmt == "html":
            from archcalc.report.html import sweep_page, write_page

            write_page(sweep_page(documents[0]), output)
            return
        click.echo(dumps_json(documents[0] if len(documents) == 1 else documents))
        return
    console = None
    for index, (model, name, _, points, method) in enumerate(results):
        title = f"{name}: sweep of {', '.join(swept)}"
        if fmt == "csv":
            click.echo(report.sweep_csv(swept, points, model if len(results) > 1 else None, header=index == 0),
                       nl=False)
            continue
        if index:
            click.echo()
        if fmt == "markdown":
            click.echo(report.sweep_markdown(title, swept, points, method), nl=False)
            continue
        if console is None:
            from archcalc.cli.options import make_console

            console = make_console()
        report.render_sweep(title, swept, points, method, console, exact=exact)
