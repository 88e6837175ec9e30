"""onnxruntime's com.microsoft transformer fusions: attention, skip/embed normalisation,
the Gelu family and rotary embedding (what its transformer optimizer emits), plus
SimplifiedLayerNormalization, which onnxruntime registers in ONNX's default domain.

A fused op counts what its unfused source counts, built from the standard rules'
constants: Attention is the packed Q/K/V projection (one MatMul of
input_hidden x (hidden + hidden + v_hidden), a bias Add) followed by the attention
products (as the Attention rule: batch * heads * q_seq * total_seq * (head_size +
v_head_size) MACs, scale + softmax + mask per score). SkipLayerNormalization is Add (+ bias
Add) + LayerNormalization (7 per element); SkipSimplifiedLayerNormalization the same with
RMS normalisation (4); EmbedLayerNormalization Gathers (no arithmetic), one Add per extra
embedding and LayerNormalization. BiasGelu is Add + Gelu (5, erf); FastGelu the tanh
form (9); QuickGelu x * sigmoid(alpha * x) is Swish (6). Learned inputs (the packed
projection weight and bias, gamma, beta, embedding tables) are params; masks, caches,
position ids and scales are not.
"""

from __future__ import annotations

from collections.abc import Sequence

from archcalc.core.dims import Dim, is_static, prod
from archcalc.core.errors import ShapeError
from archcalc.rules._common import broadcast, required
from archcalc.rules.activation import FLOPS_PER_ELEMENT
from archcalc.rules.attention import MASK_FLOPS, ROTATE_FLOPS, SCALE_FLOPS, SOFTCAP_FLOPS, SOFTMAX_FLOPS
from archcalc.rules.base import GLOBAL, Inputs, Output, RuleResult, TensorState, rule
from archcalc.rules.norm import NORMALISE_FLOPS, RMS_NORM_FLOPS
from archcalc.rules.quantize import DEQUANTIZE_FLOPS

MS = "com.microsoft"
ADD_FLOPS = 1  # as the Add rule: one per output element
GELU_FLOPS = 5  # as the Gelu rule: x * (1 + erf(x / sqrt 2)) / 2
GELU_TANH_FLOPS = 9  # as the Gelu rule with approximate="tanh"
RESCALE_FLOPS = 1  # an integer product times its scales (MatMulInteger -> Cast -> Mul)


def _optional(inputs: Inputs, index: int) -> TensorState | None:
    return inputs[index] if len(inputs) > index else None


def _split_heads(hidden: Dim, heads: int, op: str, what: str) -> Dim:
    if heads < 1:
        raise ShapeError(f"{op} has num_heads {heads}", fix="set num_heads to the number of attention heads")
    if is_static(hidden) and hidden % heads:
        raise ShapeError(f"{op}'s {what} hidden size {hidden} is not divisible by {heads} heads",
                         fix="make the hidden size a multiple of num_heads")
    return hidden // heads


def _per_score(masks: int, softcap: float = 0.0) -> int:
    """FLOPs per attention score, as the Attention rule counts them."""
    return SCALE_FLOPS + SOFTMAX_FLOPS + masks * MASK_FLOPS + (SOFTCAP_FLOPS if softcap else 0)


def _packed_attention(op: str, x: Sequence[Dim], w: Sequence[Dim], bias: TensorState | None,
                      mask: TensorState | None, past: TensorState | None, attention_bias: TensorState | None,
                      *, num_heads: int, qkv_hidden_sizes, unidirectional: int, do_rotary: int,
                      rotary_embedding_dim: int, past_present_share_buffer: int,
                      rescaled: bool = False) -> RuleResult:
    """Attention and QAttention: the packed Q/K/V projection and self-attention over it."""
    if len(x) != 3 or len(w) != 2:
        raise ShapeError(f"{op}'s input {list(x)} must be 3-D [batch, seq, input_hidden] and its weights "
                         f"{list(w)} 2-D [input_hidden, q + k + v hidden]")
    batch, seq, input_hidden = x
    if is_static(input_hidden) and is_static(w[0]) and input_hidden != w[0]:
        raise ShapeError(f"{op}'s input has {input_hidden} features, its weights expect {w[0]}",
                         fix="the weights' first dim is the input's hidden size")
    if qkv_hidden_sizes:
        q_hidden, k_hidden, v_hidden = qkv_hidden_sizes
        if is_static(w[1]) and q_hidden + k_hidden + v_hidden != w[1]:
            raise ShapeError(f"{op}'s qkv_hidden_sizes {list(qkv_hidden_sizes)} do not add up to the weights' "
                             f"{w[1]} columns")
    else:
        if is_static(w[1]) and w[1] % 3:
            raise ShapeError(f"{op}'s weights have {w[1]} columns, not three equal Q, K, V parts",
                             fix="set qkv_hidden_sizes when V's hidden size differs")
        q_hidden = k_hidden = v_hidden = w[1] // 3
    head_size = _split_heads(q_hidden, num_heads, op, "Q")
    v_head_size = _split_heads(v_hidden, num_heads, op, "V")
    projected = q_hidden + k_hidden + v_hidden
    if bias is not None and bias.shape and is_static(bias.shape[-1]) and is_static(projected) \
            and bias.shape[-1] != projected:
        raise ShapeError(f"{op}'s bias has {bias.shape[-1]} values for {projected} projected features")
    past_seq: Dim = 0
    warnings: tuple[str, ...] = ()
    if past is not None:
        if len(past.shape) != 5:
            raise ShapeError(f"{op}'s past {list(past.shape)} must be 5-D [2, batch, heads, past_seq, head_size]")
        past_seq = past.shape[3]
    if past is not None and past_present_share_buffer:
        total_seq = past_seq  # the buffer's capacity; the positions used are known at run time only
        present_seq = past_seq
        warnings = (f"{op} shares its past/present buffer: attention counted over its whole capacity "
                    f"{past_seq} (an upper bound)",)
    else:
        total_seq = present_seq = past_seq + seq
    projection_macs = batch * seq * input_hidden * projected
    bias_adds = batch * seq * projected if bias is not None else 0
    scores = batch * num_heads * seq * total_seq
    attention_macs = scores * (head_size + v_head_size)
    masks = (mask is not None or bool(unidirectional)) + (attention_bias is not None)
    per_score = _per_score(masks)
    rotated = 2 * batch * seq * num_heads * (rotary_embedding_dim or head_size) if do_rotary else 0  # Q and K
    rescale = RESCALE_FLOPS * batch * seq * projected if rescaled else 0
    macs = projection_macs + attention_macs
    flops = 2 * macs + bias_adds + per_score * scores + ROTATE_FLOPS * rotated + rescale
    out = (batch, seq, v_hidden)
    present = (2, batch, num_heads, present_seq, head_size)

    def explain() -> list[str]:
        past_text = f" = {past_seq} past + {seq} new" if past is not None else ""
        lines = [
            f"batch {batch}, seq {seq}, {num_heads} heads, head_size {head_size}, v_head_size {v_head_size}, "
            f"total_seq {total_seq}{past_text}",
            f"output = [batch, seq, v_hidden] = {list(out)}",
            f"params = weights {input_hidden} * {projected}" + (f" + bias {projected}" if bias is not None else "")
            + f" = {input_hidden * projected + (projected if bias is not None else 0)}",
            f"MACs (Q/K/V projection) = batch * seq * input_hidden * (q + k + v hidden) = {batch} * {seq} * "
            f"{input_hidden} * {projected} = {projection_macs}",
            f"MACs (attention) = batch * heads * seq * total_seq * (head_size + v_head_size) = {batch} * "
            f"{num_heads} * {seq} * {total_seq} * ({head_size} + {v_head_size}) = {attention_macs}",
            f"FLOPs = 2 * {macs} MACs + {bias_adds} bias adds + {per_score} per score * {scores} scores"
            + (f" + {ROTATE_FLOPS} * {rotated} rotated" if rotated else "")
            + (f" + {rescale} rescaled" if rescale else "") + f" = {flops}",
        ]
        return lines

    return RuleResult(outputs=(Output(out), Output(present)),
                      macs=macs, flops=flops, weights=(1, 2), receptive=GLOBAL, explain=explain, warnings=warnings,
                      backward_state_bytes=4 * scores, integer_macs=projection_macs if rescaled else 0)


@rule("Attention", domain=MS, reads_values=())
def ms_attention(inputs: Inputs, *, num_heads=0, qkv_hidden_sizes=None, unidirectional=0,
                 scale=None, mask_filter_value=None, do_rotary=0, rotary_embedding_dim=0,
                 past_present_share_buffer=0) -> RuleResult:
    """Packed Q/K/V projection + attention; MACs = B*S*Hin*(Hq+Hk+Hv) + B*heads*S*T*(head + v_head)."""
    return _packed_attention("Attention", required(inputs[0]).shape, required(inputs[1]).shape, _optional(inputs, 2),
                             _optional(inputs, 3), _optional(inputs, 4), _optional(inputs, 5),
                             num_heads=num_heads, qkv_hidden_sizes=qkv_hidden_sizes, unidirectional=unidirectional,
                             do_rotary=do_rotary, rotary_embedding_dim=rotary_embedding_dim,
                             past_present_share_buffer=past_present_share_buffer)


@rule("QAttention", domain=MS, reads_values=())
def q_attention(inputs: Inputs, *, num_heads=0, unidirectional=0, scale=None,
                mask_filter_value=None, do_rotary=0, past_present_share_buffer=0) -> RuleResult:
    """Attention over an int8 projection (rescaled: +1 per projected value); float output; MACs as Attention."""
    result = _packed_attention("QAttention", required(inputs[0]).shape, required(inputs[1]).shape,
                               inputs[2], _optional(inputs, 5),
                               _optional(inputs, 8), None, num_heads=num_heads, qkv_hidden_sizes=None,
                               unidirectional=unidirectional, do_rotary=do_rotary, rotary_embedding_dim=0,
                               past_present_share_buffer=past_present_share_buffer, rescaled=True)
    dtype = required(inputs[2], "dtype").dtype  # the float type of the bias and scales (T3)
    return RuleResult(outputs=tuple(Output(o.shape, dtype) for o in result.outputs), macs=result.macs,
                      flops=result.flops, weights=(1, 2), receptive=GLOBAL, explain=result.explain,
                      warnings=result.warnings, backward_state_bytes=result.backward_state_bytes,
                      integer_macs=result.integer_macs, quantization=(3, 4, 6, 7))  # input's, weight's scale and zp


def _mha_kv(key: TensorState | None, value: TensorState | None, query: Sequence[Dim], num_heads: int
            ) -> tuple[Dim, Dim, Dim, Dim, bool]:
    """(kv_seq, head_size, v_head_size, q_hidden, new keys are projected inputs) of MultiHeadAttention."""
    if len(query) == 5:  # packed Q, K and V: [batch, seq, heads, 3, head_size]
        return query[1], query[4], query[4], query[2] * query[4], True
    if len(query) != 3:
        raise ShapeError(f"MultiHeadAttention's query {list(query)} must be 3-D [batch, seq, hidden] or 5-D "
                         "packed [batch, seq, heads, 3, head_size]")
    head_size = _split_heads(query[2], num_heads, "MultiHeadAttention", "query")
    if key is None:
        raise ShapeError("MultiHeadAttention has a 3-D query but no key", fix="give key and value, or pack Q/K/V")
    k = key.shape
    if len(k) == 5:  # packed K and V: [batch, kv_seq, heads, 2, head_size]
        return k[1], head_size, k[4], query[2], True
    if value is None:
        raise ShapeError("MultiHeadAttention has a key but no value")
    v = value.shape
    if len(k) == 4:  # already projected and split into heads (cross attention's cached keys)
        return k[2], head_size, v[3], query[2], False
    if len(k) != 3:
        raise ShapeError(f"MultiHeadAttention's key {list(k)} must be 3-D, 4-D or 5-D packed")
    return k[1], head_size, _split_heads(v[2], num_heads, "MultiHeadAttention", "value"), query[2], True


@rule("MultiHeadAttention", domain=MS, reads_values=())
def multi_head_attention(inputs: Inputs, *, num_heads=0, unidirectional=0, scale=None,
                         mask_filter_value=None) -> RuleResult:
    """Attention of projected Q, K, V (+ their bias); MACs = batch * heads * seq * total_seq * (head + v_head)."""
    query = required(inputs[0]).shape
    key, value, bias = _optional(inputs, 1), _optional(inputs, 2), _optional(inputs, 3)
    mask, attention_bias = _optional(inputs, 4), _optional(inputs, 5)
    past_key, past_value = _optional(inputs, 6), _optional(inputs, 7)
    kv_seq, head_size, v_head_size, q_hidden, projected = _mha_kv(key, value, query, num_heads)
    batch, seq = query[0], query[1]
    past_seq: Dim = past_key.shape[2] if past_key is not None else 0
    if (past_key is None) != (past_value is None):
        raise ShapeError("MultiHeadAttention has one of past_key and past_value but not the other")
    total_seq = past_seq + kv_seq
    scores = batch * num_heads * seq * total_seq
    macs = scores * (head_size + v_head_size)
    bias_adds: Dim = 0
    if bias is not None:
        bias_adds = prod(query) + (sum(prod(t.shape) for t in (key, value) if t is not None) if projected else 0)
    masks = (mask is not None or bool(unidirectional)) + (attention_bias is not None)
    per_score = _per_score(masks)
    flops = 2 * macs + bias_adds + per_score * scores
    out = (batch, seq, num_heads * v_head_size)

    def explain() -> list[str]:
        return [f"batch {batch}, seq {seq}, {num_heads} heads, head_size {head_size}, v_head_size {v_head_size}, "
                f"total_seq {total_seq}" + (f" = {past_seq} past + {kv_seq} new" if past_key is not None else ""),
                f"output = {list(out)}; params = Q/K/V bias {list(bias.shape) if bias is not None else 'none'}",
                f"MACs = batch * heads * seq * total_seq * (head_size + v_head_size) = {batch} * {num_heads} * "
                f"{seq} * {total_seq} * ({head_size} + {v_head_size}) = {macs}",
                f"FLOPs = 2 * MACs + {bias_adds} bias adds + {per_score} per score * {scores} scores = {flops}"]

    return RuleResult(
        outputs=(Output(out), Output((batch, num_heads, total_seq, head_size)),
                 Output((batch, num_heads, total_seq, v_head_size)), Output((batch, num_heads, seq, total_seq))),
        macs=macs, flops=flops, weights=(3,), receptive=GLOBAL, explain=explain, backward_state_bytes=4 * scores)


@rule("GroupQueryAttention", domain=MS, reads_values=(6,))  # total_sequence_length
def group_query_attention(inputs: Inputs, *, num_heads=0, kv_num_heads=0, scale=None,
                          softcap=0.0, local_window_size=-1, do_rotary=0, rotary_interleaved=0, causal=1,
                          smooth_softmax=0, qk_output=0, qk_norm_epsilon=None, q_norm_epsilon=None,
                          k_norm_epsilon=None, kv_cache_bit_width=0, k_quant_type="NONE", v_quant_type="NONE",
                          sliding_window_cache=0) -> RuleResult:
    """Attention of num_heads query heads sharing kv_num_heads key/value heads with a KV cache;
    MACs = batch * heads * seq * total_seq * 2 * head_size."""
    query = required(inputs[0]).shape
    key, past_key = _optional(inputs, 1), _optional(inputs, 3)
    total = _optional(inputs, 6)
    cos_cache, attention_bias = _optional(inputs, 7), _optional(inputs, 10)
    q_norm = _optional(inputs, 14)
    if len(query) != 3:
        raise ShapeError(f"GroupQueryAttention's query {list(query)} must be 3-D [batch, seq, hidden]")
    if kv_num_heads < 1 or num_heads % kv_num_heads:
        raise ShapeError(f"GroupQueryAttention has {num_heads} query heads for {kv_num_heads} key/value heads",
                         fix="num_heads must be a multiple of kv_num_heads")
    batch, seq = query[0], query[1]
    packed = key is None
    head_size = _split_heads(query[2], num_heads + 2 * kv_num_heads if packed else num_heads,
                             "GroupQueryAttention", "packed QKV" if packed else "query")
    past_seq: Dim = past_key.shape[2] if past_key is not None else 0
    if total is not None and total.value is not None and len(total.value) == 1:
        total_seq: Dim = total.value[0]
    else:
        total_seq = past_seq + seq
    present_seq: Dim = total_seq if past_key is None else (
        max(past_seq, total_seq) if is_static(past_seq) and is_static(total_seq) else past_seq + seq)
    scores = batch * num_heads * seq * total_seq
    macs = scores * 2 * head_size
    masks = bool(causal) or local_window_size >= 0
    per_score = _per_score(masks + (attention_bias is not None), softcap)
    projected_heads = batch * seq * (num_heads + kv_num_heads)  # Q and K rows: rotated and normalised
    rotary_dim = 2 * cos_cache.shape[1] if do_rotary and cos_cache is not None else head_size
    rotated = projected_heads * rotary_dim if do_rotary else 0
    normalised = projected_heads * head_size if q_norm is not None else 0
    flops = 2 * macs + per_score * scores + ROTATE_FLOPS * rotated + RMS_NORM_FLOPS * normalised
    out = (batch, seq, num_heads * head_size)
    present = (batch, kv_num_heads, present_seq, head_size)
    cache_dtype = past_key.dtype if past_key is not None else None

    def explain() -> list[str]:
        return [f"batch {batch}, seq {seq}, {num_heads} query heads share {kv_num_heads} key/value heads, "
                f"head_size {head_size}, total_seq {total_seq}",
                f"output = {list(out)}, present key/value = {list(present)}",
                f"MACs = batch * heads * seq * total_seq * 2 * head_size = {batch} * {num_heads} * {seq} * "
                f"{total_seq} * 2 * {head_size} = {macs}",
                f"FLOPs = 2 * MACs + {per_score} per score * {scores} scores"
                + (f" + {ROTATE_FLOPS} * {rotated} rotated" if rotated else "")
                + (f" + {RMS_NORM_FLOPS} * {normalised} RMS-normalised" if normalised else "") + f" = {flops}"]

    return RuleResult(
        outputs=(Output(out), Output(present, cache_dtype), Output(present, cache_dtype),
                 Output((batch, num_heads, seq, total_seq))),
        macs=macs, flops=flops, weights=(11, 14, 15), receptive=GLOBAL, explain=explain,
        backward_state_bytes=4 * scores)


def _skip_norm(inputs: Inputs, op: str, per_element: int, norm: str,
               weights: tuple[int, ...], bias: TensorState | None) -> RuleResult:
    """input + skip (+ bias), normalised over the last axis; Add (+ Add) + the normalisation's FLOPs."""
    x, skip, gamma = required(inputs[0]).shape, required(inputs[1]).shape, inputs[2]
    if len(x) not in (2, 3):
        raise ShapeError(f"{op}'s input {list(x)} must be 3-D [batch, seq, hidden] or 2-D [tokens, hidden]")
    if broadcast(x, skip) != tuple(x):
        raise ShapeError(f"{op}'s skip {list(skip)} does not broadcast to the input {list(x)}")
    gamma = required(gamma)
    if gamma.shape and is_static(gamma.shape[-1]) and is_static(x[-1]) and gamma.shape[-1] != x[-1]:
        raise ShapeError(f"{op}'s gamma has {gamma.shape[-1]} values for hidden size {x[-1]}")
    elements = prod(x)
    adds = 1 + (bias is not None)
    flops = (adds * ADD_FLOPS + per_element) * elements
    row_stats = (*x[:-1], 1)

    def explain() -> list[str]:
        return [f"output = input shape = {list(x)}",
                f"FLOPs = ({adds} add{'s' if adds > 1 else ''} + {per_element} {norm}) * {elements} elements "
                f"= {flops}"]

    return RuleResult(outputs=(Output(tuple(x)), Output(row_stats, "float32"), Output(row_stats, "float32"),
                               Output(tuple(x))),
                      flops=flops, weights=weights, explain=explain, backward_state_bytes=2 * 4 * prod(x[:-1]))


@rule("SkipLayerNormalization", domain=MS, reads_values=())
def skip_layer_norm(inputs: Inputs, *, epsilon=1e-12) -> RuleResult:
    """LayerNormalization(input + skip + bias); FLOPs = (1 or 2 adds + 7) per element; gamma, beta, bias learned."""
    return _skip_norm(inputs, "SkipLayerNormalization", NORMALISE_FLOPS, "layer norm", (2, 3, 4),
                      _optional(inputs, 4))


@rule("SkipSimplifiedLayerNormalization", domain=MS, reads_values=())
def skip_simplified_layer_norm(inputs: Inputs, *, epsilon=1e-12) -> RuleResult:
    """RMS normalisation of input + skip + bias; FLOPs = (1 or 2 adds + 4) per element; gamma, bias learned."""
    return _skip_norm(inputs, "SkipSimplifiedLayerNormalization", RMS_NORM_FLOPS, "RMS norm", (2, 3),
                      _optional(inputs, 3))


@rule("SimplifiedLayerNormalization", reads_values=())
def simplified_layer_norm(inputs: Inputs, *, axis=-1, epsilon=1e-5,
                          stash_type=1) -> RuleResult:
    """onnxruntime's RMS normalisation (default domain): as RMSNormalization, 4 FLOPs per element; scale learned."""
    x = required(inputs[0]).shape
    if not x:
        raise ShapeError("SimplifiedLayerNormalization of a scalar")
    first = axis % len(x)
    flops = RMS_NORM_FLOPS * prod(x)
    row_stats = (*x[:first], *([1] * (len(x) - first)))
    return RuleResult(outputs=(Output(tuple(x)), Output(row_stats, "float32")), flops=flops, weights=(1,),
                      explain=lambda: [f"output = input shape = {list(x)}, normalised over {list(x[first:])}",
                                       f"FLOPs = {RMS_NORM_FLOPS} * elements = {flops}"],
                      backward_state_bytes=4 * prod(x[:first]))


def _embed_norm(op: str, ids: Sequence[Dim], tables: Sequence[TensorState | None], mask: TensorState | None,
                dtype: str, dequantised: bool) -> tuple[Dim, list[str], Output]:
    """FLOPs, explanation and output of the embedding sum + layer normalisation."""
    if len(ids) != 2:
        raise ShapeError(f"{op}'s input_ids {list(ids)} must be 2-D [batch, seq]")
    hidden = required(tables[0]).shape[-1]
    for table in tables:
        if table is not None and is_static(table.shape[-1]) and is_static(hidden) and table.shape[-1] != hidden:
            raise ShapeError(f"{op}'s embedding tables have different widths ({hidden} and {table.shape[-1]})")
    used = sum(t is not None for t in tables)
    rows = ids[0] * ids[1]
    elements = rows * hidden
    per_element = (used - 1) * ADD_FLOPS + NORMALISE_FLOPS + (used * DEQUANTIZE_FLOPS if dequantised else 0)
    mask_flops = prod(mask.shape) if mask is not None else 0  # the mask's sum per row
    flops = per_element * elements + mask_flops
    lines = [f"output = [batch, seq, hidden] = {[ids[0], ids[1], hidden]} ({used} embeddings gathered)",
             f"FLOPs = ({used - 1} adds + {NORMALISE_FLOPS} layer norm"
             + (f" + {used} * {DEQUANTIZE_FLOPS} dequantise" if dequantised else "")
             + f") * {elements} elements" + (f" + {mask_flops} mask sum" if mask_flops else "") + f" = {flops}"]
    return flops, lines, Output((ids[0], ids[1], hidden), dtype)


@rule("EmbedLayerNormalization", domain=MS, reads_values=())
def embed_layer_norm(inputs: Inputs, *, epsilon=1e-12, mask_index_type=1) -> RuleResult:
    """Word + position (+ segment) embeddings, layer-normalised; the tables, gamma and beta are learned."""
    ids = required(inputs[0]).shape
    tables = [inputs[2], inputs[3], _optional(inputs, 4)]
    flops, lines, out = _embed_norm("EmbedLayerNormalization", ids, tables, _optional(inputs, 7),
                                    required(inputs[2], "dtype").dtype, dequantised=False)
    return RuleResult(outputs=(out, Output((ids[0],), "int32"), Output(out.shape, out.dtype)), flops=flops,
                      weights=(2, 3, 4, 5, 6), explain=lambda: lines)


@rule("QEmbedLayerNormalization", domain=MS, reads_values=())
def q_embed_layer_norm(inputs: Inputs, *, epsilon=1e-12) -> RuleResult:
    """EmbedLayerNormalization of int8 tables, each gathered value dequantised (2 FLOPs); float output."""
    ids = required(inputs[0]).shape
    tables = [inputs[2], inputs[3], _optional(inputs, 4)]
    flops, lines, out = _embed_norm("QEmbedLayerNormalization", ids, tables, _optional(inputs, 7),
                                    required(inputs[8], "dtype").dtype, dequantised=True)
    return RuleResult(outputs=(out, Output((ids[0],), "int32")), flops=flops, weights=(2, 3, 4, 5, 6),
                      quantization=tuple(range(8, 18)), explain=lambda: lines)  # the five scales, then zero points


def _activated(x: Sequence[Dim], per_element: int, what: str, weights: tuple[int, ...] = (),
               out: Sequence[Dim] | None = None, extra: Dim = 0) -> RuleResult:
    out = tuple(x if out is None else out)
    flops = per_element * prod(out) + extra
    return RuleResult(outputs=(Output(out),), flops=flops, weights=weights,
                      explain=lambda: [f"output = {list(out)}",
                                       f"FLOPs = {per_element} ({what}) * {prod(out)} elements"
                                       + (f" + {extra}" if extra else "") + f" = {flops}"])


@rule("Gelu", domain=MS, reads_values=())
def ms_gelu(inputs: Inputs) -> RuleResult:
    """x * Phi(x) with erf: 5 FLOPs per element, as ONNX's Gelu."""
    return _activated(required(inputs[0]).shape, GELU_FLOPS, "Gelu")


@rule("BiasGelu", domain=MS, reads_values=())
def bias_gelu(inputs: Inputs) -> RuleResult:
    """Gelu(A + bias): Add (1) + Gelu (5) per element; the bias is learned."""
    out = broadcast(required(inputs[0]).shape, required(inputs[1]).shape)
    return _activated(out, ADD_FLOPS + GELU_FLOPS, "bias add + Gelu", weights=(1,))


@rule("FastGelu", domain=MS, reads_values=())
def fast_gelu(inputs: Inputs) -> RuleResult:
    """tanh-approximated Gelu of x (+ bias): 9 (+ 1) FLOPs per element; the bias is learned."""
    bias = _optional(inputs, 1)
    if bias is None:
        return _activated(required(inputs[0]).shape, GELU_TANH_FLOPS, "tanh Gelu")
    out = broadcast(required(inputs[0]).shape, bias.shape)
    return _activated(out, ADD_FLOPS + GELU_TANH_FLOPS, "bias add + tanh Gelu", weights=(1,))


@rule("QuickGelu", domain=MS, reads_values=())
def quick_gelu(inputs: Inputs, *, alpha=1.702) -> RuleResult:
    """x * sigmoid(alpha * x), which is Swish: 6 FLOPs per element."""
    return _activated(required(inputs[0]).shape, FLOPS_PER_ELEMENT["Swish"], "x * sigmoid(alpha * x)")


@rule("BiasAdd", domain=MS, reads_values=())
def bias_add(inputs: Inputs) -> RuleResult:
    """X + bias + skip: 2 FLOPs per element; the bias is learned."""
    out = broadcast(required(inputs[0]).shape, required(inputs[1]).shape, required(inputs[2]).shape)
    return _activated(out, 2 * ADD_FLOPS, "bias add + residual add", weights=(1,))


@rule("BiasSplitGelu", domain=MS, reads_values=())
def bias_split_gelu(inputs: Inputs) -> RuleResult:
    """(X + bias) split in halves: left * Gelu(right); [N, S, D] -> [N, S, D/2]; the bias is learned."""
    x = required(inputs[0]).shape
    if len(x) != 3 or (is_static(x[2]) and x[2] % 2):
        raise ShapeError(f"BiasSplitGelu's input {list(x)} must be 3-D [N, S, D] with an even D")
    out = (x[0], x[1], x[2] // 2)
    # The bias add covers all D; Gelu and the product, the D/2 outputs.
    return _activated(x, GELU_FLOPS + 1, "Gelu + multiply", weights=(1,), out=out, extra=ADD_FLOPS * prod(x))


@rule("RotaryEmbedding", domain=MS, reads_values=())
def ms_rotary_embedding(inputs: Inputs, *, interleaved=0, num_heads=0,
                        rotary_embedding_dim=0, is_packed_batching=0, scale=1.0) -> RuleResult:
    """Rotate pairs of the first rotary_dim elements of each head (cos/sin caches of rotary_dim / 2); 3 per rotated."""
    x, cos_cache = required(inputs[0]).shape, required(inputs[2]).shape
    rotary_dim = rotary_embedding_dim or 2 * cos_cache[-1]
    if len(x) == 4:
        head_size = x[3]
    elif len(x) == 3:
        head_size = x[2] // num_heads if num_heads else rotary_dim
        if is_static(x[2]) and is_static(head_size) and x[2] % head_size:
            raise ShapeError(f"RotaryEmbedding's hidden size {x[2]} is not a multiple of the head size {head_size}",
                             fix="set num_heads (and rotary_embedding_dim) for partial rotation")
    else:
        raise ShapeError(f"RotaryEmbedding's input {list(x)} must be 3-D or 4-D")
    rows = prod(x) // head_size
    rotated = rows * rotary_dim
    flops = ROTATE_FLOPS * rotated
    return RuleResult(outputs=(Output(tuple(x)),), flops=flops,
                      explain=lambda: [f"output = input shape = {list(x)}",
                                       f"rotated = head rows * rotary_dim = {rows} * {rotary_dim} = {rotated}",
                                       f"FLOPs = {ROTATE_FLOPS} * rotated elements = {flops}"])
