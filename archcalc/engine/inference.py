"""Shape, parameter and cost inference over a :class:`~archcalc.core.graph.Graph`.

Layers are visited in topological order; each op's rule (see :mod:`archcalc.rules.base`)
gives output shapes and costs from input shapes. Symbolic dims stay symbolic in shapes
and are bound (``batch=1`` unless told otherwise) only for the counts.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from fractions import Fraction
from itertools import accumulate
from math import gcd
from operator import add, attrgetter, sub
from typing import Any, NamedTuple

from archcalc.core.collector import pause_gc
from archcalc.core.dims import Dim, Sym, bind, bind_known, bind_shape, prod, shape_symbols
from archcalc.core.dtypes import UNKNOWN_DTYPE, dtype_bytes, stored_bytes
from archcalc.core.errors import ArchcalcError, ShapeError, UnboundDim, UnknownValue
from archcalc.core.graph import Deferred, Graph, Node, Shape, TensorInfo
from archcalc.core.results import Analysis, AxisField, LayerResult, TensorResult, Totals
from archcalc.rules.base import GLOBAL, Inputs, Rule, RuleResult, RunTimeShape, Scope, TensorState, Window, rule_for

PARAM_KINDS = ("weight", "buffer")
_PER_LAYER_CONTEXT = frozenset({"node_name", "scope"})
# ONNX dims and every runtime's element counts are int64; Python ints never overflow, so a
# count past this is reported as bad input rather than silently printed.
INT64_MAX = 2**63 - 1
# Named tuples made per tensor (TensorState, TensorResult) are built with tuple.__new__: their
# own __new__ is a Python lambda wrapping it, 9% of a 10k-layer engine pass.
_new_tuple = tuple.__new__


def analyze(graph: Graph, bindings: Mapping[str, int] | None = None) -> Analysis:
    """Infer every tensor's shape and every layer's params, MACs, FLOPs and memory."""
    # The sizes an input was fed at (--input-shape) bind the dims they replaced; a --dim or --batch
    # for one of those binds nothing more (_checked_bindings says so).
    env = {"batch": 1, **(bindings or {}), **graph.bindings}
    # ONNX models name their batch dim freely (N, batch_size, ...): --batch binds those too.
    batch_dims = graph.batch_dims
    for name in batch_dims:
        env.setdefault(name, env["batch"])
    with pause_gc():
        inference = _Inference(graph, env)
        analysis = inference.run()
    if graph.is_body:  # analysed with its parent's bindings
        return analysis
    return _checked_bindings(analysis, inference.symbols(), dict(bindings or {}), batch_dims)


def _checked_bindings(analysis: Analysis, used: set[str], given: dict[str, int],
                      batch_dims: Sequence[str]) -> Analysis:
    """Keep in `bindings` only what binds a symbolic dim of the graph (so reports do not
    claim a batch the model does not have), and warn about each given binding that binds nothing."""
    if used & set(batch_dims):
        used.add("batch")
    warnings = []
    for name, value in given.items():
        if name in used:
            continue
        if name == "batch":
            warnings.append(f"--batch {value} binds nothing: the model has no symbolic 'batch' dim (its batch "
                            "is fixed); counts are at the model's own sizes")
        else:
            dims = ", ".join(sorted(used)) or "none"
            warnings.append(f"binding '{name}={value}' (--dim) binds nothing: the model has no symbolic dim "
                            f"'{name}' (its symbolic dims: {dims}); counts are at the model's own sizes")
    bound = {name: value for name, value in analysis.bindings.items() if name in used}
    return replace(analysis, bindings=bound, warnings=analysis.warnings + tuple(warnings))


class _Inference:
    def __init__(self, graph: Graph, env: dict[str, int]):
        self.graph = graph
        self.env = env
        self.states: dict[str, TensorState | None] = {}
        # The TensorResult of each tensor in `states`, made once: every consumer lists it.
        self.results: dict[str, TensorResult] = {}
        self.element_counts: dict[Shape, int] = {}  # bound element count by shape: few distinct shapes
        self.fields: dict[str, _Field] = {}
        self.rules: dict[str, Any] = {}  # the default domain's rule (or None) by op, looked up once
        self.rule_results: dict[tuple[Any, ...], tuple[RuleResult, _Outcome]] = {}  # see _apply
        self.bound_counts: dict[Sym, int] = {}  # see _bound
        self.known: dict[str, TensorInfo] = dict(graph.tensors)
        self.counted: set[str] = set()
        self.buffer_tensors: set[str] = set()  # of `counted`, those held as buffers (BatchNorm statistics)
        self.weight_bytes = 0  # of the tensors in `counted`
        self.quantization_bytes = 0  # of the tensors in `quantization_counted` (RuleResult.quantization)
        self.quantization_counted: set[str] = set()
        self.tensor_bytes: dict[str, int] = {}
        self.warnings: list[str] = []
        self.scope = Scope(graph, self.states, self.known, env, analyze)
        self.sublayers: list[LayerResult] = []  # of the layer just recorded, listed after it
        self.counted_symbols: set[str] = set()  # named by counts but maybe by no shape (trip counts)
        # A view of a weight (RuleResult.views) by the tensor it makes, to the weight it shows:
        # counted by the layer that uses the view as a weight; until then the viewing layer
        # holds it (and, when none uses it so, counts it at the end of the run).
        self.view_sources: dict[str, str] = {}
        self.view_holders: dict[str, Node] = {}
        # Dims known only at run time (NonZero's count, a shape read from a graph input) that no
        # binding gives: counts leave out the terms holding them, so the totals are partial.
        self.left_out: dict[str, None] = {}
        self._fed: set[str] | None = None  # see _bind

    def symbols(self) -> set[str]:
        """Every symbolic dim name a shape or count of the graph holds."""
        names = set(self.counted_symbols)
        # Layers given one rule result share its states, and big models have few distinct shapes:
        # states are told apart by identity first (a symbolic dim's hash is Python code).
        states = list(filter(None, self.states.values()))
        shapes = set(map(attrgetter("shape"), dict(zip(map(id, states), states)).values()))
        shapes.update(map(attrgetter("shape"), self.known.values()))
        symbolic = {dim for shape in shapes if not isinstance(shape, Deferred) for dim in shape if isinstance(dim, Sym)}
        for dim in symbolic:
            names |= dim.symbols()
        return names

    def run(self) -> Analysis:
        states, results = self.states, self.results
        for name, info in self.graph.tensors.items():
            shape = info.shape
            if not isinstance(shape, Deferred):
                shape, value = tuple(shape), info.value
                states[name] = _new_tuple(TensorState, (shape, info.dtype, None if isinstance(value, Deferred)
                                                        else value))
                results[name] = _new_tuple(TensorResult, (name, shape, info.dtype))
                if info.kind == "input":
                    self.fields[name] = _input_field(shape)
        layers = []
        nodes = self.graph.topological_nodes()
        for node in nodes:
            layers.append(self._layer(node))
            if self.sublayers:
                layers.extend(self.sublayers)
                self.sublayers = []
        if self.view_holders:
            layers = self._count_unused_views(layers)
        totals, live = self._totals(layers, nodes)
        return Analysis(
            path=self.graph.path,
            name=str(self.graph.metadata.get("name", "")),
            layers=tuple(layers),
            tensors=self._tensor_results(),
            totals=totals,
            live_bytes=tuple(live),
            warnings=tuple(self.graph.metadata.get("warnings", ())) + tuple(self.warnings) + self._left_out_warnings(),
            bindings=dict(self.env),
            known_tensors=self.known,
            param_tensors=tuple(sorted(self.counted)),
            buffer_tensors=tuple(sorted(self.buffer_tensors)),
        )

    def _layer(self, node: Node) -> LayerResult:
        inputs = list(map(self.states.get, node.inputs))
        missing = False
        if not all(inputs):  # a state is a non-empty tuple: truth, not `None in`'s comparisons
            for index, name in enumerate(node.inputs):
                if inputs[index] is None and name:  # not computed yet: a spec weight with a deferred shape, or unknown
                    inputs[index] = self._resolve_input(node, name)
                    missing = missing or inputs[index] is None
        rule = self.rules.get(node.op, _NO_ENTRY) if not node.domain else _NO_ENTRY
        if rule is _NO_ENTRY:
            rule = rule_for(node.domain, node.op)
            if not node.domain:
                self.rules[node.op] = rule
        if rule is None or missing:
            return self._unmodelled(node, inputs, has_rule=rule is not None)
        # Front ends give a dict, which rules and LayerResult take; Node.attrs (core/graph.py) says Mapping.
        attrs: dict[str, Any] = node.attrs  # type: ignore[assignment]
        if node.has_deferred:
            shapes = [s.shape if s else None for s in inputs]
            # Deferred.compute (core/graph.py) says Sequence[Shape]; it is given None for an absent input.
            attrs = {k: v.compute(self._deferred_shapes(v, shapes)) if isinstance(v, Deferred)  # type: ignore[arg-type]
                     else v for k, v in attrs.items()}
        try:
            try:
                result, outcome = self._apply(rule, node, inputs, attrs)
            except RunTimeShape as run_time:  # dims named after this layer: never shared, so not cached
                result = run_time.named(node.name)
                outcome = self._outcome(result, inputs[0].dtype if inputs and inputs[0] else "float32")
        except UnknownValue as error:
            return self._unmodelled(node, inputs, has_rule=True, reason=error.message)
        except ArchcalcError as error:
            raise error.located(node.where(self.graph.path)) from None
        except (TypeError, ValueError, IndexError, ZeroDivisionError, AttributeError) as error:
            raise ShapeError(
                f"its inputs or attributes do not fit the op: {error}",
                where=node.where(self.graph.path),
                fix="check the layer's attributes and the shapes of its inputs",
            ) from None
        if len(result.outputs) < len(node.outputs) and len(result.outputs) < sum(1 for o in node.outputs if o):
            raise ShapeError(
                f"the layer declares {len(node.outputs)} outputs, the op gives {len(result.outputs)}",
                where=node.where(self.graph.path),
            )
        try:
            return self._record(node, attrs, result, outcome)
        except ArchcalcError as error:  # e.g. a weight with a symbolic dim and no value to count with
            raise error.located(node.where(self.graph.path)) from None

    def _apply(self, rule: Rule, node: Node, inputs: Inputs,
               attrs: dict[str, Any]) -> tuple[RuleResult, _Outcome]:
        """The rule's result for the layer, and its bound counts. A rule is a pure function of
        its inputs, attributes and the layer's output count, and big models repeat layers (a
        ResNet stage, a transformer block), so each distinct call runs once and is counted
        once; rules that read the layer's name or enclosing graph are called every time."""
        key = None
        inputs = rule.visible(inputs)
        if not rule.context & _PER_LAYER_CONTEXT:
            attr_key = node.attr_key if node.attr_key is not None and not node.has_deferred else _attribute_key(attrs)
            key = (node.op, node.domain, len(node.outputs), tuple(inputs), attr_key)  # contrib ops reuse names
            try:
                cached = self.rule_results.get(key)
            except TypeError:  # an attribute that cannot be hashed: call the rule
                key = cached = None
            if cached is not None:
                return cached
        result = rule(inputs, attrs, {"n_outputs": len(node.outputs), "node_name": node.name, "op": node.op,
                                      "scope": self.scope, "bindings": self.env})
        try:
            outcome = self._outcome(result, inputs[0].dtype if inputs and inputs[0] else "float32")
        except ArchcalcError as error:  # e.g. a symbolic dim with no value to count with
            raise error.located(node.where(self.graph.path)) from None
        if key is not None:
            self.rule_results[key] = result, outcome
        return result, outcome

    def _outcome(self, result: RuleResult, first_dtype: str) -> _Outcome:
        """What every layer given `result` records alike: output states, their bytes, and
        the counts bound to ints."""
        states = []
        sizes = []
        for out in result.outputs:
            dtype = out.dtype or first_dtype
            shape = tuple(out.shape)
            states.append(TensorState(shape, dtype, out.value))
            sizes.append(self._elements(shape) * dtype_bytes(dtype))
        macs, flops = self._bound(result.macs), self._bound(result.flops)
        if max(macs, flops, sum(sizes)) > INT64_MAX:
            raise ShapeError(
                f"its counts overflow int64 (MACs {macs:.3e}, output bytes {sum(sizes):.3e})",
                fix="the dims are implausibly large: check the input shape and --batch/--dim values",
            )
        return _Outcome(tuple(states), tuple(sizes), macs, flops, self._bound(result.backward_state_bytes),
                        self._bound(result.integer_macs) if result.integer_macs else 0)

    def _resolve_input(self, node: Node, name: str) -> TensorState | None:
        if not name:
            return None
        state = self.states.get(name)
        if state is None and name in self.known and isinstance(self.known[name].shape, Deferred):
            state = self._materialise(node, self.known[name])
        return state

    def _deferred_shapes(self, deferred: Deferred, own: list[Shape | None]) -> list[Shape | None]:
        """The shapes `deferred` is computed from: the layer's inputs' (`own`), or those of the
        tensors it names (a spec layer lowered to several ops names the spec layer's inputs)."""
        if deferred.inputs is None:
            return own
        states = [self.states.get(name) for name in deferred.inputs]
        return [s.shape if s else None for s in states]

    def _materialise(self, node: Node, info: TensorInfo) -> TensorState:
        """Give a spec's weight its shape now that the layer's data input is known."""
        assert isinstance(info.shape, Deferred)  # _resolve_input materialises deferred shapes only
        own = [s.shape if s else None for s in map(self.states.get, node.inputs)]
        try:
            # Deferred.compute (core/graph.py) says Sequence[Shape]; it is given None for an absent input.
            shape = tuple(info.shape.compute(self._deferred_shapes(info.shape, own)))  # type: ignore[arg-type]
            value = (info.value.compute(self._deferred_shapes(info.value, own))  # type: ignore[arg-type]
                     if isinstance(info.value, Deferred) else info.value)
        except ArchcalcError as error:
            raise error.located(node.where(self.graph.path)) from None
        if any(isinstance(d, int) and d < 0 for d in shape):
            raise ShapeError(f"weight '{info.name}' would have shape {list(shape)}",
                             where=node.where(self.graph.path))
        resolved = TensorInfo(info.name, shape, info.dtype, info.kind, value, info.trainable)
        self.known[info.name] = resolved
        state = TensorState(shape, info.dtype, value)
        self._set_state(info.name, state)
        return state

    def _record(self, node: Node, attrs: dict[str, Any], result: RuleResult,
                outcome: _Outcome) -> LayerResult:
        states, results, tensor_bytes, fields = self.states, self.results, self.tensor_bytes, self.fields
        outputs = []
        activation_bytes = 0
        for name, state, size in zip(node.outputs, outcome.states, outcome.sizes):
            if name:
                states[name] = state
                tensor = results[name] = _new_tuple(TensorResult, (name, state.shape, state.dtype))
                outputs.append(tensor)
                tensor_bytes[name] = size
                activation_bytes += size
        if result.weights or result.buffers or result.held:
            params, trainable, buffers = self._params(node, result)
        else:  # activations, reshapes, ...: no weights
            params = trainable = buffers = 0
        field = self._receptive_field(node, result.receptive)
        for name in node.outputs:
            if name:
                fields[name] = field
        if result.warnings:
            self.warnings.extend(f"{node.where(self.graph.path)}: {warning}" for warning in result.warnings)
        if result.sublayers:
            self.sublayers = [layer if layer.parent else replace(layer, parent=node.name)
                              for layer in result.sublayers]
        # Positional, in LayerResult's field order: a third of the time keywords take, once per layer.
        return LayerResult(
            node.name, node.op, self._input_results(node), tuple(outputs),
            params, trainable, buffers, outcome.macs, outcome.flops, activation_bytes,
            field.public if isinstance(field, _Spatial) else field,  # receptive_field
            True, "",  # modelled, unmodelled_reason
            outcome.backward_state_bytes, node.block, node.source,
            "", node.domain, result.repeats, outcome.integer_macs, result.variant,  # parent "": set by the caller
            result.parts,
            result.macs, result.flops,  # macs_formula, flops_formula
            attrs, result.explain,
        )

    def _params(self, node: Node, result: RuleResult) -> tuple[int, int, int]:
        """Params, trainable params and buffers of the weights the layer uses that no earlier
        layer counted (a shared tensor counts once)."""
        names = node.inputs
        sources = self.view_sources
        viewed = self._view(node, result) if result.views else ()
        if sources or viewed:
            used = [(sources.get(names[i], names[i]), False) for i in result.weights
                    if i < len(names) and i not in viewed]
            used += [(sources.get(names[i], names[i]), True) for i in result.buffers if i < len(names)]
        else:  # no views in the graph so far: the inputs themselves
            used = [(names[i], False) for i in result.weights if i < len(names)]
            if result.buffers:
                used += [(names[i], True) for i in result.buffers if i < len(names)]
        for held in result.held:  # a subgraph's own weights join the known tensors under their names
            if held.name not in self.known:
                # The body counted them, so their shapes and values were resolved (none is Deferred).
                assert not isinstance(held.shape, Deferred) and not isinstance(held.value, Deferred)
                self.known[held.name] = held
                self._set_state(held.name, TensorState(tuple(held.shape), held.dtype, held.value))
            used.append((held.name, False))
        learned = {names[i] for i in result.integer_weights if i < len(names)} if result.integer_weights else ()
        packed = ({names[i]: per_element for i, per_element in result.packed_weights if i < len(names)}
                  if result.packed_weights else None)
        params, trainable, buffers = self._count(node, used, learned, packed)
        for i in result.quantization:
            self._count_quantization(names[i] if i < len(names) else "")
        if max(params, buffers) > INT64_MAX:  # a table of 2**62 rows: the output may be small
            raise ShapeError(f"its weights hold {max(params, buffers):.3e} values, more than int64 counts",
                             fix="the weight shapes are implausibly large: check the layer's sizes")
        return params, trainable, buffers

    def _count(self, node: Node, used: Sequence[tuple[str, bool]], learned: Collection[str],
               packed: Mapping[str, int] | None) -> tuple[int, int, int]:
        """(params, trainable, buffers) of the tensors `used` by `node` as weights (each with
        whether the layer holds it as a buffer), leaving out those that are not weights and
        those an earlier layer counted (a shared tensor counts once)."""
        known, counted, states, view_holders = self.known, self.counted, self.states, self.view_holders
        params = trainable = buffers = 0
        for tensor, is_buffer in used:
            info = known.get(tensor)  # None also for "" (an optional input left out)
            if info is None or tensor in counted:
                continue
            kind = info.kind
            if kind not in PARAM_KINDS and not (kind == "constant" and tensor in learned):
                continue
            counted.add(tensor)
            if view_holders:
                view_holders.pop(tensor, None)
            state = states[tensor]
            # A modelled layer's named inputs all have states (else it is unmodelled); held ones got theirs above.
            assert state is not None
            count = self._elements(state.shape)
            self.weight_bytes += stored_bytes(info.dtype, count)
            if packed:
                count *= packed.get(tensor, 1)
            if is_buffer or kind == "buffer":
                self.buffer_tensors.add(tensor)
                buffers += count
            else:
                params += count
                if node.trainable and info.trainable:
                    trainable += count
        return params, trainable, buffers

    def _count_quantization(self, tensor: str) -> None:
        """Add a stored scale or zero point's bytes, once; one computed at run time
        (DynamicQuantizeLinear's) is an activation, not stored."""
        info = self.known.get(tensor)  # None also for "" (an optional input left out)
        if info is None or info.kind == "input" or tensor in self.quantization_counted or tensor in self.counted:
            return
        state = self.states.get(tensor)
        if state is None:
            return
        self.quantization_counted.add(tensor)
        self.quantization_bytes += stored_bytes(info.dtype, self._elements(state.shape))

    def _view(self, node: Node, result: RuleResult) -> tuple[int, ...]:
        """The inputs of a viewing layer that show a weight not counted yet: their outputs
        become views of it (see view_sources), and the layer holds it meanwhile."""
        deferred = []
        for i in result.views:
            if i >= len(node.inputs):
                continue
            source = self.view_sources.get(node.inputs[i], node.inputs[i])
            info = self.known.get(source)
            if info is None or source in self.counted or info.kind not in PARAM_KINDS:
                continue
            deferred.append(i)
            self.view_holders.setdefault(source, node)
            for output in node.outputs:
                if output:
                    self.view_sources[output] = source
        return tuple(deferred)

    def _count_unused_views(self, layers: list[LayerResult]) -> list[LayerResult]:
        """Weights only ever viewed (a view that is a graph output, or read only by Shape):
        counted by the first layer that viewed them, as any weight a layer reads."""
        extra: dict[str, list[int]] = {}
        for source, node in list(self.view_holders.items()):
            counts = self._count(node, [(source, False)], (), None)
            sums = extra.setdefault(node.name, [0, 0, 0])
            for k, value in enumerate(counts):
                sums[k] += value
        return [replace(layer, params=layer.params + extra[layer.name][0],
                        trainable_params=layer.trainable_params + extra[layer.name][1],
                        buffers=layer.buffers + extra[layer.name][2])
                if layer.name in extra and not layer.parent else layer for layer in layers]

    def _bound(self, count: Dim) -> int:
        """`count` with the dims bound. Each distinct symbolic count is bound, and its symbols
        noted, once: layers given the same rule result share its counts."""
        if isinstance(count, int):
            return count
        value = self.bound_counts.get(count)
        if value is None:
            self.counted_symbols |= count.symbols()
            value = self.bound_counts[count] = self._bind(count)
        return value

    def _bind(self, dim: Dim) -> int:
        """`dim` bound to an int. A dim of the graph's inputs must be bound (UnboundDim: the user
        gives it); one a layer made up for a size known only at run time need not: the terms
        holding it are left out (they are not counted), and the totals say they are partial."""
        try:
            return bind(dim, self.env)
        except UnboundDim as error:
            if self._fed is None:
                # A body's inputs are its op's values, whose dims may be run-time ones.
                self._fed = set() if self.graph.is_body else {
                    name for info in self.graph.tensors.values()
                    if info.kind == "input" and not isinstance(info.shape, Deferred)
                    for name in shape_symbols(info.shape)}
            if error.name in self._fed:
                raise
            value, missing = bind_known(dim, self.env)
            fed = sorted(missing & self._fed)
            if fed:
                raise UnboundDim(fed[0]) from None
            self.left_out.update(dict.fromkeys(sorted(missing)))
            return value

    def _left_out_warnings(self) -> tuple[str, ...]:
        return tuple(f"dim '{name}' is known only at run time: counts and memory that depend on it leave it out "
                     f"(the totals are partial); bind it with --dim {name}=N to count it" for name in self.left_out)

    def _unmodelled(self, node: Node, inputs: Sequence[TensorState | None], has_rule: bool,
                    reason: str | None = None) -> LayerResult:
        if reason is None and has_rule:
            reason = "an input's shape is unknown"
        elif reason is None:
            domain = f" (domain '{node.domain}')" if node.domain else ""
            reason = f"op '{node.op}'{domain} has no rule"
        # Shapes the front end learnt elsewhere (ONNX shape inference) keep the analysis
        # going downstream; a hint with a dim that cannot be bound is no help for counting.
        hinted = {name: self._hint(name) for name in node.outputs if name}
        used = " (output shapes from ONNX shape inference)" if any(hinted.values()) else ""
        self.warnings.append(
            f"{node.where(self.graph.path)}: not modelled, {reason}; its MACs and FLOPs are not counted{used}"
        )
        outputs = []
        activation_bytes = 0
        for name, state in hinted.items():
            outputs.append(self._set_state(name, state, self.graph.hint_dtypes.get(name)))
            if state is not None:
                size = self._elements(state.shape) * dtype_bytes(state.dtype)
                self.tensor_bytes[name] = size
                activation_bytes += size
        return LayerResult(
            name=node.name, op=node.op, inputs=self._input_results(node), outputs=tuple(outputs),
            params=0, trainable_params=0, buffers=0, macs=0, flops=0, activation_bytes=activation_bytes,
            receptive_field=None, modelled=False, unmodelled_reason=reason, block=node.block, source=node.source,
            domain=node.domain,
        )

    def _hint(self, name: str) -> TensorState | None:
        shape = self.graph.hints.get(name)
        if shape is None:
            return None
        try:
            bind_shape(shape, self.env)
        except ArchcalcError:
            return None
        return TensorState(tuple(shape), self.graph.hint_dtypes.get(name, "float32"))

    def _set_state(self, name: str, state: TensorState | None, dtype: str | None = None) -> TensorResult:
        """Record `state`; for an unknown one, `dtype` when the front end knows it (ONNX's type inference)."""
        self.states[name] = state
        result = self.results[name] = TensorResult(name, state.shape if state else None,
                                                   state.dtype if state else dtype or UNKNOWN_DTYPE)
        return result

    def _elements(self, shape: Shape) -> int:
        """Elements of a tensor of `shape` with the dims bound."""
        count = self.element_counts.get(shape)
        if count is None:
            count = self.element_counts[shape] = self._bind(prod(shape))
        return count

    def _input_results(self, node: Node) -> tuple[TensorResult, ...]:
        results = self.results
        if "" not in node.inputs:
            try:
                return tuple(map(results.__getitem__, node.inputs))
            except KeyError:  # an input of unknown shape (the layer is not modelled)
                pass
        return tuple([results.get(name) or TensorResult(name, None, UNKNOWN_DTYPE) for name in node.inputs if name])

    def _receptive_field(self, node: Node, receptive: str | tuple[Window, ...]) -> _Field:
        """The layer's output field from its inputs' (see `_through_window`). Windows that do
        not match the input's spatial axes (a rule declaring none, `()`, for a layout change
        that scrambles them) leave it unknown."""
        fields = self.fields
        read_any = False  # some input has a field entry (None for one with no spatial axes)
        widest: _Spatial | None = None  # merging branches (add, concat): an output sees the widest of its inputs'
        for name in node.inputs:
            field: _Field = fields.get(name, _NO_ENTRY)
            if field is _NO_ENTRY:
                continue
            read_any = True
            if field is None or field is widest:
                continue
            if isinstance(field, str):  # GLOBAL, the only string a field holds
                return GLOBAL
            if widest is None or field.width > widest.width:
                widest = field
        if not read_any:
            return None
        if receptive == GLOBAL:
            return GLOBAL
        if widest is None:
            return None
        if isinstance(receptive, str):  # POINTWISE (GLOBAL returned above), the rules' other string
            return widest
        if len(receptive) != len(widest.axes):
            return None
        axes: list[_Axis] = []
        axis_before = window_before = None
        for axis, window in zip(widest.axes, receptive):
            if axis is not axis_before or window != window_before:  # else a square window on a square field
                next_axis = _through_window(axis, window)
                if next_axis is None:
                    return None
                through = next_axis
                axis_before, window_before = axis, window
            axes.append(through)
        return _Spatial.of(tuple(axes))

    def _tensor_results(self) -> dict[str, TensorResult]:
        return dict(self.results)

    def _totals(self, all_layers: list[LayerResult], nodes: Sequence[Node]) -> tuple[Totals, list[int]]:
        """The totals, and the live activation bytes after each top-level layer (see _live_bytes)."""
        layers = [layer for layer in all_layers if not layer.parent]  # sublayers are in their parent's counts
        params = sum(map(attrgetter("params"), layers))
        trainable = sum(map(attrgetter("trainable_params"), layers))
        input_bytes = sum(
            self._bind(prod(info.shape)) * dtype_bytes(info.dtype)
            for info in self.graph.tensors.values()
            if info.kind == "input" and not isinstance(info.shape, Deferred)
        )
        activations = list(map(attrgetter("activation_bytes"), layers))
        live = self._live_bytes(nodes, activations, input_bytes)
        return Totals(
            params=params,
            trainable_params=trainable,
            frozen_params=params - trainable,
            buffers=sum(map(attrgetter("buffers"), layers)),
            macs=sum(map(attrgetter("macs"), layers)),
            flops=sum(map(attrgetter("flops"), layers)),
            integer_macs=sum(map(attrgetter("integer_macs"), layers)),
            activation_bytes=sum(activations),
            peak_activation_bytes=max([input_bytes, *live]),
            weight_bytes=self.weight_bytes,
            quantization_bytes=self.quantization_bytes,
            input_bytes=input_bytes,
            partial=bool(self.left_out) or not all(map(attrgetter("modelled"), all_layers)),
        ), live

    def _live_bytes(self, nodes: Sequence[Node], activations: list[int], input_bytes: int) -> list[int]:
        """Bytes of live activations just after each layer has run, when layers run one at a
        time in this order and each tensor is freed after its last consumer: the largest (or
        the inputs alone) is what inference needs at its peak. `nodes` are the top-level
        layers' nodes, in order (a layer lists its node's inputs), `activations` their output bytes."""
        last_use = {name: index for index, node in enumerate(nodes) for name in node.inputs}
        freed = [0] * len(nodes)  # bytes freed once each layer has run
        # Only tensors with bytes free any (the weights, as many again on a CNN, free none).
        for name, size in self.tensor_bytes.items():
            index = last_use.get(name)
            if index is not None:
                freed[index] += size
        # Live before layer i runs: the inputs, plus what every earlier layer made less what it freed.
        before = accumulate(map(sub, activations, freed), initial=input_bytes)
        return list(map(add, before, activations))


class _Outcome(NamedTuple):
    """A rule result's per-output states and bytes, and its counts bound to ints."""

    states: tuple[TensorState, ...]
    sizes: tuple[int, ...]
    macs: int
    flops: int
    backward_state_bytes: int
    integer_macs: int = 0


def _attribute_key(attrs: Mapping[str, object]) -> tuple[Any, ...]:
    """`attrs` as a hashable key that tells 1, 1.0 and True apart (equal in Python, but a
    rule given float pads computes float sizes), in tuples too."""
    return tuple([(name, type(value), tuple(map(type, value)) if type(value) is tuple else (), value)
                  for name, value in attrs.items()])


def _input_field(shape: Sequence[Dim]) -> _Field:
    spatial_axes = len(shape) - 2
    if spatial_axes < 1:
        return None
    return _Spatial.of((_IDENTITY,) * spatial_axes)


# Receptive fields. Along one spatial axis, output position o of a tensor depends on a set
# of positions of the graph input; its field is the interval [lo(o), hi(o)] holding them
# (holes left by dilation or sparse kernels included). Every window maps o to a set of
# positions of its input whose pattern repeats: a convolution's output o+1 looks `stride`
# positions further on, a transposed convolution's output o+s one position further on. So
# lo and hi are periodic: lo(o + period) = lo(o) + advance. An axis is kept as one period
# of lo and hi, exactly, in integers; upsampling makes the period grow, striding shrinks it.
#
# Reported per axis (AxisField), in input pixels:
#   size  = max over o of hi(o) - lo(o) + 1: the widest span of input positions one output
#           depends on (a transposed convolution counts only the inputs that reach it, not
#           the zeros stuffed between them);
#   jump  = advance / period: the distance between neighbouring outputs' fields (a fraction
#           after upsampling: 1/2 after a stride-2 transposed convolution);
#   start = the centre of output 0's field, (lo(0) + hi(0)) / 2 (when output 0 depends on
#           no input, the first output that does, moved back by the jump).
# All three assume an input large enough that borders do not clip the field.
MAX_PERIOD = 1 << 12  # one entry per output phase; past this (upsampling by >4096) the field is unknown


class _Axis(NamedTuple):  # a named tuple, not a dataclass: one is made per layer and axis
    period: int
    advance: int
    lo: tuple[int | None, ...]  # None: that output depends on no input position
    # None exactly where lo is None (an output's interval has both ends or none), which the types
    # cannot say: the ignores on the hot paths below (period 1, bounds) rest on it.
    hi: tuple[int | None, ...]
    public: AxisField

    @staticmethod
    def make(period: int, advance: int, lo: tuple[int | None, ...], hi: tuple[int | None, ...]) -> _Axis | None:
        if period == 1:  # the common case, one output phase: the formulas below with first = 0
            low, high = lo[0], hi[0]
            if low is None:
                return None
            return _Axis(1, advance, lo, hi,
                         AxisField(high - low + 1, advance, _ratio(low + high, 2)))  # type: ignore[operator]
        first = next((r for r, value in enumerate(lo) if value is not None), None)
        if first is None:
            return None
        size = max(h - low + 1 for low, h in zip(lo, hi) if low is not None and h is not None)
        low, high = lo[first], hi[first]
        assert low is not None and high is not None  # lo[first] is not None, nor then is hi[first]
        # start = (lo + hi) / 2 - first * advance / period, over one denominator
        start = _ratio((low + high) * period - 2 * first * advance, 2 * period)
        return _Axis(period, advance, lo, hi, AxisField(size, _ratio(advance, period), start))

    def bounds(self, position: int) -> tuple[int, int] | None:
        turns, phase = divmod(position, self.period)
        low = self.lo[phase]
        if low is None:
            return None
        return low + turns * self.advance, self.hi[phase] + turns * self.advance  # type: ignore[operator]


_IDENTITY = _Axis(1, 1, (0,), (0,), AxisField(1, 1, 0))


class _Spatial(NamedTuple):
    """A field with spatial axes: per-axis periodic bounds, and the public form reported for
    them, made once (pointwise layers pass their input's field on unchanged); `width`, the
    sum of the axes' sizes, tells merging branches' fields apart."""

    axes: tuple[_Axis, ...]
    public: tuple[AxisField, ...]
    width: int | Fraction

    @staticmethod
    def of(axes: tuple[_Axis, ...]) -> _Spatial:
        public = tuple([a.public for a in axes])
        return _Spatial(axes, public, sum([a.size for a in public]))


# Internal form of a tensor's field: spatial, "global", or None (unknown or no spatial axes).
_Field = _Spatial | str | None
_NO_ENTRY: Any = object()  # what `fields` gives for a tensor it holds no entry for (None is an entry)


def _through_window(axis: _Axis, window: Window) -> _Axis | None:
    """The field after one more window. Output o of a convolution reads inputs
    o*s - p + d*t, of a transposed convolution the inputs i with i*s = o + p - d*t
    (t = 0..k-1; s stride, p pad_begin, d dilation, k kernel). Either way one output reads
    an arithmetic progression of inputs, so each output phase costs O(period), whatever
    the kernel, stride, dilation or padding (see `_progression_bounds`)."""
    k, s, p, d = window.kernel, window.stride, window.pad_begin, window.dilation
    if not window.transposed:
        if axis.period == 1:  # the common case: plain integer arithmetic
            q = axis.advance
            # A period-1 axis has lo[0] and hi[0] (make gives None for one without).
            low, high = axis.lo[0] - p * q, axis.hi[0] + (d * (k - 1) - p) * q  # type: ignore[operator]
            return _Axis.make(1, q * s, (low,), (high,))
        period = axis.period // gcd(axis.period, s)
        advance = period * s // axis.period * axis.advance
        if period > MAX_PERIOD:
            return None
        bounds = [_progression_bounds(axis, o * s - p, d, k) for o in range(period)]
    else:
        period, advance = axis.period * s, axis.advance
        if period > MAX_PERIOD:
            return None
        # t must solve d*t = o + p (mod s): none unless g = gcd(d, s) divides o + p, then
        # t = t0, t0 + s/g, ... (t0 < s/g), reading inputs (o + p - d*t0)/s, each d/g before the last.
        g = gcd(d, s)
        cycle, step = s // g, d // g
        inverse = pow(step, -1, cycle)
        bounds = []
        for o in range(period):
            if (o + p) % g:
                bounds.append(None)
                continue
            t0 = (o + p) // g * inverse % cycle
            if t0 >= k:
                bounds.append(None)
                continue
            count = (k - 1 - t0) // cycle + 1
            last = (o + p - d * t0) // s
            bounds.append(_progression_bounds(axis, last - step * (count - 1), step, count))
    lows = tuple([b[0] if b is not None else None for b in bounds])
    highs = tuple([b[1] if b is not None else None for b in bounds])
    return _Axis.make(period, advance, lows, highs)


def _progression_bounds(axis: _Axis, first: int, step: int, count: int) -> tuple[int, int] | None:
    """(min lo, max hi) of `axis` over positions first + step*t, t = 0..count-1 (step > 0);
    None when none of them depends on an input. The positions fall in at most `cycle` phases
    of the axis, repeating every `cycle` terms, and lo, hi grow by `advance` from one period
    to the next (advance >= 0): so the least lo is among the first `cycle` terms and the
    largest hi among the last `cycle`. O(min(count, period)), not O(count)."""
    cycle = axis.period // gcd(step, axis.period)
    terms = min(count, cycle)
    bounds = axis.bounds
    lows = [b[0] for b in map(bounds, range(first, first + step * terms, step)) if b is not None]
    if not lows:
        return None
    last = first + step * (count - 1)
    highs = [b[1] for b in map(bounds, range(last - step * (terms - 1), last + 1, step)) if b is not None]
    return min(lows), max(highs)


def _ratio(numerator: int, denominator: int) -> int | Fraction:
    """numerator / denominator, as an int when it divides exactly."""
    if numerator % denominator == 0:
        return numerator // denominator
    return Fraction(numerator, denominator)
