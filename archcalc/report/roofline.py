"""The roofline of `analyze --device`: per-row time, bound and bytes, and the device totals,
for the table, CSV, JSON and Markdown. Formats only; the numbers come from
archcalc.hardware.roofline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from archcalc.core.units import human_bytes, human_count
from archcalc.engine.rows import Row
from archcalc.hardware.device import Device
from archcalc.hardware.roofline import COMPUTE, MEMORY, UNKNOWN, VIEW, LayerCost, Roofline
from archcalc.report.layout import Column

CSV_COLUMNS = ("bytes_read", "bytes_written", "intensity", "bound", "time_s")
# Columns the analyze table gains with --device (report/layout.py keeps Time before Bound).
TABLE_COLUMNS = (Column("Bound", priority=85, min_width=7), Column("Time", numeric=True))


@dataclass(frozen=True)
class RoofRow:
    """A report row (one layer, or a folded block) on the device."""

    name: str
    flops: int
    bytes_read: int
    bytes_written: int
    bound: str
    time_s: float | None

    @property
    def intensity(self) -> float | None:
        moved = self.bytes_read + self.bytes_written
        return self.flops / moved if moved else None


def roof_rows(table: Sequence[Row], roofline: Roofline) -> list[RoofRow]:
    """Each row's members summed; a folded row's bound is that of the members where most of
    its time goes."""
    by_name = {layer.name: layer for layer in roofline.layers}
    result = []
    for row in table:
        members = [by_name[name] for name in row.members if name in by_name]
        unknown = any(m.bound == UNKNOWN for m in members)
        result.append(RoofRow(row.name, sum(m.flops for m in members), sum(m.bytes_read for m in members),
                              sum(m.bytes_written for m in members), UNKNOWN if unknown else _bound(members),
                              None if unknown else sum(m.time_s or 0.0 for m in members)))
    return result


def _bound(members: Sequence[LayerCost]) -> str:
    spent = {COMPUTE: 0.0, MEMORY: 0.0}
    for member in members:
        if member.bound in spent:
            spent[member.bound] += member.time_s or 0.0
    if not any(spent.values()):
        return VIEW
    return max(spent, key=lambda bound: spent[bound])


def human_time(seconds: float) -> str:
    """4.944e-06 -> '4.94 us', 0.0123 -> '12.30 ms'."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.2f} {unit}"
    return f"{seconds / 1e-9:.2f} ns" if seconds else "0"


def table_cells(row: RoofRow) -> list[str]:
    return [row.bound, "?" if row.time_s is None else human_time(row.time_s)]


def csv_cells(row: RoofRow) -> list[object]:
    intensity = row.intensity
    return [row.bytes_read, row.bytes_written, "" if intensity is None else f"{intensity:.6g}", row.bound,
            "" if row.time_s is None else f"{row.time_s:.6g}"]


def device_lines(roofline: Roofline, training_memory: int | None = None,
                 fit: tuple[int, int] | None = None, inference_fit: int | None = None) -> list[tuple[str, str]]:
    """Totals on the device: latency, throughput, where the time goes, what fits."""
    device, setup = roofline.device, roofline.setup
    capacity = device.memory_bytes
    partial = " (partial: some ops not modelled)" if roofline.partial else ""
    counts = roofline.bound_counts()
    shares = ", ".join(f"{op} {fraction:.0%}" for op, _, fraction in roofline.share_by_op()[:5])
    lines = [
        ("Device", f"{device.title} ({device.name})"),
        ("Precision", f"{setup.precision}: {setup.compute_dtype} compute, {setup.activation_bits}-bit activations, "
                      f"{setup.weight_dtype} weights ({setup.weight_bits}-bit)"),
        ("Estimated latency", f"{human_time(roofline.latency_s)} at batch {roofline.batch}{partial}"),
        ("Throughput", f"{roofline.throughput:,.1f} samples/s"),
        ("Time by op", shares or "-"),
        ("Layers bound by", f"compute {counts[COMPUTE]}, memory {counts[MEMORY]}, views (free) {counts[VIEW]}"
                            + (f", not modelled {counts[UNKNOWN]}" if counts[UNKNOWN] else "")),
        ("Inference memory", f"{human_bytes(roofline.inference_bytes)} (weights {human_bytes(roofline.weight_bytes)} "
                             f"+ peak activations {human_bytes(roofline.peak_activation_bytes)}) of "
                             f"{human_bytes(capacity)}: {_fits(roofline.inference_bytes, capacity)}"),
    ]
    if inference_fit is not None:
        lines.append(("Largest inference batch", f"{inference_fit:,} fits in {human_bytes(capacity)}"))
    if training_memory is not None:
        lines.append(("Training memory", f"{human_bytes(training_memory)} of {human_bytes(capacity)}: "
                                         f"{_fits(training_memory, capacity)}"))
    if fit is not None:
        batch, used = fit
        lines.append(("Largest training batch", f"{batch:,} fits in {human_bytes(capacity)} "
                                                f"(uses {human_bytes(used)})"))
    return lines


def _fits(needed: int, capacity: int) -> str:
    return "fits" if needed <= capacity else f"does not fit ({needed / capacity:.1f}x the memory)"


def markdown_section(table: Sequence[Row], roofline: Roofline, lines: Sequence[tuple[str, str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = ["", f"### Roofline on {roofline.device.title}", "",
           line(("Layer", "FLOPs", "Bytes read", "Bytes written", "Intensity", "Bound", "Time")),
           "|---|---:|---:|---:|---:|---|---:|"]
    for row in roof_rows(table, roofline):
        intensity = row.intensity
        out.append(line((row.name, human_count(row.flops), human_bytes(row.bytes_read), human_bytes(row.bytes_written),
                         "-" if intensity is None else f"{intensity:.2f}", row.bound,
                         "?" if row.time_s is None else human_time(row.time_s))))
    out += ["", line(("Device", "")), "|---|---|"] + [line(pair) for pair in lines]
    return "\n".join(out) + "\n"


def device_json(roofline: Roofline, training_memory: int | None = None, fit: tuple[int, int] | None = None,
                inference_fit: int | None = None) -> dict[str, object]:
    """The `roofline` object of `analyze --device --format json`."""
    document = roofline.to_json()
    capacity = roofline.device.memory_bytes
    if inference_fit is not None:
        document["largest_inference_batch"] = inference_fit
    if training_memory is not None:
        document["training_memory_bytes"] = training_memory
        document["training_fits"] = training_memory <= capacity
    if fit is not None:
        document["largest_training_batch"] = fit[0]
        document["largest_training_batch_memory_bytes"] = fit[1]
    return document


def device_listing(devices: Sequence[Device], sources: bool = True) -> str:
    """The catalogue as text: one block per device, each number with its source."""
    out = []
    for device in devices:
        out.append(f"{device.name}: {device.title}  [{device.path}]")
        for dtype, peak in device.peak_flops.items():
            unit = "TOPS" if dtype.startswith("int") else "TFLOPS"
            out.append(_listed(f"peak {dtype}", f"{peak.value / 1e12:g} {unit}", peak.source, sources))
        for dtype, peak in device.vector_flops.items():
            out.append(_listed(f"vector {dtype}", f"{peak.value / 1e12:g} TFLOPS", peak.source, sources))
        out.append(_listed("bandwidth", f"{device.bandwidth.value / 1e9:g} GB/s", device.bandwidth.source, sources))
        if device.cache_bandwidth is not None:
            out.append(_listed("cache", f"{human_bytes(device.cache_bytes)} at "
                                        f"{device.cache_bandwidth.value / 1e9:g} GB/s",
                               device.cache_bandwidth.source, sources))
            for point in device.cache_curve:
                out.append(_listed(f"cache @{human_bytes(int(point.at))}", f"{point.value:g}", point.source, sources))
        out.append(_listed("memory", human_bytes(device.memory_bytes), device.memory_source, sources))
        out.append(_listed("overhead/op", human_time(device.overhead_s.value), device.overhead_s.source, sources))
        for kind, factor in device.efficiency.items():
            out.append(_listed(f"efficiency {kind}", f"{factor.value:g}", factor.source, sources))
        for kind, points in device.efficiency_curves.items():
            for point in points:
                out.append(_listed(f"efficiency {kind} @{point.at:.3g} FLOPs", f"{point.value:g}", point.source,
                                   sources))
        for kind, points in device.bandwidth_curves.items():
            for point in points:
                out.append(_listed(f"bandwidth {kind} @{human_bytes(int(point.at))}", f"{point.value:g}",
                                   point.source, sources))
        for kind, passes in device.output_passes.items():
            out.append(_listed(f"output passes {kind}", f"{passes.value:g}", passes.source, sources))
        out.append("")
    return "\n".join(out)


def _listed(label: str, value: str, source: str, sources: bool) -> str:
    line = f"  {label:<24} {value:>14}"
    return f"{line}  ({source})" if sources else line
