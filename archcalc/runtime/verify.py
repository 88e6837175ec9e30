"""Prove an analysis by running the graph in onnxruntime.

Every intermediate tensor becomes a graph output; the graph runs once on random inputs
(symbolic dims bound as for counting). Then, tensor by tensor, the observed shape and
dtype are compared with the inferred ones, and layer by layer the static MACs are
compared with an independent reference: the rule's ``observed_macs`` (declared in the
registry), computed from the shapes onnxruntime produced only. FLOPs (and MACs of rules
without a reference) are recomputed with the same rule on the observed shapes.

Dims that a layer introduces (NonZero's count, a Loop's trip count) depend on the data:
whatever they are bound to, they are reported as "data-dependent, observed N", not as
mismatches. A verification where every layer is unmodelled checks nothing and says so.

Weights missing from an ONNX file (external data not present) and the weights of a spec
are generated at the right shapes. Models whose weights exceed
:data:`EXTERNAL_DATA_ABOVE` keep them in a temporary external-data file, so no protobuf
message passes 2 GiB and the weights are not held twice in memory.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import onnx
from onnx import TensorProto, helper

from archcalc.core.dims import bind, bind_shape, shape_symbols
from archcalc.core.dtypes import SUB_BYTE_INTEGERS, dtype_name
from archcalc.core.errors import ArchcalcError, ShapeError, UnboundDim
from archcalc.core.graph import Graph
from archcalc.core.progress import Progress
from archcalc.core.results import Analysis, LayerResult
from archcalc.engine.inference import analyze
from archcalc.rules.base import TensorState, rule_for
from archcalc.runtime.export import set_external, to_onnx, weight_values
from archcalc.runtime.profiling import node_times_us

# Weight bytes above which the prepared model keeps its weights in an external-data file
# in a temporary directory and onnxruntime loads it by path: protobuf cannot serialise a
# message over 2 GiB, and inline weights are held twice (ModelProto and serialised bytes).
# Through a file onnxruntime also builds the session ~10x faster (it maps the weights
# rather than copying them): vgg16 0.5 s instead of 4 s, and 0.9 GiB peak instead of 2.2.
# Tiny models (op tests) stay inline, which skips the disk.
EXTERNAL_DATA_ABOVE = 16 * 2**20
_ALIGN = 4096  # external-data offsets on page boundaries, so onnxruntime may map them
TIMED_RUNS = 3  # --profile: runs timed after the warm-up, each node's least time kept
# Generated weights of more elements than this are zeros left as holes in the sparse data
# file: no values to draw and no bytes to write (a 2 GiB dense layer in 1 s, not 25 s).
# Values never change a shape; smaller tensors get random values so ops see varied data.
SPARSE_ABOVE = 2**24

# phase, items done, items in the phase (None: one step of unknown length)

# Peak memory of a verification, fitted to the peak RSS (GNU time -v; onnxruntime 1.32,
# CPU, batch 1, weights through the external-data file, prepacking off) of `archcalc
# verify` on: weights / activations -> peak (MiB)
#   specs/lenet5.yaml      0.2 /   0.1 ->   97    specs/mobilenet_v2.yaml  13.5 /  75 ->  226
#   specs/resnet18.yaml   44.6 /  31.4 ->  177    specs/densenet121.yaml   30.8 / 186 ->  329
#   specs/resnet50.yaml   97.7 / 143.3 ->  349    specs/vgg16.yaml        528   / 109 ->  744
#   audit big.yaml (dense 16384 -> 33000) 2063 / 0.1 -> 2158
# i.e. ~97 MiB of imports, weights held once (onnxruntime maps the file), activations
# 1.1-1.5x (each output in onnxruntime's buffer, returned as an array). Rounded up so the
# estimate stays above every measurement; --profile turns prepacking on: a second copy
# of the weights (big.yaml: 4218 MiB).
_BASE_BYTES = 128 * 2**20
_K_WEIGHTS = 1.1
_K_WEIGHTS_PREPACKED = 2.1
_K_ACTIVATIONS = 1.6
# FLOPs above which verify does not run the model unless --max-work says so: vgg16 at
# 224x224 is 3e10, so every bundled spec fits with room, while a Loop told to run 1e15 times
# (onnxruntime never ends) does not.
DEFAULT_MAX_WORK = 10**12


class VerifyError(ArchcalcError):
    """onnxruntime refused or failed to run the model."""


class ExternalDataError(ArchcalcError):
    """A tensor whose external data is outside the model's folder or not where it says."""


@dataclass(frozen=True)
class Mismatch:
    kind: str  # "shape", "dtype", "macs", "flops", "missing", "onnxruntime"
    layer: str
    tensor: str
    expected: Any  # shapes as lists of ints, counts as ints, dtypes and messages as strings
    actual: Any

    def to_json(self) -> dict:
        return {"kind": self.kind, "layer": self.layer, "tensor": self.tensor, "expected": self.expected,
                "actual": self.actual}


@dataclass(frozen=True)
class DataDependent:
    """A dim whose size depends on the data (a symbol a layer introduced), so any bound
    value is a guess: reported with what onnxruntime produced, never as a mismatch."""

    layer: str
    tensor: str
    axis: int
    dim: str
    observed: int

    def to_json(self) -> dict:
        return {"layer": self.layer, "tensor": self.tensor, "axis": self.axis, "dim": self.dim,
                "observed": self.observed}


@dataclass
class VerifyReport:
    model: str
    layers_total: int = 0
    tensors_checked: int = 0
    layers_checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # {name, op, reason}
    data_dependent: list[DataDependent] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    node_times_us: dict[str, float] = field(default_factory=dict)
    layer_times: list[dict] = field(default_factory=list)  # with --profile: name, op, macs, time_us, gmac_per_s

    @property
    def ok(self) -> bool:
        return not self.mismatches

    @property
    def nothing_checked(self) -> bool:
        """True when no tensor could be compared (every layer unmodelled): not a failure, but
        not a proof either, so the CLI says "nothing to check" instead of "ok"."""
        return self.ok and self.tensors_checked == 0 and self.layers_checked == 0

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "ok": self.ok,
            "nothing_checked": self.nothing_checked,
            "tensors_checked": self.tensors_checked,
            "layers_checked": self.layers_checked,
            "layers_total": self.layers_total,
            "mismatches": [m.to_json() for m in self.mismatches],
            "skipped": self.skipped,
            "data_dependent": [d.to_json() for d in self.data_dependent],
            "seconds": self.seconds,
            "node_times_us": self.node_times_us,
            "layer_times": self.layer_times,
        }


# archcalc dtype names -> numpy, for generated inputs and weights; others (string,
# bfloat16, float8) have no numpy type archcalc can fill.
_NUMPY = {"float32": np.float32, "float64": np.float64, "float16": np.float16,
          "int64": np.int64, "int32": np.int32, "int16": np.int16, "int8": np.int8,
          "uint64": np.uint64, "uint32": np.uint32, "uint16": np.uint16, "uint8": np.uint8, "bool": np.bool_}
_ALIASES = {"float": "float32", "double": "float64"}


def estimate_run_bytes(analysis: Analysis, *, profile: bool = False) -> int:
    """Peak memory of a verification run: base + k_w * weights + k_a * (activations +
    inputs), the fit above _BASE_BYTES."""
    t = analysis.totals
    k_weights = _K_WEIGHTS_PREPACKED if profile else _K_WEIGHTS
    return int(_BASE_BYTES + k_weights * t.weight_bytes + _K_ACTIVATIONS * (t.activation_bytes + t.input_bytes))


def estimate_run_work(analysis: Analysis) -> int:
    """FLOPs of one run, counting each body layer's run as at least one: a Loop's FLOPs are
    its body's times a trip count the analysis knows, but a body of copies (Identity) counts
    nothing however often it runs. Nested loops count their trips, not the outer ones'."""
    body_layers: dict[str, int] = {}
    for layer in analysis.layers:
        if layer.parent:
            body_layers[layer.parent] = body_layers.get(layer.parent, 0) + 1
    work = 0
    for layer in analysis.layers:
        floor = (layer.repeats or 0) * max(1, body_layers.get(layer.name, 0))
        counted = 0 if layer.parent else max(int(layer.flops), 0)
        work += max(counted, floor)
    return work


def default_memory_limit() -> int:
    """Half of physical memory: room for onnxruntime's own buffers beside ours."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


# -- analysis with data-dependent dims bound ------------------------------------------------

def input_symbols(graph: Graph) -> set[str]:
    """Symbols of the graph inputs' shapes: the dims the user feeds, not the data."""
    names: set[str] = set()
    for info in graph.tensors.values():
        if info.kind == "input" and isinstance(info.shape, tuple):
            names |= shape_symbols(info.shape)
    return names


def analyze_for_verify(graph: Graph, bindings: Mapping[str, int]) -> Analysis:
    """The analysis to verify; data-dependent dims left unbound get 1 (any value serves:
    they are reported, not compared)."""
    fed = input_symbols(graph)
    placeholders: dict[str, int] = {}
    while True:
        try:
            analysis = analyze(graph, {**bindings, **placeholders})
        except UnboundDim as error:
            if error.name in fed or error.name in placeholders:
                raise
            placeholders[error.name] = 1
            continue
        # The engine leaves run-time dims out of the counts rather than failing: bind them too,
        # as verify binds every shape it compares.
        shown = {name for tensor in analysis.tensors.values() if tensor.shape is not None
                 for name in shape_symbols(tensor.shape)}
        free = shown - set(analysis.bindings) - set(bindings) - fed - set(placeholders)
        if not free:
            return analysis
        placeholders.update(dict.fromkeys(free, 1))


# -- preparing the model --------------------------------------------------------------------

def model_for(graph: Graph, analysis: Analysis, data_dir: str | None = None,
              progress: Progress | None = None) -> onnx.ModelProto:
    """The ONNX model to run: the file itself for ONNX input, the export of a spec otherwise
    (its weights left out and generated here, once, at their final place)."""
    base_dir = os.path.dirname(os.path.abspath(graph.path))
    if graph.format == "onnx":
        source = onnx.load(graph.path, load_external_data=False)
    else:
        source = to_onnx(graph, analysis, weights="omit", external_path="__archcalc_generated__")
        # Graph outputs untyped: onnxruntime reports the dtype it computed, so a wrong dtype
        # in the analysis is a mismatch to show rather than a model it refuses.
        for output in source.graph.output:
            output.ClearField("type")
    return prepare_model(source, analysis, base_dir, data_dir=data_dir, progress=progress, model_path=graph.path)


def prepare_model(model: onnx.ModelProto, analysis: Analysis, base_dir: str, *, data_dir: str | None = None,
                  progress: Progress | None = None, model_path: str | None = None) -> onnx.ModelProto:
    """`model` (changed in place) with every layer output, and every other tensor the
    analysis inferred, as a graph output, and with its weights present: external data is
    read when its file exists, generated when it does not. With `data_dir`, weights end
    up in `data_dir`/weights.bin as external data instead of inline."""
    say = progress or (lambda *_: None)
    model_path = model_path or base_dir
    rng = np.random.default_rng(0)
    positive = set(analysis.buffer_tensors)  # running statistics: a variance must be positive
    initializers = model.graph.initializer
    sink = open(os.path.join(data_dir, "weights.bin"), "wb") if data_dir else None  # noqa: SIM115
    end = 0
    try:
        for index, tensor in enumerate(initializers):
            say("preparing weights", index, len(initializers))
            external = tensor.data_location == TensorProto.EXTERNAL
            if not external and sink is None:
                continue
            values = (_stored_values(tensor, base_dir, model_path) if external
                      else onnx.numpy_helper.to_array(tensor))
            count = int(np.prod(tensor.dims))
            hole = values is None and sink is not None and count > SPARSE_ABOVE
            if values is None and not hole:
                kind = "buffer" if tensor.name in positive else "weight"
                values = _generated(tensor, kind, rng)
            if values is not None and (sink is None or _stays_inline(values)):  # None: a hole in the file
                tensor.CopyFrom(onnx.numpy_helper.from_array(values, tensor.name))
                continue
            assert sink is not None  # without a data file every tensor stayed inline above
            offset = end + -end % _ALIGN
            sink.seek(offset)
            if hole:
                sink.seek(offset + count * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize)
            else:
                sink.write(np.ascontiguousarray(values).data)
            end = sink.tell()
            name, dims, data_type = tensor.name, tuple(tensor.dims), tensor.data_type
            tensor.Clear()
            tensor.name, tensor.data_type = name, data_type
            tensor.dims.extend(dims)
            set_external(tensor, "weights.bin", offset, end - offset)
            del values
        say("preparing weights", len(initializers), len(initializers))
    finally:
        if sink is not None:
            sink.truncate(end)  # a trailing hole counts only once the file is this long
            sink.close()
    _inline_nested_external(model, base_dir, model_path, rng)
    _declare_input_shapes(model, analysis)
    existing = {o.name for o in model.graph.output} | {i.name for i in model.graph.input} | \
        {t.name for t in initializers}
    for name in _tensors_to_observe(model, analysis):
        if name not in existing:
            # No declared type: onnxruntime reports the type it computed, and a wrong dtype
            # in the analysis is a mismatch to show, not a model to refuse.
            model.graph.output.append(onnx.ValueInfoProto(name=name))
            existing.add(name)
    return model


def _inline_nested_external(model: onnx.ModelProto, base_dir: str, model_path: str,
                            rng: np.random.Generator) -> None:
    """External tensors outside the main graph's initializers (subgraph initializers,
    Constant values, tensor attributes) inline, read under the same rules or generated:
    onnxruntime would otherwise resolve their locations itself, against another folder."""
    for tensor in _nested_tensors(model.graph, top=True):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        values = _stored_values(tensor, base_dir, model_path)
        if values is None:
            values = _generated(tensor, "weight", rng)
        tensor.CopyFrom(onnx.numpy_helper.from_array(values, tensor.name))


def _nested_tensors(graph: onnx.GraphProto, top: bool) -> Iterator[TensorProto]:
    if not top:
        yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            sparse_tensors = [attribute.sparse_tensor] if attribute.HasField("sparse_tensor") else []
            for sparse in [*sparse_tensors, *attribute.sparse_tensors]:
                yield from (sparse.values, sparse.indices)
            if attribute.HasField("g"):
                yield from _nested_tensors(attribute.g, top=False)
            for subgraph in attribute.graphs:
                yield from _nested_tensors(subgraph, top=False)


def _stays_inline(values: np.ndarray) -> bool:
    """Small tensors, and integer ones (shapes, axes, indices), stay in the model:
    onnxruntime's shape inference reads Reshape targets and the like only from inline data."""
    return values.nbytes < 1024 or values.dtype.kind in "iub" and values.nbytes < 2**20


def _tensors_to_observe(model: onnx.ModelProto, analysis: Analysis) -> list[str]:
    """Every layer output, then every other node output whose shape archcalc inferred
    (ConstantOfShape and Constant nodes folded into weights are not layers)."""
    names = [out.name for layer in analysis.layers if not layer.parent for out in layer.outputs if out.name]
    seen = set(names)
    for node in model.graph.node:
        for out in node.output:
            if out and out not in seen and out in analysis.tensors and analysis.tensors[out].shape is not None:
                names.append(out)
                seen.add(out)
    return names


def _stored_values(tensor: TensorProto, base_dir: str, model_path: str) -> np.ndarray | None:
    """An external tensor's values from its file, or None when the file is not there (the
    weights are then generated). The location comes from the file, so it is untrusted."""
    source = external_source(tensor, base_dir, model_path)
    if source is None:
        return None
    path, offset, size = source
    dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read(size)
    return np.frombuffer(data, dtype).reshape(tuple(tensor.dims))


def external_source(tensor: TensorProto, base_dir: str, model_path: str) -> tuple[str, int, int] | None:
    """(file, offset, byte count) of an external tensor's data, or None when its file does
    not exist. As onnx's checker requires, the location must stay inside the model's folder
    once symlinks are resolved, name a regular file and an offset and length within it;
    otherwise ExternalDataError: a crafted model must not make archcalc read any file."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")

    def refuse(problem: str, fix: str) -> ExternalDataError:
        return ExternalDataError(f"tensor '{tensor.name}': external-data location {location!r} {problem}",
                                 where=model_path, fix=fix)

    move_fix = ("keep external data in files in the model's folder (or below it), named by a relative path "
                "without '..'; re-save the model with onnx.save(model, path, save_as_external_data=True)")
    if not location:
        raise refuse("is empty", move_fix)
    if "\x00" in location:
        raise refuse("holds a NUL byte", move_fix)
    if os.path.isabs(location):
        raise refuse("is an absolute path", move_fix)
    folder = os.path.realpath(base_dir)
    path = os.path.realpath(os.path.join(folder, location))
    if os.path.commonpath([folder, path]) != folder or path == folder:
        raise refuse(f"resolves to {path}, outside the model's folder {folder}", move_fix)
    dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
    needed = math.prod(tensor.dims) * dtype.itemsize  # exact: np.prod would wrap past int64
    offset = _byte_count(info, "offset", 0, refuse)
    length = _byte_count(info, "length", needed, refuse)
    if not os.path.lexists(path):
        return None  # weights left out of the file (an export with --weights omit): generated
    if not os.path.isfile(path):
        raise refuse(f"resolves to {path}, which is not a regular file", move_fix)
    if length != needed:
        raise refuse(f"gives length {length}, but {list(tensor.dims)} values of {dtype.name} take {needed} bytes",
                     "re-save the model so that its external data matches its tensors")
    size = os.path.getsize(path)
    if offset + length > size:
        raise refuse(f"asks for bytes {offset}..{offset + length} of {path}, which holds {size}",
                     "the data file is truncated or belongs to another model: re-save the model with its data")
    return path, offset, length


def _byte_count(info: Mapping[str, str], key: str, default: int,
                refuse: Callable[[str, str], ArchcalcError]) -> int:
    """An external-data offset or length: a non-negative decimal integer, `default` when absent."""
    text = info.get(key)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()):
        raise refuse(f"has {key} {text!r}, not a non-negative integer",
                     "re-save the model so that its external data has valid offsets and lengths")
    return int(text)


def _generated(tensor: TensorProto, kind: str, rng: np.random.Generator) -> np.ndarray:
    dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
    shape = tuple(tensor.dims)
    # numpy has no int4 of its own: onnx's (ml_dtypes') is of kind "V", as float8 is.
    if dtype.kind in "iub" or dtype_name(tensor.data_type) in SUB_BYTE_INTEGERS:
        return np.zeros(shape, dtype)  # zeros: valid as indices, counts and quantised weights alike
    return weight_values(tensor.name, shape, kind, "random", rng, dtype)


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


# -- running --------------------------------------------------------------------------------

def verify(graph: Graph, analysis: Analysis, *, profile: bool = False,
           progress: Progress | None = None) -> VerifyReport:
    """Prepare, run and compare; large models go through a temporary external-data file."""
    large = analysis.totals.weight_bytes > EXTERNAL_DATA_ABOVE
    with tempfile.TemporaryDirectory(prefix="archcalc-verify-") as scratch:
        started = time.perf_counter()
        model = model_for(graph, analysis, scratch if large else None, progress)
        prepared = time.perf_counter() - started
        report = run_and_compare(graph, analysis, model, profile=profile, progress=progress,
                                 model_dir=scratch if large else None, scratch_dir=scratch)
    report.seconds = {"prepare": prepared, **report.seconds}
    return report


def run_and_compare(graph: Graph, analysis: Analysis, model: onnx.ModelProto, *, profile: bool = False,
                    progress: Progress | None = None, model_dir: str | None = None,
                    scratch_dir: str | None = None) -> VerifyReport:
    """Run `model` (prepared) once and compare; with `model_dir`, the model is saved there
    (its weights already external in that directory) and the session reads it by path.

    With `profile`, the model then runs again as deployed, with only its own outputs (every
    tensor an output would keep each one in memory of its own to the end of the run, and
    copy each view's data: 0.8 MB element-wise ops ran at 70 GB/s instead of 120 once the
    kept outputs outgrew the cache), and onnxruntime's profiler times each node of that run.
    Its profile goes to `scratch_dir`, not the working directory, when given."""
    import onnxruntime

    report = VerifyReport(model=graph.path, layers_total=len(analysis.layers))
    say = progress or (lambda *_: None)
    is_spec = graph.format != "onnx"
    weight_shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    say("building the onnxruntime session", 0, None)
    started = time.perf_counter()
    # Written before the try: a full disk is not onnxruntime's refusal.
    source = _session_source(model, model_dir, "model.onnx")
    deployed = _session_source(model, model_dir, "deployed.onnx", keep=set(graph.outputs)) if profile else None
    del model  # each session holds its own copy of the weights
    try:
        session = onnxruntime.InferenceSession(source, _session_options(profiling=False),
                                               providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 (onnxruntime raises its own hierarchy)
        _refused(error, graph, report, is_spec, "refused the model",
                 "check the op and opset it names; archcalc analyze still works without running")
        return report
    report.seconds["session"] = time.perf_counter() - started
    feeds = _feeds(session, analysis, graph.path)
    say("running", 0, None)
    started = time.perf_counter()
    names = [o.name for o in session.get_outputs()]
    try:
        values = session.run(names, feeds, _run_options())
    except Exception as error:  # noqa: BLE001
        _refused(error, graph, report, is_spec, "failed while running",
                 "the message names the node; check its input shapes")
        return report
    report.seconds["run"] = time.perf_counter() - started
    del session
    observed = dict(zip(names, values))
    del values
    started = time.perf_counter()
    _compare(graph, analysis, observed, feeds, weight_shapes, report, say)
    report.seconds["compare"] = time.perf_counter() - started
    if deployed is not None:
        del observed
        say("timing the deployed run", 0, None)
        started = time.perf_counter()
        try:
            report.node_times_us = _deployed_node_times(deployed, feeds, scratch_dir)
        except Exception as error:  # noqa: BLE001 (it ran with every output; this is onnxruntime's own failure)
            _refused(error, graph, report, is_spec, "failed while timing the deployed run",
                     "verify without --profile checks the shapes")
            return report
        report.layer_times = _layer_times(analysis, report.node_times_us)
        report.seconds["profile"] = time.perf_counter() - started
    return report


def _session_source(model: onnx.ModelProto, model_dir: str | None, name: str,
                    keep: set[str] | None = None) -> str | bytes:
    """What a session loads: the model saved in `model_dir` (its weights external there) or
    its bytes; with `keep`, only those of its outputs (at least one: a session needs one)."""
    outputs = list(model.graph.output)
    if keep is not None:
        kept = [output for output in outputs if output.name in keep] or outputs[:1]
        del model.graph.output[:]
        model.graph.output.extend(kept)
    try:
        if model_dir is None:
            return model.SerializeToString()
        path = os.path.join(model_dir, name)
        onnx.save(model, path)
        return path
    finally:
        if keep is not None:
            del model.graph.output[:]
            model.graph.output.extend(outputs)


def _session_options(*, profiling: bool, scratch_dir: str | None = None):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4  # fatal only: its errors reach the user as our message
    if not profiling:
        # Prepacking copies every Conv/Gemm/MatMul weight into a second layout: twice the
        # weight memory and seconds of session time (2 GiB dense layer: 4.2 GiB, 5 s) for
        # a faster run, which only --profile's timings need to be realistic.
        options.add_session_config_entry("session.disable_prepacking", "1")
    else:
        options.enable_profiling = True
        if scratch_dir is not None:  # a killed run leaves no onnxruntime_profile_*.json behind
            options.profile_file_prefix = os.path.join(scratch_dir, "onnxruntime_profile")
    return options


def _run_options():
    import onnxruntime

    run_options = onnxruntime.RunOptions()
    run_options.log_severity_level = 4  # no "[E:onnxruntime:...]" line beside our message
    return run_options


def _deployed_node_times(source: str | bytes, feeds: dict[str, np.ndarray],
                         scratch_dir: str | None) -> dict[str, float]:
    """Each node's least kernel time (us) over TIMED_RUNS runs of `source` after a warm-up
    (which pays for allocation and packing). The least, as other work on the machine only
    adds time, and the run after the warm-up may still settle memory: Llama-3.2-1B's first
    layer took 6 ms there and 0.12 ms in the runs after."""
    import onnxruntime

    session = onnxruntime.InferenceSession(source, _session_options(profiling=True, scratch_dir=scratch_dir),
                                           providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    for _ in range(1 + TIMED_RUNS):
        session.run(names, feeds, _run_options())
    return node_times_us(session.end_profiling(), skip_runs=1)


def _feeds(session, analysis: Analysis, path: str) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(0)
    for value in session.get_inputs():
        inferred = analysis.tensors.get(value.name)
        if inferred is None or inferred.shape is None:
            raise VerifyError(f"input '{value.name}' has no inferred shape", where=path,
                              fix=f"give it one with --input-shape {value.name}=D1,D2,...")
        dtype = _NUMPY.get(_ALIASES.get(inferred.dtype, inferred.dtype))
        if dtype is None:
            raise VerifyError(f"input '{value.name}' is {inferred.dtype} ({value.type}); archcalc can generate "
                              "only numeric and bool inputs to run the model", where=path,
                              fix="archcalc analyze works on this model; verify a variant with a numeric input")
        try:
            shape = bind_shape(inferred.shape, analysis.bindings)
        except ShapeError as error:
            raise VerifyError(f"input '{value.name}': {error.message}", where=path, fix=error.fix) from None
        # Integers in {0, 1}: valid as indices into any non-empty axis, as counts and as masks.
        feeds[value.name] = (rng.integers(0, 2, shape) if np.dtype(dtype).kind in "iub"
                             else rng.random(shape)).astype(dtype)
    return feeds


# onnxruntime's words for a disagreement about shapes or types (the graph is inconsistent).
_SHAPE_WORDS = re.compile(r"shape|dimension|dims\b|rank|broadcast|incompatible|mismatch|channel|not equal|"
                          r"does not match|type error", re.IGNORECASE)
_NODE_NAMES = re.compile(r"Node \(([^)]*)\)|Name:'([^']*)'|node with name '([^']*)'|in node \(([^)]*)\)"
                         r"|node named '([^']*)'")


def _refused(error: Exception, graph: Graph, report: VerifyReport, is_spec: bool, what: str, fix: str) -> None:
    """An onnxruntime error as a failed verification (a spec archcalc exported whose shapes
    onnxruntime disputes: archcalc's inference is wrong) or as bad input (exit 2)."""
    message = _message(error)
    culprit = _culprit(message, graph)
    # A missing kernel (NOT_IMPLEMENTED) is the runtime's limit, not archcalc's inference.
    if is_spec and _SHAPE_WORDS.search(message) and "NOT_IMPLEMENTED" not in message:
        report.mismatches.append(Mismatch("onnxruntime", culprit[0] if culprit else "", "",
                                          "a graph with archcalc's shapes runs", f"onnxruntime {what}: {message}"))
        return
    named = f" at node '{culprit[0]}' ({culprit[1]})" if culprit else ""
    raise VerifyError(f"onnxruntime {what}{named}: {message}", where=graph.path, fix=fix)


def _culprit(message: str, graph: Graph) -> tuple[str, str] | None:
    """The (node name, op) an onnxruntime message is about: the node it names, else the
    first node whose op it names (an op without a kernel, a custom op)."""
    ops = {node.name: node.op for node in graph.nodes}
    for match in _NODE_NAMES.finditer(message):
        name = next((g for g in match.groups() if g), "")
        if name in ops:
            return name, ops[name]
    for node in graph.nodes:
        if re.search(rf"(?<![\w.]){re.escape(node.op)}\b", message):
            return node.name, (f"{node.domain}:{node.op}" if node.domain else node.op)
    return None


def _message(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


# -- comparing ------------------------------------------------------------------------------

def _compare(graph: Graph, analysis: Analysis, observed: dict[str, Any], feeds: dict[str, np.ndarray],
             weight_shapes: dict[str, tuple[int, ...]], report: VerifyReport, say: Progress) -> None:
    env = analysis.bindings
    fed = input_symbols(graph)
    nodes = {node.name: node for node in graph.nodes}
    compared: set[str] = set()
    total = len(analysis.layers)
    for index, layer in enumerate(analysis.layers):
        if index % 64 == 0:
            say("comparing", index, total)
        if layer.parent:
            report.skipped.append({"name": layer.name, "op": layer.op,
                                   "reason": f"inside the subgraph of '{layer.parent}', whose tensors onnxruntime "
                                             "does not return"})
            continue
        if not layer.modelled:
            report.skipped.append({"name": layer.name, "op": layer.op,
                                   "reason": f"not modelled: {layer.unmodelled_reason or 'no rule'}"})
            continue
        report.layers_checked += 1
        dependent = False
        for out in layer.outputs:
            if not out.name:
                continue
            compared.add(out.name)
            dependent |= _check_tensor(layer.name, out.name, out.shape, out.dtype, observed, env, fed, report)
        for tensor in layer.inputs:
            dependent |= bool(tensor.shape is not None and shape_symbols(tensor.shape) - fed)
        node = nodes.get(layer.name)
        if node is not None and not dependent:
            _check_costs(layer, node, analysis, {**feeds, **observed}, weight_shapes, report)
    say("comparing", total, total)
    # Node outputs that are not layer outputs (Constant/ConstantOfShape folded into weights).
    producers = {out: node.name for node in graph.nodes for out in node.outputs}
    for name, tensor in analysis.tensors.items():
        if name in compared or name not in observed or tensor.shape is None:
            continue
        _check_tensor(producers.get(name, name), name, tensor.shape, tensor.dtype, observed, env, fed, report)


def _check_tensor(layer: str, name: str, shape, dtype: str, observed: dict[str, Any], env: Mapping[str, int],
                  fed: set[str], report: VerifyReport) -> bool:
    """Compare one tensor; True when its shape holds a data-dependent dim."""
    actual = observed.get(name)
    if actual is None:
        report.mismatches.append(Mismatch("missing", layer, name, "an output", "none"))
        return False
    if not isinstance(actual, np.ndarray):
        report.skipped.append({"name": name, "op": "", "reason": f"a {type(actual).__name__} (sequence or map), "
                                                                "not a tensor"})
        return False
    report.tensors_checked += 1
    dependent = False
    if shape is None:
        return False
    if len(shape) != actual.ndim:
        report.mismatches.append(Mismatch("shape", layer, name, _json_shape(shape, env), list(actual.shape)))
    else:
        wrong = False
        for axis, (dim, size) in enumerate(zip(shape, actual.shape)):
            if shape_symbols((dim,)) - fed:
                dependent = True
                report.data_dependent.append(DataDependent(layer, name, axis, str(dim), int(size)))
            elif bind(dim, env) != size:
                wrong = True
        if wrong:
            report.mismatches.append(Mismatch("shape", layer, name, _json_shape(shape, env), list(actual.shape)))
    expected_dtype = _ALIASES.get(dtype, dtype)
    actual_dtype = _dtype_name(actual.dtype)
    if expected_dtype != actual_dtype:
        report.mismatches.append(Mismatch("dtype", layer, name, expected_dtype, actual_dtype))
    return dependent


def _json_shape(shape, env: Mapping[str, int]) -> list:
    """Bound dims as ints; a dim that cannot be bound stays as its expression."""
    out: list[int | str] = []
    for dim in shape:
        try:
            out.append(bind(dim, env))
        except ShapeError:
            out.append(str(dim))
    return out


def _dtype_name(dtype: np.dtype) -> str:
    return "string" if dtype.kind in "OSU" else dtype.name


def _check_costs(layer: LayerResult, node, analysis: Analysis, observed: dict[str, Any],
                 weight_shapes: dict[str, tuple[int, ...]], report: VerifyReport) -> None:
    """Static MACs against the rule's observed_macs (an independent formula on observed
    shapes); FLOPs (and MACs without a reference) recomputed by the rule on observed shapes."""
    rule = rule_for(node.domain, node.op)
    if rule is None or "scope" in rule.context:
        # If/Loop/Scan: their counts are their bodies', and the body tensors onnxruntime does
        # not return; the rule cannot run again without the enclosing graph (its scope).
        return
    states: list[TensorState | None] = []
    for name in node.inputs:
        if not name:
            states.append(None)
            continue
        array = observed.get(name)
        known = analysis.known_tensors.get(name)
        inferred = analysis.tensors.get(name)
        dtype = inferred.dtype if inferred else "float32"
        if isinstance(array, np.ndarray):
            small_int = array.dtype.kind in "iu" and array.size <= 1024
            value = tuple(array.reshape(-1).tolist()) if small_int else None
            states.append(TensorState(tuple(array.shape), dtype, value))
        elif name in weight_shapes:
            # Weights and constants are not graph outputs: their shapes are the ones onnxruntime ran with.
            states.append(TensorState(weight_shapes[name], dtype, known.value if known is not None else None))
        elif inferred is not None and inferred.shape is not None:
            value = known.value if known is not None else None
            states.append(TensorState(bind_shape(inferred.shape, analysis.bindings), dtype, value))
        else:
            return
    outputs = [tuple(observed[o].shape) if isinstance(observed.get(o), np.ndarray) else None for o in node.outputs]
    checked_macs = False
    if rule.observed_macs is not None and all(s is not None for s in states[:2]) and outputs and outputs[0]:
        # bound by bind_shape above: every dim is an int
        shapes = [None if s is None else cast(tuple[int, ...], tuple(s.shape)) for s in states]
        reference = int(rule.observed_macs(shapes, outputs, dict(layer.attrs)))
        checked_macs = True
        if reference != layer.macs:
            report.mismatches.append(Mismatch("macs", layer.name, "", layer.macs, reference))
    try:
        result = rule(states, dict(layer.attrs), {"n_outputs": len(node.outputs), "node_name": node.name,
                                                  "op": node.op})
    except ArchcalcError as error:
        report.mismatches.append(Mismatch("shape", layer.name, "", "rule accepts observed shapes", str(error)))
        return
    checks = [("flops", layer.flops, result.flops)]
    if not checked_macs:
        checks.insert(0, ("macs", layer.macs, result.macs))
    for kind, static, dynamic in checks:
        try:
            dynamic = bind(dynamic, analysis.bindings)
        except ShapeError:
            continue
        if static != dynamic:
            report.mismatches.append(Mismatch(kind, layer.name, "", static, int(dynamic)))


def _layer_times(analysis: Analysis, node_times_us: Mapping[str, float]) -> list[dict]:
    rows = []
    for layer in analysis.layers:
        micros = node_times_us.get(layer.name)
        if micros is None:
            continue
        rate = layer.macs / micros / 1e3 if micros and layer.macs else None
        rows.append({"name": layer.name, "op": layer.op, "macs": layer.macs, "time_us": micros,
                     "gmac_per_s": None if rate is None else round(rate, 3)})
    return rows
