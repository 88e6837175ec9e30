"""Devices: peak throughput per dtype, memory bandwidth and capacity, per-op overhead, each
number with the line saying where it comes from. The catalogue ships as package data
(`archcalc/hardware/devices/*.yaml`); users add their own files in the same form.

A device file::

    name: a100
    title: NVIDIA A100 80GB SXM
    peak_tflops:            # dense (not sparse) peak of the matrix units, per compute dtype
      fp16: {value: 312, source: "NVIDIA A100 datasheet: FP16 Tensor Core 312 TFLOPS (624 sparse)"}
    vector_tflops:          # optional: element-wise ops (no matrix units); default peak_tflops
      fp32: {value: 19.5, source: ...}
    bandwidth_gb_s: {value: 2039, source: ...}     # GB/s, 10**9 bytes per second
    memory: {value: 80GiB, source: ...}
    overhead_us: {value: 5, source: ...}           # fixed time added to each op (launch, dispatch)
    efficiency:             # optional: fraction of peak an op reaches (default 1), per op kind:
      Conv.depthwise: {value: 0.1, source: "measured by archcalc device calibrate"}
                            # an ONNX op, `Op.variant` (a form its rule names), or `default`; a
                            # kind without a figure takes the one of the kind it is a form of
                            # (Conv.depthwise.strided: Conv.depthwise's, then Conv's)
    efficiency_by_flops:    # optional: an op kind's efficiency by the FLOPs of one of a layer's
      MatMul:               # parts (RuleResult.parts: a depthwise conv's channel; most ops are
        - {flops: 3.1e6, value: 0.3, source: ...}  # one part), interpolated on log FLOPs, held
        - {flops: 2.7e8, value: 1.0, source: ...}  # past the ends; overrides `efficiency` there
    bandwidth_efficiency:   # optional: fraction of the bandwidth an op's data movement reaches
      Transpose:            # (strided copies), by the bytes the layer moves, interpolated alike
        - {bytes: 1.2e6, value: 0.6, source: ...}
    memory_efficiency: {value: 0.8, source: ...}   # optional: fraction of bandwidth reached
    cache_bytes: {value: 32MiB, source: ...}       # optional, with cache_bandwidth_gb_s: a layer
    cache_bandwidth_gb_s: {value: 60, source: ...} # moving at most cache_bytes runs at this bandwidth
    cache_efficiency:       # optional, with a cache level: the fraction of cache_bandwidth_gb_s a
      - {bytes: 6.4e6, value: 0.6, source: ...}    # layer moving that many bytes reaches (larger
                                                   # tensors spill to slower levels); never below DRAM's
    output_passes:          # optional: passes an op kind makes over its output after its kernel,
      Conv.pointwise.bias: {value: 1, source: ...} # each reading and writing it (onnxruntime's CPU
                                                   # 1x1 conv adds its bias so); added to the time
    threads: 2              # optional: threads the calibration ran with
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from archcalc.core.errors import ArchcalcError
from archcalc.core.units import BYTES, QuantityError, parse_quantity
from archcalc.readers.yaml_lines import load_yaml, read_text

# The compute dtypes a peak may be given for.
COMPUTE_DTYPES = ("fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4")
# Op kinds an efficiency may be given for: an ONNX op name, or one of these classes.
DEPTHWISE = "Conv.depthwise"
DEFAULT_KIND = "default"
KEYS = ("name", "title", "peak_tflops", "vector_tflops", "bandwidth_gb_s", "memory", "overhead_us", "efficiency",
        "memory_efficiency", "cache_bytes", "cache_bandwidth_gb_s", "threads", "efficiency_by_flops",
        "bandwidth_efficiency", "cache_efficiency", "output_passes")
REQUIRED = ("name", "peak_tflops", "bandwidth_gb_s", "memory", "overhead_us")


class DeviceError(ArchcalcError):
    """A device file (or name) that cannot be used."""


@dataclass(frozen=True)
class Sourced:
    """A number and where it comes from (a datasheet, a spec page, a measurement)."""

    value: float
    source: str


@dataclass(frozen=True)
class Point:
    """One measured efficiency at a size (FLOPs or bytes moved)."""

    at: float
    value: float
    source: str


def interpolate(points: tuple[Point, ...], at: float) -> float:
    """The efficiency at size `at`: linear in log size between the two points around it, the
    end point's value past either end (sizes outside the measured range are not extrapolated)."""
    if at <= points[0].at:
        return points[0].value
    for low, high in zip(points, points[1:]):
        if at <= high.at:
            share = (math.log(at) - math.log(low.at)) / (math.log(high.at) - math.log(low.at))
            return low.value + share * (high.value - low.value)
    return points[-1].value


@dataclass(frozen=True)
class Device:
    name: str
    title: str
    peak_flops: Mapping[str, Sourced]  # compute dtype -> FLOP/s (op/s for ints), dense
    vector_flops: Mapping[str, Sourced]  # for ops without MACs; missing dtypes fall back to peak_flops
    bandwidth: Sourced  # bytes/s
    memory_bytes: int
    memory_source: str
    overhead_s: Sourced
    efficiency: Mapping[str, Sourced] = field(default_factory=dict)
    memory_efficiency: Sourced = Sourced(1.0, "ideal: the full bandwidth")
    threads: int | None = None
    path: str = ""
    # The last-level cache: a layer moving at most cache_bytes (its inputs were just written by
    # the layers before it) reads and writes at cache_bandwidth. 0: no cache level modelled.
    cache_bytes: int = 0
    cache_bandwidth: Sourced | None = None
    # Per op kind, efficiency points by FLOPs (compute) and by bytes moved (data movement), sorted.
    efficiency_curves: Mapping[str, tuple[Point, ...]] = field(default_factory=dict)
    bandwidth_curves: Mapping[str, tuple[Point, ...]] = field(default_factory=dict)
    cache_curve: tuple[Point, ...] = ()  # fraction of cache_bandwidth by bytes moved
    # Per op kind, passes over its output after the kernel (an unfused bias), each a read and a write.
    output_passes: Mapping[str, Sourced] = field(default_factory=dict)

    def bandwidth_for(self, moved: int) -> float:
        """Bytes/s of a layer that moves `moved` bytes: the cache level's (at its efficiency for
        that many bytes, but never slower than memory) when it holds them, else memory's."""
        if self.cache_bandwidth is not None and moved <= self.cache_bytes:
            cached = self.cache_bandwidth.value * (interpolate(self.cache_curve, moved) if self.cache_curve else 1.0)
            return max(cached, self.bandwidth.value) * self.memory_efficiency.value
        return self.bandwidth.value * self.memory_efficiency.value

    def peak(self, dtype: str) -> float:
        return self.peak_flops[dtype].value

    def vector_peak(self, dtype: str) -> float:
        """Peak of ops without MACs (element-wise, normalisation, pooling): the vector units'
        at this dtype, else at fp32 (integer element-wise work runs on the fp32/int32 lanes),
        else the matrix peak (a CPU has one kind of unit)."""
        chosen = self.vector_flops.get(dtype) or self.vector_flops.get("fp32") or self.peak_flops[dtype]
        return chosen.value

    def efficiency_of(self, kind: str, flops: float = 0.0) -> float:
        """Fraction of peak compute reached by an op of kind `kind` (layer_kind's `Op.variant`)
        whose every part (RuleResult.parts) does `flops` FLOPs: the kind's, else that of each
        kind it is a form of (`Conv.depthwise.strided`, `Conv.depthwise`, `Conv`), else the
        device's default, else 1; at each, the curve by FLOPs when the file gives one, else
        the single figure."""
        for key in (*_kinds(kind), DEFAULT_KIND):
            if key in self.efficiency_curves and flops > 0:
                return interpolate(self.efficiency_curves[key], flops)
            if key in self.efficiency:
                return self.efficiency[key].value
        return 1.0

    def bandwidth_efficiency_of(self, kind: str, moved: float) -> float:
        """Fraction of the bandwidth an op's data movement reaches at `moved` bytes (1 unless
        the file measures the op: a strided copy reaches less than a streaming one)."""
        for key in _kinds(kind):
            if key in self.bandwidth_curves and moved > 0:
                return interpolate(self.bandwidth_curves[key], moved)
        return 1.0

    def output_passes_of(self, kind: str) -> float:
        """Passes an op of kind `kind` makes over its output after its kernel (0 unless the file
        gives its kind, a kind it is a form of, or a default)."""
        for key in (*_kinds(kind), DEFAULT_KIND):
            if key in self.output_passes:
                return self.output_passes[key].value
        return 0.0

    def to_json(self) -> dict[str, Any]:
        def pair(item: Sourced) -> dict[str, Any]:
            return {"value": item.value, "source": item.source}

        return {
            "name": self.name, "title": self.title, "path": self.path,
            "peak_flops": {k: pair(v) for k, v in self.peak_flops.items()},
            "vector_flops": {k: pair(v) for k, v in self.vector_flops.items()},
            "bandwidth_bytes_per_s": pair(self.bandwidth),
            "memory_bytes": {"value": self.memory_bytes, "source": self.memory_source},
            "overhead_s": pair(self.overhead_s),
            "efficiency": {k: pair(v) for k, v in self.efficiency.items()},
            "memory_efficiency": pair(self.memory_efficiency),
            "threads": self.threads,
            "cache_bytes": self.cache_bytes,
            "cache_bandwidth_bytes_per_s": None if self.cache_bandwidth is None else pair(self.cache_bandwidth),
            "efficiency_by_flops": {k: [{"flops": p.at, "value": p.value, "source": p.source} for p in points]
                                    for k, points in self.efficiency_curves.items()},
            "bandwidth_efficiency": {k: [{"bytes": p.at, "value": p.value, "source": p.source} for p in points]
                                     for k, points in self.bandwidth_curves.items()},
            "cache_efficiency": [{"bytes": p.at, "value": p.value, "source": p.source} for p in self.cache_curve],
            "output_passes": {k: pair(v) for k, v in self.output_passes.items()},
        }


def _kinds(kind: str) -> list[str]:
    """`kind`, then each kind it is a form of: Conv.depthwise.strided, Conv.depthwise, Conv."""
    parts = kind.split(".")
    return [".".join(parts[:end]) for end in range(len(parts), 0, -1)]


def catalogue_names() -> list[str]:
    """The names of the devices shipped with archcalc, sorted."""
    folder = resources.files("archcalc.hardware").joinpath("devices")
    return sorted(entry.name[:-5] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def catalogue() -> list[Device]:
    return [load_device(name) for name in catalogue_names()]


def load_device(name_or_path: str) -> Device:
    """A catalogue device by name (`a100`), or the device file at a path (anything ending in
    .yaml/.yml or holding a path separator)."""
    if name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path or "\\" in name_or_path:
        text = read_text(name_or_path, DeviceError, "device file",
                         fix="pass a device name (see `archcalc devices`) or a device YAML file to --device")
        return parse_device(text, name_or_path)
    names = catalogue_names()
    key = name_or_path.lower()
    if key not in names:
        import difflib

        close = difflib.get_close_matches(key, names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise DeviceError(f"unknown device '{name_or_path}'", where="--device",
                          fix=f"{hint}known devices: {', '.join(names)}; or give a device YAML file "
                              "(see `archcalc devices`, or make one with `archcalc device calibrate`)")
    packaged = resources.files("archcalc.hardware").joinpath("devices").joinpath(f"{key}.yaml")
    return parse_device(packaged.read_text(encoding="utf-8"), f"archcalc/hardware/devices/{key}.yaml")


def parse_device(text: str, path: str) -> Device:
    data = load_yaml(text, path)
    return _Reader(path).device(data)


def _line(mapping: Any, key: Any) -> int | None:
    return getattr(mapping, "key_lines", {}).get(key) or getattr(mapping, "line", None)


EXAMPLE = "`bandwidth_gb_s: {value: 2039, source: \"NVIDIA A100 datasheet\"}`"


class _Reader:
    def __init__(self, path: str):
        self.path = path

    def error(self, field_name: str, message: str, line: int | None, fix: str) -> DeviceError:
        where = f"{self.path}:{line}" if line else self.path
        return DeviceError(f"field `{field_name}`: {message}", where=where, fix=fix)

    def device(self, data: Any) -> Device:
        if not isinstance(data, dict):
            raise DeviceError("a device file must be a mapping of fields", where=self.path,
                              fix=f"start from a file of `archcalc devices --paths`, e.g. name, peak_tflops, "
                                  f"bandwidth_gb_s, memory, overhead_us; {EXAMPLE}")
        for key in data:
            if key not in KEYS:
                import difflib

                close = difflib.get_close_matches(str(key), KEYS, n=1)
                raise self.error(str(key), "unknown field", _line(data, key),
                                 f"did you mean `{close[0]}`?" if close else f"allowed fields: {', '.join(KEYS)}")
        for key in REQUIRED:
            if key not in data:
                raise self.error(key, "missing", getattr(data, "line", None),
                                 f"add `{key}:` ({_REQUIRED_HINTS[key]})")
        name = data["name"]
        if not isinstance(name, str) or not name.strip():
            raise self.error("name", f"{name!r} is not a name", _line(data, "name"), "write e.g. `name: a100`")
        title = data.get("title", name)
        if not isinstance(title, str):
            raise self.error("title", f"{title!r} is not text", _line(data, "title"),
                             "write e.g. `title: NVIDIA A100 80GB SXM`")
        peak = self.per_dtype(data, "peak_tflops", required=True)
        vector = self.per_dtype(data, "vector_tflops", required=False)
        bandwidth = self.sourced(data, "bandwidth_gb_s", positive=True)
        memory_value, memory_source = self.memory(data, "memory")
        cache_bytes, cache_bandwidth = 0, None
        if ("cache_bytes" in data) != ("cache_bandwidth_gb_s" in data):
            given, missing = ("cache_bytes", "cache_bandwidth_gb_s") if "cache_bytes" in data else (
                "cache_bandwidth_gb_s", "cache_bytes")
            raise self.error(missing, f"missing (`{given}` is given; a cache level needs both)", _line(data, given),
                             f"add `{missing}:` or delete `{given}`")
        if "cache_bytes" in data:
            cache_bytes = self.memory(data, "cache_bytes")[0]
            cached = self.sourced(data, "cache_bandwidth_gb_s", positive=True)
            cache_bandwidth = Sourced(cached.value * 1e9, cached.source)
        overhead = self.sourced(data, "overhead_us", positive=False)
        efficiency = self.efficiency(data)
        output_passes = self.by_kind(data, "output_passes", "{value: 1, source: \"measured\"}",
                                     lambda table, kind: self.sourced(table, kind, positive=False,
                                                                      label=f"output_passes.{kind}"))
        efficiency_curves = self.curves(data, "efficiency_by_flops", "flops")
        bandwidth_curves = self.curves(data, "bandwidth_efficiency", "bytes")
        cache_curve: tuple[Point, ...] = ()
        if "cache_efficiency" in data:
            if cache_bandwidth is None:
                raise self.error("cache_efficiency", "given without a cache level", _line(data, "cache_efficiency"),
                                 "add `cache_bytes:` and `cache_bandwidth_gb_s:`, or delete `cache_efficiency`")
            cache_curve = self.points(data["cache_efficiency"], "cache_efficiency", _line(data, "cache_efficiency"),
                                      "bytes", "write e.g. `cache_efficiency: [{bytes: 6.4e6, value: 0.6, "
                                               "source: \"measured\"}]`")
        memory_efficiency = (self.sourced(data, "memory_efficiency", positive=True, at_most_one=True)
                             if "memory_efficiency" in data else Sourced(1.0, "ideal: the full bandwidth"))
        threads = data.get("threads")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise self.error("threads", f"{threads!r} is not a positive integer", _line(data, "threads"),
                             "write e.g. `threads: 4`, or delete it")
        return Device(
            name=name, title=title,
            peak_flops={k: Sourced(v.value * 1e12, v.source) for k, v in peak.items()},
            vector_flops={k: Sourced(v.value * 1e12, v.source) for k, v in vector.items()},
            bandwidth=Sourced(bandwidth.value * 1e9, bandwidth.source),
            memory_bytes=memory_value, memory_source=memory_source,
            overhead_s=Sourced(overhead.value / 1e6, overhead.source),
            efficiency=efficiency, memory_efficiency=memory_efficiency, threads=threads, path=self.path,
            cache_bytes=cache_bytes, cache_bandwidth=cache_bandwidth,
            efficiency_curves=efficiency_curves, bandwidth_curves=bandwidth_curves, cache_curve=cache_curve,
            output_passes=output_passes,
        )

    def pair(self, mapping: Mapping[Any, Any], key: Any, label: str) -> tuple[Any, str, int | None]:
        """The raw value, the source and the value's line of a `{value, source}` entry."""
        entry = mapping[key]
        line = _line(mapping, key)
        example = f"`{key}: {{value: 1.5, source: \"the vendor datasheet, page or table\"}}`"
        if not isinstance(entry, dict) or set(entry) != {"value", "source"}:
            got = "a mapping with keys " + ", ".join(map(str, entry)) if isinstance(entry, dict) else repr(entry)
            raise self.error(label, f"is {got}, not {{value, source}}", line,
                             f"give the number and where it comes from, e.g. {example}")
        source = entry["source"]
        if not isinstance(source, str) or not source.strip():
            raise self.error(label, "has no source", _line(entry, "source") or line,
                             "say where the number comes from: a datasheet and its table, a spec page's "
                             "URL, or `measured by archcalc device calibrate`")
        return entry["value"], source.strip(), _line(entry, "value") or line

    def sourced(self, mapping: Mapping[Any, Any], key: Any, *, positive: bool, at_most_one: bool = False,
                label: str | None = None) -> Sourced:
        label = label or str(key)
        value, source, line = self.pair(mapping, key, label)
        number = _number(value)
        if number is None or (positive and number <= 0) or number < 0:
            need = "a positive number" if positive else "a number of at least 0"
            raise self.error(label, f"value {value!r} is not {need}", line,
                             f"write e.g. `{key}: {{value: 1.5, source: ...}}`")
        if at_most_one and number > 1:
            raise self.error(label, f"value {value!r} is more than 1", line,
                             "an efficiency is a fraction of the peak, in (0, 1]")
        return Sourced(number, source)

    def per_dtype(self, data: Mapping[Any, Any], key: str, *, required: bool) -> dict[str, Sourced]:
        if key not in data:
            return {}
        table = data[key]
        line = _line(data, key)
        if not isinstance(table, dict) or (required and not table):
            raise self.error(key, "must map compute dtypes to {value, source}", line,
                             f"write e.g. `{key}: {{fp32: {{value: 19.5, source: \"NVIDIA A100 datasheet\"}}}}`; "
                             f"dtypes: {', '.join(COMPUTE_DTYPES)}")
        result = {}
        for dtype in table:
            if dtype not in COMPUTE_DTYPES:
                raise self.error(f"{key}.{dtype}", "unknown compute dtype", _line(table, dtype),
                                 f"use one of {', '.join(COMPUTE_DTYPES)}")
            result[dtype] = self.sourced(table, dtype, positive=True, label=f"{key}.{dtype}")
        return result

    def memory(self, data: Mapping[Any, Any], key: str) -> tuple[int, str]:
        value, source, line = self.pair(data, key, key)
        try:
            size = parse_quantity(value, BYTES)
        except QuantityError as error:
            raise self.error(key, f"value {value!r}: {error.message}", line,
                             "write a size like 80GiB or 24GB") from None
        if size <= 0:
            raise self.error(key, f"value {value!r} is not a positive size", line,
                             "write a size like 80GiB or 24GB")
        return size, source

    def efficiency(self, data: Mapping[Any, Any]) -> dict[str, Sourced]:
        return self.by_kind(data, "efficiency", "{value: 0.2, source: \"measured\"}",
                            lambda table, kind: self.sourced(table, kind, positive=True, at_most_one=True,
                                                             label=f"efficiency.{kind}"))

    def by_kind(self, data: Mapping[Any, Any], key: str, example: str,
                entry: Callable[[Mapping[Any, Any], Any], Sourced]) -> dict[str, Sourced]:
        """A mapping of op kinds to `{value, source}`, each read by `entry`."""
        if key not in data:
            return {}
        table = data[key]
        if not isinstance(table, dict):
            raise self.error(key, "must map op kinds to {value, source}", _line(data, key),
                             f"write e.g. `{key}: {{{DEPTHWISE}: {example}}}`; keys: an ONNX op (Conv, "
                             f"MatMul, ...), `Op.variant` ({DEPTHWISE}) or {DEFAULT_KIND}")
        return {str(kind): entry(table, kind) for kind in table}


    def curves(self, data: Mapping[Any, Any], key: str, axis: str) -> dict[str, tuple[Point, ...]]:
        """Per op kind, a list of `{<axis>: size, value, source}` points, sizes distinct."""
        if key not in data:
            return {}
        table = data[key]
        example = (f"write e.g. `{key}: {{MatMul: [{{{axis}: 3.1e6, value: 0.3, source: \"measured\"}}, "
                   f"{{{axis}: 2.7e8, value: 1.0, source: \"measured\"}}]}}`")
        if not isinstance(table, dict):
            raise self.error(key, "must map op kinds to lists of points", _line(data, key), example)
        return {str(kind): self.points(points, f"{key}.{kind}", _line(table, kind), axis, example)
                for kind, points in table.items()}

    def points(self, points: Any, label: str, line: int | None, axis: str, example: str) -> tuple[Point, ...]:
        """A list of `{<axis>: size, value, source}` points, sorted by size, sizes distinct."""
        if not isinstance(points, list) or not points:
            raise self.error(label, f"is {points!r}, not a list of points", line, example)
        parsed = []
        for index, point in enumerate(points):
            where = f"{label}[{index}]"
            at = getattr(point, "line", None) or line
            if not isinstance(point, dict) or set(point) != {axis, "value", "source"}:
                got = "keys " + ", ".join(map(str, point)) if isinstance(point, dict) else repr(point)
                raise self.error(where, f"has {got}, not {{{axis}, value, source}}", at, example)
            size = _number(point[axis])
            if size is None or size <= 0:
                raise self.error(f"{where}.{axis}", f"{point[axis]!r} is not a positive number",
                                 _line(point, axis) or at, f"give the layer size the point was measured at, "
                                                           f"e.g. `{axis}: 2.7e8`")
            value = self.sourced({"value": {"value": point["value"], "source": point["source"]}}, "value",
                                 positive=True, at_most_one=True, label=f"{where}.value")
            parsed.append(Point(size, value.value, value.source))
        parsed.sort(key=lambda p: p.at)
        if any(a.at == b.at for a, b in zip(parsed, parsed[1:])):
            raise self.error(label, f"gives two points at the same {axis}", line, f"keep one point per {axis} value")
        return tuple(parsed)


_REQUIRED_HINTS = {
    "name": "the device's short name, e.g. `name: a100`",
    "peak_tflops": "dense peak TFLOPS per compute dtype, each {value, source}",
    "bandwidth_gb_s": "memory bandwidth in GB/s, {value, source}",
    "memory": "memory capacity, e.g. {value: 80GiB, source: ...}",
    "overhead_us": "fixed time per op in microseconds, {value, source}",
}


def _number(value: Any) -> float | None:
    """A finite number from YAML: an int, a float, or a string such as '2.5e12' (YAML 1.1
    reads an exponent without a dot or sign as text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None
