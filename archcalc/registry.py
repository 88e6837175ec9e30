"""The op registry: one rule per op name, each a pure function.

A rule receives the layer's input tensors (shape, dtype and, for small integer
constants, their values) plus the layer's attributes as keyword arguments whose Python
defaults are the ONNX defaults. It returns one :class:`RuleResult`: output shapes,
which inputs are learned weights or buffers, MACs, FLOPs, how each spatial axis is
windowed (for the receptive field) and a lazily built explanation.

Rules raise :class:`~archcalc.errors.ShapeError` without context; the engine adds the
file, layer and line.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from archcalc.dims import Dim

Shape = tuple[Dim, ...]


@dataclass(frozen=True, slots=True)
class TensorState:
    """What a rule may know about an input: its shape, dtype and (small constants) value."""

    shape: Shape
    dtype: str = "float32"
    value: tuple | None = None


@dataclass(frozen=True, slots=True)
class Output:
    """One output of a rule; dtype None means the dtype of the layer's first input."""

    shape: Shape
    dtype: str | None = None
    value: tuple | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """How one spatial axis is windowed: the receptive-field step of a layer."""

    kernel: int
    stride: int
    pad_begin: int
    dilation: int = 1
    transposed: bool = False


# Receptive-field behaviour besides per-axis windows.
POINTWISE = "pointwise"  # each output element sees the same positions as one input element
GLOBAL = "global"  # each output element sees the whole input


@dataclass(frozen=True, slots=True)
class RuleResult:
    outputs: tuple[Output, ...]
    macs: Dim = 0
    flops: Dim = 0
    weights: tuple[int, ...] = ()
    buffers: tuple[int, ...] = ()
    receptive: str | tuple[Window, ...] = POINTWISE
    explain: Callable[[], list[str]] | None = None


RuleFn = Callable[..., RuleResult]


@dataclass(frozen=True)
class Rule:
    op: str
    fn: RuleFn
    attributes: frozenset[str]
    summary: str

    def __call__(self, inputs: Sequence[TensorState], attrs: dict[str, Any]) -> RuleResult:
        # Attributes a rule does not model (e.g. ONNX training-mode flags) do not change
        # shapes or counts; dropping them keeps every rule's signature to what it uses.
        known = {k: v for k, v in attrs.items() if k in self.attributes}
        return self.fn(inputs, **known)


RULES: dict[str, Rule] = {}


def rule(*ops: str) -> Callable[[RuleFn], RuleFn]:
    """Register `fn` as the rule of each op in `ops` (a family sharing one formula)."""

    def register(fn: RuleFn) -> RuleFn:
        params = inspect.signature(fn).parameters
        attributes = frozenset(name for name, p in params.items() if p.kind is p.KEYWORD_ONLY)
        summary = (inspect.getdoc(fn) or "").splitlines()[0] if fn.__doc__ else ""
        for op in ops:
            if op in RULES:
                raise ValueError(f"op {op!r} already has a rule: {RULES[op].fn.__qualname__}")
            RULES[op] = Rule(op, fn, attributes, summary)
        return fn

    return register


def get_rule(op: str) -> Rule | None:
    if not RULES:
        import archcalc.rules  # noqa: F401  (registers every family)
    return RULES.get(op)


def all_rules() -> dict[str, Rule]:
    get_rule("")
    return dict(RULES)
