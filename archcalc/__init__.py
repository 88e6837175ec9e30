"""archcalc: shapes, parameters, compute and memory of a neural-network architecture.

The public names are loaded on first use, so `import archcalc` (and the CLI's --help)
stays instant: ``archcalc.load``, ``archcalc.analyze``, the result types ``Analysis``,
``LayerResult``, ``TensorResult``, ``Totals``, the intermediate ``Graph`` and the error
``ArchcalcError`` with its kinds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "load": "archcalc.api",
    "analyze": "archcalc.api",
    "Graph": "archcalc.core.graph",
    "Analysis": "archcalc.core.results",
    "LayerResult": "archcalc.core.results",
    "TensorResult": "archcalc.core.results",
    "Totals": "archcalc.core.results",
    "ArchcalcError": "archcalc.core.errors",
    "SpecError": "archcalc.core.errors",
    "ShapeError": "archcalc.core.errors",
    "ModelFileError": "archcalc.core.errors",
}
__all__ = [
    "Analysis", "ArchcalcError", "Graph", "LayerResult", "ModelFileError", "ShapeError", "SpecError",
    "TensorResult", "Totals", "__version__", "analyze", "load",
]

if TYPE_CHECKING:
    from archcalc.api import analyze, load
    from archcalc.core.errors import ArchcalcError, ModelFileError, ShapeError, SpecError
    from archcalc.core.graph import Graph
    from archcalc.core.results import Analysis, LayerResult, TensorResult, Totals


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'archcalc' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
