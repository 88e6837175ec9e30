"""Budgets for CI: parse a budget file, and check an :class:`~archcalc.core.results.Analysis` against it.

A budget names limits on what a model may cost, for the whole model (``total``) and per
layer (``layers`` entries, chosen by a glob on the layer name and/or by op). Limits under
``warn`` warn instead of failing. Every limit kind is one entry of :data:`METRICS`; adding a
kind (training memory, say) is adding one entry there.

Quantities are written with units: counts with K, M, G, T (powers of 1000), bytes with
KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024). Limits are exact
integers, so ``actual <= limit`` never suffers from float rounding.

Nothing here prints; :mod:`archcalc.report.check` renders the results.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from archcalc.core.errors import ArchcalcError
from archcalc.core.results import Analysis, LayerResult
from archcalc.core.units import BYTES, COUNT, TIME, QuantityError, parse_quantity, unit_hint
from archcalc.engine.setup import OPTIMIZER_STATES, PRECISIONS
from archcalc.hardware.device import Device, load_device
from archcalc.hardware.precisions import PRECISION_SETUPS, WEIGHT_BITS
from archcalc.hardware.roofline import Setup, setup_for
from archcalc.readers.yaml_lines import load_yaml, read_text

FAIL = "fail"
WARN = "warn"
PASS = "pass"
LEVELS = (FAIL, WARN, PASS)



INT64_MAX = 2**63 - 1


class BudgetError(ArchcalcError):
    """A budget file that cannot be read as a budget."""


# ---------------------------------------------------------------------------------------------
# Limit kinds


def _ns(seconds: float) -> int:
    """Whole nanoseconds, rounded up: a limit of exactly the estimate passes only when it is met."""
    return -int(-seconds * 1e9 // 1)


def _no_total(analysis: Analysis) -> int:
    raise AssertionError("a training metric is read off the training step")


def _kv_cache(analysis: Analysis) -> int:
    """A decoder's KV cache at the analysis' bindings: the sequence dim's value is the context
    (the budget's `dims: {seq: 2048}`), its batch the batch; elements in the keys' dtype."""
    from archcalc.engine.kv import kv_cache

    cache = kv_cache(analysis)
    if cache is None:
        raise BudgetError("limit `kv_cache`: the model is no decoder (no causal Attention layer, no past key/value "
                          "input)", where=analysis.path, fix="check kv_cache on decoders only")
    if cache.seq is None or cache.seq not in analysis.bindings:
        raise BudgetError("limit `kv_cache`: the model's sequence length is not a symbolic dim, so no context is "
                          "bound", where=analysis.path,
                          fix="feed the tokens at a symbolic length (--input-shape input_ids=batch,seq) and bind "
                              "it in the budget: `dims: {seq: 2048}`")
    return cache.bytes_at(analysis.bindings[cache.seq], analysis.bindings.get("batch", 1))


@dataclass(frozen=True)
class Metric:
    """One kind of limit: how to read it off a whole analysis and, where it means something
    for one layer, off a layer. `layer` None: a whole-model limit only."""

    name: str
    unit: str  # COUNT, BYTES or TIME (nanoseconds)
    label: str  # for messages: "MACs", "activation memory"
    total: Callable[[Analysis], int]
    layer: Callable[[LayerResult], int] | None = None
    # False: unmodelled ops make the count a lower bound (everything but the layer count).
    exact_when_partial: bool = False
    # Read off the training step (archcalc.engine.training.TrainingAnalysis) instead of `total`.
    training: Callable[[Any], int] | None = None
    # Read off the roofline on the budget's `device:` (archcalc.hardware.roofline.Roofline).
    roofline: Callable[[Any], int] | None = None
    # Per layer, off that roofline's cost of the layer (archcalc.hardware.roofline.LayerCost).
    roofline_layer: Callable[[Any], int] | None = None


METRICS: dict[str, Metric] = {metric.name: metric for metric in (
    Metric("params", COUNT, "params", lambda a: a.totals.params, lambda x: x.params),
    Metric("trainable_params", COUNT, "trainable params", lambda a: a.totals.trainable_params,
           lambda x: x.trainable_params),
    Metric("macs", COUNT, "MACs", lambda a: a.totals.macs, lambda x: x.macs),
    Metric("flops", COUNT, "FLOPs", lambda a: a.totals.flops, lambda x: x.flops),
    Metric("activation_memory", BYTES, "activation memory", lambda a: a.totals.activation_bytes,
           lambda x: x.activation_bytes),
    Metric("peak_activation_memory", BYTES, "peak activation memory", lambda a: a.totals.peak_activation_bytes),
    Metric("weight_memory", BYTES, "weight memory", lambda a: a.totals.weight_bytes),
    # A decoder's cache at the budget's binding of the sequence dim (the context), see _kv_cache.
    Metric("kv_cache", BYTES, "KV cache", _kv_cache),
    Metric("layers", COUNT, "layers", lambda a: len(a.layers), exact_when_partial=True),
    # One training step (see archcalc.engine.training), with the budget's `training:` optimizer and
    # precision, or check's --optimizer and --precision.
    Metric("training_memory", BYTES, "training memory", _no_total, training=lambda t: t.totals.memory_bytes),
    Metric("training_macs", COUNT, "training-step MACs", _no_total, training=lambda t: t.totals.step_macs),
    # The estimated latency on the budget's `device:` (archcalc.hardware.roofline), in nanoseconds,
    # rounded up so that a limit of exactly the estimate passes only when it is met.
    # Per layer (`layers: [{match: "*", latency: 200us}]`): the layer's estimated time, rounded up alike.
    Metric("latency", TIME, "estimated latency", _no_total, roofline=lambda r: _ns(r.latency_s),
           roofline_layer=lambda cost: _ns(cost.time_s or 0.0)),
)}



def needs_training(budget: Budget) -> bool:
    return any(METRICS[limit.metric].training is not None for limit in budget.limits)


def needs_device(budget: Budget) -> bool:
    return any(METRICS[limit.metric].roofline is not None for limit in budget.limits)


# ---------------------------------------------------------------------------------------------
# The budget


@dataclass(frozen=True)
class LayerSelector:
    """Which layers a `layers` entry limits: names matching any glob in `match` (fnmatch, case
    sensitive) and ops matching any in `op`; an omitted key matches every layer."""

    match: tuple[str, ...] = ()
    op: tuple[str, ...] = ()

    def selects(self, layer: LayerResult) -> bool:
        return ((not self.match or any(fnmatchcase(layer.name, glob) for glob in self.match))
                and (not self.op or any(fnmatchcase(layer.op, op) for op in self.op)))

    def describe(self) -> str:
        parts = []
        if self.match:
            parts.append("match " + ", ".join(f"'{glob}'" for glob in self.match))
        if self.op:
            parts.append("op " + ", ".join(self.op))
        return "; ".join(parts)


@dataclass(frozen=True)
class Limit:
    metric: str  # a key of METRICS
    value: int
    level: str  # FAIL or WARN: what exceeding it means
    selector: LayerSelector | None  # None: the whole model
    entry: str  # the budget entry it belongs to: "total", "layers[0]", "warn.total", "warn.layers[1]"
    rule: str  # that entry described for messages: "total", "layers[0] (match 'layer4.*')"
    where: str  # budget file:line of the limit

    @property
    def per_layer(self) -> bool:
        return self.selector is not None


# The training step a budget's training limits are counted for, when neither the budget's
# `training:` nor the command line names one (as `archcalc analyze --training`).
DEFAULT_OPTIMIZER = "adam"
DEFAULT_PRECISION = "fp32"


@dataclass(frozen=True)
class Budget:
    path: str
    limits: tuple[Limit, ...]
    batch: int | None = None
    dims: Mapping[str, int] = field(default_factory=dict)
    optimizer: str | None = None  # `training: {optimizer: ...}`; None: not pinned
    precision: str | None = None  # `training: {precision: ...}`; None: not pinned
    # `device: t4` or `device: {name: t4, precision: fp16, weight_dtype: int8}`: where latency is estimated.
    device: Device | None = None
    device_setup: Setup | None = None

    def bindings(self, batch: int | None = None, dims: Mapping[str, int] | None = None) -> dict[str, int]:
        """Symbolic dims to count with: the budget's, overridden by the command line's."""
        result = dict(self.dims)
        if self.batch is not None:
            result["batch"] = self.batch
        result.update(dims or {})
        if batch is not None:
            result["batch"] = batch
        return result

    def training_setup(self, optimizer: str | None = None, precision: str | None = None) -> tuple[str, str]:
        """Optimizer and precision of the training step: the command line's, else the budget's
        `training:`, else adam in fp32."""
        return (optimizer or self.optimizer or DEFAULT_OPTIMIZER, precision or self.precision or DEFAULT_PRECISION)


TOP_KEYS = ("batch", "dims", "training", "device", "total", "layers", "warn")
DEVICE_KEYS = ("name", "precision", "weight_dtype")
WARN_KEYS = ("total", "layers")
SELECTOR_KEYS = ("match", "op")
TRAINING_KEYS = ("optimizer", "precision")


def load_budget(path: str) -> Budget:
    """Read and validate a budget file; any problem is a :class:`BudgetError` at file:line."""
    text = read_text(path, BudgetError, "budget file", fix="pass the budget's YAML file to --budget")
    return parse_budget(text, path)


def parse_budget(text: str, path: str = "<budget>") -> Budget:
    try:
        data = load_yaml(text, path)
    except ArchcalcError as error:  # YAML syntax, duplicate keys ("line 3: key 'x' appears twice")
        line, _, rest = error.message.partition(": ")
        if line.startswith("line ") and line[5:].isdigit() and error.where == path:
            raise BudgetError(rest, where=f"{path}:{line[5:]}", fix=error.fix) from None
        raise BudgetError(error.message, where=error.where or path,
                          fix="check indentation, colons and brackets on that line"
                          if "YAML" in error.message else error.fix) from None
    return _Parser(path).budget(data)


def _suggest(key: Any, allowed: Sequence[str]) -> str:
    hint = difflib.get_close_matches(str(key), allowed, n=1)
    return f"did you mean '{hint[0]}'?" if hint else "allowed: " + ", ".join(allowed)


class _Parser:
    def __init__(self, path: str):
        self.path = path

    def at(self, line: int | None) -> str:
        return f"{self.path}:{line}" if line else self.path

    def error(self, message: str, line: int | None, fix: str) -> BudgetError:
        return BudgetError(message, where=self.at(line), fix=fix)

    def mapping(self, value: Any, what: str, line: int | None, example: str) -> Mapping:
        if not isinstance(value, dict):
            raise self.error(f"{what} must be a mapping, not {_describe(value)}", line, f"write it as {example}")
        return value

    def budget(self, data: Any) -> Budget:
        if data is None:
            raise self.error("the budget file is empty", 1, "add limits, e.g. `total: {params: 30M}`")
        top = self.mapping(data, "a budget", getattr(data, "line", 1), "`total: {params: 30M, macs: 5G}`")
        self.known_keys(top, TOP_KEYS, "the budget")
        limits: list[Limit] = []
        limits += self.section(top, FAIL, "")
        if "warn" in top:
            warn = self.mapping(top["warn"], "`warn`", _line(top, "warn"), "`warn: {total: {params: 25M}}`")
            self.known_keys(warn, WARN_KEYS, "`warn`")
            limits += self.section(warn, WARN, "warn.")
        if not limits:
            raise self.error("the budget sets no limits", getattr(top, "line", 1),
                             "add `total:` or `layers:` limits, e.g. `total: {params: 30M}`")
        device, setup = self.device(top)
        if device is None:
            for limit in limits:
                if METRICS[limit.metric].roofline is not None:
                    raise BudgetError(f"limit `{limit.metric}` is estimated on a device, and the budget names none",
                                      where=limit.where, fix="add `device: t4` (see `archcalc devices`) or "
                                                             "`device: {name: t4, precision: fp16}` at the top")
        return Budget(self.path, tuple(limits), self.batch(top), self.dims(top), *self.training(top), device, setup)

    def device(self, top: Mapping) -> tuple[Device | None, Setup | None]:
        """`device: t4`, or `device: {name: t4, precision: fp16, weight_dtype: int8}`; a device file's
        path is taken from the budget's folder."""
        if "device" not in top:
            return None, None
        value, line = top["device"], _line(top, "device")
        example = "`device: t4` or `device: {name: t4, precision: fp16}`"
        entry = {"name": value} if isinstance(value, str) else self.mapping(value, "`device`", line, example)
        self.known_keys(entry, DEVICE_KEYS, "`device`")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise self.error(f"`device` names no device ({_describe(name)})", line, f"write {example}")
        choices = {"precision": list(PRECISION_SETUPS), "weight_dtype": list(WEIGHT_BITS)}
        for key, allowed in choices.items():
            if key in entry and entry[key] not in allowed:
                raise self.error(f"`device.{key}` is {_describe(entry[key])}, not one of {', '.join(allowed)}",
                                 _line(entry, key), _suggest(entry[key], allowed))
        import os

        if name.endswith((".yaml", ".yml")) and not os.path.isabs(name):
            name = os.path.join(os.path.dirname(self.path), name)
        try:
            device = load_device(name)
            setup = setup_for(device, entry.get("precision", "fp32"), entry.get("weight_dtype"))
        except ArchcalcError as error:
            located = f" ({error.where})" if error.where and not error.where.startswith("--") else ""
            raise self.error(f"`device`: {error.message}{located}", line, error.fix or example) from None
        return device, setup

    def known_keys(self, mapping: Mapping, allowed: Sequence[str], what: str) -> None:
        for key in mapping:
            if key not in allowed:
                raise self.error(f"unknown key '{key}' in {what}", _line(mapping, key), _suggest(key, allowed))

    def batch(self, top: Mapping) -> int | None:
        if "batch" not in top:
            return None
        return self.positive_int(top["batch"], "`batch`", _line(top, "batch"), "`batch: 1`")

    def dims(self, top: Mapping) -> dict[str, int]:
        if "dims" not in top:
            return {}
        dims = self.mapping(top["dims"], "`dims`", _line(top, "dims"), "`dims: {seq: 128}`")
        return {str(name): self.positive_int(value, f"dim '{name}'", _line(dims, name), f"`{name}: 128`")
                for name, value in dims.items()}

    def training(self, top: Mapping) -> tuple[str | None, str | None]:
        """`training: {optimizer: adam, precision: mixed}`: the step training limits are counted for."""
        if "training" not in top:
            return None, None
        example = "`training: {optimizer: adam, precision: fp32}`"
        training = self.mapping(top["training"], "`training`", _line(top, "training"), example)
        self.known_keys(training, TRAINING_KEYS, "`training`")
        choices = {"optimizer": list(OPTIMIZER_STATES), "precision": list(PRECISIONS)}
        chosen: dict[str, str | None] = {key: None for key in TRAINING_KEYS}
        for key, value in training.items():
            if not isinstance(value, str) or value not in choices[key]:
                allowed = ", ".join(choices[key])
                raise self.error(f"`training.{key}` is {_describe(value)}, not one of {allowed}",
                                 _line(training, key), _suggest(value, choices[key]))
            chosen[key] = value
        return chosen["optimizer"], chosen["precision"]

    def positive_int(self, value: Any, what: str, line: int | None, example: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= INT64_MAX:
            shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:30]}..."
            raise self.error(f"{what} is {shown}, not a positive integer of at most 2**63 - 1 (int64)", line,
                             f"write e.g. {example}")
        return value

    def section(self, mapping: Mapping, level: str, prefix: str) -> list[Limit]:
        limits: list[Limit] = []
        if "total" in mapping:
            total = self.mapping(mapping["total"], f"`{prefix}total`", _line(mapping, "total"),
                                 "`total: {params: 30M, macs: 5G}`")
            for key in total:
                limits.append(self.limit(total, key, level, None, f"{prefix}total", f"{prefix}total"))
        if "layers" in mapping:
            entries = mapping["layers"]
            line = _line(mapping, "layers")
            if not isinstance(entries, list):
                raise self.error(f"`{prefix}layers` must be a list of entries, not {_describe(entries)}", line,
                                 "write `layers:` then items like `- {match: \"layer4.*\", params: 3M}`")
            item_lines = getattr(entries, "item_lines", [line] * len(entries))
            for index, (entry, entry_line) in enumerate(zip(entries, item_lines)):
                limits += self.layer_entry(entry, entry_line, level, f"{prefix}layers[{index}]")
        return limits

    def layer_entry(self, entry: Any, line: int, level: str, rule: str) -> list[Limit]:
        entry = self.mapping(entry, f"`{rule}`", line, "`- {match: \"layer4.*\", params: 3M}`")
        selector = LayerSelector(self.patterns(entry, "match"), self.patterns(entry, "op"))
        if not selector.match and not selector.op:
            raise self.error(f"`{rule}` has neither `match` nor `op`, so it names no layers", line,
                             "add `match: \"layer4.*\"` (a glob on layer names) or `op: Conv`; "
                             "whole-model limits go under `total`")
        keys = [key for key in entry if key not in SELECTOR_KEYS]
        if not keys:
            raise self.error(f"`{rule}` sets no limits", line, "add one, e.g. `params: 3M`")
        described = f"{rule} ({selector.describe()})"
        return [self.limit(entry, key, level, selector, rule, described) for key in keys]

    def patterns(self, entry: Mapping, key: str) -> tuple[str, ...]:
        if key not in entry:
            return ()
        value = entry[key]
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(item, str) and item for item in items):
            raise self.error(f"`{key}` must be a name or glob (or a list of them), not {_describe(value)}",
                             _line(entry, key), f"write e.g. `{key}: {'Conv' if key == 'op' else 'layer4.*'}`")
        return tuple(items)

    def limit(self, mapping: Mapping, key: Any, level: str, selector: LayerSelector | None, entry: str,
              rule: str) -> Limit:
        line = _line(mapping, key)
        metric = METRICS.get(key) if isinstance(key, str) else None
        if metric is None:
            allowed = list(METRICS) if selector is None else [*SELECTOR_KEYS, *layer_metrics()]
            raise self.error(f"unknown limit '{key}' in `{entry}`", line, _suggest(key, allowed))
        if selector is not None and metric.layer is None and metric.roofline_layer is None:
            raise self.error(f"`{key}` is a whole-model limit and cannot be checked per layer", line,
                             f"move it under `total`; per-layer limits: {', '.join(layer_metrics())}")
        raw = mapping[key]
        try:
            value = parse_quantity(raw, metric.unit)
        except QuantityError as error:
            raise self.error(f"limit `{key}`: {error.message}", line, error.fix or unit_hint(metric.unit)) from None
        if value > INT64_MAX:  # every count and size archcalc computes fits in int64
            raise self.error(f"limit `{key}` is larger than 2**63 - 1, more than any model can have: it limits nothing",
                             line, f"use a realistic limit, or delete `{key}` to have no limit")
        if value <= 0:
            digits = re.sub(r"[^0-9.]", "", str(raw).split("e")[0].split("E")[0])
            what = "negative" if value < 0 else "zero" if digits.strip("0.") == "" else "less than one"
            raise self.error(f"limit `{key}` is {raw!r}, {what}: no model can meet it", line,
                             f"use a positive limit, or delete `{key}` to have no limit")
        return Limit(key, value, level, selector, entry, rule, self.at(line))


def layer_metrics() -> list[str]:
    return [name for name, metric in METRICS.items()
            if metric.layer is not None or metric.roofline_layer is not None]


def _line(mapping: Any, key: Any) -> int | None:
    return getattr(mapping, "key_lines", {}).get(key) or getattr(mapping, "line", None)


def _describe(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value)


# ---------------------------------------------------------------------------------------------
# Checking


@dataclass(frozen=True)
class LimitResult:
    """One limit checked against one scope: the whole model ("total") or one layer."""

    scope: str  # "total" or a layer name
    metric: str  # a key of METRICS
    actual: int
    limit: int
    level: str  # FAIL, WARN or PASS
    headroom_percent: float  # (limit - actual) / limit * 100; negative when over
    unit: str = COUNT  # COUNT or BYTES
    entry: str = "total"  # the budget entry: "total", "layers[0]", "warn.total", "warn.layers[1]"
    rule: str = "total"  # that entry described: "total", "layers[0] (match 'layer4.*')"
    where: str = ""  # budget file:line of the limit
    op: str = ""  # the layer's op, for a per-layer result
    layer_source: str | None = None  # the layer's spec file:line, where known
    lower_bound: bool = False  # the actual misses ops without a rule, so the real value may be higher
    severity: str = FAIL  # what exceeding this limit means: FAIL, or WARN for `warn:` limits
    matched: int = 1  # layers the entry checked (1 for a total)
    per_layer: bool = False  # from a `layers` entry; scope is then a layer name


def _result(limit: Limit, scope: str, actual: int, lower_bound: bool, layer: LayerResult | None = None,
            matched: int = 1) -> LimitResult:
    level = limit.level if actual > limit.value else PASS
    return LimitResult(
        scope=scope, metric=limit.metric, actual=actual, limit=limit.value, level=level,
        headroom_percent=(limit.value - actual) * 100 / limit.value, unit=METRICS[limit.metric].unit,
        entry=limit.entry, rule=limit.rule, where=limit.where, op=layer.op if layer else "",
        layer_source=layer.source if layer else None, lower_bound=lower_bound, severity=limit.level,
        matched=matched, per_layer=limit.per_layer,
    )


def evaluate(analysis: Analysis, budget: Budget, training: Any = None, roofline: Any = None) -> list[LimitResult]:
    """Every limit of the budget checked, in budget order. A per-layer limit gives one result
    per layer over it, or, when every matching layer is within it, one result for the layer
    closest to it (the first of equals). A per-layer limit that matches no layer gives none;
    :func:`check_model` notes it."""
    results: list[LimitResult] = []
    for limit in budget.limits:
        metric = METRICS[limit.metric]
        if limit.selector is None:
            lower = analysis.totals.partial and not metric.exact_when_partial
            if metric.roofline is not None:
                value = metric.roofline(roofline)
            else:
                value = metric.training(training) if metric.training is not None else metric.total(analysis)
            results.append(_result(limit, "total", value, lower))
            continue
        selected = [layer for layer in analysis.layers if limit.selector.selects(layer)]
        if metric.roofline_layer is not None:
            costs = {cost.name: cost for cost in roofline.layers}
            per_layer = metric.roofline_layer
            # A layer the roofline cannot time (not modelled) counts 0, as a lower bound.
            checked = [(layer, per_layer(costs[layer.name])) for layer in selected]
            unknown = {layer.name for layer in selected if costs[layer.name].time_s is None}
        else:
            assert metric.layer is not None  # the parser admits only per-layer metrics here
            checked = [(layer, metric.layer(layer)) for layer in selected]
            unknown = set()
        over = [(layer, value) for layer, value in checked if value > limit.value]
        shown = over or ([max(checked, key=lambda pair: pair[1])] if checked else [])
        results += [_result(limit, layer.name, value, not layer.modelled or layer.name in unknown, layer,
                            len(checked)) for layer, value in shown]
    return results


@dataclass(frozen=True)
class ModelCheck:
    """One model checked against one budget: what every renderer needs, nothing to compute."""

    path: str
    name: str
    budget: str
    bindings: Mapping[str, int]
    results: tuple[LimitResult, ...]
    partial: bool  # some ops have no rule: every count is a lower bound
    unmodelled: tuple[str, ...]  # "name (Op)" of each layer without a rule
    notes: tuple[str, ...]  # partial analysis, entries that matched no layer, ...
    # The training step (archcalc.engine.training.TrainingAnalysis) when a training limit is checked
    # or `check --training` asks for it; its totals name the optimizer and precision.
    training: Any = None

    @property
    def level(self) -> str:
        levels = {result.level for result in self.results}
        return FAIL if FAIL in levels else WARN if WARN in levels else PASS

    def count(self, level: str) -> int:
        return sum(result.level == level for result in self.results)

    @property
    def title(self) -> str:
        return self.name or self.path

    @property
    def summary(self) -> str:
        """'FAIL, 1 failed, 0 warnings, 8 passed (9 limits)'."""
        fails, warns, passes = self.count(FAIL), self.count(WARN), self.count(PASS)
        total = len(self.results)
        return (f"{self.level.upper()}, {fails} failed, {warns} warning{'s' * (warns != 1)}, {passes} passed "
                f"({total} limit{'s' * (total != 1)})")


def check_model(analysis: Analysis, budget: Budget, training: Any = None, roofline: Any = None) -> ModelCheck:
    """`roofline`: the analysis on the budget's device (archcalc.hardware.roofline), for `latency`."""
    results = tuple(evaluate(analysis, budget, training, roofline))
    unmodelled = tuple(f"{layer.name} ({layer.op})" for layer in analysis.layers if not layer.modelled)
    notes: list[str] = []
    if analysis.totals.partial:
        why = (f"{len(unmodelled)} layer{'s' * (len(unmodelled) != 1)} not modelled ({_short_list(unmodelled)})"
               if unmodelled else "dims known only at run time are left out of the counts (see the warnings)")
        notes.append(f"partial analysis: {why}, so every count and memory figure is a lower bound and a "
                     "pass is not a guarantee")
    if budget.batch is not None and "batch" not in analysis.bindings:
        notes.append(f"the budget's `batch: {budget.batch}` binds nothing: the model has no symbolic batch dim "
                     "(its batch is fixed), so it is checked at its own batch")
    seen: set[str] = set()
    for limit in budget.limits:
        if limit.selector is None or limit.entry in seen:
            continue
        seen.add(limit.entry)
        matched = [layer for layer in analysis.layers if limit.selector.selects(layer)]
        if not matched:
            notes.append(f"{limit.rule} at {limit.where} matches no layer of this model, so it checks nothing")
        blind = [f"{layer.name} ({layer.op})" for layer in matched if not layer.modelled]
        if blind:
            notes.append(f"{limit.rule} matches {len(blind)} layer{'s' * (len(blind) != 1)} that "
                         f"{'are' if len(blind) != 1 else 'is'} not modelled ({_short_list(blind)}): "
                         "their limits cannot be checked")
    return ModelCheck(path=analysis.path, name=analysis.name, budget=budget.path, bindings=dict(analysis.bindings),
                      results=results, partial=analysis.totals.partial, unmodelled=unmodelled, notes=tuple(notes),
                      training=training)


def _short_list(items: Sequence[str], most: int = 5) -> str:
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")
