"""`analyze --compare-source`'s table: each figure beside the source's, with their ratio."""

from __future__ import annotations

from archcalc.compare.source import FigurePair, SourceComparison
from archcalc.core.units import human_bytes

COLUMNS = ("Figure", "This model", "Source", "Ratio")


def _value(pair: FigurePair, value: int) -> str:
    return human_bytes(value) if pair.key.endswith("_bytes") else f"{value:,}"


def _ratio(pair: FigurePair) -> str:
    ratio = pair.ratio
    if ratio is None:
        return "-" if pair.model == 0 else "new"  # new: the source has none (scales of a quantised graph)
    return f"{float(ratio):.4f}"


def comparison_rows(comparison: SourceComparison) -> list[tuple[str, str, str, str]]:
    return [(pair.label, _value(pair, pair.model), _value(pair, pair.source), _ratio(pair))
            for pair in comparison.figures]


def verdict(comparison: SourceComparison) -> str:
    partial = " (partial: some ops not modelled)" if comparison.partial else ""
    if comparison.same_arithmetic:
        return f"params and MACs equal the source's: the same arithmetic{partial}"
    return f"params or MACs differ from the source's{partial}"


def render_comparison(comparison: SourceComparison, console) -> None:
    from rich.table import Table

    console.print(f"Against the source {comparison.source_path}:")
    table = Table()
    for index, column in enumerate(COLUMNS):
        table.add_column(column, justify="left" if index == 0 else "right", no_wrap=True)
    for row in comparison_rows(comparison):
        table.add_row(*row)
    console.print(table)
    console.print(verdict(comparison))
