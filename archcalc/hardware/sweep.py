"""Estimated latency at each point of a sweep (analyze --sweep ... --device): the roofline of
hardware/roofline.py at the point, from one analysis and its formulas.

Each layer's cost on the device depends on its FLOPs and the bytes of its inputs and outputs
only: at a point, the FLOPs are its formula's value there (engine/symbolic.py) and the bytes
its tensors' shapes bound there, so `layer_cost` runs on the layer with those values and the
point's bindings, exactly as `roofline` runs on the layer of an analysis bound at the point.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from archcalc.core.dims import Dim, bind_known
from archcalc.core.results import Analysis, LayerResult
from archcalc.engine.symbolic import Formulas
from archcalc.hardware.device import Device
from archcalc.hardware.roofline import Setup, layer_cost


class LatencyTimer:
    """engine/sweep.Timer for a device and a deployment: the roofline's latency at a point."""

    def __init__(self, device: Device, setup: Setup):
        self.device, self.setup = device, setup
        self.note = (f"latency on {device.name} at {setup.precision} per point from the roofline of the layers' "
                     "counts there")

    def __call__(self, analysis: Analysis, formulas: Formulas | None) -> Callable[[Mapping[str, int]], float]:
        """The latency of `analysis` at any binding of its formulas' dims (`formulas` None: the
        layers' own counts, for an analysis bound at the point)."""
        counted = [layer for layer in analysis.layers if not layer.parent]
        by_name = {} if formulas is None else {f.name: f for f in formulas.layers if not f.parent}
        layers: list[tuple[LayerResult, Dim, Dim]] = [
            (layer, by_name[layer.name].macs, by_name[layer.name].flops) if layer.name in by_name
            else (layer, layer.macs, layer.flops) for layer in counted]
        weights, buffers = frozenset(analysis.param_tensors), frozenset(analysis.buffer_tensors)
        base = {"batch": 1, **analysis.bindings}

        def seconds(bindings: Mapping[str, int]) -> float:
            env = {**base, **bindings}
            total = 0.0
            for layer, macs, flops in layers:
                at_point = replace(layer, macs=bind_known(macs, env)[0], flops=bind_known(flops, env)[0])
                total += layer_cost(at_point, self.device, self.setup, weights, buffers, env).time_s or 0.0
            return total

        return seconds
