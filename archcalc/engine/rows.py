"""An analysis as table rows: one per layer, or one per block instance at a depth.

The table, CSV, Markdown and the diff all read these rows, so a folded block shows the
same sums wherever it appears.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from archcalc.core.dims import format_shape
from archcalc.core.results import Analysis, LayerResult, ReceptiveField
from archcalc.core.units import compact_number


@dataclass(frozen=True)
class Row:
    name: str
    op: str
    output_shape: str
    params: int
    trainable_params: int
    buffers: int
    macs: int
    flops: int
    activation_bytes: int
    receptive_field: str
    modelled: bool
    layers: int = 1
    members: tuple[str, ...] = ()


def format_receptive_field(field: ReceptiveField) -> str:
    """'11 /4' (size /jump, in input pixels), per axis joined by 'x' when the axes differ."""
    if field is None:
        return "-"
    if isinstance(field, str):
        return field
    parts = []
    for values in ([a.size for a in field], [a.jump for a in field]):
        texts = [compact_number(v) for v in values]
        parts.append(texts[0] if len(set(texts)) == 1 else "x".join(texts))
    return f"{parts[0]} /{parts[1]}"


def _output_shape(layer: LayerResult) -> str:
    if not layer.outputs:
        return "-"
    shape = layer.outputs[0].shape
    return "?" if shape is None else format_shape(shape)


def _row(layer: LayerResult) -> Row:
    return Row(
        name=layer.name, op=layer.op, output_shape=_output_shape(layer), params=layer.params,
        trainable_params=layer.trainable_params, buffers=layer.buffers, macs=layer.macs, flops=layer.flops,
        activation_bytes=layer.activation_bytes, receptive_field=format_receptive_field(layer.receptive_field),
        modelled=layer.modelled, members=(layer.name,),
    )


def rows(analysis: Analysis, depth: int | None = None, *, by_scope: bool = False) -> list[Row]:
    """One row per layer; with `depth` (1 or more), the layers of each block instance fold
    into one row per level `depth` of their block path (see `block_paths`): `layer1` at depth
    1, `layer1.0` at depth 2 for a ResNet; a layer whose path is shorter folds at its deepest
    block, and a layer in no block keeps its own row. With `by_scope`, a model without blocks
    (an ONNX file) folds by the scopes of its layer names instead (see `scope_paths`)."""
    if depth is None:
        return [_row(layer) for layer in analysis.layers]
    if by_scope and not any(layer.block for layer in analysis.layers):
        scopes = scope_paths(analysis.layers)
        path_of = {layer.name: scopes.get(layer.name, ()) for layer in analysis.layers}
    else:
        blocks = block_paths(analysis.layers)
        path_of = {layer.name: blocks.get(layer.block, ()) for layer in analysis.layers}
    result: list[Row] = []
    group: list[LayerResult] = []
    group_key = None
    for layer in analysis.layers:
        path = path_of[layer.name]
        key = path[min(depth, len(path)) - 1] if path else None
        if key != group_key and group:
            result.append(_folded(group_key, group))
            group = []
        group_key = key
        if key is None:
            result.append(_row(layer))
        else:
            group.append(layer)
    if group:
        result.append(_folded(group_key, group))
    return result


def block_paths(layers: Sequence[LayerResult]) -> dict[str, tuple[str, ...]]:
    """Each block instance's path of enclosing levels, outermost first, itself last.

    A layer's `block` names its innermost block instance in full (`layer1.0`,
    `inception3a.branch2.0`); names may hold dots of their own (`features.denseblock1`), so
    the levels above it are not its dot-separated parts but the prefixes that are levels
    too: another block instance (one with layers of its own), or a repeated item's name
    (`layer1` for `layer1.0`, `layer1.1`: a name followed by an index) when every layer named
    under it is inside its repetitions."""
    instances = {layer.block for layer in layers if layer.block}
    repeated: dict[str, bool] = {}

    def is_group(prefix: str) -> bool:
        if prefix not in repeated:
            indexed = re.compile(re.escape(prefix) + r"\.\d+(\.|$)")
            repeated[prefix] = any(indexed.match(block) for block in instances) and all(
                layer.block.startswith(prefix + ".") for layer in layers if layer.name.startswith(prefix + "."))
        return repeated[prefix]

    paths = {}
    for block in instances:
        dots = [i for i, char in enumerate(block) if char == "."]
        above = [block[:i] for i in dots if block[:i] in instances or is_group(block[:i])]
        paths[block] = (*above, block)
    return paths


def scope_paths(layers: Sequence[LayerResult]) -> dict[str, tuple[str, ...]]:
    """Each layer's enclosing scopes, outermost first, read from an exporter's node names:
    PyTorch's `/layer1/layer1.0/conv1/Conv` is in `/layer1`, `/layer1/layer1.0` and
    `/layer1/layer1.0/conv1`; tf2onnx's `model/conv1_bn/batchnorm/mul` likewise. A name
    without `/` is split at its dots, as module paths and `archcalc export`'s names are
    written (`layer1.0.conv1` is in `layer1` and `layer1.0`). The last part names the node
    itself. In a graph whose names have `/` scopes, a name without one (PyTorch's
    `Constant_12` or `Shape_7`, made outside any module) takes the scope of the first layer
    that reads it, so it folds into that layer's block instead of splitting its run in two."""
    paths: dict[str, tuple[str, ...]] = {}
    for layer in layers:
        separator = "/" if "/" in layer.name else "."
        parts = layer.name.split(separator)[:-1]
        lead = separator if layer.name.startswith(separator) else ""
        parts = [part for part in parts if part]
        paths[layer.name] = tuple(lead + separator.join(parts[:i + 1]) for i in range(len(parts)))
    order = {layer.name: index for index, layer in enumerate(layers)}
    reader: dict[str, str] = {}  # tensor -> the first layer that reads it
    for layer in reversed(layers):
        for tensor in layer.inputs:
            reader[tensor.name] = layer.name
    scoped = any("/" in layer.name for layer in layers)
    for layer in reversed(layers):  # readers come later: a chain of unscoped layers resolves back to front
        if scoped and "/" not in layer.name:
            first = min((reader[t.name] for t in layer.outputs if t.name in reader),
                        key=lambda name: order[name], default=None) if layer.outputs else None
            if first is not None:
                paths[layer.name] = paths[first]
    return paths


def _folded(name: str | None, layers: Sequence[LayerResult]) -> Row:
    last = layers[-1]
    ops = sorted({layer.op for layer in layers})
    field: ReceptiveField = last.receptive_field
    return Row(
        name=str(name), op=f"block ({len(layers)} layers)" if len(ops) > 1 else f"{ops[0]} x{len(layers)}",
        output_shape=_output_shape(last), params=sum(x.params for x in layers),
        trainable_params=sum(x.trainable_params for x in layers), buffers=sum(x.buffers for x in layers),
        macs=sum(x.macs for x in layers), flops=sum(x.flops for x in layers),
        activation_bytes=sum(x.activation_bytes for x in layers),
        receptive_field=format_receptive_field(field), modelled=all(x.modelled for x in layers),
        layers=len(layers), members=tuple(x.name for x in layers),
    )
