"""Compare two analyses layer by layer: what a change to an architecture costs or saves.

Rows come from :func:`archcalc.engine.rows.rows`, so ``depth`` folds blocks exactly as
``archcalc analyze --depth`` does. Rows are paired in two passes:

1. by name (the k-th row called ``fc`` in the old model with the k-th in the new), except
   names the spec front end generates for unnamed layers (``relu_2``: a layer type, ``_``,
   a count). Such a name only says "the second unnamed relu" and shifts when an earlier
   relu is inserted or removed, so it is left to the second pass;
2. rows left unpaired, by position, separately in each gap between consecutive
   name-matched rows (so a layer that moved is reported as removed and added, not as
   renamed): first rows identical in op, output shape and params, then, in the gaps
   between those, rows with the same op. Each step pairs the longest common subsequence
   (:class:`difflib.SequenceMatcher`), so order is kept. A rename keeps its op and its
   place; matching identical rows first keeps an inserted layer of the same op from
   taking the renamed one's place.

A pair from the second pass is "renamed" when its names differ, unless both are generated
names. Whatever is still unpaired was removed (old side) or added (new side). The result
is frozen; :mod:`archcalc.report.diff` renders it. This module imports neither rich nor click.
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import re
from collections import defaultdict, deque
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from archcalc.core.results import Analysis
from archcalc.engine.rows import Row, rows

JSON_SCHEMA_VERSION = 1

Status = Literal["changed", "renamed", "added", "removed", "unchanged"]
STATUSES: tuple[Status, ...] = ("changed", "added", "removed", "renamed", "unchanged")

# What makes a paired row "changed". The receptive field is left out on purpose: it
# grows for every layer downstream of an inserted conv, which would bury the real change.
COMPARED_FIELDS = ("op", "output_shape", "params", "trainable_params", "buffers", "macs", "flops",
                   "activation_bytes", "modelled", "layers")
LAYER_METRICS = ("params", "trainable_params", "buffers", "macs", "flops", "activation_bytes")
TOTAL_METRICS = ("params", "trainable_params", "non_trainable_params", "buffers", "macs", "flops",
                 "weight_bytes", "activation_bytes", "peak_activation_bytes", "frozen_params")


@dataclass(frozen=True, slots=True)
class Delta:
    """One number in the old and the new model."""

    old: int
    new: int

    @property
    def change(self) -> int:
        return self.new - self.old

    @property
    def percent(self) -> float | None:
        """Change relative to the old value; None when the old value is 0 and the new is not."""
        if self.old == 0:
            return 0.0 if self.new == 0 else None
        return self.change * 100 / self.old

    def to_json(self) -> dict:
        percent = self.percent
        return {"old": self.old, "new": self.new, "delta": self.change,
                "percent": None if percent is None else round(percent, 4)}


@dataclass(frozen=True, slots=True)
class LayerDiff:
    """One row of the diff: a pair of rows (changed, renamed, unchanged) or one side alone."""

    status: Status
    old: Row | None
    new: Row | None

    @property
    def name(self) -> str:
        return self.new.name if self.new is not None else self.old.name  # type: ignore[union-attr]

    def metric(self, name: str) -> Delta:
        """A per-row number, 0 on the side where the row does not exist."""
        return Delta(getattr(self.old, name) if self.old is not None else 0,
                     getattr(self.new, name) if self.new is not None else 0)

    @property
    def params(self) -> Delta:
        return self.metric("params")

    @property
    def macs(self) -> Delta:
        return self.metric("macs")

    @property
    def activation_bytes(self) -> Delta:
        return self.metric("activation_bytes")

    @property
    def macs_known(self) -> bool:
        """False when a side has no rule for its op, so its MACs are not counted."""
        return all(row.modelled for row in (self.old, self.new) if row is not None)

    def to_json(self) -> dict:
        return {
            "status": self.status,
            "name": self.name,
            "old": _row_json(self.old),
            "new": _row_json(self.new),
            "delta": {name: self.metric(name).change for name in LAYER_METRICS},
            "percent": {name: _rounded(self.metric(name).percent) for name in LAYER_METRICS},
        }


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    path: str
    bindings: dict[str, int]
    partial: bool  # some op had no rule, so its MACs/FLOPs totals are lower bounds
    rows: int

    def to_json(self) -> dict:
        return {"model": self.name, "path": self.path, "bindings": dict(self.bindings),
                "partial": self.partial, "rows": self.rows}


@dataclass(frozen=True)
class ModelDiff:
    old: ModelInfo
    new: ModelInfo
    depth: int | None
    layers: tuple[LayerDiff, ...]  # every row of both models, unchanged ones included, in order
    totals: dict[str, Delta]  # TOTAL_METRICS, in that order
    names: tuple[str | None, str | None] = (None, None)  # headings the caller chose (--old-label, --new-label)

    def listed(self, include_unchanged: bool = False) -> tuple[LayerDiff, ...]:
        if include_unchanged:
            return self.layers
        return tuple(layer for layer in self.layers if layer.status != "unchanged")

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {status: 0 for status in STATUSES}
        for layer in self.layers:
            found[layer.status] += 1
        return found

    @property
    def identical(self) -> bool:
        return all(layer.status == "unchanged" for layer in self.layers) and \
            all(delta.change == 0 for delta in self.totals.values())

    def labels(self) -> tuple[str, str]:
        """How to call the two models in headings: as the caller said, else their names, or
        their paths when the names agree."""
        if any(self.names):
            named = self.labels_from_models()
            return self.names[0] or named[0], self.names[1] or named[1]
        return self.labels_from_models()

    def labels_from_models(self) -> tuple[str, str]:
        if self.old.name and self.new.name and self.old.name != self.new.name:
            return self.old.name, self.new.name
        if self.old.path != self.new.path:
            return self.old.path, self.new.path
        return "old", "new"

    def to_json(self, include_unchanged: bool = False) -> dict:
        """The documented JSON document of ``archcalc diff --format json`` (README, "Comparing
        architectures"). Keys are only ever added within a schema version."""
        return {
            "schema_version": JSON_SCHEMA_VERSION,
            "old": self.old.to_json(),
            "new": self.new.to_json(),
            "depth": self.depth,
            "totals": {name: delta.to_json() for name, delta in self.totals.items()},
            "counts": self.counts(),
            "include_unchanged": include_unchanged,
            "layers": [layer.to_json() for layer in self.listed(include_unchanged)],
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _row_json(row: Row | None) -> dict | None:
    if row is None:
        return None
    return {"name": row.name, "op": row.op, "output_shape": row.output_shape, "layers": row.layers,
            "modelled": row.modelled, **{name: getattr(row, name) for name in LAYER_METRICS}}


# --- pairing -----------------------------------------------------------------------------------

def diff_analyses(old: Analysis, new: Analysis, depth: int | None = None) -> ModelDiff:
    """Pair the rows of `old` and `new` (folded to `depth` block levels when given) and total the changes."""
    old, new = _lend_blocks(old, new), _lend_blocks(new, old)
    old_rows, new_rows = rows(old, depth), rows(new, depth)
    pairs, renamed = pair_rows([r.name for r in old_rows], [r.op for r in old_rows],
                               [r.name for r in new_rows], [r.op for r in new_rows],
                               [_identity(r) for r in old_rows], [_identity(r) for r in new_rows])
    layers = _ordered(old_rows, new_rows, pairs, renamed)
    totals = {name: Delta(getattr(old.totals, name), getattr(new.totals, name)) for name in TOTAL_METRICS}
    return ModelDiff(old=_info(old, old_rows), new=_info(new, new_rows), depth=depth, layers=layers,
                     totals=totals)


def _identity(row: Row) -> tuple[str, str, int]:
    """What two rows share when they are the same layer under another name."""
    return row.op, row.output_shape, row.params


def _info(analysis: Analysis, table: Sequence[Row]) -> ModelInfo:
    return ModelInfo(name=analysis.name, path=analysis.path, bindings=dict(analysis.bindings),
                     partial=analysis.totals.partial, rows=len(table))


def _lend_blocks(analysis: Analysis, other: Analysis) -> Analysis:
    """An ONNX file carries no block structure, so `--depth` would fold nothing on its side.
    When `analysis` has no blocks at all and `other` has, each layer takes the block of the
    same-named layer in `other`; a spec and its ONNX export then fold alike."""
    if any(layer.block for layer in analysis.layers) or not any(layer.block for layer in other.layers):
        return analysis
    blocks = {layer.name: layer.block for layer in other.layers}
    layers = tuple(dataclasses.replace(layer, block=blocks.get(layer.name, "")) for layer in analysis.layers)
    return dataclasses.replace(analysis, layers=layers)


_GENERATED = re.compile(r"(?:^|\.)(?P<kind>[a-z][a-z0-9_]*?)_[1-9][0-9]*$")


def is_generated_name(name: str) -> bool:
    """True for a name the spec front end gives an unnamed layer: its type and a count
    (`relu_2`, `layer1.0.conv2d_1`), with the type one of `archcalc layers`."""
    from archcalc.readers.spec.catalogue import LAYER_TYPES

    match = _GENERATED.search(name)
    return match is not None and match["kind"] in LAYER_TYPES


def pair_rows(old_names: Sequence[str], old_ops: Sequence[str], new_names: Sequence[str],
              new_ops: Sequence[str], old_keys: Sequence[Hashable] | None = None,
              new_keys: Sequence[Hashable] | None = None) -> tuple[list[tuple[int, int]], set[tuple[int, int]]]:
    """Index pairs (old, new) of rows that are the same layer, and which of them are renames.

    `old_keys` and `new_keys` say when two rows are identical but for the name (op, output
    shape, params); leftover rows pair on them first, then on the op alone."""
    old_generated = [is_generated_name(name) for name in old_names]
    new_generated = [is_generated_name(name) for name in new_names]
    by_name = _pair_by_name(old_names, new_names, old_generated)
    paired_old = {i for i, _ in by_name}
    paired_new = {j for _, j in by_name}
    # Name-matched pairs in the same order on both sides anchor the search for renames.
    anchors = [(-1, -1), *_increasing(by_name), (len(old_names), len(new_names))]
    by_place: list[tuple[int, int]] = []
    for (i0, j0), (i1, j1) in zip(anchors, anchors[1:]):
        old_gap = [i for i in range(i0 + 1, i1) if i not in paired_old]
        new_gap = [j for j in range(j0 + 1, j1) if j not in paired_new]
        if not old_gap or not new_gap:
            continue
        exact = (_common(old_gap, new_gap, old_keys, new_keys)
                 if old_keys is not None and new_keys is not None else [])
        by_place += exact
        for (a0, b0), (a1, b1) in zip([(-1, -1), *exact], [*exact, (i1, j1)]):
            by_place += _common([i for i in old_gap if a0 < i < a1], [j for j in new_gap if b0 < j < b1],
                                old_ops, new_ops)
    renamed = {(i, j) for i, j in by_place
               if old_names[i] != new_names[j] and not (old_generated[i] and new_generated[j])}
    return sorted(by_name + by_place), renamed


def _common(old_gap: Sequence[int], new_gap: Sequence[int], old_keys: Sequence[Hashable],
            new_keys: Sequence[Hashable]) -> list[tuple[int, int]]:
    """Pairs of the longest common subsequence of the two gaps' keys, in order."""
    if not old_gap or not new_gap:
        return []
    matcher = difflib.SequenceMatcher(None, [old_keys[i] for i in old_gap], [new_keys[j] for j in new_gap],
                                      autojunk=False)
    return [(old_gap[block.a + k], new_gap[block.b + k])
            for block in matcher.get_matching_blocks() for k in range(block.size)]


def _pair_by_name(old_names: Sequence[str], new_names: Sequence[str],
                  generated: Sequence[bool]) -> list[tuple[int, int]]:
    # Folded rows may repeat a name (a block whose layers are not contiguous); the k-th
    # occurrence pairs with the k-th. Generated names are no identity: left for pairing by place.
    positions: dict[str, deque[int]] = defaultdict(deque)
    for j, name in enumerate(new_names):
        positions[name].append(j)
    pairs = []
    for i, name in enumerate(old_names):
        if positions[name] and not generated[i]:
            pairs.append((i, positions[name].popleft()))
    return pairs


def _increasing(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The longest run of `pairs` (sorted by old index) whose new indices also increase."""
    tails: list[int] = []  # tails[k]: new index ending the best run of length k + 1
    tail_at: list[int] = []  # position in `pairs` of that run's last pair
    previous: list[int] = []
    for position, (_, j) in enumerate(pairs):
        k = bisect.bisect_left(tails, j)
        if k == len(tails):
            tails.append(j)
            tail_at.append(position)
        else:
            tails[k] = j
            tail_at[k] = position
        previous.append(tail_at[k - 1] if k else -1)
    run = []
    position = tail_at[-1] if tail_at else -1
    while position >= 0:
        run.append(pairs[position])
        position = previous[position]
    return run[::-1]


def _ordered(old_rows: Sequence[Row], new_rows: Sequence[Row], pairs: Iterable[tuple[int, int]],
             renamed: set[tuple[int, int]]) -> tuple[LayerDiff, ...]:
    """New-model order, each removed row placed just after the row that preceded it in the old model."""
    keyed: list[tuple[tuple[int, int, int], LayerDiff]] = []
    new_of_old: dict[int, int] = {}
    for i, j in pairs:
        new_of_old[i] = j
        old_row, new_row = old_rows[i], new_rows[j]
        if (i, j) in renamed:
            status: Status = "renamed"
        elif any(getattr(old_row, f) != getattr(new_row, f) for f in COMPARED_FIELDS):
            status = "changed"
        else:
            status = "unchanged"
        keyed.append(((j, 0, i), LayerDiff(status, old_row, new_row)))
    paired_new = set(new_of_old.values())
    for j, new_row in enumerate(new_rows):
        if j not in paired_new:
            keyed.append(((j, 0, -1), LayerDiff("added", None, new_row)))
    anchor = -1
    for i, old_row in enumerate(old_rows):
        if i in new_of_old:
            anchor = new_of_old[i]
        else:
            keyed.append(((anchor, 1, i), LayerDiff("removed", old_row, None)))
    return tuple(diff for _, diff in sorted(keyed, key=lambda item: item[0]))
