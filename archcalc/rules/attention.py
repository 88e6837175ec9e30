"""Attention family: Attention (scaled dot-product attention, opset 23+) and RotaryEmbedding.

Attention: MACs are the two products, Q K^T and softmax(..) V:
batch * q_heads * q_seq * total_seq * (head_size + v_head_size), where total_seq is the
past plus the new key/value length. FLOPs = 2 * MACs plus, per attention score
(batch * q_heads * q_seq * total_seq): 1 for the scale, 5 for the softmax (as Softmax),
1 for the mask or causal bias when there is one, 3 for a softcap (divide, tanh,
multiply) when set. Grouped-query attention (fewer key/value heads) shares each
key/value head between q_heads / kv_heads query heads: the products are the same size.
No params: Q, K and V are activations (their projections are separate MatMuls). A
sliding window (left/right_window_size) counts as a mask; opset 24's nonpad_kv_seqlen
does not shrink the counts (padded keys are counted: an upper bound). For training, the
attention probabilities are kept for backward (as eager attention does; fused kernels
keep only per-row statistics), counted as fp32.

RotaryEmbedding rotates pairs of elements: x1*cos - x2*sin and x2*cos + x1*sin, 6 FLOPs
per pair, 3 per rotated element; elements past rotary_embedding_dim pass through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from archcalc.core.dims import Dim, is_static, prod
from archcalc.core.errors import ShapeError
from archcalc.rules._common import broadcast, required
from archcalc.rules.base import (
    GLOBAL,
    SAVES_NOTHING,
    CacheGeometry,
    Inputs,
    Output,
    RuleResult,
    exported,
    keeps_cache,
    rule,
)

SCALE_FLOPS = 1
SOFTMAX_FLOPS = 5  # as the Softmax rule: max, subtract, exp, sum, divide
MASK_FLOPS = 1
SOFTCAP_FLOPS = 3  # softcap * tanh(score / softcap)
ROTATE_FLOPS = 3  # per rotated element: 6 per pair (4 multiplies, 2 adds)


def _heads(shape: Sequence[Dim], heads: int | None, what: str) -> tuple[Dim, Dim, Dim, Dim]:
    """(batch, heads, seq, head_size) of a 4-D tensor, or of a 3-D [batch, seq, heads * head_size]."""
    if len(shape) == 4:
        return shape[0], shape[1], shape[2], shape[3]
    if len(shape) != 3:
        raise ShapeError(f"Attention's {what} has shape {list(shape)}; it must be 3-D [batch, seq, hidden] "
                         "or 4-D [batch, heads, seq, head_size]")
    if not heads:
        raise ShapeError(f"Attention's {what} is 3-D {list(shape)} but its number of heads is not given",
                         fix="set q_num_heads and kv_num_heads for 3-D inputs")
    hidden = shape[2]
    if is_static(hidden) and hidden % heads:
        raise ShapeError(f"Attention's {what} hidden size {hidden} is not divisible by {heads} heads",
                         fix="make the hidden size a multiple of the number of heads")
    return shape[0], heads, shape[1], hidden // heads


def _same(a: Dim, b: Dim, message: str, fix: str) -> None:
    if is_static(a) and is_static(b) and a != b:
        raise ShapeError(message, fix=fix)


@rule("Attention", reads_values=())
def attention(inputs: Inputs, *, is_causal=0, kv_num_heads=None, q_num_heads=None,
              qk_matmul_output_mode=0, scale=None, softcap=0.0, softmax_precision=None,
              left_window_size=-1, right_window_size=-1) -> RuleResult:
    """softmax(Q K^T * scale + mask) V; MACs = batch * q_heads * q_seq * total_seq * (head_size + v_head_size)."""
    q, k, v = required(inputs[0]).shape, required(inputs[1]).shape, required(inputs[2]).shape
    mask = inputs[3] if len(inputs) > 3 else None
    past_key = inputs[4] if len(inputs) > 4 else None
    past_value = inputs[5] if len(inputs) > 5 else None
    if not len(q) == len(k) == len(v):
        raise ShapeError(f"Attention's Q {list(q)}, K {list(k)} and V {list(v)} must all be 3-D or all 4-D")
    batch, q_heads, q_seq, head_size = _heads(q, q_num_heads, "Q")
    _, kv_heads, kv_seq, k_head_size = _heads(k, kv_num_heads, "K")
    _, v_heads, v_seq, v_head_size = _heads(v, kv_num_heads, "V")
    _same(head_size, k_head_size, f"Attention's Q head size {head_size} differs from K's {k_head_size}",
          "Q and K must have the same head size (hidden size / number of heads)")
    _same(kv_seq, v_seq, f"Attention's K has {kv_seq} positions and V {v_seq}",
          "K and V must have the same sequence length")
    _same(kv_heads, v_heads, f"Attention's K has {kv_heads} heads and V {v_heads}",
          "K and V must have the same number of heads")
    if is_static(q_heads) and is_static(kv_heads) and (kv_heads < 1 or q_heads % kv_heads):
        raise ShapeError(f"Attention has {q_heads} query heads for {kv_heads} key/value heads",
                         fix="the query heads must be a multiple of the key/value heads (GQA/MQA)")
    if (past_key is None) != (past_value is None):
        raise ShapeError("Attention has one of past_key and past_value but not the other",
                         fix="give both past_key and past_value, or neither")
    past_seq: Dim = 0
    if past_key is not None and past_value is not None:  # both or neither (checked above)
        pk, pv = past_key.shape, past_value.shape
        if len(pk) != 4 or len(pv) != 4:
            raise ShapeError(f"Attention's past_key {list(pk)} and past_value {list(pv)} must be 4-D "
                             "[batch, kv_heads, past_seq, head_size]")
        _same(pk[3], head_size, f"Attention's past_key head size {pk[3]} differs from K's {head_size}",
              "past_key must be [batch, kv_heads, past_seq, head_size]")
        _same(pv[3], v_head_size, f"Attention's past_value head size {pv[3]} differs from V's {v_head_size}",
              "past_value must be [batch, kv_heads, past_seq, v_head_size]")
        _same(pk[2], pv[2], f"Attention's past_key has {pk[2]} positions and past_value {pv[2]}",
              "past_key and past_value must cover the same positions")
        past_seq = pk[2]
    total_seq = past_seq + kv_seq
    scores_shape = (batch, q_heads, q_seq, total_seq)
    if mask is not None and mask.shape:
        # The mask broadcasts to the scores; from opset 24 its last axis may be shorter (padded).
        broadcast(mask.shape[:-1], scores_shape[:-1])
        last = mask.shape[-1]
        if is_static(last) and is_static(total_seq) and last != 1 and last > total_seq:
            raise ShapeError(f"Attention's attn_mask {list(mask.shape)} covers {last} keys, more than the "
                             f"{total_seq} there are", fix="the mask's last axis is the total key length")
    y = (batch, q_heads, q_seq, v_head_size) if len(q) == 4 else (batch, q_seq, q_heads * v_head_size)
    present_key = (batch, kv_heads, total_seq, head_size)
    present_value = (batch, kv_heads, total_seq, v_head_size)
    scores = prod(scores_shape)
    macs = scores * (head_size + v_head_size)
    masked = mask is not None or bool(is_causal) or left_window_size >= 0 or right_window_size >= 0
    per_score = SCALE_FLOPS + SOFTMAX_FLOPS + (MASK_FLOPS if masked else 0) + (SOFTCAP_FLOPS if softcap else 0)
    flops = 2 * macs + per_score * scores

    def explain() -> list[str]:
        grouped = f" (GQA: {q_heads} query heads share {kv_heads} key/value heads)" if q_heads != kv_heads else ""
        past = f" = {past_seq} past + {kv_seq} new" if past_key is not None else ""
        return [
            f"batch {batch}, {q_heads} heads, q_seq {q_seq}, total_seq {total_seq}{past}, "
            f"head_size {head_size}, v_head_size {v_head_size}{grouped}",
            f"Y = {list(y)}",
            f"MACs = batch * heads * q_seq * total_seq * (head_size + v_head_size) = {batch} * {q_heads} * "
            f"{q_seq} * {total_seq} * ({head_size} + {v_head_size}) = {macs}",
            f"FLOPs = 2 * MACs + {per_score} per score * {scores} scores = {flops}",
        ]

    return RuleResult(
        outputs=(Output(y), Output(present_key), Output(present_value), Output(scores_shape)),
        macs=macs, flops=flops, receptive=GLOBAL, explain=explain,
        backward_state_bytes=4 * scores,  # the softmax probabilities, fp32
    )


# Linear in x: its gradient is the inverse rotation, which needs only the cos/sin caches.
@rule("RotaryEmbedding", saves=SAVES_NOTHING, reads_values=())
def rotary_embedding(inputs: Inputs, *, interleaved=0, num_heads=0,
                     rotary_embedding_dim=0) -> RuleResult:
    """Rotate the first rotary_embedding_dim elements of each head in pairs; 3 FLOPs per rotated element."""
    x = required(inputs[0]).shape
    if len(x) == 4:
        rows, head_size = prod(x[:3]), x[3]
    elif len(x) == 3:
        if not num_heads:
            raise ShapeError(f"RotaryEmbedding's input is 3-D {list(x)} but num_heads is not given",
                             fix="set num_heads for a 3-D [batch, seq, hidden] input")
        if is_static(x[2]) and x[2] % num_heads:
            raise ShapeError(f"RotaryEmbedding's hidden size {x[2]} is not divisible by {num_heads} heads")
        rows, head_size = x[0] * x[1] * num_heads, x[2] // num_heads
    else:
        raise ShapeError(f"RotaryEmbedding's input has shape {list(x)}; it must be 3-D or 4-D")
    rotated = rotary_embedding_dim or head_size
    if (is_static(rotated) and rotated % 2) or (is_static(head_size) and is_static(rotated) and rotated > head_size):
        raise ShapeError(f"RotaryEmbedding rotates {rotated} of {head_size} elements per head",
                         fix="rotary_embedding_dim must be even and at most the head size")
    rotated_elements = rows * rotated
    flops = ROTATE_FLOPS * rotated_elements
    return RuleResult(
        outputs=(Output(tuple(x)),), flops=flops,
        explain=lambda: [f"output = input shape = {list(x)}",
                         f"rotated elements = rows * rotary_dim = {rows} * {rotated} = {rotated_elements}",
                         f"FLOPs = {ROTATE_FLOPS} * rotated elements = {flops}"],
    )


# Standard ops since opset 23: export writes at least that.
exported("Attention", "RotaryEmbedding", min_opset=23)


def cache_geometry(shapes: Sequence[Sequence[Dim] | None], attrs: Mapping[str, object]) -> CacheGeometry:
    """An Attention layer's cache geometry from its input shapes (Q, K, V, mask, past_key,
    past_value) and attributes, as the rule reads them."""
    q, k, v = (required_shape(shapes, i) for i in range(3))
    q_heads_attr, kv_heads_attr = attrs.get("q_num_heads"), attrs.get("kv_num_heads")
    _, q_heads, q_seq, head_size = _heads(q, q_heads_attr, "Q")  # type: ignore[arg-type]
    _, kv_heads, _, _ = _heads(k, kv_heads_attr, "K")  # type: ignore[arg-type]
    _, _, _, v_head_size = _heads(v, kv_heads_attr, "V")  # type: ignore[arg-type]
    past = len(shapes) > 4 and shapes[4] is not None
    return CacheGeometry(q_heads, kv_heads, head_size, v_head_size, q_seq, bool(attrs.get("is_causal")) or past, past)


keeps_cache("Attention", geometry=cache_geometry)


def required_shape(shapes: Sequence[Sequence[Dim] | None], index: int) -> Sequence[Dim]:
    shape = shapes[index] if index < len(shapes) else None
    if shape is None:
        raise ShapeError(f"Attention's input {index} has no known shape")
    return shape
