"""What one training step costs: forward and backward compute, and the memory it holds.

Backward compute follows the seed's backpropagation section. For a layer that
multiplies two operands (Conv, ConvTranspose, Gemm, MatMul, Einsum: the ops with MACs),
the gradient with respect to each operand is one product of the same size as the
forward one (dL/dW = I * dL/dO; dL/dI = full convolution of dL/dO with the flipped
kernel), so each operand that needs a gradient costs the forward MACs again. An operand
needs a gradient when it is a trainable weight, or an activation that depends on one.
The input image needs none; so does everything before the first trainable layer,
which is why freezing a backbone (feature extraction) removes its whole backward
pass. Other layers on the gradient path cost their forward FLOPs again (the
element-wise derivative), and bias gradients a sum over the output.

Memory of a step: weights; one gradient per trainable weight; the optimizer's state
(SGD none, momentum one buffer, Adam/AdamW two, each of the weights' dtype, as
PyTorch's optimizers keep it: fp32 in mixed precision, half in pure fp16/bf16); and the activations
saved for the backward pass, each tensor once, as each op's rule declares (its inputs,
its output, or nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn, cast

from archcalc.core.dims import bind, prod
from archcalc.core.dtypes import is_integral
from archcalc.core.errors import ArchcalcError, ShapeError
from archcalc.core.graph import Graph
from archcalc.core.results import Analysis, LayerResult
from archcalc.core.units import human_bytes
from archcalc.engine.inference import analyze
from archcalc.engine.setup import OPTIMIZER_STATES, PRECISIONS
from archcalc.rules.base import SAVES_INPUTS, SAVES_NOTHING, SAVES_OUTPUT, SAVES_VIEW, rule_for


@dataclass(frozen=True, slots=True)
class TrainingLayer:
    name: str
    op: str
    forward_macs: int
    forward_flops: int
    grad_input_macs: int
    grad_weight_macs: int
    backward_flops: int
    saved_bytes: int  # activations this layer keeps for backward (first holder of each tensor)
    on_gradient_path: bool

    @property
    def backward_macs(self) -> int:
        return self.grad_input_macs + self.grad_weight_macs

    def to_json(self) -> dict:
        return {"name": self.name, "op": self.op, "forward_macs": self.forward_macs,
                "backward_macs": self.backward_macs, "grad_input_macs": self.grad_input_macs,
                "grad_weight_macs": self.grad_weight_macs, "forward_flops": self.forward_flops,
                "backward_flops": self.backward_flops, "saved_activation_bytes": self.saved_bytes,
                "on_gradient_path": self.on_gradient_path}


@dataclass(frozen=True, slots=True)
class TrainingTotals:
    optimizer: str
    precision: str
    batch: int
    forward_macs: int
    backward_macs: int
    forward_flops: int
    backward_flops: int
    weight_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    saved_activation_bytes: int

    @property
    def step_macs(self) -> int:
        return self.forward_macs + self.backward_macs

    @property
    def step_flops(self) -> int:
        return self.forward_flops + self.backward_flops

    @property
    def memory_bytes(self) -> int:
        return self.weight_bytes + self.gradient_bytes + self.optimizer_bytes + self.saved_activation_bytes

    def to_json(self) -> dict:
        return {"optimizer": self.optimizer, "precision": self.precision, "batch": self.batch,
                "forward_macs": self.forward_macs, "backward_macs": self.backward_macs,
                "step_macs": self.step_macs, "forward_flops": self.forward_flops,
                "backward_flops": self.backward_flops, "step_flops": self.step_flops,
                "weight_bytes": self.weight_bytes, "gradient_bytes": self.gradient_bytes,
                "optimizer_bytes": self.optimizer_bytes, "saved_activation_bytes": self.saved_activation_bytes,
                "memory_bytes": self.memory_bytes}


@dataclass(frozen=True)
class TrainingAnalysis:
    layers: tuple[TrainingLayer, ...]
    totals: TrainingTotals

    def to_json(self) -> dict:
        return {"totals": self.totals.to_json(), "layers": [layer.to_json() for layer in self.layers]}


def check_choices(optimizer: str, precision: str) -> None:
    if optimizer not in OPTIMIZER_STATES:
        raise ArchcalcError(f"unknown optimizer '{optimizer}'", fix="use one of " + ", ".join(OPTIMIZER_STATES))
    if precision not in PRECISIONS:
        raise ArchcalcError(f"unknown precision '{precision}'", fix="use one of " + ", ".join(PRECISIONS))


def training_cost(graph: Graph, analysis: Analysis, optimizer: str = "adam",
                  precision: str = "fp32") -> TrainingAnalysis:
    """Per-layer and total cost of one training step of the analysed graph."""
    check_choices(optimizer, precision)
    weight_size, gradient_size, activation_size = PRECISIONS[precision]
    nodes = {node.name: node for node in graph.nodes}
    needs_grad: set[str] = set()  # tensors that depend on a trainable weight
    saved: set[str] = set()
    views: dict[str, str] = {}  # a view's output -> the tensor whose memory it shares
    # If/Loop/Scan layers: each is followed by its body's layers (named `parent`), whose counts
    # its own already include. Backward through a body is backward through its layers, so such
    # a layer's training figures are the sums of its body layers' (see _BodyWalk).
    holders = {layer.parent for layer in analysis.layers if layer.parent}
    walk = _BodyWalk(analysis) if holders else None
    layers: list[TrainingLayer | None] = []  # None: a layer holding a body, until its body is read
    node = None
    for result in analysis.layers:
        if walk is not None:
            walk.close_until(result.parent, layers, needs_grad)
        if result.parent:  # a body's layer: no node of this graph; the layer holding the body decides freezing
            inputs = tuple([tensor.name for tensor in result.inputs])
            assert walk is not None  # a layer with a parent makes `holders` non-empty
            walk.mark_body_inputs(result, needs_grad)
        else:
            node = nodes[result.name]
            inputs = node.inputs
        data_inputs = [name for name in inputs if name and _is_activation(name, analysis)]
        inputs_need_grad = [name in needs_grad for name in inputs if name]
        if result.name in holders:
            assert walk is not None
            walk.open(result, len(layers), any(inputs_need_grad))
            layers.append(None)  # filled in from its body's layers when they are all read
            continue
        # A trainable weight counted at an earlier layer still needs its gradient here: a tied
        # LM head transposes the embedding's table (its params count at the embedding).
        trainable = result.trainable_params > 0 or (not result.parent and any(
            _is_trainable_weight(name, node, analysis) for name in inputs if name))
        on_path = trainable or any(inputs_need_grad)
        if on_path:
            needs_grad.update(out.name for out in result.outputs)
        rule = rule_for(result.domain, result.op)
        policy = rule.saves if rule is not None else SAVES_INPUTS
        if policy == SAVES_VIEW and data_inputs:
            for out in result.outputs:
                views[out.name] = views.get(data_inputs[0], data_inputs[0])
        grad_input = grad_weight = 0
        backward_flops = 0
        saved_bytes = 0
        if on_path:
            if result.macs:
                multiplied = rule.multiplies if rule is not None else (0, 1)
                operands = [inputs[i] for i in multiplied if i < len(inputs)]
                for operand in operands:
                    if operand in needs_grad:
                        grad_input += result.macs
                    elif _is_trainable_weight(operand, node, analysis):
                        grad_weight += result.macs
            elementwise = result.flops - 2 * result.macs
            backward_flops = 2 * (grad_input + grad_weight) + elementwise
            saved_bytes = _saved_bytes(policy, result, data_inputs, saved, views, analysis, activation_size)
            saved_bytes += result.backward_state_bytes
        layer = TrainingLayer(result.name, result.op, result.macs, result.flops, grad_input, grad_weight,
                              backward_flops, saved_bytes, on_path)
        layers.append(layer)
        if walk is not None:
            walk.add(result, layer)
    if walk is not None:
        walk.close_until("", layers, needs_grad)
    complete = cast(list[TrainingLayer], layers)  # each None was filled in when its body closed
    top_level = [layer for layer, result in zip(complete, analysis.layers) if not result.parent]
    totals = analysis.totals
    trainable_params = totals.trainable_params
    weights = (totals.params + totals.buffers) * weight_size
    batch = analysis.bindings.get("batch", 1)
    return TrainingAnalysis(
        layers=tuple(complete),
        totals=TrainingTotals(
            optimizer=optimizer, precision=precision, batch=batch,
            forward_macs=totals.macs, backward_macs=sum(x.backward_macs for x in top_level),
            forward_flops=totals.flops, backward_flops=sum(x.backward_flops for x in top_level),
            weight_bytes=weights, gradient_bytes=trainable_params * gradient_size,
            optimizer_bytes=trainable_params * OPTIMIZER_STATES[optimizer] * weight_size,
            saved_activation_bytes=sum(x.saved_bytes for x in top_level),
        ),
    )


class _BodyWalk:
    """Training figures of If/Loop/Scan layers, from those of their bodies' layers.

    What is counted: a body layer is costed like any layer (its MACs and FLOPs already cover
    every run of the body, as in inference); a body's float formal inputs (the values the op
    passes in) need a gradient when some input of the op does, or when a Loop or Scan holds
    trainable weights (its carried values depend on them after the first run); the layer
    holding the body gets the sums of its body layers' backward MACs, FLOPs and saved
    activations, and is on the gradient path when it or one of them is. Saved activations
    of a body are those of one run of it (a lower bound for a Loop or Scan: backward through
    n runs keeps n sets), and for an If both branches count. Training through control flow
    is an estimate; the body's layers are listed so that it can be checked."""

    def __init__(self, analysis: Analysis):
        self.analysis = analysis
        self.opened: list[tuple[LayerResult, int, bool, list[TrainingLayer]]] = []  # innermost last
        self.produced: set[str] = set()  # tensors written by body layers read so far
        self.feeding: dict[str, bool] = {}  # holder name -> some input of it needs a gradient

    def open(self, result: LayerResult, index: int, inputs_need_grad: bool) -> None:
        self.opened.append((result, index, inputs_need_grad, []))
        # A Loop's or Scan's carried values depend on its weights from the second run on:
        # counted for every run (one run too many), as the body's counts are not split by run.
        rule = rule_for(result.domain, result.op)
        carries_grad = rule is not None and rule.carries and result.trainable_params > 0
        self.feeding[result.name] = inputs_need_grad or carries_grad or self.feeding.get(result.parent, False)

    def add(self, result: LayerResult, layer: TrainingLayer) -> None:
        self.produced.update(out.name for out in result.outputs)
        if self.opened and self.opened[-1][0].name == result.parent:
            self.opened[-1][3].append(layer)

    def mark_body_inputs(self, result: LayerResult, needs_grad: set[str]) -> None:
        """Add to `needs_grad` the body's float formal inputs `result` reads (written by no
        body layer, and no weight or constant) when the holder's need one (see `open`)."""
        if not self.feeding.get(result.parent):
            return
        known, produced = self.analysis.known_tensors, self.produced
        needs_grad.update(tensor.name for tensor in result.inputs if tensor.name and tensor.name not in produced
                          and tensor.name not in known and not is_integral(tensor.dtype))

    def close_until(self, parent: str, layers: list, needs_grad: set[str]) -> None:
        """Finish the holders whose bodies end before a layer whose parent is `parent`."""
        while self.opened and self.opened[-1][0].name != parent:
            result, index, inputs_need_grad, body = self.opened.pop()
            on_path = inputs_need_grad or result.trainable_params > 0 or any(x.on_gradient_path for x in body)
            if on_path:
                needs_grad.update(out.name for out in result.outputs)
            layer = TrainingLayer(result.name, result.op, result.macs, result.flops,
                                  sum(x.grad_input_macs for x in body), sum(x.grad_weight_macs for x in body),
                                  sum(x.backward_flops for x in body), sum(x.saved_bytes for x in body), on_path)
            layers[index] = layer
            self.add(result, layer)


def _is_activation(name: str, analysis: Analysis) -> bool:
    info = analysis.known_tensors.get(name)
    return info is None or info.kind == "input"


def _is_trainable_weight(name: str, node, analysis: Analysis) -> bool:
    info = analysis.known_tensors.get(name)
    return info is not None and info.kind == "weight" and info.trainable and node.trainable


def _saved_bytes(policy: str, result, data_inputs: list[str], saved: set[str], views: dict[str, str],
                 analysis: Analysis, size: int) -> int:
    if policy in (SAVES_NOTHING, SAVES_VIEW):
        return 0
    names = [out.name for out in result.outputs[:1]] if policy == SAVES_OUTPUT else data_inputs
    total = 0
    for name in (views.get(n, n) for n in names):
        if name in saved:
            continue
        saved.add(name)
        tensor = analysis.tensors.get(name)
        if tensor is None and result.parent:  # a body's tensor: the layer holds its shape
            tensor = next((t for t in (*result.inputs, *result.outputs) if t.name == name), None)
        if tensor is not None and tensor.shape is not None:
            total += bind(prod(tensor.shape), analysis.bindings) * size
    return total


def largest_batch(graph: Graph, bindings: Mapping[str, int], memory: int, optimizer: str,
                  precision: str) -> tuple[int, TrainingTotals]:
    """The largest batch whose training step fits in `memory` bytes, and its totals.

    Step memory is affine in the batch (weights, gradients and optimizer state are
    fixed; saved activations grow linearly), so two analyses give the answer. A model
    whose graph inputs have no symbolic `batch` dim cannot grow with it: refused."""
    def analysed(batch: int) -> Analysis:
        return analyze(graph, {**bindings, "batch": batch})  # ONNX batch dims (N, batch_size) follow it

    def step(batch: int) -> TrainingTotals:
        return training_cost(graph, analysed(batch), optimizer, precision).totals

    if "batch" not in analysed(1).bindings:  # the engine keeps only bindings that bind a dim
        _refuse_fixed_batch(graph)
    try:
        two = step(2)
    except ShapeError as error:  # a shape fixed inside the graph (a Reshape to [1, C]): batch 1 only
        raise ArchcalcError(f"--fit needs a model that runs at every batch, and this one does not run at "
                            f"batch 2: {error.message}", where=error.where or graph.path,
                            fix="the model runs at batch 1 only; export it with a dynamic batch dim") from None
    one = step(1)
    per_sample = two.memory_bytes - one.memory_bytes
    fixed = one.memory_bytes - per_sample
    if one.memory_bytes > memory:
        raise ArchcalcError(
            f"even batch 1 needs {human_bytes(one.memory_bytes)}, more than the {human_bytes(memory)} given",
            fix="use a smaller model, a lighter optimizer (sgd), lower precision, or more memory")
    batch = max(1, (memory - fixed) // per_sample) if per_sample > 0 else 1
    totals = step(batch)
    while totals.memory_bytes > memory and batch > 1:  # guards the affine assumption
        batch -= 1
        totals = step(batch)
    return batch, totals


def _refuse_fixed_batch(graph: Graph) -> NoReturn:
    """--fit on a graph whose batch binds no dim: growing it changes nothing."""
    inputs = [(name, info.shape) for name, info in graph.tensors.items()
              if info.kind == "input" and isinstance(info.shape, tuple) and info.shape]
    if not inputs:
        raise ArchcalcError("the model has no batched input: --fit needs a symbolic batch dim", where=graph.path,
                            fix="--fit finds the largest batch of a model whose inputs have a `batch` dim")
    name, shape = inputs[0]
    fed = f"--input-shape {name}=" + ",".join(["batch", *(str(dim) for dim in shape[1:])])
    raise ArchcalcError(f"the model's batch is fixed at {shape[0]}: --fit needs a symbolic batch dim",
                        where=graph.path, fix=f"feed the input with a symbolic batch ({fed}), or export the "
                                              "model with a dynamic batch dim")
