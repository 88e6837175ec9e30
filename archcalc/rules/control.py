"""Control flow: If, Loop and Scan, whose attributes hold subgraphs (bodies).

Each body (a :class:`~archcalc.rules.base.Subgraph`) is converted by the front end that
read it and analysed by the engine (the scope's ``analyze``) like any graph; it reads the
enclosing graph's tensors by name (the layer's ``scope``). Costs:

- If: one branch runs, so the larger one counts (by MACs, then FLOPs), or the one a
  known constant condition picks. Outputs: a dim that differs between the branches
  becomes a symbol named after the layer (``<layer>_out<k>_dim<axis>``; bind it with --dim).
- Loop: body x trip count when the count is known (the trip-count input is a constant or
  a known dim, and the condition cannot end the loop early); otherwise the body once,
  with a warning that the counts are per iteration, unless ``<layer>_trip_count`` is bound
  with --dim. Loop-carried outputs keep their shapes; scan outputs stack one body output
  per iteration: ``[trips, ...]``.
- Scan: body x sequence length; scan outputs insert the sequence length at their axis.

Params (a body's initializers, and enclosing-graph weights the body reads) count once:
not per iteration, and for both branches of an If (the model holds both). The body's
layers are listed after the layer as ``<layer>/<attribute>/<name>``, their MACs and FLOPs
multiplied by the same count; totals take the layer's counts, not theirs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeGuard

from archcalc.core.dims import Dim, Sym, bind, is_static
from archcalc.core.errors import ArchcalcError, ShapeError, UnknownValue
from archcalc.rules._common import axis_index
from archcalc.rules.base import GLOBAL, Inputs, Output, RuleResult, Scope, Subgraph, TensorState, rule

if TYPE_CHECKING:
    from archcalc.core.graph import Graph, TensorInfo
    from archcalc.core.results import Analysis, LayerResult, TensorResult

Shape = tuple[Dim, ...]


@dataclass(frozen=True)
class _Body:
    """One analysed body: the Graph it became, its analysis, and the shapes of its outputs."""

    attribute: str  # then_branch, else_branch, body
    graph: Graph
    analysis: Analysis
    outputs: tuple[TensorState, ...]  # shape and dtype of each output (all known: see _analysed)

    @property
    def macs(self) -> int:
        return self.analysis.totals.macs

    @property
    def flops(self) -> int:
        return self.analysis.totals.flops

    def summary(self) -> str:
        top = sum(1 for layer in self.analysis.layers if not layer.parent)
        partial = " (at least: some of its layers are not modelled)" if self.analysis.totals.partial else ""
        return f"{self.attribute}: {top} layers, MACs {self.macs:,}, FLOPs {self.flops:,}{partial}"


def _analysed(body: Subgraph | None, attribute: str, inputs: Sequence[TensorState], scope: Scope | None,
              node_name: str) -> _Body:
    if body is None:
        raise ShapeError(f"the layer has no '{attribute}' subgraph", fix="the op needs its body as an attribute")
    if scope is None:
        raise UnknownValue(f"its '{attribute}' subgraph needs the enclosing graph's tensors, which were not given")
    graph = body.graph(inputs, scope, prefix=f"{node_name}/{attribute}/", block=node_name)
    analysis = scope.analyze(graph, scope.bindings)
    outputs = []
    for name in graph.outputs:
        tensor = analysis.tensors.get(name)
        if tensor is None or tensor.shape is None:
            raise UnknownValue(f"output '{name}' of its subgraph '{attribute}' has an unknown shape")
        outputs.append(TensorState(tensor.shape, tensor.dtype))
    return _Body(attribute, graph, analysis, tuple(outputs))


def _symbol_base(node_name: str) -> str:
    return re.sub(r"\W+", "_", node_name).strip("_") or "layer"


def _sublayers(body: _Body, node_name: str, times: int) -> tuple[LayerResult, ...]:
    """The body's layers, for listing under the layer: tensor names the body defines get the
    layer's prefix (two bodies may use the same names), counts are multiplied by `times`."""
    prefix = f"{node_name}/{body.attribute}/"
    outer = set(body.graph.outer_refs or ())
    local = {name for name in body.graph.tensors if name not in outer}
    local.update(out for node in body.graph.nodes for out in node.outputs)

    def renamed(tensors: tuple[TensorResult, ...]) -> tuple[TensorResult, ...]:
        return tuple(t._replace(name=prefix + t.name) if t.name in local else t for t in tensors)

    layers = []
    for layer in body.analysis.layers:
        changes: dict[str, Any] = {"inputs": renamed(layer.inputs), "outputs": renamed(layer.outputs),
                                   "parent": layer.parent or node_name}
        if times != 1:
            changes.update(macs=layer.macs * times, flops=layer.flops * times,
                           macs_formula=layer.macs_formula * times, flops_formula=layer.flops_formula * times,
                           explain=_repeated(layer.explain, times, layer.macs, layer.flops))
        layers.append(replace(layer, **changes))
    return tuple(layers)


def _repeated(explain: Callable[[], list[str]] | None, times: int, macs: int, flops: int) -> Callable[[], list[str]]:
    def lines() -> list[str]:
        return [*(explain() if explain else []),
                f"x {times} runs of the body: MACs = {times} * {macs} = {times * macs}, "
                f"FLOPs = {times} * {flops} = {times * flops}"]

    return lines


def _held(body: _Body, node_name: str, scope: Scope) -> list[TensorInfo]:
    """The weights the body counted: its own initializers (renamed under the layer), the
    enclosing graph's weights it reads (by their names) and those of bodies inside it."""
    prefix = f"{node_name}/{body.attribute}/"
    outer = set(body.graph.outer_refs or ())
    held = []
    for name in body.analysis.param_tensors:
        info = body.analysis.known_tensors[name]
        if name in outer:
            held.append(scope.known.get(name, info))
        elif name in body.graph.tensors:
            held.append(replace(info, name=prefix + name))
        else:  # held by a layer of the body under its full name already
            held.append(info)
    return held


def _warnings(bodies: Sequence[_Body], scope: Scope) -> tuple[str, ...]:
    """The bodies' warnings; the engine puts this layer in front, so the file goes."""
    lead = f"{scope.graph.path}: "
    return tuple(w.removeprefix(lead) for body in bodies for w in body.analysis.warnings)


def _carried(initial: Sequence[TensorState], final: Sequence[TensorState], base: str,
             lines: list[str]) -> list[Output]:
    """Loop-carried (Scan: state) outputs: the body's output shape, which keeps the initial
    value's shape; a dim the body changes becomes a symbol."""
    outputs = []
    for k, (start, end) in enumerate(zip(initial, final)):
        if len(start.shape) != len(end.shape):
            raise UnknownValue(f"loop-carried value {k} changes rank in the body, {list(start.shape)} -> "
                               f"{list(end.shape)}: its final shape depends on the iterations")
        shape = _unified(start.shape, end.shape, f"{base}_carried{k}",
                         f"loop-carried value {k}: dim {{axis}} goes {{a}} -> {{b}} in the body: {{symbol}}", lines)
        outputs.append(Output(shape, end.dtype))
    return outputs


def _unified(a: Shape, b: Shape, prefix: str, describe: str, lines: list[str]) -> Shape:
    """`a` where it agrees with `b`; a dim that differs becomes the symbol `<prefix>_dim<axis>`
    (bind it with --dim), noted in `lines` as `describe` words it."""
    shape = []
    for axis, (x, y) in enumerate(zip(a, b)):
        if x == y:
            shape.append(x)
        else:
            symbol = Sym.symbol(f"{prefix}_dim{axis}")
            lines.append(describe.format(axis=axis, a=x, b=y, symbol=symbol))
            shape.append(symbol)
    return tuple(shape)


def _bindable(dim: Dim, bindings: Mapping[str, int]) -> bool:
    return isinstance(dim, int) or dim.symbols() <= set(bindings)  # is_static(dim), narrowing both ways


def _given(states: list[TensorState | None]) -> TypeGuard[list[TensorState]]:
    """Whether every input in `states` is given (none is left out)."""
    return not any(value is None for value in states)


@rule("If")
def if_(inputs: Inputs, *, then_branch: Subgraph | None = None, else_branch: Subgraph | None = None,
        node_name="",
        scope: Scope | None = None) -> RuleResult:
    """One branch runs: outputs agree between branches (a differing dim becomes a symbol);
    MACs/FLOPs of the larger branch (or of the one a constant condition picks); params of both."""
    cond = inputs[0]
    chosen = constant = None
    if cond is not None and cond.value is not None and len(cond.value) == 1 and isinstance(cond.value[0], int):
        constant = cond.value[0]
        chosen = "then_branch" if constant else "else_branch"
    warnings: list[str] = []
    bodies: list[_Body] = []
    for attribute, body in (("then_branch", then_branch), ("else_branch", else_branch)):
        try:
            bodies.append(_analysed(body, attribute, (), scope, node_name))
        except ArchcalcError as error:
            if chosen is None or chosen == attribute:
                raise
            warnings.append(f"its {attribute} never runs (the condition is a constant) and cannot be analysed "
                            f"({error.message}); its params are not counted")
    assert scope is not None  # a body was analysed (the chosen one's error is raised): _analysed raises without it
    lines = [body.summary() for body in bodies]
    if chosen is not None:
        counted = next(b for b in bodies if b.attribute == chosen)
        lines.append(f"the condition is the constant {constant}: only {chosen} runs, and counts")
        outputs = [Output(tuple(t.shape), t.dtype) for t in counted.outputs]
    else:
        then_body, else_body = bodies  # with no constant condition, both were analysed (an error is raised)
        counted = max(bodies, key=lambda b: (b.macs, b.flops))
        lines.append(f"one branch runs: counted the larger, {counted.attribute} "
                     f"(MACs {counted.macs:,}, FLOPs {counted.flops:,})")
        outputs = _merged(then_body, else_body, _symbol_base(node_name), lines)
    lines.append("params of both branches count, once (the model holds both)")
    lines += [f"output {k} = {list(o.shape)}" for k, o in enumerate(outputs)]
    return RuleResult(
        outputs=tuple(outputs), macs=counted.macs, flops=counted.flops,
        held=tuple(info for body in bodies for info in _held(body, node_name, scope)),
        sublayers=tuple(layer for body in bodies for layer in _sublayers(body, node_name, 1)),
        warnings=tuple(warnings) + _warnings(bodies, scope), explain=lambda: lines,
    )


def _merged(then_body: _Body, else_body: _Body, base: str, lines: list[str]) -> list[Output]:
    if len(then_body.outputs) != len(else_body.outputs):
        raise ShapeError(f"then_branch gives {len(then_body.outputs)} outputs, else_branch "
                         f"{len(else_body.outputs)}", fix="both branches of an If must give the same outputs")
    outputs = []
    for k, (a, b) in enumerate(zip(then_body.outputs, else_body.outputs)):
        if len(a.shape) != len(b.shape):
            raise UnknownValue(f"output {k} has rank {len(a.shape)} in then_branch and {len(b.shape)} in "
                               f"else_branch: its shape depends on the condition")
        shape = _unified(a.shape, b.shape, f"{base}_out{k}",
                         f"output {k}, dim {{axis}}: {{a}} in then_branch, {{b}} in else_branch: {{symbol}}", lines)
        outputs.append(Output(shape, a.dtype))
    return outputs


def _condition_stays_true(body: _Body, cond_in: str) -> bool:
    """Whether the body's condition output is its condition input (through Identity) or a
    constant true: the loop then runs exactly its trip count."""
    name = body.graph.outputs[0]
    producers = {out: node for node in body.graph.nodes for out in node.outputs}
    while name != cond_in:
        node = producers.get(name)
        if node is not None and node.op == "Identity":
            name = node.inputs[0]
            continue
        if node is not None and node.op == "Constant":
            value = getattr(node.attrs.get("value"), "value", None)
        else:
            info = body.graph.tensors.get(name)
            value = info.value if info is not None else None
        return value is not None and bool(value) and all(value)
    return True


@rule("Loop", carries=True)
def loop(inputs: Inputs, *, body: Subgraph | None = None, node_name="",
         scope: Scope | None = None) -> RuleResult:
    """Carried outputs keep their shapes, scan outputs are [trips, ...]; MACs = trips x body
    (the body once, per iteration, when the trip count is unknown)."""
    trip_input = inputs[0] if inputs else None
    cond_input = inputs[1] if len(inputs) > 1 else None
    carried = list(inputs[2:])
    if not _given(carried):
        raise ShapeError("a loop-carried input is omitted", fix="give every loop-carried value an initial tensor")
    cond_in = body.inputs[1] if body is not None and len(body.inputs) > 1 else ""
    analysed = _analysed(body, "body", [TensorState((), "int64"), TensorState((), "bool"),
                                        *(TensorState(c.shape, c.dtype) for c in carried)], scope, node_name)
    assert scope is not None  # _analysed raises without it
    n = len(carried)
    if len(analysed.outputs) < 1 + n:
        raise ShapeError(f"the body gives {len(analysed.outputs)} outputs; it must give the condition and the "
                         f"{n} loop-carried values")
    base = _symbol_base(node_name)
    lines = [analysed.summary()]
    limit = trip_input.value[0] if trip_input is not None and trip_input.value else None
    initial = cond_input.value[0] if cond_input is not None and cond_input.value else None
    trips: Dim
    if cond_input is not None and initial is not None and not initial:
        trips = 0
        lines.append("trip count = 0: the condition is the constant false")
    elif limit is not None and (cond_input is None or initial and _condition_stays_true(analysed, cond_in)):
        trips = limit
        lines.append(f"trip count = {limit} (the trip-count input)")
    else:
        trips = Sym.symbol(f"{base}_trip_count")
        at_most = f", at most {limit}" if limit is not None else ""
        lines.append(f"trip count = {trips}: set by the condition at run time{at_most}")
    warnings = []
    if _bindable(trips, scope.bindings):
        times = bind(trips, scope.bindings)
        macs, flops = analysed.macs * trips, analysed.flops * trips
        lines.append(f"MACs = trips x body = {trips} * {analysed.macs} = {analysed.macs * times}, "
                     f"FLOPs = {trips} * {analysed.flops} = {analysed.flops * times}")
    else:
        times, macs, flops = 1, analysed.macs, analysed.flops
        lines.append("MACs and FLOPs of one iteration (the trip count is unknown)")
        warnings.append(f"its trip count is not known, so its MACs and FLOPs are those of one iteration; "
                        f"bind it with --dim {trips}=N to count them all")
    outputs = _carried(carried, analysed.outputs[1:1 + n], base, lines)
    outputs += [Output((trips, *t.shape), t.dtype) for t in analysed.outputs[1 + n:]]
    lines += [f"output {k} = {list(o.shape)}" for k, o in enumerate(outputs)]
    return RuleResult(
        outputs=tuple(outputs), macs=macs, flops=flops, receptive=GLOBAL,
        held=tuple(_held(analysed, node_name, scope)), sublayers=_sublayers(analysed, node_name, times),
        warnings=tuple(warnings) + _warnings([analysed], scope), explain=lambda: lines,
        repeats=times if _bindable(trips, scope.bindings) else None,
    )


@rule("Scan", carries=True)
def scan(inputs: Inputs, *, body: Subgraph | None = None, num_scan_inputs=None, scan_input_axes=None,
         scan_output_axes=None, scan_input_directions=None, scan_output_directions=None, directions=None,
         node_name="", scope: Scope | None = None) -> RuleResult:
    """The body runs once per slice of the scan inputs along their axis: MACs = length x body;
    state outputs keep their shapes, scan outputs gain the length at their axis."""
    if directions is not None or (scope is not None and (scope.graph.opset or 9) < 9):
        return _scan_8(inputs, body, num_scan_inputs, node_name, scope)
    if not num_scan_inputs or num_scan_inputs > len(inputs):
        raise ShapeError(f"num_scan_inputs is {num_scan_inputs} for {len(inputs)} inputs")
    n = len(inputs) - num_scan_inputs
    states, sequences = list(inputs[:n]), list(inputs[n:])
    if not (_given(states) and _given(sequences)):
        raise ShapeError("an input is omitted", fix="Scan takes no optional inputs")
    in_axes = list(scan_input_axes or [0] * num_scan_inputs)
    slices: list[TensorState] = []
    # None when there is no scan input (only a negative num_scan_inputs leaves none): the scan outputs then
    # hold it and bind fails on it below (reading .terms from None), as it always has: hence two ignores.
    length: Dim | None = None
    for x, axis in zip(sequences, in_axes):
        axis = axis_index(axis, len(x.shape), "Scan input")
        if length is None:
            length = x.shape[axis]
        elif is_static(length) and is_static(x.shape[axis]) and length != x.shape[axis]:
            raise ShapeError(f"scan inputs have different lengths, {length} and {x.shape[axis]}")
        slices.append(TensorState(x.shape[:axis] + x.shape[axis + 1:], x.dtype))
    analysed = _analysed(body, "body", [TensorState(s.shape, s.dtype) for s in states] + slices, scope, node_name)
    assert scope is not None  # _analysed raises without it
    if len(analysed.outputs) < n:
        raise ShapeError(f"the body gives {len(analysed.outputs)} outputs for {n} state variables")
    lines = [analysed.summary(), f"sequence length = {length}"]
    outputs = _carried(states, analysed.outputs[:n], _symbol_base(node_name), lines)
    scanned = analysed.outputs[n:]
    out_axes = list(scan_output_axes or [0] * len(scanned))
    for t, axis in zip(scanned, out_axes):
        axis = axis_index(axis, len(t.shape) + 1, "Scan output")
        outputs.append(Output((*t.shape[:axis], length, *t.shape[axis:]), t.dtype))  # type: ignore[arg-type]
    times = bind(length, scope.bindings)  # type: ignore[arg-type]  # None fails here: see `length` above
    assert length is not None  # bind(None) raised
    macs, flops = analysed.macs * length, analysed.flops * length
    lines.append(f"MACs = length x body = {length} * {analysed.macs} = {analysed.macs * times}, "
                 f"FLOPs = {length} * {analysed.flops} = {analysed.flops * times}")
    lines += [f"output {k} = {list(o.shape)}" for k, o in enumerate(outputs)]
    return RuleResult(
        outputs=tuple(outputs), macs=macs, flops=flops, receptive=GLOBAL,
        held=tuple(_held(analysed, node_name, scope)), sublayers=_sublayers(analysed, node_name, times),
        warnings=_warnings([analysed], scope), explain=lambda: lines, repeats=times,
    )


def _scan_8(inputs: Inputs, body: Subgraph | None, num_scan_inputs: int | None, node_name: str,
            scope: Scope | None) -> RuleResult:
    """Scan-8: inputs (sequence_lens, states..., scan inputs...) all lead with a batch axis, scan
    inputs then the sequence axis; the body sees one batch element's states and one slice.
    MACs = batch x length x body (sequence_lens may stop a row early: the counts are the most
    it runs); states keep [batch, ...], scan outputs are [batch, length, ...]."""
    rest = list(inputs[1:])
    if not num_scan_inputs or num_scan_inputs > len(rest):
        raise ShapeError(f"num_scan_inputs is {num_scan_inputs} for {len(rest)} inputs after sequence_lens")
    n = len(rest) - num_scan_inputs
    states, sequences = rest[:n], rest[n:]
    if not (_given(states) and _given(sequences)):
        raise ShapeError("an input is omitted", fix="Scan-8 takes no optional inputs but sequence_lens")
    if any(len(t.shape) < 1 for t in states) or any(len(t.shape) < 2 for t in sequences):
        raise ShapeError("Scan-8's states need a batch axis and its scan inputs a batch and a sequence axis")
    batch, length = sequences[0].shape[0], sequences[0].shape[1]
    analysed = _analysed(body, "body", [TensorState(t.shape[1:], t.dtype) for t in states]
                         + [TensorState(t.shape[2:], t.dtype) for t in sequences], scope, node_name)
    assert scope is not None  # _analysed raises without it
    if len(analysed.outputs) < n:
        raise ShapeError(f"the body gives {len(analysed.outputs)} outputs for {n} state variables")
    runs = batch * length
    lines = [analysed.summary(), f"batch = {batch}, sequence length = {length}"]
    carried = _carried([TensorState(t.shape[1:], t.dtype) for t in states], analysed.outputs[:n],
                       _symbol_base(node_name), lines)
    outputs = [Output((batch, *o.shape), o.dtype) for o in carried]
    outputs += [Output((batch, length, *t.shape), t.dtype) for t in analysed.outputs[n:]]
    times = bind(runs, scope.bindings)
    macs, flops = analysed.macs * runs, analysed.flops * runs
    lines.append(f"MACs = batch x length x body = {runs} * {analysed.macs} = {analysed.macs * times}")
    lines += [f"output {k} = {list(o.shape)}" for k, o in enumerate(outputs)]
    return RuleResult(
        outputs=tuple(outputs), macs=macs, flops=flops, receptive=GLOBAL,
        held=tuple(_held(analysed, node_name, scope)), sublayers=_sublayers(analysed, node_name, times),
        warnings=_warnings([analysed], scope), explain=lambda: lines, repeats=times,
    )
