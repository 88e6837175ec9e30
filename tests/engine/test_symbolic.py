"""Costs as formulas of the unbound dims (archcalc.engine.symbolic): hand-written polynomials
for small graphs, and a property test that a formula evaluated at random bindings equals the
bound analysis there, exactly, over the bundled specs and the committed ONNX fixtures."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper
from onnx_models import make_model, tensor_input

import archcalc
from archcalc.core.dims import Sym, bind, formula_text, minimum, polynomial_from_json, polynomial_json, substitute
from archcalc.core.errors import ShapeError, UnboundDim
from archcalc.engine.symbolic import Evaluator, formulas, sweep_points

ROOT = Path(__file__).resolve().parents[2]
b, s, h, w = (Sym.symbol(n) for n in ("batch", "seq", "H", "W"))


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_one_attention_layer_is_the_hand_polynomial(tmp_path):
    spec = _write(tmp_path, "attn.yaml", "name: attn\ninput: [seq, 64]\nlayers:\n"
                  "  - attention: {heads: 4, bias: false}\n    name: attn\n")
    f = formulas(archcalc.analyze(spec, dims={"seq": 5}))
    d, heads, width = 16, 4, 64  # head_dim = 64 / 4
    # q, k, v and output projections: 4 * b*s*64*64; QK^T = b*h*s^2*d, and (QK^T)V the same.
    qk = b * heads * s * s * d
    assert f.macs == 4 * b * s * width * width + 2 * qk
    assert f.macs == 16384 * b * s + 128 * b * s * s
    # FLOPs: 2 per MAC, and per score (b*h*s^2 of them) 1 for the scale and 5 for the softmax.
    assert f.flops == 2 * f.macs + 6 * b * heads * s * s
    # Each of the five ops writes a [b, s, 64] fp32 tensor (the attention's output per head, joined).
    assert f.activation_bytes == 5 * b * s * width * 4
    assert f.input_bytes == b * s * width * 4
    assert f.dims == ("batch", "seq") and f.exact
    by_name = {layer.name: layer for layer in f.layers}
    assert by_name["attn.attention"].macs == 2 * qk
    assert formula_text(f.macs) == "128*batch*seq^2 + 16,384*batch*seq"


def test_a_dim_named_as_an_expression_is_quoted_in_formulas():
    # optimum names an attention mask's length "past_sequence_length + 1": one dim, not a sum
    total, b = Sym.symbol("past_sequence_length + 1"), Sym.symbol("batch")
    assert formula_text(8 * b * total + 16 * b) == "8*batch*'past_sequence_length + 1' + 16*batch"


def test_onnx_qk_matmul_with_dim_params(tmp_path):
    """Q K^T in an ONNX graph with dim_params: [b, h, s, d] x [b, h, d, s] is b*h*s^2*d MACs."""
    model = make_model(
        [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2], name="kt"),
         helper.make_node("MatMul", ["q", "kt"], ["scores"], name="qk")],
        [tensor_input("q", ["B", 12, "S", 64]), tensor_input("k", ["B", 12, "S", 64])], ["scores"])
    path = tmp_path / "qk.onnx"
    path.write_bytes(model.SerializeToString())
    f = formulas(archcalc.analyze(str(path), dims={"S": 3}))
    big_b, big_s = Sym.symbol("B"), Sym.symbol("S")
    assert f.macs == big_b * 12 * big_s * big_s * 64
    assert f.flops == 2 * f.macs
    assert f.activation_bytes == 4 * (big_b * 12 * 64 * big_s + big_b * 12 * big_s * big_s)


def test_strided_conv_keeps_floors_exact(tmp_path):
    """A stride-2 conv's output is floor((H + 2 - 3)/2) + 1 rows: not a polynomial, kept as a floor."""
    spec = _write(tmp_path, "conv.yaml", "name: conv\ninput: [3, H, W]\nlayers:\n"
                  "  - conv2d: {filters: 8, kernel: 3, stride: 2, padding: 1, bias: false}\n    name: conv\n")
    f = formulas(archcalc.analyze(spec, dims={"H": 9, "W": 7}))
    rows, cols = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    assert f.macs == b * 8 * rows * cols * 3 * 3 * 3
    document = polynomial_json(f.macs)
    assert document["polynomial"] is False and polynomial_from_json(document) == f.macs
    evaluator = Evaluator(archcalc.analyze(spec, dims={"H": 9, "W": 7}))
    for height, width in ((9, 7), (10, 10), (1, 2)):
        bound = archcalc.analyze(spec, dims={"H": height, "W": width})
        assert evaluator.at({"batch": 1, "H": height, "W": width}).macs == bound.totals.macs
        assert bound.totals.macs == 8 * ((height - 1) // 2 + 1) * ((width - 1) // 2 + 1) * 27


def test_given_bindings_are_substituted(tmp_path):
    spec = _write(tmp_path, "attn.yaml", "name: attn\ninput: [seq, 64]\nlayers:\n"
                  "  - attention: {heads: 4, bias: false}\n")
    analysis = archcalc.analyze(spec, dims={"seq": 10})
    f = formulas(analysis, {"seq": 10})
    assert f.dims == ("batch",)
    assert f.macs == (16384 * 10 + 128 * 100) * b
    assert formulas(analysis, {"seq": 10, "batch": 2}).macs == analysis.totals.macs * 2


def test_params_are_constants():
    f = formulas(archcalc.analyze("specs/gpt2.yaml", input_shapes={"input_ids": ("batch", "seq")}, dims={"seq": 8}))
    # GPT-2 small, hand: 12 layers of (768*2304 + 768*768 + 2*768*3072) weight MACs per token, the
    # tied LM head 768*50257; attention 2 * 768 * seq per token and layer (QK^T and AV over 12 heads).
    per_token = 12 * (768 * 2304 + 768 * 768 + 2 * 768 * 3072) + 768 * 50257
    assert f.macs == per_token * b * s + 12 * 2 * 768 * b * s * s
    assert f.params == 124_439_808


def test_hugging_face_gpt2_export():
    """GPT2Model exported from Hugging Face (tests/fixtures/deployed/gpt2_source.json: 2 layers of
    width 64, a 256-wide MLP): per token 2 * (64*192 + 64*64 + 64*256 + 256*64) weight MACs; QK^T and
    AV cost 2 * 64 * seq per token and layer. At batch 2, seq 7 that is the recorded 1,401,344."""
    f = formulas(archcalc.analyze("tests/fixtures/deployed/gpt2_source.onnx", dims={"batch": 2, "seq": 7}))
    assert f.macs == 2 * (64 * 192 + 64 * 64 + 64 * 256 + 256 * 64) * b * s + 2 * 2 * 64 * b * s * s
    assert bind(f.macs, {"batch": 2, "seq": 7}) == 1_401_344


def test_polynomial_json_round_trip_and_shape():
    dim = 18432 * b * s * s - 3 * s + 7 + minimum(s, h) * b + (s - 1) // 2
    document = polynomial_json(dim)
    assert polynomial_from_json(document) == dim
    terms = {json.dumps(t["powers"], sort_keys=True): t["coefficient"] for t in document["terms"] if "factors" not in t}
    assert terms == {'{"batch": 1, "seq": 2}': 18432, '{"seq": 1}': -3, "{}": 7}
    assert all(isinstance(t["coefficient"], int) for t in document["terms"])
    assert polynomial_json(0)["terms"] == []


def test_substitute_binds_floors_and_mins():
    dim = 3 * ((s - 1) // 2) * b + minimum(s, h)
    assert substitute(dim, {"seq": 8}) == 9 * b + minimum(8, h)
    assert substitute(dim, {"seq": 8, "H": 3, "batch": 2}) == 3 * 3 * 2 + 3 == bind(dim, {"seq": 8, "H": 3, "batch": 2})


def test_sweep_points_are_the_product():
    assert sweep_points([("seq", [1, 2]), ("batch", [3])]) == [{"seq": 1, "batch": 3}, {"seq": 2, "batch": 3}]


def test_evaluator_refuses_points_the_model_cannot_take(tmp_path):
    spec = _write(tmp_path, "conv.yaml", "name: conv\ninput: [3, H, 8]\nlayers:\n  - conv2d: {filters: 4, kernel: 5}\n")
    evaluator = Evaluator(archcalc.analyze(spec, dims={"H": 9}))
    with pytest.raises(ShapeError, match="H=2"):
        evaluator.at({"batch": 1, "H": 2})  # 2 - 5 + 1 rows
    with pytest.raises(UnboundDim):
        evaluator.at({"batch": 1})


# The property test: every bundled spec (transformers with a symbolic sequence too) and every
# committed ONNX fixture (tests/fixtures/onnx/*.json record their dims), one analysis each,
# evaluated at random bindings and compared with a full analysis at those bindings.
SEQ_INPUTS = {"bert_base.yaml": "input_ids", "gpt2.yaml": "input_ids", "llama_3_2_1b.yaml": "input_ids",
              "t5_small_encoder.yaml": "input_ids"}
MODELS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs").glob("*.yaml")) + sorted(
    str(p.with_suffix(".onnx").relative_to(ROOT)) for folder in ("onnx", "deployed", "decoders")
    for p in (ROOT / "tests/fixtures" / folder).glob("*.json"))


@functools.cache
def _model(path: str):
    """(graph, dims to draw, the fixture's own bindings)."""
    name = Path(path).name
    if path.endswith(".yaml"):
        shapes = {SEQ_INPUTS[name]: ("batch", "seq")} if name in SEQ_INPUTS else None
        graph = archcalc.load(path, shapes)
        return graph, (("batch", "seq") if shapes else ("batch",)), {"batch": 2, "seq": 5} if shapes else {}
    record = json.loads(Path(path).with_suffix(".json").read_text())
    # a decoder with a cache records a prefill and a decode run: its decode step's dims
    dims = record["dims"] if "dims" in record else record["runs"]["decode"]["dims"]
    return archcalc.load(path), tuple(dims), dims


@functools.cache
def _evaluator(path: str) -> Evaluator:
    graph, _, dims = _model(path)
    return Evaluator(archcalc.analyze(graph, dims=dims))


@pytest.mark.parametrize("path", MODELS)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_formulas_equal_the_bound_analysis(path, data):
    graph, names, _ = _model(path)
    evaluator = _evaluator(path)
    assert evaluator.formulas.exact and set(evaluator.formulas.dims) <= set(names), evaluator.formulas.dims
    binding = {name: data.draw(st.integers(1, 40), label=name) for name in names}
    bound = archcalc.analyze(graph, dims=binding)
    point = evaluator.at({k: v for k, v in binding.items() if k in evaluator.formulas.dims})
    t = bound.totals
    assert (point.params, point.macs, point.flops, point.activation_bytes, point.peak_activation_bytes,
            point.weight_bytes, point.input_bytes) == (t.params, t.macs, t.flops, t.activation_bytes,
                                                       t.peak_activation_bytes, t.weight_bytes, t.input_bytes)
    env = {**binding, **{n: binding.get("batch", 1) for n in graph.batch_dims if n not in binding}}
    for layer, formula in zip(bound.layers, evaluator.formulas.layers):
        assert layer.name == formula.name
        assert (bind(formula.macs, env), bind(formula.flops, env), bind(formula.activation_bytes, env)) == (
            layer.macs, layer.flops, layer.activation_bytes), layer.name


def test_a_subgraph_is_no_formula_and_sweeps_analyse_each_point(tmp_path):
    """A Loop of 3 trips over h -> relu(h @ W + B), W [4, 4], then a head h @ W: its body's
    counts are bound by the engine, so sweeps analyse each point: MACs = 3*16*b + 16*b."""
    from onnx_models import ints, loop_model

    from archcalc.engine.sweep import run_sweep

    path = tmp_path / "loop.onnx"
    path.write_bytes(loop_model("M", "", initializers=[ints("M", 3)]).SerializeToString())
    graph = archcalc.load(str(path))
    f = formulas(archcalc.analyze(graph))
    assert f.bound_layers == ("loop",) and not f.exact
    result, points, method = run_sweep(graph, {}, [("batch", [1, 5])])
    assert result is None and "one analysis per point" in method
    assert [p.macs for p in points] == [64, 320]
