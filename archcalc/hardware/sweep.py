"""Estimated latency at each point of a sweep (analyze --sweep ... --device): the roofline of
hardware/roofline.py at the point, from one analysis and its formulas.

Each layer's cost on the device depends on its FLOPs and the bytes of its inputs and outputs
only: at a point, the FLOPs are its formula's value there (engine/symbolic.py) and the bytes
its tensors' shapes bound there, so `layer_cost` runs on the layer with those values and the
point's bindings, exactly as `roofline` runs on the layer of an analysis bound at the point.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from archcalc.core.dims import bind_known
from archcalc.core.results import Analysis
from archcalc.engine.symbolic import Formulas
from archcalc.hardware.device import Device
from archcalc.hardware.roofline import Setup, layer_cost


class LatencyAt:
    """The roofline latency of `analysis` at any binding of its formulas' dims."""

    def __init__(self, analysis: Analysis, formulas: Formulas, device: Device, setup: Setup):
        self.analysis, self.device, self.setup = analysis, device, setup
        # (layer, its MACs and FLOPs formulas) of the counted (top-level) layers, as roofline sums them
        self.layers = [(layer, formula.macs, formula.flops)
                       for layer, formula in zip(analysis.layers, formulas.layers) if not layer.parent]
        self.weights = frozenset(analysis.param_tensors)
        self.buffers = frozenset(analysis.buffer_tensors)

    def __call__(self, bindings: Mapping[str, int]) -> float:
        """Seconds at `bindings` (every input dim bound; the model's batch dims too)."""
        env = {"batch": 1, **self.analysis.bindings, **bindings}
        total = 0.0
        for layer, macs, flops in self.layers:
            at_point = replace(layer, macs=bind_known(macs, env)[0], flops=bind_known(flops, env)[0])
            total += layer_cost(at_point, self.device, self.setup, self.weights, self.buffers, env).time_s or 0.0
        return total
