"""archcalc: shapes, parameters, compute and memory of a neural-network architecture.

The public names are loaded on first use, so `import archcalc` (and the CLI's --help)
stays instant: ``archcalc.load``, ``analyze``, ``check``, ``diff``, ``verify``, ``sweep``, the result
types ``Analysis``, ``Sweep``, ``LayerResult``, ``TensorResult``, ``Totals``, ``ModelCheck``,
``ModelDiff``, ``VerifyReport``, the intermediate ``Graph`` and the error ``ArchcalcError``
with its kinds. The README's "From Python" section lists each.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "load": "archcalc.api",
    "analyze": "archcalc.api",
    "check": "archcalc.api",
    "diff": "archcalc.api",
    "verify": "archcalc.api",
    "sweep": "archcalc.api",
    "Analysis": "archcalc.api",
    "Sweep": "archcalc.api",
    "Graph": "archcalc.core.graph",
    "LayerResult": "archcalc.core.results",
    "TensorResult": "archcalc.core.results",
    "Totals": "archcalc.core.results",
    "ModelCheck": "archcalc.compare.budget",
    "ModelDiff": "archcalc.compare.diff",
    "VerifyReport": "archcalc.runtime.verify",
    "ArchcalcError": "archcalc.core.errors",
    "SpecError": "archcalc.core.errors",
    "ShapeError": "archcalc.core.errors",
    "GraphError": "archcalc.core.errors",
    "ModelFileError": "archcalc.core.errors",
}
__all__ = [
    "Analysis", "ArchcalcError", "Graph", "GraphError", "LayerResult", "ModelCheck", "ModelDiff", "ModelFileError",
    "ShapeError", "SpecError", "Sweep", "TensorResult", "Totals", "VerifyReport", "__version__", "analyze", "check",
    "diff", "load", "sweep", "verify",
]

if TYPE_CHECKING:
    from archcalc.api import Analysis, Sweep, analyze, check, diff, load, sweep, verify
    from archcalc.compare.budget import ModelCheck
    from archcalc.compare.diff import ModelDiff
    from archcalc.core.errors import ArchcalcError, GraphError, ModelFileError, ShapeError, SpecError
    from archcalc.core.graph import Graph
    from archcalc.core.results import LayerResult, TensorResult, Totals
    from archcalc.runtime.verify import VerifyReport


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'archcalc' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
