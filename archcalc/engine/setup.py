"""The training set-ups archcalc costs: optimizers and precisions. Plain tables with no
imports, so the CLI's options list them without loading the engine."""

from __future__ import annotations

# Optimizer -> state values kept per trainable weight (momentum: one; Adam: two moments).
OPTIMIZER_STATES = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}
# bytes per weight (and per optimizer state value, which PyTorch makes like its weight),
# per gradient, per saved activation. mixed = PyTorch AMP: fp32 weights and gradients,
# half-precision activations.
PRECISIONS = {
    "fp32": (4, 4, 4),
    "fp16": (2, 2, 2),
    "bf16": (2, 2, 2),
    "mixed": (4, 4, 2),
}
