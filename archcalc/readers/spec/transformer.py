"""Transformer layers of the spec language, each lowered to standard ONNX ops.

`embedding`, `positional`, `attention`, `rmsnorm`, `mlp`, `patch_embed`, `project`,
`select_token` and `transpose` (layernorm and the activations are in layers.py). A layer
that is several ops in every framework (attention: three projections, the attention
product, an output projection) is a :class:`~archcalc.readers.spec.layers.Composite` of
the graph's existing ops (MatMul, Add, Attention, RotaryEmbedding, Gather, Slice, ...),
so shapes, params, MACs, `explain` and export all come from the ops' own rules and a
transformer spec verifies in onnxruntime as a CNN spec does. Weights of token-wise
projections are stored [in_features, out_features] (what MatMul takes; PyTorch's Linear
keeps the transpose, with the same count).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from archcalc.core.dims import Dim, is_static
from archcalc.core.errors import ShapeError, SpecError
from archcalc.core.graph import Shape, TensorInfo
from archcalc.readers.spec.layers import (
    REQUIRED,
    Composite,
    LayerType,
    Lowered,
    Named,
    Step,
    boolean,
    buffer,
    choice,
    integer,
    non_negative_int,
    number,
    positive_int,
    weight,
)

Shapes = Sequence[Shape | None]
StepInput = int | str | TensorInfo | Named | None

# T5 uses 128; the bucket of each relative distance up to it is a constant of 2 * distance + 1 values.
MAX_RELATIVE_DISTANCE = 65536

# The activations an mlp may use, as the op (and attributes) the layer type of that name lowers to.
ACTIVATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "relu": ("Relu", {}), "gelu": ("Gelu", {}), "gelu_tanh": ("Gelu", {"approximate": "tanh"}),
    "silu": ("Swish", {}), "tanh": ("Tanh", {}), "sigmoid": ("Sigmoid", {}),
}


class _Steps:
    """Builds one layer's steps; each method returns the part name later steps refer to."""

    def __init__(self, layer: str) -> None:
        self.layer = layer
        self.steps: list[Step] = []

    def op(self, part: str, op: str, *inputs: StepInput, **attrs: Any) -> str:
        self.steps.append(Step(part, op, inputs, attrs))
        return part

    def ints(self, part: str, values: Sequence[int], scalar: bool = False) -> TensorInfo:
        """An int64 constant of this layer (a scalar, or 1-D)."""
        shape: Shape = () if scalar else (len(values),)
        return TensorInfo(f"{self.layer}.{part}", shape, "int64", "constant", tuple(values))

    def linear(self, part: str, source: StepInput, in_width: Callable[[Shapes], Dim],
               out_width: Callable[[Shapes], Dim], bias: bool) -> str:
        """x @ W (+ b) over the last axis: MatMul, and Add for the bias."""
        w = weight(f"{self.layer}.{part}.weight", lambda s: (in_width(s), out_width(s)),
                   "[in_features, out_features]")
        if not bias:
            return self.op(part, "MatMul", source, w)
        self.op(f"{part}.matmul", "MatMul", source, w)
        b = weight(f"{self.layer}.{part}.bias", lambda s: (out_width(s),), "[out_features]")
        return self.op(part, "Add", f"{part}.matmul", b)

    def sequence_positions(self, part: str, source: StepInput) -> tuple[str, str]:
        """0..S-1 for the sequence axis (1) of `source`, computed in the graph so the layer
        follows the input's length: (the positions [S], the dims [B, S])."""
        dims = self.op(f"{part}.shape", "Shape", source)
        batch_seq = self.op(f"{part}.batch_seq", "Slice", dims, self.ints(f"{part}.zero", [0]),
                            self.ints(f"{part}.two", [2]))
        length = self.op(f"{part}.length", "Gather", dims, self.ints(f"{part}.seq_axis", [1], scalar=True))
        positions = self.op(f"{part}.range", "Range", self.ints(f"{part}.start", [0], scalar=True), length,
                            self.ints(f"{part}.delta", [1], scalar=True))
        return positions, batch_seq

    def done(self) -> Composite:
        return Composite(tuple(self.steps))


def width(layer: str, index: int = 0, min_rank: int = 2) -> Callable[[Shapes], Dim]:
    """The last dim (features) of the layer's data input `index`."""
    def of(s: Shapes) -> Dim:
        x = s[index] if index < len(s) else None
        if x is None or len(x) < min_rank:
            raise ShapeError(f"'{layer}' needs a [batch, ..., features] input of rank {min_rank} or more, "
                             f"got {list(x or ())}",
                             fix="feed it token vectors [batch, seq, features] (an embedding or patch_embed first)")
        return x[-1]
    return of


def _optional_positive(name: str, value: Any) -> int | None:
    """A positive int, or None (and 0) for 'derived from the input'."""
    return None if value is None or (type(value) is int and value == 0) else positive_int(name, value)


# -- embedding, positions -------------------------------------------------------------------

def _embedding(name: str, a: dict) -> Composite:
    shape = (positive_int("vocab", a["vocab"]), positive_int("dim", a["dim"]))
    steps = _Steps(name)
    tie = a["tie"]
    if tie is not None:  # another embedding's table (T5's encoder and decoder share one)
        if not isinstance(tie, str) or not tie:
            raise SpecError(f"field 'tie' is {tie!r}", fix="name the embedding layer whose table to share: tie: shared")
        steps.op("lookup", "Gather", Named(f"{tie}.weight", "tie"), 0)
        return steps.done()
    table = TensorInfo(f"{name}.weight", shape)
    table.kind = "weight"
    steps.op("lookup", "Gather", table, 0)
    return steps.done()


def _positional(name: str, a: dict) -> Composite:
    kind = choice("kind", a["kind"], ("learned", "sinusoidal", "rotary"))
    if kind == "rotary":
        raise SpecError("rotary positions rotate the queries and keys inside attention, not the token vectors",
                        fix="remove this layer and give the attention layers `positional: rotary`")
    steps = _Steps(name)
    features = width(name, min_rank=3)
    if kind == "sinusoidal":
        # Fixed sines and cosines, one row per position: state that is not learned (a buffer).
        def sized_to_input(s: Shapes) -> Shape:
            dim = features(s)  # checks the rank first
            return (s[0][1], dim)  # type: ignore[index]

        table = buffer(f"{name}.table", sized_to_input, "[seq, features]")
        steps.op("add", "Add", 0, table)
        return steps.done()
    limit = a["max_positions"]
    if limit is None:
        raise SpecError("a learned position table needs its size", fix="add max_positions: N (e.g. 512)")
    limit = positive_int("max_positions", limit)

    def table_shape(s: Shapes) -> Shape:
        seq = s[0][1] if s[0] is not None and len(s[0]) >= 3 else None
        if is_static(seq) and seq > limit:
            raise ShapeError(f"the input has {seq} positions, more than the table's max_positions {limit}",
                             fix="shorten the input or raise max_positions")
        return (limit, features(s))

    table = weight(f"{name}.weight", table_shape, "[max_positions, features]")
    dims = steps.op("shape", "Shape", 0)
    length = steps.op("length", "Slice", dims, steps.ints("seq_start", [1]), steps.ints("seq_end", [2]))
    rows = steps.op("rows", "Slice", table, steps.ints("zero", [0]), length, steps.ints("axes", [0]))
    steps.op("add", "Add", 0, rows)
    return steps.done()


# -- attention --------------------------------------------------------------------------------

def _relative_buckets(buckets: int, max_distance: int) -> list[int]:
    """T5's bidirectional bucket of each relative position -max_distance..max_distance (a
    position further away shares the outermost bucket): half the buckets per direction, the
    first half of those exact, the rest logarithmic up to max_distance."""
    half = buckets // 2
    exact = half // 2
    table = []
    for relative in range(-max_distance, max_distance + 1):
        bucket = half if relative > 0 else 0
        n = abs(relative)
        if n < exact:
            bucket += n
        else:
            large = exact + int(math.log(n / exact) / math.log(max_distance / exact) * (half - exact))
            bucket += min(large, half - 1)
        table.append(bucket)
    return table


def _attention(name: str, a: dict) -> Composite:
    heads = positive_int("heads", a["heads"])
    kv_heads = _optional_positive("kv_heads", a["kv_heads"]) or heads
    if heads % kv_heads:
        raise SpecError(f"{heads} query heads cannot share {kv_heads} key/value heads evenly",
                        fix="make heads a multiple of kv_heads (GQA), or leave kv_heads out")
    head_dim = _optional_positive("head_dim", a["head_dim"])
    bias = boolean("bias", a["bias"])
    key_bias = bias if a["key_bias"] is None else boolean("key_bias", a["key_bias"])
    out_bias = bias if a["out_bias"] is None else boolean("out_bias", a["out_bias"])
    causal = boolean("causal", a["causal"])
    cross = boolean("cross", a["cross"])
    rotary = choice("positional", a["positional"], ("none", "rotary")) == "rotary"
    relative = non_negative_int("relative_buckets", a["relative_buckets"])
    attrs: dict[str, Any] = {"q_num_heads": heads, "kv_num_heads": kv_heads, "is_causal": int(causal)}
    if not (a["scale"] is None or (type(a["scale"]) in (int, float) and a["scale"] == 0)):  # 1 / sqrt(head_dim)
        attrs["scale"] = number("scale", a["scale"], 0)
    if (rotary or relative) and cross:
        raise SpecError("rotary and relative positions are for self-attention here, not cross-attention",
                        fix="remove `positional` / `relative_buckets`, or `cross`")

    queries = width(name, 0, 3)
    memory = width(name, 1 if cross else 0, 3)

    def size(s: Shapes) -> Dim:
        if head_dim is not None:
            return head_dim
        features = queries(s)
        if is_static(features) and features % heads:
            raise ShapeError(f"the input's {features} features do not split into {heads} heads",
                             fix="give head_dim, or make the width a multiple of heads")
        return features // heads

    steps = _Steps(name)
    source = 1 if cross else 0
    q = steps.linear("q_proj", 0, queries, lambda s: heads * size(s), bias)
    k = steps.linear("k_proj", source, memory, lambda s: kv_heads * size(s), key_bias)
    v = steps.linear("v_proj", source, memory, lambda s: kv_heads * size(s), bias)
    if rotary:
        positions, batch_seq = steps.sequence_positions("positions", 0)
        ids = steps.op("position_ids", "Expand", positions, batch_seq)
        # One cos and one sin row per position, half a head wide: fixed values, which the
        # RotaryEmbedding rule does not count (HF computes them from a 32-value buffer).
        cos = buffer(f"{name}.cos_cache", lambda s: (s[0][1], size(s) // 2), "[seq, head_dim / 2]")  # type: ignore[index]
        sin = buffer(f"{name}.sin_cache", lambda s: (s[0][1], size(s) // 2), "[seq, head_dim / 2]")  # type: ignore[index]
        q = steps.op("q_rotary", "RotaryEmbedding", q, cos, sin, ids, num_heads=heads)
        k = steps.op("k_rotary", "RotaryEmbedding", k, cos, sin, ids, num_heads=kv_heads)
    mask: StepInput = None
    if relative:
        mask = _relative_bias(steps, a, heads, relative)
    context = steps.op("attention", "Attention", q, k, v, *([mask] if mask else []), **attrs)
    steps.linear("out_proj", context, lambda s: heads * size(s), queries, out_bias)
    return steps.done()


def _relative_bias(steps: _Steps, a: dict, heads: int, buckets: int) -> str:
    """T5's learned bias per head and relative position, added to the scores: [1, heads, S, S]."""
    distance = positive_int("relative_max_distance", a["relative_max_distance"])
    if buckets < 4:
        raise SpecError(f"relative_buckets {buckets} is too few", fix="use 4 or more (T5 uses 32)")
    if not buckets // 4 < distance <= MAX_RELATIVE_DISTANCE:
        # Exact buckets cover distances below buckets / 4, logarithmic ones the rest up to the
        # maximum; the bucket of every distance is a table of 2 * distance + 1 entries.
        raise SpecError(f"relative_max_distance {distance} must be more than relative_buckets / 4 = "
                        f"{buckets // 4} and at most {MAX_RELATIVE_DISTANCE}", fix="T5 uses 32 buckets up to 128")
    owner = a["relative_bias_from"] or steps.layer
    if not isinstance(owner, str):
        raise SpecError(f"relative_bias_from is {owner!r}", fix="name the attention layer whose table to share")
    table = TensorInfo(f"{owner}.relative_bias.weight", (buckets, heads))
    table.kind = "weight"
    positions, _ = steps.sequence_positions("relative", 0)
    rows = steps.op("relative.rows", "Unsqueeze", positions, steps.ints("relative.axis1", [1]))
    cols = steps.op("relative.cols", "Unsqueeze", positions, steps.ints("relative.axis0", [0]))
    offsets = steps.op("relative.offsets", "Sub", cols, rows)  # key position - query position
    clipped = steps.op("relative.clipped", "Clip", offsets, steps.ints("relative.min", [-distance], scalar=True),
                       steps.ints("relative.max", [distance], scalar=True))
    index = steps.op("relative.index", "Add", clipped, steps.ints("relative.shift", [distance], scalar=True))
    bucket_of = steps.ints("relative.bucket_of", _relative_buckets(buckets, distance))
    bucket = steps.op("relative.buckets", "Gather", bucket_of, index)
    per_head = steps.op("relative.bias", "Gather", table, bucket)  # [S, S, heads]
    moved = steps.op("relative.by_head", "Transpose", per_head, perm=(2, 0, 1))
    return steps.op("relative.scores_bias", "Unsqueeze", moved, steps.ints("relative.batch_axis", [0]))


# -- norms, feed-forward, vision, heads -----------------------------------------------------

def _rms_norm(name: str, a: dict) -> Lowered:
    axis = integer("axis", a["axis"])

    def normalised(s: Shapes) -> Shape:
        x = s[0] or ()
        if not -len(x) <= axis < len(x):
            raise ShapeError(f"axis {axis} is out of range for input {list(x)}",
                             fix=f"use an axis from {-len(x)} to {len(x) - 1} (-1 normalises the last axis)")
        return tuple(x[axis:])

    return Lowered("RMSNormalization", {"axis": axis, "epsilon": number("epsilon", a["epsilon"], 0)},
                   [weight(f"{name}.weight", normalised, "normalised shape")])


def _mlp(name: str, a: dict) -> Composite:
    hidden = positive_int("hidden", a["hidden"])
    op, attrs = ACTIVATIONS[choice("activation", a["activation"], tuple(ACTIVATIONS))]
    gated = boolean("gated", a["gated"])
    bias = boolean("bias", a["bias"])
    features = width(name)
    steps = _Steps(name)
    if gated:  # SwiGLU and kin: down(act(gate(x)) * up(x))
        gate = steps.linear("gate_proj", 0, features, lambda s: hidden, bias)
        up = steps.linear("up_proj", 0, features, lambda s: hidden, bias)
        active = steps.op("act", op, gate, **attrs)
        product = steps.op("gated", "Mul", active, up)
        steps.linear("down_proj", product, lambda s: hidden, features, bias)
    else:
        fc1 = steps.linear("fc1", 0, features, lambda s: hidden, bias)
        active = steps.op("act", op, fc1, **attrs)
        steps.linear("fc2", active, lambda s: hidden, features, bias)
    return steps.done()


def _patch_embed(name: str, a: dict) -> Composite:
    dim = positive_int("dim", a["dim"])
    patch = positive_int("patch", a["patch"])
    steps = _Steps(name)

    def channels(s: Shapes) -> Dim:
        x = s[0]
        if x is None or len(x) != 4:
            raise ShapeError(f"patch_embed needs an image [N, C, H, W], got {list(x or ())}",
                             fix="give the spec an image input, e.g. input: [3, 224, 224]")
        return x[1]

    kernel = weight(f"{name}.proj.weight", lambda s: (dim, channels(s), patch, patch), "[dim, C, patch, patch]")
    inputs: list[StepInput] = [0, kernel]
    if boolean("bias", a["bias"]):
        inputs.append(weight(f"{name}.proj.bias", lambda s: (dim,), "[dim]"))
    grid = steps.op("proj", "Conv", *inputs, kernel_shape=(patch, patch), strides=(patch, patch))
    rows = steps.op("flatten", "Reshape", grid, steps.ints("flat_shape", [0, 0, -1]))
    tokens = steps.op("tokens", "Transpose", rows, perm=(0, 2, 1))  # [N, patches, dim]
    if boolean("class_token", a["class_token"]):
        token = TensorInfo(f"{name}.class_token", (1, 1, dim))
        token.kind = "weight"
        dims = steps.op("shape", "Shape", 0)
        batch = steps.op("batch", "Slice", dims, steps.ints("zero", [0]), steps.ints("one", [1]))
        shape = steps.op("token_shape", "Concat", batch, steps.ints("token_dims", [1, dim]), axis=0)
        tokens_first = steps.op("class_tokens", "Expand", token, shape)
        steps.op("concat", "Concat", tokens_first, tokens, axis=1)
    return steps.done()


def _project(name: str, a: dict) -> Composite:
    """A token-wise linear layer (PyTorch's Linear on [batch, seq, features]); `tie` reuses an
    embedding's [vocab, dim] table as the weight, transposed (GPT-2's and Llama's LM head)."""
    units = positive_int("units", a["units"])
    bias = boolean("bias", a["bias"])
    steps = _Steps(name)
    tie = a["tie"]
    if tie is None:
        steps.linear("linear", 0, width(name), lambda s: units, bias)
        return steps.done()
    if not isinstance(tie, str) or not tie:
        raise SpecError(f"field 'tie' is {tie!r}", fix="name the embedding layer whose table to reuse: tie: wte")
    transposed = steps.op("weight_t", "Transpose", Named(f"{tie}.weight", "tie"), perm=(1, 0))
    product = steps.op("matmul", "MatMul", 0, transposed)
    if bias:
        steps.op("bias", "Add", product, weight(f"{name}.bias", lambda s: (units,), "[units]"))
    return steps.done()


def _select_token(name: str, a: dict) -> Composite:
    index = integer("index", a["index"])
    steps = _Steps(name)
    steps.op("gather", "Gather", 0, steps.ints("index", [index], scalar=True), axis=1)
    return steps.done()


def _transpose(name: str, a: dict) -> Lowered:
    perm = a["perm"]
    if not isinstance(perm, list) or not all(type(p) is int for p in perm) or sorted(perm) != list(range(len(perm))):
        raise SpecError(f"field 'perm' is {perm!r}; it must list every axis once, batch (0) included",
                        fix="e.g. perm: [0, 2, 1] swaps the last two axes of [N, C, L]")
    return Lowered("Transpose", {"perm": tuple(perm)})


def transformer_layer_types() -> list[LayerType]:
    return [
        LayerType("embedding", {"vocab": REQUIRED, "dim": REQUIRED, "tie": None}, _embedding, aliases=("embed",),
                  summary="token ids [N, S] (int64) -> vectors [N, S, dim]: a [vocab, dim] table (Gather); "
                          "tie: share another embedding's table"),
        LayerType("positional", {"kind": "learned", "max_positions": None}, _positional, "kind",
                  summary="adds positions: learned ([max_positions, dim] params) or sinusoidal (a buffer); "
                          "rotary is attention's `positional: rotary`"),
        LayerType("attention", {"heads": REQUIRED, "kv_heads": None, "head_dim": None, "causal": False,
                                "bias": True, "key_bias": None, "out_bias": None, "scale": None, "cross": False,
                                "positional": "none", "relative_buckets": 0, "relative_max_distance": 128,
                                "relative_bias_from": None},
                  _attention, "heads", inputs=(1, 2), aliases=("multi_head_attention", "mha"),
                  summary="multi-head attention: q/k/v projections, softmax(QK^T)V (GQA with kv_heads), "
                          "output projection; cross: keys and values from the second input"),
        LayerType("rmsnorm", {"axis": -1, "epsilon": 1e-6}, _rms_norm, "axis", aliases=("rms_norm",),
                  summary="RMS normalisation (scale only) over the axes from `axis` on"),
        LayerType("mlp", {"hidden": REQUIRED, "activation": "gelu", "gated": False, "bias": True}, _mlp, "hidden",
                  aliases=("feed_forward",),
                  summary="token-wise feed-forward: fc2(act(fc1(x))), or gated down(act(gate(x)) * up(x))"),
        LayerType("patch_embed", {"dim": REQUIRED, "patch": REQUIRED, "bias": True, "class_token": False},
                  _patch_embed, "dim",
                  summary="image [N, C, H, W] -> patch tokens [N, H*W/patch^2 (+1), dim]: a patch-sized "
                          "stride-patch conv, flattened (and a learned class token in front)"),
        LayerType("project", {"units": REQUIRED, "bias": True, "tie": None}, _project, "units",
                  aliases=("lm_head",),
                  summary="linear on the last axis of any rank; tie: reuse an embedding's table, transposed"),
        LayerType("select_token", {"index": 0}, _select_token, "index",
                  summary="one position of a sequence: [N, S, D] -> [N, D] (a class token for a head)"),
        LayerType("transpose", {"perm": REQUIRED}, _transpose, "perm",
                  summary="permute axes (batch included): [N, C, L] -> [N, L, C] with perm [0, 2, 1]"),
    ]

