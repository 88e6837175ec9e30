"""A deployed graph against the model it was made from (`analyze FUSED --compare-source SOURCE`).

A graph rewritten by onnxruntime's optimizer, quantizer or fp16 converter does its source's
arithmetic: the same params and MACs (ratio 1), stored in fewer bytes (int8 a quarter of
float32, int4 an eighth, fp16 a half) beside the scales and zero points it adds; integer
MACs are those its quantised ops do. Ratios are this model's figure over the source's.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from archcalc.core.results import Analysis

# (JSON key, label) of each figure compared, in the order shown.
FIGURES = (
    ("params", "Params"),
    ("macs", "MACs"),
    ("integer_macs", "Integer MACs"),
    ("weight_bytes", "Weight memory"),
    ("quantization_bytes", "Scales, zero points"),
)


@dataclass(frozen=True, slots=True)
class FigurePair:
    key: str
    label: str
    model: int
    source: int

    @property
    def ratio(self) -> Fraction | None:
        """This model's figure over the source's; None when the source's is 0."""
        return Fraction(self.model, self.source) if self.source else None

    def to_json(self) -> dict[str, Any]:
        ratio = self.ratio
        return {"model": self.model, "source": self.source, "ratio": None if ratio is None else float(ratio)}


@dataclass(frozen=True, slots=True)
class SourceComparison:
    source_path: str
    figures: tuple[FigurePair, ...]
    partial: bool  # either analysis left an op unmodelled: its counts are lower bounds

    def figure(self, key: str) -> FigurePair:
        return next(f for f in self.figures if f.key == key)

    @property
    def same_arithmetic(self) -> bool:
        """Params and MACs equal the source's, as a faithful rewrite's are."""
        return all(self.figure(key).model == self.figure(key).source for key in ("params", "macs"))

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source_path, "same_arithmetic": self.same_arithmetic, "partial": self.partial,
                **{f.key: f.to_json() for f in self.figures}}


def compare_to_source(analysis: Analysis, source: Analysis) -> SourceComparison:
    mine, theirs = analysis.totals, source.totals
    figures = tuple(FigurePair(key, label, getattr(mine, key), getattr(theirs, key)) for key, label in FIGURES)
    return SourceComparison(source.path, figures, mine.partial or theirs.partial)
