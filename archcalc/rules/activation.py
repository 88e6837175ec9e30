"""Activation family. FLOPs per element count elementary operations (see elementwise):

Relu max(x, 0): 1; LeakyRelu / PRelu compare and multiply: 2; Sigmoid 1/(1+exp(-x)):
4; HardSigmoid max(0, min(1, a*x + b)): 4; Tanh: 1; Elu: 4; Selu: 5; Gelu
x*(1 + erf(x/sqrt 2))/2: 5 (tanh form: 9); Swish/SiLU x*sigmoid(a*x): 6; HardSwish
x*hardsigmoid(x): 5; Mish x*tanh(softplus(x)): 5; Softplus log(1 + exp(x)): 3;
Softsign x/(1 + |x|): 3; Clip min and max: 2; Softmax / LogSoftmax max, subtract,
exp, sum, divide (or log-subtract): 5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from archcalc.core.dims import Dim, prod
from archcalc.rules._common import axis_index, required
from archcalc.rules.base import (
    SAVES_INPUTS,
    SAVES_NOTHING,
    SAVES_OUTPUT,
    Inputs,
    LayerCall,
    Output,
    RuleResult,
    Scope,
    StandardNode,
    exported,
    rule,
)

FLOPS_PER_ELEMENT = {
    "Relu": 1, "LeakyRelu": 2, "PRelu": 2, "Sigmoid": 4, "HardSigmoid": 4, "Tanh": 1,
    "Elu": 4, "Celu": 4, "Selu": 5, "ThresholdedRelu": 1, "Swish": 6, "HardSwish": 5,
    "Mish": 5, "Softplus": 3, "Softsign": 3, "Clip": 2, "Shrink": 2,
}


# Their derivative is a function of their result (relu: y > 0; sigmoid: y(1 - y); tanh:
# 1 - y^2), so PyTorch keeps the output for backward rather than the input.
DIFFERENTIATED_FROM_OUTPUT = {"Relu", "Sigmoid", "Tanh", "Elu", "Celu", "Selu"}


def _activation(x: Sequence[Dim], op: str, flops_per_element: int, weights=()) -> RuleResult:
    flops = flops_per_element * prod(x)
    return RuleResult(
        outputs=(Output(tuple(x)),), flops=flops, weights=weights,
        explain=lambda: [f"output = input shape = {list(x)}",
                         f"FLOPs = {flops_per_element} per element for {op} * {prod(x)} = {flops}"],
    )


def _simple(op: str) -> None:
    def activation(inputs: Inputs, *, alpha=None, beta=None, gamma=None,
                   lambd=None, bias=None, min=None, max=None) -> RuleResult:
        # A stored tensor clamped is a learned value the exporter kept as one (Swin V2's
        # per-head logit_scale, clamp(max=log 100) at run time): a param, as an Add's operand.
        weights = (0,) if op == "Clip" else ()
        return _activation(required(inputs[0]).shape, op, FLOPS_PER_ELEMENT[op], weights=weights)

    activation.__doc__ = f"{op}: shape unchanged, {FLOPS_PER_ELEMENT[op]} FLOPs per element."
    activation.__name__ = op.lower()
    rule(op, saves=SAVES_OUTPUT if op in DIFFERENTIATED_FROM_OUTPUT else SAVES_INPUTS, reads_values=())(activation)


for _op in ("Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "Tanh", "Elu", "Celu", "Selu",
            "ThresholdedRelu", "Swish", "HardSwish", "Mish", "Softplus", "Softsign", "Clip", "Shrink"):
    _simple(_op)


def _swish_as_sigmoid(call: LayerCall) -> list[StandardNode]:
    """Swish (opset 24) has no onnxruntime kernel: x * sigmoid(alpha * x), the layer's name
    on the Mul that gives its output, so tensor and layer names still match the spec's."""
    alpha = float(call.attrs.get("alpha", 1.0))
    x, name = call.inputs[0], call.name
    nodes = []
    gate_input = x
    if alpha != 1.0:
        gate_input = f"{name}/scaled"
        nodes += [StandardNode("Constant", (), (f"{name}/alpha",), f"{name}/alpha", {"value_float": alpha}),
                  StandardNode("Mul", (x, f"{name}/alpha"), (gate_input,), f"{name}/scale")]
    gate = f"{name}/sigmoid"
    return [*nodes, StandardNode("Sigmoid", (gate_input,), (gate,), gate),
            StandardNode("Mul", (x, gate), call.outputs, name)]


exported("Swish", lower=_swish_as_sigmoid)
exported("HardSwish", min_opset=14)


@rule("PRelu", reads_values=())
def prelu(inputs: Inputs) -> RuleResult:
    """max(0, x) + slope * min(0, x); the slope is learned."""
    # The slope is learned whatever its size: torch's nn.PReLU() has one value for all channels.
    result = _activation(required(inputs[0]).shape, "PRelu", FLOPS_PER_ELEMENT["PRelu"], weights=(1,))
    return replace(result, integer_weights=(1,))


@rule("Gelu", reads_values=())
def gelu(inputs: Inputs, *, approximate="none") -> RuleResult:
    """x * Phi(x): 5 FLOPs per element with erf, 9 with the tanh approximation."""
    return _activation(required(inputs[0]).shape, "Gelu", 9 if approximate == "tanh" else 5)


exported("Gelu", min_opset=20)


@rule("Softmax", "LogSoftmax", "Hardmax", saves=SAVES_OUTPUT, reads_values=())
def softmax(inputs: Inputs, *, axis=-1) -> RuleResult:
    """exp(x - max) / sum over `axis`; 5 FLOPs per element."""
    x = required(inputs[0]).shape
    if x:
        axis_index(axis, len(x), "Softmax")
    return _activation(x, "softmax", 5)


@rule("Dropout", saves=SAVES_NOTHING, reads_values=())
def dropout(inputs: Inputs, *, seed=None, ratio=0.5, is_test=0, scope: Scope | None = None) -> RuleResult:
    """Identity at inference (the mask output has the input's shape); no FLOPs."""
    x = required(inputs[0]).shape
    # The mask is bool from Dropout-10; before, it has the input's type (Dropout-7's T).
    opset = scope.graph.opset if scope is not None else None
    mask_dtype = None if opset is not None and opset < 10 else "bool"
    return RuleResult(outputs=(Output(x), Output(x, mask_dtype)),
                      explain=lambda: [f"output = input shape = {list(x)} (identity at inference)"])
