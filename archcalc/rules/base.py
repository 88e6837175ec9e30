"""The op registry: one rule per op name, each a pure function.

A rule receives the layer's input tensors (shape, dtype and, for small integer
constants, their values) plus the layer's attributes as keyword arguments whose Python
defaults are the ONNX defaults. It returns one :class:`RuleResult`: output shapes,
which inputs are learned weights or buffers, MACs, FLOPs, how each spatial axis is
windowed (for the receptive field) and a lazily built explanation.

Rules raise :class:`~archcalc.core.errors.ShapeError` without context; the engine adds the
file, layer and line.

Besides attributes, a rule may ask for facts about the layer itself by declaring a
keyword-only parameter named in :data:`CONTEXT`; the engine passes those (and only to
rules that declare them). They are not attributes: ``n_outputs`` is how many outputs the
layer declares (Split with no sizes divides its input by it), ``node_name`` the layer's
name (NonZero names its data-dependent length after it), ``op`` the layer's op (for a
rule shared by a family whose members compute different values), ``scope`` a
:class:`Scope` (ops whose attributes hold subgraphs: If, Loop, Scan read the enclosing
graph's tensors by name and analyse their bodies with the engine).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from archcalc.core.dims import Dim, Sym
from archcalc.core.errors import UnknownValue

if TYPE_CHECKING:
    from archcalc.core.graph import Graph, TensorInfo, Value
    from archcalc.core.results import Analysis, LayerResult

Shape = tuple[Dim, ...]

# Values are tracked for small tensors only (shapes, axes, indices): at most this many elements.
MAX_VALUES = 1024


class TensorState(NamedTuple):
    """What a rule may know about an input: its shape, dtype and (small constants) value.

    A named tuple, not a dataclass: one is made for every tensor and hashed for every
    layer (see the engine's rule-result cache), both in C this way."""

    shape: Shape
    dtype: str = "float32"
    value: Value | None = None


# What every rule receives: one state per input the layer lists, None where it lists none
# (an optional input left out, or "" in any place: a rule reading it raises what None does).
Inputs = Sequence[TensorState | None]


@dataclass(frozen=True, slots=True)
class Output:
    """One output of a rule; dtype None means the dtype of the layer's first input."""

    shape: Shape
    dtype: str | None = None
    value: Value | None = None


class Window(NamedTuple):
    """How one spatial axis is windowed: the receptive-field step of a layer. A named
    tuple, so the engine compares a layer's windows (a square kernel's are equal) in C."""

    kernel: int
    stride: int
    pad_begin: int
    dilation: int = 1
    transposed: bool = False


# Receptive-field behaviour besides per-axis windows.
POINTWISE = "pointwise"  # each output element sees the same positions as one input element
GLOBAL = "global"  # each output element sees the whole input


@dataclass(frozen=True, slots=True)
class RuleResult:
    outputs: tuple[Output, ...]
    macs: Dim = 0
    flops: Dim = 0
    # Of `macs`, those done in integer arithmetic (8-bit products accumulated in int32:
    # QLinearConv, MatMulInteger, QGemm, QAttention's projection): the rule says, as only it
    # knows the dtype its products are computed in. Reported apart from float MACs.
    integer_macs: Dim = 0
    weights: tuple[int, ...] = ()
    buffers: tuple[int, ...] = ()
    # Of `weights`, inputs the op only re-views (the same values in another shape or type:
    # Unsqueeze, Reshape, Transpose, Cast): a weight among them is counted by the layer that
    # uses the view as a weight (Caffe2's Scale: Unsqueeze(scale) -> Mul), here only when none does.
    views: tuple[int, ...] = ()
    # Of `weights`, inputs that are learned whatever their dtype or size. Front ends class
    # integer tensors and single values as constants (shapes, axes, indices, an epsilon), but
    # QLinearConv's int32 bias is learned, and so is a one-channel Conv's bias of one value.
    integer_weights: tuple[int, ...] = ()
    receptive: str | tuple[Window, ...] = POINTWISE
    explain: Callable[[], list[str]] | None = None
    # Bytes of op-internal state kept for backward besides whole tensors (max-pool indices,
    # normalisation statistics); stored as int64/fp32 whatever the training precision.
    backward_state_bytes: Dim = 0
    # Layers inside the op (a subgraph's), listed right after it; their counts are already
    # part of this result's, so totals leave them out.
    sublayers: tuple[LayerResult, ...] = ()
    # Weights and buffers the layer uses besides its inputs (a subgraph's own initializers,
    # or enclosing-graph weights it reads by name); counted once each, like weight inputs.
    held: tuple[TensorInfo, ...] = ()
    # Assumptions the counts rest on, for the analysis' warnings (the engine adds the layer).
    warnings: tuple[str, ...] = ()
    # Of `weights`, inputs that pack several values into each stored element, as (input, values
    # per element): MatMulNBits' 4-bit weights, two to a uint8. Params count values, bytes count elements.
    packed_weights: tuple[tuple[int, int], ...] = ()
    # Inputs that are quantisation scales and zero points (QuantizeLinear's y_scale,
    # MatMulNBits' block scales, ...): not params, their stored bytes a figure of their own
    # (Totals.quantization_bytes), each tensor once.
    quantization: tuple[int, ...] = ()
    # How many times the op runs its body (a Loop's trip count, a Scan's length) when it is
    # known: what it costs to run, apart from the counts (verify's --max-work).
    repeats: int | None = None
    # A form of the op whose kernels run at another speed (a Conv with one filter per
    # channel: "depthwise"): device files give it its own efficiency, as `Op.variant`. A
    # dotted variant ("depthwise.strided") is a form of the form before its last dot, whose
    # efficiency a device file that does not tell them apart gives.
    variant: str = ""
    # Equal parts the op's kernel computes one after another (a Conv: each image's groups;
    # a depthwise conv also each channel's kernel taps, as it sweeps its plane once a tap):
    # a device's efficiency curve is read at the FLOPs of one part, as a part's size, not
    # their number, sets the kernel's speed. Measured here, a depthwise channel of 7x7 runs
    # at a quarter of the FLOP rate of one of 56x56 however many channels there are, and a
    # 5x5 kernel at the rate of a 3x3 on the same plane (16 against 15 GFLOP/s at 14x14).
    parts: Dim = 1


@dataclass(frozen=True, eq=False)
class Subgraph:
    """A body held in an attribute (If's branches, Loop's and Scan's body), in no file
    format: the front end that read it binds `convert`, which builds its Graph once a rule
    knows what the op passes in. Rules and the engine so never see protobuf objects.

    ``convert(inputs, scope, prefix, block)``: the body's formal inputs take the states in
    `inputs`; tensors it reads from enclosing graphs take theirs from `scope`; its layers
    are named ``prefix + name`` and belong to `block`.
    """

    name: str
    inputs: tuple[str, ...]  # the body's formal inputs, in order
    convert: Callable[[Sequence[TensorState], Scope, str, str], Graph]

    def graph(self, inputs: Sequence[TensorState], scope: Scope, *, prefix: str, block: str) -> Graph:
        return self.convert(inputs, scope, prefix, block)

    def __repr__(self) -> str:
        return f"<subgraph {self.name!r}>"


@dataclass(frozen=True, slots=True)
class Scope:
    """What a layer sees besides its inputs: the graph it is in, every tensor computed so
    far (by name), the tensors known before inference, the bindings used for counting, and
    the engine itself as `analyze` (graph, bindings) -> Analysis, for the bodies of
    control-flow ops: the engine hands itself down, so rules never import it (as ONNX's
    C++ inference hands control-flow ops a graph inferencer). The mappings are the
    engine's own, read-only for rules."""

    graph: Graph
    states: Mapping[str, TensorState | None]
    known: Mapping[str, TensorInfo]
    bindings: Mapping[str, int]
    analyze: Callable[[Graph, Mapping[str, int]], Analysis]


RuleFn = Callable[..., RuleResult]


class CacheGeometry(NamedTuple):
    """What an attention layer keeps per token in a key/value cache, and its query side."""

    q_heads: Dim
    kv_heads: Dim
    head_size: Dim
    v_head_size: Dim
    q_seq: Dim  # the new tokens' axis (the sequence a prompt fills)
    causal: bool  # is_causal set, or past key/values given: a decoder's self-attention
    past: bool


# An op's cache geometry from its layer's input shapes and attributes (see Rule.cache).
CacheFn = Callable[[Sequence["Shape | None"], Mapping[str, Any]], CacheGeometry]


class RunTimeShape(UnknownValue):
    """Raised by a rule whose output dims are given at run time (a shape, pads, scales or a
    count read from a graph input, not a constant): what is known (the rank, the dims the op
    leaves alone) is still known. `named(layer)` is the result with each unknown dim a symbol
    named after the layer (:func:`run_time_dim`). Raised rather than returned because a
    rule's result is shared by every layer given the same inputs, and these dims are not:
    the engine calls `named` with each layer's name."""

    def __init__(self, message: str, named: Callable[[str], RuleResult]):
        super().__init__(message)
        self.named = named


def run_time_dim(layer: str, output: int, axis: int) -> Sym:
    """The symbol for dim `axis` of output `output` of `layer`, known only at run time."""
    return Sym.symbol(f"{symbol_base(layer)}_out{output}_dim{axis}")


def symbol_base(layer: str) -> str:
    """A layer's name as the stem of the symbols it makes up (word characters only)."""
    return re.sub(r"\W+", "_", layer).strip("_") or "layer"


class LayerCall(NamedTuple):
    """One layer as export sees it: what a lowering rewrites into standard nodes."""

    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any]
    input_shapes: tuple[Shape | None, ...]


class StandardNode(NamedTuple):
    """A node of standard ONNX, in no file format: export writes it as a NodeProto."""

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    name: str
    attrs: Mapping[str, Any] = {}


Lowering = Callable[[LayerCall], list[StandardNode]]
# Shapes a runtime produced, one per input or output; None for one left out or not observed.
ObservedShapes = Sequence["tuple[int, ...] | None"]
# MACs from the shapes a runtime produced, independent of the rule's own arithmetic:
# (input shapes, output shapes, attributes) -> MACs. Verify calls it only when the first two
# inputs' and the first output's shapes are known.
ObservedMacs = Callable[[ObservedShapes, ObservedShapes, Mapping[str, Any]], int]

CONTEXT = frozenset({"n_outputs", "node_name", "op", "scope", "bindings"})

# What a layer keeps from its forward pass for the backward pass (training memory):
# its data inputs (the default: conv and linear need them for the weight gradient), its
# output (ReLU, sigmoid, tanh and softmax differentiate from their result), or nothing
# (addition, concatenation, layout changes pass gradients through unchanged).
SAVES_INPUTS = "inputs"
SAVES_OUTPUT = "output"
SAVES_NOTHING = "nothing"
# A view (flatten, reshape, squeeze): saves nothing, and its output shares its input's
# memory, so a later layer saving the output saves no new bytes.
SAVES_VIEW = "view"


@dataclass(frozen=True)
class Rule:
    op: str
    fn: RuleFn
    attributes: frozenset[str]
    summary: str
    context: frozenset[str] = frozenset()
    saves: str = SAVES_INPUTS
    # An independent reference for `archcalc verify` (see ObservedMacs); None: the rule's
    # MACs are only recomputed by the rule itself on the observed shapes.
    observed_macs: ObservedMacs | None = None
    # The inputs whose product the op's MACs count: backward multiplies the output's
    # gradient by each of them again (dL/dW = x * dL/dy, dL/dx = W * dL/dy).
    multiplies: tuple[int, ...] = (0, 1)
    # The op runs its body again and again, each run reading values the last one wrote
    # (Loop, Scan): from the second run on they depend on the body's weights.
    carries: bool = False
    # How archcalc's export writes the op as standard ONNX: the oldest default-domain opset
    # whose form of it export writes, and a lowering into ops onnxruntime runs (None: the
    # layer is written as it is).
    min_opset: int = 13
    lower: Lowering | None = None
    # The inputs whose values (small constants) the rule reads; None: any input's, as shape
    # and value-propagating rules do. The engine hands the others over without their values
    # and keys its result cache on what the rule sees, so that a Conv's 16-value bias does not
    # make each layer a distinct call (tests/rules/test_value_reads.py holds rules to it).
    reads_values: tuple[int, ...] | None = None
    # Inputs of which the op reads only as many elements as it writes (Gather's table: the
    # rows it picks; Slice's input: the slice), not the whole tensor: bytes moved (the
    # roofline) count them at the output's size.
    reads_picked: tuple[int, ...] = ()
    # For an op that attends over past tokens (Attention): what it keeps in a key/value cache
    # when a decoder generates (engine/kv.py asks it; None: the op keeps no cache).
    cache: CacheFn | None = None

    def visible(self, inputs: Inputs) -> Inputs:
        """`inputs` as the rule sees them: values only where it reads them."""
        reads = self.reads_values
        if reads is None:
            return inputs
        for index, state in enumerate(inputs):  # most layers' inputs hold no value: no copy then
            if state is not None and state.value is not None and index not in reads:
                return [s._replace(value=None) if s is not None and s.value is not None and i not in reads else s
                        for i, s in enumerate(inputs)]
        return inputs

    def __call__(self, inputs: Inputs, attrs: dict[str, Any],
                 context: Mapping[str, Any] | None = None) -> RuleResult:
        # Attributes a rule does not model (e.g. ONNX training-mode flags) do not change
        # shapes or counts; dropping them keeps every rule's signature to what it uses.
        if not self.attributes.issuperset(attrs):
            attrs = {k: v for k, v in attrs.items() if k in self.attributes}
        if self.context and context:
            return self.fn(inputs, **attrs, **{k: v for k, v in context.items() if k in self.context})
        return self.fn(inputs, **attrs)


RULES: dict[str, Rule] = {}
# Rules of ops in other domains (onnxruntime's com.microsoft contrib ops), by domain then op:
# a contrib op may share a standard op's name (Attention, Gelu) and not its inputs.
DOMAIN_RULES: dict[str, dict[str, Rule]] = {}


def rule(*ops: str, saves: str = SAVES_INPUTS, observed_macs: ObservedMacs | None = None, domain: str = "",
         multiplies: tuple[int, ...] = (0, 1), carries: bool = False,
         reads_values: tuple[int, ...] | None = None, reads_picked: tuple[int, ...] = ()) -> Callable[[RuleFn], RuleFn]:
    """Register `fn` as the rule of each op in `ops` (a family sharing one formula);
    `saves` says what the op keeps for its backward pass; `observed_macs`, MACs computed
    from observed input and output shapes alone, is what verify checks the rule against;
    `domain`, when not ONNX's default, the domain the ops belong to; `multiplies`, the
    inputs whose product its MACs count; `carries`, whether its body's runs hand values on;
    `reads_values`, the inputs whose values it reads, () for none; `reads_picked`, the
    inputs it reads only a part of, as large as its output (see Rule)."""

    def register(fn: RuleFn) -> RuleFn:
        params = inspect.signature(fn).parameters
        keyword_only = frozenset(name for name, p in params.items() if p.kind is p.KEYWORD_ONLY)
        summary = (inspect.getdoc(fn) or "").splitlines()[0] if fn.__doc__ else ""
        registry = DOMAIN_RULES.setdefault(domain, {}) if domain else RULES
        for op in ops:
            if op in registry:
                raise ValueError(f"op {op!r} already has a rule: {registry[op].fn.__qualname__}")
            registry[op] = Rule(op, fn, keyword_only - CONTEXT, summary, keyword_only & CONTEXT, saves, observed_macs,
                                multiplies, carries, reads_values=reads_values, reads_picked=reads_picked)
        return fn

    return register


def exported(*ops: str, min_opset: int | None = None, lower: Lowering | None = None) -> None:
    """Say how export writes ops already registered (default domain): their standard form
    needs `min_opset` or newer; `lower` rewrites a layer into standard nodes onnxruntime
    runs. Written beside the op's rule, so everything about an op stays in its family."""
    for op in ops:
        known = RULES[op]
        RULES[op] = replace(known, min_opset=known.min_opset if min_opset is None else min_opset,
                            lower=lower or known.lower)


def keeps_cache(*ops: str, geometry: CacheFn) -> None:
    """Say that ops already registered (default domain) keep a key/value cache when a
    decoder generates, with `geometry` giving its size; written beside the op's rule."""
    for op in ops:
        RULES[op] = replace(RULES[op], cache=geometry)


def get_rule(op: str) -> Rule | None:
    if not RULES:
        import archcalc.rules  # noqa: F401  (registers every family)
    return RULES.get(op)


# Domains whose ops the rules model: ONNX's default domain and archcalc's own (a spec's MinPool).
RULED_DOMAINS = frozenset({"", "ai.onnx", "archcalc"})


def rule_for(domain: str, op: str) -> Rule | None:
    """The rule of `op` in `domain`; None for ops without one (a custom op may share a
    standard op's name: it has a rule only where its own domain registered one)."""
    if domain in RULED_DOMAINS:
        return get_rule(op)
    get_rule("")
    return DOMAIN_RULES.get(domain, {}).get(op)


def all_rules() -> dict[str, Rule]:
    get_rule("")
    return dict(RULES)


def domain_rules(domain: str) -> dict[str, Rule]:
    """The rules registered for `domain` (not ONNX's default), by op."""
    get_rule("")
    return dict(DOMAIN_RULES.get(domain, {}))
