"""A verification report (:class:`~archcalc.runtime.verify.VerifyReport`) as text."""

from __future__ import annotations

from typing import TYPE_CHECKING

from archcalc.core.units import human_count

if TYPE_CHECKING:
    from rich.console import Console

    from archcalc.runtime.verify import VerifyReport


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """'1 tensor', '175 tensors', '0 mismatches'."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def render_verify(report: VerifyReport, profile: bool, console: Console) -> None:
    """Mismatches, data-dependent dims, per-layer times (with --profile) and the verdict."""
    from rich.table import Table

    def show(value) -> str:
        return f"{value:,}" if isinstance(value, int) else str(value)

    if report.mismatches:
        title = f"{report.model}: {counted(len(report.mismatches), 'mismatch', 'mismatches')}"
        table = Table(title=title, title_justify="left")
        for column in ("Layer", "Tensor", "Check", "archcalc", "onnxruntime"):
            table.add_column(column)
        for m in report.mismatches:
            table.add_row(m.layer, m.tensor, m.kind, show(m.expected), show(m.actual))
        console.print(table)
    for entry in report.data_dependent:
        console.print(f"data-dependent: {entry.layer} -> {entry.tensor} axis {entry.axis} ({entry.dim}), "
                      f"observed {entry.observed}")
    if profile and report.layer_times:
        timing = Table(title="Per-layer time (onnxruntime CPU, one run)", title_justify="left")
        for column in ("Layer", "Op", "MACs", "Time (us)", "GMAC/s"):
            timing.add_column(column, justify="left" if column in ("Layer", "Op") else "right")
        for row in report.layer_times:
            rate = "-" if row["gmac_per_s"] is None else f"{row['gmac_per_s']:.2f}"
            timing.add_row(row["name"], row["op"], human_count(row["macs"]), f"{row['time_us']:,.0f}", rate)
        console.print(timing)
    seconds = report.seconds
    timing_note = (f"(prepare {seconds.get('prepare', 0):.2f} s, session {seconds.get('session', 0):.2f} s, "
                   f"run {seconds.get('run', 0):.2f} s)")
    if report.nothing_checked:
        console.print(f"verify: nothing to check: all {report.layers_total} layers are unmodelled, so the run "
                      f"compared no tensor {timing_note}", soft_wrap=True)
        return
    status = "ok" if report.ok else "FAILED"
    skipped = f", {len(report.skipped)} skipped" if report.skipped else ""
    dependent = f", {len(report.data_dependent)} data-dependent dims" if report.data_dependent else ""
    console.print(f"verify {status}: {counted(report.tensors_checked, 'tensor')} and "
                  f"{counted(report.layers_checked, 'layer')} checked against onnxruntime, "
                  f"{counted(len(report.mismatches), 'mismatch', 'mismatches')}{skipped}{dependent} {timing_note}",
                  soft_wrap=True)
