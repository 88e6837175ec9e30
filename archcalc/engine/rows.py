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


def rows(analysis: Analysis, depth: int | None = None) -> list[Row]:
    """One row per layer; with `depth` (1 or more), the layers of each block instance fold
    into one row per level `depth` of their block path (see `block_paths`): `layer1` at depth
    1, `layer1.0` at depth 2 for a ResNet; a layer whose path is shorter folds at its deepest
    block, and a layer in no block keeps its own row. An ONNX file's layers have the blocks
    their names' scopes give (readers/scopes.py), so they fold the same way."""
    if depth is None:
        return [_row(layer) for layer in analysis.layers]
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
    under it is inside its repetitions. A `/` separates levels an exporter wrote
    (`model/conv1_bn/batchnorm`, from tf2onnx's names): each scope before one is a level,
    except a scope every block is in (tf2onnx's `model`, the Keras model wrapping all its
    layers), which would fold the whole model into one row."""
    instances = {layer.block for layer in layers if layer.block}
    shared = _shared_scopes(instances)
    groups = _repeated_items(layers, instances)
    paths = {}
    for block in instances:
        cuts = [i for i, char in enumerate(block) if char in "./" and i]
        above = [block[:i] for i in cuts
                 if (block[i] == "/" and block[:i] not in shared) or block[:i] in instances or block[:i] in groups]
        paths[block] = (*above, block)
    return paths


_INDEX = re.compile(r"\.\d+(?=\.|$)")


def _repeated_items(layers: Sequence[LayerResult], instances: set[str]) -> set[str]:
    """The names of repeated items: a prefix followed by `.<index>` in some block's name
    (`layer1` of `layer1.0`) under which every layer named is inside a block of it. One pass
    over the blocks and one over the layers' names (per prefix, it was one over all of both)."""
    indexed = {block[:match.start()] for block in instances for match in _INDEX.finditer(block)}
    broken = set()
    for layer in layers:
        name, block = layer.name, layer.block
        dot = name.find(".", 1)
        while dot != -1:
            prefix = name[:dot]
            if prefix in indexed and not block.startswith(prefix + "."):
                broken.add(prefix)
            dot = name.find(".", dot + 1)
    return indexed - broken


def _shared_scopes(blocks: set[str]) -> set[str]:
    """The `/` scopes every block is inside."""
    first = next(iter(blocks), "")
    return {first[:i] for i, char in enumerate(first) if char == "/" and i
            and all(block.startswith(first[:i + 1]) for block in blocks)}


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
