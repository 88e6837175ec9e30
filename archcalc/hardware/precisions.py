"""Deployment precisions `analyze --device` costs a model at. Plain tables with no imports,
so the CLI lists them without loading anything."""

from __future__ import annotations

# --precision -> (compute dtype of the device's peak, bits per float activation, bits per
# float weight unless --weight-dtype says otherwise). `mixed` is autocast inference: fp32
# weights, half-precision compute and activations.
PRECISION_SETUPS: dict[str, tuple[str, int, int]] = {
    "fp32": ("fp32", 32, 32),
    "tf32": ("tf32", 32, 32),
    "fp16": ("fp16", 16, 16),
    "bf16": ("bf16", 16, 16),
    "mixed": ("fp16", 16, 32),
    "fp8": ("fp8", 8, 8),
    "int8": ("int8", 8, 8),
}
# --weight-dtype -> bits per weight (int4: two weights a byte, as quantised deployments pack them).
WEIGHT_BITS: dict[str, int] = {"fp32": 32, "fp16": 16, "bf16": 16, "fp8": 8, "int8": 8, "int4": 4}
# A training step at a deployment precision: its training precision (engine.setup.PRECISIONS),
# or absent when archcalc does not cost training at it.
TRAINING_PRECISION: dict[str, str] = {"fp32": "fp32", "tf32": "fp32", "fp16": "fp16", "bf16": "bf16",
                                      "mixed": "mixed"}
