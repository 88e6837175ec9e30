"""Holding rules to their `reads_values` declaration (see archcalc.rules.base.Rule).

The engine hands a rule that declares which input values it reads only those values, and
keys its result cache on what the rule sees. A rule that reads a value it does not
declare would so see None where a value exists (a lost propagation), and, worse, the
declaration would be a lie the cache relies on. `recorded_calls` records every rule call an
analysis makes; `undeclared_reads` gives each call's undeclared inputs a value and reports
the calls whose result changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from archcalc.core.dims import is_static_shape, prod
from archcalc.core.dtypes import is_integral
from archcalc.rules.base import Rule, RuleResult, TensorState

Call = tuple[Rule, list[TensorState | None], dict[str, Any], dict[str, Any] | None]

# Values are given to inputs of at most this many elements: what the ONNX reader keeps.
_MAX_ELEMENTS = 16


@contextmanager
def recorded_calls(per_op: int = 4) -> Iterator[list[Call]]:
    """Every call of a rule with a `reads_values` declaration in the block, up to `per_op`
    distinct ones per op."""
    calls: list[Call] = []
    seen: dict[str, int] = {}
    original = Rule.__call__

    def recording(self: Rule, inputs, attrs, context=None) -> RuleResult:
        if self.reads_values is not None and seen.get(self.op, 0) < per_op:
            seen[self.op] = seen.get(self.op, 0) + 1
            calls.append((self, list(inputs), dict(attrs), dict(context) if context else None))
        return original(self, inputs, attrs, context)

    Rule.__call__ = recording  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        Rule.__call__ = original  # type: ignore[method-assign]


def _filled(state: TensorState) -> TensorState:
    """`state` with a value no front end would guess: distinct, non-zero, of its dtype."""
    count = prod(state.shape)
    assert isinstance(count, int)
    values = tuple(range(2, count + 2)) if is_integral(state.dtype) else tuple(0.5 + i for i in range(count))
    return state._replace(value=values)


def _facts(result: RuleResult) -> tuple[Any, ...]:
    """Everything of a result but its explanation (a closure, never equal to another)."""
    return (result.outputs, result.macs, result.flops, result.weights, result.buffers, result.integer_weights,
            result.receptive, result.backward_state_bytes, result.warnings, result.packed_weights, result.repeats)


def undeclared_reads(calls: list[Call]) -> list[str]:
    """For each call, each input the rule does not declare reading, small enough to carry a
    value: the calls whose result changes (or that fail) when that input has one."""
    found = []
    for rule, inputs, attrs, context in calls:
        assert rule.reads_values is not None
        plain = rule.visible(inputs)
        expected = _facts(original_call(rule, plain, attrs, context))
        for index, state in enumerate(plain):
            if index in rule.reads_values or state is None or not is_static_shape(state.shape) \
                    or prod(state.shape) > _MAX_ELEMENTS:
                continue
            given = list(plain)
            given[index] = _filled(state)
            try:
                actual = _facts(original_call(rule, given, attrs, context))
            except Exception as error:  # noqa: BLE001  reading the value made it fail: reported
                actual = (repr(error),)
            if actual != expected:
                found.append(f"{rule.op}: input {index} {list(state.shape)} changes the result when it has a value "
                             f"(declared reads_values={rule.reads_values})")
    return found


def original_call(rule: Rule, inputs, attrs, context) -> RuleResult:
    """The rule called as the engine calls it, bypassing a recording wrapper."""
    if rule.context and context:
        return rule.fn(inputs, **{k: v for k, v in attrs.items() if k in rule.attributes},
                       **{k: v for k, v in context.items() if k in rule.context})
    return rule.fn(inputs, **{k: v for k, v in attrs.items() if k in rule.attributes})
