"""`analyze --sweep`: a model's totals at every point of a grid of bindings, from one analysis
and its formulas (engine/symbolic.py), with a decoder's KV cache at each point (engine/kv.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from archcalc.core.dims import shape_symbols
from archcalc.core.errors import ArchcalcError, UnboundDim
from archcalc.core.graph import Graph
from archcalc.core.results import Analysis
from archcalc.engine.kv import kv_cache
from archcalc.engine.symbolic import Evaluator, Formulas, Point, fixed_bindings, sweep_points


def _check_swept(graph: Graph, swept: Sequence[str], known: set[str]) -> None:
    missing = [name for name in swept if name not in known | {"batch"}]
    if missing:
        raise ArchcalcError(f"--sweep {missing[0]}: the model has no symbolic dim '{missing[0]}' (its symbolic dims: "
                            f"{', '.join(sorted(known)) or 'none'})",
                            where=graph.path, fix="sweep one of its dims, or feed an input at a symbolic shape "
                                                  "with --input-shape NAME=batch,seq")


class Timer(Protocol):
    """Seconds at a point on a device (hardware/sweep.LatencyTimer): called with an analysis and
    its formulas (None: the analysis is bound at the point), it gives the function of the
    point's bindings; `note` says how, for the sweep's method line."""

    note: str

    def __call__(self, analysis: Analysis, formulas: Formulas | None) -> Callable[[Mapping[str, int]], float]: ...


def run_sweep(graph: Graph, given: Mapping[str, int], sweeps: Sequence[tuple[str, Sequence[int]]],
              kv_dtype: str | None = None, timer: Timer | None = None) -> tuple[Formulas | None, list[Point], str]:
    """The totals at every combination of the swept values, the other dims bound as the
    engine binds them (`given`, else batch 1): one analysis and its formulas evaluated per
    point, or (a model whose counts are not all formulas) one analysis per point; a decoder's
    KV cache at each point's sequence length (engine/kv.py); with `timer` (--device), the
    estimated latency at each point. Returns the formulas (None for
    the latter), the points, and a sentence saying which was done."""
    from archcalc.engine.inference import analyze

    points = sweep_points(sweeps)
    swept = [name for name, _ in sweeps]
    inputs = {name for info in graph.tensors.values() if info.kind == "input" and isinstance(info.shape, tuple)
              for name in shape_symbols(info.shape)}
    try:
        analysis = analyze(graph, {**given, **points[0]})
    except UnboundDim:
        _check_swept(graph, swept, inputs)  # a swept name that is no dim says more than the dim left unbound
        raise
    _check_swept(graph, swept, inputs | Evaluator.model_dims(analysis))
    defaults = {"batch": 1, **graph.bindings, **given}
    evaluator = Evaluator(analysis, fixed_bindings(given, graph.batch_dims))
    cache = kv_cache(analysis, kv_dtype)

    def kv_bytes(point: Mapping[str, int]) -> int | None:
        env = {**defaults, **point}
        tokens = None if cache is None else cache.tokens_at(env)
        return None if tokens is None or cache is None else cache.bytes_at(tokens, env.get("batch", 1))

    result = []
    if not evaluator.formulas.exact:
        for point in points:
            bound = analysis if point is points[0] else analyze(graph, {**given, **point})
            t = bound.totals
            latency = None if timer is None else timer(bound, None)(bound.bindings)
            result.append(Point(dict(point), t.params, t.macs, t.flops, t.activation_bytes, t.peak_activation_bytes,
                                t.weight_bytes, t.input_bytes, kv_bytes(point), latency))
        return None, result, (f"one analysis per point: the counts of {', '.join(evaluator.formulas.bound_layers)} "
                              "(a subgraph) are not formulas" + ("" if timer is None else f"; {timer.note}"))
    latency_at = None if timer is None else timer(analysis, evaluator.formulas)
    for point in points:
        env = fixed_bindings({**defaults, **point}, graph.batch_dims)
        try:
            value = evaluator.at(env, ", ".join(f"{k}={v}" for k, v in point.items()))
        except ArchcalcError as error:
            raise error.located(graph.path) from None
        result.append(replace(value, bindings=dict(point), kv_cache_bytes=kv_bytes(point),
                              latency_s=None if latency_at is None else latency_at(env)))
    timed = "" if timer is None else f"; {timer.note}"
    return evaluator.formulas, result, (f"one analysis, its formulas evaluated at {len(points)} points; peak "
                                        f"activations per point from the liveness schedule{timed}")
