"""The one intermediate form: a DAG of layers with tensors on its edges.

Both front ends (YAML spec, ONNX file) build a :class:`Graph`; the engine reads it.
Layers are the nodes of a networkx ``DiGraph`` keyed by layer name; an edge
``producer -> consumer`` carries the names of the tensors that flow along it.
Tensors that no layer produces are graph inputs or initializers (weights).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from archcalc.core.dims import Dim, Sym
from archcalc.core.errors import GraphError

if TYPE_CHECKING:
    import networkx as nx

Shape = tuple[Dim, ...]
# The contents of a small tensor, row-major: ints (or symbolic dims read from shapes), floats, strings.
Value = tuple[Any, ...]


@dataclass(frozen=True)
class Deferred:
    """A value that depends on the shapes of a layer's inputs (e.g. a conv weight's
    input-channel dim in a YAML spec, which states only the filter count).
    The engine resolves it, just before the layer's rule runs, by calling
    ``compute(input_shapes)``.

    ``inputs`` names the tensors whose shapes it is computed from when they are not the
    layer's own inputs: a spec layer that lowers to several ops (an attention layer's
    projections, softmax and output projection) sizes every weight from the spec layer's
    input, which its later ops do not take."""

    compute: Callable[[Sequence[Shape]], Any]
    describe: str = "depends on the input shape"
    inputs: tuple[str, ...] | None = None


@dataclass(slots=True)
class TensorInfo:
    """A tensor the graph knows before inference: a graph input or an initializer.

    kind: ``input`` (fed at run time), ``weight`` (learned), ``buffer`` (state that
    is not learned, e.g. BatchNorm running statistics), ``constant`` (shapes, axes,
    scalars: a front end's guess from size and dtype, which a rule may overrule by naming the
    input learned) or ``fixed`` (known not to be learned, e.g. a value the exporter made up
    that the source model has no parameter for; never a param). ``value`` holds the
    contents of small integer constants, never weights.
    """

    name: str
    shape: Shape | Deferred
    dtype: str = "float32"
    kind: str = "input"
    value: Value | Deferred | None = None
    trainable: bool = True


@dataclass(slots=True)
class Node:
    """One layer: an op applied to named input tensors, producing named outputs.

    ``attrs`` follow the op's ONNX attribute names. ``source`` says where the layer was
    written (``specs/x.yaml:12``) for error messages; ``block`` is the path of the
    enclosing block instance (``layer1.0``), used to fold rows in reports. ``attr_key``,
    when a front end gives it, is a hashable form of ``attrs`` that tells values of
    different types apart (1, 1.0, True); the engine caches rule results by it, and
    derives one from ``attrs`` when it is None.
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    domain: str = ""
    trainable: bool = True
    source: str | None = None
    block: str = ""
    has_deferred: bool = False
    attr_key: tuple[Any, ...] | None = None

    def where(self, file: str | None = None) -> str:
        place = self.source or file or "<graph>"
        return f"{place}: layer '{self.name}' ({self.op})"


def _symbol_name(dim: object) -> str | None:
    """The name of `dim` when it is one symbolic dim (``batch``), not an expression of them."""
    if isinstance(dim, Sym) and len(dim.terms) == 1:
        (monomial, coefficient), = dim.terms
        if coefficient == 1 and len(monomial) == 1 and isinstance(monomial[0], str):
            return monomial[0]
    return None


@dataclass
class Graph:
    """Layers, known tensors and graph outputs, plus metadata from the front end.

    ``hints`` maps tensor names to shapes the front end learnt elsewhere (ONNX shape
    inference, value_info), and ``hint_dtypes`` to their dtypes; the engine uses them
    only for the outputs of layers it cannot model, so analysis goes on downstream.

    What changes how the graph is analysed is typed: ``format``, the front end that read
    it ("spec" or "onnx"); ``batch_dims``, the input dims that
    ``--batch`` binds besides ``batch`` (ONNX exports name theirs freely); ``opset``, the
    default domain's (a few ops changed meaning across opsets); ``outer_refs``, for the
    body of an If/Loop/Scan, the tensors it reads from enclosing graphs (None for a
    model's own graph). ``metadata`` only describes the model (name, format, producer,
    warnings) for reports.
    """

    path: str
    nodes: list[Node]
    tensors: dict[str, TensorInfo]
    outputs: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    bindings: dict[str, int] = field(default_factory=dict)
    hints: dict[str, Shape] = field(default_factory=dict)
    hint_dtypes: dict[str, str] = field(default_factory=dict)
    format: str = "spec"
    batch_dims: tuple[str, ...] = ()
    opset: int | None = None
    outer_refs: tuple[str, ...] | None = None

    @property
    def is_body(self) -> bool:
        return self.outer_refs is not None

    def dag(self) -> nx.DiGraph:
        """The layer DAG; raises GraphError for a duplicate name, a dangling input or a cycle."""
        import networkx as nx  # here, not at the top: a graph written in order never needs it (see topological_nodes)

        producer: dict[str, str] = {}
        dag = nx.DiGraph()
        for node in self.nodes:
            if node.name in dag:
                raise GraphError(f"two layers are named '{node.name}'", where=node.where(self.path),
                                 fix="give every layer a unique name")
            dag.add_node(node.name, node=node)
            for out in node.outputs:
                if out:
                    producer[out] = node.name
        for node in self.nodes:
            for tensor in node.inputs:
                if not tensor or tensor in self.tensors and tensor not in producer:
                    continue
                source = producer.get(tensor)
                if source is None:
                    raise GraphError(
                        f"input '{tensor}' is produced by no layer and is not a graph input",
                        where=node.where(self.path),
                        fix="check the spelling, or declare it as an input",
                    )
                if dag.has_edge(source, node.name):
                    dag.edges[source, node.name]["tensors"].append(tensor)
                else:
                    dag.add_edge(source, node.name, tensors=[tensor])
        return dag

    def topological_nodes(self) -> list[Node]:
        """Layers in an order where every producer precedes its consumers; the order the
        front end wrote them in whenever that already is one, so reports read like the source."""
        if self._written_in_order():
            return list(self.nodes)
        import networkx as nx

        dag = self.dag()
        position = {node.name: i for i, node in enumerate(self.nodes)}
        try:
            if all(position[a] < position[b] for a, b in dag.edges):
                return list(self.nodes)
            order = list(nx.lexicographical_topological_sort(dag, key=position.__getitem__))
        except nx.NetworkXUnfeasible:
            cycle = nx.find_cycle(dag)
            path = " -> ".join([a for a, _ in cycle] + [cycle[0][0]])
            first = dag.nodes[cycle[0][0]]["node"]
            raise GraphError(
                f"the layers form a cycle: {path}",
                where=first.where(self.path),
                fix="a layer may only take inputs from layers that do not depend on it",
            ) from None
        return [dag.nodes[name]["node"] for name in order]

    def _written_in_order(self) -> bool:
        """Whether the layers have unique names and each input is a known tensor or comes
        from a layer written before its consumer: exactly when `dag()` would raise nothing and
        the written order is topological. Front ends nearly always write that order, and
        checking it with a producer map costs a fraction of building the DAG; any other
        graph goes through `dag()`, which sorts it or says what is wrong."""
        nodes = self.nodes
        if len(set(map(attrgetter("name"), nodes))) != len(nodes):
            return False
        # tensor -> position of its producer (the last one, as in dag()); "" is no tensor
        producer = {out: index for index, node in enumerate(nodes) for out in node.outputs}
        producer.pop("", None)
        tensors = self.tensors
        for index, node in enumerate(nodes):
            for tensor in node.inputs:
                source = producer.get(tensor)
                if source is None:
                    if tensor and tensor not in tensors:
                        return False  # dangling: dag() raises
                elif source >= index:
                    return False
        return True

    def with_input_shapes(self, shapes: Mapping[str, Shape]) -> Graph:
        """This graph with the named graph inputs fed at the given shapes (``--input-shape``):
        for inputs a model declares without a shape, or to analyse at another size."""
        inputs = [name for name, info in self.tensors.items() if info.kind == "input"]
        tensors = dict(self.tensors)
        bindings: dict[str, int] = {}
        for name, shape in shapes.items():
            info = tensors.get(name)
            if info is None or info.kind != "input":
                raise GraphError(f"the model has no graph input named '{name}' (--input-shape)", where=self.path,
                                 fix=f"its inputs are: {', '.join(inputs) or 'none'}")
            if not isinstance(info.shape, Deferred) and len(info.shape) != len(shape):
                raise GraphError(f"graph input '{name}' has {len(info.shape)} dims {list(info.shape)}; "
                                 f"--input-shape gives {len(shape)}", where=self.path,
                                 fix=f"give {len(info.shape)} comma-separated dims")
            if not isinstance(info.shape, Deferred):
                for axis, (declared, given) in enumerate(zip(info.shape, shape)):
                    symbol = _symbol_name(declared)
                    if symbol is None or not isinstance(given, int):
                        continue
                    if bindings.setdefault(symbol, given) != given:
                        raise GraphError(f"--input-shape gives dim '{symbol}' two sizes: {bindings[symbol]} and "
                                         f"{given} (axis {axis} of '{name}')", where=self.path,
                                         fix=f"give every input the same size for '{symbol}'")
            tensors[name] = replace(info, shape=tuple(shape))
        # The sizes fed bind the dims they replace wherever else they occur: in the shapes the
        # model stores for its other tensors (hints) and in the counts.
        hints = {name: tuple(bindings.get(_symbol_name(d) or "", d) for d in shape)
                 for name, shape in self.hints.items()} if bindings else self.hints
        return replace(self, tensors=tensors, bindings={**self.bindings, **bindings}, hints=hints)
