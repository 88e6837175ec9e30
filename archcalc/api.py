"""archcalc from Python: read a model, analyse it, read the numbers.

    import archcalc
    analysis = archcalc.analyze("specs/resnet50.yaml", batch=8)
    analysis.totals.params, analysis.totals.macs
    analysis                    # in a notebook: the table the CLI prints
    analysis.to_dataframe()     # one row per layer (pandas)

    import torchvision
    archcalc.analyze(torchvision.models.resnet50(), input_size=(1, 3, 224, 224))

A model is a path (``.onnx``, ``.yaml``), an ``onnx.ModelProto``, a YAML spec as text or as
a dict, a loaded :class:`Graph`, a ``torch.nn.Module`` (exported to ONNX in memory; torch
is imported only then) or a Keras model (converted by tf2onnx in memory; likewise). The
command line is a thin layer over these functions; they raise :class:`ArchcalcError` (the
message the CLI prints, naming the file, the layer and the fix) on bad input, where the CLI
exits 2.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from archcalc.core.dims import Sym
from archcalc.core.errors import ArchcalcError
from archcalc.core.graph import Graph, Shape
from archcalc.core.results import Analysis as _Result
from archcalc.engine.symbolic import Formulas as _Formulas

if TYPE_CHECKING:
    import onnx

    from archcalc.compare.budget import ModelCheck
    from archcalc.compare.diff import ModelDiff
    from archcalc.engine.symbolic import Point
    from archcalc.engine.training import TrainingAnalysis
    from archcalc.runtime.verify import VerifyReport

InputShapes = Mapping[str, Sequence[int | str]]
# str | os.PathLike: a file, or a spec's text; Mapping: a spec as parsed YAML; Any: a torch.nn.Module
# or a Keras model
Model = Any


# -- reading --------------------------------------------------------------------------------

def load(model: Model, input_shapes: InputShapes | None = None, *, example_inputs: Any = None,
         input_size: Sequence[int] | None = None, exporter: str | None = None) -> Graph:
    """`model` as a Graph, its graph inputs fed at `input_shapes` where given
    ({"x": ("batch", 3, 320, 320)}: a name is a symbolic dim). A torch module is exported at
    `example_inputs`, `input_size` (its first input) or `input_shapes` (by forward()'s argument
    names, all numbers), with `exporter` "dynamo" or "torchscript" (default: dynamo, then
    TorchScript if dynamo fails). A Keras model is converted by tf2onnx at `input_size` or
    `input_shapes` (by input name; a named dim stays symbolic), else at its own input shapes
    with a symbolic ``batch``."""
    from archcalc.readers.torch import is_torch_module

    if input_shapes is not None and not isinstance(input_shapes, Mapping):
        raise ArchcalcError(f"input_shapes is a {type(input_shapes).__name__}, not a mapping of input names to "
                            "shapes", fix="give {'x': (1, 3, 224, 224)}; example tensors go in example_inputs=...")
    if is_torch_module(model):
        from archcalc.readers.torch import load_module

        return load_module(model, example_inputs, input_shapes=input_shapes, input_size=input_size,
                           exporter=exporter)
    from archcalc.readers.keras import is_keras_model

    if is_keras_model(model):
        if example_inputs is not None or exporter is not None:
            raise ArchcalcError("example_inputs and exporter are for PyTorch modules, not a Keras model",
                                fix="give input_size=(1, 224, 224, 3) or input_shapes={'image': (1, 224, 224, 3)}")
        from archcalc.readers.keras import load_keras

        return load_keras(model, input_shapes, input_size=input_size)
    if example_inputs is not None or input_size is not None or exporter is not None:
        raise ArchcalcError(f"example_inputs, input_size and exporter are for PyTorch modules, not a "
                            f"{type(model).__name__}", fix="give input_shapes={'x': (1, 3, 224, 224)} instead")
    shapes = _shapes(input_shapes) if input_shapes else None
    graph = _read(model)
    return graph.with_input_shapes(shapes) if shapes else graph


def _read(model: Model) -> Graph:
    if isinstance(model, Graph):
        return model
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    if isinstance(model, str):
        if "\n" in model:  # a file name holds no newline; a spec always does
            from archcalc.readers.spec.build import parse_spec

            return parse_spec(model, "<spec text>")
        from archcalc.readers.torch import is_factory_spec

        if not os.path.exists(model) and is_factory_spec(model):
            raise ArchcalcError(f"{model} names a model factory", fix="call it and pass the module it returns, "
                                "or use `archcalc analyze " + model + " --input-shape x=...` on the command line")
        from archcalc.readers.load import load_model

        return load_model(model)
    if isinstance(model, Mapping):
        import yaml

        from archcalc.readers.spec.build import parse_spec

        return parse_spec(yaml.safe_dump(dict(model), sort_keys=False), "<spec dict>")
    if type(model).__name__ == "ModelProto":
        from archcalc.readers.onnx import convert_model

        return convert_model(model, model.graph.name or "<onnx.ModelProto>")
    raise ArchcalcError(f"cannot analyse a {type(model).__module__}.{type(model).__name__}",
                        fix="pass a path (.onnx, .yaml), an onnx.ModelProto, a YAML spec (text or dict), "
                            "a torch.nn.Module or a Keras model")


def _shapes(input_shapes: InputShapes) -> dict[str, Shape]:
    return {name: tuple(Sym.symbol(d) if isinstance(d, str) else d for d in shape)
            for name, shape in input_shapes.items()}


# -- analysing ------------------------------------------------------------------------------

def _bindings(dims: Mapping[str, int] | None, batch: int | None) -> dict[str, int]:
    """`dims` and `batch` as the engine's bindings, each a whole number: 0 is a size (an empty
    cache: a prefill's past_seq), a negative one or a non-number is refused here, naming it."""
    bindings = dict(dims or {})
    if batch is not None:
        bindings["batch"] = batch
    for name, value in bindings.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ArchcalcError(f"{'batch' if name == 'batch' and batch is not None else f'dims[{name!r}]'} "
                                f"is {value!r}: a dim's size is a whole number >= 0",
                                fix='e.g. archcalc.analyze(model, batch=8, dims={"seq": 128})')
        bindings[name] = int(value)  # numpy's integers too
    return bindings


def analyze(model: Model, example_inputs: Any = None, *, batch: int | None = None,
            dims: Mapping[str, int] | None = None, input_shapes: InputShapes | None = None,
            training: bool | str | None = None, input_size: Sequence[int] | None = None,
            exporter: str | None = None) -> Analysis:
    """Shapes, params, MACs, FLOPs and memory of every layer of `model` (see :func:`load`),
    symbolic dims bound by `batch` (default 1) and `dims` ({"seq": 128}). `training`: also
    the cost of one training step (True for Adam, or an optimizer's name: "sgd", ...), in
    ``Analysis.training``."""
    from archcalc.engine.inference import analyze as analyze_graph

    bindings = _bindings(dims, batch)
    from archcalc.readers.torch import is_torch_module

    if input_shapes and example_inputs is None and input_size is None and is_torch_module(model):
        # a torch module is exported at numbers: a named dim takes its bound value here (a file or
        # spec keeps it symbolic, so that its counts stay formulas of it: engine/symbolic.py)
        input_shapes = {name: tuple(bindings.get(d, d) if isinstance(d, str) else d for d in shape)
                        for name, shape in input_shapes.items()}
    graph = load(model, input_shapes, example_inputs=example_inputs, input_size=input_size, exporter=exporter)
    result = analyze_graph(graph, bindings)
    step = None
    if training:
        from archcalc.engine.training import training_cost

        step = training_cost(graph, result, "adam" if training is True else str(training))
    return Analysis._of(result, graph, step)


@dataclass(frozen=True)
class Analysis(_Result):
    """What ``archcalc analyze`` reports: ``totals``, ``layers`` (each with its inputs and
    outputs, params, MACs, FLOPs, memory, receptive field), ``tensors``, ``warnings``, and
    ``training`` when asked. Shown as the CLI's table in a notebook or by ``rich.print``."""

    graph: Graph | None = field(default=None, compare=False, repr=False)
    training: TrainingAnalysis | None = field(default=None, compare=False, repr=False)

    @classmethod
    def _of(cls, result: _Result, graph: Graph | None = None, training: TrainingAnalysis | None = None) -> Analysis:
        return cls(**{f.name: getattr(result, f.name) for f in fields(_Result)}, graph=graph, training=training)

    def explain(self, layer: str) -> str:
        """One layer's formulas with its numbers substituted (``archcalc explain``)."""
        import difflib

        from archcalc.report.analysis import render_explanation

        found = self.layer(layer)
        if found is None:
            hint = difflib.get_close_matches(layer, [x.name for x in self.layers], n=3)
            raise ArchcalcError(f"no layer named '{layer}'", where=self.path,
                                fix=("did you mean: " + ", ".join(hint)) if hint else "list them: analysis.layers")
        return "\n".join(render_explanation(self, found))

    def roofline(self, device: Any, precision: str = "fp32", weight_dtype: str | None = None) -> Any:
        """Every layer's estimated time on `device` (a catalogue name such as "a100", a device
        file's path, or a loaded Device), as ``analyze --device`` reports it: a
        :class:`~archcalc.hardware.roofline.Roofline` with ``latency_s``, ``throughput``,
        ``layers`` (each with bytes, intensity, bound and time), ``share_by_op()`` and
        ``to_dict()`` (the JSON's ``roofline`` object)."""
        from archcalc.hardware.device import load_device
        from archcalc.hardware.roofline import roofline, setup_for

        chosen = load_device(device) if isinstance(device, str) else device
        return roofline(self, chosen, setup_for(chosen, precision, weight_dtype))

    def to_dict(self) -> dict[str, Any]:
        """The document ``archcalc analyze --format json`` prints, as plain dicts and lists."""
        import orjson

        from archcalc.report.analysis import render_json

        parsed: dict[str, Any] = orjson.loads(render_json(self, self.training))
        return parsed

    def to_dataframe(self, depth: int | None = None) -> Any:
        """One row per layer (per block at `depth`), as a pandas DataFrame; over the rows
        whose ``parent`` is empty (layers in a Loop/If body count in their parent's row),
        the columns sum to the totals, except params of a weight two layers share (counted
        once in the totals). Needs pandas: ``pip install 'archcalc[pandas]'``."""
        try:
            import pandas
        except ImportError:
            raise ArchcalcError("to_dataframe() needs pandas, which is not installed",
                                fix="pip install 'archcalc[pandas]' (or pandas)") from None
        from archcalc.engine.rows import rows

        parents = {layer.name: layer.parent for layer in self.layers}
        records = [{"name": row.name, "op": row.op, "output_shape": row.output_shape, "params": row.params,
                    "trainable_params": row.trainable_params, "buffers": row.buffers, "macs": row.macs,
                    "flops": row.flops, "activation_bytes": row.activation_bytes,
                    "receptive_field": row.receptive_field, "modelled": row.modelled, "layers": row.layers,
                    "parent": parents.get(row.name, "")}
                   for row in rows(self, depth)]
        return pandas.DataFrame.from_records(records, index="name")

    def formulas(self, dims: Mapping[str, int] | None = None, *, batch: int | None = None) -> Formulas:
        """Totals and each layer's MACs, FLOPs and activation bytes as exact polynomials of the
        symbolic dims (``analyze --symbolic``), those in `dims`/`batch` substituted: ``.macs``
        (a ``Sym``; ``str()`` prints it, ``bind(...)`` of archcalc.core.dims evaluates it),
        ``.dims``, ``.layers``, ``.to_dict()`` (the JSON document's ``symbolic`` key)."""
        from archcalc.engine.symbolic import fixed_bindings, formulas

        given = _bindings(dims, batch)
        return Formulas._of(formulas(self, fixed_bindings(given, self.graph.batch_dims if self.graph is not None
                                                          else ())))

    def to_html(self) -> Any:
        """The self-contained HTML page ``archcalc analyze --format html`` writes (a str that
        a notebook shows inline; ``.save(path)`` writes it)."""
        return to_html(self, self.training)

    def table(self, depth: int | None = None, full: bool = False) -> Any:
        """The table ``archcalc analyze`` prints (a rich renderable: ``rich.print(...)``), its
        layers folded at `depth`; above 300 rows a summary by op, unless `full`."""
        return _Table(self, depth, full)

    def __rich__(self) -> Any:
        return self.table()

    def _repr_html_(self) -> str:
        """The table in a notebook cell, as HTML (rich's export, colours inlined)."""
        import io

        from rich.console import Console

        console = Console(file=io.StringIO(), record=True, width=140, markup=False, highlight=False)
        console.print(self.table())
        return console.export_html(inline_styles=True, code_format="<pre style=\"font-family: Menlo, "
                                   "'DejaVu Sans Mono', Consolas, monospace; line-height: 1.2\">{code}</pre>")


def to_html(analysis: _Result, training: Any = None) -> Any:
    """The self-contained HTML page `archcalc analyze --format html` writes, as a str that a
    notebook cell shows inline (`_repr_html_`, in an iframe) and `.save(path)` writes."""
    from archcalc.report.html import analysis_page

    return analysis_page(analysis, training)


SUMMARY_ABOVE = 300  # rows: as the CLI, a larger table is summarised unless asked in full


class _Table:
    """An analysis' table as a rich renderable: what the report prints for the CLI, at the
    width of the console it is printed on, its styles kept."""

    def __init__(self, analysis: Analysis, depth: int | None, full: bool):
        self.analysis, self.depth, self.full = analysis, depth, full

    def __rich_console__(self, console: Any, options: Any) -> Any:
        import io

        from rich.console import Console
        from rich.text import Text

        from archcalc.engine.rows import rows
        from archcalc.report import analysis as report

        # The report prints to a console; one that records into text, with ANSI styles that
        # Text.from_ansi reads back, and markup off as the CLI's (a shape is not markup).
        inner = Console(file=io.StringIO(), width=options.max_width, markup=False, highlight=False, soft_wrap=False,
                        force_terminal=True, color_system="standard")
        table = rows(self.analysis, self.depth)
        if len(table) > SUMMARY_ABOVE and not self.full:
            report.render_summary(self.analysis, table, inner)
        else:
            report.render_table(self.analysis, table, inner)
        if self.analysis.training is not None:
            report.render_training_table(table, self.analysis.training, None, inner)
        printed = inner.file.getvalue()  # type: ignore[attr-defined]
        yield Text.from_ansi(printed.removesuffix("\n"), no_wrap=True)


@dataclass(frozen=True)
class Formulas(_Formulas):
    """A model's costs as formulas (engine/symbolic.Formulas: ``.macs``, ``.flops``,
    ``.activation_bytes``, ``.dims``, ``.layers``, ...), with ``.to_dict()``, the JSON
    document's ``symbolic`` key."""

    @classmethod
    def _of(cls, result: _Formulas) -> Formulas:
        return cls(**{f.name: getattr(result, f.name) for f in fields(_Formulas)})

    def to_dict(self) -> dict[str, Any]:
        from archcalc.report.symbolic import formulas_json

        return formulas_json(self)


@dataclass(frozen=True)
class Sweep:
    """A model's totals at every point of a grid of dim values (``analyze --sweep``): ``.points``
    (each a ``Point``: bindings, params, macs, flops, peak_activation_bytes, kv_cache_bytes,
    latency_s, ...), ``.formulas`` (None when the counts are not all formulas), ``.method``
    (how it was computed), ``.to_dict()`` (the ``--format json`` document)."""

    model: str
    name: str
    swept: tuple[str, ...]
    points: tuple[Point, ...]
    formulas: Formulas | None
    method: str

    def to_dict(self) -> dict[str, Any]:
        from archcalc.report.symbolic import sweep_json

        return sweep_json(self.model, self.name, self.swept, self.points, self.formulas, self.method)


def sweep(model: Model, values: Mapping[str, Sequence[int]], *, batch: int | None = None,
          dims: Mapping[str, int] | None = None, input_shapes: InputShapes | None = None,
          kv_dtype: str | None = None, device: str | None = None, precision: str = "fp32") -> Sweep:
    """`model`'s totals at every combination of `values` ({"seq": [128, 512], "batch": [1, 8]},
    the first dim varying slowest), other dims bound by `batch`/`dims`: one analysis and its
    formulas evaluated per point; a decoder's KV cache (in `kv_dtype`) at each point; with
    `device` (a name of ``archcalc devices`` or a device file), the roofline's latency at
    `precision`."""
    from archcalc.engine.sweep import run_sweep

    given = _bindings(dims, batch)
    sweeps = [(name, list(vals)) for name, vals in values.items()]
    if not sweeps or any(not vals or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1
                                         for v in vals) for _, vals in sweeps):
        raise ArchcalcError(f"sweep values {dict(values)}: give each dim one or more sizes >= 1",
                            fix='e.g. archcalc.sweep(model, {"seq": [128, 512]})')
    sweeps = [(name, [int(v) for v in vals]) for name, vals in sweeps]  # numpy's integers too
    clash = [name for name, _ in sweeps if name in given]
    if clash:
        raise ArchcalcError(f"'{clash[0]}' is swept and bound: give it once", fix="drop it from dims (or batch)")
    timer = None
    if device is not None:
        from archcalc.hardware.device import load_device
        from archcalc.hardware.roofline import setup_for
        from archcalc.hardware.sweep import LatencyTimer

        chosen = load_device(device)
        timer = LatencyTimer(chosen, setup_for(chosen, precision))
    graph = load(model, input_shapes)
    formulas, points, method = run_sweep(graph, given, sweeps, kv_dtype, timer)
    name = str(graph.metadata.get("name", "")) or graph.path
    return Sweep(graph.path, name, tuple(n for n, _ in sweeps), tuple(points),
                 None if formulas is None else Formulas._of(formulas), method)


# -- checking, comparing, verifying ---------------------------------------------------------

def check(analysis: Analysis | Model, budget: str | Mapping[str, Any], *, batch: int | None = None,
          dims: Mapping[str, int] | None = None) -> ModelCheck:
    """`analysis` (or a model, analysed at the budget's batch and dims) against `budget` (a
    budget file's path, its YAML text or a dict): ``.level`` is "pass", "warn" or "fail",
    ``.results`` one LimitResult per limit, as ``archcalc check`` reports."""
    from archcalc.compare.budget import Budget, check_model, load_budget, needs_training, parse_budget

    parsed: Budget
    if isinstance(budget, Mapping):
        import yaml

        parsed = parse_budget(yaml.safe_dump(dict(budget), sort_keys=False), "<budget dict>")
    elif "\n" in budget:
        parsed = parse_budget(budget, "<budget text>")
    else:
        parsed = load_budget(budget)
    if not isinstance(analysis, _Result):
        analysis = analyze(analysis, dims=parsed.bindings(batch=batch, dims=dims))
    step = analysis.training if isinstance(analysis, Analysis) else None
    if step is None and needs_training(parsed):
        graph = analysis.graph if isinstance(analysis, Analysis) else None
        if graph is None:
            raise ArchcalcError("the budget limits training cost, and this analysis has no graph to derive it from",
                                fix="pass the analysis that archcalc.analyze returned, or the model itself")
        from archcalc.engine.training import training_cost

        step = training_cost(graph, analysis, *parsed.training_setup())
    return check_model(analysis, parsed, step)


def diff(old: Analysis | Model, new: Analysis | Model, *, depth: int | None = None) -> ModelDiff:
    """What changed from `old` to `new`, layer by layer (``archcalc diff``): ``.layers``,
    ``.totals`` (a Delta per metric), ``.to_json()``. Models are analysed at batch 1."""
    from archcalc.compare.diff import diff_analyses

    return diff_analyses(old if isinstance(old, _Result) else analyze(old),
                         new if isinstance(new, _Result) else analyze(new), depth)


def verify(model: Analysis | Model, *, batch: int | None = None, dims: Mapping[str, int] | None = None,
           input_shapes: InputShapes | None = None, example_inputs: Any = None,
           input_size: Sequence[int] | None = None) -> VerifyReport:
    """Run `model` once in onnxruntime and compare every inferred shape (and the FLOPs
    derived from it) with what came out (``archcalc verify``): ``.ok``, ``.mismatches``.
    A model held in memory (a ModelProto, a torch module, a Keras model) runs from a temporary file."""
    import tempfile

    from archcalc.runtime import verify as verifier

    if isinstance(model, Analysis):
        if model.graph is None or model.graph.format == "onnx" and not os.path.isfile(model.graph.path):
            raise ArchcalcError("this analysis holds no model file to run",
                                fix="pass the model itself: archcalc.verify(model, ...)")
        model = model.graph
    with tempfile.TemporaryDirectory(prefix="archcalc-verify-") as scratch:
        if not isinstance(model, str | os.PathLike | Graph | Mapping):
            model = _to_file(model, scratch, example_inputs, input_size, input_shapes)
            input_shapes = None
        graph = load(model, input_shapes)
        analysis = verifier.analyze_for_verify(graph, _bindings(dims, batch))
        return verifier.verify(graph, analysis)


def _to_file(model: Any, folder: str, example_inputs: Any, input_size: Sequence[int] | None,
             input_shapes: InputShapes | None) -> str:
    """An in-memory model saved where onnxruntime can read it: verify runs ONNX files."""
    import onnx

    proto: onnx.ModelProto
    from archcalc.readers.torch import is_torch_module

    if is_torch_module(model):
        from archcalc.readers.torch import export_module

        proto = export_module(model, example_inputs, input_shapes=input_shapes, input_size=input_size)
    elif _is_keras(model):
        from archcalc.readers.keras import export_keras

        proto = export_keras(model, input_shapes, input_size=input_size)
    elif type(model).__name__ == "ModelProto":
        proto = model
    else:
        raise ArchcalcError(f"cannot verify a {type(model).__name__}",
                            fix="pass a path, an onnx.ModelProto, a YAML spec, a torch.nn.Module or a Keras model")
    path = os.path.join(folder, "model.onnx")
    onnx.save(proto, path)
    return path


def _is_keras(model: object) -> bool:
    from archcalc.readers.keras import is_keras_model

    return is_keras_model(model)
