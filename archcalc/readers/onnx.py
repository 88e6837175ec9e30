"""Read an ONNX model into the engine's :class:`~archcalc.core.graph.Graph`, without its weights.

Params come from tensor shapes, so the file is loaded with ``load_external_data=False``
and no weight is ever decoded: a model whose external-data file is missing analyses
the same. Only small inline tensors are read: integer/bool ones of at most
``MAX_VALUES`` elements (shapes, axes, indices, which the shape rules follow) and float
ones of at most ``FLOAT_VALUES`` elements (Resize scales, fill values).

Mapping:

- a graph input that is not an initializer -> TensorInfo kind ``input``; ``dim_value`` is an
  int, ``dim_param`` a symbol of that name, a dim with neither the symbol ``<input>_dim<i>``
  (an input of unknown rank fails, with a fix, when a layer reads it; a sequence or map
  input gets shape () and dtype ``sequence``/``map``: only ops without rules read those);
- an initializer (also when an old model lists it among the inputs) -> kind ``weight``
  for float types, ``constant`` (with its value when small) for integer and bool types;
- a Constant node holding a float tensor (``value``, ``value_floats`` or ``value_float``),
  or a ConstantOfShape of a constant shape with a float fill, is a tensor stored in a node
  (ONNX zoo "light" models hold all their weights so): it becomes a tensor, not a layer, of
  the kind an initializer of its size is (``weight``, or ``constant`` for one value), so
  the layers it feeds count it exactly like an initializer (metadata lists them under
  ``constant_weights``);
- a call of a model-local function (``ModelProto.functions``, matched by domain and name)
  -> the function's nodes, expanded in place (recursively for calls inside it): each named
  ``<call name>/<inner name>``, with ``block`` the call's name (so reports fold them under
  it), its formal inputs and outputs renamed to the call's tensors, its other tensors to
  ``<call name>/<tensor>``, and attributes that refer to the function's (``ref_attr_name``)
  taken from the call or the function's defaults;
- any other node -> a Node with the ONNX name (``<op>_<index>`` when it has none, a suffix when
  two share one), op, domain and attributes as Python values (bytes as str, a tensor as
  a :class:`~archcalc.rules.base.TensorState`, a subgraph as a
  :class:`~archcalc.rules.base.Subgraph` bound to :func:`convert_subgraph`, which the
  If/Loop/Scan rules call once the tensors it reads from the enclosing graph are known).

When some op has no rule, ONNX's own shape inference runs once over the model (weights
stripped); the shapes it finds become ``Graph.hints``, which the engine uses for the
outputs of ops it cannot model. A model without functions or subgraphs pays nothing for
either.
"""

from __future__ import annotations

import ast
import functools
import math
import os
import re
import struct
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, numpy_helper

from archcalc.core.collector import pause_gc
from archcalc.core.dims import Dim, Sym
from archcalc.core.dtypes import ONNX_DTYPES, is_integral
from archcalc.core.errors import ArchcalcError, ModelFileError, ShapeError, UnknownValue
from archcalc.core.graph import Deferred, Graph, Node, TensorInfo
from archcalc.readers.scopes import TORCH_SCOPES_KEY, name_scopes
from archcalc.rules.base import MAX_VALUES, Subgraph, TensorState, rule_for

if TYPE_CHECKING:
    from archcalc.rules.base import Scope

FLOAT_VALUES = 16  # float tensors up to this size carry their values (Resize scales)
_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16)
_NOT_LOADED = "__archcalc_weights_not_loaded__"
_SUBGRAPH_TYPES = (AttributeProto.GRAPH, AttributeProto.GRAPHS)
_CONSTANT_OPS = ("Constant", "ConstantOfShape")  # may hold weights (see _constant_weight)

Functions = Mapping[tuple[str, str], onnx.FunctionProto]  # (domain, name) -> model-local function


def load_onnx(path: str) -> Graph:
    """Parse the ONNX model at `path`; ModelFileError (exit 2) when it cannot be read."""
    model = _read(path)
    try:
        with pause_gc():  # a node and a tensor object per proto, no cycles
            return _convert(model, path)
    except ArchcalcError:
        raise
    except Exception as error:  # a file that parsed as protobuf but is not a sane model
        raise ModelFileError(f"{path} is not a valid ONNX model ({type(error).__name__}: {error})",
                             fix="re-export the model, or check it with onnx.checker.check_model") from None


def convert_model(model: onnx.ModelProto, name: str) -> Graph:
    """An ONNX model already in memory (the Python API's ModelProto, an exporter's output) as a
    Graph; `name` stands for the file in messages. ModelFileError when it holds no sane model."""
    if not model.HasField("graph") or model.ir_version <= 0 or not (model.graph.node or model.graph.output):
        raise ModelFileError(f"{name} holds no ONNX graph", fix="pass a model made by onnx.helper.make_model "
                             "or an exporter (torch.onnx.export, tf2onnx)")
    try:
        with pause_gc():
            return _convert(model, name)
    except ArchcalcError:
        raise
    except Exception as error:
        raise ModelFileError(f"{name} is not a valid ONNX model ({type(error).__name__}: {error})",
                             fix="re-export the model, or check it with onnx.checker.check_model") from None


def _read(path: str) -> onnx.ModelProto:
    if not os.path.exists(path):
        raise ModelFileError(f"{path} does not exist", fix="check the path and the file name")
    if os.path.isdir(path):
        raise ModelFileError(f"{path} is a directory, not an ONNX model", fix="pass the .onnx file itself")
    try:
        if os.path.getsize(path) == 0:
            raise ModelFileError(f"{path} is empty (0 bytes), not an ONNX model",
                                 fix="re-export or re-download the model")
        model = onnx.load(path, load_external_data=False)
    except ArchcalcError:
        raise
    except OSError as error:
        raise ModelFileError(f"cannot read {path}: {error.strerror or error}",
                             fix="check the path and its permissions") from None
    except Exception as error:  # protobuf DecodeError and friends
        raise _unreadable(path, f"{type(error).__name__}: {error}") from None
    if not model.HasField("graph") or model.ir_version <= 0 or not (model.graph.node or model.graph.output):
        raise _unreadable(path, "it parsed, but holds no ONNX graph")
    return model


def _unreadable(path: str, detail: str) -> ModelFileError:
    """Say what the file looks like instead of an ONNX model."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        head = b""
    if head.startswith(b"version https://git-lfs"):
        return ModelFileError(f"{path} is a Git LFS pointer, not the model itself",
                              fix="run `git lfs pull` to fetch the model")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c.isspace() for c in text):
        return ModelFileError(f"{path} is a text file, not an ONNX model (a binary protobuf)",
                              fix="pass a .onnx file; a YAML spec needs a .yaml extension")
    return ModelFileError(f"{path} is not a valid ONNX model ({detail})",
                          fix="the file may be truncated or corrupt: re-export or re-download it")


def _convert(model: onnx.ModelProto, path: str) -> Graph:
    graph = model.graph
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    warnings: list[str] = []
    checks = _check_model(model, opsets, path)
    tensors = _initializers(graph, _float_values_read(graph))
    for info in graph.input:
        if info.name not in tensors:  # old models also list their initializers as inputs
            tensors[info.name] = _graph_input(info)
    functions = {(f.domain, f.name): f for f in model.functions}
    converted = _Nodes(tensors, functions, warnings, checks=checks)
    converted.add(graph.node)
    name_scopes(converted.nodes, converted.module_paths)
    checks.finish(graph, warnings)
    nodes, subgraphs, unmodelled = converted.nodes, converted.subgraphs, converted.unmodelled
    constant_weights = converted.constant_weights
    if not unmodelled and subgraphs:
        # A body's ops run through the rules too; one without a rule leaves outputs for hints to fill.
        seen: set[tuple[str, str]] = set()
        unmodelled = any(_unruled(body.node, functions, seen) for body in converted.bodies)

    hints, hint_dtypes = _hints(model, tensors, warnings) if unmodelled else ({}, {})
    producer = f"{model.producer_name} {model.producer_version}".strip()
    batch_dims = sorted({str(info.shape[0]) for info in tensors.values()
                         if info.kind == "input" and isinstance(info.shape, tuple) and info.shape
                         and isinstance(info.shape[0], Sym)})
    metadata: dict[str, Any] = {
        "name": _model_name(graph.name, path),
        "graph_name": graph.name,
        "opsets": opsets,
        "ir_version": model.ir_version,
        "producer": producer,
        "subgraphs": subgraphs,
        "functions": [f"{f.domain}.{f.name}" if f.domain else f.name for f in model.functions],
        "constant_weights": constant_weights,
        "warnings": warnings,
    }
    return Graph(path=path, nodes=nodes, tensors=tensors, outputs=[o.name for o in graph.output],
                 metadata=metadata, hints=hints, hint_dtypes=hint_dtypes, format="onnx",
                 batch_dims=tuple(batch_dims), opset=opsets.get(""))


# What of onnx.checker runs here, and why not onnx.checker.check_model itself: on a model
# loaded without its weights, check_model refuses every export whose weights sit in an
# external file it cannot open (all the fixtures in tests/fixtures/onnx), and it also
# refuses what archcalc reads fine (graph outputs without a type, undeclared custom
# domains). Its checks that decide whether the numbers can be trusted run here instead,
# O(nodes) and with no copy of the model; the model's own nodes are checked as _Nodes
# reads them (tensors it slices anyway), subgraphs by _check_graph:
# - the IR version and the opset of every domain onnx knows are ones the installed onnx
#   knows (else the op semantics the rules follow may not be the model's);
# - every data type (initializers, graph inputs, outputs, value_info, tensor attributes, of
#   subgraphs too) is an ONNX type;
# - SSA and order: each tensor is written once (by one node, or as an input or initializer),
#   and each node reads only graph inputs, initializers, earlier nodes' outputs and, in a
#   subgraph, values of the enclosing graphs written before the node holding it.
# A node of a custom domain the model does not declare goes on, with a warning. Not run:
# per-op schema checks (attribute types, input counts): the rules check what they read.
_DATA_TYPES = frozenset(TensorProto.DataType.values())
_KNOWN_OPSETS = onnx.defs.C.schema_version_map()  # domain -> (oldest, newest) opset version onnx knows
# Writers of a tensor that are no layer: characters no ONNX exporter puts in a node name.
_INITIALIZER, _GRAPH_INPUT = "\0initializer", "\0graph input"
_CHECKED_ATTRIBUTES = frozenset({AttributeProto.GRAPH, AttributeProto.GRAPHS, AttributeProto.TENSOR,
                                 AttributeProto.TENSORS})
_REORDER_FIX = ("re-export the model; a hand-edited graph must list each node after those it reads "
                "(onnx.checker.check_model names the same problem)")
_SSA_FIX = "each tensor must be written once (ONNX graphs are in SSA form): re-export the model, or rename one"
_TYPE_FIX = "re-export the model; ONNX data types are those of TensorProto.DataType (1 float32, 7 int64, ...)"


def _check_model(model: onnx.ModelProto, opsets: Mapping[str, int], path: str) -> _Checks:
    """Check the model's versions and its graph's declared types; the checks its nodes go through."""
    if model.ir_version > onnx.IR_VERSION:
        raise ModelFileError(f"{path}: field ir_version is {model.ir_version}; the installed onnx "
                             f"{onnx.__version__} reads models up to IR version {onnx.IR_VERSION}",
                             fix="re-export the model with an older IR version, or upgrade onnx")
    for domain, version in opsets.items():
        known = _KNOWN_OPSETS.get(domain)
        if known is not None and not known[0] <= version <= known[1]:
            shown = f"domain '{domain}'" if domain else "the default domain (ai.onnx)"
            raise ModelFileError(f"{path}: opset_import gives {shown} opset {version}; the installed onnx "
                                 f"{onnx.__version__} knows opsets {known[0]} to {known[1]}",
                                 fix=f"re-export the model with an opset from {known[0]} to {known[1]} "
                                     "(e.g. torch.onnx.export(..., opset_version=17)), or upgrade onnx")
    declared = {*opsets, *(f.domain for f in model.functions), "ai.onnx"}
    checks = _Checks(path, declared, "", ())
    checks.declarations(model.graph)
    return checks


class _Checks:
    """The checks of one graph's nodes, in their order (see above)."""

    def __init__(self, path: str, declared: set[str], holder: str, enclosing: tuple[Mapping[str, str], ...],
                 graph_name: str = ""):
        self.path = path
        self.declared = declared
        self.undeclared: dict[str, str] = {}  # domain -> the first layer using it
        self.enclosing = enclosing  # what the enclosing graphs wrote, visible to this one
        self.inside = f" (in subgraph '{graph_name}' of layer '{holder}')" if holder else ""
        # tensor -> the layer that writes it, or _INITIALIZER / _GRAPH_INPUT ("" is an omitted
        # optional input); names, not sentences, as this is filled once per node
        self.written: dict[str, str] = {"": ""}

    def declarations(self, graph: onnx.GraphProto) -> None:
        """Types of the graph's initializers, inputs, outputs and value_info; what they write."""
        written = self.written
        for init in graph.initializer:
            self.data_type(init.data_type, f"initializer '{init.name}'", undefined=False)
            written[init.name] = _INITIALIZER
        for sparse in graph.sparse_initializer:
            self.data_type(sparse.values.data_type, f"sparse initializer '{sparse.values.name}'", undefined=False)
            written[sparse.values.name] = _INITIALIZER
        for field, infos in (("input", graph.input), ("output", graph.output), ("value_info", graph.value_info)):
            for info in infos:
                if info.type.HasField("tensor_type"):
                    self.data_type(info.type.tensor_type.elem_type, f"{field} '{info.name}'")
        for info in graph.input:
            written.setdefault(info.name, _GRAPH_INPUT)  # old models list initializers as inputs too

    def node(self, proto: onnx.NodeProto, name: str, inputs: tuple[str, ...], outputs: tuple[str, ...],
             own: bool = True) -> None:
        """`own`: a node of the graph itself, not of a model-local function expanded into it."""
        written = self.written
        for tensor in inputs:
            if tensor not in written and not any(tensor in scope for scope in self.enclosing):
                raise ModelFileError(
                    f"{self.path}: layer '{name}' ({proto.op_type}){self.inside} reads '{tensor}', which is neither "
                    "a graph input, an initializer nor an output of an earlier layer"
                    + (" or of the enclosing graph" if self.enclosing else ""), fix=_REORDER_FIX)
        for tensor in outputs:
            if tensor in written and tensor:
                writer = written[tensor]
                what = {_INITIALIZER: "an initializer", _GRAPH_INPUT: "a graph input"}.get(writer, f"layer '{writer}'")
                raise ModelFileError(f"{self.path}: layer '{name}' ({proto.op_type}){self.inside} writes "
                                     f"'{tensor}', which {what} already writes", fix=_SSA_FIX)
            written[tensor] = name
        domain = proto.domain
        if domain and own and domain not in self.declared and domain not in self.undeclared:
            self.undeclared[domain] = name

    def attribute(self, attr: AttributeProto, name: str) -> None:
        kind = attr.type
        if kind == AttributeProto.TENSOR:
            self.data_type(attr.t.data_type, f"attribute '{attr.name}' of layer '{name}'", undefined=False)
        elif kind == AttributeProto.TENSORS:
            for tensor in attr.tensors:
                self.data_type(tensor.data_type, f"attribute '{attr.name}' of layer '{name}'", undefined=False)
        else:
            for graph in ([attr.g] if kind == AttributeProto.GRAPH else attr.graphs):
                _check_graph(graph, self, name)

    def data_type(self, data_type: int, what: str, undefined: bool = True) -> None:
        """`undefined`: whether 0 (UNDEFINED, "not known") is allowed."""
        if data_type not in _DATA_TYPES or (data_type == TensorProto.UNDEFINED and not undefined):
            raise ModelFileError(f"{self.path}: {what}{self.inside} has data type {data_type}, which is no "
                                 "ONNX data type", fix=_TYPE_FIX)

    def finish(self, graph: onnx.GraphProto, warnings: list[str] | None = None) -> None:
        """Once every node is read: the graph's outputs are written; undeclared domains noted."""
        written = self.written
        for output in graph.output:
            if output.name not in written and not any(output.name in scope for scope in self.enclosing):
                raise ModelFileError(f"{self.path}: graph output '{output.name}'{self.inside} is written by no "
                                     "layer, input or initializer", fix="re-export the model, or remove the output")
        if warnings is not None:
            for domain, layer in self.undeclared.items():
                warnings.append(f"layer '{layer}' is of domain '{domain}', which the model's opset_import does "
                                "not declare (ONNX requires it; analysis goes on)")


def _check_graph(graph: onnx.GraphProto, outer: _Checks, holder: str) -> None:
    """Check a subgraph of layer `holder` (and those inside it): it may read what the
    enclosing graphs wrote before `holder`."""
    checks = _Checks(outer.path, outer.declared, holder, (*outer.enclosing, outer.written), graph.name)
    checks.undeclared = outer.undeclared
    checks.declarations(graph)
    for index, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{index}"
        checks.node(node, name, tuple(node.input[:]), tuple(node.output[:]))
        for attr in node.attribute:
            if attr.type in _CHECKED_ATTRIBUTES:
                checks.attribute(attr, name)
    checks.finish(graph)


# Names exporters give every graph they write: the file's name says more.
EXPORTER_GRAPH_NAMES = frozenset({"main_graph", "torch_jit", "torch-jit-export", "tf2onnx"})


# A name a converter generates rather than a person gives: a hex digest or a UUID
# (skl2onnx names each graph by a uuid4's hex, '3c59201b940f410fa29dc71ea9d5767d').
GENERATED_GRAPH_NAME = re.compile(r"[0-9a-fA-F]{16,}|[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def claim_name(name: str, taken: set[str]) -> str:
    """`name`, or `name_1`, `name_2`, ... if taken: the first free one, now taken. The front ends
    that rename an export's nodes after their modules or layers give each node its own name."""
    base, index = name, 1
    while name in taken:
        name = f"{base}_{index}"
        index += 1
    taken.add(name)
    return name


def _model_name(graph_name: str, path: str) -> str:
    """The graph's own name, or the file's (without extension) when it has none, only its
    exporter's default (every PyTorch export is "main_graph", every tf2onnx one "tf2onnx") or
    a generated hash."""
    if graph_name and graph_name not in EXPORTER_GRAPH_NAMES and not GENERATED_GRAPH_NAME.fullmatch(graph_name):
        return graph_name
    return os.path.splitext(os.path.basename(path))[0]


class _Nodes:
    """Turns NodeProtos into Nodes for one graph: names them, folds weights held in Constant
    nodes into `tensors`, expands calls of model-local functions and notes subgraphs."""

    def __init__(self, tensors: dict[str, TensorInfo], functions: Functions, warnings: list[str],
                 prefix: str = "", block: str = "", checks: _Checks | None = None):
        self.tensors = tensors
        self.checks = checks  # the model's graph is checked as it is read (subgraphs: by _check_graph)
        self.functions = functions
        self.warnings = warnings
        self.prefix = prefix  # before every layer name (a body's: "<parent>/<attribute>/")
        self.block = block  # of every layer not inside a function call
        self.nodes: list[Node] = []
        self.subgraphs: list[str] = []  # layers holding a body
        self.bodies: list[onnx.GraphProto] = []
        self.constant_weights: list[str] = []
        self.unmodelled = False  # some op has no rule: ONNX shape inference is worth running for hints
        self.module_paths: dict[str, str] = {}  # layer -> the dynamo exporter's module path (see readers.scopes)

    def add(self, protos: Sequence[onnx.NodeProto]) -> None:
        prefix, block = self.prefix, self.block
        entries = [(proto, prefix + (proto.name or f"{proto.op_type}_{index}"), bool(proto.name), block)
                   for index, proto in enumerate(protos)]
        if self.functions and any((p.domain, p.op_type) in self.functions for p in protos):
            expanded: list[tuple[onnx.NodeProto, str, bool, str]] = []
            for entry in entries:
                if (entry[0].domain, entry[0].op_type) in self.functions:
                    _expand_call(entry[0], entry[1], self.functions, expanded, ())
                else:
                    expanded.append(entry)
            entries = expanded
        names = {name for _, name, named, _ in entries if named}
        used = set()
        tensors, warnings, checks = self.tensors, self.warnings, self.checks
        for index, (proto, name, named, layer_block) in enumerate(entries):
            op = proto.op_type
            # A slice copies a repeated proto field in one call (iterating it costs one per
            # element): twice as fast for the fields read once per node or tensor.
            inputs, outputs = tuple(proto.input[:]), tuple(proto.output[:])
            if checks is not None:
                checks.node(proto, name, inputs, outputs, layer_block == block)
            if checks is not None and op in _CONSTANT_OPS:  # folded below, before the attribute loop
                for attr in proto.attribute:
                    if attr.type in _CHECKED_ATTRIBUTES:
                        checks.attribute(attr, name)
            folded = _constant_weight(proto, tensors) if op in _CONSTANT_OPS else None
            if folded is not None:
                tensors[folded.name] = folded
                self.constant_weights.append(folded.name)
                continue
            if name in used or (not named and name in names):
                base, suffix = name, 1
                while name in used or name in names:
                    name, suffix = f"{base}_{suffix}", suffix + 1
                if named:
                    warnings.append(f"two layers are named '{base}'; the one at position {index} is "
                                    f"reported as '{name}'")
            used.add(name)
            if proto.metadata_props and not layer_block:
                self._module_path(proto, name)
            attrs = {}
            attr_key: tuple[Any, ...] = ()
            if proto.attribute:
                kinds = []
                for attr in proto.attribute:
                    kind = attr.type
                    kinds.append(kind)
                    if checks is not None and kind in _CHECKED_ATTRIBUTES:
                        checks.attribute(attr, name)
                    if kind in _SUBGRAPH_TYPES:
                        attrs[attr.name] = self._bodies(attr)
                        if name not in self.subgraphs:
                            self.subgraphs.append(name)
                    else:
                        attrs[attr.name] = _attribute(attr)
                attr_key = (tuple(attrs.items()), tuple(kinds))  # the types tell 1 from 1.0 (see Node)
            domain = proto.domain
            self.nodes.append(Node(name, op, inputs, outputs, attrs, domain, block=layer_block, attr_key=attr_key))
            if not self.unmodelled and rule_for(domain, op) is None:
                self.unmodelled = True


    def _module_path(self, proto: onnx.NodeProto, name: str) -> None:
        """Note the module path the dynamo exporter's scope metadata gives the layer `name`."""
        for entry in proto.metadata_props:
            if entry.key == TORCH_SCOPES_KEY:
                try:
                    scopes = ast.literal_eval(entry.value)
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    return  # not the exporter's list: the name's scope stands
                if isinstance(scopes, list) and len(scopes) >= 2 and isinstance(scopes[-2], str):
                    self.module_paths[name] = scopes[-2]
                return

    def _bodies(self, attr: AttributeProto) -> Subgraph | tuple[Subgraph, ...]:
        """A GRAPH attribute as a Subgraph (GRAPHS: a tuple of them) that converts itself
        with this graph's model-local functions, which its nodes may call too."""
        protos = [attr.g] if attr.type == AttributeProto.GRAPH else list(attr.graphs)
        self.bodies.extend(protos)
        subgraphs = tuple(Subgraph(proto.name, tuple(i.name for i in proto.input),
                                   functools.partial(convert_subgraph, proto, self.functions)) for proto in protos)
        return subgraphs[0] if attr.type == AttributeProto.GRAPH else subgraphs


def _expand_call(call: onnx.NodeProto, name: str, functions: Functions,
                 entries: list[tuple[onnx.NodeProto, str, bool, str]], calling: tuple[tuple[str, str], ...]) -> None:
    """Append the nodes of the model-local function `call` invokes, renamed for this call."""
    key = (call.domain, call.op_type)
    if key in calling:
        chain = " -> ".join(".".join(filter(None, k)) for k in (*calling, key))
        raise ModelFileError(f"model-local function '{'.'.join(filter(None, key))}' calls itself ({chain})",
                             fix="ONNX functions may not be recursive; re-export the model")
    function = functions[key]
    rename = {formal: call.input[i] if i < len(call.input) else "" for i, formal in enumerate(function.input)}
    for i, formal in enumerate(function.output):
        # An output the call leaves unnamed may still feed the function's other nodes.
        rename[formal] = (call.output[i] if i < len(call.output) else "") or f"{name}/{formal}"
    given = {a.name: a for a in call.attribute}
    defaults = {a.name: a for a in function.attribute_proto}

    def local(tensor: str) -> str:
        return rename.get(tensor, f"{name}/{tensor}" if tensor else "")

    for index, node in enumerate(function.node):
        inner = onnx.NodeProto(op_type=node.op_type, domain=node.domain,
                               name=f"{name}/{node.name or f'{node.op_type}_{index}'}")
        inner.input.extend(local(t) for t in node.input)
        inner.output.extend(local(t) for t in node.output)
        for attr in node.attribute:
            resolved = _resolved_attribute(attr, given, defaults, local)
            if resolved is not None:
                inner.attribute.append(resolved)
        if (inner.domain, inner.op_type) in functions:
            _expand_call(inner, inner.name, functions, entries, (*calling, key))
        else:
            entries.append((inner, inner.name, True, name))


def _resolved_attribute(attr: AttributeProto, given: Mapping[str, AttributeProto],
                        defaults: Mapping[str, AttributeProto], local) -> AttributeProto | None:
    """`attr` of a node inside a function, for one call: a reference to a function attribute
    replaced by the call's value (or the function's default; None when neither gives one,
    so the op's own default applies), and a subgraph's tensor names renamed for the call."""
    if attr.ref_attr_name:
        source = given.get(attr.ref_attr_name)
        if source is None:
            source = defaults.get(attr.ref_attr_name)
        if source is None:
            return None
        resolved = AttributeProto()
        resolved.CopyFrom(source)
        resolved.name = attr.name
        return resolved
    if attr.type not in _SUBGRAPH_TYPES:
        return attr
    resolved = AttributeProto()
    resolved.CopyFrom(attr)
    for graph in ([resolved.g] if attr.type == AttributeProto.GRAPH else resolved.graphs):
        _rename_in_subgraph(graph, given, defaults, local)
    return resolved


def _rename_in_subgraph(graph: onnx.GraphProto, given, defaults, local) -> None:
    """Rename, in place, what a subgraph inside a function reads from the function's scope."""
    defined = {t.name for t in graph.initializer} | {i.name for i in graph.input}
    defined.update(o for node in graph.node for o in node.output)
    outer = lambda t: local(t) if t and t not in defined else t  # noqa: E731
    for node in graph.node:
        for i, tensor in enumerate(node.input):
            node.input[i] = outer(tensor)
        attributes = []
        for attr in node.attribute:
            resolved = _resolved_attribute(attr, given, defaults, outer)
            if resolved is not None:
                attributes.append(AttributeProto())
                attributes[-1].CopyFrom(resolved)
        del node.attribute[:]
        node.attribute.extend(attributes)
    for output in graph.output:
        output.name = outer(output.name)


def _unruled(nodes: Sequence[onnx.NodeProto], functions: Functions, seen: set[tuple[str, str]]) -> bool:
    """Whether some op among `nodes`, in functions they call or in subgraphs they hold has no rule."""
    for node in nodes:
        key = (node.domain, node.op_type)
        if key in functions:
            if key not in seen:
                seen.add(key)
                if _unruled(functions[key].node, functions, seen):
                    return True
        elif rule_for(node.domain, node.op_type) is None:
            return True
        if any(_unruled(g.node, functions, seen) for g in _subgraphs(node.attribute)):
            return True
    return False


def _subgraphs(attributes: Sequence[AttributeProto]) -> list[onnx.GraphProto]:
    graphs = []
    for attr in attributes:
        if attr.type == AttributeProto.GRAPH:
            graphs.append(attr.g)
        elif attr.type == AttributeProto.GRAPHS:
            graphs.extend(attr.graphs)
    return graphs


def convert_subgraph(body: onnx.GraphProto, functions: Functions, inputs: Sequence[TensorState], scope: Scope,
                     prefix: str, block: str) -> Graph:
    """An If/Loop/Scan body as a Graph the engine can analyse.

    Its formal inputs take the states in `inputs` (what the op passes in); its initializers
    are its own weights; a tensor it reads from an enclosing graph by name takes its state
    (and kind: weight, input, ...) from `scope`. Layers are named ``prefix + name`` and
    belong to `block` (calls of model-local functions inside: to the call). Tensor names
    stay as the body writes them, so bodies nested in this one find them by name.
    Raises UnknownValue when the body reads a tensor whose shape is unknown.
    """
    if len(inputs) != len(body.input):
        raise ShapeError(f"body '{body.name}' declares {len(body.input)} inputs, the op passes it {len(inputs)}",
                         fix="check the subgraph's inputs against the op's specification")
    tensors = _initializers(body)
    for info, given in zip(body.input, inputs):
        if info.name not in tensors:
            tensors[info.name] = TensorInfo(info.name, tuple(given.shape), given.dtype, "input", given.value)
    warnings: list[str] = []
    converted = _Nodes(tensors, functions, warnings, prefix, block)
    converted.add(body.node)
    defined = set(tensors).union(*(node.outputs for node in converted.nodes))
    outer_refs = []
    for name in sorted(_read_names(body) - defined):
        state, info = scope.states.get(name), scope.known.get(name)
        if state is None:
            if name in scope.states or info is not None:
                raise UnknownValue(f"its body '{body.name}' reads '{name}', whose shape is unknown")
            continue  # read by no one the graph knows: the layer reading it says so
        tensors[name] = TensorInfo(name, tuple(state.shape), state.dtype, info.kind if info else "input",
                                   state.value, info.trainable if info else True)
        outer_refs.append(name)
    hints, hint_dtypes = _hint_shapes([body.value_info, body.output], tensors)
    return Graph(path=scope.graph.path, nodes=converted.nodes, tensors=tensors, outputs=[o.name for o in body.output],
                 metadata={"name": body.name, "warnings": warnings}, hints=hints, hint_dtypes=hint_dtypes,
                 format="onnx", opset=scope.graph.opset, outer_refs=tuple(outer_refs))


def _read_names(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name the nodes of `graph` (and of subgraphs inside it) read, and its outputs."""
    names = {o.name for o in graph.output}
    for node in graph.node:
        names.update(node.input)
        for sub in _subgraphs(node.attribute):
            names |= _read_names(sub)
    names.discard("")
    return names


def _float_values_read(graph: onnx.GraphProto) -> set[str] | None:
    """The tensors whose values a layer's rule may read (see Rule.reads_values); None when
    any may be: a control-flow op's body reads enclosing tensors by name, out of sight here.
    Empty, without a walk over the nodes, when no initializer is a float tensor small
    enough to carry values."""
    if not any(init.data_type in _FLOAT_TYPES and math.prod(init.dims) <= FLOAT_VALUES for init in graph.initializer):
        return set()
    names: set[str] = set()
    reads_by_op: dict[tuple[str, str], tuple[int, ...] | None] = {}  # None: every input's
    for node in graph.node:
        key = (node.domain, node.op_type)
        if key in reads_by_op:
            reads = reads_by_op[key]
        else:
            rule = rule_for(*key)
            if rule is not None and "scope" in rule.context:
                return None
            # An op without a rule may be a function of ops that read values.
            reads = reads_by_op[key] = None if rule is None else rule.reads_values
        if reads is None:
            names.update(node.input)
        elif reads:
            inputs = node.input
            names.update(inputs[i] for i in reads if i < len(inputs))
    return names


def _initializers(graph: onnx.GraphProto, float_values_read: set[str] | None = None) -> dict[str, TensorInfo]:
    """The graph's initializers; a small float one's values are unpacked only when a rule
    reads them (`float_values_read`; None: all), never a bias or normalisation scale's."""
    tensors: dict[str, TensorInfo] = {}
    for init in graph.initializer:
        floats = float_values_read is None or init.name in float_values_read
        tensors[init.name] = _initializer(init, floats)
    for sparse in graph.sparse_initializer:
        name = sparse.values.name
        tensors[name] = TensorInfo(name, tuple(sparse.dims), _dtype(sparse.values.data_type),
                                   "constant" if _is_constant(sparse.values.data_type, sparse.dims) else "weight")
    return tensors


def _constant_weight(node: onnx.NodeProto, tensors: dict[str, TensorInfo]) -> TensorInfo | None:
    """A Constant (or ConstantOfShape of a constant shape) that writes a float tensor is a
    tensor stored in a node: it becomes an initializer, of the kind an initializer of its
    size is (a weight, or for one value a constant that layers learning it still count:
    a one-channel bias)."""
    if node.domain not in ("", "ai.onnx") or len(node.output) != 1 or not node.output[0]:
        return None
    if node.op_type == "Constant":
        attr = next((a for a in node.attribute if a.name in ("value", "value_float", "value_floats")), None)
        if attr is None:
            return None
        if attr.type == AttributeProto.FLOAT:  # value_float: a float32 scalar
            return TensorInfo(node.output[0], (), "float32", "constant", (float(np.float32(attr.f)),))
        if attr.type == AttributeProto.FLOATS:  # value_floats: a 1-D float32 tensor
            floats = tuple(float(v) for v in attr.floats)
            return TensorInfo(node.output[0], (len(floats),), "float32", "weight" if len(floats) > 1 else "constant",
                              floats if len(floats) <= FLOAT_VALUES else None)
        if attr.type != AttributeProto.TENSOR:
            return None
        tensor = attr.t
        if _integral(tensor.data_type) or tensor.data_type == TensorProto.STRING:
            return None
        state = _tensor_state(tensor)
        kind = "weight" if math.prod(tensor.dims) > 1 else "constant"
        return TensorInfo(node.output[0], state.shape, state.dtype, kind, state.value)
    if node.op_type == "ConstantOfShape" and node.input:
        shape = tensors.get(node.input[0])
        if shape is None or shape.kind != "constant" or not isinstance(shape.value, tuple) \
                or not all(isinstance(d, int) and d >= 0 for d in shape.value) or math.prod(shape.value) <= 1:
            return None
        fill = next((a.t for a in node.attribute if a.name == "value" and a.type == AttributeProto.TENSOR), None)
        data_type = fill.data_type if fill is not None else TensorProto.FLOAT
        if _integral(data_type) or data_type == TensorProto.STRING:
            return None
        return TensorInfo(node.output[0], tuple(shape.value), _dtype(data_type), "weight")
    return None


def _dtype(data_type: int) -> str:
    return ONNX_DTYPES.get(data_type, "float32")


# Looked up once per initializer: a set, not a test of the dtype's name each time.
_INTEGRAL_TYPES = frozenset(t for t, name in ONNX_DTYPES.items() if is_integral(name))


def _integral(data_type: int) -> bool:
    return data_type in _INTEGRAL_TYPES


# Quantised weights: no exporter writes shapes, axes or indices in 8 or 4 bits.
_QUANTISED_TYPES = {TensorProto.INT8, TensorProto.UINT8, TensorProto.INT4, TensorProto.UINT4}
_CONSTANT_TYPES = _INTEGRAL_TYPES | {TensorProto.STRING}


def _is_constant(data_type: int, dims) -> bool:
    """Integer (shapes, axes, indices), string and single-value initializers are constants;
    float and quantised ones are weights."""
    if data_type in _QUANTISED_TYPES:
        return math.prod(dims) <= 1  # a zero point
    return data_type in _CONSTANT_TYPES or math.prod(dims) <= 1


def _initializer(tensor: TensorProto, floats: bool = True) -> TensorInfo:
    shape, dtype, value = _tensor_facts(tensor, floats)
    # A single float is a constant (an attention scale, an epsilon), as a single-value
    # Constant node is: exporters store both ways, and torch counts neither as a parameter.
    kind = "constant" if _is_constant(tensor.data_type, shape) else "weight"
    return TensorInfo(tensor.name, shape, dtype, kind, value)


# struct codes (little-endian, as ONNX stores raw_data) of the tensors small enough to be
# read from raw_data directly (the common case); the rest go through onnx's numpy_helper.
_RAW_CODES: dict[int, str] = {TensorProto.INT64: "q", TensorProto.INT32: "i", TensorProto.FLOAT: "f"}
# Where the same tensors keep their values when not in raw_data.
_TYPED_FIELDS: dict[int, str] = {TensorProto.INT64: "int64_data", TensorProto.INT32: "int32_data",
                                 TensorProto.FLOAT: "float_data"}


def _tensor_state(tensor: TensorProto) -> TensorState:
    """Shape and dtype of a tensor; its values too when it is small, inline and integer
    (or a tiny float tensor). Weights are never decoded."""
    return TensorState(*_tensor_facts(tensor))


def _tensor_facts(tensor: TensorProto, floats: bool = True) -> tuple[tuple[int, ...], str, tuple | None]:
    """_tensor_state's shape, dtype and value (a float tensor's only if `floats`), for callers
    that build something else from them."""
    shape = tuple(tensor.dims[:])  # sliced: see _Nodes.add
    data_type = tensor.data_type
    dtype = _dtype(data_type)
    limit = (MAX_VALUES if data_type in _INTEGRAL_TYPES else FLOAT_VALUES if floats and data_type in _FLOAT_TYPES
             else -1)
    size = math.prod(shape)
    if size > limit or tensor.data_location == TensorProto.EXTERNAL:
        return shape, dtype, None
    if data_type in _RAW_CODES:
        raw = tensor.raw_data
        if raw:
            layout = f"<{size}{_RAW_CODES[data_type]}"
            return shape, dtype, struct.unpack(layout, raw) if len(raw) == struct.calcsize(layout) else None
        values = getattr(tensor, _TYPED_FIELDS[data_type])[:]
        return shape, dtype, tuple(values) if len(values) == size else None
    try:
        array = numpy_helper.to_array(tensor)
    except Exception:  # inconsistent data: the shape is still right
        return shape, dtype, None
    value = tuple(array.reshape(-1).tolist()) if array.size == size else None
    return shape, dtype, value


def _graph_input(info: onnx.ValueInfoProto) -> TensorInfo:
    name = info.name
    kind = info.type.WhichOneof("value")
    if kind != "tensor_type":  # a sequence, map or optional: only ops without rules take these
        return TensorInfo(name, (), (kind or "unknown").removesuffix("_type"), "input")
    tensor_type = info.type.tensor_type
    dtype = _dtype(tensor_type.elem_type)
    if not tensor_type.HasField("shape"):
        return TensorInfo(name, _missing(name, "has no shape in the model"), dtype, "input")
    shape = tuple(_dim(d, f"{name}_dim{i}") for i, d in enumerate(tensor_type.shape.dim))
    return TensorInfo(name, shape, dtype, "input")


def _dim(dim: onnx.TensorShapeProto.Dimension, fallback: str) -> Dim:
    if dim.HasField("dim_value") and dim.dim_value >= 0:
        return dim.dim_value
    return Sym.symbol(dim.dim_param if dim.HasField("dim_param") and dim.dim_param else fallback)


def _missing(name: str, problem: str) -> Deferred:
    def fail(_shapes: object) -> tuple:
        raise ShapeError(f"graph input '{name}' {problem}",
                         fix="re-export the model with input shapes (e.g. torch.onnx.export with example inputs)")

    return Deferred(fail, f"graph input '{name}' {problem}")


def _attribute(attr: AttributeProto) -> Any:
    kind = attr.type
    if kind == AttributeProto.INT:
        return attr.i
    if kind == AttributeProto.INTS:
        return tuple(attr.ints[:])  # sliced: see _Nodes.add
    if kind == AttributeProto.FLOAT:
        return attr.f
    if kind == AttributeProto.FLOATS:
        return tuple(attr.floats[:])
    if kind == AttributeProto.STRING:
        return attr.s.decode("utf-8", "replace")
    if kind == AttributeProto.STRINGS:
        return tuple(s.decode("utf-8", "replace") for s in attr.strings)
    if kind == AttributeProto.TENSOR:
        return _tensor_state(attr.t)
    if kind == AttributeProto.TENSORS:
        return tuple(_tensor_state(t) for t in attr.tensors)
    if kind == AttributeProto.SPARSE_TENSOR:
        return TensorState(tuple(attr.sparse_tensor.dims), _dtype(attr.sparse_tensor.values.data_type))
    if attr.ref_attr_name:
        return f"<refers to function attribute '{attr.ref_attr_name}'>"
    return onnx.helper.get_attribute_value(attr) if kind else None


def _hints(model: onnx.ModelProto, tensors: dict[str, TensorInfo],
           warnings: list[str]) -> tuple[dict[str, tuple], dict[str, str]]:
    """Shapes from ONNX shape inference (and the model's own value_info), by tensor name."""
    sources = [model.graph.value_info, model.graph.output]
    # Inference needs initializers' dims and the values of small integer ones, never the
    # weights: strip those (we own this proto and have read all we need from it) so
    # serialising the model for the C++ pass costs nothing.
    for init in model.graph.initializer:
        info = tensors.get(init.name)
        if info is not None and info.value is None and init.data_location != TensorProto.EXTERNAL:
            for field in ("raw_data", "float_data", "double_data", "int32_data", "int64_data", "uint64_data"):
                init.ClearField(field)
            init.data_location = TensorProto.EXTERNAL
            entry = init.external_data.add()
            entry.key, entry.value = "location", _NOT_LOADED
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
        sources = [inferred.graph.value_info, inferred.graph.output]
    except Exception as error:  # onnx raises several types; the hints are only a fallback
        warnings.append(f"ONNX shape inference failed ({type(error).__name__}: {str(error)[:200]}); "
                        "ops without a rule leave their outputs unknown")
    return _hint_shapes(sources, tensors)


def _hint_shapes(sources, tensors: Mapping[str, TensorInfo]) -> tuple[dict[str, tuple], dict[str, str]]:
    """Fully known shapes, and known dtypes, of the value_infos in `sources`, for tensors not in `tensors`."""
    hints: dict[str, tuple] = {}
    dtypes: dict[str, str] = {}
    symbols: dict[str, Sym] = {}
    for source in sources:
        for info in source:
            if info.name in tensors or info.type.WhichOneof("value") != "tensor_type":
                continue
            tensor_type = info.type.tensor_type
            if tensor_type.elem_type:  # typed even where the shape is not (Shape: int64, IsNaN: bool)
                dtypes[info.name] = _dtype(tensor_type.elem_type)
            if not tensor_type.HasField("shape"):
                continue
            shape: list[Dim] = []
            for dim in tensor_type.shape.dim:
                if dim.HasField("dim_value"):
                    shape.append(dim.dim_value)
                elif dim.dim_param:
                    shape.append(symbols.get(dim.dim_param) or symbols.setdefault(dim.dim_param,
                                                                                  Sym.symbol(dim.dim_param)))
                else:
                    break
            else:
                hints[info.name] = tuple(shape)
    return hints, dtypes
