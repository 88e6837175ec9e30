"""Recurrent family: LSTM, GRU and RNN, forward, reverse or bidirectional, layout 0 or 1.

Params are W [dirs, gates*hidden, input], R [dirs, gates*hidden, hidden], B [dirs,
2*gates*hidden] (ONNX keeps the input and the recurrence bias, as torch does) and, for
LSTM, the peepholes P [dirs, 3*hidden]; gates are 4 (LSTM), 3 (GRU), 1 (RNN).

MACs = seq * batch * dirs * gates * hidden * (input + hidden): every step multiplies
the input by W and the previous hidden state by R. FLOPs = 2 * MACs plus, per step,
direction, batch item and hidden unit:
- the bias adds, 2 per gate with B;
- the gate activations, each as its activation rule counts it (Sigmoid 4, Tanh 1, ...):
  LSTM f on 3 gates, g on the cell candidate, h on the cell; GRU f on 2 gates, g on
  the candidate; RNN f once;
- the state update: LSTM c = f*c + i*g and h = o*h(c), 4; GRU r applied to the
  recurrence (1) and h = (1 - z)*h~ + z*h (4), 5; RNN none;
- LSTM peepholes (with P) 6 (3 multiplies, 3 adds); clip (when set) 2 per gate.
"""

from __future__ import annotations

from collections.abc import Sequence

from archcalc.core.dims import Dim, is_static
from archcalc.core.errors import ShapeError
from archcalc.rules._common import required
from archcalc.rules.activation import FLOPS_PER_ELEMENT
from archcalc.rules.base import GLOBAL, Inputs, Output, RuleResult, TensorState, rule

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
# How many times per hidden unit and step each of the op's activations (f, g, h) is applied.
ACTIVATION_USES = {"LSTM": (3, 1, 1), "GRU": (2, 1), "RNN": (1,)}
DEFAULT_ACTIVATIONS = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh"), "RNN": ("Tanh",)}
UPDATE_FLOPS = {"LSTM": 4, "GRU": 5, "RNN": 0}
PEEPHOLE_FLOPS = 6
CLIP_FLOPS = 2
# Activations the recurrent ops name that have no rule of their own: a*x + b, a*tanh(b*x).
RECURRENT_ONLY_ACTIVATIONS = {"Affine": 2, "ScaledTanh": 3}
DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


def _activation_cost(name: str, op: str) -> int:
    cost = FLOPS_PER_ELEMENT.get(name, RECURRENT_ONLY_ACTIVATIONS.get(name))
    if cost is None:
        raise ShapeError(f"{op} activation '{name}' is not one ONNX defines",
                         fix="use Relu, Tanh, Sigmoid, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, "
                             "HardSigmoid, Elu, Softsign or Softplus")
    return cost


def _check(tensor: TensorState | None, expected: Sequence[Dim], what: str, op: str) -> None:
    if tensor is None:
        return
    shape = tuple(tensor.shape)
    if len(shape) != len(expected) or any(is_static(a) and is_static(b) and a != b
                                          for a, b in zip(shape, expected)):
        raise ShapeError(f"{op}'s {what} has shape {list(shape)}, expected {list(expected)}",
                         fix="W is [directions, gates*hidden, input], R [directions, gates*hidden, hidden], "
                             "B [directions, 2*gates*hidden], P [directions, 3*hidden]")


def _recurrent(op: str, inputs: Inputs, hidden_size: int | None, direction: str,
               layout: int, activations: Sequence[str] | None, clip: float | None) -> RuleResult:
    x, r = required(inputs[0]).shape, required(inputs[2]).shape
    bias = inputs[3] if len(inputs) > 3 else None
    peephole = inputs[7] if op == "LSTM" and len(inputs) > 7 else None
    if direction not in DIRECTIONS:
        raise ShapeError(f"{op} direction '{direction}' is not forward, reverse or bidirectional")
    if len(x) != 3:
        raise ShapeError(f"{op}'s input has shape {list(x)}; it needs [seq, batch, input] (layout 0) "
                         "or [batch, seq, input] (layout 1)")
    if len(r) != 3:
        raise ShapeError(f"{op}'s R has shape {list(r)}; it needs [directions, gates*hidden, hidden]")
    dirs, gates = DIRECTIONS[direction], GATES[op]
    seq, batch = (x[1], x[0]) if layout else (x[0], x[1])
    features = x[2]
    hidden = hidden_size if hidden_size is not None else r[2]
    _check(inputs[1], (dirs, gates * hidden, features), "W", op)
    _check(inputs[2], (dirs, gates * hidden, hidden), "R", op)
    _check(bias, (dirs, 2 * gates * hidden), "B", op)
    _check(peephole, (dirs, 3 * hidden), "P", op)

    uses = ACTIVATION_USES[op]
    names = tuple(activations) if activations else DEFAULT_ACTIVATIONS[op]
    if len(names) == len(uses):  # one list for every direction
        names = names * dirs
    if len(names) < len(uses) * dirs:
        raise ShapeError(f"{op} has {len(names)} activations; it needs {len(uses)} per direction ({dirs})")
    per_unit = 0
    for d in range(dirs):
        chosen = names[d * len(uses):(d + 1) * len(uses)]
        per_unit += sum(n * _activation_cost(name, op) for n, name in zip(uses, chosen))
        per_unit += UPDATE_FLOPS[op] + (2 * gates if bias is not None else 0) \
            + (PEEPHOLE_FLOPS if peephole is not None else 0) + (CLIP_FLOPS * gates if clip else 0)
    steps = seq * batch * hidden
    macs = seq * batch * dirs * gates * hidden * (features + hidden)
    flops = 2 * macs + per_unit * steps

    y = (batch, seq, dirs, hidden) if layout else (seq, dirs, batch, hidden)
    state = (batch, dirs, hidden) if layout else (dirs, batch, hidden)
    outputs = (Output(y), Output(state)) + ((Output(state),) if op == "LSTM" else ())
    weights = (1, 2, 3, 7) if op == "LSTM" else (1, 2, 3)
    params = dirs * gates * hidden * (features + hidden) + (dirs * 2 * gates * hidden if bias is not None else 0) \
        + (dirs * 3 * hidden if peephole is not None else 0)
    saved_per_step = gates + (1 if op == "LSTM" else 0)  # gate activations (and the cell state)

    def explain() -> list[str]:
        b = " + B" if bias is not None else ""
        p = " + P" if peephole is not None else ""
        return [
            f"{direction} {op}: seq {seq}, batch {batch}, input {features}, hidden {hidden}, {gates} gate(s)",
            f"Y = {list(y)}, Y_h = {list(state)}",
            f"params = W + R{b}{p} = {dirs} * {gates} * {hidden} * ({features} + {hidden})"
            + (f" + {dirs} * 2 * {gates} * {hidden}" if bias is not None else "")
            + (f" + {dirs} * 3 * {hidden}" if peephole is not None else "") + f" = {params}",
            f"MACs = seq * batch * dirs * gates * hidden * (input + hidden) = {seq} * {batch} * {dirs} * "
            f"{gates} * {hidden} * ({features} + {hidden}) = {macs}",
            f"FLOPs = 2 * MACs + {per_unit} (activations, updates, biases, all directions) * seq * batch * "
            f"hidden = {flops}",
        ]

    return RuleResult(
        outputs=outputs, macs=macs, flops=flops, weights=weights, receptive=GLOBAL, explain=explain,
        backward_state_bytes=4 * saved_per_step * dirs * steps,  # every step's gates, fp32
    )


@rule("LSTM", reads_values=())
def lstm(inputs: Inputs, *, hidden_size=None, direction="forward", layout=0,
         activations=None, activation_alpha=None, activation_beta=None, clip=None, input_forget=0) -> RuleResult:
    """Y, Y_h, Y_c; MACs = seq * batch * dirs * 4 * hidden * (input + hidden); W, R, B, P are params."""
    return _recurrent("LSTM", inputs, hidden_size, direction, layout, activations, clip)


@rule("GRU", reads_values=())
def gru(inputs: Inputs, *, hidden_size=None, direction="forward", layout=0,
        activations=None, activation_alpha=None, activation_beta=None, clip=None,
        linear_before_reset=0) -> RuleResult:
    """Y, Y_h; MACs = seq * batch * dirs * 3 * hidden * (input + hidden) (either linear_before_reset)."""
    return _recurrent("GRU", inputs, hidden_size, direction, layout, activations, clip)


@rule("RNN", reads_values=())
def rnn(inputs: Inputs, *, hidden_size=None, direction="forward", layout=0,
        activations=None, activation_alpha=None, activation_beta=None, clip=None) -> RuleResult:
    """Y, Y_h; MACs = seq * batch * dirs * hidden * (input + hidden); W, R, B are params."""
    return _recurrent("RNN", inputs, hidden_size, direction, layout, activations, clip)
