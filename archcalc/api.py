"""archcalc from Python: read a model, analyse it, read the numbers.

    import archcalc
    analysis = archcalc.analyze("specs/resnet50.yaml", batch=8)
    analysis.totals.params, analysis.totals.macs

The command line is a thin layer over these functions; they raise
:class:`~archcalc.core.errors.ArchcalcError` (a message naming the file, the layer and
the fix) on bad input, where the CLI exits 2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from archcalc.core.dims import Sym
from archcalc.core.graph import Graph, Shape
from archcalc.core.results import Analysis
from archcalc.engine.inference import analyze as _analyze_graph
from archcalc.readers.load import load_model

InputShapes = Mapping[str, Sequence[int | str]]


def load(path: str, input_shapes: InputShapes | None = None) -> Graph:
    """The YAML spec (``*.yaml``, ``*.yml``) or ONNX file (``*.onnx``) at `path` as a
    Graph; `input_shapes` feeds graph inputs at other shapes ({"x": ("batch", 3, 320, 320)},
    a name being a symbolic dim)."""
    return load_model(path, _shapes(input_shapes) if input_shapes else None)


def _shapes(input_shapes: InputShapes) -> dict[str, Shape]:
    return {name: tuple(Sym.symbol(d) if isinstance(d, str) else d for d in shape)
            for name, shape in input_shapes.items()}


def analyze(model: str | Graph, *, batch: int | None = None, dims: Mapping[str, int] | None = None,
            input_shapes: InputShapes | None = None) -> Analysis:
    """Shapes, params, MACs, FLOPs and memory of every layer of `model` (a path or a
    loaded Graph), symbolic dims bound by `batch` (default 1) and `dims` ({"seq": 128})."""
    graph = load(model, input_shapes) if isinstance(model, str) else (
        model.with_input_shapes(_shapes(input_shapes)) if input_shapes else model)
    bindings = dict(dims or {})
    if batch is not None:
        bindings["batch"] = batch
    return _analyze_graph(graph, bindings)


def to_html(analysis: Analysis, training=None) -> str:
    """The self-contained HTML page `archcalc analyze --format html` writes, as a str that a
    notebook cell shows inline (`_repr_html_`, in an iframe) and `.save(path)` writes."""
    from archcalc.report.html import analysis_page

    return analysis_page(analysis, training)
