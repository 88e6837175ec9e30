"""Costs as formulas of the dims left unbound, and their values at many bindings (sweeps).

The engine binds every count to an int for the table, but each rule's MACs and FLOPs are
computed from symbolic shapes, so they are already exact polynomials in the graph's
symbolic dims (``Sym``: integer coefficients by monomial). Each layer keeps them by
reference (``LayerResult.macs_formula``), which costs the bound path nothing; this module
substitutes the bindings the user gave, sums what the totals sum, and evaluates the result
at other bindings without analysing the graph again.

Supported forms: polynomials with integer coefficients; a floor of a division that does
not divide a polynomial (a stride) and the smaller of two dims (ceil-mode pooling) stay
exact as opaque factors (``floor((seq - 1)/2)``). Not formulas: the counts of a subgraph
(If, Loop, Scan), which the engine analyses at the bindings given: such a layer is listed
in `bound_layers` and sweeps analyse each point in full instead.

Peak activation memory is a maximum over the liveness schedule, not a polynomial: it is
computed per point, from each distinct tensor shape's size at that point (few distinct
shapes) and one pass of integer additions over the layers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from archcalc.core.dims import Dim, Sym, bind_known, prod, shape_symbols, substitute, sum_dims
from archcalc.core.dtypes import dtype_bytes
from archcalc.core.errors import ShapeError, UnboundDim
from archcalc.core.graph import Graph
from archcalc.core.results import Analysis, LayerResult
from archcalc.rules.base import rule_for

Shape = tuple[Dim, ...]


@dataclass(frozen=True)
class LayerFormula:
    """One layer's MACs, FLOPs and output bytes as formulas of the unbound dims."""

    name: str
    op: str
    macs: Dim
    flops: Dim
    activation_bytes: Dim
    parent: str = ""  # a subgraph's layer (counted in its parent's): left out of the totals


@dataclass(frozen=True)
class Formulas:
    """A model's costs as formulas of `dims`, the symbolic dims no binding in `fixed` gives."""

    dims: tuple[str, ...]
    fixed: dict[str, int]
    params: int  # never depends on a dim: weights have static shapes
    weight_bytes: int
    macs: Dim
    flops: Dim
    activation_bytes: Dim
    input_bytes: Dim
    layers: tuple[LayerFormula, ...]
    # Layers whose counts were bound at the analysis' bindings (a subgraph's): not formulas.
    bound_layers: tuple[str, ...]
    partial: bool  # some layer is not modelled: the formulas are lower bounds, as the totals are

    @property
    def exact(self) -> bool:
        return not self.bound_layers


@dataclass(frozen=True)
class Point:
    """The totals at one binding of the formulas' dims."""

    bindings: dict[str, int]
    params: int
    macs: int
    flops: int
    activation_bytes: int
    peak_activation_bytes: int
    weight_bytes: int
    input_bytes: int
    kv_cache_bytes: int | None = None  # a decoder's cache at the point's sequence length and batch
    latency_s: float | None = None  # the roofline's estimate on a device (--device), else None

    def to_dict(self) -> dict[str, object]:
        return self.to_json()

    def to_json(self) -> dict[str, object]:
        return {"bindings": self.bindings, "params": self.params, "macs": self.macs, "flops": self.flops,
                "activation_bytes": self.activation_bytes, "peak_activation_bytes": self.peak_activation_bytes,
                "weight_bytes": self.weight_bytes, "input_bytes": self.input_bytes,
                "kv_cache_bytes": self.kv_cache_bytes, "latency_s": self.latency_s}


def fixed_bindings(given: Mapping[str, int], batch_dims: Sequence[str] = ()) -> dict[str, int]:
    """The bindings a formula substitutes: those the user gave, `batch` also binding the
    model's own batch dims (N, batch_size: as --batch does for the bound counts)."""
    fixed = dict(given)
    if "batch" in fixed:
        for name in batch_dims:
            fixed.setdefault(name, fixed["batch"])
    return fixed


def formulas(analysis: Analysis, fixed: Mapping[str, int] | None = None) -> Formulas:
    """`analysis`' costs as formulas, the dims in `fixed` substituted (see fixed_bindings)."""
    fixed = dict(fixed or {})
    sizes = _Sizes(fixed)
    layers = []
    # A layer holding a subgraph (If, Loop, Scan) counts its body's totals, which the engine
    # bound: its sublayers name it as their parent.
    parents = {layer.parent for layer in analysis.layers if layer.parent}
    bound = [layer.name for layer in analysis.layers if layer.name in parents and not layer.parent]
    for layer in analysis.layers:
        outputs = layer.outputs
        if len(outputs) == 1:  # the common case: no sum to make
            act = 0 if outputs[0].shape is None else sizes.bytes(outputs[0].shape, outputs[0].dtype)
        else:
            act = sum_dims(sizes.bytes(t.shape, t.dtype) for t in outputs if t.shape is not None)
        layers.append(LayerFormula(layer.name, layer.op, substitute(layer.macs_formula, fixed),
                                   substitute(layer.flops_formula, fixed), act, layer.parent))
    top = [f for f in layers if not f.parent]
    input_bytes: Dim = 0
    for info in _inputs(analysis):
        input_bytes = input_bytes + sizes.bytes(tuple(info.shape), info.dtype)
    names = set(shape_symbols(sizes.shapes_seen()))
    for formula in (f.macs for f in top), (f.flops for f in top):
        names |= shape_symbols(formula)
    return Formulas(
        dims=tuple(sorted(names)), fixed=fixed, params=analysis.totals.params,
        weight_bytes=analysis.totals.weight_bytes,
        macs=sum_dims(f.macs for f in top), flops=sum_dims(f.flops for f in top),
        activation_bytes=sum_dims(f.activation_bytes for f in top), input_bytes=input_bytes,
        layers=tuple(layers), bound_layers=tuple(bound), partial=analysis.totals.partial,
    )


def _inputs(analysis: Analysis) -> list:
    return [info for info in analysis.known_tensors.values()
            if info.kind == "input" and isinstance(info.shape, tuple)]


def grouped(formulas: Formulas, groups: Iterable[Sequence[str]]) -> list[tuple[Dim, Dim, Dim]]:
    """(MACs, FLOPs, activation bytes) formulas of each group of layers (a table row's members)."""
    by_name = {layer.name: layer for layer in formulas.layers}
    result = []
    for names in groups:
        members = [by_name[name] for name in names if name in by_name]
        result.append((sum_dims(m.macs for m in members), sum_dims(m.flops for m in members),
                       sum_dims(m.activation_bytes for m in members)))
    return result


class _Sizes:
    """Bytes of tensors by shape and dtype, each distinct shape's element count made once."""

    def __init__(self, fixed: Mapping[str, int]):
        self.fixed = fixed
        self.elements: dict[Shape, Dim] = {}
        self.sizes: dict[tuple[Shape, str], Dim] = {}

    def bytes(self, shape: Shape, dtype: str) -> Dim:
        size = self.sizes.get((shape, dtype))
        if size is None:
            count = self.elements.get(shape)
            if count is None:
                count = self.elements[shape] = substitute(prod(shape), self.fixed)
            size = self.sizes[shape, dtype] = count * dtype_bytes(dtype)
        return size

    def shapes_seen(self) -> list[Dim]:
        return list(self.elements.values())


class Evaluator:
    """The totals of an analysis at any binding of its free dims, with peak activation memory
    from the liveness schedule (see the module docstring): set up once, cheap per point."""

    def __init__(self, analysis: Analysis, fixed: Mapping[str, int] | None = None):
        self.formulas = formulas(analysis, fixed)
        fixed = self.formulas.fixed
        top = [layer for layer in analysis.layers if not layer.parent]
        # Distinct (element count, bytes per element) pairs; each tensor, layer and freed set
        # refers to them by index, so a point binds each distinct size once.
        keys: dict[tuple[Dim, int], int] = {}
        elements: dict[Shape, Dim] = {}
        self.shape_of: list[tuple[Shape, str]] = []  # a tensor of each size, for messages

        def key(shape: Shape, dtype: str, name: str) -> int:
            count = elements.get(shape)
            if count is None:
                count = elements[shape] = substitute(prod(shape), fixed)
            pair = (count, dtype_bytes(dtype))
            index = keys.get(pair)
            if index is None:
                index = keys[pair] = len(keys)
                self.shape_of.append((tuple(substitute(d, fixed) for d in shape), name))
            return index

        inputs = _inputs(analysis)
        self.inputs = [key(tuple(info.shape), info.dtype, info.name) for info in inputs]
        # The graph inputs' dims must be bound; others are sizes known only at run time (a
        # NonZero's count), whose terms are left out when unbound, as the engine does.
        self.input_dims = sorted(shape_symbols(d for info in inputs for d in info.shape) - set(fixed))
        tensor_key: dict[str, int] = {}
        self.produced: list[list[int]] = []
        for layer in top:
            made = []
            for tensor in layer.outputs:
                if tensor.name and tensor.shape is not None:
                    made.append(tensor_key.setdefault(tensor.name, key(tensor.shape, tensor.dtype, tensor.name)))
            self.produced.append(made)
        last_use: dict[str, int] = {}
        for index, layer in enumerate(top):
            for tensor in layer.inputs:
                last_use[tensor.name] = index
        self.freed: list[list[int]] = [[] for _ in top]
        for name, index in last_use.items():
            if name in tensor_key:
                self.freed[index].append(tensor_key[name])
        self.sizes = [pair for pair, _ in sorted(keys.items(), key=lambda item: item[1])]
        # Dims of each distinct size's shape, checked at each point: a negative one means the
        # model cannot run there (a kernel wider than a short sequence).
        self.dims_to_check: dict[Sym, str] = {}  # each symbolic dim, and a tensor holding it
        for shape, name in self.shape_of:
            for d in shape:
                if isinstance(d, Sym):
                    self.dims_to_check.setdefault(d, name)
        self.reshapes = self._reshape_checks(top, fixed)

    @staticmethod
    def _reshape_checks(layers: list[LayerResult], fixed: Mapping[str, int]) -> list[tuple[str, Dim, Dim]]:
        """Reshapes whose input and output hold the same number of elements at the analysis'
        bindings only (a shape written with numbers): each point must check them again."""
        checks = []
        checked_ops = {}  # (domain, op): whether its rule checks sizes at the bindings
        for layer in layers:
            op = (layer.domain, layer.op)
            if op not in checked_ops:
                rule = rule_for(*op)
                checked_ops[op] = rule is not None and "bindings" in rule.context
            if not checked_ops[op] or not layer.inputs or not layer.outputs:
                continue
            before, after = layer.inputs[0].shape, layer.outputs[0].shape
            if before is None or after is None:
                continue
            have, want = substitute(prod(before), fixed), substitute(prod(after), fixed)
            if have != want:
                checks.append((layer.name, have, want))
        return checks

    @staticmethod
    def model_dims(analysis: Analysis) -> set[str]:
        """The symbolic dims of the analysis' inputs and counts."""
        names = shape_symbols(d for info in _inputs(analysis) for d in info.shape)
        for layer in analysis.layers:
            names |= shape_symbols((layer.macs_formula, layer.flops_formula))
        return names

    def at(self, bindings: Mapping[str, int], label: str | None = None) -> Point:
        """The totals at `bindings` (with the fixed ones), exactly as a bound analysis counts them;
        `label` names the point in messages (default: the bindings)."""
        env = {**self.formulas.fixed, **bindings}
        unbound = [name for name in self.input_dims if name not in env]
        if unbound:
            raise UnboundDim(unbound[0])
        where = label or ", ".join(f"{k}={v}" for k, v in bindings.items())
        for dim, tensor in self.dims_to_check.items():
            if _value(dim, env) < 0:
                raise ShapeError(f"at {where}, tensor '{tensor}' has a dim {dim} = {_value(dim, env)} < 0",
                                 fix="sweep sizes the model can take (a longer sequence, a larger input)")
        for name, have, want in self.reshapes:
            if _value(have, env) != _value(want, env):
                raise ShapeError(f"at {where}, layer '{name}' reshapes {_value(have, env)} elements into "
                                 f"{_value(want, env)}: the model holds this size only at other bindings",
                                 fix="sweep the sizes the model's fixed reshapes allow")
        sizes = [_value(count, env) * size for count, size in self.sizes]
        input_bytes = sum(sizes[i] for i in self.inputs)
        live = input_bytes
        peak = input_bytes
        activation = 0
        for made, freed in zip(self.produced, self.freed):
            out = sum(sizes[i] for i in made)
            activation += out
            live += out
            peak = max(peak, live)
            live -= sum(sizes[i] for i in freed)
        f = self.formulas
        return Point(dict(bindings), f.params, _value(f.macs, env), _value(f.flops, env), activation, peak,
                     f.weight_bytes, input_bytes)


def _value(dim: Dim, env: Mapping[str, int]) -> int:
    """`dim` at `env`; terms of a run-time dim no binding gives are left out, as the engine does."""
    return bind_known(dim, env)[0]


def sweep_points(sweeps: Sequence[tuple[str, Sequence[int]]]) -> list[dict[str, int]]:
    """Every combination of the swept values, the first dim varying slowest."""
    names = [name for name, _ in sweeps]
    return [dict(zip(names, values)) for values in itertools.product(*(values for _, values in sweeps))]


def analyze_unbound(graph: Graph, given: Mapping[str, int]) -> Analysis:
    """The analysis of `graph` for its formulas when some input dim has no value: the counts
    need one, so each such dim is counted at 1 (a warning says so); the formulas, taken from
    the rules' own counts, do not depend on it."""
    from archcalc.engine.inference import analyze

    placeholders: dict[str, int] = {}
    while True:
        try:
            analysis = analyze(graph, {**given, **placeholders})
            break
        except UnboundDim as error:
            if error.name in placeholders or len(placeholders) >= 64:
                raise
            placeholders[error.name] = 1
    notes = tuple(f"dim '{name}' has no value: the counts are at {name}=1, the formulas (--symbolic) hold every "
                  f"value; bind it with --dim {name}=N" for name in placeholders)
    return replace(analysis, warnings=analysis.warnings + notes) if notes else analysis
