"""Decoders exported WITH a key/value cache (tests/fixtures/decoders: Qwen3 with grouped-query
attention and GPT-2, random weights, recorded by make_decoder_fixtures.py): shapes against
onnxruntime, the cache per token against 2 * layers * kv_heads * head_dim * bytes, prefill and
decode MACs against the bound analysis and torch's FlopCounterMode for the same calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from onnx_models import shape_mismatches

import archcalc
from archcalc.cli.main import cli
from archcalc.core.dims import Sym
from archcalc.engine.kv import causal_mask, generation, kv_cache
from archcalc.engine.symbolic import analyze_unbound, formulas

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests/fixtures/decoders"
MODELS = ("qwen3_cache", "gpt2_cache")
# The same two models exported with an attention mask and position ids as well (test_decoder_mask.py).
MASKED = ("qwen3_mask", "gpt2_mask")
# Qwen3's rotary inverse frequencies (a torch buffer of head_dim / 2 = 8 values) are a Constant
# to the ONNX file, which cannot tell them from learned values (as test_deployed_models.py says).
NOT_LEARNED = {"qwen3_cache": 8, "qwen3_mask": 8}


def record(stem: str) -> dict:
    return json.loads((FIXTURES / f"{stem}.json").read_text())


def path(stem: str) -> str:
    return str(FIXTURES / f"{stem}.onnx")


@pytest.mark.parametrize("run", ["prefill", "decode"])
@pytest.mark.parametrize("stem", MODELS + MASKED)
def test_shapes_params_and_macs_match_onnxruntime_and_torch(stem, run):
    """Every tensor's shape as onnxruntime ran the graph, the params torch counts, and MACs as
    FlopCounterMode counted the same call (prefill: past 0; decode: one token, 9 cached)."""
    r = record(stem)
    dims = r["runs"][run]["dims"]
    analysis = archcalc.analyze(path(stem), dims=dims)
    actual = {name: tuple(shape) for name, shape in r["runs"][run]["shapes"].items()}
    assert shape_mismatches(analysis, actual, dims) == []
    assert analysis.totals.params == r["torch_params"] + NOT_LEARNED.get(stem, 0)
    assert analysis.totals.macs == r["runs"][run]["macs"]


def _unbound(stem: str):
    return analyze_unbound(archcalc.load(path(stem)), {})


def test_gqa_cache_per_token_and_at_a_context():
    """Qwen3 (tests/fixtures/decoders/qwen3_cache.json: 2 layers, 4 query heads, 2 key/value heads
    of 16, fp32): 2 * layers * kv_heads * head_dim * bytes = 2 * 2 * 2 * 16 * 4 = 512 B per token;
    at a context of 9 for a batch of 2, 512 * 9 * 2 = 9,216 B."""
    config = record("qwen3_cache")["config"]
    assert (config["layers"], config["heads"], config["kv_heads"], config["head_dim"]) == (2, 4, 2, 16)
    cache = kv_cache(_unbound("qwen3_cache"))
    assert cache is not None and cache.source == "past key/value inputs"
    assert {(layer.kv_heads, layer.head_size) for layer in cache.layers} == {(2, 16)}
    assert len(cache.layers) == 2 * 2  # a key and a value input per layer
    assert cache.bytes_per_token == 2 * 2 * 2 * 16 * 4 == 512
    assert cache.bytes_at(9, 2) == 512 * 9 * 2
    assert kv_cache(_unbound("qwen3_cache"), "fp16").bytes_per_token == 2 * 2 * 2 * 16 * 2
    assert (cache.seq, cache.past) == ("seq", "past_seq")
    # GPT-2: 2 layers, 4 heads of 16 (no grouping): 2 * 2 * 4 * 16 * 4 = 1,024 B
    assert kv_cache(_unbound("gpt2_cache")).bytes_per_token == 1_024


def test_prefill_and_decode_against_the_bound_analysis_torch_and_hand():
    """Qwen3, batch 2. Weight MACs per token and layer: q 64*64, k and v 64*32 (2 KV heads of 16),
    o 64*64, MLP 3 * 64*128 = 36,864. Attention per layer and sequence: QK^T and AV, each
    q_heads * new * (past + new) * head_dim.
    Prefill of 7: 2 * 7 * 2 * 36,864 + 2 * 2 * 2 * 4 * 7 * 7 * 16 = 1,032,192 + 25,088 = 1,057,280.
    Decode with 9 cached: 2 * 2 * 36,864 + 2 * 2 * 2 * 4 * 1 * 10 * 16 = 147,456 + 5,120 = 152,576.
    Both equal torch's FlopCounterMode figures for the same calls (the fixture's record)."""
    r = record("qwen3_cache")
    graph = archcalc.load(path("qwen3_cache"))
    result = generation(_unbound("qwen3_cache"), {"batch": 2}, graph.batch_dims, 7, None)
    prefill = archcalc.analyze(graph, dims={"batch": 2, "seq": 7, "past_seq": 0}).totals
    assert result.prefill.macs == prefill.macs == r["runs"]["prefill"]["macs"] == 1_032_192 + 25_088
    assert result.prefill.peak_activation_bytes == prefill.peak_activation_bytes
    result = generation(_unbound("qwen3_cache"), {"batch": 2}, graph.batch_dims, 9, None)
    step = archcalc.analyze(graph, dims={"batch": 2, "seq": 1, "past_seq": 9}).totals
    assert result.decode.macs == step.macs == r["runs"]["decode"]["macs"] == 147_456 + 5_120
    # bytes moved per decoded token: the weights, 9 cached tokens read and 1 written, for 2 sequences
    assert result.decode.bytes_moved == step.weight_bytes + 512 * 9 * 2 + 512 * 1 * 2


def test_gpt2_decode_equals_flop_counter_mode():
    r = record("gpt2_cache")
    graph = archcalc.load(path("gpt2_cache"))
    result = generation(_unbound("gpt2_cache"), {"batch": 2}, graph.batch_dims, 9, None)
    assert result.decode.macs == r["runs"]["decode"]["macs"]
    result = generation(_unbound("gpt2_cache"), {"batch": 2}, graph.batch_dims, 7, None)
    assert result.prefill.macs == r["runs"]["prefill"]["macs"]


def test_gpt2_macs_polynomial_in_batch_seq_and_past():
    """GPT-2 (2 layers of width 64, a 256-wide MLP): per new token 2 * (64*192 + 64*64 + 2 * 64*256)
    = 98,304 weight MACs; QK^T and AV each 4 heads * seq * (past + seq) * 16 per layer: 2 * 2 * 64 =
    256 * batch * seq * (past_seq + seq)."""
    f = formulas(_unbound("gpt2_cache"))
    assert f.dims == ("batch", "past_seq", "seq")
    b, p, s = (Sym.symbol(name) for name in ("batch", "past_seq", "seq"))
    assert f.macs == 2 * (64 * 192 + 64 * 64 + 2 * 64 * 256) * b * s + 256 * b * s * (p + s)
    assert f.params == 110_592


def test_causal_mask_found_in_decoders_not_in_encoders():
    for stem in MODELS:
        assert causal_mask(_unbound(stem)) == "/model/LessOrEqual"
    assert causal_mask(archcalc.analyze(str(ROOT / "tests/fixtures/deployed/gpt2_source.onnx"),
                                        dims={"batch": 1, "seq": 4})) is not None
    assert causal_mask(archcalc.analyze(str(ROOT / "tests/fixtures/deployed/bert_source.onnx"),
                                        dims={"batch": 1, "seq": 4})) is None


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_cli_symbolic_and_context():
    out = run("analyze", path("gpt2_cache"), "--symbolic")
    assert "MACs                256*batch*past_seq*seq + 256*batch*seq^2 + 98,304*batch*seq" in out
    document = json.loads(run("analyze", path("qwen3_cache"), "--context", "9", "--batch", "2", "--format", "json"))
    g = document["generation"]
    assert (g["kv_cache_bytes_per_token"], g["kv_cache_bytes"]) == (512, 512 * 9 * 2)
    assert g["decode"]["macs_per_token"] == 152_576
    assert document["bindings"] == {"batch": 2, "past_seq": 0, "seq": 9}  # the table: the prompt of 9
    assert any("causal mask" in note for note in g["notes"])
    out = run("analyze", path("qwen3_cache"), "--context", "9", "--dim", "past_seq=3")
    assert "past_seq is bound by --dim" in out


def test_a_prefill_export_with_present_outputs_only(tmp_path):
    """No past inputs: the cache is read from the present outputs [B, 2, S, 16] (2 key/value heads of
    16, fp32: 2 * 2 * 16 * 4 = 256 B per token for a key and a value), the prefill of N tokens is the
    graph at S = N (MACs by hand: keys, values and output projections, 8*32 + 8*32 + 8*8 per token),
    and there is no decode cost (a note says why)."""
    from onnx import helper
    from onnx_models import const, make_model, tensor_input, weight

    nodes = [const("heads", [0, 0, 2, 16]), helper.make_node("MatMul", ["x", "wo"], ["y"], name="out")]
    for kind in ("key", "value"):
        nodes += [helper.make_node("MatMul", ["x", f"w_{kind}"], [f"{kind}_flat"], name=f"proj_{kind}"),
                  helper.make_node("Reshape", [f"{kind}_flat", "heads"], [f"{kind}_heads"], name=f"split_{kind}"),
                  helper.make_node("Transpose", [f"{kind}_heads"], [f"present.0.{kind}"], name=f"present_{kind}",
                                   perm=[0, 2, 1, 3])]
    model = make_model(nodes, [tensor_input("x", ["B", "S", 8])], ["y", "present.0.key", "present.0.value"],
                       [weight("w_key", [8, 32]), weight("w_value", [8, 32]), weight("wo", [8, 8])])
    path = tmp_path / "prefill.onnx"
    path.write_bytes(model.SerializeToString())
    graph = archcalc.load(str(path))
    analysis = analyze_unbound(graph, {})
    cache = kv_cache(analysis)
    assert cache is not None and cache.source.startswith("present key/value outputs")
    assert cache.bytes_per_token == 2 * 2 * 16 * 4 and (cache.seq, cache.past) == ("S", None)
    result = generation(analysis, {"B": 3}, graph.batch_dims, 5, None)
    assert result.prefill.macs == archcalc.analyze(graph, dims={"B": 3, "S": 5}).totals.macs == 3 * 5 * (256 + 256 + 64)
    assert result.decode is None and any("no decode cost" in note for note in result.notes)


def test_the_cli_binds_a_prefill_at_past_zero():
    """`--dim past_seq=0` is a prefill, as the API's dims are: the same MACs torch counted."""
    from click.testing import CliRunner

    from archcalc.cli.main import cli

    result = CliRunner().invoke(cli, ["analyze", path("qwen3_cache"), "--dim", "batch=2", "--dim", "seq=7",
                                      "--dim", "past_seq=0", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["totals"]["macs"] == record("qwen3_cache")["runs"]["prefill"]["macs"]
    refused = CliRunner().invoke(cli, ["analyze", path("qwen3_cache"), "--dim", "past_seq=-1"])
    assert refused.exit_code == 2 and "N >= 0" in refused.output
