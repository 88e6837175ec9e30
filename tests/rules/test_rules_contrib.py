"""onnxruntime's com.microsoft contrib ops (and its default-domain SimplifiedLayerNormalization).

Each case is a single-node model built with onnx.helper, run by onnxruntime (CPU) for the
actual output shapes and dtypes, and read by archcalc's ONNX front end and engine; its
params, MACs and FLOPs are checked against the hand formula written beside it. Where a
fused op has an unfused source, that source is built too and must count the same params
and MACs (and FLOPs, where the fusion does the same arithmetic). Ops onnxruntime 1.32 has
no CPU kernel for (BiasAdd, BiasSplitGelu) are checked against the schema's documented
shapes and the hand formula only.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from ort_helpers import missing_nchwc_kernels, needs_nchwc
from value_reads import recorded_calls, undeclared_reads

from archcalc.core.results import Analysis
from archcalc.engine.inference import analyze
from archcalc.readers.onnx import load_onnx
from archcalc.rules.base import domain_rules, rule_for

MS = "com.microsoft"
RNG = np.random.default_rng(0)
ort.set_default_logger_severity(3)

# (batch, seq, heads): the shapes the transformer ops are run at.
SHAPES = [(1, 4, 2), (2, 7, 4), (3, 5, 1)]
SHAPE_IDS = [f"b{b}s{s}h{h}" for b, s, h in SHAPES]
HEAD = 8  # head size: GroupQueryAttention's CPU kernel wants a multiple of 8


def f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def u8(*shape: int) -> np.ndarray:
    return RNG.integers(0, 255, shape).astype(np.uint8)


def i8(*shape: int) -> np.ndarray:
    return RNG.integers(-100, 100, shape).astype(np.int8)


def i32(*shape: int, high: int = 2) -> np.ndarray:
    return RNG.integers(0, high, shape).astype(np.int32)


def scalar(value, dtype=np.float32) -> np.ndarray:
    return np.array(value, dtype=dtype)


def data(array: np.ndarray) -> tuple[str, np.ndarray]:
    """A graph input, fed at run time."""
    return "data", array


def init(array: np.ndarray) -> tuple[str, np.ndarray]:
    """An initializer: a weight, or a scale / zero point / constant."""
    return "init", array


def make(nodes: list[onnx.NodeProto], inputs: dict[str, tuple[str, np.ndarray]], outputs: list[str],
         opset: int = 21) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A model of `nodes` whose named inputs are fed or initialised as `inputs` says."""
    graph_inputs, initializers, feeds = [], [], {}
    for name, (kind, array) in inputs.items():
        if kind == "data":
            graph_inputs.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(array.dtype), list(array.shape)))
            feeds[name] = array
        else:
            initializers.append(numpy_helper.from_array(array, name))
    graph = helper.make_graph(nodes, "contrib", graph_inputs, [onnx.ValueInfoProto(name=o) for o in outputs],
                              initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(MS, 1)])
    model.ir_version = 10
    return model, feeds


def single(op: str, inputs: list[tuple[str, np.ndarray] | None], n_outputs: int = 1, domain: str = MS,
           **attrs) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A model of one `op` node named 'n'; None leaves an optional input out."""
    names = [f"in{i}" if arg is not None else "" for i, arg in enumerate(inputs)]
    outputs = [f"out{i}" for i in range(n_outputs)]
    node = helper.make_node(op, names, outputs, name="n", domain=domain, **attrs)
    return make([node], {n: a for n, a in zip(names, inputs) if a is not None}, outputs,
                opset=17 if domain == "" else 21)


def analysed(model: onnx.ModelProto, tmp_path: Path, name: str = "model.onnx") -> Analysis:
    """The model's analysis; its rules are held to the values they declare reading on the way."""
    path = str(tmp_path / name)
    onnx.save(model, path)
    with recorded_calls() as calls:
        analysis = analyze(load_onnx(path))
    assert undeclared_reads(calls) == []
    return analysis


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def checked(model: onnx.ModelProto, feeds: dict[str, np.ndarray], tmp_path: Path):
    """Analyse the single-node model and compare each output's shape and dtype with onnxruntime's;
    the node's layer result."""
    analysis = analysed(model, tmp_path)
    actual = run_ort(model, feeds)
    assert actual, "onnxruntime produced nothing"
    for name, array in actual.items():
        ours = analysis.tensors[name]
        assert (tuple(ours.shape), ours.dtype) == (array.shape, array.dtype.name), name
    layer = analysis.layer("n")
    assert layer.modelled and layer.explain is not None and layer.explain()
    return layer


def counts(layer) -> tuple[int, int, int]:
    return layer.params, layer.macs, layer.flops


def totals(model: onnx.ModelProto, tmp_path: Path) -> tuple[int, int, int]:
    """Params, MACs and FLOPs of a whole (unfused) model as archcalc counts them."""
    analysis = analysed(model, tmp_path, "unfused.onnx")
    assert not analysis.totals.partial, [layer.op for layer in analysis.layers if not layer.modelled]
    return analysis.totals.params, analysis.totals.macs, analysis.totals.flops


def unfused(nodes: list[onnx.NodeProto], inputs: dict[str, tuple[str, np.ndarray]], opset: int = 24):
    return make(nodes, inputs, [nodes[-1].output[0]], opset=opset)[0]


def node(op: str, inputs: list[str], outputs: list[str], **attrs) -> onnx.NodeProto:
    return helper.make_node(op, inputs, outputs, name=f"{op}_{outputs[0]}", **attrs)


# Per-element FLOPs of the standard rules, for the hand formulas.
LAYER_NORM, RMS_NORM, GELU, GELU_TANH, SWISH = 7, 4, 5, 9, 6
SCALE_SOFTMAX = 1 + 5  # per attention score: scale, softmax
MASK = 1
DEQUANTIZE, REQUANTIZE, DYNAMIC_QUANTIZE = 2, 5, 7


# ---------------------------------------------------------------------------------------
# the registry


def test_contrib_ops_are_looked_up_in_their_own_domain():
    assert rule_for(MS, "Attention") is not rule_for("", "Attention")
    assert rule_for(MS, "Gelu") is not rule_for("", "Gelu")
    assert rule_for("", "FusedConv") is None  # a contrib op has no rule in ONNX's domain
    assert rule_for("com.example", "Attention") is None
    assert rule_for("", "SimplifiedLayerNormalization") is not None


def test_every_contrib_rule_has_a_case_here():
    text = Path(__file__).read_text()
    untested = sorted(op for op in domain_rules(MS) if f'"{op}"' not in text)
    assert untested == []


def test_every_contrib_rule_has_a_counting_row_in_the_readme():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme[readme.index("## Counting conventions"):readme.index("## Tables in the terminal")]
    rows = [line for line in table.splitlines() if line.startswith("| ")]

    def named(op: str, row: str) -> bool:  # in the row's op column
        return re.search(rf"\b{op}\b", row.split("|")[1]) is not None

    assert [op for op in domain_rules(MS) if not any(named(op, row) for row in rows)] == []
    # the blocked ops share standard names: their row says its domain
    assert [op for op in domain_rules("com.microsoft.nchwc")
            if not any(named(op, row) and "nchwc" in row for row in rows)] == []


def test_contrib_and_onnx_gelu_in_one_model_keep_their_own_rules(tmp_path):
    x = f32(2, 3, 8)
    model, feeds = make([helper.make_node("Gelu", ["x"], ["a"], name="onnx_gelu", approximate="tanh"),
                         helper.make_node("Gelu", ["x"], ["b"], name="ms_gelu", domain=MS)],
                        {"x": data(x)}, ["a", "b"], opset=21)
    analysis = analysed(model, tmp_path)
    assert analysis.layer("onnx_gelu").flops == GELU_TANH * x.size
    assert analysis.layer("ms_gelu").flops == GELU * x.size


# ---------------------------------------------------------------------------------------
# attention


def _attention_unfused(x, w, b, heads, *, mask=None, causal=0):
    """MatMul + bias Add + Split + ONNX Attention: what the Attention fusion replaces."""
    nodes = [node("MatMul", ["x", "w"], ["xw"]), node("Add", ["xw", "b"], ["qkv"]),
             node("Split", ["qkv"], ["q", "k", "v"], axis=-1, num_outputs=3),
             node("Attention", ["q", "k", "v"] + (["mask"] if mask is not None else []), ["y"],
                  q_num_heads=heads, kv_num_heads=heads, is_causal=causal)]
    inputs = {"x": data(x), "w": init(w), "b": init(b)}
    if mask is not None:
        inputs["mask"] = data(mask)
    return unfused(nodes, inputs)


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("variant", ["plain", "mask", "unidirectional"])
def test_attention(batch, seq, heads, variant, tmp_path):
    hidden = heads * HEAD
    x, w, b = f32(batch, seq, hidden), f32(hidden, 3 * hidden), f32(3 * hidden)
    mask = np.ones((batch, seq), np.int32) if variant == "mask" else None
    model, feeds = single("Attention", [data(x), init(w), init(b)] + ([data(mask)] if mask is not None else []),
                          num_heads=heads, unidirectional=int(variant == "unidirectional"))
    layer = checked(model, feeds, tmp_path)
    masked = variant != "plain"
    projection = batch * seq * hidden * 3 * hidden
    scores = batch * heads * seq * seq
    assert counts(layer) == (
        hidden * 3 * hidden + 3 * hidden,
        projection + scores * (HEAD + HEAD),
        2 * (projection + scores * 2 * HEAD) + batch * seq * 3 * hidden + (SCALE_SOFTMAX + masked * MASK) * scores)
    source = _attention_unfused(x, w, b, heads, mask=None if mask is None else np.ones((seq, seq), bool),
                                causal=int(variant == "unidirectional"))
    assert counts(layer) == totals(source, tmp_path)


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
def test_attention_with_past_and_v_hidden(batch, seq, heads, tmp_path):
    hidden, v_hidden, past_seq = heads * HEAD, heads * 2 * HEAD, 3
    x, w = f32(batch, seq, hidden), f32(hidden, 2 * hidden + v_hidden)
    model, feeds = single("Attention", [data(x), init(w), None, None], num_heads=heads,
                          qkv_hidden_sizes=[hidden, hidden, v_hidden])
    layer = checked(model, feeds, tmp_path)
    assert layer.outputs[0].shape == (batch, seq, v_hidden)
    projection = batch * seq * hidden * (2 * hidden + v_hidden)
    scores = batch * heads * seq * seq
    assert layer.macs == projection + scores * (HEAD + 2 * HEAD)
    assert layer.params == hidden * (2 * hidden + v_hidden)
    # past state [2, batch, heads, past, head]; present covers past + new positions
    w = f32(hidden, 3 * hidden)
    model, feeds = single("Attention", [data(x), init(w), init(f32(3 * hidden)), None,
                                        data(f32(2, batch, heads, past_seq, HEAD))], 2, num_heads=heads)
    layer = checked(model, feeds, tmp_path)
    total = past_seq + seq
    assert layer.outputs[1].shape == (2, batch, heads, total, HEAD)
    assert layer.macs == batch * seq * hidden * 3 * hidden + batch * heads * seq * total * 2 * HEAD


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
def test_qattention(batch, seq, heads, tmp_path):
    hidden = heads * HEAD
    model, feeds = single("QAttention", [data(u8(batch, seq, hidden)), init(u8(hidden, 3 * hidden)),
                                         init(f32(3 * hidden)), init(scalar(0.1)), init(scalar(0.2)), None,
                                         init(scalar(128, np.uint8)), init(scalar(128, np.uint8))],
                          num_heads=heads)
    layer = checked(model, feeds, tmp_path)
    projection = batch * seq * hidden * 3 * hidden
    scores = batch * heads * seq * seq
    macs = projection + scores * 2 * HEAD
    # as Attention, plus each int32 projection rescaled to float
    assert counts(layer) == (hidden * 3 * hidden + 3 * hidden, macs,
                             2 * macs + 2 * batch * seq * 3 * hidden + SCALE_SOFTMAX * scores)
    assert layer.integer_macs == projection  # the int8 projection; the attention products are float


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("kv_seq", [None, 6])
def test_multi_head_attention(batch, seq, heads, kv_seq, tmp_path):
    hidden = heads * HEAD
    kv_seq = kv_seq or seq
    q, k, v, b = f32(batch, seq, hidden), f32(batch, kv_seq, hidden), f32(batch, kv_seq, hidden), f32(3 * hidden)
    mask = np.ones((batch, kv_seq), np.int32)
    model, feeds = single("MultiHeadAttention", [data(q), data(k), data(v), init(b), data(mask)], num_heads=heads)
    layer = checked(model, feeds, tmp_path)
    scores = batch * heads * seq * kv_seq
    macs = scores * 2 * HEAD
    bias_adds = batch * seq * hidden + 2 * batch * kv_seq * hidden
    assert counts(layer) == (3 * hidden, macs, 2 * macs + bias_adds + (SCALE_SOFTMAX + MASK) * scores)
    source = unfused([node("Add", ["q", "bq"], ["q1"]), node("Add", ["k", "bk"], ["k1"]),
                      node("Add", ["v", "bv"], ["v1"]),
                      node("Attention", ["q1", "k1", "v1", "m"], ["y"], q_num_heads=heads, kv_num_heads=heads)],
                     {"q": data(q), "k": data(k), "v": data(v), "bq": init(b[:hidden]),
                      "bk": init(b[hidden:2 * hidden]), "bv": init(b[2 * hidden:]),
                      "m": data(np.ones((seq, kv_seq), bool))})
    assert counts(layer) == totals(source, tmp_path)


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
def test_multi_head_attention_with_past(batch, seq, heads, tmp_path):
    hidden, past_seq = heads * HEAD, 5
    model, feeds = single("MultiHeadAttention",
                          [data(f32(batch, seq, hidden)), data(f32(batch, seq, hidden)), data(f32(batch, seq, hidden)),
                           None, None, None, data(f32(batch, heads, past_seq, HEAD)),
                           data(f32(batch, heads, past_seq, HEAD))], 3, num_heads=heads)
    layer = checked(model, feeds, tmp_path)
    total = past_seq + seq
    assert layer.outputs[1].shape == layer.outputs[2].shape == (batch, heads, total, HEAD)
    assert counts(layer) == (0, batch * heads * seq * total * 2 * HEAD,
                             2 * batch * heads * seq * total * 2 * HEAD + SCALE_SOFTMAX * batch * heads * seq * total)


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("kv_heads_divisor", [1, 2])
def test_group_query_attention(batch, seq, heads, kv_heads_divisor, tmp_path):
    if heads % kv_heads_divisor:
        pytest.skip("heads not divisible")
    kv_heads = heads // kv_heads_divisor
    q, k, v = f32(batch, seq, heads * HEAD), f32(batch, seq, kv_heads * HEAD), f32(batch, seq, kv_heads * HEAD)
    model, feeds = single("GroupQueryAttention",
                          [data(q), data(k), data(v), None, None, init(np.full(batch, seq - 1, np.int32)),
                           init(scalar(seq, np.int32))], 3, num_heads=heads, kv_num_heads=kv_heads)
    layer = checked(model, feeds, tmp_path)
    scores = batch * heads * seq * seq
    macs = scores * 2 * HEAD
    assert counts(layer) == (0, macs, 2 * macs + (SCALE_SOFTMAX + MASK) * scores)  # causal by default
    assert layer.outputs[1].shape == (batch, kv_heads, seq, HEAD)


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
def test_group_query_attention_decoding_with_past(batch, seq, heads, tmp_path):
    past_seq, kv_heads = seq, 1
    seq = 1  # one new token (onnxruntime takes a longer chunk with past for batch 1 only)
    total = past_seq + seq
    query, key, value = f32(batch, seq, heads * HEAD), f32(batch, seq, HEAD), f32(batch, seq, HEAD)
    past_key, past_value = f32(batch, kv_heads, past_seq, HEAD), f32(batch, kv_heads, past_seq, HEAD)
    model, feeds = single("GroupQueryAttention",
                          [data(query), data(key), data(value), data(past_key), data(past_value),
                           init(np.full(batch, total - 1, np.int32)), init(scalar(total, np.int32))], 3,
                          num_heads=heads, kv_num_heads=kv_heads)
    layer = checked(model, feeds, tmp_path)
    assert layer.outputs[1].shape == (batch, kv_heads, total, HEAD)
    scores = batch * heads * seq * total
    assert counts(layer) == (0, scores * 2 * HEAD, 2 * scores * 2 * HEAD + (SCALE_SOFTMAX + MASK) * scores)


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("layout", ["3d", "4d"])
def test_rotary_embedding(batch, seq, heads, layout, tmp_path):
    x = f32(batch, seq, heads * HEAD) if layout == "3d" else f32(batch, heads, seq, HEAD)
    positions = np.tile(np.arange(seq, dtype=np.int64), (batch, 1))
    cos, sin = f32(seq, HEAD // 2), f32(seq, HEAD // 2)
    attrs = {"num_heads": heads} if layout == "3d" else {}
    model, feeds = single("RotaryEmbedding", [data(x), data(positions), init(cos), init(sin)], **attrs)
    layer = checked(model, feeds, tmp_path)
    assert counts(layer) == (0, 0, 3 * batch * seq * heads * HEAD)  # 6 FLOPs per rotated pair
    source = unfused([node("RotaryEmbedding", ["x", "cos", "sin", "pos"], ["y"], **attrs)],
                     {"x": data(x), "cos": init(cos), "sin": init(sin), "pos": data(positions)})
    assert counts(layer) == totals(source, tmp_path)


# ---------------------------------------------------------------------------------------
# normalisation


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("op,norm_flops", [("SkipLayerNormalization", LAYER_NORM),
                                           ("SkipSimplifiedLayerNormalization", RMS_NORM)])
def test_skip_layer_normalization(op, norm_flops, batch, seq, heads, with_bias, tmp_path):
    hidden = heads * HEAD
    x, skip, gamma, beta, bias = f32(batch, seq, hidden), f32(batch, seq, hidden), f32(hidden), f32(hidden), f32(hidden)
    simplified = op == "SkipSimplifiedLayerNormalization"
    learned = [init(gamma)] + ([] if simplified else [init(beta)])
    model, feeds = single(op, [data(x), data(skip)] + learned + ([init(bias)] if with_bias else []), 4)
    layer = checked(model, feeds, tmp_path)
    elements = batch * seq * hidden
    assert counts(layer) == ((2 - simplified + with_bias) * hidden, 0, (1 + with_bias + norm_flops) * elements)
    nodes = [node("Add", ["x", "skip"], ["s"])]
    if with_bias:
        nodes.append(node("Add", ["s", "bias"], ["s2"]))
    last = nodes[-1].output[0]
    nodes.append(node("RMSNormalization", [last, "gamma"], ["y"]) if simplified
                 else node("LayerNormalization", [last, "gamma", "beta"], ["y"]))
    source = unfused(nodes, {"x": data(x), "skip": data(skip), "gamma": init(gamma), "beta": init(beta),
                             "bias": init(bias)})
    assert counts(layer) == totals(source, tmp_path)


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
def test_skip_layer_normalization_broadcast_skip(batch, seq, heads, tmp_path):
    hidden = heads * HEAD
    model, feeds = single("SkipLayerNormalization", [data(f32(batch, seq, hidden)), data(f32(1, seq, hidden)),
                                                     init(f32(hidden)), init(f32(hidden))])
    layer = checked(model, feeds, tmp_path)
    assert layer.flops == (1 + LAYER_NORM) * batch * seq * hidden


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
def test_simplified_layer_normalization(batch, seq, heads, tmp_path):
    x, scale = f32(batch, seq, heads * HEAD), f32(heads * HEAD)
    model, feeds = single("SimplifiedLayerNormalization", [data(x), init(scale)], 2, domain="", axis=-1)
    layer = checked(model, feeds, tmp_path)
    assert counts(layer) == (heads * HEAD, 0, RMS_NORM * x.size)
    source = unfused([node("RMSNormalization", ["x", "scale"], ["y"])], {"x": data(x), "scale": init(scale)})
    assert counts(layer) == totals(source, tmp_path)


def _embedding_inputs(batch, seq, hidden, vocab=11, quantised=False):
    table = u8 if quantised else f32
    return (i32(batch, seq, high=vocab), i32(batch, seq), table(vocab, hidden), table(seq + 2, hidden),
            table(2, hidden), table(hidden), table(hidden), np.ones((batch, seq), np.int32))


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("segments", [True, False])
def test_embed_layer_normalization(batch, seq, heads, segments, tmp_path):
    hidden, vocab = heads * HEAD, 11
    ids, segment_ids, word, position, segment, gamma, beta, mask = _embedding_inputs(batch, seq, hidden, vocab)
    optional = [data(segment_ids)] if segments else [None]
    tables = [init(word), init(position)] + ([init(segment)] if segments else [None])
    model, feeds = single("EmbedLayerNormalization",
                          [data(ids), *optional, *tables, init(gamma), init(beta), data(mask)], 3)
    layer = checked(model, feeds, tmp_path)
    elements = batch * seq * hidden
    embeddings = 2 + segments
    assert counts(layer) == ((vocab + seq + 2 + 2 * segments + 2) * hidden, 0,
                             (embeddings - 1 + LAYER_NORM) * elements + batch * seq)  # + the mask's sum per row
    nodes = [node("Gather", ["word", "ids"], ["we"]), node("Gather", ["position", "positions"], ["pe"]),
             node("Add", ["we", "pe"], ["e"])]
    if segments:
        nodes += [node("Gather", ["segment", "segment_ids"], ["se"]), node("Add", ["e", "se"], ["e2"])]
    nodes += [node("ReduceSum", ["mask", "axis"], ["mask_index"]),
              node("LayerNormalization", [nodes[-1].output[0], "gamma", "beta"], ["y"])]
    source = unfused(nodes, {"ids": data(ids), "segment_ids": data(segment_ids), "mask": data(mask),
                             "positions": init(np.arange(seq, dtype=np.int64)), "axis": init(np.array([1])),
                             "word": init(word), "position": init(position), "segment": init(segment),
                             "gamma": init(gamma), "beta": init(beta)})
    assert counts(layer) == totals(source, tmp_path)


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
def test_qembed_layer_normalization(batch, seq, heads, tmp_path):
    hidden, vocab = heads * HEAD, 11
    ids, segment_ids, word, position, segment, gamma, beta, mask = _embedding_inputs(batch, seq, hidden, vocab,
                                                                                     quantised=True)
    scales = [init(scalar(0.1)) for _ in range(5)]
    zero_points = [init(scalar(128, np.uint8)) for _ in range(5)]
    model, feeds = single("QEmbedLayerNormalization",
                          [data(ids), data(segment_ids), init(word), init(position), init(segment), init(gamma),
                           init(beta), data(mask), *scales, *zero_points], 2)
    layer = checked(model, feeds, tmp_path)
    elements = batch * seq * hidden
    # as EmbedLayerNormalization, each of the 3 gathered values dequantised first
    assert counts(layer) == ((vocab + seq + 2 + 2 + 2) * hidden, 0,
                             (2 + LAYER_NORM + 3 * DEQUANTIZE) * elements + batch * seq)


# ---------------------------------------------------------------------------------------
# activations


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("op", ["BiasGelu", "FastGelu", "FastGelu-nobias", "Gelu", "QuickGelu"])
def test_gelu_family(op, batch, seq, heads, tmp_path):
    hidden = heads * HEAD
    x, bias = f32(batch, seq, hidden), f32(hidden)
    elements = batch * seq * hidden
    with_bias = op in ("BiasGelu", "FastGelu")
    name = op.split("-")[0]
    model, feeds = single(name, [data(x)] + ([init(bias)] if with_bias else []))
    layer = checked(model, feeds, tmp_path)
    per_element = {"BiasGelu": 1 + GELU, "FastGelu": 1 + GELU_TANH, "FastGelu-nobias": GELU_TANH, "Gelu": GELU,
                   "QuickGelu": SWISH}[op]
    assert counts(layer) == (hidden * with_bias, 0, per_element * elements)
    activation = (node("Swish", ["a"], ["y"], alpha=1.702) if name == "QuickGelu"
                  else node("Gelu", ["a"], ["y"], approximate="tanh" if name == "FastGelu" else "none"))
    nodes = ([node("Add", ["x", "bias"], ["a"])] if with_bias else [node("Identity", ["x"], ["a"])]) + [activation]
    source = unfused(nodes, {"x": data(x), "bias": init(bias)})
    assert counts(layer) == totals(source, tmp_path)


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
def test_bias_add_without_cpu_kernel(batch, seq, heads, tmp_path):
    channels = heads * HEAD
    model, _ = single("BiasAdd", [data(f32(batch, seq, channels)), init(f32(channels)),
                                  data(f32(batch, seq, channels))])
    layer = analysed(model, tmp_path).layer("n")
    # schema: Y (N, S, C) = X + bias (C) + skip (N, S, C)
    assert layer.outputs[0].shape == (batch, seq, channels)
    assert counts(layer) == (channels, 0, 2 * batch * seq * channels)


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
def test_bias_split_gelu_without_cpu_kernel(batch, seq, heads, tmp_path):
    width = 2 * heads * HEAD
    model, _ = single("BiasSplitGelu", [data(f32(batch, seq, width)), init(f32(width))])
    layer = analysed(model, tmp_path).layer("n")
    # schema: Y (N, S, D/2) = left half * Gelu(right half) of X + bias (D)
    assert layer.outputs[0].shape == (batch, seq, width // 2)
    assert counts(layer) == (width, 0, batch * seq * width + (GELU + 1) * batch * seq * width // 2)


# ---------------------------------------------------------------------------------------
# fused products


CONV_CASES = [("Relu", False, 1, 1), ("LeakyRelu", False, 2, 1), ("Relu", True, 1, 2), ("", False, 1, 1),
              ("Sigmoid", False, 2, 4)]


@pytest.mark.parametrize("activation,residual,stride,groups", CONV_CASES,
                         ids=[f"{a or 'none'}{'+z' if r else ''}s{s}g{g}" for a, r, s, g in CONV_CASES])
def test_fused_conv(activation, residual, stride, groups, tmp_path):
    batch, channels, filters, size, kernel = 2, 4, 8, 9, 3
    x, w, b = f32(batch, channels, size, size), f32(filters, channels // groups, kernel, kernel), f32(filters)
    out = (size + 2 - kernel) // stride + 1
    z = f32(batch, filters, out, out)
    attrs = {"activation": activation} if activation else {}
    if activation == "LeakyRelu":
        attrs["activation_params"] = [0.1]
    model, feeds = single("FusedConv", [data(x), init(w), init(b)] + ([data(z)] if residual else []),
                          strides=[stride, stride], pads=[1, 1, 1, 1], group=groups, **attrs)
    layer = checked(model, feeds, tmp_path)
    outputs = batch * filters * out * out
    macs = outputs * channels // groups * kernel * kernel
    per_output = {"Relu": 1, "LeakyRelu": 2, "Sigmoid": 4, "": 0}[activation] + residual
    assert counts(layer) == (filters * channels // groups * kernel * kernel + filters, macs,
                             2 * macs + outputs + per_output * outputs)
    nodes = [node("Conv", ["x", "w", "b"], ["c"], strides=[stride, stride], pads=[1, 1, 1, 1], group=groups)]
    if residual:
        nodes.append(node("Add", ["c", "z"], ["c2"]))
    if activation:
        leak = {"alpha": 0.1} if activation == "LeakyRelu" else {}
        nodes.append(node(activation, [nodes[-1].output[0]], ["y"], **leak))
    source = unfused(nodes, {"x": data(x), "w": init(w), "b": init(b), "z": data(z)})
    assert counts(layer) == totals(source, tmp_path)


@pytest.mark.parametrize("activation,trans_b", [("Relu", 0), ("LeakyRelu", 1), ("Tanh", 0)])
@pytest.mark.parametrize("m,k,n", [(3, 5, 4), (8, 16, 2)])
def test_fused_gemm(activation, trans_b, m, k, n, tmp_path):
    a, w, c = f32(m, k), f32(n, k) if trans_b else f32(k, n), f32(n)
    alpha = {"activation_alpha": 0.1} if activation == "LeakyRelu" else {}
    model, feeds = single("FusedGemm", [data(a), init(w), init(c)], transB=trans_b, activation=activation, **alpha)
    layer = checked(model, feeds, tmp_path)
    per_output = {"Relu": 1, "LeakyRelu": 2, "Tanh": 1}[activation]
    assert counts(layer) == ((k + 1) * n, m * n * k, 2 * m * n * k + m * n + per_output * m * n)
    source = unfused([node("Gemm", ["a", "w", "c"], ["g"], transB=trans_b), node(activation, ["g"], ["y"])],
                     {"a": data(a), "w": init(w), "c": init(c)})
    assert counts(layer) == totals(source, tmp_path)


# (A shape, B shape, attributes, the transposes that undo them)
MATMUL_CASES = [
    ((2, 3, 5), (2, 4, 5), {"transB": 1}, None, (0, 2, 1)),
    ((2, 5, 3), (5, 4), {"transA": 1, "alpha": 0.5}, (0, 2, 1), None),
    ((4, 2, 3, 5), (2, 3, 5, 6), {"transBatchA": 1}, (1, 2, 0, 3), None),
    ((4, 2, 5, 3), (2, 5, 4, 6), {"transBatchA": 1, "transA": 1, "alpha": 2.0}, (1, 2, 3, 0), None),
    ((3, 2, 3, 5), (5, 3, 2, 4), {"transBatchB": 1}, None, (1, 2, 0, 3)),
    ((3, 2, 3, 5), (4, 3, 2, 5), {"transBatchB": 1, "transB": 1}, None, (1, 2, 3, 0)),
]


@pytest.mark.parametrize("op", ["FusedMatMul", "TransposeMatMul"])
@pytest.mark.parametrize("a_shape,b_shape,attrs,perm_a,perm_b", MATMUL_CASES,
                         ids=["tB", "tA-alpha", "tbA", "tbA-tA-alpha", "tbB", "tbB-tB"])
def test_fused_matmul(op, a_shape, b_shape, attrs, perm_a, perm_b, tmp_path):
    if op == "TransposeMatMul" and any(k.startswith("transBatch") for k in attrs):
        pytest.skip("TransposeMatMul has no transBatch attributes")
    a, b = f32(*a_shape), f32(*b_shape)
    model, feeds = single(op, [data(a), init(b)], **attrs)
    layer = checked(model, feeds, tmp_path)
    expected = np.matmul(a.transpose(perm_a) if perm_a else a, b.transpose(perm_b) if perm_b else b)
    # the transposes are what onnxruntime computes, not only the shape it gives
    np.testing.assert_allclose(run_ort(model, feeds)["out0"], attrs.get("alpha", 1.0) * expected, rtol=1e-4,
                               atol=1e-4)
    reduced = (a.transpose(perm_a) if perm_a else a).shape[-1]
    macs = expected.size * reduced
    scaled = attrs.get("alpha", 1.0) != 1.0
    assert counts(layer) == (b.size, macs, 2 * macs + scaled * expected.size)
    nodes = [node("Transpose", [name], [f"{name}t"], perm=list(perm)) for name, perm in (("a", perm_a), ("b", perm_b))
             if perm]
    nodes.append(node("MatMul", ["at" if perm_a else "a", "bt" if perm_b else "b"], ["p"]))
    if scaled:
        nodes.append(node("Mul", ["p", "alpha"], ["y"]))
    source = unfused(nodes, {"a": data(a), "b": init(b), "alpha": init(scalar(attrs.get("alpha", 1.0)))})
    assert counts(layer) == totals(source, tmp_path)


# ---------------------------------------------------------------------------------------
# quantised products


def _int4_weight(k: int, n: int) -> TensorProto:
    values = RNG.integers(-8, 8, (k, n))
    return helper.make_tensor("w", TensorProto.INT4, [k, n], values.flatten().tolist())


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("bits,block_size,with_bias", [(4, 16, False), (4, 32, True), (8, 16, True)])
def test_matmul_nbits(batch, seq, heads, bits, block_size, with_bias, tmp_path):
    k, n = 64, heads * HEAD
    blocks = k // block_size
    packed = u8(n, blocks, block_size * bits // 8)
    a, bias = f32(batch, seq, k), f32(n)
    model, feeds = single("MatMulNBits", [data(a), init(packed), init(f32(n, blocks)), None, None]
                          + ([init(bias)] if with_bias else []), K=k, N=n, bits=bits, block_size=block_size)
    layer = checked(model, feeds, tmp_path)
    macs = batch * seq * k * n
    # params by value: the k x n weight (not its packed bytes) + bias
    assert counts(layer) == (k * n + with_bias * n, macs,
                             2 * macs + DEQUANTIZE * k * n + with_bias * batch * seq * n)
    assert layer.integer_macs == 0  # the weights dequantised, a float product
    if bits == 4:  # the source the int4 tools fuse: DequantizeLinear of an int4 [K, N] weight, MatMul (+ Add)
        nodes = [node("DequantizeLinear", ["w", "scale"], ["wf"], axis=0, block_size=block_size),
                 node("MatMul", ["a", "wf"], ["p"])] + ([node("Add", ["p", "bias"], ["y"])] if with_bias else [])
        model, _ = make(nodes, {"a": data(a), "scale": init(f32(blocks, n)), "bias": init(bias)},
                        [nodes[-1].output[0]], opset=21)
        model.graph.initializer.append(_int4_weight(k, n))
        assert counts(layer) == totals(model, tmp_path)


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("bits", [4, 8])
def test_gather_block_quantized(batch, seq, heads, bits, tmp_path):
    vocab, hidden, block_size = 10, heads * 16, 16
    table = u8(vocab, hidden * bits // 8)
    ids = i32(batch, seq, high=vocab)
    model, feeds = single("GatherBlockQuantized", [init(table), data(ids), init(f32(vocab, hidden // block_size))],
                          bits=bits, block_size=block_size, gather_axis=0, quantize_axis=1)
    layer = checked(model, feeds, tmp_path)
    assert counts(layer) == (vocab * hidden, 0, DEQUANTIZE * batch * seq * hidden)


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
def test_gather_block_quantized_int4(batch, seq, heads, tmp_path):
    vocab, hidden, block_size = 10, heads * 16, 16
    ids = i32(batch, seq, high=vocab)
    model, feeds = single("GatherBlockQuantized", [init(u8(1)), data(ids), init(f32(vocab, hidden // block_size))],
                          block_size=block_size, gather_axis=0, quantize_axis=1)
    values = RNG.integers(-8, 8, (vocab, hidden)).flatten().tolist()
    model.graph.initializer[0].CopyFrom(helper.make_tensor("in0", TensorProto.INT4, [vocab, hidden], values))
    layer = checked(model, feeds, tmp_path)
    assert counts(layer) == (vocab * hidden, 0, DEQUANTIZE * batch * seq * hidden)


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("with_bias", [False, True])
def test_dynamic_quantize_matmul(batch, seq, heads, with_bias, tmp_path):
    k, n = 16, heads * HEAD
    a, w, bias = f32(batch, seq, k), i8(k, n), f32(n)
    model, feeds = single("DynamicQuantizeMatMul", [data(a), init(w), init(scalar([0.1])), None]
                          + ([init(bias)] if with_bias else []))
    layer = checked(model, feeds, tmp_path)
    macs = batch * seq * k * n
    outputs = batch * seq * n
    assert counts(layer) == (k * n + with_bias * n, macs,
                             2 * macs + DYNAMIC_QUANTIZE * a.size + outputs + with_bias * outputs)
    assert layer.integer_macs == macs  # A quantised at run time, then an int8 product
    # its source: DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul by the scales (-> Add bias)
    nodes = [node("DynamicQuantizeLinear", ["a"], ["aq", "a_scale", "a_zp"]),
             node("MatMulInteger", ["aq", "w", "a_zp"], ["p"]), node("Cast", ["p"], ["pf"], to=TensorProto.FLOAT),
             node("Mul", ["pf", "w_scale"], ["y0"])] + ([node("Add", ["y0", "bias"], ["y"])] if with_bias else [])
    source = unfused(nodes, {"a": data(a), "w": init(w), "w_scale": init(scalar(0.1)), "bias": init(bias)})
    assert counts(layer) == totals(source, tmp_path)


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
def test_matmul_integer_to_float(batch, seq, heads, tmp_path):
    k, n = 16, heads * HEAD
    a, w, bias = u8(batch, seq, k), i8(k, n), f32(n)
    model, feeds = single("MatMulIntegerToFloat", [data(a), init(w), init(scalar(0.1)), init(scalar(0.2)),
                                                   init(scalar(128, np.uint8)), None, init(bias)])
    layer = checked(model, feeds, tmp_path)
    macs = batch * seq * k * n
    outputs = batch * seq * n
    assert counts(layer) == (k * n + n, macs, 2 * macs + outputs + outputs)
    nodes = [node("MatMulInteger", ["a", "w"], ["p"]), node("Cast", ["p"], ["pf"], to=TensorProto.FLOAT),
             node("Mul", ["pf", "scale"], ["y0"]), node("Add", ["y0", "bias"], ["y"])]
    source = unfused(nodes, {"a": data(a), "w": init(w), "scale": init(scalar(0.02)), "bias": init(bias)})
    assert counts(layer) == totals(source, tmp_path)


QUANT = [init(scalar(0.05)), init(scalar(128, np.uint8))]  # a scale and a zero point


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("op", ["QLinearAdd", "QLinearMul"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_qlinear_binary(op, batch, seq, heads, dtype, tmp_path):
    hidden = heads * HEAD
    zero = [init(scalar(0.05)), init(scalar(0, dtype))]
    a, b = RNG.integers(0, 100, (batch, seq, hidden)).astype(dtype), RNG.integers(0, 100, hidden).astype(dtype)
    model, feeds = single(op, [data(a), *zero, init(b), *zero, *zero])
    layer = checked(model, feeds, tmp_path)
    assert counts(layer) == (hidden, 0, (1 + REQUANTIZE) * a.size)  # the op, then requantise


@pytest.mark.parametrize("op,per_element", [("QLinearSigmoid", 4), ("QLinearLeakyRelu", 2)])
@pytest.mark.parametrize("shape", [(2, 5), (1, 3, 8, 8)])
def test_qlinear_activation(op, per_element, shape, tmp_path):
    x = u8(*shape)
    model, feeds = single(op, [data(x), *QUANT, *QUANT], **({"alpha": 0.1} if op == "QLinearLeakyRelu" else {}))
    layer = checked(model, feeds, tmp_path)
    assert counts(layer) == (0, 0, (per_element + REQUANTIZE) * x.size)


@pytest.mark.parametrize("channels_last", [0, 1])
@pytest.mark.parametrize("kernel,stride,pad", [(2, 2, 0), (3, 1, 1), (3, 2, 1)])
def test_qlinear_average_pool(channels_last, kernel, stride, pad, tmp_path):
    batch, channels, size = 2, 3, 9
    x = u8(batch, size, size, channels) if channels_last else u8(batch, channels, size, size)
    model, feeds = single("QLinearAveragePool", [data(x), *QUANT, *QUANT], kernel_shape=[kernel, kernel],
                          strides=[stride, stride], pads=[pad] * 4, channels_last=channels_last)
    layer = checked(model, feeds, tmp_path)
    out = (size + 2 * pad - kernel) // stride + 1
    outputs = batch * channels * out * out
    assert counts(layer) == (0, 0, outputs * kernel * kernel + REQUANTIZE * outputs)


@pytest.mark.parametrize("channels_last", [0, 1])
def test_qlinear_global_average_pool(channels_last, tmp_path):
    x = u8(2, 7, 7, 5) if channels_last else u8(2, 5, 7, 7)
    model, feeds = single("QLinearGlobalAveragePool", [data(x), *QUANT, *QUANT], channels_last=channels_last)
    layer = checked(model, feeds, tmp_path)
    assert counts(layer) == (0, 0, x.size + REQUANTIZE * 2 * 5)


@pytest.mark.parametrize("axis", [1, -1])
def test_qlinear_concat(axis, tmp_path):
    first, second = (u8(2, 3, 4), u8(2, 5, 4)) if axis == 1 else (u8(2, 3, 4), u8(2, 3, 6))
    model, feeds = single("QLinearConcat", [*QUANT, data(first), *QUANT, data(second), *QUANT], axis=axis)
    layer = checked(model, feeds, tmp_path)
    assert counts(layer) == (0, 0, REQUANTIZE * (first.size + second.size))


@pytest.mark.parametrize("quantised_output", [True, False])
@pytest.mark.parametrize("m,k,n,trans_b", [(3, 5, 4, 0), (8, 16, 6, 1)])
def test_qgemm(quantised_output, m, k, n, trans_b, tmp_path):
    w = u8(n, k) if trans_b else u8(k, n)
    output = [*QUANT] if quantised_output else []
    model, feeds = single("QGemm", [data(u8(m, k)), *QUANT, init(w), *QUANT, init(np.zeros(n, np.int32)), *output],
                          transB=trans_b)
    layer = checked(model, feeds, tmp_path)
    # params: the uint8 weight and the int32 bias; requantised (5) or rescaled to float (1) per output
    per_output = REQUANTIZE if quantised_output else 1
    assert counts(layer) == (k * n + n, m * n * k, 2 * m * n * k + m * n + per_output * m * n)
    assert layer.integer_macs == layer.macs


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
def test_group_query_attention_packed_with_rotary(batch, seq, heads, tmp_path):
    kv_heads, head = 1, 16  # rotary on onnxruntime's CPU wants a head size multiple of 16
    packed = f32(batch, seq, (heads + 2 * kv_heads) * head)  # Q, K and V side by side
    model, feeds = single("GroupQueryAttention",
                          [data(packed), None, None, None, None, init(np.full(batch, seq - 1, np.int32)),
                           init(scalar(seq, np.int32)), init(f32(seq, head // 2)), init(f32(seq, head // 2))], 3,
                          num_heads=heads, kv_num_heads=kv_heads, do_rotary=1)
    layer = checked(model, feeds, tmp_path)
    assert layer.outputs[0].shape == (batch, seq, heads * head)
    scores = batch * heads * seq * seq
    rotated = batch * seq * (heads + kv_heads) * head  # every Q and K head
    assert counts(layer) == (0, scores * 2 * head, 2 * scores * 2 * head + (SCALE_SOFTMAX + MASK) * scores
                             + 3 * rotated)


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
def test_multi_head_attention_cached_cross_attention(batch, seq, heads, tmp_path):
    kv_seq = 7  # keys and values already projected and split into heads: [batch, heads, kv_seq, head]
    model, feeds = single("MultiHeadAttention", [data(f32(batch, seq, heads * HEAD)),
                                                 data(f32(batch, heads, kv_seq, HEAD)),
                                                 data(f32(batch, heads, kv_seq, HEAD))], num_heads=heads)
    layer = checked(model, feeds, tmp_path)
    scores = batch * heads * seq * kv_seq
    assert counts(layer) == (0, scores * 2 * HEAD, 2 * scores * 2 * HEAD + SCALE_SOFTMAX * scores)


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
def test_multi_head_attention_packed_without_cpu_kernel(batch, seq, heads, tmp_path):
    # onnxruntime's CPU kernel refuses packed Q/K/V; the schema: query [batch, seq, heads, 3, head],
    # output [batch, seq, heads * head], bias [3 * hidden] added to every packed value
    hidden = heads * HEAD
    model, _ = single("MultiHeadAttention", [data(f32(batch, seq, heads, 3, HEAD)), None, None,
                                             init(f32(3 * hidden))], 3, num_heads=heads)
    layer = analysed(model, tmp_path).layer("n")
    assert [o.shape for o in layer.outputs] == [(batch, seq, hidden)] + [(batch, heads, seq, HEAD)] * 2
    scores = batch * heads * seq * seq
    assert counts(layer) == (3 * hidden, scores * 2 * HEAD,
                             2 * scores * 2 * HEAD + batch * seq * 3 * hidden + SCALE_SOFTMAX * scores)


@pytest.mark.parametrize("batch,seq,heads", SHAPES, ids=SHAPE_IDS)
def test_attention_rotary_without_cpu_kernel(batch, seq, heads, tmp_path):
    # onnxruntime's CPU Attention refuses do_rotary: Q and K of every head rotated, 3 FLOPs per element
    hidden = heads * HEAD
    model, _ = single("Attention", [data(f32(batch, seq, hidden)), init(f32(hidden, 3 * hidden))],
                      num_heads=heads, do_rotary=1)
    layer = analysed(model, tmp_path).layer("n")
    projection, scores = batch * seq * hidden * 3 * hidden, batch * heads * seq * seq
    macs = projection + scores * 2 * HEAD
    rotated = 2 * batch * seq * hidden  # Q and K
    assert counts(layer) == (hidden * 3 * hidden, macs, 2 * macs + SCALE_SOFTMAX * scores + 3 * rotated)


# ---------------------------------------------------------------------------------------
# layouts: channel-blocked (com.microsoft.nchwc) and channels-last ops
#
# The blocked ops run at 16 and 32 channels, whole blocks of every MLAS block size (8 with
# SSE / AVX2, 16 with AVX-512), so onnxruntime's shapes are the same on any x86 machine.

NCHWC = "com.microsoft.nchwc"


def nchwc_single(op: str, inputs: list[tuple[str, np.ndarray] | None], **attrs):
    model, feeds = single(op, inputs, **attrs)
    node_ = model.graph.node[0]
    node_.domain = NCHWC
    model.opset_import.append(helper.make_opsetid(NCHWC, 1))
    return model, feeds


def test_every_nchwc_rule_has_a_case_here():
    text = Path(__file__).read_text()
    assert sorted(op for op in domain_rules(NCHWC) if f'"{op}"' not in text) == []


@needs_nchwc
@pytest.mark.parametrize("channels_last", [0, 1])
@pytest.mark.parametrize("channels", [16, 32])
def test_reorder_input(channels, channels_last, tmp_path):
    x = f32(2, 5, 7, channels) if channels_last else f32(2, channels, 5, 7)
    model, feeds = nchwc_single("ReorderInput", [data(x)], channels_last=channels_last)
    layer = checked(model, feeds, tmp_path)
    assert layer.outputs[0].shape == (2, channels, 5, 7) and counts(layer) == (0, 0, 0)


def test_reorder_input_of_part_blocks_says_what_it_assumes(tmp_path):
    # 24 channels are 3 blocks of 8 (AVX2) but not whole blocks of 16 (AVX-512)
    model, _ = nchwc_single("ReorderInput", [data(f32(1, 24, 4, 4))])
    analysis = analysed(model, tmp_path)
    assert analysis.layer("n").outputs[0].shape == (1, 24, 4, 4)
    assert any("AVX-512" in warning for warning in analysis.warnings)


@needs_nchwc
@pytest.mark.parametrize("channels_last", [0, 1])
def test_reorder_output(channels_last, tmp_path):
    model, feeds = nchwc_single("ReorderOutput", [data(f32(2, 32, 5, 7))], channels=32, channels_last=channels_last)
    layer = checked(model, feeds, tmp_path)
    assert layer.outputs[0].shape == ((2, 5, 7, 32) if channels_last else (2, 32, 5, 7))
    assert counts(layer) == (0, 0, 0)


# (input channels, filters, group, stride, activation, with Sum): NCHW input (3 channels, fewer
# than a block), blocked input, depthwise, strided, a residual Sum
NCHWC_CONV_CASES = [(3, 16, 1, 1, "Relu", False), (16, 32, 1, 1, "", False), (16, 16, 16, 1, "Relu", False),
                    (32, 16, 1, 2, "", False), (16, 16, 1, 1, "", True)]


@needs_nchwc
@pytest.mark.parametrize("channels,filters,groups,stride,activation,with_sum", NCHWC_CONV_CASES,
                         ids=["nchw-in-relu", "blocked", "depthwise", "s2", "sum"])
def test_nchwc_conv(channels, filters, groups, stride, activation, with_sum, tmp_path):
    batch, size, kernel = 2, 9, 3
    out = (size + 2 - kernel) // stride + 1
    x, w, b = f32(batch, channels, size, size), f32(filters, channels // groups, kernel, kernel), f32(filters)
    attrs = {"activation": activation} if activation else {}
    model, feeds = nchwc_single("Conv", [data(x), init(w), init(b)]
                                + ([data(f32(batch, filters, out, out))] if with_sum else []),
                                strides=[stride, stride], pads=[1, 1, 1, 1], group=groups, **attrs)
    layer = checked(model, feeds, tmp_path)
    outputs = batch * filters * out * out
    macs = outputs * channels // groups * kernel * kernel
    assert counts(layer) == (filters * channels // groups * kernel * kernel + filters, macs,
                             2 * macs + outputs + (activation == "Relu") * outputs + with_sum * outputs)


@needs_nchwc
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("kernel,stride,pad", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_nchwc_pool(op, kernel, stride, pad, tmp_path):
    x = f32(2, 16, 9, 9)
    model, feeds = nchwc_single(op, [data(x)], kernel_shape=[kernel, kernel], strides=[stride, stride],
                                pads=[pad] * 4)
    layer = checked(model, feeds, tmp_path)
    out = (9 + 2 * pad - kernel) // stride + 1
    assert layer.outputs[0].shape == (2, 16, out, out)
    assert counts(layer) == (0, 0, 2 * 16 * out * out * kernel * kernel)


@needs_nchwc
@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_nchwc_global_pool(op, tmp_path):
    x = f32(2, 32, 7, 5)
    model, feeds = nchwc_single(op, [data(x)])
    layer = checked(model, feeds, tmp_path)
    assert layer.outputs[0].shape == (2, 32, 1, 1) and counts(layer) == (0, 0, x.size)


@needs_nchwc
@pytest.mark.parametrize("mode,per_axis", [("nearest", 0), ("linear", 3)])
@pytest.mark.parametrize("scales", [(2, 2), (3, 1)])
def test_nchwc_upsample(mode, per_axis, scales, tmp_path):
    model, feeds = nchwc_single("Upsample", [data(f32(2, 16, 5, 6))], scales=[1, 1, *scales], mode=mode)
    layer = checked(model, feeds, tmp_path)
    outputs = 2 * 16 * 5 * scales[0] * 6 * scales[1]
    assert layer.outputs[0].shape == (2, 16, 5 * scales[0], 6 * scales[1])
    assert counts(layer) == (0, 0, per_axis * sum(s != 1 for s in scales) * outputs)


def _saved_at_all(model: onnx.ModelProto, tmp_path: Path) -> onnx.ModelProto:
    """`model` as onnxruntime saves it after its ORT_ENABLE_ALL optimizations (blocked layouts)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "all.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return onnx.load(str(tmp_path / "all.onnx"))


def _block_size() -> int:
    """This machine's MLAS block: a ReorderInput of 4 channels pads them to one block."""
    model, feeds = nchwc_single("ReorderInput", [data(f32(1, 4, 1, 1))])
    return run_ort(model, feeds)["out0"].shape[1]


@needs_nchwc
def test_graph_saved_at_enable_all_counts_as_its_source(tmp_path):
    """A CNN onnxruntime rewrites into blocked ops: every tensor's shape and dtype as onnxruntime
    runs the saved graph, and the source's params and MACs, but for the 20-filter conv,
    which the transformer pads to whole blocks (its zero filters are multiplied too)."""
    x = f32(2, 3, 16, 16)
    weights = {"w1": f32(16, 3, 3, 3), "b1": f32(16), "w2": f32(16, 16, 3, 3), "b2": f32(16),
               "w3": f32(32, 16, 1, 1), "b3": f32(32), "w4": f32(20, 32, 3, 3), "b4": f32(20)}
    nodes = [node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), node("Relu", ["c1"], ["r1"]),
             node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]), node("Add", ["c2", "r1"], ["a2"]),
             node("Relu", ["a2"], ["r2"]),
             node("MaxPool", ["r2"], ["p2"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             node("Conv", ["p2", "w3", "b3"], ["c3"]),
             node("AveragePool", ["c3"], ["p3"], kernel_shape=[2, 2], strides=[2, 2]),
             node("Resize", ["p3", "", "scales"], ["u3"], mode="nearest",
                  coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
             node("Conv", ["u3", "w4", "b4"], ["c4"], pads=[1, 1, 1, 1]),
             node("GlobalAveragePool", ["c4"], ["y"])]
    source = unfused(nodes, {"x": data(x), **{k: init(v) for k, v in weights.items()},
                             "scales": init(np.array([1, 1, 2, 2], np.float32))}, opset=17)
    saved = _saved_at_all(source, tmp_path)
    ops = {(n.domain, n.op_type) for n in saved.graph.node}
    if not any(domain == NCHWC for domain, _ in ops):
        pytest.skip(f"onnxruntime {ort.__version__} wrote no com.microsoft.nchwc op at ORT_ENABLE_ALL here")
    assert {(NCHWC, "Conv"), (NCHWC, "MaxPool"), (NCHWC, "AveragePool"), (NCHWC, "Upsample"),
            (NCHWC, "ReorderOutput")} <= ops
    analysis = analysed(saved, tmp_path, "saved.onnx")
    assert not analysis.totals.partial and list(analysis.warnings) == []
    actual = run_ort(with_every_output(saved), {"x": x})
    assert {name: (tuple(analysis.tensors[name].shape), analysis.tensors[name].dtype) for name in actual} == {
        name: (array.shape, array.dtype.name) for name, array in actual.items()}
    params, macs, _ = totals(source, tmp_path)
    # the last conv's 20 filters padded to whole blocks of this machine's size
    padded = -(-20 // _block_size()) * _block_size()
    extra = padded - 20
    assert analysis.totals.params == params + extra * (32 * 9 + 1)
    assert analysis.totals.macs == macs + 2 * extra * 8 * 8 * 32 * 9
    blocked = [name for name, t in analysis.tensors.items() if tuple(t.shape) == (2, padded, 8, 8)]
    assert blocked and analysis.tensors["c4"].shape == (2, 20, 8, 8)  # ReorderOutput keeps the 20


@needs_nchwc
def test_a_batchnorm_onnxruntime_blocks_counts_macs_its_source_lacks(tmp_path):
    """A BatchNormalization no conv absorbs (after a Relu) becomes, at ORT_ENABLE_ALL, a
    blocked depthwise 1x1 Conv: weight [C, 1, 1, 1] (the scale over the deviation) and bias
    [C] (the shift less mean times it). The same arithmetic per element (one multiply, one
    add), but a Conv's multiply is a MAC where BatchNorm's is not, so the saved graph has
    N*C*H*W = 2*16*8*8 MACs its source lacks; params stay 2 C (scale and bias for scale and
    shift), the running mean and variance (2 C buffers) are folded away."""
    x = f32(2, 3, 8, 8)
    nodes = [node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), node("Relu", ["c"], ["r"]),
             node("BatchNormalization", ["r", "scale", "shift", "mean", "var"], ["y"])]
    stats = {"scale": init(f32(16)), "shift": init(f32(16)), "mean": init(f32(16)),
             "var": init(np.abs(f32(16)) + 0.5)}
    source = unfused(nodes, {"x": data(x), "w": init(f32(16, 3, 3, 3)), "b": init(f32(16)), **stats}, opset=17)
    saved = _saved_at_all(source, tmp_path)
    blocked = [n for n in saved.graph.node if n.domain == NCHWC and n.op_type == "Conv"]
    if len(blocked) != 2:
        pytest.skip(f"onnxruntime {ort.__version__} did not block the BatchNorm here: {[n.op_type for n in blocked]}")
    before, after = analysed(source, tmp_path, "source.onnx").totals, analysed(saved, tmp_path, "saved.onnx").totals
    conv_macs = 2 * 16 * 8 * 8 * 3 * 3 * 3
    assert before.macs == conv_macs and after.macs == conv_macs + 2 * 16 * 8 * 8
    assert before.params == after.params == 16 * 27 + 16 + 2 * 16
    assert (before.buffers, after.buffers) == (2 * 16, 0)


def test_the_nchwc_guard_runs_the_blocked_tests_on_x86():
    """The nchwc tests skip only where onnxruntime has no blocked kernels: on x86 they run."""
    import platform

    if platform.machine().lower() in ("x86_64", "amd64"):
        assert missing_nchwc_kernels() is None


def with_every_output(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    declared = {o.name for o in copy.graph.output}
    for n in copy.graph.node:
        copy.graph.output.extend(onnx.ValueInfoProto(name=o) for o in n.output if o and o not in declared)
    return copy


# channels last (com.microsoft)


@pytest.mark.parametrize("kernel,stride,pad,ceil", [(3, 2, 0, 0), (3, 2, 1, 1), (2, 1, 0, 0)])
def test_nhwc_max_pool(kernel, stride, pad, ceil, tmp_path):
    x = u8(2, 9, 8, 5)
    model, feeds = single("NhwcMaxPool", [data(x)], kernel_shape=[kernel, kernel], strides=[stride, stride],
                          pads=[pad] * 4, ceil_mode=ceil)
    layer = checked(model, feeds, tmp_path)
    rounding = (lambda n: -(-n // stride)) if ceil else (lambda n: n // stride)
    h, w = rounding(9 + 2 * pad - kernel) + 1, rounding(8 + 2 * pad - kernel) + 1
    assert layer.outputs[0].shape == (2, h, w, 5)
    assert counts(layer) == (0, 0, 2 * h * w * 5 * kernel * kernel)


@pytest.mark.parametrize("channels_last", [0, 1])
@pytest.mark.parametrize("groups,stride", [(1, 1), (2, 2)])
def test_ms_qlinear_conv(channels_last, groups, stride, tmp_path):
    batch, channels, filters, size, kernel = 2, 4, 8, 9, 3
    x = u8(batch, size, size, channels) if channels_last else u8(batch, channels, size, size)
    w, bias = i8(filters, channels // groups, kernel, kernel), np.zeros(filters, np.int32)
    model, feeds = single("QLinearConv", [data(x), init(scalar(0.1)), init(scalar(1, np.uint8)), init(w),
                                          init(scalar(0.1)), init(scalar(0, np.int8)), init(scalar(0.2)),
                                          init(scalar(3, np.uint8)), init(bias)],
                          channels_last=channels_last, group=groups, strides=[stride, stride], pads=[1, 1, 1, 1])
    layer = checked(model, feeds, tmp_path)
    out = (size + 2 - kernel) // stride + 1
    assert layer.outputs[0].shape == ((batch, out, out, filters) if channels_last else (batch, filters, out, out))
    outputs = batch * filters * out * out
    macs = outputs * channels // groups * kernel * kernel
    # as the standard QLinearConv: int8 weights and int32 bias are params; + bias add, + requantise
    assert counts(layer) == (w.size + filters, macs, 2 * macs + outputs + REQUANTIZE * outputs)
    assert layer.integer_macs == macs
    standard = single("QLinearConv", [data(u8(batch, channels, size, size)), init(scalar(0.1)),
                                      init(scalar(1, np.uint8)), init(w), init(scalar(0.1)),
                                      init(scalar(0, np.int8)), init(scalar(0.2)), init(scalar(3, np.uint8)),
                                      init(bias)], domain="", group=groups, strides=[stride, stride],
                      pads=[1, 1, 1, 1])[0]
    assert counts(layer) == counts(analysed(standard, tmp_path, "standard.onnx").layer("n"))


@pytest.mark.parametrize("op", ["NhwcConv", "NhwcFusedConv"])
@pytest.mark.parametrize("groups,stride", [(1, 1), (2, 2)])
def test_nhwc_conv_without_cpu_kernel(op, groups, stride, tmp_path):
    # onnxruntime runs these on CUDA only; the schema: X [N, H, W, C], W [M, C/group, kH, kW],
    # Y [N, H', W', M] (its shape function transposes the data input and output only)
    batch, channels, filters, size, kernel = 2, 4, 8, 9, 3
    w, b = f32(filters, channels // groups, kernel, kernel), f32(filters)
    attrs = {"activation": "Relu"} if op == "NhwcFusedConv" else {}
    model, _ = single(op, [data(f32(batch, size, size, channels)), init(w), init(b)], group=groups,
                      strides=[stride, stride], pads=[1, 1, 1, 1], **attrs)
    layer = analysed(model, tmp_path).layer("n")
    out = (size + 2 - kernel) // stride + 1
    assert layer.outputs[0].shape == (batch, out, out, filters)
    outputs = batch * filters * out * out
    macs = outputs * channels // groups * kernel * kernel
    assert counts(layer) == (w.size + filters, macs, 2 * macs + outputs + bool(attrs) * outputs)
