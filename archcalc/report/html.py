"""One self-contained HTML page per analysis (or per diff): totals, where the cost is, the
graph drawn with each layer's cost, a sortable table, memory over time and, with
--training, the training step.

The page is built in the browser by page.js (beside this module, inlined with page.css)
from one JSON object embedded in the page: `json`, exactly the document `analyze --format
json` (or `diff --format json`) prints, so every total on the page is that document's,
plus `page`, what drawing needs and the JSON does not carry: rows folded at each block
depth, the graph laid out (see graph_layout), each layer's explain text, the live bytes
over time and the training step per row. Nothing is fetched when the page opens.
"""

from __future__ import annotations

import html
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from importlib import resources
from typing import Any

from archcalc import __version__
from archcalc.compare.diff import ModelDiff, diff_analyses
from archcalc.core.dims import format_shape
from archcalc.core.results import Analysis
from archcalc.engine.rows import Row, rows
from archcalc.report.analysis import json_document, op_summary, render_explanation, training_rows
from archcalc.report.graph_layout import layered_layout

# A graph with more nodes than this is drawn only folded, with a note: an SVG of tens of
# thousands of boxes takes the browser seconds to lay out and is unreadable anyway.
MAX_GRAPH_NODES = 5_000
# A level with about this many boxes opens first: ResNet-50 reads as ~20 blocks.
FIRST_VIEW_NODES = 40
# A folded view of at most this many rows gets each block's opened view laid out beforehand.
MAX_OPENABLE_ROWS = 60
# When no block or scope folds a big graph, consecutive layers fold into this many groups.
CHUNKED_GROUPS = 200


class HtmlPage(str):
    """A page's text that a notebook shows inline: Jupyter calls `_repr_html_`, which puts the
    page in an iframe (its srcdoc), so the page's script and styles stay out of the notebook's."""

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html.escape(self, quote=True)}" style="width: 100%; height: 820px; '
                'border: 1px solid #d9dee5; border-radius: 8px"></iframe>')

    def save(self, path: str) -> None:
        """Write the page to `path` atomically."""
        write_page(self, path)


def analysis_page(analysis: Analysis, training=None, fit=None, depth: int | None = None,
                  on_device: tuple[Any, dict[str, Any]] | None = None) -> HtmlPage:
    """The HTML page of one analysis (with `training` from analyze --training), opening on
    the rows folded at `depth` when given (as --depth folds the table). `on_device`: the
    Roofline of analyze --device and its JSON document, for the roofline section."""
    page = {
        "kind": "analysis",
        "version": __version__,
        **_model_page(analysis, training, None, depth),
    }
    document = json_document(analysis, training, fit, None if on_device is None else on_device[1])
    if on_device is not None:
        page["roofline"] = roofline_page(on_device[0])
    return _html(f"archcalc: {analysis.name or analysis.path}", {"json": document, "page": page})


def roofline_page(costs: Any) -> dict[str, Any]:
    """What the roofline chart draws besides the JSON's `roofline` object: the device's roofs
    (FLOP/s of the matrix and vector units at the compute dtype, bytes/s of memory and of the
    cache level) and one point per top-level layer with FLOPs and bytes: [name, op,
    intensity, FLOP/s it runs at (FLOPs / estimated time), time, bound]."""
    device, dtype = costs.device, costs.setup.compute_dtype
    bandwidth = device.bandwidth.value * device.memory_efficiency.value
    points = [[layer.name, layer.op, layer.intensity, layer.flops / layer.time_s, layer.time_s, layer.bound]
              for layer in costs.counted if layer.flops and layer.bytes and layer.time_s]
    return {
        "device": f"{device.title} ({device.name})", "dtype": dtype,
        "peak": device.peak(dtype), "vector_peak": device.vector_peak(dtype), "bandwidth": bandwidth,
        "cache_bandwidth": (device.cache_bandwidth.value * device.memory_efficiency.value
                            if device.cache_bandwidth is not None else None),
        "ridge": device.peak(dtype) / bandwidth,
        "points": points,
    }


def diff_page(result: ModelDiff, old: Analysis, new: Analysis) -> HtmlPage:
    """The HTML page of a diff: both models' totals, the new model's graph with each layer's
    change marked, and the per-row changes (every row, unchanged ones too)."""
    per_layer = diff_analyses(old, new) if result.depth is not None else result
    status = {layer.new.name: layer.status for layer in per_layer.layers if layer.new is not None}
    removed = [layer.old.name for layer in per_layer.layers if layer.old is not None and layer.new is None]
    old_label, new_label = result.labels()
    page = {
        "kind": "diff",
        "version": __version__,
        "labels": [old_label, new_label],
        "removed": removed,
        **_model_page(new, None, status, result.depth),
    }
    document = result.to_json(include_unchanged=True)
    return _html(f"archcalc diff: {old_label} → {new_label}", {"json": document, "page": page})


def _model_page(analysis: Analysis, training, status: Mapping[str, str] | None = None,
                depth: int | None = None) -> dict[str, Any]:
    top = replace(analysis, layers=tuple(layer for layer in analysis.layers if not layer.parent))
    foldings = _levels(top)
    levels = [_level(top, level_depth, table, training, status) for level_depth, table in foldings]
    for index in range(len(levels) - 1):
        if "x" in levels[index] and len(foldings[index][1]) <= MAX_OPENABLE_ROWS:
            levels[index]["open"] = _openings(top, foldings[index], foldings[index + 1][1], training, status)
    first = _first_level(levels)
    if depth is not None:  # the deepest folding at or above the depth asked for (deeper ones may repeat it)
        first = max((i for i, level in enumerate(levels) if level["depth"] and level["depth"] <= depth), default=first)
    return {
        "levels": levels,
        "first_level": first,
        "explain": {layer.name: render_explanation(analysis, layer) for layer in analysis.layers},
        "live": {"layers": [layer.name for layer in top.layers], "bytes": list(analysis.live_bytes)},
        "ops": [list(entry) for entry in op_summary(foldings[-1][1])],
    }


def _openings(analysis: Analysis, folding: tuple[int | None, list[Row]], deeper: list[Row], training,
              status: Mapping[str, str] | None) -> dict[str, dict[str, Any]]:
    """For each block row of a folded view, the view with that block alone opened one level
    down (its rows from `deeper`, the others still folded), laid out: what "Open this block"
    shows."""
    depth, table = folding
    first_of = {row.members[0]: row for row in deeper}
    views = {}
    for index, row in enumerate(table):
        if row.layers < 2:
            continue
        inside = [first_of[name] for name in row.members if name in first_of]
        if len(inside) < 2:
            continue
        mixed = [*table[:index], *inside, *table[index + 1:]]
        view = _level(analysis, depth, mixed, training, status)
        view["label"] = f"{row.name} opened"
        views[str(index)] = view  # JSON keys are strings
    return views


def _first_level(levels: list[dict[str, Any]]) -> int:
    """The view the page opens on: the most detailed drawn level of at most FIRST_VIEW_NODES
    boxes (ResNet-50's 23 blocks), unless that is a handful, then the next larger one."""
    drawn = sorted((len(level["rows"]), i) for i, level in enumerate(levels) if "x" in level)
    if not drawn:
        return 0
    small = [entry for entry in drawn if entry[0] <= FIRST_VIEW_NODES]
    if small and (small[-1][0] >= 6 or len(small) == len(drawn)):
        return small[-1][1]
    return drawn[len(small)][1]


def _levels(analysis: Analysis) -> list[tuple[int | None, list[Row]]]:
    """(depth, rows) of every distinct folding, shallowest first, ending with every layer.
    Folding stops at the first depth that adds no row (a level holding only one block
    below it: nothing deeper is worth a view of its own)."""
    full = rows(analysis)
    found: list[tuple[int | None, list[Row]]] = []
    depth = 1
    foldable = any(layer.block for layer in analysis.layers)
    while foldable:
        table = rows(analysis, depth)
        if len(table) == len(full) or (found and len(table) == len(found[-1][1])):
            break
        if not found or len(table) > len(found[-1][1]) * 1.1:  # a view barely larger than the last is skipped
            found.append((depth, table))
        depth += 1
    if not any(len(table) <= MAX_GRAPH_NODES for _, table in found) and len(full) > MAX_GRAPH_NODES:
        found.insert(0, (0, _chunked(analysis)))
    return [*found, (None, full)]


def _chunked(analysis: Analysis) -> list[Row]:
    """Consecutive layers folded into CHUNKED_GROUPS rows: the one folding a graph without
    blocks or name scopes has. Depth 0 stands for it."""
    size = math.ceil(len(analysis.layers) / CHUNKED_GROUPS)
    count = len(analysis.layers)
    layers = tuple(replace(layer, block=f"layers {i // size * size + 1}-{min(count, i // size * size + size)}")
                   for i, layer in enumerate(analysis.layers))
    return rows(replace(analysis, layers=layers), 1)


def _level(analysis: Analysis, depth: int | None, table: list[Row], training,
           status: Mapping[str, str] | None) -> dict[str, Any]:
    level: dict[str, Any] = {
        "depth": depth,
        "label": ("every layer" if depth is None else
                  f"{len(table):,} groups of consecutive layers" if depth == 0 else f"blocks, depth {depth}"),
        "rows": [[row.name, row.op, row.output_shape, row.params, row.macs, row.flops, row.activation_bytes,
                  row.receptive_field, row.modelled, row.layers] for row in table],
    }
    if depth is not None:
        level["members"] = [list(row.members) for row in table]
    if training is not None:
        level["training"] = [list(entry[1:]) for entry in training_rows(table, training)]
    if status is not None:
        level["status"] = [_row_status(row, status) for row in table]
    if depth == 0:
        level["note"] = (f"{len(analysis.layers):,} layers are too many to draw one by one (more than "
                         f"{MAX_GRAPH_NODES:,}) and no block or name scope folds them: shown as groups of "
                         "consecutive layers; click one for its layers, the table lists every layer")
    if len(table) > MAX_GRAPH_NODES:
        level["note"] = (f"{len(table):,} nodes are too many to draw (more than {MAX_GRAPH_NODES:,}): "
                         "choose a folded view; the table lists every row")
        return level
    level.update(_graph(analysis, table))
    return level


def _row_status(row: Row, status: Mapping[str, str]) -> str:
    found = {status.get(name, "unchanged") for name in row.members}
    if len(found) == 1:
        return found.pop()
    return "changed" if found - {"unchanged"} else "unchanged"


def _graph(analysis: Analysis, table: Sequence[Row]) -> dict[str, Any]:
    """Nodes (the rows, then the graph inputs) and edges: one per pair of nodes that a
    tensor joins, labelled with the tensors' shapes; laid out top to bottom."""
    row_of: dict[str, int] = {}
    for index, row in enumerate(table):
        for name in row.members:
            row_of[name] = index
    producer: dict[str, int] = {}
    for layer in analysis.layers:
        for tensor in layer.outputs:
            producer[tensor.name] = row_of[layer.name]
    inputs = [name for name, info in analysis.known_tensors.items() if getattr(info, "kind", "") == "input"]
    input_node = {name: len(table) + i for i, name in enumerate(inputs)}
    labels: dict[tuple[int, int], list[str]] = {}
    data: set[tuple[int, int]] = set()  # pairs joined by at least one tensor that is not shape arithmetic
    for layer in analysis.layers:
        target = row_of[layer.name]
        for tensor in layer.inputs:
            source = producer.get(tensor.name, input_node.get(tensor.name))
            if source is None or source == target:
                continue
            shape = _shape_text(tensor)
            shapes = labels.setdefault((source, target), [])
            if shape not in shapes:
                shapes.append(shape)
            if not _is_shape_arithmetic(tensor):
                data.add((source, target))
    used = sorted({source for source, _ in labels if source >= len(table)})
    renumber = {old: len(table) + i for i, old in enumerate(used)}  # inputs no layer reads are left out
    edges = [(renumber.get(s, s), t) for s, t in labels]
    weak = [pair not in data for pair in labels]
    layout = layered_layout(len(table) + len(used), edges, weak)
    shapes_of = {name: _shape_text(analysis.tensors[name]) if name in analysis.tensors else "?"
                 for name in inputs}
    return {
        "inputs": [[inputs[old - len(table)], shapes_of[inputs[old - len(table)]]] for old in used],
        "x": layout.x, "y": layout.y, "width": layout.width, "height": layout.height,
        "edges": [[s, t, " | ".join(shapes), line, int(thin)] for (s, t), shapes, line, thin in
                  zip(edges, labels.values(), layout.edges, weak)],
    }


def _is_shape_arithmetic(tensor) -> bool:
    """An integer tensor of rank 0 or 1: a shape, an index or a size that an exported graph
    computes at run time, not data flowing through the model."""
    return tensor.dtype.startswith(("int", "uint")) and tensor.shape is not None and len(tensor.shape) <= 1


def _shape_text(tensor) -> str:
    return "?" if tensor.shape is None else format_shape(tensor.shape)


def sweep_page(document: dict[str, Any]) -> HtmlPage:
    """The HTML page of a sweep (analyze --sweep --format html): `document`, the sweep's JSON,
    drawn by sweep.js (a chart of each metric against the first swept dim, and the points)."""
    return _html(f"archcalc sweep: {document.get('model') or document.get('path')}", {"json": document},
                 script_file="sweep.js")


def _html(title: str, data: dict[str, Any], script_file: str = "page.js") -> HtmlPage:
    import orjson

    folder = resources.files("archcalc.report")
    style = folder.joinpath("page.css").read_text(encoding="utf-8")
    script = "".join(folder.joinpath(name).read_text(encoding="utf-8") for name in ("ui.js", script_file))
    # Inside <script> only "</script" (and "<!--") could end the data early: no "<" stays raw.
    payload = orjson.dumps(data).decode("utf-8").replace("<", "\\u003c")
    return HtmlPage(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        # No request leaves the page, whatever it holds: everything is inline.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n"
        f"<title>{html.escape(title)}</title>\n<style>\n{style}</style>\n</head>\n<body>\n"
        "<noscript>This report draws itself with JavaScript; --format json gives the same numbers.</noscript>\n"
        f"<script type=\"application/json\" id=\"archcalc-data\">{payload}</script>\n"
        f"<script>\n{script}</script>\n</body>\n</html>\n"
    )


def write_page(text: str, path: str | None) -> None:
    """`text` to `path` through a temporary file renamed into place (a failed run leaves no
    half-written page), or to stdout without a path."""
    if path is None:
        sys.stdout.write(text)
        return
    from archcalc.core.errors import ArchcalcError
    from archcalc.core.files import atomic_write

    try:
        with atomic_write(path) as handle:
            handle.write(text)
    except OSError as error:
        raise ArchcalcError(f"cannot write {path}: {error.strerror or error}", where="-o",
                            fix="choose a file in a folder that exists and that you can write") from None
