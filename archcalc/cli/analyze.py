"""`archcalc analyze MODEL...`: the per-layer table (or JSON, CSV, Markdown), with totals."""

from __future__ import annotations

import click

from archcalc.cli.options import (
    batch_option,
    dim_option,
    examples,
    input_shape_option,
    load_from_options,
    parse_dims,
    parse_size,
)
from archcalc.core.collector import pause_gc
from archcalc.engine.setup import OPTIMIZER_STATES
from archcalc.hardware.precisions import PRECISION_SETUPS, WEIGHT_BITS

FORMATS = ("table", "json", "csv", "markdown", "html")
SUMMARY_ABOVE = 300  # table rows; larger models get a summary unless --full


@click.command(epilog=examples(
    "archcalc analyze specs/resnet50.yaml --depth 1            # one row per stage",
    "archcalc analyze model.onnx --input-shape x=batch,3,224,224 --batch 8",
    "archcalc analyze specs/resnet50.yaml --training --fit 24GiB  # largest batch that fits",
    "archcalc analyze specs/*.yaml --format csv                   # several models",
    "archcalc analyze specs/resnet50.yaml --format html -o report.html",
    "archcalc analyze specs/resnet50.yaml --device a100 --precision fp16 --batch 32  # time on a device",
    "archcalc analyze torchvision.models:resnet50 --input-shape x=1,3,224,224  # a PyTorch model factory",
    "archcalc analyze keras.applications:MobileNetV2 --depth 1  # Keras; weights=None: no download",
))
@click.argument("models", nargs=-1, required=True, type=click.Path(), metavar="MODEL...")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="table: for the terminal; json: every layer and tensor (several models: a list of "
                   "documents); csv: one line per row (several models: a leading `model` column); markdown; html: one "
                   "self-contained page with the graph drawn (one MODEL; -o FILE).")
@batch_option()
@dim_option()
@input_shape_option()
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Fold the layers of each block instance into one row, DEPTH levels down the block "
                   "path (1: layer1, 2: layer1.0 for a ResNet; a repeated block's name is a level). "
                   "Table, CSV and Markdown (html: the view it opens on); --format json always lists every layer.")
@click.option("--training", is_flag=True, help="Also the cost of one training step: backward MACs and memory.")
@click.option("--optimizer", type=click.Choice(list(OPTIMIZER_STATES)), default="adam",
              show_default=True, help="Optimizer whose state counts in training memory.")
@click.option("--precision", type=click.Choice(list(PRECISION_SETUPS)), default="fp32",
              show_default=True, help="The training step's (--training, --fit) and the deployment's (--device). "
                                      "mixed: fp32 weights and gradients, half-precision activations (AMP). "
                                      "tf32, fp8, int8: --device only.")
@click.option("--fit", "fit_memory", default=None, metavar="SIZE|device",
              help="Report the largest batch whose training step fits in SIZE (e.g. 24GiB); `device`: in the "
                   "--device's memory, and the largest inference batch too.")
@click.option("--device", default=None, metavar="NAME|FILE",
              help="Estimate per-layer time on a device (see `archcalc devices`, or a device YAML file): "
                   "adds bound and time columns, latency, throughput and memory fit.")
@click.option("--weight-dtype", type=click.Choice(list(WEIGHT_BITS)), default=None,
              help="With --device: store weights in this dtype (quantised deployment); default the precision's.")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False),
              help="Write --format html to this file (atomically) instead of stdout.")
@click.option("--exact", is_flag=True,
              help="Every digit of params and MACs in the table (default: units, 118.01 M); JSON and CSV are exact.")
@click.option("--symbolic", is_flag=True,
              help="Also MACs, FLOPs and activation bytes as exact formulas of the symbolic dims that no --dim or "
                   "--batch binds (per row and in total; --format json: structured polynomials).")
@click.option("--sweep", "sweeps", multiple=True, metavar="NAME=V1,V2,...",
              help="One row of totals per value of a symbolic dim, e.g. --sweep seq=128,512,2048; repeat for a grid "
                   "(--sweep batch=1,8). One analysis, its formulas evaluated per point; with --device, the estimated "
                   "latency at each point.")
@click.option("--context", "context_tokens", type=click.IntRange(min=1), default=None, metavar="C",
              help="A decoder's generation at C tokens: KV cache per token and at C (times --batch), prefill of C "
                   "tokens, decode cost per token with C cached, memory to serve (table, json, markdown).")
@click.option("--kv-dtype", type=click.Choice(["fp32", "fp16", "bf16", "fp8", "int8"]), default=None,
              help="The KV cache's element type (default: the keys' dtype).")
@click.option("--serve-fit", default=None, metavar="SIZE",
              help="With --context C: also the largest context whose memory to serve (weights + KV cache + prefill "
                   "peak activations) fits in SIZE (e.g. 24GiB) at --batch, and the largest batch of C tokens that "
                   "does.")
@click.option("--kv-layers", type=click.IntRange(min=1), default=None,
              help="With --kv-heads and --head-dim: describe the KV cache where detection fails.")
@click.option("--kv-heads", type=click.IntRange(min=1), default=None,
              help="Key/value heads per layer (see --kv-layers).")
@click.option("--head-dim", type=click.IntRange(min=1), default=None, help="Head size (see --kv-layers).")
@click.option("--compare-source", default=None, type=click.Path(), metavar="SOURCE",
              help="Beside each MODEL's params, MACs, integer MACs, weight bytes and scale/zero-point bytes, "
                   "SOURCE's (the model it was optimized, quantised or converted from) at the same dims, and "
                   "their ratio (table or json).")
@click.option("--full", is_flag=True,
              help=f"Every layer in the table, even past {SUMMARY_ABOVE} rows (then a summary is the default).")
def analyze(models: tuple[str, ...], fmt: str, batch: int | None, dims: tuple[str, ...],
            input_shapes: tuple[str, ...], depth: int | None, training: bool, optimizer: str, precision: str,
            fit_memory: str | None, output: str | None, exact: bool, symbolic: bool, sweeps: tuple[str, ...],
            context_tokens: int | None, kv_dtype: str | None, serve_fit: str | None, kv_layers: int | None,
            kv_heads: int | None, head_dim: int | None, full: bool, device: str | None,
            weight_dtype: str | None, compare_source: str | None) -> None:
    """Per-layer output shapes, params, MACs, memory and receptive field, with totals, of each
    MODEL (a YAML spec or an ONNX file)."""
    from archcalc.engine.rows import rows
    from archcalc.report import analysis as report

    context = click.get_current_context()
    for option in ("optimizer", "precision"):
        given = context.get_parameter_source(option) == click.core.ParameterSource.COMMANDLINE
        if given and not (training or fit_memory or (option == "precision" and device)):
            raise click.UsageError(f"--{option} sets the training step, which only --training or --fit counts: "
                                   f"add --training, or leave --{option} out")
    if output is not None and fmt != "html":
        raise click.UsageError("-o writes --format html only: add --format html, or redirect the output")
    if compare_source is not None and fmt not in ("table", "json"):
        raise click.UsageError("--compare-source reports in table or json: use --format json for a file")
    if fmt == "html" and len(models) > 1:
        raise click.UsageError("--format html draws one model: give one MODEL (or compare two with archcalc diff)")
    on_device = _device_setup(device, precision, weight_dtype, fit_memory)
    memory = (on_device[0].memory_bytes if fit_memory == "device" and on_device is not None
              else parse_size(fit_memory, "--fit") if fit_memory else None)
    if serve_fit is not None and context_tokens is None:
        raise click.UsageError("--serve-fit searches the context of --context's report: add --context C")
    serve_memory = parse_size(serve_fit, "--serve-fit") if serve_fit else None
    described = None
    if kv_layers or kv_heads or head_dim:
        if not (kv_layers and kv_heads and head_dim) or context_tokens is None:
            raise click.UsageError("--kv-layers, --kv-heads and --head-dim describe the cache together, for --context")
        from archcalc.engine.kv import given_cache

        described = given_cache(kv_layers, kv_heads, head_dim, kv_dtype)
    if kv_dtype and context_tokens is None and not sweeps:
        raise click.UsageError("--kv-dtype sets the cache that --context or --sweep counts: add --context C")
    if context_tokens is not None and sweeps:
        raise click.UsageError("--sweep gives the KV cache at each point's sequence length: leave out --context")
    if context_tokens is not None and fmt in ("csv", "html"):
        raise click.UsageError("--context reports in table, json or markdown: use --format json for a file")
    if sweeps or symbolic:
        from archcalc.cli import symbolic as symbolic_cli

        if sweeps:
            symbolic_cli.sweep(models, fmt, parse_dims(dims, batch), input_shapes, sweeps, training or bool(memory),
                               exact, kv_dtype, on_device, output)
            return
        if fmt == "html":
            raise click.UsageError("--symbolic prints formulas in table, json, csv or markdown: "
                                   "leave out --format html")
    # Every model first, so bad input (exit 2) stops the run before any output.
    results = [_analysed(model, input_shapes, parse_dims(dims, batch), training, optimizer, precision, memory,
                         symbolic, context_tokens, kv_dtype, described, serve_memory) for model in models]
    devices = [_on_device(result[:4], on_device, input_shapes, parse_dims(dims, batch), fit_memory == "device")
               for result in results]
    compared: list = [None] * len(results)  # SourceComparison, one per MODEL, with --compare-source
    if compare_source is not None:
        from archcalc.compare.source import compare_to_source

        source = _analysed(compare_source, input_shapes, parse_dims(dims, batch), False, optimizer, precision,
                           None)[1]
        compared = [compare_to_source(result[1], source) for result in results]
    # Held by the run's context, the results outlive this function: the program ends without
    # freeing them object by object (cli.main.program: a 50k-layer model's are ~5% of the run);
    # in-process callers (tests) free them with the context.
    context.meta["archcalc.analyze.results"] = results
    if fmt == "html":
        from archcalc.report.html import analysis_page, write_page

        _, analysis, step, fit, _, _ = results[0]
        on_page = None if devices[0] is None else (devices[0][0], devices[0][2])
        write_page(analysis_page(analysis, step, fit, depth, on_page), output)
        return
    if fmt == "json":
        with pause_gc():  # the document is a few hundred thousand small objects and no cycles
            documents = [report.json_document(analysis, step, fit, None if costs is None else costs[2])
                         for (_, analysis, step, fit, _, _), costs in zip(results, devices)]
            for document, result, comparison in zip(documents, results, compared):
                if result[5] is not None:
                    document["generation"] = result[5].to_json()
                if comparison is not None:
                    document["compare_source"] = comparison.to_json()
            if symbolic:
                from archcalc.report.symbolic import add_formulas_to_document

                documents = [add_formulas_to_document(document, result[4])
                             for document, result in zip(documents, results)]
            click.echo(report.json_bytes(documents[0] if len(documents) == 1 else documents))
            context.meta["archcalc.analyze.documents"] = documents  # as the results above
        return
    console = None
    for index, ((model, analysis, step, fit, formulas, generation), costs) in enumerate(zip(results, devices)):
        table = rows(analysis, depth)
        if depth is not None and not any(layer.block for layer in analysis.layers):
            click.echo(f"warning: --depth {depth} folds nothing: {model} has no blocks (a spec's blocks, or the "
                       "scopes exporters write into node names: '/layer1/layer1.0/conv1/Conv', 'model/conv1/Conv2D', "
                       "'layer1.0.conv1'), so every layer keeps its row", err=True)
        if fmt == "csv":
            text = report.render_csv(table, step, None if costs is None else costs[0])
            if formulas is not None:
                from archcalc.report.symbolic import csv_with_formulas

                text = csv_with_formulas(text, formulas, table)
            click.echo(text if len(results) == 1 else _with_model_column(text, model, header=index == 0), nl=False)
            continue
        if index:
            click.echo()
        if fmt == "markdown":
            click.echo(report.render_markdown(analysis, table), nl=False)
            if formulas is not None:
                from archcalc.report.symbolic import formulas_markdown

                click.echo(formulas_markdown(formulas, table), nl=False)
            if generation is not None:
                from archcalc.report.symbolic import generation_lines

                click.echo("\n| Generation | |\n|---|---|\n" + "\n".join(f"| {a} | {b} |"
                                                                       for a, b in generation_lines(generation)))
            if step is not None:
                lines = report.training_lines(step, fit)
                click.echo("\n| Training | |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in lines))
            if costs is not None:
                from archcalc.report.roofline import markdown_section

                click.echo(markdown_section(table, costs[0], costs[1]), nl=False)
            continue
        if console is None:
            from archcalc.cli.options import make_console

            console = make_console()
        extra = None
        if costs is not None:
            from archcalc.report import roofline as device_report

            extra = (device_report.TABLE_COLUMNS,
                     [device_report.table_cells(row) for row in device_report.roof_rows(table, costs[0])])
        if len(table) > SUMMARY_ABOVE and not full:
            # A rich row costs ~0.4 ms: thousands of rows take seconds and no one reads them.
            report.render_summary(analysis, table, console, exact=exact)
        else:
            report.render_table(analysis, table, console, exact=exact, extra=extra)
        if step is not None:
            report.render_training_table(table, step, fit, console, exact=exact)
        if costs is not None:
            report.print_pairs(costs[1], console)
        if formulas is not None:
            from archcalc.report.symbolic import render_formulas

            render_formulas(formulas, table, console, SUMMARY_ABOVE if not full else len(table))
        if generation is not None:
            from archcalc.report.symbolic import render_generation

            render_generation(generation, console)
        if compared[index] is not None:
            from archcalc.report.source import render_comparison

            render_comparison(compared[index], console)


def _analysed(model: str, input_shapes: tuple[str, ...], bindings: dict[str, int], training: bool,
              optimizer: str, precision: str, memory: int | None, symbolic: bool = False, context: int | None = None,
              kv_dtype: str | None = None, described=None, serve_memory: int | None = None) -> tuple:
    """(model, analysis, training step or None, fit or None, formulas or None, generation or None) of one MODEL."""
    from archcalc.engine.inference import analyze as run_analysis

    graph = load_from_options(model, input_shapes)
    if symbolic or context is not None:
        from archcalc.engine.symbolic import analyze_unbound

        analysis = analyze_unbound(graph, bindings)
    else:
        analysis = run_analysis(graph, bindings)
    step = fit = None
    if training or memory:
        from archcalc.engine import training as train

        precision = _training_precision(precision)
        step = train.training_cost(graph, analysis, optimizer, precision)
        if memory:
            fit = train.largest_batch(graph, bindings, memory, optimizer, precision) + (memory,)
    from archcalc.engine.symbolic import fixed_bindings
    from archcalc.engine.symbolic import formulas as symbolic_formulas

    formulas = None
    if symbolic:
        formulas = symbolic_formulas(analysis, fixed_bindings(bindings, graph.batch_dims))
    generation = None
    if context is not None:
        from archcalc.engine.kv import generation as generation_at

        generation = generation_at(analysis, bindings, graph.batch_dims, context, kv_dtype, described)
        if serve_memory is not None:
            from dataclasses import replace

            from archcalc.engine.kv import largest_batch, largest_context

            largest = largest_context(analysis, bindings, graph.batch_dims, serve_memory, generation.cache)
            batches = largest_batch(analysis, bindings, graph.batch_dims, serve_memory, generation.cache, context)
            generation = replace(generation, fit=(serve_memory, largest), fit_batch=batches)
        if generation.prefill is not None:  # the table's counts at the prompt of --context, not at a placeholder
            from archcalc.engine.kv import prompt

            analysis = run_analysis(graph, {**bindings, **prompt(generation.cache, context)})
            if symbolic:
                formulas = symbolic_formulas(analysis, fixed_bindings(bindings, graph.batch_dims))
    return model, analysis, step, fit, formulas, generation


def _device_setup(device: str | None, precision: str, weight_dtype: str | None, fit_memory: str | None):
    """(device, setup) of --device, or None without it; the options that need it refused without."""
    from archcalc.core.errors import ArchcalcError

    if device is None:
        if fit_memory == "device":
            raise ArchcalcError("--fit device needs --device", where="--fit",
                                fix="name the device, e.g. --device a100 --fit device, or give a size: --fit 24GiB")
        if weight_dtype is not None:
            raise ArchcalcError("--weight-dtype needs --device", where="--weight-dtype",
                                fix="add --device NAME (see `archcalc devices`)")
        return None
    from archcalc.hardware.device import load_device
    from archcalc.hardware.roofline import setup_for

    chosen = load_device(device)
    return chosen, setup_for(chosen, precision, weight_dtype)


def _on_device(result: tuple, on_device, input_shapes: tuple[str, ...], bindings: dict[str, int],
               fit_device: bool):
    """(roofline, total lines, JSON document) of one analysed MODEL on --device, or None."""
    if on_device is None:
        return None
    from archcalc.hardware.fit import largest_inference_batch
    from archcalc.hardware.roofline import roofline
    from archcalc.report import roofline as device_report

    model, analysis, step, fit = result
    device, setup = on_device
    costs = roofline(analysis, device, setup)
    inference_fit = None
    if fit_device:
        graph = load_from_options(model, input_shapes)  # as _analysed read it
        inference_fit = largest_inference_batch(graph, bindings, device, setup)
    training_memory = step.totals.memory_bytes if step is not None else None
    training_fit = (fit[0], fit[1].memory_bytes) if fit is not None and fit_device else None
    return (costs, device_report.device_lines(costs, training_memory, training_fit, inference_fit),
            device_report.device_json(costs, training_memory, training_fit, inference_fit))


def _training_precision(precision: str) -> str:
    from archcalc.core.errors import ArchcalcError
    from archcalc.hardware.precisions import TRAINING_PRECISION

    if precision not in TRAINING_PRECISION:
        raise ArchcalcError(f"a training step at {precision} is not modelled", where="--precision",
                            fix=f"use --precision {' or '.join(TRAINING_PRECISION)} with --training or --fit")
    return TRAINING_PRECISION[precision]


def _with_model_column(text: str, model: str, header: bool) -> str:
    """One model's CSV with a leading `model` column, its header line only when `header`."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for number, line in enumerate(csv.reader(io.StringIO(text))):
        if number or header:
            writer.writerow(["model" if number == 0 else model, *line])
    return out.getvalue()
