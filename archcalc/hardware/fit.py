"""Does the model fit on the device: the largest batch whose inference memory (weights plus
the peak of live activations) fits in the device's memory."""

from __future__ import annotations

from collections.abc import Mapping

from archcalc.core.errors import ArchcalcError
from archcalc.core.graph import Graph
from archcalc.core.units import human_bytes
from archcalc.engine.inference import analyze
from archcalc.hardware.device import Device
from archcalc.hardware.roofline import Setup, roofline


def largest_inference_batch(graph: Graph, bindings: Mapping[str, int], device: Device, setup: Setup) -> int:
    """Inference memory is affine in the batch (weights fixed, activations linear), so two
    analyses give the answer; checked, and stepped down if a model breaks the assumption."""
    def needed(batch: int) -> int:
        return roofline(analyze(graph, {**bindings, "batch": batch}), device, setup).inference_bytes

    one, two = needed(1), needed(2)
    if one > device.memory_bytes:
        raise ArchcalcError(f"even batch 1 needs {human_bytes(one)} for inference, more than {device.name}'s "
                            f"{human_bytes(device.memory_bytes)}",
                            fix="use a smaller model, a lower --precision or --weight-dtype, or a larger device")
    per_sample = two - one
    if per_sample <= 0:
        return 1
    batch = max(1, (device.memory_bytes - (one - per_sample)) // per_sample)
    while batch > 1 and needed(batch) > device.memory_bytes:
        batch -= 1
    return batch
