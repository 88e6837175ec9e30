"""Write an analysed graph (a YAML spec, usually) as a standard ONNX model.

Every spec layer is already an ONNX op in the graph; export only resolves what the
spec left to inference (weight shapes, depthwise group counts), fills in weights and
writes each layer as its rule says (Rule.min_opset, Rule.lower): the ops ONNX lacks as
standard ones (min pooling = -maxpool(-x)), and those the runtime cannot run as ones it
can (Swish = x * sigmoid(x); 'same' padding with dilation as explicit pads).
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Collection, Sequence
from typing import IO, Any

import numpy as np
import onnx
from google.protobuf.message import EncodeError
from onnx import TensorProto, helper

from archcalc.core.dims import Dim, bind_shape, is_static, shape_symbols
from archcalc.core.dtypes import ONNX_NUMBERS, canonical
from archcalc.core.errors import ArchcalcError
from archcalc.core.files import atomic_write, atomic_writes
from archcalc.core.graph import Deferred, Graph, Node
from archcalc.core.results import Analysis, LayerResult
from archcalc.core.units import human_bytes
from archcalc.rules.base import LayerCall, StandardNode, rule_for

WEIGHT_MODES = ("random", "zeros", "external", "omit")
# The oldest default-domain opset export writes: the ops' attribute-to-input moves (Split,
# Squeeze, Reduce* axes...) are written in their opset-13 form.
OLDEST_OPSET = 13
class ExportError(ArchcalcError):
    """A graph that cannot be written as a standard ONNX model."""


def newest_onnx_opset() -> int:
    """The newest default-domain opset the installed onnx knows (it cannot write a newer one)."""
    return onnx.defs.onnx_opset_version()


def _check_opset(opset: int, path: str) -> None:
    newest = newest_onnx_opset()
    if not OLDEST_OPSET <= opset <= newest:
        raise ExportError(f"opset {opset} is not one export can write: the installed onnx {onnx.__version__} "
                          f"supports opsets {OLDEST_OPSET} to {newest}", where=path,
                          fix=f"pass --opset between {OLDEST_OPSET} and {newest}, or leave it out for the newest "
                              "the installed onnxruntime runs")


@functools.lru_cache(maxsize=1)
def newest_runtime_opset() -> int:
    """The newest default-domain opset that both onnx and the installed onnxruntime accept."""
    import onnxruntime

    for opset in range(newest_onnx_opset(), OLDEST_OPSET - 1, -1):
        model = _tiny_model(opset)
        try:
            onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            return opset
        except Exception:  # noqa: BLE001 (any refusal means: try an older opset)
            continue
    return OLDEST_OPSET


def _tiny_model(opset: int) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    return _model(graph, opset)


def _model(graph: onnx.GraphProto, opset: int) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="archcalc")
    # The IR version the opset came with, not the newest onnx knows: runtimes lag behind.
    model.ir_version = min(onnx.IR_VERSION, helper.find_min_ir_version_for([helper.make_opsetid("", opset)]))
    return model


def _known(shape: Sequence[Dim] | Deferred | None) -> tuple[Dim, ...]:
    """An analysed spec knows every shape: None or a Deferred one is a bug, said as such."""
    if shape is None or isinstance(shape, Deferred):
        raise ExportError("a tensor's shape is unknown after analysis",
                          fix="report this: `archcalc analyze SPEC` should have inferred it")
    return tuple(shape)


def _dims(shape: Sequence[Dim] | Deferred | None) -> list[int | str]:
    """A shape for a value_info: symbolic dims by name."""
    return [d if isinstance(d, int) else str(d) for d in _known(shape)]


def weight_values(name: str, shape: tuple[int, ...], kind: str, mode: str, rng: np.random.Generator,
                   dtype: Any = np.float32) -> np.ndarray:
    if mode == "zeros":
        return np.zeros(shape, dtype)
    if kind == "buffer":
        # Running variance must stay positive; means in the same range do no harm.
        return (rng.random(shape, dtype=np.float32) + np.float32(0.5)).astype(dtype, copy=False)
    # Uniform in +-sqrt(3 / fan_in): variance 1 / fan_in, as PyTorch's default init, and
    # float32 uniform draws are ~8x faster than normal ones (vgg16: 0.4 s, not 3 s).
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    bound = np.float32(np.sqrt(3.0 / max(fan_in, 1)))
    values = rng.random(shape, dtype=np.float32)
    values -= np.float32(0.5)
    values *= 2 * bound
    return values.astype(dtype, copy=False)


def to_onnx(graph: Graph, analysis: Analysis, *, opset: int | None = None, weights: str = "random",
            external_path: str | None = None, seed: int = 0) -> onnx.ModelProto:
    """The ONNX model of `graph`, with shapes from `analysis`; weights per `weights` mode."""
    if weights not in WEIGHT_MODES:
        raise ExportError(f"unknown weights mode '{weights}'", fix="use one of " + ", ".join(WEIGHT_MODES))
    needed = {node.op: _min_opset(node) for node in graph.nodes}
    newest_needed = max(needed.values(), default=OLDEST_OPSET)
    if opset is not None:
        _check_opset(opset, graph.path)
    opset = opset or max(newest_runtime_opset(), newest_needed)
    if opset < newest_needed:
        op = max(needed, key=needed.__getitem__)
        raise ExportError(f"op {op} needs opset {needed[op]} or newer, asked for {opset}",
                          where=graph.path, fix=f"pass --opset {needed[op]} or newer")
    _check_room(analysis, weights, external_path, graph.path)
    rng = np.random.default_rng(seed)
    results = {layer.name: layer for layer in analysis.layers}
    nodes: list[onnx.NodeProto] = []
    for node in graph.nodes:
        nodes += _nodes_for(node, results[node.name], graph.path)
    initializers = []
    inputs = []
    offset = 0  # of the next external weight in its data file
    for name, info in analysis.known_tensors.items():
        shape = analysis.tensors[name].shape if name in analysis.tensors else info.shape
        if info.kind == "input":
            inputs.append(helper.make_tensor_value_info(name, _onnx_type(info.dtype),
                                                        _dims(shape)))
        elif name in analysis.tensors:
            tensor = _initializer(name, info, _weight_shape(name, _known(shape), analysis, graph.path), weights, rng,
                                  external_path, offset)
            if tensor.data_location == TensorProto.EXTERNAL:
                offset += 4 * int(np.prod(tensor.dims))
            initializers.append(tensor)
    outputs = [helper.make_tensor_value_info(name, _onnx_type(analysis.tensors[name].dtype),
                                             _dims(analysis.tensors[name].shape)) for name in graph.outputs]
    try:
        onnx_graph = helper.make_graph(nodes, str(graph.metadata.get("name") or "archcalc"), inputs, outputs,
                                       initializer=initializers)
        return _model(onnx_graph, opset)
    except (EncodeError, MemoryError):  # protobuf says only "Failed to serialize" when memory runs out
        raise ExportError("memory ran out while building the ONNX model", where=graph.path,
                          fix="free memory, shorten the spec's names, or use --weights external") from None


def _weight_shape(name: str, shape: tuple, analysis: Analysis, path: str) -> tuple[int, ...]:
    """A weight's shape in ints: a symbolic size (a dense layer after a flatten of an input
    of symbolic size) takes the values the analysis counted with (--dim, --input-shape)."""
    if all(is_static(d) for d in shape):
        return shape
    unbound = sorted(shape_symbols(shape) - set(analysis.bindings))
    if unbound:
        raise ExportError(f"weight '{name}' has symbolic shape {list(shape)}", where=path,
                          fix="ONNX weights have fixed sizes: bind " + ", ".join(f"--dim {s}=N" for s in unbound)
                          + " (or give the input a fixed size with --input-shape)")
    return bind_shape(shape, analysis.bindings)


# protobuf serialises no message over 2 GiB: inline weights past that cannot be written.
INLINE_LIMIT = 2**31 - 2**20  # a MiB left for the graph itself
# Generated external weights are written this many bytes at a time, so one huge tensor
# needs no more memory than this.
WRITE_CHUNK = 64 * 2**20


def _check_room(analysis: Analysis, weights: str, external_path: str | None, path: str) -> None:
    """Refuse, before allocating anything, weights that no file or disk here can hold."""
    size = analysis.totals.weight_bytes
    if weights in ("random", "zeros") and size > INLINE_LIMIT:
        raise ExportError(f"its weights take {human_bytes(size)}, more than the 2 GiB one ONNX file can hold "
                          "inline (protobuf's limit)", where=path,
                          fix="use --weights external (a .data file beside the model) or --weights omit")
    if weights == "external":
        folder = os.path.dirname(os.path.abspath(external_path or path))
        free = shutil.disk_usage(folder).free if os.path.isdir(folder) else None
        if free is not None and size > free:
            raise ExportError(f"its weights take {human_bytes(size)}, more than the {human_bytes(free)} free in "
                              f"{folder}", where=path, fix="free some space, write elsewhere, or use --weights omit")


def _onnx_type(dtype: str | None) -> int:
    """The TensorProto type of an archcalc dtype; float32 where the analysis has none."""
    return ONNX_NUMBERS.get(canonical(dtype), TensorProto.FLOAT) if dtype else TensorProto.FLOAT


def _initializer(name: str, info: Any, shape: tuple, mode: str, rng: np.random.Generator,
                 external_path: str | None, offset: int = 0) -> TensorProto:
    if info.kind == "constant":
        dtype = np.int64 if info.dtype == "int64" else np.float32
        return onnx.numpy_helper.from_array(np.array(info.value, dtype).reshape(shape), name)
    if mode in ("external", "omit"):
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=shape)
        # Offsets laid out as the external file would hold them, so an omitted-weights file
        # stays self-consistent; in external mode write_model rewrites them as it writes.
        set_external(tensor, os.path.basename(external_path or "weights.bin"), offset, 4 * int(np.prod(shape)))
        return tensor
    return onnx.numpy_helper.from_array(weight_values(name, shape, info.kind, mode, rng), name)


def _clean(attrs: dict[str, Any]) -> dict[str, Any]:
    cleaned = {}
    for key, value in attrs.items():
        if value is None:
            continue
        cleaned[key] = list(value) if type(value) is tuple else value
    return cleaned


def _min_opset(node: Node) -> int:
    rule = rule_for(node.domain, node.op)
    return max(rule.min_opset, OLDEST_OPSET) if rule is not None else OLDEST_OPSET


def _nodes_for(node: Node, layer: LayerResult, path: str) -> list[onnx.NodeProto]:
    """The layer as standard nodes: as it is, or as its rule lowers it (see Rule.lower)."""
    inputs = list(node.inputs)
    while inputs and not inputs[-1]:
        inputs.pop()
    call = LayerCall(node.op, node.name, tuple(inputs), tuple(node.outputs), _clean(layer.attrs),
                     tuple(tensor.shape for tensor in layer.inputs))
    rule = rule_for(node.domain, node.op)
    try:
        standard = rule.lower(call) if rule is not None and rule.lower is not None else [
            StandardNode(call.op, call.inputs, call.outputs, call.name, call.attrs)]
    except ArchcalcError as error:
        raise ExportError(f"layer '{node.name}': {error.message}", where=path, fix=error.fix) from None
    return [helper.make_node(n.op, list(n.inputs), list(n.outputs), name=n.name, **n.attrs) for n in standard]


def write_model(model: onnx.ModelProto, path: str, weights: str, buffers: Collection[str] = ()) -> None:
    """Save `model`; in external mode the weights go to `<path>.data` beside it. A path that
    cannot be written is bad input (exit 2), not a traceback."""
    try:
        size = model.ByteSize()
    except EncodeError:  # protobuf measures by serialising: memory ran out already
        raise ExportError("memory ran out while writing the model", where=path,
                          fix="free memory, shorten the spec's names, or use --weights external") from None
    if size > INLINE_LIMIT:  # weights are bounded already (see _check_room): names, say, ten megabytes each
        raise ExportError(f"the model takes {human_bytes(size)}, more than the 2 GiB one ONNX file can hold "
                          "(protobuf's limit)", where=path,
                          fix="shorten the spec's layer and block names, or use --weights external")
    try:
        _write_model(model, path, weights, frozenset(buffers))
    except OSError as error:
        raise ExportError(f"cannot write {error.filename or path}: {error.strerror or error}",
                          fix="give -o a file path in an existing, writable directory") from None
    except (EncodeError, MemoryError):  # protobuf says only "Failed to serialize" when memory runs out
        raise ExportError(f"memory ran out while writing the {human_bytes(size)} model", where=path,
                          fix="free memory, shorten the spec's names, or use --weights external") from None


def _write_model(model: onnx.ModelProto, path: str, weights: str, buffers: frozenset[str]) -> None:
    """Both files through temporary ones, renamed into place only once complete: the data
    file first, so a model is never left pointing at a half-written or missing one."""
    if weights != "external":
        with atomic_write(path, "wb") as handle:
            handle.write(model.SerializeToString())
        return
    data_path = os.path.join(os.path.dirname(path) or ".", os.path.basename(path) + ".data")
    rng = np.random.default_rng(0)
    with atomic_writes((path, "wb"), (data_path, "wb")) as (model_file, data_file):
        for tensor in model.graph.initializer:
            if tensor.data_location == TensorProto.EXTERNAL:
                shape = tuple(tensor.dims)
                offset = data_file.tell()
                kind = "buffer" if tensor.name in buffers else "weight"
                _write_values(data_file, tensor.name, shape, kind, rng)
                set_external(tensor, os.path.basename(data_path), offset, data_file.tell() - offset)
        model_file.write(model.SerializeToString())


def _write_values(file: IO[bytes], name: str, shape: tuple[int, ...], kind: str, rng: np.random.Generator) -> None:
    """Random values of `shape`, written WRITE_CHUNK bytes (whole rows) at a time."""
    row = int(np.prod(shape[1:])) * 4 if len(shape) > 1 else 4
    rows = max(1, WRITE_CHUNK // max(row, 1))
    total = shape[0] if shape else 1
    if total <= rows:
        file.write(weight_values(name, shape, kind, "random", rng).tobytes())
        return
    for start in range(0, total, rows):
        chunk = (min(rows, total - start), *shape[1:])
        # fan_in comes from shape[1:], the same for every chunk, so the values' range is too
        file.write(weight_values(name, chunk, kind, "random", rng).tobytes())


def set_external(tensor: TensorProto, location: str, offset: int, length: int) -> None:
    """Point `tensor` at `length` bytes at `offset` of the data file `location` (relative to
    the model's folder), replacing any reference it had."""
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
