"""The YAML spec front end: a concise architecture language lowered to the engine's graph."""

from archcalc.readers.spec.build import load_spec

__all__ = ["load_spec"]
