"""Key/value cache and generation cost of a decoder.

Detected from the analysis: the Attention layers (ONNX's op, which a spec's `attention`
lowers to) that are causal or take past key/values give the cache per layer (their rule's
geometry: kv_heads * (head_size + v_head_size) elements per token); failing those, graph
inputs named as past key/values (`past_key_values.0.key`, `past.0`, `past_key`) give it per
input (the product of their static dims: all but batch and the past length; a 4-d
[batch, kv_heads, past, head_dim] one names its heads and head size). Such a graph is one
decoding step: its new tokens' length (the symbolic dim of the other inputs, `seq`) and its
past length (the past inputs' own symbolic dim, `past_seq`) are both dims of its formulas.
Most real exports also take `attention_mask` [batch, past_seq + seq] and `position_ids`
[batch, seq], the mask's length a symbol of its own (`total_sequence_length`,
`past_sequence_length + 1`, `attention_mask_dim_1`). The rule that ties it (StepDims): a
rank-2 integer or bool input named as an attention mask whose second dim is one plain symbol
no other input has is the mask over the cached and the new tokens, so that symbol is the
total length, bound to past + seq; one named as position ids gives one position per new
token, so its second dim is bound to seq. Names decide because the graph cannot: the
exporter indexes the mask by a Range of past + seq (a Gather), so the mask's length never
meets the keys' in a broadcast that would equate them; a rank, dtype and a symbol of its own
are required so that no other input is mistaken for one.
Failing those too, a prefill-only export's outputs named as present key/values
(`present.0.key`, [batch, kv_heads, seq, head_dim], read by no layer) give it; such a graph
has a prefill cost and no decode cost.
A causal mask built from comparisons (a Trilu, or a Less/LessOrEqual/Greater/GreaterOrEqual
of position ranges feeding a Where: how the TorchScript exporter writes transformers'
mask) is reported as evidence beside the cache.

Per sequence and token the cache holds sum over layers of kv_heads * (head_size + v_head_size)
elements, 2 * layers * kv_heads * head_dim when K and V heads are alike; at a context of C
tokens and a batch of B sequences, B * C times that. Elements are the dtype given
(--kv-dtype) or the keys' own.

Generation: prefill of N tokens costs the model's MACs at seq = N (the formulas of
engine/symbolic.py), and past = 0 for a graph with past inputs; decoding one token with C
cached costs such a graph's MACs at seq = 1, past = C (its own attention reads the cache).
For a graph without past inputs, decoding one token with C tokens cached costs every layer's MACs at
seq = 1, except attention, which reads the C + 1 keys and values: q_heads * (C + 1) *
(head_size + v_head_size) MACs per layer. This needs the other layers to cost the same per
token (MACs of degree at most 1 in seq), which is checked. Bytes moved per decoded token:
the weights once, the cache read (C tokens) and the new token's keys and values written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from archcalc.core.dims import Dim, Sym, bind, is_static, prod, sum_dims
from archcalc.core.dtypes import dtype_bytes
from archcalc.core.errors import ArchcalcError
from archcalc.core.results import Analysis
from archcalc.engine.symbolic import Evaluator, Formulas, Point, fixed_bindings
from archcalc.rules.base import rule_for

KV_DTYPES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}
PAST_INPUT = re.compile(r"(^|[./_])past($|[._])|past_key|past_value", re.IGNORECASE)
MASK_INPUT = re.compile(r"attention_mask|attn_mask", re.IGNORECASE)
POSITION_INPUT = re.compile(r"position_ids|position_id$", re.IGNORECASE)
INTEGER_OR_BOOL = ("int64", "int32", "int16", "int8", "uint64", "uint32", "uint16", "uint8", "bool")
PRESENT_OUTPUT = re.compile(r"(^|[./_])present($|[._])|present_key|present_value", re.IGNORECASE)


@dataclass(frozen=True)
class KvLayer:
    name: str
    elements_per_token: int  # per sequence: kv_heads * (head_size + v_head_size)
    kv_heads: int | None  # None for a past input (the heads are not told apart from the head size)
    head_size: int | None
    q_heads: int | None
    dtype_bytes: int
    seq: str | None = None  # the symbolic dim of the new tokens, when the queries' length is one


@dataclass(frozen=True)
class StepDims:
    """The dims of a graph with past inputs that one decoding step binds: the new tokens', the
    past length's, and the inputs' own symbols tied to them (StepDims in the module docstring)."""

    new_tokens: str
    past: str
    total: tuple[tuple[str, str], ...] = ()  # (input, its symbol) bound to past + new tokens: attention masks
    with_new: tuple[tuple[str, str], ...] = ()  # (input, its symbol) bound to new tokens: position ids

    def bindings(self, new: int, past: int) -> dict[str, int]:
        """Every dim at `new` tokens with `past` cached."""
        return {self.new_tokens: new, self.past: past, **{dim: past + new for _, dim in self.total},
                **{dim: new for _, dim in self.with_new}}

    def described(self) -> str:
        """Which inputs' dims are bound to what, for the report."""
        new, past = quoted(self.new_tokens), quoted(self.past)
        parts = [f"{new} = new tokens", f"{past} = cached tokens"]
        parts += [f"{name}'s {quoted(dim)} = {past} + {new}" for name, dim in self.total]
        parts += [f"{name}'s {quoted(dim)} = {new}" for name, dim in self.with_new]
        return ", ".join(parts)


def quoted(dim: str) -> str:
    """A dim's name as the report writes it: quoted when it is no plain name (`past_sequence_length + 1`)."""
    return dim if dim.isidentifier() else f"'{dim}'"


@dataclass(frozen=True)
class KvCache:
    layers: tuple[KvLayer, ...]
    source: str  # how the cache was found, for the report
    # A graph with past inputs: the dim of its new tokens and of its past length.
    new_tokens: str | None = None
    past: str | None = None
    causal_mask: str | None = None  # the layer whose comparison builds a causal mask, as evidence
    step: StepDims | None = None  # a graph with past inputs: every dim a decoding step binds

    @property
    def tied(self) -> tuple[str, ...]:
        """The inputs' own dims bound with the new and past tokens' (a mask's total length)."""
        return () if self.step is None else tuple(dim for _, dim in (*self.step.total, *self.step.with_new))

    @property
    def seq(self) -> str | None:
        """The sequence dim the prompt fills: the new tokens' of a graph with past inputs, else the one
        all Attention layers' queries share, if symbolic."""
        if self.new_tokens is not None or self.past is not None:
            return self.new_tokens
        names = {layer.seq for layer in self.layers}
        return next(iter(names)) if len(names) == 1 else None

    def tokens_at(self, env: Mapping[str, int]) -> int | None:
        """Tokens cached after a step at the bindings `env` (past + new for a graph with past
        inputs), None when `env` does not bind them."""
        if self.seq is None or self.seq not in env or (self.past is not None and self.past not in env):
            return None
        return env[self.seq] + (env[self.past] if self.past is not None else 0)

    @property
    def bytes_per_token(self) -> int:
        """Bytes per token of one sequence: the figure a context and a batch multiply."""
        return sum(layer.elements_per_token * layer.dtype_bytes for layer in self.layers)

    def bytes_at(self, context: int, batch: int = 1) -> int:
        return self.bytes_per_token * context * batch


def kv_cache(analysis: Analysis, kv_dtype: str | None = None) -> KvCache | None:
    """The model's cache, or None when it is no decoder (nothing found)."""
    size = KV_DTYPES[kv_dtype] if kv_dtype else None
    layers = []
    for layer in analysis.layers:
        rule = rule_for(layer.domain, layer.op)
        if rule is None or rule.cache is None or layer.parent or not layer.modelled:
            continue
        shapes = [t.shape for t in layer.inputs]
        g = rule.cache(shapes, layer.attrs)
        if not g.causal:
            continue
        dims = (g.kv_heads, g.head_size, g.v_head_size, g.q_heads)
        if not all(is_static(d) for d in dims):
            raise ArchcalcError(f"layer '{layer.name}' ({layer.op}): its heads or head size are symbolic "
                                f"({', '.join(map(str, dims))}), so its cache per token is not a number",
                                where=analysis.path, fix="give the heads and head size as numbers")
        kv_heads, head_size, v_head_size, q_heads = (d for d in dims if isinstance(d, int))
        seq = str(g.q_seq) if isinstance(g.q_seq, Sym) and g.q_seq.symbols() == {str(g.q_seq)} else None
        layers.append(KvLayer(layer.name, kv_heads * (head_size + v_head_size), kv_heads, head_size, q_heads,
                              size or dtype_bytes(layer.inputs[1].dtype), seq))
    if layers:
        return KvCache(tuple(layers), "causal Attention layers")
    inputs = [info for info in analysis.known_tensors.values()
              if info.kind == "input" and isinstance(info.shape, tuple)]
    past_inputs = [info for info in inputs if PAST_INPUT.search(info.name)]
    for info in past_inputs:
        static = [d for d in info.shape if is_static(d)]
        symbolic = [d for d in info.shape if not is_static(d)]
        if len(symbolic) > 2:
            raise ArchcalcError(f"past input '{info.name}' {list(info.shape)} has more than two symbolic dims "
                                "(batch and past length), so its size per token is not known",
                                where=analysis.path, fix="feed it with --input-shape at numbers but those two")
        heads = head = None
        if len(info.shape) == 4 and is_static(info.shape[1]) and is_static(info.shape[3]):
            heads, head = info.shape[1], info.shape[3]  # [batch, kv_heads, past, head_dim]
        layers.append(KvLayer(info.name, prod(static), heads, head, None, size or dtype_bytes(info.dtype)))
    if layers:
        step = _step_dims(past_inputs, [info for info in inputs if info not in past_inputs])
        return KvCache(tuple(layers), "past key/value inputs", step.new_tokens if step else None,
                       step.past if step else None, causal_mask(analysis), step)
    return _present_outputs(analysis, size)


def _present_outputs(analysis: Analysis, size: int | None) -> KvCache | None:
    """A prefill-only export's cache: the [batch, kv_heads, seq, head_dim] tensors it returns
    named as present key/values (`present.0.key`) and no layer reads; their seq dim is the
    prompt's. None when there are none."""
    read = {t.name for layer in analysis.layers for t in layer.inputs}
    present = [(t, t.shape) for layer in analysis.layers if not layer.parent for t in layer.outputs
               if t.name and t.name not in read and PRESENT_OUTPUT.search(t.name) and t.shape is not None]
    layers, seqs = [], set()
    for tensor, shape in present:
        heads, head = (shape[1], shape[3]) if len(shape) == 4 else (None, None)
        if not (isinstance(heads, int) and isinstance(head, int)):
            raise ArchcalcError(f"present output '{tensor.name}' {list(map(str, shape))} is not [batch, kv_heads, "
                                "seq, head_dim] with numbers for the heads and head size, so its size per token is "
                                "not known", where=analysis.path, fix="give --kv-layers, --kv-heads and --head-dim")
        seqs.add(str(shape[2]) if isinstance(shape[2], Sym) and shape[2].symbols() == {str(shape[2])} else None)
        layers.append(KvLayer(tensor.name, heads * head, heads, head, None, size or dtype_bytes(tensor.dtype)))
    if not layers:
        return None
    seq = next(iter(seqs)) if len(seqs) == 1 else None
    return KvCache(tuple(layers), "present key/value outputs (no past inputs: a prefill)", seq, None,
                   causal_mask(analysis))


def _step_dims(past_inputs: list, other_inputs: list) -> StepDims | None:
    """The dims of a decoding step's graph: the past length is the one symbolic dim of the past
    inputs that no other input has; an attention mask's and position ids' own symbols (see
    _own_length) are tied to the total and new lengths; the new tokens' dim is the one
    symbolic dim of the remaining inputs (the token ids) that no past input has. None when
    the past or new tokens' dim is not one plain symbol."""
    def symbols(infos: list) -> set[str]:
        return {str(d) for info in infos for d in info.shape if _plain(d)}

    past = symbols(past_inputs) - symbols(other_inputs)
    masks = [(info.name, dim) for info in other_inputs if MASK_INPUT.search(info.name)
             and (dim := _own_length(info, other_inputs + past_inputs)) is not None]
    positions = [(info.name, dim) for info in other_inputs if POSITION_INPUT.search(info.name)
                 and (dim := _own_length(info, other_inputs + past_inputs)) is not None]
    tied = {name for name, _ in masks + positions}
    new = symbols([info for info in other_inputs if info.name not in tied]) - symbols(past_inputs)
    if len(past) != 1 or len(new) != 1:
        return None
    return StepDims(next(iter(new)), next(iter(past)), tuple(masks), tuple(positions))


def _plain(dim: Dim) -> bool:
    return isinstance(dim, Sym) and dim.symbols() == {str(dim)}


def _own_length(info, inputs: list) -> str | None:
    """The second dim of a rank-2 integer or bool input [batch, length] when it is a plain symbol
    no other input has (a mask's or positions' own name for its length), else None."""
    if len(info.shape) != 2 or info.dtype not in INTEGER_OR_BOOL or not _plain(info.shape[1]):
        return None
    dim = str(info.shape[1])
    if any(other is not info and dim in {str(d) for d in other.shape} for other in inputs):
        return None
    return dim


COMPARISONS = {"Less", "LessOrEqual", "Greater", "GreaterOrEqual"}
MASK_HOPS = 6  # how far a mask's comparison may be from its Where (casts, expands, reshapes)


def causal_mask(analysis: Analysis) -> str | None:
    """The first layer building a causal mask, or None: a Trilu, or a comparison whose inputs
    both derive from a Range (positions) within MASK_HOPS layers and whose output reaches a
    Where within MASK_HOPS layers."""
    producer = {t.name: layer for layer in analysis.layers for t in layer.outputs if t.name}
    consumers: dict[str, list] = {}
    for layer in analysis.layers:
        for tensor in layer.inputs:
            consumers.setdefault(tensor.name, []).append(layer)

    def reaches(start: list, step, op: str) -> bool:
        frontier, seen = start, set()
        for _ in range(MASK_HOPS):
            following = []
            for layer in frontier:
                if layer.op == op:
                    return True
                if layer.name not in seen:
                    seen.add(layer.name)
                    following += step(layer)
            frontier = following
        return False

    def producers(layer) -> list:
        return [producer[t.name] for t in layer.inputs if t.name in producer]

    def users(layer) -> list:
        return [user for t in layer.outputs for user in consumers.get(t.name, [])]

    for layer in analysis.layers:
        if layer.op == "Trilu":
            return layer.name
        if layer.op in COMPARISONS and len(layer.inputs) == 2 and reaches(users(layer), users, "Where") and all(
                reaches(producers(layer)[i:i + 1], producers, "Range") for i in range(2)):
            return layer.name
    return None


@dataclass(frozen=True)
class Decode:
    """One decoded token's cost at a context, per sequence of the batch."""

    context: int
    batch: int
    macs: int
    bytes_moved: int  # weights + cache read + new keys/values written


def decode_cost(formulas: Formulas, cache: KvCache, context: int, env: Mapping[str, int], where: str) -> Decode:
    """The MACs and bytes of generating one token with `context` tokens cached (see the module
    docstring); `env` binds every dim but the cache's sequence dim (batch, ...)."""
    seq = cache.seq
    attention = {layer.name: layer for layer in cache.layers if layer.q_heads is not None}
    if not attention or seq is None:
        raise ArchcalcError("decode cost needs Attention layers whose queries have a symbolic length (a spec fed "
                            "with --input-shape input_ids=batch,seq); a graph with past inputs is costed per token "
                            "by binding its new and past lengths with --dim", where=where)
    others: list[Dim] = []
    for formula in formulas.layers:
        if formula.parent or formula.name in attention:
            continue
        if isinstance(formula.macs, Sym) and _degree(formula.macs, seq) > 1:
            raise ArchcalcError(f"layer '{formula.name}' ({formula.op}) costs {formula.macs} MACs, more than "
                                f"linear in {seq}: decode cost per token is not its cost at {seq}=1", where=where)
        others.append(formula.macs)
    batch = env.get("batch", 1)
    per_token = bind(sum_dims(others), {**env, seq: 1})
    # Per layer: the one new query against the C + 1 keys and values, in each query head.
    attn = batch * sum((layer.q_heads or 0) * (context + 1) * (layer.elements_per_token // (layer.kv_heads or 1))
                       for layer in attention.values())
    moved = formulas.weight_bytes + cache.bytes_at(context, batch) + cache.bytes_at(1, batch)
    return Decode(context, batch, per_token + attn, moved)


def _degree(dim: Sym, name: str) -> int:
    return max((sum(1 for atom in mono if atom == name) for mono, _ in dim.terms), default=0)


@dataclass(frozen=True)
class Generation:
    """What serving a decoder takes at a context of `context` tokens for `batch` sequences."""

    cache: KvCache
    context: int
    batch: int
    seq: str | None  # the sequence dim the prompt fills; None when the model's length is fixed
    prefill: Point | None  # the model's totals at seq = context (the prompt's forward pass)
    decode: Decode | None
    notes: tuple[str, ...]
    fit: tuple[int, int] | None = None  # (memory, the largest context whose memory to serve fits it)
    fit_batch: int | None = None  # the largest batch of `context` tokens whose memory to serve fits fit[0]
    # A graph with past inputs: the dims each run binds (the prompt's, one decoded token's)
    prefill_bindings: Mapping[str, int] | None = None
    decode_bindings: Mapping[str, int] | None = None

    @property
    def serve_bytes(self) -> int | None:
        """Weights + the cache at the context + the prefill's peak activations."""
        if self.prefill is None:
            return None
        return self.prefill.weight_bytes + self.cache.bytes_at(self.context, self.batch) + \
            self.prefill.peak_activation_bytes

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.cache.source,
            "context": self.context,
            "batch": self.batch,
            "seq_dim": self.seq,
            "kv_cache_bytes_per_token": self.cache.bytes_per_token,
            "kv_cache_bytes": self.cache.bytes_at(self.context, self.batch),
            "layers": [{"name": layer.name, "kv_heads": layer.kv_heads, "head_size": layer.head_size,
                        "elements_per_token": layer.elements_per_token, "dtype_bytes": layer.dtype_bytes,
                        "bytes_per_token": layer.elements_per_token * layer.dtype_bytes}
                       for layer in self.cache.layers],
            "prefill": None if self.prefill is None else {"tokens": self.context, "macs": self.prefill.macs,
                                                          "flops": self.prefill.flops,
                                                          "peak_activation_bytes": self.prefill.peak_activation_bytes,
                                                          "bindings": _sorted(self.prefill_bindings)},
            "decode": None if self.decode is None else {"macs_per_token": self.decode.macs,
                                                        "bytes_moved_per_token": self.decode.bytes_moved,
                                                        "bindings": _sorted(self.decode_bindings)},
            "step_dims": None if self.cache.step is None else {
                "new_tokens": self.cache.step.new_tokens, "past": self.cache.step.past,
                "past_plus_new": [{"input": name, "dim": dim} for name, dim in self.cache.step.total],
                "new": [{"input": name, "dim": dim} for name, dim in self.cache.step.with_new]},
            "serve_bytes": self.serve_bytes,
            "fit": None if self.fit is None else {"memory_bytes": self.fit[0], "largest_context": self.fit[1],
                                                  "largest_batch": self.fit_batch},
            "notes": list(self.notes),
        }


def _sorted(bindings: Mapping[str, int] | None) -> dict[str, int] | None:
    return None if bindings is None else dict(sorted(bindings.items()))


def given_cache(layers: int, kv_heads: int, head_dim: int, kv_dtype: str | None) -> KvCache:
    """The cache the user describes (--kv-layers, --kv-heads, --head-dim), where detection fails:
    2 * kv_heads * head_dim elements per token and layer (K and V), fp16 unless --kv-dtype."""
    size = KV_DTYPES[kv_dtype or "fp16"]
    return KvCache(tuple(KvLayer(f"layer {i}", 2 * kv_heads * head_dim, kv_heads, head_dim, None, size)
                         for i in range(layers)), "given by --kv-layers, --kv-heads, --head-dim")


def generation(analysis: Analysis, given: Mapping[str, int], batch_dims: Sequence[str], context: int,
               kv_dtype: str | None, described: KvCache | None = None) -> Generation:
    """The cache, prefill and decode of the model at `context` tokens (see the module docstring);
    `described`, the user's description of the cache, replaces detection."""
    cache = described or kv_cache(analysis, kv_dtype)
    if cache is None:
        raise ArchcalcError("--context: no decoder found (no causal Attention layer, no past key/value input)",
                            where=analysis.path, fix="give a decoder: attention layers with causal: true, or an "
                                                     "ONNX graph with past_key_values inputs")
    seq = cache.seq
    batch = given.get("batch", 1)
    notes: list[str] = []
    if cache.causal_mask is not None:
        notes.append(f"causal mask built by layer '{cache.causal_mask}'")
    prefill = decode = None
    prefill_bindings = decode_bindings = None
    bound = [dim for dim in (seq, cache.past, *cache.tied) if dim is not None and dim in given]
    if seq is None:
        notes.append("no Attention layers whose queries have one symbolic length, nor past inputs beside new tokens "
                     "of a symbolic length: no prefill or decode cost (a spec: feed the tokens at a symbolic length, "
                     "--input-shape input_ids=batch,seq)")
    elif bound:
        notes.append(f"{bound[0]} is bound by --dim: prefill and decode use --context instead; leave {bound[0]} "
                     "unbound")
    else:
        evaluator = Evaluator(analysis, fixed_bindings(given, batch_dims))
        env = fixed_bindings({"batch": batch, **given}, batch_dims)
        prefill = evaluator.at({**env, **prompt(cache, context)}, f"prefill of {context}")
        if cache.step is not None:
            prefill_bindings = cache.step.bindings(context, 0)
        if cache.past is None and not any(layer.q_heads for layer in cache.layers):
            notes.append("no past key/value inputs and no Attention layers: no decode cost (export the model with "
                         "its cache, use_cache=True, for one decoding step's graph)")
        elif cache.past is None:
            decode = decode_cost(evaluator.formulas, cache, context, env, analysis.path)
        else:  # the graph is one decoding step: its own count at one new token, C past
            decode_bindings = cache.step.bindings(1, context) if cache.step else {seq: 1, cache.past: context}
            step = evaluator.at({**env, **decode_bindings}, ", ".join(f"{k}={v}" for k, v in decode_bindings.items()))
            decode = Decode(context, batch, step.macs, evaluator.formulas.weight_bytes + cache.bytes_at(context, batch)
                            + cache.bytes_at(1, batch))
    return Generation(cache, context, batch, seq, prefill, decode, tuple(notes),
                      prefill_bindings=prefill_bindings, decode_bindings=decode_bindings)


def prompt(cache: KvCache, tokens: int) -> dict[str, int]:
    """The bindings of a prefill of `tokens` tokens (none cached before: past = 0, a mask's total
    length = tokens)."""
    assert cache.seq is not None
    if cache.step is not None:
        return cache.step.bindings(tokens, 0)
    return {cache.seq: tokens, **({cache.past: 0} if cache.past is not None else {})}


MAX_CONTEXT = 2**40  # past this the search stops: no model serves a trillion tokens


def _serving(analysis: Analysis, given: Mapping[str, int], batch_dims: Sequence[str], cache: KvCache, option: str,
             free: str) -> tuple[Evaluator, dict[str, int]]:
    """An evaluator whose formulas keep the prompt's dims (and `free`, the dim searched) unbound, and the
    bindings given but `free`; refused when the model's tokens have no symbolic length left unbound."""
    seq = cache.seq
    if seq is None or any(dim in given for dim in (seq, cache.past, *cache.tied) if dim is not None):
        raise ArchcalcError(f"{option} needs the tokens at a symbolic length, left unbound (--input-shape "
                            "input_ids=batch,seq, no --dim for it)", where=analysis.path)
    kept = {name: value for name, value in given.items() if name != free}
    return Evaluator(analysis, fixed_bindings(kept, batch_dims)), kept


def _largest(fits: Callable[[int], bool]) -> int:
    """The largest n >= 1 with fits(n), for `fits` true up to some n and false past it; 0 when
    fits(1) is false: a doubling then a bisection, O(log n) calls."""
    if not fits(1):
        return 0
    low, high = 1, 2
    while high <= MAX_CONTEXT and fits(high):
        low, high = high, high * 2
    if high > MAX_CONTEXT:
        return low
    while high - low > 1:  # fits(low), not fits(high)
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def largest_context(analysis: Analysis, given: Mapping[str, int], batch_dims: Sequence[str], memory: int,
                    cache: KvCache) -> int:
    """The largest context C whose memory to serve (weights + the cache at C + the prefill's peak
    activations at seq = C, for the given batch) is at most `memory` bytes; 0 when none is.
    Every term grows with C (sizes are polynomials with positive coefficients in seq), so a
    doubling then a bisection finds it with O(log C) evaluations of the formulas."""
    evaluator, kept = _serving(analysis, given, batch_dims, cache, "--serve-fit searches the context: it", "")
    env = fixed_bindings({"batch": 1, **kept}, batch_dims)
    batch = env["batch"]

    def fits(context: int) -> bool:
        point = evaluator.at({**env, **prompt(cache, context)}, f"prefill of {context}")
        return point.weight_bytes + cache.bytes_at(context, batch) + point.peak_activation_bytes <= memory

    return _largest(fits)


def largest_batch(analysis: Analysis, given: Mapping[str, int], batch_dims: Sequence[str], memory: int,
                  cache: KvCache, context: int) -> int:
    """The largest batch B whose memory to serve B sequences of `context` tokens (weights + the cache
    at the context for B + the prefill's peak activations at seq = context, batch = B) is at most
    `memory` bytes; 0 when none is. Every term grows with B: the same search as largest_context."""
    evaluator, kept = _serving(analysis, given, batch_dims, cache, "--serve-fit searches the batch: it", "batch")

    def fits(batch: int) -> bool:
        bindings = fixed_bindings({**kept, "batch": batch, **prompt(cache, context)}, batch_dims)
        point = evaluator.at(bindings, f"batch {batch} x prefill of {context}")
        return point.weight_bytes + cache.bytes_at(context, batch) + point.peak_activation_bytes <= memory

    return _largest(fits)
