"""archcalc: shapes, parameters, compute and memory of a neural-network architecture."""

__version__ = "0.1.0"
