"""Prove an analysis by running the graph in onnxruntime.

Every intermediate tensor becomes a graph output; the graph runs once on random inputs
(symbolic dims bound as for counting); each tensor's observed shape is compared with the
inferred one, and each layer's MACs/FLOPs are recomputed from the observed shapes with
the same rule and compared with the static figures.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper

from archcalc.analysis import Analysis
from archcalc.dims import bind_shape
from archcalc.errors import ArchcalcError
from archcalc.graph import Graph
from archcalc.registry import TensorState, get_rule


class VerifyError(ArchcalcError):
    """onnxruntime refused or failed to run the model."""


@dataclass(frozen=True)
class Mismatch:
    kind: str  # "shape", "macs", "flops", "missing"
    layer: str
    tensor: str
    expected: str
    actual: str


@dataclass
class VerifyReport:
    model: str
    tensors_checked: int = 0
    layers_checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    node_times_us: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "ok": self.ok,
            "tensors_checked": self.tensors_checked,
            "layers_checked": self.layers_checked,
            "mismatches": [m.__dict__ for m in self.mismatches],
            "skipped": self.skipped,
            "seconds": self.seconds,
            "node_times_us": self.node_times_us,
        }


_NUMPY = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64, TensorProto.FLOAT16: np.float16,
          TensorProto.INT64: np.int64, TensorProto.INT32: np.int32, TensorProto.INT8: np.int8,
          TensorProto.UINT8: np.uint8, TensorProto.BOOL: np.bool_}


def estimate_run_bytes(analysis: Analysis) -> int:
    """Memory a verification run needs: weights, plus every activation kept as an output."""
    return analysis.totals.weight_bytes + analysis.totals.activation_bytes + analysis.totals.input_bytes


def prepare_model(model: onnx.ModelProto, analysis: Analysis, base_dir: str) -> onnx.ModelProto:
    """A copy of `model` whose every layer output is a graph output and whose weights are
    present: external data is loaded when its file exists, generated when it does not."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    rng = np.random.default_rng(0)
    for tensor in model.graph.initializer:
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        path = os.path.join(base_dir, info.get("location", ""))
        shape = tuple(tensor.dims)
        dtype = _NUMPY.get(tensor.data_type, np.float32)
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                handle.seek(int(info.get("offset", 0)))
                count = int(np.prod(shape))
                values = np.frombuffer(handle.read(count * np.dtype(dtype).itemsize), dtype).reshape(shape)
        else:
            values = (rng.uniform(0.5, 1.5, shape) if "running_var" in tensor.name
                      else rng.standard_normal(shape) * 0.05).astype(dtype)
        tensor.CopyFrom(onnx.numpy_helper.from_array(values, tensor.name))
    _declare_input_shapes(model, analysis)
    existing = {o.name for o in model.graph.output}
    for layer in analysis.layers:
        for out in layer.outputs:
            if out.name not in existing:
                elem = helper.np_dtype_to_tensor_dtype(np.dtype(_np_name(out.dtype)))
                model.graph.output.append(helper.make_tensor_value_info(out.name, elem, None))
                existing.add(out.name)
    return model


def _declare_input_shapes(model: onnx.ModelProto, analysis: Analysis) -> None:
    """Declare each graph input at the shape it was analysed at (``--input-shape`` may
    differ from the file); the file's value_info then describes another run, so it goes."""
    changed = False
    for graph_input in model.graph.input:
        tensor = analysis.tensors.get(graph_input.name)
        if tensor is None or tensor.shape is None or not graph_input.type.HasField("tensor_type"):
            continue
        wanted = [str(d) if not isinstance(d, int) else d for d in tensor.shape]
        shape = graph_input.type.tensor_type.shape
        declared = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in shape.dim]
        if declared == wanted and graph_input.type.tensor_type.HasField("shape"):
            continue
        changed = True
        shape.Clear()
        for dim in wanted:
            entry = shape.dim.add()
            if isinstance(dim, int):
                entry.dim_value = dim
            else:
                entry.dim_param = dim
    if changed:
        del model.graph.value_info[:]


def _np_name(dtype: str) -> str:
    return {"bfloat16": "float32", "float": "float32", "double": "float64"}.get(dtype, dtype)


def run_and_compare(graph: Graph, analysis: Analysis, model: onnx.ModelProto, *, profile: bool = False,
                    progress: Callable[[str], None] | None = None) -> VerifyReport:
    import onnxruntime

    report = VerifyReport(model=graph.path)
    say = progress or (lambda _: None)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    if profile:
        options.enable_profiling = True
    say("building the onnxruntime session")
    started = time.perf_counter()
    try:
        session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                               providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 (onnxruntime raises its own hierarchy)
        raise VerifyError(f"onnxruntime refused the model: {_first_line(error)}", where=graph.path,
                          fix="check the op and opset it names; archcalc analyze still works without running") \
            from None
    report.seconds["session"] = time.perf_counter() - started
    feeds = {}
    rng = np.random.default_rng(0)
    for value in session.get_inputs():
        inferred = analysis.tensors.get(value.name)
        if inferred is None or inferred.shape is None:
            raise VerifyError(f"input '{value.name}' has no inferred shape", where=graph.path)
        shape = bind_shape(inferred.shape, analysis.bindings)
        dtype = np.dtype(_np_name(inferred.dtype))
        feeds[value.name] = (rng.integers(0, 2, shape) if dtype.kind in "iub" else rng.random(shape)).astype(dtype)
    say("running the model")
    started = time.perf_counter()
    names = [o.name for o in session.get_outputs()]
    try:
        if profile:
            session.run(names, feeds)  # warm-up: first runs pay for allocation and packing
        values = session.run(names, feeds)
    except Exception as error:  # noqa: BLE001
        raise VerifyError(f"onnxruntime failed while running: {_first_line(error)}", where=graph.path,
                          fix="the message names the node; check its input shapes") from None
    report.seconds["run"] = time.perf_counter() - started
    observed = dict(zip(names, values))
    if profile:
        report.node_times_us = _node_times(session.end_profiling())
    _compare(graph, analysis, observed, feeds, report)
    return report


def _compare(graph: Graph, analysis: Analysis, observed: dict[str, np.ndarray], feeds: dict[str, np.ndarray],
             report: VerifyReport) -> None:
    env = analysis.bindings
    nodes = {node.name: node for node in graph.nodes}
    for layer in analysis.layers:
        if not layer.modelled:
            report.skipped.append(layer.name)
            continue
        report.layers_checked += 1
        for out in layer.outputs:
            actual = observed.get(out.name)
            if actual is None:
                report.mismatches.append(Mismatch("missing", layer.name, out.name, "an output", "none"))
                continue
            report.tensors_checked += 1
            expected = bind_shape(out.shape, env)
            if tuple(actual.shape) != expected:
                report.mismatches.append(Mismatch("shape", layer.name, out.name, str(list(expected)),
                                                  str(list(actual.shape))))
        _recount(layer, nodes[layer.name], analysis, {**feeds, **observed}, report)


def _recount(layer, node, analysis: Analysis, observed: dict[str, np.ndarray], report: VerifyReport) -> None:
    """MACs and FLOPs again, from the shapes onnxruntime produced rather than inferred ones."""
    rule = get_rule(layer.op)
    if rule is None:
        return
    states: list[TensorState | None] = []
    for name in node.inputs:
        if not name:
            states.append(None)
            continue
        array = observed.get(name)
        known = analysis.known_tensors.get(name)
        inferred = analysis.tensors.get(name)
        if array is not None:
            small_int = array.dtype.kind in "iu" and array.size <= 1024
            value = tuple(array.reshape(-1).tolist()) if small_int else None
            states.append(TensorState(tuple(array.shape), inferred.dtype if inferred else "float32", value))
        elif inferred is not None and inferred.shape is not None:
            # Weights and constants are not graph outputs; their shapes are fixed, not inferred.
            value = known.value if known is not None else None
            states.append(TensorState(bind_shape(inferred.shape, analysis.bindings), inferred.dtype, value))
        else:
            return
    try:
        result = rule(states, dict(layer.attrs), {"n_outputs": len(node.outputs), "node_name": node.name,
                                                  "op": node.op})
    except ArchcalcError as error:
        report.mismatches.append(Mismatch("shape", layer.name, "", "rule accepts observed shapes", str(error)))
        return
    for kind, static, dynamic in (("macs", layer.macs, result.macs), ("flops", layer.flops, result.flops)):
        if static != dynamic:
            report.mismatches.append(Mismatch(kind, layer.name, "", f"{static:,}", f"{int(dynamic):,}"))


def _node_times(profile_path: str) -> dict[str, float]:
    import json

    with open(profile_path, encoding="utf-8") as handle:
        events = json.load(handle)
    os.remove(profile_path)
    times: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            # Events come in time order; the last run's time replaces the warm-up's.
            times[event["name"][: -len("_kernel_time")]] = float(event.get("dur", 0))
    return times


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def model_for(graph: Graph, analysis: Analysis) -> onnx.ModelProto:
    """The ONNX model to run: the file itself for ONNX input, the export of a spec otherwise."""
    base_dir = os.path.dirname(os.path.abspath(graph.path))
    if graph.metadata.get("format") == "onnx":
        source = onnx.load(graph.path, load_external_data=False)
    else:
        from archcalc.export import to_onnx

        source = to_onnx(graph, analysis, weights="random")
    return prepare_model(source, analysis, base_dir)


def default_memory_limit() -> int:
    """Half of physical memory: room for onnxruntime's own buffers beside ours."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30
