"""The one result type: per-layer facts and totals, handed frozen to every output."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple

from archcalc.core.dims import Dim, dim_to_json


@dataclass(slots=True)
class AxisField:
    """Receptive field along one spatial axis, in input pixels: `size` pixels wide,
    neighbouring outputs `jump` pixels apart, the first centred on pixel `start`."""

    size: int | Fraction
    jump: int | Fraction
    start: int | Fraction

    def to_json(self) -> dict[str, float | int]:
        return {"size": _number(self.size), "jump": _number(self.jump), "start": _number(self.start)}


ReceptiveField = tuple[AxisField, ...] | str | None  # str: "global"; None: no spatial axes


def _number(value: int | Fraction) -> int | float:
    if type(value) is int:
        return value
    return int(value) if value.denominator == 1 else float(value)


@functools.lru_cache(maxsize=4096)
def shape_to_json(shape: tuple[Dim, ...]) -> tuple[int | str, ...]:
    """A shape for JSON (symbolic dims as strings); a tuple, so the cached value is shared
    safely: a big model has thousands of tensors but few distinct shapes."""
    return tuple(dim_to_json(d) for d in shape)


class TensorResult(NamedTuple):
    """A tensor as reports list it. A named tuple, not a dataclass: one is made for every
    tensor of the graph, in C this way."""

    name: str
    shape: tuple[Dim, ...] | None  # None: unknown (produced by an op without a rule)
    dtype: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": None if self.shape is None else shape_to_json(self.shape),
                "dtype": self.dtype}


@dataclass(slots=True)
class LayerResult:
    name: str
    op: str
    inputs: tuple[TensorResult, ...]
    outputs: tuple[TensorResult, ...]
    params: int
    trainable_params: int
    buffers: int
    macs: int
    flops: int
    activation_bytes: int
    receptive_field: ReceptiveField
    modelled: bool = True
    unmodelled_reason: str = ""  # why not, for an unmodelled layer (no rule, an unknown input, ...)
    backward_state_bytes: int = 0
    block: str = ""
    source: str | None = None
    # A layer inside another layer's subgraph (If/Loop/Scan body): the name of the layer
    # whose counts already include this one's. Listed for detail; totals leave it out.
    parent: str = ""
    domain: str = ""  # the op's domain ("" for ONNX's default), so its rule is found again
    repeats: int | None = None  # runs of the layer's body, when known (see RuleResult.repeats)
    integer_macs: int = 0  # of macs, those in integer arithmetic (see RuleResult.integer_macs)
    variant: str = ""  # a form of the op its rule names (see RuleResult.variant)
    parts: Dim = 1  # equal parts its kernel computes one by one (see RuleResult.parts)
    # `macs` and `flops` before the dims were bound: polynomials in the graph's symbolic dims
    # (the rule's own counts, kept by reference; see archcalc.engine.symbolic).
    macs_formula: Dim = 0
    flops_formula: Dim = 0
    attrs: dict[str, Any] = field(default_factory=dict, compare=False)
    explain: Callable[[], list[str]] | None = field(default=None, compare=False)

    def to_json(self, encoded: dict[int, Any] | None = None) -> dict[str, Any]:
        """The layer for JSON. `encoded` memoises the JSON of tensors and receptive fields by
        object (Analysis.to_json passes one): a tensor is listed by its producer and by each
        consumer, and a field is shared by a run of pointwise layers."""
        if encoded is None:
            encoded = {}
        field_json: object = self.receptive_field
        if isinstance(self.receptive_field, tuple):
            field_json = encoded.get(id(self.receptive_field))
            if field_json is None:
                field_json = encoded[id(self.receptive_field)] = [a.to_json() for a in self.receptive_field]
        known = encoded.get  # a tensor's JSON (a non-empty dict) once made, else None: then made here
        return {
            "name": self.name,
            "op": self.op,
            "inputs": [known(id(t)) or _tensor_json(t, encoded) for t in self.inputs],
            "outputs": [known(id(t)) or _tensor_json(t, encoded) for t in self.outputs],
            "params": self.params,
            "trainable_params": self.trainable_params,
            "buffers": self.buffers,
            "macs": self.macs,
            "integer_macs": self.integer_macs,
            "flops": self.flops,
            "activation_bytes": self.activation_bytes,
            "receptive_field": field_json,
            "modelled": self.modelled,
            "block": self.block,
            "parent": self.parent,
        }


def _tensor_json(tensor: TensorResult, encoded: dict[int, Any]) -> dict[str, Any]:
    """The JSON of a tensor not yet in `encoded`, recorded there by id (a tensor's id is only
    ever given its JSON)."""
    shape = tensor.shape
    result = encoded[id(tensor)] = {"name": tensor.name, "shape": None if shape is None else shape_to_json(shape),
                                    "dtype": tensor.dtype}
    return result


@dataclass(frozen=True, slots=True)
class Totals:
    params: int
    trainable_params: int
    frozen_params: int
    buffers: int
    macs: int
    flops: int
    activation_bytes: int
    peak_activation_bytes: int
    weight_bytes: int
    input_bytes: int
    partial: bool  # some layer had no rule, so MACs/FLOPs are lower bounds
    # Of macs, those in integer arithmetic (quantised ops; see RuleResult.integer_macs); the rest are float.
    integer_macs: int = 0
    # Stored bytes of the quantisation scales and zero points the layers read (not params,
    # not in weight_bytes; see RuleResult.quantization).
    quantization_bytes: int = 0

    @property
    def non_trainable_params(self) -> int:
        """Keras' figure: frozen params plus buffers (BatchNorm running statistics)."""
        return self.frozen_params + self.buffers

    def to_json(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "frozen_params": self.frozen_params,
            "buffers": self.buffers,
            "macs": self.macs,
            "integer_macs": self.integer_macs,
            "flops": self.flops,
            "activation_bytes": self.activation_bytes,
            "peak_activation_bytes": self.peak_activation_bytes,
            "weight_bytes": self.weight_bytes,
            "quantization_bytes": self.quantization_bytes,
            "input_bytes": self.input_bytes,
            "partial": self.partial,
        }


@dataclass(frozen=True)
class Analysis:
    path: str
    name: str
    layers: tuple[LayerResult, ...]
    tensors: dict[str, TensorResult]
    totals: Totals
    warnings: tuple[str, ...]
    bindings: dict[str, int]
    # Inputs, weights and constants (TensorInfo) with every spec-deferred shape and value resolved:
    # Any, as TensorInfo's type cannot say that nothing is Deferred any more.
    known_tensors: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # The weights and buffers counted as params or buffers, each once, by name (sorted).
    param_tensors: tuple[str, ...] = field(default=(), compare=False, repr=False)
    # Of those, the buffers (state that is not learned: BatchNorm's running statistics).
    buffer_tensors: tuple[str, ...] = field(default=(), compare=False, repr=False)
    # Live activation bytes just after each top-level layer (parent "") has run, in order, each
    # tensor freed after its last consumer: the curve whose top is totals.peak_activation_bytes.
    live_bytes: tuple[int, ...] = field(default=(), compare=False, repr=False)

    def layer(self, name: str) -> LayerResult | None:
        return next((layer for layer in self.layers if layer.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types; a tensor's (or field's) JSON object may appear in several places
        (the same dict): treat the result as read-only."""
        encoded: dict[int, Any] = {}  # see LayerResult.to_json; keyed by id() of objects self keeps alive
        return {
            "model": self.name,
            "path": self.path,
            "bindings": self.bindings,
            "totals": self.totals.to_json(),
            "layers": [layer.to_json(encoded) for layer in self.layers],
            "tensors": {name: None if shape is None else shape_to_json(shape)
                        for name, (_, shape, _) in self.tensors.items()},
            "warnings": list(self.warnings),
        }
