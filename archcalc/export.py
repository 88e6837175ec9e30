"""Write an analysed graph (a YAML spec, usually) as a standard ONNX model.

Every spec layer is already an ONNX op in the graph; export only resolves what the
spec left to inference (weight shapes, depthwise group counts), fills in weights and
rewrites the ops ONNX lacks into standard ones (min pooling = -maxpool(-x)).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from archcalc.analysis import Analysis
from archcalc.dims import Sym
from archcalc.errors import ArchcalcError
from archcalc.graph import Graph, Node

WEIGHT_MODES = ("random", "zeros", "external", "omit")
# Ops whose standard form needs at least this opset (default domain).
MIN_OPSET = {"Gelu": 20, "Swish": 24, "LayerNormalization": 17, "HardSwish": 14}
_DTYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16,
           "float64": TensorProto.DOUBLE, "int64": TensorProto.INT64, "int32": TensorProto.INT32,
           "int8": TensorProto.INT8, "uint8": TensorProto.UINT8, "bool": TensorProto.BOOL}


class ExportError(ArchcalcError):
    """A graph that cannot be written as a standard ONNX model."""


def newest_runtime_opset() -> int:
    """The newest default-domain opset that both onnx and the installed onnxruntime accept."""
    import onnxruntime

    for opset in range(onnx.defs.onnx_opset_version(), 12, -1):
        model = _tiny_model(opset)
        try:
            onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            return opset
        except Exception:  # noqa: BLE001 (any refusal means: try an older opset)
            continue
    return 13


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


def _dims(shape: Sequence[Any]) -> list[int | str]:
    return [d if isinstance(d, int) else str(d) for d in shape]


def _weight_values(name: str, shape: tuple[int, ...], kind: str, mode: str, rng: np.random.Generator) -> np.ndarray:
    if mode == "zeros":
        return np.zeros(shape, np.float32)
    if kind == "buffer":
        # Running variance must stay positive; means in the same range do no harm.
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return (rng.standard_normal(shape) / np.sqrt(max(fan_in, 1))).astype(np.float32)


def to_onnx(graph: Graph, analysis: Analysis, *, opset: int | None = None, weights: str = "random",
            external_path: str | None = None, seed: int = 0) -> onnx.ModelProto:
    """The ONNX model of `graph`, with shapes from `analysis`; weights per `weights` mode."""
    if weights not in WEIGHT_MODES:
        raise ExportError(f"unknown weights mode '{weights}'", fix="use one of " + ", ".join(WEIGHT_MODES))
    ops = {node.op for node in graph.nodes}
    needed = max((MIN_OPSET.get(op, 13) for op in ops), default=13)
    opset = opset or max(newest_runtime_opset(), needed)
    if opset < needed:
        op = max(ops, key=lambda o: MIN_OPSET.get(o, 0))
        raise ExportError(f"op {op} needs opset {MIN_OPSET[op]} or newer, asked for {opset}",
                          where=graph.path, fix=f"pass --opset {MIN_OPSET[op]} or newer")
    rng = np.random.default_rng(seed)
    results = {layer.name: layer for layer in analysis.layers}
    nodes: list[onnx.NodeProto] = []
    for node in graph.nodes:
        nodes += _nodes_for(node, results[node.name].attrs)
    initializers = []
    inputs = []
    for name, info in analysis.known_tensors.items():
        shape = analysis.tensors[name].shape if name in analysis.tensors else info.shape
        if info.kind == "input":
            inputs.append(helper.make_tensor_value_info(name, _DTYPES.get(info.dtype, TensorProto.FLOAT),
                                                        _dims(shape)))
        elif name in analysis.tensors:
            initializers.append(_initializer(name, info, tuple(shape), weights, rng, external_path))
    outputs = [helper.make_tensor_value_info(name, _DTYPES.get(analysis.tensors[name].dtype, TensorProto.FLOAT),
                                             _dims(analysis.tensors[name].shape)) for name in graph.outputs]
    onnx_graph = helper.make_graph(nodes, str(graph.metadata.get("name") or "archcalc"), inputs, outputs,
                                   initializer=initializers)
    return _model(onnx_graph, opset)


def _initializer(name: str, info: Any, shape: tuple, mode: str, rng: np.random.Generator,
                 external_path: str | None) -> TensorProto:
    if any(isinstance(d, Sym) for d in shape):
        raise ExportError(f"weight '{name}' has symbolic shape {list(shape)}",
                          fix="bind the dims with --dim so weights have fixed sizes")
    if info.kind == "constant":
        dtype = np.int64 if info.dtype == "int64" else np.float32
        return onnx.numpy_helper.from_array(np.array(info.value, dtype).reshape(shape), name)
    if mode in ("external", "omit"):
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=shape)
        tensor.data_location = TensorProto.EXTERNAL
        location = os.path.basename(external_path or "weights.bin")
        for key, value in (("location", location), ("offset", "0"), ("length", str(4 * int(np.prod(shape))))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        return tensor
    return onnx.numpy_helper.from_array(_weight_values(name, shape, info.kind, mode, rng), name)


def _clean(attrs: dict[str, Any]) -> dict[str, Any]:
    cleaned = {}
    for key, value in attrs.items():
        if value is None:
            continue
        cleaned[key] = list(value) if isinstance(value, tuple) else value
    return cleaned


def _nodes_for(node: Node, attrs: dict[str, Any]) -> list[onnx.NodeProto]:
    inputs = list(node.inputs)
    while inputs and not inputs[-1]:
        inputs.pop()
    attrs = _clean(attrs)
    if node.op == "MinPool":
        # ONNX has no min pooling: min(window) = -max(-window).
        negated, pooled = f"{node.name}/negated", f"{node.name}/maxpool"
        return [
            helper.make_node("Neg", inputs[:1], [negated], name=f"{node.name}/neg_in"),
            helper.make_node("MaxPool", [negated], [pooled], name=f"{node.name}/max", **attrs),
            helper.make_node("Neg", [pooled], list(node.outputs), name=node.name),
        ]
    return [helper.make_node(node.op, inputs, list(node.outputs), name=node.name, **attrs)]


def write_model(model: onnx.ModelProto, path: str, weights: str) -> None:
    """Save `model`; in external mode the weights go to `<path>.data` beside it."""
    if weights == "external":
        onnx.save_model(model, path)  # references only; now write the data they point to
        data_path = os.path.join(os.path.dirname(path) or ".", os.path.basename(path) + ".data")
        rng = np.random.default_rng(0)
        with open(data_path, "wb") as handle:
            for tensor in model.graph.initializer:
                if tensor.data_location == TensorProto.EXTERNAL:
                    shape = tuple(tensor.dims)
                    offset = handle.tell()
                    kind = "buffer" if "running_" in tensor.name else "weight"
                    handle.write(_weight_values(tensor.name, shape, kind, "random", rng).tobytes())
                    _set_external(tensor, os.path.basename(data_path), offset, handle.tell() - offset)
        onnx.save_model(model, path)
        return
    onnx.save_model(model, path)


def _set_external(tensor: TensorProto, location: str, offset: int, length: int) -> None:
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
