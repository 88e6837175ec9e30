"""The per-layer roofline: what each layer of an analysis costs on a device.

For each layer: FLOPs (the analysis' count), bytes read (every input once: activations at
the activation dtype, weights at the weight dtype, integer tensors at their own size) and
bytes written (its outputs), arithmetic intensity = FLOPs / bytes, and

    time = max(FLOPs / (peak x efficiency), bytes / (bandwidth x memory efficiency x op's
               bandwidth efficiency)) + epilogue + overhead

with the peak of the matrix units for a layer with MACs (conv, matmul, attention) and of
the vector units otherwise, the op's efficiency at the FLOPs of one of the layer's parts
(RuleResult.parts: a Conv's images x groups; the whole layer for most ops) when the device
file measures it by size (a small matmul reaches less of the peak than a large one, a
depthwise conv on 7x7 planes less than one on 56x56) and its
bandwidth efficiency at the bytes it moves (a Transpose's strided copy streams slower
than an element-wise op), and the cache's bandwidth for a layer that moves no more than
the device's last-level cache holds (when the device file gives one). A layer is
compute-bound when the first term is the larger. The epilogue is the passes the device
file says an op kind makes over its output after its kernel (onnxruntime's CPU 1x1 conv
adds its bias in a second pass), each reading and writing the output: 0 for most ops.
A view (Reshape, Flatten, Squeeze, Unsqueeze, Identity) moves no bytes and launches no
kernel: it costs nothing. Layers run one after another, so the model's latency is the sum.

Pure functions over an Analysis and a Device: no I/O, nothing measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from archcalc.core.dims import bind, prod
from archcalc.core.dtypes import dtype_bytes
from archcalc.core.errors import ArchcalcError, ShapeError
from archcalc.core.results import Analysis, LayerResult, TensorResult
from archcalc.hardware.device import Device
from archcalc.hardware.precisions import PRECISION_SETUPS, WEIGHT_BITS
from archcalc.rules.base import SAVES_VIEW, rule_for

COMPUTE, MEMORY, VIEW, UNKNOWN = "compute", "memory", "view", "?"


@dataclass(frozen=True)
class Setup:
    """How the model is deployed: compute dtype and the bits of each float tensor."""

    precision: str
    compute_dtype: str
    activation_bits: int
    weight_bits: int
    weight_dtype: str

    def to_json(self) -> dict[str, Any]:
        return {"precision": self.precision, "compute_dtype": self.compute_dtype,
                "activation_bits": self.activation_bits, "weight_bits": self.weight_bits,
                "weight_dtype": self.weight_dtype}


def setup_for(device: Device, precision: str, weight_dtype: str | None = None) -> Setup:
    if precision not in PRECISION_SETUPS:
        raise ArchcalcError(f"unknown precision '{precision}'", where="--precision",
                            fix="use one of " + ", ".join(PRECISION_SETUPS))
    compute, activation_bits, weight_bits = PRECISION_SETUPS[precision]
    if compute not in device.peak_flops:
        raise ArchcalcError(f"device {device.name} ({device.path}) gives no {compute} peak", where="--precision",
                            fix=f"use a precision it has: {', '.join(available_precisions(device))} "
                                "(or add the peak to the device file)")
    if weight_dtype is not None:
        if weight_dtype not in WEIGHT_BITS:
            raise ArchcalcError(f"unknown weight dtype '{weight_dtype}'", where="--weight-dtype",
                                fix="use one of " + ", ".join(WEIGHT_BITS))
        weight_bits = WEIGHT_BITS[weight_dtype]
    named = weight_dtype or {32: "fp32", 16: "fp16" if compute != "bf16" else "bf16", 8: compute}[weight_bits]
    return Setup(precision, compute, activation_bits, weight_bits, named)


def available_precisions(device: Device) -> list[str]:
    return [name for name, (compute, _, _) in PRECISION_SETUPS.items() if compute in device.peak_flops]


@dataclass(frozen=True)
class LayerCost:
    name: str
    op: str
    flops: int
    bytes_read: int
    bytes_written: int
    peak_flops: float  # FLOP/s the layer's compute runs at (peak x efficiency)
    compute_s: float
    memory_s: float
    overhead_s: float
    bound: str  # COMPUTE, MEMORY, VIEW (costs nothing) or UNKNOWN (not modelled)
    parent: str = ""  # inside another layer's subgraph: counted in that layer, not in totals
    epilogue_s: float = 0.0  # the device's passes over the output after the kernel (an unfused bias)

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written

    @property
    def intensity(self) -> float | None:
        """FLOPs per byte moved; None when nothing moves."""
        return self.flops / self.bytes if self.bytes else None

    @property
    def time_s(self) -> float | None:
        if self.bound == UNKNOWN:
            return None
        return max(self.compute_s, self.memory_s) + self.epilogue_s + self.overhead_s

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "op": self.op, "flops": self.flops, "bytes_read": self.bytes_read,
                "bytes_written": self.bytes_written, "intensity": self.intensity, "bound": self.bound,
                "compute_s": self.compute_s, "memory_s": self.memory_s, "epilogue_s": self.epilogue_s,
                "overhead_s": self.overhead_s, "time_s": self.time_s}


@dataclass(frozen=True)
class Roofline:
    device: Device
    setup: Setup
    batch: int
    layers: tuple[LayerCost, ...]
    weight_bytes: int  # every param and buffer at the deployment's dtypes
    peak_activation_bytes: int  # the analysis' inference peak, scaled to the activation dtype

    @property
    def counted(self) -> list[LayerCost]:
        return [layer for layer in self.layers if not layer.parent]

    @property
    def latency_s(self) -> float:
        """Sum of the modelled top-level layers' times (a lower bound when `partial`)."""
        return sum(layer.time_s or 0.0 for layer in self.counted)

    @property
    def partial(self) -> bool:
        return any(layer.bound == UNKNOWN for layer in self.counted)

    @property
    def throughput(self) -> float:
        """Samples per second at this batch."""
        return self.batch / self.latency_s if self.latency_s else 0.0

    @property
    def inference_bytes(self) -> int:
        return self.weight_bytes + self.peak_activation_bytes

    def share_by_op(self) -> list[tuple[str, float, float]]:
        """(op, seconds, fraction of the latency) per op, largest first."""
        by_op: dict[str, float] = {}
        for layer in self.counted:
            by_op[layer.op] = by_op.get(layer.op, 0.0) + (layer.time_s or 0.0)
        total = self.latency_s or 1.0
        return sorted(((op, t, t / total) for op, t in by_op.items()), key=lambda item: (-item[1], item[0]))

    def bound_counts(self) -> dict[str, int]:
        counts = {COMPUTE: 0, MEMORY: 0, VIEW: 0, UNKNOWN: 0}
        for layer in self.counted:
            counts[layer.bound] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        """As ``analyze --device --format json``'s ``roofline`` object (the Python API's name)."""
        return self.to_json()

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device.name, "device_title": self.device.title, "device_path": self.device.path,
            **self.setup.to_json(), "batch": self.batch,
            "latency_s": self.latency_s, "throughput_per_s": self.throughput, "partial": self.partial,
            "weight_bytes": self.weight_bytes, "peak_activation_bytes": self.peak_activation_bytes,
            "inference_memory_bytes": self.inference_bytes, "device_memory_bytes": self.device.memory_bytes,
            "inference_fits": self.inference_bytes <= self.device.memory_bytes,
            "bound_counts": self.bound_counts(),
            "share_by_op": [{"op": op, "time_s": t, "fraction": f} for op, t, f in self.share_by_op()],
            "layers": [layer.to_json() for layer in self.layers],
        }


def tensor_bytes(tensor: TensorResult, env: Mapping[str, int], bits: int) -> int:
    """Bytes of a tensor deployed with `bits` per float element; integer and boolean tensors
    keep their own size (indices, shapes, already-quantised weights)."""
    if tensor.shape is None:
        return 0
    elements = bind(prod(tensor.shape), env)
    if tensor.dtype.startswith(("float", "bfloat")):
        return -(-elements * bits // 8)
    return elements * dtype_bytes(tensor.dtype)


def layer_kind(layer: LayerResult) -> str:
    """The key of the layer's efficiency in a device file: its op, or `Op.variant` when its
    rule names a form of the op that runs at another speed (`Conv.depthwise`)."""
    return f"{layer.op}.{layer.variant}" if layer.variant else layer.op


def layer_cost(layer: LayerResult, device: Device, setup: Setup, weights: frozenset[str], buffers: frozenset[str],
               env: Mapping[str, int]) -> LayerCost:
    """One layer on the device (see the module's docstring)."""
    rule = rule_for(layer.domain, layer.op)
    if rule is not None and rule.saves == SAVES_VIEW:
        return LayerCost(layer.name, layer.op, layer.flops, 0, 0, 0.0, 0.0, 0.0, 0.0, VIEW, layer.parent)
    try:
        seen: set[str] = set()
        read = 0
        picked = rule.reads_picked if rule is not None else ()
        for index, tensor in enumerate(layer.inputs):
            if not tensor.name or tensor.name in seen:
                continue  # one read of a tensor a layer takes twice (x * x)
            seen.add(tensor.name)
            is_weight = tensor.name in weights and tensor.name not in buffers
            bits = setup.weight_bits if is_weight else setup.activation_bits
            size = tensor_bytes(tensor, env, bits)
            if index in picked and layer.outputs:  # an embedding lookup reads its rows, not the table
                size = min(size, tensor_bytes(tensor._replace(shape=layer.outputs[0].shape), env, bits))
            read += size
        written = sum(tensor_bytes(t, env, setup.activation_bits) for t in layer.outputs)
        parts = max(bind(layer.parts, env), 1)
    except ShapeError:
        read = written = 0
        parts = 1
        modelled = False
    else:
        modelled = layer.modelled
    peak = device.peak(setup.compute_dtype) if layer.macs else device.vector_peak(setup.compute_dtype)
    kind = layer_kind(layer)
    peak *= device.efficiency_of(kind, layer.flops / parts)
    compute_s = layer.flops / peak
    moved = read + written
    memory_s = moved / (device.bandwidth_for(moved) * device.bandwidth_efficiency_of(kind, moved))
    bound = UNKNOWN if not modelled else COMPUTE if compute_s >= memory_s and layer.flops else MEMORY
    # Each pass after the kernel reads and writes the output once more, serially.
    passes = device.output_passes_of(kind)
    epilogue_s = passes * 2 * written / device.bandwidth_for(2 * written) if passes and written else 0.0
    return LayerCost(layer.name, layer.op, layer.flops, read, written, peak, compute_s, memory_s,
                     device.overhead_s.value, bound, layer.parent, epilogue_s)


def roofline(analysis: Analysis, device: Device, setup: Setup) -> Roofline:
    """Every layer of `analysis` on `device`, deployed as `setup` says."""
    env = {"batch": 1, **analysis.bindings}
    weights = frozenset(analysis.param_tensors)
    buffers = frozenset(analysis.buffer_tensors)
    layers = tuple(layer_cost(layer, device, setup, weights, buffers, env) for layer in analysis.layers)
    weight_bytes = 0
    for name in analysis.param_tensors:
        info = analysis.known_tensors.get(name)
        shape = getattr(info, "shape", None)
        if not isinstance(shape, tuple):
            continue
        bits = setup.activation_bits if name in buffers else setup.weight_bits
        try:
            weight_bytes += tensor_bytes(TensorResult(name, shape, getattr(info, "dtype", "float32")), env, bits)
        except ShapeError:  # a weight sized by an unbound dim: its layers are not modelled either
            continue
    # The peak set of live activations, scaled as the layers' outputs scale at this dtype.
    top = [layer for layer in analysis.layers if not layer.parent]
    as_analysed = sum(layer.activation_bytes for layer in top)
    deployed = 0
    for layer in top:
        try:
            deployed += sum(tensor_bytes(t, env, setup.activation_bits) for t in layer.outputs)
        except ShapeError:
            deployed += layer.activation_bytes
    peak = analysis.totals.peak_activation_bytes * deployed // as_analysed if as_analysed else 0
    return Roofline(device, setup, env.get("batch", 1), layers, weight_bytes, peak)
