"""`archcalc analyze MODEL`: the per-layer table (or JSON, CSV, Markdown), with totals."""

from __future__ import annotations

import click

from archcalc.cli.options import batch_option, dim_option, input_shape_option, load_from_options, parse_dims, parse_size
from archcalc.core.collector import pause_gc
from archcalc.engine.setup import OPTIMIZER_STATES
from archcalc.hardware.precisions import PRECISION_SETUPS, WEIGHT_BITS

FORMATS = ("table", "json", "csv", "markdown")
SUMMARY_ABOVE = 300  # table rows; larger models get a summary unless --full


@click.command()
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
@click.option("--precision", type=click.Choice(list(PRECISION_SETUPS)), default="fp32",
              show_default=True, help="mixed: fp32 weights and gradients, half-precision activations (AMP). "
                                      "tf32, fp8, int8: with --device only (inference).")
@click.option("--fit", "fit_memory", default=None, metavar="SIZE|device",
              help="Report the largest batch whose training step fits in SIZE (e.g. 24GiB); `device`: in the "
                   "--device's memory, and the largest inference batch too.")
@click.option("--device", default=None, metavar="NAME|FILE",
              help="Estimate per-layer time on a device (see `archcalc devices`, or a device YAML file): "
                   "adds bound and time columns, latency, throughput and memory fit.")
@click.option("--weight-dtype", type=click.Choice(list(WEIGHT_BITS)), default=None,
              help="With --device: store weights in this dtype (quantised deployment); default the precision's.")
@click.option("--full", is_flag=True,
              help=f"Every layer in the table, even past {SUMMARY_ABOVE} rows (then a summary is the default).")
def analyze(model: str, fmt: str, batch: int | None, dims: tuple[str, ...], input_shapes: tuple[str, ...],
            depth: int | None, training: bool, optimizer: str, precision: str, fit_memory: str | None,
            full: bool, device: str | None, weight_dtype: str | None) -> None:
    """Per-layer output shapes, params, MACs, memory and receptive field, with totals."""
    from archcalc.engine.inference import analyze as run_analysis
    from archcalc.engine.rows import rows
    from archcalc.report import analysis as report

    graph = load_from_options(model, input_shapes)
    bindings = parse_dims(dims, batch)
    analysis = run_analysis(graph, bindings)
    on_device = _on_device(graph, bindings, analysis, device, precision, weight_dtype, fit_memory)
    step = fit = None
    if training or fit_memory:
        from archcalc.engine import training as train

        train_precision = _training_precision(precision)
        step = train.training_cost(graph, analysis, optimizer, train_precision)
        if fit_memory:
            memory = on_device.memory if fit_memory == "device" else parse_size(fit_memory, "--fit")
            fit = train.largest_batch(graph, bindings, memory, optimizer, train_precision) + (memory,)
    device_lines = device_document = None
    if on_device.roofline is not None:
        from archcalc.hardware.fit import largest_inference_batch
        from archcalc.report import roofline as device_report

        inference_fit = (largest_inference_batch(graph, bindings, on_device.roofline.device, on_device.roofline.setup)
                         if fit_memory == "device" else None)
        training_memory = step.totals.memory_bytes if step is not None else None
        device_fit = (fit[0], fit[1].memory_bytes) if fit is not None and fit_memory == "device" else None
        device_lines = device_report.device_lines(on_device.roofline, training_memory, device_fit, inference_fit)
        device_document = device_report.device_json(on_device.roofline, training_memory, device_fit, inference_fit)
    if fmt == "json":

        with pause_gc():  # the document is a few hundred thousand small objects and no cycles
            click.echo(report.render_json(analysis, step, fit, device_document))
        return
    table = rows(analysis, depth)
    if fmt == "csv":
        click.echo(report.render_csv(table, step, on_device.roofline), nl=False)
    elif fmt == "markdown":
        click.echo(report.render_markdown(analysis, table), nl=False)
        if step is not None:
            lines = report.training_lines(step, fit)
            click.echo("\n| Training | |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in lines))
        if on_device.roofline is not None and device_lines is not None:
            click.echo(device_report.markdown_section(table, on_device.roofline, device_lines), nl=False)
    else:
        from archcalc.report.console import make_console

        console = make_console()
        extra = None
        if on_device.roofline is not None:
            extra = (device_report.TABLE_HEADERS,
                     [device_report.table_cells(row) for row in device_report.roof_rows(table, on_device.roofline)])
        if len(table) > SUMMARY_ABOVE and not full:
            # A rich row costs ~0.4 ms: thousands of rows take seconds and no one reads them.
            report.render_summary(analysis, table, console)
        else:
            report.render_table(analysis, table, console, extra)
        if step is not None:
            report.render_training_table(table, step, fit, console)
        if device_lines is not None:
            report.print_pairs(device_lines, console)


class _OnDevice:
    """--device's roofline (None without --device) and the memory `--fit device` means."""

    def __init__(self, roofline, memory: int):
        self.roofline = roofline
        self.memory = memory


def _on_device(graph, bindings, analysis, device: str | None, precision: str, weight_dtype: str | None,
               fit_memory: str | None) -> _OnDevice:
    from archcalc.core.errors import ArchcalcError

    if device is None:
        if fit_memory == "device":
            raise ArchcalcError("--fit device needs --device", where="--fit",
                                fix="name the device, e.g. --device a100 --fit device, or give a size: --fit 24GiB")
        if weight_dtype is not None:
            raise ArchcalcError("--weight-dtype needs --device", where="--weight-dtype",
                                fix="add --device NAME (see `archcalc devices`)")
        return _OnDevice(None, 0)
    from archcalc.hardware.device import load_device
    from archcalc.hardware.roofline import roofline, setup_for

    chosen = load_device(device)
    return _OnDevice(roofline(analysis, chosen, setup_for(chosen, precision, weight_dtype)), chosen.memory_bytes)


def _training_precision(precision: str) -> str:
    from archcalc.core.errors import ArchcalcError
    from archcalc.hardware.precisions import TRAINING_PRECISION

    if precision not in TRAINING_PRECISION:
        raise ArchcalcError(f"a training step at {precision} is not modelled", where="--precision",
                            fix=f"use --precision {' or '.join(TRAINING_PRECISION)} with --training or --fit")
    return TRAINING_PRECISION[precision]
